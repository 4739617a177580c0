"""Pixels that are not square (vbg.media.info.pixel_aspect, square_size): which stated aspects count,
and the square-pixel size a player shows, never dropping detail."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from vbg.media.info import pixel_aspect, square_size


def stream(container=None, codec=None):
    return SimpleNamespace(sample_aspect_ratio=container, codec_context=SimpleNamespace(sample_aspect_ratio=codec))


@pytest.mark.parametrize("sar, size, shown", [
    (Fraction(64, 45), (720, 576), (1024, 576)),  # PAL DV / DVD, 16:9
    (Fraction(16, 15), (720, 576), (768, 576)),  # PAL, 4:3
    (Fraction(4, 3), (1440, 1080), (1920, 1080)),  # HDV
    (Fraction(8, 9), (720, 480), (720, 540)),  # NTSC 4:3: narrow pixels, taller, no column dropped
])
def test_wide_and_narrow_pixels_are_shown_at_the_size_a_player_shows(sar, size, shown):
    assert pixel_aspect(stream(sar)) == sar
    assert square_size(*size, pixel_aspect(stream(sar))) == shown


@pytest.mark.parametrize("container, codec, want", [
    (None, Fraction(4, 3), Fraction(4, 3)),  # only the codec says it
    (Fraction(16, 15), Fraction(4, 3), Fraction(16, 15)),  # the container's wins, as in FFmpeg's players
    (Fraction(1, 1), None, None),
    (Fraction(0, 1), None, None),  # "unknown"
    (Fraction(201, 200), None, None),  # an encoder's rounding of square
    (Fraction(100, 1), None, None),  # a damaged header
    (None, None, None),
])
def test_what_counts_as_not_square(container, codec, want):
    assert pixel_aspect(stream(container, codec)) == want
