"""The person's own colour under a soft alpha (``vbg.compositing.foreground``, used by ``--alpha``
outputs and ``vbg segment --cutout``): its time per frame against the plain RGBA copy it replaced
(the baseline: the frame's RGB as it is), and against the two passes of blur-fusion both at full
size (the paper's form, kept below) whose wide pass vbg runs at a quarter of the size and whose
narrow pass over the soft edge's box only; with each one's edge error, in the same run.

    python -m benchmarks.foreground [--sizes 1280x720,1920x1080] [--repeat 15] [--out benchmarks/out]

The frame: the synthetic person with exact alpha of ``tests/data/people`` (``example03_rgba.png``)
before the room photo of the same folder, scaled to each size (the person's soft edge's box is a
third of the frame). Time: median of ``--repeat`` calls after two warm-up calls. Edge error: the
mean absolute difference, over the edge band (alpha 13..242), between the result laid over white
and the person's true colour laid over white (what an editor shows), in levels.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import machine_info, write_results
from vbg.compositing.foreground import NARROW_R, WIDE_R, ForegroundEstimator

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ROOT / "tests" / "data" / "people"


def scene(w: int, h: int):
    rgba = cv2.cvtColor(cv2.imread(str(PEOPLE / "example03_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    side = h
    rgba = cv2.resize(rgba, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = np.zeros((h, w, 1), np.float32)
    true = np.zeros((h, w, 3), np.float32)
    x0 = (w - side) // 2
    a[:, x0:x0 + side, 0] = rgba[..., 3] / 255
    true[:, x0:x0 + side] = rgba[..., :3]
    room = cv2.resize(cv2.cvtColor(cv2.imread(str(PEOPLE / "background01.jpg")), cv2.COLOR_BGR2RGB), (w, h))
    frame = np.clip(true * a + room * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    alpha = np.clip(a[..., 0] * 255 + 0.5, 0, 255).astype(np.uint8)
    return frame, alpha, true


def full_size(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Both passes at the frame's size (the paper's form; not allocation-free)."""
    i = rgb.astype(np.float32) / 255
    a = (alpha.astype(np.float32) / 255)[..., None]
    f, b = i.copy(), i.copy()
    for r in (WIDE_R, NARROW_R):
        k = (2 * r + 1, 2 * r + 1)
        wa = cv2.blur(a[..., 0], k, borderType=cv2.BORDER_REFLECT)[..., None]
        fb = cv2.blur(f * a, k, borderType=cv2.BORDER_REFLECT) / np.maximum(wa, 1e-4)
        bb = cv2.blur(b * (1 - a), k, borderType=cv2.BORDER_REFLECT) / np.maximum(1 - wa, 1e-4)
        res = i - a * fb - (1 - a) * bb
        f, b = np.clip(fb + a * res, 0, 1), np.clip(bb + (1 - a) * res, 0, 1)
    out = np.where(alpha[..., None] == 255, rgb, (f * 255 + 0.5).astype(np.uint8))
    out[alpha == 0] = 0
    return out


def time_ms(fn, repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def edge_error(out: np.ndarray, alpha: np.ndarray, true: np.ndarray) -> float:
    band = (alpha > 12) & (alpha < 243)
    a = alpha[..., None].astype(np.float32) / 255
    return float(np.abs((a * out + (1 - a) * 255)[band] - (a * true + (1 - a) * 255)[band]).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        frame, alpha, true = scene(w, h)
        rgba = np.empty((h, w, 4), np.uint8)
        est = ForegroundEstimator()

        def plain():
            cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA, dst=rgba)
            cv2.insertChannel(alpha, rgba, 3)

        def vbg_now():
            cv2.cvtColor(est.estimate(frame, alpha), cv2.COLOR_RGB2RGBA, dst=rgba)
            cv2.insertChannel(alpha, rgba, 3)

        def paper():
            cv2.cvtColor(full_size(frame, alpha), cv2.COLOR_RGB2RGBA, dst=rgba)
            cv2.insertChannel(alpha, rgba, 3)

        for name, fn, result in (("plain copy (baseline)", plain, frame),
                                 ("vbg (wide pass at 1/4, narrow over the edge)", vbg_now, est.estimate(frame, alpha)),
                                 ("both passes at full size", paper, full_size(frame, alpha))):
            ms = time_ms(fn, args.repeat)
            err = edge_error(result.astype(np.float32), alpha, true)
            rows.append((size, name, ms, err))
            print(f"{size:10s} {name:46s} {ms:7.1f} ms  edge error {err:5.2f}", flush=True)
    info = machine_info()
    md = ["# The person's own colour under a soft alpha (`vbg.compositing.foreground`)\n",
          f"`python -m benchmarks.foreground --sizes {args.sizes} --repeat {args.repeat}`; {info}\n",
          "| frame | method | ms per frame (median) | edge error, levels |", "|---|---|---|---|"]
    md += [f"| {s} | {n} | {ms:.1f} | {err:.2f} |" for s, n, ms, err in rows]
    write_results(args.out, "foreground", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
