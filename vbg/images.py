"""Reading and writing still images with one channel order (RGB) and no surprises.

In: a path (``read_rgb``), or a path and a grey, RGB or RGBA uint8 array
(``write_image``). Out: a new H x W x 3 RGB uint8 array, or the file written
whole; every problem with a file is an :class:`InputError` or
``OutputError`` naming it. Pure functions: any thread.

Greyscale, RGBA, 16-bit and palette PNGs are all turned into 8-bit RGB; a
file that is missing, empty, truncated, not an image or too large raises
:class:`InputError`. The size is read from the header (PNG, JPEG, GIF, BMP,
WebP, TIFF, PNM) before anything is decoded, so a 20000x20000 image costs
nothing; other formats are refused rather than decoded blind.
The EXIF orientation of a JPEG, PNG or WebP (a phone photo's "turn me") is
applied, as every viewer does: ``IMREAD_UNCHANGED`` (the flag that keeps
16 bits and alpha) ignores it, so vbg reads the tag itself (TIFF's own
Orientation tag is applied by OpenCV's TIFF decoder already).
Writes go to a temporary name in the target folder and are renamed into
place, so an interrupted run never leaves a half-written file. A photo's
colour profile (ICC: a phone's Display P3) can be read (``icc_profile``) and
written into a PNG (``write_image(icc=)``), so a cut-out keeps the colours
the photo had: OpenCV neither reads nor writes profiles. ``read_srgb`` / ``decode_srgb``
convert a Display P3 or Adobe RGB photo to sRGB (``vbg.icc``) for what vbg shows.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from . import MAX_IMAGE_PIXELS
from .errors import InputError, OutputError
from .fsutil import NewFile, write_error_hint
from .icc import to_srgb
from .liblogs import c_stderr_quiet
from .media.open import special_file

log = logging.getLogger("vbg.images")

MAX_PIXELS = MAX_IMAGE_PIXELS  # refuse decompression bombs before decoding (OpenCV refuses them too)
MAX_FILE_BYTES = 1 << 30  # no still image worth reading is larger
ACCEPTED = "pass a PNG, JPEG, WebP, HEIC, AVIF, BMP or TIFF image"


def read_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as H x W x 3 RGB uint8; :class:`InputError` when it
    is missing, empty, truncated, not an image or larger than ``MAX_PIXELS``
    (found from the file's header, before anything is decoded)."""
    path = Path(path)
    return decode_rgb(file_bytes(path), path)


def file_bytes(path: Path) -> np.ndarray:
    """The bytes of the image file at ``path`` (``read_rgb``'s checks of the path and size)."""
    try:
        if not path.is_file():  # raises for a name too long or a folder we may not enter
            kind = special_file(path)
            what = f"is {kind}, not a file" if kind else "does not exist"
            raise InputError(f"image {path} {what}: check the path")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"image {path} is {size / 2**30:.1f} GB: too large for an image; {ACCEPTED}")
        data = np.fromfile(str(path), dtype=np.uint8)
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"image {path} cannot be read ({e.strerror or e}): check the path and its "
                         "permissions") from e
    return data


def read_srgb(path: str | Path) -> np.ndarray:
    """``read_rgb``, in sRGB: a photo with a Display P3 or Adobe RGB profile (a phone's, a
    camera's) converted as a viewer shows it (``vbg.icc``), for pictures vbg puts on screen."""
    path = Path(path)
    return decode_srgb(file_bytes(path), path)


def decode_srgb(data: np.ndarray, name) -> np.ndarray:
    """``decode_rgb``, in sRGB (``read_srgb``)."""
    return to_srgb(decode_rgb(data, name), embedded_icc(data, str(name)))


def decode_rgb(data: np.ndarray, path) -> np.ndarray:
    """The image file held in ``data`` (a uint8 array of its bytes; ``path``: its name in
    messages) as H x W x 3 RGB uint8, with :func:`read_rgb`'s checks and errors."""
    if data.size == 0:
        raise InputError(f"image {path} is empty: {ACCEPTED}")
    if data.size > MAX_FILE_BYTES:
        raise InputError(f"image {path} is {data.size / 2**30:.1f} GB: too large for an image; {ACCEPTED}")
    header = probe_image(memoryview(data), str(path))
    if header is None:  # only formats whose size is known before decoding: no decompression bombs
        if heif_kind(data) is not None:
            return _decode_heif(data, path)
        raise InputError(f"{path} is not an image vbg can read: {ACCEPTED}")
    check_pixels(path, header[1], header[2])
    try:
        with c_stderr_quiet():  # libpng's warnings ("iCCP: ...", "CRC error") print from C: only with -v
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    except MemoryError:
        raise InputError(f"image {path} does not fit in memory: scale it down") from None
    if img is None and header[0] == "GIF":  # OpenCV before 4.11 reads no GIF: FFmpeg's decoder does
        img = _first_gif_frame(data)
    if img is None or img.size == 0:
        if animation_in(data[:ANIMATION_HEAD_BYTES].tobytes()) == "animated WebP":  # OpenCV before 4.11
            raise InputError(f"{path} is an animated WebP, which OpenCV {cv2.__version__} cannot read: save it as a "
                             "GIF, an animated PNG or a video (or update opencv-python to 4.12 or later, which "
                             "plays it)")
        raise InputError(f"{path} is a damaged {header[0]} (it cannot be decoded): {ACCEPTED}")
    check_pixels(path, img.shape[1], img.shape[0])
    return to_rgb8(apply_orientation(img, exif_orientation(memoryview(data), header[0])))


def _first_gif_frame(data: np.ndarray) -> np.ndarray | None:
    """The first frame of the GIF in ``data`` (its size already checked from its header) as BGR,
    decoded by FFmpeg through PyAV, as vbg plays a GIF background; None when FFmpeg cannot
    decode it either."""
    try:
        import av
    except ImportError:  # PyAV is one of vbg's own dependencies: a broken install says so elsewhere
        return None
    try:
        with av.open(io.BytesIO(data.tobytes()), mode="r", format="gif") as container:
            frame = next(container.decode(video=0), None)
            return None if frame is None else frame.to_ndarray(format="bgr24")
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None


HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})  # HEVC still images in HEIF (ISO/IEC 23008-12)
AVIF_BRANDS = frozenset({b"avif"})  # (image sequences, hevc/avis, are video: left to the video readers)


def heif_kind(data) -> str | None:
    """"a HEIC photo" (an iPhone's, and many Android phones', default) or "an AVIF image" when
    ``data`` starts with a HEIF file's ``ftyp`` box naming such a brand, else None."""
    buf = bytes(memoryview(data).cast("B")[:64])
    if len(buf) < 16 or buf[4:8] != b"ftyp":
        return None
    size = min(struct.unpack(">I", buf[:4])[0], len(buf))
    brands = {buf[8:12], *(buf[i:i + 4] for i in range(16, size - 3, 4))}  # major, then compatible ones
    if brands & HEIC_BRANDS:
        return "a HEIC photo"
    if brands & AVIF_BRANDS:
        return "an AVIF image"
    return None


def _decode_heif(data, path) -> np.ndarray:
    """A HEIC or AVIF photo (``vbg.heif``), with ``decode_rgb``'s checks: its size from its header first."""
    from .heif import heif_size, read_heif

    size = heif_size(data)
    if size is None:
        raise InputError(f"{path} is a truncated or damaged HEIF image (its header cannot be read): copy or "
                         "export it again")
    check_pixels(path, *size)
    try:
        img = read_heif(data, path)
    except MemoryError:
        raise InputError(f"image {path} does not fit in memory: scale it down") from None
    check_pixels(path, img.shape[1], img.shape[0])
    return img


def check_pixels(path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InputError(f"image {path} is {width}x{height}: too large; scale it below "
                         f"{MAX_PIXELS // 1_000_000} megapixels")


# --------------------------------------------------------------------------- headers

def probe_image(data, name: str = "image") -> tuple[str, int, int] | None:
    """``(format, width, height)`` from the header of a PNG, JPEG, GIF, BMP, WebP,
    TIFF or PNM in ``data`` (bytes-like), without decoding; None for other data.

    A file that starts like one of these but whose structure is cut short or
    broken (a truncated download, a damaged header) raises :class:`InputError`,
    so the decoder never sees it (and libpng prints nothing)."""
    buf = memoryview(data).cast("B")
    kind = image_kind(bytes(buf[:32]))
    if kind is None:
        return None
    sizes = {"PNG": _png_size, "JPEG": _jpeg_size, "GIF": _gif_size, "BMP": lambda b, n: _bmp_size(b),
             "WebP": _webp_size, "TIFF": _tiff_size, "PNM": _pnm_size}
    try:
        return (kind, *sizes[kind](buf, name))
    except struct.error:
        raise InputError(f"{name} is truncated (its header is cut short): {ACCEPTED}") from None


def image_kind(head: bytes) -> str | None:
    """The image format a file whose first bytes (32 are enough) are ``head`` starts like: "PNG",
    "JPEG", "GIF", "BMP", "WebP", "TIFF" or "PNM"; None for anything else (a video)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PNM"
    return None


def _need(buf, end: int, name: str, fmt: str) -> None:
    if len(buf) < end:
        raise InputError(f"{name} is a truncated {fmt} (the file ends early): copy or download it again")


def _png_size(buf, name: str) -> tuple[int, int]:
    """IHDR's size, after walking the chunks to IEND: a PNG cut short has no IEND,
    and one with a second IHDR is refused."""
    _need(buf, 33, name, "PNG")
    length, ctype = struct.unpack_from(">I4s", buf, 8)
    ihdr = bytes(buf[12:29])
    if ctype != b"IHDR" or length != 13 or struct.unpack_from(">I", buf, 29)[0] != zlib.crc32(ihdr):
        raise InputError(f"{name} is a damaged PNG (bad IHDR header): {ACCEPTED}")
    width, height = struct.unpack_from(">II", buf, 16)
    if width == 0 or height == 0:
        raise InputError(f"{name} is a damaged PNG (size {width}x{height}): {ACCEPTED}")
    pos = 33
    while True:
        _need(buf, pos + 8, name, "PNG")
        length, ctype = struct.unpack_from(">I4s", buf, pos)
        if ctype == b"IHDR":  # a second size: which one a decoder takes is anyone's guess
            raise InputError(f"{name} is a damaged PNG (two IHDR headers): {ACCEPTED}")
        pos += 12 + length
        _need(buf, pos, name, "PNG")
        if ctype == b"IEND":
            return width, height


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(buf, name: str) -> tuple[int, int]:
    """The SOF segment's size; the segments are walked to the first scan (a second
    SOF is refused), and a file with no end-of-image marker after it is truncated."""
    pos, size = 2, None
    while True:
        _need(buf, pos + 4, name, "JPEG")
        if buf[pos] != 0xFF:
            raise InputError(f"{name} is a damaged JPEG (bad marker at byte {pos}): {ACCEPTED}")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = struct.unpack_from(">H", buf, pos + 2)[0]
        if marker in _SOF:
            if size is not None:  # libjpeg refuses it; another decoder might take either size
                raise InputError(f"{name} is a damaged JPEG (two frame headers): {ACCEPTED}")
            _need(buf, pos + 9, name, "JPEG")
            height, width = struct.unpack_from(">HH", buf, pos + 5)
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        if marker == 0xD9 or length < 2:
            raise InputError(f"{name} is a damaged JPEG (no image data): {ACCEPTED}")
        pos += 2 + length
    if size is None or size[0] == 0 or size[1] == 0:
        raise InputError(f"{name} is a damaged JPEG (no frame header): {ACCEPTED}")
    # In scan data 0xFF is always followed by 0x00 or a restart marker: FF D9 is the end.
    if bytes(buf[-64:]).find(b"\xff\xd9") < 0 and bytes(buf[pos:]).find(b"\xff\xd9") < 0:
        raise InputError(f"{name} is a truncated JPEG (the file ends early): copy or download it again")
    return size


def _bmp_size(buf) -> tuple[int, int]:
    if struct.unpack_from("<I", buf, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack_from("<HH", buf, 18)
    width, height = struct.unpack_from("<ii", buf, 18)
    return abs(width), abs(height)


def _vp8_size(buf, data: int, chunk: bytes) -> tuple[int, int]:
    """Size in a "VP8 " or "VP8L" bitstream that starts at ``data``."""
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", buf, data + 6)
        return width & 0x3FFF, height & 0x3FFF
    bits = struct.unpack_from("<I", buf, data + 1)
    return (bits[0] & 0x3FFF) + 1, ((bits[0] >> 14) & 0x3FFF) + 1


def _webp_size(buf, name: str) -> tuple[int, int]:
    """The simple formats' bitstream size; for VP8X the canvas, refused when the
    image or an animation frame in it does not agree with it."""
    _need(buf, 30, name, "WebP")
    chunk = bytes(buf[12:16])
    if chunk in (b"VP8 ", b"VP8L"):
        return _vp8_size(buf, 20, chunk)
    if chunk != b"VP8X":
        raise InputError(f"{name} is a damaged WebP (unknown chunk {chunk!r}): {ACCEPTED}")
    b = bytes(buf[24:30])
    canvas = int.from_bytes(b[0:3], "little") + 1, int.from_bytes(b[3:6], "little") + 1
    pos = 30
    while pos + 8 <= len(buf):
        ctype, length = bytes(buf[pos:pos + 4]), struct.unpack_from("<I", buf, pos + 4)[0]
        if ctype in (b"VP8 ", b"VP8L") and (size := _vp8_size(buf, pos + 8, ctype)) != canvas:
            raise InputError(f"{name} is a damaged WebP (its image is {size[0]}x{size[1]} on a "
                             f"{canvas[0]}x{canvas[1]} canvas): {ACCEPTED}")
        if ctype == b"ANMF":  # x/2, y/2, width-1, height-1: 24 bits each
            f = bytes(buf[pos + 8:pos + 20])
            x, y, w, h = (int.from_bytes(f[i:i + 3], "little") for i in (0, 3, 6, 9))
            if 2 * x + w + 1 > canvas[0] or 2 * y + h + 1 > canvas[1]:
                raise InputError(f"{name} is a damaged WebP (a frame reaches past its canvas): {ACCEPTED}")
        pos += 8 + length + (length & 1)
    return canvas


def _gif_size(buf, name: str) -> tuple[int, int]:
    """The logical screen grown to hold every frame (a frame may lie outside it),
    walking the blocks to the trailer: a GIF cut short has none."""
    _need(buf, 13, name, "GIF")
    width, height, flags = struct.unpack_from("<HHB", buf, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)

    def sub_blocks(pos: int) -> int:
        while True:
            _need(buf, pos + 1, name, "GIF")
            if buf[pos] == 0:
                return pos + 1
            pos += 1 + buf[pos]

    while True:
        _need(buf, pos + 1, name, "GIF")
        block = buf[pos]
        if block == 0x3B:  # trailer
            return width, height
        if block == 0x21:  # extension: label, then data sub-blocks
            pos = sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            _need(buf, pos + 10, name, "GIF")
            left, top, w, h, flags = struct.unpack_from("<HHHHB", buf, pos + 1)
            width, height = max(width, left + w), max(height, top + h)
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = sub_blocks(pos + 1)  # LZW code size, then the data
        else:
            raise InputError(f"{name} is a damaged GIF (unknown block {block:#x} at byte {pos}): {ACCEPTED}")


def _pnm_size(buf, name: str) -> tuple[int, int]:
    """PBM/PGM/PPM: 'P6 <width> <height> ...' as text, '#' comments allowed."""
    text = re.sub(rb"#[^\n]*", b" ", bytes(buf[2:1024])).split()
    if len(text) < 2 or not (text[0].isdigit() and text[1].isdigit()) or len(text[0]) > 9 or len(text[1]) > 9:
        raise InputError(f"{name} is a damaged PNM image (no size in its header): {ACCEPTED}")
    return int(text[0]), int(text[1])


def _tiff_size(buf, name: str) -> tuple[int, int]:
    """The largest page: every IFD in the chain is read (a reader may decode any
    page), and a size tag given twice in one IFD is refused."""
    e = "<" if bytes(buf[:2]) == b"II" else ">"
    ifd = struct.unpack_from(e + "I", buf, 4)[0]
    best: tuple[int, int] | None = None
    seen: set[int] = set()
    while ifd and ifd not in seen and len(seen) < 1024:
        seen.add(ifd)
        count = struct.unpack_from(e + "H", buf, ifd)[0]
        found: dict[int, int] = {}
        for i in range(count):
            tag, typ = struct.unpack_from(e + "HH", buf, ifd + 2 + 12 * i)
            if tag in (256, 257):
                if tag in found:
                    raise InputError(f"{name} is a damaged TIFF (its image size is given twice): {ACCEPTED}")
                fmt = e + ("H" if typ == 3 else "I")
                found[tag] = struct.unpack_from(fmt, buf, ifd + 2 + 12 * i + 8)[0]
        if 256 in found and 257 in found:
            size = (found[256], found[257])
            if best is None or size[0] * size[1] > best[0] * best[1]:
                best = size
        elif best is None:
            raise InputError(f"{name} is a damaged TIFF (no image size): {ACCEPTED}")
        ifd = struct.unpack_from(e + "I", buf, ifd + 2 + 12 * count)[0]
    if best is None:  # the first IFD's offset is 0: no page at all
        raise InputError(f"{name} is a damaged TIFF (no image size): {ACCEPTED}")
    return best


# ------------------------------------------------------------------------ orientation

def exif_orientation(data, fmt: str) -> int:
    """The EXIF Orientation (1..8) of a JPEG (APP1), PNG (eXIf) or WebP (EXIF
    chunk) in ``data``; 1 (as stored) when there is none or it cannot be read."""
    buf = memoryview(data).cast("B")
    try:
        tiff = {"JPEG": _jpeg_exif, "PNG": _png_exif, "WebP": _webp_exif}.get(fmt, lambda b: None)(buf)
        return _tiff_orientation(tiff) if tiff is not None else 1
    except (struct.error, IndexError, ValueError):
        return 1


def _jpeg_segments(buf):
    """(marker, payload) of each JPEG segment before the scan (EXIF, ICC and the like live there)."""
    pos = 2
    while pos + 4 <= len(buf) and buf[pos] == 0xFF:
        marker = buf[pos + 1]
        if marker in (0xFF, 0x01, *range(0xD0, 0xD8)):
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in (0xDA, 0xD9):  # the scan: no more metadata segments
            return
        length = struct.unpack_from(">H", buf, pos + 2)[0]
        yield marker, buf[pos + 4: pos + 2 + length]
        pos += 2 + length


def _png_chunks(buf):
    """(type, data) of each PNG chunk before the image data (eXIf and iCCP must come before it)."""
    pos = 8
    while pos + 8 <= len(buf):
        length, ctype = struct.unpack_from(">I4s", buf, pos)
        if ctype in (b"IDAT", b"IEND"):
            return
        yield ctype, buf[pos + 8: pos + 8 + length]
        pos += 12 + length


def _webp_chunks(buf):
    """(FourCC, data) of each chunk of a WebP (RIFF) file."""
    pos = 12
    while pos + 8 <= len(buf):
        ctype, length = bytes(buf[pos: pos + 4]), struct.unpack_from("<I", buf, pos + 4)[0]
        yield ctype, buf[pos + 8: pos + 8 + length]
        pos += 8 + length + (length & 1)


def webp_frame_count(data) -> int:
    """The frames of the animated WebP held in ``data`` (its ``ANMF`` chunks; 0 for a still one; a
    cut file counts those whole before the cut, and its decoder says the rest)."""
    return sum(ctype == b"ANMF" for ctype, _ in _webp_chunks(memoryview(data).cast("B")))


def _jpeg_exif(buf) -> memoryview | None:
    for marker, seg in _jpeg_segments(buf):
        if marker == 0xE1 and bytes(seg[:6]) == b"Exif\0\0":
            return seg[6:]
    return None


ANIMATION_HEAD_BYTES = 1 << 20  # a PNG's acTL comes before its image data, after at most a profile and EXIF


def animation(path: str | Path) -> str | None:
    """"APNG" or "animated WebP" when the image file at ``path`` holds more than one frame (its
    header says so: PNG's ``acTL`` chunk, WebP's ``VP8X`` animation flag), else None (a still
    image, or a file that cannot be read: its reader says why)."""
    if special_file(path) is not None:  # a FIFO would block the open: its reader refuses it
        return None
    try:
        with open(path, "rb") as f:
            return animation_in(f.read(ANIMATION_HEAD_BYTES))
    except (OSError, ValueError):
        return None


def opencv_reads_animations() -> bool:
    """Whether this OpenCV decodes an animated WebP's frames from its bytes (4.12 and later:
    ``cv2.imdecodeanimation``; 4.11 reads only the first frame, or all of them from a path):
    vbg then plays one as a moving background."""
    return hasattr(cv2, "imdecodeanimation")


def moving_picture(data) -> str | None:
    """The kind of moving picture in ``data`` (a whole file, bytes-like) that vbg plays as a moving
    background: "GIF" (one of more than one image), "APNG" (an animated PNG), both as FFmpeg
    plays a video, "animated WebP" where OpenCV reads one (``opencv_reads_animations``); else
    None (a still picture, a GIF of one image included, or not a picture at all)."""
    buf = memoryview(data).cast("B")
    if image_kind(bytes(buf[:32])) == "GIF":
        return "GIF" if gif_animated(io.BytesIO(buf)) else None
    kind = animation_in(bytes(buf[:ANIMATION_HEAD_BYTES]))
    return kind if kind == "APNG" or kind is not None and opencv_reads_animations() else None


def file_moves(f) -> bool:
    """Whether the picture file open as ``f`` (at its start) is a moving one vbg plays: an animated
    PNG (``png_animated``), a GIF of more than one image (``gif_animated``), or an animated WebP
    where OpenCV reads one (its header's flag)."""
    head = f.read(32)  # a WebP's VP8X chunk, with its animation flag, ends at byte 30
    f.seek(0)
    kind = image_kind(head)
    if kind == "WebP":
        return opencv_reads_animations() and animation_in(head) == "animated WebP"
    return gif_animated(f) if kind == "GIF" else png_animated(f)


def animation_in(head) -> str | None:
    """``animation`` of an image file whose first bytes are ``head``."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            actl = next((data for ctype, data in _png_chunks(head) if ctype == b"acTL"), None)
            return "APNG" if actl is not None and len(actl) >= 4 and struct.unpack(">I", actl[:4])[0] > 1 else None
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            vp8x = next((data for ctype, data in _webp_chunks(head) if ctype == b"VP8X"), None)
            return "animated WebP" if vp8x is not None and len(vp8x) and vp8x[0] & 0x02 else None
    except struct.error:  # cut short: the reader says so
        return None
    return None


def png_animated(f) -> bool:
    """Whether the PNG file open as ``f`` (at its start) is an animated one, its ``acTL`` chunk
    saying more than one frame; reads only the chunk headers before the image data, where the
    ``acTL`` must be (a folder's listing asks this of every PNG in it)."""
    if f.read(8) != b"\x89PNG\r\n\x1a\n":
        return False
    for _ in range(256):  # a PNG has a few chunks before its image data; a damaged one may loop
        head = f.read(8)
        if len(head) < 8:
            return False
        length, ctype = struct.unpack(">I4s", head)
        if ctype in (b"IDAT", b"IEND"):
            return False
        if ctype == b"acTL":
            frames = f.read(4)
            return len(frames) == 4 and struct.unpack(">I", frames)[0] > 1
        f.seek(length + 4, os.SEEK_CUR)  # the chunk's data and CRC
    return False


def gif_animated(f) -> bool:
    """Whether the GIF file open as ``f`` (at its start) holds more than one image: its blocks
    walked (sizes read, data skipped) up to a second image descriptor, so only the first frame's
    data is passed over. A still GIF, a damaged or cut one: False."""
    head = f.read(13)
    if len(head) < 13 or image_kind(head) != "GIF":
        return False
    if head[10] & 0x80:  # a global colour table
        f.seek(3 << ((head[10] & 7) + 1), os.SEEK_CUR)
    images = 0
    while True:
        kind = f.read(1)
        if kind == b"\x2c":  # an image descriptor
            images += 1
            if images > 1:
                return True
            desc = f.read(9)
            if len(desc) < 9:
                return False
            if desc[8] & 0x80:  # a local colour table
                f.seek(3 << ((desc[8] & 7) + 1), os.SEEK_CUR)
            f.seek(1, os.SEEK_CUR)  # the LZW code size
        elif kind == b"\x21":  # an extension: its label, then data blocks
            f.seek(1, os.SEEK_CUR)
        else:  # the trailer, the end of the file, or bytes that are no block
            return False
        while (size := f.read(1)) not in (b"", b"\0"):  # the data blocks, up to the empty one
            f.seek(size[0], os.SEEK_CUR)
        if not size:
            return False


def _png_exif(buf) -> memoryview | None:
    return next((data for ctype, data in _png_chunks(buf) if ctype == b"eXIf"), None)


def _webp_exif(buf) -> memoryview | None:
    for ctype, block in _webp_chunks(buf):
        if ctype == b"EXIF":
            return block[6:] if bytes(block[:6]) == b"Exif\0\0" else block
    return None


def _tiff_orientation(tiff) -> int:
    """Tag 0x0112 of IFD0 in an EXIF TIFF structure."""
    e = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if e is None:
        return 1
    ifd = struct.unpack_from(e + "I", tiff, 4)[0]
    for i in range(min(struct.unpack_from(e + "H", tiff, ifd)[0], 512)):
        tag, typ = struct.unpack_from(e + "HH", tiff, ifd + 2 + 12 * i)
        if tag == 0x0112 and typ == 3:  # SHORT
            value = struct.unpack_from(e + "H", tiff, ifd + 2 + 12 * i + 8)[0]
            return value if 1 <= value <= 8 else 1
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels as EXIF ``orientation`` (1..8) says to show them."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation == 5:
        return cv2.transpose(img)
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(img), -1)
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def over_black(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 (straight alpha) laid over black, as RGB: where a picture is transparent nothing
    of the colours stored under it shows (an editor keeps what was erased there; formats differ:
    a PNG kept its stored colour, a lossless WebP black, a GIF its transparent entry's colour)."""
    rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    alpha = rgba[:, :, 3]
    if int(alpha.min()) < 255:
        rgb = cv2.multiply(rgb, cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB), scale=1 / 255)
    return rgb


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
        return over_black(cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA))
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, img: np.ndarray, icc: bytes | None = None) -> Path:
    """Write ``img`` (grey, RGB or RGBA, uint8) atomically; format from the suffix. ``icc``: the
    colour profile the pixels are in, embedded in a PNG (an iCCP chunk; other formats: not kept)."""
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
    if icc and icc[16:20] != b"RGB ":  # a CMYK or grey photo's profile does not describe RGB pixels
        icc = None
    if icc and ext == ".png":
        buf = _with_iccp(memoryview(buf).cast("B"), icc)
    elif icc and img.ndim == 3:
        log.warning("%s: the photo's colour profile is kept in a .png only: its colours may look dull in a "
                    "colour-managed viewer; write a .png to keep it", path.name)
    if ext in (".tif", ".tiff") and img.ndim == 3 and img.shape[2] == 4:
        buf = np.frombuffer(tiff_alpha_marked(buf.tobytes()), np.uint8)
    try:
        with NewFile(path, check_busy=False) as new:
            new.write(buf)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e}): {write_error_hint(e)}") from e
    return path


def tiff_alpha_marked(data: bytes) -> bytes:
    """A 4-channel TIFF from OpenCV with its fourth channel marked as (straight) alpha: OpenCV
    writes no ExtraSamples tag, so libtiff-based readers warn and take the channel for an
    unspecified one (GIMP asks what it is). The first directory is written again, with the tag in
    its place among the others, after the image data, and the header points to it; nothing else
    moves. A file that already has the tag, or that is not a classic TIFF, is returned as it is."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        return data
    at = struct.unpack(order + "I", data[4:8])[0]
    if at + 2 > len(data):
        return data
    count = struct.unpack(order + "H", data[at:at + 2])[0]
    end = at + 2 + 12 * count
    if end + 4 > len(data):
        return data
    entries = [data[at + 2 + 12 * i:at + 14 + 12 * i] for i in range(count)]
    tags = [struct.unpack(order + "H", e[:2])[0] for e in entries]
    if 338 in tags:
        return data
    extra = struct.pack(order + "HHI", 338, 3, 1) + struct.pack(order + "H", 2) + b"\0\0"  # 2: unassociated alpha
    entries.insert(sum(t < 338 for t in tags), extra)
    pad = b"\0" * (len(data) % 2)  # a directory starts on a word boundary
    ifd = struct.pack(order + "H", count + 1) + b"".join(entries) + data[end:end + 4]
    return data[:4] + struct.pack(order + "I", len(data) + len(pad)) + data[8:] + pad + ifd


# ------------------------------------------------------------------------ colour profiles

MAX_ICC_BYTES = 4 << 20  # a colour profile is a few kB; a larger one is not one we keep


def icc_profile(path: str | Path) -> bytes | None:
    """The ICC colour profile embedded in the JPEG (APP2 segments), PNG (iCCP) or WebP (ICCP)
    at ``path``; None when there is none, or it cannot be read (the pixels then go out untagged,
    as before)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    return embedded_icc(data, str(path))


def embedded_icc(data: np.ndarray, name: str = "image") -> bytes | None:
    """``icc_profile`` of an image file held in ``data`` (a uint8 array of its bytes)."""
    try:
        found = probe_image(data, name)
    except (InputError, ValueError):
        return None
    if found is None:
        if heif_kind(data) is None:
            return None
        from .heif import icc_of_heif

        icc = icc_of_heif(data)
        return icc if icc and 128 <= len(icc) <= MAX_ICC_BYTES else None
    buf = memoryview(data).cast("B")
    try:
        icc = {"JPEG": _jpeg_icc, "PNG": _png_icc, "WebP": _webp_icc}.get(found[0], lambda b: None)(buf)
    except (struct.error, IndexError, ValueError, zlib.error):
        return None
    return icc if icc and 128 <= len(icc) <= MAX_ICC_BYTES else None


def _jpeg_icc(buf) -> bytes | None:
    """APP2 ``ICC_PROFILE`` segments, joined in their sequence order (a profile over 64 kB spans several)."""
    parts = {seg[12]: bytes(seg[14:]) for marker, seg in _jpeg_segments(buf)
             if marker == 0xE2 and bytes(seg[:12]) == b"ICC_PROFILE\0"}
    return b"".join(parts[k] for k in sorted(parts)) if parts else None


def _png_icc(buf) -> bytes | None:
    for ctype, data in _png_chunks(buf):
        if ctype == b"iCCP":
            chunk = bytes(data)
            name_end = chunk.index(b"\0")
            return zlib.decompressobj().decompress(chunk[name_end + 2:], MAX_ICC_BYTES + 1)
    return None


def _webp_icc(buf) -> bytes | None:
    return next((bytes(data) for ctype, data in _webp_chunks(buf) if ctype == b"ICCP"), None)


def _with_iccp(png, icc: bytes) -> bytes:
    """``png`` (an encoded PNG) with an iCCP chunk holding ``icc`` right after its IHDR."""
    body = b"icc\0\0" + zlib.compress(icc, 9)  # profile name, compression method 0 (zlib)
    if len(body) < 92:  # libpng drops an iCCP chunk under 92 bytes ("too short"): store it uncompressed
        body = b"icc\0\0" + zlib.compress(icc, 0)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    ihdr_end = 8 + 12 + struct.unpack_from(">I", png, 8)[0]
    return bytes(png[:ihdr_end]) + chunk + bytes(png[ihdr_end:])
