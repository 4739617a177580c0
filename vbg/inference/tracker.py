"""The mask for every output frame, from the model's masks.

In: RGB uint8 frames in order, with the model's float32 masks (live: the
newest :class:`~vbg.types.Mask` available, of any earlier frame, or None;
offline: every frame's own mask). Out: the H x W uint8 alpha of each frame,
the upsampler's reused buffer (copy it to keep it past the next call).

Live (:class:`MaskTracker`): the newest model mask carried to this frame by
optical flow, smoothed over time, upsampled (``upsample``: ``--upsample``,
sharp by default). Offline (:class:`OfflineMaskTracker`): every frame's own
mask smoothed over a centred window of its neighbours, then upsampled the same
way.

Thread: one object per stream and thread, fed in frame order. Each is shared
by the code that ships it (the live pipeline's render thread; ``vbg
process``'s compose step) and the quality benchmark
(``vbg.evaluation.simulate``), so the benchmark measures the shipped code.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

import cv2
import numpy as np

from ..types import Mask
from .propagate import MaskPropagator
from .smoothing import CentredSmoother, PictureChange, TemporalSmoother
from .upsample import EdgeAwareUpsampler

HISTORY = 48  # recent frames' small grey images kept to carry late masks forward


class MaskTracker:
    """``update(frame_rgb, seq, mask) -> (alpha_u8 | None, fresh)``.

    ``mask`` is the newest model output available now (any older frame's, or
    None); the tracker keeps the newest it has seen. Each frame's mask is
    warped from the model mask's own frame to this one (chained frame-to-frame
    warps blur and drift). ``propagate=False`` reuses the model mask as it is
    (the "stale mask" baseline of the quality benchmark). The returned alpha is
    the upsampler's reused buffer: copy it to keep it. None until the first mask.
    """

    def __init__(self, frame_hw: tuple[int, int], mask_hw: tuple[int, int], *, smoothing: float = 1.0,
                 upsample: str = "sharp", propagate: bool = True, history: int = HISTORY) -> None:
        self.frame_hw, self.mask_hw = frame_hw, mask_hw
        self.propagate = propagate
        self.propagator = MaskPropagator(mask_hw, history=history)
        self.smoother = TemporalSmoother(smoothing)
        # The smoother compares each mask with the last output carried along the flow from the
        # previous frame; when the model mask's own warp is not that step, a second flow finds it
        # (dense only: the person-motion fit cost 3-4x the flow and changed little here).
        self._step = MaskPropagator(mask_hw, history=2, person=False) if smoothing > 0 and propagate else None
        self._change = PictureChange(mask_hw, self.propagator.flow_hw) if self._step is not None else None
        self.upsampler = EdgeAwareUpsampler(frame_hw, mask_hw, mode=upsample)
        # The full-resolution grey is only read by the frame-guided upsampler; the flow's
        # small grey is reduced straight from RGB (0.2 ms at 720p against 0.38 ms via a
        # full-resolution grey).
        self._gray = np.empty(frame_hw, np.uint8) if upsample == "guided" else None
        self.mask: Mask | None = None  # the model output being carried along

    def update(self, frame_rgb: np.ndarray, seq: int, mask: Mask | None) -> tuple[np.ndarray | None, bool]:
        if self._gray is not None:
            cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY, dst=self._gray)  # once, for flow and upsampling
            gray = self.propagator.gray(self._gray, seq=seq)
        else:
            gray = self.propagator.gray(frame_rgb, seq=seq)
        if mask is not None and (self.mask is None or mask.seq > self.mask.seq):
            self.mask = mask
        m = self.mask
        if m is None:
            return None, False
        fresh = m.seq == seq
        src = self.propagator.gray_of(m.seq)
        flow = None
        if fresh or src is None or not self.propagate:
            state, motion = m.alpha, None
        else:
            gap = seq - m.seq
            state = self.propagator.warp(m.alpha, src, gray, frames=gap if gap >= 1 else None)
            motion = self.propagator.motion()
            motion /= max(1, gap)  # per-frame motion for the smoother
            if gap == 1:
                flow = self.propagator.flow  # already the step from the previous frame
        change = None
        if self._step is not None and self.smoother.primed:
            prev = self.propagator.gray_of(seq - 1)
            if prev is not None:
                if flow is None:
                    self._step.warp(self.smoother.state, prev, gray, frames=1)
                    flow = self._step.flow
                change = self._change.update(prev, gray, flow)
        late = self.propagate and seq - m.seq >= 2  # carried two frames or more: its edge is the flow's
        smoothed = self.smoother.update(state, None if flow is not None else motion, flow, change, late=late)
        return self.upsampler.upsample(smoothed, frame_rgb if self._gray is None else self._gray), fresh

    def reset(self) -> None:
        self.propagator.reset()
        if self._step is not None:
            self._step.reset()
        self.smoother.reset()
        self.mask = None


class OfflineMaskTracker:
    """The alpha of every frame of a file: ``push`` each frame with its model
    mask, in frame order; ``pop`` the next frame's alpha while ``ready``; after
    the last frame ``end()`` lets the last ``window`` frames out.

    Since the whole file is known, frame t's mask is smoothed over the centred
    window t-k..t+k (:class:`~vbg.inference.smoothing.CentredSmoother`: each
    neighbour carried to frame t by optical flow; no lag), so a frame is ready
    once k frames after it are in. Then it is upsampled to the frame size as
    live (``upsample``). ``smoothing`` 0 uses each mask as it is.

    Holds, besides the masks, a small grey image per frame of the window
    (made in ``push``, so the frame's pixels are not needed later for it) and
    the frames not yet popped, as the upsampler's guide: a frame's pixels are
    let go as it is popped. ``pop`` returns the upsampler's reused buffer:
    copy it to keep it past the next ``pop``. :meth:`track` runs a whole
    sequence.

    ``threads`` > 1: each complete window is smoothed and upsampled on a pool
    of that many threads (DIS, remap and the numpy passes let go of the GIL),
    several frames at once, and popped in frame order; the alphas are the
    one-thread tracker's, bit for bit. ``ready`` then waits until the pool is
    full (or the stream ended); ``close()`` stops the pool.
    """

    def __init__(self, frame_hw: tuple[int, int], mask_hw: tuple[int, int], *, smoothing: float = 1.0,
                 window: int = 2, upsample: str = "sharp", threads: int = 1) -> None:
        self.frame_hw, self.mask_hw = frame_hw, tuple(mask_hw)
        self.smoother = CentredSmoother(smoothing, radius=window)
        self.window = window
        self.upsampler = EdgeAwareUpsampler(frame_hw, mask_hw, mode=upsample)
        self._upsample_mode = upsample
        # threads > 1: frames are smoothed and upsampled on a pool, several at once (each frame's
        # window is its own: the result is the same as one thread's, bit for bit), and come out
        # in order. What this is for: on a fast GPU the smoothing (four optical flows a frame at
        # the mask size) is what bounds vbg process (benchmarks/RESULTS.md, "On an NVIDIA H200").
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        self.threads = threads
        self._pool = None
        self._jobs: deque = deque()  # futures of the frames handed to the pool, in frame order
        self._local = threading.local()  # each pool thread's own smoother and upsampler
        # each job writes its alpha into its own slot: the threads in flight, the one the caller
        # holds (the last one popped) and one spare
        self._ring = [np.empty(frame_hw, np.uint8) for _ in range(threads + 2)] if threads > 1 else []
        self._slot = 0
        # Without smoothing the neighbours are never looked at: no grey images to make.
        self._flow = self.smoother.sigma > 0
        self._masks: deque[np.ndarray] = deque()  # up to k before the centre, the centre, up to k after
        self._grays: deque[np.ndarray] = deque()  # the same frames' small greys (smoothing only)
        self._frames: deque[np.ndarray] = deque()  # the frames from the centre on: not yet popped
        self._centre = 0  # index in _masks of the next frame to pop
        self._ended = False

    def push(self, frame_rgb: np.ndarray, alpha_small: np.ndarray) -> None:
        """The next frame (H x W x 3 RGB) and its model mask (float32 at ``mask_hw``)."""
        if self._ended:
            raise RuntimeError("OfflineMaskTracker.push after end(): reset() to start another stream")
        if self._flow:
            self._grays.append(self.smoother.gray(frame_rgb, self.mask_hw))
        self._masks.append(alpha_small)
        self._frames.append(frame_rgb)
        if self.threads > 1:
            self._fill()

    def end(self) -> None:
        """No more frames: the last ones are ready with the neighbours there are."""
        self._ended = True
        if self.threads > 1:
            self._fill()

    def _window_ready(self) -> bool:
        """Whether the next centre's window is complete: k frames after it, or the stream ended."""
        after = len(self._masks) - self._centre - 1
        return after >= self.window or (self._ended and after >= 0)

    @property
    def ready(self) -> bool:
        """Whether ``pop`` has a frame to give: k frames after it are in, or the stream ended
        (with threads: as many frames in the pool as it has threads, or the stream ended)."""
        if self.threads > 1:
            return len(self._jobs) >= self.threads or (self._ended and (bool(self._jobs) or self._window_ready()))
        return self._window_ready()

    def _take_window(self) -> tuple[list, int, list | None, np.ndarray]:
        """The next centre's masks, its index among them, their greys and its frame; the
        history kept for the next centres is trimmed to k frames."""
        k, c = self.window, self._centre
        lo = max(0, c - k)
        masks = list(islice(self._masks, lo, c + k + 1))
        grays = list(islice(self._grays, lo, c + k + 1)) if self._flow else None
        frame = self._frames.popleft()
        self._centre += 1
        while self._centre > k:  # k frames of history for the next centres
            self._masks.popleft()
            if self._flow:
                self._grays.popleft()
            self._centre -= 1
        return masks, c - lo, grays, frame

    def pop(self) -> np.ndarray:
        """The next frame's H x W uint8 alpha (a reused buffer: valid until the next ``pop``)."""
        if not self.ready:
            raise RuntimeError("no frame is ready: push more frames, or end() after the last one")
        if self.threads > 1:
            self._fill()
            alpha = self._jobs.popleft().result()
            self._fill()  # the next frames start while the caller uses this one
            return alpha
        masks, centre, grays, frame = self._take_window()
        return self.upsampler.upsample(self.smoother.smooth(masks, centre, grays), frame)

    def _fill(self) -> None:
        """Hand the pool every complete window, while a ring slot is free for its alpha (the
        caller holds one: the last one popped)."""
        while self._window_ready() and len(self._jobs) < len(self._ring) - 1:
            self._submit()

    def _submit(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vbg-smooth")
        out = self._ring[self._slot]
        self._slot = (self._slot + 1) % len(self._ring)
        self._jobs.append(self._pool.submit(self._smooth_one, *self._take_window(), out))

    def _smooth_one(self, masks: list, centre: int, grays: list | None, frame: np.ndarray,
                    out: np.ndarray) -> np.ndarray:
        """One frame's alpha into ``out``, on a pool thread (its own smoother and upsampler)."""
        mine = self._local
        if not hasattr(mine, "smoother"):
            mine.smoother = CentredSmoother(self.smoother.strength, radius=self.window)
            mine.upsampler = EdgeAwareUpsampler(self.frame_hw, self.mask_hw, mode=self._upsample_mode)
        np.copyto(out, mine.upsampler.upsample(mine.smoother.smooth(masks, centre, grays), frame))
        return out

    def close(self) -> None:
        """Stop the pool's threads (the frames still in it are dropped); idempotent."""
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def track(self, frames_and_masks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Every frame's alpha, in order, for ``(frame_rgb, alpha_small)`` pairs (a whole stream;
        each alpha is the reused buffer, valid until the next one is asked for)."""
        for frame, mask in frames_and_masks:
            self.push(frame, mask)
            while self.ready:
                yield self.pop()
        self.end()
        while self.ready:
            yield self.pop()

    def reset(self) -> None:
        self.close()
        self._masks.clear()
        self._grays.clear()
        self._frames.clear()
        self._centre = 0
        self._ended = False
