"""The live filter: capture -> inference -> render -> sinks, each on its own thread.

In: a :class:`~vbg.config.LiveConfig` (and, for tests, a clock, segmenter,
source or sinks to use instead of opening them). Out: composites handed to the
sinks until the source ends, ``--frames``/``--duration`` is reached or
:meth:`LivePipeline.stop` is called; :meth:`LivePipeline.run` returns the stats
and re-raises a worker's exception (it never exits the process).

    capture  --LatestSlot-->  render  --LatestSlot-->  inference
                                ^------- latest Mask -------'
    render: propagate the latest mask to this frame (optical flow), smooth,
            upsample (``--upsample``, sharp by default), composite -> sinks

The render thread outputs every captured frame; the model runs on the frames
the skip governor picks, always the newest one. Sinks (virtual camera,
recorder) own their threads and pacing. Threads hand over through
latest-frame-wins slots (``vbg.buffers.LatestSlot``, by reference, not
copied): an unread item is replaced and counted as a drop, never queued.

Idle when unwatched (a v4l2loopback output only, not with --preview, --record or --always-on):
an :class:`~vbg.sinks.watchers.IdleGate` on its own thread pauses the capture worker (the camera
is closed) once no application has read the virtual camera for --idle-after seconds, sends one
still card and slows the virtual camera to 1 fps; the inference and render threads simply get no
frames. A reader coming back resumes the capture worker (the camera reopened at once).

One writer per piece of state: the render thread alone drives the skip
governor (it feeds it each new mask's ``infer_ms`` as it takes the mask), the
tracker and the compositor; the preview's keys, the control server
(``vbg ctl``, the control page) and SIGUSR1 reach it only through
:class:`~vbg.control.state.ControlState`, drained once per frame without a lock.
A model switch is loaded on a thread of its own and handed over the same way:
the inference thread takes up the new segmenter at its next frame, and the render
thread its tracker once the first mask at the new size comes (the camera never
stops).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import priority
from .buffers import Closed, LatestSlot
from .clock import Clock, MonotonicClock
from .config import LiveConfig
from .errors import SinkError, VbgError, one_line
from .stats import LiveStats
from .types import Composite, Frame, Mask

if TYPE_CHECKING:
    from .compositing import Background
    from .control.state import Controller

log = logging.getLogger("vbg.pipeline")

OUT_RING = 6  # composites in flight to the sinks before a buffer is reused
ALIGN_MAX_S = 0.5  # --align never holds a frame back longer than this


class _MaskBox:
    """The newest mask, shared by the inference and render threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.mask: Mask | None = None

    def set(self, m: Mask) -> None:
        with self._cond:
            self.mask = m
            self._cond.notify_all()

    def get(self) -> Mask | None:
        with self._cond:
            return self.mask

    def wait_for(self, seq: int, timeout: float) -> Mask | None:
        """The mask of frame ``seq`` (or a newer one) if it is ready within ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.mask is not None and self.mask.seq >= seq, timeout)
            return self.mask


def _fits(m: Mask, mask_hw) -> bool:
    """Whether mask ``m`` is at size ``mask_hw`` (compares two ints: nothing allocated per frame)."""
    shape = m.alpha.shape
    return shape[0] == mask_hw[0] and shape[1] == mask_hw[1]


class _ModelTime:
    """The render thread's feed of the skip governor: each new mask's inference time, once.

    Called with the newest mask before each ``should_run`` and with the mask each
    frame takes, so a mask that came in before a frame is counted before that
    frame is scheduled, as when the inference thread fed the governor itself.
    """

    __slots__ = ("governor", "_last")

    def __init__(self, governor) -> None:
        self.governor = governor
        self._last: Mask | None = None

    def see(self, m: Mask | None) -> None:
        if m is not None and m is not self._last:
            self._last = m
            self.governor.observe(m.infer_ms)


class _Aligner:
    """``--align``: hold frames back until the mask for them is ready.

    Frames go to the model as they arrive; a frame leaves the queue once the
    model has answered for the newest frame sent to it at or before this one
    (or after ``ALIGN_MAX_S``). The video is then late by about the inference
    time, and every mask lines up with the pixels it was computed on: exact on
    the frames the model saw, carried forward by optical flow from there on
    the frames in between.
    """

    def __init__(self, frames: LatestSlot[Frame], to_model: LatestSlot[Frame], masks: _MaskBox,
                 governor, model_time: _ModelTime, clock: Clock) -> None:
        self.frames, self.to_model, self.masks, self.governor, self.clock = frames, to_model, masks, governor, clock
        self.model_time = model_time
        self.pending: deque[tuple[Frame, int]] = deque()  # (frame, seq of its mask frame)
        self.last_sent = -1
        self.closed = False

    def next(self) -> Frame | None:
        """The next frame whose mask is ready; None after a quiet 0.1 s; Closed at the end."""
        deadline = self.clock.now() + 0.1
        while True:
            if not self.closed:
                try:
                    f = self.frames.get(timeout=0.005 if self.pending else 0.1)
                except Closed:
                    self.closed = True
                    f = None
                if f is not None:
                    self.model_time.see(self.masks.get())
                    if self.governor.should_run(f.seq):
                        self.to_model.put(f)
                        self.last_sent = f.seq
                    self.pending.append((f, self.last_sent))
            if self.pending:
                head, due = self.pending[0]
                m = self.masks.get()
                ready = m is not None and m.seq >= due
                if ready or self.closed or self.clock.now() - head.t_capture > ALIGN_MAX_S:
                    return self.pending.popleft()[0]
            elif self.closed:
                raise Closed
            if self.clock.now() > deadline and not self.pending:
                return None


@dataclass(eq=False)
class _Stages:
    """What one live run opened for its threads: the hand-over slots and the render thread's stages."""

    frames: LatestSlot[Frame]  # capture -> render
    to_model: LatestSlot[Frame]  # render -> inference
    masks: _MaskBox  # inference -> render
    seg: object
    governor: object  # SkipGovernor: driven by the render thread alone
    tracker: object  # MaskTracker
    compositor: object
    keys: object | None  # PreviewKeys, with --preview
    hw: tuple[int, int]
    fps: float
    control: object  # ControlState: what the preview's keys, the control server and signals change


class LivePipeline:
    def __init__(self, cfg: LiveConfig, *, clock: Clock | None = None, segmenter=None,
                 sinks: list | None = None, source=None, reopen=None, watcher=None, on_control=None) -> None:
        self.cfg = cfg
        self.clock = clock or MonotonicClock()
        self.stats = LiveStats()
        self._segmenter = segmenter
        self._model_threads: set[int] | None = None  # CPU model: its pool threads, run at a lower priority
        self.started = threading.Event()  # set-up done (model loaded, sinks open), frames flowing
        self._extra_sinks = sinks or []
        self._source, self._reopen = source, reopen
        self._source_said = False
        self._watcher = watcher  # who reads the virtual camera (tests inject one); None: the device's
        self.idle = None  # the IdleGate, when the output idles while unwatched
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self.capture = None
        self.sinks: list = []
        self.latest: Composite | None = None  # for the preview, read on the main thread
        self.control = None  # ControlState, once the stages are open
        self.controller: Controller | None = None  # the control server's (None with --no-control)
        self.control_server = None
        self._on_control = on_control  # called with the control server once it listens
        self._vcam_latency = False  # the virtual camera measures the latency (it writes stats.latency_ms)
        self._capture_started: float | None = None  # clock time the capture thread started (--duration)
        self._seg_now = None  # the segmenter the inference thread runs (a model switch replaces it)
        self._hw: tuple[int, int] | None = None
        self._fps: float | None = None  # the source's frame rate (the person crop's budget)
        self._made: Background | None = None  # the last reload's background: closed by the next one, or at the end

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self._stop.set()

    def toggle_effect(self) -> bool:
        """Turn the effect off or on (SIGUSR1, from any thread); False before the stages are open."""
        if self.control is None:
            return False
        self.control.toggle_effect()
        return True

    LIVE_SETTINGS = ("background.background", "background.color", "background.blur", "background.mirror",
                     "model.model")  # what reconfigure() changes while live

    def reconfigure(self, cfg: LiveConfig) -> tuple[list[str], list[str]]:
        """Apply the settings of ``cfg`` (checked by the caller) that can change while live: the
        background, the mirror, the model (a known name: switched as ``vbg ctl model`` does).
        Returns (settings applied, settings that differ but need a restart), as ``section.key``."""
        from dataclasses import fields

        if self.control is None:
            raise VbgError("the filter is still starting: send the signal again in a moment")
        changed = []
        for section in ("source", "model", "temporal", "background", "output", "control"):
            old, new = getattr(self.cfg, section), getattr(cfg, section)
            changed += [f"{section}.{f.name}" for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]
        applied, restart = [], []
        b = cfg.background
        if {"background.background", "background.color", "background.blur"} & set(changed):
            from .compositing import background_from_options

            bg = background_from_options(b.background, b.color, b.blur, live=True, clock=self.clock)
            self.control.set_background(bg)
            replaced, self._made = self._made, bg
            if replaced is not None:  # its thread, its frames (a render under way keeps its last picture)
                replaced.close()
            if self.controller is not None:
                from .control.state import config_background

                self.controller.background = config_background(b.background, b.color, b.blur)
        if "background.mirror" in changed:
            self.control.set_mirror(b.mirror)
        for name in changed:
            if name == "model.model" and self.controller is not None and cfg.model.model in self.controller.models:
                try:
                    self.controller.set_model(cfg.model.model)
                except VbgError as e:  # another model is loading
                    restart.append(f"{name} ({e})")
                    continue
                applied.append(name)
            elif name in self.LIVE_SETTINGS and name != "model.model":
                applied.append(name)
            else:
                restart.append(name)
        keep = {n.split(".")[0]: {} for n in applied}
        for n in applied:
            sec, key = n.split(".")
            keep[sec][key] = getattr(getattr(cfg, sec), key)
        from .config import apply

        self.cfg = apply(self.cfg, keep, check=False)
        return applied, restart

    def control_status(self) -> dict:
        """The status figures as the control API gives them (any thread)."""
        out = self.stats.figures()
        out["camera_lost"] = bool(self.capture is not None and self.capture.lost)
        return out

    def _fail(self, e: BaseException) -> None:
        self._errors.append(e)
        self._stop.set()

    def _spawn(self, target, name: str, *, stop_when_done: bool = False) -> None:
        def guarded():
            try:
                target()
            except BaseException as e:  # re-raised from run()
                log.debug("%s failed", name, exc_info=True)
                self._fail(e)
            finally:
                if stop_when_done:
                    self._stop.set()

        t = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    # ------------------------------------------------------------------ setup
    def _open_source(self):
        from .capture import open_source

        s = self.cfg.source
        said, self._source_said = self._source_said, True  # a file's conversions: said at the first opening
        return open_source(s.source, width=s.width, height=s.height, fps=s.fps, loop=s.loop,
                           paced=True, clock=self.clock, say=not said)

    def run(self, on_status=None, status_interval: float = 1.0, on_tick=None) -> LiveStats:
        """Run until --frames/--duration, end of a file source, stop(), or an error."""
        from .inference.scheduler import parse_skip

        cfg = self.cfg
        skip = parse_skip(cfg.temporal.skip)
        if cfg.output.vcam and not cfg.output.preview:
            # Before the camera and the model download: the commonest set-up problem first.
            # (With --preview the window is a sink of its own: a missing camera is not fatal.)
            from .sinks.virtual_camera import precheck

            precheck(cfg.output.vcam_device, cfg.output.vcam_backend)
        with contextlib.ExitStack() as stack:
            st = self._open_stages(stack, skip)
            preview = self._start_workers(stack, st)
            self.started.set()
            try:
                self._supervise(preview, on_status, status_interval, on_tick)
            finally:
                self.stop()
                self.capture.stop()
                self.stats.dropped = st.frames.drops
            if self.capture.error is not None:
                self._errors.insert(0, self.capture.error)
        if self._errors:
            raise self._errors[0]
        return self.stats

    def _open_model(self, stack: contextlib.ExitStack):
        """The segmenter (a CPU model's pool threads lowered in priority)."""
        from .inference import create_segmenter

        before = priority.thread_ids()
        seg = self._segmenter or create_segmenter(self.cfg.model)
        stack.callback(seg.close)
        if self.cfg.model.device == "cpu" or seg.providers[:1] == ["CPUExecutionProvider"]:
            # The model's pool threads (made by the session just opened) run in the render
            # thread's gaps; the inference thread lowers its own priority when it starts.
            self._model_threads = priority.thread_ids() - before
            priority.lower(self._model_threads)
        else:
            self._model_threads = None
        self.stats.providers = list(seg.providers)
        return seg

    def _with_crop(self, seg, hw: tuple[int, int]):
        """``seg`` looking at a box around a small person (``[model] crop``) while a cropped
        frame's two model runs fit in one frame interval: a slower model's masks would come later
        than the crop gains back (davis-people, crop rows against the rows without it: +0.019 IoU
        with a 13.5 ms model, its crops one frame late; -0.008 with a 30 ms model, two late), so
        it looks at the whole frame alone then."""
        from .inference.crop import crop_segmenters

        fps = self._fps if self._fps and self._fps > 0 else 30.0
        return crop_segmenters((seg,), self.cfg.model.crop, hw, budget_ms=1000.0 / fps,
                               clock=self.clock.now)[0]

    def _open_stages(self, stack: contextlib.ExitStack, skip) -> _Stages:
        """Open the source, the model, the background, the compositor and the sinks, each
        closed by ``stack``; the capture worker is made, not started."""
        from .capture import CaptureWorker
        from .compositing import Compositor, background_from_options
        from .inference.scheduler import SkipGovernor
        from .inference.tracker import MaskTracker

        cfg = self.cfg
        for extra in self._extra_sinks:  # the caller's sinks: closed however the start-up ends
            stack.callback(extra.close)
        source = self._source or self._open_source()
        stack.callback(self._close_source, source)
        if cfg.output.record and getattr(source, "has_audio", False):
            log.warning("--record %s holds the picture only: a virtual camera carries no sound, so the live filter "
                        "plays none; for %s with its sound: vbg process %s -o OUT.mp4", cfg.output.record,
                        cfg.source.source, shlex.quote(str(cfg.source.source)))
        w, h, fps = source.width, source.height, source.fps
        # A source handed in is reopened only by the ``reopen`` handed in with it.
        reopen = self._reopen if self._source is not None else \
            self._open_source if getattr(source, "comes_back", source.live) else None
        self._fps = fps
        seg = self._with_crop(self._open_model(stack), (h, w))
        self._seg_now, self._hw = seg, (h, w)
        stack.callback(lambda: self._seg_now.close())  # the model a switch left running
        mask_hw = tuple(seg.input_size((h, w)))  # a tuple: compared with each mask's shape
        log.info("source %dx%d at %.2f fps; model %s at %dx%d on %s", w, h, fps, seg.source.label,
                 mask_hw[0], mask_hw[1],
                 ", ".join(seg.providers) or "the device its session opens on at the first frame")
        b = cfg.background
        background = background_from_options(b.background, b.color, b.blur, live=True, clock=self.clock)
        stack.callback(background.close)  # the compositor closes it too; close() is idempotent
        compositor = Compositor((h, w), background, feather=b.feather, threshold=b.threshold, mirror=b.mirror)
        self.sinks = self._open_sinks(stack, w, h, fps)
        from .control.state import ControlState

        self.control = ControlState(compositor.background, (h, w), mirror=b.mirror)
        stack.callback(self.control.close)
        stack.callback(self._close_made)  # after the render thread is joined
        st = _Stages(LatestSlot(), LatestSlot(), _MaskBox(), seg, SkipGovernor(skip, 1.0 / fps),
                     MaskTracker((h, w), mask_hw, smoothing=cfg.temporal.smoothing, upsample=cfg.temporal.upsample),
                     compositor, None, (h, w), fps, self.control)
        self.capture = CaptureWorker(source, st.frames, reopen=reopen, clock=self.clock, max_frames=cfg.output.frames)
        if cfg.output.preview:
            from .sinks.preview import PreviewKeys

            st.keys = PreviewKeys(compositor.background, (h, w), on_quit=self.stop, target=self.control)
            stack.callback(st.keys.close)  # its backgrounds: after the render thread is joined
        if cfg.control.control:
            self._start_control(stack, seg, b)
        return st

    def _close_source(self, source) -> None:
        """``source`` closed once (a caller's source need not take a second close): by the capture
        worker where it ran, which closes what it read, at its end or here through it (its thread
        may still be blocked in the source's ``read()``: its own close then does nothing)."""
        capture = self.capture
        if capture is None or capture.source is not source:
            source.close()
        else:
            capture.close_source(source)

    def _close_made(self) -> None:
        if self._made is not None:
            self._made.close()

    def _start_control(self, stack: contextlib.ExitStack, seg, b) -> None:
        """The control server (vbg ctl, the control page), closed by ``stack``."""
        from .control.library import Library
        from .control.server import ControlServer
        from .control.state import Controller, config_background
        from .models.spec import MODELS

        started_with = config_background(b.background, b.color, b.blur)  # its label, and a colour's #rrggbb

        def latest():
            comp = self.latest
            return None if comp is None else comp.image

        controller = Controller(self.control, Library(self.cfg.control.backgrounds_dir),
                                status=self.control_status, latest=latest,
                                load_model=None if self._segmenter is not None else self._load_model,
                                models=tuple(MODELS), model=self.cfg.model.model,
                                background_label=started_with["label"],
                                clock=self.clock)
        self.controller = controller
        controller.background = started_with
        stack.callback(self.controller.close)  # a video background it started: after the server and render thread
        controller, m = self.controller, self.cfg.model

        def note_models() -> None:  # the menu marks a model a switch would first download
            from .models.resolve import download_notes

            notes = download_notes(m.variant, m.backend)
            if controller is not None:
                controller.model_notes = notes

        threading.Thread(target=note_models, name="vbg-model-notes", daemon=True).start()
        try:
            self.control_server = ControlServer(self.controller).start()
        except Exception as e:  # the filter runs on without it
            log.warning("no control server (vbg ctl, the control page): %s", one_line(e))
            self.controller = self.control_server = None
            return
        stack.callback(self.control_server.close)
        if self._on_control is not None:
            try:
                self._on_control(self.control_server)
            except Exception as e:  # a browser that would not open: not a reason to stop
                log.warning("control: %s", one_line(e))

    def _load_model(self, name: str):
        """(a loader thread) Model ``name`` opened, with a tracker at its mask size, for a switch."""
        from dataclasses import replace

        from .control.state import ModelSwap
        from .inference import create_segmenter
        from .inference.tracker import MaskTracker

        t = self.cfg.temporal
        before = priority.thread_ids()
        # --size belongs to the model it was given with: back to that model, back to its size;
        # another model at its own default
        size = self.cfg.model.size if name == self.cfg.model.model else None
        seg = create_segmenter(replace(self.cfg.model, model=name, size=size))
        if self._model_threads is not None and seg.providers[:1] == ["CPUExecutionProvider"]:
            priority.lower(priority.thread_ids() - before)  # its pool threads yield to the frame path too
        try:
            seg = self._with_crop(seg, self._hw)
            mask_hw = seg.input_size(self._hw)
            mask_hw = tuple(mask_hw)
            tracker = MaskTracker(self._hw, mask_hw, smoothing=t.smoothing, upsample=t.upsample)
        except BaseException:
            seg.close()
            raise
        return ModelSwap(name, seg, tracker, mask_hw)

    def _start_workers(self, stack: contextlib.ExitStack, st: _Stages):
        """Start the inference, render and capture threads (stopped and joined by ``stack``);
        the preview window, if any, on this thread."""
        stack.callback(self._join_all)
        stack.callback(st.to_model.close)
        stack.callback(self.stop)
        self._spawn(lambda: self._infer_loop(st.seg, st.to_model, st.masks), "vbg-infer")
        self._spawn(lambda: self._render_loop(st), "vbg-render",
                    stop_when_done=True)  # the render loop ends when the source does
        self._capture_started = self.clock.now()  # --duration counts from here (not after the window opens)
        self.capture.start()
        stack.callback(self.capture.join, 5.0)
        stack.callback(self.capture.stop)
        self._start_idle_gate(stack, st)
        h, w = st.hw
        return self._open_preview(stack, w, h, st.fps, st.keys) if st.keys is not None else None

    def _supervise(self, preview, on_status, status_interval: float, on_tick) -> None:
        """Until stop() or --duration: the preview window, the status line, the sinks' health."""
        t_start = self.clock.now()
        next_status = t_start + status_interval
        # from the capture's start: the preview window opens after it (--duration 4 recorded 4.6 s)
        began = t_start if self._capture_started is None else self._capture_started
        deadline = began + self.cfg.output.duration if self.cfg.output.duration else None
        shown = None
        while not self._stop.is_set():
            self._stop.wait(0.05)
            now = self.clock.now()
            if deadline is not None and now >= deadline:
                break
            if preview is not None:
                latest = self.latest
                if latest is not None and latest is not shown:
                    preview.send(latest)
                    shown = latest
                else:
                    preview.poll()
            if on_tick is not None:
                on_tick(self)
            if on_status is not None and now >= next_status:
                on_status(self.stats.status_line(" | camera lost" if self.capture.lost else
                                                 " | idle: nobody reads the camera" if self.idle and self.idle.idle
                                                 else ""))
                next_status = now + status_interval
            for sink in self.sinks:
                try:
                    sink.check()  # a sink's own thread failed: stop with its reason
                except VbgError as e:
                    self._fail(e)
        latest = self.latest
        if preview is not None and latest is not None and latest is not shown:
            preview.send(latest)  # a run shorter than the window's start (--frames 12) still shows its end

    def _open_preview(self, stack: contextlib.ExitStack, w: int, h: int, fps: float, keys):
        """The preview window lives on the calling (main) thread; its keys go to ``keys``."""
        from .sinks.preview import PreviewWindow

        window = PreviewWindow(w, h, fps, title="vbg preview", on_action=keys)
        stack.callback(window.close)
        return window

    def _start_idle_gate(self, stack: contextlib.ExitStack, st: _Stages) -> None:
        """Idle when unwatched (:mod:`vbg.sinks.watchers`): with a v4l2loopback output on Linux and
        nothing else showing or keeping the video (no --preview, no --record, no --always-on),
        release the camera and pause the model while no application reads the device, feeding it
        a still card at 1 fps instead; a test's injected watcher stands in for the device."""
        o = self.cfg.output
        cams = [s for s in self.sinks if hasattr(s, "set_rate")]
        if o.always_on or o.preview or o.record or not cams:
            return
        watcher = self._watcher
        if watcher is None:
            if not sys.platform.startswith("linux") or cams[0].backend != "v4l2loopback":
                return
            from .sinks.watchers import open_watcher

            watcher = open_watcher(cams[0].device)
            stack.callback(watcher.close)
        from .compositing.cards import idle_card
        from .sinks.watchers import IDLE_FPS, IdleGate

        card = np.empty((*st.hw, 3), np.uint8)

        def pause() -> None:
            self.capture.pause()
            # The frame being read and the one being rendered go out first, the card after them
            # (bounded: a wedged source must not hold the gate).
            end = time.monotonic() + 2.0
            while time.monotonic() < end and not (self.capture.released.is_set()
                                                  and self.stats.out_frames + st.frames.drops >= self.capture.frames):
                time.sleep(0.005)
            latest = self.latest  # the last live composite: its ring slot is not reused while idle
            idle_card(latest.image.copy() if latest is not None else None, card)
            self._send(Composite(latest.seq if latest else -1, self.clock.now(), card, -1, False, card=True))
            for cam in cams:
                cam.set_rate(IDLE_FPS)  # the card, repeated by the sink's own thread

        def resume() -> None:
            for cam in cams:
                cam.set_rate(None)
            self.capture.resume()

        log.info("idle when unwatched: after %g s without a reader (%s); --always-on keeps it running",
                 o.idle_after, watcher.kind)
        self.idle = IdleGate(watcher, o.idle_after, pause=pause, resume=resume, clock=self.clock)
        stack.callback(self.idle.join, 5.0)
        stack.callback(self.idle.stop)
        self.idle.start()

    def _join_all(self) -> None:
        for t in self._threads:
            t.join(10.0)

    def _open_sinks(self, stack: contextlib.ExitStack, w: int, h: int, fps: float) -> list:
        o = self.cfg.output
        sinks = list(self._extra_sinks)  # closed by the stack since _open_stages began
        if o.record:
            from .sinks.recorder import Recorder

            path = Path(o.record).expanduser()  # "~/call.mp4" in quotes or a config file, as preflight checked it
            if path.exists() and not o.overwrite:
                from .errors import OutputError

                raise OutputError(f"--record {path} already exists: pass --overwrite or choose another name")
            rec = Recorder(path, w, h, fps, encoder=o.encoder, gpu=self.cfg.model.gpu, overwrite=o.overwrite)
            stack.callback(rec.close)
            log.info("%s", rec.encoder.describe())
            sinks.append(rec)
        if o.vcam:
            from .sinks.virtual_camera import VirtualCameraSink

            try:
                cam = VirtualCameraSink(w, h, fps, device=o.vcam_device, backend=o.vcam_backend, clock=self.clock,
                                        latency=self.stats.latency_ms)
            except SinkError as e:
                if not o.preview:
                    raise
                log.warning("no virtual camera: showing the preview window only (%s)", e)
            else:
                stack.callback(cam.close)
                sinks.append(cam)
                self._vcam_latency = True  # the latency is measured at the device from now on
        return sinks

    # ------------------------------------------------------------------ threads
    def _infer_loop(self, seg, to_model: LatestSlot[Frame], masks: _MaskBox) -> None:
        if self._model_threads is not None:
            priority.lower()
        while not self._stop.is_set():
            try:
                frame = to_model.get(timeout=0.1)
            except Closed:
                return
            if frame is None:
                continue
            now = self._seg_now
            if now is not seg and now is not None:  # a model switch: the old one is ours to close
                seg.close()
                seg = now
            t0 = self.clock.now()  # the pipeline's clock: a test's fake clock can make a model slow
            alpha = seg.segment(frame.image)
            ms = (self.clock.now() - t0) * 1000.0
            masks.set(Mask(frame.seq, frame.t_capture, alpha.copy(), self.clock.now(), ms))
            self.stats.infer_ms.add(ms)
            self.stats.infer_runs += 1

    def _render_loop(self, st: _Stages) -> None:
        h, w = st.hw
        ring = [np.empty((h, w, 3), np.uint8) for _ in range(OUT_RING)]
        zero_alpha = np.zeros((h, w), np.uint8)
        last_out: Composite | None = None
        lost_base: np.ndarray | None = None  # the last real picture, kept while the camera is gone
        n = 0
        effect_on = True  # the preview's space bar, vbg ctl effect, SIGUSR1 turn the effect off and on
        next_tracker = None  # a switched model's tracker, taken up with the first mask at its size
        model_time = _ModelTime(st.governor)
        align = (_Aligner(st.frames, st.to_model, st.masks, st.governor, model_time, self.clock)
                 if self.cfg.temporal.align else None)
        while not self._stop.is_set():
            try:
                frame = align.next() if align is not None else st.frames.get(timeout=0.1)
            except Closed:
                return
            if frame is None:
                if self.capture is not None and self.capture.lost and last_out is not None:
                    if lost_base is None:
                        lost_base = last_out.image.copy()
                    self._send_lost(last_out, lost_base, ring, n)
                    n += 1
                continue
            lost_base = None
            t0 = time.perf_counter()
            self.stats.capture_seqs.add(frame.seq)
            self.stats.capture_times.add(frame.t_capture)
            # (with --align, frames went to the model on arrival: the mask is due)
            wait_s = self._schedule(frame, st, model_time) if align is None else 0.0
            if wait_s:
                tw = time.perf_counter()
                m = st.masks.wait_for(frame.seq, wait_s)
                t0 += time.perf_counter() - tw  # render time counts work, not waiting for the model
            else:
                m = st.masks.get()
            model_time.see(m)
            swap = st.control.take_model()
            if swap is not None:
                # (a mask size the same as the old one's: the tracker goes on as it is)
                next_tracker = swap.tracker if swap.mask_hw != st.tracker.mask_hw else None
                self._seg_now = swap.segmenter  # the inference thread takes it up at its next frame
                self.stats.providers = list(swap.segmenter.providers)
            if m is not None and not _fits(m, st.tracker.mask_hw):
                if next_tracker is not None and _fits(m, next_tracker.mask_hw):
                    st.tracker, next_tracker = next_tracker, None
                else:
                    m = None  # the other model's mask: the tracker carries its own forward
            alpha_u8, fresh = st.tracker.update(frame.image, frame.seq, m)
            if alpha_u8 is None:
                alpha_u8 = zero_alpha  # no mask yet: only the background, never the room
            view = st.control.take()
            if view is not None:
                effect_on = view.effect
                st.compositor.background = view.background
                st.compositor.mirror = view.mirror
            last_out = self._output(frame, alpha_u8, fresh, st, ring[n % OUT_RING], effect_on, t0)
            n += 1

    def _schedule(self, frame: Frame, st: _Stages, model_time: _ModelTime) -> float:
        """Send ``frame`` to the model if the skip governor picks it; the seconds worth waiting
        for its mask (0.0: none)."""
        model_time.see(st.masks.get())  # the masks in so far count before this frame is scheduled
        if not st.governor.should_run(frame.seq):
            return 0.0
        st.to_model.put(frame)
        # A model that answers within half the frame interval is worth waiting for: the mask is
        # then exact for this frame instead of carried along from the last one.
        return st.governor.wait_s()

    def _output(self, frame: Frame, alpha_u8: np.ndarray, fresh: bool, st: _Stages, out: np.ndarray,
                effect_on: bool, t0: float) -> Composite:
        """Composite ``frame`` into ``out``, send it to the sinks, and count it."""
        m_used = st.tracker.mask
        if effect_on:
            st.compositor.compose(frame.image, alpha_u8, out=out)
        else:  # the camera as it is, still a selfie view with --mirror (it flipped at the switch)
            np.copyto(out, frame.image[:, ::-1] if getattr(st.compositor, "mirror", False) else frame.image)
        comp = Composite(frame.seq, frame.t_capture, out, m_used.seq if m_used is not None else -1, fresh)
        self._send(comp)
        self.latest = comp
        now = self.clock.now()
        stats = self.stats
        stats.render_ms.add((time.perf_counter() - t0) * 1000.0)
        if not self._vcam_latency:  # else the virtual camera's thread adds it as it sends the frame
            stats.latency_ms.add((now - frame.t_capture) * 1000.0)
        if m_used is not None:
            stats.mask_age_ms.add((now - m_used.t_capture) * 1000.0)
        if stats.first_out is None:
            stats.first_out = now
        stats.out_times.add(now)
        stats.out_frames += 1
        stats.fresh_frames += fresh
        return comp

    def _send(self, comp: Composite) -> None:
        for sink in self.sinks:
            sink.send(comp)

    def _send_lost(self, last: Composite, base: np.ndarray, ring, n: int) -> None:
        """Camera gone: keep the virtual camera fed with the last frame, dimmed."""
        from .compositing.cards import camera_lost_card

        out = camera_lost_card(base, ring[n % OUT_RING])
        # A new timestamp: the card is shown now, and recordings need increasing times.
        self._send(Composite(last.seq, self.clock.now(), out, last.mask_seq, False, card=True))


__all__ = ["LivePipeline", "VbgError"]
