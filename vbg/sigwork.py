"""What a signal handler asks for, done on a thread of its own.

In: callables posted by signal handlers (:meth:`SignalWork.post`). Out: each is
called once, in the order posted, on the object's own thread; :meth:`close`
runs what is still pending and ends the thread. Thread: ``post`` from a signal
handler (the main thread) or any thread; the work runs on the ``vbg-signals``
thread.

A Python signal handler runs on the main thread between two bytecodes, wherever
that thread happens to be, including inside a lock it holds. ``threading.Event``
holds its condition's lock, which is not reentrant, for a few bytecodes in
``set`` and ``wait``; a handler that sets the same event then waits for itself
forever. That is how a closed terminal once left the live filter running with
the camera on: the status line's failed write stopped the run (``Event.set`` on
the main thread) and the terminal's SIGHUP, sent at the same moment, arrived
inside that call and stopped it again. A reload, an effect toggle or a log line
from a handler can meet a held lock the same way. So a handler only decides
(and raises ``KeyboardInterrupt`` for a stop at once); whatever takes a lock is
posted here. ``post`` from a handler takes no lock: ``deque.append`` and ``os.write`` to
a pipe are single calls into C.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("vbg")


class SignalWork:
    """A thread that runs the work signal handlers post (see the module docstring)."""

    def __init__(self, name: str = "vbg-signals") -> None:
        self._jobs: collections.deque[Callable[[], object]] = collections.deque()
        self._read, self._write = os.pipe()
        self._lock = threading.Lock()  # post() off the main thread against close(); handlers never take it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, job: Callable[[], object]) -> None:
        """Run ``job`` soon on the work thread (safe inside a signal handler)."""
        if threading.current_thread() is threading.main_thread():  # maybe a handler: no lock
            self._post(job)
            return
        with self._lock:  # another thread (a failed write's hook): never while close() closes the pipe
            self._post(job)

    def _post(self, job: Callable[[], object]) -> None:
        fd = self._write
        if fd < 0:  # closed (the block ended as the signal came): nothing is left to act on
            return
        self._jobs.append(job)
        try:
            os.write(fd, b"\0")
        except OSError:
            pass

    def _run(self) -> None:
        while True:
            if not os.read(self._read, 256):  # EOF: close() was called; what was posted is done below
                self._drain()
                return
            self._drain()

    def _drain(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            try:
                job()
            except Exception as e:  # a handler's work never ends the run nor prints a traceback
                log.warning("a signal's action failed (%s: %s)", type(e).__name__, e)

    def close(self) -> None:
        """Run what is still posted, then end the thread (call once the handlers are restored)."""
        with self._lock:  # a post from another thread never writes to a number reused meanwhile
            fd, self._write = self._write, -1  # first: a handler that runs now finds it closed
            if fd < 0:
                return
            os.close(fd)
        self._thread.join()
        os.close(self._read)

    def __enter__(self) -> SignalWork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
