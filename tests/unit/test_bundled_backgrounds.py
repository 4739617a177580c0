"""The backgrounds that ship with vbg: `--background beach.jpg` works on a fresh install,
and never takes the place of a file the user has."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from vbg.compositing import (
    ImageBackground,
    background_from_options,
    bundled_backgrounds,
    cover_fit,
    describe_bundled,
    find_background,
)
from vbg.errors import InputError
from vbg.images import read_rgb, write_image

REPO = Path(__file__).resolve().parents[2]
BUNDLED = bundled_backgrounds()


def _render_background(out_hw: tuple[int, int], background: str) -> np.ndarray:
    bg = background_from_options(background=background)
    with bg:
        bg.prepare(out_hw)
        frame = np.zeros((*out_hw, 3), np.uint8)
        return bg.render(frame, np.zeros(out_hw, np.uint8)).copy()


def test_beach_and_office_ship_with_vbg():
    assert {"beach.jpg", "office.jpg"} <= set(BUNDLED)
    assert len(BUNDLED) >= 4
    assert list(BUNDLED) == sorted(BUNDLED)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_bundled_background_is_a_full_hd_picture_with_content(name):
    img = read_rgb(BUNDLED[name])
    assert img.shape == (1080, 1920, 3) and img.dtype == np.uint8
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert grey.std() > 15  # not one flat colour
    assert len(np.unique(grey)) > 80  # smooth shading, not a few flat shapes
    # colour, not grey: the channels differ somewhere
    assert np.abs(img[..., 0].astype(int) - img[..., 2]).mean() > 8
    assert BUNDLED[name].stat().st_size <= 350 * 1024


def test_describe_bundled_reports_size_and_bytes_from_the_headers():
    rows = describe_bundled()
    assert [r.name for r in rows] == list(BUNDLED)
    for name, width, height, nbytes in rows:
        assert (width, height) == (1920, 1080)
        assert nbytes == BUNDLED[name].stat().st_size


def test_a_bundled_name_finds_the_bundled_file_from_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    beach = str(BUNDLED["beach.jpg"])
    assert find_background("beach.jpg") == beach
    assert find_background("beach") == beach
    assert find_background("BEACH.JPG") == beach
    assert find_background("Office") == str(BUNDLED["office.jpg"])


def test_the_users_own_file_of_the_same_name_always_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = np.full((90, 160, 3), (200, 30, 90), np.uint8)
    write_image(tmp_path / "beach.jpg", mine)
    assert find_background("beach.jpg") == "beach.jpg"
    out = _render_background((90, 160), "beach.jpg")
    assert np.abs(out.astype(int) - mine).mean() < 3  # the user's magenta, not the sea

    # a bare stem that is a file of the user's wins too
    write_image(tmp_path / "office.png", mine)
    (tmp_path / "office").write_bytes((tmp_path / "office.png").read_bytes())
    assert find_background("office") == "office"


def test_a_home_relative_path_is_the_users_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    write_image(tmp_path / "studio.jpg", np.zeros((8, 8, 3), np.uint8))
    assert find_background("~/studio.jpg") == str(tmp_path / "studio.jpg")


def test_unknown_names_and_paths_come_back_unchanged_and_fail_as_missing_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for arg in ("sunset.jpg", "holiday/beach.jpg", "./beach.jpg", "~/beach.jpg", ""):
        assert find_background(arg) == arg
    with pytest.raises(InputError, match=r"holiday/beach\.jpg does not exist"):
        background_from_options(background="holiday/beach.jpg")


@pytest.mark.parametrize("out_hw", [(720, 1280), (480, 480)])
def test_background_option_by_name_shows_the_bundled_picture_cover_fitted(tmp_path, monkeypatch, out_hw):
    monkeypatch.chdir(tmp_path)
    bg = background_from_options(background="beach.jpg")
    assert isinstance(bg, ImageBackground)
    assert bg.path == BUNDLED["beach.jpg"]
    out = _render_background(out_hw, "beach.jpg")
    expected = cover_fit(read_rgb(BUNDLED["beach.jpg"]), out_hw)
    assert np.array_equal(out, expected)


def test_offline_options_resolve_bundled_names_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bg = background_from_options(background="studio", live=False)
    assert isinstance(bg, ImageBackground) and bg.path == BUNDLED["studio.jpg"]


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_backgrounds", REPO / "tools" / "make_backgrounds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_tool_renders_exactly_the_committed_backgrounds():
    tool = _load_tool()
    assert set(tool.SCENES) == set(BUNDLED)
    for name, path in BUNDLED.items():
        rendered = tool.render(name)
        committed = read_rgb(path)
        assert rendered.shape == committed.shape
        diff = np.abs(rendered.astype(np.int16) - committed).mean()
        assert diff < 2.0, f"{name}: mean difference {diff:.2f} from the committed file; rerun the tool"


def test_the_tool_writes_its_files_in_place_of_old_ones_atomically(tmp_path):
    tool = _load_tool()
    old = tmp_path / "studio.jpg"
    old.write_bytes(b"old")
    assert tool.main(["--out", str(tmp_path), "--only", "studio"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studio.jpg"]  # no temporary left behind
    first = old.read_bytes()
    assert np.abs(read_rgb(old).astype(np.int16) - read_rgb(BUNDLED["studio.jpg"])).mean() < 2.0
    assert tool.main(["--out", str(tmp_path), "--only", "studio.jpg"]) == 0
    assert old.read_bytes() == first  # a rerun gives the same file, byte for byte
