"""The NVIDIA stack under ONNX Runtime's CUDA and TensorRT providers: load it, and say
which layer of it is missing.

In: the device (``cuda`` or ``tensorrt``) and, for tests, the roots to look in
(``/proc``, library folders, site-packages folders: fake trees work). Out:
:func:`preload` loads the CUDA, cuDNN (and TensorRT) libraries from the
``nvidia/`` wheels, else the system, once per process, before the first GPU
session; :func:`diagnose` returns the lowest missing layer (driver, its CUDA
version, CUDA runtime, cuDNN 9, TensorRT) with the one step that fixes it, or
None; :func:`list_gpus` lists the GPUs. Nothing here prints or installs.
Thread: any; ``preload`` before the first GPU session.

Why the libraries are preloaded: docs/design/gpu.md.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger("vbg.onnx")

# NVIDIA's minimum Linux driver per CUDA major (CUDA minor-version compatibility table:
# docs.nvidia.com/deploy/cuda-compatibility): 12.x needs >= 525.60.13, 13.x >= 580.
MIN_DRIVER = {12: (525, 60, 13), 13: (580,)}
CUDA13_FROM = (1, 27)  # onnxruntime-gpu builds for CUDA 13 from 1.27 on, CUDA 12 before
CUDNN = "libcudnn.so.9"
TENSORRT = ("libnvinfer.so.*",)
# TensorRT's own wheels (tensorrt-cu12/cu13-libs) keep their libraries here; libnvinfer first.
TENSORRT_WHEEL = "tensorrt_libs"
TENSORRT_LIBS = ("libnvinfer.so.*", "libnvinfer_plugin.so.*", "libnvonnxparser.so.*")
INSTALL_WHEELS = "pip install 'vbg[cuda]'"


def runtime_libraries(major: int) -> tuple[str, ...]:
    """The CUDA runtime libraries the CUDA provider links against, for CUDA ``major``."""
    return (f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}")


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int  # what --gpu takes
    name: str
    memory_mib: int | None = None  # None: not known (no nvidia-smi)

    def describe(self) -> str:
        memory = f", {self.memory_mib / 1024:.0f} GiB" if self.memory_mib else ""
        return f"{self.index}: {self.name}{memory}"


@dataclass(frozen=True, slots=True)
class Missing:
    """The lowest layer of the NVIDIA stack that is not there."""

    layer: str  # "driver", "driver version", "CUDA runtime", "cuDNN", "TensorRT"
    detail: str  # what was found
    fix: str  # the one step that fixes it

    def __str__(self) -> str:
        return f"{self.detail}: {self.fix}"


# --------------------------------------------------------------------------- versions

def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def cuda_major(ort_version: str, build_cuda: str | None = None) -> int:
    """The CUDA major an onnxruntime-gpu build needs: its recorded build version when
    it has one, else by release (CUDA 13 from 1.27, CUDA 12 before)."""
    if build_cuda:
        m = re.match(r"\s*(\d+)", build_cuda)
        if m:
            return int(m.group(1))
    return 13 if version_tuple(ort_version)[:2] >= CUDA13_FROM else 12


def installed_cuda_major() -> int:
    """The CUDA major of the installed onnxruntime(-gpu)."""
    from .onnx_backend import import_ort

    ort = import_ort()
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        info = None
    return cuda_major(getattr(ort, "__version__", "0"), getattr(info, "cuda_version", None))


def driver_version(proc_root: str = "/proc") -> str | None:
    """The loaded NVIDIA kernel module's version ("580.95.05"), from
    ``/proc/driver/nvidia/version``; None without one ("" when the file names none)."""
    try:
        # /proc files report a size of 0 whatever they hold: read, do not stat.
        text = Path(proc_root, "driver/nvidia/version").read_text(errors="replace")
    except OSError:
        return None
    first = text.splitlines()[0] if text.strip() else ""
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)*)", first)
    return m.group(1) if m else ""


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(v) for v in version)


# --------------------------------------------------------------------------- GPUs

def list_gpus(proc_root: str = "/proc", smi: Callable[[], str | None] | None = None) -> list[Gpu] | None:
    """The NVIDIA GPUs seen here, in nvidia-smi's order (the PCI bus order, which
    :func:`preload` makes CUDA use too). Memory comes from ``nvidia-smi`` (``smi()``
    returns its CSV, None when it is absent); names alone from /proc otherwise.
    None when this cannot be known (no /proc on this system and no nvidia-smi)."""
    text = (smi or _nvidia_smi)()
    if text:
        gpus = []
        for line in text.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 3 or not parts[0].isdigit():
                continue
            m = re.match(r"(\d+)", parts[2])
            gpus.append(Gpu(int(parts[0]), parts[1], int(m.group(1)) if m else None))
        if gpus:
            return gpus
    root = Path(proc_root, "driver/nvidia/gpus")
    if not root.is_dir():
        return [] if Path(proc_root).is_dir() and sys.platform.startswith("linux") else None
    found = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):  # named by PCI bus id
        try:
            info = Path(folder, "information").read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^Model:\s*(.+)$", info, re.MULTILINE)
        found.append(m.group(1).strip() if m else f"NVIDIA GPU at {folder.name}")
    return [Gpu(i, name) for i, name in enumerate(found)]


def _nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_index_problem(index: int, gpus: list[Gpu] | None) -> ConfigError | None:
    """``--gpu index`` against the GPUs seen (None: cannot be counted here, not checked).
    Index 0 without any GPU is left to the device fallback, which says what is missing."""
    if gpus is None or index < len(gpus) or (index == 0 and not gpus):
        return None
    if not gpus:
        return ConfigError(f"--gpu {index}: no NVIDIA GPU is seen here: leave out --gpu (vbg doctor says what "
                           "is missing)")
    seen = ", ".join(str(g.index) for g in gpus)
    return ConfigError(f"--gpu {index} is beyond the {len(gpus)} GPU(s) seen here ({seen}): pass one of them "
                       "(vbg doctor lists them)")


# --------------------------------------------------------------------------- library folders

def site_folders() -> list[Path]:
    """The site-packages folders the wheels can be in: onnxruntime's own first (where
    ``preload_dlls`` looks), then the interpreter's."""
    import importlib.util
    import site

    out = []
    spec = importlib.util.find_spec("onnxruntime")
    if spec is not None and spec.origin:
        out.append(Path(spec.origin).parent.parent)
    with contextlib.suppress(AttributeError):
        out += [Path(p) for p in site.getsitepackages()]
    with contextlib.suppress(AttributeError):
        out.append(Path(site.getusersitepackages()))
    return list(dict.fromkeys(out))


def wheel_folders(sites: Iterable[Path]) -> list[Path]:
    """The library folders of NVIDIA's wheels (``nvidia/*/lib``) and TensorRT's (``tensorrt_libs``)."""
    out = []
    for site_dir in sites:
        out += [Path(p) for p in sorted(glob.glob(str(Path(site_dir, "nvidia", "*", "lib"))))]
        trt = Path(site_dir, TENSORRT_WHEEL)
        if trt.is_dir():
            out.append(trt)
    return out


def system_folders(environ=None, etc_root: str = "/etc") -> list[Path]:
    """Where the dynamic loader looks: ``LD_LIBRARY_PATH``, the ``ld.so.conf`` folders
    (with their includes), then the default ones."""
    environ = os.environ if environ is None else environ
    out = [Path(p) for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    out += _ld_conf(Path(etc_root, "ld.so.conf"), set())
    out += [Path(p) for p in ("/lib64", "/usr/lib64", "/lib", "/usr/lib", "/lib/x86_64-linux-gnu",
                              "/usr/lib/x86_64-linux-gnu")]
    return list(dict.fromkeys(out))


def _ld_conf(path: Path, seen: set) -> list[Path]:
    if path in seen:
        return []
    seen.add(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("include"):
            pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            if not os.path.isabs(pattern):
                pattern = str(path.parent / pattern)
            for inc in sorted(glob.glob(pattern)):
                out += _ld_conf(Path(inc), seen)
        elif line:
            out.append(Path(line))
    return out


def find_library(pattern: str, folders: Iterable[Path]) -> Path | None:
    """The first file matching ``pattern`` (a name, or a glob) in ``folders``."""
    for folder in folders:
        hits = sorted(glob.glob(str(Path(folder, pattern))))
        if hits:
            return Path(hits[0])
    return None


def default_folders() -> list[Path]:
    return wheel_folders(site_folders()) + system_folders()


# --------------------------------------------------------------------------- diagnosis

def diagnose(device: str = "cuda", *, major: int | None = None, proc_root: str = "/proc",
             folders: Sequence[Path] | None = None) -> Missing | None:
    """The lowest missing layer for ``device`` ("cuda" or "tensorrt"), None when every
    layer is there (or on a system whose layers are not looked into here: not Linux)."""
    if folders is None:
        if not sys.platform.startswith("linux"):
            return None
        folders = default_folders()
    major = installed_cuda_major() if major is None else major
    driver = driver_version(proc_root)
    if driver is None and find_library("libcuda.so.1", folders) is None:
        return Missing("driver", "no NVIDIA driver is loaded (/proc/driver/nvidia and libcuda.so.1 are missing)",
                       f"install the NVIDIA driver, {_dotted(MIN_DRIVER.get(major, (525,)))} or newer, "
                       "or use --device cpu")
    need = MIN_DRIVER.get(major)
    if driver and need and version_tuple(driver) < need:
        return Missing("driver version", f"NVIDIA driver {driver} is older than CUDA {major} needs "
                                         f"({_dotted(need)} or newer)",
                       f"upgrade the NVIDIA driver to {_dotted(need)} or newer")
    runtime = [n for n in runtime_libraries(major) if find_library(n, folders) is None]
    if runtime:
        return Missing("CUDA runtime", f"the CUDA {major} runtime is missing ({', '.join(runtime)} not found)",
                       INSTALL_WHEELS)
    if find_library(CUDNN, folders) is None:
        return Missing("cuDNN", f"cuDNN 9 is missing ({CUDNN} not found)", INSTALL_WHEELS)
    if device == "tensorrt" and find_library(TENSORRT[0], folders) is None:
        return Missing("TensorRT", "TensorRT is missing (libnvinfer.so not found)",
                       f"pip install tensorrt-cu{major}, or use --device cuda")
    return None


# --------------------------------------------------------------------------- loading

_lock = threading.Lock()
_loaded: dict[str, list[str]] = {}  # "cuda" / "tensorrt" -> what was loaded, once per process


def preload(device: str = "cuda", sites: Iterable[Path] | None = None) -> list[str]:
    """Load the CUDA and cuDNN libraries (and TensorRT's, for ``device="tensorrt"``)
    from the Python wheels where they are installed, else from the system, before the
    first GPU session; once per process. Returns the libraries loaded by this call's
    parts (empty when done before). What ONNX Runtime prints meanwhile goes to -v."""
    parts = ("cuda", "tensorrt") if device == "tensorrt" else ("cuda",)
    out: list[str] = []
    with _lock:
        pci_order()
        for part in parts:
            if part in _loaded:
                continue
            _loaded[part] = _preload_cuda() if part == "cuda" else _preload_tensorrt(
                site_folders() if sites is None else list(sites))
            out += _loaded[part]
    return out


def pci_order() -> None:
    """CUDA's device numbers in nvidia-smi's (PCI bus) order, so that --gpu N is the GPU
    vbg doctor lists as N (CUDA's own default puts the fastest first); before CUDA starts.
    A user's own CUDA_DEVICE_ORDER stands."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


def _preload_cuda() -> list[str]:
    from .. import liblogs
    from .onnx_backend import import_ort

    ort = import_ort()
    fn = getattr(ort, "preload_dlls", None)
    if fn is None:  # onnxruntime older than 1.21, or the CPU-only package
        return []
    said = io.StringIO()
    before = _mapped()
    try:
        # It prints what fails to load (on stdout, in colour): kept for -v; vbg says what is missing.
        with contextlib.redirect_stdout(said), liblogs.c_stderr_quiet():
            fn()
    except Exception as e:  # noqa: BLE001 -- a failed preload leaves the system's libraries to the provider
        log.debug("onnxruntime.preload_dlls: %s", e)
    if said.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", " ".join(said.getvalue().split()))
    loaded = [p for p in _mapped() if p not in before]
    if loaded:
        log.debug("loaded for CUDA: %s", ", ".join(loaded))
    return loaded


def _preload_tensorrt(sites: list[Path]) -> list[str]:
    """TensorRT's libraries from its wheel's folder (ONNX Runtime does not preload them);
    without the wheel the provider finds the system's own by name."""
    import ctypes

    out = []
    for folder in [Path(s, TENSORRT_WHEEL) for s in sites if Path(s, TENSORRT_WHEEL).is_dir()][:1]:
        for pattern in TENSORRT_LIBS:
            lib = find_library(pattern, [folder])
            if lib is None:
                continue
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                out.append(str(lib))
            except OSError as e:
                log.debug("cannot load %s: %s", lib, e)
    return out


def _mapped() -> list[str]:
    """The shared libraries mapped into this process (Linux), in the order of their addresses."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return list(dict.fromkeys(ln.split(None, 5)[5] for ln in text.splitlines()
                              if len(ln.split(None, 5)) == 6 and ".so" in ln.split(None, 5)[5]))
