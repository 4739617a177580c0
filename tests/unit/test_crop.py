"""The person crop (vbg.inference.crop): where the model looks, and the mask it gives back.

The model here is a plain threshold ("white is the person") at a fixed 64x64
input, so what is checked is the crop's own work: the box it picks from the
masks before, the detail the model gets, and the mask pasted back in place.
"""

import threading

import cv2
import numpy as np
import pytest

from vbg.errors import ConfigError
from vbg.evaluation.metrics import iou
from vbg.inference.crop import RECHECK, CropPlan, CroppedSegmenter, canvas_size, parse_crop

H, W = 360, 640


class WhiteIsPerson:
    """A 'model' that sees white as the person, at a fixed input size; records what it was shown.

    Its answer is 0 or 1 per input pixel: the detail of its mask is the detail it was shown."""

    providers = ["test"]
    source = None

    def __init__(self, hw=(64, 64)):
        self.hw = hw
        self.shown: list[np.ndarray] = []

    def input_size(self, frame_hw):
        return self.hw

    def segment(self, rgb, size_hw=None):
        h, w = size_hw or self.hw
        small = cv2.resize(np.ascontiguousarray(rgb[..., 0]), (w, h), interpolation=cv2.INTER_AREA)
        self.shown.append(small)
        return (small > 127).astype(np.float32)  # sure of every pixel, as a trained model is

    def close(self):
        pass


def frame_with(*people):
    """A dark frame with white figures: (cx, cy, half width, half height) each."""
    f = np.full((H, W, 3), 30, np.uint8)
    for cx, cy, hw_, hh in people:
        cv2.rectangle(f, (int(cx - hw_), int(cy - hh)), (int(cx + hw_), int(cy + hh)), (255, 255, 255), -1)
    return f


def truth_of(frame):
    return (frame[..., 0] > 127).astype(np.float32)


def full_size(canvas):
    return cv2.resize(canvas, (W, H), interpolation=cv2.INTER_LINEAR)


def test_a_small_person_is_cut_out_and_shown_to_the_model_larger():
    model = WhiteIsPerson()
    seg = CroppedSegmenter(model)
    whole = WhiteIsPerson()
    cropped, plain = [], []
    for t in range(6):  # a small figure walking right, 4 px a frame
        f = frame_with((200 + 4 * t, 180, 12, 30))
        mask = full_size(seg.segment(f))
        squeezed = cv2.resize(whole.segment(f), (W, H), interpolation=cv2.INTER_LINEAR)  # the whole frame
        if t >= 1:  # the first look is at the whole frame
            cropped.append(iou(mask, truth_of(f)))
            plain.append(iou(squeezed, truth_of(f)))
    # The mask lands where the person is, better than from the whole frame alone on every frame
    # (the crop's mask and the whole frame's joined, at the model's own mask size).
    assert min(c - p for c, p in zip(cropped, plain)) > 0.0 and np.mean(cropped) > np.mean(plain) + 0.02
    x0, y0, x1, y1 = seg.box()
    assert (x1 - x0) < W * 0.6 and (y1 - y0) < H * 0.6  # looking at a crop, not the whole frame
    assert x0 <= 200 + 4 * 5 - 12 and x1 >= 200 + 4 * 5 + 12  # with the person inside
    assert abs((x1 - x0) / (y1 - y0) - W / H) < 0.05  # the frame's shape: the same geometry, closer
    whole_px = np.count_nonzero(model.shown[0] > 127)
    crop_px = max(np.count_nonzero(s > 127) for s in model.shown[1:])  # (each crop is followed by a whole look)
    assert crop_px >= 3 * whole_px  # the model saw the person with several times the pixels


class MissesGreyUpClose(WhiteIsPerson):
    """A model that, shown the person up close, misses a part of them (grey here): as the selfie model
    lost the kite-surfer's patterned shorts when shown him twice as close."""

    def segment(self, rgb, size_hw=None):
        mask = super().segment(rgb, size_hw)
        if size_hw is not None:  # a crop
            mask[self.shown[-1] < 230] = 0.0
        return mask


def test_what_the_crop_misses_and_the_whole_frame_sees_is_kept():
    seg = CroppedSegmenter(MissesGreyUpClose())
    f = frame_with((320, 180, 14, 40))
    cv2.rectangle(f, (306, 190), (334, 220), (180, 180, 180), -1)  # the shorts
    for _ in range(3):
        mask = full_size(seg.segment(f)) > 0.5
    assert seg.crops == 2  # the model looked at a crop ...
    assert mask[195:215, 310:330].mean() > 0.9  # ... and the shorts are still part of the person
    assert mask[145:185, 310:330].mean() > 0.9


def test_the_whole_frame_is_used_at_the_start_for_a_close_up_and_when_the_person_is_lost():
    model = WhiteIsPerson()
    seg = CroppedSegmenter(model)
    seg.segment(frame_with((320, 180, 12, 30)))
    assert model.shown[0].shape == (64, 64) and seg.crops == 0  # the first look is at everything
    seg.segment(frame_with((320, 180, 12, 30)))
    assert seg.crops == 1
    empty = frame_with()
    canvas = seg.segment(empty)  # the person left (while the model looked at the crop)
    assert not (canvas > 0.5).any()
    seg.segment(frame_with((560, 60, 12, 30)))  # back, far from where they were: the whole frame finds them
    assert seg.box() != (0, 0, W, H)
    x0, y0, x1, y1 = seg.box()
    assert x0 <= 548 and x1 >= 572 and y0 <= 30 and y1 >= 90

    close = CroppedSegmenter(WhiteIsPerson())
    for _ in range(4):  # someone filling the frame: nothing to crop, nothing changes
        close.segment(frame_with((320, 200, 200, 150)))
    assert close.crops == 0 and close.box() == (0, 0, W, H)


def test_someone_entering_far_from_the_crop_is_found_by_the_regular_whole_frame_look():
    seg = CroppedSegmenter(WhiteIsPerson())
    one = (150, 180, 12, 30)
    for _ in range(3):
        seg.segment(frame_with(one))
    x0, _, x1, _ = seg.box()
    assert x1 < 500  # the crop is around the first person
    two = frame_with(one, (580, 180, 12, 30))
    for _ in range(RECHECK + 1):
        seg.segment(two)
    x0, _, x1, _ = seg.box()
    assert seg.rechecks >= 1 and x0 <= 138 and x1 >= 592  # the next box holds both
    mask = full_size(seg.segment(two)) > 0.5
    for cx in (150, 580):  # and the mask shows both
        assert mask[160:200, cx - 8:cx + 8].mean() > 0.9


def test_workers_sharing_a_crop_give_the_same_masks_whatever_order_they_run_in():
    frames = [frame_with((200 + 6 * t, 180 + 2 * t, 12, 30)) for t in range(12)]
    hw = (H, W)
    canvas_hw = canvas_size((64, 64), hw)

    def run(workers: int) -> list[np.ndarray]:
        plan = CropPlan(hw, canvas_hw, lanes=2)
        segs = [CroppedSegmenter(WhiteIsPerson(), plan=plan) for _ in range(workers)]
        out: list[np.ndarray | None] = [None] * len(frames)
        todo = list(range(len(frames)))
        lock = threading.Lock()

        def work(seg):
            while True:
                with lock:
                    if not todo:
                        return
                    t = todo.pop(0)
                out[t] = seg.segment(frames[t], seq=t).copy()

        threads = [threading.Thread(target=work, args=(s,)) for s in segs]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert not any(th.is_alive() for th in threads)
        return out

    one, three = run(1), run(3)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


def test_crop_modes():
    assert parse_crop("AUTO") == "auto" and parse_crop("off") == "off"
    with pytest.raises(ConfigError, match="use auto .* or off"):
        parse_crop("on")


class SlowModel(WhiteIsPerson):
    """Each run takes ``ms`` of a fake clock."""

    def __init__(self, clock, ms):
        super().__init__()
        self.clock, self.ms = clock, ms

    def segment(self, rgb, size_hw=None):
        self.clock.advance(self.ms / 1000.0)
        return super().segment(rgb, size_hw)


@pytest.mark.parametrize("ms,crops", [(15.0, True), (30.0, False)])
def test_live_crops_only_while_the_two_model_runs_fit_a_frame_interval(ms, crops):
    """A cropped frame costs two model runs; live, a model too slow for both in one frame interval
    looks at the whole frame alone (its masks would come later than the crop gains back)."""
    from vbg.clock import FakeClock

    clock = FakeClock()
    seg = CroppedSegmenter(SlowModel(clock, ms), budget_ms=1000.0 / 24, clock=clock.now)
    for _ in range(5):
        seg.segment(frame_with((320, 180, 12, 30)))
    assert seg.run_ms == pytest.approx(ms)
    assert (seg.crops > 0) == crops and (seg.declined > 0) == (not crops)
    if not crops:
        assert seg.crops == 0 and seg.box() != (0, 0, W, H)  # the box is kept ready, in case the model speeds up
