"""Motion-adaptive temporal smoothing of the alpha mask (at the mask resolution).

A plain running average trades flicker for lag. Here every pixel gets its own
weight ``w`` for the new value (``w = 1``: take the new mask as is)::

    d     = alpha - prev                           # how much the mask changed
    r     = (|d| - still) / (moving - still)       # 0: noise-sized, 1: a real change
          + motion / motion_px                     # optional: flow says it moved
    w     = base + (1 - base) * clip(r, 0, 1)
    prev += w * d                                  # the output

with ``base = 1 / (1 + 2 * strength)``. So a still pixel whose value jitters
by less than ``still`` (0.05) is averaged over about ``1 + 4 * strength``
frames, while a change of ``moving`` (0.25) or more, or a pixel the optical
flow moved by ``motion_px`` (2 mask pixels) or more, is taken at once: no
trailing edge behind a moving person. ``strength`` 0 turns smoothing off.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..ranges import SMOOTHING, WINDOW

STRENGTH_RANGE = (SMOOTHING.lo, SMOOTHING.hi)  # declared in vbg.ranges


class TemporalSmoother:
    """``update(alpha, motion=None) -> alpha``; state kept between calls until ``reset()``.

    ``alpha``: h x w float32 in [0, 1]; ``motion``: optional h x w float32 in
    mask pixels (e.g. ``MaskPropagator.motion()``). The result is the
    smoother's own state, returned as the same read-only array on every call:
    copy it if it must outlive the next ``update`` or ``reset``. The mask size
    is fixed by the first call after construction or ``reset()``.
    """

    def __init__(
        self, strength: float = 1.0, *, still: float = 0.05, moving: float = 0.25, motion_px: float = 2.0
    ):
        lo, hi = STRENGTH_RANGE
        try:
            s = float(strength)
        except (TypeError, ValueError):
            raise ConfigError(f"smoothing strength {strength!r} is not a number: use {lo:g}..{hi:g}") from None
        if not (lo <= s <= hi):  # also rejects NaN
            raise ConfigError(f"smoothing strength {strength!r} is out of range: use {lo:g}..{hi:g}")
        if not (0.0 <= still < moving <= 1.0):
            raise ConfigError(f"smoothing thresholds still={still!r}, moving={moving!r}: need 0 <= still < moving <= 1")
        if not (motion_px > 0 and math.isfinite(motion_px)):
            raise ConfigError(f"smoothing motion_px {motion_px!r} is out of range: use a positive number of pixels")
        self.strength = s
        base = 1.0 / (1.0 + 2.0 * s)
        self._base = base
        # w = clip(gain * |d| + offset (+ mgain * motion), base, 1), folded from the rule above.
        self._gain = (1.0 - base) / (moving - still)
        self._offset = base - still * self._gain
        self._mgain = (1.0 - base) / motion_px
        self._state: np.ndarray | None = None
        self._view: np.ndarray | None = None
        self._d: np.ndarray | None = None
        self._w: np.ndarray | None = None
        self._m: np.ndarray | None = None
        self._primed = False

    def _allocate(self, hw: tuple[int, int]) -> None:
        self._state = np.empty(hw, np.float32)
        self._view = self._state.view()
        self._view.flags.writeable = False
        self._d = np.empty(hw, np.float32)
        self._w = np.empty(hw, np.float32)
        self._m = np.empty(hw, np.float32)

    def update(self, alpha: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        if not isinstance(alpha, np.ndarray) or alpha.dtype != np.float32 or alpha.ndim != 2:
            raise TypeError(
                f"alpha must be a 2-D float32 array, got {getattr(alpha, 'dtype', type(alpha).__name__)} "
                f"{getattr(alpha, 'shape', '')}"
            )
        if self._state is None:
            self._allocate(alpha.shape)
        elif alpha.shape != self._state.shape and not self._primed:
            self._allocate(alpha.shape)
        elif alpha.shape != self._state.shape:
            raise ValueError(
                f"alpha is {alpha.shape[0]} x {alpha.shape[1]} but the smoother holds "
                f"{self._state.shape[0]} x {self._state.shape[1]}: call reset() when the mask size changes"
            )
        if motion is not None and motion.shape != alpha.shape:
            raise ValueError(f"motion must match alpha's shape {alpha.shape}, got {motion.shape}")
        state, d, w = self._state, self._d, self._w
        if not self._primed or self._base >= 1.0:
            np.copyto(state, alpha)
            self._primed = True
            return self._view
        np.subtract(alpha, state, out=d)
        np.abs(d, out=w)
        np.multiply(w, self._gain, out=w)
        np.add(w, self._offset, out=w)
        if motion is not None:
            np.multiply(motion, self._mgain, out=self._m, casting="same_kind")
            np.add(w, self._m, out=w)
        np.clip(w, self._base, 1.0, out=w)
        np.multiply(w, d, out=w)
        np.add(state, w, out=state)
        return self._view

    @property
    def primed(self) -> bool:
        """Whether the smoother holds a previous mask (False after ``reset``)."""
        return self._primed

    def reset(self) -> None:
        """Forget the previous mask: the next ``update`` returns its input unchanged.

        Buffers are kept (and reallocated if the next mask has another size).
        """
        self._primed = False


class CentredSmoother:
    """Offline smoothing over a centred window: the whole file is known, so the
    mask of frame t may look at frames t-k .. t+k, which removes flicker that a
    causal filter can only trade for lag.

    Per pixel, a temporal bilateral filter: neighbour j counts with weight
    ``exp(-(|m_j - m_t| / sigma)^2) * exp(-(j/k)^2)`` (its own frame counts 1).
    Noise-sized differences (below ``sigma``) are averaged away; a real change
    (a moving edge) differs by much more than ``sigma``, gets ~0 weight and is
    kept sharp, with no lag in either direction. ``strength`` scales sigma
    (1 = 0.1); 0 turns it off.
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
        self._acc = self._wsum = self._w = self._d = None

    def smooth(self, masks: list[np.ndarray], centre: int) -> np.ndarray:
        """The smoothed mask of ``masks[centre]`` (a new array); ``masks`` are the
        neighbours in time order, as many as exist at the ends of the file."""
        m_t = masks[centre]
        if self.sigma <= 0 or len(masks) == 1:
            return m_t.copy()
        if self._acc is None or self._acc.shape != m_t.shape:
            self._acc, self._wsum, self._w, self._d = (np.empty_like(m_t) for _ in range(4))
        acc, wsum, w, d = self._acc, self._wsum, self._w, self._d
        np.copyto(acc, m_t)
        wsum.fill(1.0)
        inv = 1.0 / self.sigma
        for j, m in enumerate(masks):
            if j == centre:
                continue
            dt = (j - centre) / self.radius
            np.subtract(m, m_t, out=d)
            np.multiply(d, inv, out=d)
            np.square(d, out=d)
            np.negative(d, out=d)
            np.exp(d, out=w)
            w *= math.exp(-dt * dt)
            wsum += w
            np.multiply(w, m, out=w)
            acc += w
        return np.divide(acc, wsum)

    def reset(self) -> None:
        self._acc = self._wsum = self._w = self._d = None
