"""Who watches the virtual camera, and the idle gate that acts on it.

In: a v4l2loopback device node (Linux). Out: :meth:`Watcher.readers`, how many
applications read the device now (0 = nobody watches). Two ways to know:

* :class:`UsageEventWatcher`: v4l2loopback 0.13 and later queue a private V4L2
  event, ``V4L2_EVENT_PRI_CLIENT_USAGE`` (``V4L2_EVENT_PRIVATE_START +
  0x08E00000 + 1``), whose payload ``struct v4l2_event_client_usage { __u32
  count; }`` says whether a capture client holds the stream; it is queued when
  one starts or stops streaming, and once on subscribing
  (``V4L2_EVENT_SUB_FL_SEND_INITIAL``). vbg opens a second descriptor on the
  node (pyvirtualcam keeps its own to itself), subscribes with
  ``VIDIOC_SUBSCRIBE_EVENT`` and drains the queue with ``VIDIOC_DQEVENT``
  (non-blocking) at each look: a few system calls.
* :class:`ProcWatcher`, for older modules that refuse the subscription: the
  processes other than this one with a descriptor on the node, from
  ``/proc/*/fd`` (every process for root, one's own user's otherwise), scanned
  when inotify reports the node opened or closed, and every few seconds.

:class:`IdleGate` runs on its own thread (``vbg-idle``) and turns "nobody for
``idle_after`` seconds" into ``pause()`` and "somebody again" into
``resume()``, both callbacks of the live runner (which slows the virtual camera to
``IDLE_FPS`` on a still picture meanwhile); it reads time from the
injectable clock and its watcher is injectable, so tests drive both.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from collections.abc import Callable
from typing import Protocol

from vbg.clock import Clock, MonotonicClock

log = logging.getLogger("vbg.idle")

# linux/videodev2.h and v4l2loopback.c (request numbers: x86-64 and the other LP64 ABIs)
V4L2_EVENT_PRIVATE_START = 0x08000000
V4L2_EVENT_PRI_CLIENT_USAGE = V4L2_EVENT_PRIVATE_START + 0x08E00000 + 1  # 0x10E00001
V4L2_EVENT_SUB_FL_SEND_INITIAL = 1
SUBSCRIPTION = struct.Struct("=III20x")  # v4l2_event_subscription: type, id, flags, reserved[5]
# v4l2_event: type, (pad to the union's 8-byte alignment), union u { ... data[64] }, pending,
# sequence, struct timespec timestamp, id, reserved[8], (tail padding): 136 bytes
EVENT = struct.Struct("=I4x64sIIqqI32x4x")
USAGE = struct.Struct("=I")  # v4l2_event_client_usage, at the start of u.data
_IOC_WRITE, _IOC_READ = 1, 2
VIDIOC_DQEVENT = (_IOC_READ << 30) | (EVENT.size << 16) | (ord("V") << 8) | 89
VIDIOC_SUBSCRIBE_EVENT = (_IOC_WRITE << 30) | (SUBSCRIPTION.size << 16) | (ord("V") << 8) | 90

PROC_INTERVAL_S = 0.5  # the /proc scan without inotify: this often
RESCAN_S = 5.0  # with inotify: a scan this often besides those an open or a close triggers
EVENT_INTERVAL_S = 0.1  # the event queue: a non-blocking look this often
IDLE_FPS = 1.0  # while idle, the virtual camera repeats its still picture at this rate


class Watcher(Protocol):
    """How many applications read the virtual camera now; ``interval``: how often to ask."""

    interval: float
    kind: str  # "usage event" or "/proc scan": for the log and vbg doctor

    def readers(self) -> int: ...
    def close(self) -> None: ...


def subscription(event_type: int = V4L2_EVENT_PRI_CLIENT_USAGE, flags: int = V4L2_EVENT_SUB_FL_SEND_INITIAL) -> bytes:
    """The ``v4l2_event_subscription`` that VIDIOC_SUBSCRIBE_EVENT takes."""
    return SUBSCRIPTION.pack(event_type, 0, flags)


def parse_usage(event: bytes) -> int | None:
    """The client count of a dequeued ``v4l2_event``; None for an event of another type."""
    ev_type, data, _pending, _seq, _sec, _nsec, _id = EVENT.unpack(event)
    if ev_type != V4L2_EVENT_PRI_CLIENT_USAGE:
        return None
    return USAGE.unpack_from(data)[0]


class UsageEventWatcher:
    """v4l2loopback 0.13+: the client-usage event. Raises ``OSError`` when the module (or the
    node) does not offer it, so the caller can fall back to :class:`ProcWatcher`."""

    interval = EVENT_INTERVAL_S
    kind = "usage event"

    def __init__(self, device: str, ioctl: Callable | None = None) -> None:
        if ioctl is None:
            import fcntl

            ioctl = fcntl.ioctl
        self._ioctl = ioctl
        self._buf = bytearray(EVENT.size)
        self._count = 0
        self._fd = os.open(device, os.O_RDWR | os.O_NONBLOCK)
        try:
            ioctl(self._fd, VIDIOC_SUBSCRIBE_EVENT, bytearray(subscription()))
        except BaseException:
            os.close(self._fd)
            raise

    def readers(self) -> int:
        while True:  # drain: the last event says how it stands now
            try:
                self._ioctl(self._fd, VIDIOC_DQEVENT, self._buf)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EAGAIN):  # nothing queued
                    return self._count
                raise
            count = parse_usage(bytes(self._buf))
            if count is not None:
                self._count = count

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ProcWatcher:
    """Older modules: the other processes holding the node open, from ``proc_root``/*/fd.

    A scan reads every descriptor link of every process it may look at (milliseconds), so it
    runs when inotify says someone opened or closed the node (``IN_OPEN``/``IN_CLOSE``, a
    non-blocking read per look) and otherwise once every ``rescan_s``; without inotify, every
    ``PROC_INTERVAL_S``."""

    kind = "/proc scan"

    def __init__(self, device: str, proc_root: str = "/proc", own_pid: int | None = None,
                 use_inotify: bool = True, rescan_s: float = RESCAN_S) -> None:
        self.target = os.path.realpath(device)
        self.proc_root = proc_root
        self.own_pid = str(os.getpid() if own_pid is None else own_pid)
        self._notify = _inotify(self.target) if use_inotify else -1
        self.interval = EVENT_INTERVAL_S if self._notify >= 0 else PROC_INTERVAL_S
        self.rescan_s = rescan_s
        self.scans = 0
        self._count = 0
        self._scanned_at: float | None = None

    def readers(self) -> int:
        import time

        now = time.monotonic()
        if (self._notify < 0 or self._opened_or_closed() or self._scanned_at is None
                or now - self._scanned_at >= self.rescan_s):
            self._count, self._scanned_at = self._scan(), now
        return self._count

    def _opened_or_closed(self) -> bool:
        seen = False
        while True:
            try:
                seen |= bool(os.read(self._notify, 4096))
            except BlockingIOError:
                return seen

    def _scan(self) -> int:
        self.scans += 1
        n = 0
        try:
            procs = os.scandir(self.proc_root)
        except OSError:
            return 0
        with procs:
            for p in procs:
                if not p.name.isdigit() or p.name == self.own_pid:
                    continue
                n += self._holds(p.path)
        return n

    def _holds(self, proc: str) -> bool:
        try:
            with os.scandir(proc + "/fd") as fds:
                for fd in fds:
                    try:
                        if os.readlink(fd.path) == self.target:
                            return True
                    except OSError:  # closed meanwhile
                        continue
        except OSError:  # gone, or not ours to look at
            pass
        return False

    def close(self) -> None:
        if self._notify >= 0:
            os.close(self._notify)
            self._notify = -1


IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x08, 0x10, 0x20  # linux/inotify.h
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, 0o2000000


def _inotify(path: str) -> int:
    """A non-blocking inotify descriptor watching ``path`` being opened and closed; -1 where
    there is none (not Linux, no libc)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (OSError, AttributeError):
        return -1
    if fd < 0:
        return -1
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0:
        os.close(fd)
        return -1
    return fd


def open_watcher(device: str) -> Watcher:
    """The usage event where the module offers it, else the /proc scan."""
    try:
        return UsageEventWatcher(device)
    except OSError as e:
        log.debug("no v4l2loopback usage event on %s (%s): scanning /proc", device, e)
        return ProcWatcher(device)


class IdleGate:
    """Nobody has read the camera for ``idle_after`` clock seconds: ``pause()`` (the runner
    releases the camera, the model waits, the virtual camera shows a still); somebody reads it
    again: ``resume()``. ``idle`` says which; ``wakes``: (clock time a reader was seen, clock
    time resume() returned) per wake-up."""

    def __init__(self, watcher: Watcher, idle_after: float, *, pause: Callable[[], None],
                 resume: Callable[[], None], clock: Clock | None = None) -> None:
        self.watcher, self.idle_after = watcher, idle_after
        self._pause, self._resume = pause, resume
        self.clock = clock or MonotonicClock()
        self.idle = False
        self.wakes: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vbg-idle", daemon=True)

    def start(self) -> IdleGate:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        clock = self.clock
        seen = clock.now()  # at start-up the camera counts as watched: a first idle_after of grace
        next_look = seen
        readers = 0
        slice_s = min(self.watcher.interval, 0.1)
        while not self._stop.wait(slice_s):  # real-time slices: a test's clock moves between them
            now = clock.now()
            if now >= next_look:
                try:
                    readers = self.watcher.readers()
                except OSError as e:  # the node went away or broke: live from now on, as --always-on
                    log.warning("cannot tell who reads the virtual camera any more (%s): staying live", e)
                    if self.idle:
                        self._resume()
                        self.idle = False
                    return
                next_look = now + self.watcher.interval
            if readers:
                seen = now
                if self.idle:
                    self._resume()
                    self.idle = False
                    self.wakes.append((now, clock.now()))
                    log.info("a reader opened the virtual camera: live again")
            elif not self.idle and now - seen >= self.idle_after:
                log.info("nobody has read the virtual camera for %.0f s: camera released, model paused",
                         now - seen)
                self._pause()
                self.idle = True
