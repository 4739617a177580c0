"""``--source demo``: the bundled clip plays as a camera (looping, paced, dropping late frames)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from conftest import run_vbg
from vbg.buffers import LatestSlot
from vbg.capture import DEMO_CLIP, CaptureWorker, open_source
from vbg.clock import FakeClock


def _clip_frames() -> list[np.ndarray]:
    with av.open(str(DEMO_CLIP)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    return _clip_frames()


def _probe() -> tuple[int, int, float]:
    with av.open(str(DEMO_CLIP)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height, float(s.average_rate)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def test_the_demo_clip_is_a_camera_sized_loop(clip_frames):
    w, h, fps = _probe()
    assert (w, h) >= (640, 360) and fps == pytest.approx(30)
    assert 6 * fps <= len(clip_frames) <= 10 * fps  # a loop of 6-10 s
    assert DEMO_CLIP.with_name("ATTRIBUTION.md").is_file()


def test_demo_source_loops_forever_paced_at_the_clips_rate(clip_frames):
    w, h, fps = _probe()
    n = len(clip_frames)
    clock = FakeClock(50.0)
    with open_source("demo", clock=clock) as src:  # no loop=True: the demo loops by itself
        assert src.live and (src.width, src.height) == (w, h) and src.fps == pytest.approx(fps)
        got, times = [], []
        for _ in range(n + 10):
            img = src.read()
            assert img is not None and img.shape == (h, w, 3) and img.dtype == np.uint8
            got.append(img)
            times.append(clock.now())
    np.testing.assert_allclose(np.diff(times), 1 / fps, atol=1e-6)  # one frame per frame interval, also at the wrap
    assert np.array_equal(got[n], clip_frames[0]) and np.array_equal(got[n + 9], clip_frames[9])
    assert np.array_equal(got[n - 1], clip_frames[-1])


def test_a_late_reader_gets_the_frame_due_now_not_a_backlog(clip_frames):
    """As with a camera: frames that passed while nobody read are gone."""
    clock = FakeClock()
    with open_source("demo", clock=clock) as src:
        fps = src.fps
        for _ in range(3):
            src.read()  # frames 0, 1, 2 at 0, 1/fps, 2/fps
        clock.advance(3.2 / fps)  # stalled: frames 3, 4 and 5 fell due meanwhile
        t = clock.now()
        img = src.read()
        assert clock.now() == t  # handed out at once, no waiting
        assert np.array_equal(img, clip_frames[5]) and src.frames_dropped == 2
        src.read()
        assert clock.now() == pytest.approx(6 / fps)  # and back on the clip's rate
    assert src.frames_read == 5


def test_capture_worker_runs_the_demo_past_its_end(clip_frames):
    n = len(clip_frames)
    clock = FakeClock()
    slot = LatestSlot()
    worker = CaptureWorker(open_source("demo", clock=clock), slot, clock=clock, max_frames=n + 5).start()
    worker.join(60)
    assert not worker.alive and worker.error is None
    assert worker.frames == n + 5  # it did not end with the clip
    assert clock.now() == pytest.approx((n + 4) / worker.fps)


def test_a_file_named_demo_wins_over_the_keyword(tmp_path, monkeypatch, clip_frames):
    own = tmp_path / "demo"
    with av.open(str(own), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    monkeypatch.chdir(tmp_path)
    with open_source("demo", paced=False) as src:
        assert (src.width, src.height) == (64, 48)
    own.unlink()
    own.mkdir()  # a folder named demo is no video: the keyword still means the bundled clip
    with open_source("demo", paced=False) as src:
        assert (src.width, src.height) == clip_frames[0].shape[1::-1]


def test_cli_demo_source_records_a_segmented_person(tmp_path):
    """``vbg --source demo --no-vcam --record out.mp4`` as a user runs it, on a green screen."""
    w, h, _ = _probe()
    out = tmp_path / "out.mp4"
    proc = run_vbg("--source", "demo", "--model", "selfie", "--color", "#00ff00", "--no-vcam",
                   "--record", str(out), "--frames", "40", timeout=180)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        recorded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    # --frames counts captured frames; like a camera's, a frame the renderer was too busy for
    # is dropped, so how many of the 40 reach the file depends on the machine's load.
    assert 0 < len(recorded) <= 40 and all(f.shape == (h, w, 3) for f in recorded)

    def green(region: np.ndarray) -> float:
        r, g, b = (region[..., i].astype(np.int16) for i in range(3))
        return float(((g > 200) & (r < 60) & (b < 60)).mean())

    ch, cw = int(0.15 * h), int(0.15 * w)
    for f in recorded:  # the room never shows: only green, or the person once a mask is there
        assert green(f[:ch, :cw]) > 0.95 and green(f[:ch, -cw:]) > 0.95
    # Bottom centre: inside the person in every pose of the loop.
    body = recorded[-1][int(0.75 * h):int(0.95 * h), int(0.49 * w):int(0.57 * w)]
    assert green(body) < 0.05
    assert not list(tmp_path.glob("*.partial"))


def test_the_clip_loops_without_a_seam(clip_frames):
    steps = [_mad(a, b) for a, b in zip(clip_frames, clip_frames[1:])]
    seam = _mad(clip_frames[-1], clip_frames[0])
    assert seam < 1.5 * float(np.median(steps))  # the wrap is an ordinary step, not a jump
    assert _mad(clip_frames[0], clip_frames[len(clip_frames) // 2]) > 3 * seam  # and the person does move
