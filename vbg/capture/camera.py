"""A camera (index or device path) through OpenCV, MJPG where it offers it."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import SourceError


class CameraSource:
    live = True

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.device = device
        cap = cv2.VideoCapture(device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open camera {device}: it does not exist or another program is using it; "
                "close other video apps, check `vbg doctor`, or pass --source FILE"
            )
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
            raise SourceError(f"camera {device} opened but gives no frames: it may be busy; close other video apps")
        self._cap = cap
        self.height, self.width = probe.shape[:2]
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or fps or 30.0)
        self._first = probe

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                raise SourceError(f"camera {self.device} stopped delivering frames")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
