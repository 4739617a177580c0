"""An ONNX file's protobuf, read without the ``onnx`` package (not among vbg's requirements).

In: the serialised bytes (``bytes``, ``memoryview`` or an ``mmap``). Out: fields as
``(number, wire type, value)``, where a length-delimited value is its ``(start, end)`` span in
the buffer, so a caller slices only what it reads and the weights are never copied. Pure
functions; a malformed buffer raises ``ValueError`` or ``IndexError``. Used by the TensorRT
cache (the model's inputs) and the shared CPU weights (the external initializers).
"""

from __future__ import annotations


def varint(buf, i: int) -> tuple[int, int]:
    """The base-128 varint at ``buf[i]`` and the index after it."""
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf, start: int = 0, end: int | None = None):
    """``(field number, wire type, value)`` of each field of the message in ``buf[start:end]``:
    an int for a varint, the ``(start, end)`` span of a length-delimited field, the
    little-endian int of a fixed 64/32-bit one."""
    i, end = start, len(buf) if end is None else end
    while i < end:
        tag, i = varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = (i, i + n), i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = int.from_bytes(buf[i:i + n], "little"), i + n
        else:
            raise ValueError(f"protobuf wire type {wire} is not one an ONNX model uses")
        yield number, wire, value


def sub(buf, span: tuple[int, int], number: int) -> list[tuple[int, int]]:
    """The spans of the length-delimited fields ``number`` of the message at ``span``."""
    return [v for n, w, v in fields(buf, *span) if n == number and w == 2]


def packed(buf, span: tuple[int, int]) -> list[int]:
    """The varints packed into the field at ``span`` (a repeated int64 such as dims)."""
    out, i = [], span[0]
    while i < span[1]:
        v, i = varint(buf, i)
        out.append(v)
    return out


def text(buf, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode(errors="replace")
