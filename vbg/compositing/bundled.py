"""The backgrounds that ship with vbg, found by name: ``--background beach.jpg`` works
in any folder, not only where a beach.jpg happens to lie.

The pictures live in ``vbg/assets/backgrounds`` (rendered by
``tools/make_backgrounds.py``, Apache-2.0 like the project). A file the user
has always wins over a bundled one of the same name, so adding this lookup
changes nothing for anyone who already passed a real path.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from ..errors import InputError
from ..images import probe_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class BundledBackground(NamedTuple):
    """One bundled picture as ``vbg backgrounds`` lists it."""

    name: str  # file name, what --background takes
    width: int
    height: int
    nbytes: int


def backgrounds_dir() -> Path:
    # A plain folder in every normal install (wheel or editable); vbg is never run from a zip.
    return Path(str(resources.files("vbg").joinpath("assets", "backgrounds")))


def bundled_backgrounds() -> dict[str, Path]:
    """File name -> path of every bundled background, sorted by name (empty if the
    folder is missing, as in a stripped-down install)."""
    try:
        found = [p for p in backgrounds_dir().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    except OSError:
        return {}
    return {p.name: p for p in sorted(found, key=lambda p: p.name)}


def find_background(arg: str) -> str:
    """What ``--background ARG`` should open.

    ``ARG`` itself (after ``~`` expansion) when it names a file that exists;
    else the bundled background whose file name or stem is ``ARG`` (any case:
    "beach", "Beach.jpg"); else ``ARG`` unchanged, so the image reader reports
    the missing file in its usual words. Reads no image, only names."""
    raw = str(arg)
    own = os.path.expanduser(raw)
    try:
        if Path(own).is_file():
            return own
    except (OSError, ValueError):  # a name too long, a NUL byte: not the user's file, and not ours either
        return raw
    if not raw or os.sep in raw or (os.altsep and os.altsep in raw) or raw != own:
        return raw  # a path into some folder never means a bundled picture
    key = raw.lower()
    for name, path in bundled_backgrounds().items():
        if key in (name.lower(), Path(name).stem.lower()):
            return str(path)
    return raw


def describe_bundled() -> list[BundledBackground]:
    """Name, size in pixels and bytes of each bundled background, from the file
    headers (nothing is decoded)."""
    out = []
    for name, path in bundled_backgrounds().items():
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"bundled background {path} cannot be read ({e.strerror or e}): "
                             "reinstall vbg") from e
        header = probe_image(data, str(path))
        if header is None:
            raise InputError(f"bundled background {path} is not an image: reinstall vbg")
        out.append(BundledBackground(name, header[1], header[2], len(data)))
    return out
