"""Live-filter configuration: one frozen dataclass per stage, composed into
:class:`LiveConfig`. TOML files (``--config``) and CLI flags set the same
fields (TOML: ``[section] field = value``; CLI: ``--field-name``); the CLI
wins. A bad key or value raises :class:`ConfigError` naming it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import ranges as R
from .errors import ConfigError, VbgError
from .inference.segmenter import SegmenterConfig
from .ranges import out_of_range, ranged

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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
        from .models.preprocess import parse_size

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
    if t.upsample not in ("sharp", "guided", "bilinear"):
        raise ConfigError(f"upsample {t.upsample!r} is not known: use sharp, guided or bilinear")


def _check_skip(cfg: LiveConfig) -> None:
    from .inference.scheduler import parse_skip

    parse_skip(cfg.temporal.skip)  # before the camera and the model are opened


def _check_background_choice(cfg: LiveConfig) -> None:
    b = cfg.background
    chosen = [n for n, v in (("--background", b.background), ("--color", b.color), ("--blur", b.blur)) if v is not None]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} were both given: pick one background")


def _check_color(cfg: LiveConfig) -> None:
    from .compositing.color import parse_color

    if cfg.background.color is not None:
        parse_color(cfg.background.color)


def _check_outputs(cfg: LiveConfig) -> None:
    o = cfg.output
    if not (o.vcam or o.record or o.preview):
        raise ConfigError("--no-vcam without --record or --preview leaves nothing to show: add one of them")


def _check_encoder(cfg: LiveConfig) -> None:
    from .encoders import check_encoder

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
