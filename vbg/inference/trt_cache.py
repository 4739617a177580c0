"""TensorRT engines kept per key: one folder ``<cache>/trt/<key>/`` for each model,
input shape, precision, TensorRT/ONNX Runtime version and GPU.

In: a model file, the cache root, the precision, the TensorRT version and the
input size. Out: :meth:`EngineCache.open` returns the key's folder, locked (a
second vbg process or worker waits for the first build, then loads it);
:func:`provider_options` points ONNX Runtime at it; ``message`` announces a
first build (it takes minutes), ``problem`` says why the cache cannot be used
(``folder`` None). ``close`` unlocks, and removes a folder it made for a
session that did not get TensorRT. The folders belong to vbg's cache.
Thread: one ``EngineCache`` per session; the folder's lock keeps sessions
of other threads and processes from building the same engine at once.

Why a folder per key rather than ONNX Runtime's names alone: docs/design/gpu.md.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ..fsutil import NewFile, fcntl
from . import onnx_wire as wire

log = logging.getLogger("vbg.onnx")

KEY_FILE = "key.json"
SUMS = "sums"  # per-file sha256 memo, beside the key folders
_MEMO_MIN_BYTES = 8 << 20  # smaller files are hashed on every start (milliseconds)


# --------------------------------------------------------------------------- the parts of the key

@dataclass(frozen=True, slots=True)
class GpuIdentity:
    """The GPU an engine is built for. ``name`` implies the compute capability (engines
    are not portable across models); the driver is part of it as NVIDIA ties engines to
    the CUDA runtime stack below TensorRT."""

    name: str
    driver: str


def gpu_identity(device_id: int = 0, *, proc_root: str | Path = "/proc", environ=None) -> GpuIdentity | None:
    """From ``/proc/driver/nvidia``: the GPU model of ``device_id`` and the driver version;
    None without an NVIDIA driver. CUDA numbers GPUs fastest first (not in bus order), so
    where the GPUs differ the identity names all of them with ``device_id`` and the CUDA
    variables that pick the order: the same machine gives the same key, another GPU a new one."""
    env = os.environ if environ is None else environ
    root = Path(proc_root, "driver", "nvidia")
    names = []
    for info in sorted(glob.glob(str(root / "gpus" / "*" / "information"))):
        try:
            text = Path(info).read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^Model:\s*(.+?)\s*$", text, re.M)
        if m:
            names.append(m.group(1))
    driver = "unknown"
    try:
        first = (root / "version").read_text(errors="replace").splitlines()[0]
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", first)
        driver = m.group(1) if m else driver
    except (OSError, IndexError):
        if not names:
            return None
    if not names:
        return GpuIdentity("unknown", driver)
    if len(set(names)) == 1:
        return GpuIdentity(names[0], driver)
    order = " ".join(f"{k}={env.get(k, '')}" for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"))
    return GpuIdentity(f"GPU {device_id} of {' | '.join(names)} ({order})", driver)


_LIB = re.compile(r"libnvinfer\.so\.(\d+(?:\.\d+)*)$")
_PIP_LIBS = ("tensorrt-cu13-libs", "tensorrt-cu12-libs", "tensorrt-cu11-libs", "tensorrt-libs", "tensorrt_libs")


def _ldconfig_dirs() -> list[str]:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"  # /sbin is not on every user's PATH
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [os.path.dirname(line.rsplit("=>", 1)[1].strip()) for line in out.splitlines()
            if "libnvinfer.so." in line and "=>" in line]


def _pip_dirs() -> list[tuple[str, str]]:
    """(folder, version) of the TensorRT library wheels installed in this environment."""
    from importlib import metadata

    found = []
    for dist in _PIP_LIBS:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append((os.path.realpath(d.locate_file("tensorrt_libs")), d.version))
    return found


def tensorrt_version(search: list[str] | None = None) -> str | None:
    """The version of the TensorRT library (``libnvinfer``) the dynamic loader would give
    ONNX Runtime, or None when there is none (then TensorRT cannot run). ``search``: the
    folders to look in, in order (default: the loader's: ``LD_LIBRARY_PATH``, ONNX
    Runtime's own folder, the ld.so cache, the usual system folders; then the pip wheels,
    which ``import tensorrt`` loads)."""
    pip: dict[str, str] = {}
    if search is None:
        import importlib.util

        search = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
        spec = importlib.util.find_spec("onnxruntime")
        if spec is not None and spec.origin:
            search.append(str(Path(spec.origin).parent / "capi"))
        search += _ldconfig_dirs()
        search += ["/usr/local/tensorrt/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                   "/usr/lib64", "/usr/lib", "/lib64", "/lib"]
        for folder, version in _pip_dirs():
            pip[folder] = version
            search.append(folder)
    for folder in search:
        libs = sorted(glob.glob(os.path.join(glob.escape(folder), "libnvinfer.so.*")))
        for lib in libs:
            m = _LIB.search(os.path.basename(os.path.realpath(lib)))
            if m is None:
                continue
            wheel = pip.get(os.path.realpath(folder))
            if m.group(1).count(".") == 0 and wheel:  # a wheel ships libnvinfer.so.10 alone
                return wheel
            return m.group(1)
    return None


def _hub_sha256(real: Path, st: os.stat_result) -> str | None:
    """The pinned sha256 of a hub file that vbg already verified (its stamp still matches the
    file): no need to read 176 MB again."""
    from ..models import hub
    from ..models.spec import MODELS

    stamp = hub.file_stamp(real, st)
    for spec in MODELS.values():
        for f in spec.hub_files.values():
            if f.size != st.st_size:
                continue
            try:
                if json.loads((hub.cache_dir() / "verified" / f.sha256).read_text()) == stamp:
                    return f.sha256
            except (OSError, ValueError):
                continue
    return None


def model_sha256(path: Path, memo_dir: Path | None) -> str:
    """sha256 of the model file. A hub file's pin when vbg verified it; a large file's hash
    is kept in ``memo_dir`` by (resolved path, size, mtime), so later starts read no bytes."""
    from ..models.hub import file_sha256

    real = Path(os.path.realpath(path))
    st = real.stat()
    known = _hub_sha256(real, st)
    if known is not None:
        return known
    if memo_dir is None or st.st_size < _MEMO_MIN_BYTES:
        return file_sha256(real)
    from ..models.hub import file_stamp

    stamp = file_stamp(real, st)
    memo = memo_dir / hashlib.sha256(os.fsencode(real)).hexdigest()[:32]
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in stamp} == stamp and isinstance(saved.get("sha256"), str):
            return saved["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = file_sha256(real)
    try:
        with NewFile(memo, check_busy=False) as new:
            new.write(json.dumps({**stamp, "sha256": digest}).encode())
    except OSError as e:  # only an optimisation
        log.debug("cannot keep the model hash in %s: %s", memo, e)
    return digest


# --------------------------------------------------------------------------- the model's input, without ORT


def model_inputs(path: Path) -> list[tuple[str, tuple]] | None:
    """The graph inputs of an ONNX file that are not initializers: (name, shape) with each
    dim an int, or its symbolic name (str) or None when it has none. None when the file
    cannot be read this way (ONNX Runtime then says what is wrong with it).

    Read from the protobuf directly (ModelProto.graph = 7; GraphProto.input = 11,
    .initializer = 5; ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1;
    Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1, .dim_param = 2):
    the weights are skipped, not parsed, and vbg needs no ``onnx`` package to run."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            graphs = wire.sub(buf, (0, len(buf)), 7)
            if len(graphs) != 1:
                return None
            inits, inputs = set(), []
            for n, w, v in wire.fields(buf, *graphs[0]):
                if w != 2:
                    continue
                if n == 5:
                    inits.update(bytes(buf[a:b]).decode(errors="replace") for a, b in wire.sub(buf, v, 8))
                elif n == 11:
                    inputs.append(v)
            out = []
            for span in inputs:
                names = wire.sub(buf, span, 1)
                name = bytes(buf[slice(*names[0])]).decode(errors="replace") if names else ""
                dims: list = []
                for t in wire.sub(buf, span, 2):
                    for tensor in wire.sub(buf, t, 1):
                        for shape in wire.sub(buf, tensor, 2):
                            for dim in wire.sub(buf, shape, 1):
                                d = None
                                for dn, dw, dv in wire.fields(buf, *dim):
                                    if dn == 1 and dw == 0:
                                        d = dv
                                    elif dn == 2 and dw == 2:
                                        d = bytes(buf[slice(*dv)]).decode(errors="replace")
                                dims.append(d)
                if name not in inits:
                    out.append((name, tuple(dims)))
            return out
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- the key and its folder

@dataclass(frozen=True, slots=True)
class EngineKey:
    model_sha256: str
    input: str  # "name:1x3x512x512"; a dim the model leaves open and nobody fixed is "?"
    precision: str  # fp16 | fp32
    tensorrt: str  # libnvinfer's version, or "unknown"
    onnxruntime: str
    gpu: str
    driver: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def engine_key(path: Path, root: Path, *, fp16: bool, tensorrt: str, input_hw: tuple[int, int] | None = None,
               device_id: int = 0, proc_root: str | Path = "/proc") -> tuple[EngineKey, str | None]:
    """The key of the engine a TensorRT session on ``path`` builds, and the profile shape to
    ask for (see :func:`input_spec`). ``root``: the engine cache, where a model's hash is kept."""
    import onnxruntime

    spec, profile = input_spec(model_inputs(Path(path)), input_hw)
    gpu = gpu_identity(device_id, proc_root=proc_root) or GpuIdentity("unknown", "unknown")
    key = EngineKey(model_sha256(Path(path), Path(root) / SUMS), spec, "fp16" if fp16 else "fp32", tensorrt,
                    onnxruntime.__version__, gpu.name, gpu.driver)
    return key, profile


def input_spec(inputs: list[tuple[str, tuple]] | None, input_hw: tuple[int, int] | None) -> tuple[str, str | None]:
    """(the key's input part, the profile shape for ONNX Runtime or None). A dynamic image
    input [N,3,H,W] with ``input_hw`` given is fixed to 1x3xHxW (the one shape used), so
    TensorRT builds for it at once instead of at the first frame; a static one needs no profile."""
    if not inputs or len(inputs) != 1:
        return "?", None
    name, dims = inputs[0]
    fixed = list(dims)
    if input_hw is not None and len(fixed) == 4:
        fixed = [d if isinstance(d, int) else v for d, v in zip(fixed, (1, 3, *input_hw))]
    text = "x".join(str(d) if isinstance(d, int) else "?" for d in fixed)
    dynamic = any(not isinstance(d, int) for d in dims)
    complete = all(isinstance(d, int) for d in fixed)
    return f"{name}:{text}", (f"{name}:{text}" if dynamic and complete else None)


def provider_options(folder: Path | None, *, fp16: bool, profile: str | None = None) -> dict:
    """The TensorRT provider's options: precision, the engine and timing caches in ``folder``
    (none without one), and the optimisation profile of a dynamic input."""
    opts: dict = {"trt_fp16_enable": fp16}
    if folder is not None:
        opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(folder),
                    trt_timing_cache_enable=True, trt_timing_cache_path=str(folder))
    if profile is not None:
        opts.update(trt_profile_min_shapes=profile, trt_profile_opt_shapes=profile, trt_profile_max_shapes=profile)
    return opts


def has_engine(folder: Path) -> bool:
    """Whether ``folder`` holds a built engine (ONNX Runtime names them ``*.engine``)."""
    try:
        return any(e.name.endswith(".engine") and e.is_file() for e in os.scandir(folder))
    except OSError:
        return False


def first_build_message(label: str, key: EngineKey, folder: Path) -> str:
    size = key.input.split(":", 1)[-1]
    at = f" at {'x'.join(size.split('x')[2:])}" if size.count("x") == 3 else f" for input {size}"
    return (f"building the TensorRT engine for {label}{at} {key.precision} (first run with this model, size "
            f"and GPU; takes a few minutes; cached in {folder})")


def tensorrt_usable(available: list[str], *, gpu_present: bool) -> str | None:
    """The TensorRT version when it can run here (ONNX Runtime has the provider, an NVIDIA
    driver is present, a libnvinfer is found), else None."""
    if "TensorrtExecutionProvider" not in available or not gpu_present:
        return None
    return tensorrt_version()


class EngineCache:
    """One session's use of the engine cache, from before ONNX Runtime builds to after:
    ``open`` locks the key folder (a second vbg process or worker waits for the first
    build, then loads it), writes ``key.json``, and sets ``message`` for a first build;
    ``close`` unlocks, and removes a folder it made for a session that did not get TensorRT.
    ``folder`` is None when the cache cannot be used (``problem`` says why)."""

    def __init__(self, folder: Path | None, key: EngineKey, profile: str | None, *,
                 message: str | None = None, problem: str | None = None, made: bool = False, fd: int | None = None):
        self.folder, self.key, self.profile = folder, key, profile
        self.message, self.problem, self._made, self._fd = message, problem, made, fd

    @classmethod
    def open(cls, path: Path, root: Path, *, label: str, fp16: bool, tensorrt: str,
             input_hw: tuple[int, int] | None = None, device_id: int = 0,
             proc_root: str | Path = "/proc") -> EngineCache | None:
        """None for a model whose input size is left open and not given: ONNX Runtime builds
        its engine at the first run, for that run's shape, and again for each other shape, so
        there is no one engine to keep (the segmenter opens such a model once per size)."""
        key, profile = engine_key(path, root, fp16=fp16, tensorrt=tensorrt, input_hw=input_hw,
                                  device_id=device_id, proc_root=proc_root)
        if "?" in key.input:
            return None
        folder = root / key.digest()
        made = False
        try:
            try:
                folder.mkdir(parents=True)
                made = True
            except FileExistsError:
                pass
            fd = _open_lock(folder)
        except OSError as e:
            return cls(None, key, profile, problem=_problem(folder, e))
        try:
            _lock(fd, folder)
            if not (folder / KEY_FILE).is_file():
                with NewFile(folder / KEY_FILE, check_busy=False) as new:
                    new.write((json.dumps(asdict(key), indent=1, sort_keys=True) + "\n").encode())
            elif not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as e:
            if fd is not None:
                os.close(fd)
            if made:
                shutil.rmtree(folder, ignore_errors=True)
            return cls(None, key, profile, problem=_problem(folder, e))
        message = None if has_engine(folder) else first_build_message(label, key, folder)
        return cls(folder, key, profile, message=message, made=made, fd=fd)

    def close(self, tensorrt_in_use: bool) -> None:
        """Unlock; a folder made by ``open`` for a session that fell back is removed again."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._made and not tensorrt_in_use and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._made = False


def _open_lock(folder: Path) -> int | None:
    """The key folder opened for its lock; None without flock (Windows: no lock, and a folder
    cannot be opened there): two builds may then overlap, each writes a whole engine."""
    if fcntl is None:
        return None
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _lock(fd: int | None, folder: Path) -> None:
    """Take the key folder's lock, saying so when another run holds it (it is building)."""
    if fd is None or fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        log.info("waiting for another vbg run that builds the same TensorRT engine (%s)", folder)
    except OSError:
        return  # a file system without locks: two builds may overlap, each writes a whole engine
    fcntl.flock(fd, fcntl.LOCK_EX)


def _problem(folder: Path, e: OSError) -> str:
    return (f"cannot use the TensorRT engine cache {folder} ({e.strerror or e}): the engine is built again on "
            "every start (minutes); set VBG_CACHE_DIR to a writable folder")


def cache_summary(root: Path) -> tuple[int, int]:
    """(engine folders, bytes) under ``root``: for ``vbg doctor``."""
    folders = size = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.name == SUMS:
            continue
        folders += 1
        with contextlib.suppress(OSError):
            for f in os.scandir(entry.path):
                if f.is_file(follow_symlinks=False):
                    size += f.stat(follow_symlinks=False).st_size
    return folders, size

