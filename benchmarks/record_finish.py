"""What a recording that survives ``kill -9`` costs: MP4 written in one-second fragments while
recording and rewritten unfragmented at the end, against the plain MP4 written before, in one run
on this machine.

    python -m benchmarks.record_finish [--seconds 30] [--runs 3] [--rewrite-mb 500] [--out benchmarks/out]

The recorder (``vbg.sinks.recorder.Recorder``, x264 veryfast crf 20, one thread: the live
filter's settings) is sent ``--seconds`` of 1280x720 frames at 30 fps capture times, a person
clip's frames over and over (decoded once, before timing), as fast as the encoder takes them.
Per run: the wall time of the sends, of ``close()`` (the encoder's last frames, and for vbg the
rewrite; the fragmented file and its rewrite take the disk space twice for that moment), and the
file's size. "plain" is the recorder before this change
(``recorder.FRAGMENTED`` emptied); runs alternate, after a warm-up of each.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_results
from benchmarks.live import _clip


@contextlib.contextmanager
def _fragmented(on: bool):
    from vbg.sinks import recorder

    was = recorder.FRAGMENTED
    recorder.FRAGMENTED = was if on else set()
    try:
        yield
    finally:
        recorder.FRAGMENTED = was


def _frames(clip: Path) -> list[np.ndarray]:
    import av

    with av.open(str(clip)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def record(folder: Path, frames: list[np.ndarray], seconds: float) -> dict:
    from vbg.sinks.recorder import Recorder
    from vbg.types import Composite

    out = folder / "call.mp4"
    out.unlink(missing_ok=True)
    h, w = frames[0].shape[:2]
    n = round(seconds * 30)
    t0 = time.perf_counter()
    rec = Recorder(out, w, h, 30.0)
    for i in range(n):
        rec.send(Composite(i, i / 30, frames[i % len(frames)], i, True))
    t1 = time.perf_counter()
    rec.close()
    t2 = time.perf_counter()
    return {"send_s": t1 - t0, "close_s": t2 - t1, "mb": out.stat().st_size / 1e6, "frames": n}


def rewrite_rate(folder: Path, mb: float, runs: int) -> list[float]:
    """Seconds to rewrite a fragmented MP4 of about ``mb`` MB unfragmented (``remux_video``, what
    ``close()`` adds), per run: the file is made once (720p noise, x264 ultrafast: a big file
    fast; stream-copied into fragments as the recorder writes them), then rewritten ``runs``
    times, straight after it was written (its pages cached, as after a recording)."""
    import av

    from vbg.fsutil import NewFile
    from vbg.media.join import remux_video
    from vbg.sinks.recorder import FRAGMENT_OPTIONS

    src, frag = folder / "noise.mp4", folder / "frag.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "18"}
        noise = rng.integers(0, 256, (720 * 3 // 2 + 64, 1280), np.uint8)
        i = size = 0
        while i % 30 or size < mb * 1e6:
            frame = av.VideoFrame.from_ndarray(noise[(i * 7) % 64:][:720 * 3 // 2], format="yuv420p")
            frame.pts = i
            for packet in s.encode(frame):
                size += packet.size
                out.mux(packet)
            i += 1
        out.mux(s.encode(None))
    with av.open(str(src)) as inp, av.open(str(frag), "w", format="mp4", options=dict(FRAGMENT_OPTIONS)) as out:
        v = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = v
                out.mux(packet)
    src.unlink()
    times = []
    for _ in range(runs):
        new = NewFile(folder / "plain.mp4")
        t0 = time.perf_counter()
        with open(frag, "rb") as f:
            remux_video(f, new.sink, "mp4")
        times.append(time.perf_counter() - t0)
        new.commit()
        (folder / "plain.mp4").unlink()
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rewrite-mb", type=float, default=500.0, help="the size of the file whose rewrite is timed")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    rows: dict[str, list[dict]] = {"plain (before)": [], "fragmented + rewrite": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = _frames(_clip(folder / "person.mp4", (720, 1280)))
        for label in rows:  # warm-up: x264, the page cache
            with _fragmented(label != "plain (before)"):
                record(folder, frames, 2.0)
        for _ in range(args.runs):  # alternated, so a slow spell of the machine hits both
            for label in rows:
                with _fragmented(label != "plain (before)"):
                    r = record(folder, frames, args.seconds)
                rows[label].append(r)
                print(f"{label}: send {r['send_s']:.2f} s, close {r['close_s'] * 1000:.0f} ms, {r['mb']:.2f} MB",
                      flush=True)
        rewrites = rewrite_rate(folder, args.rewrite_mb, args.runs)
        frag_mb = (folder / "frag.mp4").stat().st_size / 1e6
        print(f"rewrite of {frag_mb:.0f} MB: " + ", ".join(f"{t:.2f} s" for t in rewrites), flush=True)
    info = machine_info()
    med = {label: {k: statistics.median(r[k] for r in runs) for k in ("send_s", "close_s", "mb")}
           for label, runs in rows.items()}
    md = ["# Finishing a recording: fragmented MP4 rewritten, against plain MP4\n",
          f"Machine: {info['cpu']}, {info['cores']} cores. {args.seconds:g} s of 1280x720 frames (a person clip's, "
          f"looped) at 30 fps capture times, x264 veryfast crf 20 one thread, sent as fast as the encoder takes "
          f"them; {args.runs} runs of each, alternated, after a warm-up; medians.\n",
          "| recorder | send (encode) s | close() ms | file MB |", "|---|---|---|---|"]
    for label, m in med.items():
        md.append(f"| {label} | {m['send_s']:.2f} | {m['close_s'] * 1000:.0f} | {m['mb']:.2f} |")
    plain, vbg = med["plain (before)"], med["fragmented + rewrite"]
    md.append(f"\nThe rewrite: {(vbg['close_s'] - plain['close_s']) * 1000:.0f} ms more in close(), "
              f"{(vbg['close_s'] - plain['close_s']) * 1000 * 60 / args.seconds:.0f} ms per minute recorded.")
    rate = frag_mb / statistics.median(rewrites)
    md.append(f"\nThe rewrite alone, of a {frag_mb:.0f} MB fragmented MP4 (720p noise, x264 ultrafast) just written: "
              f"runs {', '.join(f'{t:.2f}' for t in rewrites)} s, median {statistics.median(rewrites):.2f} s: "
              f"{rate:.0f} MB/s, {1000 / rate:.1f} s per GB.")
    js, mdp = write_results(args.out, "record_finish", {"machine": info, "seconds": args.seconds, "rows": rows,
                                                        "rewrite_mb": frag_mb, "rewrite_s": rewrites},
                            "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
