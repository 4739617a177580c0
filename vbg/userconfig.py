"""The layers a command's settings come from, lowest first: the built-in defaults, the default
config file (:func:`default_path`), ``--config FILE``, the ``VBG_*`` environment variables, the
flags. Each layer is ``{section: {key: value}}``; a higher one wins key by key, and for the
settings of which one is picked (``vbg.config.ONE_OF``: background, color, blur) a layer that sets
one replaces what a lower layer picked.

In: the command's built-in config (``LiveConfig()``, ``ProcessConfig()``), the files, the
environment. Out: the config (unchecked: the start-up checks report every problem at once) and
where each setting came from (``vbg config show``). The default file and the environment are
shared by the live filter and ``vbg process``: each takes the keys it has and leaves the other's
(``[source]`` is the live filter's, ``[output] quality`` vbg process's); a key neither has is an
error. ``--config FILE`` stays the command's own: a key it does not have is refused.

Every setting that has a flag can be set as ``VBG_<KEY>`` (``--vcam-device`` -> ``VBG_VCAM_DEVICE``,
``--no-vcam`` -> ``VBG_VCAM=false``), derived from the schema (``vbg.config.setting``); a bad value
is refused as the flag's would be, the message naming the variable. Imports no stage.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as C
from .errors import ConfigError, Problems, VbgError

ENV_PREFIX = "VBG_"
# VBG_ variables that are not settings (and that no setting's name may take).
OTHER_ENV = ("VBG_CACHE_DIR", "VBG_NETWORK_TIMEOUT")
BUILT_IN = "built-in default"
ENVIRONMENT = "environment"


def default_path(platform: str | None = None, environ=None, home: Path | None = None) -> Path:
    """Where the default config file is: ``$XDG_CONFIG_HOME/vbg/config.toml`` (``~/.config``
    when unset or not absolute, as the XDG spec says) on Linux and other Unix,
    ``%APPDATA%\\vbg\\config.toml`` on Windows, ``~/Library/Application Support/vbg/config.toml``
    on macOS."""
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if platform.startswith("win"):
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "vbg" / "config.toml"


# --- Which settings there are: every config key of the live filter and vbg process.


def _roots() -> tuple:
    return C.LiveConfig(), C.ProcessConfig()


def _keys(root) -> dict[tuple[str, str], dataclasses.Field]:
    """``{(section, key): field}`` of every config key of ``root``."""
    return {(name, key): f for name in C.sections(root) for key, f in C._settings(C.sections(root)[name], root).items()}


def env_settings() -> dict[str, dataclasses.Field]:
    """``{VBG_NAME: field}``: every setting that has a flag, by its key's name (one name per key:
    the live filter's ``[output] encoder`` and vbg process's are the same setting)."""
    out: dict[str, dataclasses.Field] = {}
    for root in _roots():
        for (_, key), f in _keys(root).items():
            if C.flag_of(f) is not None:
                out.setdefault(ENV_PREFIX + key.upper(), f)
    return out


# --- The layers.


@dataclass(frozen=True)
class Layer:
    """One layer: its ``{section: {key: value}}`` and, per key, where it came from."""

    updates: dict[str, dict[str, Any]]
    origins: dict[tuple[str, str], str]

    @classmethod
    def of(cls, updates: dict[str, dict[str, Any]], origin: str) -> Layer:
        return cls(updates, {(s, k): origin for s, values in updates.items() for k in values})


read_toml = C.read_toml


def _shared(data: dict, root, label: str) -> dict:
    """The keys of a shared file (the default file) that ``root`` has; a key that neither the
    live filter nor vbg process has is an error naming it."""
    mine = _keys(root)
    every = {k for r in _roots() for k in _keys(r)}
    out: dict[str, dict] = {}
    known = sorted({s for r in _roots() for s in C.sections(r)})
    for section, values in data.items():
        if (loose := C.loose_setting(section, values, _roots())) is not None:
            raise ConfigError(f"{label}: {loose}")
        if section not in known:
            raise ConfigError(f"{label}: unknown config section [{C._shown(section)}]: use {', '.join(known)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{label}: [{section}] must be a table of settings")
        for key, value in values.items():
            if (section, key) in mine:
                out.setdefault(section, {})[key] = value
            elif (section, key) not in every:
                raise ConfigError(f"{label}: unknown setting [{section}] {C._shown(key)}: known are "
                                  f"{', '.join(k for s, k in sorted(every) if s == section)}")
    return out


def file_layer(path: str | Path, root, *, default: bool = False) -> Layer:
    """The config file at ``path`` as a layer of ``root``: the command's own (``--config``), or
    the default file (``default``), of which the other command's keys are left out."""
    path = Path(path)
    label = f"the default config {path}" if default else f"--config {path}"
    data = read_toml(path, label)
    if default:
        data = _shared(data, root, label)
    try:
        C.apply(root, data, check=False, from_file=True)  # types and names checked now, values by the start-up checks
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    return Layer.of(data, str(path))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_INT = re.compile(r"[+-]?[0-9]{1,12}")


def env_value(var: str, f: dataclasses.Field, text: str) -> Any:
    """The value of setting ``f`` that environment variable ``var`` holds as ``text``, checked
    as its flag's would be (type, choices, range): ``ConfigError`` naming ``var`` otherwise."""
    shown = C._show(text)
    kinds = set(str(f.type).replace(" ", "").split("|")) - {"None"}
    if f.name == "size":
        return C.parse_size(text, option=var)
    if f.name == "skip":
        return C.parse_skip(text, option=var)
    if f.name == "color":
        C.parse_color(text, option=var)
        return text
    s = text.strip()
    if kinds == {"bool"}:
        if s.lower() in _TRUE + _FALSE:
            return s.lower() in _TRUE
        raise ConfigError(f"{var} {shown} is not true or false: use {var}=1 or {var}=0 (also true/false, yes/no, "
                          "on/off)")
    if kinds == {"int"}:
        if not _INT.fullmatch(s):
            raise ConfigError(f"{var} {shown} is not a whole number: e.g. {var}={f.default or 1}")
        value: Any = int(s)
    elif kinds == {"float"}:
        try:
            value = float(s) if s.isascii() else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{var} {shown} is not a number: e.g. {var}={f.default or f.metadata.get('const') or 1}")
    else:
        value = text
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{var} {shown} is not known: use {', '.join(choices[:-1])} or {choices[-1]}")
    rng = f.metadata.get("range")
    if rng is not None:
        rng.check(var, value)
    return value


def env_layer(root, environ=None) -> Layer:
    """The ``VBG_*`` settings set (not empty) in ``environ`` that ``root`` has; every bad one is
    reported at once (``Problems``; one alone: its ``ConfigError``)."""
    environ = os.environ if environ is None else environ
    mine = {key: section for section, key in _keys(root)}
    updates: dict[str, dict] = {}
    origins: dict[tuple[str, str], str] = {}
    found: list[VbgError] = []
    for var, f in env_settings().items():
        text = environ.get(var, "")
        if not text.strip():
            continue
        try:
            value = env_value(var, f, text)
        except ConfigError as e:
            found.append(e)
            continue
        if f.name in mine:
            updates.setdefault(mine[f.name], {})[f.name] = value
            origins[(mine[f.name], f.name)] = var
    if len(found) == 1:
        raise found[0]
    if found:
        raise Problems(found)
    return Layer(updates, origins)


@dataclass(frozen=True)
class Settled:
    """A command's config after its layers, and where each key came from (unset: built in)."""

    cfg: Any
    origins: dict[tuple[str, str], str]

    def origin(self, section: str, key: str) -> str:
        return self.origins.get((section, key), BUILT_IN)


def settle(root, layers: list[Layer]) -> Settled:
    """``root`` with ``layers`` applied, lowest first (types checked, values not: the start-up
    checks report every problem at once)."""
    cfg, origins = root, {}
    for layer in layers:
        updates = {s: dict(v) for s, v in layer.updates.items()}
        for section, group in C.ONE_OF.items():
            picked = [k for k in group if k in updates.get(section, {})]
            if picked and section in C.sections(cfg):
                for other in group:
                    if other not in picked:  # a lower layer's pick gives way
                        updates[section].setdefault(other, None)
                        origins.pop((section, other), None)
        cfg = C.apply(cfg, updates, check=False)
        origins.update(layer.origins)
    return Settled(cfg, origins)


def layers_of(root, *, config: str | Path | None = None, use_default: bool = True, environ=None,
              path: Path | None = None) -> list[Layer]:
    """The layers below the flags: the default file (when ``use_default`` and it is there),
    ``--config`` (when given), the environment."""
    out = []
    path = default_path(environ=environ) if path is None else path
    if use_default and path.is_file():
        out.append(file_layer(path, root, default=True))
    if config:
        out.append(file_layer(config, root))
    out.append(env_layer(root, environ))
    return out


# --- vbg config show / edit


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps("x".join(map(str, value)))
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def render(settled: Settled) -> str:
    """The settings as TOML (what ``--config`` reads back to the same config), each with where it
    came from; a setting with no value is shown commented out."""
    cfg = settled.cfg
    lines: list[str] = []
    for name, section in C.sections(cfg).items():
        lines.append(f"\n[{name}]")
        table = C._table(cfg, name)
        for key in C._settings(section, cfg):
            value = getattr(table, key)
            text = f"{key} = {_toml_value(value)}" if value is not None else f"# {key} = (not set)"
            lines.append(f"{text:<40} # {settled.origin(name, key)}")
    return "\n".join(lines).lstrip("\n") + "\n"


TEMPLATE_HEADER = """\
# vbg's default config: the live filter reads it, and vbg process the parts it has ([model],
# [temporal] smoothing/upsample, [background], [output] encoder). Every setting below is
# commented out: uncomment what you want; the rest keeps vbg's built-in default. Keys are the
# flag names with "_" (--vcam-device: vcam_device).
# Precedence: flags > VBG_* environment variables > --config FILE > this file > built-in defaults.
# `vbg config show` prints the settings in effect and where each came from.

"""
_SETTING_LINE = re.compile(r"^([a-z_]+\s*=)", re.MULTILINE)


def template(source: Path) -> str:
    """The text ``vbg config edit`` starts a new default file with: ``configs/default.toml``
    (``source``), its settings commented out."""
    body = source.read_text(encoding="utf-8")
    body = body[body.index("\n\n") + 2:]  # its opening comment is about --config
    return TEMPLATE_HEADER + _SETTING_LINE.sub(r"# \1", body)


def file_problems(path: Path, environ=None) -> list[VbgError]:
    """What is wrong with the default file at ``path``, for both commands that read it (empty: all
    good)."""
    found: list[VbgError] = []
    for root in _roots():
        try:
            cfg = settle(root, [file_layer(path, root, default=True)]).cfg
        except ConfigError as e:
            return [e]
        for e in C.problems(cfg):
            if str(e) not in map(str, found):
                found.append(e)
    return found


TEMPLATE_SOURCE = Path(__file__).parent / "assets" / "default.toml"  # configs/default.toml, shipped


def create_default(path: Path, source: Path = TEMPLATE_SOURCE) -> bool:
    """Write the default file at ``path`` (:func:`template`), exclusively: never over a file
    that is there or appears meanwhile (then False). Mode 0644 (less the umask): a config
    holds no secret."""
    from .fsutil import NewFile

    try:
        new = NewFile(path, check_busy=False, replace=False)
    except FileExistsError:
        return False
    try:
        new.write(template(source).encode("utf-8"))
        os.fsync(new.fd)
        new.commit()
    except FileExistsError:
        new.discard()
        return False
    except BaseException:
        new.discard()
        raise
    return True


def editor_command(environ=None, platform: str | None = None, which=None) -> list[str] | None:
    """The editor to run on a file, as argv: ``$VISUAL``, then ``$EDITOR`` (split as a shell
    would: ``code --wait``), else the platform's (Notepad; TextEdit, waited for; on Linux the
    first of sensible-editor, editor, nano, vi that is installed); None when there is none."""
    import shlex
    import shutil

    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    which = shutil.which if which is None else which
    for var in ("VISUAL", "EDITOR"):
        text = environ.get(var, "").strip()
        if text:
            return shlex.split(text, posix=not platform.startswith("win"))
    if platform.startswith("win"):
        return ["notepad"]
    if platform == "darwin":
        return ["open", "-W", "-t"]
    for name in ("sensible-editor", "editor", "nano", "vi"):
        found = which(name)
        if found:
            return [found]
    return None
