"""Model inference alone: RMBG-1.4 (random init: the compute is exact) and the
selfie models on ONNX Runtime, with torch eager as the baseline in the same run.

    python -m benchmarks.inference [--sizes 192,256,320,512] [--repeat 20] [--out benchmarks/out]
                                   [--device cpu|cuda|tensorrt[,...]]

Each RMBG size is exported once as a fixed-shape graph (and once as a dynamic
graph, run at every size). Threads: ONNX Runtime's intra-op pool at the given
count with spinning off, as vbg runs it; torch at the same count.

``--device cpu`` (the default) writes inference.json/.md. ``cuda`` and
``tensorrt`` write inference_gpu.json/.md: CUDA with fp32 and fp16 graphs, each
timed with plain ``session.run`` (host arrays in and out), with I/O binding as
vbg's live filter runs it (input copied into a device OrtValue, output copied
back once) and with I/O binding on device memory only (the compute alone);
TensorRT with fp16 kernels and an engine + timing cache in a temporary folder,
the first session's engine build and a second session's cached load reported
apart from the warm medians. Where ONNX Runtime cannot run the asked provider
(no GPU, no CUDA libraries) one line says so, it is recorded in the JSON and
Markdown, and no GPU table is made: nothing is timed on the CPU in its place.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, time_call, write_results
from benchmarks.gpu import NoGpu, open_session, parse_devices, probe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="192,256,320,512")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch eager baseline")
    ap.add_argument("--int8", default="256", help="sizes also run as a dynamically quantised int8 graph ('' = none)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--device", default="cpu",
                    help="cpu, cuda, tensorrt or a comma list (cuda,tensorrt): which tables to make")
    args = ap.parse_args(argv)
    try:
        devices = parse_devices(args.device)
    except ValueError as e:
        ap.error(str(e))
    on_cpu = "cpu" in devices
    gpu_devices = [d for d in devices if d != "cpu"]
    gpu = {"rows": [], "notes": []}
    # TensorRT needs CUDA too: one look (a session on the bundled selfie graph)
    # says whether any GPU table can be made, before exporting graphs for it.
    note = probe("cuda") if gpu_devices else None
    if note is not None:
        print(note, flush=True)
        gpu["notes"] = [{"device": d, "note": note} for d in gpu_devices]
    run_gpu = bool(gpu_devices) and note is None
    if not on_cpu and not run_gpu:
        write_gpu_results(args.out, gpu, gpu_devices, args.threads)
        return 0

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
        dyn_path = export_onnx(net, Path(tmp) / "dyn.onnx", dynamic=True) if on_cpu else None
        fixed_paths = {s: export_onnx(net, Path(tmp) / f"fixed{s}.onnx", size_hw=(s, s))
                       for s in (sizes if on_cpu or run_gpu else ())}
        time.sleep(1.0)
        dyn, _ = create_session(dyn_path, "cpu", threads=threads) if on_cpu else (None, None)
        for s in sizes if on_cpu else ():
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
            if not run_gpu:
                Path(fixed_path).unlink()
            print(f"rmbg {s}x{s}: ORT fixed {row['ort_fixed']['median_ms']:.1f} ms, "
                  f"dynamic {row['ort_dynamic']['median_ms']:.1f} ms"
                  + (f", int8 {row['ort_int8']['median_ms']:.1f} ms" if "ort_int8" in row else ""), flush=True)
        for spec in (SELFIE, SELFIE_LANDSCAPE) if on_cpu else ():
            sess, _ = create_session(spec.bundled_path(), "cpu", threads=threads)
            h, w = spec.fixed_size
            x = rng.random((1, 3, h, w), dtype=np.float32)
            rows.append({"model": spec.name, "size": f"{h}x{w}",
                         "ort_fixed": time_call(lambda: sess.run(None, {"input": x}), repeat=args.repeat * 5)})
            print(f"{spec.name} {h}x{w}: ORT {rows[-1]['ort_fixed']['median_ms']:.2f} ms", flush=True)
        # After the CPU timings: the GPU part exports fp16 graphs (torch tracing, spinning threads).
        if run_gpu:
            gpu_part(gpu, gpu_devices, net, fixed_paths, Path(tmp), repeat=args.repeat, threads=threads)

    if gpu_devices:
        write_gpu_results(args.out, gpu, gpu_devices, threads)
    if not on_cpu:
        return 0
    info = machine_info()
    info["threads"] = threads or "all cores"

    # torch last: its OpenMP pool keeps spinning after each call and would slow
    # every ONNX Runtime measurement taken after it in this process.
    if not args.no_torch:
        for row, s in zip(rows, sizes):
            xt = torch.from_numpy(rng.random((1, 3, s, s), dtype=np.float32) - 0.5)
            with torch.inference_mode():
                row["torch_eager"] = time_call(lambda: net.matte(xt), repeat=max(5, args.repeat // 2))
            print(f"rmbg {s}x{s}: torch eager {row['torch_eager']['median_ms']:.1f} ms", flush=True)
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


GPU_WARMUP = 10  # the first CUDA runs pick cuDNN algorithms and grow the memory arena


def _np_type(ort_type: str):
    return np.float16 if "float16" in ort_type else np.float32


def on_device_runner(sess, x: np.ndarray, device: str = "cuda"):
    """A no-argument call that runs ``sess`` with I/O binding, the input put on
    ``device`` once beforehand and the output left there: the compute alone."""
    import onnxruntime as ort

    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(inp.name, x_dev)
    if all(isinstance(d, int) for d in out.shape):
        y_dev = ort.OrtValue.ortvalue_from_shape_and_type(list(out.shape), _np_type(out.type), device, 0)
        binding.bind_ortvalue_output(out.name, y_dev)
    else:
        y_dev = None
        binding.bind_output(out.name, device, 0)

    def run(_keep=(x_dev, y_dev)):  # the device buffers live as long as the call
        sess.run_with_iobinding(binding)
    return run


def _timings(sess, x: np.ndarray, repeat: int, *, host_binding: bool) -> dict:
    from vbg.inference.onnx_backend import BoundRunner

    inp, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    t = {"run": time_call(lambda: sess.run([out], {inp: x}), warmup=GPU_WARMUP, repeat=repeat)}
    if host_binding:
        bound = BoundRunner(sess, inp, out, x.shape, x.dtype, device="cuda")
        t["iobinding_host"] = time_call(lambda: bound(x), warmup=GPU_WARMUP, repeat=repeat)
    t["iobinding_device"] = time_call(on_device_runner(sess, x), warmup=GPU_WARMUP, repeat=repeat)
    return t


def gpu_part(gpu: dict, devices: list[str], net, fixed_paths: dict, tmp: Path, *,
             repeat: int, threads: int | None) -> None:
    """Fills ``gpu["rows"]``, or ``gpu["notes"]`` with the one-line reason a
    device was not timed (printed too). A GPU is fast: five times the CPU repeat."""
    repeat = max(repeat * 5, 5)
    for device in devices:
        try:
            (_cuda_rows if device == "cuda" else _tensorrt_rows)(gpu["rows"], net, fixed_paths, tmp,
                                                                  repeat=repeat, threads=threads)
        except NoGpu as e:
            note = str(e)
            print(note, flush=True)
            if note.startswith("no usable CUDA GPU"):  # TensorRT runs on CUDA: one line says it for both
                gpu["notes"].extend({"device": d, "note": note} for d in devices[devices.index(device):])
                return
            gpu["notes"].append({"device": device, "note": note})


def _cuda_rows(rows: list, net, fixed_paths: dict, tmp: Path, *, repeat: int, threads: int | None) -> None:
    from vbg.models.export import export_onnx

    sizes = list(fixed_paths)
    open_session(fixed_paths[sizes[0]], "cuda", threads=threads)  # no GPU: say so before exporting more
    fp16_paths = {s: export_onnx(net, tmp / f"fixed{s}_fp16.onnx", size_hw=(s, s), fp16=True) for s in sizes}
    time.sleep(1.0)
    rng = np.random.default_rng(1)
    for s in sizes:
        x32 = rng.random((1, 3, s, s), dtype=np.float32) - 0.5
        for precision, path in (("fp32", fixed_paths[s]), ("fp16", fp16_paths[s])):
            sess = open_session(path, "cuda", threads=threads)
            x = x32.astype(np.float16) if precision == "fp16" else x32
            row = {"device": "cuda", "model": "rmbg-1.4 (random init)", "size": f"{s}x{s}",
                   "precision": precision, "providers": sess.get_providers(),
                   **_timings(sess, x, repeat, host_binding=True)}
            rows.append(row)
            del sess
            print(f"cuda rmbg {s}x{s} {precision}: session.run {row['run']['median_ms']:.2f} ms, "
                  f"I/O binding host {row['iobinding_host']['median_ms']:.2f} ms, "
                  f"on device {row['iobinding_device']['median_ms']:.2f} ms", flush=True)
        Path(fp16_paths[s]).unlink()


def _tensorrt_rows(rows: list, net, fixed_paths: dict, tmp: Path, *, repeat: int, threads: int | None) -> None:
    cache = tmp / "trt-cache"
    rng = np.random.default_rng(2)
    for s, path in fixed_paths.items():
        x = rng.random((1, 3, s, s), dtype=np.float32) - 0.5
        first = {}
        for label in ("build", "cached"):  # the second session finds the engine in the cache
            t0 = time.perf_counter()
            sess = open_session(path, "tensorrt", threads=threads, cache_dir=cache, fp16=True)
            sess.run(None, {sess.get_inputs()[0].name: x})
            first[label] = time.perf_counter() - t0
            if label == "build":
                del sess
        row = {"device": "tensorrt", "model": "rmbg-1.4 (random init)", "size": f"{s}x{s}",
               "precision": "fp32 graph, fp16 kernels", "providers": sess.get_providers(),
               "first_session_s": first["build"], "cached_session_s": first["cached"],
               "cache_files": sorted(p.name for p in cache.iterdir()) if cache.is_dir() else [],
               **_timings(sess, x, repeat, host_binding=False)}
        rows.append(row)
        del sess
        print(f"tensorrt rmbg {s}x{s}: engine build {row['first_session_s']:.1f} s, cached "
              f"{row['cached_session_s']:.1f} s; session.run {row['run']['median_ms']:.2f} ms, "
              f"on device {row['iobinding_device']['median_ms']:.2f} ms", flush=True)


def write_gpu_results(out: Path, gpu: dict, devices: list[str], threads: int | None) -> None:
    """inference_gpu.json/.md: the GPU rows, or the note saying why there are none."""
    info = machine_info()
    info["threads"] = threads or "all cores"
    js, mdp = write_results(out, "inference_gpu", {"machine": info, "devices": devices, **gpu},
                            gpu_markdown(gpu, devices, info))
    print(f"wrote {js} and {mdp}")


def _ms(t: dict | None) -> str:
    return f"{t['median_ms']:.2f} ({t['p95_ms']:.2f})" if t else "-"


def gpu_markdown(gpu: dict, devices: list[str], info: dict) -> str:
    runs = next((r["run"]["runs"] for r in gpu["rows"]), None)
    md = ["# Inference on the GPU (ONNX Runtime CUDA and TensorRT providers, batch 1)\n",
          (f"GPU: {info.get('gpu') or 'none found'}; CPU {info['cpu']}, {info['cores']} cores; "
           f"onnxruntime {info.get('onnxruntime')}; asked for: {', '.join(devices)}."
           + (f" Median (p95) of {runs} runs after {GPU_WARMUP} warm-up runs, ms." if runs else "") + "\n")]
    for note in dict.fromkeys(n["note"] for n in gpu["notes"]):
        md.append(f"**Not run**: {note}.\n")
    cuda = [r for r in gpu["rows"] if r["device"] == "cuda"]
    if cuda:
        md += ["## CUDA provider\n",
               ("session.run: host arrays in and out, copied by ONNX Runtime on every call. "
                "I/O binding, host in/out: the input copied into a preallocated device OrtValue and the output "
                "copied back once per run, as vbg runs a GPU session. I/O binding, on device: input already on "
                "the GPU and output left there, the compute alone.\n"),
               ("| model | size | graph | session.run | I/O binding, host in/out | I/O binding, on device "
                "| gain of I/O binding (host in/out) |"),
               "|---|---|---|---|---|---|---|"]
        for r in cuda:
            md.append(f"| {r['model']} | {r['size']} | {r['precision']} | {_ms(r['run'])} | "
                      f"{_ms(r['iobinding_host'])} | {_ms(r['iobinding_device'])} | "
                      f"{r['run']['median_ms'] / r['iobinding_host']['median_ms']:.2f}x |")
        md.append("")
    trt = [r for r in gpu["rows"] if r["device"] == "tensorrt"]
    if trt:
        md += ["## TensorRT provider (fp16 kernels, engine and timing cache)\n",
               ("First session: session creation and the first run, which build the engine; cached: a second "
                "session on the same graph, which loads it from the engine cache.\n"),
               ("| model | size | first session + run (engine build), s | cached session + run, s "
                "| session.run | I/O binding, on device |"),
               "|---|---|---|---|---|---|"]
        for r in trt:
            md.append(f"| {r['model']} | {r['size']} | {r['first_session_s']:.1f} | {r['cached_session_s']:.1f} | "
                      f"{_ms(r['run'])} | {_ms(r['iobinding_device'])} |")
        md.append("")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
