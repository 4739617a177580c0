"""The live filter end to end: a paced clip as the camera, the real threads, a
pyvirtualcam backend registered by the test that keeps what it is sent, and a
recording read back with PyAV."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import PEOPLE, iou, run_vbg, x_failure
from fakecam import fake_camera
from lockstep import KeepSink, Lockstep, wait_until
from media import interlace, join_video_tracks, person_clip_frames, write_clip, write_size_switch_clip
from vbg.clock import MonotonicClock
from vbg.config import LiveConfig, apply
from vbg.errors import SourceError
from vbg import priority
from vbg.pipeline import LivePipeline

FPS = 30


@pytest.fixture(scope="module")
def registered_camera():
    """Registered for this module only: with no backend named, pyvirtualcam tries every
    registered one, and other tests need to see the machine's real (absent) devices."""
    with fake_camera("vbg-test-keep") as cls:
        yield cls


@pytest.fixture(autouse=True)
def camera(registered_camera):
    """The virtual camera backend of this test's runs (the cameras of earlier tests let go)."""
    registered_camera.instances.clear()
    return registered_camera


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


def _person(rgb: np.ndarray) -> np.ndarray:
    """Where a green-screen composite is not the green backdrop."""
    r, g, b = (rgb[:, :, i].astype(np.int16) for i in range(3))
    return (g - np.maximum(r, b)) < 100


def _stopped_after(stderr: str) -> int:
    found = re.findall(r"stopped after (\d+) frames", stderr)
    assert len(found) == 1, stderr
    return int(found[0])


def test_record_90_frames_from_the_command_line(tmp_path, person_clip):
    """The CLI end to end. On a busy machine a live run may drop camera frames (that is what live
    means); whatever it drops, every frame it shows is in the recording, in capture order, and
    the last camera frame is always shown."""
    clip, _ = person_clip
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", str(clip), "--background", str(PEOPLE / "background01.jpg"), "--model", "selfie",
                   "--no-vcam", "--record", str(out), "--frames", "90", timeout=300)
    assert proc.returncode == 0, proc.stderr
    recorded, _ = _recorded(out)
    assert len(recorded) == _stopped_after(proc.stderr) >= 1
    assert recorded[0][1].shape == (360, 640, 3)
    with av.open(str(out)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert all(b > a for a, b in zip(pts, pts[1:]))  # capture order, each frame its own time
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob(".*"))


def test_recording_a_file_with_sound_says_the_sound_is_not_in_it(tmp_path):
    """``--source talk.mp4 --record out.mp4``, the file with sound: the recording is the picture
    only (a virtual camera carries none), and one line says so and how to keep it (vbg process).
    It went without a word; a file without sound says nothing."""
    from media import write_with_audio

    frames = [f for f, _ in person_clip_frames(20, (90, 160))]
    for name, audio_s in (("talk.mp4", None), ("quiet.mp4", 0)):
        src = tmp_path / name
        if audio_s is None:
            write_with_audio(src, frames, 20, fmt="mp4")
        else:
            write_clip(src, frames, fps=20)
        out = tmp_path / f"rec-{name}"
        proc = run_vbg("--source", str(src), "--model", "selfie", "--no-vcam", "--record", str(out), "--frames", "10",
                       timeout=300)
        assert proc.returncode == 0, proc.stderr
        said = [ln for ln in proc.stderr.splitlines() if "holds the picture only" in ln]
        if audio_s is None:
            assert said == [f"vbg: --record {out} holds the picture only: a virtual camera carries no sound, so the "
                            f"live filter plays none; for {src} with its sound: vbg process {src} -o OUT.mp4"], said
        else:
            assert said == [], said


def test_a_tilde_in_source_and_record_is_the_home_folder(tmp_path, person_clip):
    """``~`` in --source and --record, quoted on the command line or in a config file (no shell
    expands it there), is the home folder, as for --background: the clip is read from home and the
    recording lands there, not in a new folder named ``~`` under the working folder."""
    clip, _ = person_clip
    home, work = tmp_path / "home", tmp_path / "work"
    (home / "Videos").mkdir(parents=True)
    work.mkdir()
    (home / "clip.mp4").write_bytes(clip.read_bytes())
    (work / "call.toml").write_text('[source]\nsource = "~/clip.mp4"\n[model]\nmodel = "selfie"\n'
                                    '[output]\nvcam = false\nrecord = "~/Videos/call.mp4"\nframes = 3\n')
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    for args, made in ((("--source", "~/clip.mp4", "--model", "selfie", "--no-vcam", "--record", "~/flag.mp4",
                         "--frames", "3"), home / "flag.mp4"),
                       (("--config", "call.toml"), home / "Videos" / "call.mp4")):
        proc = subprocess.run([sys.executable, "-m", "vbg", *args], capture_output=True, text=True,
                              env=env, cwd=work, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert len(_recorded(made)[0]) == _stopped_after(proc.stderr) >= 1
        assert sorted(p.name for p in work.iterdir()) == ["call.toml"]  # no "~" folder made here


def test_a_file_source_whose_frame_size_changes_keeps_its_first_size(tmp_path):
    """A recording played as the camera, 640x360 then 426x240: the live filter goes on at
    640x360, the later frames scaled (by the capture before; by the file reader now, as for vbg
    process), and says so once. Whatever frames a busy machine drops, the last one, from the
    smaller part, is always shown."""
    first, _ = zip(*person_clip_frames(10, (360, 640)))
    then, _ = zip(*person_clip_frames(10, (240, 426)))
    src = write_size_switch_clip(tmp_path / "switch.ts", first, then)
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", str(src), "--color", "blue", "--model", "selfie", "--no-vcam", "--record", str(out),
                   timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"vbg: {src}: its frames change size at frame 11 (426x240, the first ones 640x360)" in proc.stderr
    recorded, _ = _recorded(out)
    assert len(recorded) == _stopped_after(proc.stderr) >= 1
    assert {f.shape for _, f in recorded} == {(360, 640, 3)}


@pytest.mark.parametrize("damage", ["damaged", "cut short"])
def test_a_damaged_file_source_ends_the_run_with_one_line_and_a_playable_recording(tmp_path, damage):
    """A recording played as the camera, 20 KB zeroed part-way (or a Matroska download cut
    short): the run ends there with one line naming the file and the damage, exit 11, and the
    --record file holds the frames before it, playable. The damaged file was taken for a camera
    that was lost: opened again from its start, for ever ("source lost ...; retrying"); the cut
    one ended as if whole, exit 0."""
    frames = [f for f, _ in person_clip_frames(90, (360, 640))]
    if damage == "damaged":
        whole = write_clip(tmp_path / "whole.mp4", frames, fps=30)
        data = bytearray(whole.read_bytes())
        data[len(data) // 2:len(data) // 2 + 20000] = bytes(20000)
        src = tmp_path / "damaged.mp4"
    else:
        whole = write_clip(tmp_path / "whole.mkv", frames, fps=30, fmt="matroska")
        data = bytearray(whole.read_bytes()[:whole.stat().st_size // 2])
        src = tmp_path / "cut.mkv"
    src.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", str(src), "--color", "blue", "--model", "selfie", "--no-vcam", "--record", str(out),
                   timeout=120)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 11 and "Traceback" not in proc.stderr and "retrying" not in proc.stderr, proc.stderr
    said = r"decoding failed after (\d+) frames \(.*\): the file is damaged: pass an intact copy" \
        if damage == "damaged" else r"the file is cut short after (\d+) frames \(it holds \d+ of its \d+ bytes\)"
    assert len(errors) == 1 and re.fullmatch(rf"vbg: error: --source {re.escape(str(src))}: {said}.*", errors[0]), \
        proc.stderr
    before = int(re.search(r"after (\d+) frames", errors[0])[1])
    assert 10 < before < 90
    recorded, _ = _recorded(out)
    assert 1 <= len(recorded) <= before  # the frames before the damage, as many as a busy machine showed


def test_a_camcorder_file_source_is_shown_whole_and_in_shape(tmp_path):
    """A DV-style recording played as the camera: interlaced fields of someone moving, stored
    in wide pixels (480x360 at 4:3). The live filter shows it as a player does: 640x360 square
    pixels, no comb teeth; it showed 480x360, squeezed, with the fields' teeth on every edge."""
    import cv2

    from test_process import comb_teeth

    pictures = [p for p, _ in person_clip_frames(40, (360, 640))]
    stored = [cv2.resize(f, (480, 360), interpolation=cv2.INTER_AREA) for f in interlace(pictures)]  # rows kept
    src = write_clip(tmp_path / "dv.mp4", stored, fps=25, sar=Fraction(4, 3), interlaced=True)
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", str(src), "--color", "blue", "--model", "selfie", "--no-vcam", "--record", str(out),
                   timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    recorded, _ = _recorded(out)
    assert len(recorded) == _stopped_after(proc.stderr) >= 1
    assert {f.shape for _, f in recorded} == {(360, 640, 3)}
    assert np.mean([comb_teeth(f) for _, f in recorded]) * 5 < np.mean([comb_teeth(f) for f in stored])
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"vbg: {src}: ")]  # as vbg process says them
    assert said == [f"vbg: {src}: interlaced video: deinterlaced (bwdif), one frame out per frame in",
                    f"vbg: {src}: its pixels are not square (4:3): its 480x360 frames come out as 640x360 square "
                    "pixels, the shape a player shows"], proc.stderr


def test_a_two_camera_file_source_plays_its_first_track_and_says_so_once(tmp_path, vbg_records):
    """A file with two video tracks played as the camera: the first is played, one line names
    the other and how to play it; the camera opened again (after a lost read, or idling) says
    nothing more. The live filter said nothing of the other track."""
    first = write_clip(tmp_path / "a.mp4", [f for f, _ in person_clip_frames(4, (180, 320))])
    other = write_clip(tmp_path / "b.mp4", [f for f, _ in person_clip_frames(4, (360, 640), seed=3)], codec="mpeg4")
    src = join_video_tracks([first, other], tmp_path / "two-cameras.mkv")
    pipeline = LivePipeline(_config(src))
    with vbg_records.at_level("INFO", logger="vbg"):
        for _ in range(2):
            source = pipeline._open_source()
            try:
                assert (source.width, source.height) == (320, 180) and source.read().shape == (180, 320, 3)
            finally:
                source.close()
    assert [r.getMessage() for r in vbg_records.records] == [
        f"{src}: its other video track (640x360 mpeg4) is not used: vbg plays the first one (320x180 h264); "
        "to play another, put it first: ffmpeg -i IN -map 0:V:1 -map 0:a? -c copy OUT"]


def _config(clip, model_name="selfie", **sections) -> LiveConfig:
    base = {"source": {"source": str(clip)}, "model": {"model": model_name}, "background": {"color": "blue"},
            "output": {"vcam_backend": "vbg-test-keep", "frames": 90}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return apply(LiveConfig(), base)


def test_record_90_frames_at_source_size_and_rate(tmp_path, person_clip):
    """Camera time driven by the test: all 90 frames are recorded at the source's size, rate and times."""
    clip, _ = person_clip
    out = tmp_path / "out.mp4"
    cfg = _config(clip, output={"vcam": False, "record": str(out)})
    run = Lockstep(cfg, clip, 0.02, frames=90)
    run.run()
    assert run.sink.seqs == list(range(90))
    recorded, rate = _recorded(out)
    assert len(recorded) == 90
    assert recorded[0][1].shape == (360, 640, 3)
    assert rate == pytest.approx(FPS, rel=0.02)
    assert [i for i, _ in recorded] == list(range(90))  # timestamps follow the capture times
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize("skip", ["1", "3", "auto"])
def test_green_screen_follows_the_person(person_clip, skip):
    """A 50 ms model (one and a half frame intervals): with every --skip the masks, carried along
    by optical flow between model answers, keep the person in and the backdrop out."""
    clip, alphas = person_clip
    cfg = _config(clip, background={"color": "#00ff00"}, temporal={"skip": skip})
    run = Lockstep(cfg, clip, 0.05, frames=90, keep=_person)
    run.run()
    assert run.sink.seqs == list(range(90))
    if skip == "3":
        assert run.model.frames == list(range(0, 90, 3))
    elif skip == "auto":  # answers seen 62 ms after the call (5 ms before the 2nd frame), 25 % headroom: N = 3
        assert run.model.frames[2:] == list(range(run.model.frames[2], 90, 3))
    scores = [iou(p.astype(np.float32), alphas[i]) for i, p in zip(run.sink.seqs, run.sink.kept)][5:]
    assert np.mean(scores) >= 0.88, (skip, np.mean(scores), min(scores))


def test_only_the_render_thread_drives_the_skip_governor(person_clip, monkeypatch):
    """The skip governor is not thread-safe: the render thread asks it which frames the model
    runs on and feeds it each mask's inference time, once, in order; the inference thread never
    touches it."""
    from vbg.inference import scheduler

    callers, observed = set(), []

    class Recording(scheduler.SkipGovernor):
        def should_run(self, seq):
            callers.add(threading.current_thread().name)
            return super().should_run(seq)

        def observe(self, infer_ms):
            callers.add(threading.current_thread().name)
            observed.append(infer_ms)
            super().observe(infer_ms)

    monkeypatch.setattr(scheduler, "SkipGovernor", Recording)
    clip, _ = person_clip
    cfg = _config(clip, temporal={"skip": "auto"}, output={"frames": 30})
    run = Lockstep(cfg, clip, 0.05, frames=30)
    run.run()
    assert callers == {"vbg-render"}
    times = run.pipe.stats.infer_ms.values()
    # the last answer may come after the last frame: no frame left to take it
    assert len(times) - 1 <= len(observed) <= len(times) and observed == times[:len(observed)]
    assert run.model.frames[2:] == list(range(run.model.frames[2], 30, 3))  # N = 3, as when it was fed at once


def _blue(image: np.ndarray) -> bool:
    corner = image[:20, :20].reshape(-1, 3).mean(axis=0)
    return corner[2] > 200 and corner[0] < 40 and corner[1] < 40


def test_virtual_camera_gets_frames_at_camera_rate(person_clip, camera):
    """The virtual camera is opened at the camera's rate and sent exactly one frame per frame
    interval of camera time: black until the first composite, composites after. A 20 ms model
    keeps up: it runs on every frame, and each frame shows the mask of the one before."""
    clip, _ = person_clip
    cfg = _config(clip, output={"frames": 60})
    before = set(threading.enumerate())
    run = Lockstep(cfg, clip, 0.02, frames=60, vcam=True)
    stats = run.run()
    cam = camera.instances[-1]
    assert cam.fps == FPS
    frames = cam.frames
    assert len(frames) == 60  # camera time 0 .. 59/30 s: ticks 0..59
    assert all(f.shape == (360, 640, 3) and f.dtype == np.uint8 for f in frames)
    assert not frames[0].any() and all(_blue(f) for f in frames[1:])
    assert run.sink.seqs == list(range(60)) and stats.out_frames == 60
    assert run.model.frames == list(range(60)), (run.model.calls, run.sink.sent)
    assert run.sink.mask_seqs == [-1] + list(range(59))
    assert set(threading.enumerate()) <= before  # every thread joined


def test_rmbg_random_init_with_auto_skip_keeps_the_output_rate(person_clip, rmbg_onnx_dynamic):
    """RMBG-1.4 (random init: exact compute) at --size 256 made to answer in 90 ms of camera time,
    more than two frame intervals: auto skipping runs it on one frame in four, and every camera
    frame still comes out at once, with the newest mask carried along."""
    clip, _ = person_clip
    cfg = _config(clip, str(rmbg_onnx_dynamic), model={"size": 256}, output={"frames": 24})
    run = Lockstep(cfg, clip, 0.09, frames=24)
    stats = run.run()
    assert run.sink.seqs == list(range(24))  # none waited for the model (the driver would time out)
    # frame 0; then frame 2, the newest one waiting when the first answer came (95 ms in); then
    # ~97 ms of model per 33 ms frame with 25 % headroom: N = 4
    assert run.model.frames == [0, 2] + list(range(6, 24, 4))
    assert stats.fresh_frames == 0
    assert run.sink.mask_seqs[:3] == [-1, -1, -1] and min(run.sink.mask_seqs[3:]) >= 0


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
        time.sleep(1 / 30)  # a camera's pace; nothing the test checks depends on it
        img = self.frames[self.n % len(self.frames)]
        self.n += 1
        return img

    def close(self):
        pass


def _lost_card(mean: float) -> bool:
    """The "camera lost" card: the last picture at 40 % (mean ~46 here, the pictures ~94), with
    white text; not the black frames a virtual camera shows before the first picture."""
    return 0 < mean < 65


def test_camera_lost_mid_run_keeps_the_vcam_fed_and_resumes(person_clip, camera):
    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    attempts = []

    def reopen():
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise SourceError("still unplugged")
        # The camera comes back only once the virtual camera has shown the "camera lost" card.
        wait_until(lambda: any(_lost_card(m) for cam in camera.instances for m in cam.means),
                   "the camera-lost card on the virtual camera")
        return Flaky(frames)

    cfg = apply(LiveConfig(), {"model": {"model": "selfie"}, "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-keep", "frames": 60}})
    sink = KeepSink(MonotonicClock(), keep=lambda im: float(im.mean()))
    pipe = LivePipeline(cfg, source=Flaky(frames, fail_after=20), reopen=reopen, sinks=[sink])
    pipe.run()
    assert pipe.capture.reconnects == 1 and len(attempts) == 3
    dim = [i for i, m in enumerate(sink.kept) if _lost_card(m)]
    assert dim and max(sink.seqs[:dim[0]]) < 20
    after = sink.seqs[dim[-1] + 1:]
    assert after and min(after) >= 20 and after[-1] == 59  # frames resumed, to the last one


class _Live:
    """``vbg`` as a user starts it, its stderr read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "vbg", *args], stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_frames(self) -> None:
        """Until a status line shows frames going out (or the process ends)."""
        def showing():
            return self.proc.poll() is not None or any(
                float(m) > 0 for ln in self.lines for m in re.findall(r"out\s+([\d.]+) fps", ln))
        wait_until(showing, "a status line with frames going out")
        assert self.proc.poll() is None, "".join(self.lines)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc, "".join(self.lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_stops_cleanly_with_a_playable_recording(tmp_path, person_clip, sig):
    clip, _ = person_clip
    out = tmp_path / "sig.mp4"
    run = _Live("--source", str(clip), "--loop", "--color", "green", "--model", "selfie", "--no-vcam",
                "--record", str(out))
    run.wait_for_frames()
    run.proc.send_signal(sig)
    rc, err = run.finish()
    assert rc == 0, err
    assert "Traceback" not in err
    recorded, _ = _recorded(out)
    assert len(recorded) == _stopped_after(err) >= 2  # every frame shown is in the file


def test_no_virtual_camera_device_prints_the_fix(tmp_path, person_clip):
    import glob

    if glob.glob("/sys/devices/virtual/video4linux/video*"):
        pytest.skip("this machine has a v4l2loopback device")
    clip, _ = person_clip  # a source that exists: the virtual camera is the only problem
    proc = run_vbg("--source", str(clip), "--background", str(PEOPLE / "background01.jpg"), "--model", "selfie",
                   timeout=120)
    assert proc.returncode == 12
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "modprobe v4l2loopback" in errors[0] and "exclusive_caps=1" in errors[0]


def test_align_delays_video_so_a_slow_models_masks_line_up(person_clip, rmbg_onnx_dynamic):
    """--align: the output waits for the model, so the mask's frame is the shown frame on every
    frame the model saw (and the newest model frame before it on the others), shown as late as
    the model took. Without it, frames go out at once with the mask of an older frame."""
    clip, _ = person_clip
    n, model_s = 24, 0.09

    def run(align: bool):
        cfg = _config(clip, str(rmbg_onnx_dynamic), model={"size": 256}, output={"frames": n},
                      temporal={"skip": 4, "align": align})

        def outputs(now):  # aligned: the frames whose model frame has answered by now
            done = {seq for seq, start in r.model.calls if start + model_s <= now}
            return sum(1 for k in range(r.captured()) if k - k % 4 in done) if align else r.captured()

        r = Lockstep(cfg, clip, model_s, frames=n, outputs=outputs, to_model=lambda k: k % 4 == 0)
        r.run()
        assert r.sink.seqs == list(range(n)) and r.model.frames == list(range(0, n, 4))
        return r

    plain, aligned = run(False), run(True)
    for s, m, t in plain.sink.sent:
        assert t == plain.frame_time(s)  # shown at capture time
        # each answer lands 5 ms before the 3rd frame after its own: until then, the older mask
        assert m == ((s - 3) - (s - 3) % 4 if s >= 3 else -1), (s, m)
    last_model = n - 1 - (n - 1) % 4  # the source ends before this answer: those frames go out as they are
    for s, m, t in aligned.sink.sent:
        if s < last_model:
            assert m == s - s % 4, (s, m)  # exact on the model's frames, the newest before on the others
            assert t >= aligned.frame_time(s - s % 4) + model_s  # shown once the model has answered


def test_align_with_skip_keeps_quality(person_clip):
    clip, alphas = person_clip
    model_s = 0.09
    cfg = _config(clip, background={"color": "#00ff00"}, temporal={"skip": 4, "align": True})

    def outputs(now):
        done = {seq for seq, start in r.model.calls if start + model_s <= now}
        return sum(1 for k in range(r.captured()) if k - k % 4 in done)

    r = Lockstep(cfg, clip, model_s, frames=90, outputs=outputs, to_model=lambda k: k % 4 == 0, keep=_person)
    r.run()
    assert r.sink.seqs == list(range(90))
    scores = [iou(p.astype(np.float32), alphas[i]) for i, p in zip(r.sink.seqs, r.sink.kept)][5:]
    assert np.mean(scores) >= 0.88, (np.mean(scores), min(scores))


def test_preview_window_on_a_virtual_display(person_clip, x_display):
    clip, _ = person_clip
    proc = subprocess.run([sys.executable, "-m", "vbg", "--source", str(clip), "--loop",
                           "--model", "selfie", "--color", "blue", "--no-vcam", "--preview", "--duration", "2"],
                          capture_output=True, text=True, timeout=300, env=x_display)
    assert proc.returncode == 0, x_failure(proc, x_display)
    assert "stopped after" in proc.stderr and "Traceback" not in proc.stderr


def test_preview_without_a_display_is_one_line(person_clip):
    clip, _ = person_clip
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    proc = run_vbg("--source", str(clip), "--model", "selfie", "--no-vcam", "--preview", "--frames", "5", env=env)
    assert proc.returncode == 12
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert errors == ["vbg: error: no display: drop --preview or run under a desktop session / xvfb-run"]


def test_no_vcam_and_nothing_else_is_refused_before_any_work(person_clip, offline_env, tmp_path):
    clip, _ = person_clip
    # The default model is not cached and its hub cannot be reached: refused before any
    # download is even tried, and nothing is written.
    proc = run_vbg("--source", str(clip), "--no-vcam", env=offline_env)
    assert proc.returncode == 2
    assert "--record or --preview" in proc.stderr and "Traceback" not in proc.stderr
    assert "download" not in proc.stderr.lower()
    assert not (tmp_path / "hf").exists() and not (tmp_path / "vbg-cache").exists()


@pytest.mark.skipif(not priority.supported(), reason="per-thread nice values exist on Linux only")
def test_model_threads_yield_to_the_render_thread(person_clip):
    """On a CPU the model runs at a lower priority than the frame path: the render thread keeps
    the process's priority, the inference thread and ONNX Runtime's pool threads are niced."""
    clip, _ = person_clip
    cfg = apply(LiveConfig(), {"source": {"source": str(clip), "loop": True},
                               "model": {"model": "selfie", "device": "cpu"},
                               "background": {"color": "blue"}, "output": {"vcam_backend": "vbg-test-keep"}})
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen: dict[str, int | None] = {}

    def tick(pipe):
        if pipe.stats.infer_runs < 1:  # the inference thread lowers its own priority first thing
            return
        for t in threading.enumerate():
            if t.name in ("vbg-infer", "vbg-render") and t.native_id is not None:
                seen[t.name] = priority.nice_of(t.native_id)
        seen["pool"] = min((priority.nice_of(tid) for tid in pipe._model_threads), default=None)
        pipe.stop()

    LivePipeline(cfg).run(on_tick=tick)
    assert seen.get("vbg-render") == base
    assert seen.get("vbg-infer") == min(19, base + priority.BACKGROUND_NICE)
    if (os.cpu_count() or 1) > 1:  # one core: ONNX Runtime makes no pool threads
        assert seen.get("pool") == min(19, base + priority.BACKGROUND_NICE)
