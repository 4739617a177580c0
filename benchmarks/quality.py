"""Matte quality with exact ground truth: what skipping, mask propagation, smoothing and
upsampling do to IoU, edge error, flicker and lag, live and offline.

    python -m benchmarks.quality [--quick] [--frames 90] [--infer-ms 75] [--out benchmarks/out]

Clips (``vbg.evaluation.clips``): the RGBA person of ``tests/data/people`` over
its room at 640x360, 30 fps, five motions (still, sway, fast sideways, zoom,
leaving and re-entering), with mild sensor noise. Masks come from

- the oracle: the clip's true alpha reduced to the inference size (256 ->
  160x256), exactly as a perfect model at that size would answer, optionally
  late by an inference time (``--infer-ms``, default 75 ms: RMBG-1.4 at 256 on
  the 2-core development machine, ``benchmarks/RESULTS.md``); every error is
  then the pipeline's;
- the oracle with jitter: the same, with its edge wandering 0.1 mask pixels
  from frame to frame, as much as the selfie model's own masks change on the
  still clip: the input temporal smoothing exists for;
- the bundled selfie model itself (``--no-model`` skips it).

Live rows run ``MaskTracker`` frame by frame with the model on the frames
``SkipGovernor`` picks (``vbg.evaluation.simulate``); offline rows run
``vbg process``'s centred smoothing and upsampling. The first 8 frames of each
clip are not scored (start-up). Writes ``quality.json`` and ``quality.md``.

Real footage, with hand-drawn masks instead of exact truth::

    python -m benchmarks.quality --real DIR [--model selfie] [--fps 24] [--model-ms MS]

``DIR`` holds sequences ``NAME/images/NNNNN.jpg`` + ``NAME/masks/NNNNN.png``
(``vbg.evaluation.sequences``). The model runs once on every frame; the rows
(``REAL_ROWS``) are the per-frame reference (every mask as it is, no
smoothing), ``vbg process``'s offline path, and the live path at
``--skip auto``, 2 and 3 (and 3 without propagation), the model on the
clock of its own time (measured here unless ``--model-ms`` fixes it), frame
by frame. ``--crop auto`` (the default) runs the per-frame reference,
``vbg process`` and the live ``auto`` and ``--skip 3`` rows again with the
person crop (``vbg.inference.crop``: the model on a box around the person,
fresh boxes per row, ``vbg process``'s two lanes offline). Scores: IoU,
boundary F, flicker, lag, and IoU on the frames with a fresh mask against
carried ones. Writes ``quality_real.json`` and
``quality_real.md``; the synthetic clips are not run then.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_results

PEOPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "people"
SIZE = (360, 640)
INFER_SIZE = 256
JITTER = 0.1
WARMUP = 8


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    source: str  # truth | oracle | late | jitter | selfie
    mode: str = "live"  # live | offline
    settings: dict = field(default_factory=dict)
    quick: bool = True  # part of --quick (the rows the targets need)


ROWS = [
    Row("truth", "full-size truth on every frame (the ideal)", "truth"),
    Row("every_bilinear", "every frame, bilinear upsampling", "oracle", settings=dict(skip=1, smoothing=0, upsample="bilinear")),
    Row("every_filter", "every frame, frame-guided filter (`--upsample guided`)", "oracle", settings=dict(skip=1, smoothing=0, upsample="guided"), quick=False),
    Row("every", "every frame, sharpened edges (`--upsample sharp`, default)", "oracle", settings=dict(skip=1, smoothing=0)),
    Row("skip3_stale", "`--skip 3`, stale mask (no propagation)", "oracle", settings=dict(skip=3, smoothing=0, propagate=False)),
    Row("skip3", "`--skip 3`, mask propagation", "oracle", settings=dict(skip=3, smoothing=0)),
    Row("skip3_smooth", "`--skip 3`, propagation + smoothing 1", "oracle", settings=dict(skip=3), quick=False),
    Row("late_stale", "`--skip auto`, model {ms} ms late, no propagation", "late", settings=dict(skip="auto", propagate=False), quick=False),
    Row("late", "`--skip auto`, model {ms} ms late (live defaults)", "late", settings=dict(skip="auto"), quick=False),
    Row("jit_raw", "jittery oracle, every frame, no smoothing", "jitter", settings=dict(skip=1, smoothing=0)),
    Row("jit_smooth", "jittery oracle, every frame, smoothing 1", "jitter", settings=dict(skip=1, smoothing=1)),
    Row("jit_offline", "jittery oracle, offline (centred, window 2)", "jitter", mode="offline"),
    Row("selfie_bilinear", "selfie, every frame, bilinear, no smoothing", "selfie", settings=dict(skip=1, smoothing=0, upsample="bilinear"), quick=False),
    Row("selfie_filter", "selfie, every frame, guided filter, no smoothing", "selfie", settings=dict(skip=1, smoothing=0, upsample="guided"), quick=False),
    Row("selfie_raw", "selfie, every frame, no smoothing", "selfie", settings=dict(skip=1, smoothing=0), quick=False),
    Row("selfie_live", "selfie, live defaults (`--skip auto` = every frame)", "selfie", settings=dict(skip="auto"), quick=False),
    Row("selfie_offline", "selfie, offline (centred, window 2)", "selfie", mode="offline", quick=False),
]
METRICS = ("iou", "edge_error", "flicker", "lag")


def run(*, quick: bool = False, frames: int = 90, infer_ms: float = 75.0, model: bool = True,
        people: Path = PEOPLE, log=print) -> dict:
    """Score every row on every clip; returns ``{"rows": {key: {clip: scores}}, ...}``."""
    from vbg.evaluation import (
        MOTIONS,
        ClipTruth,
        LiveSettings,
        OracleSegmenter,
        OracleSource,
        QualityMeter,
        SegmenterSource,
        load_person,
        load_room,
        render_clip,
        score_live,
        score_offline,
    )
    from vbg.evaluation.simulate import delay_frames

    person = load_person(people / "example03_rgba.png")
    room = load_room(people / "background01.jpg")
    sources = {
        "oracle": OracleSource(OracleSegmenter(INFER_SIZE)),
        "late": OracleSource(OracleSegmenter(INFER_SIZE, infer_ms=infer_ms)),
        "jitter": OracleSource(OracleSegmenter(INFER_SIZE, jitter=JITTER)),
    }
    rows = [r for r in ROWS if (r.quick or not quick) and (model or r.source != "selfie")]
    if any(r.source == "selfie" for r in rows):
        from vbg.inference import SegmenterConfig, create_segmenter

        sources["selfie"] = SegmenterSource(create_segmenter(SegmenterConfig(model="selfie", device="cpu")))
    out: dict[str, dict[str, dict]] = {r.key: {} for r in rows}
    seconds: dict[str, float] = {r.key: 0.0 for r in rows}
    for motion in MOTIONS:
        clip = render_clip(person, room, motion, n_frames=frames, size=SIZE)
        truth = ClipTruth(clip)
        for r in rows:
            t0 = time.perf_counter()
            if r.source == "truth":
                meter = QualityMeter(radius=truth.radius)
                for t in range(WARMUP, len(clip)):
                    meter.add(clip.truths[t], clip.truths[t], band=truth.bands[t])
                s = meter.result()
            elif r.mode == "offline":
                s = score_offline(clip, sources[r.source], truth=truth, warmup=WARMUP)
            else:
                s = score_live(clip, sources[r.source], LiveSettings(**r.settings), truth=truth, warmup=WARMUP)
            seconds[r.key] += time.perf_counter() - t0
            out[r.key][motion] = s.as_dict()
        log(f"{motion:6s} " + "  ".join(f"{r.key}={out[r.key][motion]['iou']:.4f}" for r in rows[:6]))
    selfie_ms = sources["selfie"].infer_ms if "selfie" in sources else None
    return {
        "rows": out,
        "labels": {r.key: r.label.format(ms=f"{infer_ms:g}") for r in rows},
        "seconds": seconds,
        "clips": list(MOTIONS),
        "frames": frames,
        "size": SIZE,
        "inference_size": list(sources["oracle"].input_size(SIZE)),
        "infer_ms": infer_ms,
        "delay_frames": delay_frames(infer_ms, 30.0),
        "selfie_infer_ms": selfie_ms,
        "jitter_px": JITTER,
    }


def unseen_loss(frames: int = 90, people: Path = PEOPLE) -> dict:
    """Where ``--skip 3`` loses IoU on the leave clip: frames whose newest mask saw under
    half of the person now in view (they are walking back in) against all other frames."""
    from vbg.evaluation import (
        LiveSettings,
        OracleSegmenter,
        OracleSource,
        iou,
        load_person,
        load_room,
        render_clip,
        simulate_live,
    )
    from vbg.evaluation.metrics import EMPTY_AREA

    clip = render_clip(load_person(people / "example03_rgba.png"), load_room(people / "background01.jpg"), "leave",
                       n_frames=frames, size=SIZE)
    src = OracleSource(OracleSegmenter(INFER_SIZE))
    every = [iou(a, clip.truths[t], empty_area=EMPTY_AREA)
             for t, (a, _) in enumerate(simulate_live(clip, src, LiveSettings(skip=1, smoothing=0)))]
    area = [float((t >= 0.5).sum()) for t in clip.truths]
    unseen, other = [], []
    for t, (a, ms) in enumerate(simulate_live(clip, src, LiveSettings(skip=3, smoothing=0))):
        if t < WARMUP:
            continue
        loss = every[t] - iou(a, clip.truths[t], empty_area=EMPTY_AREA)
        (unseen if area[ms] < 0.5 * area[t] else other).append(loss)
    n = len(unseen) + len(other)
    return {"frames": n, "unseen_frames": len(unseen), "unseen_loss": sum(unseen) / n, "other_loss": sum(other) / n}


def totals(by_clip: dict[str, dict]) -> dict:
    """Mean over clips of each metric (NaN entries, e.g. lag on the still clip, left out)."""
    res = {}
    for m in METRICS:
        vals = [v[m] for v in by_clip.values() if not math.isnan(v[m])]
        res[m] = float(np.mean(vals)) if vals else math.nan
    return res


def check_targets(res: dict) -> list[dict]:
    """The issue's oracle targets, each with its numbers and whether it holds."""
    from vbg.evaluation import MOVING

    rows, t = res["rows"], []
    if "skip3" in rows:
        for clip in MOVING:
            every, skip, stale = (rows[k][clip]["iou"] for k in ("every", "skip3", "skip3_stale"))
            t.append({"target": f"skip 3 + propagation within 0.01 IoU of every frame, and clearly above the stale mask: {clip}",
                      "value": f"every {every:.4f}, skip 3 {skip:.4f} (-{every - skip:.4f}), stale {stale:.4f} (-{every - stale:.4f})",
                      "holds": every - skip <= 0.01 and (every - stale) >= 2 * (every - skip)})
    bil, edge = totals(rows["every_bilinear"])["edge_error"], totals(rows["every"])["edge_error"]
    t.append({"target": "edge-aware upsampling cuts the edge error by >= 30% against bilinear (all clips)",
              "value": f"{edge:.4f} vs {bil:.4f} ({(edge / bil - 1) * 100:+.0f}%)", "holds": edge <= 0.7 * bil})
    raw, sm = rows["jit_raw"]["still"]["flicker"], rows["jit_smooth"]["still"]["flicker"]
    lags = [rows["jit_smooth"][c]["lag"] for c in MOVING]
    t.append({"target": "smoothing cuts flicker by >= half (still clip, jittery oracle) with lag <= 1 frame (moving clips)",
              "value": f"flicker {sm * 1000:.3f} vs {raw * 1000:.3f} ({(sm / raw - 1) * 100:+.0f}%), "
                       f"lag {', '.join(f'{v:.2f}' for v in lags)}",
              "holds": sm <= 0.5 * raw and max(lags) <= 1.0})
    off = rows["jit_offline"]["still"]["flicker"]
    olags = [rows["jit_offline"][c]["lag"] for c in MOVING]
    t.append({"target": "offline centred smoothing: the same",
              "value": f"flicker {off * 1000:.3f} vs {raw * 1000:.3f} ({(off / raw - 1) * 100:+.0f}%), "
                       f"lag {', '.join(f'{v:.2f}' for v in olags)}",
              "holds": off <= 0.5 * raw and max(olags) <= 1.0})
    if "halo" in res:
        h = res["halo"]["dark room"]
        t.append({"target": "selfie + mask-weighted blur: no halo (bright person on a darker room): the band next to "
                            "the person moves by under 3% of the person/room contrast",
                  "value": f"{h['mask_weighted']:+.2f} grey levels ({abs(h['mask_weighted']) / h['contrast']:.1%}) vs "
                           f"plain blur {h['plain']:+.2f} ({abs(h['plain']) / h['contrast']:.1%}); contrast {h['contrast']:.0f}",
                  "holds": abs(h["mask_weighted"]) <= 0.03 * h["contrast"]})
    return t


def halo(people: Path = PEOPLE, frames: int = 30) -> dict:
    """Selfie masks (live defaults) on the sway clip, blurred backgrounds compared."""
    from vbg.evaluation import (
        LiveSettings,
        SegmenterSource,
        load_person,
        load_room,
        render_clip,
        simulate_live,
    )
    from vbg.evaluation.halo import measure_halo
    from vbg.inference import SegmenterConfig, create_segmenter

    person = load_person(people / "example03_rgba.png")
    room = load_room(people / "background01.jpg")
    seg = SegmenterSource(create_segmenter(SegmenterConfig(model="selfie", device="cpu")))
    out = {}
    for name, gain in (("room as is", 1.0), ("dark room", 0.6)):
        clip = render_clip(person, room, "sway", n_frames=frames, size=SIZE, room_gain=gain)
        alphas = [a.copy() for a, _ in simulate_live(clip, seg, LiveSettings())]
        out[name] = measure_halo(clip.frames, clip.truths, alphas, clip.room).as_dict()
    return out


def costs(n: int = 90) -> dict:
    """``MaskTracker.update`` per frame at 720p, ``--skip 3``: the render thread's mask work.

    Medians over ``n`` frames of a fast sideways move (after 6 warm-up frames),
    split into frames with a fresh model mask and frames that carry one (1 or 2 frames old).
    """
    import cv2

    from vbg.evaluation import load_person, load_room, render_clip
    from vbg.inference.tracker import MaskTracker
    from vbg.models.preprocess import inference_size
    from vbg.types import Mask

    hw = (720, 1280)
    clip = render_clip(load_person(PEOPLE / "example03_rgba.png"), load_room(PEOPLE / "background01.jpg"),
                       "fast", n_frames=16, size=hw)
    mask_hw = inference_size(hw, INFER_SIZE)
    small = [cv2.resize(t, mask_hw[::-1], interpolation=cv2.INTER_AREA) for t in clip.truths]
    cases = {
        "live defaults (edge-aware, propagation, smoothing 1)": {},
        "bilinear upsampling": dict(upsample="bilinear"),
        "frame-guided filter upsampling (`--upsample guided`)": dict(upsample="guided"),
        "no propagation": dict(propagate=False),
        "smoothing 0": dict(smoothing=0.0),
    }
    out = {}
    for name, kw in cases.items():
        tr = MaskTracker(hw, mask_hw, **kw)
        fresh, carried = [], []
        for seq in range(n + 6):
            i = seq % 30
            i = i if i < 16 else 30 - i  # back and forth: the motion stays continuous
            i = min(i, 15)
            m = Mask(seq, 0.0, small[i], 0.0, 0.0) if seq % 3 == 0 else None
            t0 = time.perf_counter()
            tr.update(clip.frames[i], seq, m)
            dt = (time.perf_counter() - t0) * 1000.0
            if seq >= 6:
                (fresh if m is not None else carried).append(dt)
        out[name] = {"fresh_ms": float(np.median(fresh)), "carried_ms": float(np.median(carried))}
    return out


def markdown(res: dict, info: dict, command: str) -> str:
    rows, labels, clips = res["rows"], res["labels"], res["clips"]
    h, w = res["size"]
    ih, iw = res["inference_size"]
    md = [
        "# Matte quality (`python -m benchmarks.quality`)\n",
        (f"Machine: {info['cpu']}, {info['cores']} cores, no GPU; Python {info['python']}, "
         f"onnxruntime {info.get('onnxruntime', '-')}. Command: `{command}`.\n"),
        (f"Clips: the person of `tests/data/people` over its room, {w}x{h}, 30 fps, {res['frames']} frames each "
        f"({', '.join(clips)}); the first {WARMUP} frames of each are not scored. Masks at {ih}x{iw} "
        f"(`--size {INFER_SIZE}`). Oracle: the true alpha at that size (INTER_AREA). Late: the oracle "
        f"{res['infer_ms']:g} ms late ({res['delay_frames']} frames at 30 fps; `--skip auto` then runs it once "
        f"every {_auto_n(res['infer_ms'])} frames). Jittery oracle: its edge wanders {res['jitter_px']:g} mask px "
        "per frame (as much as the selfie model's masks change on the still clip). "
         + (f"Selfie: the bundled model, {res['selfie_infer_ms']:.1f} ms a frame here. "
            if res.get("selfie_infer_ms") else "")
         + "\n"),
        ("Metrics: **IoU** of the silhouettes cut at 0.5, mean over frames (1.0 when both are empty, a silhouette "
         "under 0.1% of the frame counting as empty); **edge** = mean "
        "absolute alpha error within 5 px of the true edge; **flicker** = mean frame-to-frame change of the predicted "
        "alpha where the truth did not change, x1000 (on the moving clips few pixels near the person qualify); "
        "**lag** = the frame shift that best lines the prediction up with the truth (positive: behind; sub-frame "
        "estimate; none on the still clip). Totals: mean over clips.\n"),
        "| setting | IoU | edge | flicker x1000 | lag (frames) |",
        "|---|---|---|---|---|",
    ]
    for key, by_clip in rows.items():
        tot = totals(by_clip)
        md.append(f"| {labels[key]} | {tot['iou']:.4f} | {tot['edge_error']:.4f} | {tot['flicker'] * 1000:.3f} | "
                  f"{_f(tot['lag'])} |")
    for metric, name, fmt in (("iou", "IoU", "{:.4f}"), ("edge_error", "Edge error", "{:.4f}"),
                              ("flicker", "Flicker x1000", "{:.3f}"), ("lag", "Lag (frames)", "{:.2f}")):
        md += ["", f"### {name} per clip\n", "| setting | " + " | ".join(clips) + " |", "|---|" + "---|" * len(clips)]
        scale = 1000.0 if metric == "flicker" else 1.0
        for key, by_clip in rows.items():
            cells = []
            for c in clips:
                v = by_clip[c][metric]
                cells.append("-" if math.isnan(v) else fmt.format(v * scale))
            md.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    if "halo" in res:
        md += ["", "### Halo (selfie model, live defaults, sway clip, blur strength 1)\n",
               ("Mean luma change (grey levels) of the composite within 2-12 px outside the true silhouette, "
                "against the same composite over the blur of the empty room: what the person adds to the blurred "
                "background around them. Contrast = person minus room luma.\n"),
               "| room | contrast | mask-weighted blur (`--blur`) | plain full-frame blur |", "|---|---|---|---|"]
        for name, v in res["halo"].items():
            md.append(f"| {name} | {v['contrast']:.0f} | {v['mask_weighted']:+.2f} | {v['plain']:+.2f} |")
    if "costs" in res:
        md += ["", "### Per-frame cost of the mask path (`MaskTracker.update`, 1280x720, mask 160x256, `--skip 3`)\n",
               "Median ms per frame: on frames with a fresh model mask, and on frames that carry it (1-2 frames old).\n",
               "| case | fresh frame | carried frame |", "|---|---|---|"]
        for name, v in res["costs"].items():
            md.append(f"| {name} | {v['fresh_ms']:.2f} | {v['carried_ms']:.2f} |")
    md += ["", "### Targets (oracle at 256 on 640x360)\n", "| target | numbers | holds |", "|---|---|---|"]
    for t in res["targets"]:
        md.append(f"| {t['target']} | {t['value']} | {'yes' if t['holds'] else '**no**'} |")
    if "unseen" in res:
        u = res["unseen"]
        md.append(f"\nOn the leave clip, `--skip 3` loses {u['unseen_loss'] + u['other_loss']:.4f} of mean IoU: "
                  f"{u['unseen_loss']:.4f} of it on the {u['unseen_frames']} of {u['frames']} frames whose newest mask "
                  f"saw under half of the person now in view (walking back in at up to 30 px a frame: there is no "
                  f"mask of that part to carry), {u['other_loss']:.4f} on all the others.")
    return "\n".join(md) + "\n"


def _auto_n(infer_ms: float, fps: float = 30.0) -> int:
    from vbg.inference.scheduler import SkipGovernor

    g = SkipGovernor("auto", 1 / fps)
    g.observe(infer_ms)
    return g.current_n


def _f(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


# ------------------------------------------------------------------ real footage (--real DIR)

REAL_WARMUP = 2  # frames not scored at the start of each sequence: before a late model's first mask


@dataclass(frozen=True)
class RealRow:
    key: str
    label: str
    mode: str  # reference | offline | live
    settings: dict = field(default_factory=dict)


REAL_ROWS = [
    RealRow("reference", "per-frame reference: the model on every frame, no smoothing", "reference"),
    RealRow("offline", "`vbg process` (every frame, centred smoothing, window 2)", "offline"),
    RealRow("auto", "live `--skip auto` (defaults)", "live", dict(skip="auto")),
    RealRow("skip2", "live `--skip 2`, propagation", "live", dict(skip=2)),
    RealRow("skip3", "live `--skip 3`, propagation", "live", dict(skip=3)),
    RealRow("skip3_stale", "live `--skip 3`, stale mask (no propagation)", "live", dict(skip=3, propagate=False)),
]
REAL_METRICS = ("iou", "boundary_f", "flicker", "lag")
CROPS = ("off", "auto")  # auto: each row also with the person crop (vbg.inference.crop)
CROP_ROWS = ("reference", "offline", "auto", "skip3")  # the rows run again with the crop


class _TakesMs:
    """The model as the live crop's budget sees it: every run takes ``ms`` of its own clock."""

    can_crop = True

    def __init__(self, seg, ms: float) -> None:
        self.seg, self.ms, self.t = seg, ms, 0.0

    def now(self) -> float:
        return self.t

    def input_size(self, frame_hw):
        return self.seg.input_size(frame_hw)

    def segment(self, rgb, size_hw=None):
        self.t += self.ms / 1000.0
        return self.seg.segment(rgb, size_hw=size_hw)

    def close(self) -> None:
        pass


def measure_model_ms(segmenter, frame: np.ndarray) -> dict:
    """The model's time for one frame here (median of 20 runs after 3), with the machine's load beside it."""
    from benchmarks.common import time_call

    load_before = os.getloadavg()
    t = time_call(lambda: segmenter.segment(frame), warmup=3, repeat=20)
    return {**t, "loadavg": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()]}


def score_real(clip, preds, *, warmup: int, boundary_tol: int) -> dict:
    """Scores of one prediction stream (``(alpha, mask_seq)`` pairs; ``mask_seq == t``: a fresh
    mask on frame ``t``), with the IoU split between fresh frames and carried ones."""
    from vbg.evaluation import QualityMeter

    meter = QualityMeter(boundary_tol=boundary_tol)
    fresh = []
    n = 0
    for t, (alpha, seq) in enumerate(preds):
        n += 1
        if t < warmup:
            continue
        meter.add(alpha, clip.truths[t])
        fresh.append(seq == t)
    if n != len(clip):
        raise ValueError(f"{n} predictions for a sequence of {len(clip)} frames")
    res = meter.result().as_dict()
    ious, bfs = meter.ious, meter.boundary_fs
    for kind, want in (("fresh", True), ("carried", False)):
        sel = [i for i, f in enumerate(fresh) if f == want]
        res[f"{kind}_n"] = len(sel)
        res[f"{kind}_iou"] = float(np.mean([ious[i] for i in sel])) if sel else math.nan
        res[f"{kind}_boundary_f"] = float(np.mean([bfs[i] for i in sel])) if sel else math.nan
    return res


def run_real(root: Path, *, model: str = "selfie", fps: float = 24.0, model_ms: float | None = None,
             crop: str = "auto", warmup: int = REAL_WARMUP, log=print) -> dict:
    """Every mode of :data:`REAL_ROWS` on every sequence under ``root``.

    The model runs once per frame (masks cached); the per-frame reference and
    ``vbg process`` use them as they are, the live rows on the schedule a model
    of ``model_ms`` (measured here when None) gets at ``fps``, frame-exactly.
    """
    from vbg.errors import ConfigError
    from vbg.evaluation import (
        LiveSettings,
        SegmenterSource,
        Timed,
        boundary_tolerance,
        delay_frames,
        find_sequences,
        load_sequence,
        simulate_live,
        simulate_offline,
    )
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.inference.crop import (
        CROP_RUNS,
        OFFLINE_LANES,
        CropPlan,
        CroppedSegmenter,
        canvas_size,
    )

    if crop not in CROPS:
        raise ConfigError(f"crop {crop!r} is not known: use {' or '.join(CROPS)}")
    if model_ms is not None and not (isinstance(model_ms, (int, float)) and 0.0 <= model_ms <= 10_000):
        raise ConfigError(f"model time {model_ms!r} ms is out of range: use 0..10000")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warm-up {warmup!r} is not valid: use a whole number of frames >= 0")
    folders = find_sequences(root)
    seg = create_segmenter(SegmenterConfig(model=model, device="cpu"))
    source = SegmenterSource(seg)
    timing = None
    rows = list(REAL_ROWS)
    if crop == "auto":
        rows += [RealRow(f"{r.key}_crop", f"{r.label}, person crop", r.mode, {**r.settings, "crop": True})
                 for r in REAL_ROWS if r.key in CROP_ROWS]
    out: dict[str, dict[str, dict]] = {r.key: {} for r in rows}
    crop_stats: dict[str, dict[str, list[int]]] = {}
    sizes = {}
    for folder in folders:
        clip = load_sequence(folder, fps=fps)
        if len(clip) <= warmup:
            raise ConfigError(f"{folder} has {len(clip)} frames, not more than the warm-up ({warmup}): "
                              "use a longer sequence or a smaller --warmup")
        if model_ms is None:
            timing = measure_model_ms(seg, clip.frames[0])
            model_ms = timing["median_ms"]
        instant, timed = Timed(source, 0.0), Timed(source, model_ms)
        h, w = clip.frames[0].shape[:2]
        tol = boundary_tolerance(h)
        sizes[clip.motion] = {"size": [h, w], "frames": len(clip), "mask_size": list(source.input_size((h, w))),
                              "boundary_tol": tol}
        for r in rows:
            settings = dict(r.settings)
            cropped = None
            if settings.pop("crop", False):  # a fresh crop per row: its boxes follow the frames the model sees
                lanes = OFFLINE_LANES if r.mode == "offline" else 1
                live = r.mode not in ("reference", "offline")
                # Live as the pipeline sets it: masks at the model's size, and the crop only while
                # a cropped frame's two model runs (the crop and the whole-frame look it is joined
                # with) fit in one frame interval; the live rows then run on that clock.
                inner = _TakesMs(seg, model_ms) if live else seg
                budget = {"budget_ms": 1000.0 / fps, "clock": inner.now} if live else {}
                cropped = CroppedSegmenter(inner, plan=CropPlan((h, w), canvas_size(seg.input_size((h, w)), (h, w)),
                                                                lanes=lanes), **budget)
                src = SegmenterSource(cropped, sequenced=True)
                row_ms = CROP_RUNS * model_ms if live and CROP_RUNS * model_ms <= 1000.0 / fps else model_ms
                row_instant, row_timed = Timed(src, 0.0), Timed(src, row_ms)
            else:
                row_instant, row_timed = instant, timed
            if r.mode == "reference":
                preds = simulate_live(clip, row_instant, LiveSettings(skip=1, smoothing=0.0))
            elif r.mode == "offline":
                preds = ((a, t) for t, a in enumerate(simulate_offline(clip, row_instant)))
            else:
                preds = simulate_live(clip, row_timed, LiveSettings(**settings))
            out[r.key][clip.motion] = score_real(clip, preds, warmup=warmup, boundary_tol=tol)
            if cropped is not None:
                crop_stats.setdefault(r.key, {})[clip.motion] = [cropped.crops, cropped.declined,
                                                                 len(src.times_ms)]
        log(f"{clip.motion:20s} " + "  ".join(f"{r.key}={out[r.key][clip.motion]['iou']:.4f}" for r in rows))
    return {
        "rows": out,
        "labels": {r.key: r.label for r in rows},
        "crop_runs": crop_stats,  # per crop row and sequence: [frames cropped, crops the budget declined, frames segmented]
        "sequences": sizes,
        "root": str(root),
        "model": model,
        "model_ms": model_ms,
        "model_timing": timing,
        "delay_frames": delay_frames(model_ms, fps),
        "auto_n": _auto_n(model_ms, fps),
        "fps": fps,
        "crop": crop,
        "warmup": warmup,
    }


def real_totals(by_seq: dict[str, dict]) -> dict:
    """Mean over sequences of each metric; the fresh/carried split pooled over frames."""
    res = {}
    for m in REAL_METRICS:
        vals = [v[m] for v in by_seq.values() if not math.isnan(v[m])]
        res[m] = float(np.mean(vals)) if vals else math.nan
    for kind in ("fresh", "carried"):
        n = sum(v[f"{kind}_n"] for v in by_seq.values())
        res[f"{kind}_n"] = n
        res[f"{kind}_iou"] = (sum(v[f"{kind}_iou"] * v[f"{kind}_n"] for v in by_seq.values() if v[f"{kind}_n"]) / n
                              if n else math.nan)
    return res


def real_markdown(res: dict, info: dict, command: str) -> str:
    from vbg.inference.scheduler import fresh_wait_ms

    rows, labels = res["rows"], res["labels"]
    seqs = list(res["sequences"])
    t = res["model_timing"]
    timing = (f"{res['model_ms']:.1f} ms a frame, measured here (median of {t['runs']}, p95 {t['p95_ms']:.1f} ms, "
              f"min {t['min_ms']:.1f} ms) with the machine's load average at "
              f"{', '.join(f'{v:.1f}' for v in t['loadavg'])} (1, 5, 15 min) on {info['cores']} cores"
              if t else f"{res['model_ms']:g} ms a frame (given with --model-ms)")
    desc = ", ".join(f"`{k}` ({v['frames']} frames, {v['size'][1]}x{v['size'][0]})"
                     for k, v in res["sequences"].items())
    first = next(iter(res["sequences"].values()))
    md = [
        "# Matte quality on real footage (`python -m benchmarks.quality --real`)\n",
        (f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; Python {info['python']}, "
         f"onnxruntime {info.get('onnxruntime', '-')}. Command: `{command}`.\n"),
        (f"Sequences: {desc}, {res['fps']:g} fps, hand-drawn masks; the first {res['warmup']} frames of each are "
         f"not scored. Model: `{res['model']}`, masks at {first['mask_size'][1]}x{first['mask_size'][0]}, "
         f"{timing}. The live rows run the model on that clock, frame-exactly: its mask reaches the frame "
         f"{res['delay_frames']} frame(s) after the one it saw (0: waited for, as the pipeline does for a model of "
         f"at most {fresh_wait_ms(1000.0 / res['fps']):.1f} ms at this frame rate), and `--skip auto` runs it on 1 frame in {res['auto_n']}. Person crop: {res['crop']}"
         f"{' (live, as the pipeline does, only while its two model runs, the crop and the whole-frame look, fit in one frame interval, and then on twice the model time)' if res['crop'] == 'auto' else ''}.\n"),
        ("Metrics: **IoU** of the silhouettes cut at 0.5, mean over frames; **boundary F** (DAVIS: contour pixels "
         f"matched within {first['boundary_tol']} px, 3 px at 480p scaled with the height), mean over frames; "
         "**flicker** = mean frame-to-frame change of the alpha where the truth did not change, x1000; **lag** = "
         "frames the silhouette trails the truth; **fresh / carried** = IoU on the frames shown with a mask the "
         "model made of that very frame, and on those shown with an older mask (carried by propagation, or kept "
         "as it was), with their counts (all sequences pooled). The masks include what the person rides or "
         "holds, which a person model does not look for: compare the rows with the reference, not with 1.0. "
         "Means: over sequences.\n"),
        ("| mode | IoU | IoU - ref | boundary F | F - ref | flicker x1000 | flicker vs ref | lag | fresh IoU (n) "
         "| carried IoU (n) |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = real_totals(rows["reference"])
    for key, by_seq in rows.items():
        tot = real_totals(by_seq)
        fl = f"{(tot['flicker'] / ref['flicker'] - 1) * 100:+.0f}%" if ref["flicker"] else "-"
        md.append(f"| {labels[key]} | {tot['iou']:.4f} | {tot['iou'] - ref['iou']:+.4f} | {tot['boundary_f']:.4f} | "
                  f"{tot['boundary_f'] - ref['boundary_f']:+.4f} | {tot['flicker'] * 1000:.3f} | {fl} | "
                  f"{_f(tot['lag'])} | {_fn(tot['fresh_iou'], tot['fresh_n'])} | "
                  f"{_fn(tot['carried_iou'], tot['carried_n'])} |")
    for metric, name, fmt, scale in (("iou", "IoU", "{:.4f}", 1.0), ("boundary_f", "Boundary F", "{:.4f}", 1.0),
                                     ("flicker", "Flicker x1000", "{:.3f}", 1000.0),
                                     ("lag", "Lag (frames)", "{:.2f}", 1.0)):
        md += ["", f"### {name} per sequence\n", "| mode | " + " | ".join(seqs) + " |", "|---|" + "---|" * len(seqs)]
        for key, by_seq in rows.items():
            cells = ["-" if math.isnan(by_seq[q][metric]) else fmt.format(by_seq[q][metric] * scale) for q in seqs]
            md.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    md += ["", "### Fresh and carried frames per sequence: IoU (frames)\n",
           "| mode | " + " | ".join(f"{q} fresh | {q} carried" for q in seqs) + " |",
           "|---|" + "---|---|" * len(seqs)]
    for key, by_seq in rows.items():
        cells = [f"{_fn(by_seq[q]['fresh_iou'], by_seq[q]['fresh_n'])} | "
                 f"{_fn(by_seq[q]['carried_iou'], by_seq[q]['carried_n'])}" for q in seqs]
        md.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def _fn(v: float, n: int) -> str:
    return "- (0)" if not n else f"{v:.4f} ({n})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the rows the targets need; no halo or cost tables")
    ap.add_argument("--frames", type=int, default=90, help="frames per clip (the leave clip needs 80)")
    ap.add_argument("--infer-ms", type=float, default=75.0, help="inference time of the late oracle")
    ap.add_argument("--no-model", action="store_true", help="skip the selfie model rows and the halo")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--real", type=Path, metavar="DIR",
                    help="score real footage instead: a folder of sequences "
                         "NAME/images/NNNNN.jpg + NAME/masks/NNNNN.png")
    ap.add_argument("--fps", type=float, default=24.0, help="(--real) the sequences' frame rate")
    ap.add_argument("--model", default="selfie", help="(--real) the model to run")
    ap.add_argument("--model-ms", type=float, help="(--real) the model's time a frame for the live schedule "
                    "(default: measured here)")
    ap.add_argument("--crop", choices=CROPS, default="auto",
                    help="(--real) auto: run the main rows again with the person crop; off: without it only")
    ap.add_argument("--warmup", type=int, default=REAL_WARMUP, help="(--real) frames not scored at each start")
    args = ap.parse_args(argv)
    if args.real is not None:
        return main_real(args)

    t0 = time.perf_counter()
    res = run(quick=args.quick, frames=args.frames, infer_ms=args.infer_ms, model=not args.no_model)
    res["unseen"] = unseen_loss(args.frames)
    if not args.quick and not args.no_model:
        res["halo"] = halo()
    if not args.quick:
        res["costs"] = costs()
    res["targets"] = check_targets(res)
    res["wall_s"] = time.perf_counter() - t0
    info = machine_info()
    cmd = "python -m benchmarks.quality" + (" --quick" if args.quick else "") + (
        f" --frames {args.frames}" if args.frames != 90 else "") + (" --no-model" if args.no_model else "")
    text = markdown(res, info, cmd)
    print("\n" + text)
    js, md = write_results(args.out, "quality", {"machine": info, **res}, text)
    print(f"wrote {js} and {md} ({res['wall_s']:.0f} s)")
    return 0


def main_real(args) -> int:
    import sys

    from vbg.errors import VbgError

    t0 = time.perf_counter()
    try:
        res = run_real(args.real, model=args.model, fps=args.fps, model_ms=args.model_ms, crop=args.crop,
                       warmup=args.warmup)
    except VbgError as e:
        print(f"benchmarks.quality: error: {e}", file=sys.stderr)
        return e.exit_code
    res["wall_s"] = time.perf_counter() - t0
    info = machine_info()
    cmd = (f"python -m benchmarks.quality --real {args.real} --model {args.model}"
           + (f" --fps {args.fps:g}" if args.fps != 24.0 else "")
           + (f" --model-ms {args.model_ms:g}" if args.model_ms is not None else "")
           + (f" --crop {args.crop}" if args.crop != "auto" else "")
           + (f" --warmup {args.warmup}" if args.warmup != REAL_WARMUP else ""))
    text = real_markdown(res, info, cmd)
    print("\n" + text)
    js, md = write_results(args.out, "quality_real", {"machine": info, **res}, text)
    print(f"wrote {js} and {md} ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
