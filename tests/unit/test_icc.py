"""Background photos with a colour profile (a phone's Display P3, a camera's Adobe RGB) show the
colours a photo viewer shows (vbg.icc), against the published linear conversion matrices; the
profiles are written here from ICC.1's layout, apart from vbg's reader."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from vbg.compositing import ImageBackground
from vbg.control.library import Library
from vbg.icc import to_srgb
from vbg.images import _with_iccp

# D50 colorants of Apple's Display P3 and of Adobe RGB (1998), as their profiles carry them.
P3 = [(0.515121, 0.241196, -0.001053), (0.291977, 0.692245, 0.041885), (0.157104, 0.066574, 0.784073)]
ADOBE = [(0.609741, 0.311111, 0.019470), (0.205276, 0.625671, 0.060867), (0.149185, 0.063217, 0.744568)]
SRGB = [(0.436066, 0.222488, 0.013916), (0.385147, 0.716873, 0.097076), (0.143066, 0.060608, 0.714096)]
SRGB_PARA = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)  # sRGB's curve as parametric type 3

# Linear-light conversions to sRGB (D65), as published for each colour space.
P3_TO_SRGB = np.array([[1.2249, -0.2247, 0.0], [-0.0420, 1.0419, 0.0], [-0.0197, -0.0786, 1.0979]])
ADOBE_TO_SRGB = np.array([[1.3983, -0.3983, 0.0], [0.0, 1.0, 0.0], [0.0, -0.0429, 1.0429]])

# Mid-saturated colours that stay inside sRGB once converted: skin, sky, grass, brick, greys.
PATCHES = [(200, 150, 120), (90, 140, 200), (90, 160, 70), (170, 80, 60), (128, 128, 128), (30, 30, 30),
           (230, 200, 90), (120, 90, 160)]


def s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def profile(colorants, curve: bytes, space: bytes = b"RGB ") -> bytes:
    """A matrix/TRC monitor profile: header, tag table, XYZ and curve tags (ICC.1)."""
    xyz = [b"XYZ \0\0\0\0" + b"".join(s15(v) for v in c) for c in colorants]
    tags = [(b"rXYZ", xyz[0]), (b"gXYZ", xyz[1]), (b"bXYZ", xyz[2]),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"wtpt", b"XYZ \0\0\0\0" + s15(0.9642) + s15(1.0) + s15(0.8249))]
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x04300000, b"mntr", space, b"XYZ ")
    header += b"\0" * 12 + b"acsp" + b"\0" * (128 - 40)
    return header + struct.pack(">I", len(tags)) + table + body


def para3(g, a, b, c, d) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">H", 3) + b"\0\0" + b"".join(s15(v) for v in (g, a, b, c, d))


def gamma(g: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">I", 1) + struct.pack(">H", round(g * 256))


def srgb_from_linear(lin):
    lin = np.clip(lin, 0, 1)
    return 255 * np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def expected(decode, to_srgb_matrix) -> np.ndarray:
    lin = decode(np.array(PATCHES, float) / 255)
    return np.round(srgb_from_linear(lin @ to_srgb_matrix.T)).astype(int)


def srgb_decode(v):
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def chart() -> np.ndarray:
    return np.repeat(np.array(PATCHES, np.uint8)[None, :, :], 16, axis=0).repeat(16, axis=1)


def centres(rgb) -> np.ndarray:
    return rgb[8, 8::16].astype(int)


def png_with(path, rgb, icc: bytes):
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    path.write_bytes(_with_iccp(png.tobytes(), icc))
    return path


def jpeg_with(path, rgb, icc: bytes):
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    body = b"ICC_PROFILE\0\x01\x01" + icc
    app2 = b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body
    path.write_bytes(jpg.tobytes()[:2] + app2 + jpg.tobytes()[2:])
    return path


def background_pixels(path) -> np.ndarray:
    bg = ImageBackground(path)
    h, w = chart().shape[:2]
    bg.prepare((h, w))
    return centres(bg.render(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)))


def test_a_display_p3_photo_as_background_shows_its_colours(tmp_path):
    """A phone's photo: its P3 numbers read as sRGB numbers looked duller (off by up to 29 levels here)."""
    want = expected(srgb_decode, P3_TO_SRGB)
    got = background_pixels(png_with(tmp_path / "p3.png", chart(), profile(P3, para3(*SRGB_PARA))))
    assert np.abs(got - want).max() <= 2, np.c_[want, got]
    assert np.abs(np.array(PATCHES) - want).max() >= 20  # the chart is one where the profile matters


def test_an_adobe_rgb_camera_jpeg_as_background_shows_its_colours(tmp_path):
    want = expected(lambda v: v ** (563 / 256), ADOBE_TO_SRGB)
    got = background_pixels(jpeg_with(tmp_path / "adobe.jpg", chart(), profile(ADOBE, gamma(563 / 256))))
    assert np.abs(got - want).max() <= 3, np.c_[want, got]  # JPEG at quality 100: a level or two
    assert np.abs(np.array(PATCHES) - want).max() >= 20


def test_a_photo_larger_than_a_strip_is_converted_whole_and_alike_everywhere():
    """A big photo is converted in strips of rows (a 48 MP P3 photo held 2.4 GB of float copies at
    once: out of memory on a small machine, with a fix naming --size): every strip, the last
    partial one too, gives what the chart alone gives."""
    from vbg.icc import STRIP_PIXELS

    small = to_srgb(chart(), profile(P3, para3(*SRGB_PARA)))
    rows = -(-2 * STRIP_PIXELS // chart().shape[1]) // chart().shape[0] + 2  # over two strips, a partial one
    big = np.tile(chart(), (rows, 1, 1))
    big = big[:-5]  # ends part-way through a chart
    assert big.shape[0] * big.shape[1] > 2 * STRIP_PIXELS
    np.testing.assert_array_equal(to_srgb(big, profile(P3, para3(*SRGB_PARA))), np.tile(small, (rows, 1, 1))[:-5])


def test_an_srgb_photo_is_left_exactly_as_it_is():
    rgb = chart()
    assert to_srgb(rgb, profile(SRGB, para3(*SRGB_PARA))) is rgb
    assert to_srgb(rgb, None) is rgb


@pytest.mark.parametrize("case", ["grey profile", "no curves", "truncated", "garbage"])
def test_a_profile_vbg_cannot_use_leaves_the_pixels_as_they_are(case):
    good = profile(P3, para3(*SRGB_PARA))
    icc = {"grey profile": profile(P3, para3(*SRGB_PARA), space=b"GRAY"),
           "no curves": good.replace(b"rTRC", b"xTRC"),
           "truncated": good[:200],
           "garbage": bytes(range(256)) * 4}[case]
    rgb = chart()
    assert to_srgb(rgb, icc) is rgb


def test_a_p3_photo_uploaded_from_a_phone_to_the_control_page_shows_its_colours(tmp_path):
    data = png_with(tmp_path / "p3.png", chart(), profile(P3, para3(*SRGB_PARA))).read_bytes()
    lib = Library(tmp_path / "folder")
    bid = lib.add_upload(data, "IMG_0001.png")
    _, _, image = lib.picture(bid)
    assert np.abs(centres(image) - expected(srgb_decode, P3_TO_SRGB)).max() <= 2
