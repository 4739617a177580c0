"""Reading and writing still images with one channel order (RGB) and no surprises.

Greyscale, RGBA, 16-bit and palette PNGs are all turned into 8-bit RGB; a
file that is missing, empty or not an image raises :class:`InputError`.
Writes go to a temporary name in the target folder and are renamed into
place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, OutputError
from .fsutil import atomic_path

MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding


def read_rgb(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist: check the path")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise InputError(f"image {path} is empty: pass a PNG or JPEG file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} is not an image OpenCV can read (or it is truncated): pass a PNG or JPEG file")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise InputError(f"image {path} is {img.shape[1]}x{img.shape[0]}: too large; scale it below 100 megapixels")
    return to_rgb8(img)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded image (BGR/BGRA/grey, 8 or 16 bit, float) -> RGB uint8."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write ``img`` (grey, RGB or RGBA, uint8) atomically; format from the suffix."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot encode {path.name}: use a .png (or .jpg/.webp for masks) output name")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.tobytes())
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}; choose a writable -o path") from e
    return path
