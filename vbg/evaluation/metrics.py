"""Matte quality against exact ground truth: IoU, boundary F, edge error, flicker and lag.

Pure numpy. Every function takes alphas as float arrays in [0, 1] or uint8
0..255 (converted with :func:`as_alpha`), prediction and truth at the same size.

- :func:`iou`: intersection over union of ``alpha >= 0.5``; 1.0 when both are
  empty (the person has left the frame and nothing is predicted). The meter
  counts silhouettes under 0.1% of the frame as empty (``EMPTY_AREA``).
- :func:`boundary_f`: the DAVIS boundary measure (Perazzi et al., CVPR 2016):
  the contour pixels of prediction and truth, each matched if the other's
  contour passes within a tolerance disc; precision, recall and their F.
  A silhouette a few pixels off everywhere keeps a high IoU on a large person
  but loses its boundary F: the measure of edges on real, hand-drawn masks.
  The tolerance is 3 px at 480p (:func:`boundary_tolerance`), stricter than
  the DAVIS toolkit's default (0.8% of the diagonal, 8 px at 854x480), so
  its F values are not comparable with published DAVIS ones.
- :func:`edge_error`: mean ``|pred - truth|`` over :func:`edge_band`, the pixels
  within ``radius`` of the truth's 0.5 contour: where halos, soft and misplaced
  edges show. NaN when the truth has no edge.
- :func:`flicker`: mean ``|pred_t - pred_{t-1}|`` over the pixels whose truth did
  not change between those frames (by at most ``tol``): change the viewer sees
  that nothing in the scene explains.
- :func:`lag`: the frame shift ``k`` that makes ``pred_t`` best match
  ``truth_{t-k}``, refined to a fraction of a frame. Positive: the prediction
  trails the truth (a silhouette behind a moving head).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EMPTY_AREA = 0.001  # QualityMeter: both silhouettes under 0.1% of the frame = both empty


def as_alpha(a: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1; float arrays pass through as float32."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1.0 / 255.0)
    if a.dtype.kind != "f":
        raise TypeError(f"an alpha must be uint8 or float, got {a.dtype}")
    return a.astype(np.float32, copy=False)


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} must be 2-D arrays of one shape")


def iou(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5, *, empty_area: float = 0.0) -> float:
    """IoU of the two silhouettes cut at ``threshold``; 1.0 if both are empty.

    ``empty_area``: a silhouette covering at most this fraction of the frame
    counts as empty when the other one does too (a few stray pixels in a
    frame the person has left would otherwise score 0).
    """
    p, t = as_alpha(pred), as_alpha(truth)
    _check_pair(p, t)
    pm, tm = p >= threshold, t >= threshold
    union = np.count_nonzero(pm | tm)
    if union <= empty_area * p.size:
        return 1.0
    return float(np.count_nonzero(pm & tm) / union)


BOUNDARY_TOL_480P = 3  # boundary_f: match within 3 px at 480 lines, scaled with the frame height


@dataclass(frozen=True, slots=True)
class BoundaryF:
    precision: float  # share of the prediction's contour within the tolerance of the truth's
    recall: float  # share of the truth's contour within the tolerance of the prediction's
    f: float


def boundary_tolerance(height: int) -> int:
    """The matching distance for a frame ``height`` lines high: 3 px at 480p, at least 1."""
    return max(1, math.floor(BOUNDARY_TOL_480P * height / 480 + 0.5))


def contour(silhouette: np.ndarray) -> np.ndarray:
    """The silhouette's own pixels that touch the background (4-neighbours).

    One pixel wide, inside the silhouette. The frame's border is not a
    contour: a person cut by the frame edge has no edge there to find.
    """
    s = np.asarray(silhouette, bool)
    if s.ndim != 2:
        raise ValueError(f"a silhouette must be 2-D, got shape {s.shape}")
    inner = s.copy()
    inner[1:] &= s[:-1]
    inner[:-1] &= s[1:]
    inner[:, 1:] &= s[:, :-1]
    inner[:, :-1] &= s[:, 1:]
    return s & ~inner


def _disc_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disc ``dy^2 + dx^2 <= radius^2`` (shifted ORs, numpy only)."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy or dx) and dy * dy + dx * dx <= radius * radius and abs(dy) < h and abs(dx) < w:
                out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] |= \
                    mask[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    return out


def boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: int | None = None,
               threshold: float = 0.5) -> BoundaryF:
    """Boundary precision, recall and F of the silhouettes cut at ``threshold``.

    A contour pixel (:func:`contour`) of the prediction counts for precision
    if the truth's contour passes within ``tolerance`` pixels (Euclidean, a
    disc), and a truth contour pixel counts for recall likewise
    (``tolerance``: :func:`boundary_tolerance` of the frame height when None).
    No contour on either side: 1.0; on one side only: F 0 (the missing side's
    precision or recall counts as 1, as DAVIS does).
    """
    p, t = as_alpha(pred), as_alpha(truth)
    _check_pair(p, t)
    tol = boundary_tolerance(p.shape[0]) if tolerance is None else tolerance
    if isinstance(tol, bool) or not isinstance(tol, int) or tol < 0:
        raise ValueError(f"boundary tolerance must be a whole number of pixels >= 0, got {tol!r}")
    pc, tc = contour(p >= threshold), contour(t >= threshold)
    n_p, n_t = np.count_nonzero(pc), np.count_nonzero(tc)
    if n_p == 0 and n_t == 0:
        return BoundaryF(1.0, 1.0, 1.0)
    if n_p == 0 or n_t == 0:
        return BoundaryF(1.0 if n_p == 0 else 0.0, 1.0 if n_t == 0 else 0.0, 0.0)
    prec = np.count_nonzero(pc & _disc_dilate(tc, tol)) / n_p
    rec = np.count_nonzero(tc & _disc_dilate(pc, tol)) / n_t
    f = 2.0 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return BoundaryF(float(prec), float(rec), float(f))


def _max_filter(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2 radius + 1)^2 square, separable, in numpy."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        n = src.shape[axis]
        for d in range(1, min(radius, n - 1) + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def edge_band(truth: np.ndarray, radius: int = 5, threshold: float = 0.5) -> np.ndarray:
    """Bool mask of the pixels within ``radius`` (square distance) of the truth's contour.

    The contour lies between a pixel at or above ``threshold`` and a 4-neighbour
    below it; the band covers ``radius`` pixels on each side. Empty when the
    truth is all person or all background.
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"edge band radius must be a positive integer, got {radius!r}")
    t = as_alpha(truth)
    if t.ndim != 2:
        raise ValueError(f"truth must be 2-D, got shape {t.shape}")
    hard = t >= threshold
    edge = np.zeros_like(hard)
    dy = hard[1:] != hard[:-1]
    dx = hard[:, 1:] != hard[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    # ``edge`` marks both pixels of each crossing: one step of the band already.
    return _max_filter(edge, radius - 1) if radius > 1 else edge


def edge_error(pred: np.ndarray, truth: np.ndarray, radius: int = 5, *, band: np.ndarray | None = None) -> float:
    """Mean absolute alpha error over the edge band (``band`` if given); NaN if it is empty."""
    p, t = as_alpha(pred), as_alpha(truth)
    _check_pair(p, t)
    b = edge_band(t, radius) if band is None else band
    n = np.count_nonzero(b)
    if n == 0:
        return math.nan
    return float(np.abs(p[b] - t[b]).sum(dtype=np.float64) / n)


def flicker_sums(pred0, pred1, truth0, truth1, tol: float = 1e-3) -> tuple[float, int]:
    """(sum of ``|pred1 - pred0|``, pixel count) over the pixels whose truth stayed within ``tol``."""
    p0, p1, t0, t1 = (as_alpha(a) for a in (pred0, pred1, truth0, truth1))
    _check_pair(p0, t0)
    _check_pair(p1, t1)
    _check_pair(p0, p1)
    still = np.abs(t1 - t0) <= tol
    n = np.count_nonzero(still)
    return float(np.abs(p1 - p0)[still].sum(dtype=np.float64)), int(n)


def flicker(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], tol: float = 1e-3) -> float:
    """Mean frame-to-frame change of the prediction where the truth did not change; NaN if nowhere."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} truths")
    total, count = 0.0, 0
    for i in range(1, len(preds)):
        s, n = flicker_sums(preds[i - 1], preds[i], truths[i - 1], truths[i], tol)
        total += s
        count += n
    return total / count if count else math.nan


def lag_errors(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], max_shift: int = 4) -> dict[int, float]:
    """``{k: mean_t mean |pred_t - truth_{t-k}|}`` for ``k`` in ``-max_shift..max_shift``.

    Each shift is averaged over the frames where both exist; a shift needs at
    least two such frames (so ``max_shift`` is capped at ``len - 2``).
    """
    n = len(preds)
    if n != len(truths):
        raise ValueError(f"{n} predictions but {len(truths)} truths")
    if n < 2:
        raise ValueError("lag needs at least two frames")
    m = min(max_shift, n - 2)
    p = [as_alpha(a) for a in preds]
    t = [as_alpha(a) for a in truths]
    out = {}
    for k in range(-m, m + 1):
        errs = [float(np.abs(p[i] - t[i - k]).mean(dtype=np.float64)) for i in range(max(0, k), min(n, n + k))]
        out[k] = sum(errs) / len(errs)
    return out


@dataclass(frozen=True, slots=True)
class Lag:
    frames: float  # sub-frame estimate; NaN when nothing moved
    best: int  # the whole-frame shift with the smallest error
    errors: dict[int, float]


def lag(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], max_shift: int = 4) -> Lag:
    """The shift that best lines the prediction up with the truth.

    The whole-frame minimum of :func:`lag_errors` is refined by fitting a
    symmetric V through it and its two neighbours (the error of a shifted
    sharp edge grows linearly with the shift); an exact match at a whole
    shift is that shift. NaN when the truth never changes or the error does
    not depend on the shift: nothing moved, so there is no lag to measure.
    """
    errs = lag_errors(preds, truths, max_shift)
    best = min(errs, key=lambda k: (errs[k], abs(k)))
    vals = list(errs.values())
    still = all(np.array_equal(as_alpha(truths[i]), as_alpha(truths[i - 1])) for i in range(1, len(truths)))
    if still or max(vals) - min(vals) <= 1e-9 * max(1.0, max(vals)):
        return Lag(math.nan, best, errs)
    frac = 0.0
    if errs[best] > 0 and best - 1 in errs and best + 1 in errs:
        lo, mid, hi = errs[best - 1], errs[best], errs[best + 1]
        rise = max(lo, hi) - mid
        if rise > 0:
            frac = float(np.clip((lo - hi) / (2.0 * rise), -0.5, 0.5))
    return Lag(best + frac, best, errs)


def downscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by ``factor`` (the edge rows/columns that do not fill a block are dropped)."""
    a = as_alpha(a)
    if factor == 1:
        return a
    h, w = (a.shape[0] // factor) * factor, (a.shape[1] // factor) * factor
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Scores:
    """One prediction sequence against its truth."""

    frames: int
    iou: float  # mean over frames
    edge_error: float  # mean over all edge-band pixels of all frames
    flicker: float  # alpha units (0..1) per frame
    lag: float  # frames; NaN if nothing moved
    boundary_f: float = math.nan  # mean over frames; NaN unless the meter was given a tolerance

    def as_dict(self) -> dict:
        return {"frames": self.frames, "iou": self.iou, "edge_error": self.edge_error,
                "flicker": self.flicker, "lag": self.lag, "boundary_f": self.boundary_f}


class QualityMeter:
    """Streams (prediction, truth) pairs of one clip and scores them.

    ``add`` keeps only per-frame sums and small (``lag_factor``-times
    downscaled) copies for the lag, so a long clip does not hold its frames.
    ``band`` may be passed to reuse an edge band computed once per truth frame.
    IoU counts two silhouettes both under ``empty_area`` of the frame as empty
    (1.0): a model's few stray pixels in a frame the person has left are not a
    lost silhouette. ``boundary_tol`` (pixels) adds :func:`boundary_f` per frame
    (off by default: it costs a few ms a frame). :attr:`ious` and
    :attr:`boundary_fs` keep the per-frame scores, for splits by frame kind.
    """

    def __init__(self, *, radius: int = 5, tol: float = 1e-3, max_shift: int = 6, lag_factor: int = 4,
                 empty_area: float = EMPTY_AREA, boundary_tol: int | None = None) -> None:
        self.radius, self.tol, self.max_shift, self.lag_factor = radius, tol, max_shift, lag_factor
        self.empty_area = empty_area
        self.boundary_tol = boundary_tol
        self._ious: list[float] = []
        self._bfs: list[float] = []
        self._edge_sum, self._edge_n = 0.0, 0
        self._flick_sum, self._flick_n = 0.0, 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._small_p: list[np.ndarray] = []
        self._small_t: list[np.ndarray] = []

    def add(self, pred: np.ndarray, truth: np.ndarray, *, band: np.ndarray | None = None) -> None:
        p, t = as_alpha(pred), as_alpha(truth)
        _check_pair(p, t)
        self._ious.append(iou(p, t, empty_area=self.empty_area))
        if self.boundary_tol is not None:
            self._bfs.append(boundary_f(p, t, self.boundary_tol).f)
        b = edge_band(t, self.radius) if band is None else band
        n = np.count_nonzero(b)
        if n:
            self._edge_sum += float(np.abs(p[b] - t[b]).sum(dtype=np.float64))
            self._edge_n += n
        if self._prev is not None:
            s, c = flicker_sums(self._prev[0], p, self._prev[1], t, self.tol)
            self._flick_sum += s
            self._flick_n += c
        self._prev = (p, t)
        self._small_p.append(downscale(p, self.lag_factor))
        self._small_t.append(downscale(t, self.lag_factor))

    @property
    def ious(self) -> tuple[float, ...]:
        return tuple(self._ious)

    @property
    def boundary_fs(self) -> tuple[float, ...]:
        return tuple(self._bfs)

    def result(self) -> Scores:
        n = len(self._ious)
        if n == 0:
            raise ValueError("no frames were added")
        lg = lag(self._small_p, self._small_t, self.max_shift).frames if n >= 3 else math.nan
        return Scores(
            frames=n,
            iou=float(np.mean(self._ious)),
            edge_error=self._edge_sum / self._edge_n if self._edge_n else math.nan,
            flicker=self._flick_sum / self._flick_n if self._flick_n else math.nan,
            lag=lg,
            boundary_f=float(np.mean(self._bfs)) if self._bfs else math.nan,
        )
