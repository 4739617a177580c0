"""Control while live (issue 16): the control server against a running live pipeline.

One live pipeline runs through the module (a real clip in memory, the real selfie model, real
threads); the tests talk to it over real sockets on 127.0.0.1 and its real Unix socket, and
look at what its sink (where the virtual camera's frames go) receives on later frames. Times
in ``wait_until`` only bound a hang.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import small_tmpfs
from lockstep import wait_until
from media import person_clip_frames
from vbg import cli
from vbg.config import LiveConfig, apply
from vbg.pipeline import LivePipeline
from vbg.sinks import SinkBase, SinkStats

H, W = 180, 320
CORNER = (slice(0, 12), slice(0, 12))  # far from the person in every frame of the clip


class LoopSource:
    """The clip from memory, looped, at about 30 fps; frame k of the run is ``frames[k % n]``."""

    live = True

    def __init__(self, frames) -> None:
        self.frames = frames
        self.width, self.height, self.fps = W, H, 30.0
        self.n = 0

    def read(self):
        time.sleep(1 / 30)
        image = self.frames[self.n % len(self.frames)]
        self.n += 1
        return image

    def close(self) -> None:
        pass


class Recent(SinkBase):
    """Keeps the last frames sent: (index, seq, copy of the picture)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.recent: deque = deque(maxlen=32)

    def send(self, composite) -> None:
        self.recent.append((self.count, composite.seq, composite.image.copy()))
        self.count += 1

    def check(self) -> None:
        pass

    def stats(self) -> SinkStats:
        return SinkStats(received=self.count, written=self.count)

    def close(self) -> None:
        pass


def _png(path: Path, rgb) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(np.full((40, 60, 3), rgb, np.uint8), cv2.COLOR_RGB2BGR))
    return path


class Live:
    def __init__(self, pipe, sink, frames, alphas, opened, folder, outside) -> None:
        self.pipe, self.sink, self.frames, self.alphas = pipe, sink, frames, alphas
        self.opened, self.folder, self.outside = opened, folder, outside

    @property
    def server(self):
        return self.pipe.control_server

    @property
    def port(self) -> int:
        return self.server.port

    def request(self, method, path, body=None, headers=None, token=True, host=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = dict(headers or {})
        if token:
            hdrs.setdefault("X-Vbg-Token", self.server.token)
        if host is not None:
            conn.putrequest(method, path, skip_host=True)
            conn.putheader("Host", host)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data, resp

    def api(self, method, path, obj=None, **kw):
        body = None if obj is None else (obj if isinstance(obj, bytes) else json.dumps(obj).encode())
        status, data, _ = self.request(method, path, body, **kw)
        return status, json.loads(data)

    def later(self, check, what: str, frames: int = 3) -> None:
        """Every frame the render thread starts after now (from the second one sent on) passes ``check``."""
        n0 = self.sink.count
        wait_until(lambda: self.sink.count >= n0 + 1 + frames, f"{frames} more frames")
        got = [(seq, img) for i, seq, img in list(self.sink.recent) if i > n0]
        assert got, "the frames were not kept"
        for seq, img in got:
            assert check(seq, img), f"{what}: frame {seq}"

    def camera(self, seq: int) -> np.ndarray:
        return self.frames[seq % len(self.frames)]


@pytest.fixture(scope="module")
def live():
    run_dir = tempfile.mkdtemp(prefix="vbgt-", dir="/tmp")  # short: a Unix socket path has ~100 bytes
    data = Path(tempfile.mkdtemp(prefix="vbgd-"))
    folder = data / "vbg" / "backgrounds"
    folder.mkdir(parents=True)
    _png(folder / "mine.png", (10, 200, 30))
    outside = _png(data / "secret.png", (1, 2, 3))
    os.symlink(outside, folder / "link.png")
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME")}
    os.environ["XDG_RUNTIME_DIR"], os.environ["XDG_DATA_HOME"] = run_dir, str(data)
    frames, alphas = zip(*person_clip_frames(40, (H, W)))
    frames = [np.ascontiguousarray(f) for f in frames]
    cfg = apply(LiveConfig(), {"source": {"source": "memory"}, "model": {"model": "selfie"},
                               "background": {"color": "#0000ff"},
                               "output": {"vcam": False}, "control": {"ui": True}}, check=False)
    opened: list[str] = []
    sink = Recent()
    pipe = LivePipeline(cfg, source=LoopSource(frames), sinks=[sink],
                        on_control=cli._announce(cfg, opener=opened.append))
    errors: list = []
    runner = threading.Thread(target=lambda: _run(pipe, errors), daemon=True)
    runner.start()
    wait_until(lambda: sink.count >= 5 or errors, "the pipeline to send frames")
    assert not errors, errors
    yield Live(pipe, sink, frames, alphas, opened, folder, outside)
    pipe.stop()
    runner.join(60)
    assert not runner.is_alive() and not errors, errors
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert not any(Path(run_dir, "vbg").iterdir())  # runtime file and socket removed at exit
    uploads = pipe.controller.library.videos
    assert not list(uploads.root.glob("run-*"))  # the uploaded videos too (a subset of the tests may send none)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)


def _run(pipe, errors) -> None:
    try:
        pipe.run()
    except BaseException as e:
        errors.append(e)


@pytest.fixture(autouse=True)
def _plain_view(request):
    """Each test starts from the effect on, no mirror, a blue background."""
    yield
    if "live" in request.fixturenames:
        lv = request.getfixturevalue("live")
        lv.api("POST", "/api/effect", {"on": True})
        lv.api("POST", "/api/mirror", {"on": False})
        lv.api("POST", "/api/background", {"color": "#0000ff"})


def _corner(img) -> np.ndarray:
    return img[CORNER].reshape(-1, 3)


# ---------------------------------------------------------------------------- start, files
def test_the_settings_colour_is_in_status_for_the_colour_well(live):
    """The colour the filter started with (its settings: "#0000ff"), and one a reload of its settings
    brings, is status's background colour as a picked one's is: the page's colour well shows it
    (it showed its own default until a colour was picked). First in the module: later tests pick
    backgrounds."""
    assert live.api("GET", "/api/status")[1]["background"] == {"id": "config", "label": "#0000ff", "color": "#0000ff"}
    start = live.pipe.cfg
    live.pipe.reconfigure(replace(start, background=replace(start.background, color="lime")))
    try:
        assert live.api("GET", "/api/status")[1]["background"] == {"id": "config", "label": "lime", "color": "#00ff00"}
    finally:
        live.pipe.reconfigure(start)


def test_url_announced_runtime_file_and_socket_owner_only(live):
    url = live.server.url
    assert url.startswith(f"http://127.0.0.1:{live.port}/?token=")
    # --ui: the browser is handed a one-time address, never the token (its command line is every
    # local user's to read in /proc/PID/cmdline: they would get the camera's picture)
    assert len(live.opened) == 1 and live.opened[0].startswith(f"http://127.0.0.1:{live.port}/?ticket=")
    assert live.server.token not in live.opened[0]
    folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "vbg"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    info_file = folder / f"vbg-{os.getpid()}.json"
    assert stat.S_IMODE(os.stat(info_file).st_mode) == 0o600
    info = json.loads(info_file.read_text())
    assert info["port"] == live.port and info["token"] == live.server.token and info["pid"] == os.getpid()
    sock = Path(info["socket"])
    assert sock.parent == folder and stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_server_listens_on_loopback_only(live):
    bound = {srv.server_address[0] for srv in live.server._servers if isinstance(srv.server_address, tuple)}
    assert bound == {"127.0.0.1"}
    others = set()
    try:
        others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    for addr in others - {a for a in others if a.startswith("127.")}:
        with pytest.raises(OSError):
            socket.create_connection((addr, live.port), timeout=5).close()


def test_the_runtime_folder_must_be_private(tmp_path):
    from vbg.control.runtime import runtime_dir
    from vbg.errors import ControlError

    xdg = tmp_path / "run"
    xdg.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, xdg / "vbg")  # someone's link where vbg's folder goes: refused, never followed
    with pytest.raises(ControlError, match="not a folder of yours"):
        runtime_dir({"XDG_RUNTIME_DIR": str(xdg)})
    (xdg / "vbg").unlink()
    (xdg / "vbg").mkdir(mode=0o755)
    os.chmod(xdg / "vbg", 0o755)
    assert runtime_dir({"XDG_RUNTIME_DIR": str(xdg)}) == xdg / "vbg"
    assert stat.S_IMODE(os.stat(xdg / "vbg").st_mode) == 0o700  # made private again


class _Kernel32:
    """Win32's answers for one process: whether it can be opened (and why not), its exit code."""

    def __init__(self, opens: bool, code: int = 259, last_error: int = 0) -> None:
        self.opens, self.code, self.last_error, self.closed = opens, code, last_error, 0

    def OpenProcess(self, access, inherit, pid):  # noqa: N802 -- the Win32 names
        assert access == 0x1000  # a handle that may only ask, never terminate
        return 42 if self.opens else 0

    def GetLastError(self):  # noqa: N802
        return self.last_error

    def GetExitCodeProcess(self, handle, code_ptr):  # noqa: N802
        code_ptr._obj.value = self.code
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.closed += 1
        return 1


def test_on_windows_a_filter_is_looked_for_without_signalling_it(monkeypatch):
    """On Windows os.kill(pid, 0) terminates the process (any signal number but the console's two
    does): `vbg ctl` looking for the running filter would have ended it. There the Win32 API asks."""
    from vbg.control import runtime

    monkeypatch.setattr(runtime, "_WINDOWS", True)
    monkeypatch.setattr(runtime.os, "kill", lambda *a: pytest.fail(f"os.kill{a} on Windows"))
    assert runtime._alive_windows(4242, _Kernel32(True, code=259))  # STILL_ACTIVE
    assert not runtime._alive_windows(4242, _Kernel32(True, code=0))  # ended
    assert not runtime._alive_windows(4242, _Kernel32(False, last_error=87))  # no such process
    assert runtime._alive_windows(4242, _Kernel32(False, last_error=5))  # another user's: there
    k = _Kernel32(True)
    runtime._alive_windows(1, k)
    assert k.closed == 1
    fake = _Kernel32(True, code=0)
    import ctypes

    monkeypatch.setattr(ctypes, "windll", type("W", (), {"kernel32": fake})(), raising=False)
    assert not runtime.process_alive(4242)  # through the API, and os.kill never called


def test_preview_keys_and_control_requests_share_one_view():
    """The preview's keys go through the control state: a key keeps what a request changed
    (and the other way round), and the render thread takes the newest whole view once."""
    from vbg.compositing import BlurBackground, ColorBackground
    from vbg.control.state import ControlState
    from vbg.sinks.preview import Action, PreviewKeys

    configured = ColorBackground((0, 0, 255))
    state = ControlState(configured, (H, W))
    keys = PreviewKeys(configured, (H, W), target=state)
    assert keys.take() is None
    keys(Action.TOGGLE_EFFECT)
    state.set_mirror(True)  # a request between two frames
    v = keys.take()
    assert (v.effect, v.mirror, v.background) == (False, True, configured) and keys.take() is None
    keys(Action.NEXT_BACKGROUND)
    v = state.take()
    assert isinstance(v.background, BlurBackground) and v.mirror is True and v.effect is False
    state.set_effect(True)
    keys(Action.BLUR_UP)
    v = state.take()
    assert v.effect is True and v.background.strength == 1.5
    keys.close()


def test_a_picked_video_is_swapped_in_with_its_first_frame_not_black(tmp_path):
    """A video picked in the control page (or with vbg ctl) takes the place of the background the
    camera shows once its first frame is out; the one before stays until then. It was swapped in
    at once and showed black for the frames its opening took (a long one here: FFmpeg reads this
    GIF to its end to learn its frames)."""
    from media import pad_gif, write_gif
    from vbg.compositing import ColorBackground, VideoBackground
    from vbg.control.state import ControlState

    state = ControlState(ColorBackground((0, 0, 255)), (H, W))
    video = VideoBackground(pad_gif(write_gif(tmp_path / "big.gif", [(255, 0, 0)] * 2, [0, 50]), 64 << 20))
    try:
        state.set_background(video, wait_s=60.0)  # the default, 2 s, bounds a wait that takes ~0.3 s here
        v = state.take()
        frame = np.zeros((H, W, 3), np.uint8)
        assert v.background is video and _is_near(video.render(frame, np.ones((H, W), np.float32)), (255, 0, 0))
    finally:
        video.close()


# ---------------------------------------------------------------------------- security
def test_no_token_or_a_wrong_one_is_refused(live):
    for kw in ({"token": False}, {"headers": {"X-Vbg-Token": "x" + live.server.token}}):
        status, body = live.api("GET", "/api/status", **kw)
        assert status == 403 and "token" in body["error"]
    status, body = live.api("POST", "/api/effect", {"on": False}, token=False)
    assert status == 403 and live.pipe.control.view.effect is True  # nothing changed
    status, _, _ = live.request("GET", f"/api/status?token={live.server.token}", token=False)
    assert status == 200  # the page's way: the token in the URL


def test_the_unix_socket_wants_the_token_too(live):
    from vbg.control.client import Client

    info = json.loads(live.server.runtime_file.read_text())
    assert Client(info).status()["frames"] > 0  # over the socket (vbg ctl's way)
    with pytest.raises(Exception, match="token"):
        Client({**info, "token": "wrong"}).status()


def test_no_control_runs_no_server_and_sigusr1_still_toggles(tmp_path, monkeypatch):
    run = Path(tempfile.mkdtemp(prefix="vbgc-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    frames = [np.full((H, W, 3), 90, np.uint8)] * 3
    cfg = apply(LiveConfig(), {"model": {"model": "selfie"}, "background": {"color": "red"},
                               "output": {"vcam": False}, "control": {"control": False}}, check=False)
    sink = Recent()
    announced = []
    pipe = LivePipeline(cfg, source=LoopSource(frames), sinks=[sink], on_control=announced.append)
    assert pipe.toggle_effect() is False  # not started: nothing to toggle yet
    errors: list = []
    runner = threading.Thread(target=lambda: _run(pipe, errors), daemon=True)
    runner.start()
    try:
        wait_until(lambda: sink.count >= 2 or errors, "frames")
        assert pipe.control_server is None and not announced and not (run / "vbg").exists()
        assert (sink.recent[-1][2][CORNER] == (255, 0, 0)).all()
        assert pipe.toggle_effect() is True  # what SIGUSR1 calls
        n0 = sink.count
        wait_until(lambda: sink.count >= n0 + 3 or errors, "more frames")
        assert (sink.recent[-1][2] == 90).all()  # the effect off: the camera's own grey
    finally:
        pipe.stop()
        runner.join(60)
    assert not errors, errors
    shutil.rmtree(run)


def test_foreign_host_is_refused(live):
    for host in ("evil.example", f"evil.example:{live.port}", f"127.0.0.1:{live.port + 1}", ""):
        status, data, _ = live.request("GET", "/api/status", host=host)
        assert status == 403 and "Host" in json.loads(data)["error"], host
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}", f"[::1]:{live.port}"):
        assert live.request("GET", "/api/status", host=host)[0] == 200


def test_foreign_origin_is_refused(live):
    status, body = live.api("POST", "/api/effect", {"on": False}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "Origin" in body["error"] and live.pipe.control.view.effect is True
    status, _ = live.api("GET", "/api/status", headers={"Origin": f"http://localhost:{live.port + 1}"})
    assert status == 403
    status, _ = live.api("GET", "/api/status", headers={"Origin": f"http://127.0.0.1:{live.port}"})
    assert status == 200


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/..%2fserver.py", "/static/%2e%2e/state.py",
                                  "/static/.hidden", "/static//etc/passwd", "/static/..%2f..%2f__init__.py",
                                  "/static/server.py"])
def test_static_files_cannot_reach_outside_the_page_folder(live, path):
    status, data, _ = live.request("GET", path)
    assert status in (404, 405) and b"import" not in data and b"root:" not in data
    assert "error" in json.loads(data)


@pytest.mark.parametrize("bid", ["folder:../secret.png", "folder:link.png", "folder:/etc/passwd",
                                 "bundled:../../../../etc/passwd", "bundled:..", "upload:99", "recent:7",
                                 "file:/etc/passwd", "/etc/passwd", "secret.png"])
def test_background_ids_outside_the_allowed_sets_are_refused(live, bid):
    status, body = live.api("POST", "/api/background", {"id": bid})
    assert status in (400, 404) and body["error"]
    status, data, _ = live.request("GET", f"/api/thumb/{bid}")
    assert status in (400, 404) and data[:2] != b"\xff\xd8"  # no JPEG of anything
    assert live.pipe.controller.background["label"] != "secret"


# ---------------------------------------------------------------------------- commands
def test_colour_puts_that_colour_behind_the_person(live):
    status, body = live.api("POST", "/api/background", {"color": "#ff0000"})
    assert status == 200 and body["background"]["label"] == "#ff0000"
    live.later(lambda s, img: (_corner(img) == (255, 0, 0)).all(), "red corners")


def test_effect_off_sends_the_camera_frame_as_it_is(live):
    assert live.api("POST", "/api/effect", {"on": False}) == (200, {"ok": True, "effect": False})
    live.later(lambda s, img: np.array_equal(img, live.camera(s)), "the camera's own frame")
    assert live.api("GET", "/api/status")[1]["effect"] is False
    live.api("POST", "/api/effect", {"on": True})
    live.later(lambda s, img: (_corner(img) == (0, 0, 255)).all(), "blue corners again")


def test_effect_off_keeps_the_mirror(live):
    """With the mirror on, the effect switched off sends the camera's frame mirrored: the
    picture in the call does not flip left to right at the switch (it did)."""
    assert live.api("POST", "/api/mirror", {"on": True}) == (200, {"ok": True, "mirror": True})
    assert live.api("POST", "/api/effect", {"on": False}) == (200, {"ok": True, "effect": False})
    live.later(lambda s, img: np.array_equal(img, live.camera(s)[:, ::-1]), "the camera's frame, mirrored")


def test_mirror_flips_the_person(live):
    def side(seq, img, mirrored):
        person = (np.abs(img.astype(int) - (0, 0, 255)).sum(axis=2) > 60)
        x_out = np.nonzero(person)[1].mean()
        alpha = live.alphas[seq % len(live.alphas)]
        x_true = np.nonzero(alpha > 0.5)[1].mean()
        want = W - 1 - x_true if mirrored else x_true
        return abs(x_out - want) < 0.1 * W

    live.later(lambda s, img: side(s, img, False), "the person where they are")
    assert live.api("POST", "/api/mirror", {"on": True}) == (200, {"ok": True, "mirror": True})
    live.later(lambda s, img: side(s, img, True), "the person mirrored")


def test_blur_and_pictures_from_the_folder_and_uploads(live, tmp_path):
    status, body = live.api("POST", "/api/background", {"blur": 0})  # a slider's 0 end: the lightest blur
    assert status == 200 and live.api("GET", "/api/status")[1]["blur"] == 0.1
    status, body = live.api("POST", "/api/background", {"blur": 2.0})
    assert status == 200 and live.api("GET", "/api/status")[1]["blur"] == 2.0
    live.later(lambda s, img: not (_corner(img) == (0, 0, 255)).all(), "no blue once blurred")
    items = live.api("GET", "/api/backgrounds")[1]
    assert items["folder"] == str(live.folder)
    ids = {i["id"]: i for i in items["items"]}
    assert "folder:mine.png" in ids and "folder:link.png" not in ids  # a link in the folder is not listed
    assert any(i.startswith("bundled:") for i in ids)
    status, data, resp = live.request("GET", ids["folder:mine.png"]["thumb"])
    thumb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and resp.getheader("Content-Type") == "image/jpeg" and thumb.shape[1] == 160
    assert live.api("POST", "/api/background", {"id": "folder:mine.png"})[0] == 200
    live.later(lambda s, img: (np.abs(_corner(img).astype(int) - (10, 200, 30)) <= 1).all(), "the folder's picture")
    png = _png(tmp_path / "up.png", (50, 60, 70)).read_bytes()
    status, body = live.api("POST", "/api/upload", png, headers={"Content-Type": "image/png", "X-Vbg-Name": "up"})
    assert status == 200 and body["id"].startswith("upload:")
    assert live.api("POST", "/api/background", {"id": body["id"]})[0] == 200
    live.later(lambda s, img: (np.abs(_corner(img).astype(int) - (50, 60, 70)) <= 1).all(), "the uploaded picture")
    listed = live.api("GET", "/api/backgrounds")[1]["items"]
    recent = [i for i in listed if i["kind"] == "recent"]
    upload = next(i for i in listed if i["id"] == body["id"] and i["kind"] == "upload")
    # a recent one is named by the id it stands for, its thumbnail the same address: exact, not a place in the row
    assert recent[0]["id"] == body["id"] and recent[0]["label"] == "up" and recent[0]["thumb"] == upload["thumb"]
    assert live.api("POST", "/api/background", {"id": "recent:0"})[1]["background"]["id"] == body["id"]  # still taken
    status, body = live.api("POST", "/api/upload", b"not an image at all", headers={"Content-Type": "image/png",
                                                                                   "X-Vbg-Name": "notes.png"})
    assert status == 400 and body["error"].startswith("the uploaded notes.png is not an image"), body
    status, body = live.api("POST", "/api/upload", b"", headers={"Content-Type": "image/png", "X-Vbg-Name": "empty.png"})
    assert status == 400 and body["error"].startswith("the uploaded empty.png is empty: pass a PNG"), body


def _colour_clip(path: Path, colours, fps: int = 10) -> Path:
    """A small H.264 clip of solid colours, ``fps`` frames of each, made here with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qp": "0"}
        for i in range(fps * len(colours)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colours[i // fps], np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _is_near(img, rgb, tol: int = 16) -> bool:
    return bool((np.abs(_corner(img).astype(int) - rgb) <= tol).all())


def test_a_video_in_the_folder_plays_behind_the_person_and_stops_when_replaced(live, monkeypatch):
    """A video the user put in the backgrounds folder is listed (with its first frame as the
    thumbnail), and picked in the page it plays behind the person in a loop, as --background
    clip.mp4 does; picking something else stops its thread. A link to a video is neither listed
    nor played, nor is a list of files to play named like a video (FFmpeg's "ffconcat", whose
    names it looks up from the working folder). Only pictures were listed: a video there was ignored."""
    red, green = (220, 30, 30), (30, 220, 30)
    _colour_clip(live.folder / "loop.mp4", [red, green])
    secret = _colour_clip(live.outside.parent / "private.mp4", [(5, 5, 5)])
    os.symlink(secret, live.folder / "linked.mp4")
    (live.folder / "playlist.mp4").write_text(f"ffconcat version 1.0\nfile {secret.name}\n")
    monkeypatch.chdir(secret.parent)  # where the user started vbg: the private video's folder
    try:
        status, data, _ = live.request("GET", "/api/thumb/folder:playlist.mp4")
        assert status == 400 and data[:2] != b"\xff\xd8"  # no JPEG of the private video
        items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
        assert items["folder:loop.mp4"]["video"] is True and items["folder:mine.png"]["video"] is False
        assert "folder:linked.mp4" not in items
        status, data, resp = live.request("GET", items["folder:loop.mp4"]["thumb"])
        thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert status == 200 and thumb.shape[1] == 160 and _is_near(thumb, red)
        status, body = live.api("POST", "/api/background", {"id": "folder:loop.mp4"})
        assert status == 200 and body["background"]["label"] == "loop"
        for colour, what in ((red, "the clip's red"), (green, "then its green"), (red, "and round to red again")):
            wait_until(lambda: any(_is_near(img, colour) for _, _, img in list(live.sink.recent)[-3:]), what)
        assert any(t.name == "vbg-bg-video" for t in threading.enumerate())
        for bid in ("folder:linked.mp4", "folder:../private.mp4", "folder:playlist.mp4"):
            status, body = live.api("POST", "/api/background", {"id": bid})
            assert status in (400, 404) and body["error"] and live.pipe.controller.background["label"] == "loop"
        assert live.api("POST", "/api/background", {"color": "#0000ff"})[0] == 200
        live.later(lambda s, img: (_corner(img) == (0, 0, 255)).all(), "blue corners")
        wait_until(lambda: not any(t.name == "vbg-bg-video" for t in threading.enumerate()),
                   "the video background's thread to end once replaced")
    finally:
        for name in ("loop.mp4", "linked.mp4", "playlist.mp4"):
            (live.folder / name).unlink(missing_ok=True)


def _uploads_of(live) -> Path:
    """The folder where the live filter keeps this run's uploaded videos (made by the first one)."""
    folder = live.pipe.controller.library.videos.folder
    assert folder is not None, "no video was uploaded"
    return folder


def _upload_video(live, data: bytes, name: str, ctype: str = "video/mp4"):
    return live.api("POST", "/api/upload", data, headers={"Content-Type": ctype, "X-Vbg-Name": name})


def _declared_only(live, path: str, length: int, headers: dict | None = None) -> bytes:
    """The whole answer to a POST of ``path`` that declares a body of ``length`` bytes and sends
    none of it (what a refusal before the body is read looks like on the wire)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nX-Vbg-Token: {live.server.token}\r\n"
                   f"{extra}Content-Length: {length}\r\n\r\n").encode())
        return s.makefile("rb").read()


def test_a_video_uploaded_plays_from_a_private_folder_of_this_run(live, tmp_path, monkeypatch):
    """A video sent from the page (or vbg ctl) is kept on disk for this run, in a folder of its
    own (0700, in the vbg cache), listed as a video with its first frame, and played in a loop
    like a folder's video. What is not such a video leaves nothing behind: bytes that are not
    one, a list of files to play named like one (read as its name says, never guessed), a
    sender that stops half-way. One too big for an upload is refused unread, naming the folder
    that plays it instead. A video used to get a 415: "put it in the backgrounds folder"."""
    cyan, orange = (20, 200, 210), (240, 140, 20)
    data = _colour_clip(tmp_path / "waves.mp4", [cyan, orange]).read_bytes()
    status, body = _upload_video(live, data, "waves.mp4")
    assert status == 200 and body["id"].startswith("upload:"), body
    uploads = _uploads_of(live)
    assert uploads.parent == Path(os.environ["VBG_CACHE_DIR"]) / "uploads"
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o700
    _, _, kept = live.pipe.controller.library.video(body["id"])
    assert kept.parent == uploads and kept.suffix == ".mp4" and kept.read_bytes() == data  # whole, named
    assert not [p for p in uploads.iterdir() if p.name.endswith(".partial")]
    items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
    assert items[body["id"]]["video"] is True and items[body["id"]]["label"].startswith("waves")
    status, jpeg, _ = live.request("GET", items[body["id"]]["thumb"])
    thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert status == 200 and _is_near(thumb, cyan)
    assert live.api("POST", "/api/background", {"id": body["id"]})[0] == 200
    for colour, what in ((cyan, "the upload's cyan"), (orange, "then its orange"), (cyan, "and round again")):
        wait_until(lambda: any(_is_near(img, colour) for _, _, img in list(live.sink.recent)[-3:]), what)

    def left() -> list[str]:
        return sorted(p.name for p in uploads.iterdir())

    before = left()
    secret = _colour_clip(tmp_path / "private.mp4", [(5, 5, 5)])
    monkeypatch.chdir(secret.parent)  # where vbg was started: a list's names would be looked up here
    for junk, name, ctype in ((b"not a video at all" * 100, "junk.mp4", "video/mp4"),
                              (f"ffconcat version 1.0\nfile {secret.name}\n".encode(), "list.mp4", "video/mp4"),
                              (data, "clip", "video/webm")):  # an MP4 sent as WebM: read as WebM, refused
        status, answer = _upload_video(live, junk, name, ctype)
        assert status == 400 and f"the uploaded {name}" in answer["error"], answer
        assert "\n" not in answer["error"] and str(uploads) not in answer["error"]
        assert left() == before
    videos = live.pipe.controller.library.videos
    ended = videos.finished
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:  # gone half-way
        s.sendall((f"POST /api/upload HTTP/1.0\r\nHost: 127.0.0.1:{live.port}\r\nX-Vbg-Token: {live.server.token}"
                   f"\r\nContent-Type: video/mp4\r\nX-Vbg-Name: cut.mp4\r\nContent-Length: {len(data)}\r\n\r\n"
                   ).encode() + data[: len(data) // 2])
    wait_until(lambda: videos.finished > ended, "the cut upload to end")
    assert left() == before
    answer = _declared_only(live, "/api/upload", 3 << 30, {"Content-Type": "video/mp4", "X-Vbg-Name": "film.mp4"})
    assert answer.startswith(b"HTTP/1.0 413") and f"put it in the backgrounds folder, {live.folder}".encode() in answer
    status, answer = _upload_video(live, b"G" + bytes(187), "match.ts", "application/octet-stream")
    assert status == 415 and "convert it to mp4" in answer["error"]
    assert left() == before


def test_a_moving_picture_plays_whether_uploaded_or_in_the_folder(live, tmp_path):
    """A GIF or an animated PNG, uploaded from the page (or vbg ctl) or put in the backgrounds
    folder, is listed as a video (its first frame the thumbnail) and plays behind the person in a
    loop, as ``--background party.gif`` does; a GIF of one image, like a still PNG, is a picture
    (it was kept on disk as a video, among the four kept); a GIF cut short is refused in one line.
    An uploaded GIF or animated PNG stood still on its first frame, and so did an animated PNG in
    the folder; under OpenCV 4.10 (vbg's floor, which reads no GIF) an uploaded GIF was refused as
    damaged."""
    from media import pad_gif, write_animation, write_gif
    from vbg.control.uploads import MAX_UPLOAD

    red, blue, green = (255, 0, 0), (0, 0, 255), (0, 255, 0)  # pure: a GIF's palette keeps them
    gif = write_gif(tmp_path / "party.gif", [red, blue, blue], [0, 50, 100]).read_bytes()  # half a second each
    apng = write_animation(tmp_path / "wave.png", "apng", [green] * 3 + [red] * 3, fps=6).read_bytes()
    still = write_gif(tmp_path / "still.gif", [blue], [0]).read_bytes()
    # Larger than a picture may be: streamed to disk as the video it is (it was refused, 413)
    big = pad_gif(write_gif(tmp_path / "big.gif", [blue, green, green], [0, 50, 100]), MAX_UPLOAD + 1).read_bytes()
    ids = {}
    for name, data, ctype in (("party.gif", gif, "image/gif"), ("wave.png", apng, "image/png"),
                              ("still.gif", still, "image/gif"), ("big.gif", big, "image/gif")):
        status, body = live.api("POST", "/api/upload", data, headers={"Content-Type": ctype, "X-Vbg-Name": name})
        assert status == 200, body
        ids[name] = body["id"]
    (live.folder / "loop.png").write_bytes(apng)
    (live.folder / "calm.gif").write_bytes(still)
    try:
        items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
        assert [items[ids[n]]["video"] for n in ("party.gif", "wave.png", "big.gif")] == [True] * 3
        assert items[ids["still.gif"]]["video"] is False and items["folder:calm.gif"]["video"] is False
        assert items["folder:loop.png"]["video"] is True and items["folder:mine.png"]["video"] is False
        for name, data in (("party.gif", gif), ("big.gif", big)):
            kept = live.pipe.controller.library.video(ids[name])[2]
            assert kept.parent == _uploads_of(live) and kept.suffix == ".gif" and kept.read_bytes() == data
        status, jpeg, _ = live.request("GET", items[ids["wave.png"]]["thumb"])
        thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert status == 200 and _is_near(thumb, green)
        for bid, colours in ((ids["party.gif"], (red, blue, red)), (ids["wave.png"], (green, red, green)),
                             ("folder:loop.png", (green, red, green)), (ids["big.gif"], (blue, green, blue))):
            assert live.api("POST", "/api/background", {"id": bid})[0] == 200
            for colour in colours:
                wait_until(lambda: any(_is_near(img, colour) for _, _, img in list(live.sink.recent)[-3:]),
                           f"{bid}: {colour}")
        for bid in (ids["still.gif"], "folder:calm.gif"):  # pictures: no thread decodes them
            assert live.api("POST", "/api/background", {"id": bid})[0] == 200
            live.later(lambda s, img: _is_near(img, blue, 1), f"{bid}, a GIF of one image")
            assert not any(t.name == "vbg-bg-video" for t in threading.enumerate())
        listed = [i["id"] for i in live.api("GET", "/api/backgrounds")[1]["items"]]
        files = sorted(_uploads_of(live).iterdir())
        for data, said in ((gif[:40], "the uploaded cut.gif is a truncated GIF (the file ends early)"),  # a picture
                           (bytes(MAX_UPLOAD + 1), "the uploaded cut.gif")):  # streamed: as large as the big one
            status, body = live.api("POST", "/api/upload", data, headers={"Content-Type": "image/gif",
                                                                          "X-Vbg-Name": "cut.gif"})
            assert status == 400 and said in body["error"] and "\n" not in body["error"], body
        answer = _declared_only(live, "/api/upload", 3 << 30,  # over a video's limit
                                {"Content-Type": "image/gif", "X-Vbg-Name": "film.gif"})
        assert answer.startswith(b"HTTP/1.0 413") and b"the moving picture is 3072 MB" in answer
        assert [i["id"] for i in live.api("GET", "/api/backgrounds")[1]["items"]] == listed
        assert sorted(_uploads_of(live).iterdir()) == files  # nothing of the refused ones
    finally:
        (live.folder / "loop.png").unlink(missing_ok=True)
        (live.folder / "calm.gif").unlink(missing_ok=True)


def test_an_animated_webp_plays_whether_uploaded_or_in_the_folder(live, tmp_path):
    """An animated WebP (GIPHY's and the sticker sites' format, which FFmpeg cannot decode) uploaded
    or put in the backgrounds folder is listed as a video, its first frame the thumbnail, and plays
    behind the person in a loop from OpenCV's frames, as ``--background party.webp`` does; a still
    WebP is a picture; one cut short is refused in one line, nothing kept. It stood still on its
    first frame. Under OpenCV before 4.12, which cannot play one, it is a picture: under 4.10,
    which cannot read one either, picking it says so in one line."""
    from media import write_animation
    from vbg.images import opencv_reads_animations

    red, blue = (255, 0, 0), (0, 0, 255)
    webp = write_animation(tmp_path / "party.webp", "webp", [red, blue, blue], fps=2).read_bytes()  # 0.5 s, 1 s
    still = cv2.imencode(".webp", np.full((48, 64, 3), blue[::-1], np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1]
    (live.folder / "loop.webp").write_bytes(webp)
    (live.folder / "calm.webp").write_bytes(still.tobytes())
    secret = live.outside.parent / "private.webp"
    secret.write_bytes(webp)
    os.symlink(secret, live.folder / "linked.webp")  # one of the user's, linked by someone sharing the folder
    try:
        status, body = live.api("POST", "/api/upload", webp, headers={"Content-Type": "image/webp",
                                                                      "X-Vbg-Name": "party.webp"})
        if not opencv_reads_animations() and hasattr(cv2, "imreadanimation"):  # 4.11: its first frame, a picture
            assert status == 200, body
            items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
            assert items[body["id"]]["video"] is False and items["folder:loop.webp"]["video"] is False
            return
        if not opencv_reads_animations():
            assert status == 400 and "is an animated WebP, which OpenCV" in body["error"], body
            status, body = live.api("POST", "/api/background", {"id": "folder:loop.webp"})
            assert status == 400 and "update opencv-python to 4.12" in body["error"], body
            return
        assert status == 200, body
        uploaded = body["id"]
        items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
        assert items[uploaded]["video"] is True and items["folder:loop.webp"]["video"] is True
        assert items["folder:calm.webp"]["video"] is False and "folder:linked.webp" not in items
        status, body = live.api("POST", "/api/background", {"id": "folder:linked.webp"})
        assert status in (400, 404) and body["error"], body
        kept = live.pipe.controller.library.video(uploaded)[2]
        assert kept.parent == _uploads_of(live) and kept.suffix == ".webp" and kept.read_bytes() == webp
        for bid in (uploaded, "folder:loop.webp"):
            status, jpeg, _ = live.request("GET", items[bid]["thumb"])
            thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert status == 200 and _is_near(thumb, red), bid
            assert live.api("POST", "/api/background", {"id": bid})[0] == 200
            for colour in (red, blue, red):
                wait_until(lambda: any(_is_near(img, colour) for _, _, img in list(live.sink.recent)[-3:]),
                           f"{bid}: {colour}")
        assert live.api("POST", "/api/background", {"id": "folder:calm.webp"})[0] == 200
        live.later(lambda s, img: _is_near(img, blue, 1), "a still WebP")
        listed = [i["id"] for i in live.api("GET", "/api/backgrounds")[1]["items"]]
        files = sorted(_uploads_of(live).iterdir())
        status, body = live.api("POST", "/api/upload", webp[:-20], headers={"Content-Type": "image/webp",
                                                                            "X-Vbg-Name": "cut.webp"})
        assert status == 400 and body["error"] == ("the uploaded cut.webp is a damaged animated WebP (it cannot be "
                                                   "decoded): copy or download it again, or save it as a GIF or a "
                                                   "video"), body
        assert [i["id"] for i in live.api("GET", "/api/backgrounds")[1]["items"]] == listed
        assert sorted(_uploads_of(live).iterdir()) == files
    finally:
        for name in ("loop.webp", "calm.webp", "linked.webp"):
            (live.folder / name).unlink(missing_ok=True)


def test_without_locks_a_dead_run_s_uploads_folder_is_told_by_its_process(tmp_path):
    """Where ``flock`` cannot tell a live run's folder from a dead one's (Windows has no flock; some
    network file systems answer every lock with an error), a run's ``.lock`` names its machine
    and process: a folder of a process of this machine that has ended is removed, a live run's
    (this one's) and another machine's are left alone, a record never written (the run died
    making it) goes once old. Such folders were never removed: up to 4 GB of videos each."""
    from vbg.control.uploads import STALE_UNLOCKED_S, VideoUploads, remove_dead_runs

    root = tmp_path / "uploads"
    ours = VideoUploads(root)
    clip = _colour_clip(tmp_path / "c.mp4", [(200, 10, 10)]).read_bytes()
    kept = ours.add(io.BytesIO(clip).read, len(clip), ".mp4")
    assert json.loads((kept.parent / ".lock").read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead_pid = int(ended.stdout)  # a process of this machine that has ended (pids are not reused so soon)
    for name, record in (("run-killed", {"host": socket.gethostname(), "pid": dead_pid}),
                         ("run-elsewhere", {"host": socket.gethostname() + "-another", "pid": dead_pid}),
                         ("run-unwritten-old", None), ("run-unwritten-new", None)):
        (root / name).mkdir()
        (root / name / ".lock").write_text(json.dumps(record) if record else "")
        (root / name / "1.mp4").write_bytes(clip)
    old = time.time() - STALE_UNLOCKED_S - 60
    os.utime(root / "run-unwritten-old", (old, old))
    no_locks = lambda fd: None  # noqa: E731 -- what fsutil.try_lock answers where there are none
    assert sorted(remove_dead_runs(root, lock=no_locks)) == ["run-killed", "run-unwritten-old"]
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([kept.parent.name, "run-elsewhere", "run-unwritten-new"]), left
    assert kept.read_bytes() == clip
    # Where there are locks (here), they decide: the two others' are free, this run's is held.
    assert sorted(remove_dead_runs(root)) == ["run-elsewhere", "run-unwritten-new"]
    assert kept.read_bytes() == clip
    ours.close()
    assert list(root.iterdir()) == []


@pytest.fixture
def small_cache(tmp_path):
    """A 300 MB tmpfs (root only): room for FREE_MARGIN and a little more."""
    with small_tmpfs(tmp_path / "small", "300m") as folder:
        yield folder


def test_a_video_upload_the_disk_cannot_hold_is_refused_and_leaves_nothing(small_cache):
    """On a cache disk with less free than the video and FREE_MARGIN, the upload is refused (507)
    before a byte is read, naming the free space and VBG_CACHE_DIR; a disk that another program
    fills while a video is written refuses it too (507, "filled up during the upload"), its part
    removed; once there is room again a video is kept whole."""
    from vbg.control.library import Library
    from vbg.control.uploads import CHUNK, FREE_MARGIN, UploadRefused, VideoUploads

    clip = _colour_clip(small_cache.parent / "c.mp4", [(200, 10, 10)]).read_bytes()
    big = clip * (3 * CHUNK // len(clip))  # three chunks: the disk fills once the first is read
    body = io.BytesIO(big)
    filler = small_cache / "another program's file"
    asked: list[int] = []

    def never(n: int) -> bytes:
        asked.append(n)
        return b""

    def fills_the_disk(n: int) -> bytes:
        if not filler.exists():
            with open(filler, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(small_cache).free - (256 << 10))
        return body.read(n)

    lib = Library(small_cache / "none", uploads=VideoUploads(small_cache / "uploads"))
    try:
        free = shutil.disk_usage(small_cache).free
        with pytest.raises(UploadRefused) as refused:
            lib.add_video_upload(never, free - FREE_MARGIN + 1, "long", ".mp4")
        assert refused.value.status == 507 and asked == [], refused.value
        assert f"has {free / 2**20:.0f} MB free: free some disk space, or set VBG_CACHE_DIR" in str(refused.value)
        with pytest.raises(UploadRefused) as refused:
            lib.add_video_upload(fills_the_disk, len(big), "big", ".mp4")
        assert refused.value.status == 507 and "filled up during the upload" in str(refused.value), refused.value
        folder = lib.videos.folder
        assert folder is not None and sorted(p.name for p in folder.iterdir()) == [".lock"]
        filler.unlink()
        kept = lib.video(lib.add_video_upload(io.BytesIO(clip).read, len(clip), "short", ".mp4"))[2]
        assert kept.read_bytes() == clip
    finally:
        lib.close()
    assert list((small_cache / "uploads").iterdir()) == []


def test_older_uploaded_videos_make_room_but_not_the_one_shown_and_the_run_removes_them(tmp_path):
    """At most VIDEO_UPLOADS_KEPT uploaded videos stay on disk: a newer one lets go of the oldest
    (its file removed, its id gone), never of the one behind the person; the run's end removes
    the folder. A folder a crashed run left (its lock free) is removed by the next run's first
    upload; one of a run still going (its lock held) is not. A cache that cannot hold the folder
    is one line."""
    from vbg.control.library import VIDEO_UPLOADS_KEPT, Library, NotFound
    from vbg.control.uploads import UploadRefused, VideoUploads

    root = tmp_path / "uploads"
    crashed = root / "run-crashed"
    crashed.mkdir(parents=True)
    (crashed / ".lock").touch()
    (crashed / "1.mp4").write_bytes(b"left by a run that was killed")
    running = Library(tmp_path / "none", uploads=VideoUploads(root))
    clip = _colour_clip(tmp_path / "c.mp4", [(200, 10, 10)]).read_bytes()
    other = running.add_video_upload(io.BytesIO(clip).read, len(clip), "theirs", ".mp4")  # another run, going on
    theirs = running.video(other)[2]
    assert theirs.exists() and not crashed.exists()  # the crashed run's folder went with this first upload
    lib = Library(tmp_path / "none", uploads=VideoUploads(root))
    ids = [lib.add_video_upload(io.BytesIO(clip).read, len(clip), f"v{i}", ".mp4") for i in range(2)]
    lib.showing(ids[0])  # the first one is behind the person
    paths = [lib.video(i)[2] for i in ids]
    ids += [lib.add_video_upload(io.BytesIO(clip).read, len(clip), f"v{i}", ".mp4") for i in range(2, VIDEO_UPLOADS_KEPT + 1)]
    listed = [i["id"] for i in lib.items() if i["kind"] == "upload"]
    assert listed == [ids[0], *ids[2:]]  # the second was let go of, not the one shown
    assert paths[0].exists() and not paths[1].exists()
    with pytest.raises(NotFound):
        lib.video(ids[1])
    assert theirs.exists()  # the other run's folder is left alone: its lock is held
    folder = lib.videos.folder
    assert folder is not None and folder != running.videos.folder
    lib.close()
    assert not folder.exists() and theirs.exists()
    running.close()
    assert list(root.iterdir()) == []
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    nowhere = Library(tmp_path / "none", uploads=VideoUploads(tmp_path / "cache" / "uploads"))
    with pytest.raises(UploadRefused) as refused:
        nowhere.add_video_upload(io.BytesIO(clip).read, len(clip), "v", ".mp4")
    assert refused.value.status == 507 and str(refused.value) == (
        f"a video upload cannot be kept in {tmp_path / 'cache' / 'uploads'} (Not a directory): a file stands where "
        "a folder is needed: choose another path, or set VBG_CACHE_DIR to a writable folder")


def test_status_and_preview(live):
    status, s = live.api("GET", "/api/status")
    assert status == 200
    assert s["frames"] > 0 and s["fps"] > 0 and s["latency_ms"]["p50"] > 0 and s["render_ms"]["p95"] > 0
    assert s["model"] == "selfie" and "selfie-landscape" in s["models"] and s["providers"]
    assert s["background"] == {"id": "color:#0000ff", "label": "#0000ff", "color": "#0000ff"}
    assert s["camera_lost"] is False
    assert s["cpu_percent"] is None or s["cpu_percent"] >= 0
    status, data, resp = live.request("GET", "/api/preview.jpg")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and img.shape[1] == 320 and resp.getheader("Cache-Control") == "no-store"


def test_model_switch_keeps_the_camera_and_a_failed_one_keeps_the_old_model(live, offline_env, monkeypatch):
    n0 = live.sink.count
    status, body = live.api("POST", "/api/model", {"name": "selfie-landscape"})
    assert status == 200 and body == {"ok": True, "model": "selfie-landscape", "loading": True}
    assert live.pipe.controller.wait_model(120)
    s = live.api("GET", "/api/status")[1]
    assert s["model"] == "selfie-landscape" and s["model_error"] is None
    wait_until(lambda: tuple(live.pipe._seg_now.input_size((H, W))) != (256, 256) and live.sink.count > n0 + 10,
               "frames with the new model")
    live.api("POST", "/api/background", {"color": "#ff0000"})
    live.later(lambda s, img: (_corner(img) == (255, 0, 0)).all(), "red corners with the new model")
    for k, v in offline_env.items():  # no cached RMBG-1.4, no hub: the load fails
        monkeypatch.setenv(k, v)
    assert live.api("POST", "/api/model", {"name": "rmbg-1.4"})[0] == 200
    assert live.pipe.controller.wait_model(120)
    s = live.api("GET", "/api/status")[1]
    assert s["model"] == "selfie-landscape" and "rmbg-1.4 could not be loaded" in s["model_error"]
    # the way out named as a running filter takes it, not as the start-up flag --model selfie
    assert s["model_error"].endswith("switch to the bundled one: vbg ctl model selfie"), s["model_error"]
    assert "--model" not in s["model_error"]
    n1 = live.sink.count
    wait_until(lambda: live.sink.count > n1 + 5, "frames after the failed switch")
    assert live.api("POST", "/api/model", {"name": "nope"})[0] == 400
    live.api("POST", "/api/model", {"name": "selfie"})
    assert live.pipe.controller.wait_model(120)


def test_the_model_menu_marks_a_model_a_switch_would_first_download(live, offline_env, monkeypatch, tmp_path):
    """The page's menu shows "rmbg-1.4 (not downloaded yet)" when it is not in the hub cache: a
    switch to it downloads it first (or fails, offline), unlike the bundled models."""
    import huggingface_hub.constants

    from vbg.models.resolve import download_notes

    for k, v in offline_env.items():
        monkeypatch.setenv(k, v)
    # An empty hub cache, whatever this machine holds (the library reads its folder at import).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert download_notes() == {"rmbg-1.4": "not downloaded yet"}
    assert download_notes("fp32", "torch") == {"rmbg-1.4": "not downloaded yet"}  # its weights file
    s = live.api("GET", "/api/status")[1]  # (this filter's notes came from the machine's own cache)
    assert isinstance(s["model_notes"], dict) and set(s["model_notes"]) <= {"rmbg-1.4"}
    assert all(v == "not downloaded yet" for v in s["model_notes"].values())


def test_back_to_the_model_given_at_start_is_back_to_its_size(rmbg_onnx_dynamic):
    """--size belongs to the model it was given with: a switch to another model opens that one at
    its own size, and a switch back opens the first at the --size the user gave, not its default."""
    cfg = apply(LiveConfig(), {"model": {"model": str(rmbg_onnx_dynamic), "size": 160}}, check=False)
    pipe = LivePipeline(cfg)
    pipe._hw = (H, W)
    swaps = []
    try:
        for name in ("selfie", str(rmbg_onnx_dynamic)):
            swaps.append(pipe._load_model(name))
        assert swaps[0].mask_hw == (256, 256)
        assert max(swaps[1].mask_hw) == 160  # --size 160's long side, not RMBG-1.4's default
    finally:
        for swap in swaps:
            swap.segmenter.close()


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/api/effect", b"{not json", 400),
    ("POST", "/api/effect", b"[1, 2]", 400),
    ("POST", "/api/effect", b'{"on": "yes"}', 400),
    ("POST", "/api/background", b'{"blur": 99}', 400),
    ("POST", "/api/background", b'{"blur": -1}', 400),
    ("POST", "/api/background", b'{"color": "nocolour"}', 400),
    ("POST", "/api/background", b'{"color": "red", "blur": 1}', 400),
    ("GET", "/api/nothing", None, 404),
    ("DELETE", "/api/status", None, 405),
    ("POST", "/api/upload", b"x", 415),
])
def test_bad_requests_get_one_json_line(live, method, path, body, status):
    got, data, _ = live.request(method, path, body)
    err = json.loads(data)["error"]
    assert got == status and "\n" not in err and "Traceback" not in err


def test_an_oversized_body_is_refused_before_it_is_read(live):
    answer = _declared_only(live, "/api/effect", 50000000)
    assert answer.startswith(b"HTTP/1.0 413") and b"at most" in answer


# ---------------------------------------------------------------------------- vbg ctl
def test_vbg_ctl_end_to_end(live, capsys, tmp_path, vbg_logging):
    assert cli.main(["ctl", "color", "#00ff00"]) == 0
    assert capsys.readouterr().out.strip() == "background #00ff00"
    live.later(lambda s, img: (_corner(img) == (0, 255, 0)).all(), "green corners")
    assert cli.main(["ctl", "effect", "off"]) == 0 and capsys.readouterr().out.strip() == "effect off"
    live.later(lambda s, img: np.array_equal(img, live.camera(s)), "the camera's own frame")
    assert cli.main(["ctl", "effect", "toggle"]) == 0 and capsys.readouterr().out.strip() == "effect on"
    picture = _png(tmp_path / "mine-too.png", (90, 30, 200))  # a file outside every allowed folder: uploaded
    assert cli.main(["ctl", "background", str(picture)]) == 0
    live.later(lambda s, img: (np.abs(_corner(img).astype(int) - (90, 30, 200)) <= 1).all(), "the file's picture")
    assert cli.main(["ctl", "background", "mine"]) == 0  # the backgrounds folder, by name
    live.later(lambda s, img: (np.abs(_corner(img).astype(int) - (10, 200, 30)) <= 1).all(), "the folder's picture")
    assert cli.main(["ctl", "blur", "0.7"]) == 0 and capsys.readouterr().out.strip().endswith("background blur 0.7")
    assert cli.main(["ctl", "mirror", "on"]) == 0 and capsys.readouterr().out.strip() == "mirror on"
    assert cli.main(["ctl", "status", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["blur"] == 0.7 and s["mirror"] is True and s["effect"] is True
    assert cli.main(["ctl", "status"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "fps" in line and "mirror on" in line
    assert cli.main(["ctl", "blur", "9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vbg: error: ") and "0.1" in err
    # A video file of the user's: sent to the filter, which keeps it for its run and plays it
    # (it was refused with the cp command that would put it in the backgrounds folder)
    clip = _colour_clip(tmp_path / "waves.mp4", [(200, 120, 20)])
    assert cli.main(["ctl", "color", "#00ff00"]) == 0
    assert cli.main(["ctl", "background", str(clip)]) == 0
    shown = live.pipe.controller.background
    assert shown["id"].startswith("upload:") and capsys.readouterr().out.strip().endswith(f"background {shown['label']}")
    live.later(lambda s, img: _is_near(img, (200, 120, 20)), "the video sent from the command line")
    library = live.pipe.controller.library
    assert shown["label"].startswith("waves") and library.video(shown["id"])[2].parent == library.videos.folder
    assert clip.exists()  # played from the run's copy; the user's file untouched
    broadcast = tmp_path / "match.ts"
    broadcast.write_bytes(b"G" + bytes(187))  # one MPEG-TS packet: the suffix is what is told
    assert cli.main(["ctl", "background", str(broadcast)]) != 0
    assert "is a TS video: the filter plays mp4, m4v, mov, mkv, webm, avi, gif, apng backgrounds: convert it to mp4" \
        in capsys.readouterr().err
    # A GIF of the user's is kept and played as the video it is, sent whole or, when larger than a
    # picture may be, streamed (it was refused); one larger than a video upload is refused before
    # sending, naming the folder that plays it instead
    from media import pad_gif, write_gif
    from vbg.control.uploads import MAX_UPLOAD, MAX_VIDEO_UPLOAD

    for name, colour, at_least in (("party.gif", (255, 0, 0), 0), ("big.gif", (0, 0, 255), MAX_UPLOAD + 1)):
        assert cli.main(["ctl", "background", str(pad_gif(write_gif(tmp_path / name, [colour] * 2, [0, 50]),
                                                          at_least))]) == 0
        shown = live.pipe.controller.background
        kept = library.video(shown["id"])[2]
        assert shown["label"].startswith(name[:-4]) and kept.suffix == ".gif"
        assert kept.stat().st_size == (tmp_path / name).stat().st_size
        live.later(lambda s, img: _is_near(img, colour), f"the {name} sent from the command line")
    huge = tmp_path / "huge.gif"
    with open(huge, "wb") as f:
        f.truncate(MAX_VIDEO_UPLOAD + 1)  # sparse: no disk used
    assert cli.main(["ctl", "background", str(huge)]) != 0
    assert "a background moving picture sent to the filter may be at most 1024 MB; put it in the filter's " \
        "backgrounds folder" in capsys.readouterr().err
    photo = tmp_path / "huge.jpg"  # a still picture is sent whole: over 25 MB it is to be made smaller
    with open(photo, "wb") as f:
        f.truncate(MAX_UPLOAD + 1)
    assert cli.main(["ctl", "background", str(photo)]) != 0
    assert "a background picture may be at most 25 MB; scale it down" in capsys.readouterr().err
    shutil.copy(clip, live.folder / "waves.mp4")
    try:
        for what in (str(live.folder / "waves.mp4"), "waves"):  # its path in the folder, or its name
            assert cli.main(["ctl", "color", "#00ff00"]) == 0
            assert cli.main(["ctl", "background", what]) == 0
            assert capsys.readouterr().out.strip().endswith("background waves")
            live.later(lambda s, img: _is_near(img, (200, 120, 20)), "the folder's video")
    finally:
        (live.folder / "waves.mp4").unlink()
    # A file name with a newline and a colour code (a folder's file or an upload's name) is said
    # escaped on its one line, as every other message does, never run by the terminal
    odd = "esc\x1b[31mred\nline"
    _png(live.folder / f"{odd}.png", (30, 60, 90))
    try:
        assert cli.main(["ctl", "background", odd]) == 0
        assert capsys.readouterr().out == "background esc\\x1b[31mred\\nline\n"
        assert cli.main(["ctl", "status"]) == 0
        line = capsys.readouterr().out
        assert line.count("\n") == 1 and "\x1b" not in line and "| background esc\\x1b[31mred\\nline |" in line
    finally:
        (live.folder / f"{odd}.png").unlink()
    assert cli.main(["ctl", "background", str(tmp_path)]) == 9  # a folder: said as one, not "no such file"
    assert capsys.readouterr().err == f"vbg: error: background {tmp_path} is a folder, not a file: " \
        "give a picture or video file in it\n"


def test_vbg_ctl_says_in_one_line_when_no_filter_runs(tmp_path, capsys, monkeypatch, vbg_logging):
    run = Path(tempfile.mkdtemp(prefix="vbgn-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert cli.main(["ctl", "status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no vbg filter is running" in err
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run / "vbg").mkdir(mode=0o700)
    stale = run / "vbg" / f"vbg-{gone.pid}.json"
    stale.write_text(json.dumps({"pid": gone.pid, "port": 9, "token": "x", "socket": None, "started": 1}))
    assert cli.main(["ctl", "effect", "off"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no vbg filter is running" in err and not stale.exists()
    shutil.rmtree(run)


# ---------------------------------------------------------------------------- signals
def test_sigusr1_toggles_the_effect_and_sighup_reloads_the_config(live, tmp_path):
    conf = tmp_path / "live.toml"
    conf.write_text('[background]\ncolor = "#ff00ff"\n')
    args = cli.build_live_parser().parse_args(["--config", str(conf), "--model", "selfie", "--source", "memory",
                                               "--ui", "--no-vcam", "--record", str(tmp_path / "unused.mp4")])
    with cli._live_signals(args, live.pipe):
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(lambda: live.pipe.control.view.effect is False, "SIGUSR1 handled")
        live.later(lambda s, img: np.array_equal(img, live.camera(s)), "the camera's own frame")
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(lambda: live.pipe.control.view.effect is True, "SIGUSR1 handled again")
        os.kill(os.getpid(), signal.SIGHUP)  # the good file: magenta behind the person
        live.later(lambda s, img: (_corner(img) == (255, 0, 255)).all(), "magenta after SIGHUP")
        conf.write_text('[background]\ncolor = "#00ffff"\nfeather = 99\n')  # out of range: refused whole
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0)  # the handler runs on this thread, between two bytecodes
        live.later(lambda s, img: (_corner(img) == (255, 0, 255)).all(), "still magenta after a bad file")
    line = cli.reload_config(args, live.pipe)
    assert line.startswith(f"--config {conf} not reloaded, the running settings kept:") and "feather" in line
    conf.write_text('[background]\ncolor = "#ffff00"\nmirror = true\n[temporal]\nskip = "2"\n')
    line = cli.reload_config(args, live.pipe)
    assert line == (f"--config {conf} reloaded: applied background.color, background.mirror; "
                    "needs a restart: temporal.skip, output.record")
    live.later(lambda s, img: (_corner(img) == (255, 255, 0)).all(), "yellow after the reload")
    assert live.pipe.control.view.mirror is True


def test_a_reload_lets_go_of_the_background_it_replaced(live, tmp_path):
    """A config reload that changes the background closes the one the reload before it made: a
    video's thread ends (an animated WebP's frames, up to 256 MB, go with it). Every background a
    reload made was kept, with its thread, until the filter stopped: a script switching
    backgrounds with SIGHUP grew the filter by one thread per switch."""
    red, green = (220, 30, 30), (30, 220, 30)
    conf = tmp_path / "live.toml"
    args = cli.build_live_parser().parse_args(["--config", str(conf), "--model", "selfie", "--source", "memory",
                                               "--no-vcam", "--record", str(tmp_path / "unused.mp4")])

    def videos() -> int:
        return sum(t.name == "vbg-bg-video" for t in threading.enumerate())

    before = videos()
    for name, colour in (("red.mp4", red), ("green.mp4", green), ("red2.mp4", red)):
        conf.write_text(f'[background]\nbackground = "{_colour_clip(tmp_path / name, [colour])}"\n')
        assert "applied background.background" in cli.reload_config(args, live.pipe)
        wait_until(lambda: any(_is_near(img, colour) for _, _, img in list(live.sink.recent)[-3:]), name)
        wait_until(lambda: videos() == before + 1, f"{name}: one video background's thread, not one per reload")
    conf.write_text('[background]\ncolor = "#0000ff"\n')
    cli.reload_config(args, live.pipe)
    live.later(lambda s, img: (_corner(img) == (0, 0, 255)).all(), "blue corners")
    wait_until(lambda: videos() == before, "no video background's thread once a colour replaced it")


def test_sighup_reloads_the_default_config_file_too(live, tmp_path, monkeypatch):
    """The default config file (vbg config path) is a config file like --config: SIGHUP reads it
    again (a service started without --config is reloaded the same way); with neither file there
    nothing is reloadable and SIGHUP keeps stopping the run as a closed terminal's hang-up."""
    from vbg.userconfig import default_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    args = cli.build_live_parser().parse_args(["--model", "selfie", "--source", "memory", "--no-vcam",
                                               "--record", str(tmp_path / "unused.mp4")])
    assert cli._reloadable(args) is None
    home = default_path()
    home.parent.mkdir(parents=True)
    home.write_text('[background]\ncolor = "#00ff00"\n')
    line = cli.reload_config(args, live.pipe)
    assert line.startswith(f"the default config {home} reloaded: applied background.color"), line
    live.later(lambda s, img: (_corner(img) == (0, 255, 0)).all(), "green after the reload")
    quiet = cli.build_live_parser().parse_args(["--no-default-config", "--model", "selfie"])
    assert cli._reloadable(quiet) is None


# ---------------------------------------------------------------------------- reliability
def test_the_server_survives_a_load_of_bad_and_rude_clients(live):
    """Hundreds of requests from several threads, malformed ones, a client that sends half a request
    and stalls, clients that hang up mid-answer: the filter keeps sending frames and answers."""
    port, token = live.port, live.server.token
    head = f"Host: 127.0.0.1:{port}\r\nX-Vbg-Token: {token}\r\n"
    stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
    stalled.sendall(f"POST /api/effect HTTP/1.1\r\n{head}Content-Length: 100\r\n\r\n{{\"on\"".encode())
    statuses: list[int] = []
    lock = threading.Lock()
    requests = [
        f"GET /api/status HTTP/1.1\r\n{head}\r\n",
        f"POST /api/effect HTTP/1.1\r\n{head}Content-Length: 9\r\n\r\n{{\"on\": tr",
        f"POST /api/mirror HTTP/1.1\r\n{head}Content-Length: 13\r\n\r\n{{\"on\": false}}",
        f"POST /api/background HTTP/1.1\r\n{head}Content-Length: 999999999\r\n\r\n",
        f"GET /api/preview.jpg HTTP/1.1\r\n{head}\r\n",
        f"GET /api/backgrounds HTTP/1.1\r\n{head}\r\n",
        "GARBAGE\r\n\r\n",
        f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
        f"GET /{'x' * 70000} HTTP/1.1\r\n{head}\r\n",
    ]

    def client(k: int) -> None:
        for i in range(60):
            req = requests[(i + k) % len(requests)].encode()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(req)
                if i % 7 == 3:  # hang up without reading the answer, with a reset
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    continue
                data = s.makefile("rb").read()
            with lock:
                statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else -1)

    n0 = live.sink.count
    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert len(statuses) > 250 and -1 not in statuses
    assert set(statuses) <= {200, 400, 403, 404, 413, 414} and 200 in statuses and 400 in statuses
    status, s = live.api("GET", "/api/status")  # the stalled client holds one thread, not the server
    assert status == 200 and s["frames"] > 0
    wait_until(lambda: live.sink.count > n0 + 10, "frames still going out")
    stalled.close()


# ---------------------------------------------------------------------------- the real commands
def test_vbg_ctl_and_signals_against_a_running_vbg(tmp_path):
    """``vbg`` as a user starts it, ``vbg ctl`` from another process, and kill -USR1 / -HUP."""
    from conftest import StderrLines
    from media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", (f for f, _ in person_clip_frames(30, (H, W))), fps=30)
    conf = tmp_path / "live.toml"
    conf.write_text('[background]\ncolor = "#0000ff"\n')
    env = {**os.environ, "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="vbgs-", dir="/tmp")}
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "--config", str(conf), "--source", str(clip), "--loop",
                             "--model", "selfie", "--no-vcam", "--record", str(tmp_path / "out.mp4")],
                            stderr=subprocess.PIPE, text=True, env=env)
    err = StderrLines(proc)

    def ctl(*args):
        return subprocess.run([sys.executable, "-m", "vbg", "ctl", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    def status():
        r = ctl("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    try:
        err.wait_for(lambda ln: "control: http://127.0.0.1:" in ln, "the control line")
        assert [ln for ln in err.lines if "control:" in ln][0].strip().endswith("(vbg ctl --help)")
        wait_until(lambda: status()["frames"] > 0, "frames out")
        assert status()["effect"] is True
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: status()["effect"] is False, "SIGUSR1 turning the effect off")
        r = ctl("effect", "on")
        assert (r.returncode, r.stdout) == (0, "effect on\n")
        conf.write_text('[background]\ncolor = "#00ff00"\n[output]\nencoder = "nope"\n')
        proc.send_signal(signal.SIGHUP)
        err.wait_for(lambda ln: "not reloaded" in ln and "encoder" in ln, "the bad file refused")
        assert proc.poll() is None and status()["background"]["label"] == "#0000ff"
        conf.write_text('[background]\ncolor = "#00ff00"\n')
        proc.send_signal(signal.SIGHUP)
        err.wait_for(lambda ln: "reloaded: applied background.color" in ln, "the reload")
        assert status()["background"]["label"] == "#00ff00"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, "".join(err.lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    assert "Traceback" not in "".join(err.lines)
    r = ctl("status")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no vbg filter is running" in r.stderr
    shutil.rmtree(env["XDG_RUNTIME_DIR"])



# ---------------------------------------------------------------------------- the browser's one-time address
def test_the_browsers_one_time_address_opens_the_page_once(live):
    """The address vbg hands a browser (``--ui``, ``vbg ctl page``) holds a ticket, not the token:
    the first visit is sent on to the page's address (the token reaches the browser inside its own
    connection, never on a command line); a second visit (history, a restored session, a user who
    read it from another's command line after the browser used it) gets a page saying the link
    was for one visit, no token in it."""
    status, body = live.api("POST", "/api/ticket", {})
    assert status == 200
    ticket_url = body["url"]
    assert ticket_url.startswith(f"http://127.0.0.1:{live.port}/?ticket=") and live.server.token not in ticket_url
    path = ticket_url.split(str(live.port), 1)[1]
    status, data, resp = live.request("GET", path, token=False)
    assert status == 303 and resp.getheader("Location") == f"/?token={live.server.token}"
    assert resp.getheader("Cache-Control") == "no-store" and resp.getheader("Referrer-Policy") == "no-referrer"
    with urllib.request.urlopen(f"http://127.0.0.1:{live.port}" + resp.getheader("Location"), timeout=30) as r:
        assert r.status == 200 and b'id="' in r.read()  # the page itself
    status, data, resp = live.request("GET", path, token=False)
    text = data.decode()
    assert status == 403 and resp.getheader("Content-Type").startswith("text/html"), text
    assert "one visit" in text and "vbg ctl page" in text and live.server.token not in text
    status, data, resp = live.request("GET", "/?ticket=made-up", token=False)
    assert status == 403 and live.server.token not in data.decode()
    # the opener's (--ui) ticket was never used here: still good, once
    status, _, resp = live.request("GET", live.opened[0].split(str(live.port), 1)[1], token=False)
    assert status == 303 and resp.getheader("Location") == f"/?token={live.server.token}"


def test_a_ticket_needs_the_token_to_be_made_and_this_servers_host(live):
    """Only a holder of the token (``vbg ctl``, the page) gets a ticket; a DNS-rebinding page that
    somehow holds one is refused by its Host as every other request is."""
    status, body = live.api("POST", "/api/ticket", {}, token=False)
    assert status == 403 and "token" in body["error"]
    ticket_url = live.api("POST", "/api/ticket", {})[1]["url"]
    path = ticket_url.split(str(live.port), 1)[1]
    status, data, _ = live.request("GET", path, token=False, host="evil.example")
    assert status == 403 and "Host" in json.loads(data)["error"]
    status, _, _ = live.request("GET", path, token=False)  # not spent by the refused one
    assert status == 303


def _as_another_user(*argv: str) -> subprocess.CompletedProcess:
    """``argv`` run as user nobody (65534), root's powers dropped: another local user."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv")
                    or not shutil.which("curl"), reason="acting as another local user needs root, setpriv and curl")
def test_another_local_user_is_not_served_even_with_the_token_or_a_ticket(live):
    """Another user of the machine who read a ticket off the browser's command line (every local
    user can read /proc/PID/cmdline), or the token itself, gets no answer: their connection is
    closed unread (the ticket won them the token and the camera's picture, and a dozen held
    connections of theirs kept the page from being served). The user's own programs are served."""
    ticket_url = live.api("POST", "/api/ticket", {})[1]["url"]
    status = f"http://127.0.0.1:{live.port}/api/status"
    for argv in (["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", ticket_url],
                 ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"X-Vbg-Token: {live.server.token}",
                  status]):
        r = _as_another_user(*argv)
        assert (r.returncode, r.stdout) == (52, "000"), (argv, r)  # curl: an empty reply, the connection closed
    status_code, _, resp = live.request("GET", ticket_url.split(str(live.port), 1)[1], token=False)
    assert status_code == 303  # the user's own browser still gets in with it: not spent by the refusal
    from vbg.control.server import peer_uid, proc_uid

    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as own:
        # asked of the kernel (netlink), and read from /proc/net/tcp where netlink cannot be used
        assert peer_uid(live.port, own.getsockname()) == proc_uid(live.port, own.getsockname()) == os.getuid()


def test_a_ticket_lapses_after_two_minutes_and_only_sixteen_wait():
    """A ticket is good for ``TICKET_S`` (a browser starting cold takes seconds, a snap's first
    start tens of them), then refused; more than sixteen outstanding: the oldest go. The clock is
    the test's."""
    from urllib.parse import parse_qs, urlsplit

    from vbg.control.server import MAX_TICKETS, TICKET_S, Tickets

    now = [1000.0]
    tickets = Tickets(clock=lambda: now[0])
    tickets.port = 1234

    def ticket() -> str:
        return parse_qs(urlsplit(tickets.url()).query)["ticket"][0]

    a, b = ticket(), ticket()
    now[0] += TICKET_S - 1
    assert tickets.redeem(a) and not tickets.redeem(a)
    now[0] += 1
    assert not tickets.redeem(b)  # lapsed
    many = [ticket() for _ in range(MAX_TICKETS + 2)]
    assert not tickets.redeem(many[0]) and not tickets.redeem(many[1])
    assert all(tickets.redeem(t) for t in many[2:])
    assert not tickets.redeem("")


# ---------------------------------------------------------------------------- the control page's audit
def test_the_page_without_its_token_is_a_page_saying_how_to_open_it(live):
    """A browser that opens the page's address without its token gets a page (403) saying how to
    open it, in the page's style, no script: it got the API's raw JSON. The API keeps its JSON."""
    for path in ("/", "/index.html", "/?token=wrong"):
        status, data, resp = live.request("GET", path, token=False)
        text = data.decode()
        assert status == 403 and resp.getheader("Content-Type").startswith("text/html"), (path, text)
        assert "token" in text and "vbg ctl page" in text and "<script" not in text
        # a bookmark of an earlier run's address is the common case: said too (it said "lacks its token")
        assert "earlier run" in text, text
        assert "script-src" not in resp.getheader("Content-Security-Policy")  # default-src 'none': none runs
    status, body = live.api("GET", "/api/status", token=False)
    assert status == 403 and "token" in body["error"]
    status, data, resp = live.request("GET", "/", token=False, host="evil.example")
    assert status == 403 and "Host" in json.loads(data)["error"]  # a rebinding page gets no page


def test_the_icon_needs_no_token(live):
    """/favicon.ico (asked for by every browser, without the page's token) is a small icon: it was a
    403, a console error on each load; the page declares its icon too."""
    status, data, resp = live.request("GET", "/favicon.ico", token=False)
    assert status == 200 and resp.getheader("Content-Type") == "image/svg+xml" and b"<svg" in data
    page = live.request("GET", "/")[1].decode()
    assert 'rel="icon"' in page
    href = page.split('rel="icon"')[1].split('href="')[1].split('"')[0]
    status, data, resp = live.request("GET", href, token=False)
    assert status == 200 and resp.getheader("Content-Type").startswith("image/")


def test_upload_labels_are_numbered_only_when_they_clash(live):
    """An upload is labelled by its name; a number is added only when that label is taken already
    (every upload got one: "tiny 3")."""
    png = _png(Path(tempfile.mkdtemp()) / "x.png", (9, 9, 9)).read_bytes()
    labels = []
    for name in ("tiny-unique.png", "tiny-unique.png", "mine.png"):
        status, body = live.api("POST", "/api/upload", png, headers={"Content-Type": "image/png", "X-Vbg-Name": name})
        assert status == 200
        labels.append(live.pipe.controller.library.label(body["id"]))
    assert labels == ["tiny-unique", "tiny-unique 2", "mine 2"]  # "mine": the folder's picture's label


def test_thumbnails_are_versioned_cached_and_remade_when_the_file_changes(live):
    """A thumbnail's address names its file's version: the browser may keep it (it re-fetched and the
    server re-decoded every one on each listing); a changed file gets a new address and picture;
    the status carries a fingerprint of the listing, so the page knows when to list again."""
    path = live.folder / "changing.png"
    try:
        _png(path, (200, 30, 30))
        items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
        version = live.api("GET", "/api/status")[1]["backgrounds_version"]
        thumb = items["folder:changing.png"]["thumb"]
        assert "?v=" in thumb
        status, data, resp = live.request("GET", thumb)
        kept = resp.getheader("Cache-Control")
        assert status == 200 and "private" in kept and "max-age" in kept
        # the address holds this run's token (no later run reuses it): hours, not the month a
        # private photo stayed in the browser's disk cache after it was removed
        assert 0 < int(kept.partition("max-age=")[2].partition(",")[0]) <= 24 * 3600, kept
        assert np.abs(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[20, 80] - (30, 30, 200)).max() < 30
        status, _, resp = live.request("GET", thumb.partition("?")[0])
        assert status == 200 and resp.getheader("Cache-Control") == "no-store"  # no version named: not kept
        _png(path, (30, 30, 200))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        # status reuses the folder's listing for a moment (it read the whole folder on every poll)
        wait_until(lambda: live.api("GET", "/api/status")[1]["backgrounds_version"] != version,
                   "the status to tell the folder changed")
        again = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}["folder:changing.png"]["thumb"]
        assert again != thumb
        status, data, _ = live.request("GET", again)
        assert np.abs(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[20, 80] - (200, 30, 30)).max() < 30
        status, _, resp = live.request("GET", thumb)  # the old version's address: today's picture, not kept
        assert status == 200 and resp.getheader("Cache-Control") == "no-store"
    finally:
        path.unlink(missing_ok=True)


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an EXIF APP1 segment that holds only the Orientation tag."""
    import struct

    tiff = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(">I", 0)
    app1 = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_a_big_jpeg_thumbnail_is_decoded_reduced_and_a_large_folder_stays_cached(tmp_path, monkeypatch):
    """A 24 Mpx photo's thumbnail is decoded at an eighth of its size (it was decoded whole: a
    quarter of a second of a core each), turned as its EXIF says; a folder of 300 pictures'
    thumbnails are all kept (64 were: every listing decoded them all again)."""
    from vbg.control import library as library_module
    from vbg.control.library import Library

    h, w = 4000, 6000
    photo = np.zeros((h, w, 3), np.uint8)
    photo[:, : w // 2] = (0, 0, 255)  # BGR: red on the left, blue on the right
    photo[:, w // 2:] = (255, 0, 0)
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 80])
    (tmp_path / "photo.jpg").write_bytes(_with_orientation(jpeg.tobytes(), 6))  # turned a quarter clockwise
    flags = []
    real_decode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: flags.append(flag) or real_decode(data, flag))
    lib = Library(tmp_path)
    thumb = cv2.imdecode(np.frombuffer(lib.thumb("folder:photo.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert any(f & ~cv2.IMREAD_IGNORE_ORIENTATION == cv2.IMREAD_REDUCED_COLOR_8 for f in flags), flags
    assert thumb.shape[1] == 160 and thumb.shape[0] == 240  # portrait: turned
    assert np.abs(thumb[10, 80].astype(int) - (0, 0, 255)).max() < 40  # red on top now
    assert np.abs(thumb[-10, 80].astype(int) - (255, 0, 0)).max() < 40
    for k in range(300):
        cv2.imwrite(str(tmp_path / f"p{k:03d}.png"), np.full((9, 16, 3), k % 256, np.uint8))
    made = []
    real = library_module.encode_jpeg
    monkeypatch.setattr(library_module, "encode_jpeg", lambda *a, **kw: made.append(1) or real(*a, **kw))
    ids = [i["id"] for i in lib.items() if i["id"].startswith("folder:p")]
    for bid in ids:
        lib.thumb(bid)
    assert len(made) == 300
    for bid in ids:
        lib.thumb(bid)
    assert len(made) == 300  # none made again


@pytest.mark.parametrize("moving", [False, True], ids=["picture", "animated PNG"])
def test_a_tall_strip_upload_has_a_thumbnail(tmp_path, moving):
    """A picture 800 times as tall as it is wide (a strip; or a damaged file's stated size) sent
    to the control page: kept, with a thumbnail no taller than four widths. Scaled to the
    thumbnail's width it was 128,000 pixels tall, over JPEG's limit: the upload failed with
    "a JPEG could not be encoded", and a moving one stayed on disk, unlisted."""
    from media import write_animation
    from vbg.control.library import THUMB_WIDTH, Library
    from vbg.control.uploads import VideoUploads

    size = (8000, 10)  # h, w
    if moving:
        data = write_animation(tmp_path / "strip.apng", "apng", [(255, 0, 0), (0, 0, 255)], size=size).read_bytes()
    else:
        data = cv2.imencode(".png", np.full((*size, 3), (0, 0, 255), np.uint8))[1].tobytes()
    lib = Library(tmp_path / "none", uploads=VideoUploads(tmp_path / "uploads"))
    try:
        bid = lib.add_upload(data, "strip.png")
        assert (lib.video(bid) is not None) == moving
        thumb = cv2.imdecode(np.frombuffer(lib.thumb(bid), np.uint8), cv2.IMREAD_COLOR)
        assert thumb.shape[0] == 4 * THUMB_WIDTH and 1 <= thumb.shape[1] <= 2, thumb.shape
        assert np.abs(thumb[thumb.shape[0] // 2, 0].astype(int) - (0, 0, 255)).max() < 40  # BGR: red
    finally:
        lib.close()


def test_a_folder_file_whose_name_is_not_utf8_has_a_thumbnail_and_can_be_picked(live):
    """A file named in Latin-1 (``caf\\xe9.png``, as an old camera or a Windows copy leaves it) is listed,
    its thumbnail found (it was a 404: its quoted address was unquoted with U+FFFD), it can be
    picked by its id, and its label is readable text."""
    raw = os.path.join(os.fsencode(live.folder), b"caf\xe9.png")
    ok, png = cv2.imencode(".png", np.full((40, 60, 3), (30, 30, 200), np.uint8))  # BGR: a red
    with open(raw, "wb") as f:  # (OpenCV's imwrite takes no such name)
        f.write(png.tobytes())
    try:
        items = {i["id"]: i for i in live.api("GET", "/api/backgrounds")[1]["items"]}
        bid = "folder:caf\udce9.png"  # the bytes as os.listdir gives them
        assert bid in items, sorted(items)
        item = items[bid]
        assert item["thumb"].startswith("/api/thumb/folder:caf%E9.png?v="), item
        status, data, _ = live.request("GET", item["thumb"])
        assert status == 200, data
        assert item["label"] == "caf\ufffd", item  # shown: no lone surrogate for the browser to mangle
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(img[20, 80].astype(int) - (30, 30, 200)).max() < 30
        status, body = live.api("POST", "/api/background", {"id": bid})
        assert status == 200 and body["background"] == {"id": bid, "label": "caf\ufffd"}, body
        live.later(lambda seq, img: _is_near(img, (200, 30, 30), 30), "the picked picture behind the person")
        assert live.api("GET", "/api/status")[1]["background"]["label"] == "caf\ufffd"
    finally:
        os.unlink(raw)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_another_site_cannot_tell_that_vbg_runs(live, site):
    """Another site's page (``<img src=http://127.0.0.1:PORT/favicon.ico>``, whose onload told it vbg
    runs and on which port; or an iframe of ``/``) gets the JSON 403 of any request without the
    token; the browser's own requests (a typed address, the page's icon) and clients that send no
    ``Sec-Fetch-Site`` get the icon and the page that says how to open it."""
    for path in ("/favicon.ico", "/"):
        status, data, resp = live.request("GET", path, token=False, headers={"Sec-Fetch-Site": site})
        assert status == 403 and resp.getheader("Content-Type") == "application/json", (path, data)
        assert "token" in json.loads(data)["error"]
    for own in ({"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "same-origin"}, {}):
        status, data, resp = live.request("GET", "/favicon.ico", token=False, headers=own)
        assert status == 200 and b"<svg" in data, own
        status, data, resp = live.request("GET", "/", token=False, headers=own)
        assert status == 403 and resp.getheader("Content-Type").startswith("text/html"), own
    # with the token, the page itself is served whatever the site says (its own requests carry it)
    status, _, resp = live.request("GET", "/", headers={"Sec-Fetch-Site": "none"})
    assert status == 200 and resp.getheader("Content-Type").startswith("text/html")


def test_status_polls_do_not_read_a_big_folder_each_time(tmp_path, monkeypatch):
    """``version()`` (each status poll: once a second per open page, per vbg ctl status) reuses the
    folder's listing for ``LISTING_REUSE_S`` (it lstat()ed every file of the folder on every call:
    48 ms for 5000 files, the GIL held against the render thread) and stats only the files it lists
    (``FOLDER_MAX``); a change is seen once that time has passed. The clock is the test's."""
    from vbg.control import library as library_module
    from vbg.control.library import FOLDER_MAX, LISTING_REUSE_S, Library

    for k in range(FOLDER_MAX + 20):
        (tmp_path / f"p{k:04d}.png").write_bytes(b"x")
    (tmp_path / "zz-dir.png").mkdir()
    now = [1000.0]
    monkeypatch.setattr(library_module, "_clock", lambda: now[0], raising=False)
    scans = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: (scans.append(p) if Path(p) == tmp_path else None) or real(p))
    lib = Library(tmp_path)
    items, listed = lib.listing()
    assert len([i for i in items if i["kind"] == "folder"]) == FOLDER_MAX
    assert [lib.version() for _ in range(5)] == [listed] * 5
    assert len(scans) == 1  # the listing's own scan, reused
    (tmp_path / "p0000.png").write_bytes(b"changed")
    os.utime(tmp_path / "p0000.png", ns=(0, 12345))
    assert lib.version() == listed  # within the reuse time: the same
    now[0] += LISTING_REUSE_S + 0.01
    changed = lib.version()
    assert changed != listed and len(scans) == 2
    assert lib.listing()[1] == changed
