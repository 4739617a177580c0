"""A new user's first runs: every cheap problem reported in one go before anything heavy
starts, the bundled backgrounds found by name, the preview window as a sink of its own."""

from __future__ import annotations

import glob
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest

from conftest import run_vbg, x_failure
from media import person_clip_frames, write_clip

TESTS = Path(__file__).resolve().parents[1]
NO_LOOPBACK = not glob.glob("/sys/devices/virtual/video4linux/video*")


def _errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("fc") / "person.mp4",
                      [f for f, _ in person_clip_frames(12, (180, 320))], fps=30)


def test_every_cheap_problem_in_one_run_before_any_model(tmp_path, offline_env):
    """Four mistakes at once: all four named, one line each, then the pointer to vbg doctor;
    the exit code is the first problem's, and no model was loaded or downloaded."""
    existing = tmp_path / "taken.mp4"
    existing.write_bytes(b"keep me")
    proc = run_vbg("--source", str(tmp_path / "nope.mp4"), "--background", str(tmp_path / "nothere.jpg"),
                   "--record", str(existing), "--skip", "zero", "--no-vcam", "--model", "rmbg-1.4",
                   env=offline_env, timeout=300)
    errors = _errors(proc)
    assert proc.returncode == 2  # the first problem: a bad option value (ConfigError)
    joined = "\n".join(errors)
    for needle in ("--skip", "nothere.jpg", "taken.mp4 already exists", "nope.mp4", "RMBG-1.4"):
        assert needle in joined, (needle, proc.stderr)
    assert len(errors) == 5, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("vbg: `vbg doctor`")
    assert existing.read_bytes() == b"keep me"
    assert "model " not in proc.stderr.replace("--model", "")  # no "model X on CPU..." line: nothing loaded


@pytest.mark.skipif(not NO_LOOPBACK, reason="this machine has a v4l2loopback device")
def test_the_launch_line_names_the_virtual_camera_and_the_camera_at_once(offline_env):
    """`vbg --background beach.jpg` on a machine with neither: both named in one run, the
    bundled beach.jpg found, and the unavailable default model is not an error."""
    proc = run_vbg("--background", "beach.jpg", env={**offline_env, "DISPLAY": "", "WAYLAND_DISPLAY": ""},
                   timeout=300)
    errors = _errors(proc)
    assert proc.returncode == 12, proc.stderr  # the virtual camera first: the commonest set-up problem
    assert "modprobe v4l2loopback" in errors[0]
    if not glob.glob("/dev/video0"):
        assert len(errors) == 2 and "camera 0" in errors[1] and "--source demo" in errors[1]
    assert "beach.jpg" not in "\n".join(errors)
    # no display: --preview would only fail next
    assert errors[0].endswith("or try it first with --no-vcam --record FILE"), errors[0]
    # with --record given, the way to try it is --no-vcam alone (it said "--no-vcam --record FILE")
    proc = run_vbg("--source", "demo", "--record", offline_env["VBG_CACHE_DIR"] + ".mp4", "--duration", "1",
                   env={**offline_env, "DISPLAY": "", "WAYLAND_DISPLAY": ""}, timeout=300)
    errors = _errors(proc)
    assert proc.returncode == 12 and errors[0].endswith("or try it first with --no-vcam (the recording alone)"), errors


@pytest.mark.skipif(not NO_LOOPBACK, reason="this machine has a v4l2loopback device")
def test_with_a_display_the_launch_line_offers_the_preview_window(offline_env, x_display):
    proc = run_vbg("--background", "beach.jpg", env={**offline_env, **x_display}, timeout=300)
    errors = _errors(proc)
    assert proc.returncode == 12 and errors[0].endswith("or try it first with --preview, or --no-vcam --record FILE")


def test_an_existing_process_output_is_reported_before_the_model_loads(clip, tmp_path, offline_env):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    proc = run_vbg("process", str(clip), str(tmp_path / "missing.mp4"), "-o", str(tmp_path),
                   "--model", "rmbg-1.4", env=offline_env, timeout=300)
    errors = _errors(proc)
    assert proc.returncode == 9, proc.stderr  # the first problem: the missing input
    assert any("missing.mp4" in e for e in errors) and any("RMBG-1.4" in e for e in errors)
    single = run_vbg("process", str(clip), "-o", str(out), "--alpha", env=offline_env, timeout=300)
    errs = _errors(single)
    assert single.returncode == 10 and len(errs) == 2, single.stderr
    assert "already exists" in errs[0] and "has no alpha" in errs[1]
    assert out.read_bytes() == b"keep me"


def test_backgrounds_lists_the_bundled_ones():
    proc = run_vbg("backgrounds")
    assert proc.returncode == 0, proc.stderr
    names = [ln.split()[0] for ln in proc.stdout.splitlines() if ln.endswith("kB")]
    assert {"beach.jpg", "office.jpg"} <= set(names) and len(names) >= 4
    assert all("1920x1080" in ln for ln in proc.stdout.splitlines() if ln.endswith("kB"))


def test_a_bundled_background_by_name_in_vbg_process(clip, tmp_path):
    """No beach.jpg where the user is: the bundled one goes behind the person."""
    out = tmp_path / "beach.mp4"
    proc = subprocess.run([sys.executable, "-m", "vbg", "process", str(clip), "-o", str(out), "--model", "selfie",
                           "--background", "beach.jpg", "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    top = first[:20].reshape(-1, 3).mean(axis=0)
    assert top[2] > top[0] + 40  # the beach's blue sky where the room was


PREVIEW_WITH_VCAM = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])  # tests/, for the fake virtual camera
    from fakecam import fake_camera
    from vbg.config import LiveConfig, apply
    from vbg.pipeline import LivePipeline

    from vbg.sinks import preview
    shown = []
    real_send = preview.PreviewWindow.send
    def counting_send(self, comp):  # the real window shows it; we only count
        shown.append(comp.seq)
        return real_send(self, comp)
    preview.PreviewWindow.send = counting_send

    with fake_camera("vbg-test-count", keep=False) as cam:
        cfg = apply(LiveConfig(), {"source": {"source": sys.argv[1]}, "model": {"model": "selfie"},
                                   "background": {"color": "blue"},
                                   "output": {"vcam_backend": cam.name, "preview": True, "frames": 12}})
        pipe = LivePipeline(cfg)
        pipe.run()
    print("vcam frames", sum(c.sent for c in cam.instances), "window frames", len(shown))
""")


def test_preview_without_a_virtual_camera_shows_the_window_alone(clip, x_display):
    if not NO_LOOPBACK:
        pytest.skip("this machine has a v4l2loopback device")
    proc = subprocess.run([sys.executable, "-m", "vbg", "--source", str(clip), "--model", "selfie",
                           "--color", "blue", "--preview", "--frames", "12"],
                          capture_output=True, text=True, timeout=120, env=x_display)
    assert proc.returncode == 0, x_failure(proc, x_display)
    assert "Traceback" not in proc.stderr and "vbg: error" not in proc.stderr
    assert "no virtual camera: showing the preview window only" in proc.stderr
    assert "stopped after" in proc.stderr


def test_preview_with_a_virtual_camera_feeds_both(clip, x_display):
    proc = subprocess.run([sys.executable, "-c", PREVIEW_WITH_VCAM, str(clip), str(TESTS)],
                          capture_output=True, text=True, timeout=120, env=x_display)
    assert proc.returncode == 0, x_failure(proc, x_display)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("vcam frames")][0]
    assert int(line.split()[2]) > 0 and int(line.split()[5]) > 0, proc.stdout  # both sinks got pictures
