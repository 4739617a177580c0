"""Checks of the arrays and sizes a stage is handed, worded the same everywhere.

A wrong dtype is a ``TypeError``, a wrong shape a ``ValueError``; a size option out of range
is a :class:`~vbg.errors.ConfigError` that names it.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


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
    """``img`` is an RGB (H x W x 3) or grey (H x W) uint8 array, of size ``hw`` when given."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 numpy array, got {getattr(img, 'dtype', type(img).__name__)}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"{name} must be H x W x 3 (RGB) or H x W (grey), got shape {img.shape}")
    if hw is not None and img.shape[:2] != hw:
        raise ValueError(f"{name} must be {hw[0]} x {hw[1]}, got {img.shape[0]} x {img.shape[1]}")
