"""Temporal smoothing of the alpha mask (at the mask resolution), live and offline.

In: h x w float32 alphas in [0, 1] at the mask size, with the optical flow (or
the small grey frames it is computed from) that lines consecutive masks up.
Out: the smoothed h x w float32 alpha. :class:`TemporalSmoother` (live,
causal: ``update`` per frame) and :class:`CentredSmoother` (offline: the mask
of frame t from frames t-k..t+k, no lag). ``strength`` 0 turns smoothing off.

Buffers: ``TemporalSmoother.update`` returns its own state, the same read-only
array on every call (copy it to keep it past the next ``update`` or
``reset``); ``CentredSmoother.smooth`` returns a new array. Thread: one smoother per stream and thread (the render thread live,
the compose thread offline); state is kept until ``reset()``.

Why masks are compared only after lining them up, and the live rule:
docs/design/smoothing.md.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import ConfigError
from ..ranges import SMOOTHING, WINDOW
from .propagate import MaskPropagator

STRENGTH_RANGE = (SMOOTHING.lo, SMOOTHING.hi)  # declared in vbg.ranges
# Live: the band around the last output's 0.5 contour where changes are taken at once
# (edge moves), as a fraction of the mask's longer side (8 px at 256). DAVIS people,
# selfie model: 4 px cut flicker -41% but lost 0.008 boundary F; 8 px -32% and -0.002.
EDGE_FRACTION = 1.0 / 32.0
# Near the edge, a change of the alpha below STILL is averaged at the full strength and one
# above MOVING taken at once (in between: a ramp). A mask carried two or more frames (the model
# is slower than a frame, or skips frames) is already late and its edge comes from the flow,
# not from the model looking at this frame: there the ramp is LATE_STILL..LATE_MOVING, so the
# edge's frame-to-frame jumps between two carries are averaged rather than shown. DAVIS people,
# selfie model at 50 ms (two frames late at 24 fps): flicker -24% -> -31% against per-frame
# inference, IoU -0.026 -> -0.016 (benchmarks/QUALITY.md); 0.1..0.5: -28%.
STILL, MOVING = 0.05, 0.25
LATE_STILL, LATE_MOVING = 0.2, 1.0


# A mask change where the picture itself changed is real (a person walking in or out of
# the frame, a hand coming into view): it is taken at once, live and offline. One on an
# unchanged picture is the model's noise. "Changed": the frame's small grey differs from
# the other frame's, carried along the same flow, by more than CHANGE_GREY grey levels (of
# 255) and by more than CHANGE_RATIO times what 9 in 10 of the picture's pixels differ by
# (water, foliage and a moving camera change a little everywhere, and the flow's errors
# there are not news); the changed area is grown by CHANGE_GROW flow-size pixels (2 mask
# pixels at the default half size: a person's inside is often flat, only their outline
# and texture stand out). Synthetic "leave" clip (a person walking out and back in) and
# DAVIS people with the selfie model (benchmarks/QUALITY.md): ratio 3 kept the leave
# clip's IoU but cut real-footage flicker only 27% live, 5 -30%, 8 -31%; grow 0 lost
# 0.004 IoU on the leave clip.
CHANGE_GREY = 24
CHANGE_RATIO = 8.0
CHANGE_GROW = 1


class PictureChange:
    """``update(gray_from, gray_to, flow) -> uint8 mask``: where the picture changed.

    The small grey images (at ``flow_hw``, as :class:`MaskPropagator` makes
    them) are compared after ``gray_from`` is carried to ``gray_to`` along
    ``flow`` (mask size, the propagator's convention: for each pixel of
    ``gray_to`` the (dx, dy) back to ``gray_from``). The result is at the mask
    size, 255 where the picture changed (see ``CHANGE_GREY``), else 0: the
    same array on every call. The work is done at the flow size (~0.1 ms).
    """

    def __init__(self, mask_hw: tuple[int, int], flow_hw: tuple[int, int]) -> None:
        self.mask_hw, self.flow_hw = mask_hw, flow_hw
        (h, w), (fh, fw) = mask_hw, flow_hw
        self._scale = (fw / w, fh / h)
        self._map = np.empty((fh, fw, 2), np.float32)
        gy, gx = np.mgrid[0:fh, 0:fw].astype(np.float32)
        self._grid = np.dstack([gx, gy])
        self._warped = np.empty((fh, fw), np.uint8)
        self._diff = np.empty((fh, fw), np.uint8)
        self._out = np.empty((h, w), np.uint8)
        self._kernel = np.ones((2 * CHANGE_GROW + 1, 2 * CHANGE_GROW + 1), np.uint8)
        self._p90 = 0.9 * fh * fw

    def update(self, gray_from: np.ndarray, gray_to: np.ndarray, flow: np.ndarray) -> np.ndarray:
        fh, fw = self.flow_hw
        h, w = self.mask_hw
        # the mask-size flow at the flow size, in flow-size pixels, as a remap table
        cv2.resize(flow, (fw, fh), dst=self._map, interpolation=cv2.INTER_NEAREST)
        cv2.multiply(self._map, self._scale, dst=self._map)
        cv2.add(self._map, self._grid, dst=self._map)
        cv2.remap(gray_from, self._map, None, cv2.INTER_LINEAR, dst=self._warped, borderMode=cv2.BORDER_REPLICATE)
        cv2.absdiff(self._warped, gray_to, dst=self._diff)
        # the 90th percentile of the differences, from their histogram (np.percentile sorts: 10x slower)
        hist = cv2.calcHist([self._diff], [0], None, [256], [0, 256]).ravel()
        p90 = int(np.searchsorted(np.cumsum(hist), self._p90))
        cv2.threshold(self._diff, max(CHANGE_GREY, CHANGE_RATIO * p90), 255, cv2.THRESH_BINARY, dst=self._diff)
        cv2.dilate(self._diff, self._kernel, dst=self._diff)
        cv2.resize(self._diff, (w, h), dst=self._out, interpolation=cv2.INTER_NEAREST)
        return self._out


def _median3(a: np.ndarray, b: np.ndarray, c: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Per-pixel median of three arrays: max(min(a, b), min(max(a, b), c))."""
    np.minimum(a, b, out=tmp)
    np.maximum(a, b, out=out)
    np.minimum(out, c, out=out)
    np.maximum(out, tmp, out=out)
    return out


def _check_extras(shape: tuple, motion: np.ndarray | None, flow: np.ndarray | None,
                  change: np.ndarray | None) -> None:
    """``TemporalSmoother.update``'s optional inputs against the mask's ``shape``."""
    if motion is not None and motion.shape != shape:
        raise ValueError(f"motion must match alpha's shape {shape}, got {motion.shape}")
    if flow is not None and flow.shape != (*shape, 2):
        raise ValueError(f"flow must be {shape[0]} x {shape[1]} x 2, got {flow.shape}")
    if change is not None and (change.shape != shape or change.dtype != np.uint8):
        raise ValueError(f"change must be a {shape[0]} x {shape[1]} uint8 mask, got {change.shape} {change.dtype}")


class TemporalSmoother:
    """``update(alpha, motion=None, flow=None) -> alpha``; state kept between calls until ``reset()``.

    ``alpha``: h x w float32 in [0, 1]; ``motion``: optional h x w float32 in
    mask pixels (e.g. ``MaskPropagator.motion()``); ``flow``: optional h x w x 2
    float32, for each pixel of this frame the (dx, dy) back to where it was in
    the previous one (``MaskPropagator.flow``): the last output and input are
    carried along it before they are compared. Without it the camera and the
    person are taken to be still, and ``motion`` (where it is given) says
    which pixels moved: those are taken at once. With a flow there is no
    need for ``motion``. ``late``: ``alpha`` is a model mask carried two or
    more frames; its edge is averaged more (``LATE_STILL``). The result is the smoother's own state,
    returned as the same read-only array on every call: copy it if it must
    outlive the next ``update`` or ``reset``. The mask size is fixed by the
    first call after construction or ``reset()``.
    """

    def __init__(
        self, strength: float = 1.0, *, still: float = STILL, moving: float = MOVING, motion_px: float = 2.0,
        late_still: float = LATE_STILL, late_moving: float = LATE_MOVING,
    ):
        lo, hi = STRENGTH_RANGE
        try:
            s = float(strength)
        except (TypeError, ValueError):
            raise ConfigError(f"smoothing strength {strength!r} is not a number: use {lo:g}..{hi:g}") from None
        if not (lo <= s <= hi):  # also rejects NaN
            raise ConfigError(f"smoothing strength {strength!r} is out of range: use {lo:g}..{hi:g}")
        for lo_, hi_ in ((still, moving), (late_still, late_moving)):
            if not (0.0 <= lo_ < hi_ <= 1.0):
                raise ConfigError(f"smoothing thresholds {lo_!r}, {hi_!r}: need 0 <= still < moving <= 1")
        if not (motion_px > 0 and math.isfinite(motion_px)):
            raise ConfigError(f"smoothing motion_px {motion_px!r} is out of range: use a positive number of pixels")
        self.strength = s
        base = 1.0 / (1.0 + 2.0 * s)
        self._base = base
        # w = clip(gain * |d| + offset (+ mgain * motion), base, 1), folded from the rule above.
        self._gain = (1.0 - base) / (moving - still)
        self._offset = base - still * self._gain
        self._late_gain = (1.0 - base) / (late_moving - late_still)
        self._late_offset = base - late_still * self._late_gain
        self._mgain = (1.0 - base) / motion_px
        self._motion_px = float(motion_px)
        self._hw: tuple[int, int] | None = None
        self._primed = False

    def _allocate(self, hw: tuple[int, int]) -> None:
        self._hw = hw
        self._state = np.empty(hw, np.float32)
        self._view = self._state.view()
        self._view.flags.writeable = False
        self._prev_in = np.empty(hw, np.float32)
        self._p = np.empty(hw, np.float32)  # the last output, carried to this frame
        self._q = np.empty(hw, np.float32)  # the last input, carried to this frame
        self._d = np.empty(hw, np.float32)
        self._w = np.empty(hw, np.float32)
        self._m = np.empty(hw, np.float32)
        self._map = np.empty((*hw, 2), np.float32)
        gy, gx = np.mgrid[0: hw[0], 0: hw[1]].astype(np.float32)
        self._grid = np.dstack([gx, gy])
        self._side = np.empty(hw, np.uint8)
        self._outer = np.empty(hw, np.uint8)
        self._band = np.empty(hw, np.uint8)
        r = max(1, round(max(hw) * EDGE_FRACTION))
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    def update(self, alpha: np.ndarray, motion: np.ndarray | None = None, flow: np.ndarray | None = None,
               change: np.ndarray | None = None, *, late: bool = False) -> np.ndarray:
        if not isinstance(alpha, np.ndarray) or alpha.dtype != np.float32 or alpha.ndim != 2:
            raise TypeError(
                f"alpha must be a 2-D float32 array, got {getattr(alpha, 'dtype', type(alpha).__name__)} "
                f"{getattr(alpha, 'shape', '')}"
            )
        if self._hw is None or (alpha.shape != self._hw and not self._primed):
            self._allocate(alpha.shape)
        elif alpha.shape != self._hw:
            raise ValueError(
                f"alpha is {alpha.shape[0]} x {alpha.shape[1]} but the smoother holds "
                f"{self._hw[0]} x {self._hw[1]}: call reset() when the mask size changes"
            )
        _check_extras(alpha.shape, motion, flow, change)
        state, d, w = self._state, self._d, self._w
        if not self._primed or self._base >= 1.0:
            np.copyto(state, alpha)
            np.copyto(self._prev_in, alpha)
            self._primed = True
            return self._view
        p, q = self._p, self._q
        if flow is None:
            np.copyto(p, state)
            np.copyto(q, self._prev_in)
        else:
            np.add(flow, self._grid, out=self._map)
            cv2.remap(state, self._map, None, cv2.INTER_LINEAR, dst=p, borderMode=cv2.BORDER_REPLICATE)
            cv2.remap(self._prev_in, self._map, None, cv2.INTER_LINEAR, dst=q, borderMode=cv2.BORDER_REPLICATE)
        np.copyto(self._prev_in, alpha)
        # Near the edge: the motion-adaptive running average.
        np.subtract(alpha, p, out=d)
        np.abs(d, out=w)
        np.multiply(w, self._late_gain if late else self._gain, out=w)
        np.add(w, self._late_offset if late else self._offset, out=w)
        if motion is not None:
            np.multiply(motion, self._mgain, out=self._m, casting="same_kind")
            np.add(w, self._m, out=w)
        np.clip(w, self._base, 1.0, out=w)
        np.multiply(w, d, out=w)
        np.add(p, w, out=w)
        # Elsewhere: a change must show on two inputs in a row, unless the pixel moved.
        _median3(alpha, p, q, state, d)
        if motion is not None:
            np.multiply(motion, 1.0 / self._motion_px, out=self._m, casting="same_kind")
            np.clip(self._m, 0.0, 1.0, out=self._m)
            np.subtract(alpha, state, out=d)
            np.multiply(d, self._m, out=d)
            np.add(state, d, out=state)
        cv2.compare(p, 0.5, cv2.CMP_GE, dst=self._side)
        cv2.dilate(self._side, self._kernel, dst=self._outer)
        cv2.erode(self._side, self._kernel, dst=self._band)
        cv2.subtract(self._outer, self._band, dst=self._band)
        cv2.copyTo(w, self._band, state)
        if change is not None:  # the picture changed there: the new mask is news, not noise
            cv2.copyTo(alpha, change, state)
        return self._view

    @property
    def primed(self) -> bool:
        """Whether the smoother holds a previous mask (False after ``reset``)."""
        return self._primed

    @property
    def state(self) -> np.ndarray:
        """The last output (read-only; valid while ``primed``)."""
        return self._view

    def reset(self) -> None:
        """Forget the previous mask: the next ``update`` returns its input unchanged.

        Buffers are kept (and reallocated if the next mask has another size).
        """
        self._primed = False



NETWORK_MAX = 7  # CentredSmoother's median by compare-exchange up to this many masks (window 3)

class CentredSmoother:
    """Offline smoothing over a centred window: the whole file is known, so the
    mask of frame t may look at frames t-k .. t+k, which removes flicker that a
    causal filter can only trade for lag.

    Given the frames' small grey images (:meth:`gray`), every neighbour's mask
    is first carried to frame t along the optical flow, so a moving person
    lines up. Then per pixel: ``med``, the median of the symmetric part of the
    window (a blob that shows on fewer than half its frames is out), and a
    temporal bilateral mean around it: neighbour j (frame t included) counts
    with weight ``exp(-(|m_j - med| / sigma)^2) * exp(-(j/k)^2)``, so
    noise-sized differences are averaged away and outliers do not count.
    ``strength`` scales sigma (1 = 0.1); 0 turns it off. Without greys the
    masks are compared where they are (a still camera and person).
    """

    def __init__(self, strength: float = 1.0, radius: int = 2) -> None:
        lo, hi = STRENGTH_RANGE
        if not (isinstance(strength, (int, float)) and lo <= strength <= hi):
            raise ConfigError(f"--smoothing {strength!r} is out of range: use {lo:g} (off) .. {hi:g}")
        if isinstance(radius, bool) or not isinstance(radius, int):
            raise ConfigError(f"--window {radius!r} is not a whole number: use {WINDOW.describe()}")
        WINDOW.check("--window", radius)
        self.strength, self.radius = float(strength), radius
        self.sigma = 0.1 * self.strength
        self._hw: tuple[int, int] | None = None
        self._prop: MaskPropagator | None = None

    def _allocate(self, hw: tuple[int, int]) -> None:
        self._hw = hw
        n = 2 * self.radius + 1
        self._stack = np.empty((n, *hw), np.float32)
        self._acc, self._wsum, self._w, self._d, self._med = (np.empty(hw, np.float32) for _ in range(5))
        # the median's working rows (a copy of the window's, sorted in place) and one spare
        self._sort = np.empty((min(n, NETWORK_MAX) + 1, *hw), np.float32)

    def _propagator(self, hw: tuple[int, int]) -> MaskPropagator:
        if self._prop is None or self._prop.mask_hw != hw:
            # dense flow: the person-motion fit is for a stream of late masks; here each
            # neighbour is its own pair (on DAVIS people it kept 0.003 more boundary F)
            self._prop = MaskPropagator(hw, history=2, person=False)
            self._change = PictureChange(hw, self._prop.flow_hw)
        return self._prop

    def gray(self, frame: np.ndarray, mask_hw: tuple[int, int]) -> np.ndarray:
        """``frame`` (RGB or grey, any size) as the small grey image :meth:`smooth` takes (a new array)."""
        prop = self._propagator(tuple(mask_hw))
        return prop.gray(frame, out=np.empty(prop.flow_hw, np.uint8))

    def smooth(self, masks: list[np.ndarray], centre: int, grays: list[np.ndarray] | None = None) -> np.ndarray:
        """The smoothed mask of ``masks[centre]`` (a new array); ``masks`` are the
        neighbours in time order, as many as exist at the ends of the file;
        ``grays`` their frames' :meth:`gray` images (None: no motion compensation)."""
        m_t = masks[centre]
        n = len(masks)
        if self.sigma <= 0 or n == 1:
            return m_t.copy()
        if grays is not None and len(grays) != n:
            raise ValueError(f"{len(grays)} grey frames for {n} masks")
        if n > 2 * self.radius + 1 or not 0 <= centre < n:
            raise ValueError(f"a window of {n} masks centred on {centre} does not fit radius {self.radius}")
        if self._hw != m_t.shape:
            self._allocate(m_t.shape)
        stack = self._stack[:n]
        prop = self._propagator(m_t.shape) if grays is not None else None
        for j, m in enumerate(masks):
            if j == centre or prop is None:
                np.copyto(stack[j], m)
            else:
                prop.warp(m, grays[j], grays[centre], out=stack[j])
                # where the picture changed between the two frames, neighbour j says nothing about
                # frame t (a person walked in or out): it counts as frame t's own mask there
                cv2.copyTo(m_t, self._change.update(grays[j], grays[centre], prop.flow), stack[j])
        k = min(centre, n - 1 - centre)
        acc, wsum, w, d, med = self._acc, self._wsum, self._w, self._d, self._med
        self._median(stack[centre - k: centre + k + 1], med)
        acc.fill(0.0)
        wsum.fill(0.0)
        inv = 1.0 / self.sigma
        for j in range(n):
            dt = (j - centre) / self.radius
            np.subtract(stack[j], med, out=d)
            np.multiply(d, inv, out=d)
            np.square(d, out=d)
            np.negative(d, out=d)
            np.exp(d, out=w)
            w *= math.exp(-dt * dt)
            wsum += w
            np.multiply(w, stack[j], out=w)
            acc += w
        return np.divide(acc, wsum)

    def _median(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The per-pixel median of an odd number of masks, into ``out``: exactly ``np.median``'s
        (the middle value), by compare-exchange passes of ``np.minimum``/``np.maximum`` for up to
        NETWORK_MAX masks: at 288x512, 0.45 ms for 5 masks against 10 ms for np.median's partition
        (which was half the offline smoothing's time)."""
        n = rows.shape[0]
        if n > NETWORK_MAX:
            return np.median(rows, axis=0, out=out)
        k = n // 2
        work = self._sort
        np.copyto(work[:n], rows)
        buf = list(work[:n])
        spare = work[n]
        # pass p carries the largest of buf[0 .. n-1-p] up to buf[n-1-p]: after k + 1 passes the
        # top k + 1 are in place, the smallest of them (buf[k]) being the median
        for p in range(k + 1):
            for i in range(n - 1 - p):
                np.minimum(buf[i], buf[i + 1], out=spare)
                np.maximum(buf[i], buf[i + 1], out=buf[i + 1])
                buf[i], spare = spare, buf[i]
        np.copyto(out, buf[k])
        return out

    def reset(self) -> None:
        self._hw = None
        self._prop = None
