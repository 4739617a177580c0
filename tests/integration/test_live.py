"""The live filter end to end: a paced clip as the camera, the real threads, a
pyvirtualcam backend registered by the test that keeps what it is sent, and a
recording read back with PyAV."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
import pyvirtualcam

from conftest import PEOPLE, iou, run_vbg
from media import person_clip_frames, write_clip
from vbg.config import LiveConfig, apply
from vbg.errors import SourceError
from vbg import priority
from vbg.pipeline import LivePipeline

FPS = 30


class KeepingBackend:
    """A pure-Python pyvirtualcam backend: pyvirtualcam's own Camera drives it."""

    frames: list[tuple[float, np.ndarray]] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self._fourcc = width, height, fourcc
        KeepingBackend.frames = []

    def send(self, frame):
        # pyvirtualcam hands its backends the frame as flat bytes in the native format (RGB here)
        image = np.array(frame, copy=True).reshape(self.height, self.width, 3)
        KeepingBackend.frames.append((time.monotonic(), image))

    def close(self):
        pass

    def device(self):
        return "test-device"

    def native_fourcc(self):
        return self._fourcc


@pytest.fixture(autouse=True, scope="module")
def keeping_backend():
    """Registered for this module only: with no backend named, pyvirtualcam tries every
    registered one, and other tests need to see the machine's real (absent) devices."""
    from pyvirtualcam.camera import BACKENDS

    pyvirtualcam.register_backend("vbg-test-keep", KeepingBackend)
    yield
    BACKENDS.pop("vbg-test-keep", None)


@pytest.fixture(scope="module")
def person_clip(tmp_path_factory):
    """90 frames, 640x360 at 30 fps, of a person swaying over a room, with exact alpha."""
    frames, alphas = zip(*person_clip_frames(90, (360, 640)))
    path = write_clip(tmp_path_factory.mktemp("live") / "person.mp4", frames, fps=FPS)
    return path, np.stack(alphas)


def _recorded(path):
    """(frame index in the source by capture time, RGB image) for every recorded frame."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        out = []
        t0 = None
        for f in c.decode(s):
            t = float(f.pts * s.time_base)
            t0 = t if t0 is None else t0
            out.append((int(round((t - t0) * FPS)), f.to_ndarray(format="rgb24")))
        return out, float(s.average_rate or 0)


def _green_iou(recorded, alphas) -> list[float]:
    scores = []
    for idx, rgb in recorded:
        r, g, b = (rgb[:, :, i].astype(np.int16) for i in range(3))
        person = (g - np.maximum(r, b)) < 100  # not the green backdrop
        scores.append(iou(person.astype(np.float32), alphas[idx]))
    return scores


def test_record_90_frames_at_source_size_and_rate(tmp_path, person_clip):
    clip, _ = person_clip
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", str(clip), "--background", str(PEOPLE / "background01.jpg"), "--model", "selfie",
                   "--no-vcam", "--record", str(out), "--frames", "90", timeout=120)
    assert proc.returncode == 0, proc.stderr
    recorded, rate = _recorded(out)
    assert len(recorded) == 90
    assert recorded[0][1].shape == (360, 640, 3)
    assert rate == pytest.approx(FPS, rel=0.02)
    assert [i for i, _ in recorded] == list(range(90))  # timestamps follow the capture times
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("skip", ["1", "3", "auto"])
def test_green_screen_follows_the_person(tmp_path, person_clip, skip):
    clip, alphas = person_clip
    out = tmp_path / f"green-{skip}.mp4"
    proc = run_vbg("--source", str(clip), "--color", "#00ff00", "--model", "selfie", "--skip", skip,
                   "--no-vcam", "--record", str(out), "--frames", "90", timeout=120)
    assert proc.returncode == 0, proc.stderr
    recorded, _ = _recorded(out)
    scores = _green_iou(recorded[5:], alphas)  # the first frames wait for the first mask
    assert np.mean(scores) >= 0.88, (skip, np.mean(scores), min(scores))


def _run_in_process(cfg: LiveConfig, **kw):
    pipe = LivePipeline(cfg, **kw)
    stats = pipe.run()
    return pipe, stats


def test_virtual_camera_gets_frames_at_camera_rate(person_clip):
    clip, _ = person_clip
    cfg = apply(LiveConfig(), {"source": {"source": str(clip)}, "model": {"model": "selfie"},
                               "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-keep", "frames": 60}})
    before = set(threading.enumerate())
    pipe, stats = _run_in_process(cfg)
    frames = KeepingBackend.frames
    assert len(frames) >= 50  # 60 source frames at 30 fps: ~2 s of camera ticks
    t = np.array([f[0] for f in frames])
    assert 24 <= (len(t) - 1) / (t[-1] - t[0]) <= 36  # fed at the camera's rate
    assert frames[-1][1].shape == (360, 640, 3) and frames[-1][1].dtype == np.uint8
    snap = stats.snapshot()
    # selfie runs on most frames and the render waits for it (a loaded 2-core machine still gets > half)
    assert snap["out_frames"] >= 50 and snap["fresh_share"] > 0.5
    assert set(threading.enumerate()) <= before  # every thread joined


def test_rmbg_random_init_with_auto_skip_keeps_the_output_rate(person_clip, rmbg_onnx_dynamic):
    """RMBG-1.4's cost (random init: exact compute) at --size 256 is more than a frame
    interval on this CPU: auto skipping keeps every frame coming, with propagated masks."""
    clip, _ = person_clip
    cfg = apply(LiveConfig(), {"source": {"source": str(clip)},
                               "model": {"model": str(rmbg_onnx_dynamic), "size": 256},
                               "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-keep", "frames": 90}})
    pipe, stats = _run_in_process(cfg)
    snap = stats.snapshot()
    assert snap["out_frames"] >= 80
    assert snap["infer_runs"] >= 5
    assert snap["fresh_share"] < 0.9  # the model did not (could not) run on every frame


class Flaky:
    """A real Source: a paced synthetic camera that is unplugged after 20 frames."""

    live = True

    def __init__(self, frames, fail_after=None):
        self.frames, self.fail_after, self.n = frames, fail_after, 0
        self.height, self.width = frames[0].shape[:2]
        self.fps = 30.0

    def read(self):
        if self.fail_after is not None and self.n >= self.fail_after:
            raise SourceError("camera unplugged")
        time.sleep(1 / 30)
        img = self.frames[self.n % len(self.frames)]
        self.n += 1
        return img

    def close(self):
        pass


def test_camera_lost_mid_run_keeps_the_vcam_fed_and_resumes(person_clip):
    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    attempts = []

    def reopen():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise SourceError("still unplugged")
        return Flaky(frames)

    cfg = apply(LiveConfig(), {"model": {"model": "selfie"}, "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-keep", "frames": 60}})
    pipe = LivePipeline(cfg, source=Flaky(frames, fail_after=20), reopen=reopen)
    stats = pipe.run()
    assert pipe.capture.reconnects == 1 and len(attempts) == 3
    assert stats.out_frames >= 55  # frames resumed after the camera came back
    sent = KeepingBackend.frames
    dim = [f for _, f in sent if f.mean() < 40]  # the dimmed "camera lost" card
    assert dim, "the virtual camera was not kept fed while the camera was gone"


def test_sigint_stops_cleanly_with_a_playable_recording(tmp_path, person_clip):
    clip, _ = person_clip
    out = tmp_path / "sig.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "--source", str(clip), "--loop", "--color", "green",
                             "--model", "selfie", "--no-vcam", "--record", str(out)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    recorded, _ = _recorded(out)
    assert len(recorded) > 20


def test_sigterm_stops_cleanly_too(tmp_path, person_clip):
    clip, _ = person_clip
    out = tmp_path / "term.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "--source", str(clip), "--loop", "--blur",
                             "--model", "selfie", "--no-vcam", "--record", str(out)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(_recorded(out)[0]) > 20


def test_no_virtual_camera_device_prints_the_fix(tmp_path):
    import glob

    if glob.glob("/sys/devices/virtual/video4linux/video*"):
        pytest.skip("this machine has a v4l2loopback device")
    proc = run_vbg("--background", str(PEOPLE / "background01.jpg"), timeout=60)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "modprobe v4l2loopback" in errors[0] and "exclusive_caps=1" in errors[0]


def test_align_delays_video_so_a_slow_models_masks_line_up(person_clip, rmbg_onnx_dynamic):
    """--align: the output waits for the model, so the mask's frame is (nearly) the shown frame."""
    clip, _ = person_clip
    base = {"source": {"source": str(clip)}, "model": {"model": str(rmbg_onnx_dynamic), "size": 256},
            "background": {"color": "blue"}, "output": {"vcam_backend": "vbg-test-keep", "frames": 60}}
    _, plain = _run_in_process(apply(LiveConfig(), base))
    _, aligned = _run_in_process(apply(LiveConfig(), {**base, "temporal": {"align": True}}))
    p, a = plain.snapshot(), aligned.snapshot()
    assert a["out_frames"] >= 50
    # Plain: shown at once, with a mask from an older frame. Aligned: shown later, mask from (about) that frame.
    assert a["latency_ms_p50"] > p["latency_ms_p50"] + 0.5 * a["infer_ms_p50"]
    assert a["mask_age_ms_p50"] - a["latency_ms_p50"] < p["mask_age_ms_p50"] - p["latency_ms_p50"]


def test_align_with_skip_keeps_quality(tmp_path, person_clip):
    clip, alphas = person_clip
    out = tmp_path / "aligned.mp4"
    proc = run_vbg("--source", str(clip), "--color", "#00ff00", "--model", "selfie", "--skip", "4", "--align",
                   "--no-vcam", "--record", str(out), "--frames", "90", timeout=120)
    assert proc.returncode == 0, proc.stderr
    recorded, _ = _recorded(out)
    assert len(recorded) >= 85
    assert np.mean(_green_iou(recorded[5:], alphas)) >= 0.88


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb for a window (apt install xvfb xauth)")
def test_preview_window_on_a_virtual_display(person_clip):
    clip, _ = person_clip
    proc = subprocess.run(["xvfb-run", "-a", sys.executable, "-m", "vbg", "--source", str(clip), "--loop",
                           "--model", "selfie", "--color", "blue", "--no-vcam", "--preview", "--duration", "2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "stopped after" in proc.stderr and "Traceback" not in proc.stderr


def test_preview_without_a_display_is_one_line(person_clip):
    clip, _ = person_clip
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    proc = run_vbg("--source", str(clip), "--model", "selfie", "--no-vcam", "--preview", "--frames", "5", env=env)
    assert proc.returncode == 12
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert errors == ["vbg: error: no display: drop --preview or run under a desktop session / xvfb-run"]


def test_no_vcam_and_nothing_else_is_refused_before_any_work(person_clip):
    clip, _ = person_clip
    t0 = time.monotonic()
    proc = run_vbg("--source", str(clip), "--no-vcam")  # default model: no download is even tried
    assert proc.returncode == 2
    assert "--record or --preview" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 20


@pytest.mark.skipif(not priority.supported(), reason="per-thread nice values exist on Linux only")
def test_model_threads_yield_to_the_render_thread(person_clip):
    """On a CPU the model runs at a lower priority than the frame path: the render thread keeps
    the process's priority, the inference thread and ONNX Runtime's pool threads are niced."""
    clip, _ = person_clip
    cfg = apply(LiveConfig(), {"source": {"source": str(clip)}, "model": {"model": "selfie", "device": "cpu"},
                               "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-keep", "frames": 30}})
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen: dict[str, int | None] = {}

    def tick(pipe):
        for t in threading.enumerate():
            if t.name in ("vbg-infer", "vbg-render") and t.native_id is not None:
                seen[t.name] = priority.nice_of(t.native_id)
        seen["pool"] = min((priority.nice_of(tid) for tid in pipe._model_threads), default=None)

    LivePipeline(cfg).run(on_tick=tick)
    assert seen.get("vbg-render") == base
    assert seen.get("vbg-infer") == min(19, base + priority.BACKGROUND_NICE)
    if (os.cpu_count() or 1) > 1:  # one core: ONNX Runtime makes no pool threads
        assert seen.get("pool") == min(19, base + priority.BACKGROUND_NICE)
