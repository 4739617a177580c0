"""The range of every setting, declared once: numeric ranges and the named choices.

A config field declares its range in its metadata (``vbg.config.setting(...,
range=SOME_RANGE)``); the TOML loader (``vbg.config``) and the CLI's flag check
(``vbg.cli``) both read it from there, so a value the command line refuses is
refused in a config file too, with the same bounds. Ranges used outside a config dataclass (``--workers``,
``--seed``) are constants here, next to the others. The stages check what they are
given against the same constants (``Compositor``'s feather, ``EdgeAwareUpsampler``'s
modes), so no bound is written twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Range:
    """``lo <= value <= hi`` (``<`` where open); NaN and infinities never pass."""

    lo: float
    hi: float
    unit: str = ""
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # e.g. "0 = off"

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self) -> str:
        lo, hi = _number(self.lo), _number(self.hi)
        if self.lo_open and self.hi_open:
            text = f"a value between {lo} and {hi}"
        elif self.lo_open:
            text = f"more than {lo}, up to {hi}"
        else:
            text = f"{lo}..{hi}"
        if self.unit:
            text += f" {self.unit}"
        return f"{text} ({self.note})" if self.note else text

    def check(self, label: str, value: Any) -> Any:
        """``value`` when it is in range (or None: not set), else ``ConfigError`` naming ``label``."""
        if value is not None and value not in self:
            raise ConfigError(f"{label} {value!r} is out of range: use {self.describe()}")
        return value


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def out_of_range(obj, label) -> list[ConfigError]:
    """One error per field of dataclass ``obj`` whose value is outside its declared range;
    ``label(field_name)`` names the setting in the message."""
    found = []
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        if rng is None:
            continue
        try:
            rng.check(label(f.name), getattr(obj, f.name))
        except ConfigError as e:
            found.append(e)
    return found


# Declared once, used by the fields below their modules and by the checks that predate them.
THREADS = Range(1, 256)  # inference threads: a few hundred is more than any CPU has
SIZE = Range(32, 4096, "pixels")
SMOOTHING = Range(0.0, 4.0, note="0 = off")
WINDOW = Range(1, 8, "frames each side")
FEATHER = Range(0.0, 50.0, "pixels")
THRESHOLD = Range(0.0, 1.0, lo_open=True, hi_open=True)
BLUR = Range(0.1, 5.0)
SIDE = Range(1, 8192, "pixels")  # a camera's width or height
FPS = Range(0.0, 1000.0, "frames per second", lo_open=True)
FRAMES = Range(1, 2**31 - 1)
DURATION = Range(0.0, 366 * 86400.0, "seconds", lo_open=True)  # up to a year
IDLE_AFTER = Range(0.0, 86400.0, "seconds", lo_open=True)  # --idle-after: nobody watching this long
WORKERS = Range(1, 16)
SEED = Range(0, 2**32 - 1)
GPU = Range(0, 255, note="the GPU's index, as vbg doctor lists them")  # --gpu, [model] gpu
RAY_SEGMENT = Range(0.0, 86400.0, "seconds", lo_open=True)  # vbg process --ray-segment: a part's length
MEMORY_MB = Range(64, 1 << 20, "MB")  # vbg process --memory: the frames in flight


# The named choices: argparse's ``choices``, the config check and the stages all read these.
UPSAMPLE_MODES = ("sharp", "guided", "bilinear")  # vbg.inference.upsample
ENCODERS = ("auto", "x264", "nvenc")  # vbg.encoders
DEVICES = ("auto", "cpu", "cuda", "tensorrt")  # vbg.inference.onnx_backend
VARIANTS = ("fp32", "fp16", "int8", "export")  # vbg.models.spec: the RMBG-1.4 files
BACKENDS = ("onnx", "torch")
TRT_PRECISIONS = ("fp16", "fp32")
QUALITIES = ("fast", "balanced", "best")  # vbg process --quality
OUTPUT_MODES = ("rgb", "rgba", "matte")  # vbg process: composite, person over transparency, the mask alone
