"""The progress bar, summary and JSON lines of `vbg process`, driven by a fake clock."""

from __future__ import annotations

import io
import json

from vbg.clock import FakeClock
from vbg.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_shows_frames_fps_and_eta():
    clock, out = FakeClock(), Tty()
    p = Progress("clip.mp4", 300, stream=out, clock=clock)
    clock.advance(2.0)
    p.update(50)  # 25 fps, 250 frames to go: 10 s
    text = out.getvalue()
    assert "clip.mp4" in text and "50/300 frames" in text and "25.0 fps" in text and "ETA 0:10" in text
    assert " 17%" in text


def test_redraws_are_throttled():
    clock, out = FakeClock(), Tty()
    p = Progress("a", 1000, stream=out, clock=clock, interval=0.5)
    for i in range(100):
        clock.advance(0.01)
        p.update(i)
    assert out.getvalue().count("\r") == 2  # at 0.01 s and 0.51 s, not 100 times


def test_json_lines_are_parseable_and_end_with_done():
    clock, out = FakeClock(), io.StringIO()
    p = Progress("in.mp4", 10, mode="json", stream=out, clock=clock)
    p.emit("start", output="out.mp4", frames=10)
    for i in range(1, 11):
        clock.advance(0.5)
        p.update(i)
    p.finish("ignored", output="out.mp4")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0] == {"event": "start", "input": "in.mp4", "output": "out.mp4", "frames": 10}
    assert {e["event"] for e in events[1:-1]} == {"progress"}
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 10 and events[-1]["fps"] == 2.0


def test_quiet_prints_only_the_summary_and_unknown_total_works():
    clock, out = FakeClock(), io.StringIO()
    p = Progress("x", None, mode="quiet", stream=out, clock=clock)
    clock.advance(1.0)
    p.update(30)
    p.finish("x -> y: 30 frames")
    assert out.getvalue() == "x -> y: 30 frames\n"
    unknown = Progress("y", None, stream=io.StringIO(), clock=clock)
    clock.advance(2.0)
    unknown.update(40)
    assert unknown.line() == "y 40 frames  20.0 fps 0:02"


def test_a_narrow_terminal_keeps_the_figures_a_user_reads_first():
    """A long name loses its middle before the figures; the bar goes before the percentage."""
    clock, out = FakeClock(), Tty()
    p = Progress("holiday 2024/a very long name of the first day at the beach.mp4", 300, stream=out, clock=clock,
                 terminal_columns=lambda: 60)
    clock.advance(2.0)
    p.update(150)
    row = out.getvalue().split("\r")[-1].rstrip()
    assert len(out.getvalue().split("\r")[-1]) == 59  # the row is filled to the last column but one
    assert row.startswith("holiday 2...") and ".mp4  50%" in row, row
    assert row.endswith(" 50% 150/300 frames  75.0 fps ETA 0:02"), row
    p = Progress("clip.mp4", 300, stream=Tty(), clock=clock, terminal_columns=lambda: 60)
    p.update(150)
    assert "clip.mp4 [" in p.line(59) and len(p.line(59)) <= 59


def test_the_live_status_line_drops_its_least_telling_parts_first():
    from vbg.stats import fit_status_line

    line = ("out  28.5 fps | cam  28.1 fps | model   6.9/ 47.7 ms p50/p95 | fresh  45% | mask age   13 ms | "
            "latency   13/  46 ms | CPU | camera lost")
    assert fit_status_line(line, 200) == line
    assert fit_status_line(line, 80) == "out  28.5 fps | latency   13/  46 ms | camera lost"
    assert fit_status_line(line, 40) == "out  28.5 fps | camera lost"
    narrow = fit_status_line(line, 12)
    assert narrow == "out  28.5..." and len(narrow) == 12
    assert fit_status_line(line.replace("CPU", "CUDA,CPU"), 118).endswith("| latency   13/  46 ms | CUDA,CPU | camera lost")


def test_log_lines_go_where_stderr_is_after_main_set_logging_up(monkeypatch):
    """``main`` sets the "vbg" logger up on the stderr of the time; a program (a test with its
    captured stream) that swapped and closed it got "I/O operation on closed file" from the
    next line vbg logged. The CLI's handler writes to stderr as it is now."""
    import logging
    import sys

    from vbg import cli

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler = cli._RowHandler(sys.stderr)
    handler.setFormatter(cli._OneLine("vbg: %(message)s"))
    log = logging.getLogger("vbg.test-row-handler")
    log.addHandler(handler)
    log.propagate = False
    try:
        first.close()
        now = io.StringIO()
        monkeypatch.setattr(sys, "stderr", now)
        log.warning("after")
    finally:
        log.removeHandler(handler)
    assert now.getvalue().endswith("vbg: after\n")  # (after blanking a bar row an earlier test drew)


def test_a_file_without_a_frame_count_shows_its_estimate_and_an_eta():
    """A Matroska, WebM or MPEG-TS input states no frame count: the bar showed frames and fps
    only, no share done and no ETA (OBS records .mkv). The estimate from its duration is shown as
    one (``~``), with the ETA it gives; past it, the share stays at 100% and the ETA at 0."""
    clock = FakeClock()
    bar = Progress("obs.mkv", None, mode="bar", stream=io.StringIO(), clock=clock)
    bar.estimate = 300
    clock.advance(5.0)
    bar.done = 150
    assert bar.line() == "obs.mkv [############............]  50% 150/~300 frames  30.0 fps ETA 0:05"
    bar.done = 310
    assert " 100% 310/~300 frames" in bar.line() and bar.eta() == 0.0


def test_the_live_figures_count_the_cameras_frames_and_the_whole_runs_rate():
    """A camera sending 30 frames a second of which the render takes every other one (a busy
    machine): the status line's camera rate is 30, not the 15 rendered (it showed "cam 16.1 fps" for
    a camera sending 28, and the frames dropped nowhere); the last line names the frames dropped and
    the whole run's output rate, not its last 120 frames' (a run that slowed down at its end said 28.2
    fps for 27.2), and a one-frame run no rate at all (it said "0.0 fps out")."""
    from vbg.cli import stopped_line
    from vbg.stats import LiveStats

    stats = LiveStats()
    t = 0.0
    for k in range(300):  # out at 15 fps for 200 frames, then at 10 fps
        t += 1 / 15 if k < 200 else 1 / 10
        stats.capture_seqs.add(2 * k)
        stats.capture_times.add(t)
        if stats.first_out is None:
            stats.first_out = t
        stats.out_times.add(t)
        stats.out_frames += 1
    stats.dropped = 300
    snap = stats.snapshot()
    # over the last 120 renders: the camera sent twice the frames rendered
    assert abs(snap["capture_fps"] - 2 * snap["out_fps"]) < 1e-9 and abs(snap["out_fps"] - 10.6) < 0.1
    line = stopped_line(stats)
    whole = 299 / (t - stats.first_out)
    assert line.startswith(f"stopped after 300 frames (300 camera frames dropped: the render fell behind): "
                           f"{whole:.1f} fps out, model"), line
    one = LiveStats()
    one.first_out = 1.0
    one.out_times.add(1.0)
    one.out_frames = 1
    assert stopped_line(one).startswith("stopped after 1 frames: model"), stopped_line(one)
