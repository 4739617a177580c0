"""`vbg process --ray`: the same job on a Ray cluster (a local Ray runtime, or one joined).

In: a :class:`~vbg.config.ProcessConfig` with its model settled, the model's source (resolved
once, on this driver), and per input a source path, a target path and whether it is a PNG
sequence. Out: the targets, written under fresh names and renamed into place as a local run
writes them, and a :class:`~vbg.offline.process.FileResult` per input (``error`` set for one
that failed: the others go on). Errors of the set-up (Ray missing, no cluster at the address)
are raised; nothing here ends the process or prints.

    driver: plan (keyframes) -> units -> actors (one per worker slot, segmenter kept) -> parts -> join

Work units: a short file is one unit; a long one (at least two ``segment_s`` of frames) is cut at
its keyframes into parts of about ``segment_s`` seconds (``plan_spans``). Each part is decoded
with ``--window`` frames of context on both sides, so that the centred smoothing of each of its
frames sees the frames a whole-file run gives it (the mask is then the same, byte for byte, on
one model and device), and written apart, without sound, into a hidden staging folder beside
the target. Once every part of a file is in, the driver joins them: video packets copied as they
are (no re-encoding) with the source's audio muxed once (``vbg.media.join``), or PNG frames moved
into one new folder.

Workers: one Ray actor per worker slot opens the segmenter once and keeps it for every unit it is
given; it asks Ray for a GPU (or ``gpus / workers`` of one) where the cluster has GPUs and the
model may use CUDA, else for CPUs. The model file goes to the actors through Ray's object store
(read once here, written once per node into its vbg cache); a torch checkpoint is
handed over as its path, which every node must then see. An actor whose process dies is
restarted by Ray (``max_restarts``) and gets units again once it has started; the driver gives
its units (the one it was running, the one queued behind it) to whichever worker is free, rather
than leaving them to Ray to run again on the same actor, which may never find room again (another
worker, waiting for room, takes the freed one); a part left half-written by the dead process is a
hidden temporary file in the staging folder, which goes with the folder. A unit that fails for its file's own reasons (a damaged input) fails that file
alone. Ctrl-C (``stop``) ends the actors at once; the files already joined stay, the rest leave
nothing (no partial file: parts are not a playable whole).

Progress: each unit reports its frames to a small job actor, twice a second at most; the
driver reads it and draws one bar (or the same JSON lines as a local run) for the whole job.

Why (work units, identical masks, the join, actors, faults): docs/design/scale-out.md.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DependencyError, InputError, OutputError, VbgError, one_line
from ..fsutil import cannot_write
from .process import FileProcessor, FileResult, Span, SplitError, say_conversions

log = logging.getLogger("vbg.process")

RAY_HINT = "pip install 'vbg[ray]'"
SEGMENT_S = 60.0  # a part's length; a file shorter than two is one unit
REPORT_S = 0.5  # how often a unit reports its frames, at most
CPUS_PER_ACTOR = 4  # an actor's CPUs on big nodes (a file's decode, smoothing threads, encode)
RESTARTS = 3  # an actor whose process died is restarted this many times; a unit whose worker died, run again as often
STAGING_WAIT_S = 10.0  # at a job's end, how long its staging folders are removed again, at most (_remove_staging)
STAGING_QUIET_S = 0.5  # ... until each has stayed gone this long
START_WARN_S = 60  # a worker that has not started by then is waiting for room: said once


def import_ray():
    """The ``ray`` module, or ``DependencyError`` with the install hint."""
    try:
        import ray
    except ImportError as e:
        raise DependencyError(f"--ray needs Ray, which is not installed ({one_line(e)}): {RAY_HINT}") from e
    return ray


@contextlib.contextmanager
def ray_runtime(address: str | None, **init_kwargs):
    """Ray for the job: already initialised in this process (left running), else a local runtime
    (``address`` None: started here, shut down after) or the cluster at ``address`` (``auto``,
    ``ray://HOST:PORT``). Yields the dashboard URL, or None."""
    ray = import_ray()
    if ray.is_initialized():
        yield _dashboard(ray, None)
        return
    _check_reachable(address)
    try:
        ctx = ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, **init_kwargs)
    except BaseException as e:
        # what a failed or interrupted start left (a local runtime's agents) goes with it
        with contextlib.suppress(Exception):
            ray.shutdown()
        if not isinstance(e, Exception) or isinstance(e, (TypeError, AttributeError, NameError, AssertionError)):
            raise  # Ctrl-C; or a programming error, vbg's or Ray's: its traceback, not a hint
        raise _start_error(address, e) from None
    try:
        yield _dashboard(ray, ctx)
    finally:
        ray.shutdown()


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster's ``HOST:PORT`` or ``ray://HOST:PORT`` that nothing answers at is said at once:
    Ray itself retries it for minutes, printing a warning every few seconds."""
    import socket

    if address in (None, "", "auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # Ray says what is wrong with it
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--ray {address}: no Ray cluster answers there ({e.strerror or one_line(e)}): start "
                          "one (ray start --head) or pass its address") from None


_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOSPC,
               getattr(errno, "EDQUOT", errno.ENOSPC))


def _start_error(address: str | None, e: Exception) -> VbgError:
    """The one line for a Ray that would not start or connect."""
    text = one_line(e)
    if isinstance(e, ConnectionError):
        return ConfigError(f"--ray {address}: no Ray cluster answers there ({text}): start one "
                           "(ray start --head) or pass its address")
    if "ray[client]" in text:  # a ray:// address with Ray installed without its client part
        return DependencyError(f"--ray {address}: Ray Client is not installed ({text}): "
                               f"pip install 'ray[client]' (or {RAY_HINT})")
    if isinstance(e, OSError) and e.errno in _UNWRITABLE:  # a home or /tmp Ray cannot write its session files to
        return OutputError(f"--ray: Ray could not write its files ({text}): Ray keeps them in your home folder "
                           "and /tmp/ray: make them writable (HOME, TMPDIR)")
    return ConfigError(f"--ray{' ' + address if address else ''}: Ray did not start ({text}): "
                       "run without --ray, or check the cluster with ray status")


def _dashboard(ray, ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None)
    if not url:
        with contextlib.suppress(Exception):
            url = ray.get_runtime_context().get_dashboard_url() if hasattr(
                ray.get_runtime_context(), "get_dashboard_url") else None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url or None


# ------------------------------------------------------------------ planning
def plan_spans(src: Path, window: int, segment_s: float = SEGMENT_S) -> list[Span] | None:
    """``src``'s parts, cut at keyframes about ``segment_s`` apart, each with ``window`` frames of
    context where the file has them; None: one unit (short, a single keyframe group, frames
    without timestamps, or recordings joined end to end: ``vbg.media.timeline``). Reads the
    packets, decodes nothing."""
    import av

    from ..media.open import is_url, open_read, picture_stream
    from ..media.timeline import joins_of

    if is_url(str(src)):  # a stream is read once, by the worker that gets it
        return None
    try:
        with open_read(src) as container:
            if joins_of(src, container) is not None:  # recordings joined end to end: a time is not a place
                return None
            stream = picture_stream(container)  # the one the readers read, not a cover picture
            if stream is None:
                return None
            rate = float(stream.average_rate or stream.guessed_rate or 30)
            pts: list[int] = []
            keys: dict[int, int] = {}  # each keyframe's pts -> its dts (a seek's target where there is no index)
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:  # discarded: decoded for reference, never shown
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys[packet.pts] = packet.pts if packet.dts is None else packet.dts
    except av.FFmpegError as e:
        raise InputError(f"{src}: reading its packets failed ({one_line(e)}): the file may be damaged") from e
    order = sorted(pts)
    n = len(order)
    seg = max(1, round(segment_s * rate))
    if n < 2 * seg or len(set(order)) != n:
        return None
    index = {p: i for i, p in enumerate(order)}
    starts = [0]
    for i in sorted(index[k] for k in keys):
        if i - starts[-1] >= seg and n - i >= seg // 2:
            starts.append(i)
    if len(starts) == 1:
        return None
    spans = []
    for a, b in zip(starts, starts[1:] + [n]):
        before, after = min(window, a), min(window, n - b)
        start = order[a - before]
        key = max((k for k in keys if k <= start), default=None)
        spans.append(Span(first=a, count=b - a, before=before, after=after, start_pts=start, first_pts=order[a],
                          seek_ts=None if key is None else keys[key], origin_pts=order[0], last_pts=order[b - 1]))
    return spans


@dataclass(eq=False)
class _File:
    """One input of the job and what has come back for it."""

    index: int
    src: Path
    dst: Path
    sequence: bool
    progress: object  # vbg.progress.Progress: its events and summary
    spans: list = field(default_factory=list)  # Span per part; [None]: the whole file
    staging: Path | None = None
    parts: dict = field(default_factory=dict)  # part -> FileResult
    error: VbgError | None = None
    left: int = 0  # units of this try not back yet
    t0: float = 0.0
    result: FileResult | None = None
    announced: bool = False  # its "start" event was emitted
    attempt: int = 0  # 1: run whole after its parts did not hold the frames planned (SplitError)
    said: dict = field(default_factory=dict)  # kind -> (frame, level, line): the earliest change its parts met

    def part_path(self, part: int) -> Path:
        return self.staging / (f"try{self.attempt}-part{part:05d}" + ("" if self.sequence else self.dst.suffix))


@dataclass(frozen=True, slots=True)
class _Unit:
    file: int
    part: int
    span: Span | None
    attempt: int = 0
    reruns: int = 0  # given again after its worker's process died under it


# ------------------------------------------------------------------ the workers (in the Ray actors)
class _PartProgress:
    """What ``FileProcessor`` reports to, in a worker: the part's own frames, to the counter actor."""

    def __init__(self, counter, key: tuple, span: Span | None) -> None:
        self.total = None
        self._counter, self._key = counter, key
        self._before = span.before if span is not None else 0
        self._count = span.count if span is not None else None
        self._last = -1e9

    def emit(self, event: str, **fields) -> None:
        pass

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REPORT_S:
            return
        self._last = now
        own = max(0, done - self._before)
        if self._count is not None:
            own = min(own, self._count)
        self._counter.set.remote(self._key, own)


class JobState:
    """The job's shared state (a Ray actor): the model's object-store reference, which a worker
    (re)started at any time fetches, and the frames done per unit, set by the workers and read
    by the driver. A unit run again after its worker died sets its count again, never adds to it."""

    def __init__(self, model: list) -> None:
        self._model = model  # [reference]: a reference in a list stays one (not resolved to the bytes)
        self.done: dict = {}

    def model(self) -> list:
        return self._model

    def set(self, key, n: int) -> None:
        self.done[key] = n

    def get(self) -> dict:
        return self.done


def _node_copy(job, name: str, sha256: str) -> Path:
    """The driver's model file in this node's vbg cache (``ray/SHA-NAME``): written once per node
    from the object store (its reference held by the ``job`` actor, so that a restarted worker
    fetches it again), and checked by its hash when it is there already."""
    import hashlib

    from ..fsutil import write_new
    from ..models.hub import cache_dir

    path = cache_dir() / "ray" / f"{sha256[:16]}-{name}"
    if path.is_file():
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    import ray

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_new(path, ray.get(ray.get(job.model.remote())[0]))


class _Midway(logging.Handler):
    """A worker's readers' lines of a change met part-way (``vbg.media.reader.MIDWAY``: a file that
    turns interlaced, or changes size): kept for the driver, which says the earliest of each kind
    once for the file (a part's frames overlap its neighbours', and a part whose first frame is
    already changed cannot tell where the change began)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, int | None, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from ..media.reader import MIDWAY

        kind, frame = getattr(record, MIDWAY, (record.getMessage(), None))
        self.lines.append((kind, frame, record.levelno, record.getMessage()))

    def take(self) -> list[tuple[str, int | None, int, str]]:
        lines, self.lines = self.lines, []
        return lines


class Worker:
    """One worker slot (a Ray actor): its segmenter, opened once, and a ``FileProcessor``."""

    def __init__(self, cfg, spec_name: str, label: str, job_name: str, weights: str | None, onnx_name: str | None,
                 sha256: str | None) -> None:
        from ..inference import create_segmenter
        from ..models.resolve import ModelSource
        from ..models.spec import get_spec

        spec = get_spec(spec_name)
        if onnx_name is not None:
            import ray

            source = ModelSource(spec, label, onnx=_node_copy(ray.get_actor(job_name), onnx_name, sha256))
        else:  # a checkpoint's path, which this node sees
            source = ModelSource(spec, label, weights=Path(weights))
        self.seg = create_segmenter(cfg.model, source)
        self.proc = FileProcessor(cfg, self.seg)
        self.said = _Midway()
        readers = logging.getLogger("vbg.reader")  # their lines go back with each unit, not to Ray's logs
        readers.handlers[:], readers.propagate = [self.said], False
        readers.setLevel(logging.INFO)

    def pid(self) -> int:
        return os.getpid()

    def providers(self) -> list[str]:
        return list(self.seg.providers)

    def run(self, unit: _Unit, src: str, part: str, sequence: bool, counter):
        """One unit into ``part``: (FileResult, None, lines), or (None, (exit code, message, split),
        lines) when its file failed for its own reasons (``split``: its part did not hold the planned
        frames); ``lines``: its reader's (``_Midway``)."""
        if not Path(part).parent.is_dir():  # its job was stopped and its staging folder removed: not made again
            return None, (130, f"{src}: its job was stopped", False), []
        progress = _PartProgress(counter, (unit.file, unit.attempt, unit.part), unit.span)
        self.said.take()
        try:
            res = self.proc.process(Path(src), Path(part), progress, sequence=sequence, overwrite=True,
                                    span=unit.span, audio=False)
        except VbgError as e:
            return None, (e.exit_code, str(e), isinstance(e, SplitError)), self.said.take()
        progress.update(res.frames + (unit.span.before if unit.span else 0), force=True)
        res.buffers = None
        return res, None, self.said.take()


# ------------------------------------------------------------------ the driver
@dataclass(frozen=True)
class RayJob:
    """How the job uses the cluster."""

    workers: int  # actors
    num_cpus: float
    num_gpus: float
    segment_s: float = SEGMENT_S


def plan_workers(ray, cfg, workers: int | None) -> RayJob:
    """Actors and the resources each declares, from the live nodes. Where the cluster has GPUs
    and the model may use CUDA: on each GPU node one actor per 4 CPUs (at least one per GPU), each
    asking for its share of the node's GPUs (``num_gpus`` 1 at most): on a GPU the model is fast
    and a file's CPU stages (smoothing, x264) bound one actor (``benchmarks/RESULTS.md``, H200), so
    several actors share a GPU. Otherwise CPUs: one per actor where every node has up to 4 cores, 4
    on clusters with bigger nodes. The resources are one size for all actors, so that the count is
    what fits the nodes; ``workers`` sets the count (more than fit wait for room: see
    ``RayRunner``)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    gpu_nodes = [(int(r.get("GPU", 0)), int(r.get("CPU", 0))) for r in nodes if r.get("GPU", 0) >= 1]
    if gpu_nodes and cfg.model.device in ("auto", "cuda", "tensorrt"):
        per_node = [max(g, c // CPUS_PER_ACTOR) for g, c in gpu_nodes]
        num_gpus = min(min(1.0, g / n) for (g, _), n in zip(gpu_nodes, per_node))
        num_cpus = max(1, min(c // n for (_, c), n in zip(gpu_nodes, per_node)))
        fit = sum(min(int(g / num_gpus + 1e-9), c // num_cpus) for g, c in gpu_nodes)
        if workers:  # N actors over the GPUs there are
            num_gpus = min(1.0, sum(g for g, _ in gpu_nodes) / workers)
        return RayJob(workers or max(1, fit), num_cpus=num_cpus, num_gpus=num_gpus)
    cpus = [int(r.get("CPU", 0)) for r in nodes] or [1]
    per = 1 if max(cpus) <= CPUS_PER_ACTOR else CPUS_PER_ACTOR
    if workers:  # N actors: fewer CPUs each where N of ``per`` would not fit
        return RayJob(workers, num_cpus=max(1, min(per, sum(cpus) // workers)), num_gpus=0)
    return RayJob(max(1, sum(c // per for c in cpus)), num_cpus=per, num_gpus=0)


class RayRunner:
    """Runs a batch on Ray; ``stop`` (Ctrl-C) ends it."""

    def __init__(self, cfg, source, job: RayJob) -> None:
        self.cfg, self.source, self.job = cfg, source, job
        self.stop = threading.Event()
        self.dashboard: str | None = None
        self.actors: list = []
        self.state = None  # the JobState actor

    def _start_actors(self, ray) -> None:
        if self.source.onnx is not None:
            import hashlib

            data = self.source.onnx.read_bytes()
            model, weights, onnx_name, sha = [ray.put(data)], None, self.source.onnx.name, hashlib.sha256(data).hexdigest()
            del data
        else:
            model, weights, onnx_name, sha = [], str(self.source.weights), None, None
        import uuid

        # Named, and found by that name: a handle among a restartable actor's arguments would be
        # one more object Ray warns it may lose.
        name = f"vbg-job-{uuid.uuid4().hex}"
        self.state = ray.remote(JobState).options(num_cpus=0, name=name).remote(model)
        cfg = self.cfg
        if cfg.model.threads is None:
            cfg = replace(cfg, model=replace(cfg.model, threads=max(1, int(self.job.num_cpus))))
        worker = ray.remote(Worker).options(num_cpus=self.job.num_cpus, num_gpus=self.job.num_gpus,
                                            max_restarts=RESTARTS, max_task_retries=0)
        self.actors = [worker.remote(cfg, self.source.spec.name, self.source.label, name, weights, onnx_name, sha)
                       for _ in range(self.job.workers)]
        # An actor gets units once it has started (its model open): one that waits for room on the
        # cluster, or never starts, holds none back.
        self._starting = {actor.pid.remote(): i for i, actor in enumerate(self.actors)}
        self._started: set[int] = set()
        self._failed: list[str] = []
        self._t_start = time.monotonic()
        self._warned = False

    def _check_started(self, ray) -> None:
        """Actors that have started since the last look; ``ModelError`` when none could."""
        from ..errors import ModelError

        if not self._starting:
            return
        done, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
        for ref in done:
            i = self._starting.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # its constructor failed (each restart too): the model, the device
                self._failed.append(one_line(e)[:300])
                log.warning("a Ray worker could not start: %s", self._failed[-1])
                continue
            self._started.add(i)
        if not self._started and not self._starting:
            raise ModelError(f"no Ray worker could open the model ({self._failed[0]}): check that every node has "
                             "the same vbg version and can run the model (vbg doctor on a node)")
        if self._starting and not self._warned and time.monotonic() - self._t_start > START_WARN_S:
            self._warned = True
            job = self.job
            log.warning("%d of %d Ray worker(s) have not started after %d s: the cluster has no room for them "
                        "(each asks for %g CPU(s)%s); the others go on", len(self._starting), len(self.actors),
                        START_WARN_S, job.num_cpus, f" and {job.num_gpus:g} GPU(s)" if job.num_gpus else "")

    def run(self, files: list[tuple], progress_for, job_progress=None, on_done=None) -> list[FileResult]:
        """``files``: (src, dst, sequence) each; ``progress_for(src)``: a ``Progress`` for its events
        and summary; ``job_progress``: one bar for the whole job (or None); ``on_done(file)`` as
        each file is finished or failed. The results, in the order of ``files``."""
        ray = import_ray()
        entries = [_File(i, Path(src), Path(dst), seq, progress_for(src)) for i, (src, dst, seq) in enumerate(files)]
        # Files are planned as the workers need more units, not all before the first one starts:
        # planning reads each file's packets, which for a batch of thousands would hold the start.
        todo: deque[_Unit] = deque()
        planned = iter(entries)
        try:
            first = self._plan_more(planned, todo, 1, job_progress, on_done)
            if first and not self.stop.is_set():
                self._start_actors(ray)
                self._drive(ray, entries, planned, todo, job_progress, on_done)
        finally:
            for a in self.actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            self.actors = []
            if self.state is not None:
                with contextlib.suppress(Exception):
                    ray.kill(self.state)
                self.state = None
            for f in entries:
                if f.staging is not None:
                    _remove_staging(f.staging)
        for f in entries:
            if f.result is None:  # never finished: interrupted
                f.result = FileResult(str(f.src), None, interrupted=True)
                if f.announced and getattr(f.progress, "mode", None) == "json":
                    # its "start" line was printed: its end is too, as a local run's (no file kept)
                    f.progress.finish("", output=None, interrupted=True)  # type: ignore[attr-defined]
        return [f.result for f in entries]

    def _plan_more(self, planned, todo: deque, want: int, job_progress, on_done) -> bool:
        """Plan files from ``planned`` until ``todo`` holds ``want`` units or none is left; False when
        none is left to run at all (every file failed)."""
        while len(todo) < want and not self.stop.is_set():
            f = next(planned, None)
            if f is None:
                break
            self._plan(f, todo)
            if f.error is not None:
                self._finish(f, on_done)
            elif job_progress is not None:
                job_progress.total = (job_progress.total or 0) + (f.progress.total or 0)
        return bool(todo)

    def _plan(self, f: _File, units: deque) -> None:
        from ..media.info import probe

        try:
            info = probe(f.src, cancel=self.stop)
            spans = plan_spans(f.src, self.cfg.temporal.window, self.job.segment_s)
            f.dst.parent.mkdir(parents=True, exist_ok=True)
            f.staging = Path(tempfile.mkdtemp(prefix=f".{f.dst.name[:100]}.", suffix=".vbg-ray", dir=f.dst.parent))
        except VbgError as e:
            f.error = e
            return
        except OSError as e:
            f.error = cannot_write(f.dst.parent, e)
            return
        say_conversions(f.src, info)  # the lines of what its readers meet part-way come back with its units
        f.spans = spans or [None]
        f.progress.total = sum(s.count for s in spans) if spans else info.frames
        f.progress.emit("start", output=str(f.dst), frames=f.progress.total)
        f.announced = True
        f.left = len(f.spans)
        units.extend(_Unit(f.index, i, s) for i, s in enumerate(f.spans))

    def _drive(self, ray, entries: list[_File], planned, todo: deque, job_progress, on_done) -> None:
        counter = self.state
        idle = {i: 0 for i in range(len(self.actors))}  # units in flight per actor (2: one waits its turn)
        pending: dict = {}  # ObjectRef -> (unit, actor index)
        last_poll = 0.0
        while not self.stop.is_set():
            self._check_started(ray)
            for i, actor in enumerate(self.actors):
                while i in self._started and idle[i] < 2 and (
                        todo or self._plan_more(planned, todo, 2 * len(self.actors), job_progress, on_done)):
                    unit = todo.popleft()
                    f = entries[unit.file]
                    if f.error is not None:  # its file failed already: the rest of it is not run
                        f.left -= 1
                        if f.left == 0 and f.result is None:
                            self._finish(f, on_done)
                        continue
                    f.t0 = f.t0 or time.monotonic()
                    ref = actor.run.remote(unit, str(f.src), str(f.part_path(unit.part)), f.sequence, counter)
                    pending[ref] = (unit, i)
                    idle[i] += 1
            if not pending and not todo and not self._plan_more(planned, todo, 1, job_progress, on_done):
                break
            if not pending and not self._started and not self._starting:
                from ..errors import ModelError

                raise ModelError("every Ray worker has stopped (each was restarted as often as allowed): see the "
                                 "errors above")
            ready, _ = ray.wait([*pending, *self._starting], num_returns=1, timeout=REPORT_S)
            for ref in ready:
                if ref not in pending:  # an actor has started: units for it on the next round
                    continue
                unit, i = pending.pop(ref)
                idle[i] -= 1
                f = entries[unit.file]
                if unit.attempt != f.attempt:  # a part of a try given up: the file runs whole now
                    continue
                f.left -= 1
                try:
                    res, failure, said = ray.get(ref)
                except Exception as e:  # its worker died under it (or is restarted too often), or a bug in a worker
                    if isinstance(e, ray.exceptions.RayActorError):
                        if i in self._started:  # units again once it has started again, if Ray restarts it
                            self._started.discard(i)
                            self._starting[self.actors[i].pid.remote()] = i
                        if unit.reruns < RESTARTS and not self.stop.is_set():  # to whichever worker is free
                            f.left += 1
                            todo.appendleft(replace(unit, reruns=unit.reruns + 1))
                            continue
                    res, failure, said = None, (1, f"{f.src}: a Ray worker failed ({one_line(e)[:300]})", False), []
                if failure is not None and failure[2] and f.attempt == 0 and f.error is None:
                    said_src = failure[1] if failure[1].startswith(f"{f.src}:") else f"{f.src}: {failure[1]}"
                    log.warning("%s; processing it whole instead", said_src)
                    f.attempt, f.spans, f.parts, f.left, f.said = 1, [None], {}, 1, {}
                    todo.appendleft(_Unit(f.index, 0, None, 1))
                    continue
                if failure is not None:
                    if f.error is None:
                        f.error = _error(*failure[:2])
                else:
                    f.parts[unit.part] = res
                for kind, frame, level, line in said:  # the earliest of each kind is where it began
                    if kind not in f.said or (frame or 0) < (f.said[kind][0] or 0):
                        f.said[kind] = (frame, level, line)
                if f.left == 0 and f.result is None:
                    self._join(f)
                    self._finish(f, on_done)
            now = time.monotonic()
            if now - last_poll >= REPORT_S:
                last_poll = now
                self._report(ray, counter, entries, job_progress)
        if not self.stop.is_set():
            self._report(ray, counter, entries, job_progress)

    def _report(self, ray, counter, entries: list[_File], job_progress) -> None:
        done = ray.get(counter.get.remote())
        per_file: dict[int, int] = {}
        for (fi, attempt, _), n in done.items():
            if attempt == entries[fi].attempt:
                per_file[fi] = per_file.get(fi, 0) + n
        for f in entries:
            if f.result is None and f.index in per_file:
                f.progress.update(per_file[f.index])
        if job_progress is not None:
            job_progress.update(sum(per_file.values()))

    def _join(self, f: _File) -> None:
        """The parts of ``f`` as its target (sound muxed once), then its result."""
        from ..media.join import join_sequences, join_video

        if f.error is not None:
            return
        parts = [f.part_path(i) for i in range(len(f.spans))]
        warnings: list[str] = []
        for res in f.parts.values():
            for w in res.warnings:
                if w not in warnings and "keeps no frame timing" not in w:
                    warnings.append(w)
        try:
            if f.sequence:
                out = join_sequences(parts, f.dst, overwrite=True)
                warnings.append(f"the PNG folder {f.dst} keeps no frame timing and no audio")
            else:
                out = join_video(parts, f.dst, mode=self.cfg.mode, audio_from=f.src, overwrite=True,
                                 warnings=warnings)
        except VbgError as e:
            f.error = e
            return
        results = [f.parts[i] for i in range(len(f.spans))]
        damage = None  # each part counted its own frames' (a file run whole has said it already)
        for r in results:
            if r.damage is not None:
                damage = r.damage.merged(damage)
        if damage is not None and damage.line(timed=not f.sequence) not in warnings:
            warnings.append(damage.line(timed=not f.sequence))
        p50 = [r.infer_ms_p50 for r in results if r.infer_ms_p50 == r.infer_ms_p50]
        busy: dict[str, float] = {}
        for r in results:
            for k, v in r.busy_s.items():
                busy[k] = busy.get(k, 0.0) + v
        f.result = FileResult(str(f.src), str(out), frames=sum(r.frames for r in results),
                              total=f.progress.total, seconds=time.monotonic() - f.t0,
                              infer_ms_p50=float(np.median(p50)) if p50 else float("nan"), busy_s=busy,
                              warnings=warnings, damage=damage)

    def _finish(self, f: _File, on_done) -> None:
        if f.error is not None:
            f.result = FileResult(str(f.src), None, error=str(f.error))
        else:  # what its readers met part-way, as a local run says it
            for _, level, line in sorted(f.said.values(), key=lambda said: said[0] or 0):
                log.log(level, "%s", line)
        if f.staging is not None:
            shutil.rmtree(f.staging, ignore_errors=True)
            f.staging = None
        if on_done is not None:
            on_done(f, f.result, f.error)


def _remove_staging(folder: Path, wait_s: float = STAGING_WAIT_S, quiet_s: float = STAGING_QUIET_S) -> None:
    """``folder`` and what is in it. A worker killed a moment ago (Ctrl-C: ``ray.kill`` returns
    before the process is gone) may still be starting a part there, and its writer makes the folder
    again or fills it during the removal: removed again until it has stayed gone for ``quiet_s``,
    for ``wait_s`` at most."""
    deadline = time.monotonic() + wait_s
    gone_since = None
    while time.monotonic() < deadline:
        if os.path.lexists(folder):
            shutil.rmtree(folder, ignore_errors=True)
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= quiet_s:
            return
        time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)


def _error(code: int, message: str) -> VbgError:
    """A worker's failure as the driver raises it: its message, its exit code."""
    e = VbgError(message)
    e.exit_code = code
    return e
