"""The wall-clock quality benchmark's bookkeeping (benchmarks/quality_live.py): which source frame
each read gave, and what the viewer saw on the frames the pipeline never output."""

import numpy as np

from benchmarks.quality_live import PacedSequence, shown_per_frame
from vbg.clock import FakeClock


def _frames(n):
    return [np.full((4, 6, 3), k, np.uint8) for k in range(n)]


def test_a_late_reader_gets_the_newest_due_frame_and_each_read_is_numbered():
    clock = FakeClock(100.0)
    frames = _frames(6)
    src = PacedSequence(frames, 10.0, clock)
    assert src.read() is frames[0] and clock.now() == 100.0
    clock.advance(0.25)  # frames 1 and 2 are due: a camera hands out the newest, 2
    assert src.read() is frames[2]
    assert src.read() is frames[3] and abs(clock.now() - 100.3) < 1e-9  # on time again: waits for it
    assert [src.read() is frames[k] for k in (4, 5)] == [True, True]
    assert src.read() is None
    assert src.given == [0, 2, 3, 4, 5] and src.skipped == 1


def test_a_frame_never_output_scores_the_previous_output_and_masks_map_to_source_frames():
    given = [0, 2, 3, 4]  # capture numbers -> source frames (frame 1 skipped by the camera; 5 never read)
    alphas = np.stack([np.full((2, 2), 10 * (s + 1), np.uint8) for s in range(4)])
    mask_seqs = np.array([-1, 0, -2, 1])  # capture 2 (frame 3) dropped by the render thread
    shown = shown_per_frame(6, given, alphas, mask_seqs)
    assert [int(a[0, 0]) for a, _ in shown] == [10, 10, 20, 20, 40, 40]
    assert [m for _, m in shown] == [-1, -1, 0, 0, 2, 2]  # capture 1's mask was made from source frame 2
    late = shown_per_frame(3, [1, 2], alphas[:2], np.array([-1, 0]))
    assert int(late[0][0].max()) == 0 and late[0][1] == -1  # before the first output: nothing of the person
    assert [m for _, m in late] == [-1, -1, 1]
