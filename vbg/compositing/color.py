"""Colour values for ``--color``: CSS-like names, hex and ``rgb(r,g,b)``, always RGB."""

from __future__ import annotations

import re

from ..errors import ConfigError

# The chroma green is the broadcast "chroma key green" (Pantone 354 C), which
# keying software expects more readily than pure #00ff00.
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

ACCEPTED = "a name (black, white, gray, green, chroma, ...), #RRGGBB, RRGGBB, #RGB or rgb(R,G,B) with R,G,B in 0-255"


def parse_color(text: str, *, option: str = "--color") -> tuple[int, int, int]:
    """``text`` as an (r, g, b) triple of ints in 0..255; :class:`ConfigError` otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"{option} must be text, not {type(text).__name__}: use {ACCEPTED}")
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
    raise ConfigError(f"{option} {shown!r} is not a colour: use {ACCEPTED}")
