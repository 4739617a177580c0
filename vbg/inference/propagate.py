"""Move the latest mask with the person on frames the model did not see.

The model runs on some frames only, and its mask arrives a few frames late.
Rather than show a stale silhouette, the render thread warps the mask from the
frame it was computed on to the frame being shown, with dense optical flow
(OpenCV's DIS, ultrafast preset) at the mask resolution.

Typical use in the render thread, once per shown frame ``t``::

    g_t = prop.gray(frame_t.image, seq=frame_t.seq)    # keep a short history
    g_s = prop.gray_of(mask.seq)                       # the mask's own frame
    alpha = mask.alpha if g_s is None or mask.seq == frame_t.seq else prop.warp(mask.alpha, g_s, g_t)

Warp the model's mask straight from its frame to the current one every time
(one resampling, no drift) rather than chaining frame-to-frame warps, which
blur and accumulate errors.

Buffers: ``gray`` returns slots of an internal ring of ``history`` arrays, so a
returned array stays valid for the next ``history - 1`` calls; ``warp`` and
``motion`` return the same array on every call unless ``out=`` is given. Copy
anything that must outlive that. One propagator per thread: the DIS object and
the buffers are not shared safely.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def check_hw(name: str, hw) -> tuple[int, int]:
    """Validate an (H, W) size option: two ints, each 8..8192."""
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {hw!r} is not a (height, width) pair of integers") from None
    if not (8 <= h <= 8192 and 8 <= w <= 8192):
        raise ConfigError(f"{name} {hw!r} is out of range: height and width must be 8..8192")
    return h, w


def check_image(name: str, img: np.ndarray, hw: tuple[int, int] | None = None) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 numpy array, got {getattr(img, 'dtype', type(img).__name__)}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"{name} must be H x W x 3 (RGB) or H x W (grey), got shape {img.shape}")
    if hw is not None and img.shape[:2] != hw:
        raise ValueError(f"{name} must be {hw[0]} x {hw[1]}, got {img.shape[0]} x {img.shape[1]}")


class GrayReducer:
    """Reduce an RGB or grey uint8 frame of any size to grey at ``hw``.

    INTER_AREA straight from 720p costs ~0.3 ms per channel on two cores
    (non-integer ratios are slow), INTER_LINEAR aliases; so a large frame is
    first reduced with INTER_LINEAR to twice the target size (mild aliasing at
    ratios up to ~2.5), then halved exactly with INTER_AREA: ~0.2 ms from RGB
    720p, ~0.03 ms from a grey 720p frame. Intermediate buffers are allocated
    on the first frame of a given size and reused.
    """

    def __init__(self, hw: tuple[int, int]):
        self.hw = hw
        self._key: tuple | None = None
        self._mid: np.ndarray | None = None  # 2x target, same channels as input
        self._mid_gray: np.ndarray | None = None

    def _buffers(self, shape: tuple[int, ...]) -> None:
        h, w = self.hw
        big = shape[0] >= 4 * h and shape[1] >= 4 * w
        if big:
            mid_hw = (2 * h, 2 * w)
        else:
            mid_hw = (h, w)
        self._mid = np.empty(mid_hw + shape[2:], np.uint8) if (big or len(shape) == 3) else None
        self._mid_gray = np.empty(mid_hw, np.uint8) if (big and len(shape) == 3) else None
        self._big = big
        self._key = shape

    def __call__(self, frame: np.ndarray, dst: np.ndarray) -> np.ndarray:
        if frame.shape != self._key:
            self._buffers(frame.shape)
        h, w = self.hw
        if self._big:
            cv2.resize(frame, (2 * w, 2 * h), dst=self._mid, interpolation=cv2.INTER_LINEAR)
            g = self._mid
            if frame.ndim == 3:
                cv2.cvtColor(self._mid, cv2.COLOR_RGB2GRAY, dst=self._mid_gray)
                g = self._mid_gray
            cv2.resize(g, (w, h), dst=dst, interpolation=cv2.INTER_AREA)
        elif frame.ndim == 3:
            cv2.resize(frame, (w, h), dst=self._mid, interpolation=cv2.INTER_AREA)
            cv2.cvtColor(self._mid, cv2.COLOR_RGB2GRAY, dst=dst)
        else:
            cv2.resize(frame, (w, h), dst=dst, interpolation=cv2.INTER_AREA)
        return dst


class MaskPropagator:
    """Warp float32 masks at ``mask_hw`` = (h, w) along dense optical flow.

    ``history``: how many grey frames ``gray`` keeps (2..256); it must cover
    the model's latency in frames plus the skip interval, or ``gray_of`` will
    no longer find the mask's frame. ``preset``: DIS preset, ``ultrafast``
    (default, ~0.3 ms at 256x144) or ``fast`` (~0.8 ms, better on large motion).
    """

    def __init__(self, mask_hw: tuple[int, int], *, history: int = 8, preset: str = "ultrafast"):
        self.mask_hw = h, w = check_hw("mask size", mask_hw)
        if not isinstance(history, int) or not 2 <= history <= 256:
            raise ConfigError(f"propagation history {history!r} is out of range: use 2..256")
        if preset not in PRESETS:
            raise ConfigError(f"flow preset {preset!r} is not known: use one of {', '.join(PRESETS)}")
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        self._reduce = GrayReducer((h, w))
        self._ring = [np.empty((h, w), np.uint8) for _ in range(history)]
        self._ring_seq: list[int | None] = [None] * history
        self._next = 0
        self._flow = np.zeros((h, w, 2), np.float32)
        self._map = np.empty((h, w, 2), np.float32)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._grid = np.dstack([gx, gy])  # remap wants (x, y) per pixel
        self._out = np.empty((h, w), np.float32)
        self._mag = np.zeros((h, w), np.float32)
        self._mag_valid = True
        self._flow_view = self._flow.view()
        self._flow_view.flags.writeable = False

    def gray(self, frame: np.ndarray, *, seq: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """``frame`` (H x W x 3 RGB or H x W grey, uint8, any size) as uint8 grey at the mask size.

        Without ``out`` the result goes to the next slot of the ring (valid for
        ``history - 1`` more calls) and is remembered under ``seq`` for
        ``gray_of``. Passing an already-grey full frame (shared with the
        upsampler) makes this ~0.03 ms instead of ~0.2 ms at 720p.
        """
        check_image("frame", frame)
        if out is not None:
            if out.shape != self.mask_hw or out.dtype != np.uint8:
                raise ValueError(f"out must be a {self.mask_hw[0]} x {self.mask_hw[1]} uint8 array")
            return self._reduce(frame, out)
        i = self._next
        self._next = (i + 1) % len(self._ring)
        self._ring_seq[i] = seq
        return self._reduce(frame, self._ring[i])

    def gray_of(self, seq: int) -> np.ndarray | None:
        """The ring's grey frame stored under ``seq``, or None if it has been overwritten."""
        for i, s in enumerate(self._ring_seq):
            if s == seq:
                return self._ring[i]
        return None

    def warp(
        self, mask: np.ndarray, gray_from: np.ndarray, gray_to: np.ndarray, *, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``mask`` (h x w float32, aligned with ``gray_from``) moved to line up with ``gray_to``.

        The flow is computed from ``gray_to`` back to ``gray_from``, so every
        target pixel looks up where it came from (backward warping, no holes).
        Pixels that come from outside the frame take the nearest border value.
        Returns ``out`` or the propagator's own output buffer (same array each call).
        """
        hw = self.mask_hw
        if mask.shape != hw or mask.dtype != np.float32:
            raise ValueError(f"mask must be {hw[0]} x {hw[1]} float32, got {mask.shape} {mask.dtype}")
        check_image("gray_from", gray_from, hw)
        check_image("gray_to", gray_to, hw)
        dst = self._out if out is None else out
        if gray_from is gray_to:
            self._flow.fill(0.0)
            np.copyto(dst, mask)
        else:
            # DIS starts from the flow it is handed: zero it, or the last
            # call's flow (another frame pair) would bias this one.
            self._flow.fill(0.0)
            self._dis.calc(gray_to, gray_from, self._flow)
            np.add(self._flow, self._grid, out=self._map)
            cv2.remap(mask, self._map, None, cv2.INTER_LINEAR, dst=dst, borderMode=cv2.BORDER_REPLICATE)
        self._mag_valid = False
        return dst

    @property
    def flow(self) -> np.ndarray:
        """The last warp's flow (h x w x 2 float32, (dx, dy) from target back to source), read-only."""
        return self._flow_view

    def motion(self, *, out: np.ndarray | None = None) -> np.ndarray:
        """How far each pixel moved in the last warp, in mask pixels (h x w float32).

        It covers the whole span of that warp (several frames if the mask was
        older); divide by the frame gap for a per-frame speed. Zero before any
        warp and after ``reset``. Computed on demand (~0.03 ms at 256x144) and cached.
        """
        if not self._mag_valid:
            sq = self._map  # scratch: the remap table is not needed after warp
            np.multiply(self._flow, self._flow, out=sq)
            np.add(sq[..., 0], sq[..., 1], out=self._mag)
            np.sqrt(self._mag, out=self._mag)
            self._mag_valid = True
        if out is None:
            return self._mag
        np.copyto(out, self._mag)
        return out

    def reset(self) -> None:
        """Forget the stored grey frames and the last flow (e.g. after a scene cut or a seek)."""
        self._ring_seq = [None] * len(self._ring)
        self._next = 0
        self._flow.fill(0.0)
        self._mag.fill(0.0)
        self._mag_valid = True
