"""What a /dev/video* node is, asked through V4L2 ioctls (Linux; no OpenCV, nothing opened
for capture): the driver, the card, whether it captures or takes video, and for a camera the
formats, sizes and frame rates it offers. ``vbg doctor`` lists the cameras with it.

The request numbers and struct layouts are linux/videodev2.h's (the tests check them against
the header's values on x86-64); ``query_device`` takes the ioctl function, so tests hand it a
fake driver.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


CAPABILITY = struct.Struct("16s32s32sIII12x")  # v4l2_capability, 104 bytes
FMTDESC = struct.Struct("III32sII12x")  # v4l2_fmtdesc, 64 bytes
FRMSIZE = struct.Struct("III6I8x")  # v4l2_frmsizeenum, 44 bytes
FRMIVAL = struct.Struct("IIIII6I8x")  # v4l2_frmivalenum, 52 bytes
VIDIOC_QUERYCAP = _ioc(_IOC_READ, 0, CAPABILITY.size)
VIDIOC_ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, 2, FMTDESC.size)
VIDIOC_ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, 74, FRMSIZE.size)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_IOC_READ | _IOC_WRITE, 75, FRMIVAL.size)
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_OUTPUT = 0x00000002
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_DISCRETE = 1


@dataclass(frozen=True, slots=True)
class V4l2Info:
    path: str
    driver: str
    card: str
    capture: bool  # a node that delivers video (a camera, not its metadata node)
    output: bool  # a node that takes video (v4l2loopback)
    modes: tuple[str, ...] = ()  # "MJPG 1280x720@30", ...


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def query_device(path: str, ioctl: Callable | None = None, max_modes: int = 8) -> V4l2Info | None:
    """What a /dev/video* node is (driver, card, capture/output) and, for a
    capture node, the formats, sizes and frame rates it offers; None when it
    cannot be opened or is not a V4L2 device. ``ioctl(fd, request, buf)``
    defaults to :func:`fcntl.ioctl` (tests pass a fake)."""
    if ioctl is None:
        import fcntl

        ioctl = fcntl.ioctl
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
    try:
        buf = bytearray(CAPABILITY.size)
        try:
            ioctl(fd, VIDIOC_QUERYCAP, buf)
        except OSError:
            return None
        driver, card, _bus, _version, caps, device_caps = CAPABILITY.unpack(bytes(buf))
        if caps & V4L2_CAP_DEVICE_CAPS:
            caps = device_caps
        capture, output = bool(caps & V4L2_CAP_VIDEO_CAPTURE), bool(caps & V4L2_CAP_VIDEO_OUTPUT)
        modes = tuple(_modes(fd, ioctl, max_modes)) if capture else ()
        return V4l2Info(path, _cstr(driver), _cstr(card), capture, output, modes)
    finally:
        os.close(fd)


def _enum(fd: int, ioctl, request: int, st: struct.Struct, make: Callable[[int], tuple]) -> Iterator[tuple]:
    """VIDIOC_ENUM_* with index 0, 1, ... until the driver says EINVAL."""
    for index in range(64):
        buf = bytearray(st.pack(*make(index)))
        try:
            ioctl(fd, request, buf)
        except OSError:
            return
        yield st.unpack(bytes(buf))


def _modes(fd: int, ioctl, limit: int) -> Iterator[str]:
    """"MJPG 1280x720@30"-style modes, largest size first per format."""
    n = 0
    for fmt in _enum(fd, ioctl, VIDIOC_ENUM_FMT, FMTDESC, lambda i: (i, V4L2_BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0)):
        pixfmt = fmt[4]
        fourcc = struct.pack("<I", pixfmt).decode("ascii", "replace").strip()
        sizes = []
        for size in _enum(fd, ioctl, VIDIOC_ENUM_FRAMESIZES, FRMSIZE,
                          lambda i, f=pixfmt: (i, f, 0, 0, 0, 0, 0, 0, 0)):
            if size[2] != V4L2_FRMSIZE_TYPE_DISCRETE:
                sizes.append((size[4], size[7]))  # stepwise/continuous: its largest size
                break
            sizes.append((size[3], size[4]))
        for w, h in sorted(sizes, key=lambda s: -s[0] * s[1]):
            fps = 0.0
            for ival in _enum(fd, ioctl, VIDIOC_ENUM_FRAMEINTERVALS, FRMIVAL,
                              lambda i, f=pixfmt, w=w, h=h: (i, f, w, h, 0, 0, 0, 0, 0, 0, 0)):
                num, den = ival[5], ival[6]  # an interval: num/den seconds
                if num:
                    fps = max(fps, den / num)
            yield f"{fourcc} {w}x{h}" + (f"@{fps:g}" if fps else "")
            n += 1
            if n >= limit:
                return
