"""The live filter end to end on this machine: a 30 fps clip of a moving person,
paced in real time as the camera, the real threads, and pyvirtualcam's own
Camera with a backend that drops what it is sent (no kernel module needed).

    python -m benchmarks.live [--seconds 12] [--size 1280x720] [--device cpu] [--skip auto] [--out benchmarks/out]

Runs the selfie model and RMBG-1.4 (random init, the exact compute) at
--size 256, each with --skip auto; reports output fps, model ms, share of
frames with a fresh mask, mask age, latency (capture -> the frame sent to the virtual
camera device) p50/p95, per-frame work besides the model, and CPU use. ``--device cuda`` or
``tensorrt`` runs the model (and the naive loop beside it) there and writes
live_<device>.json/.md; without a usable GPU it writes one line saying so.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DROP_BACKEND, drop_backend, machine_info, model_nice, write_results
from benchmarks.gpu import DEVICES, not_run_here


def _clip(path: Path, hw: tuple[int, int]) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import person_clip_frames, write_clip

    return write_clip(path, [f for f, _ in person_clip_frames(120, hw)], fps=30)


def run_case(clip: Path, model: str, size, seconds: float, device: str = "cpu", skip: str = "auto",
             nice: int | None = None) -> dict:
    from vbg.config import LiveConfig, apply
    from vbg.pipeline import LivePipeline

    # strict: a GPU run that fell back to the CPU fails instead of timing the CPU.
    cfg = apply(LiveConfig(), {"source": {"source": str(clip), "loop": True},
                               "model": {"model": model, "size": size, "device": device,
                                         "strict_device": device != "cpu"},
                               "temporal": {"skip": skip},
                               "background": {"blur": 1.0},
                               "output": {"vcam_backend": DROP_BACKEND, "duration": seconds}})
    with drop_backend(), model_nice(nice):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stats = LivePipeline(cfg).run()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    snap = stats.snapshot()
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0)
    snap["cpu_cores_busy"] = cpu
    return snap


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--size", default="1280x720", help="source WxH")
    ap.add_argument("--rmbg-sizes", default="256", help="RMBG-1.4 --size values to run (comma-separated)")
    ap.add_argument("--device", default="cpu", choices=DEVICES, help="where the model runs")
    ap.add_argument("--skip", default="auto", help="vbg --skip for every case (1: a fresh mask on every frame)")
    ap.add_argument("--model-nice", type=int, metavar="N", choices=range(20),
                    help="diagnostic: lower the model threads by nice +N instead of vbg's own choice")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    name = ("live" if args.device == "cpu" else f"live_{args.device}") + (
        f"_nice{args.model_nice}" if args.model_nice is not None else "")
    if not_run_here(args.out, name, args.device, "Live filter end to end", "live table not produced"):
        return 0

    from vbg.models.export import build_rmbg, export_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp) / "person.mp4", (h, w))
        rmbg = export_onnx(build_rmbg(None), Path(tmp) / "rmbg_dyn.onnx", dynamic=True)
        cases = [("selfie", "selfie", None)] + [("rmbg-1.4 random init", str(rmbg), int(v))
                                                for v in args.rmbg_sizes.split(",")]
        for label, model, size in cases:
            snap = run_case(clip, model, size, args.seconds, args.device, args.skip, args.model_nice)
            snap["case"] = label
            snap["size"] = "256x256 (fixed)" if size is None else f"{size}"
            rows.append(snap)
            # The naive per-frame loop with the same model and size, in the same run.
            from benchmarks.baseline import naive_loop
            from vbg.inference import SegmenterConfig, create_segmenter

            with create_segmenter(SegmenterConfig(model=model, size=size, default_size=256, device="cpu")) as seg:
                hw = seg.input_size((h, w))
                if size is not None:
                    snap["size"] = f"{size} (-> {hw[0]}x{hw[1]})"
                path = seg.source.onnx_for(hw)
                spec = seg.source.spec
            bg = np.full((h, w, 3), (0, 177, 64), np.uint8)
            snap["baseline"] = naive_loop(clip, path, hw, spec.mean, spec.std, Path(tmp) / "naive.mp4", bg,
                                          device=args.device)
            print(f"{label}: naive loop {snap['baseline']['fps']:.1f} fps; {snap['out_fps']:.1f} fps out, model {snap['infer_ms_p50']:.1f}/{snap['infer_ms_p95']:.1f} ms, "
                  f"fresh {snap['fresh_share']:.0%}, latency {snap['latency_ms_p50']:.0f}/{snap['latency_ms_p95']:.0f} ms, "
                  f"mask age {snap['mask_age_ms_p50']:.0f}/{snap['mask_age_ms_p95']:.0f} ms, "
                  f"render {snap['render_ms_p50']:.1f} ms, CPU {snap['cpu_cores_busy']:.2f} cores", flush=True)
    info = machine_info()
    where = "" if args.device == "cpu" else f" on {args.device}"
    md = [f"# Live filter end to end{where}\n",
          f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; "
          f"model on {args.device} ({', '.join(rows[0].get('providers', [])) or '?'}); "
          f"onnxruntime {info.get('onnxruntime')}. "
          f"Source: {w}x{h} clip at 30 fps paced in real time (looped), blur background, --skip {args.skip}, "
          f"{args.seconds:g} s per case"
          + (f"; model threads at nice +{args.model_nice} (a diagnostic)" if args.model_nice is not None else "")
          + "; virtual camera = pyvirtualcam with a discarding backend. "
          "Latency = capture to the frame sent to the virtual camera device; mask age = capture of the frame the mask "
          "was computed on to output; render = all per-frame work except the model. p50/p95 in ms.\n",
          "| model | --size | out fps | dropped | model ms | fresh mask | latency | mask age | render ms | CPU (cores) "
          "| naive loop fps | vbg / naive |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["baseline"]["fps"]
        md.append(f"| {r['case']} | {r['size']} | {r['out_fps']:.1f} | {r['dropped']} | "
                  f"{r['infer_ms_p50']:.1f} / {r['infer_ms_p95']:.1f} | "
                  f"{r['fresh_share']:.0%} | {r['latency_ms_p50']:.0f} / {r['latency_ms_p95']:.0f} | "
                  f"{r['mask_age_ms_p50']:.0f} / {r['mask_age_ms_p95']:.0f} | "
                  f"{r['render_ms_p50']:.1f} / {r['render_ms_p95']:.1f} | {r['cpu_cores_busy']:.2f} | "
                  f"{b:.1f} | {r['out_fps'] / b:.1f}x |")
    md.append("\nThe naive loop (`benchmarks/baseline.py`): read a frame, run the same model at the same size, "
              "blend in float numpy, write, one thread, as fast as it goes on the same clip (not paced).")
    js, mdp = write_results(args.out, name, {"machine": info, "device": args.device, "rows": rows},
                            "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
