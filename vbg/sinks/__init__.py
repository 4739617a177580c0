"""Where composites go: a virtual camera, a recording, a preview window.

Every sink follows one small contract (:class:`Sink`):

* it acquires its resource when constructed (``width``, ``height``, ``fps`` and
  its own options), so a missing device or an unwritable path fails at once;
* ``send(composite)`` is cheap for the caller: threaded sinks copy (or convert)
  the image into their own buffers and return, so the caller may reuse its
  buffer as soon as ``send`` returns; images must be RGB uint8 of the sink's
  size (``TypeError`` for a wrong dtype, ``ValueError`` for a wrong shape);
* a failure on a sink's own thread is kept and surfaced exactly once as a
  :class:`~vbg.errors.VbgError`: by the next ``send()``, by ``check()``, or,
  if neither ran since, by ``close()``;
* ``close()`` flushes, joins the sink's thread and releases the resource; it
  is idempotent, and sinks are context managers that call it;
* ``stats()`` returns a :class:`SinkStats` snapshot of plain counters.

The sink classes are imported lazily, so importing this package does not load
pyvirtualcam, PyAV or the OpenCV GUI.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vbg.errors import ConfigError, VbgError

if TYPE_CHECKING:
    from types import TracebackType

    from vbg.types import Composite

__all__ = [
    "Sink",
    "SinkBase",
    "SinkStats",
    "VirtualCameraSink",
    "Recorder",
    "PreviewWindow",
    "display_available",
]


@dataclass(frozen=True, slots=True)
class SinkStats:
    received: int = 0  # send() calls accepted
    written: int = 0  # frames delivered to the output, repeats and blanks included
    repeats: int = 0  # virtual camera: ticks that re-sent the previous composite
    blank: int = 0  # virtual camera: black frames sent before the first composite
    dropped: int = 0  # composites replaced before they were ever delivered
    late: int = 0  # virtual camera: ticks skipped because the sender fell behind
    errors: int = 0  # failures of the sink's own thread (0 or 1)


@runtime_checkable
class Sink(Protocol):
    """What the live pipeline calls on a sink: ``send`` each composite (from the render thread),
    ``check`` (raise a failure of the sink's own thread), ``close`` once at the end. vbg's own
    sinks also have ``stats()`` and are context managers; a caller's need not."""

    def send(self, composite: Composite) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


class SinkBase:
    """Context-manager plumbing and the "surface a worker failure once" rule: a subclass gives
    ``send`` (and ``close`` when it holds anything). A subclass with an ``__init__`` of its own
    that does not call this one's still works: the failure state has class-level defaults."""

    _failure: VbgError | None = None
    _failure_reported = False
    _failure_lock = threading.Lock()  # shared by the instances that did not make their own

    def __init__(self) -> None:
        self._failure: VbgError | None = None
        self._failure_reported = False
        self._failure_lock = threading.Lock()

    def _fail(self, error: VbgError) -> None:
        """Called on the sink's own thread: keep the first failure."""
        with self._failure_lock:
            if self._failure is None:
                self._failure = error

    @property
    def error(self) -> VbgError | None:
        """The failure of the sink's thread, if any (stays set once set)."""
        return self._failure

    def check(self) -> None:
        """Raise the sink thread's failure, if there is one."""
        failure = self._failure
        if failure is not None:
            self._failure_reported = True
            raise failure

    def _raise_unreported(self) -> None:
        if self._failure is not None and not self._failure_reported:
            self.check()

    def __enter__(self):
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Nothing to let go of here: a sink that holds a thread, a file or a device overrides it."""


def check_geometry(what: str, width, height, fps) -> tuple[int, int, float]:
    """Validate a sink's size and rate (numpy integers are fine); ConfigError names ``what``."""
    try:
        w, h = operator.index(width), operator.index(height)
    except TypeError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise ConfigError(f"{what} size {width}x{height} is invalid: use positive whole numbers")
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if not 0 < rate < 1000:
        raise ConfigError(f"{what} fps {fps} is invalid: use a rate above 0 (and below 1000)")
    return w, h, rate


def check_image(image, width: int, height: int) -> None:
    """The check every sink's ``send`` makes, in pyvirtualcam's words."""
    if image.dtype.name != "uint8":
        raise TypeError(f"unexpected composite dtype: {image.dtype} != uint8")
    if image.shape != (height, width, 3):
        raise ValueError(f"unexpected composite shape: {image.shape} != {(height, width, 3)}")


_LAZY = {
    "VirtualCameraSink": "vbg.sinks.virtual_camera",
    "Recorder": "vbg.sinks.recorder",
    "PreviewWindow": "vbg.sinks.preview",
    "display_available": "vbg.sinks.preview",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vbg.sinks' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
