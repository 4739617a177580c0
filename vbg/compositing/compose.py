"""Blend the camera frame over a background with the person's alpha: ``out = f*a + b*(1-a)``.

In: ``Compositor.compose(frame, alpha)``: the H x W x 3 uint8 RGB frame and an
H x W uint8 alpha (255 = person) at the compositor's size, plus the background
it was built with. Out: H x W x 3 uint8 RGB; alpha 255 gives exactly the frame,
alpha 0 exactly the background. Options (mirror, threshold, feather) are the
class's.

Buffers: allocated once in the constructor; a frame allocates no arrays.
``compose`` returns the compositor's own output buffer, overwritten by the
next call, unless ``out=`` is given. Thread: one compositor per thread (the
render thread live, the compose thread offline).

Why only the silhouette band is blended, and the measured choices:
docs/design/compositing.md.
"""

from __future__ import annotations

import math
from typing import overload

import cv2
import numpy as np

from ..errors import ConfigError
from ..ranges import FEATHER, THRESHOLD
from .backgrounds import Background, _check_hw

_INV255 = 1.0 / 255.0
_SEG = 16  # pixels per segment of the band blend (16 alpha bytes = two uint64 words)


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

    FEATHER_RANGE = (FEATHER.lo, FEATHER.hi)  # declared in vbg.ranges
    THRESHOLD_SOFTNESS = 0.1

    def __init__(self, out_hw: tuple[int, int], background: Background, *, feather: float = 0.0,
                 threshold: float | None = None, mirror: bool = False) -> None:
        self.out_hw = H, W = _check_hw(out_hw)
        self.shape = MaskShape(self.out_hw, feather=feather, threshold=threshold, mirror=mirror)
        self.background = background
        self._frame_shape = (H, W, 3)
        self._alpha_shape = (H, W)

        self._out = np.empty((H, W, 3), np.uint8)
        # whole-frame blend (mostly soft masks)
        self._a3 = np.empty((H, W, 3), np.uint8)  # alpha, 3 channels
        self._ia3 = np.empty((H, W, 3), np.uint8)  # 255 - alpha
        self._fg = np.empty((H, W, 3), np.uint8)  # frame * alpha
        self._bgcopy = np.empty((H, W, 3), np.uint8)
        # band blend: 16-pixel segments in raster order (docs/design/compositing.md)
        self._nseg = nseg = H * W // _SEG
        band = np.zeros(nseg * _SEG + _SEG, np.uint8)  # padded to whole uint64 words
        self._band_hw = band[:H * W].reshape(H, W)
        self._band64 = band[:nseg * _SEG].view(np.uint64).reshape(nseg, 2)
        self._seg_or = np.empty(nseg, np.uint64)
        half = nseg // 2 + 1  # the band path runs only while at most half the segments are mixed
        self._fb = np.empty((half, _SEG * 3), np.uint8)
        self._bb = np.empty((half, _SEG * 3), np.uint8)
        self._ab = np.empty((half, _SEG), np.uint8)
        self._a3s = np.empty((half, _SEG, 3), np.uint8)
        self._ia3s = np.empty((half, _SEG, 3), np.uint8)
        tail = H * W - nseg * _SEG
        self._tail_f, self._tail_b, self._tail_a3, self._tail_ia3 = (
            np.empty((tail, 1, 3), np.uint8) for _ in range(4))
        self._frame_c: np.ndarray | None = None
        self._alpha_c: np.ndarray | None = None
        self._closed = False
        background.prepare(self.out_hw)

    def compose(self, frame: np.ndarray, alpha: np.ndarray, *, out: np.ndarray | None = None,
                t_s: float | None = None) -> np.ndarray:
        """``frame`` H x W x 3 uint8 RGB, ``alpha`` H x W uint8 (255 = person) -> H x W x 3 uint8 RGB.
        ``t_s``: the frame's time in its file (seconds after the first), for a background that
        plays in step with the file (``SyncVideoBackground.show_at``)."""
        self._check(frame, alpha, out)
        if t_s is not None:
            show_at = getattr(self.background, "show_at", None)
            if show_at is not None:
                show_at(t_s)
        frame, alpha = self.shape.apply(frame, alpha)
        if out is None:
            out = self._out
        render_into = getattr(self.background, "render_into", None)
        if render_into is not None:
            render_into(frame, alpha, out)
            self._blend(frame, alpha, None, out)
            return out
        bg = self.background.render(frame, alpha)
        if bg.shape != self._frame_shape or bg.dtype != np.uint8:
            raise ValueError(f"{type(self.background).__name__}.render() returned {_describe(bg)}; "
                             f"expected {_shape_text(self._frame_shape)} uint8")
        if not bg.flags.c_contiguous:
            np.copyto(self._bgcopy, bg)
            bg = self._bgcopy
        self._blend(frame, alpha, bg, out)
        return out

    @property
    def feather(self) -> float:
        return self.shape.feather

    @property
    def threshold(self) -> float | None:
        return self.shape.threshold

    @property
    def mirror(self) -> bool:
        return self.shape.mirror

    @mirror.setter
    def mirror(self, on: bool) -> None:  # switched while live (the control page, a config reload)
        self.shape.mirror = bool(on)

    def _blend(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray | None, out: np.ndarray) -> None:
        """``out = fg*a + bg*(1-a)``; ``bg=None``: the background is already in ``out``."""
        fg, alpha = self._contiguous(fg, alpha)
        band = self._band_hw
        cv2.inRange(alpha, 1, 254, dst=band)
        np.bitwise_or(self._band64[:, 0], self._band64[:, 1], out=self._seg_or)
        idx = np.flatnonzero(self._seg_or)
        m = len(idx)
        if m > self._nseg // 2:  # mostly soft: blend every pixel
            if bg is None:
                np.copyto(self._bgcopy, out)
                bg = self._bgcopy
            self._blend_rect(fg, alpha, bg, out)
            return
        n = self._nseg * _SEG
        seg3 = (self._nseg, _SEG * 3)
        fb, bb, ab = self._fb[:m], self._bb[:m], self._ab[:m]
        if bg is None:
            np.take(out.reshape(-1)[:3 * n].reshape(seg3), idx, axis=0, out=bb, mode="clip")
        else:
            np.take(bg.reshape(-1)[:3 * n].reshape(seg3), idx, axis=0, out=bb, mode="clip")
            np.copyto(out, bg)
        tail = alpha.size - n  # the last < 16 pixels, when the pixel count is not a multiple of 16
        if tail:
            np.copyto(self._tail_b, out.reshape(-1)[3 * n:].reshape(self._tail_b.shape))
        cv2.copyTo(fg, alpha, out)  # the frame wherever alpha > 0; the band is redone below
        np.take(fg.reshape(-1)[:3 * n].reshape(seg3), idx, axis=0, out=fb, mode="clip")
        np.take(alpha.reshape(-1)[:n].reshape(self._nseg, _SEG), idx, axis=0, out=ab, mode="clip")
        if m:
            shape = (m, _SEG, 3)
            self._mix(fb.reshape(shape), ab, bb.reshape(shape), self._a3s[:m], self._ia3s[:m])
            out.reshape(-1)[:3 * n].reshape(seg3)[idx] = fb
        if tail:
            t_shape = (tail, 1, 3)
            a_t = alpha.reshape(-1)[n:].reshape(tail, 1)
            np.copyto(self._tail_f, fg.reshape(-1)[3 * n:].reshape(t_shape))
            self._mix(self._tail_f, a_t, self._tail_b, self._tail_a3, self._tail_ia3)
            np.copyto(out.reshape(-1)[3 * n:].reshape(t_shape), self._tail_f)

    @staticmethod
    def _mix(f: np.ndarray, a: np.ndarray, b: np.ndarray, a3: np.ndarray, ia3: np.ndarray) -> None:
        """In place: ``f = f*a/255 + b*(255-a)/255`` (``b`` is overwritten); f, b, a3, ia3 rows x cols x 3."""
        cv2.cvtColor(a, cv2.COLOR_GRAY2RGB, dst=a3)
        cv2.bitwise_not(a3, dst=ia3)
        cv2.multiply(f, a3, dst=f, scale=_INV255)
        cv2.multiply(b, ia3, dst=b, scale=_INV255)
        cv2.add(f, b, dst=f)

    def _blend_rect(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, out: np.ndarray) -> None:
        """Blend every pixel of the mask's bounding box (for masks that are soft nearly everywhere)."""
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
        a3, ia3, t = self._a3[:h, :w], self._ia3[:h, :w], self._fg[:h, :w]
        cv2.cvtColor(a, cv2.COLOR_GRAY2RGB, dst=a3)
        cv2.bitwise_not(a3, dst=ia3)
        cv2.multiply(f, a3, dst=t, scale=_INV255)
        cv2.multiply(b, ia3, dst=o, scale=_INV255)
        cv2.add(t, o, dst=o)

    def _contiguous(self, fg: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The segment views need C-contiguous inputs; a strided view is copied into a buffer once."""
        if not fg.flags.c_contiguous:
            if self._frame_c is None:
                self._frame_c = np.empty(self._frame_shape, np.uint8)
            np.copyto(self._frame_c, fg)
            fg = self._frame_c
        if not alpha.flags.c_contiguous:
            if self._alpha_c is None:
                self._alpha_c = np.empty(self._alpha_shape, np.uint8)
            np.copyto(self._alpha_c, alpha)
            alpha = self._alpha_c
        return fg, alpha

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


class MaskShape:
    """The mask options on their own, in :class:`Compositor`'s order (mirror, threshold, feather;
    see there): the compositor's first step, and all of it where the output is the mask
    itself (``vbg process --matte`` and ``--alpha``).

    ``apply(frame, alpha)`` returns the two to use: the arguments themselves when every option is
    off, else the class's own buffers (overwritten by the next call). ``frame`` may be None (a
    matte has no picture). Buffers: allocated here; a frame allocates none."""

    def __init__(self, hw: tuple[int, int], *, feather: float = 0.0, threshold: float | None = None,
                 mirror: bool = False) -> None:
        H, W = hw
        self.feather = _check_feather(feather, Compositor.FEATHER_RANGE)
        self.threshold = None if threshold is None else _check_threshold(threshold)
        self.mirror = bool(mirror)
        # the mirror's buffers exist whether or not it is on: it can be switched while live
        self._alpha = np.empty((H, W), np.uint8)
        self._frame = np.empty((H, W, 3), np.uint8)
        self._lut = None if self.threshold is None else threshold_lut(self.threshold,
                                                                      Compositor.THRESHOLD_SOFTNESS)
        if self.feather > 0:
            k = 2 * math.ceil(self.feather) + 1
            self._feather_ksize = (k, k)
            self._feather_sigma = self.feather / 2.0

    @overload
    def apply(self, frame: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def apply(self, frame: None, alpha: np.ndarray) -> tuple[None, np.ndarray]: ...

    def apply(self, frame, alpha):
        if self.mirror:
            if frame is not None:
                cv2.flip(frame, 1, dst=self._frame)
                frame = self._frame
            cv2.flip(alpha, 1, dst=self._alpha)
            alpha = self._alpha
        if self._lut is not None:
            cv2.LUT(alpha, self._lut, dst=self._alpha)
            alpha = self._alpha
        if self.feather > 0:
            cv2.GaussianBlur(alpha, self._feather_ksize, self._feather_sigma, dst=self._alpha)
            alpha = self._alpha
        return frame, alpha


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
    if t not in THRESHOLD:  # vbg.ranges: 0 < t < 1 (NaN refused too)
        raise ConfigError(f"--threshold {threshold!r} is out of range: use a number between 0 and 1 "
                          f"(e.g. 0.5), or leave it out for the soft mask")
    return t


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{_shape_text(a.shape) or 'scalar'} {a.dtype}"
    return type(a).__name__
