"""Mask propagation, temporal smoothing, edge-aware upsampling and the skip policy.

Small synthetic arrays only; every case builds its own frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbg.errors import ConfigError
from vbg.inference.propagate import MaskPropagator
from vbg.inference.scheduler import SkipGovernor, parse_skip
from vbg.inference.smoothing import TemporalSmoother
from vbg.inference.upsample import EdgeAwareUpsampler


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture: something optical flow can lock on to."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def blob(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


# --------------------------------------------------------------------- propagation


def shifted_pair(h: int, w: int, dy: int, dx: int, scale: int = 1):
    """Two frames of one scene, the second with its content moved by (dy, dx) mask pixels."""
    pad = 16 * scale
    big = texture(h * scale + 2 * pad, w * scale + 2 * pad)
    f0 = big[pad : pad + h * scale, pad : pad + w * scale].copy()
    y1, x1 = pad - dy * scale, pad - dx * scale
    f1 = big[y1 : y1 + h * scale, x1 : x1 + w * scale].copy()
    return f0, f1


@pytest.mark.parametrize("scale", [1, 4])
def test_warp_moves_the_mask_with_the_content(scale):
    h, w, dy, dx = 72, 128, 3, 6
    f0, f1 = shifted_pair(h, w, dy, dx, scale)
    prop = MaskPropagator((h, w))
    g0, g1 = prop.gray(f0, seq=0), prop.gray(f1, seq=1)
    mask = blob(h, w, 36, 60, 18)
    truth = blob(h, w, 36 + dy, 60 + dx, 18)

    warped = prop.warp(mask, g0, g1)

    assert warped.shape == (h, w) and warped.dtype == np.float32
    assert iou(warped, truth) > 0.9
    assert iou(mask, truth) < 0.8  # the stale mask is visibly off
    inner = prop.flow[16:-16, 16:-16].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [-dx, -dy], atol=0.5)
    assert np.median(prop.motion()[16:-16, 16:-16]) == pytest.approx(math.hypot(dx, dy), abs=0.5)


def test_warp_between_identical_frames_keeps_the_mask():
    h, w = 48, 64
    prop = MaskPropagator((h, w))
    frame = texture(h, w)
    mask = blob(h, w, 24, 30, 10)
    np.testing.assert_array_equal(prop.warp(mask, prop.gray(frame), prop.gray(frame)), mask)
    g = prop.gray(frame)
    np.testing.assert_array_equal(prop.warp(mask, g, g), mask)
    assert not prop.motion().any()


def test_gray_accepts_rgb_or_grey_and_any_size():
    h, w = 36, 64
    prop = MaskPropagator((h, w))
    rgb = texture(h * 5, w * 5)
    a = prop.gray(rgb).copy()
    b = prop.gray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert prop.flow_hw == (h // 2, w // 2)  # the flow runs at half the mask size by default
    assert a.shape == prop.flow_hw and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).max() <= 2  # grey first or last: rounding only
    assert prop.gray(texture(h, w)).shape == prop.flow_hw
    with pytest.raises(TypeError):
        prop.gray(rgb.astype(np.float32))
    with pytest.raises(ValueError):
        prop.gray(np.zeros((10, 10, 4), np.uint8))


def test_gray_ring_reuses_its_buffers_and_finds_frames_by_seq():
    h, w = 24, 32
    prop = MaskPropagator((h, w), history=3)
    frames = [texture(h, w, seed) for seed in range(5)]
    outs = [prop.gray(f, seq=i) for i, f in enumerate(frames)]
    assert outs[3] is outs[0] and outs[4] is outs[1]  # a ring of 3
    assert len({id(o) for o in outs}) == 3
    assert prop.gray_of(4) is outs[4] and prop.gray_of(2) is outs[2]
    assert prop.gray_of(0) is None  # overwritten by seq 3
    own = np.empty(prop.flow_hw, np.uint8)
    assert prop.gray(frames[0], out=own) is own
    assert prop.gray_of(2) is outs[2]  # out= leaves the ring alone
    prop.reset()
    assert prop.gray_of(4) is None


def test_warp_and_motion_reuse_their_output():
    h, w = 40, 56
    f0, f1 = shifted_pair(h, w, 1, 2)
    prop = MaskPropagator((h, w))
    g0, g1 = prop.gray(f0), prop.gray(f1)
    mask = blob(h, w, 20, 28, 8)
    first = prop.warp(mask, g0, g1)
    m1 = prop.motion()
    assert prop.warp(mask, g1, g0) is first
    assert prop.motion() is m1
    own = np.empty((h, w), np.float32)
    assert prop.warp(mask, g0, g1, out=own) is own
    with pytest.raises(ValueError):
        prop.flow[0, 0, 0] = 1.0  # read-only view
    prop.reset()
    assert not prop.motion().any() and not prop.flow.any()


def test_a_thin_person_who_turns_back_is_followed_not_carried_on_the_old_way():
    """Too little of the person to fit their motion (a thin silhouette) and a last motion that no
    longer holds: the mask follows the picture where the flow is sure of itself, rather than
    carrying the person on the way they last moved (which left them behind a stale mask)."""
    h, w = 128, 128
    room = texture(h, w, 1)

    def scene(y, x, part):
        frame, mask = room.copy(), np.zeros((h, w), np.float32)
        ph, pw = part.shape[:2]
        frame[y : y + ph, x : x + pw] = part
        mask[y : y + ph, x : x + pw] = 1.0
        return frame, mask

    wide, thin = texture(40, 32, 2), texture(40, 8, 3)
    prop = MaskPropagator((h, w))
    f0, m0 = scene(40, 40, wide)
    f1, m1 = scene(40, 43, wide)  # walking right, 3 px a frame: that motion is fitted
    assert iou(prop.warp(m0, prop.gray(f0, seq=0), prop.gray(f1, seq=1), frames=1), m1) > 0.95
    f2, m2 = scene(40, 60, thin)
    f3, m3 = scene(40, 57, thin)  # a thin part, moving back left

    carried = prop.warp(m2, prop.gray(f2, seq=2), prop.gray(f3, seq=3), frames=1)

    assert iou(m2, m3) < 0.5  # the stale mask is visibly off
    assert iou(carried, m3) > 0.6  # carried on to the right it scored 0.14


def test_propagator_rejects_bad_options_and_inputs():
    for bad in [dict(mask_hw=(0, 10)), dict(mask_hw="big"), dict(mask_hw=(16, 16), history=1),
                dict(mask_hw=(16, 16), preset="slowest")]:
        with pytest.raises(ConfigError):
            MaskPropagator(**bad)
    prop = MaskPropagator((16, 16))
    g = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError):
        prop.warp(np.zeros((16, 16), np.float64), g, g)
    with pytest.raises(ValueError):
        prop.warp(np.zeros((16, 16), np.float32), g, np.zeros((8, 8), np.uint8))


# ----------------------------------------------------------------------- smoothing


def flicker(seq) -> float:
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(seq, seq[1:])]))


def soft_still_mask(h: int = 48, w: int = 64) -> np.ndarray:
    m = cv2.GaussianBlur(blob(h, w, 24, 32, 14), (0, 0), 3)
    return np.clip(0.1 + 0.8 * m, 0, 1).astype(np.float32)


def test_smoothing_halves_flicker_on_a_still_mask():
    rng = np.random.default_rng(0)
    still = soft_still_mask()
    noisy = [np.clip(still + rng.normal(0, 0.03, still.shape), 0, 1).astype(np.float32) for _ in range(60)]
    sm = TemporalSmoother(1.0)
    out = [sm.update(x).copy() for x in noisy]
    assert flicker(out[10:]) <= 0.5 * flicker(noisy[10:])
    # and it stays on the true mask, not drifting
    assert np.abs(out[-1] - still).mean() < 0.02


def moving_edge(h: int, w: int, x0: float, ramp: float) -> np.ndarray:
    """A vertical edge at x0 (person on the left), soft over ``ramp`` pixels."""
    xx = np.arange(w, dtype=np.float32)
    row = np.clip((x0 - xx) / ramp + 0.5, 0, 1)
    return np.broadcast_to(row, (h, w)).astype(np.float32)


@pytest.mark.parametrize("ramp", [1.0, 3.0, 6.0])
def test_smoothing_lags_a_moving_edge_by_at_most_one_frame(ramp):
    rng = np.random.default_rng(1)
    h, w, speed = 16, 96, 2
    truth = [moving_edge(h, w, 20 + speed * t, ramp) for t in range(30)]
    noisy = [np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32) for x in truth]
    sm = TemporalSmoother(1.0)
    out = [sm.update(x).copy() for x in noisy]
    for t in range(5, 30):
        errs = [np.abs(out[t] - truth[t - k]).mean() for k in range(5)]
        assert int(np.argmin(errs)) <= 1, (t, errs)
    lags = [int(np.argmin([np.abs(out[t] - truth[t - k]).mean() for k in range(5)])) for t in range(5, 30)]
    assert np.mean(lags) < 0.5  # usually no lag at all


def test_motion_input_makes_moving_pixels_follow_at_once():
    rng = np.random.default_rng(2)
    still = soft_still_mask()
    sm = TemporalSmoother(2.0)
    sm.update(still)
    new = np.clip(still + rng.normal(0, 0.02, still.shape), 0, 1).astype(np.float32)
    moving = np.full(still.shape, 5.0, np.float32)
    np.testing.assert_allclose(sm.update(new, moving), new, atol=1e-6)
    # without motion the same small change is mostly held back
    sm.reset()
    sm.update(still)
    assert np.abs(sm.update(new) - new).mean() > 0.5 * np.abs(still - new).mean()


def test_smoothing_strength_zero_is_off_and_reset_forgets():
    rng = np.random.default_rng(3)
    a, b = (rng.random((8, 8)).astype(np.float32) for _ in range(2))
    off = TemporalSmoother(0.0)
    off.update(a)
    np.testing.assert_array_equal(off.update(b), b)
    sm = TemporalSmoother(1.0)
    sm.update(a)
    assert not np.array_equal(sm.update(b), b)
    sm.reset()
    assert not sm.primed
    np.testing.assert_array_equal(sm.update(b), b)


def test_smoother_returns_one_read_only_state_array():
    sm = TemporalSmoother()
    x = np.zeros((6, 7), np.float32)
    first = sm.update(x)
    assert sm.update(x + 0.5) is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    with pytest.raises(ValueError, match="reset"):
        sm.update(np.zeros((5, 5), np.float32))
    sm.reset()
    assert sm.update(np.zeros((5, 5), np.float32)).shape == (5, 5)  # a new size after reset
    with pytest.raises(TypeError):
        sm.update(np.zeros((5, 5), np.float64))


@pytest.mark.parametrize("bad", [-0.1, 4.5, float("nan"), "strong", None])
def test_smoothing_strength_is_validated(bad):
    with pytest.raises(ConfigError, match="strength"):
        TemporalSmoother(bad)


# ------------------------------------------------------------------------ upsample


def disc_scene(H: int, W: int):
    """A bright disc (the person) on a dark background, anti-aliased, with sensor noise."""
    ss = 4
    yy, xx = np.mgrid[0 : H * ss, 0 : W * ss]
    cy, cx, r = H * 0.5, W * 0.45, H * 0.3
    inside = ((yy + 0.5) / ss - cy) ** 2 + ((xx + 0.5) / ss - cx) ** 2 < r * r
    truth = inside.reshape(H, ss, W, ss).mean(axis=(1, 3)).astype(np.float32)
    rng = np.random.default_rng(4)
    grey = np.clip(30 + 170 * truth + rng.normal(0, 3, (H, W)), 0, 255).astype(np.uint8)
    return truth, np.repeat(grey[..., None], 3, axis=2)


def test_guided_upsampling_beats_bilinear_on_edges():
    H, W, h, w = 192, 320, 48, 80
    truth, frame = disc_scene(H, W)
    small = cv2.resize(truth, (w, h), interpolation=cv2.INTER_AREA)
    hard = (truth > 0.5).astype(np.uint8)
    band = cv2.dilate(hard, np.ones((9, 9), np.uint8)) != cv2.erode(hard, np.ones((9, 9), np.uint8))

    def edge_error(mode: str) -> float:
        out = EdgeAwareUpsampler((H, W), (h, w), mode=mode).upsample(small, frame)
        assert out.shape == (H, W) and out.dtype == np.uint8
        return float(np.abs(out / 255.0 - truth)[band].mean())

    guided, bilinear = edge_error("sharp"), edge_error("bilinear")
    assert guided <= 0.7 * bilinear, (guided, bilinear)


@pytest.mark.parametrize("mode", ["sharp", "guided", "bilinear"])
def test_flat_mask_stays_flat_and_output_is_reused(mode):
    H, W, h, w = 96, 160, 24, 40
    frame = texture(H, W)
    up = EdgeAwareUpsampler((H, W), (h, w), mode=mode)
    out = up.upsample(np.full((h, w), 0.5, np.float32), frame)
    assert out.shape == (H, W) and out.dtype == np.uint8
    assert out.min() == out.max() and abs(int(out[0, 0]) - 128) <= 1
    assert up.upsample(np.ones((h, w), np.float32), frame) is out
    assert (out == 255).all()
    assert (up.upsample(np.zeros((h, w), np.float32), frame) == 0).all()


def test_upsampler_takes_a_grey_frame_too():
    H, W, h, w = 96, 160, 24, 40
    truth, frame = disc_scene(H, W)
    small = cv2.resize(truth, (w, h), interpolation=cv2.INTER_AREA)
    up = EdgeAwareUpsampler((H, W), (h, w))
    from_rgb = up.upsample(small, frame).copy()
    from_grey = up.upsample(small, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    np.testing.assert_array_equal(from_rgb, from_grey)


def test_upsampler_rejects_bad_options_and_inputs():
    for bad in [dict(mode="nearest"), dict(radius=0), dict(radius=2.5), dict(eps=0.0), dict(eps=float("inf"))]:
        with pytest.raises(ConfigError):
            EdgeAwareUpsampler((64, 64), (16, 16), **bad)
    up = EdgeAwareUpsampler((64, 64), (16, 16))
    with pytest.raises(TypeError):
        up.upsample(np.zeros((16, 16), np.float64), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        up.upsample(np.zeros((16, 16), np.float32), np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        up.upsample(np.zeros((8, 16), np.float32), np.zeros((64, 64, 3), np.uint8))


# ----------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("n", [1, 2, 3, 7, 30])
def test_fixed_skip_runs_exactly_every_nth_frame(n):
    gov = SkipGovernor(n, 1 / 30)
    ran = [seq for seq in range(200) if gov.should_run(seq)]
    assert ran == [seq for seq in range(200) if seq % n == 0]
    gov.observe(500.0)  # timings do not move a fixed N
    assert gov.current_n == n


def test_fixed_skip_runs_the_first_frame_after_a_missed_one():
    gov = SkipGovernor(3, 1 / 30)
    asked = [0, 1, 2, 4, 5, 6, 7, 8, 9]  # frame 3 never reached the model
    assert [s for s in asked if gov.should_run(s)] == [0, 4, 7]
    gov.reset()
    assert gov.should_run(5)  # first frame after reset


@pytest.mark.parametrize("infer_ms, expected", [(5.0, 1), (20.0, 1), (100.0, 4), (2000.0, 30)])
def test_auto_skip_fits_the_model_into_the_frame_interval(infer_ms, expected):
    gov = SkipGovernor("auto", 1 / 30)
    assert gov.current_n == 1
    for _ in range(30):
        gov.observe(infer_ms)
    assert gov.current_n == expected
    ran = [s for s in range(120) if gov.should_run(s)]
    assert np.all(np.diff(ran) == expected)


def test_a_fast_model_is_waited_for_up_to_half_a_frame_interval():
    """The render thread waits for the mask of the frame the model was given when the model's
    time fits in half a frame interval (at least 12 ms): 1.5 times that time plus 2 ms, capped
    there; a slower model, or one not timed yet, is never waited for."""
    at24 = SkipGovernor("auto", 1 / 24, ema=1.0)
    assert at24.wait_s() == 0.0  # no time measured yet
    at24.observe(13.5)  # the selfie model on a loaded 2-core machine
    assert at24.wait_s() == pytest.approx(0.5 / 24)  # 22.25 ms capped at 20.8
    at24.observe(25.0)
    assert at24.wait_s() == 0.0  # over half the interval: the mask comes a frame later
    at30 = SkipGovernor(3, 1 / 30, ema=1.0)
    at30.observe(5.0)
    assert at30.wait_s() == pytest.approx(0.0095)
    at60 = SkipGovernor(1, 1 / 60, ema=1.0)
    at60.observe(10.0)
    assert at60.wait_ms == 12.0 and at60.wait_s() == pytest.approx(0.012)


def test_auto_skip_has_hysteresis():
    rng = np.random.default_rng(5)
    boundary_ms = 2 / 1.25 * 1000 / 30  # load exactly 2 frame intervals with 25 % headroom
    # no averaging: hysteresis alone must keep N from flipping
    gov = SkipGovernor("auto", 1 / 30, ema=1.0)
    ns = []
    for _ in range(300):
        gov.observe(boundary_ms + rng.uniform(-3, 3))
        ns.append(gov.current_n)
    assert set(ns) <= {2, 3}
    assert sum(a != b for a, b in zip(ns, ns[1:])) <= 1
    # without it, the same noise does flip N over and over
    jumpy = SkipGovernor("auto", 1 / 30, ema=1.0, hysteresis=0.0)
    rng = np.random.default_rng(5)
    flips, last = 0, None
    for _ in range(300):
        jumpy.observe(boundary_ms + rng.uniform(-3, 3))
        flips += last is not None and jumpy.current_n != last
        last = jumpy.current_n
    assert flips > 20


def test_auto_skip_follows_a_real_change_and_reset():
    gov = SkipGovernor("auto", 1 / 30)
    for _ in range(30):
        gov.observe(100.0)
    assert gov.current_n == 4
    for _ in range(40):
        gov.observe(10.0)
    assert gov.current_n == 1
    gov.observe(float("nan"))  # ignored
    assert gov.infer_ms == pytest.approx(10.0, rel=0.05)
    gov.reset()
    assert gov.current_n == 1 and gov.infer_ms is None


@pytest.mark.parametrize("text, value", [("auto", "auto"), (" AUTO ", "auto"), ("1", 1), (" 30 ", 30),
                                         ("04", 4), (7, 7)])
def test_parse_skip_accepts(text, value):
    assert parse_skip(text) == value


@pytest.mark.parametrize("text", ["0", "31", "-1", "3.5", "", "  ", "abc", "1_0", "+3", "\u0663", None, 2.0,
                                  True, "9" * 5000])
def test_parse_skip_rejects_with_one_line(text):
    with pytest.raises(ConfigError, match="--skip") as err:
        parse_skip(text)
    assert "\n" not in str(err.value) and "1..30" in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.binary()))
def test_parse_skip_fuzz_only_config_error_escapes(value):
    try:
        result = parse_skip(value)
    except ConfigError:
        return
    assert result == "auto" or (isinstance(result, int) and 1 <= result <= 30)


@pytest.mark.parametrize("bad", [dict(skip="often"), dict(frame_interval_s=0), dict(frame_interval_s=-1 / 30),
                                 dict(headroom=-0.5), dict(ema=0), dict(hysteresis=0.9)])
def test_governor_rejects_bad_options(bad):
    kw = dict(skip="auto", frame_interval_s=1 / 30) | bad
    with pytest.raises(ConfigError):
        SkipGovernor(**kw)


# --------------------------------------------------------------------------- centred (offline)

def test_centred_smoother_halves_flicker_without_lag():
    from vbg.inference.smoothing import CentredSmoother

    rng = np.random.default_rng(3)
    h, w, n = 24, 64, 40
    truth = np.zeros((n, h, w), np.float32)
    for t in range(n):  # an edge moving 1.5 px per frame
        truth[t, :, : int(10 + 1.5 * t)] = 1.0
    noisy = np.clip(truth + rng.normal(0, 0.04, truth.shape).astype(np.float32), 0, 1)
    cs = CentredSmoother(1.0, radius=2)
    out = np.stack([cs.smooth(list(noisy[max(0, t - 2): t + 3]), min(t, 2)) for t in range(n)])
    still = truth[1:] == truth[:-1]
    flicker_in = np.abs(np.diff(noisy, axis=0))[still].mean()
    flicker_out = np.abs(np.diff(out, axis=0))[still].mean()
    assert flicker_out <= 0.5 * flicker_in
    # No lag: the output matches the truth best at shift 0.
    errs = {s: np.abs(out[2 + s: n - 2 + s] - truth[2: n - 2]).mean() for s in (-1, 0, 1)}
    assert min(errs, key=errs.get) == 0


@pytest.mark.parametrize("window", [1, 2, 3, 4])
def test_centred_smoother_median_is_numpys_exactly(window):
    """The smoother's median of the window (a blob on fewer than half its frames is out) is
    np.median's value for every pixel, ties included, at every window length the ends of a
    file give (1, 3, .. 2k+1 masks), whether found by compare-exchange passes (up to 7) or by
    np.median itself; and the smoothed masks match a smoother that used np.median."""
    from vbg.inference.smoothing import CentredSmoother

    rng = np.random.default_rng(window)
    cs = CentredSmoother(1.0, radius=window)
    cs._allocate((36, 52))
    for n in range(1, 2 * window + 2, 2):
        x = rng.random((n, 36, 52), dtype=np.float32)
        x[:, :12] = np.round(x[:, :12] * 2) / 2  # many ties
        out = np.full((36, 52), -1.0, np.float32)
        assert cs._median(x, out) is out
        np.testing.assert_array_equal(out, np.median(x, axis=0), err_msg=f"{n} masks")

    class NumpyMedian(CentredSmoother):
        def _median(self, rows, out):
            return np.median(rows, axis=0, out=out)

    frames, masks = _moving_person(2 * window + 3)
    mask_hw = masks[0].shape
    grays = [cs.gray(f, mask_hw) for f in frames]
    ref = NumpyMedian(1.0, radius=window)
    for c in range(len(masks)):
        lo, hi = max(0, c - window), c + window + 1
        np.testing.assert_array_equal(cs.smooth(masks[lo:hi], c - lo, grays[lo:hi]),
                                      ref.smooth(masks[lo:hi], c - lo, grays[lo:hi]), err_msg=f"centre {c}")


def test_centred_smoother_off_and_bad_values():
    from vbg.inference.smoothing import CentredSmoother

    m = [np.full((2, 2), v, np.float32) for v in (0.1, 0.5, 0.9)]
    np.testing.assert_array_equal(CentredSmoother(0.0).smooth(m, 1), m[1])
    with pytest.raises(ConfigError):
        CentredSmoother(9.0)
    with pytest.raises(ConfigError):
        CentredSmoother(1.0, radius=0)



def _moving_person(n: int, h: int = 48, w: int = 80, scale: int = 2, seed: int = 7):
    """``n`` frames (h*scale x w*scale RGB) of a textured person moving over a room, and their masks (h x w)."""
    rng = np.random.default_rng(seed)
    room, skin = texture(h * scale, w * scale, seed=seed), texture(h * scale, w * scale, seed=seed + 1)
    frames, masks = [], []
    for t in range(n):
        person = blob(h * scale, w * scale, 24 * scale, (16 + 3 * t) * scale, 12 * scale) > 0
        frame = room.copy()
        frame[person] = np.roll(skin, 3 * t * scale, axis=1)[person]
        frames.append(frame)
        mask = cv2.resize(person.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        masks.append(np.clip(mask + rng.normal(0, 0.05, mask.shape).astype(np.float32), 0, 1))
    return frames, masks


@pytest.mark.parametrize("smoothing, window, upsample, n", [(1.0, 2, "sharp", 9), (1.0, 1, "guided", 6),
                                                            (0.0, 2, "bilinear", 5), (1.0, 3, "sharp", 2)])
def test_offline_tracker_is_the_centred_window_then_the_upsampler(smoothing, window, upsample, n):
    """Frame t's alpha: the masks t-k..t+k (as many as the stream has) through the centred smoother
    with their frames' greys, then the upsampler; given out in order, each once k frames after it
    are in (all at the end of a stream shorter than the window)."""
    from vbg.inference.smoothing import CentredSmoother
    from vbg.inference.tracker import OfflineMaskTracker

    frames, masks = _moving_person(n)
    frame_hw, mask_hw = frames[0].shape[:2], masks[0].shape
    cs = CentredSmoother(smoothing, radius=window)
    up = EdgeAwareUpsampler(frame_hw, mask_hw, mode=upsample)
    grays = [cs.gray(f, mask_hw) for f in frames]
    expected = []
    for t in range(n):
        lo, hi = max(0, t - window), t + window + 1
        expected.append(up.upsample(cs.smooth(masks[lo:hi], t - lo, grays[lo:hi]), frames[t]).copy())

    tracker = OfflineMaskTracker(frame_hw, mask_hw, smoothing=smoothing, window=window, upsample=upsample)
    got, given_out_after = [], []
    for t in range(n):
        tracker.push(frames[t], masks[t])
        while tracker.ready:
            got.append(tracker.pop().copy())
            given_out_after.append(t)
    assert not tracker.ready
    with pytest.raises(RuntimeError, match="no frame is ready"):
        tracker.pop()
    tracker.end()
    while tracker.ready:
        got.append(tracker.pop().copy())
    assert given_out_after == list(range(window, n))
    assert len(got) == n
    for t in range(n):
        np.testing.assert_array_equal(got[t], expected[t], err_msg=f"frame {t}")
    with pytest.raises(RuntimeError, match="after end"):
        tracker.push(frames[0], masks[0])
    tracker.reset()  # a second stream: the same alphas as a fresh tracker's
    for t, a in enumerate(tracker.track(zip(frames, masks))):
        np.testing.assert_array_equal(a, expected[t], err_msg=f"frame {t}, second stream")


@pytest.mark.parametrize("threads,window", [(2, 2), (3, 1), (4, 3)])
def test_offline_tracker_on_threads_gives_the_same_alphas_in_the_same_order(threads, window):
    """Smoothing several frames at once (vbg process on many cores) changes nothing a viewer
    could see: every alpha equals the one-thread tracker's, bit for bit, in frame order, fed
    frame by frame as vbg process does, or the whole stream pushed before any is popped."""
    from vbg.inference.tracker import OfflineMaskTracker

    frames, masks = _moving_person(11)
    frame_hw, mask_hw = frames[0].shape[:2], masks[0].shape
    one = OfflineMaskTracker(frame_hw, mask_hw, window=window)
    expected = [a.copy() for a in one.track(zip(frames, masks))]
    tracker = OfflineMaskTracker(frame_hw, mask_hw, window=window, threads=threads)
    try:
        got = [a.copy() for a in tracker.track(zip(frames, masks))]
        assert len(got) == len(frames)
        for t, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(a, b, err_msg=f"frame {t}, fed frame by frame")
        tracker.reset()
        for f, m in zip(frames, masks):  # every frame in before any out: the pool waits for slots
            tracker.push(f, m)
        tracker.end()
        got = []
        while tracker.ready:
            got.append(tracker.pop().copy())
        assert len(got) == len(frames)
        for t, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(a, b, err_msg=f"frame {t}, all pushed first")
    finally:
        tracker.close()
    with pytest.raises(ValueError, match="threads"):
        OfflineMaskTracker(frame_hw, mask_hw, threads=0)


def test_offline_tracker_lets_a_frames_pixels_go_once_it_is_out():
    """It holds masks and small greys for the window, the pixels only of the frames not out yet."""
    import gc
    import weakref

    from vbg.inference.tracker import OfflineMaskTracker

    frames, masks = _moving_person(6)
    tracker = OfflineMaskTracker(frames[0].shape[:2], masks[0].shape, window=2)
    alive = [weakref.ref(f) for f in frames]
    for f, m in zip(frames, masks):
        tracker.push(f, m)
    del f
    frames.clear()
    tracker.pop()
    tracker.pop()
    gc.collect()
    assert [r() is not None for r in alive] == [False, False, True, True, True, True]


# ------------------------------------------- model-like noise: blobs that flip for a frame


def person_with_blinks(h: int, w: int, n: int, blink_frames: set[int]) -> tuple[list, list]:
    """A still person (a hard disc) and, on ``blink_frames`` only, a second hard blob well away
    from them: the kind of mistake a real model makes on real footage (a patch of the room
    taken for the person for one frame). Returns (model masks, true masks)."""
    person = blob(h, w, h * 0.5, w * 0.3, h * 0.3)
    extra = blob(h, w, h * 0.4, w * 0.8, h * 0.15)
    model = [np.maximum(person, extra) if t in blink_frames else person.copy() for t in range(n)]
    return model, [person] * n


def test_live_smoothing_hides_a_blob_that_shows_for_single_frames():
    h, w = 64, 96
    model, truth = person_with_blinks(h, w, 20, {4, 9, 10, 15})
    sm = TemporalSmoother(1.0)
    out = [sm.update(m).copy() for m in model]
    region = blob(h, w, h * 0.4, w * 0.8, h * 0.15) > 0
    # the single-frame blinks (4, 15) never show; the two-frame one (9-10) shows once, a frame late
    shown = [t for t in range(20) if (out[t][region] >= 0.5).mean() > 0.5]
    assert shown == [10]
    raw = flicker(model)
    assert flicker(out) <= 0.5 * raw
    for t in range(20):  # the person is untouched
        assert iou(np.where(region, 0, out[t]), truth[t]) > 0.95


def test_live_smoothing_takes_a_moving_person_at_once_with_the_flow():
    """A person moving 3 mask pixels a frame over a textured room: with the flow, every
    frame's output lines up with that frame's mask (no lag), and a blob that blinks beside
    them is still hidden."""
    h, w, n, speed = 64, 96, 12, 3
    room = texture(h, w, seed=5)
    sm = TemporalSmoother(1.0)
    prop = MaskPropagator((h, w), person=False, flow_scale=1.0)
    grays = []
    region = blob(h, w, 14, 80, 8) > 0
    for t in range(n):
        person = blob(h, w, 36, 24 + speed * t, 14)
        frame = room.copy()  # the person's own texture moves with them
        shifted = np.roll(texture(h, w, seed=6), speed * t, axis=1)
        frame[person > 0] = shifted[person > 0]
        grays.append(prop.gray(frame, seq=t))
        mask = person.copy()
        if t == 6:
            mask[region] = 1.0
        flow = None
        if t:
            prop.warp(sm.state, grays[t - 1], grays[t], frames=1)
            flow = prop.flow
        out = sm.update(mask, flow=flow)
        assert iou(out, person) > 0.95, t
        assert (out[region] >= 0.5).mean() < 0.1, t


def test_offline_smoothing_hides_blobs_that_show_on_fewer_than_half_the_window():
    from vbg.inference.smoothing import CentredSmoother

    h, w, n = 64, 96, 24
    model, truth = person_with_blinks(h, w, n, {4, 9, 10, 15, 16, 17})
    cs = CentredSmoother(1.0, radius=2)
    out = [cs.smooth(model[max(0, t - 2): t + 3], min(t, 2)) for t in range(n)]
    region = blob(h, w, h * 0.4, w * 0.8, h * 0.15) > 0
    shown = [t for t in range(n) if (out[t][region] >= 0.5).mean() > 0.5]
    assert shown == [15, 16, 17]  # 1 and 2 frames of 5: out; 3 frames: a real change, on time
    for t in range(n):
        assert iou(np.where(region, 0, out[t]), truth[t]) > 0.95


def test_offline_smoothing_lines_up_a_moving_person_with_the_flow():
    """A person moving 4 mask pixels a frame: the neighbours are carried to the centre frame
    along the flow, so the output is that frame's silhouette (no lag, no smear), and a blob
    that blinks beside them for one frame is gone."""
    from vbg.inference.smoothing import CentredSmoother

    h, w, n, speed = 64, 96, 9, 4
    room, skin = texture(h, w, seed=5), texture(h, w, seed=6)
    cs = CentredSmoother(1.0, radius=2)
    region = blob(h, w, 14, 84, 8) > 0
    masks, grays, people = [], [], []
    for t in range(n):
        person = blob(h, w, 36, 20 + speed * t, 14)
        frame = room.copy()
        frame[person > 0] = np.roll(skin, speed * t, axis=1)[person > 0]
        grays.append(cs.gray(frame, (h, w)))
        mask = person.copy()
        if t == 4:
            mask[region] = 1.0
        masks.append(mask)
        people.append(person)
    for t in range(2, n - 2):
        out = cs.smooth(masks[t - 2: t + 3], 2, grays[t - 2: t + 3])
        assert iou(out, people[t]) > 0.95, t
        assert (out[region] >= 0.5).mean() < 0.1, t
    # without the flow, the neighbours' silhouettes smear the moving edges
    plain = cs.smooth(masks[2:7], 2)
    assert np.abs(plain - people[4]).mean() > np.abs(cs.smooth(masks[2:7], 2, grays[2:7]) - people[4]).mean()


# ------------------------------- new content the picture shows is shown at once, noise is not


def arrival_scene(n: int, shown: set[int], blinks: set[int], hw=(144, 256), mask_hw=(72, 128)):
    """A still person on the left over a textured room; on the frames in ``shown`` a second
    person stands on the right, far from the first one's edge (in the picture and in the
    model's mask: someone walking in, a hand raised into view); on the frames in ``blinks``
    the model's mask alone has a blob in the middle of the room (its noise: the picture
    there is unchanged). Returns (frames, masks, first person, arrival region, blink region)
    with the masks and regions at ``mask_hw``."""
    (H, W), (h, w) = hw, mask_hw
    room = texture(H, W, seed=5)
    shirt = (texture(H, W, seed=7) // 2 + 120).astype(np.uint8)  # a brighter texture
    first = blob(h, w, h * 0.5, w * 0.2, h * 0.3)
    second = blob(h, w, h * 0.55, w * 0.8, h * 0.2)
    noise = blob(h, w, h * 0.25, w * 0.5, h * 0.12)
    up = lambda m: cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST) > 0.5  # noqa: E731
    frames, masks = [], []
    for t in range(n):
        frame = room.copy()
        frame[up(first)] = shirt[up(first)]
        mask = first.copy()
        if t in shown:
            frame[up(second)] = 255 - shirt[up(second)]
            mask = np.maximum(mask, second)
        if t in blinks:
            mask = np.maximum(mask, noise)
        frames.append(frame)
        masks.append(mask)
    return frames, masks, first > 0, second > 0, noise > 0


def test_live_shows_a_person_who_appears_away_from_the_edge_on_their_first_frame():
    """The smoother holds back a mask change away from the person's edge for a frame (model
    noise), but not where the picture changed too: someone walking in, or a hand raised into
    view, is shown on the frame they appear, while a blob in the mask alone stays hidden."""
    from vbg.inference.tracker import MaskTracker
    from vbg.types import Mask

    n, arrive = 12, 6
    frames, masks, first, second, noise = arrival_scene(n, set(range(arrive, n)), {3})
    H, W = frames[0].shape[:2]
    tracker = MaskTracker((H, W), masks[0].shape, smoothing=1.0)
    big = lambda r: cv2.resize(r.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0  # noqa: E731
    for t in range(n):
        alpha, fresh = tracker.update(frames[t], t, Mask(t, t / 30, masks[t], t / 30, 1.0))
        assert fresh
        on = lambda r: (alpha[big(r)] >= 128).mean()  # noqa: E731
        assert on(second) > 0.9 if t >= arrive else on(second) < 0.1, t
        assert on(noise) < 0.1, t
        assert on(first) > 0.9, t


def test_offline_shows_what_the_picture_shows_for_two_frames_only():
    """Offline, a blob on fewer than half the window's frames is dropped as noise, unless the
    picture changed there too: a hand waved into view for two frames is shown on both, a blob
    in two frames' masks alone on neither."""
    from vbg.inference.smoothing import CentredSmoother

    n = 14
    frames, masks, first, second, noise = arrival_scene(n, {6, 7}, {9, 10})
    cs = CentredSmoother(1.0, radius=2)
    grays = [cs.gray(f, masks[0].shape) for f in frames]
    for t in range(n):
        lo = max(0, t - 2)
        out = cs.smooth(masks[lo: t + 3], t - lo, grays[lo: t + 3])
        on = lambda r: (out[r] >= 0.5).mean()  # noqa: E731
        assert on(second) > 0.9 if t in (6, 7) else on(second) < 0.1, t
        assert on(noise) < 0.1, t
        assert on(first) > 0.9, t


def late_schedule(n: int, every: int = 2, delay: int = 2) -> list[int | None]:
    """For each frame, the model run whose mask it is shown with: the model on 1 frame in
    ``every``, its mask reaching the frame ``delay`` later (a 50 ms model at 24 fps)."""
    return [None if t < delay else ((t - delay) // every) * every for t in range(n)]


def test_late_masks_do_not_show_the_models_edge_jitter_on_a_still_person():
    """When every mask is two or more frames old (a model slower than the camera), the
    person's edge is averaged over carries, not redrawn from each run: the model's edge
    wobbling by 2 mask pixels from run to run flickers far less on screen than with the
    fresh-mask rule, and the person stays where the masks say."""
    from vbg.inference.smoothing import MOVING, STILL
    from vbg.inference.tracker import MaskTracker
    from vbg.types import Mask

    h, w, H, W, n = 48, 64, 96, 128, 40
    frame = texture(H, W, seed=8)
    runs = {s: cv2.GaussianBlur(blob(h, w, 24, 30, 12 + 2 * ((s // 2) % 2)), (0, 0), 2.0) for s in range(0, n, 2)}
    middle = cv2.resize(blob(h, w, 24, 30, 13), (W, H), interpolation=cv2.INTER_LINEAR)
    sched = late_schedule(n)

    def play(tracker):
        out = []
        for t, s in enumerate(sched):
            alpha, fresh = tracker.update(frame, t, None if s is None else Mask(s, s / 24, runs[s], t / 24, 50.0))
            if alpha is not None:
                assert not fresh
                out.append(alpha.astype(np.float32) / 255)
        return out[4:]

    shipped = play(MaskTracker((H, W), (h, w), smoothing=1.0))
    fresh_rule = MaskTracker((H, W), (h, w), smoothing=1.0)
    fresh_rule.smoother = TemporalSmoother(1.0, late_still=STILL, late_moving=MOVING)
    before = play(fresh_rule)
    assert flicker(shipped) <= 0.6 * flicker(before), (flicker(shipped), flicker(before))
    for a in shipped:
        assert iou(a, middle) > 0.88


def test_late_masks_of_a_moving_person_keep_up_with_the_person():
    """The averaging of late masks does not leave a moving person behind: masks two and
    three frames old, carried along the flow, line up with where the person is now."""
    from vbg.inference.tracker import MaskTracker
    from vbg.types import Mask

    h, w, n, speed = 128, 192, 24, 3
    room = texture(h, w, seed=5)
    skin = texture(h, w, seed=6)
    frames, truths = [], []
    for t in range(n):
        person = blob(h, w, 64, 50 + speed * t, 30)
        frame = room.copy()
        shifted = np.roll(skin, speed * t, axis=1)
        frame[person > 0] = shifted[person > 0]
        frames.append(frame)
        truths.append(person)
    tracker = MaskTracker((h, w), (h, w), smoothing=1.0)
    for t, s in enumerate(late_schedule(n)):
        alpha, _ = tracker.update(frames[t], t, None if s is None else Mask(s, s / 24, truths[s], t / 24, 50.0))
        if t >= 2:
            assert iou(alpha.astype(np.float32) / 255, truths[t]) > 0.93, t
