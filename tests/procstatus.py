"""This process's OS threads and resident memory, read from /proc (Linux): what a file of
`vbg process` takes and gives back. Imported by the tests and by the batches they run in a
fresh interpreter."""

from __future__ import annotations

import time
from pathlib import Path

SETTLE_S = 10.0  # real seconds a just-joined thread may take to leave /proc (a guard, not a measurement)


def thread_names() -> list[str]:
    """The OS threads' names (for a failure's message): Python's, FFmpeg's, ONNX Runtime's."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            pass  # ended meanwhile
    return sorted(names)


def status(settle_to: int | None = None) -> tuple[int, float]:
    """(OS threads of this process, resident memory in MB). A joined Python thread can still be
    ending in the OS for a moment (``join`` returns once its Python part is done): with
    ``settle_to``, the count is read until it is down to that, ``SETTLE_S`` at most (a guard
    only: a thread that lives on is still counted)."""
    end = time.monotonic() + SETTLE_S
    while True:
        text = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        threads = int(fields["Threads"])
        if settle_to is None or threads <= settle_to or time.monotonic() > end:
            return threads, int(fields["VmRSS"].split()[0]) / 1024
        time.sleep(0.01)


def comm_and_parent(pid: int | str) -> tuple[str, int] | None:
    """(command name, parent PID) of process ``pid`` from /proc/PID/stat (None once it is gone).
    The name is read between the first "(" and the last ")": it may itself hold spaces and brackets."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return text[text.index("(") + 1:text.rindex(")")], int(rest[1])
