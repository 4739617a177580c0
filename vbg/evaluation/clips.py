"""Test clips with exact per-frame ground truth: an RGBA person moving over a room.

``render_clip(person_rgba, room_rgb, "sway")`` returns the frames (H x W x 3
uint8 RGB) and the true alpha of each (H x W float32): the person is placed
with sub-pixel accuracy (premultiplied colour and alpha warped together, then
``I = F + (1 - a) B``), so the truth is the exact matte of every frame, soft
hair and all. A little Gaussian sensor noise (different in every frame, fixed
by ``seed``) keeps optical flow and the guided filter honest: real cameras are
never noise-free, and flicker measured on noise-free frames flatters.

Motions (``MOTIONS``), all in whole frames at ``fps`` so that a shorter clip
cuts the motion short rather than speeding it up:

- ``still``: the person does not move (only the noise changes): flicker.
- ``sway``: a slow sway from the hips, over 3 s: the head moves +-60 px and the
  shoulders about a third of that (a bend, not a slide: no single affine
  motion fits it), with a slight bob.
- ``fast``: quick sideways moves, +-120 px over 2 s (up to 12.6 px a frame at 640 wide).
- ``zoom``: leaning in and back, the person's scale 0.85 .. 1.15 over 2 s.
- ``leave``: walks out of the frame to the right, stays out 10 frames, comes back.

Sizes and speeds scale with the frame width (given for 640 x 360).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..compositing.backgrounds import cover_fit

MOTIONS = ("still", "sway", "fast", "zoom", "leave")
MOVING = ("sway", "fast", "zoom", "leave")


@dataclass(frozen=True, slots=True)
class Pose:
    dx: float  # horizontal offset of the person's centre from the frame centre, in frame widths
    dy: float  # vertical offset, in frame heights (positive: down)
    scale: float  # 1 = the person's height is 90% of the frame's
    bend: float = 0.0  # sideways shift of the top of the head (frame widths), fading as (height fraction)^2


def pose(motion: str, t: int) -> Pose:
    """Where the person is at frame ``t`` of a ``motion`` clip."""
    if motion == "still":
        return Pose(0.0, 0.0, 1.0)
    if motion == "sway":
        return Pose(0.0, 3 / 360 * math.sin(2 * math.pi * t / 37), 1.0, 60 / 640 * math.sin(2 * math.pi * t / 90))
    if motion == "fast":
        return Pose(120 / 640 * math.sin(2 * math.pi * t / 60), 0.0, 1.0)
    if motion == "zoom":
        return Pose(0.0, 0.0, 1.0 - 0.15 * math.cos(2 * math.pi * t / 60))
    if motion == "leave":
        # rest 8, out over 30 (ease in/out), gone 10, back over 30, rest: 0 -> 0.9 frame widths
        out_at, gone_at, back_at, home_at = 8, 38, 48, 78
        if t < out_at or t >= home_at:
            u = 0.0
        elif t < gone_at:
            u = _ease((t - out_at) / (gone_at - out_at))
        elif t < back_at:
            u = 1.0
        else:
            u = 1.0 - _ease((t - back_at) / (home_at - back_at))
        return Pose(0.9 * u, 0.0, 1.0)
    raise ValueError(f"motion {motion!r} is not known: use one of {', '.join(MOTIONS)}")


def _ease(u: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * min(max(u, 0.0), 1.0))


def load_person(path: str | Path) -> np.ndarray:
    """An RGBA image file -> H x W x 4 uint8 RGBA (straight alpha)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{path} is not an RGBA image")
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def load_room(path: str | Path) -> np.ndarray:
    """An image file -> H x W x 3 uint8 RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path} is not an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class Clip:
    motion: str
    frames: list[np.ndarray]  # H x W x 3 uint8 RGB
    truths: list[np.ndarray]  # H x W float32 alpha in [0, 1]
    fps: float = 30.0
    room: np.ndarray | None = None  # H x W x 3 uint8: the background alone, noise-free

    def __len__(self) -> int:
        return len(self.frames)


def render_clip(
    person_rgba: np.ndarray,
    room_rgb: np.ndarray,
    motion: str,
    *,
    n_frames: int = 90,
    size: tuple[int, int] = (360, 640),
    noise: float = 2.0,
    room_gain: float = 1.0,
    fps: float = 30.0,
    seed: int = 0,
) -> Clip:
    """Render ``n_frames`` of ``motion`` at ``size`` = (H, W).

    ``person_rgba``: H x W x 4 uint8, straight alpha, the person standing on
    the image's bottom edge (cropped at the waist, as a webcam sees them).
    ``room_rgb`` is cover-fitted to the frame; ``room_gain`` scales its
    brightness (below 1: a darker room, to make halos show). ``noise``: sensor
    noise sigma in grey levels.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r} is not known: use one of {', '.join(MOTIONS)}")
    frames, truths = [], []
    room = _fit_room(room_rgb, size, room_gain)
    for frame, a in iter_frames(person_rgba, room_rgb, (pose(motion, t) for t in range(n_frames)), size=size,
                                noise=noise, room_gain=room_gain, seed=seed):
        frames.append(frame)
        truths.append(a)
    return Clip(motion, frames, truths, fps, np.clip(room + 0.5, 0, 255).astype(np.uint8))


def _fit_room(room_rgb: np.ndarray, size: tuple[int, int], room_gain: float) -> np.ndarray:
    return cover_fit(room_rgb, size).astype(np.float32) * np.float32(room_gain)


def iter_frames(
    person_rgba: np.ndarray,
    room_rgb: np.ndarray,
    poses: Iterable[Pose],
    *,
    size: tuple[int, int] = (360, 640),
    noise: float = 2.0,
    room_gain: float = 1.0,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One (frame, true alpha) per pose, rendered as :func:`render_clip` does;
    a generator, so a long clip (``tools/make_demo.py``) need not fit in memory."""
    if person_rgba.ndim != 3 or person_rgba.shape[2] != 4 or person_rgba.dtype != np.uint8:
        raise ValueError(f"person_rgba must be H x W x 4 uint8, got {person_rgba.shape} {person_rgba.dtype}")
    H, W = size
    room = _fit_room(room_rgb, size, room_gain)
    # The person at scale 1 (90% of the frame height), premultiplied, reduced once with INTER_AREA.
    ph = round(0.9 * H)
    pw = round(person_rgba.shape[1] * ph / person_rgba.shape[0])
    small = cv2.resize(person_rgba, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    premul = np.dstack([small[:, :, :3] * small[:, :, 3:], small[:, :, 3:]])
    rng = np.random.default_rng(seed)
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    up = np.clip((H - gy) / ph, 0.0, 1.0) ** 2  # height fraction above the bottom, squared: the bend profile
    for p in poses:
        s = p.scale
        # The person's bottom centre sits just below the frame's bottom centre (the cut
        # at the waist never shows); scaled about that point, then bent sideways.
        bx, by = W / 2.0 + p.dx * W, H + 0.01 * H + p.dy * H
        map_x = (gx - p.bend * W * up - bx) / s + pw / 2.0
        map_y = (gy - by) / s + ph
        warped = cv2.remap(premul, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0, 0))
        a = np.clip(warped[:, :, 3], 0.0, 1.0)
        img = warped[:, :, :3] * 255.0 + room * (1.0 - a)[:, :, None]
        if noise > 0:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8), np.ascontiguousarray(a, dtype=np.float32)
