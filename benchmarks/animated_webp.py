"""An animated WebP background: its start-up, the memory its frames take, and its CPU while live,
against the same loop as an H.264 video background (``VideoBackground``), in the same run.

    python -m benchmarks.animated_webp [--seconds 4] [--repeat 3] [--sizes 480x270,1280x720] [--out benchmarks/out]

Per size: a 4 s loop at 25 fps (100 frames of a moving synthetic picture), written here as a
lossy animated WebP (OpenCV, quality 80, as GIPHY-like files are) and as an H.264 mp4 (PyAV,
CRF 23). "start-up" is ``background_from_options`` + ``prepare`` (for the WebP: every frame
decoded; for the video: its first frame opened, then its thread started), median of
``--repeat``. "frames kept" is the WebP's decoded frames' bytes (the video keeps three output
buffers). CPU: the background rendered into a 1280x720 output at 30 fps in real time on this
process's main thread (as the live compositor calls it), the process's CPU time (user + system,
every thread) over ``--seconds`` after 1 s of warm-up, in % of one core; the two kinds alternate
``--repeat`` times and the medians are written. Needs OpenCV 4.12 or later (its WebP animation
reader).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks.common import PacedRenders, machine_info, moving_pictures, process_cpu_s, write_h264, write_results

OUT_HW = (720, 1280)
FPS, FRAMES, RENDER_FPS = 25, 100, 30


def make_webp(path: Path, w: int, h: int) -> Path:
    anim = cv2.Animation()
    anim.frames = [rgb[:, :, ::-1].copy() for rgb in moving_pictures(w, h, FRAMES)]
    anim.durations = [1000 // FPS] * FRAMES
    anim.loop_count = 0
    if not cv2.imwriteanimation(str(path), anim, [cv2.IMWRITE_WEBP_QUALITY, 80]):
        raise SystemExit(f"OpenCV {cv2.__version__} cannot write an animated WebP")
    return path


def one_run(path: Path, seconds: float) -> dict:
    from vbg.compositing import background_from_options

    t = time.perf_counter()
    bg = background_from_options(str(path), live=True)
    bg.prepare(OUT_HW)
    started = time.perf_counter() - t
    try:
        kept = sum(f.nbytes for f in getattr(bg, "_frames", []))
        renders = PacedRenders(bg, OUT_HW, RENDER_FPS)
        renders.until(renders.tick + 1.0)  # warm-up
        t0, cpu0 = time.monotonic(), process_cpu_s()
        renders.until(t0 + seconds)
        return {"startup_ms": 1000 * started, "kept_mb": kept / 2**20,
                "cpu_pct": 100 * (process_cpu_s() - cpu0) / (time.monotonic() - t0)}
    finally:
        bg.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="480x270,1280x720", help="comma-separated WxH")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)

    rows: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            files = {"animated WebP": make_webp(Path(tmp) / f"{size}.webp", w, h),
                     "H.264 video (baseline)": write_h264(Path(tmp) / f"{size}.mp4", moving_pictures(w, h, FRAMES),
                                                          w, h, FPS)}
            runs: dict[str, list[dict]] = {kind: [] for kind in files}
            for _ in range(args.repeat):
                for kind, path in files.items():
                    runs[kind].append(one_run(path, args.seconds))
            for kind, got in runs.items():
                med = {k: statistics.median(r[k] for r in got) for k in got[0]}
                med["file_kb"] = files[kind].stat().st_size / 1024
                rows.setdefault(size, {})[kind] = med
                print(f"{size:9s} {kind:22s} file {med['file_kb']:7.0f} KB, start-up {med['startup_ms']:6.1f} ms, "
                      f"frames kept {med['kept_mb']:5.1f} MB, CPU {med['cpu_pct']:5.1f}% of a core", flush=True)

    info = machine_info()
    md = ["# An animated WebP background against the same loop as an H.264 video background\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; OpenCV {cv2.__version__}. "
          f"A {FRAMES / FPS:g} s loop at {FPS} fps behind a {OUT_HW[1]}x{OUT_HW[0]} output rendered at "
          f"{RENDER_FPS} fps in real time; start-up and CPU are medians of {args.repeat} alternating runs (CPU over {args.seconds:g} s "
          "after 1 s of warm-up).\n",
          "| loop | background | file, KB | start-up, ms | frames kept, MB | CPU, % of one core |",
          "|---|---|---|---|---|---|"]
    for size, kinds in rows.items():
        for kind, r in kinds.items():
            md.append(f"| {size} | {kind} | {r['file_kb']:.0f} | {r['startup_ms']:.1f} | {r['kept_mb']:.1f} | "
                      f"{r['cpu_pct']:.1f} |")
    write_results(args.out, "animated_webp", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
