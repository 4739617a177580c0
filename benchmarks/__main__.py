"""All of vbg's speed figures in one run: ``python -m benchmarks [--quick | --full]``.

quick (about two minutes on 2 cores): per-stage costs at 720p, inference at
256 (fixed, dynamic, int8) and the selfie models, the live filter end to end
for 8 s per model with the naive loop beside it, offline against the bare
model at 256. full: every stage at 480p/720p/1080p, inference at 192..1024
with torch eager beside it, 20 s live runs, offline at 512 and 1024.

--gpu also runs the inference part on the CUDA and TensorRT providers (at the
plan's sizes; see benchmarks/inference.py) into inference_gpu.json/.md, whose
tables RESULTS.md puts beside the CPU ones. Without a usable GPU that part
writes one "not run" line instead, and the CPU parts are written as usual.

Writes benchmarks/out/<part>.json and .md for each part, and
benchmarks/out/RESULTS.md with all the tables and the machine.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from benchmarks import inference, live, offline, stages
from benchmarks.common import machine_info

QUICK = {
    "stages": ["--repeat", "50", "--sizes", "720p"],
    "inference": ["--sizes", "256", "--int8", "256", "--repeat", "10", "--no-torch"],
    "live": ["--seconds", "8"],
    "offline": ["--frames", "60", "--sizes", "256"],
}
FULL = {
    "stages": ["--repeat", "200"],
    "inference": ["--sizes", "192,256,320,384,512,1024", "--int8", "256,512", "--repeat", "20"],
    "live": ["--seconds", "20", "--rmbg-sizes", "192,256"],
    "offline": ["--frames", "60", "--sizes", "256,512,1024"],
}
PARTS = {"stages": stages, "inference": inference, "live": live, "offline": offline}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about two minutes (default)")
    mode.add_argument("--full", action="store_true", help="every size and mode (10-20 minutes on 2 cores)")
    ap.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("--gpu", action="store_true",
                    help="also time inference on the CUDA and TensorRT providers (needs an NVIDIA GPU)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    plan = FULL if args.full else QUICK
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"--only {','.join(unknown)}: not a part; use some of {','.join(PARTS)}")
    t0 = time.monotonic()
    written = []
    for name in parts:
        print(f"== {name}", flush=True)
        PARTS[name].main([*plan[name], "--out", str(args.out)])
        written.append(name)
        if name == "inference" and args.gpu:
            written.append(run_gpu_inference(plan, args.out))
    if args.gpu and "inference" not in parts:
        written.append(run_gpu_inference(plan, args.out))
    info = machine_info()
    command = f"python -m benchmarks {'--full' if args.full else '--quick'}{' --gpu' if args.gpu else ''}"
    lines = [f"# vbg benchmark results ({'full' if args.full else 'quick'})\n",
             (f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; "
              f"Python {info['python']}; onnxruntime {info.get('onnxruntime')} "
              f"(build providers: {', '.join(info.get('ort_build_providers', []))}); torch {info.get('torch')}. "
              f"Command: `{command}`; took {time.monotonic() - t0:.0f} s.\n")]
    for name in written:
        md = args.out / f"{name}.md"
        if md.is_file():
            lines.append(demote_headings(md.read_text()))
    (args.out / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'RESULTS.md'} (and one .json/.md per part)")
    return 0


def run_gpu_inference(plan: dict, out: Path) -> str:
    """The inference part on CUDA and TensorRT at the plan's sizes; its CPU-only
    options (int8 graphs, torch eager) do not apply. Returns the part's name."""
    print("== inference on the GPU", flush=True)
    args = list(plan["inference"])
    sizes = args[args.index("--sizes") + 1]
    repeat = args[args.index("--repeat") + 1]
    inference.main(["--sizes", sizes, "--repeat", repeat, "--int8", "", "--no-torch",
                    "--device", "cuda,tensorrt", "--out", str(out)])
    return "inference_gpu"


def demote_headings(md: str) -> str:
    """Every Markdown heading one level down, so each part sits under RESULTS.md's title."""
    return re.sub(r"(?m)^(#{1,5}) ", r"#\1 ", md)


if __name__ == "__main__":
    raise SystemExit(main())
