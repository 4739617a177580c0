"""Where the default config file is, the VBG_* variables derived from the schema, the template."""

from __future__ import annotations

import dataclasses
from vbg.config import tomllib
from pathlib import Path

import pytest

from vbg import config as C
from vbg.errors import ConfigError
from vbg.userconfig import OTHER_ENV, default_path, editor_command, env_settings, env_value, template

ROOT = Path(__file__).parents[2]
HOME = Path("/home/ada")


@pytest.mark.parametrize("platform, environ, expected", [
    ("linux", {}, HOME / ".config/vbg/config.toml"),
    ("linux", {"XDG_CONFIG_HOME": "/xdg"}, Path("/xdg/vbg/config.toml")),
    ("linux", {"XDG_CONFIG_HOME": "relative/dir"}, HOME / ".config/vbg/config.toml"),  # the XDG spec: ignored
    ("freebsd13", {"XDG_CONFIG_HOME": "/xdg"}, Path("/xdg/vbg/config.toml")),
    ("darwin", {"XDG_CONFIG_HOME": "/xdg"}, HOME / "Library/Application Support/vbg/config.toml"),
    ("win32", {"APPDATA": "/roaming"}, Path("/roaming/vbg/config.toml")),
    ("win32", {}, HOME / "AppData/Roaming/vbg/config.toml"),
])
def test_the_default_file_is_where_each_platform_keeps_settings(platform, environ, expected):
    assert default_path(platform, environ, HOME) == expected


def test_every_option_with_a_flag_has_its_variable_and_no_other_vbg_variable_is_taken():
    names = env_settings()
    for var in ("VBG_BACKGROUND", "VBG_MODEL", "VBG_DEVICE", "VBG_SIZE", "VBG_BLUR", "VBG_VCAM_DEVICE",
                "VBG_SOURCE", "VBG_FPS", "VBG_VCAM", "VBG_QUALITY", "VBG_WINDOW"):
        assert var in names
    assert "VBG_DEFAULT_SIZE" not in names and "VBG_MODE" not in names  # config keys without a flag
    assert not set(names) & set(OTHER_ENV)


@pytest.mark.parametrize("var, text, value", [
    ("VBG_SIZE", "320", 320), ("VBG_SIZE", "144x256", (144, 256)), ("VBG_SKIP", "AUTO", "auto"),
    ("VBG_SKIP", "3", 3), ("VBG_MIRROR", "yes", True), ("VBG_VCAM", "0", False), ("VBG_VCAM", "Off", False),
    ("VBG_GPU", " 1 ", 1), ("VBG_BLUR", "0.5", 0.5), ("VBG_FPS", "30", 30.0), ("VBG_DEVICE", "cpu", "cpu"),
    ("VBG_COLOR", "#00b140", "#00b140"), ("VBG_SOURCE", "/dev/video2", "/dev/video2"),
])
def test_a_variable_gives_the_value_its_flag_would(var, text, value):
    assert env_value(var, env_settings()[var], text) == value


@pytest.mark.parametrize("var, text, needle", [
    ("VBG_SIZE", "big", "VBG_SIZE 'big' is not a size: give the long side"),
    ("VBG_SIZE", "8", "VBG_SIZE 8 is out of range: use 32..4096 pixels"),
    ("VBG_SKIP", "0", "VBG_SKIP '0' is out of range: use auto or a whole number 1..30"),
    ("VBG_MIRROR", "maybe", "VBG_MIRROR 'maybe' is not true or false: use VBG_MIRROR=1 or VBG_MIRROR=0"),
    ("VBG_GPU", "1.5", "VBG_GPU '1.5' is not a whole number"),
    ("VBG_GPU", "300", "VBG_GPU 300 is out of range: use 0..255"),
    ("VBG_BLUR", "inf", "VBG_BLUR 'inf' is not a number"),
    ("VBG_BLUR", "9", "VBG_BLUR 9.0 is out of range: use 0.1..5"),
    ("VBG_DEVICE", "gpu", "VBG_DEVICE 'gpu' is not known: use auto, cpu, cuda or tensorrt"),
    ("VBG_COLOR", "blurple", "VBG_COLOR 'blurple' is not a colour"),
])
def test_a_bad_value_names_the_variable_and_what_it_takes(var, text, needle):
    with pytest.raises(ConfigError) as err:
        env_value(var, env_settings()[var], text)
    assert needle in str(err.value)


def test_the_template_is_configs_default_toml_with_every_setting_commented_out():
    shipped = ROOT / "vbg/assets/default.toml"
    assert shipped.read_bytes() == (ROOT / "configs/default.toml").read_bytes()  # the copy the wheel carries
    text = template(shipped)
    data = tomllib.loads(text)
    assert set(data) == set(C.sections(C.LiveConfig())) and not any(data.values())  # sections, no setting
    every = {f.name for s in C.sections(C.LiveConfig()).values() for f in dataclasses.fields(s) if C.flag_of(f)}
    commented = {ln[2:].split("=")[0].strip() for ln in text.splitlines() if ln.startswith("# ") and " = " in ln}
    assert every <= commented  # each option is there to uncomment


def test_the_editor_is_visual_then_editor_then_one_that_is_installed():
    none = lambda name: None  # noqa: E731
    assert editor_command({"VISUAL": "code --wait", "EDITOR": "vi"}, "linux", none) == ["code", "--wait"]
    assert editor_command({"EDITOR": "'/opt/my editor/ed'"}, "linux", none) == ["/opt/my editor/ed"]
    assert editor_command({}, "linux", lambda n: f"/usr/bin/{n}" if n == "nano" else None) == ["/usr/bin/nano"]
    assert editor_command({}, "linux", none) is None
    assert editor_command({}, "win32", none) == ["notepad"]
    assert editor_command({}, "darwin", none) == ["open", "-W", "-t"]
