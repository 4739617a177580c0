"""The capture thread: stamps frames and hands them over; survives a lost camera.

In: an open source (and a ``reopen`` callable). Out: :class:`~vbg.types.Frame`
records (sequence number, capture time, the source's RGB array, handed on, not
copied) put into a latest-frame-wins slot; while the source is gone ``lost``
is true, and frames from a reopened source are resized to the first size.
Thread: its own (``vbg-capture``); a fatal error is kept in ``error`` for the
pipeline to re-raise; ``stop`` from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import cv2
import numpy as np

from ..buffers import LatestSlot
from ..clock import Clock, MonotonicClock
from ..errors import SourceError
from ..types import Frame

log = logging.getLogger("vbg.capture")

BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # retry delays after a source fails; the last repeats


def _described(image) -> str:
    if isinstance(image, np.ndarray):
        return f"a {'x'.join(map(str, image.shape))} {image.dtype} array"
    return f"a {type(image).__name__}"


class CaptureWorker:
    """Reads ``source`` on its own thread into ``out`` (latest frame wins).

    ``source`` is already open (so a missing camera is reported before any
    thread starts, and the size is known); ``reopen`` opens it again after it
    fails. While it is gone, ``lost`` is true and the downstream stages keep
    the output alive. Frames from a reopened source are resized to the first
    size, so every later buffer stays valid.
    """

    def __init__(self, source, out: LatestSlot[Frame], *, reopen: Callable[[], object] | None = None,
                 clock: Clock | None = None, max_frames: int | None = None) -> None:
        self.source = source
        self.out = out
        self.reopen = reopen
        self.clock = clock or MonotonicClock()
        self.max_frames = max_frames
        self.width, self.height, self.fps = source.width, source.height, source.fps
        self.frames = 0
        self.reconnects = 0
        self.lost = False
        self.error: BaseException | None = None
        self.ended = threading.Event()  # end of stream, a fatal error, or stop()
        self._stop = threading.Event()
        self._paused = threading.Event()  # pause(): the source is released until resume()
        self._awake = threading.Event()  # set by resume() and stop(): a paused thread goes on
        self.released = threading.Event()  # set while paused, once the source is closed
        self._current = source  # the source being read: stop() cancels a read that waits on a network
        self._source_closed = False  # the first source closed (``close_source``): it is closed once
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vbg-capture", daemon=True)

    def start(self) -> CaptureWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the thread soon: after the frame being read, or at once where the source can cancel
        a read that waits (a stream whose server went silent)."""
        self._stop.set()
        self._awake.set()
        cancel = getattr(self._current, "cancel", None)
        if cancel is not None:
            cancel()

    def pause(self) -> None:
        """Release the source after the frame being read (a camera's light goes off) and read
        nothing until :meth:`resume`. A source that cannot be opened again (no ``reopen``) is
        kept open, unread."""
        self._awake.clear()
        self._paused.set()

    def resume(self) -> None:
        """Open the source again (at once, no back-off) and go on reading."""
        self._paused.clear()
        self._awake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        src, attempt = self.source, 0
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    src = self._idle(src)
                    attempt = 0
                    continue
                if src is None:
                    src = self._current = self._try_reopen(attempt)
                    attempt += 1
                    continue
                try:
                    image = src.read()
                except SourceError as e:
                    if self.reopen is None:  # a file: its damage would come again
                        raise
                    log.warning("source lost (%s); retrying", e)
                    self.close_source(src)
                    src = None
                    self.lost, attempt = True, 0
                    continue
                if image is None:
                    break
                if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
                        or image.shape[2] != 3):  # a Source of the caller's (vbg's own give RGB)
                    raise TypeError(f"the source's read() returned {_described(image)}: a Source returns an "
                                    "H x W x 3 RGB uint8 numpy array per frame, or None at its end")
                if image.shape[0] != self.height or image.shape[1] != self.width:
                    image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
                self.out.put(Frame(self.frames, self.clock.now(), image))
                self.frames += 1
                if self.max_frames is not None and self.frames >= self.max_frames:
                    break
        except BaseException as e:  # handed to the pipeline, which re-raises it
            self.error = e
        finally:
            self.close_source(src)
            self.out.close()
            self.ended.set()

    def _idle(self, src):
        """Paused: close ``src`` (where it can be reopened), wait for resume() or stop(); the
        source to read next (None: reopen it)."""
        if self.reopen is not None:
            self.close_source(src)
            src = self._current = None
        self.released.set()
        self._awake.wait()
        self.released.clear()
        if src is None and not self._stop.is_set():
            src = self._current = self._try_reopen(-1)
            self.lost = src is None  # not back at once: the back-off retries, the card says so
        return src

    def _try_reopen(self, attempt: int):
        delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] if attempt >= 0 else 0.0
        if delay and self._stop.wait(delay):
            return None
        try:
            src = self.reopen()
        except Exception as e:  # a device that is coming back can fail in any way (cv2.error, OSError)
            log.debug("reopen failed: %s: %s", type(e).__name__, e)
            return None
        if src is None:  # (a caller's reopen that found nothing): still lost
            log.debug("reopen gave no source")
            return None
        if src is self.source:  # open again (a caller's reopen may give the same object back)
            with self._close_lock:
                self._source_closed = False
        if attempt >= 0:
            self.lost = False
            self.reconnects += 1
            log.warning("source back after %d attempt(s)", attempt + 1)
        return src

    def close_source(self, src) -> None:
        """Close ``src`` unless it was closed already: the pipeline closes the source itself where
        this thread is still blocked in its ``read()`` at the end, and the thread's own close when
        that read returns must not be a second one (a caller's ``close()`` need not take two)."""
        if src is None:
            return
        if src is self.source:  # the one the pipeline closes too (a reopened one is this thread's alone)
            with self._close_lock:
                if self._source_closed:
                    return
                self._source_closed = True
        try:
            src.close()
        except Exception:  # closing a dead device must not hide the real error
            log.debug("closing the source failed", exc_info=True)
