"""stdout and stderr that may go away: a closed pipe, a full disk, a closed descriptor.

In: :func:`install` (called once by the CLI at start; returns the undo) wraps
``sys.stdout`` and ``sys.stderr``. Out: writes never raise; the first failed
write is recorded (:func:`broken`), the descriptor is pointed at ``/dev/null``
and the hook set with :func:`on_broken` asks the running job to stop as Ctrl-C
does. The CLI, not this module, then picks the exit code. Thread: writes from
any thread; the hook runs on the thread whose write failed.

``vbg process --json | head -1`` closes vbg's stdout while the job runs; a log pipe
on stderr can close the same way. Python ignores SIGPIPE, so each write would raise
``BrokenPipeError`` wherever it happens (the progress bar, a log line, a worker
thread), and its own flush at exit prints "Exception ignored ... BrokenPipeError".
Pointing the descriptor at ``/dev/null`` (as the Python docs advise for SIGPIPE)
makes every later write and the exit flush, C libraries' included, succeed
silently; the running job keeps a playable partial file. The CLI exits with
:data:`EXIT_BROKEN_PIPE` (141 = 128 + SIGPIPE, what a shell reports for a program that
SIGPIPE killed) for a closed pipe, the run's own code for a terminal that hung up (the
SIGHUP that closed it stopped the run: 130), or the output-error code for a full disk.

A descriptor that was already closed when vbg started (``2>&-``) is pointed at
``/dev/null`` first, so no file vbg opens can take its number (an encoder's log line
would then land inside a video file), and vbg's messages are discarded, as asked.
"""

from __future__ import annotations

import errno
import io
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
_PIPE_ERRNOS = {errno.EPIPE, errno.ECONNRESET}
_WINDOWS = os.name == "nt"  # there a write to a pipe whose reader has gone can fail with EINVAL


@dataclass(frozen=True, slots=True)
class Broken:
    """The first standard stream that failed, and why."""

    name: str  # "stdout" or "stderr"
    error: OSError
    terminal: bool = False  # the stream was a terminal

    @property
    def pipe(self) -> bool:
        """The reader went away (``| head``), as opposed to a full disk or an I/O error."""
        return (isinstance(self.error, BrokenPipeError) or self.error.errno in _PIPE_ERRNOS
                or (_WINDOWS and not self.terminal and self.error.errno == errno.EINVAL))

    @property
    def hangup(self) -> bool:
        """The terminal went away (window closed, ssh dropped: writes fail with EIO); the
        SIGHUP that comes with it is what stops the run."""
        return self.terminal and self.error.errno == errno.EIO


_lock = threading.Lock()
_broken: Broken | None = None
_hook: Callable[[], None] | None = None


def broken() -> Broken | None:
    """The first stream that failed since :func:`install`, or None."""
    return _broken


def on_broken(hook: Callable[[], None] | None) -> Callable[[], None] | None:
    """Call ``hook`` (once, from whichever thread wrote) when a stream breaks; returns the
    previous hook. A stream that is already broken calls it at once."""
    global _hook
    with _lock:
        old, _hook = _hook, hook
        now = _broken is not None
    if now and hook is not None:
        hook()
    return old


def _devnull_onto(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        if null != fd:
            os.dup2(null, fd)
    finally:
        if null != fd:
            os.close(null)


def _record(name: str, stream, exc: OSError, terminal: bool = False) -> None:
    global _broken
    with _lock:
        first = _broken is None
        if first:
            _broken = Broken(name, exc, terminal)
        hook = _hook
    try:
        _devnull_onto(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # not a real descriptor (a test's capture): the guard alone keeps it quiet
    if first and hook is not None:
        hook()


class _Guarded(io.TextIOBase):
    """A text stream that turns a failed write into :func:`broken` instead of an exception."""

    def __init__(self, name: str, stream) -> None:
        super().__init__()
        self._name, self._stream = name, stream
        try:
            self._terminal = bool(stream.isatty())
        except (OSError, ValueError, AttributeError):
            self._terminal = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            _record(self._name, self._stream, e, self._terminal)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            _record(self._name, self._stream, e, self._terminal)
            try:
                self._stream.flush()  # the pending bytes now go to /dev/null
            except (OSError, ValueError):
                pass
        except ValueError:
            pass  # closed

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self._stream, "errors", "strict")

    @property
    def wrapped(self):
        return self._stream

    def __getattr__(self, attr):  # buffer, line_buffering, reconfigure, ...
        return getattr(self._stream, attr)


def _open_missing_fds() -> None:
    """Point a standard descriptor that is closed (``2>&-``) at /dev/null."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                _devnull_onto(fd)
            except OSError:
                pass


def install() -> Callable[[], None]:
    """Guard ``sys.stdout`` and ``sys.stderr`` (see the module docstring); returns the undo."""
    global _broken
    _open_missing_fds()
    saved = (sys.stdout, sys.stderr)
    with _lock:
        _broken = None
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:  # closed when Python started: print(file=None) would go to stdout
            stream = open(fd, "w", closefd=False, errors="backslashreplace")
        if not isinstance(stream, _Guarded):
            setattr(sys, name, _Guarded(name, stream))

    def undo() -> None:
        sys.stdout, sys.stderr = saved

    return undo


# A URL's secrets: a password before its host, and the values of query keys that carry one
# (?token=, S3's X-Amz-Signature=, ?api_key=, ...).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/@:]*):[^\s/@]*@")
_URL_SECRET_QUERY = re.compile(r"(?i)([?&][a-z0-9_.\-]*(?:token|sig|secret|passw|pwd|key|auth|credential|session)"
                               r"[a-z0-9_.\-]*=)[^&#\s'\"]+")


def redacted(text: str) -> str:
    """``text`` with the secrets of any URL in it shown as ``***`` (``rtsp://admin:***@cam/``,
    ``...?token=***``): messages go to terminals, logs and the journal."""
    if "://" not in text:
        return text
    return _URL_SECRET_QUERY.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def printable(text: str, *, redact: bool = True) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, an undecodable byte's
    ``\\udcff``): a file name with a newline stays on its message's one line, and none
    can move the cursor or recolour the terminal; and a URL's password or token hidden
    (``redacted``) unless ``redact`` is False: vbg's own control address, whose token the
    user needs to open the page."""
    if redact:
        text = redacted(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def columns(stream=None, environ=None) -> int:
    """How many character cells a line on the terminal ``stream`` (default stderr) has before it
    wraps: ``COLUMNS`` when it holds a number (a user's or a test's setting), else the terminal's
    own width, else 80. A redrawn line (the progress bar, the live status line) longer than that
    wraps, and its next redraw, which returns to the start of the last row only, leaves the rest
    behind on the screen."""
    env = os.environ if environ is None else environ
    value = env.get("COLUMNS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return os.get_terminal_size((stream or sys.stderr).fileno()).columns or 80
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 80


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal a person watches (False for a pipe, a file, a closed one)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


_ROW: list[int | None] = [None]  # the width of the row a bar or the status line is being redrawn on, else None
# Held around a redraw and its row_drawn, and around a message's clear_row and write: a log line
# from another thread never lands in the middle of a redraw (and then wraps the row).
ROW_LOCK = threading.RLock()


def row_drawn(width: int | None) -> None:
    """A redrawn row (the progress bar, the live status line) of ``width`` cells now ends where
    the cursor is; None: the row was closed (a newline after it, or blanked)."""
    _ROW[0] = width


def clear_row(stream) -> None:
    """Before a message: blank the row being redrawn and go to its start, so the message does not
    run on from the bar's end; the bar is drawn again below it at its next update."""
    width = _ROW[0]
    if width is not None:
        _ROW[0] = None
        stream.write("\r" + " " * width + "\r")


def cells(text: str) -> int:
    """The terminal cells ``text`` takes: a wide (CJK) or full-width character two, a combining
    mark none, any other one."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def fit(text: str, width: int, *, middle: bool = False) -> str:
    """``text`` cut to at most ``width`` cells, ``...`` standing for what was cut: at the end, or
    in the ``middle`` (a file name keeps its end, where the type is)."""
    if cells(text) <= width:
        return text
    if width <= 3:
        return "." * max(0, width)
    room = width - 3
    if not middle:
        return _head(text, room) + "..."
    tail = _head(text[::-1], room // 2)[::-1]
    return _head(text, room - cells(tail)) + "..." + tail


def _head(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` cells."""
    out, used = [], 0
    for c in text:
        used += cells(c)
        if used > width:
            break
        out.append(c)
    return "".join(out)


def flush() -> None:
    """Flush both streams now, so a failure is known before the exit code is chosen."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
