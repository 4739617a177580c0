"""Model inference alone: RMBG-1.4 (random init: the compute is exact) and the
selfie models on ONNX Runtime, with torch eager as the baseline in the same run.

    python -m benchmarks.inference [--sizes 192,256,320,512] [--repeat 20] [--out benchmarks/out]

Each RMBG size is exported once as a fixed-shape graph (and once as a dynamic
graph, run at every size). Threads: ONNX Runtime's intra-op pool at the given
count with spinning off, as vbg runs it; torch at the same count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, time_call, write_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="192,256,320,512")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch eager baseline")
    ap.add_argument("--int8", default="256", help="sizes also run as a dynamically quantised int8 graph ('' = none)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)

    import torch

    from vbg.inference.onnx_backend import create_session
    from vbg.models.export import build_rmbg, export_onnx
    from vbg.models.spec import SELFIE, SELFIE_LANDSCAPE

    sizes = [int(s) for s in args.sizes.split(",")]
    threads = args.threads
    torch.set_num_threads(threads or torch.get_num_threads())
    rng = np.random.default_rng(0)
    net = build_rmbg(None, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Export everything first: tracing runs torch, whose OpenMP threads spin
        # for a while afterwards and would steal the cores from the timings.
        dyn_path = export_onnx(net, Path(tmp) / "dyn.onnx", dynamic=True)
        fixed_paths = {s: export_onnx(net, Path(tmp) / f"fixed{s}.onnx", size_hw=(s, s)) for s in sizes}
        time.sleep(1.0)
        dyn, _ = create_session(dyn_path, "cpu", threads=threads)
        for s in sizes:
            x = (rng.random((1, 3, s, s), dtype=np.float32) - 0.5)
            fixed_path = fixed_paths[s]
            fixed, _ = create_session(fixed_path, "cpu", threads=threads)
            row = {"model": "rmbg-1.4 (random init)", "size": f"{s}x{s}",
                   "ort_fixed": time_call(lambda: fixed.run(None, {"input": x}), repeat=args.repeat),
                   "ort_dynamic": time_call(lambda: dyn.run(None, {"input": x}), repeat=args.repeat)}
            rows.append(row)
            if str(s) in args.int8.split(","):
                from onnxruntime.quantization import QuantType, quantize_dynamic

                q_path = Path(tmp) / f"int8_{s}.onnx"
                quantize_dynamic(str(fixed_path), str(q_path), weight_type=QuantType.QUInt8)
                q, _ = create_session(q_path, "cpu", threads=threads)
                row["ort_int8"] = time_call(lambda: q.run(None, {"input": x}), repeat=args.repeat)
                q_path.unlink()
            Path(fixed_path).unlink()
            print(f"rmbg {s}x{s}: ORT fixed {row['ort_fixed']['median_ms']:.1f} ms, "
                  f"dynamic {row['ort_dynamic']['median_ms']:.1f} ms"
                  + (f", int8 {row['ort_int8']['median_ms']:.1f} ms" if "ort_int8" in row else ""), flush=True)
    for spec in (SELFIE, SELFIE_LANDSCAPE):
        sess, _ = create_session(spec.bundled_path(), "cpu", threads=threads)
        h, w = spec.fixed_size
        x = rng.random((1, 3, h, w), dtype=np.float32)
        rows.append({"model": spec.name, "size": f"{h}x{w}",
                     "ort_fixed": time_call(lambda: sess.run(None, {"input": x}), repeat=args.repeat * 5)})
        print(f"{spec.name} {h}x{w}: ORT {rows[-1]['ort_fixed']['median_ms']:.2f} ms", flush=True)

    # torch last: its OpenMP pool keeps spinning after each call and would slow
    # every ONNX Runtime measurement taken after it in this process.
    if not args.no_torch:
        for row, s in zip(rows, sizes):
            xt = torch.from_numpy(rng.random((1, 3, s, s), dtype=np.float32) - 0.5)
            with torch.inference_mode():
                row["torch_eager"] = time_call(lambda: net.matte(xt), repeat=max(5, args.repeat // 2))
            print(f"rmbg {s}x{s}: torch eager {row['torch_eager']['median_ms']:.1f} ms", flush=True)
    info = machine_info()
    info["threads"] = threads or "all cores"
    md = ["# Inference alone (ONNX Runtime CPU provider, batch 1)\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; onnxruntime {info.get('onnxruntime')}, "
          f"torch {info.get('torch')}; threads: {info['threads']}, spinning off. "
          f"Median (p95) of {args.repeat} runs after 3 warm-up runs, ms.\n",
          "| model | size | ORT fixed-shape fp32 | ORT dynamic fp32 | ORT int8 (dynamic quant.) | torch eager (baseline) | ORT speed-up |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["ort_fixed"]
        d = r.get("ort_dynamic")
        t = r.get("torch_eager")
        q = r.get("ort_int8")
        md.append(f"| {r['model']} | {r['size']} | {f['median_ms']:.1f} ({f['p95_ms']:.1f}) | "
                  + (f"{d['median_ms']:.1f} ({d['p95_ms']:.1f})" if d else "-") + " | "
                  + (f"{q['median_ms']:.1f} ({q['p95_ms']:.1f})" if q else "-") + " | "
                  + (f"{t['median_ms']:.1f} ({t['p95_ms']:.1f})" if t else "-") + " | "
                  + (f"{t['median_ms'] / f['median_ms']:.2f}x" if t else "-") + " |")
    js, mdp = write_results(args.out, "inference", {"machine": info, "rows": rows}, "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
