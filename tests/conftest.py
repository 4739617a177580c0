"""Shared fixtures: test media live in tests/data; models are exported once per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
PEOPLE = DATA / "people"
RMBG_TEST_SIZE = (128, 128)  # small: the export's cost is in the weights, not the size


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_alpha(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def iou(pred: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> float:
    p, t = pred >= thr, truth >= thr
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


@pytest.fixture(scope="session")
def people() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB image, alpha truth) for the webcam-like person over three rooms."""
    out = []
    for img in sorted(PEOPLE.glob("example03_background0?.jpg")):
        out.append((img.stem, read_rgb(img), read_alpha(img.with_name(img.stem + "_alpha.png"))))
    assert len(out) == 3
    return out


@pytest.fixture(scope="session")
def rmbg_net():
    """Random-init IS-Net (seed 0), the module the ONNX fixtures are exported from.

    Building and exporting it needs the torch extra: without it every test that
    uses an RMBG export skips, and the rest of the suite still runs."""
    pytest.importorskip("torch", reason="the RMBG export fixtures need the torch extra: pip install -e '.[torch]'")
    pytest.importorskip("onnx", reason="the RMBG export fixtures need the torch extra: pip install -e '.[torch]'")
    from vbg.models.export import build_rmbg

    return build_rmbg(None, seed=0)


@pytest.fixture(scope="session")
def rmbg_onnx(tmp_path_factory, rmbg_net) -> Path:
    """Fixed-shape random-init RMBG-1.4 export at RMBG_TEST_SIZE, made once."""
    from vbg.models.export import export_onnx

    out = tmp_path_factory.mktemp("rmbg") / "rmbg14_random_128.onnx"
    return export_onnx(rmbg_net, out, size_hw=RMBG_TEST_SIZE)


@pytest.fixture(scope="session")
def rmbg_onnx_dynamic(tmp_path_factory, rmbg_net) -> Path:
    from vbg.models.export import export_onnx

    out = tmp_path_factory.mktemp("rmbg") / "rmbg14_random_dynamic.onnx"
    return export_onnx(rmbg_net, out, dynamic=True)


@pytest.fixture(scope="session", autouse=True)
def _own_vbg_cache(tmp_path_factory):
    """The suite never reads or writes the user's own vbg cache (~/.cache/vbg: kept --workers
    choices, TensorRT engines): a session folder, unless the run names one itself."""
    if "VBG_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["VBG_CACHE_DIR"] = str(tmp_path_factory.mktemp("vbg-cache"))
    try:
        yield
    finally:
        os.environ.pop("VBG_CACHE_DIR", None)


@contextlib.contextmanager
def _environ_restored(names):
    """The variables ``names`` as they were before the block, whatever it set or removed."""
    saved = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _no_user_config(tmp_path_factory):
    """The suite never reads the user's own default config file or their VBG_* settings: an empty
    config folder (XDG_CONFIG_HOME, APPDATA) and none of the settings' variables, for this process
    and the vbg processes it starts (nor tells a CI runner's systemd anything: no NOTIFY_SOCKET)."""
    from vbg.userconfig import env_settings

    with _environ_restored(("XDG_CONFIG_HOME", "APPDATA", "NOTIFY_SOCKET", *env_settings())):
        home = str(tmp_path_factory.mktemp("config-home"))
        os.environ.update(XDG_CONFIG_HOME=home, APPDATA=home)
        for var in ("NOTIFY_SOCKET", *env_settings()):  # NOTIFY_SOCKET: a CI runner's own, not for vbg to answer
            os.environ.pop(var, None)
        yield


@pytest.fixture(scope="session", autouse=True)
def _no_user_pipewire(tmp_path_factory):
    """The suite never publishes a camera in the user's own PipeWire, and a desktop's PipeWire does
    not turn the no-camera tests into PipeWire-camera runs: PipeWire is looked for in an empty folder
    (tests/integration/test_pipewire.py starts a daemon of its own and points there)."""
    with _environ_restored(("PIPEWIRE_RUNTIME_DIR", "PIPEWIRE_REMOTE")):
        os.environ.pop("PIPEWIRE_REMOTE", None)
        os.environ["PIPEWIRE_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("no-pipewire"))
        yield


def unreadable_to_child(path: Path) -> list[str]:
    """``path`` made unreadable to a child process started with the prefix returned: mode 0600 and
    another owner; as root (who passes every permission check), the child runs without root's
    capabilities (``setpriv``), so that the mode holds for it."""
    if os.geteuid() != 0:
        path.chmod(0o000)
        return []
    os.chown(path, 65534, 65534)
    path.chmod(0o600)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's capabilities for this test"
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all"]


def run_vbg(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed CLI as a user runs it: a separate process, its own env."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vbg", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def x_display(tmp_path):
    """A virtual X display of this test's own: the environment for a child process to use it.

    Xvfb picks a free display number itself and writes it to -displayfd once it accepts
    connections, so two runs on one machine (CI jobs side by side) never race for a number
    the way `xvfb-run -a` does by probing lock files. Its log comes back in failure messages.
    """
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("needs Xvfb for a window (apt install xvfb)")
    log_path = tmp_path / "xvfb.log"
    read_end, write_end = os.pipe()
    with open(log_path, "wb") as log:
        server = subprocess.Popen([xvfb, "-displayfd", str(write_end), "-nolisten", "tcp", "-screen", "0", "1280x800x24"],
                                  pass_fds=(write_end,), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as ready:
            number = ready.readline().strip()  # EOF (b"") when Xvfb exits without a display
        if not number.isdigit():
            server.wait(timeout=30)
            pytest.fail(f"Xvfb did not start (exit {server.returncode}): {log_path.read_text(errors='replace')}")
        env = {k: v for k, v in os.environ.items() if k not in ("XAUTHORITY", "WAYLAND_DISPLAY")}
        yield {**env, "DISPLAY": f":{number.decode()}", "VBG_TEST_XVFB_LOG": str(log_path)}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def x_failure(proc: subprocess.CompletedProcess, display: dict) -> str:
    """A window test's failure message: the client's stderr and what the X server logged."""
    log = Path(display["VBG_TEST_XVFB_LOG"]).read_text(errors="replace")
    return f"{proc.stderr}\n--- Xvfb ({display['DISPLAY']}) ---\n{log}"


@pytest.fixture
def offline_env(tmp_path) -> dict:
    """An empty hub cache and a hub that cannot be reached (.invalid never resolves)."""
    return {
        "HF_HOME": str(tmp_path / "hf"),
        "VBG_CACHE_DIR": str(tmp_path / "vbg-cache"),
        "HF_ENDPOINT": "http://vbg-no-such-host.invalid",
        "HF_TOKEN": "",
    }


@pytest.fixture
def vbg_logging():
    """main() run in this process sets up the "vbg" logger on the captured stderr: put it back after."""
    import logging

    log = logging.getLogger("vbg")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def vbg_records(vbg_logging, caplog):
    """``caplog`` with the "vbg" logger's records reaching it: an earlier in-process ``main()`` may
    have left that logger with its own handlers (on a stderr since closed) and without propagation."""
    import logging

    log = logging.getLogger("vbg")
    log.handlers[:], log.propagate = [], True
    return caplog


class StderrLines:
    """A child's stderr read line by line as it comes, so a test can wait for what it prints."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import threading

        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    def wait_for(self, seen, what: str, timeout: float = 300.0) -> None:
        """Until ``seen(line)`` holds for a line; the time-out only guards against a hang."""
        import time

        end = time.monotonic() + timeout
        while not any(seen(ln) for ln in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"no {what} on stderr (exit {self.proc.poll()}):\n{''.join(self.lines)}")
            time.sleep(0.01)

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc, "".join(self.lines)


def wait_until_vbg_handles(proc: subprocess.Popen, sig: int, timeout: float = 300.0) -> None:
    """Until the child's own code catches ``sig`` (vbg's __main__ sets this up first thing), so a
    signal sent after it meets vbg and not a Python interpreter that is still starting: on a
    loaded machine that takes anything from 20 ms to seconds. Read from /proc (Linux)."""
    import time

    if not os.path.exists("/proc/self/status"):  # no /proc (macOS): give the interpreter a second
        time.sleep(1.0)
        return
    end = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                caught = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))
        except (FileNotFoundError, StopIteration):
            caught = 0
        if caught & (1 << (sig - 1)) and caught & (1 << (signal.SIGTERM - 1)):
            return
        if proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"the child never caught signal {sig} (exit {proc.poll()})")
        time.sleep(0.005)


def progress_shows_frames(total: int):
    """A ``vbg process`` progress line (written to a log every few seconds) with frames done."""
    import re

    def seen(line: str) -> bool:
        m = re.search(rf"(\d+)/{total} frames", line)
        return m is not None and int(m.group(1)) > 0

    return seen


def pytest_collection_modifyitems(session, config, items):
    """The Ray tests run last: a Ray driver leaves threads and modules in this process after
    ray.shutdown(), and no other test should run beside them. (They were first moved for
    test_resources' memory check, which failed after them; it failed without them too, the
    allocator's arenas in a long session, and now measures its batch in a fresh interpreter.)"""
    items.sort(key=lambda item: item.nodeid.startswith("tests/integration/test_ray.py"))


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str):
    """``folder`` (made here) on a tmpfs of ``size`` (``mount -o size=``: "16k", "300m") while in
    use: a small disk to fill. Mounting needs root: the test skips without it, saying so."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
