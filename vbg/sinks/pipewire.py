"""The PipeWire camera (Linux): a video source node that apps list as a camera, no kernel module.

In: RGB uint8 frames of one size from :class:`~vbg.sinks.virtual_camera.VirtualCameraSink`'s
pacing thread (``--vcam-backend pipewire``, or ``auto`` where there is no v4l2loopback device
but PipeWire runs): this module is the camera behind that sink, so the pacing, the repeats and
the counters are the virtual camera's. Out: a PipeWire node with ``media.class`` Video/Source and
``media.role`` Camera (what the camera portal and WebRTC's PipeWire capture look for), frames in
I420 (a format every PipeWire camera reader takes).

How: a ``gst-launch-1.0`` child, fed raw RGB on its stdin::

    fdsrc ! rawvideoparse (the frame size) ! videoconvert ! I420 ! identity ! pipewiresink mode=provide

``identity drop-allocation=true`` keeps videoconvert from writing into pipewiresink's own buffer
pool, which crashes PipeWire 0.3's plugin. The child runs in its own session, so the terminal's
Ctrl-C reaches vbg alone, and vbg ends it (end of stream, then a signal) on close. It needs the
GStreamer tools and base plugins, GStreamer's PipeWire plugin and a running PipeWire with its
session manager; :func:`camera_problem` says which is missing, with the package to install.

With no app reading, or a slow one, pipewiresink drops frames and the child keeps reading. A
child that stops, or takes no data for 3 s, fails the sink with its reason (the sink's
``check()``, next ``send()`` or ``close()``). The start-up returns once the child has rendered its
first frame: an app that links before that gets empty buffers from PipeWire 0.3's plugin.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import select
import shutil
import socket
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from vbg.errors import ConfigError, SinkError

GST_LAUNCH = "gst-launch-1.0"
GST_INSPECT = "gst-inspect-1.0"
NODE_NAME = "vbg"  # the node's name (--vcam-device NAME picks another), what pw-cli and target-object use
DESCRIPTION = "vbg virtual camera"  # what apps show in their camera list

TOOLS_HINT = "install GStreamer: sudo apt install gstreamer1.0-tools gstreamer1.0-plugins-base (or your distribution's)"
PLUGIN_HINT = ("install GStreamer's PipeWire plugin: sudo apt install gstreamer1.0-pipewire "
               "(Fedora: pipewire-gstreamer, Arch: gst-plugin-pipewire)")
DAEMON_HINT = ("start PipeWire and its session manager: systemctl --user start pipewire wireplumber "
               "(packages pipewire and wireplumber)")

_START_S = 30.0  # the child reaches PLAYING or exits well within this: it only bounds a hang
_STALL_S = 3.0  # a child that takes no byte of a frame for this long is stuck (under the sink's 5 s join)
_END_S = 5.0  # end of stream to exit, before a signal
_PAGE = 4096  # the smallest pipe Linux makes
_TAIL = 20  # lines of the child's output kept for the error message
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def socket_path(env: dict[str, str] | None = None) -> Path | None:
    """Where a PipeWire client connects, as libpipewire finds it: ``PIPEWIRE_REMOTE`` (default
    ``pipewire-0``) in ``PIPEWIRE_RUNTIME_DIR``, else ``XDG_RUNTIME_DIR``; None: no runtime folder."""
    env = os.environ if env is None else env
    remote = env.get("PIPEWIRE_REMOTE") or "pipewire-0"
    if remote.startswith("/"):
        return Path(remote)
    folder = env.get("PIPEWIRE_RUNTIME_DIR") or env.get("XDG_RUNTIME_DIR")
    return Path(folder, remote) if folder else None


def daemon_problem(env: dict[str, str] | None = None) -> str | None:
    """Why no PipeWire daemon answers (its socket is missing or refuses), or None when one does."""
    path = socket_path(env)
    if path is None:
        return "PipeWire is not reachable (neither PIPEWIRE_RUNTIME_DIR nor XDG_RUNTIME_DIR is set)"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5.0)
        try:
            s.connect(str(path))
        except OSError as e:
            why = "no such socket" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
            return f"PipeWire is not running ({path}: {why})"
    return None


def plugin_present(inspect: str, env: dict[str, str] | None = None) -> bool:
    """Whether GStreamer knows ``pipewiresink`` (``gst-inspect-1.0`` at path ``inspect``, with the
    ``GST_*`` variables of ``env``); asked once per process and setting (a start-up asks it from the
    preflight, the precheck and the open)."""
    gst = tuple(sorted((k, v) for k, v in (os.environ if env is None else env).items() if k.startswith("GST_")))
    return _inspect_pipewiresink(inspect, gst)


@functools.lru_cache(maxsize=8)
def _inspect_pipewiresink(inspect: str, gst: tuple[tuple[str, str], ...]) -> bool:
    env = {k: v for k, v in _child_env(None).items() if not k.startswith("GST_")}
    try:
        done = subprocess.run([inspect, "pipewiresink"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60, env={**env, **dict(gst)})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def camera_problem(env: dict[str, str] | None = None) -> SinkError | None:
    """Without publishing anything: why a PipeWire camera cannot be published (the GStreamer tools,
    the PipeWire plugin, the daemon), each with what to install or start; None when it can."""
    path = (env or os.environ).get("PATH")
    if shutil.which(GST_LAUNCH, path=path) is None:
        return SinkError(f"the PipeWire camera needs {GST_LAUNCH}, which is not installed: {TOOLS_HINT}")
    daemon = daemon_problem(env)
    if daemon is not None:
        return SinkError(f"no PipeWire camera: {daemon}: {DAEMON_HINT}")
    inspect = shutil.which(GST_INSPECT, path=path)
    if inspect is not None and not plugin_present(inspect, env):
        return SinkError(f"no PipeWire camera: GStreamer has no pipewiresink element: {PLUGIN_HINT}")
    return None


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    out["LC_ALL"] = "C"  # gst-launch's state lines and errors in English: they are read below
    return out


def _pipeline(width: int, height: int, fps: float, name: str, description: str) -> list[str]:
    rate = Fraction(fps).limit_denominator(1001)
    # Every value a quoted string: GstStructure reads a bare t, yes or 1 as a boolean or a number.
    fields = {"media.class": "Video/Source", "media.role": "Camera", "node.name": name, "node.description": description}
    props = "props," + ",".join(f'{k}=(string)\\"{v}\\"' for k, v in fields.items())
    return [
        GST_LAUNCH, "--gst-disable-segtrap",  # a crash exits instead of waiting for a debugger
        "fdsrc", "fd=0", "!",
        "rawvideoparse", f"width={width}", f"height={height}", "format=rgb",
        f"framerate={rate.numerator}/{rate.denominator}", "!",
        "videoconvert", "!", "video/x-raw,format=I420", "!",
        "identity", "drop-allocation=true", "!",
        "pipewiresink", "mode=provide", "sync=false", "client-name=vbg", f'stream-properties="{props}"',
    ]


@contextlib.contextmanager
def _small_pipe(fd: int):
    """The pipe ``fd`` holds one page while the block runs (a write returns only once the reader
    has taken all but a page of it), then a megabyte (fewer wake-ups per frame) where allowed."""
    import fcntl  # Linux only, as this camera

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PAGE)
    except OSError:  # pragma: no cover - a page is always allowed
        pass
    try:
        yield
    finally:
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:  # above /proc/sys/fs/pipe-max-size, or the reader is gone: the default stays
            pass


def describe_exit(status: int | None, lines: list[str]) -> str:
    """One line for a gst-launch child that stopped: what is missing and how to get it, else its error."""
    text = "\n".join(lines)
    if 'no element "pipewiresink"' in text:
        return f"GStreamer has no pipewiresink element: {PLUGIN_HINT}"
    missing = re.search(r'no element "([^"]+)"', text)
    if missing:
        return f"GStreamer has no {missing.group(1)} element: {TOOLS_HINT}"
    if "Failed to connect" in text:
        return f"pipewiresink could not connect to PipeWire: {DAEMON_HINT}"
    errors = [ln.strip() for ln in lines if "ERROR" in ln] or [ln.strip() for ln in lines if ln.strip()]
    reason = errors[0] if errors else "no output"
    how = "still running" if status is None else (f"killed by signal {-status}" if status < 0 else f"exit {status}")
    return f"{GST_LAUNCH} stopped ({how}): {reason}"


class PipeWireCamera:
    """A PipeWire camera node fed through a ``gst-launch-1.0`` child: what
    :class:`~vbg.sinks.virtual_camera.VirtualCameraSink` drives (``send`` a frame, ``close`` once).

    ``name``: the node's name (default ``vbg``; letters, digits, ``.``, ``_``, ``-``).
    ``env``: the child's environment (default: this process's), where it finds PipeWire.
    Raises :class:`SinkError` with what to install or start when the node cannot be published,
    :class:`ConfigError` for a bad name.
    """

    backend = "pipewire"
    native_fmt = None  # the node carries I420; vbg hands over RGB and the child converts

    def __init__(self, width: int, height: int, fps: float, *, name: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        name = NODE_NAME if name is None else name
        if not _NAME_RE.fullmatch(name):
            raise ConfigError(f"PipeWire camera name {name!r} is invalid: use up to 64 letters, digits, '.', '_', '-'")
        problem = camera_problem(env)
        if problem is not None:
            raise problem
        self.width, self.height = width, height
        self.device = name
        self.description = DESCRIPTION if name == NODE_NAME else f"{DESCRIPTION} ({name})"
        self._frame_bytes = width * height * 3
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self._playing = threading.Event()
        self._ended = threading.Event()
        self._closed = False
        try:
            self._proc = subprocess.Popen(
                _pipeline(width, height, fps, name, self.description), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(env),
                start_new_session=True)  # the terminal's Ctrl-C is vbg's to handle, not the child's
        except OSError as e:
            raise SinkError(f"the PipeWire camera could not start {GST_LAUNCH}: {e}: {TOOLS_HINT}") from e
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)  # a write takes what fits; select() bounds the wait for more
        self._reader = threading.Thread(target=self._read_output, name="vbg-pipewire-log", daemon=True)
        self._reader.start()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """The gst-launch child's process id."""
        return self._proc.pid

    def _start(self) -> None:
        # fdsrc is not live: the pipeline prerolls (and connects to PipeWire) on the first frame.
        black = memoryview(bytes(self._frame_bytes))
        with _small_pipe(self._fd):
            self._write(black)
            if not self._playing.wait(_START_S):
                raise SinkError(f"the PipeWire camera did not start within {_START_S:g} s: {self._why()}")
            if self._ended.is_set():
                raise SinkError(f"the PipeWire camera did not start: {self._why()}")
            # pipewiresink sizes its buffers when it renders its first frame; an app that links
            # before that gets empty buffers and no picture ever (PipeWire 0.3). The elements run in
            # one thread, so once the child has read a page past the first frame it has rendered
            # it: with the pipe a page long, writing these frames waits for that.
            for _ in range(max(2, _PAGE * 2 // self._frame_bytes + 2)):
                self._write(black)

    def _read_output(self) -> None:
        try:
            for raw in self._proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail.append(line)
                if line.startswith("Setting pipeline to PLAYING"):
                    self._playing.set()
        finally:
            self._ended.set()
            self._playing.set()  # wakes a start-up wait; _start tells the two apart by _ended

    def _why(self) -> str:
        self._ended.wait(2.0)  # the child's last words, when it is on its way out
        return describe_exit(self._proc.poll(), list(self._tail))

    def check(self) -> None:
        """Raise :class:`SinkError` when the child has stopped."""
        if self._proc.poll() is not None:
            raise SinkError(f"the PipeWire camera stopped: {self._why()}")

    def send(self, frame: np.ndarray) -> None:
        """Write one H x W x 3 RGB frame to the child (all of it: the stream is framed by size)."""
        if frame.nbytes != self._frame_bytes:
            raise ValueError(f"unexpected frame size: {frame.nbytes} bytes != {self._frame_bytes}")
        self._write(memoryview(np.ascontiguousarray(frame)).cast("B"))

    def _write(self, data: memoryview) -> None:
        done, total = 0, len(data)
        while done < total:
            _, ready, _ = select.select([], [self._fd], [], _STALL_S)
            if not ready:
                self.check()
                raise SinkError(f"the PipeWire camera ({GST_LAUNCH}) took no frame data for {_STALL_S:g} s")
            try:
                done += os.write(self._fd, data[done:])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise SinkError(f"the PipeWire camera stopped: {self._why()}") from None

    def close(self) -> None:
        """End the stream, wait for the child (then signal it), reap it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        try:
            proc.stdin.close()  # end of stream: gst-launch stops the pipeline and exits
        except OSError:
            pass
        try:
            proc.wait(_END_S)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(_END_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reader.join(_END_S)
        proc.stdout.close()
