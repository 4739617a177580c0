"""Run the live pipeline on time the test moves, so what it checks holds on any machine under any load.

The real threads run (capture, render, inference, sinks) on a real clip and a real model; only
time is the test's: a :class:`DrivenClock` that moves when :class:`Lockstep` moves it. The clip
is paced on it (frame k is due at k/fps), and :class:`TimedModel` makes every model answer take a
fixed span of it. After each move the driver waits, in real time and only as a guard against a
hang, until every thread has done what that moment allows: the frame captured and rendered, the
model's due answers delivered, a frame handed to an idle model taken up. Then the next move.

Model answers always end 5 ms of clock time before a frame is due (the driver stops there), so
the order of a model answer and a new frame never depends on which thread the OS runs first.

With ``crop=True`` the pipeline may wrap the model in the person crop, which runs it once or
twice per frame and times each run on the pipeline's clock to decide whether a crop fits the
frame interval. Each run then takes exactly ``model_s``: the driver also stops where every run
ends, so what the crop measures is the test's to set, on any machine under any load.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

import numpy as np
from vbg.buffers import LatestSlot
from vbg.clock import FakeClock
from vbg.pipeline import LivePipeline
from vbg.sinks import SinkBase, SinkStats

GUARD_S = 120.0  # real seconds any one step may take before the test calls it a hang
BEFORE_FRAME_S = 0.005  # where model answers end: this long before a frame is due


def held(slot: LatestSlot):
    """The item ``slot`` holds, not taken (None when empty): what a thread has handed over and
    the next one not yet picked up. The driver's view only: vbg's threads never need it."""
    with slot._cond:
        return slot._item


SLEEP_SLACK_S = 1e-9  # DrivenClock.sleep ends this close to its target (float rounding, not time)


def wait_until(condition, what: str, timeout: float = GUARD_S) -> None:
    """Poll ``condition`` (real time); the time-out only catches a hang, it is never a measurement."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.001)


class DrivenClock(FakeClock):
    """Fake time that moves only by :meth:`set`; ``sleep`` waits until it has moved far enough
    (or until :meth:`release`, which ends every wait at the end of a run)."""

    def __init__(self) -> None:
        super().__init__()
        self._moved = threading.Condition()
        self._released = False

    def set(self, t: float) -> None:
        with self._moved:
            with self._lock:
                self._t = max(self._t, t)
            self._moved.notify_all()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)

    def release(self) -> None:
        with self._moved:
            self._released = True
            self._moved.notify_all()

    def sleep(self, seconds: float) -> None:
        # A sleeper computes ``due - now`` and adds it back: in floating point that can land one
        # unit above ``due`` itself, and with the clock set to exactly ``due`` it waited for ever
        # (a model run "due" at 1.455001 s, seen once in CI): a nanosecond is close enough.
        target = self.now() + max(0.0, seconds) - SLEEP_SLACK_S
        with self._moved:
            while self.now() < target and not self._released:
                self._moved.wait(1.0)


class NumberedClip:
    """A real paced clip (VideoFileSource on the test's clock) that remembers each image it gave,
    so a model call can be traced to its frame number."""

    live = True

    def __init__(self, path, clock: DrivenClock) -> None:
        from vbg.capture.video_file import VideoFileSource

        self.inner = VideoFileSource(str(path), paced=True, clock=clock)
        self.width, self.height, self.fps = self.inner.width, self.inner.height, self.inner.fps
        self.images: list = []

    def read(self):
        image = self.inner.read()
        if image is not None:
            self.images.append(image)
        return image

    def seq_of(self, image) -> int:
        """The number of the frame ``image`` is, or is a part of (the person crop's box)."""
        for i in range(len(self.images) - 1, -1, -1):
            x = self.images[i]
            if x is image or image.base is not None and np.may_share_memory(x, image):
                return i
        raise AssertionError("the model was given an image the clip never gave")

    def close(self) -> None:
        self.inner.close()


class TimedModel:
    """A real segmenter whose every answer takes ``seconds`` of the test's clock (after its real work).

    Not croppable: one answer per frame, named by the frame's number. ``croppable``: the person
    crop may wrap it; each run (one or two per frame, on the whole frame or on a box) takes
    ``seconds``, and ``sleeping_until`` tells the driver where the run under way ends."""

    def __init__(self, inner, clock: DrivenClock, seconds: float, clip: NumberedClip, *,
                 croppable: bool = False) -> None:
        self.inner, self.clock, self.seconds, self.clip = inner, clock, seconds, clip
        self.can_crop = croppable
        self.calls: list[tuple[int, float]] = []  # (frame number, clock time it started), one per run
        self.inside = False  # a run is under way
        self.sleeping_until: float | None = None  # its real work done, it waits for this clock time
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def segment(self, image, size_hw=None):
        start = self.clock.now()
        with self._lock:
            self.calls.append((self.clip.seq_of(image), start))
            self.inside = True
        alpha = self.inner.segment(image) if size_hw is None else self.inner.segment(image, size_hw=size_hw)
        with self._lock:
            self.sleeping_until = start + self.seconds
        self.clock.sleep(start + self.seconds - self.clock.now())
        with self._lock:
            self.sleeping_until, self.inside = None, False
        return alpha

    @property
    def frames(self) -> list[int]:
        """The frames the model ran on, in order (a cropped frame's two runs count once)."""
        out: list[int] = []
        for seq, _ in self.calls:
            if not out or out[-1] != seq:
                out.append(seq)
        return out

    def due(self, now: float) -> int:
        """Calls whose answer is due by ``now``."""
        with self._lock:
            return sum(1 for _, start in self.calls if start + self.seconds <= now)

    def answered(self, now: float) -> set[int]:
        """The frames all of whose runs have ended by ``now`` (read once the driver has settled:
        a cropped frame's second run has started by then)."""
        with self._lock:
            ends: dict[int, float] = {}
            for seq, start in self.calls:
                ends[seq] = max(ends.get(seq, start), start + self.seconds)
        return {seq for seq, end in ends.items() if end <= now}


class KeepSink(SinkBase):
    """Keeps, per composite the pipeline sent: frame number, mask frame number, the clock time it
    was sent, and whatever ``keep(image)`` extracts from the picture."""

    def __init__(self, clock, keep=None) -> None:
        super().__init__()
        self.clock, self.keep = clock, keep
        self.sent: list[tuple[int, int, float]] = []
        self.kept: list = []

    def send(self, composite) -> None:
        self.sent.append((composite.seq, composite.mask_seq, self.clock.now()))
        if self.keep is not None:
            self.kept.append(self.keep(composite.image))

    def check(self) -> None:
        pass

    def stats(self) -> SinkStats:
        return SinkStats(received=len(self.sent), written=len(self.sent))

    def close(self) -> None:
        pass

    @property
    def seqs(self) -> list[int]:
        return [s for s, _, _ in self.sent]

    @property
    def mask_seqs(self) -> list[int]:
        return [m for _, m, _ in self.sent]


class _Observed(LivePipeline):
    """The pipeline as it is, with its two hand-over slots visible to the driver."""

    def _render_loop(self, st):
        self.frame_slot, self.model_slot = st.frames, st.to_model
        return super()._render_loop(st)


class Lockstep:
    """Run ``cfg`` on ``clip`` with a model that takes ``model_s`` of clock time per answer.

    ``frames`` frames are captured (``cfg.output.frames`` must say so). ``outputs(now)`` gives how
    many composites must be out once the pipeline has settled at clock time ``now``; by default
    every captured frame (the output never waits for a slow model). ``to_model(k)`` says whether
    frame k goes to the model, where the test knows (a fixed ``--skip``); by default the driver
    only requires that a frame handed to the model is taken up by it. ``crop``: the pipeline may
    wrap the model in the person crop (``[model] crop``), each of its runs ``model_s`` long, and
    the driver also stops where each run ends (``TimedModel.answered`` then says which frames
    have their masks).
    """

    def __init__(self, cfg, clip_path, model_s: float, *, frames: int, outputs=None, to_model=None,
                 keep=None, vcam: bool = False, crop: bool = False) -> None:
        from vbg.inference import create_segmenter

        self.clock = DrivenClock()
        self.clip = NumberedClip(clip_path, self.clock)
        self.crop = crop
        self.model = TimedModel(create_segmenter(cfg.model), self.clock, model_s, self.clip, croppable=crop)
        self.sink = KeepSink(self.clock, keep)
        self.pipe = _Observed(cfg, clock=self.clock, segmenter=self.model, source=self.clip, sinks=[self.sink])
        self.frames, self.fps = frames, self.clip.fps
        self.outputs = outputs or (lambda now: self.captured())
        self.to_model = to_model
        self.vcam = vcam
        self.stats = None
        self.error: BaseException | None = None

    def captured(self) -> int:
        return self.pipe.capture.frames if self.pipe.capture is not None else 0

    def frame_time(self, k: int) -> float:
        # just past the due time, whatever the rounding of k/fps; frame 0 sets the clip's start
        return k / self.fps + 1e-6 if k else 0.0

    # ------------------------------------------------------------------ settling
    def _model_settled(self) -> bool:
        slot, st = self.pipe.model_slot, self.pipe.stats
        waiting = held(slot) is not None
        if self.crop:  # runs per frame vary: settled while a run waits for the clock, or when all is delivered
            m = self.model
            with m._lock:
                inside, until = m.inside, m.sleeping_until
            frames, runs = len(m.frames), st.infer_runs
            if frames != slot.puts - slot.drops - waiting:
                return False
            if inside:
                return until is not None and until > self.clock.now() and runs == frames - 1
            return not waiting and runs == frames
        calls, runs = len(self.model.calls), st.infer_runs
        busy = calls > runs
        # every frame handed over is taken up, unless the model is busy with an earlier one;
        # every answer due by now is delivered
        return (calls == slot.puts - slot.drops - waiting and (busy or not waiting)
                and runs == self.model.due(self.clock.now()))

    def _vcam_ticks(self) -> int:
        cams = [s for s in self.pipe.sinks if s is not self.sink]
        return cams[0].stats().written if cams else 0

    def _state(self) -> str:
        """What the driver sees, and where vbg's threads are: for a time-out's message."""
        slot, st = self.pipe.model_slot, self.pipe.stats
        lines = [f"clock {self.clock.now():.4f} s; model calls {len(self.model.calls)} (last {self.model.calls[-3:]}), "
                 f"runs {st.infer_runs}, due {self.model.due(self.clock.now())}; to-model slot puts {slot.puts} "
                 f"drops {slot.drops} waiting {held(slot) is not None}; captured {self.captured()}, "
                 f"out {st.out_frames}; pipeline errors {self.pipe._errors!r}"]
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            name = names.get(ident, "?")
            if name.startswith("vbg-") or name == "test-pipeline":
                lines.append(f"--- {name}\n" + "".join(traceback.format_stack(frame)[-6:]))
        return "\n".join(lines)

    def _wait(self, condition, what: str) -> None:
        """``wait_until``, but a pipeline thread's failure ends the wait at once and is raised, and
        a time-out says where every thread is (a hang is then found from its message)."""
        failed = lambda: bool(self.pipe._errors)  # noqa: E731
        try:
            wait_until(lambda: condition() or failed(), what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self._state()}") from None
        if failed() and not condition():
            raise self.pipe._errors[0]

    def _settle(self, k: int, at_frame: bool) -> None:
        captured = k + 1
        now = self.clock.now()
        self._wait(lambda: self.captured() >= captured and held(self.pipe.frame_slot) is None,
                   f"frame {k} captured and taken by the render thread")
        if k == self.frames - 1:
            return  # the source has ended: the pipeline finishes on its own (--align lets its held frames go)
        if at_frame and self.to_model is not None and self.to_model(k):
            self._wait(lambda: k in self.model.frames, f"the model taking up frame {k}")
        self._wait(self._model_settled, f"the model settled at {now:.4f} s (frame {k})")
        want = self.outputs(now)
        self._wait(lambda: self.pipe.stats.out_frames >= want,
                   f"{want} frames out at {now:.4f} s; {self.pipe.stats.out_frames} are")
        self._wait(self._model_settled, f"the model settled after the output at {now:.4f} s")
        if self.vcam:
            ticks = int(now * self.fps + 1e-6) + 1
            self._wait(lambda: self._vcam_ticks() >= ticks, f"{ticks} virtual camera ticks by {now:.4f} s")
        assert self.pipe.stats.out_frames == want, (k, now, self.pipe.stats.out_frames, want)

    # ------------------------------------------------------------------ running
    def _run_ends_before(self, t: float, k: int) -> None:
        """``crop``: stop where each model run ending before ``t`` ends (frame ``k`` the newest
        captured), so every run takes exactly ``model_s`` of the pipeline's clock."""
        while self.crop:
            until = self.model.sleeping_until
            if until is None or until >= t:
                return
            self.clock.set(until)
            self._settle(k, at_frame=False)

    def run(self):
        def target():
            try:
                self.stats = self.pipe.run()
            except BaseException as e:  # re-raised in the test's thread
                self.error = e

        runner = threading.Thread(target=target, name="test-pipeline", daemon=True)
        runner.start()
        try:
            wait_until(lambda: self.pipe.started.is_set() or self.error is not None, "the pipeline to start")
            wait_until(lambda: hasattr(self.pipe, "model_slot") or self.error is not None, "the render thread")
            if self.error is None:
                self._settle(0, at_frame=True)
                for k in range(1, self.frames):
                    self._run_ends_before(self.frame_time(k) - BEFORE_FRAME_S, k - 1)
                    self.clock.set(self.frame_time(k) - BEFORE_FRAME_S)
                    self._settle(k - 1, at_frame=False)
                    self._run_ends_before(self.frame_time(k), k - 1)
                    self.clock.set(self.frame_time(k))
                    self._settle(k, at_frame=True)
        finally:
            self.clock.release()  # whatever still waits on the clock may finish now
            runner.join(GUARD_S)
        assert not runner.is_alive(), "the pipeline did not stop"
        if self.error is not None:
            raise self.error
        return self.stats
