"""A pyvirtualcam backend with no device behind it, for the tests and the benchmarks.

pyvirtualcam's own ``Camera`` drives it, so its checks, conversions and lifecycle run as
with a real device; the backend keeps what it is sent (copies of the frames, or only their
count for long runs). It is registered for one block only (:func:`fake_camera`):
pyvirtualcam, asked for no backend in particular, tries every registered one, so a
registration left behind would stand in for a missing v4l2loopback device anywhere later in
the same process (the no-device checks of the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from vbg.clock import MonotonicClock


def _gone() -> Exception:
    return OSError("the test camera went away")


class FakeCamera:
    """The backend contract pyvirtualcam documents (``close`` is called exactly once).

    Class attributes, set per registration by :func:`fake_camera`: ``keep`` (keep a copy of
    every frame, the clock time it came and its mean; ``"last"``: only a copy of the latest
    frame, in ``latest``, for long runs; False: count them only), ``clock``,
    ``fail_after`` (frames sent before ``send`` raises ``failure()``; None: never), ``hold``
    (a function ``send`` calls first with the number of frames sent so far),
    ``device_name`` (when pyvirtualcam names no device) and ``instances`` (every camera opened,
    in order)."""

    name = ""
    keep = True
    clock = MonotonicClock()
    fail_after: int | None = None
    failure = _gone
    hold = None  # called with the number of frames sent so far at the start of each send (a test holds one there)
    device_name = "vbg-test-cam"
    instances: list[FakeCamera] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or self.device_name
        self.sent = 0
        self.frames: list[np.ndarray] = []  # H x W x 3, in the pixel format pyvirtualcam sends (RGB here)
        self.times: list[float] = []
        self.means: list[float] = []
        self.latest: np.ndarray | None = None
        self.closed = 0
        type(self).instances.append(self)

    def send(self, frame):
        cls = type(self)
        if cls.hold is not None:
            cls.hold(self.sent)
        if cls.fail_after is not None and self.sent >= cls.fail_after:
            raise cls.failure()
        self.sent += 1
        if cls.keep == "last":
            self.latest = np.array(frame, copy=True).reshape(self.height, self.width, 3)
        elif cls.keep:
            # pyvirtualcam hands over flat bytes, a view of the sender's buffer: copied
            image = np.array(frame, copy=True).reshape(self.height, self.width, 3)
            self.frames.append(image)
            self.times.append(self.clock.now())
            self.means.append(float(image.mean()))

    def close(self):
        self.closed += 1

    def device(self):
        return self._device

    def native_fourcc(self):
        return self.fourcc


@contextlib.contextmanager
def fake_camera(name: str, **settings) -> Iterator[type[FakeCamera]]:
    """A :class:`FakeCamera` of its own (``settings``: its class attributes) registered as
    pyvirtualcam backend ``name`` while the block runs; yields the class."""
    import pyvirtualcam
    from pyvirtualcam.camera import BACKENDS

    unknown = set(settings) - {"keep", "clock", "fail_after", "failure", "device_name", "hold"}
    if unknown:
        raise TypeError(f"fake_camera() got unknown settings: {', '.join(sorted(unknown))}")
    if name in BACKENDS:
        raise ValueError(f"a pyvirtualcam backend named {name!r} is registered already")
    cls = type("FakeCamera", (FakeCamera,), {"name": name, "instances": [],
                                              **{k: staticmethod(v) if k == "hold" else v for k, v in settings.items()}})
    pyvirtualcam.register_backend(name, cls)
    try:
        yield cls
    finally:
        BACKENDS.pop(name, None)
