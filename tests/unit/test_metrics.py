"""The matte quality metrics on tiny hand-made arrays: each has a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vbg.evaluation.metrics import (
    QualityMeter,
    as_alpha,
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
    assert set(s.as_dict()) == {"frames", "iou", "edge_error", "flicker", "lag"}
    with pytest.raises(ValueError):
        QualityMeter().result()
