"""The virtual camera: pyvirtualcam fed at a fixed rate from its own thread.

In: ``send(composite)`` with RGB uint8 composites of the sink's size, from the
render thread. ``send()`` copies into one of three preallocated buffers (one
being sent, one waiting, one being filled) and returns: the caller may reuse
its own buffer at once, and the camera never shows a half-overwritten picture.
Out: frames to the camera device at ``fps``, sent by the sink's own pacing
thread: the newest composite if one arrived since the last tick, else the
previous one again (a *repeat*); a composite replaced before any tick sent it
is *dropped*; before the first composite, black frames (*blank*), so apps see
the device come alive at once; a pacing thread more than one frame behind
skips the missed ticks (*late*) instead of bursting. Video-call apps expect a
steady rate; composites arrive whenever the renderer finishes one.

``set_rate`` slows the pacing (the idle still picture: 1 fps) and restores it.

The pacing thread reads ``clock.now()`` and waits in short real-time slices;
it never calls ``clock.sleep``, so a fake clock shared with other stages is
only ever moved by whoever drives it.

Before any of that, :func:`precheck` tells without opening anything whether there is a device
to open (Linux: a v4l2loopback device, or a PipeWire camera: :func:`choose_backend`), and the
hints say how to get one. Backend ``pipewire`` is vbg's own (:mod:`vbg.sinks.pipewire`), the
others are pyvirtualcam's.
"""

from __future__ import annotations

import glob
import math
import platform
import sys
import threading
from pathlib import Path

import numpy as np

from vbg.clock import Clock, MonotonicClock
from vbg.errors import ConfigError, DependencyError, SinkError, one_line
from vbg.sinks import SinkBase, SinkStats, check_geometry, check_image
from vbg.types import Composite

_POLL_S = 0.005  # longest real-time wait between looks at the clock and the stop flag
# A new composite is sent as it comes once this share of a frame interval has gone since the last
# new one went (else when it has): new frames reach the device at most at 1/EARLY of its rate, and
# the camera's frames wait for no tick of the sink's own clock
EARLY = 0.9
HOLD = 0.5  # after a composite sent as it came, a repeat of it waits 1 + HOLD frame intervals
_EPS_S = 1e-6  # a deadline this close counts as reached (float sums vs products)
_JOIN_S = 5.0

MODPROBE = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vbg"
LINUX_HINT = f"load v4l2loopback: {MODPROBE} (from the v4l2loopback-dkms package)"
INSTALL_LOOPBACK = f"sudo apt install v4l2loopback-dkms (or your distribution's package), then {MODPROBE}"
RELOAD_LOOPBACK = f"sudo modprobe -r v4l2loopback && {MODPROBE}"
OBS_HINT = {
    "Windows": "install OBS Studio (obsproject.com) and start its Virtual Camera once",
    "Darwin": "install OBS Studio 30 or later and start its Virtual Camera once "
              "(allow its camera extension in System Settings)",
}

_NO_DEVICE = ("no v4l2 loopback device", "does not exist", "not found", "not installed")
_BUSY = ("already in use", "busy", "could not be started", "multiple cameras are not supported")
_NOT_LOOPBACK = ("not a video output device", "is not a v4l2 device")


def install_hint(system: str | None = None) -> str:
    """How to get a virtual camera device on ``system`` (``platform.system()`` names)."""
    system = system or platform.system()
    if system in OBS_HINT:
        return OBS_HINT[system]
    return LINUX_HINT


def loopback_nodes(sys_root: str = "/sys") -> list[str]:
    """The video* names of the v4l2loopback devices (Linux: the virtual video4linux devices)."""
    return sorted(Path(p).name for p in glob.glob(f"{sys_root}/devices/virtual/video4linux/video*"))


def choose_backend(device: str | None, backend: str | None) -> str | None:
    """``--vcam-backend`` as it will be opened: ``auto`` (or None) on Linux with no ``device``
    and no v4l2loopback device is ``pipewire`` where a PipeWire camera can be published; else
    None (pyvirtualcam tries its own). A named backend stays as it is."""
    if backend not in (None, "auto"):
        return backend
    if sys.platform.startswith("linux") and device is None and not loopback_nodes():
        from vbg.sinks.pipewire import camera_problem

        if camera_problem() is None:
            return "pipewire"
    return None


def virtual_camera_problem(device: str | None, backend: str | None, recording: bool = False) -> SinkError | None:
    """Without opening anything: why there is no virtual camera to open (Linux: no v4l2loopback
    device and no PipeWire camera, or no node ``device``), with how to get one; None when one may
    open (elsewhere only opening one tells). ``recording``: ``--record`` was given (the way to try
    vbg without the camera is then ``--no-vcam`` alone)."""
    if backend == "pipewire":
        from vbg.sinks.pipewire import camera_problem

        return camera_problem()
    if not sys.platform.startswith("linux") or backend not in (None, "auto", "v4l2loopback"):
        return None
    if device is not None:
        if not Path(device).exists():
            return SinkError(f"virtual camera {device} does not exist: {LINUX_HINT}")
        return None
    if not loopback_nodes() and (backend == "v4l2loopback" or choose_backend(device, backend) is None):
        from .preview import display_available

        # --preview only where a window can open (a server over SSH has no display to show it on)
        alone = "--no-vcam (the recording alone)" if recording else "--no-vcam --record FILE"
        first = f"--preview, or {alone}" if display_available() else alone
        return SinkError(f"no virtual camera device found: {LINUX_HINT}; or start PipeWire for a camera "
                         f"without the module (vbg doctor checks it); or try it first with {first}")
    return None


def precheck(device: str | None, backend: str | None) -> None:
    """No virtual camera device (Linux): say how to load the module before anything else starts."""
    problem = virtual_camera_problem(device, backend)
    if problem is not None:
        raise problem


def describe_open_failure(text: str, device: str | None = None, system: str | None = None) -> str:
    """One line for pyvirtualcam's ``RuntimeError`` text (one ``'backend': why``
    line per backend tried): no device / busy / not a loopback device / other."""
    reasons = [line.strip() for line in text.splitlines() if line.strip()]
    low = " ".join(reasons).lower()
    what = f"virtual camera {device}" if device else "virtual camera"
    if any(k in low for k in _BUSY):
        return f"{what} is in use by another program: close it or pick another device ({'; '.join(reasons)})"
    if any(k in low for k in _NOT_LOOPBACK):
        return f"{device} is not a virtual camera (v4l2loopback) device: pick the loopback one, or {LINUX_HINT}"
    if any(k in low for k in _NO_DEVICE):
        missing = f"{what} does not exist" if device else "no virtual camera device found"
        return f"{missing}: {install_hint(system)}"
    return f"{what} could not be opened: {'; '.join(reasons) or 'unknown error'}"


class VirtualCameraSink(SinkBase):
    """Send composites to a virtual camera at exactly ``fps``.

    ``device``/``backend`` go to ``pyvirtualcam.Camera`` (``None``: the first
    that works). Raises :class:`SinkError` with a one-line how-to when there
    is no device, and :class:`ConfigError` for an unknown backend name.
    """

    input_format = "RGB"  # what the sink hands pyvirtualcam; the backend converts

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None, clock: Clock | None = None, latency=None) -> None:
        super().__init__()
        # ``latency`` (a vbg.stats.Window): capture -> sent to the device, ms, added by the pacing
        # thread for each composite's first send: the wait for the device's next tick counted
        self._latency = latency
        self._t_capture: list[float | None] = [None, None, None]
        width, height, fps = check_geometry("virtual camera", width, height, fps)
        self.width, self.height, self.fps = width, height, fps
        self._clock = clock or MonotonicClock()
        self._bufs = [np.zeros((height, width, 3), np.uint8) for _ in range(3)]
        self._seqs: list[int | None] = [None, None, None]  # None: the black start frame
        self._showing = 0  # buffer the pacing thread sends (and repeats)
        self._pending: int | None = None  # newest composite not yet sent
        self._lock = threading.Lock()  # guards _showing / _pending / _seqs
        self._send_lock = threading.Lock()  # one producer at a time
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by send() and close(): the pacing thread looks again
        self._closed = False
        self._received = self._dropped = 0  # written under _lock by send()
        self._written = self._repeats = self._blank = self._late = 0  # written by the thread only
        self._thread = threading.Thread(target=self._run, name="vbg-vcam", daemon=True)
        self._rate = self.fps  # the pacing rate: fps, or slower while nobody watches (set_rate)
        self._rate_version = 0  # set_rate calls so far
        self._rate_applied = 0  # the call whose first frame the pacing thread has sent (its ticks count from it)

        self._camera = _open_camera(width, height, self.fps, device, backend)
        try:
            self.device: str = self._camera.device
            self.backend: str = self._camera.backend
            native = self._camera.native_fmt
            self.native_format: str | None = native.name if native is not None else None
            self._thread.start()
        except BaseException:
            self._camera.close()
            raise

    # ------------------------------------------------------------------ caller side
    def send(self, composite: Composite) -> None:
        """Copy the composite into the slot the pacing thread sends next (newest wins)."""
        if self._closed:
            raise ValueError("send() on a closed VirtualCameraSink")
        self.check()
        image = composite.image
        check_image(image, self.width, self.height)
        with self._send_lock:
            with self._lock:
                idx = next(i for i in range(3) if i != self._showing and i != self._pending)
            np.copyto(self._bufs[idx], image)  # not the shown or pending buffer: no lock needed
            with self._lock:
                if self._pending is not None:
                    self._dropped += 1
                self._pending = idx
                self._seqs[idx] = composite.seq
                self._t_capture[idx] = None if getattr(composite, "card", False) else composite.t_capture
                self._received += 1
            self._wake.set()  # the pacing thread may send it now (``EARLY``)

    def set_rate(self, fps: float | None) -> None:
        """Pace at ``fps`` from the next tick on (the idle still picture: about 1 fps); None: the
        sink's own rate again. The device keeps its format; only the writes thin out."""
        with self._lock:
            self._rate = self.fps if fps is None else min(float(fps), self.fps)
            self._rate_version += 1

    @property
    def rate_settled(self) -> bool:
        """The last ``set_rate`` is in force: its first frame is sent and its ticks count from it."""
        return self._rate_applied == self._rate_version

    def stats(self) -> SinkStats:
        return SinkStats(received=self._received, written=self._written, repeats=self._repeats,
                         blank=self._blank, dropped=self._dropped, late=self._late,
                         errors=int(self._failure is not None))

    def close(self) -> None:
        """Stop the pacing thread, close the camera; then raise a thread failure
        that no ``send``/``check`` has raised yet. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._stop.set()
                self._wake.set()
                self._thread.join(_JOIN_S)
                if self._thread.is_alive():  # stuck in the backend: leave it to die with the process
                    self._fail(SinkError(f"virtual camera {self.device}: sending did not stop within {_JOIN_S:g} s"))
                else:
                    self._camera.close()
        self._raise_unreported()

    # ------------------------------------------------------------------ pacing thread
    def _run(self) -> None:
        clock, period = self._clock, 1.0 / self.fps
        t0 = clock.now()
        tick = 0
        last_fresh = -math.inf  # when the last new composite was sent
        try:
            while not self._stop.is_set():
                with self._lock:
                    restart = self._rate_version != self._rate_applied
                    if restart:
                        version, period = self._rate_version, 1.0 / self._rate
                    fresh = self._pending is not None
                    if fresh:
                        self._showing, self._pending = self._pending, None
                    idx = self._showing
                    blank = self._seqs[idx] is None
                    t_capture = self._t_capture[idx]
                self._camera.send(self._bufs[idx])
                self._written += 1
                if fresh and self._latency is not None and t_capture is not None:
                    self._latency.add((clock.now() - t_capture) * 1000.0)
                if blank:
                    self._blank += 1
                elif not fresh:
                    self._repeats += 1
                sent = clock.now()
                if fresh:
                    last_fresh = sent
                if restart:
                    # A new rate counts its ticks from its first frame, sent just now: a pacing
                    # thread held up between taking the rate and sending that frame does not then
                    # send the next one at once (two frames in a row at 1 fps).
                    # A set_rate made during that send is taken on the next pass.
                    t0, tick = sent, 1
                    self._rate_applied = version
                else:
                    tick += 1
                    behind = sent - (t0 + tick * period)
                    if behind >= period - _EPS_S:  # a whole tick missed: skip to the one due now
                        skipped = int((behind + _EPS_S) / period)
                        tick += skipped
                        self._late += skipped
                if self._wait_for_tick(t0 + tick * period, last_fresh + EARLY * period, max(_POLL_S, period / 20)):
                    # sent as it comes; the next tick HOLD of an interval later than the camera's next
                    # frame is due, so that frame is not beaten by a repeat of this one
                    t0, tick = clock.now() + HOLD * period, 0
        except Exception as exc:
            reason = one_line(exc)
            err = SinkError(f"virtual camera {self.device}: sending a frame failed: {reason}")
            err.__cause__ = exc
            self._fail(err)

    def _wait_for_tick(self, deadline: float, early: float, poll_s: float = _POLL_S) -> bool:
        """Wait for the next tick (``deadline``), or for a new composite once ``early`` has come:
        True when the wait ends for a new composite (it is sent as it comes, its ticks counted from
        it). A composite waited for the tick of a clock of the sink's own, up to a frame interval on
        top of the latency (46 ms glass-to-glass where the camera's frames came just after a tick)."""
        clock = self._clock
        while True:
            now = clock.now()
            if self._stop.is_set() or not self.rate_settled:
                return False
            if self._pending is not None and now >= early - _EPS_S:
                return True
            remaining = deadline - now
            if remaining <= _EPS_S:
                return False
            wait = min(remaining, poll_s)
            if self._pending is not None:  # it goes at ``early``
                wait = min(wait, early - now)
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()


def _open_camera(width: int, height: int, fps: float, device: str | None, backend: str | None):
    backend = choose_backend(device, backend)
    if backend == "pipewire":
        from vbg.sinks.pipewire import PipeWireCamera

        return PipeWireCamera(width, height, fps, name=device)
    try:
        import pyvirtualcam
        from pyvirtualcam.camera import BACKENDS
    except ImportError as e:
        raise DependencyError(f"the virtual camera needs pyvirtualcam: pip install pyvirtualcam ({e})") from e
    if backend is not None and backend not in BACKENDS:
        known = ", ".join([*BACKENDS, "pipewire"] if sys.platform.startswith("linux") else BACKENDS) or "none here"
        elsewhere = {"obs": "Windows and macOS", "unitycapture": "Windows", "v4l2loopback": "Linux"}.get(backend)
        if elsewhere is not None:  # listed in --help, which is the same on every system
            raise ConfigError(f"virtual camera backend {backend!r} is for {elsewhere}, not this system: use one of "
                              f"{known}")
        raise ConfigError(f"virtual camera backend {backend!r} is unknown: use one of {known}")
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                   device=device, backend=backend)
    except RuntimeError as e:
        raise SinkError(describe_open_failure(str(e), device)) from e
