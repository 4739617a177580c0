"""A live video background's CPU: a 60 fps clip behind a 30 fps camera, with the frames no output
frame shows left unconverted and the thread held while nothing renders (``VideoBackground``'s
default), against every frame converted, rendered or not (``skip_unseen=False``, the baseline),
in the same run.

    python -m benchmarks.video_background [--seconds 4] [--repeat 3] [--sizes 1080p,2160p] [--out benchmarks/out]

Per clip size: a 2 s H.264 clip at 60 fps (moving synthetic picture, made here with PyAV), looped
as the background of a 1280x720 output; the renderer is this process's main thread calling
``render`` at 30 fps in real time (as the live compositor does once a frame), the decoder thread
is the real one. After 1 s of warm-up, CPU = the process's CPU time (user + system, every
thread) over ``--seconds`` of wall time, in % of one core; the two modes alternate ``--repeat``
times and the medians are written. "converted" and "left out" count the frames the thread fitted
to the output size and those it only decoded, per second. Then, 1 s after the last render, the
CPU over ``--seconds`` more with no render at all (the effect off, another background picked,
nobody watching).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import PacedRenders, machine_info, moving_pictures, process_cpu_s, write_h264, write_results

SIZES = {"1080p": (1080, 1920), "2160p": (2160, 3840)}
OUT_HW = (720, 1280)
CLIP_FPS, RENDER_FPS = 60, 30


def make_clip(path: Path, hw: tuple[int, int], seconds: float = 2.0) -> Path:
    h, w = hw
    return write_h264(path, moving_pictures(w, h, round(seconds * CLIP_FPS)), w, h, CLIP_FPS)


def one_run(clip: Path, skip_unseen: bool, seconds: float) -> dict:
    from vbg.compositing import VideoBackground

    bg = VideoBackground(clip, skip_unseen=skip_unseen)
    bg.prepare(OUT_HW)
    try:
        renders = PacedRenders(bg, OUT_HW, RENDER_FPS)
        renders.until(renders.tick + 1.0)  # warm-up: the clip opened, the renders' rate known
        t0, cpu0, conv0, skip0 = time.monotonic(), process_cpu_s(), bg.frames_published, bg.frames_skipped
        renders.until(t0 + seconds)
        wall, cpu = time.monotonic() - t0, process_cpu_s() - cpu0
        got = {"cpu_pct": 100 * cpu / wall, "converted_per_s": (bg.frames_published - conv0) / wall,
               "skipped_per_s": (bg.frames_skipped - skip0) / wall}
        time.sleep(1.0)  # then no render at all (the effect off, another background picked, unwatched)
        t1, cpu1 = time.monotonic(), process_cpu_s()
        time.sleep(seconds)
        got["unrendered_cpu_pct"] = 100 * (process_cpu_s() - cpu1) / (time.monotonic() - t1)
        return got
    finally:
        bg.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1080p,2160p", help="comma-separated: " + ",".join(SIZES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)

    rows: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            clip = make_clip(Path(tmp) / f"{size}.mp4", SIZES[size])
            runs: dict[str, list[dict]] = {"left out": [], "every frame (baseline)": []}
            for _ in range(args.repeat):
                runs["left out"].append(one_run(clip, True, args.seconds))
                runs["every frame (baseline)"].append(one_run(clip, False, args.seconds))
            for mode, got in runs.items():
                med = {k: statistics.median(r[k] for r in got) for k in got[0]}
                rows.setdefault(size, {})[mode] = med
                print(f"{size:6s} {mode:24s} CPU {med['cpu_pct']:5.1f}% of a core, converted "
                      f"{med['converted_per_s']:4.1f}/s, left out {med['skipped_per_s']:4.1f}/s; "
                      f"no render: {med['unrendered_cpu_pct']:5.1f}%", flush=True)

    info = machine_info()
    md = ["# A live video background's CPU: frames no output frame shows left unconverted\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}. A {CLIP_FPS} fps H.264 clip "
          f"behind a {OUT_HW[1]}x{OUT_HW[0]} output rendered at {RENDER_FPS} fps in real time; process CPU over "
          f"{args.seconds:g} s after 1 s of warm-up, median of {args.repeat} alternating runs per mode.\n",
          "| clip | mode | CPU, % of one core | frames converted /s | frames only decoded /s "
          "| CPU with no render, % of one core |",
          "|---|---|---|---|---|---|"]
    for size, modes in rows.items():
        for mode, r in modes.items():
            md.append(f"| {size} | {mode} | {r['cpu_pct']:.1f} | {r['converted_per_s']:.1f} | "
                      f"{r['skipped_per_s']:.1f} | {r['unrendered_cpu_pct']:.1f} |")
    write_results(args.out, "video_background", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
