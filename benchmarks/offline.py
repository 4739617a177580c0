"""`vbg process` throughput against the bare model at the same size, in one run.

    python -m benchmarks.offline [--frames 90] [--sizes 256,512] [--qualities balanced,fast]
                                 [--workers auto] [--device cpu] [--encoders x264,nvenc]
                                 [--hdr] [--out benchmarks/out]

For each model (selfie; RMBG-1.4 random init, the exact compute, at 512 and
1024) on a 1280x720 clip (--source WxH) of a moving person: the bare model's fps (ONNX
Runtime on the already-preprocessed input, back to back) and vbg process's
fps (decode, model, centred smoothing, upsampling, compositing, H.264
encode), measured in the same process one after the other. On a CPU vbg
process may run two sessions on alternate frames (--workers auto measures
which pays), so with two the bare model is also timed that way (both sessions
back to back in parallel): the table gives the ratio to both. ``--device cuda`` or ``tensorrt`` runs both there (the bare model
through the segmenter's own path: I/O binding on a GPU) and writes
offline_<device>.json/.md; without a usable GPU it writes one line saying so.

The H.264 encode is measured with each of ``--encoders`` (vbg process
``--encoder``; default x264 on the CPU, x264 and nvenc with a GPU device), a row
per model and encoder; an NVENC row is left out, with FFmpeg's reason in the
table's notes, where NVENC does not open (no driver, a GPU without an encoder
unit such as the H100).

``--hdr`` also runs every case on the same clip recorded as a phone records HDR
(10-bit HLG, BT.2020), which vbg tone-maps to SDR as it reads: a row each, the
SDR row the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import machine_info, time_call, write_results
from benchmarks.gpu import DEVICES, not_run_here


def _parallel_fps(segs, hw, x, runs: int = 12) -> float:
    """Frames per second of the sessions running back to back, each on its own thread."""
    for seg in segs:
        seg.infer(hw, x)

    def loop(seg):
        for _ in range(runs):
            seg.infer(hw, x)

    threads = [threading.Thread(target=loop, args=(seg,)) for seg in segs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs * len(segs) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--qualities", default="balanced,fast", help="vbg process --quality values to run")
    ap.add_argument("--workers", default="auto", help="vbg process --workers (default auto, as the CLI)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--source", default="1280x720", help="the clip's WxH (1920x1080 for the GPU targets)")
    ap.add_argument("--device", default="cpu", choices=DEVICES, help="where the model runs")
    ap.add_argument("--encoders", default=None,
                    help="vbg process --encoder values, a row each (default: x264 on the cpu, x264,nvenc on a GPU)")
    ap.add_argument("--hdr", action="store_true", help="also run on the clip as 10-bit HLG (tone-mapped)")
    args = ap.parse_args(argv)
    sw, sh = (int(v) for v in args.source.split("x"))
    encoders = (args.encoders or ("x264" if args.device == "cpu" else "x264,nvenc")).split(",")
    from vbg.ranges import ENCODERS

    if any(e not in ENCODERS for e in encoders):
        ap.error(f"--encoders {args.encoders!r}: use {', '.join(ENCODERS)}, comma-separated")
    name = "offline" if args.device == "cpu" else f"offline_{args.device}"
    if not_run_here(args.out, name, args.device, "Offline: vbg process", "offline table not produced"):
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import person_clip_frames, write_clip, write_hdr_clip

    from vbg.encoders import nvenc_problem
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.models.export import build_rmbg, export_onnx
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.offline.workers import parse_workers
    from vbg.progress import Progress

    rows = []
    notes = []
    if "nvenc" in encoders and (why := nvenc_problem()) is not None:
        notes.append(f"NVENC rows not run: h264_nvenc does not open here ({why})")
        print(notes[-1], flush=True)
        encoders = [e for e in encoders if e != "nvenc"]
        if not encoders:
            js, mdp = write_results(args.out, name, {"machine": machine_info(), "device": args.device,
                                                     "note": notes[-1]},
                                    f"# Offline: vbg process on {args.device}\n\n**Not run**: {notes[-1]}.\n")
            print(f"wrote {js} and {mdp}")
            return 0
    qualities = args.qualities.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "clip.mp4", [f for f, _ in person_clip_frames(args.frames, (sh, sw))], fps=30)
        clips = [("SDR", clip)]
        if args.hdr:
            clips.append(("HLG", write_hdr_clip(tmp / "hlg.mp4", [f for f, _ in person_clip_frames(args.frames, (sh, sw))],
                                                18)))
        dyn = export_onnx(build_rmbg(None), tmp / "rmbg.onnx", dynamic=True)
        time.sleep(2.0)  # tracing leaves torch's OpenMP threads spinning for a while
        cases = [("selfie", "selfie", None)] + [("rmbg-1.4 random init", str(dyn), int(s))
                                                for s in args.sizes.split(",")]
        frame = next(person_clip_frames(1, (sh, sw)))[0]
        cores = os.cpu_count() or 1
        for label, model, size in cases:
            # strict: a GPU run that fell back to the CPU fails instead of timing the CPU.
            scfg = SegmenterConfig(model=model, size=size, device=args.device, strict_device=args.device != "cpu")
            workers = parse_workers("auto", scfg) if args.workers == "auto" else int(args.workers)
            if workers is None:  # auto on a CPU: the count vbg process measures (kept in no cache here)
                from vbg.models.resolve import resolve_model
                from vbg.offline.workers import open_auto

                chosen, choice = open_auto(scfg, resolve_model(model), (sh, sw), 0)
                for one in chosen:
                    one.close()
                workers = choice.workers
                print(f"{label}: --workers auto: {workers} ({choice.reason})", flush=True)
            wcfg = replace(scfg, threads=max(1, cores // workers)) if workers > 1 else scfg
            with contextlib.ExitStack() as stack:
                seg = stack.enter_context(create_segmenter(scfg))
                hw = seg.input_size((sh, sw))
                x = seg.prepare(frame, hw)  # the model's own input, prepared once
                bare = time_call(lambda: seg.infer(hw, x), warmup=2, repeat=20)
                row = {"model": label, "size": f"{hw[0]}x{hw[1]}", "providers": seg.providers,
                       "bare_ms": bare["median_ms"], "bare_fps": 1000.0 / bare["median_ms"], "workers": workers,
                       "threads_per_worker": wcfg.threads or cores, "frames": args.frames}
                segs = [seg] if workers == 1 else [stack.enter_context(create_segmenter(wcfg, seg.source))
                                                   for _ in range(workers)]
                if workers > 1:
                    row["bare_parallel_fps"] = _parallel_fps(segs, hw, x)
                for encoder, (source, src) in ((e, c) for e in encoders for c in clips):
                    erow = {**row, "encoder": encoder, "source": source}
                    for q in qualities:
                        proc = FileProcessor(ProcessConfig(model=wcfg, quality=q, encoder=encoder), *segs)
                        t0 = time.monotonic()
                        with open(os.devnull, "w") as devnull:
                            res = proc.process(src, tmp / f"out-{label.split()[0]}-{size}-{encoder}-{source}-{q}.mp4",
                                               Progress(label, None, mode="quiet", stream=devnull))
                        wall = time.monotonic() - t0
                        erow[f"vbg_fps_{q}"] = res.frames / wall
                        erow[f"ratio_{q}"] = erow[f"vbg_fps_{q}"] / erow["bare_fps"]
                        # Each stage's working time per frame: the largest bounds the rate.
                        erow[f"busy_ms_{q}"] = {k: v * 1000.0 / max(res.frames, 1) for k, v in res.busy_s.items()}
                        if "bare_parallel_fps" in erow:
                            erow[f"ratio_parallel_{q}"] = erow[f"vbg_fps_{q}"] / erow["bare_parallel_fps"]
                        print(f"{label} {erow['size']} {source} --encoder {encoder} --quality {q}: bare "
                              f"{erow['bare_fps']:.1f} fps ({erow['bare_ms']:.1f} ms), vbg process "
                              f"{erow[f'vbg_fps_{q}']:.1f} fps = {erow[f'ratio_{q}']:.0%}; busy ms/frame: "
                              + ", ".join(f"{k} {v:.1f}" for k, v in erow[f"busy_ms_{q}"].items()), flush=True)
                    rows.append(erow)
    info = machine_info()
    where = "" if args.device == "cpu" else f" on {args.device}"
    md = [f"# Offline: vbg process against the bare model{where}\n",
          f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; model on "
          f"{args.device} ({', '.join(rows[0]['providers'])}); onnxruntime {info.get('onnxruntime')}. "
          f"{args.frames} frames of a {sw}x{sh} clip of a moving person, H.264 in (SDR; HLG: the same "
          "clip as 10-bit HLG, tone-mapped as vbg reads it). "
          "Bare = ONNX Runtime alone on a prepared input: one session on every core (median of 20 runs, "
          "as in the inference table), and the same model as vbg process runs it on a CPU, one session "
          "per worker on its share of the cores, frames in parallel (throughput). vbg process = wall time "
          "of the whole file with `--workers auto` (decode, model, centred smoothing, sharp upsampling, "
          "blur background, H.264 encode at the given --quality with the row's --encoder, start and flush "
          "included).\n",
          *(f"**{note}**.\n" for note in notes),
          "| model | inference size | source | encoder | workers x threads | bare fps, 1 session | "
          "bare fps, workers in parallel | "
          + " | ".join(f"vbg process fps ({q}) | ratio to 1 session | ratio to parallel" for q in qualities) + " |",
          "|---|---|---|---|---|---|---|" + "---|---|---|" * len(qualities)]
    for r in rows:
        par = r.get("bare_parallel_fps")
        cells = [r["model"], r["size"], r["source"], r["encoder"], f"{r['workers']} x {r['threads_per_worker']}",
                 f"{r['bare_fps']:.2f}", f"{par:.2f}" if par else "-"]
        for q in qualities:
            cells += [f"{r[f'vbg_fps_{q}']:.2f}", f"{r[f'ratio_{q}']:.0%}",
                      f"{r[f'ratio_parallel_{q}']:.0%}" if par else "-"]
        md.append("| " + " | ".join(cells) + " |")
    md.append("\nWhere the time goes: each stage's working time per frame (waits on the other stages "
              "left out; infer = all inference workers together; the largest bounds the frame rate):\n")
    for r in rows:
        for q in qualities:
            busy = r.get(f"busy_ms_{q}") or {}
            md.append(f"- {r['model']} {r['size']}, {r['source']}, {r['encoder']}, {q}: "
                      + ", ".join(f"{k} {v:.1f} ms" for k, v in busy.items()))
    js, mdp = write_results(args.out, name, {"machine": info, "device": args.device, "rows": rows, "notes": notes},
                            "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
