"""Real footage with hand-drawn masks, as clips the simulations can run.

A sequence is a folder ``NAME/images/NNNNN.jpg`` + ``NAME/masks/NNNNN.png``
(white = the object; the DAVIS layout), every frame annotated. It loads as a
:class:`~vbg.evaluation.clips.Clip` whose truths are the masks cut at half
grey (0 or 1): hand-drawn masks have no soft edges to score.

The data itself never ships with vbg: the benchmark takes the folder as an
argument (``python -m benchmarks.quality --real DIR``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, InputError
from .clips import Clip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_sequence(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def find_sequences(root: str | Path) -> list[Path]:
    """The sequence folders directly under ``root`` (or ``root`` itself if it is one), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"real footage folder {root} does not exist: pass a folder of NAME/images + NAME/masks")
    if is_sequence(root):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_sequence(p))
    if not found:
        raise InputError(f"{root} holds no sequence (NAME/images/*.jpg + NAME/masks/*.png): "
                         "pass a folder of such sequences")
    return found


def load_sequence(folder: str | Path, *, fps: float = 24.0) -> Clip:
    """Frames (RGB uint8) and truths (float32 0/1) of one sequence, in file-name order.

    Every image needs a mask of the same name stem and size (``00012.jpg`` ->
    ``00012.png``); a mask with no image is an error too: a scored frame must
    not silently go missing.
    """
    folder = Path(folder)
    if not (isinstance(fps, (int, float)) and 1.0 <= fps <= 240.0):
        raise ConfigError(f"frame rate {fps!r} is out of range: use 1..240 fps")
    images = {p.stem: p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() == ".png"}
    if not images:
        raise InputError(f"{folder / 'images'} holds no frames: put NNNNN.jpg files there")
    unmatched = sorted(set(images) ^ set(masks))
    if unmatched:
        raise InputError(f"{folder}: frame {unmatched[0]} has an image or a mask but not both "
                         f"({len(unmatched)} such): give every image a mask of the same name")
    frames, truths = [], []
    for stem in sorted(images):
        bgr = cv2.imread(str(images[stem]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(masks[stem]), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None:
            raise InputError(f"{images[stem] if bgr is None else masks[stem]} is not a readable image: "
                             "replace or remove that frame")
        if mask.shape != bgr.shape[:2] or (frames and bgr.shape != frames[0].shape):
            raise InputError(f"{folder}: frame {stem} is {bgr.shape[1]}x{bgr.shape[0]} with a "
                             f"{mask.shape[1]}x{mask.shape[0]} mask: every image and mask of a sequence "
                             "must have one size")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        truths.append((mask >= 128).astype(np.float32))
    return Clip(folder.name, frames, truths, float(fps))
