"""Timestamps that start over part-way (recordings joined end to end) made continuous, with
FFmpeg's own thresholds: a tenth of a second back, ten seconds ahead."""

from __future__ import annotations

from fractions import Fraction

from vbg.media.timeline import Continuity

TB = Fraction(1, 90000)  # MPEG-TS's clock
STEP = 3000  # a frame at 30 fps


def _shifted(times: list[int]) -> list[int]:
    clock = Continuity(TB)
    return [clock.shift(t, STEP) for t in times]


def test_a_clock_that_starts_over_continues_where_the_stream_ended():
    first = [126000 + i * STEP for i in range(60)]  # 1.4 s on, as a muxer starts
    assert _shifted(first + first) == [126000 + i * STEP for i in range(120)]


def test_a_jump_ahead_of_more_than_ten_seconds_is_a_new_part_and_a_shorter_one_a_pause():
    clock = Continuity(TB)
    assert [clock.shift(t, STEP) for t in (0, STEP, STEP + 11 * 90000)] == [0, STEP, 2 * STEP]
    assert clock.joins == 1 and clock.at_s == 2 * STEP / 90000
    assert _shifted([0, STEP, STEP + 9 * 90000]) == [0, STEP, STEP + 9 * 90000]  # kept as timed


def test_a_small_step_back_is_left_to_the_writer_and_a_larger_one_is_a_new_part():
    assert _shifted([0, STEP, 2 * STEP, STEP]) == [0, STEP, 2 * STEP, STEP]  # 0.067 s back: not a new part
    assert _shifted([0, STEP, 10 * STEP, 2 * STEP]) == [0, STEP, 10 * STEP, 11 * STEP]  # 0.27 s back


def test_the_flag_is_libavformats():
    import av

    from vbg.media.timeline import TS_DISCONT

    assert TS_DISCONT == av.format.Flags.ts_discont.value
