"""The oracle segmenter: the ground truth itself, as a model at the inference size would give it.

It separates what the pipeline does (skipping, propagation, smoothing,
upsampling) from what a model does: fed the oracle, every error the quality
benchmark measures is the pipeline's.

The mask size follows the model's rules (:func:`vbg.models.preprocess.inference_size`:
a long side, aspect kept, sides a multiple of 32; or an explicit (H, W)), and
the truth is reduced to it with INTER_AREA: each mask pixel is the person's
coverage of its footprint, what a perfect model at that size would output.
The pipeline then has to upsample it back, exactly as it does a real mask.

``jitter`` (mask pixels) adds what a real model does from frame to frame even
when nothing moves: its edge wanders. Each frame's mask is warped by a smooth
random displacement field (a 4 x 6 grid of Gaussian offsets with standard
deviation ``jitter``, upsampled bicubically), different per frame and fixed
by ``seed``: the input the temporal smoothing is there to calm.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError
from ..config import parse_size
from ..models.preprocess import inference_size

JITTER_GRID = (4, 6)  # control points of the random displacement field (rows, columns)


class OracleSegmenter:
    """``mask(truth, seq) -> h x w float32`` for a full-size truth alpha.

    ``size``: the inference size as for a real model (``256``, ``"256"`` or
    ``(160, 256)``). ``infer_ms``: the inference time the oracle stands in for
    (the simulation turns it into a delay); 0 = instant.
    """

    def __init__(self, size: int | str | tuple[int, int] = 256, *, jitter: float = 0.0, seed: int = 0,
                 infer_ms: float = 0.0) -> None:
        self.size = parse_size(size)
        if self.size is None:
            raise ConfigError("the oracle needs an inference size (e.g. 256)")
        if not (isinstance(jitter, (int, float)) and 0.0 <= jitter <= 8.0):
            raise ConfigError(f"oracle jitter {jitter!r} is out of range: use 0..8 mask pixels")
        if not (isinstance(infer_ms, (int, float)) and 0.0 <= infer_ms <= 10_000):
            raise ConfigError(f"oracle infer_ms {infer_ms!r} is out of range: use 0..10000")
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.infer_ms = float(infer_ms)
        self._grid: dict[tuple[int, int], np.ndarray] = {}

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return inference_size(frame_hw, self.size)

    def mask(self, truth: np.ndarray, seq: int) -> np.ndarray:
        """The truth (H x W float alpha, or uint8) reduced to the inference size; a new array."""
        t = np.asarray(truth)
        if t.ndim != 2:
            raise ValueError(f"truth must be an H x W alpha, got shape {t.shape}")
        if t.dtype == np.uint8:
            t = t.astype(np.float32) / 255.0
        t = t.astype(np.float32, copy=False)
        h, w = self.input_size(t.shape)
        small = cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA)
        if self.jitter > 0:
            small = self._wobble(small, seq)
        return np.clip(small, 0.0, 1.0, out=small)

    def _wobble(self, small: np.ndarray, seq: int) -> np.ndarray:
        h, w = small.shape
        grid = self._grid.get((h, w))
        if grid is None:
            gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
            grid = self._grid[(h, w)] = np.dstack([gx, gy])
        rng = np.random.default_rng([self.seed, seq & 0xFFFFFFFF])
        coarse = rng.standard_normal((*JITTER_GRID, 2)).astype(np.float32) * np.float32(self.jitter)
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        return cv2.remap(small, grid + field, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
