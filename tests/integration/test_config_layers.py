"""Where each setting comes from, through the CLI's own parsing: flags > VBG_* environment >
--config FILE > the default config file > built-in defaults; vbg config path/show/edit."""

from __future__ import annotations

import itertools
import sys
from vbg.config import tomllib
from pathlib import Path

import pytest

from conftest import run_vbg
from vbg import cli
from vbg.errors import ConfigError

LAYERS = ("flags", "environment", "config", "default", "built-in")  # highest first
SIZES = {"flags": 320, "environment": 288, "config": 224, "default": 192}  # each layer's own --size


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty config home of this test's own: the default file is home/vbg/config.toml."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "vbg" / "config.toml"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _argv_with(layers, tmp_path, home, monkeypatch, command) -> list[str]:
    """The command line (and environment, files) that set --size in each of ``layers``."""
    argv = ["process", "in.mp4", "-o", "out.mp4"] if command == "process" else ["--source", "demo"]
    for layer in layers:
        size = SIZES.get(layer)
        if layer == "flags":
            argv += ["--size", str(size)]
        elif layer == "environment":
            monkeypatch.setenv("VBG_SIZE", str(size))
        elif layer == "config":
            argv += ["--config", str(_write(tmp_path / "profile.toml", f"[model]\nsize = {size}\n"))]
        elif layer == "default":
            _write(home, f"[model]\nsize = {size}\n")
    return argv


def _config(argv, command):
    if command == "process":
        return cli.process_config(cli.build_parser().parse_args(argv))
    return cli.live_config(cli.build_live_parser().parse_args(argv))


@pytest.mark.parametrize("command", ["live", "process"])
@pytest.mark.parametrize("high, low", list(itertools.combinations(LAYERS, 2)))
def test_each_layer_wins_over_every_layer_below_it(tmp_path, home, monkeypatch, command, high, low):
    argv = _argv_with([high, low], tmp_path, home, monkeypatch, command)
    cfg = _config(argv, command)
    assert cfg.model.size == SIZES[high]
    # and with the higher layer gone, the lower one is what is left
    monkeypatch.delenv("VBG_SIZE", raising=False)
    home.unlink(missing_ok=True)
    argv = _argv_with([low], tmp_path, home, monkeypatch, command)
    expected = SIZES.get(low)  # built in: no size asked, the command's own default
    assert _config(argv, command).model.size == expected


def test_a_background_picked_higher_up_replaces_the_one_picked_below(tmp_path, home, monkeypatch):
    _write(home, '[background]\nbackground = "beach.jpg"\nfeather = 2.0\n')
    monkeypatch.setenv("VBG_COLOR", "chroma")
    cfg = _config(["--blur", "2"], "live")
    assert (cfg.background.background, cfg.background.color, cfg.background.blur) == (None, None, 2.0)
    assert cfg.background.feather == 2.0  # the file's other settings stay
    cfg = _config([], "live")
    assert (cfg.background.background, cfg.background.color) == (None, "chroma")
    # two picked in one layer is still a conflict, reported at start
    monkeypatch.setenv("VBG_BLUR", "1")
    proc = run_vbg("--source", "demo", "--no-vcam", "--frames", "1")
    assert proc.returncode == 2 and "--color and --blur were both given: pick one background" in proc.stderr


def test_the_default_file_is_shared_each_command_taking_its_own_keys(tmp_path, home):
    _write(home, '[source]\nsource = "demo"\n[model]\nsize = 192\n[temporal]\nskip = 2\nwindow = 3\n'
                 '[output]\nvcam_device = "/dev/video9"\nquality = "best"\n')
    live = _config([], "live")
    assert (live.source.source, live.model.size, live.temporal.skip, live.output.vcam_device) == ("demo", 192, "2",
                                                                                                  "/dev/video9")
    proc = _config(["process", "in.mp4", "-o", "out.mp4"], "process")
    assert (proc.model.size, proc.temporal.window, proc.quality) == (192, 3, "best")
    # --no-default-config: not read at all
    assert _config(["--no-default-config"], "live").model.size is None
    assert _config(["process", "in.mp4", "-o", "o.mp4", "--no-default-config"], "process").quality == "balanced"


def test_a_key_neither_command_has_is_refused_naming_the_default_file(home):
    _write(home, "[model]\nmodle = 'selfie'\n")
    with pytest.raises(ConfigError) as err:
        _config([], "live")
    assert str(err.value).startswith(f"the default config {home}: unknown setting [model] modle: known are ")


@pytest.mark.parametrize("env, needle", [
    ({"VBG_SIZE": "huge"}, "vbg: error: VBG_SIZE 'huge' is not a size"),
    ({"VBG_DEVICE": "gpu"}, "vbg: error: VBG_DEVICE 'gpu' is not known: use auto, cpu, cuda or tensorrt"),
    ({"VBG_VCAM": "nope"}, "vbg: error: VBG_VCAM 'nope' is not true or false: use VBG_VCAM=1 or VBG_VCAM=0"),
])
@pytest.mark.parametrize("command", [["--source", "demo", "--no-vcam"], ["process", "x.mp4", "-o", "y.mp4"],
                                     ["config", "show"]])
def test_a_bad_variable_is_one_line_and_exit_2_before_anything_opens(tmp_path, env, needle, command):
    """Checked for every command, also one that does not use the setting (vbg process and VBG_VCAM)."""
    proc = run_vbg(*command, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and errors[0].startswith(needle) and "Traceback" not in proc.stderr, proc.stderr


def test_config_show_prints_what_is_in_effect_and_reads_back_as_the_same_config(tmp_path, home, monkeypatch,
                                                                              capsys, vbg_logging):
    _write(home, '[model]\nsize = 192\nmodel = "selfie"\n[background]\nmirror = true\n')
    profile = _write(tmp_path / "p.toml", "[model]\nsize = 224\n")
    monkeypatch.setenv("VBG_FEATHER", "3")
    assert cli.main(["config", "show", "--config", str(profile)]) == 0
    out = capsys.readouterr().out
    lines = {ln.split("=")[0].strip(): ln for ln in out.splitlines() if "=" in ln and not ln.startswith("#")}
    assert lines["size"].endswith(f"# {profile}") and lines["model"].endswith(f"# {home}")
    assert lines["feather"].endswith("# VBG_FEATHER") and lines["skip"].endswith("# built-in default")
    shown = _write(tmp_path / "shown.toml", out)
    monkeypatch.delenv("VBG_FEATHER")
    again = _config(["--config", str(shown), "--no-default-config"], "live")
    monkeypatch.setenv("VBG_FEATHER", "3")
    assert again == _config(["--config", str(profile)], "live")
    assert tomllib.loads(out)["model"]["size"] == 224


def test_config_path_prints_the_path_and_says_whether_it_is_there(home, capsys, vbg_logging):
    assert cli.main(["config", "path"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{home}\n" and "does not exist yet: vbg config edit makes one" in err
    _write(home, "")
    assert cli.main(["config", "path"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{home}\n" and "it exists" in err


EDITOR = """\
import sys
with open(sys.argv[1], "a", encoding="utf-8") as f:
    f.write({text!r})
"""


def _editor(tmp_path, text: str) -> str:
    script = _write(tmp_path / "editor.py", EDITOR.format(text=text))
    return f"{sys.executable} {script}"


def test_config_edit_makes_the_file_opens_the_editor_and_checks_the_result(tmp_path, home):
    import os

    proc = run_vbg("config", "edit", env={"VISUAL": _editor(tmp_path, "\n[extra]\n"), "EDITOR": "false"})
    assert proc.returncode == 2, proc.stderr
    assert f"vbg: made {home} from the defaults, every setting commented out" in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert errors == [f"vbg: error: the default config {home}: unknown config section [extra]: use background, "
                      "control, model, output, source, temporal"], proc.stderr
    assert "vbg config edit opens it again" in proc.stderr
    mask = os.umask(0o022)
    os.umask(mask)
    assert home.stat().st_mode & 0o777 == 0o666 & ~mask  # a config, not a secret: the usual mode
    assert not [p for p in home.parent.iterdir() if p != home]  # no temporary left beside it


def test_config_edit_reports_a_bad_value_and_keeps_an_existing_file(tmp_path, home):
    _write(home, "[model]\nsize = 256\n")
    env = {"VISUAL": _editor(tmp_path, "gpu = 300\n")}
    proc = run_vbg("config", "edit", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "made" not in proc.stderr and home.read_text().startswith("[model]\nsize = 256\n")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert errors == [f"vbg: error: {home}: [model] gpu = 300 is out of range: use 0..255 (the GPU's index, as vbg "
                      "doctor lists them)"]  # once, though both commands read it
    _write(home, "[model]\nsize = 256\n")
    proc = run_vbg("config", "edit", env={**env, "VISUAL": _editor(tmp_path, "gpu = 1\n")})
    assert proc.returncode == 0 and "every setting is valid" in proc.stderr, proc.stderr
    assert _config([], "live").model.gpu == 1


def test_a_choice_a_file_gives_is_checked_as_a_flags_is(tmp_path, home):
    """A value a setting does not know, in a config file: refused naming the file and the key, as
    the same value as a flag or a VBG_ variable is. ``vbg config edit`` said "every setting is
    valid", ``vbg service install`` installed it, and the filter then failed naming a flag the user
    never typed (``--device 'gpu'``), or, for ``crop = "on"``, ran with the person crop off."""
    bad = _write(tmp_path / "gpu.toml", '[model]\ndevice = "gpu"\n')
    proc = run_vbg("--config", str(bad), "--source", "demo", "--no-vcam", "--frames", "1", timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"vbg: error: --config {bad}: [model] device = 'gpu' is not known: use auto, cpu, cuda or tensorrt"]
    _write(home, "[model]\nsize = 256\n")
    proc = run_vbg("config", "edit", env={"VISUAL": _editor(tmp_path, 'crop = "on"\n')})
    assert proc.returncode == 2 and "every setting is valid" not in proc.stderr, proc.stderr
    assert f"vbg: error: the default config {home}: [model] crop = 'on' is not known: use auto or off" in proc.stderr
    home.unlink()
    with pytest.raises(ConfigError, match=r"\[output\] quality = 'max' is not known: use fast, balanced or best"):
        _config(["process", "in.mp4", "-o", "out.mp4", "--config",
                 str(_write(tmp_path / "q.toml", '[output]\nquality = "max"\n'))], "process")


@pytest.mark.parametrize("text,said", [
    ("[temporal]\nskip = 0\n", "[temporal] skip = 0 is out of range: use auto or a whole number 1..30"),
    ('[temporal]\nskip = "often"\n', "[temporal] skip = 'often' is not valid: use auto or a whole number 1..30"),
    ("[model]\nsize = 17\n", "[model] size = 17 is out of range: use 32..4096 pixels"),
])
def test_a_bad_size_or_skip_in_a_file_is_named_as_the_file_writes_it(tmp_path, home, text, said):
    """The two settings a flag parses from text (``--size 256`` or ``144x256``, ``--skip auto``)
    are named as the file writes them, and the file, when a file gives a bad one: the line named
    ``--skip`` and ``--size``, flags the user never typed."""
    bad = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as e:
        _config(["--config", str(bad)], "live")
    assert str(e.value) == f"--config {bad}: {said}"
    _write(home, text)
    with pytest.raises(ConfigError) as e:
        _config([], "live")
    assert str(e.value) == f"the default config {home}: {said}"


def test_a_setting_above_every_section_names_the_section_it_belongs_in(tmp_path, home):
    """``blur = 0.5`` at a file's top (no ``[background]`` above it): one line naming the section to
    put it under. It read "unknown config section [blur]", and ``model = "selfie"`` "[model] must
    be a table of settings"."""
    loose = _write(tmp_path / "loose.toml", "blur = 0.5\n")
    with pytest.raises(ConfigError, match=r"loose.toml: blur = 0.5 is above every \[section\]: put it under "
                                          r"\[background\]$"):
        _config(["--config", str(loose)], "live")
    _write(home, 'model = "selfie"\n')
    with pytest.raises(ConfigError, match=r"^the default config .*: model = 'selfie' is above every \[section\]: "
                                          r"put it under \[model\]$"):
        _config(["process", "in.mp4", "-o", "out.mp4"], "process")


def test_config_edit_where_no_config_can_be_made_is_one_line(tmp_path, home, monkeypatch):
    """XDG_CONFIG_HOME naming a file (or a read-only home): one line naming the folder and the
    two ways out, exit 10, no editor started. It was an OSError traceback."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_write(tmp_path / "notes.txt", "mine\n")))
    proc = run_vbg("config", "edit", env={"VISUAL": _editor(tmp_path, "gpu = 1\n")})
    assert proc.returncode == 10 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        f"vbg: error: {tmp_path / 'notes.txt' / 'vbg' / 'config.toml'}: cannot write there (Not a directory: "
        f"'{tmp_path / 'notes.txt' / 'vbg'}'): set XDG_CONFIG_HOME to a folder you can write to, or keep your "
        "settings in a file of your own and pass it with --config FILE"]
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_bad_default_file_stops_the_live_filter_at_once_naming_the_file(home):
    _write(home, "[model\n")
    proc = run_vbg("--source", "demo", "--no-vcam", "--frames", "1", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"vbg: error: the default config {home} is not valid TOML" in proc.stderr
    proc = run_vbg("config", "show", "--no-default-config", timeout=120)
    assert proc.returncode == 0 and "not read: --no-default-config" in proc.stdout
