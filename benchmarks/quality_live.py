"""Matte quality of the live pipeline run for real: wall clock, real threads, optional CPU hogs.

    python -m benchmarks.quality_live --real DIR [--hogs 2] [--runs 3] [--model selfie] [--fps 24]

Each sequence of ``DIR`` (``NAME/images`` + ``NAME/masks``, as ``benchmarks.quality --real``)
is played as a live camera paced in real time at ``--fps`` (:class:`PacedSequence`: frame k
due k/fps after the first read, a frame whose successor is already due is skipped, as a
camera's would be) through the real :class:`~vbg.pipeline.LivePipeline` with default settings
(``--skip auto``, the default governor, smoothing and background; the model loaded by the
pipeline itself, its CPU threads lowered as in ``vbg``), a device-less virtual camera as the
sink (``benchmarks.common.drop_backend``) and no control server. :class:`RecordedPipeline`
keeps, per output frame, the alpha the compositor was given and the mask's frame; nothing
else in the pipeline changes. A source frame that was never output (skipped by the camera or
dropped by the render thread) scores what the viewer saw then: the previous output.

Scored with ``benchmarks.quality``'s code (IoU, boundary F, fresh/carried split) against the
hand-drawn truth, beside the per-frame reference (the model on every frame, no smoothing)
and the frame-exact live default with the mask waited for (the ``--real`` rows). ``--hogs N``
runs N ``python -c "while True: pass"`` processes beside every live run (stopped at the end,
whatever happens). ``--runs`` runs per sequence; medians. The load average is written down
before and after each run: other jobs on the machine add to it, so a loss measured here is an
upper bound of what the hogs alone cost. Writes ``quality_live[_hogsN].json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import DROP_BACKEND, drop_backend, machine_info, write_results
from benchmarks.common import model_nice as common_model_nice
from benchmarks.quality import REAL_WARMUP, score_real
from vbg.clock import Clock, MonotonicClock
from vbg.pipeline import LivePipeline
from vbg.priority import BACKGROUND_NICE

HOG = "while True: pass"


class PacedSequence:
    """In-memory frames as a live camera on ``clock``: frame k is handed out k/fps after the
    first read; when frame k+1 is already due, frame k is skipped (``skipped``), as a camera
    delivers the newest frame to a late reader. ``given[i]``: the frame index of the i-th read
    (the capture worker's sequence number i)."""

    live = True

    def __init__(self, frames: list[np.ndarray], fps: float, clock: Clock | None = None) -> None:
        self.frames = frames
        self.height, self.width = frames[0].shape[:2]
        self.fps = float(fps)
        self.clock = clock or MonotonicClock()
        self.given: list[int] = []
        self.skipped = 0
        self._next = 0
        self._t0: float | None = None

    def read(self) -> np.ndarray | None:
        k = self._next
        if k >= len(self.frames):
            return None
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
        while k + 1 < len(self.frames) and now >= self._t0 + (k + 1) / self.fps:
            k += 1
            self.skipped += 1
        self.clock.sleep(self._t0 + k / self.fps - now)
        self._next = k + 1
        self.given.append(k)
        return self.frames[k]

    def close(self) -> None:
        pass


class RecordedPipeline(LivePipeline):
    """The pipeline as it is; each output frame's alpha (what the compositor was given) and the
    sequence number of the mask it came from are copied after the frame went to the sinks."""

    def __init__(self, cfg, *, source, n_frames: int | None = None, **kw) -> None:
        super().__init__(cfg, source=source, **kw)
        n = len(source.frames) if n_frames is None else n_frames  # frames the source gives at most
        self.alphas = np.zeros((n, source.height, source.width), np.uint8)  # per capture sequence number
        self.mask_seqs = np.full(n, -2, np.int64)  # -2: never output; -1: output with no mask yet

    def _output(self, frame, alpha_u8, fresh, st, out, effect_on, t0):
        comp = super()._output(frame, alpha_u8, fresh, st, out, effect_on, t0)
        np.copyto(self.alphas[frame.seq], alpha_u8)
        m = st.tracker.mask
        self.mask_seqs[frame.seq] = m.seq if m is not None else -1
        return comp


def shown_per_frame(n_frames: int, given: list[int], alphas: np.ndarray, mask_seqs: np.ndarray
                    ) -> list[tuple[np.ndarray, int]]:
    """Per source frame: (the alpha the viewer saw, the source frame its mask was made from).

    ``given``: source frame of each capture sequence number; ``alphas`` / ``mask_seqs``: per
    capture sequence number as :class:`RecordedPipeline` keeps them. A source frame with no
    output of its own shows the previous output (all zeros, mask -1, before the first)."""
    out_of = {}
    for seq, k in enumerate(given):
        if mask_seqs[seq] != -2:
            out_of[k] = seq
    shown: list[tuple[np.ndarray, int]] = []
    current: tuple[np.ndarray, int] = (np.zeros(alphas.shape[1:], np.uint8), -1)
    for k in range(n_frames):
        seq = out_of.get(k)
        if seq is not None:
            ms = int(mask_seqs[seq])
            current = (alphas[seq], given[ms] if ms >= 0 else -1)
        shown.append(current)
    return shown


@contextlib.contextmanager
def hogs(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy-looping Python processes for the length of the block (always stopped)."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", HOG]))
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def live_config(model: str):
    from vbg.config import LiveConfig, apply

    return apply(LiveConfig(), {"model": {"model": model}, "output": {"vcam_backend": DROP_BACKEND},
                                "control": {"control": False}})


def run_once(clip, model: str, *, model_nice: int | None = None) -> dict:
    """One wall-clock live run of ``clip``: its per-frame shown alphas and the pipeline's figures.

    ``model_nice`` (a diagnostic): the model's threads are lowered by this much instead of vbg's
    ``priority.BACKGROUND_NICE`` (0: not lowered at all)."""
    src = PacedSequence(clip.frames, clip.fps)
    pipe = RecordedPipeline(live_config(model), source=src)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    with common_model_nice(model_nice):
        stats = pipe.run()
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    shown = shown_per_frame(len(clip), src.given, pipe.alphas, pipe.mask_seqs)
    snap = stats.snapshot()
    first = next((k for k, (_, m) in enumerate(shown) if m >= 0), len(shown))
    return {"shown": shown, "first_mask_frame": first, "wall_s": wall, "loadavg": [round(v, 2) for v in load0],
            "loadavg_after": [round(v, 2) for v in load1], "captured": len(src.given),
            "camera_skipped": src.skipped, "out_frames": snap["out_frames"], "render_dropped": snap["dropped"],
            "infer_runs": snap["infer_runs"], "fresh_share": snap["fresh_share"],
            "infer_ms_p50": snap["infer_ms_p50"], "infer_ms_p95": snap["infer_ms_p95"],
            "latency_ms_p50": snap["latency_ms_p50"]}


def run(root: Path, *, n_hogs: int = 0, runs: int = 3, model: str = "selfie", fps: float = 24.0,
        warmup: int = REAL_WARMUP, model_nice: int | None = None, log=print) -> dict:
    from vbg.evaluation import (
        LiveSettings,
        SegmenterSource,
        Timed,
        boundary_tolerance,
        find_sequences,
        load_sequence,
        simulate_live,
    )
    from vbg.inference import SegmenterConfig, create_segmenter

    folders = find_sequences(root)
    clips = [load_sequence(f, fps=fps) for f in folders]
    seg = create_segmenter(SegmenterConfig(model=model, device="cpu"))
    source = SegmenterSource(seg)
    res: dict = {"sequences": {}, "hogs": n_hogs, "runs": runs, "model": model, "fps": fps, "warmup": warmup,
                 "root": str(root), "model_nice": model_nice}
    for clip in clips:  # the frame-exact rows first, on a machine without hogs
        tol = boundary_tolerance(clip.frames[0].shape[0])
        ref = score_real(clip, simulate_live(clip, Timed(source, 0.0), LiveSettings(skip=1, smoothing=0.0)),
                         warmup=warmup, boundary_tol=tol)
        exact = score_real(clip, simulate_live(clip, Timed(source, 0.0), LiveSettings()),
                           warmup=warmup, boundary_tol=tol)
        res["sequences"][clip.motion] = {"frames": len(clip), "boundary_tol": tol, "reference": ref,
                                         "frame_exact_waited": exact, "live": []}
    with hogs(n_hogs):
        if n_hogs:
            time.sleep(2.0)  # the hogs running at full tilt before the first run
        for r in range(runs):
            for clip in clips:
                entry = res["sequences"][clip.motion]
                one = run_once(clip, model, model_nice=model_nice)
                shown = one.pop("shown")
                scores = score_real(clip, iter(shown), warmup=warmup, boundary_tol=entry["boundary_tol"])
                # the same without the start-up (the frames before the first mask), beside the
                # reference on the same frames
                later = max(warmup, one["first_mask_frame"])
                if later < len(clip):
                    one["iou_after_start"] = score_real(clip, iter(shown), warmup=later,
                                                        boundary_tol=entry["boundary_tol"])["iou"]
                    one["ref_iou_after_start"] = score_real(
                        clip, simulate_live(clip, Timed(source, 0.0), LiveSettings(skip=1, smoothing=0.0)),
                        warmup=later, boundary_tol=entry["boundary_tol"])["iou"]
                entry["live"].append({**one, **scores})
                log(f"run {r + 1}/{runs} {clip.motion:20s} IoU {scores['iou']:.4f} (ref "
                    f"{entry['reference']['iou']:.4f}) F {scores['boundary_f']:.4f} fresh {one['fresh_share']:.2f} "
                    f"skipped {one['camera_skipped']} dropped {one['render_dropped']} infer p50 "
                    f"{one['infer_ms_p50']:.1f} ms first mask on frame {one['first_mask_frame']} "
                    f"load {one['loadavg'][0]:.1f}")
    seg.close()
    for entry in res["sequences"].values():
        live = entry["live"]
        after = [x["iou_after_start"] - x["ref_iou_after_start"] for x in live if "iou_after_start" in x]
        entry["median_after_start_minus_ref"] = statistics.median(after) if after else math.nan
        entry["median"] = {k: statistics.median(x[k] for x in live)
                           for k in ("iou", "boundary_f", "fresh_share", "camera_skipped", "render_dropped",
                                     "infer_ms_p50", "infer_ms_p95", "latency_ms_p50", "first_mask_frame")}
        entry["worst_iou"] = min(x["iou"] for x in live)
    loads = [x["loadavg"][0] for e in res["sequences"].values() for x in e["live"]]
    loads += [x["loadavg_after"][0] for e in res["sequences"].values() for x in e["live"]]
    res["loadavg_1min_range"] = [min(loads), max(loads)]
    return res


def markdown(res: dict, info: dict, command: str) -> str:
    seqs = res["sequences"]
    lo, hi = res["loadavg_1min_range"]
    md = [
        f"# Live pipeline on the wall clock, {res['hogs']} CPU hog(s) beside it (`python -m benchmarks.quality_live`)\n",
        (f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, onnxruntime "
         f"{info.get('onnxruntime', '-')}. Command: `{command}`. Load average (1 min) seen before/after the "
         f"runs: {lo:.1f}-{hi:.1f} (the hogs and whatever else ran on the machine).\n"),
        (f"Model `{res['model']}`, `--skip auto`, default settings, {res['fps']:g} fps, {res['runs']} run(s) per "
         f"sequence, medians; the first {res['warmup']} frames of each are not scored.\n"),
        ("| sequence | reference IoU | frame-exact live (waited) | live IoU, median | - ref | worst run - ref "
         "| within 0.01 | reference F | live F, median | fresh share | camera skipped | render dropped "
         "| model p50 / p95 ms | first mask on frame | - ref after it |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in seqs.items():
        ref, m = e["reference"], e["median"]
        d = m["iou"] - ref["iou"]
        md.append(f"| {name} | {ref['iou']:.4f} | {e['frame_exact_waited']['iou']:.4f} | {m['iou']:.4f} | "
                  f"{d:+.4f} | {e['worst_iou'] - ref['iou']:+.4f} | {'yes' if d >= -0.01 else '**no**'} | "
                  f"{ref['boundary_f']:.4f} | {m['boundary_f']:.4f} | {m['fresh_share']:.2f} | "
                  f"{m['camera_skipped']:g} | {m['render_dropped']:g} | {m['infer_ms_p50']:.1f} / "
                  f"{m['infer_ms_p95']:.1f} | {m['first_mask_frame']:g} | {e['median_after_start_minus_ref']:+.4f} |")
    ref_mean = float(np.mean([e["reference"]["iou"] for e in seqs.values()]))
    live_mean = float(np.mean([e["median"]["iou"] for e in seqs.values()]))
    exact_mean = float(np.mean([e["frame_exact_waited"]["iou"] for e in seqs.values()]))
    fr = float(np.mean([e["reference"]["boundary_f"] for e in seqs.values()]))
    fl = float(np.mean([e["median"]["boundary_f"] for e in seqs.values()]))
    d = live_mean - ref_mean
    md.append(f"| mean | {ref_mean:.4f} | {exact_mean:.4f} | {live_mean:.4f} | {d:+.4f} | - | "
              f"{'yes' if d >= -0.01 else '**no**'} | {fr:.4f} | {fl:.4f} | - | - | - | - | - | - |")
    if res["model_nice"] is not None:
        md.append(f"\nDiagnostic (`--model-nice {res['model_nice']}`): the model's threads were lowered by nice "
                  f"+{res['model_nice']} (vbg's own choice: +{BACKGROUND_NICE}).")
    md += ["", "Per run (IoU, load average before):", ""]
    for name, e in seqs.items():
        md.append(f"- {name}: " + ", ".join(f"{x['iou']:.4f} ({x['loadavg'][0]:.1f})" for x in e["live"]))
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, metavar="DIR", required=True,
                    help="a folder of sequences NAME/images/NNNNN.jpg + NAME/masks/NNNNN.png")
    ap.add_argument("--hogs", type=int, default=0, help="busy-looping processes beside the live runs")
    ap.add_argument("--runs", type=int, default=3, help="live runs per sequence (medians)")
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--fps", type=float, default=24.0, help="the sequences' frame rate")
    ap.add_argument("--model-nice", type=int, metavar="N",
                    help=f"diagnostic: lower the model threads by nice +N instead of vbg's +{BACKGROUND_NICE}")
    ap.add_argument("--keep-priority", dest="model_nice", action="store_const", const=0,
                    help="diagnostic: do not lower the model threads' priority (--model-nice 0)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    from vbg.errors import VbgError

    if not 0 <= args.hogs <= 64 or not 1 <= args.runs <= 100 or not 0 <= (args.model_nice or 0) <= 19:
        print("benchmarks.quality_live: error: --hogs must be 0..64, --runs 1..100 and --model-nice 0..19",
              file=sys.stderr)
        return 2
    import signal

    def _term(signum, frame):  # a kill ends the run through the finally blocks: the hogs are stopped
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    t0 = time.perf_counter()
    try:
        with drop_backend():
            res = run(args.real, n_hogs=args.hogs, runs=args.runs, model=args.model, fps=args.fps,
                      model_nice=args.model_nice)
    except VbgError as e:
        print(f"benchmarks.quality_live: error: {e}", file=sys.stderr)
        return e.exit_code
    res["wall_s"] = time.perf_counter() - t0
    info = machine_info()
    cmd = (f"python -m benchmarks.quality_live --real {args.real} --hogs {args.hogs} --runs {args.runs} "
           f"--model {args.model}" + (f" --fps {args.fps:g}" if args.fps != 24.0 else "")
           + (f" --model-nice {args.model_nice}" if args.model_nice is not None else ""))
    text = markdown(res, info, cmd)
    print("\n" + text)
    name = f"quality_live_hogs{args.hogs}" + (f"_nice{args.model_nice}" if args.model_nice is not None else "")
    js, md = write_results(args.out, name, {"machine": info, **res}, text)
    print(f"wrote {js} and {md} ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

