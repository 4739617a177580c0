"""Colour profiles of still images: a photo in Display P3 or Adobe RGB shown in sRGB, as a viewer shows it.

In: RGB uint8 pixels and the ICC profile embedded with them (``vbg.images.icc_profile``).
Out: ``to_srgb(rgb, icc)``: the pixels in sRGB (a new array), or the same array where the
profile is sRGB's own, is missing, or cannot be used. Pure functions: any thread.

vbg composites, previews and encodes in sRGB / BT.709, so a background photo from a phone
(Display P3) or a camera (Adobe RGB) looked duller than it does in a photo viewer: its numbers
were read as sRGB numbers. Only matrix/TRC ("matrix-shaper") RGB profiles are read, which is
what phones and cameras embed: the ``rXYZ``/``gXYZ``/``bXYZ`` colorants and the
``rTRC``/``gTRC``/``bTRC`` curves (ICC.1: ``curv`` gamma or table, ``para`` functions 0-4). The
conversion (ICC's relative colorimetric intent, without black-point compensation): each
channel's curve to linear light, the colorants to XYZ (D50, the profile connection space),
sRGB's D50 colorants back, clipped to sRGB's gamut, sRGB's curve. A LUT-based profile, a grey
or CMYK one, or a malformed one leaves the pixels as they are (``None`` from ``matrix_shaper``).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

# sRGB's colorants adapted to D50 (the ICC sRGB profile's rXYZ, gXYZ, bXYZ), as columns.
SRGB_D50 = np.array([[0.4360747, 0.3850649, 0.1430804],
                     [0.2225045, 0.7168786, 0.0606169],
                     [0.0139322, 0.0971045, 0.7141733]])
_PARA_COUNTS = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}
MAX_CURVE_POINTS = 65536


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """sRGB's curve (IEC 61966-2-1): encoded 0..1 -> linear light."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    """sRGB's curve inverted: linear light 0..1 -> encoded."""
    lin = np.clip(np.asarray(lin, np.float64), 0, 1)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def _s15(buf: bytes, off: int) -> float:
    return struct.unpack_from(">i", buf, off)[0] / 65536


def _curve(buf: bytes, off: int, size: int, x: np.ndarray) -> np.ndarray | None:
    """Tag data at ``off`` (``curv`` or ``para``) evaluated at ``x`` (0..1); None if it is neither."""
    kind = buf[off:off + 4]
    if kind == b"curv":
        n = struct.unpack_from(">I", buf, off + 8)[0]
        if n == 0:
            return x.copy()
        if n == 1:
            return x ** (struct.unpack_from(">H", buf, off + 12)[0] / 256)
        if n > MAX_CURVE_POINTS or 12 + 2 * n > size:
            return None
        table = np.frombuffer(buf, ">u2", n, off + 12).astype(np.float64) / 65535
        return np.interp(x * (n - 1), np.arange(n), table)
    if kind == b"para":
        ftype = struct.unpack_from(">H", buf, off + 8)[0]
        count = _PARA_COUNTS.get(ftype)
        if count is None or 12 + 4 * count > size:
            return None
        p = [_s15(buf, off + 12 + 4 * i) for i in range(count)] + [0.0] * (7 - count)
        g, a, b, c, d, e, f = p
        if ftype == 0:
            return x ** g
        if ftype in (1, 2):
            if a == 0:
                return None
            top = (np.maximum(a * x + b, 0)) ** g
            return np.where(x >= -b / a, top + (c if ftype == 2 else 0), c if ftype == 2 else 0)
        if ftype == 3:
            return np.where(x >= d, np.maximum(a * x + b, 0) ** g, c * x)
        return np.where(x >= d, np.maximum(a * x + b, 0) ** g + e, c * x + f)
    return None


def matrix_shaper(icc: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """An RGB matrix/TRC profile's colorants (3x3, columns R, G, B, in D50 XYZ) and its curves
    at the 256 8-bit codes (256 x 3, linear light); None for any other profile, or a damaged one."""
    try:
        if len(icc) < 132 or icc[16:20] != b"RGB " or icc[20:24] != b"XYZ ":
            return None
        count = struct.unpack_from(">I", icc, 128)[0]
        if count > 1000 or 132 + 12 * count > len(icc):
            return None
        tags = {}
        for i in range(count):
            sig, off, size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
            if off + size <= len(icc) and size >= 12:
                tags[sig] = (off, size)
        if not all(t in tags for t in (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")):
            return None
        cols = []
        for t in (b"rXYZ", b"gXYZ", b"bXYZ"):
            off, size = tags[t]
            if icc[off:off + 4] != b"XYZ " or size < 20:
                return None
            cols.append([_s15(icc, off + 8 + 4 * k) for k in range(3)])
        x = np.arange(256) / 255
        curves = [_curve(icc, *tags[t], x) for t in (b"rTRC", b"gTRC", b"bTRC")]
    except (struct.error, ValueError):
        return None
    usable = [c for c in curves if c is not None and np.all(np.isfinite(c))]
    if len(usable) != 3:
        return None
    matrix = np.array(cols).T
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-6:
        return None
    return matrix, np.clip(np.stack(usable, axis=1), 0, None)


def is_srgb(matrix: np.ndarray, curves: np.ndarray) -> bool:
    """The profile is sRGB's (colorants within 0.002, curves within half an 8-bit step)."""
    want = srgb_decode(np.arange(256) / 255)
    return bool(np.abs(matrix - SRGB_D50).max() < 0.002
                and np.abs(srgb_encode(curves) - srgb_encode(want)[:, None]).max() < 0.5 / 255)


def to_srgb(rgb: np.ndarray, icc: bytes | None) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8, encoded in ``icc``'s colours) in sRGB; ``rgb`` itself where
    ``icc`` is None, sRGB's, or not a matrix/TRC RGB profile (module docstring)."""
    found = matrix_shaper(icc) if icc else None
    if found is None or is_srgb(*found):
        return rgb
    matrix, curves = found
    to_linear = np.ascontiguousarray(curves.T, np.float32)  # 3 x 256: each channel's curve
    to_srgb_linear = (np.linalg.inv(SRGB_D50) @ matrix).astype(np.float32)
    s = np.arange(4096) / 4095
    table = np.clip(np.round(255 * srgb_encode(s * s)), 0, 255).astype(np.uint8)  # over sqrt(linear): fine in shadows
    # In strips of rows: a 48 MP photo held ~45 bytes a pixel of float copies at once (2.4 GB)
    h, w = rgb.shape[:2]
    rows = max(1, min(h, STRIP_PIXELS // max(w, 1)))
    out = np.empty(rgb.shape, np.uint8)
    lin = np.empty((rows, w, 3), np.float32)
    mixed = np.empty((rows, w, 3), np.float32)
    index = np.empty((rows, w, 3), np.uint16)
    for y in range(0, h, rows):
        part = rgb[y:y + rows]
        n = part.shape[0]
        a, b, k = lin[:n], mixed[:n], index[:n]
        for ch in range(3):
            np.take(to_linear[ch], part[..., ch], out=a[..., ch])
        cv2.transform(a, to_srgb_linear, dst=b)
        np.clip(b, 0, 1, out=b)
        np.sqrt(b, out=b)
        b *= 4095
        b += 0.5
        np.copyto(k, b, casting="unsafe")
        np.take(table, k, out=out[y:y + n])
    return out


STRIP_PIXELS = 1 << 18  # pixels converted at once (to_srgb): 256 K, a few MB of float rows
