"""The person's own colour under a soft alpha, for outputs that keep the alpha (``--alpha``).

In: an H x W x 3 uint8 RGB frame and its H x W uint8 alpha (255 = person). Out: the frame's
RGB as the person alone would have it: 0 where alpha is 0 (nothing of the room is kept: an
app that drops the alpha, or reads the file as a background, showed the whole room again),
the frame itself where alpha is 255, and between the two the foreground colour estimated by
blur-fusion (Forte and Pitie, "Approximate Fast Foreground Colour Estimation", ICIP 2021: two
passes of ``F = Fb + a (I - a Fb - (1 - a) Bb)``, ``Fb``/``Bb`` the alpha-weighted local means
of foreground and background, at a radius of 90 pixels and then of 6). A soft edge pixel
otherwise keeps the room's colour mixed into it, and an editor laying the file over a new
background shows a fringe of the old room (29 levels of green excess in the edge band of a
person before a green wall, against 1.9 for the true colour; 1.8 with the estimate:
``tests/unit/test_foreground.py``).

Cost: the wide pass runs at a quarter of the size (a 90-pixel mean is smooth), the narrow one
only over the soft edge's bounding box: ``benchmarks/RESULTS.md`` ("Foreground colour").

Buffers: allocated for the first frame's size and kept (the narrow pass's, for about a million
pixels at a time, whatever the frame's size); a frame of that size allocates no arrays once the
largest soft edge has been met. Thread: one estimator per thread.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDE_R, NARROW_R = 90, 6  # the paper's two passes, in pixels of the frame
WIDE_SCALE = 4  # the wide pass at 1/4 of the size
STRIP_PIXELS = 1 << 20  # the narrow pass goes through the soft edge's box in strips of about this many pixels
_EPS = np.float32(1e-4)
_ONE = np.float32(1)


class _Work:
    """The float32 arrays of one blur-fusion pass, as views of fixed pools: ``shaped(h, w)``
    gives contiguous H x W (x 3) arrays for any h * w up to the pools' size, without allocating."""

    _NAMES3 = ("i", "a3", "f", "b", "fb", "bb", "t")
    _NAMES1 = ("a", "wa", "wb")

    def __init__(self, pixels: int) -> None:
        self._pools = {n: np.empty(pixels * 3, np.float32) for n in self._NAMES3}
        self._pools.update({n: np.empty(pixels, np.float32) for n in self._NAMES1})

    def shaped(self, h: int, w: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {n: self._pools[n][:h * w * 3].reshape(h, w, 3) for n in self._NAMES3}
        out.update({n: self._pools[n][:h * w].reshape(h, w) for n in self._NAMES1})
        return out


def _blur_fusion(v: dict[str, np.ndarray], r: int) -> None:
    """One pass, in place: ``v["f"]``/``v["b"]`` (the estimates so far) updated from the frame
    ``v["i"]`` and alpha ``v["a"]``/``v["a3"]``, with local means over a (2r+1)-square."""
    i, a, a3, f, b, fb, bb, t, wa, wb = (v[n] for n in ("i", "a", "a3", "f", "b", "fb", "bb", "t", "wa", "wb"))
    k = (2 * r + 1, 2 * r + 1)
    # Fb = blur(F a) / blur(a); Bb = blur(B (1 - a)) / blur(1 - a)
    cv2.blur(a, k, dst=wa, borderType=cv2.BORDER_REFLECT)
    np.subtract(_ONE, wa, out=wb)
    np.maximum(wa, _EPS, out=wa)
    np.maximum(wb, _EPS, out=wb)
    np.multiply(f, a3, out=t)
    cv2.blur(t, k, dst=fb, borderType=cv2.BORDER_REFLECT)
    np.divide(fb, wa[..., None], out=fb)
    np.subtract(_ONE, a3, out=t)
    np.multiply(b, t, out=t)
    cv2.blur(t, k, dst=bb, borderType=cv2.BORDER_REFLECT)
    np.divide(bb, wb[..., None], out=bb)
    # the residual of the compositing equation, r = I - a Fb - (1 - a) Bb, shared out
    np.subtract(fb, bb, out=t)
    np.multiply(a3, t, out=t)
    np.add(t, bb, out=t)
    np.subtract(i, t, out=t)
    np.multiply(a3, t, out=f)  # a r
    np.subtract(t, f, out=b)  # (1 - a) r
    np.add(f, fb, out=f)
    np.add(b, bb, out=b)
    np.clip(f, 0.0, 1.0, out=f)
    np.clip(b, 0.0, 1.0, out=b)


class ForegroundEstimator:
    """``estimate(rgb, alpha)``: the person's colour (see the module's note)."""

    def __init__(self) -> None:
        self._hw: tuple[int, int] | None = None
        self._narrow_pixels = 0

    def _allocate(self, hw: tuple[int, int]) -> None:
        h, w = hw
        self._hw = hw
        self._small_hw = (max(1, round(h / WIDE_SCALE)), max(1, round(w / WIDE_SCALE)))
        sh, sw = self._small_hw
        self._wide = _Work(sh * sw)
        self._small_rgb = np.empty((sh, sw, 3), np.uint8)
        self._small_a = np.empty((sh, sw), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self._soft = np.empty((h, w), np.uint8)

    def _narrow_work(self, pixels: int) -> _Work:
        """The narrow pass's arrays for a strip of ``pixels``: grown to the largest strip met, then
        kept (a video's soft edge moves a little from frame to frame)."""
        if pixels > self._narrow_pixels:
            self._narrow = _Work(pixels)
            self._est = np.empty(pixels * 3, np.uint8)
            self._narrow_pixels = pixels
        return self._narrow

    def estimate(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The person's colour for ``rgb`` under ``alpha``: the estimator's own H x W x 3 uint8
        buffer, overwritten by the next call."""
        hw = alpha.shape[:2]
        if rgb.shape[:2] != hw:
            raise ValueError(f"frame {rgb.shape[:2]} and alpha {hw} differ in size")
        if self._hw != hw:
            self._allocate(hw)
        out = self._out
        out.fill(0)  # clear: nothing of the room
        cv2.inRange(alpha, 1, 255, dst=self._soft)
        cv2.copyTo(rgb, self._soft, out)  # the frame itself where alpha is 255 (and, for now, soft)
        cv2.inRange(alpha, 1, 254, dst=self._soft)
        x, y, w, h = cv2.boundingRect(self._soft)
        if w == 0 or h == 0:
            return out  # a hard matte: nothing between
        small_f, small_b = self._wide_pass(rgb, alpha)
        # The narrow pass over the soft edge's box, in strips of rows (a 48 MP photo's box whole
        # took gigabytes), each with the margin its means reach: the same result as in one piece.
        H, W = hw
        m = NARROW_R + 1
        x0, x1 = max(0, x - m), min(W, x + w + m)
        rows = max(1, STRIP_PIXELS // (x1 - x0) - 2 * m)
        work = self._narrow_work((min(rows, h) + 2 * m) * (x1 - x0))
        for top in range(y, y + h, rows):
            bottom = min(y + h, top + rows)
            y0, y1 = max(0, top - m), min(H, bottom + m)
            self._narrow_strip(work.shaped(y1 - y0, x1 - x0), rgb, alpha, small_f, small_b, x0, x1, y0, y1,
                               top, bottom)
        return out

    def _narrow_strip(self, v: dict[str, np.ndarray], rgb, alpha, small_f, small_b, x0: int, x1: int, y0: int,
                      y1: int, top: int, bottom: int) -> None:
        """The 6-pixel pass over rows ``y0:y1``, columns ``x0:x1``; its rows ``top:bottom`` (the
        margin left out) written where the alpha is soft."""
        np.multiply(rgb[y0:y1, x0:x1], np.float32(1 / 255), out=v["i"])
        np.multiply(alpha[y0:y1, x0:x1], np.float32(1 / 255), out=v["a"])
        cv2.merge((v["a"], v["a"], v["a"]), v["a3"])
        # the wide pass's estimates at this part of the frame, as a resize to the frame's size gives them
        sh, sw = self._small_hw
        H, W = self._hw  # type: ignore[misc]
        sx, sy = sw / W, sh / H
        to_small = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]], np.float64)
        size = (x1 - x0, y1 - y0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        cv2.warpAffine(small_f, to_small, size, dst=v["f"], flags=flags, borderMode=cv2.BORDER_REPLICATE)
        cv2.warpAffine(small_b, to_small, size, dst=v["b"], flags=flags, borderMode=cv2.BORDER_REPLICATE)
        _blur_fusion(v, NARROW_R)
        f = v["f"]
        np.multiply(f, np.float32(255), out=f)
        np.add(f, np.float32(0.5), out=f)
        est = self._est[:f.size].reshape(f.shape)
        np.copyto(est, f, casting="unsafe")
        inner = slice(top - y0, bottom - y0)
        cv2.copyTo(est[inner], self._soft[top:bottom, x0:x1], self._out[top:bottom, x0:x1])  # (views: in place)

    def _wide_pass(self, rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 90-pixel pass at a quarter of the size: its foreground and background estimates."""
        sh, sw = self._small_hw
        cv2.resize(rgb, (sw, sh), dst=self._small_rgb, interpolation=cv2.INTER_AREA)
        cv2.resize(alpha, (sw, sh), dst=self._small_a, interpolation=cv2.INTER_AREA)
        v = self._wide.shaped(sh, sw)
        np.multiply(self._small_rgb, np.float32(1 / 255), out=v["i"])
        np.multiply(self._small_a, np.float32(1 / 255), out=v["a"])
        cv2.merge((v["a"], v["a"], v["a"]), v["a3"])
        np.copyto(v["f"], v["i"])
        np.copyto(v["b"], v["i"])
        _blur_fusion(v, max(1, round(WIDE_R / WIDE_SCALE)))
        return v["f"], v["b"]
