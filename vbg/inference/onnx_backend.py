"""ONNX Runtime sessions: provider choice, fallback detection, thread settings.

In: a model file, the device (``auto``, ``cpu``, ``cuda``, ``tensorrt``),
``strict``, the thread count and, for TensorRT, the engine cache settings.
Out: ``create_session`` returns ``(session, providers_in_use)``;
:class:`BoundRunner` runs a GPU session through I/O binding and returns a
fresh host array per run. Thread: the caller's; a session is used by one
thread at a time.

ONNX Runtime quietly falls back to the CPU when a GPU provider fails to load
(and ``get_available_providers()`` lists CUDA/TensorRT for the GPU *build*
even on a machine with no GPU). So the providers asked for are compared with
``session.get_providers()``: a fallback is logged, or with ``strict`` raised.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from pathlib import Path

from ..errors import ConfigError, DependencyError, DeviceError, ModelError
from ..ranges import DEVICES

log = logging.getLogger("vbg.onnx")



def import_ort():
    from .. import liblogs

    first = "onnxruntime" not in sys.modules
    try:
        # Its import can print from C before any switch exists (a telemetry id it cannot
        # store in a read-only home): off the terminal unless -v.
        with liblogs.c_stderr_quiet() if first else contextlib.nullcontext():
            import onnxruntime as ort
    except ImportError as e:
        raise DependencyError(
            "ONNX Runtime is not installed (or broken by installing both onnxruntime and "
            "onnxruntime-gpu): run pip uninstall -y onnxruntime onnxruntime-gpu, then pip install vbg again"
        ) from e
    ort.set_default_logger_severity(liblogs.ort_severity())
    return ort


def gpu_present() -> bool:
    """A cheap look for an NVIDIA driver, so that ``auto`` does not ask for CUDA
    on a machine without one (which costs a failed library load and log noise)."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return False


def provider_list(device: str, *, cache_dir: Path | None = None, fp16: bool = True, gpu: int = 0,
                  profile: str | None = None) -> list:
    """Providers (with options) to ask ONNX Runtime for, most preferred first.

    ``gpu`` is the GPU's index (``--gpu``) for CUDA and TensorRT.

    TensorRT: ``fp16`` lets it build half-precision kernels from an fp32 graph;
    ``cache_dir`` keeps the built engines and the kernel timing cache, so only
    the first session on a graph pays for the build (seconds to minutes);
    ``profile`` (``name:1x3xHxW``) fixes a dynamic input to the one shape used.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r} is not known: use one of {', '.join(DEVICES)}")
    ort = import_ort()
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if gpu_present() and "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    on_gpu = {"device_id": gpu} if gpu else {}  # ONNX Runtime's own default is GPU 0
    cuda = ("CUDAExecutionProvider", {**on_gpu, "cudnn_conv_algo_search": "HEURISTIC"})
    if device == "cuda":
        return [cuda, "CPUExecutionProvider"]
    from .trt_cache import provider_options

    trt_opts = {**on_gpu, **provider_options(cache_dir, fp16=fp16, profile=profile)}
    return [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]


def session_options(threads: int | None):
    """Thread settings that leave room for capture and compositing.

    ``threads=None`` uses every core for the intra-op pool, with spinning off:
    a spinning pool burns the cores the OpenCV stages need between runs.
    """
    from .. import liblogs

    ort = import_ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads if threads else (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Fallbacks are detected and reported by vbg itself; ONNX Runtime's own warnings with -v.
    so.log_severity_level = liblogs.ort_severity()
    return so


def create_session(path: Path, device: str = "auto", *, strict: bool = False,
                   threads: int | None = None, cache_dir: Path | None = None, fp16: bool = True, gpu: int = 0,
                   input_hw: tuple[int, int] | None = None, label: str | None = None):
    """An InferenceSession on ``path``; returns ``(session, providers_in_use)``.

    ``gpu`` is the GPU's index for CUDA and TensorRT. ``cache_dir``, ``fp16`` and
    ``input_hw`` only matter for TensorRT: engines are kept in ``cache_dir/<key>/``
    (see :mod:`.trt_cache`); ``input_hw`` fixes a dynamic input's size.
    """
    from . import cuda as nvidia

    ort = import_ort()
    wanted = provider_list(device, fp16=fp16, gpu=gpu)
    primary = wanted[0][0] if isinstance(wanted[0], tuple) else wanted[0]
    if primary in GPU_PROVIDERS:
        # The CUDA libraries of the nvidia wheels: the provider cannot find them on its own.
        nvidia.preload("tensorrt" if primary == "TensorrtExecutionProvider" else "cuda")
    engines = _engine_cache(path, cache_dir, ort, fp16=fp16, input_hw=input_hw, label=label, gpu=gpu) \
        if primary == "TensorrtExecutionProvider" and cache_dir is not None else None
    if engines is not None:
        wanted = provider_list(device, cache_dir=engines.folder, fp16=fp16, gpu=gpu, profile=engines.profile)
    said = io.StringIO()
    sess = None
    try:
        # A provider that cannot load makes ONNX Runtime's Python part print an "EP Error" block
        # on stdout (into `vbg process --json`'s stream) before it retries without it: kept for
        # -v; vbg reports the fallback itself, below.
        with contextlib.redirect_stdout(said):
            sess = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=wanted)
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... classes
        log.debug("ONNX Runtime: %s", e)
        raise ModelError(
            f"ONNX Runtime cannot load {Path(path).name}: the file is damaged, truncated or not an ONNX "
            "model it supports (-v shows its message): download or export it again, or pass another --model"
        ) from e
    finally:
        if said.getvalue().strip():
            log.debug("ONNX Runtime: %s", " ".join(said.getvalue().split()))
        if engines is not None:
            engines.close(sess is not None and primary in sess.get_providers())
    active = sess.get_providers()
    if primary not in active:
        asked = primary.replace("ExecutionProvider", "")
        on = ", ".join(p.replace("ExecutionProvider", "") for p in active)
        missing = _missing(primary, said.getvalue())
        if strict:
            raise DeviceError(f"--device {device} asked for {asked}, but ONNX Runtime cannot use it here "
                              f"(it would run on {on}): {missing}")
        log.warning("%s is not usable here, so the model runs on %s (--strict-device fails instead): %s",
                    asked, on, missing)
    log.debug("ONNX Runtime providers in use: %s", ", ".join(active))
    return sess, active


def load_failure(text: str) -> str:
    """The reason in ONNX Runtime's 'Failed to load library ... with error: WHY' line (or its
    'Please install ...' advice) within what it printed; "" when there is none."""
    m = re.search(r"with error: ([^\n\x1b]+)", text)
    if m:
        return m.group(1).strip()
    m = re.search(r"(Please install [^\n.]+)", text)
    return m.group(1).strip() if m else ""


def _missing(primary: str, ort_said: str) -> str:
    """What is missing for ``primary``, in one line with its fix: the lowest missing layer of
    the NVIDIA stack, else ONNX Runtime's own reason."""
    from . import cuda as nvidia

    try:
        found = nvidia.diagnose("tensorrt" if primary == "TensorrtExecutionProvider" else "cuda")
    except Exception as e:  # noqa: BLE001 -- a diagnosis that breaks must not hide the fallback
        log.debug("diagnosis failed: %s", e)
        found = None
    if found is not None:
        return str(found)
    m = re.search(r"with error: ([^\n\x1b]+)", ort_said)
    why = f"ONNX Runtime: {m.group(1).strip()}" if m else "ONNX Runtime did not load it (-v shows why)"
    return f"{why}: check the NVIDIA driver and libraries with vbg doctor, or use --device cpu"


def _engine_cache(path: Path, cache_dir: Path, ort, *, fp16: bool, input_hw, label: str | None,
                  gpu: int = 0):
    """The engine cache for a TensorRT session, or None where TensorRT cannot run here (then
    nothing is written). A cache that cannot be written costs the build on every start, not
    the run, with ``--strict-device`` too (the device asked for is the one that runs); a
    first build is announced, as it takes minutes."""
    from . import trt_cache

    version = trt_cache.tensorrt_usable(ort.get_available_providers(), gpu_present=gpu_present())
    if version is None:
        return None
    engines = trt_cache.EngineCache.open(Path(path), Path(cache_dir), label=label or Path(path).name,
                                         fp16=fp16, tensorrt=version, input_hw=input_hw,
                                         device_id=gpu)
    if engines is None:
        log.debug("%s takes any input size and none was given: its TensorRT engine is built at the first "
                  "run and not cached", Path(path).name)
    elif engines.problem:
        log.warning("%s", engines.problem)
    elif engines.message:
        log.info("%s", engines.message)
    return engines


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def io_device(active: list[str]) -> str | None:
    """The ONNX Runtime device name whose memory a session with these providers
    in use computes in: ``"cuda"`` for CUDA and TensorRT, None for the CPU."""
    return "cuda" if active and active[0] in GPU_PROVIDERS else None


class BoundRunner:
    """Runs one session through I/O binding, for sessions that compute on a GPU.

    The input lives in an OrtValue preallocated on ``device`` and is refreshed
    from the host array with one copy per run; the output stays where the
    provider wrote it until :meth:`__call__` copies it to a fresh host array
    (fresh because callers keep masks across runs, and ``postprocess`` works in
    place). ``session.run`` would instead allocate and copy the input anew on
    every call. ``device="cpu"`` works too (and is how this is tested without a GPU).
    """

    def __init__(self, sess, in_name: str, out_name: str, in_shape, dtype, *,
                 device: str = "cuda", device_id: int = 0) -> None:
        ort = import_ort()
        self._sess = sess
        self._x = ort.OrtValue.ortvalue_from_shape_and_type(list(in_shape), dtype, device, device_id)
        self._binding = sess.io_binding()
        self._binding.bind_ortvalue_input(in_name, self._x)
        self._binding.bind_output(out_name, device, device_id)

    def __call__(self, x):
        self._x.update_inplace(x)
        self._sess.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Opening a session frees about as much as it keeps: ONNX Runtime's layout
    optimisation replaces the weights with re-laid-out copies, and glibc keeps the freed
    originals for reuse, counted in resident memory for the whole run (230 MB of 410 for
    RMBG-1.4 on a CPU, ``benchmarks/memory.py``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries without it
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
