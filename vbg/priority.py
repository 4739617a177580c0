"""Thread priorities: the frame path first, the model in the gaps.

In: the kernel ids of threads (:func:`thread_ids`; default: the calling
thread). Out: :func:`lower` raises their nice value (+10 by default) and
returns how many changed; it needs no privileges and does nothing where the
platform has no per-thread nice (Windows, macOS). Thread: any; the live
pipeline calls it for the inference thread and ONNX Runtime's pool threads.

On two cores the model's intra-op threads and the render thread compete for
the same cores; when they run at the same priority the render thread is
preempted in the middle of a frame and its ~4 ms of work stretches to 10-12 ms
(measured in ``python -m benchmarks.live``). The model has a budget of several
frame intervals anyway, so the live pipeline lowers the priority of the
inference thread and of ONNX Runtime's pool threads (``nice`` +10 on Linux,
per thread): the render thread then takes the cores when it has a frame, and
the model runs in between. Lowering a priority needs no privileges; where the
platform has no per-thread nice (Windows, macOS) this does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("vbg.priority")

BACKGROUND_NICE = 10
_TASKS = "/proc/self/task"


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority") and os.path.isdir(_TASKS)


def thread_ids() -> set[int]:
    """The kernel ids of this process's threads (empty where /proc is not there)."""
    if not supported():
        return set()
    try:
        return {int(t) for t in os.listdir(_TASKS)}
    except OSError:
        return set()


def lower(tids: set[int] | None = None, by: int = BACKGROUND_NICE) -> int:
    """Raise the nice value of ``tids`` (default: the calling thread) by ``by``; returns how many changed."""
    if not supported():
        return 0
    if tids is None:
        tids = {threading.get_native_id()}
    done = 0
    for tid in tids:
        try:
            now = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, now + by))
            done += 1
        except OSError as e:  # the thread ended meanwhile, or a sandbox forbids it: not worth failing for
            log.debug("cannot lower the priority of thread %d: %s", tid, e)
    return done


def nice_of(tid: int) -> int | None:
    if not supported():
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None
