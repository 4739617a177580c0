#!/usr/bin/env python3
"""Render the backgrounds bundled with vbg (``vbg --background beach.jpg``).

Why this exists
---------------
A fresh install should have a few backgrounds that work out of the box, and
their licence should be plain: these are painted here from nothing but numpy
and OpenCV (no input images, no fonts), so they are covered by the project's
own licence (Apache-2.0). Every scene is slightly soft on purpose: a room seen
out of focus behind a person looks natural and hides the procedural look.
The middle of each picture, where the person sits, is kept calm.

    python tools/make_backgrounds.py                 # writes vbg/assets/backgrounds/*.jpg
    python tools/make_backgrounds.py --only beach    # one scene
    python tools/make_backgrounds.py --out /tmp/bg   # elsewhere

Rendering is deterministic (fixed seeds, no threads in OpenCV), so a rerun
gives the same pixels; files are written under a temporary name and renamed
into place. This is a development tool: vbg does not import it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

W, H = 1920, 1080
JPEG_QUALITY = 92
OUT_DIR = Path(__file__).resolve().parent.parent / "vbg" / "assets" / "backgrounds"

Color = tuple[float, float, float]


# --------------------------------------------------------------------------- painting helpers
# Images are float32 RGB in 0-255 while painting; masks are float32 in 0-1.

def vgrad(stops: list[tuple[float, Color]], h: int = H, w: int = W) -> np.ndarray:
    """A vertical gradient through ``(y fraction, colour)`` stops."""
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h
    pos = [p for p, _ in stops]
    col = np.stack([np.interp(ys, pos, [c[i] for _, c in stops]) for i in range(3)], axis=1)
    return np.broadcast_to(col[:, None, :], (h, w, 3)).astype(np.float32)


def hgrad(stops: list[tuple[float, float]], h: int = H, w: int = W) -> np.ndarray:
    """A horizontal scalar ramp through ``(x fraction, value)`` stops, H x W x 1."""
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w
    row = np.interp(xs, [p for p, _ in stops], [v for _, v in stops]).astype(np.float32)
    return np.broadcast_to(row[None, :, None], (h, w, 1)).copy()


def noise(rng: np.random.Generator, h: int, w: int, cell: tuple[float, float], octaves: int = 4,
          gain: float = 0.5) -> np.ndarray:
    """Smooth fractal noise in about 0-1: random grids of ``cell`` (y, x) pixels, cubically
    enlarged and summed, each octave half the cell size and ``gain`` times the weight."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    cy, cx = cell
    for _ in range(octaves):
        gh, gw = max(2, int(h / cy) + 3), max(2, int(w / cx) + 3)
        grid = rng.random((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * cx), int(gh * cy)), interpolation=cv2.INTER_CUBIC)
        out += amp * big[int(cy):int(cy) + h, int(cx):int(cx) + w]
        total += amp
        amp *= gain
        cy, cx = max(1.0, cy / 2), max(1.0, cx / 2)
    return np.clip(out / total, 0.0, 1.0)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class Patch:
    """A mask that covers only its bounding box at (y0, x0): painting hundreds of small
    shapes (books, leaves) then costs their size, not the whole picture's."""

    def __init__(self, a: np.ndarray, y0: int, x0: int) -> None:
        self.a, self.y0, self.x0 = a, y0, x0

    def full(self) -> np.ndarray:
        out = np.zeros((H, W), np.float32)
        out[self.y0:self.y0 + self.a.shape[0], self.x0:self.x0 + self.a.shape[1]] = self.a
        return out


def _draw(points: np.ndarray, blur: float, draw: Callable[[np.ndarray, tuple[float, float]], None],
          pad: float = 0.0) -> Patch:
    """Run ``draw(canvas, (x0, y0))`` on a canvas just big enough for ``points`` (plus ``pad``
    and the blur's reach), then soften it by ``blur``."""
    m = pad + math.ceil(3 * blur) + 2
    x0 = int(max(0, math.floor(points[:, 0].min() - m)))
    y0 = int(max(0, math.floor(points[:, 1].min() - m)))
    x1 = int(min(W, math.ceil(points[:, 0].max() + m)))
    y1 = int(min(H, math.ceil(points[:, 1].max() + m)))
    if x1 <= x0 or y1 <= y0:
        return Patch(np.zeros((1, 1), np.float32), 0, 0)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    draw(canvas, (x0, y0))
    return Patch(soften(canvas.astype(np.float32) / 255.0, blur), y0, x0)


def _fixed(xy, origin) -> tuple[int, int]:
    return round((xy[0] - origin[0]) * 16), round((xy[1] - origin[1]) * 16)


def mask_poly(polys, blur: float = 0.0) -> Patch:
    """Filled polygons (lists of (x, y) float points), anti-aliased, optionally softened."""
    arrs = [np.asarray(p, np.float64) for p in polys]

    def draw(c, o):
        pts = [np.round((a - o) * 16).astype(np.int32) for a in arrs]
        cv2.fillPoly(c, pts, 255, cv2.LINE_AA, shift=4)
    return _draw(np.concatenate(arrs), blur, draw)


def mask_rect(x0: float, y0: float, x1: float, y1: float, blur: float = 0.0) -> Patch:
    return mask_poly([[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]], blur)


def mask_ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, blur: float = 0.0) -> Patch:
    r = max(rx, ry)

    def draw(c, o):
        cv2.ellipse(c, _fixed((cx, cy), o), (round(rx * 16), round(ry * 16)), angle, 0, 360, 255,
                    -1, cv2.LINE_AA, shift=4)
    return _draw(np.array([[cx - r, cy - r], [cx + r, cy + r]]), blur, draw)


def mask_lines(lines, blur: float = 0.0) -> Patch:
    """Thick anti-aliased strokes: ``(x0, y0, x1, y1, width)``."""
    pts = np.array([p for x0, y0, x1, y1, _ in lines for p in ((x0, y0), (x1, y1))], np.float64)
    pad = max(t for *_, t in lines)

    def draw(c, o):
        for x0, y0, x1, y1, t in lines:
            cv2.line(c, _fixed((x0, y0), o), _fixed((x1, y1), o), 255, max(1, round(t)), cv2.LINE_AA, shift=4)
    return _draw(pts, blur, draw, pad)


def soften(m: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(m, (0, 0), sigma) if sigma > 0 else m


def paint(img: np.ndarray, mask, color, opacity: float = 1.0) -> None:
    """Lay ``color`` (an RGB triple or a full-size image) over ``img`` where ``mask`` (a
    :class:`Patch` or a full-size array) is set."""
    if isinstance(mask, Patch):
        h, w = mask.a.shape
        sl = (slice(mask.y0, mask.y0 + h), slice(mask.x0, mask.x0 + w))
        img, mask = img[sl], mask.a
        if isinstance(color, np.ndarray) and color.ndim == 3:
            color = color[sl]
    else:  # a full-size mask: work on the rows and columns it touches
        mask = np.broadcast_to(mask, img.shape[:2])
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            return
        sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        img, mask = img[sl], mask[sl]
        if isinstance(color, np.ndarray) and color.ndim == 3:
            color = color[sl]
    a = mask[..., None] if opacity == 1.0 else (mask * np.float32(opacity))[..., None]
    d = np.asarray(color, np.float32) - img
    d *= a
    img += d


def glow(cx: float, cy: float, rx: float, ry: float | None = None) -> np.ndarray:
    """A soft Gaussian spot, 1 at the centre."""
    ry = rx if ry is None else ry
    x = (np.arange(W, dtype=np.float32) - cx) / rx
    y = (np.arange(H, dtype=np.float32) - cy) / ry
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def vignette(img: np.ndarray, strength: float) -> None:
    x = (np.arange(W, dtype=np.float32) - W / 2) / (W / 2)
    y = (np.arange(H, dtype=np.float32) - H / 2) / (H / 2)
    r2 = y[:, None] ** 2 * 0.6 + x[None, :] ** 2 * 0.4
    img *= (1.0 - strength * r2)[..., None]


def finish(img: np.ndarray, sigma: float, rng: np.random.Generator, grain: float = 0.8) -> np.ndarray:
    """Depth-of-field softness, a trace of grain against banding, then 8 bits."""
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.standard_normal((H, W, 1), dtype=np.float32) * grain
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def shade(color: Color, k: float) -> Color:
    return tuple(min(255.0, c * k) for c in color)


# --------------------------------------------------------------------------- beach

def _palm(cx: float, base_y: float, top: tuple[float, float], rng: np.random.Generator, scale: float = 1.0):
    """Trunk and frond strokes ``(x0, y0, x1, y1, width)`` of a palm whose trunk runs from
    (cx, base_y) to ``top``: each frond a drooping spine with leaflets hanging from both sides."""
    tx, ty = top
    trunk = []
    n = 30
    bend = 70 * scale
    for i in range(n):
        t0, t1 = i / n, (i + 1) / n
        p0 = (cx + (tx - cx) * t0 + bend * math.sin(math.pi * t0), base_y + (ty - base_y) * t0)
        p1 = (cx + (tx - cx) * t1 + bend * math.sin(math.pi * t1), base_y + (ty - base_y) * t1)
        trunk.append((*p0, *p1, (46 - 20 * t0) * scale))
    fronds = []
    for k in range(10):
        ang = math.radians(-185 + 190 * k / 9 + rng.uniform(-8, 8))
        length = rng.uniform(270, 350) * scale
        droop = rng.uniform(0.6, 1.1)
        spine = []
        for j in range(26):
            s = j / 25
            spine.append((tx + math.cos(ang) * length * s,
                          ty + math.sin(ang) * length * s + droop * length * s * s * 0.85, s))
        for j in range(len(spine) - 1):
            x, y, s = spine[j]
            x1, y1, _ = spine[j + 1]
            fronds.append((x, y, x1, y1, (9 - 6 * s) * scale))
            if s < 0.08:
                continue
            d = math.hypot(x1 - x, y1 - y) or 1.0
            ux, uy = (x1 - x) / d, (y1 - y) / d
            leaf = (80 * math.sin(math.pi * min(1.0, 0.15 + s * 0.9)) + 15) * scale * rng.uniform(0.8, 1.1)
            for side in (-1, 1):
                # leaflets point forward along the spine and hang down a little
                fwd = rng.uniform(0.6, 0.9)
                lx = ux * fwd - side * uy * 0.65
                ly = uy * fwd + side * ux * 0.65 + rng.uniform(0.5, 0.9)
                m = math.hypot(lx, ly)
                fronds.append((x, y, x + lx / m * leaf, y + ly / m * leaf, 3.5 * scale))
    return trunk, fronds


def render_beach() -> np.ndarray:
    rng = np.random.default_rng(1)
    hz = 0.53 * H  # horizon
    img = vgrad([(0.0, (62, 122, 196)), (0.30, (118, 170, 220)), (0.53, (206, 226, 238)), (1.0, (206, 226, 238))])
    sun = (1530.0, 230.0)
    img += glow(*sun, 420)[..., None] * np.float32([55, 40, 18])
    img += glow(*sun, 90)[..., None] * np.float32([60, 50, 30])

    # clouds: stretched fractal noise, thresholded softly, fading towards the horizon and the top
    n = noise(rng, H, W, (140, 420), octaves=5, gain=0.55)
    ys = np.arange(H, dtype=np.float32)[:, None] / H
    band = smoothstep(0.04, 0.14, ys) * (1 - smoothstep(0.38, 0.5, ys))
    cloud = smoothstep(0.50, 0.72, n) * band
    cloud_col = vgrad([(0.0, (246, 247, 250)), (0.5, (232, 236, 242)), (1.0, (232, 236, 242))])
    paint(img, cv2.GaussianBlur(cloud, (0, 0), 6), cloud_col, 0.85)

    # a low hazy headland on the far left of the horizon
    xs = np.arange(W, dtype=np.float32)
    hill = hz - 55 * np.exp(-((xs - 140) / 330) ** 2) - 18 * np.exp(-((xs - 520) / 160) ** 2)
    hill_m = (np.arange(H, dtype=np.float32)[:, None] >= hill[None, :]).astype(np.float32)
    paint(img, soften(hill_m, 2.0), (128, 156, 160), 0.85)

    # sea: darker far out, turquoise near the shore, long soft waves
    shore = 0.745 * H + 14 * np.sin(xs / 310 + 0.7) + 8 * np.sin(xs / 113 + 2.0)
    sea = vgrad([(0.0, (40, 92, 138)), (0.53, (46, 100, 146)), (0.62, (42, 122, 158)),
                 (0.74, (70, 172, 176)), (1.0, (70, 172, 176))])
    y_idx = np.arange(H, dtype=np.float32)[:, None]
    depth = np.clip((y_idx - hz) / (0.75 * H - hz), 0.0, 1.0)  # 0 at the horizon, 1 at the shore
    waves = noise(rng, H, W, (6, 260), octaves=3, gain=0.5)
    waves_near = noise(rng, H, W, (16, 380), octaves=3, gain=0.5)
    ripple = (1 - depth) * (waves - 0.5) + depth * (waves_near - 0.5)
    sea *= (1.0 + 0.16 * ripple)[..., None]
    glint = glow(sun[0], 0.6 * H, 150, 220) * smoothstep(0.55, 0.75, waves) * (1 - depth * 0.6)
    sea += glint[..., None] * np.float32([90, 80, 60])
    sea_m = np.broadcast_to(y_idx >= hz, (H, W)).astype(np.float32)
    paint(img, soften(sea_m, 1.2), sea)
    # haze on the horizon line
    img += (np.exp(-((y_idx - hz) / 10) ** 2) * 22)[..., None]

    # sand, with a wet band and a line of foam at the water's edge
    sand = vgrad([(0.0, (232, 214, 178)), (0.75, (232, 214, 178)), (1.0, (214, 192, 152))])
    sand *= (1.0 + 0.05 * (noise(rng, H, W, (40, 90), octaves=4) - 0.5)
             + 0.08 * (noise(rng, H, W, (120, 520), octaves=2) - 0.5))[..., None]
    sand_m = (y_idx >= shore[None, :]).astype(np.float32)
    paint(img, soften(sand_m, 1.5), sand)
    wet = (y_idx >= shore[None, :]) & (y_idx < shore[None, :] + 34 + 16 * np.sin(xs / 200)[None, :])
    paint(img, soften(wet.astype(np.float32), 6), (176, 160, 128), 0.55)
    foam_n = noise(rng, H, W, (4, 60), octaves=3)
    foam = np.exp(-((y_idx - shore[None, :] + 4) / 6) ** 2) * smoothstep(0.35, 0.6, foam_n)
    foam += 0.5 * np.exp(-((y_idx - shore[None, :] + 26) / 3) ** 2) * smoothstep(0.5, 0.7, foam_n)
    paint(img, np.clip(foam, 0, 1).astype(np.float32), (246, 248, 246), 0.9)

    # palms: one close on the left, a smaller one at the right edge; near, so softer still
    layer = np.zeros((H, W), np.float32)
    trunk_col, frond_col = (86, 70, 52), (44, 74, 48)
    for cx, base, top, s in ((190, H + 20, (330, 300), 1.0), (1890, 0.86 * H, (1800, 420), 0.62)):
        trunk, fronds = _palm(cx, base, top, rng, s)
        t = mask_lines(trunk).full()
        f = mask_lines(fronds).full()
        palm = np.zeros((H, W, 3), np.float32)
        paint(palm, t, trunk_col)
        paint(palm, f, frond_col)
        a = np.maximum(t, f)
        a_s = cv2.GaussianBlur(a, (0, 0), 4.5)
        palm_s = cv2.GaussianBlur(palm, (0, 0), 4.5) / np.maximum(a_s, 1e-4)[..., None]
        paint(img, a_s, palm_s)
        layer = np.maximum(layer, a_s)
    # a soft shadow of the near palm on the sand
    shadow = mask_ellipse(420, 0.95 * H, 260, 26, 8, blur=18).full()
    paint(img, shadow * (1 - layer), (120, 104, 84), 0.3)

    vignette(img, 0.10)
    return finish(img, 2.6, rng)


# --------------------------------------------------------------------------- books (office, library)

BOOK_COLORS: list[Color] = [
    (132, 46, 42), (40, 64, 104), (196, 168, 112), (52, 88, 66), (214, 206, 190), (160, 98, 48),
    (72, 70, 82), (110, 130, 150), (186, 120, 96), (64, 44, 40), (150, 150, 120), (30, 40, 56),
]


def shelf_of_books(img: np.ndarray, x0: float, x1: float, y_base: float, height: float,
                   rng: np.random.Generator) -> None:
    """Books standing on a shelf from ``x0`` to ``x1``, bottoms on ``y_base``; gaps and a
    leaning book now and then, as on a real shelf."""
    x = x0 + rng.uniform(0, 20)
    while x < x1 - 14:
        if rng.random() < 0.04:  # a gap
            x += rng.uniform(30, 70)
            continue
        bw = rng.uniform(14, 34)
        if x + bw > x1:
            break
        bh = height * rng.uniform(0.74, 0.97)
        col = np.float32(BOOK_COLORS[rng.integers(len(BOOK_COLORS))]) * rng.uniform(0.85, 1.1)
        if rng.random() < 0.07 and x + bh * 0.5 < x1:  # leaning on its neighbour
            lean = rng.uniform(0.14, 0.24)
            pts = [(x, y_base), (x + bw, y_base), (x + bw + bh * lean, y_base - bh * math.cos(lean)),
                   (x + bh * lean, y_base - bh * math.cos(lean))]
            paint(img, mask_poly([pts]), tuple(col))
            x += bw + bh * lean + 4
            continue
        paint(img, mask_rect(x, y_base - bh, x + bw, y_base), tuple(col))
        # a lighter band on the spine, as printed titles make
        if rng.random() < 0.7:
            yb = y_base - bh * rng.uniform(0.55, 0.8)
            paint(img, mask_rect(x + 3, yb, x + bw - 3, yb + bh * 0.08), (224, 210, 170), 0.55)
        # rounded spines catch the light on one side
        paint(img, mask_rect(x + bw * 0.65, y_base - bh, x + bw, y_base), (0, 0, 0), 0.18)
        x += bw + rng.uniform(0, 1.5)


def bookcase(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, rows: int,
             rng: np.random.Generator, wood: Color = (128, 90, 60)) -> None:
    paint(img, mask_rect(x0, y0, x1, y1, 1.0), shade(wood, 0.45))  # the dim inside
    t = 22.0
    step = (y1 - y0 - t) / rows
    for r in range(rows):
        top = y0 + t + r * step
        base = top + step - t
        # shadow under the shelf above
        fall = np.clip(1 - (np.arange(H, dtype=np.float32)[:, None] - top) / (step * 0.45), 0, 1)
        paint(img, mask_rect(x0 + t, top, x1 - t, top + step * 0.45).full() * fall, (0, 0, 0), 0.35)
        shelf_of_books(img, x0 + t + 6, x1 - t - 6, base, step - t - 18, rng)
        paint(img, mask_rect(x0, base, x1, base + t), wood)
        paint(img, mask_rect(x0, base, x1, base + 4), shade(wood, 1.25))
    paint(img, mask_rect(x0, y0, x1, y0 + t), wood)
    paint(img, mask_rect(x0, y0, x0 + t, y1), shade(wood, 1.08))
    paint(img, mask_rect(x1 - t, y0, x1, y1), shade(wood, 0.9))


def plant(img: np.ndarray, cx: float, pot_top: float, pot_w: float, pot_h: float, reach: float,
          rng: np.random.Generator, pot: Color = (222, 220, 214), leaves: int = 60,
          leaf: float | None = None, spread: float = 1.0) -> None:
    """A leafy pot plant: leaves as rotated ellipses fanning out of the pot."""
    for i in range(leaves):
        ang = math.radians(rng.uniform(-165, -15))
        r = reach * math.sqrt(rng.uniform(0.15, 1.0))
        lx, ly = cx + math.cos(ang) * r * spread, pot_top + math.sin(ang) * r * 0.95 + 10
        length = rng.uniform(0.16, 0.26) * (leaf or reach)
        g = rng.uniform(0.7, 1.25)
        col = (46 * g, 104 * g, 54 * g)
        stem = mask_lines([(cx + rng.uniform(-10, 10), pot_top + 5, lx, ly, 3)])
        paint(img, stem, (54, 82, 46))
        paint(img, mask_ellipse(lx, ly, length, length * 0.42, math.degrees(ang) + rng.uniform(-25, 25)), col)
    pts = [(cx - pot_w / 2, pot_top), (cx + pot_w / 2, pot_top), (cx + pot_w * 0.38, pot_top + pot_h),
           (cx - pot_w * 0.38, pot_top + pot_h)]
    paint(img, mask_poly([pts]), pot)
    paint(img, mask_poly([[(cx + pot_w * 0.1, pot_top), (cx + pot_w / 2, pot_top),
                           (cx + pot_w * 0.38, pot_top + pot_h), (cx + pot_w * 0.08, pot_top + pot_h)]]),
          (0, 0, 0), 0.12)
    paint(img, mask_rect(cx - pot_w / 2 - 4, pot_top - 4, cx + pot_w / 2 + 4, pot_top + 12), shade(pot, 1.04))


# --------------------------------------------------------------------------- office

def render_office() -> np.ndarray:
    rng = np.random.default_rng(2)
    wall = (226, 220, 208)
    img = vgrad([(0.0, shade(wall, 0.86)), (0.5, wall), (1.0, shade(wall, 0.93))])
    # daylight from the window on the left: the wall is brighter near it
    img *= hgrad([(0.0, 1.06), (0.45, 1.0), (1.0, 0.82)])
    img += glow(380, 420, 620, 520)[..., None] * np.float32([18, 18, 16])

    # window with a bright sky and out-of-focus trees
    wx0, wy0, wx1, wy1 = 110.0, 110.0, 640.0, 800.0
    outside = vgrad([(0.0, (200, 222, 242)), (0.45, (230, 238, 244)), (1.0, (236, 240, 238))])
    ys = np.arange(H, dtype=np.float32)[:, None] / H
    trees = smoothstep(0.5, 0.6, noise(rng, H, W, (80, 80), octaves=3) + 1.6 * (ys - 0.55))
    trees = cv2.GaussianBlur(trees, (0, 0), 6)
    paint(outside, trees, vgrad([(0.3, (132, 168, 118)), (0.75, (96, 132, 92))]), 0.8)
    paint(img, mask_rect(wx0, wy0, wx1, wy1), outside)
    frame = (244, 243, 240)
    ft = 22.0
    for r in ((wx0 - ft, wy0 - ft, wx1 + ft, wy0), (wx0 - ft, wy1, wx1 + ft, wy1 + ft),
              (wx0 - ft, wy0, wx0, wy1), (wx1, wy0, wx1 + ft, wy1),
              ((wx0 + wx1) / 2 - 8, wy0, (wx0 + wx1) / 2 + 8, wy1), (wx0, 470 - 8, wx1, 470 + 8)):
        paint(img, mask_rect(*r), frame)
    paint(img, mask_rect(wx0 - 40, wy1 + ft, wx1 + 40, wy1 + ft + 18), (236, 234, 228))  # sill
    paint(img, mask_rect(wx0 - 40, wy1 + ft + 18, wx1 + 40, wy1 + ft + 40, 8), (0, 0, 0), 0.12)
    # light falling on the wall beside the window
    paint(img, mask_poly([[(wx1 + ft, wy0), (wx1 + 300, wy0 + 120), (wx1 + 300, wy1 + 200),
                           (wx1 + ft, wy1)]], 60), (255, 250, 238), 0.18)

    # a calm framed picture between window and centre
    paint(img, mask_rect(708, 250, 868, 470, 4), (0, 0, 0), 0.15)
    paint(img, mask_rect(700, 240, 860, 460), (60, 56, 52))
    paint(img, mask_rect(712, 252, 848, 448), (238, 234, 226))
    art = vgrad([(0.0, (170, 190, 200)), (0.6, (206, 196, 170)), (1.0, (150, 140, 118))])
    paint(img, mask_rect(730, 270, 830, 430), art)

    # bookcase on the right
    bookcase(img, 1340, 150, 1880, 960, 4, rng)
    paint(img, mask_rect(1310, 150, 1340, 960, 18), (0, 0, 0), 0.12)  # its shadow on the wall

    # desk along the bottom, and a plant on it
    paint(img, mask_rect(0, 930, W, H), (176, 134, 96))
    desk_grain = noise(rng, H, W, (3, 400), octaves=3)
    img *= np.where(np.arange(H)[:, None, None] >= 930, 1 + 0.06 * (desk_grain[..., None] - 0.5), 1).astype(
        np.float32)
    paint(img, mask_rect(0, 930, W, 938), (206, 170, 128))
    paint(img, mask_rect(0, 938, W, 990, 12).full() * (np.arange(H)[:, None] >= 938), (0, 0, 0), 0.1)
    plant(img, 1235, 838, 110, 92, 200, rng)
    paint(img, mask_ellipse(1235, 932, 80, 8, blur=6), (0, 0, 0), 0.25)
    # a mug near the left, on the desk
    paint(img, mask_rect(470, 860, 540, 932), (64, 88, 120))
    paint(img, mask_ellipse(540, 895, 22, 20), (64, 88, 120))
    paint(img, mask_ellipse(540, 895, 12, 11), (226, 220, 208))

    vignette(img, 0.12)
    return finish(img, 5.0, rng)


# --------------------------------------------------------------------------- living room

def render_living_room() -> np.ndarray:
    rng = np.random.default_rng(3)
    wall = (176, 186, 166)  # sage
    img = vgrad([(0.0, shade(wall, 0.82)), (0.55, wall), (1.0, shade(wall, 0.9))])
    img *= hgrad([(0.0, 0.9), (0.5, 1.0), (1.0, 0.92)])
    # a warm floor lamp at the right lights the wall around it
    lamp_x, lamp_y = 1800.0, 360.0
    img += glow(lamp_x - 60, lamp_y + 40, 420, 460)[..., None] * np.float32([70, 52, 26])

    # floor, seen at the sides of the sofa
    floor_y = 990.0
    paint(img, mask_rect(0, floor_y, W, H), vgrad([(0.9, (128, 96, 70)), (1.0, (112, 82, 60))]))
    paint(img, mask_rect(0, floor_y - 16, W, floor_y), (232, 230, 222))  # skirting board

    # two frames on the wall, to the sides of the middle
    for x0, y0, x1, y1, a, b in ((330, 220, 630, 450, (212, 160, 110), (92, 120, 130)),
                                 (1250, 250, 1450, 500, (226, 214, 190), (168, 92, 70))):
        paint(img, mask_rect(x0 + 10, y0 + 12, x1 + 10, y1 + 12, 8), (0, 0, 0), 0.18)
        paint(img, mask_rect(x0, y0, x1, y1), (236, 232, 222))
        paint(img, mask_rect(x0 + 26, y0 + 26, x1 - 26, y1 - 26), (226, 218, 204))
        ix0, iy0, ix1, iy1 = x0 + 40, y0 + 40, x1 - 40, y1 - 40
        paint(img, mask_rect(ix0, iy0, ix1, iy1), vgrad([(0, a), (1, shade(a, 0.85))]))
        paint(img, mask_ellipse((ix0 + ix1) / 2 + 20, (iy0 + iy1) / 2 + 10, (ix1 - ix0) * 0.28,
                                (iy1 - iy0) * 0.3), b)

    # floor lamp: pole, foot and a glowing shade
    paint(img, mask_rect(lamp_x - 5, lamp_y + 60, lamp_x + 5, 1040), (60, 52, 44))
    paint(img, mask_ellipse(lamp_x, 1040, 60, 10), (60, 52, 44))
    shade_pts = [(lamp_x - 70, lamp_y - 70), (lamp_x + 70, lamp_y - 70), (lamp_x + 100, lamp_y + 70),
                 (lamp_x - 100, lamp_y + 70)]
    paint(img, mask_poly([shade_pts]), (250, 228, 180))
    img += glow(lamp_x, lamp_y, 90, 70)[..., None] * np.float32([20, 16, 8])

    # sofa: back cushions, arms, seat, throw pillows
    sofa = (86, 104, 128)
    sx0, sx1, top, bottom = 240.0, 1680.0, 680.0, 1050.0
    paint(img, mask_rect(sx0 - 20, top + 30, sx1 + 20, bottom + 14, 20), (0, 0, 0), 0.22)
    paint(img, mask_rect(sx0, top, sx1, bottom), shade(sofa, 0.92))
    cw = (sx1 - sx0 - 220) / 3
    for i in range(3):
        cx0 = sx0 + 110 + i * cw
        cush = mask_poly([[(cx0 + 6, top + 30), (cx0 + cw - 6, top + 30), (cx0 + cw - 10, 900), (cx0 + 10, 900)]], 2)
        paint(img, cush, vgrad([(0.6, shade(sofa, 1.08)), (0.83, shade(sofa, 0.95))]))
        if i < 2:
            paint(img, mask_rect(cx0 + cw - 8, top + 40, cx0 + cw + 8, 900, 6), (0, 0, 0), 0.25)
    paint(img, mask_rect(sx0, 900, sx1, bottom, 1), vgrad([(0.83, shade(sofa, 1.1)), (0.97, shade(sofa, 0.9))]))
    paint(img, mask_rect(sx0, 892, sx1, 912, 6), (0, 0, 0), 0.2)
    for ax in (sx0 - 30, sx1 - 110):
        arm = mask_rect(ax, 790, ax + 140, bottom, 1)
        paint(img, arm, vgrad([(0.7, shade(sofa, 1.02)), (0.97, shade(sofa, 0.86))]))
        paint(img, mask_ellipse(ax + 70, 795, 70, 28), shade(sofa, 1.12))
    for px, py, col, ang in ((450, 800, (214, 166, 70), -8), (1470, 805, (186, 98, 74), 7)):
        paint(img, mask_ellipse(px + 10, py + 16, 120, 100, ang, 12), (0, 0, 0), 0.3)
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        c, s_ = np.cos(t), np.sin(t)
        r = (np.abs(c) ** 4 + np.abs(s_) ** 4) ** -0.25  # a squircle: a stuffed square
        ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        ex, ey = 112 * r * c, 100 * r * s_
        outline = np.stack([px + ex * ca - ey * sa, py + ex * sa + ey * ca], axis=1)
        paint(img, mask_poly([outline], 1.5),
              vgrad([((py - 100) / H, shade(col, 1.08)), ((py + 100) / H, shade(col, 0.84))]))
        paint(img, mask_ellipse(px - 30, py - 30, 70, 50, ang, 24), (255, 255, 255), 0.14)

    # a tall plant standing on the floor at the far left
    plant(img, 110, 890, 150, 160, 480, rng, pot=(196, 176, 156), leaves=110, leaf=260, spread=0.55)
    paint(img, mask_ellipse(120, 1052, 95, 10, blur=8), (0, 0, 0), 0.3)

    vignette(img, 0.14)
    return finish(img, 5.5, rng)


# --------------------------------------------------------------------------- studio

def render_studio() -> np.ndarray:
    rng = np.random.default_rng(4)
    base = (74, 88, 104)
    img = vgrad([(0.0, shade(base, 0.8)), (0.6, base), (1.0, shade(base, 0.85))])
    # a painted, mottled canvas backdrop lit from behind the sitter
    mottle = noise(rng, H, W, (260, 260), octaves=5, gain=0.6)
    img *= (1.0 + 0.28 * (mottle - 0.5))[..., None]
    img += glow(W * 0.5, H * 0.45, 560, 420)[..., None] * np.float32([54, 58, 60])
    vignette(img, 0.35)
    return finish(img, 3.0, rng, grain=1.0)


SCENES: dict[str, Callable[[], np.ndarray]] = {
    "beach.jpg": render_beach,
    "office.jpg": render_office,
    "living-room.jpg": render_living_room,
    "studio.jpg": render_studio,
}


def render(name: str) -> np.ndarray:
    """The scene ``name`` (e.g. "beach.jpg") as an H x W x 3 RGB uint8 image."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # threaded filters could split work differently from run to run
    try:
        return SCENES[name]()
    finally:
        cv2.setNumThreads(threads)


def encode(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="render only this scene (file name or stem); repeatable")
    args = ap.parse_args(argv)
    names = list(SCENES)
    if args.only:
        wanted = {o if o.endswith(".jpg") else f"{o}.jpg" for o in args.only}
        unknown = wanted - set(SCENES)
        if unknown:
            print(f"unknown scene(s) {', '.join(sorted(unknown))}: choose from {', '.join(SCENES)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    for name in names:
        data = encode(render(name))
        write_atomic(args.out / name, data)
        print(f"{args.out / name}: {len(data) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
