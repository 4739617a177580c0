"""The person's own colour under a soft alpha (``vbg.compositing.foreground``): what ``--alpha``
outputs and ``vbg segment --cutout`` store, so that an editor laying them over a new background
shows no fringe of the old room, and nothing of the room where the alpha is clear."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vbg.compositing.foreground import ForegroundEstimator

PEOPLE = Path(__file__).resolve().parents[1] / "data" / "people"


def person_before(room: np.ndarray):
    """A person with exact alpha (the synthetic set's) before ``room``: (frame, alpha, person's
    true colour), as float arrays but the frame and alpha (uint8, as a decoder gives them)."""
    rgba = cv2.cvtColor(cv2.imread(str(PEOPLE / "example03_rgba.png"), cv2.IMREAD_UNCHANGED),
                        cv2.COLOR_BGRA2RGBA).astype(np.float32)
    a = rgba[..., 3:] / 255
    room = cv2.resize(room, rgba.shape[1::-1]).astype(np.float32)
    frame = np.clip(rgba[..., :3] * a + room * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return frame, rgba[..., 3].astype(np.uint8), rgba[..., :3]


def rooms():
    green = np.zeros((384, 384, 3), np.uint8)
    green[:] = (25, 191, 25)  # a green wall
    photo = cv2.cvtColor(cv2.imread(str(PEOPLE / "background01.jpg")), cv2.COLOR_BGR2RGB)  # a real room
    return {"green wall": green, "room photo": photo}


@pytest.mark.parametrize("room", ["green wall", "room photo"])
def test_soft_edges_take_the_person_s_colour_and_clear_parts_keep_nothing_of_the_room(room):
    frame, alpha, true = person_before(rooms()[room])
    out = ForegroundEstimator().estimate(frame, alpha)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not out[alpha == 0].any()  # the room was all there, under alpha 0
    assert np.array_equal(out[alpha == 255], frame[alpha == 255])  # the person as filmed
    # laid over white in an editor, the soft edge: the person's colour, not the room's
    band = (alpha > 12) & (alpha < 243)
    a = alpha[..., None].astype(np.float32) / 255

    def over_white(rgb):
        return (a * rgb + (1 - a) * 255)[band]

    ideal = over_white(true)
    before = np.abs(over_white(frame.astype(np.float32)) - ideal).mean()
    after = np.abs(over_white(out.astype(np.float32)) - ideal).mean()
    assert after < 0.7 * before, (before, after)  # (green wall: 15.7 -> 6.5; room photo: 12.8 -> 7.5)
    if room == "green wall":
        def green_excess(rgb):
            return (rgb[:, 1] - (rgb[:, 0] + rgb[:, 2]) / 2).mean()

        assert green_excess(over_white(frame.astype(np.float32))) > 20  # the fringe it had
        assert abs(green_excess(over_white(out.astype(np.float32))) - green_excess(ideal)) < 3


def test_a_hard_matte_is_the_frame_or_nothing_and_the_buffer_is_kept():
    frame, alpha, _ = person_before(rooms()["room photo"])
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    est = ForegroundEstimator()
    out = est.estimate(frame, hard)
    expected = np.where(hard[..., None] == 255, frame, 0)
    assert np.array_equal(out, expected)
    again = est.estimate(frame, alpha)
    assert again is out  # one buffer, frame after frame (the caller copies what it keeps)
    with pytest.raises(ValueError, match="differ in size"):
        est.estimate(frame[:100], alpha)


def test_a_large_photo_goes_through_in_strips_with_the_same_result(monkeypatch):
    """A 48 MP photo's soft edge in one piece took gigabytes of float arrays: the narrow pass goes
    through it in strips of rows, each with the margin its means reach, and the result is the one
    piece's, to the level."""
    import vbg.compositing.foreground as fg

    frame, alpha, _ = person_before(rooms()["room photo"])
    whole = fg.ForegroundEstimator().estimate(frame, alpha).copy()
    monkeypatch.setattr(fg, "STRIP_PIXELS", 384 * 20)  # strips of a few rows
    est = fg.ForegroundEstimator()
    np.testing.assert_array_equal(est.estimate(frame, alpha), whole)
    assert est._narrow_pixels <= 384 * 20 + 2 * (fg.NARROW_R + 1) * 384  # never more than a strip's arrays
