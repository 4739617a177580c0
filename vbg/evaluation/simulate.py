"""The live and offline mask paths, driven frame by frame, deterministically.

Live: :func:`simulate_live` feeds :class:`~vbg.inference.tracker.MaskTracker`
(the render thread's own per-frame code) every frame of a clip, with the model
on the frames :class:`~vbg.inference.scheduler.SkipGovernor` picks. The model
is simulated on the clock of a camera at ``fps``: started on frame ``s`` at
``s / fps``, its mask exists ``infer_ms`` later and reaches the first frame
rendered from then on. A model no slower than the scheduler's
:func:`~vbg.inference.scheduler.fresh_wait_ms` (half the frame interval, at
least 12 ms) is waited for, so its mask is used on its own frame. A frame
picked while the model is busy waits in a latest-wins slot (a newer pick
replaces it), as in the pipeline.

Offline: :func:`simulate_offline` feeds every frame's mask to
:class:`~vbg.inference.tracker.OfflineMaskTracker`, ``vbg process``'s own
compose-step code: smoothed over a centred window, upsampled (``upsample``,
sharp by default, as ``--upsample``).

Both take a mask source (:class:`MaskSource`): the oracle, or a real
segmenter through :class:`SegmenterSource`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..config import parse_skip
from ..inference.scheduler import SkipGovernor, fresh_wait_ms
from ..inference.tracker import MaskTracker, OfflineMaskTracker
from ..types import Mask
from .clips import Clip
from .metrics import QualityMeter, Scores, edge_band
from .oracle import OracleSegmenter


class MaskSource(Protocol):
    """What the simulations need of a model: its mask size, its time and frame ``s``'s mask."""

    infer_ms: float

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]: ...
    def clip_mask(self, clip: Clip, s: int) -> np.ndarray: ...


class OracleSource:
    """:class:`OracleSegmenter` as a :class:`MaskSource` (it reads the clip's truth)."""

    def __init__(self, oracle: OracleSegmenter) -> None:
        self.oracle = oracle
        self.infer_ms = oracle.infer_ms

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.oracle.input_size(frame_hw)

    def clip_mask(self, clip: Clip, s: int) -> np.ndarray:
        return self.oracle.mask(clip.truths[s], s)


class SegmenterSource:
    """A real segmenter as a :class:`MaskSource`: runs it on the clip's frames.

    Masks are cached per clip (the scenarios of one clip share them), and every
    run's time is kept: ``infer_ms`` is their median (``infer_ms=`` fixes it).
    """

    def __init__(self, segmenter, *, infer_ms: float | None = None, sequenced: bool = False) -> None:
        self.seg = segmenter
        self._fixed = infer_ms
        self.sequenced = sequenced  # pass the frame's number (a person crop shared by workers: its lanes)
        self.times_ms: list[float] = []
        self._clip: Clip | None = None
        self._cache: dict[int, np.ndarray] = {}

    @property
    def infer_ms(self) -> float:
        if self._fixed is not None:
            return self._fixed
        return float(np.median(self.times_ms)) if self.times_ms else 0.0

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.seg.input_size(frame_hw)

    def clip_mask(self, clip: Clip, s: int) -> np.ndarray:
        if clip is not self._clip:
            self._clip, self._cache = clip, {}
        m = self._cache.get(s)
        if m is None:
            t0 = time.perf_counter()
            out = self.seg.segment(clip.frames[s], seq=s) if self.sequenced else self.seg.segment(clip.frames[s])
            m = self._cache[s] = np.array(out, np.float32)
            self.times_ms.append((time.perf_counter() - t0) * 1000.0)
        return m


class Timed:
    """Another source's masks with a set inference time: one model run scored on several
    schedules (instant for a per-frame reference, its measured time for the live path)."""

    def __init__(self, source: MaskSource, infer_ms: float) -> None:
        self.source = source
        self.infer_ms = float(infer_ms)

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.source.input_size(frame_hw)

    def clip_mask(self, clip: Clip, s: int) -> np.ndarray:
        return self.source.clip_mask(clip, s)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """The live options that shape the mask (as ``--skip``, ``--smoothing``, ``--upsample``).

    ``propagate=False`` shows the newest model mask as it is (the stale-mask baseline).
    """

    skip: int | str = "auto"
    smoothing: float = 1.0
    upsample: str = "sharp"
    propagate: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip", parse_skip(self.skip))


def delay_frames(infer_ms: float, fps: float) -> int:
    """Frames between the one the model saw and the first one its mask reaches (live)."""
    if infer_ms <= fresh_wait_ms(1000.0 / fps):
        return 0
    return math.ceil(infer_ms * fps / 1000.0 - 1e-9)


def simulate_live(clip: Clip, source: MaskSource, settings: LiveSettings = LiveSettings()) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(alpha_u8, mask_seq)`` per frame: what the render thread would composite.

    ``alpha_u8`` is the tracker's reused buffer (all zeros before the first
    mask, as the pipeline shows only background then); ``mask_seq`` is the
    frame the model mask came from (-1: none yet).
    """
    hw = clip.frames[0].shape[:2]
    mask_hw = source.input_size(hw)
    tracker = MaskTracker(hw, mask_hw, smoothing=settings.smoothing, upsample=settings.upsample,
                          propagate=settings.propagate)
    frame_s = 1.0 / clip.fps
    governor = SkipGovernor(settings.skip, frame_s)
    infer_s = source.infer_ms / 1000.0
    wait = source.infer_ms <= governor.wait_ms  # the pipeline's rule (SkipGovernor.wait_s)
    zeros = np.zeros(hw, np.uint8)
    running: tuple[int, float] | None = None  # (seq, ready time)
    pending: int | None = None
    newest: Mask | None = None

    def start(seq: int, at: float) -> tuple[int, float]:
        return seq, at + (0.0 if wait else infer_s)

    def finish(now: float) -> None:  # deliver every run done by ``now``; the slot's frame starts next
        nonlocal running, pending, newest
        while running is not None and running[1] <= now:
            seq, ready = running
            newest = Mask(seq, seq * frame_s, source.clip_mask(clip, seq), ready, source.infer_ms)
            governor.observe(source.infer_ms)
            running = None
            if pending is not None:
                running, pending = start(pending, ready), None

    for t in range(len(clip)):
        now = t * frame_s + 1e-9
        finish(now)
        if governor.should_run(t):
            if running is None:
                running = start(t, t * frame_s)
            else:
                pending = t  # latest wins
        finish(now)
        alpha, _ = tracker.update(clip.frames[t], t, newest)
        yield (zeros if alpha is None else alpha), (-1 if tracker.mask is None else tracker.mask.seq)


def simulate_offline(clip: Clip, source: MaskSource, *, smoothing: float = 1.0, window: int = 2,
                     upsample: str = "sharp") -> Iterator[np.ndarray]:
    """Yield each frame's uint8 alpha as ``vbg process`` makes it (the tracker's reused buffer)."""
    hw = clip.frames[0].shape[:2]
    tracker = OfflineMaskTracker(hw, source.input_size(hw), smoothing=smoothing, window=window, upsample=upsample)
    masks = [source.clip_mask(clip, s) for s in range(len(clip))]
    yield from tracker.track(zip(clip.frames, masks))


class ClipTruth:
    """Per-frame truth data shared by every run scored on one clip (edge bands, computed once)."""

    def __init__(self, clip: Clip, *, radius: int = 5) -> None:
        self.radius = radius
        self.bands = [edge_band(t, radius) for t in clip.truths]


def score(preds: Iterator, clip: Clip, truth: ClipTruth | None = None, *, warmup: int = 0,
          pick: Callable | None = None) -> Scores:
    """Score a prediction stream (one item per frame) against ``clip``; the first ``warmup`` frames are not scored.

    ``pick`` extracts the uint8/float alpha from an item (e.g. the first of
    :func:`simulate_live`'s pairs).
    """
    truth = truth or ClipTruth(clip)
    meter = QualityMeter(radius=truth.radius)
    n = 0
    for t, item in enumerate(preds):
        n += 1
        if t < warmup:
            continue
        meter.add(pick(item) if pick else item, clip.truths[t], band=truth.bands[t])
    if n != len(clip):
        raise ValueError(f"{n} predictions for a clip of {len(clip)} frames")
    return meter.result()


def score_live(clip: Clip, source: MaskSource, settings: LiveSettings = LiveSettings(), *,
               truth: ClipTruth | None = None, warmup: int = 0) -> Scores:
    return score(simulate_live(clip, source, settings), clip, truth, warmup=warmup, pick=lambda x: x[0])


def score_offline(clip: Clip, source: MaskSource, *, smoothing: float = 1.0, window: int = 2,
                  upsample: str = "sharp", truth: ClipTruth | None = None, warmup: int = 0) -> Scores:
    return score(simulate_offline(clip, source, smoothing=smoothing, window=window, upsample=upsample),
                 clip, truth, warmup=warmup)
