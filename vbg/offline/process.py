"""`vbg process`: every frame of a file, best matte, sound untouched.

In: a :class:`~vbg.config.ProcessConfig`, one or more segmenters (opened once
for a batch) and, per file, a source path and a target path. Out: the target
file (the composite, ``--alpha`` or ``--matte``; a video or a PNG sequence),
written under a fresh name and renamed into place (``vbg.media.writer``), and
a :class:`FileResult`. Errors are raised (running out of memory as
``OutOfMemory``), never turned into an exit.

    reader thread --queue--> inference thread(s) --queue--> compose (the caller's thread) --queue--> writer thread

Decoding, the model and encoding overlap; queues are bounded, so memory stays
flat on long files, and nothing is dropped. The bound is in bytes: the queue
depths, the decoder's threads and the encoder's look-ahead come from a memory
budget (``--memory``) and the frame size (``plan_buffers``), so an 8K file holds
a few frames where a 360p one holds a few dozen; the smoothing window is always
held whole. Since the whole file is known, the mask of frame t is smoothed over
a centred window t-k..t+k (no lag), then upsampled (``--upsample``, sharp by
default; ``OfflineMaskTracker``, which the quality benchmark runs too) and
composited (or written as alpha / matte).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..buffers import Closed, FrameQueue
from ..compositing.foreground import ForegroundEstimator
from ..config import LOOKAHEAD_MB, ProcessConfig
from ..errors import ConfigError, InputError, OutOfMemory, VbgError, one_line
from ..inference.crop import OFFLINE_LANES, CroppedSegmenter, crop_segmenters
from ..ranges import OUTPUT_MODES

if TYPE_CHECKING:
    from ..media.reader import Damage

log = logging.getLogger("vbg.process")

QUEUE = 2  # frames in flight between two stages, at most (small frames); see plan_buffers
LOOKAHEAD_MAX = 50  # the longest look-ahead of vbg's encoder settings (x264 slow, --quality best)
OUTPUT_BYTES_PER_PIXEL = {"rgb": 3, "rgba": 4, "matte": 1}
SMOOTH_CORES = 4  # cores per smoothing thread (one per 4 cores, at most SMOOTH_MAX); see plan_buffers
SMOOTH_MAX = 4
_NO_PIXELS = np.empty((0, 0, 3), np.uint8)  # a composited frame's image, once let go


def say_conversions(src, info) -> None:
    """``vbg.media.info.say_conversions`` for a file ``vbg process`` reads."""
    from ..media.info import say_conversions as say

    say(log, src, info.conversions())


@dataclass(frozen=True, slots=True)
class Buffers:
    """How many frames each part of the pipeline may hold, from the memory budget."""

    depth: int  # each of the three queues between stages, 1..QUEUE
    decoder_threads: int  # FFmpeg's decoding threads: frame threading holds one picture each
    encoder_threads: int  # 0: the encoder's own choice (small frames)
    lookahead: int | None  # frames the encoder may hold ahead (at most its preset's); None: its preset's
    frame_bytes: int  # one decoded RGB frame
    bytes: int  # the frames in flight at most, all stages together (an estimate: buffers of the libraries aside)
    smooth_threads: int = 1  # frames smoothed and upsampled at once (OfflineMaskTracker's threads)


def plan_buffers(frame_hw: tuple[int, int], mode: str, window: int, workers: int, budget_bytes: int,
                 cores: int | None = None) -> Buffers:
    """Queue depths, codec threads and look-ahead that keep the frames in flight within
    ``budget_bytes``.

    Decoded frames are held by the reader (one), each inference worker (one, and one more
    waiting for its turn when the workers finish out of order), the centre of the smoothing
    window and the k frames ahead of it, and the decoded and segmented queues; output images
    by the encoded queue and three more (compose, writer, the next). This much is held
    whatever the budget: the window cannot be cut (a budget below it gets it anyway, and
    ``bytes`` says so). Of the rest, half goes to the queues (each step of depth: one more
    frame in two queues, one more output image), half to the codecs: the decoder's frame
    threads hold a 4:2:0 picture each; the encoder's threads and look-ahead (x264 medium's
    40 frames ahead: 1.2 GB at 4K) are costed at an RGB frame each, the threads left to their
    own defaults where the budget covers that. The encoder's reference pictures (a dozen
    frames for H.264) are not counted.

    Two caps keep the default within 1.25x of a plain per-frame loop's peak memory (issue 13;
    720p, selfie model: 1.45x before, ``benchmarks/RESULTS.md``): queues of at most ``QUEUE``
    (2) frames, since the stages overlap with 2 and the 8 there were before bought no
    measurable fps (they held 18 more frames: ~50 MB at 720p); and a look-ahead of one frame
    per ``LOOKAHEAD_MB`` of budget (25 at the default 512, x264 medium's 40 from 800 MB, slow's
    50 from 1000), whatever the frame size, since its worth is in frames (x264's mb-tree
    horizon): at 720p each frame of it is ~2.7 MB, and 25 instead of 40 cost +2.9% bit rate at
    equal PSNR on a static background (none on moving-camera footage). The encoder keeps its
    preset's look-ahead where that is shorter (``VideoWriter``).

    ``smooth_threads``: one per ``SMOOTH_CORES`` cores, ``SMOOTH_MAX`` at most, 1 where the budget
    has no room for the frames and alphas they hold (OfflineMaskTracker's ``threads``)."""
    import os

    h, w = frame_hw
    rgb = h * w * 3
    out = h * w * OUTPUT_BYTES_PER_PIXEL[mode]
    picture = h * w * 3 // 2
    cores = max(1, min(cores or os.cpu_count() or 1, 16))
    fixed = rgb * (1 + 2 * workers + window + 1) + out * 3
    # With many cores the smoothing runs on a few threads, several frames at once: each holds
    # its frame a little longer, and its alpha (one byte a pixel) has a slot of its own. Only
    # where the budget has room for that beside the rest.
    per_depth = 2 * rgb + out
    smooth = max(1, min(SMOOTH_MAX, cores // SMOOTH_CORES))
    extra = (smooth - 1) * rgb + (smooth + 2) * h * w if smooth > 1 else 0
    if budget_bytes < fixed + extra + per_depth + picture + rgb:  # room for the least of the rest too
        smooth, extra = 1, 0
    fixed += extra
    spare = max(0, budget_bytes - fixed)
    depth = max(1, min(QUEUE, spare // 2 // per_depth))
    left = max(0, spare - depth * per_depth)
    most = min(LOOKAHEAD_MAX, budget_bytes // (LOOKAHEAD_MB << 20))  # the look-ahead the budget buys
    full = cores * picture + (cores * 3 // 2 + most) * rgb  # the codecs' threads left to their defaults
    if left >= full:
        decoder_threads, encoder_threads, lookahead, held = cores, 0, most, full
    else:
        decoder_threads = max(1, min(cores, left // 4 // picture))
        encoder_threads = max(1, min(cores, left // 4 // rgb))
        lookahead = max(0, min(most, (left - decoder_threads * picture) // rgb - encoder_threads))
        held = decoder_threads * picture + (encoder_threads + lookahead) * rgb
    total = fixed + depth * per_depth + held
    return Buffers(depth, decoder_threads, encoder_threads, lookahead, rgb, total, smooth)


def is_out_of_memory(e: BaseException) -> bool:
    """An allocation that failed, as the libraries say it: MemoryError (Python, numpy, PyAV's
    ENOMEM), OpenCV's StsNoMem, ONNX Runtime's bad_alloc."""
    import cv2

    if isinstance(e, MemoryError):
        return True
    if isinstance(e, cv2.error):
        return getattr(e, "code", None) == cv2.Error.StsNoMem
    text = str(e)
    return "bad_alloc" in text or "Failed to allocate memory" in text


@dataclass
class FileResult:
    input: str
    output: str | None
    frames: int = 0
    total: int | None = None
    seconds: float = 0.0
    infer_ms_p50: float = float("nan")
    # Seconds each stage spent working (not waiting on its neighbours): the largest is what
    # limits the file's frame rate. read = decode to RGB; infer = all inference workers
    # together; compose = masks in order, smoothing, upsampling, compositing; write = encode.
    busy_s: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # each read after the input's name ("in.mp4: has no audio ...")
    damage: Damage | None = None  # what the frames written lost to a damaged input (times from its first frame)
    buffers: Buffers | None = None  # what the memory budget allowed for this file's frame size

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Span:
    """Part of a file (``vbg process --ray``): frames ``first`` .. ``first + count - 1`` (presentation
    order) are written, named and timed as in the whole file; ``before`` and ``after`` frames around
    them are decoded and segmented too, so that each written frame's centred smoothing window holds
    exactly the frames a whole-file run gives it. ``start_pts``: the first decoded frame's pts (the
    decoder seeks to the keyframe at or before it); ``first_pts`` and ``last_pts``: the first and the
    last written frame's, checked (a damaged file's packet that decodes to nothing moves every frame
    after it: the part would write its neighbour's first frame again).
    ``seek_ts``: that keyframe's decoding timestamp, the one a seek lands on in a file with no index
    (MPEG-TS: a seek to ``start_pts`` there lands on whatever frame is at it)."""

    first: int
    count: int
    before: int
    after: int
    start_pts: int
    first_pts: int
    seek_ts: int | None = None
    origin_pts: int | None = None  # the whole file's first frame's: a video background's zero
    last_pts: int | None = None

    @property
    def decoded(self) -> int:
        return self.before + self.count + self.after


class SplitError(InputError):
    """A part of a file did not hold the frames its packets promised (``Span``): the file must be
    run whole (``vbg.offline.distributed`` does so by itself)."""


class _SpanReader:
    """A ``VideoReader`` that seeks to ``span.start_pts`` and yields the span's frames, indexed from 0."""

    def __init__(self, reader, span: Span) -> None:
        self._reader, self._span = reader, span
        self._skipped = 0  # the reader's frames before the span's first decoded one

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    def damage(self):
        """What the span's own frames lost to damage (``VideoReader.damage``)."""
        return self._reader.damage(self._skipped + self._span.before, self._span.count)

    def __iter__(self):
        span = self._span
        # the lines it says name the file's frames
        self._reader.seek(span.start_pts, span.first - span.before, key_ts=span.seek_ts)
        n = self._skipped = 0
        for f in self._reader:
            if f.pts < span.start_pts:  # the keyframe's group before the span
                self._skipped += 1
                continue
            yield replace(f, index=n)
            n += 1
            if n == span.decoded:
                return


class _SpanWriter:
    """The span's own frames into ``writer`` under their whole-file index; its context frames dropped.
    A span whose frames are not where the plan put them (a file whose packets and frames disagree)
    is a ``SplitError``: the part would not join into the whole file's frames."""

    def __init__(self, writer, span: Span) -> None:
        self._w, self._span = writer, span

    def write(self, index: int, pts: int, time_s: float, image) -> None:
        span = self._span
        own = index - span.before
        if not 0 <= own < span.count:
            return
        for at, planned in ((0, span.first_pts), (span.count - 1, span.last_pts)):
            if own == at and planned is not None and pts != planned:
                raise SplitError(f"frame {span.first + at} is at pts {pts}, not at {planned} as its packets say: "
                                 "the file cannot be split at its keyframes")
        self._w.write(span.first + own, pts, time_s, image)

    @property
    def frames_written(self) -> int:
        return self._w.frames_written

    def abort(self):
        return self._w.abort()


class _Stage(threading.Thread):
    """A worker thread whose exception is kept for the caller. A failing stage
    upstream ends its queue, so the frames in flight are still written; the
    last stage (the writer) sets ``halt`` instead, so that the stages blocked
    on its full queue stop too."""

    def __init__(self, target, name: str, halt: threading.Event | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._halt = halt
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:
            self.error = e
            if self._halt is not None:
                self._halt.set()


@dataclass(eq=False)
class _Run:
    """One file's run, shared by its stages: the three queues between them (each gives up once
    ``halt`` is set) and what the stages count."""

    decoded: FrameQueue
    segmented: FrameQueue
    encoded: FrameQueue
    halt: threading.Event  # stop every stage: Ctrl-C or a failure
    depth: int  # each queue's
    workers: int  # inference workers still running: the last one to stop ends ``segmented``
    origin_s: float | None = None  # the file's first frame's time: a video background's zero
    damage: Damage | None = None  # what the frames read lost to damage (the reader's, at its end)
    written: int = 0  # frames the writer has written
    infer_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("read", "compose", "write"), 0.0))

    @classmethod
    def open(cls, depth: int, workers: int) -> _Run:
        halt = threading.Event()
        return cls(FrameQueue(depth, halt), FrameQueue(depth, halt), FrameQueue(depth, halt), halt, depth, workers)

    def worker_done(self) -> bool:
        """One inference worker has stopped; True for the last one."""
        with self.lock:
            self.workers -= 1
            return self.workers == 0


def _read(run: _Run, open_reader, stop: threading.Event) -> None:
    """The reader stage: every decoded frame into ``run.decoded``, then its end; what they lost to
    damage in ``run.damage``."""
    try:
        with open_reader() as reader:
            try:
                t = time.perf_counter()
                for f in reader:
                    run.busy_s["read"] += time.perf_counter() - t
                    if stop.is_set() or not run.decoded.put(f):
                        return
                    t = time.perf_counter()
            finally:
                run.damage = getattr(reader, "damage", lambda: None)()
    finally:
        run.decoded.end()


def _infer(run: _Run, seg) -> None:
    """An inference stage: decoded frames to (frame, mask); the last worker ends ``run.segmented``."""
    try:
        while True:
            try:
                f = run.decoded.get()
            except Closed:
                return
            ts = time.perf_counter()
            if isinstance(seg, CroppedSegmenter):
                try:
                    alpha = seg.segment(f.rgb, seq=f.index, cancel=run.halt).copy()
                except InterruptedError:  # halted while its box waited for an earlier frame's mask
                    return
            else:
                alpha = seg.segment(f.rgb).copy()
            run.infer_ms.append((time.perf_counter() - ts) * 1000.0)
            if not run.segmented.put((f, alpha)):
                return
    finally:
        if run.worker_done():  # the queue ends when every worker has put its last mask
            run.segmented.end()


def _write(run: _Run, writer) -> None:
    """The writer stage: each output image of ``run.encoded`` into the file."""
    while True:
        try:
            f, image = run.encoded.get()
        except Closed:
            return
        t = time.perf_counter()
        writer.write(f.index, f.pts, f.time_s, image)
        run.busy_s["write"] += time.perf_counter() - t
        run.written += 1


def _join(stages: list[_Stage]) -> None:
    """Join every stage; the first one's error is raised."""
    for s in stages:
        s.join(10.0)
    errors = [s.error for s in stages if s.error is not None]
    for s in stages:  # the stage is in its error's traceback: a reference cycle, which
        s.error = None  # would keep this file's frames and queues until the collector ran
    if errors:
        raise errors.pop(0)  # and no local of this frame holds it either


class _InOrder:
    """Masks back in frame order: several inference workers finish out of order, and a mask
    waits here for its turn."""

    def __init__(self, segmented: FrameQueue) -> None:
        self._q = segmented
        self._early: dict[int, tuple] = {}
        self._expected = 0

    def next(self) -> tuple:
        """The next (frame, mask); Closed at the queue's end."""
        while self._expected not in self._early:
            item = self._q.get()
            self._early[item[0].index] = item
        item = self._early.pop(self._expected)
        self._expected += 1
        return item

    def rest(self) -> tuple:
        """What waits, in order, once the queue has ended (early, when a worker stopped on an error)."""
        items = tuple(self._early[i] for i in sorted(self._early))
        self._early.clear()
        return items


class FileProcessor:
    """Runs files through one segmenter (opened once for a whole batch)."""

    def __init__(self, cfg: ProcessConfig, segmenter, *more_segmenters) -> None:
        """``segmenter``, plus ``more_segmenters`` of the same model and size: each runs
        in its own inference thread on every n-th frame, and the masks are put back in
        order. On a CPU, two sessions of one intra-op thread each (``vbg process
        --workers 2``) have no synchronisation between the cores inside an inference,
        and gave 9 % more frames per second than one session on both cores."""
        if cfg.mode not in OUTPUT_MODES:
            raise ConfigError(f"output mode {cfg.mode!r}: use one of {', '.join(OUTPUT_MODES)}")
        self.cfg = cfg
        self.seg = segmenter
        self.segs = (segmenter, *more_segmenters)
        self.stop = threading.Event()  # set by Ctrl-C: finish the partial file, then return

    def process(self, src: Path, dst: Path, progress, *, sequence: bool | None = None,
                overwrite: bool = True, span: Span | None = None, audio: bool = True) -> FileResult:
        """``src`` rendered to ``dst`` (``sequence``, ``overwrite``: as ``VideoWriter`` takes them).
        ``span``: only that part of ``src`` (``vbg.offline.distributed``); ``audio`` False: no sound.
        Running out of memory is ``OutOfMemory`` (its own exit code), whichever library's
        allocation failed, never a damaged file or a traceback."""
        from ..media.info import probe

        try:
            coded = probe(src, cancel=self.stop, fps=self.cfg.fps)
        except MemoryError as e:
            raise OutOfMemory(f"out of memory while opening it ({one_line(e, 'an allocation failed')}):"
                              " close other programs") from e
        info = coded.upright()  # frames are turned upright: a phone's portrait video is segmented standing
        buffers = plan_buffers((info.height, info.width), self.cfg.mode, self.cfg.temporal.window, len(self.segs),
                               self.cfg.memory << 20)
        try:
            return self._process(src, dst, progress, info, coded.rotation, buffers, sequence, overwrite,
                                 span, audio)
        except OutOfMemory:
            raise
        except BaseException as e:
            if not is_out_of_memory(e):
                raise
            raise self._out_of_memory(info, buffers, e) from e

    def _out_of_memory(self, info, buffers: Buffers, e: BaseException, note: str = "") -> OutOfMemory:
        mb = buffers.bytes / 2**20
        detail = one_line(e)[:120]
        return OutOfMemory(
            f"out of memory while processing {info.width}x{info.height} frames ({detail}; the frames in flight "
            f"take about {mb:.0f} MB, --memory {self.cfg.memory}){note}: lower --memory or --window "
            f"(now {self.cfg.temporal.window}), use --workers 1, or close other programs")

    def _open_stages(self, h: int, w: int, smooth_threads: int = 1, segs: tuple | None = None):
        """The tracker and the compositor for ``h`` x ``w`` frames (masks of the size ``segs``, this
        file's segmenters, give): in ``rgb`` mode a ``Compositor``, else the ``MaskShape`` that
        mirrors and shapes the matte or the RGBA (None when every option is off)."""
        from ..compositing import Compositor, MaskShape, background_from_options
        from ..inference.tracker import OfflineMaskTracker

        cfg = self.cfg
        seg = (segs or self.segs)[0]
        tracker = OfflineMaskTracker((h, w), seg.input_size((h, w)), smoothing=cfg.temporal.smoothing,
                                     window=cfg.temporal.window, upsample=cfg.temporal.upsample,
                                     threads=smooth_threads)
        b = cfg.background
        compositor: Compositor | MaskShape | None = None
        if cfg.mode == "rgb":
            bg = background_from_options(b.background, b.color, b.blur, live=False)
            compositor = Compositor((h, w), bg, feather=b.feather, threshold=b.threshold, mirror=b.mirror)
        elif b.mirror or b.feather or b.threshold is not None:
            compositor = MaskShape((h, w), feather=b.feather, threshold=b.threshold, mirror=b.mirror)
        return tracker, compositor

    def _process(self, src: Path, dst: Path, progress, info, rotation: int, buffers: Buffers,
                 sequence: bool | None, overwrite: bool, span: Span | None = None, audio: bool = True) -> FileResult:
        from functools import partial

        from ..compositing import Compositor
        from ..media.reader import VideoReader
        from ..media.sequence import SequenceReader, find_sequence
        from ..media.writer import VideoWriter

        cfg = self.cfg
        total = info.frames if span is None else span.count
        res = FileResult(str(src), str(dst), total=total, buffers=buffers)
        if span is None:  # a --ray part's driver says it once for the file
            say_conversions(src, info)
        if info.sequence:
            log.info("%s: %d image%s, read as a %g fps video%s", src, info.frames, "" if info.frames == 1 else "s",
                     info.fps, "" if cfg.fps else " (--fps sets its rate)")
        # The person crop: one plan per file, its boxes from the masks two frames before (whatever
        # worker made them), so the output does not depend on the worker count.
        segs = crop_segmenters(self.segs, cfg.model.crop, (info.height, info.width), lanes=OFFLINE_LANES)
        tracker, compositor = self._open_stages(info.height, info.width, buffers.smooth_threads, segs)
        log.debug("%dx%d frames: queues of %d, decoder threads %d, encoder threads %s, look-ahead %s, "
                  "smoothing threads %d: about %.0f MB in flight", info.width, info.height, buffers.depth,
                  buffers.decoder_threads, buffers.encoder_threads or "auto",
                  "preset" if buffers.lookahead is None else buffers.lookahead, buffers.smooth_threads,
                  buffers.bytes / 2**20)
        run = _Run.open(buffers.depth, len(self.segs))
        if span is not None and span.origin_pts is not None:  # a part: the whole file's first frame
            run.origin_s = float(span.origin_pts * info.time_base)
        if info.sequence:
            if span is not None:
                raise SplitError(f"{src} is an image sequence: it is processed whole, not in parts")
            open_reader = partial(SequenceReader, find_sequence(src), cfg.fps, self.stop)
            audio = False
        else:
            open_reader = partial(VideoReader, src, cancel=self.stop, rotate=rotation,
                                  threads=buffers.decoder_threads, joined=span is None)  # parts: none (plan_spans)
        if span is not None:
            whole = open_reader
            open_reader = lambda: _SpanReader(whole(), span)  # noqa: E731
        t0 = time.monotonic()
        progress.total = total
        if total is None and info.duration_s > 0 and info.fps > 0:  # no frame count in the file (mkv, webm, ts)
            progress.estimate = max(1, round(info.duration_s * info.fps))
        progress.emit("start", output=str(dst), frames=total)
        writer = None
        try:
            with VideoWriter(dst, info, mode=cfg.mode, quality=cfg.quality, audio_from=src if audio else None,
                             sequence=sequence, overwrite=overwrite,
                             threads=buffers.encoder_threads, lookahead=buffers.lookahead,
                             encoder=cfg.encoder, gpu=cfg.model.gpu) as writer:
                res.warnings.extend(getattr(writer, "warnings", []))
                sink = writer if span is None else _SpanWriter(writer, span)
                self._supervise(run, open_reader, sink, tracker, compositor, progress, res, segs)
                if span is not None and writer.frames_written != span.count and not res.interrupted:
                    raise SplitError(f"{src}: frames {span.first}..{span.first + span.count - 1} gave "
                                     f"{writer.frames_written} frames, not {span.count}: the file cannot be split at its "
                                     "keyframes")
            res.output = str(writer.output_path) if writer.output_path is not None else None
        except BaseException as e:
            # a part that does not hold its planned frames is run whole: its staging file is no one's to keep
            kept = writer is not None and writer.partial and writer.output_path is not None \
                and not isinstance(e, SplitError)
            if not kept or not isinstance(e, VbgError) and not is_out_of_memory(e):
                if kept and writer is not None and hasattr(e, "add_note"):  # a caller's own (on_progress raised)
                    e.add_note(f"vbg: the {writer.frames_written} frames before it are kept in {writer.output_path}")
                raise
            note = f" (the {writer.frames_written} frames before it are kept in {writer.output_path})"
            if not isinstance(e, VbgError):
                raise self._out_of_memory(info, buffers, e, note) from e
            raise type(e)(f"{e}{note}") from e
        finally:
            run.halt.set()
            tracker.close()
            if isinstance(compositor, Compositor):
                compositor.close()
        res.seconds = time.monotonic() - t0
        if run.damage is not None:
            res.damage = run.damage.shifted(-(run.origin_s or 0.0))
            if span is None:  # a --ray part's driver says it for the whole file
                res.warnings.append(res.damage.line(timed=writer is None or writer.encoder_name != "png"))
        if run.infer_ms:
            res.infer_ms_p50 = float(np.median(run.infer_ms))
        res.busy_s = {**run.busy_s, "infer": sum(run.infer_ms) / 1000.0}
        return res

    def _supervise(self, run: _Run, open_reader, writer, tracker, compositor, progress, res: FileResult,
                   segs: tuple | None = None) -> None:
        """Start the stages, compose on this thread, then join them all (the first error is
        raised); an interrupted run's file is finalized as a playable partial file."""
        # A failing worker halts the rest: the others would otherwise run through the whole file
        # while the frame it held never comes, with every later mask waiting in memory for it.
        stages = [_Stage(lambda: _read(run, open_reader, self.stop), "vbg-read")]
        stages += [_Stage(lambda seg=seg: _infer(run, seg), f"vbg-infer{i}", run.halt)
                   for i, seg in enumerate(segs or self.segs)]
        writer_stage = _Stage(lambda: _write(run, writer), "vbg-write", run.halt)
        stages.append(writer_stage)
        for s in stages:
            s.start()
        try:
            self._compose(run, tracker, compositor, progress)
        finally:
            run.encoded.end()
            writer_stage.join()
            run.halt.set()
            _join(stages)
            res.frames = getattr(writer, "frames_written", run.written)
            res.interrupted = self.stop.is_set()
            if res.interrupted:
                writer.abort()  # finalize what was written as a playable partial file

    def _compose(self, run: _Run, tracker, compositor, progress) -> None:
        """Masks in frame order into the tracker; each frame out once its alpha is ready
        (centred smoothing needs the next k masks)."""
        masks = _InOrder(run.segmented)
        pending: deque = deque()  # frames pushed to the tracker, not yet out
        # Output images: a ring of buffers, free again once the writer has encoded them
        # (the queue holds its depth, the writer one, this stage one).
        ring: list[np.ndarray] = []
        foreground = ForegroundEstimator() if self.cfg.mode == "rgba" else None  # this thread's
        n_out = 0
        ended = False
        while True:
            if not ended:
                try:
                    items = (masks.next(),)
                except Closed:  # the end, or a worker stopped early (an error): the rest in order
                    items = masks.rest()
                    ended = True
                t = time.perf_counter()
                for f, a in items:
                    tracker.push(f.rgb, a)
                    pending.append(f)
                if ended:
                    tracker.end()
                run.busy_s["compose"] += time.perf_counter() - t
            if not tracker.ready:
                if ended:
                    return
                continue
            t = time.perf_counter()
            alpha = tracker.pop()
            f = pending.popleft()
            if run.origin_s is None:
                run.origin_s = f.time_s
            image = self._output(f.rgb, alpha, compositor, ring, n_out, run.depth, f.time_s - run.origin_s,
                                 foreground)
            n_out += 1
            # The writer needs the frame's timing, not its pixels: the decoded image is let go
            # as soon as it is composited.
            stamp = replace(f, rgb=_NO_PIXELS)
            del f
            run.busy_s["compose"] += time.perf_counter() - t
            if not run.encoded.put((stamp, image)):
                return
            progress.update(run.written)

    def _output(self, rgb: np.ndarray, alpha: np.ndarray, compositor, ring: list, n: int, depth: int,
                t_s: float = 0.0, foreground: ForegroundEstimator | None = None) -> np.ndarray:
        """Output image ``n``, ``t_s`` seconds into its file: the composite, RGBA or matte, into the
        ring's next buffer. RGBA: the person's own colour under the alpha (``foreground``; none
        of the room where it is clear)."""
        import cv2

        mode = self.cfg.mode
        if len(ring) < depth + 3:
            shape = {"matte": alpha.shape, "rgba": (*alpha.shape, 4)}.get(mode, rgb.shape)
            ring.append(np.empty(shape, np.uint8))
        image = ring[n % len(ring)]
        if mode != "rgb" and compositor is not None:  # --mirror, --threshold, --feather on the matte too
            frame, alpha = compositor.apply(rgb if mode == "rgba" else None, alpha)
            rgb = rgb if frame is None else frame
        if mode == "matte":
            np.copyto(image, alpha)
        elif mode == "rgba":
            if foreground is not None:
                rgb = foreground.estimate(rgb, alpha)
            cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA, dst=image)
            cv2.insertChannel(alpha, image, 3)
        else:
            compositor.compose(rgb, alpha, out=image, t_s=t_s)
        return image


__all__ = ["FileProcessor", "FileResult", "ProcessConfig", "Span", "SplitError", "VbgError"]
