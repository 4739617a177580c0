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

Several CPU sessions of one model (``vbg process --workers 2``) share one copy of its
weights when opened inside :func:`weights_shared`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import re
import shutil
import sys
import tempfile
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

    Inside :func:`weights_shared`, CPU sessions of one model share one copy of its weights.

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
    pool = _SHARING.get()
    shared = pool.weights_for(path) if pool is not None and primary == "CPUExecutionProvider" else None
    said = io.StringIO()
    sess = None
    try:
        # A provider that cannot load makes ONNX Runtime's Python part print an "EP Error" block
        # on stdout (into `vbg process --json`'s stream) before it retries without it: kept for
        # -v; vbg reports the fallback itself, below.
        with contextlib.redirect_stdout(said):
            if shared is not None:
                sess = shared.open(threads)
            else:
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


_SHARING: contextvars.ContextVar[_WeightPool | None] = contextvars.ContextVar("vbg_weights_shared", default=None)


@contextlib.contextmanager
def weights_shared(scratch: Path | None = None):
    """CPU sessions that :func:`create_session` opens inside this block share one copy of each
    model's weights (:class:`SharedWeights`); ``scratch`` is a folder for the optimised graph
    while they open (it is removed at the end of the block: the sessions keep the weights).
    Where the weights cannot be shared (no room to write the graph, a graph ONNX Runtime
    cannot write), each session holds its own copy, as outside the block."""
    pool = _WeightPool(scratch)
    token = _SHARING.set(pool)
    try:
        yield
    finally:
        _SHARING.reset(token)
        pool.close()


class _WeightPool:
    """The :class:`SharedWeights` of the models opened in one :func:`weights_shared` block."""

    def __init__(self, scratch: Path | None) -> None:
        self.scratch = scratch
        self.weights: dict[tuple, SharedWeights | None] = {}
        self.folders: list[str] = []

    def weights_for(self, path: Path) -> SharedWeights | None:
        path = Path(path)
        try:
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        except OSError:
            return None  # opening it says why
        if key not in self.weights:
            try:
                self.weights[key] = SharedWeights.prepare(path, Path(self._folder()))
            except Exception as e:  # noqa: BLE001 -- ORT's errors derive from Exception alone; a copy each then
                log.debug("the weights of %s are not shared between sessions: %s", path.name, e)
                self.weights[key] = None
        return self.weights[key]

    def _folder(self) -> str:
        try:  # a disk folder: /tmp can be memory, and the graph's weights are written out once
            if self.scratch is not None:
                Path(self.scratch).mkdir(parents=True, exist_ok=True)
            folder = tempfile.mkdtemp(prefix=".weights-", dir=self.scratch)
        except OSError:
            folder = tempfile.mkdtemp(prefix="vbg-weights-")
        self.folders.append(folder)
        return folder

    def close(self) -> None:
        self.weights.clear()
        while self.folders:
            shutil.rmtree(self.folders.pop(), ignore_errors=True)


# TensorProto.DataType -> numpy; other types (bfloat16, strings, ...) are left to ONNX Runtime.
_NUMPY_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


class SharedWeights:
    """One model's weights as ONNX Runtime runs them on this CPU, held once for several sessions.

    Every CPU session lays the weights out anew (NCHWc blocks, fused convolutions) and owns the
    result, so two sessions held two copies: a second RMBG-1.4 session added 206 MB. Here one
    session optimises the model and writes the optimised graph out, its weights in a file of
    their own (:meth:`prepare`); the weights are read back once, and each session opens the
    optimised graph without optimising it again, with those weights as initializers it does not
    own (``SessionOptions.add_initializer``): the same kernels on the same numbers (the masks are
    equal, ``tests/integration/test_workers.py``), and a second session adds its activations.
    The graph written holds this CPU's layout: it is opened in this process only, never kept.
    A session opened from here keeps this object alive (ONNX Runtime holds only pointers)."""

    GRAPH, DATA = "graph.onnx", "weights.bin"

    def __init__(self, graph: Path, initializers: dict) -> None:
        self.graph = graph
        self.initializers = initializers  # name -> OrtValue over a numpy array it keeps

    @classmethod
    def prepare(cls, path: Path, folder: Path) -> SharedWeights:
        """Optimise ``path`` once into ``folder`` and read its weights."""
        import numpy as np

        ort = import_ort()
        so = session_options(1)
        so.optimized_model_filepath = str(folder / cls.GRAPH)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", cls.DATA)
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        so.log_severity_level = max(so.log_severity_level, 3)  # its "hardware specific" warning: known, above
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        release_freed_memory()  # that session's copy of the weights, before they are read back
        values = {}
        for name, np_type, dims, where in _external_initializers((folder / cls.GRAPH).read_bytes()):
            dtype = np.dtype(np_type)
            count = int(where.get("length", 0)) // dtype.itemsize
            a = np.fromfile(folder / where["location"], dtype=dtype, count=count, offset=int(where.get("offset", 0)))
            values[name] = ort.OrtValue.ortvalue_from_numpy(a.reshape(dims))
        return cls(folder / cls.GRAPH, values)

    def open(self, threads: int | None):
        """A CPU session on the optimised graph with the shared weights."""
        ort = import_ort()
        so = session_options(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done once, in prepare
        # The memory pattern (one block per run, planned from the first) held 87 MB of activations
        # a session for RMBG-1.4 at 320x320 here, its arena's own chunks 47 MB, at the same speed
        # (benchmarks/RESULTS.md, "CPU memory"): with two sessions running at once, that is
        # the difference between 1.25x the naive loop's memory and more.
        so.enable_mem_pattern = False
        for name, value in self.initializers.items():
            so.add_initializer(name, value)
        sess = ort.InferenceSession(str(self.graph), sess_options=so, providers=["CPUExecutionProvider"])
        sess._vbg_shared_weights = self
        return sess


def _external_initializers(model: bytes):
    """``(name, numpy type, dims, {location, offset, length})`` of each initializer a serialised
    ONNX model keeps in an external file, of the types numpy has: read straight from the
    protobuf wire format (ModelProto.graph = 7, GraphProto.initializer = 5; TensorProto dims = 1,
    data_type = 2, name = 8, external_data = 13 of key = 1 / value = 2, data_location = 14),
    since the ``onnx`` package is not among vbg's requirements."""
    from . import onnx_wire as wire

    for graph in wire.sub(model, (0, len(model)), 7):
        for tensor in wire.sub(model, graph, 5):
            name, np_type, dims, where, external = "", None, [], {}, False
            for tfield, kind, v in wire.fields(model, *tensor):
                if tfield == 1:
                    dims.extend(wire.packed(model, v) if kind == 2 else [v])
                elif tfield == 2:
                    np_type = _NUMPY_TYPES.get(v)
                elif tfield == 8:
                    name = wire.text(model, v)
                elif tfield == 13:
                    entry = {n: wire.text(model, sv) for n, w, sv in wire.fields(model, *v) if w == 2}
                    where[entry.get(1, "")] = entry.get(2, "")
                elif tfield == 14:
                    external = v == 1
            if external and np_type is not None and name and "location" in where:
                yield name, np_type, tuple(dims), where
