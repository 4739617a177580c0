"""Pre/post-processing follow the RMBG-1.4 reference; sizes follow the documented rules."""

from __future__ import annotations

import numpy as np
import pytest

from vbg.errors import ConfigError
from vbg.config import parse_size
from vbg.models.preprocess import Preprocessor, inference_size, postprocess
from vbg.models.spec import RMBG14, SELFIE


def test_rmbg_normalisation_constants():
    assert RMBG14.mean == (0.5, 0.5, 0.5) and RMBG14.std == (1.0, 1.0, 1.0)
    assert RMBG14.reference_size == (1024, 1024)
    pre = Preprocessor((4, 4), RMBG14.mean, RMBG14.std)
    black = pre(np.zeros((4, 4, 3), np.uint8)).copy()
    white = pre(np.full((4, 4, 3), 255, np.uint8)).copy()
    np.testing.assert_allclose(black, -0.5, atol=1e-7)  # network sees x/255 - 0.5
    np.testing.assert_allclose(white, 0.5, atol=1e-7)


def test_selfie_sees_plain_unit_range():
    pre = Preprocessor((2, 2), SELFIE.mean, SELFIE.std)
    np.testing.assert_allclose(pre(np.full((2, 2, 3), 255, np.uint8)), 1.0, atol=1e-7)


def test_matches_reference_torch_pipeline():
    """Reference: float tensor, F.interpolate bilinear, /255, normalize(0.5, 1.0)."""
    torch = pytest.importorskip("torch", reason="the reference pipeline is torch's: needs the torch extra")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    rgb[:, :, 0] = np.linspace(0, 255, 160, dtype=np.uint8)  # a ramp: interpolation errors show
    ours = Preprocessor((64, 96), RMBG14.mean, RMBG14.std)(rgb)
    t = torch.tensor(rgb, dtype=torch.float32).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(64, 96), mode="bilinear", align_corners=False) / 255.0
    ref = ((t - 0.5) / 1.0).numpy()
    assert ours.shape == (1, 3, 64, 96) and ours.dtype == np.float32
    # OpenCV resizes uint8 in fixed point and rounds to whole grey levels: within one
    # level of the float reference, and only rounding on average (a half-pixel
    # shift or another filter would show as several levels on the ramp).
    assert np.abs(ours - ref).max() <= 1.0 / 255 + 1e-6
    assert np.abs(ours - ref).mean() < 0.3 / 255


def test_channel_order_is_rgb():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    x = Preprocessor((8, 8), SELFIE.mean, SELFIE.std)(rgb)
    assert x[0, 0].min() == 1.0 and x[0, 1:].max() == 0.0


def test_preprocessor_reuses_its_buffer():
    pre = Preprocessor((32, 32), RMBG14.mean, RMBG14.std)
    a = pre(np.zeros((50, 70, 3), np.uint8))
    b = pre(np.ones((50, 70, 3), np.uint8))
    assert a is b  # no per-frame allocation of the input tensor


def test_rejects_wrong_frames():
    pre = Preprocessor((8, 8), RMBG14.mean, RMBG14.std)
    with pytest.raises(ValueError, match="uint8 RGB"):
        pre(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError):
        pre(np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("frame,size,expected", [
    ((720, 1280), 256, (160, 256)),   # 144 rounds half-up to 160
    ((1080, 1920), 320, (192, 320)),  # 180 -> 192
    ((480, 640), 512, (384, 512)),
    ((1280, 720), 256, (256, 160)),   # portrait keeps the long side vertical
    ((479, 641), 256, (192, 256)),
    ((100, 100), 32, (32, 32)),
    ((720, 1280), (144, 256), (144, 256)),  # explicit HxW is taken as is
])
def test_inference_size(frame, size, expected):
    h, w = inference_size(frame, size)
    assert (h, w) == expected


def test_parse_size():
    assert parse_size("256") == 256
    assert parse_size("144x256") == (144, 256)
    assert parse_size(" 320X180 ") == (320, 180)
    assert parse_size(None) is None
    for bad in ("big", "0", "10", "256x", "x256", "-5", "99999", "8x8"):
        with pytest.raises(ConfigError, match="--size"):
            parse_size(bad)


def test_minmax_is_off_by_default_and_safe_on_flat_output():
    raw = np.full((1, 1, 4, 4), 0.3, np.float32)
    raw[0, 0, 0, 0] = 0.7
    plain = postprocess(raw.copy())
    assert plain.max() == pytest.approx(0.7) and plain.min() == pytest.approx(0.3)
    stretched = postprocess(raw.copy(), minmax=True)
    assert stretched.max() == pytest.approx(1.0) and stretched.min() == pytest.approx(0.0)
    flat = postprocess(np.full((1, 1, 4, 4), 0.42, np.float32), minmax=True)
    assert np.all(flat == 0.0) and np.isfinite(flat).all()  # no division by zero, no noise stretched
