"""The PipeWire camera for real: a PipeWire daemon and its session manager (WirePlumber) started
by the test on a bus of their own, frames sent through the virtual camera sink with
``--vcam-backend pipewire``, the node looked up as apps see it (``pw-dump``) and the frames
read back from it (``pipewiresrc``) and compared by colour.

Needs the Debian packages pipewire, wireplumber, gstreamer1.0-pipewire, gstreamer1.0-tools,
gstreamer1.0-plugins-base and dbus (``.ci/run`` installs them where it can); skips without them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import StderrLines
from media import person_clip_frames, write_clip
from procstatus import comm_and_parent
from vbg import doctor
from vbg.errors import SinkError
from vbg.sinks import pipewire as pw
from vbg.sinks.virtual_camera import VirtualCameraSink, choose_backend, virtual_camera_problem
from vbg.types import Composite

PACKAGES = "pipewire wireplumber gstreamer1.0-pipewire gstreamer1.0-tools gstreamer1.0-plugins-base dbus"
TOOLS = ("pipewire", "wireplumber", "pw-dump", "dbus-daemon", "gst-launch-1.0", "gst-inspect-1.0")
W, H, FPS = 160, 120, 30.0  # a frame (57 600 bytes) close to a pipe's 64 KiB: little is ever queued
HANG_S = 60.0  # bounds a hang only


def _missing() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        for element in ("pipewiresink", "pipewiresrc", "rawvideoparse", "videoconvert"):
            if subprocess.run(["gst-inspect-1.0", element], capture_output=True).returncode != 0:
                missing.append(element)
    return missing


def wait_for(condition, what: str, timeout: float = HANG_S):
    end = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


def dump(env: dict) -> list[dict]:
    out = subprocess.run(["pw-dump"], env=env, capture_output=True, text=True, timeout=HANG_S)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def node(env: dict, name: str) -> dict | None:
    for obj in dump(env):
        info = obj.get("info") or {}
        if obj.get("type", "").endswith(":Node") and (info.get("props") or {}).get("node.name") == name:
            return info
    return None


def session_manager_up(env: dict) -> bool:
    return any(((o.get("info") or {}).get("props") or {}).get("application.name") == "WirePlumber"
               for o in dump(env) if o.get("type", "").endswith(":Client"))


@pytest.fixture(scope="module")
def pipewire_env(tmp_path_factory):
    """A D-Bus session bus, a PipeWire daemon and WirePlumber (which needs the bus), each a child of
    this process in a runtime folder of their own; yields the environment that reaches them. Each is
    ended and reaped after, the last started first."""
    missing = _missing()
    if missing:
        pytest.skip(f"the PipeWire camera test needs {', '.join(missing)}: sudo apt install {PACKAGES}")
    root = tmp_path_factory.mktemp("pw")
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PIPEWIRE_REMOTE")}
    env.update(PIPEWIRE_RUNTIME_DIR=str(runtime), XDG_RUNTIME_DIR=str(runtime), XDG_STATE_HOME=str(root / "state"),
               XDG_CONFIG_HOME=str(root / "config"), DBUS_SESSION_BUS_ADDRESS=f"unix:path={runtime}/bus",
               LC_ALL="C")
    log = open(root / "daemons.log", "wb")
    started: list[subprocess.Popen] = []

    def start(cmd: list[str], ready, what: str) -> None:
        started.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))
        wait_for(lambda: any(p.poll() is not None for p in started) or ready(), what)
        assert all(p.poll() is None for p in started), (root / "daemons.log").read_text(errors="replace")

    try:
        start(["dbus-daemon", "--session", "--nofork", f"--address={env['DBUS_SESSION_BUS_ADDRESS']}"],
              (runtime / "bus").exists, "the session bus")
        start(["pipewire"], (runtime / "pipewire-0").exists, "PipeWire")
        start(["wireplumber"], lambda: session_manager_up(env), "WirePlumber")
        yield env
    finally:
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(HANG_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture
def reach(pipewire_env, monkeypatch):
    """This process (and the gst-launch children it starts) reaches the test's PipeWire."""
    monkeypatch.setenv("PIPEWIRE_RUNTIME_DIR", pipewire_env["PIPEWIRE_RUNTIME_DIR"])
    return pipewire_env


def read_frames(env: dict, name: str, n: int, out: Path) -> np.ndarray:
    """``n`` frames of node ``name`` as a PipeWire client takes them, converted to RGB."""
    subprocess.run(["gst-launch-1.0", "-q", "pipewiresrc", f"target-object={name}", f"num-buffers={n}", "!",
                    "videoconvert", "!", f"video/x-raw,format=RGB,width={W},height={H}", "!",
                    "filesink", f"location={out}"], env=env, check=True, timeout=HANG_S,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return np.fromfile(out, np.uint8).reshape(-1, H, W, 3)


def gst_processes(parent: int | None = None, runtime: str | None = None) -> list[int]:
    """gst-launch processes, zombies included (a reaped child is gone from /proc): the children of
    ``parent``, or those that reach the PipeWire in folder ``runtime``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        got = comm_and_parent(stat.parent.name)
        if got is None or not got[0].startswith("gst-launch"):
            continue
        if runtime is not None:
            try:
                environ = (stat.parent / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PIPEWIRE_RUNTIME_DIR={runtime}".encode() not in environ:
                continue
        if parent is None or got[1] == parent:
            found.append(int(stat.parent.name))
    return found


def gst_children() -> list[int]:
    return gst_processes(parent=os.getpid())


def send_until_delivered(sink: VirtualCameraSink, seq: int, rgb: tuple[int, int, int]) -> None:
    """Hand the sink a solid colour and wait until its pacing thread has written it to the child."""
    sink.send(Composite(seq, seq / FPS, np.full((H, W, 3), rgb, np.uint8), seq, True))
    written = sink.stats().written
    wait_for(lambda: sink.stats().written >= written + 2, "the pacing thread to write the frame")


def test_frames_sent_arrive_at_the_camera_node_in_their_colours(reach, tmp_path):
    assert choose_backend(None, None) == "pipewire"  # no v4l2loopback here: auto picks PipeWire
    before = gst_children()
    with VirtualCameraSink(W, H, FPS, backend="pipewire", device="vbg-test") as sink:
        assert sink.backend == "pipewire" and sink.device == "vbg-test"
        info = wait_for(lambda: node(reach, "vbg-test"), "the node")
        props = info["props"]
        # what the camera portal and browsers (WebRTC's PipeWire capture) look for
        assert props["media.class"] == "Video/Source" and props["media.role"] == "Camera"
        assert props["node.description"] == "vbg virtual camera (vbg-test)"
        (fmt,) = info["params"]["EnumFormat"]
        assert fmt["format"] == "I420" and fmt["size"] == {"width": W, "height": H}

        for seq, colour in enumerate([(200, 40, 90), (30, 180, 220)]):
            send_until_delivered(sink, seq, colour)
            frames = read_frames(reach, "vbg-test", 4, tmp_path / f"{seq}.rgb")
            assert len(frames) == 4
            got = frames[-1].reshape(-1, 3).mean(axis=0)
            assert np.abs(got - colour).max() < 8, (colour, got)  # I420's rounding only: no channel swap
        sink.check()
        assert sink.stats().errors == 0
    assert gst_children() == before  # the child was ended and reaped: no zombie left
    assert wait_for(lambda: node(reach, "vbg-test") is None, "the node to go") is True


def test_a_child_that_dies_is_reported_once_with_the_reason(reach):
    before = set(gst_children())
    sink = VirtualCameraSink(W, H, FPS, backend="pipewire", device="t")  # a name GstStructure would read as TRUE
    try:
        assert wait_for(lambda: node(reach, "t"), "the node")["props"]["node.description"] == "vbg virtual camera (t)"
        (child,) = set(gst_children()) - before
        os.kill(child, signal.SIGKILL)  # the child this sink started
        wait_for(lambda: sink.error is not None, "the sink to notice")
        with pytest.raises(SinkError, match="PipeWire camera stopped: gst-launch-1.0 stopped "
                                            r"\(killed by signal 9\)") as e:
            sink.check()
        assert "\n" not in str(e.value)
    finally:
        sink.close()  # reported once already: close() does not raise it again
    assert set(gst_children()) == before


def test_doctor_and_the_precheck_see_the_running_pipewire(reach):
    (check,) = doctor.check_pipewire_camera("Linux")
    assert check.status == doctor.OK and "pipewiresink" in check.detail
    assert virtual_camera_problem(None, "pipewire") is None
    assert virtual_camera_problem(None, None) is None  # auto: the PipeWire camera stands in


def test_without_pipewire_running_each_says_how_to_start_it(tmp_path):
    env = {**os.environ, "PIPEWIRE_RUNTIME_DIR": str(tmp_path)}  # nothing listens there
    problem = pw.camera_problem(env)
    assert isinstance(problem, SinkError)
    if shutil.which("gst-launch-1.0") is None:  # the first thing missing is what it names
        assert "gstreamer1.0-tools" in str(problem)
        assert "gstreamer1.0-tools" in doctor.check_pipewire_camera("Linux", env)[0].fix
        return
    assert "PipeWire is not running" in str(problem) and "systemctl --user start pipewire wireplumber" in str(problem)
    checks = doctor.check_pipewire_camera("Linux", env)
    assert any(c.status == doctor.WARN and "not running" in c.detail and "wireplumber" in c.fix for c in checks)
    # the conftest points this process at an empty folder too: the sink refuses the same way
    with pytest.raises(SinkError, match="PipeWire is not running.*systemctl --user start"):
        VirtualCameraSink(W, H, FPS, backend="pipewire")
    assert choose_backend(None, None) is None  # auto does not pick a PipeWire that is not there


def test_without_the_gstreamer_plugin_the_fix_names_the_package(tmp_path, reach):
    """GStreamer with every system plugin but PipeWire's, as on a machine without gstreamer1.0-pipewire."""
    system = Path(pw_plugin_file()).parent
    some = tmp_path / "plugins"
    some.mkdir()
    for lib in system.glob("libgst*.so"):
        if lib.name != "libgstpipewire.so":
            (some / lib.name).symlink_to(lib)
    env = {**reach, "GST_PLUGIN_SYSTEM_PATH_1_0": str(some), "GST_PLUGIN_PATH_1_0": "", "GST_PLUGIN_PATH": "",
           "GST_REGISTRY_1_0": str(tmp_path / "registry.bin")}
    assert subprocess.run(["gst-inspect-1.0", "videoconvert"], env=env, capture_output=True).returncode == 0
    problem = pw.camera_problem(env)
    assert isinstance(problem, SinkError) and "gstreamer1.0-pipewire" in str(problem)
    (check,) = doctor.check_pipewire_camera("Linux", env)
    assert check.status == doctor.WARN and "pipewiresink" in check.detail and "gstreamer1.0-pipewire" in check.fix


def pw_plugin_file() -> str:
    out = subprocess.run(["gst-inspect-1.0", "pipewiresink"], capture_output=True, text=True, timeout=HANG_S)
    return next(ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip().startswith("Filename"))


def test_vbg_without_loopback_is_a_pipewire_camera_until_ctrl_c(reach, tmp_path):
    """The CLI as a user runs it (no v4l2loopback, PipeWire running): auto picks the PipeWire camera
    and says so, an app reads the composite from the node, and Ctrl-C (to the terminal's process
    group) ends vbg cleanly, the gst-launch child with it."""
    clip = write_clip(tmp_path / "person.mp4", [f for f, _ in person_clip_frames(12, (H, W))], fps=30)
    env = {**os.environ, "PIPEWIRE_RUNTIME_DIR": reach["PIPEWIRE_RUNTIME_DIR"]}
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "--source", str(clip), "--loop", "--model", "selfie",
                             "--color", "blue"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # a process group of its own, like a terminal's job
    err = StderrLines(proc)
    try:
        err.wait_for(lambda ln: "PipeWire camera" in ln, "the note that the PipeWire camera is used", HANG_S)
        wait_for(lambda: node(reach, "vbg") is not None or proc.poll() is not None, "the node")
        frames = read_frames(reach, "vbg", 4, tmp_path / "cli.rgb")
        corner = frames[-1][:12, :12].reshape(-1, 3).mean(axis=0)  # background there: the blue colour
        assert np.abs(corner - (0, 0, 255)).max() < 12, corner
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the gst-launch child is in a session of its own
        rc, text = err.finish(HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, text
    assert "Traceback" not in text and "vbg: error" not in text, text
    assert "stopped after" in text
    assert wait_for(lambda: node(reach, "vbg") is None, "the node to go") is True
    assert gst_processes(runtime=reach["PIPEWIRE_RUNTIME_DIR"]) == []
