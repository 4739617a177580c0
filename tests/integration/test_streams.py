"""stdout and stderr that go away while vbg runs: `| head -1`, `> /dev/full`, `2>&-`.

Each test runs `python -m vbg` as a real process. A pipe whose reading end the test
closed before vbg writes is what `| head -1` leaves once head has read its line (a
pipe closed *after* reading a line races with vbg's own buffered write, so the tests
close it first: the outcome is then the same on every run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from media import person_clip_frames, write_clip

NOISE = ("Traceback", "Exception ignored", "BrokenPipeError", "Errno")


def _vbg(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "vbg", *map(str, args)], stdout=stdout, stderr=stderr,
                          preexec_fn=preexec_fn, cwd=cwd, timeout=600)


class ClosedPipe:
    """The writing end of a pipe nobody reads any more (the reader closed it)."""

    def __enter__(self) -> int:
        r, self.w = os.pipe()
        os.close(r)
        return self.w

    def __exit__(self, *exc) -> None:
        os.close(self.w)


def _frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _no_leftovers(folder: Path, name: str) -> None:
    """Nothing half-written: the output is either absent or a playable file, no temporary beside it."""
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())
    out = folder / name
    if out.exists():
        _frames(out)  # opens and decodes


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = [f for f, _ in person_clip_frames(12, (120, 160))]
    return write_clip(tmp_path_factory.mktemp("streams") / "clip.mp4", frames)


LISTINGS = [("doctor",), ("doctor", "--json"), ("models",), ("backgrounds",), ("--help",), ("process", "--help"),
            ("--version",)]


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_closed_stdout_ends_a_listing_with_141_and_no_traceback(args):
    """`vbg doctor | head -1`: the shell's code for a closed pipe, nothing on stderr about it."""
    with ClosedPipe() as w:
        proc = _vbg(*args, stdout=w)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert not any(n in err for n in NOISE), err


@pytest.mark.parametrize("args", [("doctor",), ("models",), ("backgrounds",), ("--help",)], ids=" ".join)
def test_stdout_on_a_full_disk_is_one_error_line(args):
    with open("/dev/full", "w") as full:
        proc = _vbg(*args, stdout=full)
    err = proc.stderr.decode()
    assert proc.returncode == 10, err
    assert not any(n in err for n in ("Traceback", "Exception ignored")), err
    lines = err.splitlines()
    assert lines[-1].startswith("vbg: error: cannot write to stdout") and "full" in lines[-1], err
    assert len([ln for ln in lines if ln.startswith("vbg: error:")]) == 1, err


def test_process_json_into_a_closed_pipe_stops_like_ctrl_c(clip, tmp_path):
    """`vbg process --json | head -1`: exit 141, no traceback, nothing half-written."""
    with ClosedPipe() as w:
        proc = _vbg("process", clip, "-o", tmp_path / "out.mp4", "--model", "selfie", "--json", stdout=w)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert not any(n in err for n in NOISE), err
    _no_leftovers(tmp_path, "out.mp4")


def test_process_json_onto_a_full_disk_is_an_output_error(clip, tmp_path):
    with open("/dev/full", "w") as full:
        proc = _vbg("process", clip, "-o", tmp_path / "out.mp4", "--model", "selfie", "--json", stdout=full)
    err = proc.stderr.decode()
    assert proc.returncode == 10, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("vbg: error:")] == [
        next(ln for ln in err.splitlines() if ln.startswith("vbg: error: cannot write to stdout"))], err
    _no_leftovers(tmp_path, "out.mp4")


@pytest.mark.parametrize("quiet", [False, True], ids=["bar", "quiet"])
def test_process_with_a_closed_stderr_pipe_stops_like_ctrl_c(clip, tmp_path, quiet):
    """The progress bar's reader went away (`2>&1 | head -1`, a log pipe that died)."""
    with ClosedPipe() as w:
        proc = _vbg("process", clip, "-o", tmp_path / "out.mp4", "--model", "selfie", *(["-q"] if quiet else []),
                    stderr=w)
    assert proc.returncode == 141
    assert proc.stdout == b""  # no message strayed onto stdout
    _no_leftovers(tmp_path, "out.mp4")


def test_segment_with_a_closed_stderr_pipe_stops_like_ctrl_c(tmp_path):
    from conftest import PEOPLE

    images = sorted(PEOPLE.glob("example03_background0?.jpg"))
    with ClosedPipe() as w:
        proc = _vbg("segment", *images, "--model", "selfie", "-o", tmp_path / "out", "-v", stderr=w)
    assert proc.returncode == 141
    assert proc.stdout == b""
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(".")]


def test_live_filter_with_a_closed_stderr_pipe_stops_like_ctrl_c(clip, tmp_path):
    """The live filter's log / status line has no reader: it stops, the recording finalized."""
    rec = tmp_path / "rec.mp4"
    with ClosedPipe() as w:
        proc = _vbg("--source", clip, "--loop", "--model", "selfie", "--no-vcam", "--record", rec, stderr=w)
    assert proc.returncode == 141  # --loop never ends by itself: only the closed stderr stopped it
    assert proc.stdout == b""
    _no_leftovers(tmp_path, "rec.mp4")


def _close_stderr():
    os.close(2)


def test_stderr_closed_from_the_start_discards_messages(clip, tmp_path):
    """`vbg process ... 2>&-`: vbg's messages are dropped, never written to stdout, the run's own
    exit code (9: the input is missing)."""
    proc = _vbg("process", tmp_path / "missing.mp4", "-o", tmp_path / "out.mp4", "--model", "selfie",
                preexec_fn=_close_stderr)
    assert proc.returncode == 9
    assert proc.stdout == b""


def test_stderr_closed_from_the_start_leaves_the_output_whole(clip, tmp_path):
    """With fd 2 closed, the output file must not take its number (an encoder's log line would land
    in the video): the run finishes, every frame is there, stdout is empty."""
    out = tmp_path / "out.mp4"
    proc = _vbg("process", clip, "-o", out, "--model", "selfie", "-v", preexec_fn=_close_stderr)
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert _frames(out) == _frames(clip)


def test_process_json_reader_leaving_mid_job_keeps_a_playable_partial_file(clip, tmp_path):
    """`vbg process --json | head -1`, with head leaving while vbg is mid-file: the pipe is made one
    page small and pre-filled so that the 'start' line fills it exactly; vbg then blocks writing its
    first 'progress' line (sent once the first frame is composed), and the test closes the reading
    end only once the pipe is full: vbg's blocked write fails there, after frames were made, every
    time (no timing involved). It stops like Ctrl-C: exit 141, a playable partial file."""
    import fcntl
    import json
    import termios
    import time

    from vbg.media.info import probe

    out = tmp_path / "out.mp4"
    start = json.dumps({"event": "start", "input": str(clip), "output": str(out),
                        "frames": probe(clip).frames}) + "\n"
    r, w = os.pipe()
    try:
        size = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    except (AttributeError, OSError) as e:
        os.close(r), os.close(w)
        pytest.skip(f"cannot make a one-page pipe here ({e})")
    os.write(w, b"x" * (size - len(start.encode())))
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "process", str(clip), "-o", str(out), "--model", "selfie",
                             "--json", "--smoothing", "0"], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    buf = bytearray(4)
    end = time.monotonic() + 300  # a hang guard only
    while proc.poll() is None and time.monotonic() < end:
        fcntl.ioctl(r, termios.FIONREAD, buf)
        if int.from_bytes(buf, sys.byteorder) >= size:  # 'start' is in: vbg writes on into a full pipe
            break
        time.sleep(0.01)
    os.close(r)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == 141, err
    assert not any(n in err for n in NOISE), err
    partial = [p for p in tmp_path.iterdir() if p.suffix == ".mp4"]
    # the frames already decoded when it stopped (a short clip: maybe all of them), named as partial
    assert [p.name for p in partial] == ["out.partial.mp4"] and _frames(partial[0]) >= 1, partial
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


EXIT_INSIDE_A_FLUSH = """
import sys
from vbg import cli

class Stdout:  # what a signal landing inside stdout's own flush finds: the buffer's lock is held by this thread
    def flush(self):
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")

sys.stdout = Stdout()
cli._exit_now(7)
"""


def test_a_signal_inside_the_exit_flush_still_exits_with_the_runs_code():
    """After the work is done a signal ends vbg with the run's own exit code; when it lands inside
    stdout's own flush, flushing again is a reentrant call (RuntimeError): still that exit code, no
    traceback."""
    proc = subprocess.run([sys.executable, "-c", EXIT_INSIDE_A_FLUSH], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "Traceback" not in proc.stderr


def test_on_windows_a_pipe_whose_reader_left_fails_with_einval_and_counts_as_closed(monkeypatch):
    """`vbg process --json IN -o OUT | findstr done` on Windows: the write after findstr exits fails
    with EINVAL, not EPIPE. That is a reader gone (exit 141, nothing said), not a full disk; on
    Linux EINVAL stays an output error, and so does EINVAL on a terminal."""
    import errno

    from vbg import streams

    einval = OSError(errno.EINVAL, "Invalid argument")
    assert not streams.Broken("stdout", einval).pipe
    monkeypatch.setattr(streams, "_WINDOWS", True)
    assert streams.Broken("stdout", einval).pipe
    assert not streams.Broken("stdout", einval, terminal=True).pipe
    assert not streams.Broken("stdout", OSError(errno.ENOSPC, "No space left on device")).pipe
