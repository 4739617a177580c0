"""How many model sessions ``vbg process --workers auto`` runs: what it measures decides.

In: the config, the model source, the frame size and the bytes of the frames
in flight. Out: :func:`open_auto` returns the opened segmenters (one or two)
and a :class:`Choice` saying why that many; the timing is cached per machine,
model and frame size. The outputs never depend on the choice. Thread: the
caller's, before the job starts.

Two sessions of one intra-op thread each, on alternate frames, skip the synchronisation
between cores inside an inference. They share one copy of the model's weights
(``onnx_backend.weights_shared``: the graph is optimised once and both sessions run it on the
same arrays), so a second RMBG-1.4 session adds its activations, about 30-60 MB, not the
model's 210 MB again. Auto runs two only when two measurably pay (``GAIN``) and the memory for
the second is there (what the first took, a bound from above); otherwise one session on every
core. The timing is measured once per machine, model and frame size (``MIN_S`` of inferences
of each kind, ``RUNS`` at least) and kept: the outputs never depend on it, since the masks are
the same whichever count runs (each frame is one inference of the same model on the same
input, whatever the threads: the tests check it).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError

log = logging.getLogger("vbg.process")

GAIN = 1.15  # two sessions must give this many times the frames per second of one
RUNS = 3  # timed inferences of each kind at least (after one warm-up) ...
MIN_S = 0.3  # ... and more until this long is timed: a few ms inferences, three times, are noise
MAX_RUNS = 100
CACHE_NAME = "workers.json"


def parse_workers(text: str, seg_cfg) -> int | None:
    """``--workers``: a number 1..16, or auto: 1 on a GPU or a single core, else None: measured
    once the model is open (:func:`open_auto`)."""
    text = text.strip()
    if text.lower() == "auto":
        if seg_cfg is None:  # the caller measures nothing (vbg process --ray: one actor per core)
            return None
        if seg_cfg.backend != "onnx" or (os.cpu_count() or 1) < 2:
            return 1
        from ..inference.onnx_backend import provider_list

        on_cpu = provider_list(seg_cfg.device)[0] == "CPUExecutionProvider"
        return None if on_cpu else 1
    from ..ranges import WORKERS

    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--workers {text!r} is neither a number nor auto: use {WORKERS.describe()} or auto"
                          ) from None
    if n not in WORKERS:
        raise ConfigError(f"--workers {text!r} is out of range: use {WORKERS.describe()} or auto")
    return n


@dataclass(frozen=True, slots=True)
class Choice:
    """The worker count and why, in words for the status line."""

    workers: int
    reason: str


def choose(one_s: Sequence[float], two_s: Sequence[float], *, gain: float = GAIN) -> Choice:
    """The count from the timings: ``one_s``, seconds per inference of one session on every
    core; ``two_s``, wall seconds per round of two sessions each running one inference at
    the same time (two frames). Medians, so that one run disturbed by another program does
    not decide."""
    one_fps = 1.0 / statistics.median(one_s)
    two_fps = 2.0 / statistics.median(two_s)
    ratio = two_fps / one_fps
    said = f"2 sessions gave {two_fps:.1f} fps, 1 session {one_fps:.1f} fps ({ratio - 1:+.0%}"
    if ratio >= gain:
        return Choice(2, said + ")")
    return Choice(1, f"{said}, under {gain - 1:+.0%})")


def memory_short(session_bytes: int, frames_bytes: int, available_bytes: int | None) -> str | None:
    """Why a second session does not fit (None: it does): ``session_bytes`` is what the first
    one took, ``frames_bytes`` the frames in flight the job still allocates (its --memory plan
    for two workers), ``available_bytes`` the memory the system can give (None: not known)."""
    if available_bytes is None:
        return None
    need = session_bytes + frames_bytes
    if available_bytes >= need:
        return None
    return (f"a second session needs about {session_bytes >> 20} MB besides {frames_bytes >> 20} MB of frames "
            f"in flight, and {available_bytes >> 20} MB are available")


def available_bytes() -> int | None:
    """MemAvailable (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> float:
    """The 1-minute run-queue average; 0 where the system does not keep one (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


def _more(out: list[float], runs: int, min_s: float) -> bool:
    """Whether to time another round: fewer than ``runs``, or under ``min_s`` timed so far."""
    return len(out) < runs or (sum(out) < min_s and len(out) < MAX_RUNS)


def time_one(seg, rgb: np.ndarray, runs: int = RUNS, clock: Callable[[], float] = time.perf_counter,
             min_s: float = MIN_S) -> list[float]:
    """Seconds per inference of ``seg`` on ``rgb`` (after the warm-up the caller did): ``runs``
    times, and more while less than ``min_s`` is timed (``MAX_RUNS`` at most)."""
    out: list[float] = []
    while _more(out, runs, min_s):
        t0 = clock()
        seg.segment(rgb)
        out.append(clock() - t0)
    return out


def time_two(a, b, rgb: np.ndarray, runs: int = RUNS, clock: Callable[[], float] = time.perf_counter,
             min_s: float = MIN_S) -> list[float]:
    """Wall seconds per round of ``a`` and ``b`` each running one inference at the same time,
    ``b`` on a thread of its own (after one warm-up round): two workers' throughput. As many
    rounds, by the same rule as :func:`time_one`."""
    errors: list[BaseException] = []

    def run_b() -> None:
        try:
            b.segment(rgb)
        except BaseException as e:  # noqa: BLE001 -- raised again in the caller's thread
            errors.append(e)

    out: list[float] = []
    warm = True
    while warm or _more(out, runs, min_s):
        other = threading.Thread(target=run_b, name="vbg-calibrate", daemon=True)
        t0 = clock()
        other.start()
        a.segment(rgb)
        other.join()
        if errors:
            raise errors[0]
        if not warm:
            out.append(clock() - t0)
        warm = False
    return out


def cache_key(source, cfg, frame_hw: tuple[int, int], cores: int) -> str:
    """What the timing depends on: the model file, the size it runs at, the machine's cores, the runtime."""
    from ..inference.onnx_backend import import_ort

    path = source.onnx
    try:
        stamp = f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}" if path is not None else source.label
    except OSError:
        stamp = str(path)
    return "|".join(map(str, (stamp, cfg.variant, cfg.size, cfg.default_size, cfg.device, cfg.threads,
                              f"{frame_hw[0]}x{frame_hw[1]}", cores, import_ort().__version__)))


def read_cache(path: Path | None) -> dict:
    """The cached choices ({} when there is none, or it cannot be read: it is measured again)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path | None, key: str, choice: Choice) -> None:
    """Keep ``choice`` for the next run; a cache that cannot be written only costs the measurement again."""
    if path is None:
        return
    from ..fsutil import NewFile

    data = read_cache(path)
    data[key] = {"workers": choice.workers, "reason": choice.reason}
    try:
        with NewFile(path, check_busy=False) as new:
            new.write(json.dumps(data, indent=1).encode())
    except OSError as e:
        log.debug("cannot keep the worker choice in %s: %s", path, e)


# Long (~75 lines): one walk through the cached / short-of-memory / measured cases over the same
# `opened` sessions; left whole while the shared-weights change edits it (issue 14).
def open_auto(cfg, source, frame_hw: tuple[int, int], frames_bytes: int, *, cache_file: Path | None = None,
              open_segmenter=None, available: Callable[[], int | None] = available_bytes,
              rss: Callable[[], int | None] = rss_bytes, measure_one=time_one, measure_two=time_two,
              cores: int | None = None, load: Callable[[], float] | None = None) -> tuple[list, Choice]:
    """The segmenters ``--workers auto`` runs, and why that many.

    One session on every core (``cfg.threads`` None) is timed on a frame of ``frame_hw``, then
    two sessions of half the cores each, side by side; two are kept when :func:`choose` says
    so, and the choice is cached in ``cache_file`` for this model, size and machine, unless
    other programs kept the cores busy (``load``, the run-queue average, above the core count:
    their share would decide, so the next run measures again). Two are
    never opened when the memory for the second (what the first took, measured as resident
    memory, plus ``frames_bytes``, the frames in flight the job will hold) is not available.
    At most two sessions are open at any time."""
    from ..inference.onnx_backend import weights_shared
    from ..inference.segmenter import create_segmenter

    open_segmenter = open_segmenter or create_segmenter
    scratch = cache_file.parent if cache_file is not None else None
    cores = cores or os.cpu_count() or 1
    one_cfg = cfg
    two_cfg = replace(cfg, threads=max(1, (cfg.threads or cores) // 2))
    # Inference time does not depend on the pixels: a fixed noise frame of the input's size.
    rgb = np.random.default_rng(0).integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    key = cache_key(source, cfg, frame_hw, cores)
    known = read_cache(cache_file).get(key)
    if isinstance(known, dict) and known.get("workers") in (1, 2):
        known = Choice(known["workers"], f"{known.get('reason', 'measured before')}; kept in {cache_file}")
    else:
        known = None
    busy = (load or load_average)() if known is None else 0.0  # others' load, before this process adds its own
    opened: list = []

    def open_one(c) -> int:
        """Open a segmenter with its first inference; the resident memory it took."""
        before = rss()
        seg = open_segmenter(c, source)
        opened.append(seg)
        seg.segment(rgb)  # the warm-up: buffers and the arena are allocated on the first run
        after = rss()
        return max(0, after - before) if before is not None and after is not None else 0

    def close_all() -> None:
        from ..inference.onnx_backend import release_freed_memory

        while opened:
            opened.pop().close()
        release_freed_memory()  # the closed sessions' weights, before the next one is opened

    try:
        if known is not None and known.workers == 1:
            open_one(one_cfg)
            return list(opened), known
        if known is not None:
            with weights_shared(scratch):
                took = open_one(two_cfg)
                short = memory_short(took, frames_bytes, available())
                if short is None:
                    open_one(two_cfg)
                    return list(opened), known
            close_all()  # the session open has half the threads: reopen on every core
            open_one(one_cfg)
            return list(opened), Choice(1, short)
        took = open_one(one_cfg)
        short = memory_short(took, frames_bytes, available())
        if short is not None:
            return list(opened), Choice(1, short)
        one_s = measure_one(opened[0], rgb)
        close_all()
        with weights_shared(scratch):
            open_one(two_cfg)
            open_one(two_cfg)
        choice = choose(one_s, measure_two(opened[0], opened[1], rgb))
        if busy > cores:
            choice = Choice(choice.workers, f"{choice.reason}; not kept: other programs were busy (load {busy:.1f})")
        else:
            write_cache(cache_file, key, choice)
        if choice.workers == 1:
            close_all()
            open_one(one_cfg)
        return list(opened), choice
    except BaseException:
        close_all()
        raise
