"""`vbg process` throughput against the bare model at the same size, in one run.

    python -m benchmarks.offline [--frames 24] [--device cpu] [--out benchmarks/out]

For each model (selfie; RMBG-1.4 random init, the exact compute, at 512 and
1024) on a 1280x720 clip of a moving person: the bare model's fps (ONNX
Runtime on the already-preprocessed input, back to back) and vbg process's
fps (decode, model, centred smoothing, guided upsampling, compositing,
H.264 encode with audio copy), measured in the same process one after the
other. ``--device cuda`` or ``tensorrt`` runs both there (the bare model
through the segmenter's own path: I/O binding on a GPU) and writes
offline_<device>.json/.md; without a usable GPU it writes one line saying so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, time_call, write_results
from benchmarks.gpu import DEVICES, probe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--device", default="cpu", choices=DEVICES, help="where the model runs")
    args = ap.parse_args(argv)
    name = "offline" if args.device == "cpu" else f"offline_{args.device}"
    note = probe(args.device, what="offline table not produced")
    if note is not None:
        print(note, flush=True)
        js, mdp = write_results(args.out, name, {"machine": machine_info(), "device": args.device, "note": note},
                                f"# Offline: vbg process on {args.device}\n\n**Not run**: {note}.\n")
        print(f"wrote {js} and {mdp}")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import person_clip_frames, write_clip

    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.models.export import build_rmbg, export_onnx
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "clip.mp4", [f for f, _ in person_clip_frames(args.frames, (720, 1280))], fps=30)
        dyn = export_onnx(build_rmbg(None), tmp / "rmbg.onnx", dynamic=True)
        cases = [("selfie", "selfie", None)] + [("rmbg-1.4 random init", str(dyn), int(s))
                                                for s in args.sizes.split(",")]
        frame = next(person_clip_frames(1, (720, 1280)))[0]
        for label, model, size in cases:
            # strict: a GPU run that fell back to the CPU fails instead of timing the CPU.
            scfg = SegmenterConfig(model=model, size=size, device=args.device, strict_device=args.device != "cpu")
            with create_segmenter(scfg) as seg:
                hw = seg.input_size((720, 1280))
                x = seg._preprocessor(hw, seg._entry(hw)[3])(frame)  # the model's own input, prepared once
                bare = time_call(lambda: seg._infer(hw, x), warmup=2, repeat=max(5, min(args.frames, 20)))
                proc = FileProcessor(ProcessConfig(model=scfg), seg)
                t0 = time.monotonic()
                res = proc.process(clip, tmp / f"out-{label.split()[0]}-{size}.mp4",
                                   Progress(label, None, mode="quiet", stream=open("/dev/null", "w")))
                wall = time.monotonic() - t0
            row = {"model": label, "size": f"{hw[0]}x{hw[1]}", "providers": seg.providers,
                   "bare_ms": bare["median_ms"], "bare_fps": 1000.0 / bare["median_ms"],
                   "vbg_fps": res.frames / wall, "frames": res.frames}
            row["ratio"] = row["vbg_fps"] / row["bare_fps"]
            rows.append(row)
            print(f"{label} {row['size']}: bare {row['bare_fps']:.1f} fps ({row['bare_ms']:.1f} ms), "
                  f"vbg process {row['vbg_fps']:.1f} fps = {row['ratio']:.0%}", flush=True)
    info = machine_info()
    where = "" if args.device == "cpu" else f" on {args.device}"
    md = [f"# Offline: vbg process against the bare model{where}\n",
          f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; model on "
          f"{args.device} ({', '.join(rows[0]['providers'])}); onnxruntime {info.get('onnxruntime')}. "
          f"{args.frames} frames of a 1280x720 clip; bare = ONNX Runtime on a prepared input (median); "
          "vbg process = wall time of the whole file (decode, model, centred smoothing, guided "
          "upsampling, blur compositing, H.264 balanced encode).\n",
          "| model | inference size | bare model fps | vbg process fps | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['size']} | {r['bare_fps']:.2f} | {r['vbg_fps']:.2f} | {r['ratio']:.0%} |")
    js, mdp = write_results(args.out, name, {"machine": info, "device": args.device, "rows": rows},
                            "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
