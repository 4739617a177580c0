"""Halo: how much the person brightens (or darkens) the blurred room right next to them.

A plain blur of the camera frame smears the person into the background around
them: a glow that follows the silhouette. ``BlurBackground`` blurs the room
only (normalised convolution with the mask as weight). :func:`measure_halo`
composites the same frames with the same masks over both, and over the same
blur of the *empty* room (the clip's room without the person), and reports the
mean luma difference in a band just outside the true silhouette::

    halo = mean over band of  Y(composite over blur(frame)) - Y(composite over blur(empty room))

Mask errors (spill, holes) are in both composites alike and cancel; what is
left is the person carried into the background by the blur. Grey levels,
signed: positive = a bright person brightens their surroundings.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..compositing import BlurBackground, Compositor


class GaussianBlurBackground:
    """The plain blur: the whole camera frame, person included, Gaussian-blurred
    with ``BlurBackground``'s sigma for the same strength (the Background protocol)."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = float(strength)
        self._sigma = 1.0

    def prepare(self, out_hw: tuple[int, int]) -> None:
        self._sigma = self.strength * BlurBackground.SIGMA_FRACTION * min(out_hw)

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(frame, (0, 0), self._sigma)

    def close(self) -> None:
        pass


class _Fixed:
    """A background that is one given picture (the blurred empty room)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def prepare(self, out_hw: tuple[int, int]) -> None:
        pass

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return self.image

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Halo:
    mask_weighted: float  # grey levels, BlurBackground
    plain: float  # grey levels, full-frame Gaussian blur of the same strength
    contrast: float  # mean luma of the person minus that of the band's room: what a halo has to work with
    frames: int

    def as_dict(self) -> dict:
        return {"mask_weighted": self.mask_weighted, "plain": self.plain, "contrast": self.contrast,
                "frames": self.frames}


def outer_band(truth: np.ndarray, inner: int = 2, outer: int = 12) -> np.ndarray:
    """Bool mask of the true background between ``inner`` and ``outer`` pixels from the silhouette."""
    hard = (truth >= 0.5).astype(np.uint8)
    near = cv2.dilate(hard, np.ones((2 * inner + 1, 2 * inner + 1), np.uint8))
    far = cv2.dilate(hard, np.ones((2 * outer + 1, 2 * outer + 1), np.uint8))
    return (far > 0) & (near == 0) & (truth <= 0.0)


def measure_halo(frames, truths, alphas, room: np.ndarray, *, strength: float = 1.0,
                 band: tuple[int, int] = (2, 12)) -> Halo:
    """Mean halo over frames. ``alphas``: the uint8 masks the pipeline made for
    ``frames`` (e.g. from :func:`~vbg.evaluation.simulate.simulate_live`);
    ``room``: the background without the person (H x W x 3 uint8)."""
    hw = room.shape[:2]
    empty = np.zeros(hw, np.uint8)
    mw_bg, plain_bg = BlurBackground(strength), GaussianBlurBackground(strength)
    mw_bg.prepare(hw)
    plain_bg.prepare(hw)
    mw_ref = _Fixed(mw_bg.render(room, empty).copy())
    plain_ref = _Fixed(plain_bg.render(room, empty).copy())
    comps = {name: Compositor(hw, bg) for name, bg in
             (("mw", mw_bg), ("plain", plain_bg), ("mw_ref", mw_ref), ("plain_ref", plain_ref))}
    room_y = cv2.cvtColor(room, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sums = {"mw": 0.0, "plain": 0.0, "contrast": 0.0}
    n = 0
    try:
        for frame, truth, alpha in zip(frames, truths, alphas):
            b = outer_band(truth, *band)
            person = truth >= 0.99
            if not b.any() or not person.any():
                continue
            y = {k: cv2.cvtColor(c.compose(frame, alpha), cv2.COLOR_RGB2GRAY).astype(np.float32)
                 for k, c in comps.items()}
            sums["mw"] += float((y["mw"] - y["mw_ref"])[b].mean())
            sums["plain"] += float((y["plain"] - y["plain_ref"])[b].mean())
            frame_y = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
            sums["contrast"] += float(frame_y[person].mean() - room_y[b].mean())
            n += 1
    finally:
        for c in comps.values():
            c.close()
    if n == 0:
        raise ValueError("no frame shows both the person and background next to them")
    return Halo(sums["mw"] / n, sums["plain"] / n, sums["contrast"] / n, n)
