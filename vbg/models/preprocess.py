"""Pre- and post-processing as pure numpy/OpenCV functions.

Reference (RMBG-1.4 model card): RGB, bilinear resize to the model size with
the aspect ratio not kept, ``x / 255``, then ``(x - mean) / std`` per channel
(mean 0.5, std 1.0 for RMBG-1.4, so the network sees ``x/255 - 0.5``); the
output d1 is already a sigmoid. The reference then rescales every image to
its own min..max: on video that pumps and flickers, so here it is an option.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


SIZE_MULTIPLE = 32


def round_to_multiple(x: float, m: int = SIZE_MULTIPLE) -> int:
    return max(m, int(math.floor(x / m + 0.5)) * m)


def inference_size(frame_hw: tuple[int, int], size: int | tuple[int, int]) -> tuple[int, int]:
    """Network input (H, W) for a frame: an explicit (H, W) as is, or a long
    side with the frame's aspect ratio kept, both sides rounded to a multiple of 32."""
    if isinstance(size, tuple):
        return size
    fh, fw = frame_hw
    if fw >= fh:
        return round_to_multiple(size * fh / fw), round_to_multiple(size)
    return round_to_multiple(size), round_to_multiple(size * fw / fh)


class Preprocessor:
    """RGB uint8 frame -> normalised float32 NCHW tensor, into reused buffers.

    ``(x/255 - mean)/std`` is one multiply-add per channel, written by OpenCV
    straight into that channel's plane of the persistent input tensor (no
    HWC float intermediate, no transpose copy): ~0.2 ms for 720p -> 160x256.
    """

    def __init__(self, size_hw: tuple[int, int], mean, std, dtype=np.float32) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        h, w = self.size_hw
        self.scale = [float(v) for v in 1.0 / (255.0 * np.asarray(std, np.float64))]
        self.offset = [float(v) for v in -np.asarray(mean, np.float64) / np.asarray(std, np.float64)]
        self._small = np.empty((h, w, 3), np.uint8)
        self._plane = np.empty((h, w), np.uint8)
        self.tensor = np.empty((1, 3, h, w), dtype)
        # OpenCV writes float32; a float16 model gets a float32 staging tensor cast at the end.
        self._f32 = self.tensor if dtype == np.float32 else np.empty((1, 3, h, w), np.float32)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        h, w = self.size_hw
        if rgb.shape[:2] == (h, w):
            small = rgb
        else:
            small = cv2.resize(rgb, (w, h), dst=self._small, interpolation=cv2.INTER_LINEAR)
        for c in range(3):
            cv2.extractChannel(small, c, dst=self._plane)
            cv2.addWeighted(self._plane, self.scale[c], self._plane, 0.0, self.offset[c],
                            dst=self._f32[0, c], dtype=cv2.CV_32F)
        if self._f32 is not self.tensor:
            self.tensor[...] = self._f32
        return self.tensor


def postprocess(raw: np.ndarray, *, minmax: bool = False) -> np.ndarray:
    """Network output [1,1,H,W] (or [H,W]) -> float32 alpha (H, W) in [0, 1].

    ``minmax`` applies the reference's per-image rescale; a flat output (no
    person: max == min) gives zeros instead of dividing by zero. Works in
    place on ``raw`` when it already is float32.
    """
    a = np.asarray(raw, dtype=np.float32).reshape(raw.shape[-2:])
    if minmax:
        lo, hi = float(a.min()), float(a.max())
        if hi - lo < 1e-6:
            return np.zeros_like(a)
        a = (a - lo) / (hi - lo)
    return np.clip(a, 0.0, 1.0, out=a)


def resize_alpha(alpha: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float alpha to (H, W) (the reference upsampling)."""
    h, w = size_hw
    if alpha.shape == (h, w):
        return alpha
    return cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)


def alpha_to_u8(alpha: np.ndarray) -> np.ndarray:
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
