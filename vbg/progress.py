"""Progress for `vbg process`: a bar per file, a summary line, or JSON lines.

In: per file, ``update(done)`` from the job's hot loop. Out: a bar, a summary
line or JSON lines on ``stream`` (stderr by default); file names shown to a
person are escaped (``vbg.streams.printable``). Thread: the job's own.

The hot loop only calls ``update(done)``; drawing is throttled by time, and
time comes from an injectable clock so tests can drive it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import TextIO

from .clock import Clock, MonotonicClock
from .streams import ROW_LOCK, cells, columns, fit, printable, redacted, row_drawn

MODES = ("bar", "quiet", "json")


def _fmt_time(seconds: float) -> str:
    if math.isnan(seconds) or seconds < 0:
        return "--:--"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, label: str, total: int | None, *, mode: str = "bar", stream: TextIO | None = None,
                 clock: Clock | None = None, interval: float | None = None, width: int = 24,
                 terminal_columns: Callable[[], int] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: use one of {MODES}")
        # A person reads the bar: a newline or escape code in a file name is shown escaped
        # (JSON lines escape it themselves).
        self.label = label if mode == "json" else printable(label)  # JSON: emit() hides a URL's secrets
        self.total, self.mode = total, mode
        self.stream = stream or sys.stderr
        self.clock = clock or MonotonicClock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # A terminal redraws one line often; a log file or a script gets fewer lines.
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0 if mode == "bar" else 1.0)
        self.width = width
        # the terminal's width, read at each redraw (a window may be resized): the bar fits in it
        self._columns = terminal_columns or (lambda: columns(self.stream))
        self.t0 = self.clock.now()
        # A terminal shows the bar at once; a log gets its first line after one interval.
        self._last_draw = -1e9 if self.tty or mode == "json" else self.t0
        self.done = 0
        self.estimate: int | None = None  # where ``total`` is unknown (Matroska, WebM, MPEG-TS): from the duration

    def emit(self, event: str, **fields) -> None:
        """A JSON-lines event (json mode only)."""
        if self.mode == "json":
            self.stream.write(redacted(json.dumps({"event": event, "input": self.label, **fields})) + "\n")
            self.stream.flush()

    def rate(self) -> float:
        dt = self.clock.now() - self.t0
        return self.done / dt if dt > 0 else 0.0

    def eta(self) -> float:
        r = self.rate()
        total = self.total or self.estimate
        if not total or r <= 0:
            return float("nan")
        return max(0.0, (total - self.done) / r)

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock.now()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        if self.mode == "json":
            eta = self.eta()
            self.emit("progress", done=done, total=self.total, fps=round(self.rate(), 2),
                      eta_s=None if math.isnan(eta) else round(eta, 1))
        elif self.mode == "bar":
            self._draw()

    def line(self, width: int | None = None) -> str:
        """The progress as one line; at most ``width`` cells when given: the bar narrows (and goes
        under 8 cells), then the name loses its middle, then the figures their end."""
        fps = self.rate()
        total = self.total or self.estimate
        if total:
            frac = min(1.0, self.done / total)
            of = self.total if self.total else f"~{self.estimate}"  # an estimate from the duration: said as one
            tail = f" {100 * frac:3.0f}% {self.done}/{of} frames {fps:5.1f} fps ETA {_fmt_time(self.eta())}"
            bar_w = self.width
            if width is not None:
                bar_w = min(self.width, width - cells(self.label) - cells(tail) - 3)  # " [" "]"
                bar_w = bar_w if bar_w >= 8 else 0
            filled = int(frac * bar_w)
            bar = f" [{'#' * filled}{'.' * (bar_w - filled)}]" if bar_w else ""
        else:
            bar, tail = "", f" {self.done} frames {fps:5.1f} fps {_fmt_time(self.clock.now() - self.t0)}"
        if width is None:
            return f"{self.label}{bar}{tail}"
        label = fit(self.label, max(8, width - cells(bar) - cells(tail)), middle=True)
        return fit(f"{label}{bar}{tail}", width)

    def _draw(self) -> None:
        if self.tty:
            # One row, rewritten in place: it must not wrap (a redraw returns to the start of its
            # last row only), and spaces, not an escape code, clear what a longer one left.
            width = max(1, self._columns() - 1)
            text = self.line(width)
            with ROW_LOCK:
                self.stream.write("\r" + text + " " * (width - cells(text)))
                row_drawn(width)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def clear_line(self) -> None:
        """Blank the row the bar is on (a terminal), the cursor at its start."""
        width = max(1, self._columns() - 1)
        with ROW_LOCK:
            self.stream.write("\r" + " " * width + "\r")
            row_drawn(None)

    def finish(self, summary: str, **fields) -> None:
        """Close the bar and print the one-line summary (or the JSON 'done' event)."""
        if self.mode == "json":
            self.emit("done", frames=self.done, seconds=round(self.clock.now() - self.t0, 3),
                      fps=round(self.rate(), 2), **fields)
            return
        if self.mode == "bar" and self.tty:
            self.clear_line()
        self.stream.write(printable(summary) + "\n")
        self.stream.flush()

    def fail(self, message: str) -> None:
        if self.mode == "json":
            self.emit("error", message=message)
        elif self.mode == "bar" and self.tty:
            self.clear_line()
            self.stream.flush()
