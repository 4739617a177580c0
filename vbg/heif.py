"""HEIF still images: a phone's HEIC photo (an iPhone's default), AVIF.

In: the bytes of a HEIF file. Out: ``read_heif``: its primary image as a new H x W x 3 RGB uint8
array, upright as a viewer shows it, and its ICC colour profile (or None); ``InputError`` naming
the file for one that cannot be read. Pure functions: any thread.

FFmpeg (PyAV) decodes the coded images: its mov demuxer gives each image item of the file as a
stream of one frame, its ``id`` the item's number. What makes a photo of them is read here, from
the file's ``meta`` box (ISO/IEC 23008-12): which item is the primary one (``pitm``); a *grid*
(an iPhone stores a 4032x3024 photo as 8x6 tiles of 512x512, each coded apart), its rows,
columns and size (the grid item's data, ``iloc``/``idat``) and its tiles in order (``iref``
``dimg``); and the item's properties (``iprp``): its size (``ispe``), a clean-aperture crop
(``clap``), rotation (``irot``) and mirroring (``imir``), applied in the order the file lists
them, and its colour profile (``colr``). A HEIF's EXIF orientation is not applied: ``irot`` and
``imir`` are the ones that count, and a phone writes both to say the same turn.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import InputError, one_line

MAX_BOXES = 100_000  # a file with more is damaged (a phone's photo has well under a hundred items)


@dataclass
class _Item:
    type: str = ""
    props: list[tuple[str, bytes]] = field(default_factory=list)  # (box type, payload), in ipma order
    extents: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) into the file or idat
    in_idat: bool = False
    tiles: list[int] = field(default_factory=list)  # a grid's dimg references, in order


def _boxes(buf: bytes, start: int, end: int):
    """(type, payload start, payload end) of each box in ``buf[start:end]``."""
    pos, n = start, 0
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        head = 8
        if size == 1:
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise ValueError(f"a {kind!r} box runs past its parent")
        yield kind.decode("latin-1"), pos + head, pos + size
        pos += size
        n += 1
        if n > MAX_BOXES:
            raise ValueError("too many boxes")


def _uint(buf: bytes, pos: int, size: int) -> tuple[int, int]:
    """An unsigned big-endian integer of ``size`` bytes (0, 1, 2, 4 or 8) at ``pos``, and the position after it."""
    if size == 0:
        return 0, pos
    if pos + size > len(buf):
        raise ValueError("a field runs past the file's end")
    return int.from_bytes(buf[pos:pos + size], "big"), pos + size


def _parse_meta(buf: bytes, start: int, end: int) -> tuple[int, dict[int, _Item], bytes]:
    """The primary item's number, every item, and the ``idat`` data of the ``meta`` box's payload."""
    items: dict[int, _Item] = {}
    primary = None
    idat = b""
    properties: list[tuple[str, bytes]] = []
    associations: list[tuple[int, list[int]]] = []
    for kind, a, b in _boxes(buf, start + 4, end):  # meta is a full box: version and flags first
        version = buf[a]
        if kind == "pitm":
            primary = _uint(buf, a + 4, 2 if version == 0 else 4)[0]
        elif kind == "iinf":
            count_size = 2 if version == 0 else 4
            for sub, c, d in _boxes(buf, a + 4 + count_size, b):
                if sub != "infe" or buf[c] < 2:  # versions 0 and 1 carry no item type
                    continue
                item_id, pos = _uint(buf, c + 4, 2 if buf[c] == 2 else 4)
                items.setdefault(item_id, _Item()).type = buf[pos + 2:pos + 6].decode("latin-1")
        elif kind == "iloc":
            offset_size, length_size = buf[a + 4] >> 4, buf[a + 4] & 15
            base_size, index_size = buf[a + 5] >> 4, (buf[a + 5] & 15) if version in (1, 2) else 0
            count, pos = _uint(buf, a + 6, 2 if version < 2 else 4)
            for _ in range(count):
                item_id, pos = _uint(buf, pos, 2 if version < 2 else 4)
                method = 0
                if version in (1, 2):
                    method, pos = _uint(buf, pos, 2)
                    method &= 15
                pos += 2  # data_reference_index: 0, this file
                base, pos = _uint(buf, pos, base_size)
                extents, pos = _uint(buf, pos, 2)
                item = items.setdefault(item_id, _Item())
                item.in_idat = method == 1
                for _ in range(extents):
                    pos = _uint(buf, pos, index_size)[1]
                    offset, pos = _uint(buf, pos, offset_size)
                    length, pos = _uint(buf, pos, length_size)
                    item.extents.append((base + offset, length))
        elif kind == "iref":
            id_size = 2 if version == 0 else 4
            for sub, c, d in _boxes(buf, a + 4, b):
                source, pos = _uint(buf, c, id_size)
                count, pos = _uint(buf, pos, 2)
                targets = [_uint(buf, pos + i * id_size, id_size)[0] for i in range(count)]
                if sub == "dimg":
                    items.setdefault(source, _Item()).tiles = targets
        elif kind == "iprp":
            for sub, c, d in _boxes(buf, a, b):
                if sub == "ipco":
                    properties = [(k, buf[e:f]) for k, e, f in _boxes(buf, c, d)]
                elif sub == "ipma":
                    wide_ids, wide_index = buf[c] >= 1, buf[c + 3] & 1
                    count, pos = _uint(buf, c + 4, 4)
                    for _ in range(count):
                        item_id, pos = _uint(buf, pos, 4 if wide_ids else 2)
                        n, pos = _uint(buf, pos, 1)
                        indices = []
                        for _ in range(n):
                            value, pos = _uint(buf, pos, 2 if wide_index else 1)
                            indices.append(value & (0x7FFF if wide_index else 0x7F))
                        associations.append((item_id, indices))
        elif kind == "idat":
            idat = buf[a:b]
    if primary is None:
        raise ValueError("it names no primary image")
    for item_id, indices in associations:
        item = items.setdefault(item_id, _Item())
        item.props += [properties[i - 1] for i in indices if 0 < i <= len(properties)]
    return primary, items, idat


def _prop(item: _Item, kind: str) -> bytes | None:
    return next((p for k, p in item.props if k == kind), None)


_BROKEN = (ValueError, struct.error, IndexError)  # what a damaged header raises in the readers here


def _meta(buf: bytes) -> tuple[int, dict[int, _Item], bytes]:
    """``_parse_meta`` of the file's ``meta`` box; ValueError where it has none."""
    meta = next(((a, b) for kind, a, b in _boxes(buf, 0, len(buf)) if kind == "meta"), None)
    if meta is None:
        raise ValueError("it has no meta box")
    return _parse_meta(buf, *meta)


def heif_size(data) -> tuple[int, int] | None:
    """(width, height) of a HEIF file's primary image as stored (its ``ispe``, or its grid's
    output size), read from the header without decoding; None where it says neither."""
    buf = bytes(data)
    try:
        primary, items, idat = _meta(buf)
        item = items.get(primary, _Item())
        if item.type == "grid":
            rows, cols, w, h = _grid(buf, item, idat)
            return w, h
        spatial = _prop(item, "ispe")
        return struct.unpack_from(">II", spatial, 4) if spatial and len(spatial) >= 12 else None
    except _BROKEN:
        return None


def _item_data(buf: bytes, item: _Item, idat: bytes) -> bytes:
    source = idat if item.in_idat else buf
    return b"".join(source[o:o + n] for o, n in item.extents)


def _grid(buf: bytes, item: _Item, idat: bytes) -> tuple[int, int, int, int]:
    """A grid item's (rows, columns, output width, output height)."""
    data = _item_data(buf, item, idat)
    wide = data[1] & 1
    rows, cols = data[2] + 1, data[3] + 1
    w, h = struct.unpack_from(">II" if wide else ">HH", data, 4)
    return rows, cols, w, h


def icc_of_heif(data) -> bytes | None:
    """The ICC colour profile of a HEIF file's primary image (its ``colr`` property of type
    ``prof`` or ``rICC``, or its grid's), or None."""
    try:
        primary, items, _ = _meta(bytes(data))
    except _BROKEN:
        return None
    item = items.get(primary, _Item())
    for candidate in (item, *(items.get(t, _Item()) for t in item.tiles[:1])):
        for kind, payload in candidate.props:
            if kind == "colr" and payload[:4] in (b"prof", b"rICC"):
                return payload[4:]
    return None


def read_heif(data, name) -> np.ndarray:
    """The primary image of the HEIF file held in ``data`` (bytes-like) as upright H x W x 3 RGB
    uint8 (module docstring); ``InputError`` naming ``name`` where it cannot be read."""
    import av

    from .media.open import open_read
    from .media.tonemap import SdrFrames

    buf = bytes(data)
    try:
        primary, items, idat = _meta(buf)
        item = items.get(primary)
        if item is None:
            raise ValueError("its primary image is not listed")
        grid = _grid(buf, item, idat) if item.type == "grid" else None
        wanted = item.tiles if grid else [primary]
        if grid and len(wanted) != grid[0] * grid[1]:
            raise ValueError(f"its grid of {grid[0]}x{grid[1]} names {len(wanted)} tiles")
    except _BROKEN as e:
        raise InputError(f"{name} is a damaged HEIF image ({e}): copy or export it again") from None
    to_rgb = SdrFrames(hd_guess=False)  # HEIF's default matrix is BT.601, whatever the size
    decoded: dict[int, np.ndarray] = {}
    try:
        with open_read(io.BytesIO(buf), format="mov") as container:
            streams = {s.id: s for s in container.streams.video}
            missing = [t for t in wanted if t not in streams]
            if missing:
                raise InputError(f"{name}: its image is coded in a way FFmpeg does not decode here "
                                 f"({items.get(missing[0], _Item()).type or 'unknown'}): convert it to JPEG")
            chosen = [streams[t] for t in wanted]
            for packet in container.demux(chosen):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        decoded.setdefault(packet.stream.id, to_rgb(frame))
    except (av.FFmpegError, UnicodeError, ValueError) as e:  # PyAV reads a damaged text field as UTF-8, and fails
        raise InputError(f"{name} is a damaged HEIF image ({one_line(e)}): copy or export it again") from None
    if len(decoded) != len(wanted):
        raise InputError(f"{name} is a damaged HEIF image ({len(wanted) - len(decoded)} of its "
                         f"{len(wanted)} coded images do not decode): copy or export it again")
    if grid is None:
        rgb = decoded[primary]
        spatial = _prop(item, "ispe")
        if spatial and len(spatial) >= 12:  # the coded picture may be padded to whole coding blocks
            w, h = struct.unpack_from(">II", spatial, 4)
            rgb = rgb[:h, :w]
    else:
        rows, cols, w, h = grid
        th, tw = decoded[wanted[0]].shape[:2]
        spatial = _prop(items.get(wanted[0], _Item()), "ispe")
        if spatial and len(spatial) >= 12:  # the coded tile may be padded; never more than was decoded
            sw, sh = struct.unpack_from(">II", spatial, 4)
            tw, th = min(tw, sw), min(th, sh)
        if cols * tw < w or rows * th < h:
            raise InputError(f"{name} is a damaged HEIF image (its {cols}x{rows} tiles of {tw}x{th} do not "
                             f"cover {w}x{h}): copy or export it again")
        rgb = np.zeros((rows * th, cols * tw, 3), np.uint8)
        for i, tile_id in enumerate(wanted):
            r, c = divmod(i, cols)
            tile = decoded[tile_id][:th, :tw]
            rgb[r * th:r * th + tile.shape[0], c * tw:c * tw + tile.shape[1]] = tile
        rgb = rgb[:h, :w]
    return np.ascontiguousarray(_transformed(rgb, item))


def _transformed(rgb: np.ndarray, item: _Item) -> np.ndarray:
    """``rgb`` after the item's crop, rotation and mirroring, in the order the file lists them."""
    for kind, payload in item.props:
        if kind == "irot" and payload:
            rgb = np.rot90(rgb, payload[0] & 3)  # anti-clockwise quarter turns, as np.rot90 turns
        elif kind == "imir" and payload:
            rgb = rgb[::-1] if payload[0] & 1 else rgb[:, ::-1]  # axis 1: horizontal (top-bottom); 0: vertical
        elif kind == "clap" and len(payload) >= 32:
            rgb = _clean_aperture(rgb, struct.unpack(">IIIIiIiI", payload[:32]))
    return rgb


def _clean_aperture(rgb: np.ndarray, clap: tuple) -> np.ndarray:
    """The centred crop a ``clap`` property states (width, height, horizontal and vertical offset
    of the centre, each a fraction)."""
    wn, wd, hn, hd, xn, xd, yn, yd = clap
    if not (wd and hd and xd and yd):
        return rgb
    h, w = rgb.shape[:2]
    cw, ch = Fraction(wn, wd), Fraction(hn, hd)
    cx, cy = Fraction(w - 1, 2) + Fraction(xn, xd), Fraction(h - 1, 2) + Fraction(yn, yd)
    left, top = int(cx - (cw - 1) / 2), int(cy - (ch - 1) / 2)
    if left < 0 or top < 0 or left + int(cw) > w or top + int(ch) > h or cw < 1 or ch < 1:
        return rgb
    return rgb[top:top + int(ch), left:left + int(cw)]
