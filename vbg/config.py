"""Configuration: one frozen dataclass per stage, composed into
:class:`LiveConfig`. TOML files (``--config``) and CLI flags set the same
fields (TOML: ``[section] field = value``; CLI: ``--field-name``); the CLI
wins. A bad key or value raises :class:`ConfigError` naming it."""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import ranges as R
from .errors import ConfigError, VbgError
from .ranges import ENCODERS, GPU, SIZE, THREADS, UPSAMPLE_MODES, out_of_range, ranged

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# --- The pure parsers: a value as the user typed it (flag or TOML) -> the value vbg uses.
# Stages call them too (SkipGovernor, ColorBackground); none of them opens anything.


def parse_size(text: str | int | tuple[int, int] | None) -> int | tuple[int, int] | None:
    """``"256"`` -> 256 (long side), ``"320x180"`` -> (320, 180) as (H, W)."""
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
                f"--size {text!r} is not a size: give the long side in pixels (e.g. 256) or HxW (e.g. 144x256)"
            ) from None
    if isinstance(value, int):
        SIZE.check("--size", value)
    elif isinstance(value, tuple):
        if len(value) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in value):
            raise ConfigError(f"--size {text!r} is out of range: H and W must be 16..4096 pixels")
    return value


SKIP_MAX = 30
_SKIP_HELP = f"use auto or a whole number 1..{SKIP_MAX}"


def _show(value) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def parse_skip(text) -> int | str:
    """``"auto"`` (any case) or an int 1..30, from a CLI/TOML value; else ``ConfigError``."""
    if isinstance(text, bool):
        raise ConfigError(f"--skip {_show(text)} is not valid: {_SKIP_HELP}")
    if isinstance(text, int):
        value = text
    elif isinstance(text, str):
        s = text.strip()
        if s.lower() == "auto":
            return "auto"
        # ASCII digits only: int() would also take "٣", "1_0" or " +3".
        if not (s.isascii() and s.isdigit()) or len(s) > 6:
            raise ConfigError(f"--skip {_show(text)} is not valid: {_SKIP_HELP}")
        value = int(s)
    else:
        raise ConfigError(f"--skip {_show(text)} is not valid: {_SKIP_HELP}")
    if not 1 <= value <= SKIP_MAX:
        raise ConfigError(f"--skip {_show(text)} is out of range: {_SKIP_HELP}")
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


# --- The sections.


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """The model: which one, at what size, on which device (``[model]``; every command)."""

    model: str = "auto"  # rmbg-1.4 when cached or downloadable, else the bundled selfie model
    variant: str = "fp32"
    size: int | tuple[int, int] | None = None  # what the user asked for; None: the default below
    default_size: int | None = ranged(None, SIZE)  # long side for models that take any size; None: the reference size
    backend: str = "onnx"  # onnx | torch
    device: str = "auto"  # auto | cpu | cuda | tensorrt
    strict_device: bool = False
    gpu: int = ranged(0, GPU)  # the GPU's index for CUDA/TensorRT/torch (and an NVIDIA encoder): --gpu
    trt_precision: str = "fp16"  # fp16 | fp32: the kernels TensorRT may pick (--device tensorrt only)
    threads: int | None = ranged(None, THREADS)  # intra-op threads; None = all cores, no spinning
    minmax: bool = False  # the reference's per-frame min-max rescale


@dataclass(frozen=True, slots=True)
class SourceConfig:
    source: str = "0"  # camera index, device path, video file or URL
    width: int | None = ranged(None, R.SIDE)  # asked of the camera
    height: int | None = ranged(None, R.SIDE)
    fps: float | None = ranged(None, R.FPS)
    loop: bool = False  # a file used as a live source starts again at its end


@dataclass(frozen=True, slots=True)
class TemporalConfig:
    skip: str = "auto"  # "auto" or N: run the model on every N-th frame
    smoothing: float = ranged(1.0, R.SMOOTHING)  # 0 = off; motion-adaptive temporal smoothing strength
    upsample: str = "sharp"  # sharp (steepened edges), guided (frame-guided filter) or bilinear
    align: bool = False  # delay the video by the inference time so masks line up with their pixels


@dataclass(frozen=True, slots=True)
class BackgroundConfig:
    background: str | None = None  # image or video file
    color: str | None = None
    blur: float | None = ranged(None, R.BLUR)  # strength; set = blur the real background
    mirror: bool = False
    feather: float = ranged(0.0, R.FEATHER)  # px
    threshold: float | None = ranged(None, R.THRESHOLD)  # 0..1: harden the mask around this value


@dataclass(frozen=True, slots=True)
class OutputConfig:
    vcam: bool = True
    vcam_device: str | None = None
    vcam_backend: str | None = None
    record: str | None = None
    encoder: str = "auto"  # the recording's H.264: auto (NVENC when it opens), x264 or nvenc (vbg.encoders)
    overwrite: bool = False
    preview: bool = False
    frames: int | None = ranged(None, R.FRAMES)
    duration: float | None = ranged(None, R.DURATION)


@dataclass(frozen=True, slots=True)
class LiveConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(default_size=256))
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTIONS = {f.name: f for f in fields(LiveConfig)}


def _section_type(name: str):
    return {"source": SourceConfig, "model": SegmenterConfig, "temporal": TemporalConfig,
            "background": BackgroundConfig, "output": OutputConfig}[name]


def _coerce(section: str, key: str, value: Any, annotation: str) -> Any:
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
    if key in ("size",):
        return parse_size(value if not isinstance(value, list) else "x".join(map(str, value)))
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


def apply(cfg: LiveConfig, updates: dict[str, dict[str, Any]], *, check: bool = True) -> LiveConfig:
    """New config with ``{section: {field: value}}`` applied, types checked; values
    validated too unless ``check`` is false (the CLI collects every problem itself)."""
    out = cfg
    for section, values in updates.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section [{_shown(section)}]: use {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of settings")
        cls = _section_type(section)
        known = {f.name: f for f in fields(cls)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown setting [{section}] {_shown(key)}: known are {', '.join(known)}")
            changes[key] = _coerce(section, key, value, str(known[key].type))
        out = replace(out, **{section: replace(getattr(out, section), **changes)})
    return validate(out) if check else out


def from_toml(path: str | Path, base: LiveConfig | None = None, *, check: bool = True) -> LiveConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"--config {path} cannot be read: {e.strerror}") from None
    return apply(base or LiveConfig(), data, check=check)


def _check_temporal(cfg: LiveConfig) -> None:
    t = cfg.temporal
    if t.upsample not in UPSAMPLE_MODES:
        raise ConfigError(f"upsample {t.upsample!r} is not known: use {', '.join(UPSAMPLE_MODES[:-1])} or "
                          f"{UPSAMPLE_MODES[-1]}")


def _check_skip(cfg: LiveConfig) -> None:
    parse_skip(cfg.temporal.skip)  # before the camera and the model are opened


def _check_background_choice(cfg: LiveConfig) -> None:
    b = cfg.background
    chosen = [n for n, v in (("--background", b.background), ("--color", b.color), ("--blur", b.blur)) if v is not None]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} were both given: pick one background")


def _check_color(cfg: LiveConfig) -> None:
    if cfg.background.color is not None:
        parse_color(cfg.background.color)


def _check_outputs(cfg: LiveConfig) -> None:
    o = cfg.output
    if not (o.vcam or o.record or o.preview):
        raise ConfigError("--no-vcam without --record or --preview leaves nothing to show: add one of them")


def _check_encoder(cfg: LiveConfig) -> None:
    check_encoder(cfg.output.encoder)


def _range_problems(cfg: LiveConfig) -> list[VbgError]:
    """Every setting outside the range its field declares (``vbg.ranges``). The CLI checks
    its flags against the same ranges first, so what is left here came from a config file."""
    found: list[VbgError] = []
    for name in SECTIONS:
        found += out_of_range(getattr(cfg, name), lambda key, name=name: f"[{name}] {key} =")
    return found


_CHECKS = (_check_temporal, _check_skip, _check_color, _check_background_choice, _check_outputs, _check_encoder)


def problems(cfg: LiveConfig) -> list[VbgError]:
    """Every bad value or conflict in ``cfg``, one error each (empty: all good)."""
    found: list[VbgError] = _range_problems(cfg)
    for check in _CHECKS:
        try:
            check(cfg)
        except VbgError as e:
            found.append(e)
    return found


def validate(cfg: LiveConfig) -> LiveConfig:
    """``cfg`` itself when it is valid, else the first of :func:`problems` raised."""
    found = problems(cfg)
    if found:
        raise found[0]
    return cfg


def as_dict(cfg: LiveConfig) -> dict:
    return dataclasses.asdict(cfg)
