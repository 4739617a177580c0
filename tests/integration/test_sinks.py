"""Sinks with their real threads: the virtual camera through pyvirtualcam's own
Camera lifecycle (with a pure-Python backend that keeps what it is sent, and
with the real default backend), recordings written and read back with PyAV,
and the preview's display check."""

from __future__ import annotations

import contextlib
import glob
import itertools
import platform
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.camera import BACKENDS

from fakecam import fake_camera
from vbg.clock import FakeClock, MonotonicClock
from vbg.errors import ConfigError, SinkError
from vbg.sinks import Sink
from vbg.sinks.preview import Action, PreviewKeys, PreviewWindow, View, action_for_key, display_available
from vbg.sinks.recorder import Recorder
from vbg.sinks.virtual_camera import VirtualCameraSink, describe_open_failure
from vbg.types import Composite

W, H, FPS = 64, 48, 30.0


def wait_for(condition, timeout: float = 60.0) -> None:  # only a guard against a hang
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the sink thread")
        time.sleep(0.001)


def sink_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("vbg-vcam", "vbg-recorder")]


def comp(seq: int, image: np.ndarray, t: float | None = None) -> Composite:
    return Composite(seq, seq / FPS if t is None else t, image, seq, True)


def solid(value: int, w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# ---------------------------------------------------------------- virtual camera

@pytest.fixture
def test_backend():
    """register(clock=..., fail_after=...) -> (backend name, backend class); unregistered after
    the test (the real-backend test must not find it)."""
    with contextlib.ExitStack() as registered:
        numbers = itertools.count()

        def register(clock=None, fail_after=None, hold=None):
            cls = registered.enter_context(fake_camera(f"vbg-test-{next(numbers)}", clock=clock or MonotonicClock(),
                                                       fail_after=fail_after, hold=hold))
            return cls.name, cls

        yield register


def test_vcam_sends_black_at_fps_until_the_first_composite(test_backend):
    clock = FakeClock()
    name, backend = test_backend(clock=clock)
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock) as sink:
        assert isinstance(sink, Sink)
        cam = backend.instances[0]
        assert cam.fourcc == pyvirtualcam.camera.encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
        assert sink.device == "vbg-test-cam" and sink.backend == name
        wait_for(lambda: sink.stats().written == 1)
        for k in range(1, 31):  # one second of fake time, one frame period at a time
            clock.advance(1 / FPS)
            wait_for(lambda: sink.stats().written == k + 1)
        st = sink.stats()
    assert len(cam.frames) == 31 and st.blank == 31 and st.repeats == 0
    np.testing.assert_allclose(cam.times, np.arange(31) / FPS, atol=1e-9)
    assert all(f.size == W * H * 3 and not f.any() for f in cam.frames)


def test_vcam_sends_the_newest_composite_and_repeats_it_when_none_is_new(test_backend):
    """A composite goes to the device as it comes when 0.9 of a frame interval has gone since the
    last new one (the first at once), else when that time comes; one that comes meanwhile replaces
    it (dropped); with nothing new, the last is repeated, 1.5 intervals after it went (a repeat
    must not beat the camera's next frame) and then at the rate."""
    clock = FakeClock()
    name, backend = test_backend(clock=clock)
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock) as sink:
        cam = backend.instances[0]
        wait_for(lambda: sink.stats().written == 1)  # the black start frame

        def sent(n: int) -> np.ndarray:
            wait_for(lambda: sink.stats().written == n)
            return cam.frames[n - 1]

        sink.send(comp(1, solid(10)))  # the first: at once
        assert (sent(2) == 10).all()
        sink.send(comp(2, solid(20)))
        sink.send(comp(3, solid(30)))  # replaces 2 before its time came: 2 is dropped
        clock.advance(1 / FPS)
        assert (sent(3) == 30).all()
        clock.advance(2 / FPS)  # nothing new: a repeat, 1.5 intervals after 3 went
        assert (sent(4) == 30).all()
        mine = solid(40)  # the caller reuses its buffer right after send()
        sink.send(comp(4, mine))  # 2 intervals after 3: at once
        mine[:] = 255
        assert (sent(5) == 40).all()
        pattern = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
        sink.send(comp(5, pattern))
        clock.advance(1 / FPS)
        assert np.array_equal(sent(6), pattern)  # RGB, row-major, exact size
        st = sink.stats()
    assert (st.received, st.written, st.blank, st.dropped, st.repeats) == (5, 6, 1, 1, 1)
    np.testing.assert_allclose(cam.times, [0, 0, 1 / FPS, 3 / FPS, 3 / FPS, 4 / FPS], atol=1e-9)


def test_vcam_latency_is_counted_to_the_send_once_per_frame(test_backend):
    """The latency the status line shows is capture -> the frame sent to the device (it was taken
    when the composite was handed over, before any wait in the sink). Each frame counts once, at
    its first send, not its repeats; a card (camera lost, idle) counts not at all."""
    from vbg.stats import Window

    clock = FakeClock()
    name, backend = test_backend(clock=clock)
    latency = Window()
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock, latency=latency) as sink:
        wait_for(lambda: sink.stats().written == 1)  # the black start frame, at 0
        clock.advance(0.010)
        sink.send(comp(1, solid(10), t=0.004))  # captured 6 ms before it is handed over: sent at once
        wait_for(lambda: sink.stats().written == 2)
        clock.advance(2 / FPS)  # repeated: not counted again
        wait_for(lambda: sink.stats().written == 3)
        sink.send(Composite(2, clock.now(), solid(0), -1, False, card=True))
        clock.advance(2 / FPS)
        wait_for(lambda: sink.stats().written >= 4)
    assert latency.values() == [pytest.approx(6.0)]


def test_vcam_sends_a_frame_as_it_comes_when_a_frame_interval_has_nearly_gone(test_backend):
    """A composite that comes 0.9 of a frame interval or more after the last send goes to the device
    at once, and the ticks follow it: the camera's frames wait for no tick of the sink's own clock
    (46 ms glass-to-glass where they came just after a tick). One that comes sooner waits until then:
    the device never gets more than 1/0.9 of its rate."""
    from vbg.sinks.virtual_camera import EARLY
    from vbg.stats import Window

    clock = FakeClock()
    name, backend = test_backend(clock=clock)
    latency = Window()
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock, latency=latency) as sink:
        cam = backend.instances[0]
        wait_for(lambda: sink.stats().written == 1)  # black, at 0
        clock.advance(EARLY / FPS + 0.001)  # before the next tick, past 0.9 of an interval
        sink.send(comp(1, solid(10), t=clock.now()))
        wait_for(lambda: sink.stats().written == 2)
        first = clock.now()
        clock.advance(0.010)
        sink.send(comp(2, solid(20), t=clock.now()))  # 10 ms after the last send: waits
        clock.advance(1 / FPS - 0.010)  # the tick that follows the frame sent as it came
        wait_for(lambda: sink.stats().written == 3)
    assert cam.times[1] == pytest.approx(first) and cam.times[2] == pytest.approx(first + 1 / FPS)
    assert latency.values() == [pytest.approx(0.0), pytest.approx((1 / FPS - 0.010) * 1000)]


def test_vcam_skips_missed_ticks_instead_of_bursting(test_backend):
    clock = FakeClock()
    name, backend = test_backend(clock=clock)
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock) as sink:
        wait_for(lambda: sink.stats().written == 1)
        clock.advance(1.0 + 0.5 / FPS)  # the thread waiting for tick 1 wakes at tick 30.5
        wait_for(lambda: sink.stats().written == 3)
        time.sleep(0.05)
        st = sink.stats()
    # ticks 0..30 were due: 0 on time, 1 overdue, then 2..29 skipped and 30 sent at once
    assert st.written == 3 and st.late == 28


def test_vcam_a_new_rate_counts_from_its_first_frame_even_when_that_frame_is_late(test_backend):
    """``set_rate`` (the idle card at 1 fps) restarts the ticks from the first frame sent at the
    new rate. A pacing thread held up between taking the new rate and sending that frame (a
    loaded machine) sends the next frame a period after it, not at once: seen in a loaded CI run
    as two frames in a row at 1 fps."""
    clock = FakeClock()
    gate, held = threading.Event(), threading.Event()
    hold_at = [-1]

    def hold(sent: int) -> None:
        if sent == hold_at[0]:
            held.set()
            gate.wait(60)

    name, backend = test_backend(clock=clock, hold=hold)
    with VirtualCameraSink(W, H, FPS, backend=name, clock=clock) as sink:
        cam = backend.instances[0]
        wait_for(lambda: sink.stats().written == 1)  # the black start frame, at 0
        hold_at[0] = 1
        sink.set_rate(1.0)  # the thread leaves its wait for the next 30 fps tick, takes the rate...
        wait_for(held.is_set)  # ...and is held in the send of the first frame at it
        clock.advance(1.0 + 1e-3)  # meanwhile more than a period passes
        gate.set()
        wait_for(lambda: sink.stats().written >= 2 and sink.rate_settled)  # sent, and the rate's ticks set
        clock.advance(1.0)  # the next 1 fps tick is due
        wait_for(lambda: sink.stats().written >= 3)
    np.testing.assert_allclose(cam.times, [0.0, 1.001, 2.001], atol=1e-9)


def test_vcam_real_clock_rate(test_backend):
    """With its default (real) clock the sink ticks on its own, and never faster than fps: a
    bound that load cannot break (a starved thread only ticks less; the exact schedule is
    checked on a fake clock above)."""
    name, backend = test_backend()
    t0 = time.monotonic()
    sink = VirtualCameraSink(W, H, FPS, backend=name)
    wait_for(lambda: sink.stats().written >= 10)
    sink.close()
    elapsed = time.monotonic() - t0
    st = sink.stats()
    ticks = st.written + st.late  # a tick is sent or, when the thread was starved, counted late
    assert ticks <= elapsed * FPS + 2  # never faster than fps
    assert len(backend.instances[0].frames) == st.written


def test_vcam_failure_stops_the_thread_and_is_reported(test_backend):
    name, backend = test_backend(fail_after=3)
    sink = VirtualCameraSink(W, H, FPS, backend=name)
    wait_for(lambda: sink.error is not None)
    wait_for(lambda: not sink_threads())
    assert sink.stats().written == 3 and sink.stats().errors == 1
    with pytest.raises(SinkError, match="the test camera went away") as err:
        sink.check()
    assert "\n" not in str(err.value) and isinstance(err.value.__cause__, OSError)
    with pytest.raises(SinkError):
        sink.send(comp(1, solid(1)))
    sink.close()  # already reported: close() does not raise it again
    sink.close()
    assert backend.instances[0].closed == 1


def test_vcam_failure_nobody_looked_at_is_raised_by_close_once(test_backend):
    name, _ = test_backend(fail_after=0)
    sink = VirtualCameraSink(W, H, FPS, backend=name)
    wait_for(lambda: sink.error is not None)
    with pytest.raises(SinkError, match="sending a frame failed"):
        sink.close()
    sink.close()


def test_vcam_close_is_idempotent_and_leaves_no_thread(test_backend):
    name, backend = test_backend()
    before = set(threading.enumerate())
    with VirtualCameraSink(W, H, FPS, backend=name) as sink:
        assert "vbg-vcam" in sink_threads()
        sink.send(comp(0, solid(5)))
    sink.close()
    sink.close()
    assert not sink_threads() and set(threading.enumerate()) <= before
    assert backend.instances[0].closed == 1
    with pytest.raises(ValueError, match="closed"):
        sink.send(comp(1, solid(5)))


def test_vcam_rejects_bad_images_and_options(test_backend):
    name, _ = test_backend()
    with VirtualCameraSink(W, H, FPS, backend=name) as sink:
        with pytest.raises(TypeError, match="uint8"):
            sink.send(comp(0, np.zeros((H, W, 3), np.float32)))
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            sink.send(comp(0, np.zeros((W, H, 3), np.uint8)))
    with pytest.raises(ConfigError, match="no-such-backend"):
        VirtualCameraSink(W, H, FPS, backend="no-such-backend")
    with pytest.raises(ConfigError, match="fps"):
        VirtualCameraSink(W, H, 0, backend=name)


def _loopback_devices() -> list[str]:
    return glob.glob("/sys/devices/virtual/video4linux/video*")


@pytest.mark.skipif(platform.system() != "Linux", reason="the no-device hint tested here is the Linux one")
@pytest.mark.skipif(bool(_loopback_devices()), reason="a v4l2loopback device exists on this machine")
def test_vcam_without_a_loopback_device_says_how_to_get_one():
    assert not any(n.startswith("vbg-test") for n in BACKENDS)
    with pytest.raises(SinkError) as err:
        VirtualCameraSink(W, H, FPS)
    msg = str(err.value)
    assert "modprobe v4l2loopback" in msg and "exclusive_caps=1" in msg and "\n" not in msg
    assert isinstance(err.value.__cause__, RuntimeError)
    with pytest.raises(SinkError, match="/dev/video63 does not exist.*modprobe v4l2loopback"):
        VirtualCameraSink(W, H, FPS, device="/dev/video63")
    assert not sink_threads()


@pytest.mark.parametrize("text, device, system, expect", [
    ("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. Did you run "
     "'modprobe v4l2loopback'? See also pyvirtualcam's documentation.", None, "Linux", "sudo modprobe"),
    ("'obs' backend: OBS Virtual Camera device not found! Did you install OBS?\n"
     "'unitycapture' backend: Unity Capture device not found", None, "Windows", "install OBS Studio"),
    ("'obs' backend: OBS Virtual Camera is not installed in your system. [Device not found]", None, "Darwin",
     "OBS Studio 30"),
    ("'v4l2loopback' backend: Device /dev/video2 is already in use.", "/dev/video2", "Linux", "in use"),
    ("'v4l2loopback' backend: Device /dev/video2 could not be opened: Device or resource busy",
     "/dev/video2", "Linux", "in use"),
    ("'obs' backend: virtual camera output could not be started", None, "Windows", "in use"),
    ("'v4l2loopback' backend: Device /dev/video0 is not a video output device.", "/dev/video0", "Linux",
     "not a virtual camera"),
    ("'v4l2loopback' backend: Could not access /dev/video2 due to missing permissions. Did you add your "
     "user to the 'video' group?", "/dev/video2", "Linux", "'video' group"),
])
def test_open_failures_become_one_line_with_the_way_out(text, device, system, expect):
    line = describe_open_failure(text, device, system)
    assert expect in line and "\n" not in line


# ---------------------------------------------------------------- recorder

def moving_pattern(i: int, w: int, h: int, out: np.ndarray) -> np.ndarray:
    """Smooth gradients plus a square that moves; written into ``out`` (reused)."""
    out[..., 0] = np.linspace(20, 235, w, dtype=np.float32)[None, :]
    out[..., 1] = np.linspace(20, 235, h, dtype=np.float32)[:, None]
    out[..., 2] = 60 + 4 * i % 180
    x, y = (2 * i) % (w - 12), i % (h - 12)
    out[y:y + 12, x:x + 12] = (230, 230, 40)
    return out


def read_back(path: Path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
        return frames, c.duration / 1e6, (stream.codec_context.width, stream.codec_context.height)


@pytest.mark.parametrize("w, h", [(64, 48), (65, 49)])
def test_recorder_writes_every_composite_with_capture_times(tmp_path, w, h):
    out = tmp_path / "rec.mp4"
    buf = np.empty((h, w, 3), np.uint8)  # one buffer, overwritten after every send()
    sent = []
    with Recorder(out, w, h, FPS) as rec:
        assert isinstance(rec, Sink)
        for i in range(45):
            moving_pattern(i, w, h, buf)
            sent.append(buf.copy())
            rec.send(comp(i, buf, t=12.5 + i / FPS))  # capture times: any origin
        assert "vbg-recorder" in sink_threads()
    rec.close()
    assert not sink_threads()
    assert rec.stats().written == 45 and rec.stats().received == 45
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]  # no *.partial left

    frames, duration, size = read_back(out)
    assert len(frames) == 45
    assert duration == pytest.approx(1.5, abs=0.02)
    assert size == rec.frame_size == (w + w % 2, h + h % 2)  # odd sizes padded by one pixel
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(times - times[0], np.arange(45) / FPS, atol=2 / 90000)
    for (_, got), want in zip(frames, sent):
        assert np.abs(got[:h, :w].astype(int) - want).mean() < 6
    if (w, h) != size:  # the padding repeats the last column / row
        assert np.abs(got[:h, w].astype(int) - want[:, w - 1]).mean() < 8
        assert np.abs(got[h, :w].astype(int) - want[h - 1]).mean() < 8


def test_recorder_reproduces_irregular_capture_times(tmp_path):
    gaps = [0.0, 0.033, 0.034, 0.1, 0.001, 0.2, 0.033, 0.5, 0.04, 0.025]
    t_capture = np.cumsum(gaps) + 1000.0
    out = tmp_path / "irregular.mp4"
    buf = np.empty((H, W, 3), np.uint8)
    with Recorder(out, W, H, FPS) as rec:
        for i, t in enumerate(t_capture):
            rec.send(comp(i, moving_pattern(i, W, H, buf), t=float(t)))
    frames, _, _ = read_back(out)
    times = np.array([t for t, _ in frames])
    assert len(times) == len(gaps)
    np.testing.assert_allclose(np.diff(times), gaps[1:], atol=2 / 90000)


@pytest.fixture
def vbg_warnings(caplog):
    """caplog, with the "vbg" logger's warnings in it whatever an earlier test did to that logger
    (the CLI run in-process sets it not to propagate: the records never reached caplog's handler)."""
    import logging

    logger = logging.getLogger("vbg")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.WARNING if level in (logging.NOTSET, 0) or level > logging.WARNING else level)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="a signal to the main thread is POSIX")
def test_a_second_interrupt_while_the_recording_is_finished_keeps_it_whole(tmp_path, vbg_warnings):
    """Ctrl-C stops the live filter and its recording is finished; an impatient second Ctrl-C
    while the encoder works through its last frames (here: a real SIGINT to the main thread once it
    waits for the writer, which has a full queue of 1080p noise to encode) is held until the file is
    finished and in place: every frame sent is in it, and the interrupt comes out after. It lost the
    whole recording; a first fix waited with Thread.join(), which an interrupt leaves believing the
    writer ended, and an unfinished file was moved into place."""
    import sys

    out = tmp_path / "rec.mp4"
    w, h, n = 1920, 1080, 12
    rng = np.random.default_rng(0)
    rec = Recorder(out, w, h, FPS, queue_size=8)
    for i in range(n):
        rec.send(comp(i, rng.integers(0, 256, (h, w, 3), np.uint8), t=i / FPS))
    main = threading.get_ident()
    hit: list[bool] = []

    def waiting_for_the_writer() -> bool:
        """The main thread is in Recorder.close(), waiting in the threading module."""
        frame, names = sys._current_frames().get(main), set()
        while frame is not None:
            names.add((Path(frame.f_code.co_filename).name, frame.f_code.co_name))
            frame = frame.f_back
        return ("recorder.py", "close") in names and any(f == "threading.py" for f, _ in names)

    def interrupt_while_it_waits() -> None:
        while rec._thread.is_alive():
            if waiting_for_the_writer():
                hit.append(True)
                signal.pthread_kill(main, signal.SIGINT)  # as the second Ctrl-C does
                return
            time.sleep(0.001)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt_while_it_waits)
    helper.start()
    interrupted = False
    try:
        rec.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        helper.join(60)
        signal.signal(signal.SIGINT, previous)
    assert hit and interrupted  # the interrupt landed while the file was being finished, and came out after
    frames, _, _ = read_back(out)
    assert len(frames) == n and [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]
    assert "finishing the recording" in vbg_warnings.text


def test_a_file_that_appears_at_the_recordings_name_is_kept_without_overwrite(tmp_path, vbg_warnings):
    """``--record call.mp4`` without --overwrite, and a file of that name made during the run (a copy
    of an earlier call, another program's): that file is kept, and the recording goes beside it
    under a free name, said in one line. It was replaced, unsaid."""
    out = tmp_path / "call.mp4"
    buf = np.empty((H, W, 3), np.uint8)
    rec = Recorder(out, W, H, FPS, overwrite=False)
    for i in range(10):
        rec.send(comp(i, moving_pattern(i, W, H, buf)))
    out.write_bytes(b"mine")
    rec.close()
    assert out.read_bytes() == b"mine"
    assert rec.path == tmp_path / "call-2.mp4" and len(read_back(rec.path)[0]) == 10
    assert f"--record {out}: a file of that name appeared during the run and is kept; the recording is " \
           f"{tmp_path / 'call-2.mp4'}" in vbg_warnings.text


def test_a_recording_whose_folder_was_removed_says_so(tmp_path):
    """The folder of ``--record`` removed during the run: the end says that, and what to do. It said
    the file "was replaced by someone else ... (the folder is writable by others)" and "a file stands
    where a folder is needed"."""
    from vbg.errors import OutputError

    folder = tmp_path / "calls"
    folder.mkdir()
    buf = np.empty((H, W, 3), np.uint8)
    rec = Recorder(folder / "call.mp4", W, H, FPS)
    for i in range(5):
        rec.send(comp(i, moving_pattern(i, W, H, buf)))
    import shutil

    shutil.rmtree(folder)
    with pytest.raises(OutputError) as err:
        rec.close()
    assert str(err.value) == (f"--record {folder / 'call.mp4'}: cannot move it into place (the folder {folder} was "
                              "removed while vbg wrote into it): keep the output's folder until vbg ends, and run it again")


def test_recorder_interrupted_midway_still_leaves_a_playable_file(tmp_path):
    out = tmp_path / "cut.mp4"
    buf = np.empty((H, W, 3), np.uint8)
    with pytest.raises(KeyboardInterrupt):
        with Recorder(out, W, H, FPS) as rec:
            for i in range(10):
                rec.send(comp(i, moving_pattern(i, W, H, buf)))
            raise KeyboardInterrupt
    frames, duration, _ = read_back(out)
    assert len(frames) == 10 and duration == pytest.approx(10 / FPS, abs=0.02)
    assert [p.name for p in tmp_path.iterdir()] == ["cut.mp4"]
    assert not sink_threads()


def fragments(path: Path) -> int:
    """How many movie fragments (``moof`` boxes) an MP4 file holds."""
    return path.read_bytes().count(b"moof")


def record_while(out: Path, seconds: float, during=None) -> Recorder:
    """A recording of ``seconds`` of the moving pattern at FPS; ``during(recorder)`` runs after the
    last frame is sent, before the recording is closed."""
    buf = np.empty((H, W, 3), np.uint8)
    rec = Recorder(out, W, H, FPS)
    for i in range(round(seconds * FPS)):
        rec.send(comp(i, moving_pattern(i, W, H, buf), t=i / FPS))
    if during is not None:
        during(rec)
    rec.close()
    return rec


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_a_recording_plays_up_to_its_last_second_when_killed_and_ends_unfragmented(tmp_path, suffix):
    """A run killed outright (``kill -9``, a crash, the power gone) leaves its recording's hidden
    temporary, and an MP4 written the usual way (its index at the end) did not play at all. It is
    written in one-second fragments now: what the temporary holds while the recording runs (what a
    kill leaves) plays its first seconds. Finished, the file is a plain MP4/MOV again (no fragments,
    one index: what editors expect), every frame at its capture time from 0."""
    out = tmp_path / f"call{suffix}"
    killed = tmp_path / f"killed{suffix}"

    def copy_the_temporary(rec) -> None:
        temp = next(tmp_path.glob(f".call{suffix}.*.partial"))
        wait_for(lambda: fragments(temp) >= 2)  # two seconds encoded and handed to the file
        killed.write_bytes(temp.read_bytes())

    record_while(out, 3.0, copy_the_temporary)
    got, _, _ = read_back(killed)
    assert len(got) >= 2 * FPS
    frames, duration, _ = read_back(out)
    assert len(frames) == 3 * FPS and fragments(out) == 0
    assert frames[0][0] == 0 and duration == pytest.approx(3.0, abs=0.02)
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(np.diff(times), 1 / FPS, atol=2 / 90000)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, killed.name])


def test_a_recording_is_kept_fragmented_where_the_disk_has_no_room_to_rewrite_it(tmp_path, vbg_warnings):
    """Rewriting a finished recording needs its size again on the disk: where that is not free, the
    fragmented file (which plays everywhere) is the recording, with one line saying so and how to
    rewrite it; nothing is lost and no temporary is left. (A real small disk: a tmpfs.)"""
    from conftest import small_tmpfs

    with small_tmpfs(tmp_path / "small", "8m") as folder:
        out = folder / "call.mp4"
        record_while(out, 2.0)
        frames, _, _ = read_back(out)
        assert len(frames) == 2 * FPS and fragments(out) >= 2
        assert [p.name for p in folder.iterdir()] == ["call.mp4"]
    assert f"--record {out}: kept as written while recording, fragmented" in vbg_warnings.text
    assert "MB free" in vbg_warnings.text and "ffmpeg -i FILE -c copy NEW.mp4" in vbg_warnings.text


def test_the_next_recording_keeps_what_a_killed_one_left_and_names_it(tmp_path, vbg_warnings):
    """A run killed while recording leaves a hidden ``.call.mp4.XXXXXXXX.partial``, which a user
    never sees. The next recording into that folder gives one that plays a visible name that
    replaces nothing (``call.partial.mp4``, here ``call.partial-2.mp4``: the user has a
    ``call.partial.mp4``; a long name's, cut when it was made, its start), and says so; its mode
    stays 0600 (another user of a shared folder can rename any file there to such a name: vbg
    made a private photo readable to all). One that cannot play (an MP4 without its index, as vbg
    wrote them before) is named for the user to delete and left; a photo under such a name is
    left unsaid. What a running vbg writes (locked), symlinks and other files are not touched."""
    import fcntl
    import os

    playable = tmp_path / "fragmented"
    playable.mkdir()
    record_while(playable / "x.mp4", 2.0,
                 lambda rec: wait_for(lambda: fragments(next(playable.glob(".x.mp4.*.partial"))) >= 1))
    whole = (playable / "x.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole)
    ours = playable / "fragmented.mp4"  # a kill's leftover: the fragments so far, the last one half-written
    record_while(ours, 2.5, lambda rec: ours.with_name("copy").write_bytes(
        wait_for(lambda: fragments(next(playable.glob(".fragmented.mp4.*.partial"))) >= 2)
        or next(playable.glob(".fragmented.mp4.*.partial")).read_bytes()))
    left = (playable / "copy").read_bytes()

    (tmp_path / ".call.mp4.k1ll3d00.partial").write_bytes(left)
    (tmp_path / "call.partial.mp4").write_bytes(b"the user's own")
    (tmp_path / ".talk.mp4.0ld0ld00.partial").write_bytes(whole[: len(whole) // 2][:100] + bytes(500))
    (tmp_path / ".busy.mp4.l0cked00.partial").write_bytes(left)
    (tmp_path / ".link.mp4.symlnk00.partial").symlink_to(tmp_path / ".busy.mp4.l0cked00.partial")
    (tmp_path / ".notes.txt.abcdefgh.partial").write_bytes(left)
    long_start = "2024.05.07 weekly " + "会议" * 10  # 78 bytes: what _temp_prefix keeps of a name over 100 bytes
    (tmp_path / f".{long_start}~0123abcd.l0ngnam3.partial").write_bytes(left)
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    (tmp_path / ".passport.mp4.ph0t0000.partial").write_bytes(jpeg.tobytes())
    for p in tmp_path.glob(".*.partial"):
        if not p.is_symlink():
            p.chmod(0o600)  # as mkstemp made them
    os.utime(tmp_path / ".call.mp4.k1ll3d00.partial", (1e9, 1e9))
    busy = os.open(tmp_path / ".busy.mp4.l0cked00.partial", os.O_RDONLY)
    fcntl.flock(busy, fcntl.LOCK_EX)  # a run writing it now
    try:
        record_while(tmp_path / "next.mp4", 0.5)
    finally:
        os.close(busy)

    rescued = tmp_path / "call.partial-2.mp4"
    assert (tmp_path / "call.partial.mp4").read_bytes() == b"the user's own"
    assert len(read_back(rescued)[0]) >= 2 * FPS and rescued.stat().st_mode & 0o777 == 0o600
    assert len(read_back(tmp_path / f"{long_start}.partial.mp4")[0]) >= 2 * FPS
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        ".busy.mp4.l0cked00.partial", ".link.mp4.symlnk00.partial", ".notes.txt.abcdefgh.partial",
        ".passport.mp4.ph0t0000.partial", ".talk.mp4.0ld0ld00.partial"]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(1e9))
    assert (f"a video cut short when vbg was killed (last written {when}) is kept as {rescued}: it plays up "
            "to where it was cut") in vbg_warnings.text
    assert f"{tmp_path / '.talk.mp4.0ld0ld00.partial'}: a video a killed vbg run left" in vbg_warnings.text
    assert "delete it" in vbg_warnings.text
    assert len({r.getMessage() for r in vbg_warnings.records if "killed" in r.getMessage()}) == 3  # none on the rest


def test_a_rescued_recording_never_takes_the_name_the_new_one_is_written_to(tmp_path, vbg_warnings):
    """``--record call.partial.mp4 --overwrite`` where a killed run of ``call.mp4`` left its
    recording: that one is kept as ``call.partial-2.mp4``; it was named ``call.partial.mp4`` (said
    as kept) and then replaced by the new recording."""
    (tmp_path / "old").mkdir()
    old = tmp_path / "old" / "call.mp4"
    record_while(old, 2.5, lambda rec: (tmp_path / "left").write_bytes(
        wait_for(lambda: fragments(next(old.parent.glob(".call.mp4.*.partial"))) >= 2)
        or next(old.parent.glob(".call.mp4.*.partial")).read_bytes()))
    (tmp_path / ".call.mp4.k1ll3d00.partial").write_bytes((tmp_path / "left").read_bytes())
    new = tmp_path / "call.partial.mp4"
    rec = record_while(new, 0.5)
    assert rec.path == new and len(read_back(new)[0]) == round(0.5 * FPS)
    assert len(read_back(tmp_path / "call.partial-2.mp4")[0]) >= 2 * FPS
    assert f"is kept as {tmp_path / 'call.partial-2.mp4'}" in vbg_warnings.text


def test_recorder_without_frames_creates_no_file(tmp_path):
    out = tmp_path / "empty.mp4"
    rec = Recorder(out, W, H, FPS)
    rec.close()
    rec.close()
    assert list(tmp_path.iterdir()) == [] and not sink_threads()


def test_recorder_rejects_bad_options_and_images(tmp_path):
    with pytest.raises(ConfigError, match=r"\.avi"):
        Recorder(tmp_path / "x.avi", W, H, FPS)
    with pytest.raises(ConfigError, match="preset"):
        Recorder(tmp_path / "x.mp4", W, H, FPS, preset="warp9")
    with Recorder(tmp_path / "x.mp4", W, H, FPS) as rec:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            rec.send(comp(0, np.zeros((H, W + 1, 3), np.uint8)))
        rec.send(comp(0, solid(9)))
    with pytest.raises(ValueError, match="closed"):
        rec.send(comp(1, solid(9)))
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]


# ---------------------------------------------------------------- preview

def test_display_available_follows_the_environment(monkeypatch):
    assert display_available({}, "Linux") is False
    assert display_available({}, "Windows") is True and display_available({}, "Darwin") is True
    assert display_available({"DISPLAY": ":4711"}, "Linux") is False  # set, but no X server there
    # no display number at all: not a display (vbg doctor said "a window can open", and --preview
    # then died in Qt with SIGABRT)
    assert display_available({"DISPLAY": "bogus"}, "Linux") is False
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_available() is (platform.system() in ("Windows", "Darwin"))


@pytest.mark.skipif(platform.system() in ("Windows", "Darwin"), reason="these always have a display")
def test_preview_without_display_refuses_before_touching_the_gui(monkeypatch):
    import cv2

    def never(*a, **k):  # opencv-python would abort the whole process here
        raise AssertionError("the GUI was touched without a display")

    for fn in ("namedWindow", "imshow", "waitKey", "resizeWindow"):
        monkeypatch.setattr(cv2, fn, never)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError) as err:
        PreviewWindow(W, H, FPS)
    assert str(err.value) == "no display: drop --preview or run under a desktop session / xvfb-run"


def test_preview_keys():
    assert action_for_key(-1) is None
    assert action_for_key(ord("q")) is Action.QUIT and action_for_key(27) is Action.QUIT
    assert action_for_key(ord("Q")) is Action.QUIT
    assert action_for_key(ord("b")) is Action.NEXT_BACKGROUND
    assert action_for_key(ord(" ")) is Action.TOGGLE_EFFECT
    assert action_for_key(ord("+")) is Action.BLUR_UP and action_for_key(ord("=")) is Action.BLUR_UP
    assert action_for_key(ord("-")) is Action.BLUR_DOWN
    assert action_for_key(ord("x")) is None


def test_preview_key_policy_hands_the_render_thread_whole_views():
    """What each key does is the preview's: every change is the whole new view (effect on or off,
    the prepared background), queued for the render thread, which takes the newest once a frame."""
    from vbg.compositing import BlurBackground, ColorBackground

    configured = ColorBackground((0, 0, 255))
    quits = []
    keys = PreviewKeys(configured, (H, W), on_quit=lambda: quits.append(True))
    assert keys.take() is None  # no key: nothing to apply, the frame goes on as it was
    keys(Action.TOGGLE_EFFECT)
    assert keys.take() == View(False, configured) and keys.take() is None
    keys(Action.TOGGLE_EFFECT)
    keys(Action.NEXT_BACKGROUND)  # two keys between two frames: the newest view has both
    v = keys.take()
    assert v.effect is True and isinstance(v.background, BlurBackground) and v.background.strength == 1.0
    keys(Action.NEXT_BACKGROUND)
    green = keys.take().background
    assert isinstance(green, ColorBackground) and green.rgb == (0, 177, 64)
    green.render(np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8))  # prepared at the frame size
    keys(Action.NEXT_BACKGROUND)
    assert keys.take() == View(True, configured)  # round the cycle
    for _ in range(20):  # more than the queue holds: the newest view is still the one taken
        keys(Action.BLUR_UP)
    assert keys.take().background.strength == 5.0
    for _ in range(20):
        keys(Action.BLUR_DOWN)
    assert keys.take().background.strength == 0.5
    keys(Action.QUIT)
    assert quits == [True] and keys.take() is None
    keys.close()


def test_a_backend_of_another_system_is_said_as_such():
    """--vcam-backend obs on Linux (listed in --help, which is the same everywhere): one line that
    it is for Windows and macOS (it was "unknown", as a typo is)."""
    from pyvirtualcam.camera import BACKENDS

    from vbg.sinks.virtual_camera import _open_camera

    other = next((b for b in ("obs", "unitycapture", "v4l2loopback") if b not in BACKENDS), None)
    assert other is not None, f"pyvirtualcam here has every backend: {sorted(BACKENDS)}"
    with pytest.raises(ConfigError, match=rf"backend '{other}' is for .+, not this system: use one of"):
        _open_camera(64, 48, 30, None, other)
    with pytest.raises(ConfigError, match="backend 'nosuch' is unknown"):
        _open_camera(64, 48, 30, None, "nosuch")
