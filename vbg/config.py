"""Configuration: one frozen dataclass per stage, composed into :class:`LiveConfig`.

Each setting is declared once, as a field: its default, and in its metadata
(:func:`setting`) its flag, help, range (``vbg.ranges``) and choices. The CLI
builds its options from these declarations, and the TOML loader checks a
file's keys against the same ones: TOML ``[section] field = value``, CLI
``--field-name``; the CLI wins. A bad key or value raises :class:`ConfigError`
naming it. The pure parsers of the values users type (``parse_size``,
``parse_skip``, ``parse_color``) live here too. This module imports no stage:
the stages import it, and checking a config opens and builds nothing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import ranges as R
from .errors import ConfigError, VbgError
from .ranges import ENCODERS, GPU, SIZE, THREADS, UPSAMPLE_MODES, out_of_range

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# --- The pure parsers: a value as the user typed it (flag or TOML) -> the value vbg uses.
# Stages call them too (SkipGovernor, ColorBackground); none of them opens anything.


def parse_size(text: str | int | tuple[int, int] | None, *, option: str = "--size") -> int | tuple[int, int] | None:
    """``"256"`` -> 256 (long side), ``"320x180"`` -> (320, 180) as (H, W); ``option`` names it in errors."""
    if text is None or isinstance(text, int | tuple):
        value = text
    else:
        s = str(text).strip().lower()
        try:
            if "x" in s:
                h, w = s.split("x", 1)
                value = (int(h), int(w))
            else:
                value = int(s)
        except ValueError:
            raise ConfigError(
                f"{option} {text!r} is not a size: give the long side in pixels (e.g. 256) or HxW (e.g. 144x256)"
            ) from None
    if isinstance(value, int):
        SIZE.check(option, value)
    elif isinstance(value, tuple):
        if len(value) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in value):
            raise ConfigError(f"{option} {text!r} is out of range: H and W must be 16..4096 pixels")
    return value


SKIP_MAX = 30
_SKIP_HELP = f"use auto or a whole number 1..{SKIP_MAX}"


def _show(value) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def parse_skip(text, *, option: str = "--skip") -> int | str:
    """``"auto"`` (any case) or an int 1..30, from a CLI/TOML value; else ``ConfigError`` naming ``option``."""
    if isinstance(text, bool):
        raise ConfigError(f"{option} {_show(text)} is not valid: {_SKIP_HELP}")
    if isinstance(text, int):
        value = text
    elif isinstance(text, str):
        s = text.strip()
        if s.lower() == "auto":
            return "auto"
        # ASCII digits only: int() would also take "٣", "1_0" or " +3".
        if not (s.isascii() and s.isdigit()) or len(s) > 6:
            raise ConfigError(f"{option} {_show(text)} is not valid: {_SKIP_HELP}")
        value = int(s)
    else:
        raise ConfigError(f"{option} {_show(text)} is not valid: {_SKIP_HELP}")
    if not 1 <= value <= SKIP_MAX:
        raise ConfigError(f"{option} {_show(text)} is out of range: {_SKIP_HELP}")
    return value


# Colour values for --color: CSS-like names, hex and rgb(r,g,b), always RGB. The chroma
# green is the broadcast "chroma key green" (Pantone 354 C), which keying software
# expects more readily than pure #00ff00.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "lime": (0, 255, 0),
    "blue": (0, 0, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "darkgray": (64, 64, 64),
    "darkgrey": (64, 64, 64),
    "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
    "navy": (0, 0, 128),
    "teal": (0, 128, 128),
    "chroma": (0, 177, 64),
    "greenscreen": (0, 177, 64),
    "bluescreen": (0, 71, 187),
}

# ASCII only: Python's int() also accepts other scripts' digits and "_".
_HEX6 = re.compile(r"#?([0-9a-f]{6})")
_HEX3 = re.compile(r"#([0-9a-f]{3})")
_RGB = re.compile(r"rgb\(\s*([0-9]{1,3})\s*,\s*([0-9]{1,3})\s*,\s*([0-9]{1,3})\s*\)")

COLORS_ACCEPTED = ("a name (black, white, gray, green, chroma, ...), #RRGGBB, RRGGBB, #RGB or rgb(R,G,B) "
                   "with R,G,B in 0-255")


def parse_color(text: str, *, option: str = "--color") -> tuple[int, int, int]:
    """``text`` as an (r, g, b) triple of ints in 0..255; :class:`ConfigError` otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"{option} must be text, not {type(text).__name__}: use {COLORS_ACCEPTED}")
    key = text.strip().lower().replace(" ", "") if len(text) <= 64 else ""
    if key in NAMED_COLORS:
        return NAMED_COLORS[key]
    if m := _HEX6.fullmatch(key):
        v = m.group(1)
        return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)
    if m := _HEX3.fullmatch(key):
        return tuple(int(c * 2, 16) for c in m.group(1))  # type: ignore[return-value]
    if m := _RGB.fullmatch(key):
        rgb = tuple(int(g) for g in m.groups())
        if all(c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise ConfigError(f"{option} {shown!r} is not a colour: use {COLORS_ACCEPTED}")


def check_encoder(encoder: str) -> str:
    """``encoder`` when it is one of ``ENCODERS``, else ``ConfigError``."""
    if encoder not in ENCODERS:
        raise ConfigError(f"encoder {encoder!r} is not known: use {', '.join(ENCODERS[:-1])} or {ENCODERS[-1]}")
    return encoder


# --- The sections. Each setting is declared once, here: its default, and in its field's
# metadata (``setting``) its flag, help, range and choices. The CLI builds its options from
# these (``vbg.cli``), the TOML loader checks a file's keys against the same declarations.


def setting(default: Any = None, help: str = "", *, flag: str | None = None, metavar: str | None = None,
            range: R.Range | None = None, choices: tuple | None = None, const: Any = None):
    """A config field with ``default`` and its declaration: ``flag`` (default ``--field-name``;
    ``""``: a config key without a flag; ``--no-NAME`` on a bool: a flag that turns it off),
    ``help`` (``{models}`` and ``{size_default}`` are filled in by the CLI), ``metavar``,
    ``range`` (``vbg.ranges``: checked for the flag and the config key alike), ``choices``
    (argparse's, and the config check's), ``const`` (the value of the bare flag: ``--blur``)."""
    meta = {"flag": flag, "help": help, "metavar": metavar, "choices": choices, "const": const}
    if range is not None:
        meta["range"] = range
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str | None:
    """The command-line flag of field ``f`` (None: a config key only)."""
    flag = f.metadata.get("flag")
    if flag is None and "help" in f.metadata:
        return "--" + f.name.replace("_", "-")
    return flag or None


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """The model: which one, at what size, on which device (``[model]``; every command)."""

    model: str = setting(
        "auto", "{models}, or a .onnx/.safetensors/.pth/.bin file (default: auto = rmbg-1.4 when it is cached "
        "or can be downloaded, else the bundled selfie model, with a note why)", metavar="NAME|PATH")
    variant: str = setting(
        "fp32", "which RMBG-1.4 file to fetch: fp32/fp16/int8 ONNX, or 'export' the safetensors weights to a "
        "fixed-shape ONNX per size (needs vbg[torch]) (default: fp32)", choices=R.VARIANTS)
    size: int | tuple[int, int] | None = setting(  # what the user asked for (parse_size); None: default_size
        None, "inference size: long side N (aspect kept, multiple of 32) or HxW; {size_default}", metavar="N|HxW")
    default_size: int | None = setting(  # long side for models that take any size; None: the reference size
        None, flag="", range=SIZE)
    backend: str = setting("onnx", "inference backend (default: onnx)", choices=R.BACKENDS)
    device: str = setting(
        "auto", "execution provider; auto = CUDA when an NVIDIA GPU is present, else CPU", choices=R.DEVICES)
    strict_device: bool = setting(
        False, "fail instead of falling back to the CPU when the asked-for provider cannot load")
    gpu: int = setting(  # CUDA/TensorRT/torch (and an NVIDIA encoder)
        0, "which NVIDIA GPU runs the model (and an NVIDIA encoder): its index as vbg doctor lists them "
        "(default 0)", metavar="N", range=GPU)
    trt_precision: str = setting(
        "fp16", "--device tensorrt: let TensorRT use half-precision kernels where they are faster (fp16, the "
        "default) or keep fp32; each has its own cached engine", choices=R.TRT_PRECISIONS)
    threads: int | None = setting(  # intra-op threads; None = all cores, no spinning
        None, "inference threads (default: all cores)", metavar="N", range=THREADS)
    minmax: bool = setting(
        False, "rescale every mask to its own min..max, as the RMBG-1.4 reference does (off: it flickers on video)")
    crop: str = setting(
        "auto", "auto: for a small or distant person, the model also looks at a box around them (found from "
        "the last masks), joined with its whole-frame look: two model runs on such frames, none extra for a "
        "close-up; off: the whole frame only (default: auto)", choices=("auto", "off"))


@dataclass(frozen=True, slots=True)
class SourceConfig:
    source: str = setting(
        "0", "camera index (default 0), device path, video file, URL, or demo: a built-in clip of a person, "
        "looped, to try vbg without a webcam", metavar="CAM|PATH|URL|demo")
    width: int | None = setting(None, "width to ask of the camera", range=R.SIDE)
    height: int | None = setting(None, "height to ask of the camera", range=R.SIDE)
    fps: float | None = setting(None, "frame rate to ask of the camera", range=R.FPS)
    loop: bool = setting(False, "a video file source starts again at its end")


# The settings the live filter's [temporal] and vbg process's share: one declaration each.
def _smoothing(kind: str = ""):
    return setting(1.0, f"{kind}temporal smoothing strength, 0 = off (default 1)", metavar="S", range=R.SMOOTHING)


def _upsample():
    return setting("sharp", "mask upsampling: sharp (default: steepened edges), guided (frame-guided filter), "
                            "bilinear", choices=UPSAMPLE_MODES)


@dataclass(frozen=True, slots=True)
class TemporalConfig:
    """``[temporal]`` of the live filter."""

    skip: str = setting("auto", "run the model on every N-th frame; auto (default) keeps camera rate",
                        metavar="N|auto")
    smoothing: float = _smoothing()
    upsample: str = _upsample()
    align: bool = setting(False, "delay the video by the inference time so each mask lines up with its pixels")


@dataclass(frozen=True, slots=True)
class BackgroundConfig:
    """``[background]``: the same for the live filter and vbg process."""

    background: str | None = setting(
        None, "replacement background image or video (looped), or a bundled one by name (beach.jpg, "
        "office.jpg, ...: vbg backgrounds lists them)", metavar="IMAGE|VIDEO|NAME")
    color: str | None = setting(None, "a plain colour behind the person", metavar="NAME|#RRGGBB")
    blur: float | None = setting(  # strength; set = blur the real background
        None, "blur the real background", metavar="STRENGTH", range=R.BLUR, const=1.0)
    mirror: bool = setting(False, "mirror the output like a selfie view")
    feather: float = setting(0.0, "soften the mask edge by PX pixels", metavar="PX", range=R.FEATHER)
    threshold: float | None = setting(None, "harden the mask around T (0..1)", metavar="T", range=R.THRESHOLD)


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """``[output]`` of the live filter."""

    vcam: bool = setting(True, "run without a virtual camera", flag="--no-vcam")
    vcam_device: str | None = setting(None, "virtual camera device, e.g. /dev/video10 (pipewire: the node's name, "
                                            "default vbg)", metavar="DEV")
    vcam_backend: str | None = setting(  # None = auto (vbg.sinks.virtual_camera.choose_backend)
        None, "v4l2loopback, pipewire (Linux, no kernel module), obs (Windows, macOS), unitycapture (Windows) "
        "(default: auto = v4l2loopback where a device exists, else PipeWire where it runs)", metavar="NAME")
    record: str | None = setting(None, "also write what the camera is sent to a file", metavar="OUT.mp4")
    encoder: str = setting(  # vbg.encoders
        "auto", "--record's H.264 encoder: auto (default) = NVENC on an NVIDIA GPU where it opens, else x264",
        choices=ENCODERS)
    overwrite: bool = setting(False, "replace an existing --record file")
    preview: bool = setting(False, "show a window (keys: q quit, b background, space effect)")
    frames: int | None = setting(None, "stop after N camera frames (dropped ones count)", metavar="N", range=R.FRAMES)
    duration: float | None = setting(None, "stop after S seconds", metavar="S", range=R.DURATION)
    always_on: bool = setting(
        False, "keep the camera and the model running while no application reads the virtual camera "
        "(default: after --idle-after seconds unwatched, release the camera and pause the model)")
    idle_after: float = setting(
        5.0, "seconds without a reader of the virtual camera before vbg idles (default 5)", metavar="S",
        range=R.IDLE_AFTER)


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """``[control]`` of the live filter: control while live (vbg ctl, the control page; vbg.control)."""

    control: bool = setting(True, "no control server: no vbg ctl, no control page (SIGUSR1 still toggles the effect)",
                            flag="--no-control")
    ui: bool = setting(False, "open the control page in your web browser")
    backgrounds_dir: str | None = setting(
        None, "your backgrounds folder for vbg ctl and the control page (default: "
        "$XDG_DATA_HOME/vbg/backgrounds, i.e. ~/.local/share/vbg/backgrounds)", metavar="DIR")


@dataclass(frozen=True, slots=True)
class LiveConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(default_size=256))
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    control: ControlConfig = field(default_factory=ControlConfig)


MEMORY_MB = 512  # vbg process --memory's default: the budget for the frames in flight
# budget that buys the encoder one frame of look-ahead (vbg.offline.process.plan_buffers); here, where
# the CLI's help reads it without importing the pipeline (OpenCV, NumPy: vbg doctor must start without them)
LOOKAHEAD_MB = 20


@dataclass(frozen=True, slots=True)
class ProcessTemporalConfig:
    """``[temporal]`` of vbg process: the live filter's smoothing and upsampling settings (one
    declaration each), the smoothing centred over ``window`` frames each side."""

    smoothing: float = _smoothing("centred ")
    window: int = setting(2, "frames each side it looks at (default 2)", metavar="K", range=R.WINDOW)
    upsample: str = _upsample()


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """vbg process: the model, temporal and background sections, and its own settings (TOML ``[output]``)."""

    model: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(default_size=512))  # quality first
    temporal: ProcessTemporalConfig = field(default_factory=ProcessTemporalConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    mode: str = setting(  # rgb: composite | rgba: person over transparency | matte: the mask alone
        "rgb", flag="", choices=R.OUTPUT_MODES)  # the flags are --alpha and --matte
    quality: str = setting("balanced", "encoder speed/quality preset (default: balanced)", choices=R.QUALITIES)
    encoder: str = setting(  # H.264 outputs (vbg.encoders)
        "auto", "H.264 encoder (.mp4/.m4v/.mkv): auto (default) = NVENC on an NVIDIA GPU where it opens, else "
        "x264; nvenc fails when it does not open", choices=ENCODERS)
    fps: float | None = setting(
        None, "frame rate of an image-sequence input (a folder of frames, or a numbered pattern): default 30; "
        "a video keeps its own", range=R.FPS)
    memory: int = setting(
        MEMORY_MB, "memory for the frames in flight between decoding, the model and encoding: the queues hold "
        "fewer frames of large videos, and each {lookahead_mb} MB buys the encoder a frame of look-ahead "
        "(default {memory_mb}: {lookahead_frames} frames; the smoothing window is always held)", metavar="MB",
        range=R.MEMORY_MB)


OWN_SECTION = "output"  # the TOML table of a config's own settings (vbg process's --quality, ...)


def sections(root) -> dict[str, type]:
    """``{section name: its dataclass}`` of a config class or instance: its TOML tables. A config
    with settings of its own besides its sections (``ProcessConfig``) is itself the table
    ``[output]``."""
    cls = root if isinstance(root, type) else type(root)
    out: dict[str, type] = {}
    own = False
    for f in fields(cls):
        t = globals().get(f.type) if isinstance(f.type, str) else f.type
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            out[f.name] = t
        else:
            own = True
    if own:
        out[OWN_SECTION] = cls
    return out


def _settings(section: type, root) -> dict[str, dataclasses.Field]:
    """The settings of table ``section`` of config ``root``: its fields (the root's own: not its sections)."""
    if section is not type(root):
        return {f.name: f for f in fields(section)}
    tables = set(sections(root))
    return {f.name: f for f in fields(section) if f.name not in tables}


def _table(cfg, name: str):
    """The object that holds table ``name`` of ``cfg``."""
    return cfg if sections(cfg)[name] is type(cfg) else getattr(cfg, name)


SECTIONS = {f.name: f for f in fields(LiveConfig)}


def _coerce(section: str, key: str, value: Any, annotation: str, *, from_file: bool = False) -> Any:
    """``value`` of setting ``[section] key`` as its field holds it; ``ConfigError`` naming the
    setting as a file writes it, or (the size and skip, which the CLI parses) as its flag unless
    ``from_file``."""
    where = f"[{section}] {key}"
    ann = annotation.replace(" ", "")
    if value is None:
        if "None" in ann:
            return None
        raise ConfigError(f"{where} cannot be empty")
    if ann.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r} must be true or false")
    named = {"option": f"{where} ="} if from_file else {}
    if key == "size":
        return parse_size(value if not isinstance(value, list) else "x".join(map(str, value)), **named)
    if key == "skip" and from_file:
        parse_skip(value, **named)  # named as the file writes it (the start-up check names the flag)
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r} must be a whole number")
        return value
    if ann.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r} must be a number")
        return float(value)
    if ann.startswith("str"):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"{where} = {value!r} must be a string")
        return str(value)
    return value


def _shown(name: Any) -> str:
    """A user-typed name as it can appear in a one-line message."""
    text = str(name)
    return text if text.isprintable() and 0 < len(text) <= 40 else repr(text)[:42]


def loose_setting(name: Any, value: Any, roots) -> ConfigError | None:
    """A setting written above every ``[section]`` of a file (``blur = 0.5`` at its top): the
    error naming the section it belongs in; None when no section of ``roots`` has it. It read as
    "unknown config section [blur]", or, for ``model = "selfie"``, "[model] must be a table"."""
    if isinstance(value, dict):
        return None
    homes = sorted({s for root in roots for s, cls in sections(root).items() if name in _settings(cls, root)})
    if not homes:
        return None
    return ConfigError(f"{_shown(name)} = {_shown(repr(value))} is above every [section]: put it under "
                       f"[{homes[0]}]" + "".join(f" or [{h}]" for h in homes[1:]))


def apply(cfg, updates: dict[str, dict[str, Any]], *, check: bool = True, from_file: bool = False):
    """New config with ``{section: {field: value}}`` applied, types checked; values
    validated too unless ``check`` is false (the CLI collects every problem itself).
    ``from_file``: the values are a config file's, named as it writes them in errors."""
    out = cfg
    known_sections = sections(cfg)
    for section, values in updates.items():
        if (loose := loose_setting(section, values, [out])) is not None:
            raise loose
        if section not in known_sections:
            raise ConfigError(f"unknown config section [{_shown(section)}]: use {', '.join(known_sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of settings")
        known = _settings(known_sections[section], out)
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown setting [{section}] {_shown(key)}: known are {', '.join(known)}")
            changes[key] = _coerce(section, key, value, str(known[key].type), from_file=from_file)
            choices = known[key].metadata.get("choices")
            if choices and changes[key] is not None and changes[key] not in choices:
                # a file's value as a flag's and a VBG_ variable's (crop = "on" turned the crop off)
                raise ConfigError(f"[{section}] {key} = {_shown(value)!r} is not known: use "
                                  f"{', '.join(choices[:-1])} or {choices[-1]}")
        if known_sections[section] is type(out):
            out = replace(out, **changes)
        else:
            out = replace(out, **{section: replace(getattr(out, section), **changes)})
    return validate(out) if check else out


def from_toml(path: str | Path, base=None, *, check: bool = True):
    """The config file at ``path`` applied to ``base`` (default: a ``LiveConfig()``; a
    ``ProcessConfig`` for vbg process)."""
    path = Path(path)
    return apply(LiveConfig() if base is None else base, read_toml(path, f"--config {path}"), check=check,
                 from_file=True)


CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes: more is not one (--config /dev/zero)


def read_toml(path: Path, label: str) -> dict:
    """The TOML file at ``path`` as a dict; ``ConfigError`` naming it as ``label`` (``--config
    FILE``, ``the default config FILE``) when it is missing, unreadable, a folder, over
    ``CONFIG_BYTES`` (``/dev/zero`` read till the process was killed) or not TOML. A pipe
    (``<(...)``, ``/dev/stdin``) and ``/dev/null`` are read as files are."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        mode = None  # said below, on reading
    if mode is not None and stat.S_ISDIR(mode):  # a pipe (--config <(envsubst < t.toml)) or /dev/null is read
        raise ConfigError(f"{label} is a folder, not a file: give a TOML file")
    try:
        with open(path, "rb") as f:
            raw = f.read(CONFIG_BYTES + 1)
        if len(raw) > CONFIG_BYTES:
            raise ConfigError(f"{label} is over {CONFIG_BYTES >> 20} MB: not a config file; give a TOML file")
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{label} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{label} cannot be read: {e.strerror}") from None


def _known(name: str, value: Any, section) -> None:
    """``value`` of setting ``name`` is one of the choices its field declares."""
    choices = next(f.metadata["choices"] for f in fields(section) if f.name == name)
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not known: use {', '.join(choices[:-1])} or {choices[-1]}")


def _check_upsample(cfg) -> None:
    _known("upsample", cfg.temporal.upsample, cfg.temporal)


def _check_skip(cfg) -> None:
    # before the camera and the model are opened, with every other problem; a config file's value
    # was checked as the file was read (``_coerce``), VBG_SKIP's as the environment was
    parse_skip(cfg.temporal.skip)


# Settings of which one value is picked: a layer (flags, environment, a config file) that sets one
# of them replaces the others a lower layer set (vbg.userconfig); two in one layer are a conflict.
ONE_OF = {"background": ("background", "color", "blur")}


def _check_background_choice(cfg) -> None:
    b = cfg.background
    chosen = [n for n, v in (("--background", b.background), ("--color", b.color), ("--blur", b.blur)) if v is not None]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} were both given: pick one background")


def _check_color(cfg) -> None:
    if cfg.background.color is not None:
        parse_color(cfg.background.color)


def _check_outputs(cfg) -> None:
    o = cfg.output
    if not (o.vcam or o.record or o.preview):
        raise ConfigError("--no-vcam without --record or --preview leaves nothing to show: add one of them")


def _check_encoder(cfg) -> None:
    check_encoder(cfg.output.encoder)


def _check_process_output(cfg) -> None:
    check_encoder(cfg.encoder)
    _known("quality", cfg.quality, cfg)
    _known("mode", cfg.mode, cfg)


def _range_problems(cfg) -> list[VbgError]:
    """Every setting outside the range its field declares (``vbg.ranges``). The CLI checks
    its flags against the same ranges first, so what is left here came from a config file."""
    found: list[VbgError] = []
    for name in sections(cfg):
        found += out_of_range(_table(cfg, name), lambda key, name=name: f"[{name}] {key} =")
    return found


# The checks beyond the ranges, per kind of config; none of them opens or builds anything.
_CHECKS = {
    LiveConfig: (_check_upsample, _check_skip, _check_color, _check_background_choice, _check_outputs,
                 _check_encoder),
    ProcessConfig: (_check_upsample, _check_color, _check_background_choice, _check_process_output),
}


def problems(cfg, *, own_sinks: bool = False) -> list[VbgError]:
    """Every bad value or conflict in ``cfg``, one error each (empty: all good). ``own_sinks``: the
    composites also go to sinks of the caller's (the Python API), so no output needs to be set here."""
    found: list[VbgError] = _range_problems(cfg)
    for check in _CHECKS[type(cfg)]:
        if own_sinks and check is _check_outputs:
            continue
        try:
            check(cfg)
        except VbgError as e:
            found.append(e)
    return found


def validate(cfg):
    """``cfg`` itself when it is valid, else the first of :func:`problems` raised."""
    found = problems(cfg)
    if found:
        raise found[0]
    return cfg
