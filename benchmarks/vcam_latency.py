"""Latency to the virtual camera: frames sent as they come against frames sent on the sink's own
clock's ticks, in one run on this machine.

    python -m benchmarks.vcam_latency [--seconds 12] [--runs 3] [--out benchmarks/out]

The live filter on a 1280x720 clip paced at 30 fps (the selfie model, blur background), the
virtual camera pyvirtualcam with a discarding backend. Latency = capture to the frame sent to the
device, p50/p95 per run and the median over runs. "own clock" is the pacing before this change
(``virtual_camera.EARLY`` made infinite: every composite waits for the sink's next tick, whose phase
against the camera's frames is whatever it happens to be in that run); "as they come" is vbg's.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import machine_info, write_results
from benchmarks.live import _clip, run_case


@contextlib.contextmanager
def _pacing(as_they_come: bool):
    from vbg.sinks import virtual_camera

    early, hold = virtual_camera.EARLY, virtual_camera.HOLD
    if not as_they_come:
        virtual_camera.EARLY, virtual_camera.HOLD = math.inf, 0.0
    try:
        yield
    finally:
        virtual_camera.EARLY, virtual_camera.HOLD = early, hold


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    rows: dict[str, list[tuple[float, float]]] = {"own clock": [], "as they come": []}
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp) / "person.mp4", (720, 1280))
        run_case(clip, "selfie", None, 3.0)  # warm-up: the model's session, the page cache
        for _ in range(args.runs):  # alternated, so a slow spell of the machine hits both
            for label in rows:
                with _pacing(label == "as they come"):
                    snap = run_case(clip, "selfie", None, args.seconds)
                rows[label].append((snap["latency_ms_p50"], snap["latency_ms_p95"]))
                print(f"{label}: latency {snap['latency_ms_p50']:.1f}/{snap['latency_ms_p95']:.1f} ms, "
                      f"{snap['out_fps']:.1f} fps out", flush=True)
    info = machine_info()
    md = ["# Latency to the virtual camera\n",
          f"Machine: {info['cpu']}, {info['cores']} cores. 1280x720 clip paced at 30 fps, the selfie model, blur "
          f"background, {args.seconds:g} s a run, {args.runs} runs of each, alternated, after a 3 s warm-up. "
          "Latency = capture to the frame sent to the virtual camera device, ms.\n",
          "| pacing | runs (p50 / p95) | median p50 / p95 |", "|---|---|---|"]
    for label, runs in rows.items():
        each = ", ".join(f"{a:.0f} / {b:.0f}" for a, b in runs)
        md.append(f"| {label} | {each} | {statistics.median(a for a, _ in runs):.0f} / "
                  f"{statistics.median(b for _, b in runs):.0f} |")
    js, mdp = write_results(args.out, "vcam_latency", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
