"""Blend the camera frame over a background with the person's alpha: ``out = f*a + b*(1-a)``.

Everything is uint8 and OpenCV, into buffers allocated once in the
constructor; a frame allocates no arrays. Measured choices (2-core Xeon,
1280x720, random mask; ``python -m benchmarks.compositing`` times the stage):

- ``cv2.multiply(f, a3, scale=1/255) + cv2.multiply(b, 255-a3, scale=1/255)``
  then ``cv2.add``, with the 3-channel masks made by ``cvtColor(GRAY2RGB)``:
  1.7-1.9 ms, at most 1 grey level from the exact float formula (each product
  is rounded once). Float32 numpy took 9-10 ms, ``cv2.blendLinear`` with float
  weights 2.2 ms, an exact uint16 path 7.5 ms; working in cache-sized row
  stripes gained under 10 %, so it is not done.
- Only the bounding box of ``alpha > 0`` is blended (``cv2.boundingRect`` on
  the mask, 0.07 ms); outside it the output is the background, copied. With a
  head-and-shoulders mask (box 39 % of the frame) compose() takes 1.2 ms
  instead of 2.0 ms; a mask that is non-zero everywhere costs the full 2.0 ms.

Alpha 255 gives exactly the frame, alpha 0 exactly the background.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import ConfigError
from .backgrounds import Background, _check_hw

_INV255 = 1.0 / 255.0


class Compositor:
    """Per-frame compositing at one output size.

    ``compose(frame, alpha)`` returns the compositor's own output buffer, the
    same array on every call and overwritten by the next call: copy it, or pass
    ``out=`` (your own ``H x W x 3`` uint8 C-contiguous array, e.g. from a ring
    of buffers handed to sinks) to have the result written there instead.

    Options, applied in this order after mirroring:

    - ``threshold`` (0 < t < 1, or None): a near-hard cut. Alpha below
      ``t - s/2`` becomes 0, above ``t + s/2`` becomes 255, with a linear ramp of
      width ``s = 0.1`` between (narrower when ``t`` is within 0.05 of 0 or 1,
      so 0 stays 0 and 255 stays 255). One 256-entry lookup table per frame.
    - ``feather`` (pixels at output resolution, 0..50; 0 = off): softens the
      mask edge with a Gaussian blur of the alpha, sigma ``feather / 2``, kernel
      ``2*ceil(feather) + 1``. After ``threshold``, so a hard cut can be
      softened again.
    - ``mirror``: a selfie view. Frame and mask are flipped together before
      anything else, so the person (and the blurred camera background, which
      is made from the flipped frame) is mirrored, but image, video and colour
      backgrounds are not: text and logos on them stay readable, as in the
      call apps' own self-view.

    The compositor owns ``background``: it calls ``prepare(out_hw)`` here and
    ``close()`` in :meth:`close` (idempotent; also a context manager).
    Shapes are checked on every call (a tuple comparison); a mismatch raises
    ValueError naming the expected and the actual shape or dtype.
    """

    FEATHER_RANGE = (0.0, 50.0)
    THRESHOLD_SOFTNESS = 0.1

    def __init__(self, out_hw: tuple[int, int], background: Background, *, feather: float = 0.0,
                 threshold: float | None = None, mirror: bool = False) -> None:
        self.out_hw = H, W = _check_hw(out_hw)
        self.feather = _check_feather(feather, self.FEATHER_RANGE)
        self.threshold = None if threshold is None else _check_threshold(threshold)
        self.mirror = bool(mirror)
        self.background = background
        self._frame_shape = (H, W, 3)
        self._alpha_shape = (H, W)

        self._out = np.empty((H, W, 3), np.uint8)
        self._a3 = np.empty((H, W, 3), np.uint8)  # alpha, 3 channels
        self._ia = np.empty((H, W), np.uint8)  # 255 - alpha
        self._ia3 = np.empty((H, W, 3), np.uint8)
        self._fg = np.empty((H, W, 3), np.uint8)  # frame * alpha
        needs_alpha_buf = self.mirror or self.threshold is not None or self.feather > 0
        self._alpha = np.empty((H, W), np.uint8) if needs_alpha_buf else None
        self._frame = np.empty((H, W, 3), np.uint8) if self.mirror else None
        self._lut = None if self.threshold is None else threshold_lut(self.threshold, self.THRESHOLD_SOFTNESS)
        if self.feather > 0:
            k = 2 * math.ceil(self.feather) + 1
            self._feather_ksize = (k, k)
            self._feather_sigma = self.feather / 2.0
        self._closed = False
        background.prepare(self.out_hw)

    def compose(self, frame: np.ndarray, alpha: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """``frame`` H x W x 3 uint8 RGB, ``alpha`` H x W uint8 (255 = person) -> H x W x 3 uint8 RGB."""
        self._check(frame, alpha, out)
        if self._frame is not None:
            cv2.flip(frame, 1, dst=self._frame)
            cv2.flip(alpha, 1, dst=self._alpha)
            frame, alpha = self._frame, self._alpha
        if self._lut is not None:
            cv2.LUT(alpha, self._lut, dst=self._alpha)
            alpha = self._alpha
        if self.feather > 0:
            cv2.GaussianBlur(alpha, self._feather_ksize, self._feather_sigma, dst=self._alpha)
            alpha = self._alpha
        bg = self.background.render(frame, alpha)
        if bg.shape != self._frame_shape or bg.dtype != np.uint8:
            raise ValueError(f"{type(self.background).__name__}.render() returned {_describe(bg)}; "
                             f"expected {_shape_text(self._frame_shape)} uint8")
        if out is None:
            out = self._out
        self._blend(frame, alpha, bg, out)
        return out

    def _blend(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, out: np.ndarray) -> None:
        x, y, w, h = cv2.boundingRect(alpha)
        if w == 0:  # no person at all
            np.copyto(out, bg)
            return
        H, W = self.out_hw
        x1, y1 = x + w, y + h
        if (w, h) != (W, H):
            np.copyto(out[:y], bg[:y])
            np.copyto(out[y1:], bg[y1:])
            np.copyto(out[y:y1, :x], bg[y:y1, :x])
            np.copyto(out[y:y1, x1:], bg[y:y1, x1:])
        a, f, b, o = alpha[y:y1, x:x1], fg[y:y1, x:x1], bg[y:y1, x:x1], out[y:y1, x:x1]
        a3, ia, ia3, t = self._a3[:h, :w], self._ia[:h, :w], self._ia3[:h, :w], self._fg[:h, :w]
        cv2.cvtColor(a, cv2.COLOR_GRAY2RGB, dst=a3)
        cv2.bitwise_not(a, dst=ia)
        cv2.cvtColor(ia, cv2.COLOR_GRAY2RGB, dst=ia3)
        cv2.multiply(f, a3, dst=t, scale=_INV255)
        cv2.multiply(b, ia3, dst=o, scale=_INV255)
        cv2.add(t, o, dst=o)

    def _check(self, frame: np.ndarray, alpha: np.ndarray, out: np.ndarray | None) -> None:
        if not isinstance(frame, np.ndarray) or frame.shape != self._frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"frame is {_describe(frame)}; expected {_shape_text(self._frame_shape)} uint8 RGB "
                             f"(the compositor's output size)")
        if not isinstance(alpha, np.ndarray) or alpha.shape != self._alpha_shape or alpha.dtype != np.uint8:
            raise ValueError(f"alpha is {_describe(alpha)}; expected {_shape_text(self._alpha_shape)} uint8 "
                             f"(0..255, upsampled to the frame size)")
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != self._frame_shape
                                or out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"out is {_describe(out)}; expected a writable C-contiguous "
                             f"{_shape_text(self._frame_shape)} uint8 array")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.background.close()

    def __enter__(self) -> Compositor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def threshold_lut(threshold: float, softness: float = 0.1) -> np.ndarray:
    """256-entry uint8 table: a steep linear ramp of width ``softness`` centred on ``threshold``."""
    s = min(softness, 2 * threshold, 2 * (1 - threshold))
    v = np.arange(256, dtype=np.float64) / 255.0
    ramp = np.clip((v - threshold) / s + 0.5, 0.0, 1.0)
    return np.round(ramp * 255.0).astype(np.uint8)


def _check_feather(feather: float, allowed: tuple[float, float]) -> float:
    lo, hi = allowed
    try:
        f = float(feather)
    except (TypeError, ValueError):
        f = math.nan
    if not lo <= f <= hi:
        raise ConfigError(f"--feather {feather!r} is out of range: use pixels from {lo:g} to {hi:g} (0 = off)")
    return f


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        t = math.nan
    if not 0.0 < t < 1.0:
        raise ConfigError(f"--threshold {threshold!r} is out of range: use a number between 0 and 1 "
                          f"(e.g. 0.5), or leave it out for the soft mask")
    return t


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{_shape_text(a.shape) or 'scalar'} {a.dtype}"
    return type(a).__name__
