"""Which frames the model runs on (``--skip``).

In: the ``--skip`` value (an int 1..30 or ``auto``), the camera's frame
interval, then per candidate frame its sequence number (``should_run``) and
each measured inference time in ms (``observe``). Out: whether the model runs
on that frame. Pure logic: it never reads a clock. Thread: not thread-safe;
live, the render thread alone drives it.

On two cores the model competes with capture, rendering and encoding; the
frames in between are covered by mask propagation. ``--skip N`` runs the
model on every N-th frame; ``--skip auto`` picks N from the measured
inference time so that the model's share of each frame interval leaves
``headroom``::

    N = ceil(infer_ms_ema / frame_interval_ms * (1 + headroom)), clamped to 1..30

N goes up only once that load exceeds N by ``hysteresis`` (10 %), and down
only once it fits in N - 1 with the same margin, so inference times that hover
around a boundary do not flip N every frame.

A model that answers within :func:`fresh_wait_ms` (half the frame interval,
at least ``FRESH_WAIT_MS``) is waited for on the frames it runs on (live), so
their masks are exact for them instead of carried along from an older frame
(``SkipGovernor.wait_s``); the quality benchmark's live simulation follows the
same rule.
"""

from __future__ import annotations

import math

from ..config import SKIP_MAX, parse_skip
from ..errors import ConfigError

FRESH_WAIT_MS = 12.0  # the least a model's mask is worth waiting for, at any frame rate
# ... and up to this share of the frame interval (20.8 ms at 24 fps, 16.7 ms at 30 fps): the
# rest of the interval is the render thread's. DAVIS people, selfie model at 13.5 ms (its
# median on the loaded 2-core machine), frame-exact: a carried mask one frame late loses
# 0.010 IoU and 0.030 boundary F against a waited one at `--skip auto`, 0.020 / 0.028 at
# `--skip 3` (benchmarks/QUALITY.md, issue 15).
FRESH_WAIT_SHARE = 0.5


def fresh_wait_ms(frame_interval_ms: float) -> float:
    """The longest a model is waited for on the frame it runs on, in ms, at this frame interval."""
    return max(FRESH_WAIT_MS, FRESH_WAIT_SHARE * frame_interval_ms)


class SkipGovernor:
    """Decides per frame whether the model runs.

    ``skip``: an int 1..30 or ``"auto"`` (a string is parsed with
    ``parse_skip``). ``frame_interval_s``: the camera's frame interval
    (1 / fps). Call ``should_run(seq)`` for each candidate frame (a True
    answer is taken as "the model runs on it") and ``observe(infer_ms)`` with
    each measured inference time. Not thread-safe: use it from one thread (live,
    the render thread: it observes each new mask's ``Mask.infer_ms`` as it takes
    the mask, never the inference thread).
    """

    def __init__(
        self,
        skip: int | str,
        frame_interval_s: float,
        *,
        headroom: float = 0.25,
        ema: float = 0.2,
        hysteresis: float = 0.1,
    ):
        self.skip = parse_skip(skip)
        if not (isinstance(frame_interval_s, (int, float)) and 0.001 <= frame_interval_s <= 10.0):
            raise ConfigError(f"frame interval {frame_interval_s!r} s is out of range: use 0.001..10 (1000..0.1 fps)")
        if not (isinstance(headroom, (int, float)) and 0.0 <= headroom <= 4.0):
            raise ConfigError(f"skip headroom {headroom!r} is out of range: use 0..4")
        if not (isinstance(ema, (int, float)) and 0.0 < ema <= 1.0):
            raise ConfigError(f"skip ema {ema!r} is out of range: use a weight in (0, 1]")
        if not (isinstance(hysteresis, (int, float)) and 0.0 <= hysteresis <= 0.5):
            raise ConfigError(f"skip hysteresis {hysteresis!r} is out of range: use 0..0.5")
        self.frame_interval_ms = frame_interval_s * 1000.0
        self.headroom = float(headroom)
        self.ema = float(ema)
        self.hysteresis = float(hysteresis)
        self.reset()

    @property
    def auto(self) -> bool:
        return self.skip == "auto"

    @property
    def current_n(self) -> int:
        """Run the model on one frame in ``current_n``."""
        return self._n

    @property
    def infer_ms(self) -> float | None:
        """The smoothed inference time (None before the first ``observe``)."""
        return self._ema_ms

    @property
    def wait_ms(self) -> float:
        """The longest wait for a mask this frame rate allows (:func:`fresh_wait_ms`)."""
        return fresh_wait_ms(self.frame_interval_ms)

    def wait_s(self) -> float:
        """Seconds worth waiting for the mask of a frame the model was just given (0.0: none).

        A model whose smoothed time fits in :attr:`wait_ms` is waited for, up to
        1.5 times that time plus 2 ms (a slow run under load must not stall the
        video), never longer than :attr:`wait_ms`: the mask is then exact for the
        frame shown instead of carried from the one before. A slower model, or
        one not yet timed, is never waited for.
        """
        expected = self._ema_ms
        if expected is None or expected > self.wait_ms:
            return 0.0
        return min(expected * 1.5 + 2.0, self.wait_ms) / 1000.0

    @property
    def load(self) -> float | None:
        """Frame intervals one inference needs, headroom included (None before ``observe``)."""
        if self._ema_ms is None:
            return None
        return self._ema_ms / self.frame_interval_ms * (1.0 + self.headroom)

    def should_run(self, seq: int) -> bool:
        """True if frame ``seq`` is due: the first frame, or ``current_n`` or more after the last run.

        With consecutive ``seq`` from 0 this is every N-th frame (seq % N == 0);
        if the due frame was missed (the model was busy), the next one asked
        about runs. A ``seq`` that goes backwards (a restarted source) runs and
        restarts the count.
        """
        last = self._last_run
        if last is None or seq - last >= self._n or seq < last:
            self._last_run = seq
            return True
        return False

    def observe(self, infer_ms: float) -> None:
        """Feed one measured inference time; in auto mode this may change ``current_n``."""
        x = float(infer_ms)
        if not (x >= 0.0 and math.isfinite(x)):
            return  # a broken measurement must not poison the average
        self._ema_ms = x if self._ema_ms is None else self._ema_ms + self.ema * (x - self._ema_ms)
        if self.auto:
            self._retarget()

    def _retarget(self) -> None:
        load = self.load
        n, h = self._n, self.hysteresis
        if load > n * (1.0 + h) or load < (n - 1) * (1.0 - h):
            self._n = min(max(math.ceil(load), 1), SKIP_MAX)

    def reset(self) -> None:
        """Forget the last run and the timing average (auto restarts at N = 1)."""
        self._last_run: int | None = None
        self._ema_ms: float | None = None
        self._n = 1 if self.auto else self.skip
