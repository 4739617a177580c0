"""`vbg process` against `vbg process --ray` on this machine, and what one part of a file costs.

    python -m benchmarks.scale [--files 4] [--seconds 6] [--long 30] [--segment 10] [--size 640x360]
                               [--repeat 3] [--out benchmarks/out]

Makes a batch of ``--files`` clips of ``--seconds`` each and one long clip of ``--long`` seconds
(a moving person, 30 fps, a keyframe every second, AAC), then runs each workload through the CLI
as a user does, alternating the two ways ``--repeat`` times (the machine may be shared: the
alternation spreads any other load over both):

- ``vbg process`` (``--workers auto``);
- ``vbg process --ray auto`` against a Ray runtime started once beforehand (``ray start --head``),
  the steady state of a cluster; and once ``--ray`` alone, which starts (and stops) a local Ray
  runtime in the run, to show that start-up cost apart.

Throughput is frames per wall second of the whole command (start-up, model, join included);
the ratio is --ray's median over the local median. Then, in this process, one long file's
per-part costs: planning (reading the packets for the keyframes), the context frames each part
decodes and segments beyond its own (2 x --window per cut), the join (stream copy, audio muxed),
and one Ray actor hand-off (a method call's round trip to a warm actor). Writes
``scale.json`` and ``scale.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


from benchmarks.common import machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
FPS = 30
COMMON = ["--model", "selfie", "--device", "cpu", "--quiet", "--overwrite"]


def make_clip(path: Path, seconds: float, size: tuple[int, int]) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from media import person_clip_frames, write_talk_clip

    n = round(seconds * FPS)  # a loop of 80 distinct frames, a keyframe a second
    return write_talk_clip(path, (f for f, _ in person_clip_frames(min(n, 80), size)), n, FPS, gop=FPS,
                           crf=20, amplitude=0.2)


def vbg(*args: str) -> float:
    """Wall seconds of one ``vbg`` command (which must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vbg", *args], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vbg {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dt


def ray_cli(*args: str) -> None:
    ray = Path(sys.executable).parent / "ray"
    subprocess.run([str(ray), *args], check=True, capture_output=True, text=True)


def part_costs(long_clip: Path, segment_s: float, window: int, tmp: Path) -> dict:
    """Per-part costs of one long file, measured in this process."""
    import ray

    from vbg.config import ProcessConfig
    from vbg.inference import create_segmenter
    from vbg.media.join import join_video
    from vbg.offline.distributed import plan_spans
    from vbg.offline.process import FileProcessor
    from vbg.progress import Progress

    t0 = time.perf_counter()
    spans = plan_spans(long_clip, window, segment_s)
    plan_s = time.perf_counter() - t0
    frames = sum(s.count for s in spans)
    context = sum(s.before + s.after for s in spans)

    cfg = ProcessConfig()
    cfg = replace(cfg, model=replace(cfg.model, model="selfie", device="cpu"))
    seg = create_segmenter(cfg.model)
    proc = FileProcessor(cfg, seg)
    quiet = Progress("bench", None, mode="quiet", stream=open(os.devnull, "w"))
    whole = proc.process(long_clip, tmp / "whole.mp4", quiet, sequence=False, audio=False)
    parts, part_s = [], 0.0
    for i, s in enumerate(spans):
        p = tmp / f"part{i}.mp4"
        r = proc.process(long_clip, p, quiet, sequence=False, span=s, audio=False)
        part_s += r.seconds
        parts.append(p)
    seg.close()
    joins = []
    for _ in range(3):
        out = tmp / "joined.mp4"
        t0 = time.perf_counter()
        join_video(parts, out, mode="rgb", audio_from=long_clip, overwrite=True, warnings=[])
        joins.append(time.perf_counter() - t0)

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        @ray.remote(num_cpus=0)
        class Echo:
            def call(self, x):
                return x

        actor = Echo.remote()
        ray.get(actor.call.remote(0))
        trips = []
        for i in range(200):
            t0 = time.perf_counter()
            ray.get(actor.call.remote(i))
            trips.append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return {"parts": len(spans), "frames": frames, "context_frames": context,
            "context_share": context / frames, "plan_s": plan_s, "whole_s": whole.seconds,
            "parts_s_sum": part_s, "join_s_median": statistics.median(joins),
            "handoff_ms_median": 1000 * statistics.median(trips)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--long", type=float, default=30.0)
    ap.add_argument("--segment", type=float, default=10.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = ap.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="vbg-scale-"))
    batch = [make_clip(tmp / f"clip{i}.mp4", args.seconds, (h, w)) for i in range(args.files)]
    long_clip = make_clip(tmp / "long.mp4", args.long, (h, w))
    batch_frames = args.files * round(args.seconds * FPS)
    long_frames = round(args.long * FPS)
    workloads = {
        "batch": ([str(p) for p in batch], str(tmp / "out_batch"), batch_frames),
        "long": ([str(long_clip)], str(tmp / "out_long.mp4"), long_frames),
    }
    seg = ["--ray-segment", str(args.segment)]
    times: dict[str, dict[str, list[float]]] = {k: {"local": [], "ray": []} for k in workloads}
    ray_cli("start", "--head", "--num-cpus", str(os.cpu_count()), "--include-dashboard=false",
            "--object-store-memory", str(200 << 20), "--disable-usage-stats")
    try:
        for k, (inputs, out, _) in workloads.items():  # warm-up: model caches, --workers auto measured
            vbg("process", *inputs, "-o", out, *COMMON)
            vbg("process", *inputs, "-o", out, *COMMON, "--ray", "auto", *seg)
        for _ in range(args.repeat):
            for k, (inputs, out, _) in workloads.items():
                times[k]["local"].append(vbg("process", *inputs, "-o", out, *COMMON))
                times[k]["ray"].append(vbg("process", *inputs, "-o", out, *COMMON, "--ray", "auto", *seg))
    finally:
        ray_cli("stop")
    cold = {k: vbg("process", *inputs, "-o", out, *COMMON, "--ray", *seg) for k, (inputs, out, _) in workloads.items()}
    costs = part_costs(long_clip, args.segment, 3, tmp)

    rows = {}
    for k, (_, _, frames) in workloads.items():
        lo, ra = statistics.median(times[k]["local"]), statistics.median(times[k]["ray"])
        rows[k] = {"frames": frames, "local_s": times[k]["local"], "ray_s": times[k]["ray"],
                   "local_fps": frames / lo, "ray_fps": frames / ra, "ratio": lo / ra,
                   "ray_cold_s": cold[k], "ray_cold_fps": frames / cold[k]}
    payload = {"machine": machine_info(), "args": vars(args) | {"out": str(args.out)}, "rows": rows,
               "part_costs": costs}
    md = [f"machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores; selfie model, "
          f"{w}x{h} at {FPS} fps, x264 balanced, --ray-segment {args.segment:g}; medians of {args.repeat} "
          "alternating runs after one warm-up each", "",
          "| workload | frames | vbg process fps | --ray auto fps | ratio | --ray (runtime started in the run) fps |",
          "|---|---|---|---|---|---|"]
    for k, r in rows.items():
        md.append(f"| {k} | {r['frames']} | {r['local_fps']:.1f} | {r['ray_fps']:.1f} | {r['ratio']:.2f}x | "
                  f"{r['ray_cold_fps']:.1f} |")
    c = costs
    md += ["", f"One long file, {c['frames']} frames in {c['parts']} parts (one process, in turn): planning "
           f"{1000 * c['plan_s']:.0f} ms; context frames {c['context_frames']} ({100 * c['context_share']:.1f}% "
           f"more decoding and inference); whole file {c['whole_s']:.1f} s, its parts one after the other "
           f"{c['parts_s_sum']:.1f} s; join (stream copy + audio) {1000 * c['join_s_median']:.0f} ms; "
           f"Ray actor hand-off (round trip to a warm actor) {c['handoff_ms_median']:.2f} ms", ""]
    write_results(args.out, "scale", payload, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
