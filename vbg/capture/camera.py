"""A camera (index or device path) through OpenCV, MJPG where it offers it.

In: a camera index or device path and the size and rate asked for (the
camera may give others: ``width``/``height``/``fps`` say what it gives). A
missing or busy camera is a ``SourceError`` at construction, with a hint.
Out: ``read()`` returns a new H x W x 3 RGB uint8 array per frame (the caller
keeps it); a camera that stops delivering is a ``SourceError``. Thread: read
on the capture thread (``vbg.capture.worker``).
"""

from __future__ import annotations

import glob
import os
import re
import sys

import cv2
import numpy as np

from ..errors import SourceError


def device_path(device: int | str) -> str | None:
    """The V4L2 device node of a camera index or path on Linux; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    return f"/dev/video{device}" if isinstance(device, int) else str(device)


def video_devices() -> list[str]:
    """The /dev/video* nodes, in numeric order (Linux)."""
    return sorted(glob.glob("/dev/video[0-9]*"), key=lambda p: int(re.sub(r"\D", "", p) or 0))


def device_users(path: str) -> list[tuple[int, str]]:
    """(pid, program) of the other processes that hold ``path`` open, as far as
    /proc lets this user see (all of them for root, one's own otherwise)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    users = []
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        pid = int(fd_dir.split("/")[2])
        if pid == os.getpid():
            continue
        try:
            for fd in os.listdir(fd_dir):
                try:
                    st = os.stat(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if st.st_rdev == target.st_rdev and st.st_ino == target.st_ino:
                    with open(f"/proc/{pid}/comm") as f:
                        users.append((pid, f.read().strip()))
                    break
        except OSError:  # gone, or not ours to look at
            continue
    return users


def _busy_hint(device: int | str) -> str:
    path = device_path(device)
    users = device_users(path) if path else []
    if users:
        who = ", ".join(f"{name} (pid {pid})" for pid, name in users)
        return f"it is in use by {who}: close that program, or pass another --source"
    return "another program may be using it: close other video apps, or pass another --source"


def camera_problem(device: int | str) -> SourceError | None:
    """Without opening it: the camera's device node is missing. None when it may be opened."""
    path = device_path(device)
    if path is None:
        return None
    if not os.path.exists(path):
        found = ", ".join(video_devices()) or "none"
        return SourceError(f"camera {device} does not exist (video devices here: {found}): pass --source "
                           "with one of them or a video file, or try vbg without a webcam: --source demo")
    return None


class CameraSource:
    live = True

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.device = device
        missing = camera_problem(device)
        if missing is not None:
            raise missing
        cap = cv2.VideoCapture(device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera {device}: {_busy_hint(device)} (`vbg doctor` checks the cameras)")
        # MJPG first: many USB cameras give 30 fps at 720p only compressed.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: latency
        ok, probe = cap.read()
        if not ok or probe is None:
            cap.release()
            raise SourceError(f"camera {device} opened but gives no frames: {_busy_hint(device)}")
        self._cap = cap
        self.height, self.width = probe.shape[:2]
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or fps or 30.0)
        self._first: np.ndarray | None = probe
        self._bgr: np.ndarray | None = probe  # the driver's picture is decoded into this one buffer, frame after frame

    def read(self) -> np.ndarray | None:
        """The next picture as a new RGB array (the caller keeps it)."""
        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self._cap.read(self._bgr)  # into the kept buffer (a new one if the size changed)
            if not ok or bgr is None:
                raise SourceError(f"camera {self.device} stopped delivering frames")
            self._bgr = bgr
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._bgr = self._first = None  # (a closed camera keeps no picture)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
