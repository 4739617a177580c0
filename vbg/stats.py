"""Counters and latency samples: the hot path only appends, a side thread reports.

:class:`LiveStats`: one writer per field, so no lock (its docstring says
which thread writes what); readers call ``snapshot`` or ``status_line`` from
any thread and may see a window one sample behind a counter.
"""

from __future__ import annotations

from collections import deque

import numpy as np


# The status line's parts in the order they go when the terminal is too narrow for them all:
# "" is the provider list ("CPU", "CUDA,CPU"), the one part with no name in front.
_DROP_FIRST = ("cam ", "fresh ", "mask age ", "", "model ", "latency ")
_NAMED = ("out ", "cam ", "model ", "fresh ", "mask age ", "latency ", "camera lost", "idle")


def _is_provider(part: str) -> bool:
    return not part.startswith(_NAMED)


def fit_status_line(line: str, width: int) -> str:
    """A :meth:`LiveStats.status_line` in ``width`` terminal cells: its parts dropped, the least
    telling first (the camera's rate, the fresh share, the mask age, the provider, the model's
    time, the latency), until it fits; what it says after them (camera lost, idle) and the output
    rate stay. Cut at the end if even that is too long."""
    from .streams import cells, fit

    parts = line.split(" | ")
    for prefix in _DROP_FIRST:
        if cells(" | ".join(parts)) <= width:
            break
        parts = [p for p in parts if not (p.startswith(prefix) if prefix else _is_provider(p))]
    return fit(" | ".join(parts), width)


class Window:
    """The last ``n`` samples of one quantity (e.g. ms), for p50/p95."""

    def __init__(self, n: int = 600) -> None:
        self._d: deque[float] = deque(maxlen=n)
        self.total = 0

    def add(self, value: float) -> None:
        self._d.append(value)  # deque.append is atomic under the GIL
        self.total += 1

    def percentiles(self, *qs: float) -> list[float]:
        data = list(self._d)
        if not data:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(data, qs)]

    def values(self) -> list[float]:
        return list(self._d)


class LiveStats:
    """What the status line and the benchmarks read.

    One writer per field, so no lock: the render thread writes the frame counts and
    every window but ``infer_ms`` and, with a virtual camera, ``latency_ms`` (its pacing thread
    writes that, as it sends each frame); the inference thread ``infer_ms`` and
    ``infer_runs``; the pipeline's own thread ``providers`` (before the workers
    start) and ``dropped`` (once they stop). Readers (``snapshot``, on any thread)
    may see a window one sample behind a counter.
    """

    def __init__(self) -> None:
        self.out_frames = 0  # composites produced
        self.fresh_frames = 0  # of those, the model ran on that very frame
        self.infer_runs = 0
        self.infer_ms = Window()
        self.latency_ms = Window()  # capture -> sent by the virtual camera (else handed to the sinks)
        self.mask_age_ms = Window()  # capture of the mask's frame -> composite out
        self.render_ms = Window()  # everything but the model, per frame
        self.out_times = Window(120)  # clock seconds of recent outputs, for fps
        self.first_out: float | None = None  # clock seconds of the first output, for the run's fps
        self.capture_times = Window(120)  # capture times of recent frames rendered
        self.capture_seqs = Window(120)  # their camera sequence numbers: the frames dropped between count
        self.providers: list[str] = []
        self.dropped = 0  # camera frames replaced before the render thread took them

    @staticmethod
    def _rate(times: list[float]) -> float:
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _camera_rate(self) -> float:
        """The camera's frames per second over the recent renders, every frame it sent counted (by
        their sequence numbers), those dropped before a render took them too: the rate of the
        frames rendered was shown as the camera's (16 fps for a camera sending 28)."""
        times, seqs = self.capture_times.values(), self.capture_seqs.values()
        n = min(len(times), len(seqs))
        times, seqs = times[-n:], seqs[-n:]
        if n < 2 or times[-1] <= times[0]:
            return 0.0
        return (seqs[-1] - seqs[0]) / (times[-1] - times[0])

    def run_fps(self) -> float:
        """Output frames per second over the whole run (the status line's is the last 120 frames')."""
        last = self.out_times.values()[-1:] if self.out_frames > 1 else []
        if not last or self.first_out is None or last[0] <= self.first_out:
            return 0.0
        return (self.out_frames - 1) / (last[0] - self.first_out)

    def snapshot(self) -> dict:
        i50, i95 = self.infer_ms.percentiles(50, 95)
        l50, l95 = self.latency_ms.percentiles(50, 95)
        a50, a95 = self.mask_age_ms.percentiles(50, 95)
        r50, r95 = self.render_ms.percentiles(50, 95)
        return {
            "out_frames": self.out_frames, "fresh_share": self.fresh_frames / max(1, self.out_frames),
            "out_fps": self._rate(self.out_times.values()), "capture_fps": self._camera_rate(),
            "infer_ms_p50": i50, "infer_ms_p95": i95, "latency_ms_p50": l50, "latency_ms_p95": l95,
            "mask_age_ms_p50": a50, "mask_age_ms_p95": a95, "render_ms_p50": r50, "render_ms_p95": r95,
            "infer_runs": self.infer_runs, "providers": list(self.providers), "dropped": self.dropped,
        }

    def figures(self) -> dict:
        """The status figures as the control API gives them (``GET /api/status``): p50/p95
        pairs, None where nothing was measured yet."""
        s = self.snapshot()

        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        def pair(name):
            return {"p50": num(s[f"{name}_p50"]), "p95": num(s[f"{name}_p95"])}

        return {"fps": num(s["out_fps"]) if s["out_frames"] > 1 else None,
                "latency_ms": pair("latency_ms"), "mask_age_ms": pair("mask_age_ms"),
                "render_ms": pair("render_ms"), "infer_ms": pair("infer_ms"),
                "frames": s["out_frames"], "providers": s["providers"], "dropped": s["dropped"]}

    def status_line(self, extra: str = "") -> str:
        s = self.snapshot()
        prov = ",".join(p.replace("ExecutionProvider", "") for p in s["providers"]) or "-"
        return (f"out {s['out_fps']:5.1f} fps | cam {s['capture_fps']:5.1f} fps | "
                f"model {s['infer_ms_p50']:5.1f}/{s['infer_ms_p95']:5.1f} ms p50/p95 | "
                f"fresh {100 * s['fresh_share']:3.0f}% | mask age {s['mask_age_ms_p50']:4.0f} ms | "
                f"latency {s['latency_ms_p50']:4.0f}/{s['latency_ms_p95']:4.0f} ms | {prov}{extra}")
