"""`vbg process`: every frame of a file, best matte, sound untouched.

    reader thread --queue--> inference thread --queue--> compose (this thread) --queue--> writer thread

Decoding, the model and encoding overlap; queues are bounded, so memory stays
flat on long files, and nothing is dropped. Since the whole file is known, the
mask of frame t is smoothed over a centred window t-k..t+k (no lag), then
upsampled guided by the frame and composited (or written as alpha / matte).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..buffers import Closed, FrameQueue
from ..config import BackgroundConfig
from ..errors import ConfigError, VbgError
from ..inference.segmenter import SegmenterConfig

log = logging.getLogger("vbg.process")

OUTPUT_MODES = ("rgb", "rgba", "matte")
QUEUE = 8  # frames in flight between two stages


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    model: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(default_size=512))
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    mode: str = "rgb"  # rgb: composite | rgba: person over transparency | matte: the mask alone
    quality: str = "balanced"
    smoothing: float = 1.0
    window: int = 2  # frames each side for the centred smoothing
    upsample: str = "sharp"


@dataclass
class FileResult:
    input: str
    output: str | None
    frames: int = 0
    total: int | None = None
    seconds: float = 0.0
    infer_ms_p50: float = float("nan")
    interrupted: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


def _put(q: FrameQueue, item, stop: threading.Event) -> bool:
    """Put unless stopped; False when the pipeline is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _end(q: FrameQueue, stop: threading.Event) -> None:
    """End the queue; when stopping, a full queue has no reader left to end it for."""
    while True:
        try:
            q.end(timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                return


def _get(q: FrameQueue, stop: threading.Event):
    """Next item; raises Closed at the end marker or when stopping."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise Closed from None


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

    def process(self, src: Path, dst: Path, progress) -> FileResult:
        from ..compositing import Compositor, background_from_options
        from ..inference.smoothing import CentredSmoother
        from ..inference.upsample import EdgeAwareUpsampler
        from .media import VideoReader, VideoWriter, probe

        cfg = self.cfg
        coded = probe(src, cancel=self.stop)
        info = coded.upright()  # frames are turned upright: a phone's portrait video is segmented standing
        res = FileResult(str(src), str(dst), total=info.frames)
        h, w = info.height, info.width
        mask_hw = self.seg.input_size((h, w))
        upsampler = EdgeAwareUpsampler((h, w), mask_hw, mode=cfg.upsample)
        smoother = CentredSmoother(cfg.smoothing, radius=cfg.window)
        compositor = None
        if cfg.mode == "rgb":
            b = cfg.background
            bg = background_from_options(b.background, b.color, b.blur, live=False)
            compositor = Compositor((h, w), bg, feather=cfg.background.feather,
                                    threshold=cfg.background.threshold, mirror=cfg.background.mirror)
        decoded: FrameQueue = FrameQueue(QUEUE)
        segmented: FrameQueue = FrameQueue(QUEUE)
        encoded: FrameQueue = FrameQueue(QUEUE)
        halt = threading.Event()  # stop every stage: Ctrl-C or a failure
        infer_ms: list[float] = []
        t0 = time.monotonic()
        progress.total = info.frames
        progress.emit("start", output=str(dst), frames=info.frames)

        def read() -> None:
            try:
                with VideoReader(src, cancel=self.stop, rotate=coded.rotation) as reader:
                    for f in reader:
                        if self.stop.is_set() or not _put(decoded, f, halt):
                            return
            finally:
                _end(decoded, halt)

        running = [len(self.segs)]
        running_lock = threading.Lock()

        def infer(seg) -> None:
            try:
                while True:
                    try:
                        f = _get(decoded, halt)
                    except Closed:
                        return
                    ts = time.perf_counter()
                    alpha = seg.segment(f.rgb).copy()
                    infer_ms.append((time.perf_counter() - ts) * 1000.0)
                    if not _put(segmented, (f, alpha), halt):
                        return
            finally:
                with running_lock:
                    running[0] -= 1
                    last = running[0] == 0
                if last:  # the queue ends when every worker has put its last mask
                    _end(segmented, halt)

        written = [0]

        def write(writer) -> None:
            while True:
                try:
                    f, image = _get(encoded, halt)
                except Closed:
                    return
                writer.write(f.index, f.pts, f.time_s, image)
                written[0] += 1

        # A failing worker halts the rest: the others would otherwise run through the whole file
        # while the frame it held never comes, with every later mask waiting in memory for it.
        stages = [_Stage(read, "vbg-read")] + [
            _Stage(lambda seg=seg: infer(seg), f"vbg-infer{i}", halt) for i, seg in enumerate(self.segs)]
        writer = None
        try:
            with VideoWriter(dst, info, mode=cfg.mode, quality=cfg.quality, audio_from=src) as writer:
                res.warnings.extend(getattr(writer, "warnings", []))
                writer_stage = _Stage(lambda: write(writer), "vbg-write", halt)
                stages.append(writer_stage)
                for s in stages:
                    s.start()
                try:
                    self._compose(segmented, encoded, halt, smoother, upsampler, compositor, progress, written)
                finally:
                    _end(encoded, halt)
                    writer_stage.join()
                    halt.set()
                    for s in stages:
                        s.join(10.0)
                    for s in stages:
                        if s.error is not None:
                            raise s.error
                    res.frames = written[0]
                    res.interrupted = self.stop.is_set()
                    if res.interrupted:
                        writer.abort()  # finalize what was written as a playable partial file
            res.output = str(writer.output_path) if writer.output_path is not None else None
        except VbgError as e:
            kept = writer is not None and writer.partial and writer.output_path is not None
            if not kept:
                raise
            raise type(e)(f"{e} (the {writer.frames_written} frames before it are kept in "
                          f"{writer.output_path})") from e
        finally:
            halt.set()
            if compositor is not None:
                compositor.close()
        res.seconds = time.monotonic() - t0
        if infer_ms:
            res.infer_ms_p50 = float(np.median(infer_ms))
        return res

    def _compose(self, segmented, encoded, halt, smoother, upsampler, compositor, progress, written) -> None:
        """Centred smoothing needs the next k masks: hold a window, emit its centre."""
        k = self.cfg.window
        window: deque = deque()
        index = 0  # position in `window` of the next frame to emit
        ended = False
        gray = None
        import cv2

        # Several inference workers finish out of order: masks wait here for their turn.
        early: dict[int, tuple] = {}
        expected = 0
        # Output images: a ring of buffers, free again once the writer has encoded them
        # (the queue holds QUEUE, the writer one, this stage one).
        ring: list[np.ndarray] = []
        n_out = 0

        def next_in_order():
            nonlocal expected
            while expected not in early:
                item = _get(segmented, halt)
                early[item[0].index] = item
            item = early.pop(expected)
            expected += 1
            return item

        while True:
            if not ended:
                try:
                    window.append(next_in_order())
                except Closed:
                    if early:  # a worker stopped early (an error): the rest in order
                        window.extend(early[i] for i in sorted(early))
                        early.clear()
                    ended = True
            ready = len(window) - index - 1 >= k or (ended and index < len(window))
            if not ready:
                if ended:
                    return
                continue
            f, _ = window[index]
            lo = max(0, index - k)
            masks = [a for _, a in list(window)[lo: index + k + 1]]
            alpha_small = smoother.smooth(masks, index - lo)
            guide = f.rgb
            if upsampler.mode == "guided":  # only the frame-guided filter reads the grey
                if gray is None:
                    gray = np.empty(f.rgb.shape[:2], np.uint8)
                guide = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY, dst=gray)
            alpha = upsampler.upsample(alpha_small, guide)
            if len(ring) < QUEUE + 3:
                shape = {"matte": alpha.shape, "rgba": (*alpha.shape, 4)}.get(self.cfg.mode, f.rgb.shape)
                ring.append(np.empty(shape, np.uint8))
            image = ring[n_out % len(ring)]
            n_out += 1
            if self.cfg.mode == "matte":
                np.copyto(image, alpha)
            elif self.cfg.mode == "rgba":
                cv2.cvtColor(f.rgb, cv2.COLOR_RGB2RGBA, dst=image)
                cv2.insertChannel(alpha, image, 3)
            else:
                compositor.compose(f.rgb, alpha, out=image)
            if not _put(encoded, (f, image), halt):
                return
            index += 1
            while index > k:  # keep k frames of history for the next centres
                window.popleft()
                index -= 1
            progress.update(written[0])


__all__ = ["FileProcessor", "FileResult", "ProcessConfig", "VbgError"]
