"""The person crop: the model looks again at the region around a small person.

``--crop auto`` (``[model] crop``, the default) for the live filter, ``vbg
process`` and ``vbg segment``; :func:`crop_segmenters` wraps their segmenters.
In: a segmenter to wrap and RGB uint8 frames of one stream, in order.
``CroppedSegmenter`` has the wrapped segmenter's interface; it runs it on a box
around the person, found from the masks it made before, and joins that mask
with a whole-frame look at the same frame (the whole frame alone at the start,
when nobody was found, and for a close-up). Out: a float32 mask on a fixed
canvas of the frame (``input_size``: the model's input size times
``canvas_zoom``, 1 by default: the mask size without the crop), so the stages
downstream keep one mask size for the whole stream.

Buffers: ``segment`` returns the canvas, reused on the next call (callers copy
it, as they copy a model's output). Thread: one object per stream and thread;
several (``vbg process``'s workers, each with its own model session) may share
one :class:`CropPlan`, which hands out the boxes in frame order under a lock.

How the box is chosen: docs/design/person-crop.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import ConfigError

log = logging.getLogger("vbg.inference")

CROP_MODES = ("auto", "off")
MARGIN = 0.1  # of the person's box, on every side
ZOOM = 3.0  # the crop is at least 1/ZOOM of the frame: at most ZOOM times the whole frame's detail
# The mask's size, of the model's input: 1, the size it has without the crop, so nothing
# downstream (the trackers, the render thread) costs more, and a close-up's mask is the model's
# own, bit for bit. A 2x canvas kept more of the crop's detail (`vbg process` on davis-people:
# boundary F +0.033 against +0.026) but cost every frame, close-ups too: 14% of `vbg process`'s
# frame rate in a one-round trial of python -m benchmarks.crop_cost.
CANVAS_ZOOM = 1.0
RECHECK = 24  # model runs between whole-frame looks for someone entering (about 1 s at 24 fps)
MIN_PART = 0.05  # a mask component smaller than this share of the largest does not widen the box
FULL_AT = 0.8  # a box this large (of the frame's side) is the whole frame: a close-up
KEEP_SLACK = 1.3  # a kept box may be up to this much larger (per side) than the one needed
LOST_AREA = 1e-4  # a mask covering less of the canvas than this found nobody
OFFLINE_LANES = 2  # vbg process: frame t's box comes from frame t-2's mask, whatever the worker count
FUSE = True  # each crop's mask joined with a whole-frame look at the same frame
CROP_RUNS = 2  # model runs on a cropped frame (with FUSE)
RUN_MS_WEIGHT = 0.2  # the newest run's weight in the moving average of the model's time
# The box grows by this many times how far the person's box edges moved since the last mask.
# 0: with every crop joined to a whole-frame look (FUSE), what a fast move takes out of the box
# is still found at the whole frame's detail, and a box grown for motion costs the zoom
# (davis-people, per-frame: 0.6226 IoU at 0 against 0.6028 at 1).
MOTION = 0.0


def parse_crop(text) -> str:
    mode = str(text).strip().lower()
    if mode not in CROP_MODES:
        raise ConfigError(f"crop {text!r} is not known: use auto (a box around the person) or off (the whole frame)")
    return mode


class CropPlanner:
    """Where the model looks next, from the masks it made: ``box()``, then ``observe(canvas)``.

    Boxes are ``(x0, y0, x1, y1)`` in frame pixels. ``observe`` takes the
    canvas-sized mask of the frame the last box was used on.
    """

    def __init__(self, frame_hw: tuple[int, int], canvas_hw: tuple[int, int], *, margin: float = MARGIN,
                 zoom: float = ZOOM, recheck: int = RECHECK) -> None:
        self.frame_hw, self.canvas_hw = frame_hw, canvas_hw
        self.margin, self.zoom, self.recheck = margin, zoom, recheck
        self._bin = np.empty(canvas_hw, np.uint8)
        self._labels = np.empty(canvas_hw, np.int32)  # connectedComponentsWithStats' label image, reused
        self.reset()

    @property
    def whole(self) -> tuple[int, int, int, int]:
        h, w = self.frame_hw
        return (0, 0, w, h)

    def reset(self) -> None:
        self._box: tuple[int, int, int, int] | None = None  # the crop in use; None: the whole frame
        self._person: tuple[float, float, float, float] | None = None  # the last mask's box, frame pixels
        self._runs = 0

    def box(self) -> tuple[int, int, int, int]:
        return self._box or self.whole

    def recheck_due(self) -> bool:
        """An extra whole-frame look is due on this run (only while cropping)."""
        return self._box is not None and self.recheck > 0 and self._runs % self.recheck == 0

    def person_box(self, canvas: np.ndarray) -> tuple[float, float, float, float] | None:
        """The bounding box (frame pixels) of the mask's parts that matter, or None when it is empty."""
        ch, cw = self.canvas_hw
        np.greater(canvas, 0.5, out=self._bin.view(bool))
        if cv2.countNonZero(self._bin) < LOST_AREA * ch * cw:
            return None
        n, _, stats, _ = cv2.connectedComponentsWithStats(self._bin, labels=self._labels, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = stats[1:][areas >= MIN_PART * areas.max()]
        x0, y0 = keep[:, cv2.CC_STAT_LEFT].min(), keep[:, cv2.CC_STAT_TOP].min()
        x1 = (keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max()
        y1 = (keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max()
        h, w = self.frame_hw
        sx, sy = w / cw, h / ch
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)

    def observe(self, canvas: np.ndarray, *, whole_look: np.ndarray | None = None) -> None:
        """Plan the next box from the mask just made (``whole_look``: a whole-frame mask of the
        same frame, whose people join the box)."""
        self._runs += 1
        person = self.person_box(canvas)
        if whole_look is not None:
            other = self.person_box(whole_look)
            if other is not None:
                person = other if person is None else (min(person[0], other[0]), min(person[1], other[1]),
                                                        max(person[2], other[2]), max(person[3], other[3]))
        prev, self._person = self._person, person
        if person is None:  # nobody: look at the whole frame next
            self._box = None
            return
        h, w = self.frame_hw
        x0, y0, x1, y1 = person
        bw, bh = x1 - x0, y1 - y0
        # How far each edge moved since the last mask: the box grows by as much again.
        if prev is not None:
            mx = max(abs(x0 - prev[0]), abs(x1 - prev[2]))
            my = max(abs(y0 - prev[1]), abs(y1 - prev[3]))
        else:
            mx = my = 0.0
        need_w = bw * (1 + 2 * self.margin) + 2 * MOTION * mx
        need_h = bh * (1 + 2 * self.margin) + 2 * MOTION * my
        s = max(need_w / w, need_h / h, 1.0 / self.zoom)  # the crop's scale: the frame's aspect
        if s >= FULL_AT:
            self._box = None
            return
        old = self._box
        if old is not None:
            ow = old[2] - old[0]
            inside = (old[0] <= x0 - self.margin * bw and old[1] <= y0 - self.margin * bh
                      and old[2] >= x1 + self.margin * bw and old[3] >= y1 + self.margin * bh)
            if inside and ow <= KEEP_SLACK * s * w:
                return  # the person is still well inside a box not much too large: keep it
        cw_, ch_ = s * w, s * h
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bx0 = int(round(min(max(cx - cw_ / 2, 0.0), w - cw_)))
        by0 = int(round(min(max(cy - ch_ / 2, 0.0), h - ch_)))
        self._box = (bx0, by0, min(w, bx0 + int(round(cw_))), min(h, by0 + int(round(ch_))))


def canvas_size(model_hw: tuple[int, int], frame_hw: tuple[int, int], zoom: float = CANVAS_ZOOM) -> tuple[int, int]:
    """The mask size of a cropped stream: the model's input size times ``zoom``, at most the
    frame's, and never less than the model's own (``zoom`` 1: the mask size without the crop)."""
    (mh, mw), (fh, fw) = model_hw, frame_hw
    return max(mh, min(fh, int(round(mh * zoom)))), max(mw, min(fw, int(round(mw * zoom))))


class CropPlan:
    """The boxes of one stream, shared by the segmenters that work on it.

    ``lanes`` = 1 (live, ``vbg segment``): boxes follow the frames in the order
    they are segmented. ``lanes`` = L > 1 (``vbg process``, whose workers take
    frames as they come free): frame ``t``'s box comes from frame ``t - L``'s
    mask, each residue of ``t`` mod L its own chain, and ``begin(t)`` waits
    until frame ``t - L`` is done: the boxes, and so the output, do not depend
    on which worker got which frame, or on how many workers there are.
    """

    def __init__(self, frame_hw: tuple[int, int], canvas_hw: tuple[int, int], *, lanes: int = 1,
                 margin: float = MARGIN, zoom: float = ZOOM, recheck: int = RECHECK) -> None:
        import threading

        self.frame_hw, self.canvas_hw, self.lanes = frame_hw, canvas_hw, lanes
        self._planners = [CropPlanner(frame_hw, canvas_hw, margin=margin, zoom=zoom, recheck=recheck)
                          for _ in range(lanes)]
        self._done = [-1] * lanes  # per lane: the last frame observed
        self._cond = threading.Condition()

    def planner(self, seq: int | None) -> CropPlanner:
        return self._planners[0 if seq is None or self.lanes == 1 else seq % self.lanes]

    def begin(self, seq: int | None, cancel=None) -> CropPlanner:
        """The planner for frame ``seq``, once the frame before it in its lane is done."""
        p = self.planner(seq)
        if self.lanes == 1 or seq is None:
            return p
        lane = seq % self.lanes
        want = seq - self.lanes
        with self._cond:
            while want >= 0 and self._done[lane] < want:
                if cancel is not None and cancel.is_set():
                    raise InterruptedError("stopped while waiting for an earlier frame's mask")
                self._cond.wait(0.1)
        return p

    def end(self, seq: int | None) -> None:
        if self.lanes == 1 or seq is None:
            return
        with self._cond:
            self._done[seq % self.lanes] = seq
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            for p in self._planners:
                p.reset()
            self._done = [-1] * self.lanes


def crop_segmenters(segs, mode: str, frame_hw: tuple[int, int], *, lanes: int = 1,
                    canvas_zoom: float = CANVAS_ZOOM, **kw) -> tuple:
    """``segs`` (sessions of one model, for one stream of ``frame_hw`` frames) wrapped to look at
    the person's box, sharing one :class:`CropPlan`; as they are when ``mode`` is off or one of
    them cannot run on a crop (it lacks ``can_crop``: a test's stand-in). ``kw``: the
    budget and its clock (:class:`CroppedSegmenter`)."""
    segs = tuple(segs)
    if mode != "auto" or not all(getattr(s, "can_crop", False) for s in segs):
        return segs
    if len(segs) == 1 and lanes == 1:  # its own plan, remade if the stream's frame size changes
        return (CroppedSegmenter(segs[0], canvas_zoom=canvas_zoom, **kw),)
    canvas = canvas_size(segs[0].input_size(frame_hw), frame_hw, canvas_zoom)
    plan = CropPlan(frame_hw, canvas, lanes=lanes)
    return tuple(CroppedSegmenter(s, plan=plan, canvas_zoom=canvas_zoom, **kw) for s in segs)


class CroppedSegmenter:
    """A segmenter that runs ``inner`` on the person's box (docs/design/person-crop.md).

    Same interface as the segmenters it wraps (``input_size``, ``segment``,
    ``segment_full``, ``close``, ``providers``, ``source``). Several of them may
    share one :class:`CropPlan` (``vbg process``'s workers, each with its own
    model session); ``segment(rgb, seq=t)`` then names the frame.
    """

    def __init__(self, inner, *, plan: CropPlan | None = None, margin: float = MARGIN, zoom: float = ZOOM,
                 recheck: int = RECHECK, fuse: bool = FUSE, canvas_zoom: float = CANVAS_ZOOM,
                 budget_ms: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        """``budget_ms`` (the live filter: one frame interval): crop only while a cropped frame's
        model runs (``CROP_RUNS`` of them, timed with ``clock``, in seconds) fit in it; a model
        too slow for that looks at the whole frame alone, as without the crop."""
        self.inner = inner
        self.margin, self.zoom, self.recheck, self.fuse = margin, zoom, recheck, fuse
        self.canvas_zoom = canvas_zoom
        self.budget_ms, self._clock = budget_ms, clock
        self.run_ms: float | None = None  # one model run's time, a moving average (with a budget)
        self.declined = 0  # frames a crop was due on but the budget did not allow it
        self._plan = plan
        self._own_plan = plan is None
        self._canvas: np.ndarray | None = None
        self._whole: np.ndarray | None = None
        self._affine = np.zeros((2, 3), np.float64)
        self.crops = 0  # model runs on a crop (for the log and the benchmark)
        self.rechecks = 0

    @property
    def providers(self) -> list[str]:
        return self.inner.providers

    @property
    def source(self):
        return self.inner.source

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return canvas_size(self.inner.input_size(frame_hw), frame_hw, self.canvas_zoom)

    def _setup(self, frame_hw: tuple[int, int]) -> None:
        canvas_hw = self.input_size(frame_hw)
        if self._plan is None or self._own_plan and self._plan.frame_hw != frame_hw:
            self._plan = CropPlan(frame_hw, canvas_hw, margin=self.margin, zoom=self.zoom, recheck=self.recheck)
        if self._plan.frame_hw != frame_hw:
            raise ValueError(f"a {frame_hw[1]}x{frame_hw[0]} frame in a stream of "
                             f"{self._plan.frame_hw[1]}x{self._plan.frame_hw[0]} frames")
        self._canvas = np.zeros(canvas_hw, np.float32)
        self._whole = np.zeros(canvas_hw, np.float32)

    def reset(self) -> None:
        if self._plan is not None and self._own_plan:
            self._plan.reset()

    def box(self, seq: int | None = None) -> tuple[int, int, int, int] | None:
        """The box frame ``seq`` (or the next frame) will be cut to (None before the first frame)."""
        return None if self._plan is None else self._plan.planner(seq).box()

    def segment(self, rgb: np.ndarray, *, seq: int | None = None, cancel=None) -> np.ndarray:
        hw = rgb.shape[:2]
        if self._canvas is None or self._plan is None or self._plan.frame_hw != hw:
            self._setup(hw)
        plan, canvas = self._plan, self._canvas
        assert plan is not None and canvas is not None  # (made by _setup)
        planner = plan.begin(seq, cancel)
        try:
            model_hw = self.inner.input_size(hw)
            box = planner.box()
            if box != planner.whole and not self.affordable():
                box = planner.whole
                self.declined += 1
            self._paste(rgb, box, model_hw, canvas)
            look = None
            if box != planner.whole:
                self.crops += 1
                if self.fuse or planner.recheck_due():
                    self.rechecks += 1
                    look = self._paste(rgb, planner.whole, model_hw, self._whole)
                    if self.fuse:  # the person as either view sees them
                        np.maximum(canvas, look, out=canvas)
            planner.observe(canvas, whole_look=look)
        finally:
            plan.end(seq)
        return canvas

    def _paste(self, rgb: np.ndarray, box: tuple[int, int, int, int], model_hw: tuple[int, int],
               out: np.ndarray) -> np.ndarray:
        """The model's mask of ``rgb[box]`` written into ``out`` in its place (zero outside the box).

        One affine warp maps the mask's pixel centres onto the canvas's exactly: a box whose
        edges fall between canvas pixels is not shifted by rounding (2 px at 720p would cost a
        small person's IoU what the crop wins)."""
        x0, y0, x1, y1 = box
        h, w = rgb.shape[:2]
        t0 = self._clock() if self.budget_ms is not None else 0.0
        if (x0, y0, x1, y1) == (0, 0, w, h):
            alpha = self.inner.segment(rgb)
        else:
            alpha = self.inner.segment(rgb[y0:y1, x0:x1], size_hw=model_hw)
        if self.budget_ms is not None:
            ms = (self._clock() - t0) * 1000.0
            self.run_ms = ms if self.run_ms is None else self.run_ms + RUN_MS_WEIGHT * (ms - self.run_ms)
        return self._place(alpha, box, (h, w), out)

    def affordable(self) -> bool:
        """A cropped frame's model runs fit the budget (always without one; until timed, tried)."""
        return self.budget_ms is None or self.run_ms is None or self.runs_per_crop * self.run_ms <= self.budget_ms

    @property
    def runs_per_crop(self) -> int:
        return CROP_RUNS if self.fuse else 1

    def _place(self, alpha: np.ndarray, box: tuple[int, int, int, int], frame_hw: tuple[int, int],
               out: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box
        h, w = frame_hw
        ch, cw = out.shape
        mh, mw = alpha.shape
        sx, sy = (x1 - x0) / mw, (y1 - y0) / mh  # frame pixels per mask pixel
        ax, ay = sx * cw / w, sy * ch / h  # canvas pixels per mask pixel
        self._affine[0, 0], self._affine[0, 2] = ax, (x0 + 0.5 * sx) * cw / w - 0.5
        self._affine[1, 1], self._affine[1, 2] = ay, (y0 + 0.5 * sy) * ch / h - 0.5
        cv2.warpAffine(alpha, self._affine, (cw, ch), dst=out, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return out

    def segment_full(self, rgb: np.ndarray) -> np.ndarray:
        from ..models.preprocess import resize_alpha

        return resize_alpha(self.segment(rgb), rgb.shape[:2])

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        """One picture on its own (``vbg segment``): the whole frame, then, when it found a small
        person, their box joined with that whole-frame look (two model runs); the mask at the
        picture's size."""
        from ..models.preprocess import resize_alpha

        hw = rgb.shape[:2]
        self.reset()
        if self._canvas is None or self._plan is None or self._plan.frame_hw != hw:
            self._setup(hw)
        assert self._plan is not None and self._canvas is not None  # (made by _setup)
        assert self._whole is not None
        alpha = self.inner.segment(rgb)  # the whole frame, at the model's size
        planner = self._plan.planner(None)
        whole = self._place(alpha, planner.whole, hw, self._whole)
        planner.observe(whole)
        box = planner.box()
        if box == planner.whole:  # a close-up, or nobody: as without the crop
            return resize_alpha(alpha, hw)
        # The crop, joined with the whole-frame look already made (as segment() joins them).
        canvas = self._paste(rgb, box, self.inner.input_size(hw), self._canvas)
        self.crops += 1
        if self.fuse:
            np.maximum(canvas, whole, out=canvas)
        alpha = resize_alpha(canvas, hw)
        return alpha.copy() if alpha is canvas else alpha  # the canvas is the next picture's

    def close(self) -> None:
        self.inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
