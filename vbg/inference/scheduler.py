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

A model that answers within ``FRESH_WAIT_MS`` is waited for on the frames it
runs on (live), so their masks are exact for them instead of carried along
from an older frame; the quality benchmark's live simulation follows the same
rule.
"""

from __future__ import annotations

import math

from ..config import SKIP_MAX, parse_skip
from ..errors import ConfigError

FRESH_WAIT_MS = 12.0  # wait this long at most for the mask of the current frame


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
