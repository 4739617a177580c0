"""HDR video (a phone's HLG, HDR10's PQ) comes out as the SDR picture it shows: vbg's tone
mapping (vbg.media.tonemap) against clips made from a known SDR picture by the standards'
own formulas (tests/media.py: hdr_signal, written apart from vbg's code)."""

from __future__ import annotations

import av
import numpy as np
import pytest
from media import write_hdr_clip

from vbg.capture import open_source
from vbg.clock import FakeClock
from vbg.compositing import SyncVideoBackground
from vbg.media.reader import VideoReader
from vbg.media.tonemap import HLG, PQ, ToneMapper, stated_peak

# Greys, skin tones, a sky blue, saturated red and green, deep shadows, near-whites.
PATCHES = [(20, 20, 20), (60, 60, 60), (128, 128, 128), (180, 180, 180), (200, 150, 120), (120, 85, 60),
           (60, 90, 160), (170, 40, 40), (40, 160, 60), (8, 8, 8), (230, 230, 230), (245, 245, 245),
           (255, 255, 255), (245, 220, 200)]
SIDE, COLUMNS = 32, 7  # a 224x64 chart: a frame shape a camera could give


def chart() -> np.ndarray:
    out = np.zeros((SIDE * 2, SIDE * COLUMNS, 3), np.uint8)
    for i, p in enumerate(PATCHES):
        r, c = divmod(i, COLUMNS)
        out[SIDE * r:SIDE * (r + 1), SIDE * c:SIDE * (c + 1)] = p
    return out


def centres(rgb: np.ndarray, scale: int = 1) -> np.ndarray:
    """Each patch's middle pixel (away from chroma subsampling at its borders), as int."""
    return np.array([rgb[(SIDE * r + SIDE // 2) // scale, (SIDE * c + SIDE // 2) // scale]
                     for r, c in (divmod(i, COLUMNS) for i in range(len(PATCHES)))], int)


def mid_tones() -> np.ndarray:
    return np.array([max(p) <= 180 for p in PATCHES])


@pytest.mark.parametrize("transfer", [HLG, PQ], ids=["hlg", "pq"])
def test_hdr_video_shows_the_colours_of_the_picture_it_was_made_of(tmp_path, transfer):
    """Shadows, mid-tones, skin and saturated colours come back within 3 of 255 from the
    10-bit BT.2020 file; FFmpeg's plain conversion (what vbg gave before) is far off: dim and
    grey, the 'washed out' phone video."""
    clip = write_hdr_clip(tmp_path / "hdr.mp4", [chart()] * 2, transfer)
    with VideoReader(clip) as reader:
        got = centres(next(iter(reader)).rgb)
    want = np.array(PATCHES)
    assert np.abs(got - want)[mid_tones()].max() <= 3, np.c_[want, got][mid_tones()]
    with av.open(str(clip)) as c:
        plain = centres(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    assert np.abs(plain - want)[mid_tones()].max() >= 20, plain


def test_sdr_video_in_bt2020_colours_shows_them_as_bt709(tmp_path):
    """A UHD broadcast's or a camera's 10-bit SDR in BT.2020 colours: no tone mapping (white stays
    255), the colours within 3 of 255 of the picture it was made of; FFmpeg's plain conversion
    (what vbg gave before) shows them pale, the primaries taken for BT.709's."""
    clip = write_hdr_clip(tmp_path / "wide.mp4", [chart()] * 2, 14)
    with VideoReader(clip) as reader:
        got = centres(next(iter(reader)).rgb)
    want = np.array(PATCHES)
    assert np.abs(got - want).max() <= 3, np.c_[want, got]
    with av.open(str(clip)) as c:
        plain = centres(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    assert np.abs(plain - want).max() >= 20, plain


@pytest.mark.parametrize("transfer", [HLG, PQ], ids=["hlg", "pq"])
def test_highlights_roll_off_bright_and_neutral_instead_of_clipping(tmp_path, transfer):
    """SDR white (203 cd/m2 in the file) stays a bright neutral white, and what is brighter
    than SDR white (a window, a lamp) stays apart from it and in order instead of clipping to
    255 with it; only the last part of the range up to the 1000 cd/m2 peak meets at white."""
    clip = write_hdr_clip(tmp_path / "hdr.mp4", [chart()] * 2, transfer)
    with VideoReader(clip) as reader:
        white = centres(next(iter(reader)).rgb)[PATCHES.index((255, 255, 255))]
    assert white.min() >= 215 and white.max() - white.min() <= 2, white
    bright = write_hdr_clip(tmp_path / "bright.mp4", [chart()] * 2, transfer, white=1000)
    with VideoReader(bright) as reader:
        got = centres(next(iter(reader)).rgb)
    # 1000 x (v / 255) ** 2.4: about 55, 200, 440 and 1000 cd/m2.
    levels = [int(got[PATCHES.index((v, v, v))].mean()) for v in (60, 128, 180, 255)]
    assert all(b - a >= 3 for a, b in zip(levels, levels[1:])), levels


@pytest.mark.parametrize("cll", ["203,100", "100,50"], ids=["203", "100-understated"])
def test_a_hdr10_file_mastered_no_brighter_than_sdr_white_is_not_darkened(tmp_path, cll):
    """An HDR10 file whose content light level says 203 cd/m2 at most has nothing to roll off:
    its white comes out at 255, its near-whites apart. One that understates it (100 cd/m2, with
    content up to 203) is not flattened above what it says. Without a stated level (1000 cd/m2
    assumed) white is rolled off.
    (HEVC in Matroska: PyAV's libx265 gives a two-frame clip's last packet a garbage dts, which
    the MP4 muxer refuses now and then.)"""
    frames = [chart()] * 2
    stated = write_hdr_clip(tmp_path / "dim.mkv", frames, PQ, codec="libx265", x265_params=f"max-cll={cll}")
    plain = write_hdr_clip(tmp_path / "plain.mkv", frames, PQ, codec="libx265")
    got = {}
    for clip in (stated, plain):
        with VideoReader(clip) as reader:
            got[clip.name] = centres(next(iter(reader)).rgb)
    white, near = (got["dim.mkv"][PATCHES.index((v, v, v))] for v in (255, 230))
    assert white.min() >= 253 and near.max() <= 234, got["dim.mkv"]
    assert got["plain.mkv"][PATCHES.index((255, 255, 255))].max() <= 240, got["plain.mkv"]


def test_the_stated_peak_is_the_content_light_level_else_the_mastering_display(tmp_path):
    master = "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(40000000,50)"
    cases = {"cll.mkv": (f"{master}:max-cll=1500,400", 1500.0), "md.mkv": (master, 4000.0), "none.mkv": (None, None)}
    for name, (params, peak) in cases.items():
        clip = write_hdr_clip(tmp_path / name, [chart()] * 2, PQ, codec="libx265", x265_params=params)
        with av.open(str(clip)) as c:
            assert stated_peak(next(c.decode(video=0))) == peak, name


def test_an_hdr_frame_scaled_on_the_way_is_tone_mapped_too(tmp_path):
    """The reader scales frames of a mid-file size change through the same mapping."""
    clip = write_hdr_clip(tmp_path / "hdr.mp4", [chart()], HLG)
    with av.open(str(clip)) as c:
        frame = next(c.decode(video=0))
    half = ToneMapper(HLG)(frame, frame.width // 2, frame.height // 2, "AREA")
    assert half.shape == (SIDE, SIDE * COLUMNS // 2, 3)
    assert np.abs(centres(half, 2) - np.array(PATCHES))[mid_tones()].max() <= 3


def test_a_phone_hdr_clip_as_background_shows_its_sdr_colours(tmp_path):
    clip = write_hdr_clip(tmp_path / "bg.mp4", [chart()] * 2, HLG)
    bg = SyncVideoBackground(clip)
    h, w = chart().shape[:2]
    bg.prepare((h, w))
    try:
        out = bg.render(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))
    finally:
        bg.close()
    assert np.abs(centres(out) - np.array(PATCHES))[mid_tones()].max() <= 3


def test_a_phone_hdr_clip_as_live_source_shows_its_sdr_colours_and_says_so(tmp_path, vbg_records):
    """As ``vbg process`` does, the live filter says it tone-maps a file played as its camera."""
    clip = write_hdr_clip(tmp_path / "cam.mp4", [chart()] * 2, HLG)
    with vbg_records.at_level("INFO", logger="vbg"), open_source(str(clip), paced=False, clock=FakeClock()) as src:
        frame = src.read()
    assert np.abs(centres(frame) - np.array(PATCHES))[mid_tones()].max() <= 3
    assert [r.getMessage() for r in vbg_records.records] == [
        f"{clip}: HDR video (HLG): tone-mapped to SDR (BT.709), as an SDR screen shows it"]
