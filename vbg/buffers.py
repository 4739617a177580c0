"""Hand-over between threads.

Live sources use a single latest-frame-wins slot: a producer never waits, an
unread item that is replaced counts as a drop, and nothing queues up (a deep
queue only adds latency). File sources use a bounded queue with an
end-of-stream marker and drop nothing.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """The slot or queue was closed: the producer is done (or failed)."""


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._version = 0
        self._closed = False
        self.puts = 0
        self.drops = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.drops += 1
            self._item = item
            self._version += 1
            self.puts += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout``; None on time-out.
        Raises :class:`Closed` once closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            if self._item is None:
                if self._closed:
                    raise Closed
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


_END = object()


POLL = 0.1  # seconds between two looks at a FrameQueue's stop event


class FrameQueue(Generic[T]):
    """Bounded FIFO with an end marker: ``put`` blocks when full, nothing is dropped.

    Given a ``stop`` event (the pipeline's halt), ``put``, ``get`` and ``end`` give up once it
    is set, looking at it every ``POLL`` seconds, instead of each caller polling; ``timeout``
    is then not used."""

    def __init__(self, maxsize: int = 8, stop: threading.Event | None = None) -> None:
        self._q: queue.Queue = queue.Queue(maxsize)
        self._stop = stop

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Put ``item``; ``queue.Full`` after ``timeout`` seconds on a full queue. With a stop
        event: False (nothing put) once it is set."""
        if self._stop is None:
            self._q.put(item, timeout=timeout)
            return True
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def end(self, timeout: float | None = None) -> None:
        """Put the end marker (``queue.Full`` after ``timeout`` seconds on a full queue). With a
        stop event: left out once it is set and the queue is full (no reader is left to end it for)."""
        if self._stop is None:
            self._q.put(_END, timeout=timeout)
            return
        while True:
            try:
                self._q.put(_END, timeout=POLL)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def get(self, timeout: float | None = None) -> T:
        """Next item; raises :class:`Closed` at the end marker, ``queue.Empty`` on time-out. With a
        stop event: :class:`Closed` also once it is set and the queue is empty."""
        if self._stop is None:
            item = self._q.get(timeout=timeout)
        else:
            item = self._get_until_stopped()
        if item is _END:
            self._q.put(_END)  # every later reader sees the end too
            raise Closed
        return item

    def _get_until_stopped(self):
        while True:
            try:
                return self._q.get(timeout=POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise Closed from None
