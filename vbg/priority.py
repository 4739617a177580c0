"""Thread priorities: the frame path first, the model in the gaps.

In: the kernel ids of threads (:func:`thread_ids`; default: the calling
thread). Out: :func:`lower` raises their nice value (+3 by default) and
returns how many changed; it needs no privileges and does nothing where the
platform has no per-thread nice (Windows, macOS). Thread: any; the live
pipeline calls it for the inference thread and ONNX Runtime's pool threads.

On two cores the model's intra-op threads and the render thread compete for
the same cores; when they run at the same priority the render thread is
preempted in the middle of a frame and its work stretches (RMBG-1.4 at
--size 256 on the 2-core VM: render p50 / p95 14.1 / 23.3 ms with the model
at nice 0, 10.1 / 17.1 ms at +10; ``python -m benchmarks.live --model-nice N``).
So the live pipeline lowers the inference thread and ONNX Runtime's pool
threads, per thread on Linux. By how much is a trade: the scheduler gives a
thread at nice +10 about a tenth of a nice-0 thread's share, so beside two
CPU-bound processes (a build, a batch job) the selfie model went from 4 ms to
30-110 ms, no mask was waited for and the matte lost 0.02-0.05 IoU on real
footage. At +3 (about half a share) it takes 8-10 ms and stays within 0.01
IoU of per-frame inference on every sequence (+5 missed on one sequence in
one of three runs), while the render path gives up 1-3 ms against +10
(p50 / p95 11.2-13.3 / 18.3-20.6 ms with RMBG-1.4, 30 fps out) and the
desktop's own programs still come first 2 to 1. ``python -m
benchmarks.quality_live --hogs 2 --model-nice N`` measures the first half;
``benchmarks/QUALITY.md`` has both. An unprivileged thread cannot take a
lowered priority back (RLIMIT_NICE is 0 on common distributions), so the
choice is made once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("vbg.priority")

BACKGROUND_NICE = 3
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
