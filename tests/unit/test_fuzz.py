"""Fuzzing the parsers of user input: colours, sizes, skip values, configuration
(dicts and TOML text) and image files of random bytes. Whatever comes in, only
vbg's own errors (VbgError subclasses) come out, each one line."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vbg.compositing import parse_color
from vbg.config import SECTIONS, LiveConfig, apply, from_toml
from vbg.errors import VbgError
from vbg.images import read_rgb
from vbg.inference.scheduler import parse_skip
from vbg.config import parse_size

# VBG_FUZZ_EXAMPLES=20000 for a long search; the default keeps this file at a few seconds.
FUZZ = settings(max_examples=int(os.environ.get("VBG_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.binary(max_size=20), st.lists(st.integers(), max_size=4), st.tuples(st.integers(), st.integers()),
    st.tuples(st.integers(), st.integers(), st.integers()), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                            max_size=2),
)
size_text = st.one_of(
    st.from_regex(r"\s*-?[0-9]{0,6}\s*(x\s*-?[0-9]{0,6})?\s*", fullmatch=True),
    st.text(alphabet="0123456789xX ,.-+_٣", max_size=12),
)
colour_text = st.one_of(
    st.from_regex(r"#?[0-9a-fA-F]{0,7}", fullmatch=True),
    st.from_regex(r"rgb\(\s*-?[0-9]{0,4}\s*,\s*[0-9]{0,4}\s*(,\s*[0-9]{0,4})?\)", fullmatch=True),
    st.text(max_size=70),
)


def _only_vbg_errors(fn, *args):
    try:
        return fn(*args)
    except VbgError as e:
        assert "\n" not in str(e), str(e)
        return None


@FUZZ
@given(st.one_of(colour_text, anything))
def test_parse_color(value):
    rgb = _only_vbg_errors(parse_color, value)
    assert rgb is None or (len(rgb) == 3 and all(type(c) is int and 0 <= c <= 255 for c in rgb))


@FUZZ
@given(st.one_of(size_text, anything))
def test_parse_size(value):
    size = _only_vbg_errors(parse_size, value)
    if isinstance(size, int):
        assert 32 <= size <= 4096
    elif size is not None:
        assert len(size) == 2 and all(16 <= v <= 4096 for v in size)


@FUZZ
@given(st.one_of(st.from_regex(r"\s*(auto|AUTO|[0-9]{0,8})\s*", fullmatch=True), anything))
def test_parse_skip(value):
    skip = _only_vbg_errors(parse_skip, value)
    assert skip is None or skip == "auto" or 1 <= skip <= 30


# ---------------------------------------------------------------------------- configuration
FIELDS = {
    "source": ["source", "width", "height", "fps", "loop"],
    "model": ["model", "variant", "size", "default_size", "backend", "device", "strict_device", "gpu",
              "trt_precision", "threads", "minmax", "crop"],
    "temporal": ["skip", "smoothing", "upsample", "align"],
    "background": ["background", "color", "blur", "mirror", "feather", "threshold"],
    "output": ["vcam", "vcam_device", "vcam_backend", "record", "encoder", "overwrite", "preview", "frames", "duration",
               "always_on", "idle_after"],
    "control": ["control", "ui", "backgrounds_dir"],
}
toml_value = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.integers(min_value=-5, max_value=5000), max_size=3),
    st.sampled_from(["auto", "off", "selfie", "guided", "bilinear", "cpu", "#00ff00", "320x180", "blue", "3", "0"]),
)
section = st.one_of(st.sampled_from(list(FIELDS)), st.text(max_size=8))
settings_dict = st.dictionaries(
    section,
    st.one_of(
        st.dictionaries(st.one_of(st.sampled_from([f for names in FIELDS.values() for f in names]), st.text(max_size=8)), toml_value,
                        max_size=4),
        toml_value,
    ),
    max_size=3,
)


def test_the_fuzzed_fields_are_the_real_ones():
    from dataclasses import fields

    assert set(FIELDS) == set(SECTIONS)
    for name, known in FIELDS.items():
        assert {f.name for f in fields(type(getattr(LiveConfig(), name)))} == set(known)


@FUZZ
@given(settings_dict)
def test_apply_settings(updates):
    cfg = _only_vbg_errors(apply, LiveConfig(), updates)
    if cfg is not None:  # what is accepted is what the pipeline can use
        assert isinstance(cfg, LiveConfig)
        for v in (cfg.source.fps, cfg.output.duration, cfg.temporal.smoothing, cfg.background.feather):
            assert v is None or math.isfinite(v)


def _toml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v) + '"'


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() and c.isascii() or c in "_-" for c in k) else _toml_scalar(k)


def to_toml(d: dict) -> str:
    lines = [f"{_toml_key(k)} = {_toml_scalar(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{_toml_key(k)}]")
            lines.extend(f"{_toml_key(kk)} = {_toml_scalar(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(settings_dict)
def test_toml_files_made_from_settings(scratch, updates):
    path = scratch / "fuzz.toml"
    path.write_text(to_toml(updates), encoding="utf-8")
    _only_vbg_errors(from_toml, path)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_toml_files_of_random_text(scratch, content):
    path = scratch / "random.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    _only_vbg_errors(from_toml, path)


# ---------------------------------------------------------------------------- images
SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"GIF89a",
              b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"II*\x00", b"MM\x00*",
              b"P6\n", b"P5 12 8\n255\n", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
              b"\x00\x00\x00\x14ftypavif\x00\x00\x00\x00avif"]


def _small_images() -> tuple[list[bytes], list[bytes]]:
    """Small real pictures of every kind vbg reads, and the moving ones (a GIF of two frames, read
    by OpenCV or, before OpenCV 4.11, by FFmpeg; an animated PNG)."""
    import cv2
    from media import write_animation, write_gif

    rgb = (np.arange(12 * 16 * 3) % 251).astype(np.uint8).reshape(12, 16, 3)
    made = [cv2.imencode(ext, rgb)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm")]
    made.append((Path(__file__).parent.parent / "data" / "phone.heic").read_bytes())  # a phone's tiled HEIC
    with tempfile.TemporaryDirectory() as d:
        moving = [write_gif(Path(d) / "a.gif", [(255, 0, 0), (0, 0, 255)], [0, 10], size=(12, 16)).read_bytes(),
                  write_animation(Path(d) / "a.png", "apng", [(255, 0, 0), (0, 255, 0)], size=(12, 16)).read_bytes()]
    return [*made, moving[0]], moving


REAL, MOVING = _small_images()


def _damaged(raw: bytes, data) -> bytes:
    """``raw`` with a few bytes flipped (up to 4), cut anywhere."""
    damaged = bytearray(raw)
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    return bytes(damaged[:data.draw(st.integers(1, len(damaged)))])


@FUZZ
@given(st.sampled_from(SIGNATURES), st.binary(max_size=300))
def test_read_rgb_on_random_bytes(scratch, signature, tail):
    path = scratch / "random.img"
    path.write_bytes(signature + tail)
    img = _only_vbg_errors(read_rgb, path)
    assert img is None or (img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3)


@FUZZ
@given(st.sampled_from(range(len(REAL))), st.data())
def test_read_rgb_on_damaged_real_images(scratch, which, data):
    path = scratch / "damaged.img"
    path.write_bytes(_damaged(REAL[which], data))
    img = _only_vbg_errors(read_rgb, path)
    assert img is None or (img.dtype == np.uint8 and img.shape[2] == 3)


@FUZZ
@given(st.sampled_from(range(len(MOVING))), st.data())
def test_an_uploaded_moving_picture_damaged_is_one_line(scratch, which, data):
    """A GIF of two frames or an animated PNG, a few bytes flipped and cut anywhere, sent to the
    control page: kept (a picture or a video) or refused in one line, nothing left on disk; and
    a folder's listing tells whether the file moves without failing."""
    from vbg.control.library import Library
    from vbg.control.uploads import VideoUploads
    from vbg.images import file_moves

    raw = _damaged(MOVING[which], data)
    library = Library(scratch / "none", uploads=VideoUploads(scratch / "uploads"))
    try:
        bid = _only_vbg_errors(library.add_upload, raw, "sent")
        on_disk = [p.name for p in (scratch / "uploads").glob("run-*/*") if not p.name.startswith(".")]
        video = bid is not None and library.video(bid) is not None
        assert on_disk == ([f"1.{'gif' if which == 0 else 'apng'}"] if video else []), on_disk
    finally:
        library.close()
    assert not list((scratch / "uploads").glob("run-*")), "the run's end left its uploads folder"
    with open(scratch / "random.img", "wb+") as f:
        f.write(raw)
        f.seek(0)
        file_moves(f)  # as a folder's listing asks it: any answer, never an exception


def test_a_tiff_with_no_page_is_one_line(tmp_path):
    """A TIFF header whose first page offset is 0 (what the fuzzer above found): a damaged-TIFF
    InputError, not a TypeError from the size reader."""
    from vbg.errors import InputError
    from vbg.images import read_rgb

    path = tmp_path / "nopage.tif"
    path.write_bytes(b"II*\x00\x00\x00\x00\x00" + bytes(64))
    with pytest.raises(InputError, match="damaged TIFF"):
        read_rgb(path)
