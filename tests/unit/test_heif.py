"""A phone's HEIC photo (an iPhone's default format) and AVIF images: as backgrounds and to
``vbg segment``, shown as a photo viewer shows them (vbg.heif). Before, each was refused as
"not an image vbg can read", and ``vbg process`` made a one-frame video of its first tile.

``tests/data/phone.heic`` is stored as an iPhone stores a photo (tests/data/README.md): a grid
of separately coded tiles (8 of 64x64), a quarter turn stated by ``irot`` (shown turned
clockwise), a Display P3 colour profile. Its picture is test_icc's colour chart, eight patches
in a row, so where each patch lands says whether the tiles are in place and the turn is right,
and its colours whether the profile was applied."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import DATA
from test_icc import P3_TO_SRGB, PATCHES, expected, srgb_decode
from vbg.compositing import ImageBackground
from vbg.errors import InputError
from vbg.images import read_rgb, read_srgb

PHONE = DATA / "phone.heic"
SIDE = 64  # each patch, and each tile, is 64x64


def patch_centres(rgb: np.ndarray) -> np.ndarray:
    """The middle of each patch, top to bottom: the chart as a viewer shows it, turned upright."""
    return rgb[SIDE // 2::SIDE, SIDE // 2].astype(int)


def test_an_iphone_photo_as_background_is_upright_whole_and_in_its_colours():
    bg = ImageBackground(PHONE)
    h, w = SIDE * len(PATCHES), SIDE
    bg.prepare((h, w))
    shown = bg.render(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))
    want = expected(srgb_decode, P3_TO_SRGB)  # the P3 numbers as sRGB shows them
    assert np.abs(patch_centres(shown) - want).max() <= 4, np.c_[want, patch_centres(shown)]
    assert np.abs(np.array(PATCHES) - want).max() >= 20  # the profile matters on this chart


def test_each_tile_lands_in_place_at_the_photos_size():
    """The stored numbers (no profile applied), tile by tile: a tile out of place, or the turn
    the wrong way, puts another patch (or black) where each one should be."""
    rgb = read_rgb(PHONE)
    assert rgb.shape == (SIDE * len(PATCHES), SIDE, 3)
    assert np.abs(patch_centres(rgb) - np.array(PATCHES)).max() <= 3
    for i, patch in enumerate(PATCHES):  # each tile whole: its corners too
        tile = rgb[i * SIDE:(i + 1) * SIDE].astype(int)
        assert np.abs(tile[[2, 2, -3, -3], [2, -3, 2, -3]] - patch).max() <= 6, i


def test_an_avif_image_reads_as_the_picture_it_was_made_of(tmp_path):
    y, x = np.mgrid[0:96, 0:128]
    picture = np.dstack([x * 2, y * 2, np.full_like(x, 90)]).astype(np.uint8)  # red grows right, green down
    path = tmp_path / "photo.avif"
    with av.open(str(path), "w", format="avif") as out:
        stream = out.add_stream("libsvtav1", rate=1)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"crf": "10", "preset": "8"}
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    got = read_srgb(path).astype(int)
    assert got.shape == picture.shape
    assert np.abs(got - picture).mean() < 3 and np.abs(got - picture).max() <= 16


@pytest.mark.parametrize("damage", ["truncated", "tile"])
def test_a_damaged_heic_is_one_line(tmp_path, damage):
    data = bytearray(PHONE.read_bytes())
    if damage == "truncated":  # a copy cut short
        data = data[: len(data) // 2]
    else:  # a tile's coded data overwritten
        start = data.find(b"mdat") + 4
        data[start + 80:start + 200] = bytes(120)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        read_rgb(path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"{path} is a ") and "damaged HEIF image" in str(e.value)
    assert str(e.value).endswith("copy or export it again")


def test_phone_photos_in_the_backgrounds_folder_are_listed_and_uploads_shown(tmp_path):
    """The control page's library: an iPhone photo copied into the user's backgrounds folder is
    listed and shown, and one uploaded from a phone's browser (which sends a HEIC as it is) shows
    upright in its colours. The folder listed only .jpg, .png and .webp files."""
    import shutil

    from vbg.control.library import Library

    folder = tmp_path / "backgrounds"
    folder.mkdir()
    shutil.copy(PHONE, folder / "IMG_0001.HEIC")
    lib = Library(folder)
    assert [i["id"] for i in lib.items() if i["id"].startswith("folder:")] == ["folder:IMG_0001.HEIC"]
    want = expected(srgb_decode, P3_TO_SRGB)
    for bid in ("folder:IMG_0001.HEIC", lib.add_upload(PHONE.read_bytes(), "IMG_0002.HEIC")):
        _, _, image = lib.picture(bid)
        assert image.shape == (SIDE * len(PATCHES), SIDE, 3)
        assert np.abs(patch_centres(image) - want).max() <= 4, bid


def test_a_heic_stating_20000x20000_is_refused_from_its_header(tmp_path):
    """The size a HEIC states (its grid's, here made 20000x20000) is checked before any tile is
    decoded, as a PNG's or a JPEG's is."""
    data = bytearray(PHONE.read_bytes())
    at = data.find(b"idat") + 4  # the grid item's data: version, flags, rows - 1, columns - 1, width, height
    assert data[at + 1] & 1 == 0  # 16-bit sizes
    data[at + 4:at + 8] = (20000).to_bytes(2, "big") * 2
    path = tmp_path / "huge.heic"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        read_rgb(path)
    assert str(e.value) == f"image {path} is 20000x20000: too large; scale it below 100 megapixels"
