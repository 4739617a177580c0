"""The matte quality metrics on tiny hand-made arrays: each has a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vbg.evaluation.metrics import (
    BoundaryF,
    QualityMeter,
    as_alpha,
    boundary_f,
    boundary_tolerance,
    contour,
    edge_band,
    edge_error,
    flicker,
    flicker_sums,
    iou,
    lag,
    lag_errors,
)


def step(w: int, x0: int, h: int = 4) -> np.ndarray:
    """Person on the left of column ``x0`` (exclusive), background from it on."""
    a = np.zeros((h, w), np.float32)
    a[:, :x0] = 1.0
    return a


def moving(n: int, speed: int = 2, w: int = 40, x0: int = 5, start: int = 0) -> list[np.ndarray]:
    """Frames ``start .. start + n - 1`` of an edge moving right by ``speed`` pixels a frame."""
    return [step(w, x0 + speed * t) for t in range(start, start + n)]


# --------------------------------------------------------------------------- IoU


def test_iou_known_values():
    truth = step(10, 4)  # 4 columns
    assert iou(truth, truth) == 1.0
    assert iou(step(10, 2), truth) == pytest.approx(2 / 4)  # half of it
    assert iou(step(10, 8), truth) == pytest.approx(4 / 8)  # twice as wide
    right = 1.0 - truth
    assert iou(right, truth) == 0.0  # disjoint


def test_iou_edge_cases_empty_frames():
    empty = np.zeros((3, 5), np.float32)
    assert iou(empty, empty) == 1.0  # person gone, nothing predicted: perfect
    assert iou(step(5, 1, 3), empty) == 0.0  # a ghost in an empty frame
    assert iou(empty, step(5, 1, 3)) == 0.0  # the person missed entirely


def test_iou_can_count_a_few_stray_pixels_as_empty():
    empty = np.zeros((10, 10), np.float32)
    stray = empty.copy()
    stray[3, 3] = 1.0
    assert iou(stray, empty) == 0.0
    assert iou(stray, empty, empty_area=0.01) == 1.0  # 1 pixel of 100: both count as empty
    assert iou(stray, empty, empty_area=0.005) == 0.0
    big = step(10, 2, 10)  # 20 pixels: a real ghost
    assert iou(big, empty, empty_area=0.01) == 0.0


def test_iou_cuts_at_half_and_takes_uint8():
    truth = step(8, 4)
    soft = truth * 0.49
    assert iou(soft, truth) == 0.0
    assert iou(truth * 0.5, truth) == 1.0
    assert iou((truth * 255).astype(np.uint8), truth) == 1.0
    np.testing.assert_allclose(as_alpha(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])


def test_metrics_reject_mismatched_or_wrong_inputs():
    with pytest.raises(ValueError):
        iou(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(TypeError):
        iou(np.zeros((3, 4), np.int32), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        edge_band(np.zeros((4, 4)), 0)


# --------------------------------------------------------------------- edge band


def test_edge_band_is_radius_pixels_each_side_of_the_contour():
    truth = step(12, 6, h=3)  # contour between columns 5 and 6
    cols = lambda band: sorted(set(np.nonzero(band)[1].tolist()))
    assert cols(edge_band(truth, 1)) == [5, 6]
    assert cols(edge_band(truth, 3)) == [3, 4, 5, 6, 7, 8]
    assert edge_band(truth, 3).all(axis=1).sum() == 0  # not the whole row
    assert edge_band(truth, 3)[:, 3:9].all()  # every row of those columns


def test_edge_band_of_a_square_covers_its_outline():
    truth = np.zeros((9, 9), np.float32)
    truth[3:6, 3:6] = 1.0
    band = edge_band(truth, 1)
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False  # the centre is two pixels from the contour
    ring[2, 2] = ring[2, 6] = ring[6, 2] = ring[6, 6] = False  # the corners only touch diagonally
    np.testing.assert_array_equal(band, ring)


def test_edge_band_empty_without_an_edge():
    assert not edge_band(np.zeros((5, 5)), 2).any()
    assert not edge_band(np.ones((5, 5)), 2).any()


def test_edge_error_is_the_mean_error_inside_the_band_only():
    truth = step(12, 6, h=3)
    assert edge_error(truth, truth, 2) == 0.0
    pred = truth.copy()
    pred[:, 4:8] = np.clip(pred[:, 4:8] + np.float32(0.2) * np.sign(0.5 - pred[:, 4:8]), 0, 1)  # 0.2 off in the band
    pred[:, 0] = 0.0  # far from the edge: not counted
    assert edge_error(pred, truth, 2) == pytest.approx(0.2)
    assert math.isnan(edge_error(pred, np.zeros_like(truth), 2))  # no edge, no score


# ------------------------------------------------------------------------ flicker


def test_a_known_flicker_gives_a_known_score():
    truth = [np.full((4, 4), 0.7, np.float32)] * 6
    pred = [np.full((4, 4), 0.5 + (0.1 if t % 2 else -0.1), np.float32) for t in range(6)]
    assert flicker(pred, truth) == pytest.approx(0.2)  # jumps of 0.2 every frame
    assert flicker(truth, truth) == 0.0
    half = [p.copy() for p in pred]
    for p in half:
        p[:, :2] = 0.5  # half the pixels are steady
    assert flicker(half, truth) == pytest.approx(0.1)


def test_flicker_ignores_pixels_whose_truth_changed():
    truth = moving(5, speed=1)
    # The prediction follows the moving truth exactly: all of its change is explained.
    assert flicker(truth, truth) == 0.0
    # A noisy patch far from the edge counts; the edge pixels that moved do not.
    pred = [t.copy() for t in truth]
    for i, p in enumerate(pred):
        p[:, -1] = 0.3 * (i % 2)
    s, n = flicker_sums(pred[0], pred[1], truth[0], truth[1])
    assert n == truth[0].size - truth[0].shape[0]  # one column of truth changed
    assert s == pytest.approx(0.3 * truth[0].shape[0])
    assert math.isnan(flicker([truth[0], truth[1]], [np.zeros((4, 40)), np.ones((4, 40))]))


# ---------------------------------------------------------------------------- lag


@pytest.mark.parametrize("shift", [0, 1, 2, 3])
def test_a_known_shift_gives_a_known_lag(shift):
    truth = moving(20)
    pred = moving(20, start=-shift)  # frame t shows where the edge was `shift` frames before
    res = lag(pred, truth, max_shift=5)
    assert res.best == shift
    assert res.frames == pytest.approx(shift, abs=1e-6)
    assert res.errors[shift] == 0.0


def test_a_prediction_ahead_of_the_truth_has_negative_lag():
    truth = moving(20)
    pred = moving(20, start=1)
    assert lag(pred, truth).frames == pytest.approx(-1.0)


def test_half_a_frame_behind_lies_between_zero_and_one():
    truth = moving(20, speed=2)
    pred = [0.5 * truth[max(0, t - 1)] + 0.5 * truth[t] for t in range(20)]
    assert 0.0 < lag(pred, truth).frames < 1.0


def test_lag_is_undefined_when_nothing_moves():
    still = [step(10, 5)] * 8
    noisy = [s + np.float32(0.01 * (i % 3)) for i, s in enumerate(still)]
    assert math.isnan(lag(noisy, still).frames)
    with pytest.raises(ValueError):
        lag([still[0]], [still[0]])


def test_lag_errors_cover_both_directions_and_cap_at_the_clip_length():
    truth = moving(4)
    errs = lag_errors(truth, truth, max_shift=9)
    assert sorted(errs) == [-2, -1, 0, 1, 2]
    assert errs[0] == 0.0 and errs[1] == pytest.approx(errs[-1])


# ---------------------------------------------------------------------------- meter


def test_meter_agrees_with_the_functions():
    truth = moving(12, speed=2)
    pred = moving(12, speed=2, start=-1)
    meter = QualityMeter(radius=2, lag_factor=1)
    for p, t in zip(pred, truth):
        meter.add((p * 255).astype(np.uint8), t)
    s = meter.result()
    assert s.frames == 12
    assert s.iou == pytest.approx(np.mean([iou(p, t) for p, t in zip(pred, truth)]))
    assert s.lag == pytest.approx(1.0)
    assert s.flicker == pytest.approx(flicker(pred, truth))
    band_err = sum(np.abs(p - t)[edge_band(t, 2)].sum() for p, t in zip(pred, truth))
    assert s.edge_error == pytest.approx(band_err / sum(edge_band(t, 2).sum() for t in truth))
    assert set(s.as_dict()) == {"frames", "iou", "edge_error", "flicker", "lag", "boundary_f"}
    with pytest.raises(ValueError):
        QualityMeter().result()


# -------------------------------------------------------------------- boundary F


def band(w: int, x0: int, x1: int, h: int = 20) -> np.ndarray:
    """A vertical band of columns ``x0 .. x1 - 1``, full height: its contour is those two columns."""
    a = np.zeros((h, w), np.float32)
    a[:, x0:x1] = 1.0
    return a


def test_contour_is_the_silhouettes_inner_outline_not_the_frame_border():
    sq = np.zeros((7, 7), bool)
    sq[1:6, 1:6] = True
    ring = sq.copy()
    ring[2:5, 2:5] = False
    np.testing.assert_array_equal(contour(sq), ring)  # 16 pixels, the inside 3x3 is not contour
    assert not contour(np.ones((5, 5), bool)).any()  # filling the frame: the border is no edge
    assert sorted(set(np.nonzero(contour(band(40, 10, 20) >= 0.5))[1].tolist())) == [10, 19]


def test_boundary_f_matches_within_the_tolerance_and_not_beyond():
    truth = band(40, 10, 20)  # contour: columns 10 and 19
    pred = band(40, 10, 24)  # the right edge 4 px off
    assert boundary_f(truth, truth, 0) == BoundaryF(1.0, 1.0, 1.0)
    # Tolerance 3: the left edges match, the right ones (4 px apart) do not: half of each contour.
    assert boundary_f(pred, truth, 3) == BoundaryF(0.5, 0.5, 0.5)
    assert boundary_f(pred, truth, 4) == BoundaryF(1.0, 1.0, 1.0)
    assert iou(pred, truth) == pytest.approx(10 / 14)  # what IoU says about the same miss


def test_boundary_f_tolerance_is_a_disc_not_a_square():
    truth = np.zeros((20, 20), np.float32)
    truth[10, 10] = 1.0
    pred = np.zeros_like(truth)
    pred[12, 12] = 1.0  # 2.83 px away diagonally: inside a radius-2 square, outside the radius-2 disc
    assert boundary_f(pred, truth, 2).f == 0.0
    assert boundary_f(pred, truth, 3).f == 1.0


def test_boundary_f_separates_precision_from_recall():
    truth = np.zeros((30, 30), np.float32)
    truth[2:12, 2:12] = 1.0  # contour: 36 pixels
    pred = truth.copy()
    pred[20:23, 20:23] = 1.0  # plus a far blob: 8 contour pixels that match nothing
    r = boundary_f(pred, truth, 3)
    assert r.precision == pytest.approx(36 / 44) and r.recall == 1.0
    assert r.f == pytest.approx(2 * (36 / 44) / (36 / 44 + 1))  # 0.9
    flipped = boundary_f(truth, pred, 3)  # the same miss seen from the other side
    assert flipped.precision == 1.0 and flipped.recall == pytest.approx(36 / 44)


def test_boundary_f_of_empty_frames():
    empty = np.zeros((10, 10), np.float32)
    blob = empty.copy()
    blob[3:6, 3:6] = 1.0
    assert boundary_f(empty, empty, 3).f == 1.0  # person gone, nothing predicted
    assert boundary_f(empty, blob, 3) == BoundaryF(1.0, 0.0, 0.0)  # missed
    assert boundary_f(blob, empty, 3) == BoundaryF(0.0, 1.0, 0.0)  # a ghost
    with pytest.raises(ValueError):
        boundary_f(blob, blob, -1)


def test_boundary_tolerance_is_3_px_at_480p_scaled_with_height():
    assert [boundary_tolerance(h) for h in (480, 360, 720, 1080, 240, 120)] == [3, 2, 5, 7, 2, 1]
    truth = band(60, 10, 20, h=480)
    pred = band(60, 10, 23, h=480)  # 3 px off at 480p: matched by default
    assert boundary_f(pred, truth).f == 1.0
    assert boundary_f(band(60, 10, 23, h=240), band(60, 10, 20, h=240)).f == 0.5  # 2 px at 240p


def test_meter_adds_boundary_f_per_frame_when_asked():
    truth = [band(40, 10, 20)] * 3
    pred = [band(40, 10, 20), band(40, 10, 24), band(40, 10, 21)]
    meter = QualityMeter(radius=2, lag_factor=1, boundary_tol=3)
    for p, t in zip(pred, truth):
        meter.add(p, t)
    assert meter.boundary_fs == (1.0, 0.5, 1.0)
    assert meter.ious == pytest.approx((1.0, 10 / 14, 10 / 11))
    assert meter.result().boundary_f == pytest.approx(2.5 / 3)
    plain = QualityMeter(radius=2, lag_factor=1)
    plain.add(pred[1], truth[1])
    assert math.isnan(plain.result().boundary_f)  # not measured unless asked
