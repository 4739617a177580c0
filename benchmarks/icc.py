"""A photo with a colour profile (a phone's Display P3) converted to sRGB: time and peak memory of
``vbg.icc.to_srgb`` (in strips of rows) against the whole-image conversion it replaced (the
baseline, kept below as it was), in the same run.

    python -m benchmarks.icc [--sizes 4000x3000,8064x6048] [--repeat 3] [--out benchmarks/out]

Per size and method: a fresh Python process makes a random RGB photo of that size, converts a
strip once (warm-up), then the whole photo ``--repeat`` times; the time is the median, the peak
memory is the process's peak resident size above what it held before the first whole
conversion (the photo itself and the output included). The profile is the Display P3 one of
``tests/data/phone.heic``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import cv2, numpy as np
from vbg.icc import SRGB_D50, matrix_shaper, srgb_encode, to_srgb
from vbg.images import icc_profile

def whole(rgb, icc):  # the conversion before strips (vbg.icc.to_srgb until 2026-12-07)
    matrix, curves = matrix_shaper(icc)
    lin = np.empty(rgb.shape, np.float32)
    for ch in range(3):
        lin[..., ch] = curves[:, ch].astype(np.float32)[rgb[..., ch]]
    out = cv2.transform(lin, (np.linalg.inv(SRGB_D50) @ matrix).astype(np.float32))
    s = np.arange(4096) / 4095
    table = np.clip(np.round(255 * srgb_encode(s * s)), 0, 255).astype(np.uint8)
    return table[(np.sqrt(np.clip(out, 0, 1)) * 4095 + 0.5).astype(np.uint16)]

method, w, h, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
convert = to_srgb if method == "strips" else whole
icc = icc_profile(sys.argv[5])
rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
convert(rgb[:16], icc)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeat):
    t = time.perf_counter()
    out = convert(rgb, icc)
    times.append(time.perf_counter() - t)
    del out
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": sorted(times)[len(times) // 2], "peak_mb": (peak - before) / 1024}))
"""


def one(method: str, w: int, h: int, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, method, str(w), str(h), str(repeat),
                           str(ROOT / "tests/data/phone.heic")], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4000x3000,8064x6048", help="comma-separated WxH")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    rows: dict[str, dict[str, dict]] = {}
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        for method in ("whole image (baseline)", "strips"):
            r = one("strips" if method == "strips" else "whole", w, h, args.repeat)
            rows.setdefault(size, {})[method] = r
            print(f"{size:10s} {method:24s} {r['s']:6.2f} s  peak +{r['peak_mb']:6.0f} MB", flush=True)
    info = machine_info()
    md = ["# A Display P3 photo converted to sRGB (`vbg.icc.to_srgb`)\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}. Each method in a fresh "
          f"process; time: median of {args.repeat} conversions after a warm-up; peak: the process's peak resident "
          "memory above what it held before (the output included).\n",
          "| photo | method | time, s | peak memory, MB |", "|---|---|---|---|"]
    for size, methods in rows.items():
        for method, r in methods.items():
            md.append(f"| {size} | {method} | {r['s']:.2f} | {r['peak_mb']:.0f} |")
    write_results(args.out, "icc", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
