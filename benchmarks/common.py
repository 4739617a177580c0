"""Timing and machine description shared by the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["ort_build_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    info["gpu"] = gpu_name()
    return info


def gpu_name(run=subprocess.run) -> str | None:
    """The first NVIDIA GPU's name (and driver, memory when nvidia-smi tells),
    from torch when it sees one, else from nvidia-smi; None without either."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                  capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in (out.stdout or "").splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, *rest = (f.strip() for f in lines[0].split(","))
    if len(rest) == 2:
        return f"{name} (driver {rest[0]}, {rest[1]})"
    return name


def time_call(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 20) -> dict:
    """Median and p95 wall time of ``fn`` in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return {"median_ms": statistics.median(samples),
            "p95_ms": samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))],
            "min_ms": samples[0], "runs": repeat}


def moving_pictures(w: int, h: int, frames: int):
    """``frames`` RGB pictures of gradients that move: every frame differs (a background loop)."""
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(frames):
        yield np.stack([(xx + 8 * i) % 256, (yy + 4 * i) % 256, (xx + yy + 3 * i) % 256], -1).astype(np.uint8)


def write_h264(path: Path, pictures, w: int, h: int, fps: int) -> Path:
    """``pictures`` (RGB) as an H.264 mp4 at ``fps`` (PyAV, veryfast, CRF 23)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        stream.codec_context.time_base = Fraction(1, fps)
        for i, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def process_cpu_s() -> float:
    """This process's CPU time so far (user + system, every thread), in seconds."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class PacedRenders:
    """A background's ``render`` called at ``fps`` in real time on this thread, as the live
    compositor calls it once a frame: ``until(t)`` renders on until ``time.monotonic()`` is ``t``."""

    def __init__(self, bg, out_hw: tuple[int, int], fps: float) -> None:
        import numpy as np

        self.bg, self.fps, self.tick = bg, fps, time.monotonic()
        self.frame, self.alpha = np.zeros((*out_hw, 3), np.uint8), np.zeros(out_hw, np.uint8)

    def until(self, t_end: float) -> None:
        while time.monotonic() < t_end:
            self.bg.render(self.frame, self.alpha)
            self.tick += 1 / self.fps
            time.sleep(max(0.0, self.tick - time.monotonic()))


def write_results(out_dir: Path, name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps(payload, indent=2) + "\n")
    md.write_text(markdown)
    return js, md


DROP_BACKEND = "vbg-bench-drop"


@contextlib.contextmanager
def drop_backend() -> Iterator[str]:
    """A pyvirtualcam backend that takes frames and discards them (the tests' fake camera,
    ``tests/fakecam.py``, keeping none), registered for the length of a run; yields its name.
    pyvirtualcam's own checks and lifecycle run, with no v4l2loopback device."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from fakecam import fake_camera

    with fake_camera(DROP_BACKEND, keep=False, device_name="bench") as cam:
        yield cam.name


@contextlib.contextmanager
def model_nice(by: int | None) -> Iterator[None]:
    """A diagnostic: while inside, the live pipeline lowers its model threads by nice ``+by``
    instead of vbg's ``priority.BACKGROUND_NICE`` (0: not lowered at all); None changes nothing."""
    if by is None:
        yield
        return
    import functools
    from unittest import mock

    from vbg import priority

    with mock.patch.object(priority, "lower", functools.partial(priority.lower, by=by)):
        yield
