"""The compositor as a user sees it: the person over the background, with no halo and no copies."""

from __future__ import annotations

import bisect
import threading
import time
import tracemalloc
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep import wait_until
from vbg.clock import FakeClock
from vbg.compositing import (
    BlurBackground,
    ColorBackground,
    Compositor,
    ImageBackground,
    SyncVideoBackground,
    VideoBackground,
    background_from_options,
    cover_fit,
    make_background,
    parse_color,
    threshold_lut,
)
from vbg.compositing.animated import AnimatedPictureBackground
from vbg.compositing.cards import camera_lost_card
from vbg.errors import ConfigError, InputError
from vbg.images import heif_kind, opencv_reads_animations

FG = (200, 100, 50)
BG = (10, 20, 30)


class ArrayBackground:
    """A fixed picture given as an array (the protocol with nothing hidden)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.closed = 0

    def prepare(self, out_hw):
        assert self.image.shape[:2] == tuple(out_hw)

    def render(self, frame, alpha):
        return self.image

    def close(self):
        self.closed += 1


def solid(h, w, rgb):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rgb
    return img


def float_blend(f, a, b):
    m = a[..., None].astype(np.float64) / 255.0
    return f * m + b * (1.0 - m)


# -- blending ----------------------------------------------------------------

def test_alpha_255_gives_frame_0_gives_background_128_the_middle():
    alpha = np.zeros((6, 9), np.uint8)
    alpha[:, 3:6] = 128
    alpha[:, 6:] = 255
    with Compositor((6, 9), ColorBackground(BG)) as comp:
        out = comp.compose(solid(6, 9, FG), alpha)
    assert (out[:, :3] == BG).all()
    assert (out[:, 6:] == FG).all()
    mid = np.array(FG) * 128 / 255 + np.array(BG) * 127 / 255
    assert np.abs(out[:, 3:6].astype(float) - mid).max() <= 1.0


@pytest.mark.parametrize("region", ["everywhere", "a corner", "nowhere"])
def test_blend_is_within_one_grey_level_of_the_float_formula(region):
    rng = np.random.default_rng(1)
    f = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    a = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    if region == "a corner":  # only a box is blended; the rest must be the background
        a[:, :] = 0
        a[5:17, 30:44] = rng.integers(1, 256, (12, 14))
    elif region == "nowhere":
        a[:] = 0
    out = Compositor((40, 50), ArrayBackground(b)).compose(f, a)
    assert np.abs(out - float_blend(f, a, b)).max() <= 1.0
    assert (out[a == 0] == b[a == 0]).all()
    assert (out[a == 255] == f[a == 255]).all()


def _cv_blend(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The blend formula applied to every pixel, as the compositor documents it."""
    a3 = cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    return cv2.add(cv2.multiply(f, a3, scale=1 / 255), cv2.multiply(b, cv2.bitwise_not(a3), scale=1 / 255))


@pytest.mark.parametrize("hw", [(72, 128), (37, 41), (1, 17), (3, 5)])
@pytest.mark.parametrize("mask", ["person", "soft everywhere", "hard", "empty", "full"])
def test_band_blend_equals_blending_every_pixel(hw, mask):
    """Only the segments holding soft alpha are blended; the output must be the same to the bit,
    also when the pixel count is not a multiple of the segment length (a tail) and for masks
    soft nearly everywhere (whole-frame path)."""
    h, w = hw
    rng = np.random.default_rng(hash(mask) % 1000)
    f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mask == "person":
        a = np.zeros((h, w), np.uint8)
        a[h // 4:, w // 3:2 * w // 3 + 1] = 255
        a[h // 4, w // 3:2 * w // 3 + 1] = 90  # a soft top edge
        a[h // 4:, w // 3] = 170  # and a soft left edge
        a[-1, -1] = 33  # a soft pixel in the tail
    elif mask == "soft everywhere":
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
    elif mask == "hard":
        a = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
    else:
        a = np.full((h, w), 0 if mask == "empty" else 255, np.uint8)
    out = Compositor(hw, ArrayBackground(b)).compose(f, a)
    np.testing.assert_array_equal(out, _cv_blend(f, a, b))
    # a strided (non-contiguous) frame is blended the same
    wide = np.zeros((h, w + 3, 3), np.uint8)
    wide[:, :w] = f
    np.testing.assert_array_equal(Compositor(hw, ArrayBackground(b)).compose(wide[:, :w], a), out)


def test_blur_written_into_the_output_equals_render_then_blend():
    rng = np.random.default_rng(4)
    h, w = 90, 160
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[20:, 50:110] = 255
    alpha[20:, 50] = 128
    comp = Compositor((h, w), BlurBackground(1.0))
    out = comp.compose(frame, alpha)
    bg = BlurBackground(1.0)
    bg.prepare((h, w))
    np.testing.assert_array_equal(out, _cv_blend(frame, alpha, bg.render(frame, alpha)))


def test_output_buffer_is_reused_and_nothing_is_allocated_per_frame():
    h, w = 120, 160
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[30:100, 40:110] = 255
    comp = Compositor((h, w), BlurBackground(1.0), feather=2, threshold=0.5, mirror=True)
    first = comp.compose(frame, alpha)
    assert comp.compose(frame, alpha) is first
    mine = np.empty((h, w, 3), np.uint8)
    assert comp.compose(frame, alpha, out=mine) is mine
    np.testing.assert_array_equal(mine, first)

    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            comp.compose(frame, alpha)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = h * w * 3
    assert peak - base < frame_bytes // 4, f"{peak - base} bytes allocated during 50 frames"
    assert current - base < 4096


def test_wrong_shapes_and_dtypes_are_refused_with_expected_and_actual():
    comp = Compositor((8, 10), ColorBackground("black"))
    good_f, good_a = np.zeros((8, 10, 3), np.uint8), np.zeros((8, 10), np.uint8)
    with pytest.raises(ValueError, match=r"frame is 10x8x3 uint8; expected 8x10x3 uint8"):
        comp.compose(np.zeros((10, 8, 3), np.uint8), good_a)
    with pytest.raises(ValueError, match=r"frame is 8x10x3 float32; expected 8x10x3 uint8"):
        comp.compose(good_f.astype(np.float32), good_a)
    with pytest.raises(ValueError, match=r"alpha is 8x10 float32; expected 8x10 uint8"):
        comp.compose(good_f, good_a.astype(np.float32))
    with pytest.raises(ValueError, match=r"out is 8x10x4 uint8"):
        comp.compose(good_f, good_a, out=np.zeros((8, 10, 4), np.uint8))


def test_close_closes_the_background_once():
    bg = ArrayBackground(np.zeros((2, 2, 3), np.uint8))
    comp = Compositor((2, 2), bg)
    comp.close()
    comp.close()
    assert bg.closed == 1


# -- options -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["PNG", "animated PNG"])
def test_a_background_s_transparent_part_is_black_whatever_colour_is_stored_there(tmp_path, kind):
    """A picture half opaque red, half transparent with magenta stored under the transparency (an
    editor keeps what was erased): the transparent half shows black, as a lossless WebP's did.
    It showed the stored magenta (or, for a GIF, its transparent entry's colour)."""
    import av

    h, w = 36, 64
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[:, : w // 2] = (255, 0, 0, 255)
    rgba[:, w // 2:] = (255, 0, 255, 0)
    path = tmp_path / "half.png"
    if kind == "PNG":
        path.write_bytes(cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes())
    else:
        path = tmp_path / "half.apng"
        with av.open(str(path), "w", format="apng") as out:
            stream = out.add_stream("apng", rate=10)
            stream.width, stream.height, stream.pix_fmt = w, h, "rgba"
            for i in range(2):
                frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
                frame.pts, frame.time_base = i, Fraction(1, 10)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    bg = background_from_options(str(path), live=False)
    try:
        bg.prepare((h, w))
        if hasattr(bg, "show_at"):
            bg.show_at(0.0)
        out = bg.render(solid(h, w, (0, 128, 0)), np.zeros((h, w), np.uint8))
    finally:
        bg.close()
    assert np.abs(out[h // 2, 4:w // 2 - 4].astype(int) - (255, 0, 0)).max() <= 3
    assert out[h // 2, w // 2 + 4:-4].max() <= 3


def test_mirror_flips_the_person_but_not_the_background_image():
    h, w = 4, 8
    frame = solid(h, w, (255, 0, 0))
    frame[:, w // 2:] = (0, 0, 255)  # person's left half red, right half blue
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, :2] = 255  # the person stands at the left edge
    bg = solid(h, w, (0, 255, 0))
    bg[:, w // 2:] = (255, 255, 0)  # background: green left, yellow right
    out = Compositor((h, w), ArrayBackground(bg), mirror=True).compose(frame, alpha)
    assert (out[:, -2:] == (255, 0, 0)).all()  # the red person now on the right
    assert (out[:, :w // 2] == (0, 255, 0)).all()  # background left still green
    assert (out[:, w // 2:-2] == (255, 255, 0)).all()


def test_threshold_makes_a_near_hard_cut():
    levels = np.array([[0, 100, 114, 128, 141, 160, 255]], np.uint8)
    out = Compositor((1, 7), ColorBackground(BG), threshold=0.5).compose(solid(1, 7, FG), levels)
    assert (out[0, :3] == BG).all()  # at or below 0.45 -> background
    assert (out[0, 4:] == FG).all()  # at or above 0.55 -> person
    a = threshold_lut(0.5)[128]
    assert 120 < a < 136  # just above the threshold: about half
    assert (np.abs(out[0, 3] - (np.array(FG) * a + np.array(BG) * (255 - a)) / 255) <= 1).all()
    for t in (0.01, 0.3, 0.5, 0.99):
        lut = threshold_lut(t)
        assert lut[0] == 0 and lut[255] == 255 and (np.diff(lut.astype(int)) >= 0).all()


@pytest.mark.parametrize("bad", [0, 1, -0.5, 2, "half", float("nan")])
def test_bad_threshold_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--threshold"):
        Compositor((2, 2), ColorBackground("black"), threshold=bad)


def test_feather_softens_only_the_edge():
    h, w = 4, 40
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, :20] = 255
    frame = solid(h, w, (255, 255, 255))
    hard = Compositor((h, w), ColorBackground("black")).compose(frame, alpha).copy()
    soft = Compositor((h, w), ColorBackground("black"), feather=4).compose(frame, alpha)
    assert set(np.unique(hard)) == {0, 255}
    row = soft[0, :, 0].astype(int)
    assert (row[:12] == 255).all() and (row[28:] == 0).all()  # far from the edge: unchanged
    assert 0 < row[20] < 255 and 0 < row[19] < 255  # at the edge: a ramp
    assert (np.diff(row) <= 0).all()


@pytest.mark.parametrize("bad", [-1, 51, "wide"])
def test_bad_feather_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--feather"):
        Compositor((2, 2), ColorBackground("black"), feather=bad)


# -- backgrounds -------------------------------------------------------------

@pytest.mark.parametrize("src_hw, out_hw", [((50, 100), (80, 60)), ((100, 50), (60, 80)), ((50, 100), (25, 50))])
def test_image_background_covers_the_output_keeping_aspect_and_centre(tmp_path, src_hw, out_hw):
    sh, sw = src_hw
    img = solid(sh, sw, (90, 90, 90))
    cy, cx = sh // 2, sw // 2
    img[cy - 5:cy + 5, cx - 5:cx + 5] = 255  # a 10x10 square marks the centre
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), img)
    bg = ImageBackground(path)
    bg.prepare(out_hw)
    out = bg.render(np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8))
    assert out.shape == (*out_hw, 3) and out.dtype == np.uint8
    assert out.min() >= 80  # covered: no black bars
    ys, xs = np.nonzero(out[:, :, 0] > 170)
    oh, ow = out_hw
    assert abs((ys.min() + ys.max()) / 2 - (oh - 1) / 2) <= 1  # centre stays centre
    assert abs((xs.min() + xs.max()) / 2 - (ow - 1) / 2) <= 1
    mh, mw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(mh - mw) <= 1  # the square is still square: aspect kept
    assert not out.flags.writeable  # shared with every frame
    assert bg.render(None, None) is out  # prepared once, no copy per frame


def test_cover_fit_into_a_given_buffer():
    dst = np.empty((30, 40, 3), np.uint8)
    assert cover_fit(solid(300, 300, (1, 2, 3)), (30, 40), dst=dst) is dst
    assert (dst == (1, 2, 3)).all()


def test_image_background_missing_or_not_an_image_is_one_line_input_error(tmp_path):
    with pytest.raises(InputError) as e:
        ImageBackground(tmp_path / "nope.png")
    assert "\n" not in str(e.value) and "nope.png" in str(e.value)
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    with pytest.raises(InputError) as e:
        ImageBackground(text)
    assert "\n" not in str(e.value) and "notes.png" in str(e.value)


@pytest.mark.parametrize("major,compatible,said", [
    (b"heic", [b"mif1", b"heic", b"miaf"], "a HEIC photo"),  # as an iPhone writes it
    (b"mif1", [b"mif1", b"heic"], "a HEIC photo"),  # the brand among the compatible ones
    (b"avif", [b"avif", b"mif1", b"miaf"], "an AVIF image"),
    (b"msf1", [b"msf1", b"hevc"], None),  # a HEIF image sequence: a video, left to the video readers
    (b"isom", [b"isom", b"iso2", b"avc1", b"mp41"], None),  # an MP4
], ids=["iphone", "compatible", "avif", "sequence", "mp4"])
def test_a_heif_file_is_told_by_its_brands(tmp_path, major, compatible, said):
    """A HEIC or AVIF photo is known by its file-type brands (test_heif reads whole ones): one
    whose header then holds no image is a damaged HEIF image, in one line; an MP4's or an image
    sequence's brands are not a photo's."""
    ftyp = b"ftyp" + major + b"\0\0\0\0" + b"".join(compatible)
    photo = tmp_path / "photo.heic"
    photo.write_bytes(len(ftyp + b"1234").to_bytes(4, "big") + ftyp + b"\0\0\0\x08mdat" + bytes(64))
    assert heif_kind(photo.read_bytes()) == said
    with pytest.raises(InputError) as e:
        ImageBackground(photo)
    assert str(e.value) == (f"{photo} is a truncated or damaged HEIF image (its header cannot be read): copy or "
                            "export it again" if said else f"{photo} is not an image vbg can read: pass a PNG, JPEG, "
                            "WebP, HEIC, AVIF, BMP or TIFF image")


def test_blurred_background_has_no_halo_around_the_person():
    n = 128
    frame = solid(n, n, (20, 20, 20))
    alpha = np.zeros((n, n), np.uint8)
    alpha[41:87, 45:83] = 255  # edges deliberately off the 4-pixel grid
    frame[alpha == 255] = 240
    bg = BlurBackground(2.0)
    bg.prepare((n, n))
    ours = bg.render(frame, alpha)[:, :, 0].astype(int)

    ring = cv2.dilate(alpha, np.ones((9, 9), np.uint8)) > 0
    ring &= alpha == 0  # the 4 pixels just outside the person
    sigma = 2.0 * BlurBackground.SIGMA_FRACTION * n
    plain = cv2.GaussianBlur(frame, (0, 0), sigma)[:, :, 0].astype(int)
    assert plain[ring].max() > 100  # a plain blur glows next to the person
    assert ours[ring].max() <= 24  # ours stays the dark room
    far = np.zeros_like(ring)
    far[:10, :10] = True
    assert np.abs(ours[far] - 20).max() <= 1


def test_blur_is_the_plain_blur_without_a_person():
    rng = np.random.default_rng(3)
    frame = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    bg = BlurBackground(1.0)
    bg.prepare((64, 64))
    out = bg.render(frame, np.zeros((64, 64), np.uint8))
    assert out.std() < frame.std()  # blurred
    assert abs(out.astype(float).mean() - frame.astype(float).mean()) < 3


@pytest.mark.parametrize("bad", [0, 0.05, 6, "strong", float("nan")])
def test_bad_blur_strength_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--blur"):
        BlurBackground(bad)


def test_make_background_by_name():
    assert make_background("color", "#f00").rgb == (255, 0, 0)
    assert make_background("blur", "2.5").strength == 2.5
    with pytest.raises(ConfigError, match="unknown"):
        make_background("fog", None)
    with pytest.raises(ConfigError, match="--blur"):
        make_background("blur", "lots")


# -- colours -----------------------------------------------------------------

@pytest.mark.parametrize("text, rgb", [
    ("red", (255, 0, 0)), (" White ", (255, 255, 255)), ("grey", (128, 128, 128)), ("gray", (128, 128, 128)),
    ("#0f8", (0, 255, 136)), ("#00FF80", (0, 255, 128)), ("00ff80", (0, 255, 128)),
    ("rgb(1, 2, 3)", (1, 2, 3)), ("RGB(255,255,0)", (255, 255, 0)),
])
def test_parse_color_accepts(text, rgb):
    assert parse_color(text) == rgb


def test_chroma_is_a_keying_green():
    r, g, b = parse_color("chroma")
    assert parse_color("greenscreen") == (r, g, b) and g > 150 and r < 30 and b < 100


@pytest.mark.parametrize("text", ["", "nope", "#12345", "#ggg", "rgb(256,0,0)", "rgb(1,2)", "12", "0x00ff00", "f0"])
def test_parse_color_refuses_with_one_line_naming_the_option(text):
    with pytest.raises(ConfigError) as e:
        parse_color(text)
    msg = str(e.value)
    assert "--color" in msg and repr(text) in msg and "#RRGGBB" in msg and "\n" not in msg


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_parse_color_on_any_text_gives_a_triple_or_a_config_error(text):
    try:
        rgb = parse_color(text)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(rgb, tuple) and len(rgb) == 3
    assert all(type(c) is int and 0 <= c <= 255 for c in rgb)


# -- video -------------------------------------------------------------------

LEVELS = [20 + 20 * i for i in range(10)]  # frame i is a solid grey of LEVELS[i]


def _grey_clip(path, fps: int, levels: list[int]):
    """Solid grey frames of ``levels``, 64x48, at ``fps``, lossless, made here with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qp": "0"}
        stream.codec_context.time_base = Fraction(1, fps)
        for i, v in enumerate(levels):
            frame = av.VideoFrame.from_ndarray(solid(48, 64, (v, v, v)), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """10 solid grey frames, 64x48, 10 fps, made here with PyAV."""
    return _grey_clip(tmp_path_factory.mktemp("video") / "greys.mp4", 10, LEVELS)


class GatedClock(FakeClock):
    """A FakeClock the decoder thread cannot read until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def now(self) -> float:
        if threading.current_thread() is not threading.main_thread():
            self.gate.wait(5)
        return super().now()


def wait_for_level(bg, level, out_hw, timeout=60.0):  # the time-out only guards against a hang
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        img = bg.render(frame, alpha)
        if abs(float(img.mean()) - level) <= 4:
            return img
        time.sleep(0.005)
    raise AssertionError(f"background never showed grey {level}; last mean {img.mean():.1f}")


def test_video_background_plays_at_its_rate_loops_and_closes(clip):
    clock = GatedClock()
    out_hw = (24, 40)
    bg = VideoBackground(clip, clock=clock)
    assert bg.fps == 10
    bg.prepare(out_hw)
    try:
        still = bg.render(None, None)
        assert still.shape == (24, 40, 3) and not still.any()  # black before the first frame
        clock.gate.set()
        wait_for_level(bg, LEVELS[0], out_hw)
        time.sleep(0.12)  # no time passes on the clock: still the first frame
        level = bg.render(np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)).mean()
        assert abs(float(level) - LEVELS[0]) <= 4
        for i in range(1, 13):  # through the end and round again
            clock.advance(i / 10 + 1e-6 - clock.now())
            wait_for_level(bg, LEVELS[i % 10], out_hw)
        assert bg.frames_published == 13
    finally:
        bg.close()
    bg.close()
    assert not any(t.name == "vbg-bg-video" for t in threading.enumerate())


def _transparent_webm(path, n: int = 5):
    """VP9 with alpha in WebM: the left half transparent over magenta, the right opaque magenta."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx-vp9", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuva420p"
        for i in range(n):
            rgba = np.zeros((48, 64, 4), np.uint8)
            rgba[..., 0] = rgba[..., 2] = 255
            rgba[:, 32:, 3] = 255
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_a_transparent_webm_background_is_black_where_transparent(tmp_path):
    """A WebM with transparency (VP9 alpha) as the background, in vbg process and live: its
    transparent half is black, as every other kind with transparency is, and its opaque half
    keeps its colour. The colour stored under the transparency showed (magenta): FFmpeg's own VP9
    decoder drops the alpha."""
    webm = _transparent_webm(tmp_path / "overlay.webm")
    out_hw = (48, 64)
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)
    bg = SyncVideoBackground(webm)
    try:
        bg.prepare(out_hw)
        for k in range(7):  # round the loop too
            bg.show_at(k / 10)
            img = bg.render(frame, alpha)
            assert img[:, :28].max() == 0 and (img[:, 36:].reshape(-1, 3).mean(0) > [240, -1, 240]).all(), k
    finally:
        bg.close()
    clock = GatedClock()
    live = VideoBackground(webm, clock=clock)
    live.prepare(out_hw)
    try:
        clock.gate.set()
        wait_until(lambda: live.frames_published >= 1, "the first frame")
        img = live.render(frame, alpha)
        assert img[:, :28].max() == 0 and img[:, 36:].reshape(-1, 3).mean(0)[0] > 240
    finally:
        live.close()


@pytest.mark.parametrize("own_file", [False, True])
def test_a_video_background_removed_while_it_plays_loops_on(tmp_path, own_file):
    """The background clip deleted while it plays (a downloads folder tidied; a video picked in the
    control page from the backgrounds folder, then removed): it loops on as it was. Each pass
    opened it again by name, and the removed file stopped the live filter (exit 9) at the loop."""
    clip = _grey_clip(tmp_path / "greys.mp4", 10, LEVELS)
    clock = GatedClock()
    out_hw = (24, 40)
    bg = VideoBackground(clip, clock=clock, own_file=own_file)
    bg.prepare(out_hw)
    try:
        clock.gate.set()
        wait_for_level(bg, LEVELS[0], out_hw)
        clip.unlink()
        for i in range(1, 25):  # through the end twice more
            clock.advance(i / 10 + 1e-6 - clock.now())
            wait_for_level(bg, LEVELS[i % 10], out_hw)
    finally:
        bg.close()


def test_an_offline_video_background_removed_while_it_plays_loops_on(tmp_path):
    """The same for vbg process: the file goes after the first frames, the background loops on."""
    clip = _grey_clip(tmp_path / "greys.mp4", 10, LEVELS)
    bg = SyncVideoBackground(clip)
    out_hw = (24, 40)
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)
    try:
        bg.prepare(out_hw)
        seen = []
        for k in range(25):
            if k == 3:
                clip.unlink()
            bg.show_at(k / 10)
            seen.append(round(float(bg.render(frame, alpha).mean())))
        assert [round((v - 20) / 20) for v in seen] == [k % 10 for k in range(25)], seen
    finally:
        bg.close()


@pytest.mark.parametrize("render_fps", [30, 60])
def test_a_video_background_converts_only_the_frames_the_camera_shows(tmp_path, render_fps):
    """A 60 fps clip behind a 30 fps camera: every other frame would be replaced before any
    output frame shows it, and is decoded but not fitted to the output size (a 1080p frame to
    720p is 5 ms of a laptop's core, 30 times a second for nothing). Each output frame still
    shows the frame due or the one before it, and the clip still plays at its own rate. Behind
    a 60 fps camera every frame is shown in turn and none is left out."""
    fps, n = 60, 30
    levels = [20 + 7 * m for m in range(n)]
    clip = _grey_clip(tmp_path / "greys60.mp4", fps, levels)
    clock = GatedClock()
    out_hw = (24, 32)
    bg = VideoBackground(clip, clock=clock)
    bg.prepare(out_hw)
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)
    shown = []
    try:
        clock.gate.set()
        wait_for_level(bg, levels[0], out_hw)  # the clip's time starts with its first frame, at 0 s
        for k in range(2 * render_fps):  # two seconds: four passes of the clip
            t = k / render_fps + 0.5 / fps  # each render half a clip frame after one is due
            clock.advance(t - clock.now())
            due = int(t * fps)  # the clip's frames due so far, all passes counted, less one
            wait_until(lambda: bg.frames_published + bg.frames_skipped >= due + 1,
                       f"the frame due before {t:.3f} s")
            m = round((float(bg.render(frame, alpha).mean()) - 20) / 7)
            assert m in ((due - 1) % n, due % n), f"at {t:.3f} s: frame {m} shown, frame {due % n} due"
            shown.append(m)
    finally:
        bg.close()
    if render_fps == fps:
        assert bg.frames_skipped == 0 and shown == [k % n for k in range(2 * render_fps)]
    else:  # once the renders' rate is known (their fourth interval): every other frame left out
        handled = bg.frames_published + bg.frames_skipped
        assert handled >= 2 * fps - 1 and 0.4 * handled <= bg.frames_skipped <= 0.5 * handled


def test_a_video_background_nobody_renders_waits_and_goes_on_from_where_it_stood(clip):
    """A video background no output frame uses (the effect switched off, another background picked
    in the page or with a key, the camera unwatched or lost) stops decoding once half a second
    goes by without a render: it decoded and fitted its clip at full rate for the rest of the run
    (113% of a core for a 1080p60 clip). The next render wakes it, and it goes on from the frame
    after the one it stopped at, not as far on as the time it waited."""
    clock = GatedClock()
    out_hw = (24, 40)
    bg = VideoBackground(clip, clock=clock)
    bg.prepare(out_hw)
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)
    try:
        clock.gate.set()
        wait_for_level(bg, LEVELS[0], out_hw)
        for i in range(1, 4):
            clock.advance(i / 10 + 1e-6 - clock.now())
            wait_for_level(bg, LEVELS[i], out_hw)
        clock.advance(3.0 - clock.now())  # nothing rendered from 0.3 s on
        wait_until(lambda: bg.holding, "the thread to stop")
        stopped_at = bg.frames_published
        for _ in range(20):  # the clock runs on to 10 s: nothing decoded, nothing published
            clock.advance(0.35)
            time.sleep(0.005)
        assert bg.holding and bg.frames_published == stopped_at
        shown = bg.render(frame, alpha)  # the newest frame it had made: the one after 0.3 s's
        assert abs(float(shown.mean()) - LEVELS[stopped_at - 1]) <= 4 and stopped_at - 1 in (3, 4)
        wait_until(lambda: not bg.holding, "a render to wake it")
        clock.advance(0.1 + 1e-6)  # one frame's time after the render: the next frame, then on in turn
        wait_for_level(bg, LEVELS[stopped_at], out_hw)
        clock.advance(0.1)
        wait_for_level(bg, LEVELS[stopped_at + 1], out_hw)
    finally:
        bg.close()
    assert not any(t.name == "vbg-bg-video" for t in threading.enumerate())


def test_a_video_from_a_shared_folder_is_never_played_through_a_link(clip, tmp_path):
    """A video background from a folder others may write to (the control page's backgrounds
    folder, ``own_file``): a link put in place of the file, whatever it points to, is refused
    with one line, never followed; the same file as it is plays."""
    import os

    link = tmp_path / "swapped.mp4"
    os.symlink(clip, link)
    with pytest.raises(InputError, match="swapped.mp4 cannot be opened .*not a link"):
        VideoBackground(link, own_file=True)
    with VideoBackground(clip, own_file=True) as bg:
        bg.prepare((24, 40))
        wait_for_level(bg, LEVELS[0], (24, 40))
    with VideoBackground(link) as bg:  # a path the user gave on the command line: theirs to link
        assert bg.fps == 10


GIF_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
GIF_TIMES_CS = [0, 10, 20, 120]  # a second's pause on the blue frame; the last one shown 10 ms (as read back)


def _colour_index(img) -> int:
    """Which of GIF_COLOURS ``img`` is (a palette's rounding allowed)."""
    means = img.reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(means - c).sum() for c in GIF_COLOURS]))


def test_a_gif_background_keeps_its_own_delays_live(tmp_path):
    """An animated GIF behind the person live: each frame is shown at its own time, a second's
    pause on the blue one, and round again once the last one's time is over. It was played at
    FFmpeg's average rate (3.3 fps here): the pause was gone, the white frame came at 0.9 s."""
    from media import write_gif

    gif = write_gif(tmp_path / "pause.gif", GIF_COLOURS, GIF_TIMES_CS)
    clock = GatedClock()
    out_hw = (24, 32)
    bg = VideoBackground(gif, clock=clock)
    bg.prepare(out_hw)
    frame, alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)

    def shown_at(t, want):  # the deadline only guards against a hang
        clock.advance(t - clock.now())
        deadline = time.monotonic() + 60
        while _colour_index(bg.render(frame, alpha)) != want or not bg.render(frame, alpha).any():
            assert time.monotonic() < deadline, f"at {t} s: not colour {want}"
            time.sleep(0.005)

    try:
        clock.gate.set()
        shown_at(0.0, 0)
        shown_at(0.1001, 1)
        shown_at(0.2001, 2)
        shown_at(0.9, 2)  # the pause: no frame is due
        time.sleep(0.1)
        assert _colour_index(bg.render(frame, alpha)) == 2 and bg.frames_published == 3
        shown_at(1.2001, 3)
        shown_at(1.2101, 0)  # round again: its first frame at 1.21 s
        shown_at(1.3101, 1)
    finally:
        bg.close()


def test_a_still_gif_background_is_decoded_once(tmp_path):
    """A GIF of one frame (a still picture saved as GIF) behind the person live: decoded and shown
    once, its thread done, the picture kept. It was decoded and fitted again at the GIF's 100 fps,
    a third of a core of a laptop's CPU for a picture that never changes."""
    from media import write_gif

    gif = write_gif(tmp_path / "still.gif", [(0, 0, 255)], [0], size=(120, 160))
    clock = FakeClock()
    bg = VideoBackground(gif, clock=clock)
    bg.prepare((60, 80))
    try:
        bg._thread.join(timeout=60)  # the time-out only guards against a hang
        assert not bg._thread.is_alive() and bg.frames_published == 1
        clock.advance(10.0)
        out = bg.render(np.zeros((60, 80, 3), np.uint8), np.zeros((60, 80), np.uint8))
        assert _colour_index(out) == 2 and out.min(axis=(0, 1))[2] > 240
    finally:
        bg.close()


def test_an_offline_video_background_is_chosen_by_time_and_loops(tmp_path):
    """``vbg process``: the background frame behind an output frame is the one on screen at that
    frame's time in its file, looped, whatever order the times come in (a --ray part starts
    anywhere), a GIF's pause kept. It was frame i behind output frame i: at another frame rate
    than the footage's, the background ran too fast or too slow."""
    from media import write_gif

    gif = write_gif(tmp_path / "pause.gif", GIF_COLOURS, GIF_TIMES_CS)
    bg = SyncVideoBackground(gif)
    bg.prepare((24, 32))
    frame, alpha = np.zeros((24, 32, 3), np.uint8), np.zeros((24, 32), np.uint8)
    try:
        for t, want in ((0.0, 0), (0.05, 0), (0.1, 1), (0.15, 1), (0.2, 2), (0.7, 2), (1.19, 2), (1.2, 3),
                        (1.21, 0), (1.25, 0), (1.31, 1), (0.15, 1), (2.0, 2), (1.21 * 7 + 0.11, 1), (0.0, 0)):
            bg.show_at(t)
            assert _colour_index(bg.render(frame, alpha)) == want, t
    finally:
        bg.close()


def test_an_offline_video_background_far_ahead_is_the_frame_a_whole_run_shows(tmp_path):
    """A --ray part that starts late in a long background video seeks to its frame rather than
    decoding up to it, and shows the same frame a run from the start shows."""
    from media import write_clip

    greys = [np.full((48, 64, 3), 20 + 5 * i, np.uint8) for i in range(40)]  # 4 s at 10 fps
    path = write_clip(tmp_path / "greys.mp4", greys, fps=10, crf=0)
    frame, alpha = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    whole = SyncVideoBackground(path)
    whole.prepare((48, 64))
    seen = {}
    try:
        for i in range(80):
            whole.show_at(i / 20)
            seen[i] = float(whole.render(frame, alpha).mean())
    finally:
        whole.close()
    assert all(abs(seen[2 * k] - (20 + 5 * k)) <= 2 and seen[2 * k + 1] == seen[2 * k] for k in range(40))
    part = SyncVideoBackground(path)
    part.prepare((48, 64))
    try:
        for i in (70, 71, 72, 10, 79):
            part.show_at(i / 20)
            assert float(part.render(frame, alpha).mean()) == seen[i], i
    finally:
        part.close()


def test_an_animated_png_or_webp_background_moves_live_and_in_vbg_process(tmp_path, vbg_records):
    """``--background party.png`` (an animated PNG) plays as a moving background, live and in
    ``vbg process``, and so does ``party.webp`` (an animated WebP, which FFmpeg cannot decode: its
    frames come from OpenCV). The WebP stood still on its first frame, with a line saying to save
    it as a GIF or a video. OpenCV 4.10 cannot read one and 4.11 reads only its first frame (it
    plays from 4.12): each is said in one line, with the fix. A still PNG is still an image, said
    nothing of."""
    from media import write_animation

    colours = GIF_COLOURS[:3]
    apng = write_animation(tmp_path / "party.png", "apng", colours)
    webp = write_animation(tmp_path / "party.webp", "webp", colours)
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), solid(48, 64, (255, 0, 0)))  # blue, in OpenCV's BGR
    frame, alpha = np.zeros((24, 32, 3), np.uint8), np.zeros((24, 32), np.uint8)
    live = background_from_options(str(apng), live=True)
    live.close()
    assert isinstance(live, VideoBackground) and live.fps == 10
    bg = background_from_options(str(apng), live=False)
    try:
        bg.prepare((24, 32))
        for t, want in ((0.0, 0), (0.1, 1), (0.2, 2), (0.3, 0)):
            bg.show_at(t)
            assert _colour_index(bg.render(frame, alpha)) == want, t
    finally:
        bg.close()
    if not opencv_reads_animations() and not hasattr(cv2, "imreadanimation"):  # 4.10: no animated WebP reader
        with pytest.raises(InputError) as e:
            background_from_options(str(webp), live=False)
        assert str(e.value) == (f"{webp} is an animated WebP, which OpenCV {cv2.__version__} cannot read: save it as "
                                "a GIF, an animated PNG or a video (or update opencv-python to 4.12 or later, which "
                                "plays it)")
        assert not vbg_records.records
        return
    if not opencv_reads_animations():  # 4.11: its first frame from bytes, the others only from a path
        for _ in range(2):  # said once
            bg = background_from_options(str(webp), live=False)
            assert isinstance(bg, ImageBackground)
            bg.prepare((24, 32))
            assert _colour_index(bg.render(frame, alpha)) == 0
        said = [r.getMessage() for r in vbg_records.records if r.name == "vbg"]
        assert said == [f"{webp} is an animated WebP: OpenCV {cv2.__version__} reads only its first frame, so it "
                        "stands still; update opencv-python to 4.12 or later to play it, or save it as a GIF or a "
                        "video"]
        return
    clock = FakeClock()
    for bg in (background_from_options(str(webp), live=True, clock=clock),
               background_from_options(str(webp), live=False)):
        assert isinstance(bg, AnimatedPictureBackground)
        with bg:
            bg.prepare((24, 32))
            for t, want in ((0.0, 0), (0.1, 1), (0.2, 2), (0.3, 0), (0.45, 1), (0.5, 2)):
                clock.advance(t - clock.now())
                bg.show_at(t)
                assert _colour_index(bg.render(frame, alpha)) == want, t
    picture = background_from_options(str(still), live=False)
    assert isinstance(picture, ImageBackground)
    picture.prepare((24, 32))
    assert _colour_index(picture.render(frame, alpha)) == 2
    assert not [r for r in vbg_records.records if r.name == "vbg"]


def _write_webp(path, colours, delays_ms, size=(48, 64)):
    """An animated WebP of solid ``colours`` (RGB) with its own delays, lossless, as OpenCV writes it."""
    anim = cv2.Animation()
    anim.frames = [np.full((*size, 3), c[::-1], np.uint8) for c in colours]
    anim.durations = list(delays_ms)
    anim.loop_count = 0
    assert cv2.imwriteanimation(str(path), anim, [cv2.IMWRITE_WEBP_QUALITY, 101])
    return path


needs_webp_animation = pytest.mark.skipif(not opencv_reads_animations(),
                                          reason=f"OpenCV {cv2.__version__} plays no animated WebP (4.12 does)")


@needs_webp_animation
def test_an_animated_webp_keeps_its_own_delays_and_goes_on_from_where_it_stood(tmp_path):
    """Live, each frame of an animated WebP stays its own delay: a second's pause on the green one;
    a delay of 5 ms is shown for 100 ms, as web browsers show it (such files are made for them);
    then round again. When no render comes for a while (the effect switched off, another background
    picked) it goes on from the frame it stood at, and a new output size shows the same frames. An
    odd size (kept in 4:2:0, which halves both) is shown whole."""
    webp = _write_webp(tmp_path / "pause.webp", GIF_COLOURS, [100, 1000, 50, 5], size=(47, 63))  # odd: I420 evens
    clock = FakeClock()
    frame, alpha = np.zeros((24, 32, 3), np.uint8), np.zeros((24, 32), np.uint8)
    with AnimatedPictureBackground(webp, clock=clock) as bg:
        assert bg.frame_count == 4 and bg.first_frame.shape == (47, 63, 3) and _colour_index(bg.first_frame) == 0
        bg.prepare((24, 32))

        def played(start_ms, stop_ms):  # a 100 fps camera's renders
            shown = []
            for ms in range(start_ms, stop_ms, 10):
                clock.advance(ms / 1000 - clock.now())
                shown.append(_colour_index(bg.render(frame, alpha)))
            return shown

        def due(ms):  # red 0.1 s, green 1 s, blue 0.05 s, white 0.1 s (not 5 ms), round again
            return bisect.bisect_right([100, 1100, 1150, 1250], ms % 1250)

        assert played(0, 3000) == [due(ms) for ms in range(0, 3000, 10)]
        clock.advance(30.0)  # no render for half a minute: a pause
        assert played(33000, 34000) == [due(ms) for ms in range(2990, 3990, 10)]  # on from the frame it stood at
        bg.prepare((36, 20))  # the camera's size changed: the animation starts again, at that size
        big = bg.render(np.zeros((36, 20, 3), np.uint8), np.zeros((36, 20), np.uint8))
        assert big.shape == (36, 20, 3) and _colour_index(big) == 0


@needs_webp_animation
def test_an_animated_webp_too_long_to_keep_stands_still_said_once(tmp_path, vbg_records, monkeypatch):
    """An animated WebP whose frames would take more memory than vbg keeps (a long one at a large
    size) stands still, its first frame, with one line (once a run) saying why and what to do."""
    from vbg.compositing import animated

    webp = _write_webp(tmp_path / "long.webp", GIF_COLOURS, [100] * 4)
    monkeypatch.setattr(animated, "KEEP_BYTES", 4 * 48 * 64 * 3 // 2 - 1)  # three of its four frames (I420)
    monkeypatch.setattr(animated, "_SAID", set())
    clock = FakeClock()
    frame, alpha = np.zeros((24, 32, 3), np.uint8), np.zeros((24, 32), np.uint8)
    for _ in range(2):
        with background_from_options(str(webp), live=True, clock=clock) as bg:
            bg.prepare((24, 32))
            for t in (0.0, 0.1, 0.2, 0.35):
                clock.advance(t)
                assert _colour_index(bg.render(frame, alpha)) == 0
    said = [r.getMessage() for r in vbg_records.records if r.name == "vbg"]
    assert said == [f"{webp} is an animated WebP of 4 frames at 64x48, more than vbg keeps in memory (0 MB): it stands "
                    "still (its first frame); for a moving background, save it as a video (.mp4)"]


@needs_webp_animation
def test_a_damaged_animated_webp_background_is_said_in_one_line(tmp_path, capfd):
    """An animated WebP cut short (a download stopped) is refused before the camera starts, in one
    line naming the file and the fix; OpenCV's own error lines stay out of the terminal."""
    whole = _write_webp(tmp_path / "whole.webp", GIF_COLOURS, [100] * 4).read_bytes()
    cut = tmp_path / "cut.webp"
    cut.write_bytes(whole[:len(whole) - 20])
    with pytest.raises(InputError) as e:
        background_from_options(str(cut), live=True)
    assert str(e.value) == (f"{cut} is a damaged animated WebP (it cannot be decoded): copy or download it again, "
                            "or save it as a GIF or a video")
    assert "imdecodeanimation" not in capfd.readouterr().err  # OpenCV's "[ERROR:0@...] ... can't read header"


def test_a_gif_is_told_moving_by_its_second_image_whatever_lies_between():
    """``images.gif_animated`` (the control page's test of a folder's or an uploaded GIF) walks the
    blocks: colour tables global and local, extensions of several data blocks (a comment, the
    loop count, a graphic control) before or between the images, GIF87a or 89a. One image: a
    picture; two: a video; one cut anywhere or a damaged block: never an exception. FFmpeg
    decodes as many frames as it counts."""
    import io

    import av
    from vbg.images import gif_animated

    def gif(version: bytes, images: int, *, global_table: bool, local_table: bool, extras: bytes) -> bytes:
        lsd = b"\x02\x00\x02\x00" + (b"\x80" if global_table else b"\x00") + b"\x00\x00"  # 2x2, 2 colours
        table = b"\xff\x00\x00\x00\x00\xff"
        image = (b"\x21\xf9\x04\x04\x0a\x00\x00\x00"  # a graphic control extension: 0.1 s
                 + b"\x2c\x00\x00\x00\x00\x02\x00\x02\x00" + (b"\x80" + table if local_table else b"\x00")
                 + b"\x02\x02\x84\x51\x00")  # LZW code size 2; one data block: four pixels of colour 0
        return (version + lsd + (table if global_table else b"") + extras
                + (extras + image) * images + b"\x3b")

    comment = b"\x21\xfe\x03abc\x05hello\x00"  # two data blocks
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for version in (b"GIF87a", b"GIF89a"):
        for local_table in (False, True):
            for extras in (b"", comment + loop):
                for images in (1, 2, 3):
                    data = gif(version, images, global_table=not local_table, local_table=local_table,
                               extras=extras)
                    assert gif_animated(io.BytesIO(data)) is (images > 1), (version, local_table, extras, images)
                    with av.open(io.BytesIO(data), format="gif") as c:
                        assert sum(1 for _ in c.decode(video=0)) == images
                    for cut in range(len(data)):
                        gif_animated(io.BytesIO(data[:cut]))  # any answer
                    assert not gif_animated(io.BytesIO(data[:30]))
    assert not gif_animated(io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(40)))


def test_video_background_in_the_compositor(clip):
    with Compositor((48, 64), VideoBackground(clip)) as comp:
        alpha = np.zeros((48, 64), np.uint8)
        alpha[:, 32:] = 255
        deadline = time.monotonic() + 60  # only a guard against a hang
        while time.monotonic() < deadline:
            out = comp.compose(solid(48, 64, FG), alpha)
            if out[:, :32].mean() > 10:
                break
            time.sleep(0.01)
        assert out[:, :32].mean() > 10 and (out[:, 32:] == FG).all()
    assert not any(t.name == "vbg-bg-video" for t in threading.enumerate())


def test_a_video_background_in_wide_pixels_keeps_its_shape(tmp_path):
    """A DV or HDV clip (wide pixels: here 120x90 stored, 160x90 shown) as the background: it
    covers the output as a player shows it, a round disc round; it was taken as 120x90 square
    pixels and covered the 160x90 output scaled by a third, its top and bottom cut off."""
    from media import write_clip

    shown = np.full((90, 160, 3), 40, np.uint8)
    cv2.circle(shown, (80, 45), 30, (230, 200, 60), -1)
    stored = cv2.resize(shown, (120, 90), interpolation=cv2.INTER_AREA)
    clip = write_clip(tmp_path / "dv.mp4", [stored] * 3, fps=10, sar=Fraction(4, 3))
    live = VideoBackground(clip)
    live.close()
    assert live.source_hw == (90, 160)
    bg = SyncVideoBackground(clip)
    bg.prepare((90, 160))
    try:
        out = bg.render(np.zeros((90, 160, 3), np.uint8), np.zeros((90, 160), np.uint8))
    finally:
        bg.close()
    disc = (np.abs(out.astype(int) - (230, 200, 60)).sum(axis=2) < 60)
    want = (np.abs(shown.astype(int) - (230, 200, 60)).sum(axis=2) < 60)
    assert (disc & want).sum() / (disc | want).sum() >= 0.9


def test_a_phone_video_background_shot_upright_is_shown_upright(tmp_path):
    """A phone's portrait video as the background: stored on its side (160x90, a display rotation
    of 90 degrees), it covers the output as a player shows it, upright (blue above red), live and in
    ``vbg process``. It was taken as stored: on its side, red and blue left and right."""
    from media import write_clip

    stored = np.zeros((90, 160, 3), np.uint8)
    stored[:, :80], stored[:, 80:] = (255, 0, 0), (0, 0, 255)  # turned a quarter anticlockwise: blue on top
    clip = write_clip(tmp_path / "portrait.mp4", [stored] * 3, fps=10, rotation=90)
    live = VideoBackground(clip)
    live.close()
    assert live.source_hw == (160, 90)
    # a landscape output (the clip enlarged to cover it) and a portrait one (shrunk in one pass)
    for bg, (h, w) in ((SyncVideoBackground(clip), (90, 160)), (VideoBackground(clip), (90, 160)),
                       (SyncVideoBackground(clip), (80, 45)), (VideoBackground(clip), (80, 45))):
        bg.prepare((h, w))
        try:
            deadline = time.monotonic() + 60  # the live one's thread: only a guard against a hang
            while not (out := bg.render(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))).any():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            bg.close()
        top, bottom = out[:h * 4 // 9].reshape(-1, 3).mean(axis=0), out[h * 5 // 9:].reshape(-1, 3).mean(axis=0)
        assert top[2] > 200 > 50 > top[0] and bottom[0] > 200 > 50 > bottom[2], (type(bg).__name__, h, top, bottom)


def test_video_background_unreadable_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        VideoBackground(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video at all" * 50)
    with pytest.raises(InputError) as e:
        VideoBackground(junk)
    assert "\n" not in str(e.value) and "junk.mp4" in str(e.value)


def test_camera_lost_card_dims_the_last_picture_and_says_so():
    last = np.full((120, 480, 3), 200, np.uint8)
    out = np.zeros_like(last)
    assert camera_lost_card(last, out) is out
    assert (last == 200).all()  # drawn into out only
    assert (out[80:] == 80).all()  # below the text: the picture at 40 %
    assert (out[:60] == 255).any()  # the white text line

