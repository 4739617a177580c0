"""Peak memory (and fps, with the load beside it) of `vbg process` against the naive loop.

    python -m benchmarks.memory [--quick | --full] [--frames N] [--rounds N] [--out benchmarks/out]
                                [--clip FILE]

Each run is a fresh process whose peak resident memory (``ru_maxrss`` from ``wait4``) is
taken: the naive per-frame loop (``benchmarks/baseline.py``: one ONNX Runtime session of two
threads, read, infer, blend, write with x264 ``veryfast``) and ``python -m vbg process`` with
``--workers 1``, ``2`` and ``auto`` (auto once with an empty cache: its measurement is in the
peak; once with the choice it kept) at the default ``--quality balanced``, and ``--workers 1
--quality fast`` (the naive loop's x264 preset), ``--workers 1 --memory 128`` (fewer frames in
flight) and ``--workers 1 --memory 1024`` (x264 medium's own 40-frame look-ahead, which the
default 512 MB cuts to 25), for the selfie model and RMBG-1.4 (random
init: the exact compute and weights' size) at 320x320, on a 1280x720 clip of a moving person
(``tests/media.py``; ``--clip`` takes another file instead). Runs alternate (naive, then each
vbg variant, round after round), and each records the 1-minute load average before it:
memory does not depend on the load, frames per second do, so read fps beside the load.

Then, in a fresh process each, what a second ONNX Runtime session of RMBG-1.4 adds to resident
memory (after one inference, the freed heap handed back as vbg does), per way of sharing that
ONNX Runtime's Python API offers on a CPU: none (vbg's
settings), shared initializers (``SessionOptions.add_initializer`` with the same OrtValues in
both), the environment's shared arena (``create_and_register_allocator`` +
``session.use_env_allocators``), pre-packing off (``session.disable_prepacking``), and the
graph optimised only to the extended level (no NCHWc layout: what layout costs in memory), and
what vbg does for two workers (``onnx_backend.weights_shared``): the graph optimised once and
written out, its re-laid-out weights read back once and given to both sessions as shared
initializers of the optimised graph (the peak of that process includes the optimising session).
``PrepackedWeightsContainer`` is not in the Python API (checked: not in ``onnxruntime``).

quick: 60 frames (the queues and x264's look-ahead, up to 40 frames, fill: fewer frames understate
vbg's peak), one round, about 5 minutes on 2 quiet cores; full: 120 frames, 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
SHARING = ("none", "shared initializers", "env allocator", "no prepacking", "extended optimisation only",
           "optimised once, shared (vbg)")


def _run_peak(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` (reaped here with ``wait4``, for its rusage): its peak RSS (MB), wall seconds,
    the load average before it, exit code, stdout and stderr."""
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.posix_spawn(cmd[0], cmd, {**os.environ, **(env or {})},
                             file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return {"peak_mb": usage.ru_maxrss / 1024, "seconds": wall, "load": load,
                "rc": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child_prepare(folder: str, frames: str) -> None:
    """The 1280x720 clip and RMBG-1.4 at random init (dynamic sizes) in ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from media import person_clip_frames, write_clip

    from vbg.models.export import build_rmbg, export_onnx

    write_clip(Path(folder) / "clip.mp4", [f for f, _ in person_clip_frames(int(frames), (720, 1280))], fps=30)
    export_onnx(build_rmbg(None), Path(folder) / "rmbg.onnx", dynamic=True)


def _child_naive(model: str, hw: str, clip: str, out: str) -> None:
    """The naive loop in this (fresh) process; prints its result as JSON."""
    import numpy as np

    from benchmarks.baseline import naive_loop
    from vbg.models.resolve import resolve_model
    from vbg.models.spec import RMBG14

    h, w = (int(v) for v in hw.split("x"))
    if model == "selfie":
        src = resolve_model("selfie")
        path, spec = src.onnx, src.spec
    else:
        path, spec = Path(model), RMBG14
    with __import__("av").open(clip) as c:
        s = c.streams.video[0].codec_context
        bg = np.zeros((s.height, s.width, 3), np.uint8)
    print(json.dumps(naive_loop(Path(clip), path, (h, w), spec.mean, spec.std, Path(out), bg, threads=2,
                                device="cpu")))


def _child_sharing(mode: str, model: str, hw: str) -> None:
    """Two sessions of ``model`` the way ``mode`` says; prints the resident MB before, after the
    first, after the second (each after one inference), and whether both outputs are those of a
    session opened with vbg's settings and nothing shared."""
    import numpy as np

    from vbg.inference.onnx_backend import import_ort, release_freed_memory, session_options

    ort = import_ort()
    h, w = (int(v) for v in hw.split("x"))

    rss_mb = _rss_mb
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    shared = {}
    base = rss_mb()
    if mode == "shared initializers":
        import onnx
        from onnx import numpy_helper

        m = onnx.load(model)
        shared = {i.name: ort.OrtValue.ortvalue_from_numpy(numpy_helper.to_array(i)) for i in m.graph.initializer}
        del m
        release_freed_memory()
        base = rss_mb()  # the shared weights are the caller's: counted from here
    if mode == "env allocator":
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
    marks, outs, sessions = [base], [], []
    if mode == "optimised once, shared (vbg)":
        from vbg.inference.onnx_backend import create_session, weights_shared

        with tempfile.TemporaryDirectory() as scratch, weights_shared(Path(scratch)):
            for _ in range(2):
                s, _ = create_session(Path(model), "cpu", threads=1)
                outs.append(s.run(None, {s.get_inputs()[0].name: x})[0])
                sessions.append(s)
                release_freed_memory()
                marks.append(rss_mb())
    for _ in range(2 if not sessions else 0):
        so = session_options(1)
        for name, value in shared.items():
            so.add_initializer(name, value)
        if mode == "env allocator":
            so.add_session_config_entry("session.use_env_allocators", "1")
        if mode == "no prepacking":
            so.add_session_config_entry("session.disable_prepacking", "1")
        if mode == "extended optimisation only":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        s = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {s.get_inputs()[0].name: x})[0])
        sessions.append(s)
        release_freed_memory()  # what is held, not what glibc keeps for reuse (as vbg runs)
        marks.append(rss_mb())
    t0 = time.perf_counter()
    for _ in range(3):
        sessions[0].run(None, {sessions[0].get_inputs()[0].name: x})
    ms = (time.perf_counter() - t0) / 3 * 1000
    plain = ort.InferenceSession(model, sess_options=session_options(1), providers=["CPUExecutionProvider"])
    same = all(np.array_equal(plain.run(None, {plain.get_inputs()[0].name: x})[0], o) for o in outs)
    print(json.dumps({"marks_mb": marks, "same": same, "ms_one_thread": ms}))


def _fps(run: dict, frames: int) -> float:
    return frames / run["seconds"] if run["rc"] == 0 and run["seconds"] > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="60 frames, one round (default)")
    mode.add_argument("--full", action="store_true", help="120 frames, 3 rounds")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--clip", type=Path, help="a video to use instead of the generated 720p clip")
    ap.add_argument("--no-sharing", action="store_true", help="skip the session-sharing measurements")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        {"naive": _child_naive, "sharing": _child_sharing, "prepare": _child_prepare}[kind](*rest)
        return 0
    frames = args.frames or (120 if args.full else 60)
    rounds = args.rounds or (3 if args.full else 1)
    py = sys.executable
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Made in a child: a child's ru_maxrss starts from this process's resident memory (its
        # image before exec), so this one stays small (no torch, no model, no frames).
        prep = _run_peak([py, "-m", "benchmarks.memory", "--child", "prepare", str(tmp), str(frames)], env)
        if prep["rc"] != 0:
            print(prep["stderr"][-2000:], file=sys.stderr)
            return 1
        clip = args.clip if args.clip is not None else tmp / "clip.mp4"
        rmbg = tmp / "rmbg.onnx"
        time.sleep(2.0)
        floor_mb = _rss_mb()
        cases = [("selfie", "selfie", "256x256", []), ("rmbg-1.4 random init", str(rmbg), "320x320",
                                                        ["--size", "320x320"])]
        variants = [("--workers 1", ["--workers", "1"], False), ("--workers 2", ["--workers", "2"], False),
                    ("--workers auto (measures)", ["--workers", "auto"], True),
                    ("--workers auto (kept choice)", ["--workers", "auto"], False),
                    ("--workers 1 --quality fast", ["--workers", "1", "--quality", "fast"], False),
                    ("--workers 1 --memory 128", ["--workers", "1", "--memory", "128"], False),
                    ("--workers 1 --memory 1024", ["--workers", "1", "--memory", "1024"], False)]
        runs: dict = {}
        for r in range(rounds):
            for label, model, hw, size_args in cases:
                cache = tmp / f"cache-{label.split()[0]}-{r}"  # a fresh cache each round: auto measures
                res = _run_peak([py, "-m", "benchmarks.memory", "--child", "naive", model, hw, str(clip),
                                 str(tmp / "naive.mp4")], env)
                runs.setdefault((label, "naive loop"), []).append(res)
                print(f"{label}: naive loop peak {res['peak_mb']:.0f} MB, {_fps(res, frames):.2f} fps "
                      f"(load {res['load']:.1f})", flush=True)
                for vlabel, vargs, _ in variants:
                    res = _run_peak([py, "-m", "vbg", "process", "--no-default-config", str(clip), "-o",
                                     str(tmp / "out.mp4"), "--overwrite", "--model", model, "--device", "cpu",
                                     *size_args, *vargs],
                                    {**env, "VBG_CACHE_DIR": str(cache)})
                    if res["rc"] != 0:
                        print(res["stderr"][-2000:], file=sys.stderr)
                    why = [ln.split("(--workers auto: ", 1)[1][:-1] for ln in res["stderr"].splitlines()
                           if "(--workers auto: " in ln]
                    res["auto"] = why[0] if why else None
                    chosen = [ln for ln in res["stderr"].splitlines() if "worker(s)" in ln]
                    res["workers"] = int(chosen[0].split(" worker(s)")[0].rsplit(" ", 1)[1]) if chosen else None
                    runs.setdefault((label, vlabel), []).append(res)
                    print(f"{label}: vbg process {vlabel} peak {res['peak_mb']:.0f} MB, {_fps(res, frames):.2f} fps "
                          f"(wall incl. start; load {res['load']:.1f}){' -> ' + res['auto'] if res['auto'] else ''}",
                          flush=True)
        sharing = []
        if not args.no_sharing:
            for m in SHARING:
                res = _run_peak([py, "-m", "benchmarks.memory", "--child", "sharing", m, str(rmbg), "192x320"], env)
                if res["rc"] != 0:
                    print(res["stderr"][-2000:], file=sys.stderr)
                    continue
                d = json.loads(res["stdout"].strip().splitlines()[-1])
                base, first, second = d["marks_mb"]
                sharing.append({"mode": m, "first_mb": first - base, "second_mb": second - first, "same": d["same"],
                                "ms_one_thread": d["ms_one_thread"], "load": res["load"]})
                print(f"sharing {m}: first session +{first - base:.0f} MB, second +{second - first:.0f} MB, "
                      f"{d['ms_one_thread']:.0f} ms a run on one thread (load {res['load']:.1f})", flush=True)
    info = machine_info()
    info["memory_total_mb"] = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
    took = time.monotonic() - t_start
    rows = []
    for (label, vlabel), rs in runs.items():
        naive = statistics.median(r["peak_mb"] for r in runs[(label, "naive loop")])
        peak = statistics.median(r["peak_mb"] for r in rs)
        rows.append({"model": label, "run": vlabel, "peak_mb": peak, "peaks_mb": [r["peak_mb"] for r in rs],
                     "ratio_to_naive": peak / naive, "fps": [_fps(r, frames) for r in rs],
                     "load": [r["load"] for r in rs], "workers": [r.get("workers") for r in rs],
                     "auto": [r.get("auto") for r in rs], "rc": [r["rc"] for r in rs]})
    md = ["# Memory: vbg process against the naive loop\n",
          f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_total_mb']} MB; onnxruntime "
          f"{info.get('onnxruntime')}, Python {info['python']}. {frames} frames of "
          f"{'a 1280x720 clip of a moving person' if args.clip is None else args.clip}, {rounds} round(s), runs "
          f"alternating; took {took:.0f} s. Peak = `ru_maxrss` of the run's process (median over rounds); fps = "
          "frames / wall time of the whole process (start, model load and, for auto, its measurement "
          "included), one figure per round, with the 1-minute load average before the run: fps figures "
          "taken under load are not speeds of the machine. Every run's peak includes the launching "
          f"process's {floor_mb:.0f} MB (a child's `ru_maxrss` starts from its parent's image before exec).\n",
          "| model | run | peak RSS (MB) | / naive loop | workers | fps (per round) | load before |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        workers = ", ".join("-" if w is None else str(w) for w in r["workers"])
        md.append(f"| {r['model']} | {r['run']} | {r['peak_mb']:.0f} | {r['ratio_to_naive']:.2f} | "
                  f"{workers if r['run'] != 'naive loop' else '1 x 2 threads'} | "
                  f"{', '.join(f'{v:.2f}' for v in r['fps'])} | {', '.join(f'{v:.1f}' for v in r['load'])} |")
    autos = sorted({a for r in rows for a in r["auto"] if a})
    if autos:
        md.append("\n`--workers auto` said: " + "; ".join(f"\"{a}\"" for a in autos))
    if sharing:
        md += ["\nA second ONNX Runtime session of RMBG-1.4 (192x320, one intra-op thread each), resident "
               "memory after one inference, per way of sharing (fresh process each; the outputs compared with "
               "those of a third, plain session opened after the marks):\n",
               "| sharing | first session (MB) | second session adds (MB) | outputs equal to a plain session's | "
               "ms a run | load |",
               "|---|---|---|---|---|---|"]
        md += [f"| {s['mode']} | {s['first_mb']:.0f} | {s['second_mb']:.0f} | {'yes' if s['same'] else 'no'} | "
               f"{s['ms_one_thread']:.0f} | {s['load']:.1f} |"
               for s in sharing]
    js, mdp = write_results(args.out, "memory", {"machine": info, "frames": frames, "rounds": rounds,
                                                 "launcher_mb": floor_mb,
                                                 "seconds": took, "rows": rows, "sharing": sharing},
                            "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp} ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
