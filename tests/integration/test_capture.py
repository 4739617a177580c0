"""Sources: a video file paced like a camera, looping, and a camera that goes away and comes back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lockstep import wait_until
from media import person_clip_frames, write_clip
from vbg.buffers import Closed, LatestSlot
from vbg.capture import CaptureWorker, open_source
from vbg.clock import FakeClock
from vbg.errors import SourceError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = [f for f, _ in person_clip_frames(12, (72, 128))]
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=30)


def test_file_source_is_paced_at_its_own_rate(clip):
    clock = FakeClock(100.0)
    with open_source(str(clip), clock=clock) as src:
        assert (src.width, src.height) == (128, 72) and src.fps == pytest.approx(30)
        times = []
        while (img := src.read()) is not None:
            assert img.shape == (72, 128, 3) and img.dtype == np.uint8
            times.append(clock.now())
    assert len(times) == 12
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-6)  # one frame per 1/30 s of clock


def test_a_file_source_stopped_for_a_while_goes_on_at_its_pace_not_in_a_burst(clip):
    """The process stopped for 8 s (Ctrl-Z then fg, a debugger) after the 4th frame: the next frame
    goes out at once and the rest a frame interval apart, as a paused player goes on. Every frame
    missed was handed out at once (1080p60: 8 s of clip decoded flat out, the output at 40 fps
    for 15 s)."""
    clock = FakeClock(100.0)
    with open_source(str(clip), clock=clock) as src:
        times = []
        while src.read() is not None:
            times.append(clock.now())
            if len(times) == 4:
                clock.advance(8.0)
    assert len(times) == 12
    gaps = np.diff(times)
    assert gaps[3] == pytest.approx(8.0, abs=1 / 30)
    np.testing.assert_allclose(np.delete(gaps, 3), 1 / 30, atol=1e-6)  # at the file's pace, before and after


def test_a_source_that_drops_late_frames_goes_on_after_a_pause_without_decoding_it(clip):
    """The demo source (which drops late frames, as a camera does) paused a minute while nobody
    watched: it goes on at once from where it stood. It decoded every frame of the minute to
    drop it (an hour's pause: minutes of a core, no picture)."""
    from vbg.capture.video_file import VideoFileSource

    clock = FakeClock(10.0)
    with VideoFileSource(str(clip), loop=True, clock=clock, drop_late=True) as src:
        for _ in range(3):
            assert src.read() is not None
        clock.advance(60.0)
        before = clock.now()
        assert src.read() is not None
        assert src.frames_dropped == 0 and clock.now() - before < 0.1


def test_a_photo_as_the_camera_shows_its_picture_on_at_a_steady_rate(tmp_path):
    """A photo as --source (a still camera, as the README says it takes one): its picture again
    and again, a frame interval apart, upright and whole, decoded once. The run ended after its
    one frame ("stopped after 1 frames")."""
    import cv2

    photo = tmp_path / "desk.jpg"
    picture = np.zeros((72, 128, 3), np.uint8)
    picture[:, :64] = (0, 0, 255)  # BGR: red on the left
    cv2.imwrite(str(photo), picture)
    clock = FakeClock(5.0)
    with open_source(str(photo), clock=clock) as src:
        shots = [src.read() for _ in range(30)]
        times = [clock.now()]
        src.read()
        times.append(clock.now())
    assert all(s is not None and s.shape == (72, 128, 3) for s in shots)
    assert all(np.array_equal(s, shots[0]) for s in shots) and shots[0] is not shots[1]  # each its own array
    assert np.abs(shots[0][36, 10].astype(int) - (255, 0, 0)).max() < 8  # RGB: red on the left
    assert times[1] - times[0] == pytest.approx(1 / src.fps)


def test_file_source_loops_with_increasing_time(clip):
    clock = FakeClock()
    with open_source(str(clip), loop=True, clock=clock) as src:
        times = [clock.now() for _ in range(30) if src.read() is not None]
    assert len(times) == 30
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-6)  # no jump or stall at the wrap


def test_unpaced_source_reads_as_fast_as_it_decodes(clip):
    clock = FakeClock()
    with open_source(str(clip), paced=False, clock=clock) as src:
        n = 0
        while src.read() is not None:
            n += 1
    assert n == 12 and clock.now() == 0.0


def test_missing_or_broken_sources_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(bad))


class FlakySource:
    """A real Source that stops delivering after ``fail_after`` frames (a camera unplugged)."""

    live = True

    def __init__(self, fail_after: int | None) -> None:
        self.width, self.height, self.fps = 32, 24, 100.0
        self.fail_after = fail_after
        self.n = 0
        self.closed = False

    def read(self):
        if self.fail_after is not None and self.n >= self.fail_after:
            raise SourceError("camera unplugged")
        self.n += 1
        time.sleep(0.01)
        return np.full((24, 32, 3), self.n % 256, np.uint8)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("still_gone", [SourceError("still unplugged"), OSError(19, "No such device"),
                                        RuntimeError("VIDEOIO: cannot open"), None],
                         ids=["SourceError", "OSError", "RuntimeError", "None"])
def test_worker_reconnects_after_the_source_fails(still_gone):
    """The camera comes back after two failed reopens, however those fail (a device that is being
    re-enumerated gives OpenCV and OS errors, not only vbg's SourceError; a caller's ``reopen`` may
    return None: that was taken for the source back, "source back after 1 attempt(s)", the
    lost-camera card stopped and nothing reached the sinks)."""
    reopen_calls, lost_while_reopening = [], []

    def reopen():
        reopen_calls.append(time.monotonic())
        lost_while_reopening.append(worker.lost)
        if len(reopen_calls) < 3:
            if still_gone is None:
                return None
            raise still_gone
        return FlakySource(None)

    slot: LatestSlot = LatestSlot()
    first = FlakySource(fail_after=5)
    worker = CaptureWorker(first, slot, reopen=reopen, max_frames=20).start()
    seen = []
    while True:
        try:
            f = slot.get(timeout=5)
        except Closed:
            break
        if f is not None:
            seen.append(f.seq)
    worker.join(60)
    assert not worker.alive and worker.error is None
    assert first.closed and worker.reconnects == 1 and len(reopen_calls) == 3
    assert lost_while_reopening == [True] * 3 and not worker.lost  # lost while it was gone, not after
    assert seen == sorted(seen) and seen[-1] == 19  # numbering goes on across the gap
    gaps = np.diff(reopen_calls)
    assert all(g >= 0.2 for g in gaps)  # backed off, no busy loop


def test_worker_without_reopen_reports_the_failure():
    slot: LatestSlot = LatestSlot()
    worker = CaptureWorker(FlakySource(fail_after=2), slot).start()
    worker.join(60)
    assert isinstance(worker.error, SourceError)
    assert worker.ended.is_set() and slot.closed
    assert not any(t.name == "vbg-capture" for t in threading.enumerate())


def test_worker_pause_releases_the_source_and_resume_reopens_it_at_once():
    """Idle when unwatched: pause() closes the camera (its light off) and reads nothing; resume()
    opens it again without the lost-camera back-off, and a camera that does not open then is
    reported lost and retried."""
    opened, attempts = [], []

    def reopen():
        attempts.append(1)
        if len(attempts) == 2:  # the second wake-up: the camera is busy at first
            raise OSError(16, "Device or resource busy")
        opened.append(FlakySource(None))
        return opened[-1]

    slot: LatestSlot = LatestSlot()
    first = FlakySource(None)
    worker = CaptureWorker(first, slot, reopen=reopen).start()
    try:
        wait_until(lambda: worker.frames >= 3, "three frames")
        worker.pause()
        assert worker.released.wait(30) and first.closed
        frames = worker.frames
        slot.get(timeout=0)  # whatever was handed over before the pause
        assert slot.get(timeout=0.05) is None and worker.frames == frames  # nothing read while paused
        worker.resume()
        wait_until(lambda: worker.frames >= frames + 3, "frames after resume()")
        assert len(opened) == 1 and not opened[0].closed and worker.reconnects == 0 and not worker.lost
        worker.pause()
        assert worker.released.wait(30) and opened[0].closed
        worker.resume()  # reopening fails once: lost, then the back-off brings it back
        wait_until(lambda: len(opened) == 2 and worker.frames > frames + 3, "the camera back after the back-off")
        assert worker.reconnects == 1 and not worker.lost
    finally:
        worker.stop()
        worker.join(30)
    assert not worker.alive and worker.error is None


def test_a_camera_hands_out_each_picture_as_its_own_array_in_rgb(tmp_path):
    """The camera (OpenCV's capture, opened here on a file as it opens a device) decodes into one
    kept buffer frame after frame: every picture handed out stays what it was while later ones
    come (the model and the compositor may hold one for a while), in RGB order, not OpenCV's BGR."""
    from vbg.capture.camera import CameraSource

    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    frames = [np.full((72, 128, 3), c, np.uint8) for c in colours]
    clip = write_clip(tmp_path / "cam.mp4", frames, fps=30)
    src = CameraSource(str(clip))
    try:
        got = [src.read() for _ in colours]
    finally:
        src.close()
    assert len({id(g) for g in got}) == len(colours)
    for g, c in zip(got, colours):
        np.testing.assert_allclose(g.reshape(-1, 3).mean(0), c, atol=4)


def test_a_source_the_pipeline_closes_while_its_read_blocks_is_closed_once():
    """At the end the pipeline closes a source whose ``read()`` still blocks (a caller's queue, a
    socket: closing it is what unblocks the read); the capture thread, once that read returns,
    closed it a second time (a caller's ``close()`` of a native handle need not take two)."""
    import queue

    class Blocking:
        live = True
        width, height, fps = 32, 24, 30.0

        def __init__(self):
            self.q: queue.Queue = queue.Queue()
            self.closes = 0

        def read(self):
            return self.q.get()

        def close(self):
            self.closes += 1
            self.q.put(None)  # the blocked read returns: the end

    src = Blocking()
    slot: LatestSlot = LatestSlot()
    worker = CaptureWorker(src, slot).start()
    src.q.put(np.zeros((24, 32, 3), np.uint8))
    assert slot.get(timeout=60) is not None  # (a hang guard only) the thread is in its next read now
    worker.stop()  # a read of the caller's cannot be cancelled: it goes on waiting
    worker.close_source(src)  # what the pipeline does at its end
    worker.join(60)
    assert not worker.alive and src.closes == 1
