"""`vbg doctor`: what the live filter needs, checked one by one, each with its fix.

In: nothing but the machine (and, for tests, the roots to look in). Out:
:class:`Check` results (``ok``, ``warn`` or ``fail``, each with its fix);
``run_checks`` runs them all. The CLI prints them.

Every ``check_*`` function looks at one thing and returns :class:`Check`
results; none prints, changes the system or uses the network. ``run_checks``
runs them all; the live filter can start when no result is ``fail``
(``warn`` marks what works with a limitation: no GPU, no display for
``--preview``, a model still to be downloaded).

Where the answer lives in files (``/sys``, ``/dev``, ``/proc``) the functions
take the roots as arguments, so tests can hand them a fake tree.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.metadata as md
import io
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .capture.v4l2 import V4l2Info

OK, WARN, FAIL = "ok", "warn", "fail"

VIDEO_GROUP_FIX = "sudo usermod -aG video $USER, then log out and back in"


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # what was checked: "packages", "v4l2loopback", ...
    status: str  # ok | warn | fail
    detail: str  # what was found
    fix: str = ""  # what to do about a warn/fail

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """The live filter can start: no check failed."""
        return all(c.status != FAIL for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


# --------------------------------------------------------------------------- packages

# (import name, distribution names, needed by the live filter, what it is for / pip name)
PACKAGES = (
    ("numpy", ("numpy",), True, "numpy"),
    ("cv2", ("opencv-python", "opencv-python-headless", "opencv-contrib-python"), True, "opencv-python"),
    ("av", ("av",), True, "av"),
    ("onnxruntime", ("onnxruntime-gpu", "onnxruntime"), True, "onnxruntime"),  # (_pip_name: -gpu where it is built)
    ("pyvirtualcam", ("pyvirtualcam",), True, "pyvirtualcam"),
    ("huggingface_hub", ("huggingface_hub",), False, "huggingface_hub"),
    ("torch", ("torch",), False, "'vbg[torch]'"),
    ("onnx", ("onnx",), False, "'vbg[torch]'"),
)
# what each optional package is for, as the doctor says it when one is missing
OPTIONAL_USES = {"huggingface_hub": "downloading RMBG-1.4", "torch": "--backend torch, --variant export, vbg export",
                 "onnx": "--backend torch, --variant export, vbg export"}


def _pip_name(pip: str) -> str:
    """What ``pip install`` takes for a missing package here: ONNX Runtime as its GPU build on the
    systems it is built for (Linux and Windows on x86-64), as vbg's own requirements pick it."""
    import platform

    if pip == "onnxruntime" and platform.system() in ("Linux", "Windows") and \
            platform.machine().lower() in ("x86_64", "amd64"):
        return "onnxruntime-gpu"
    return pip


def _dist_versions(names: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for name in names:
        try:
            out.append((name, md.version(name)))
        except md.PackageNotFoundError:
            continue
    return out


def _quiet_import(module: str) -> object:
    """Import ``module`` with what its C part prints at import kept off the terminal (unless -v)."""
    from .liblogs import c_stderr_quiet

    with c_stderr_quiet():
        return importlib.import_module(module)


def check_packages(importer: Callable[[str], object] = _quiet_import) -> list[Check]:
    """The required packages import; optional ones are reported; two builds of
    one package sharing an import folder (onnxruntime, opencv) are flagged."""
    from .errors import one_line

    found, missing, optional_missing, clashes = [], [], [], []
    for module, dists, required, pip in PACKAGES:
        versions = _dist_versions(dists)
        try:
            importer(module)
        except Exception as e:  # ImportError, or a broken build raising anything at import
            reason = one_line(e)[:120]
            # installed but broken: installed again (pip install alone says "already satisfied")
            broken = bool(versions) and "No module named" not in str(e)
            fix = f"--force-reinstall {versions[0][0]}" if broken else _pip_name(pip)
            if module == "cv2" and "libGL" in reason:  # the GUI build on a machine without OpenGL's library
                fix = "opencv-python-headless"  # said whole in _pip_fix
            (missing if required else optional_missing).append((module, fix, reason, broken))
            continue
        if len(versions) > 1:
            clashes.append((module, [d for d, _ in versions]))
        label = versions[0][0] if versions else module
        found.append(f"{label} {versions[0][1]}" if versions else module)
    checks = []
    if missing:
        names = ", ".join(m for m, _, _, _ in missing)
        why = "; ".join(f"{m}: {r}" for m, _, r, _ in missing)
        checks.append(Check("packages", FAIL, f"missing or broken: {names} ({why})", _pip_fix(missing)))
    elif clashes:
        module, dists = clashes[0]
        checks.append(Check("packages", WARN, f"{' and '.join(dists)} are both installed and share the "
                                              f"{module} import folder",
                            f"pip uninstall -y {' '.join(dists)}, then install exactly one of them"))
    else:
        checks.append(Check("packages", OK, ", ".join(found)))
    if optional_missing:
        parts = []
        for broken, said in ((False, "not installed"), (True, "broken")):
            uses: dict[str, list[str]] = {}  # what goes missing -> the packages it needs, in order
            for m, _, reason, b in optional_missing:
                if b == broken:
                    uses.setdefault(OPTIONAL_USES[m], []).append(m + (f" ({reason})" if broken else ""))
            if uses:
                parts.append(f"{said}: " + "; ".join(f"{', '.join(ms)} ({use})" for use, ms in uses.items()))
        checks.append(Check("optional packages", WARN, "; ".join(parts), _pip_fix(optional_missing)))
    return checks


def _pip_fix(entries) -> str:
    """One command per kind: the missing installed, the broken installed again."""
    if any(f == "opencv-python-headless" for _, f, _, _ in entries):
        return ("sudo apt install libgl1 (OpenCV's window needs it), or pip uninstall -y opencv-python && "
                "pip install opencv-python-headless (no --preview window)")
    fresh = " ".join(sorted({f for _, f, _, b in entries if not b}))
    again = " ".join(sorted({f.removeprefix("--force-reinstall ") for _, f, _, b in entries if b}))
    return " && ".join(cmd for cmd in ((f"pip install {fresh}" if fresh else ""),
                                       (f"pip install --force-reinstall {again}" if again else "")) if cmd)


@dataclass(frozen=True, slots=True)
class Outdated:
    """An installed dependency older than a version vbg declares it needs."""

    name: str  # the distribution, as vbg's metadata names it
    installed: str  # its installed version
    needed: str  # what the requirement allows, e.g. ">=18.0.0"
    extra: str = ""  # "" for a dependency of vbg itself, else the extra that declares it

    @property
    def fix(self) -> str:
        return f"pip install -U '{self.name}{self.needed}'"


def outdated(requirements: Iterable[str], version_of: Callable[[str], str | None],
             extras: Iterable[str] = ()) -> list[Outdated]:
    """The installed dependencies that ``requirements`` (``Requires-Dist``
    strings, as ``importlib.metadata.requires`` gives them) say are too old.

    ``version_of(name)`` is the installed version, or None when the package is
    absent (what is missing is :func:`check_packages`' business). A requirement
    whose marker does not hold here (another platform or Python) is skipped; one
    that holds only for an extra (``extra == "torch"``) counts as that extra's.
    A package that vbg itself requires is held to that floor only: which extras
    were installed is not recorded, so a higher floor from an extra (vbg[cuda]
    on onnxruntime-gpu) cannot be told apart from one that is not in use."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    applicable = []
    for text in requirements:
        req = Requirement(text)
        extra = _applies_as(req, tuple(extras))
        if extra is not None:
            applicable.append((req, extra))
    own = {_key(req.name) for req, extra in applicable if extra == ""}
    out, seen = [], set()
    for req, extra in applicable:
        key = _key(req.name)
        if key in seen or (extra and key in own):
            continue
        seen.add(key)
        installed = version_of(req.name)
        if installed is None:
            continue
        try:
            if req.specifier.contains(Version(installed), prereleases=True):
                continue
        except InvalidVersion:
            continue  # a local build with a non-PEP 440 version: nothing to compare against
        out.append(Outdated(req.name, installed, str(req.specifier), extra))
    return out


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies_as(req, extras: tuple[str, ...]) -> str | None:
    """"" when ``req`` holds for vbg itself here, the first extra it holds for, or None."""
    if req.marker is None:
        return ""
    for extra in ("", *extras):
        if req.marker.evaluate({"extra": extra}):
            return extra
    return None


def _installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check_versions(dist: str = "vbg") -> list[Check]:
    """Every installed dependency is at least the version vbg's own metadata
    (its ``Requires-Dist``, i.e. pyproject.toml) declares as its floor."""
    try:
        requirements = md.requires(dist) or []
        extras = md.metadata(dist).get_all("Provides-Extra") or []
    except md.PackageNotFoundError:
        return [Check("versions", WARN, f"{dist} is not installed as a package, so its dependency floors cannot be "
                                        "read", "pip install -e . in the source folder")]
    try:
        found = outdated(requirements, _installed_version, extras)
    except ImportError:
        return [Check("versions", WARN, "cannot compare versions: the packaging module is missing",
                      "pip install packaging")]
    if not found:
        return [Check("versions", OK, f"every installed dependency is at or above {dist}'s floor")]
    checks = []
    for o in found:
        who = f"{dist}[{o.extra}]" if o.extra else dist
        status = WARN if o.extra else FAIL  # an extra's package only limits what that extra is for
        checks.append(Check("versions", status, f"{o.name} {o.installed} is older than {who} needs ({o.needed})",
                            o.fix))
    return checks


# --------------------------------------------------------------------------- ONNX Runtime

def tiny_model() -> bytes:
    """A one-node ONNX graph (Relu on a 1x4 tensor), built in memory; the bundled
    selfie model when the onnx package is absent."""
    try:
        from onnx import TensorProto, helper
    except Exception:  # absent, or broken (a protobuf that does not fit it raises a TypeError)
        from .models.spec import get_spec

        return get_spec("selfie").bundled_path().read_bytes()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "vbg-doctor", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString()


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Capture what is printed while the block runs, at the file-descriptor level
    (ONNX Runtime prints provider-loading errors from C++) and at the Python level
    (its Python part prints with ``print``); the yielded list holds the text after."""
    out: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    py_text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(py_text), contextlib.redirect_stderr(py_text):
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace") + py_text.getvalue())


def check_providers(model: bytes | None = None) -> list[Check]:
    """Open a tiny session on each provider ONNX Runtime lists and compare the
    provider asked for with the one the session really uses (the GPU build
    lists CUDA and TensorRT even where they cannot load)."""
    try:
        import onnxruntime as ort
    except Exception as e:
        return [Check("onnxruntime", FAIL, f"cannot import onnxruntime ({type(e).__name__}: {e})",
                      "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install vbg again")]
    from .inference import cuda as nvidia
    from .inference.onnx_backend import load_failure

    model = model if model is not None else tiny_model()
    loads, broken = [], []
    with captured_output():
        ort.set_default_logger_severity(3)
    listed = ort.get_available_providers()
    if "CUDAExecutionProvider" in listed or "TensorrtExecutionProvider" in listed:
        with captured_output():  # the wheels' CUDA libraries, as a GPU session of vbg's loads them
            nvidia.preload("tensorrt" if "TensorrtExecutionProvider" in listed else "cuda")
    for provider in listed:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        reason = ""
        with captured_output() as text:
            try:
                sess = ort.InferenceSession(model, sess_options=so, providers=[provider])
                active = sess.get_providers()
            except Exception as e:
                active, reason = [], " ".join(str(e).split())[:160]
        short = provider.replace("ExecutionProvider", "")
        if active and active[0] == provider:
            loads.append(short)
        else:
            broken.append((short, reason or load_failure(text[0] if text else "") or
                           f"falls back to {', '.join(a.replace('ExecutionProvider', '') for a in active)}"))
    version = getattr(ort, "__version__", "?")
    checks = []
    if "CPU" not in loads:
        why = dict(broken).get("CPU", "not listed")
        checks.append(Check("onnxruntime", FAIL, f"onnxruntime {version}: the CPU provider does not load ({why})",
                            "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install vbg again"))
    elif broken:
        checks.append(_gpu_providers_check(version, loads, broken, nvidia.diagnose))
    else:
        checks.append(Check("onnxruntime", OK, f"onnxruntime {version}: {', '.join(loads)} {_load_verb(loads)}"))
    return checks


def _gpu_providers_check(version: str, loads: list[str], broken: list[tuple[str, str]], missing: Callable) -> Check:
    """The GPU providers that are listed but do not load, with the lowest missing layer of
    the NVIDIA stack for each (``missing(device)``, :func:`vbg.inference.cuda.diagnose`) and its fix."""
    found = {}
    for short, why in broken:
        if short in ("CUDA", "Tensorrt"):
            try:
                layer = missing("tensorrt" if short == "Tensorrt" else "cuda")
            except Exception:  # noqa: BLE001 -- fall back to ONNX Runtime's own reason
                layer = None
            found[short] = layer
    layers = [m for m in found.values() if m is not None]
    # One reason per layer: CUDA and TensorRT without a driver share one line.
    reasons: dict[str, list[str]] = {}
    for short, why in broken:
        layer = found.get(short)
        reasons.setdefault(layer.detail if layer is not None else why, []).append(short)
    detail = (f"onnxruntime {version}: {', '.join(loads)} {_load_verb(loads)}; listed but not loading: "
              + "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items()))
    if layers:
        lowest = layers[0]
        fix = lowest.fix
        if lowest.layer == "driver":
            fix += "; without an NVIDIA GPU none is needed: the model runs on the CPU"
    else:
        fix = ("pip install 'vbg[cuda]' for the CUDA/cuDNN runtime and check the NVIDIA driver (nvidia-smi); "
               "vbg runs on the CPU meanwhile" if _gpu_present() else
               "none needed without a GPU: the model runs on the CPU (--model selfie is fastest)")
    return Check("onnxruntime", WARN, detail, fix)


def _load_verb(loads: list[str]) -> str:
    return "loads" if len(loads) == 1 else "load"


def _gpu_present() -> bool:
    from .inference.onnx_backend import gpu_present

    return gpu_present()


def check_gpu(proc_root: str = "/proc", dev_root: str = "/dev", smi: Callable[[], str | None] | None = None,
              major: int | None = None) -> list[Check]:
    """The NVIDIA driver, its version against the CUDA major ONNX Runtime needs (``major``;
    None: the installed build's), and the GPUs it sees with their memory (``smi()``:
    nvidia-smi's CSV; names alone from /proc without it)."""
    from .inference import cuda as nvidia

    driver = nvidia.driver_version(proc_root)
    if driver is not None:
        gpus = nvidia.list_gpus(proc_root, smi) or []
        text = f"NVIDIA driver {driver or 'loaded'}"
        if gpus:
            text += ": " + "; ".join(f"GPU {g.describe()}" for g in gpus) + " (--gpu N picks one)"
        if driver:
            try:
                major = nvidia.installed_cuda_major() if major is None else major
            except Exception:  # noqa: BLE001 -- no ONNX Runtime: the packages check says so
                major = None
            need = nvidia.MIN_DRIVER.get(major) if major else None
            if need and nvidia.version_tuple(driver) < need:
                want = ".".join(map(str, need))
                return [Check("gpu", WARN, f"{text}; CUDA {major} (this ONNX Runtime's) needs driver {want} or newer",
                              f"upgrade the NVIDIA driver to {want} or newer")]
        return [Check("gpu", OK, text)]
    if Path(dev_root, "nvidiactl").exists():
        return [Check("gpu", OK, "NVIDIA device present")]
    if sys.platform == "win32" and _gpu_present():
        return [Check("gpu", OK, "NVIDIA driver present")]
    return [Check("gpu", WARN, "no NVIDIA GPU found: the model runs on the CPU",
                  "fine for --model selfie (a few ms a frame); RMBG-1.4 live needs a GPU for full frame rate")]


# --------------------------------------------------------------------------- cameras, virtual camera

def _node_name(sys_root: str, node: str) -> str:
    try:
        return Path(sys_root, "class/video4linux", node, "name").read_text().strip()
    except OSError:
        return ""


def _device_users(path: str) -> list[tuple[int, str]]:
    from .capture.camera import device_users

    return device_users(path)


def _parse_bool_list(text: str) -> list[bool]:
    return [v.strip().upper() in ("Y", "1") for v in text.strip().split(",") if v.strip()]


def _in_video_group() -> tuple[bool, str]:
    try:
        import grp

        gid = grp.getgrnam("video").gr_gid
    except (ImportError, KeyError):
        return True, ""
    return gid in os.getgroups() or os.getegid() == gid, "video"


def check_virtual_camera(sys_root: str = "/sys", dev_root: str = "/dev", system: str | None = None,
                         users: Callable[[str], list[tuple[int, str]]] | None = None,
                         pipewire: Callable[[], bool] | None = None) -> list[Check]:
    """Linux: the v4l2loopback module, its devices, exclusive_caps, permissions
    and whether another program holds a device; what fails there is only a warning where
    ``pipewire()`` (default: a PipeWire camera can be published) says the PipeWire camera stands
    in. Elsewhere: whether a pyvirtualcam backend (OBS Virtual Camera) opens."""
    system = system or platform.system()
    if system != "Linux":
        return _check_other_vcam(system)
    checks = _check_loopback(sys_root, dev_root, users)
    if any(c.status == FAIL for c in checks):
        from .sinks.pipewire import camera_problem

        if (pipewire or (lambda: camera_problem() is None))():
            checks = [Check(c.name, WARN, f"{c.detail} (the PipeWire camera stands in: vbg picks it)", c.fix)
                      if c.status == FAIL else c for c in checks]
    return checks


def check_pipewire_camera(system: str | None = None, env: dict[str, str] | None = None) -> list[Check]:
    """Linux: what the PipeWire camera needs (--vcam-backend pipewire, or auto without v4l2loopback):
    gst-launch-1.0, GStreamer's pipewiresink, a PipeWire daemon that answers. Each missing piece is a
    warning with what to install or start (a v4l2loopback device does without them)."""
    if (system or platform.system()) != "Linux":
        return []
    from .sinks import pipewire as pw

    path = (os.environ if env is None else env).get("PATH")
    name = "pipewire"
    if shutil.which(pw.GST_LAUNCH, path=path) is None:
        return [Check(name, WARN, f"{pw.GST_LAUNCH} is not installed", pw.TOOLS_HINT)]
    problems = []
    inspect = shutil.which(pw.GST_INSPECT, path=path)
    if inspect is None or not pw.plugin_present(inspect, env):
        problems.append(Check(name, WARN, "GStreamer has no pipewiresink element", pw.PLUGIN_HINT))
    daemon = pw.daemon_problem(env)
    if daemon is not None:
        problems.append(Check(name, WARN, daemon, pw.DAEMON_HINT))
    return problems or [Check(name, OK, f"{pw.GST_LAUNCH}, pipewiresink and PipeWire ({pw.socket_path(env)}) "
                                        f"answer: --vcam-backend pipewire publishes '{pw.DESCRIPTION}'")]


def _check_loopback(sys_root: str, dev_root: str, users) -> list[Check]:
    from .sinks.virtual_camera import INSTALL_LOOPBACK, RELOAD_LOOPBACK, loopback_nodes

    users = users or _device_users
    module = Path(sys_root, "module/v4l2loopback")
    nodes = loopback_nodes(sys_root)
    if not module.is_dir() and not nodes:
        return [Check("v4l2loopback", FAIL, "the v4l2loopback kernel module is not loaded: there is no virtual "
                                            "camera for video-call apps to pick",
                      INSTALL_LOOPBACK)]
    if not nodes:
        return [Check("v4l2loopback", FAIL, "v4l2loopback is loaded but has no devices",
                      RELOAD_LOOPBACK)]
    checks = [Check("v4l2loopback", OK, "loaded: " + ", ".join(
        f"{dev_root}/{n}" + (f" ({name})" if (name := _node_name(sys_root, n)) else "") for n in nodes))]
    caps_file = module / "parameters/exclusive_caps"
    try:
        caps = _parse_bool_list(caps_file.read_text())
    except OSError:
        caps = []
    numbers = sorted(int(n[5:]) for n in nodes if n[5:].isdigit())
    # exclusive_caps is listed per device, in the order the devices were made.
    if caps and not all(caps[: len(nodes)]):
        checks.append(Check("exclusive_caps", WARN, "exclusive_caps is off: Chrome, Zoom and Teams do not list "
                                                    "the virtual camera",
                            RELOAD_LOOPBACK))
    elif caps:
        checks.append(Check("exclusive_caps", OK, "on (browsers and call apps list the device)"))
    free, problems = _check_nodes(numbers, dev_root, users)
    if free:
        checks.append(Check("virtual camera", OK, f"{', '.join(free)} writable"))
        checks.append(_reader_detection(free[0]))
    checks.extend(problems)
    if not free and not any(c.status == FAIL for c in problems):
        checks.append(Check("virtual camera", FAIL, "no usable virtual camera device",
                            RELOAD_LOOPBACK))
    return checks


def _reader_detection(path: str) -> Check:
    """How vbg tells that an app reads the virtual camera (idle when unwatched): the usage event of
    v4l2loopback 0.13+, or the /proc scan of older modules."""
    from .sinks.watchers import UsageEventWatcher

    try:
        UsageEventWatcher(path).close()
    except OSError:
        how = "no usage event (v4l2loopback older than 0.13): vbg watches /proc for apps that open it"
    else:
        how = "v4l2loopback's usage event tells when an app reads it"
    return Check("reader detection", OK, f"{path}: {how}; vbg releases the camera while none does "
                                         "(--always-on keeps it)")


def _check_nodes(numbers: list[int], dev_root: str, users) -> tuple[list[str], list[Check]]:
    """The loopback devices ``/dev/videoN`` one by one: the writable paths, and what is wrong with the others
    (or, as a warning, who holds one)."""
    free: list[str] = []
    problems: list[Check] = []
    for n in numbers:
        path = f"{dev_root}/video{n}"
        if not os.path.exists(path):
            problems.append(Check("virtual camera", FAIL, f"{path} is missing although the module made it",
                                  "check udev, or reload the module"))
            continue
        if not os.access(path, os.R_OK | os.W_OK):
            in_group, group = _in_video_group()
            why = f"you are not in the '{group}' group" if group and not in_group else "no read/write permission"
            problems.append(Check("virtual camera", FAIL, f"{path}: {why}",
                                  VIDEO_GROUP_FIX if group and not in_group else f"sudo chmod 666 {path}"))
            continue
        held = users(path)
        if held:
            who = ", ".join(f"{name} (pid {pid})" for pid, name in held)
            problems.append(Check("virtual camera", WARN, f"{path} is open in {who}: a second writer is refused",
                                  "close the other program if it sends video to it (another vbg, OBS)"))
        free.append(path)
    return free, problems


def _check_other_vcam(system: str) -> list[Check]:
    from .sinks.virtual_camera import install_hint

    try:
        import pyvirtualcam
    except ImportError:
        return [Check("virtual camera", FAIL, "pyvirtualcam is not installed", "pip install pyvirtualcam")]
    try:
        with captured_output(), pyvirtualcam.Camera(640, 480, 30) as cam:
            device = cam.device
    except RuntimeError as e:
        return [Check("virtual camera", FAIL, " ".join(str(e).split())[:200], install_hint(system))]
    return [Check("virtual camera", OK, f"{device} opens")]


def check_cameras(sys_root: str = "/sys", dev_root: str = "/dev", system: str | None = None,
                  query: Callable[[str], V4l2Info | None] | None = None,
                  users: Callable[[str], list[tuple[int, str]]] | None = None) -> list[Check]:
    """The cameras (capture nodes that are not v4l2loopback devices), their
    modes, and who else holds them. ``query``: :func:`vbg.capture.v4l2.query_device` (tests pass
    a fake)."""
    system = system or platform.system()
    if system != "Linux":
        return [Check("cameras", OK, "not listed on this system: vbg --source N opens camera N")]
    if query is None:
        from .capture.v4l2 import query_device as query
    from .sinks.virtual_camera import loopback_nodes

    users = users or _device_users
    loopback = set(loopback_nodes(sys_root))
    nodes = sorted((p for p in glob.glob(f"{dev_root}/video[0-9]*") if Path(p).name not in loopback),
                   key=lambda p: int(re.sub(r"\D", "", Path(p).name) or 0))
    checks = []
    for path in nodes:
        info = query(path)
        if info is None:
            if not os.access(path, os.R_OK | os.W_OK):
                in_group, group = _in_video_group()
                fix = VIDEO_GROUP_FIX if group and not in_group else f"sudo chmod 666 {path}"
                checks.append(Check("cameras", FAIL, f"{path}: no permission to open it", fix))
            continue
        if not info.capture or info.driver.startswith("v4l2 loopback"):
            continue  # a metadata node, or a loopback device outside /sys/devices/virtual
        held = users(path)
        modes = ", ".join(info.modes) or "modes not listed"
        index = re.sub(r"\D", "", Path(path).name)
        detail = f"{path} (--source {index}): {info.card or info.driver}: {modes}"
        if held:
            who = ", ".join(f"{name} (pid {pid})" for pid, name in held)
            checks.append(Check("cameras", WARN, f"{detail}; in use by {who}",
                                "close that program if vbg cannot open the camera"))
        else:
            checks.append(Check("cameras", OK, detail))
    if not checks:
        checks.append(Check("cameras", FAIL, "no camera found",
                            "plug in a camera (and check `ls /dev/video*`), or run vbg with --source FILE or --source demo"))
    return checks


# --------------------------------------------------------------------------- models, display

def check_models() -> list[Check]:
    """The default model's cache state and the hub token, without the network."""
    from .models import hub
    from .models.spec import MODELS

    spec = MODELS["rmbg-1.4"]
    try:
        cached = [v for v in spec.hub_files if hub.cached_path(spec, v) is not None]
    except Exception as e:  # a missing huggingface_hub, a bad HF_* setting: say so, do not stop
        from .errors import DependencyError, VbgError

        if isinstance(e, VbgError) and not isinstance(e, DependencyError):  # its own line names the fix
            return [Check("model cache", WARN, f"cannot look into the hub cache: {e}",
                          "as the line says; vbg runs the bundled selfie model meanwhile")]
        return [Check("model cache", WARN, f"cannot look into the hub cache ({type(e).__name__}: {e})",
                      "pip install huggingface_hub, or use --model selfie (bundled)")]
    checks = []
    vbg_cache = str(hub.cache_dir())
    unwritable = hub.cache_unwritable()
    if unwritable:
        # Nothing the live filter needs is written there: the bundled model runs without it.
        checks.append(Check("model cache", WARN, f"{vbg_cache} cannot be created or written ({unwritable}): "
                                               "exports of --variant export and TensorRT engines are not kept",
                            "set VBG_CACHE_DIR to a writable folder"))
    token = _hub_token()
    unreadable = None if cached else hub.unreadable_copy(spec, "fp32")
    if cached:
        checks.append(Check("model cache", OK, f"rmbg-1.4 cached ({', '.join(cached)}); vbg cache {vbg_cache}; "
                                               "selfie models bundled"))
    elif unreadable is not None:  # another user's download in a shared cache: not "not downloaded yet"
        what, _, _ = str(unreadable).partition(": make it")
        checks.append(Check("model cache", WARN, f"{what}: vbg runs the bundled selfie model",
                            hub.UNREADABLE_FIX))
    elif (room := _hub_cache_room(spec)) is not None:  # the next run could not download it either
        checks.append(Check("model cache", WARN, f"rmbg-1.4 is not downloaded, and the Hugging Face cache cannot "
                                                 f"take it ({room}): vbg runs the bundled selfie model",
                            f"set HF_HOME to a writable folder with room for it "
                            f"({spec.hub_files['fp32'].size / 1e6:.0f} MB)"))
    else:
        checks.append(Check("model cache", WARN, "rmbg-1.4 is not downloaded yet: until it is, vbg runs the bundled "
                                                 "selfie model",
                            "with a Hugging Face token (below) the next run downloads it once"))
    setting = None if cached else _hub_setting_problem()
    if setting is not None:  # what vbg's own download refuses before asking the hub
        checks.append(Check("hub token" if "token" in setting[0] else "hub settings", WARN, setting[0], setting[1]))
    elif token:
        checks.append(Check("hub token", OK, f"set ({token})"))
    elif not cached:
        checks.append(Check("hub token", WARN, "no Hugging Face token: RMBG-1.4 is gated and cannot be downloaded",
                            "accept the licence at https://huggingface.co/briaai/RMBG-1.4, then export HF_TOKEN=hf_... "
                            "(or hf auth login); or use --model selfie"))
    return checks


def _hub_setting_problem() -> tuple[str, str] | None:
    """(what, fix) for a Hugging Face setting vbg's download refuses without the network: a token
    holding a character no token has, HF_HUB_OFFLINE, an HF_ENDPOINT that is no URL (each was
    called fine, "the next run downloads it", and the next run refused it)."""
    from .models import hub

    try:
        token = None
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # no huggingface_hub, an unreadable token file
            token = os.environ.get("HF_TOKEN")
        bad = hub._token_problem(token)
        if bad is not None:
            what, _, fix = str(bad).partition(": ")
            return what, fix or "set it again: export HF_TOKEN=hf_... (or hf auth login)"
        try:
            offline = hub._offline(hub._import_hub())
        except Exception:
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        if offline:
            return ("HF_HUB_OFFLINE is set: RMBG-1.4 cannot be downloaded",
                    "unset HF_HUB_OFFLINE for the run that downloads it (vbg models --download)")
        endpoint = os.environ.get("HF_ENDPOINT")
        why = hub._endpoint_problem(endpoint)
        if why is not None:
            return (f"HF_ENDPOINT={endpoint!r} is not a URL to download from ({why})",
                    "set it to the hub's URL (https://huggingface.co) or unset it")
    except Exception:  # never stops the report
        return None
    return None


def check_config() -> list[Check]:
    """The settings the live filter would start with: the default config file and the VBG_
    variables read as it reads them (a broken file stopped the filter at once, exit 2, while the
    doctor said it could start). Said only where there is a file or a variable to read."""
    from .cli import build_live_parser, live_config
    from .errors import Problems, VbgError, one_line
    from .userconfig import default_path

    path = default_path()
    variables = sorted(k for k, v in os.environ.items() if k.startswith("VBG_") and v and k != "VBG_CACHE_DIR")
    if not path.exists() and not variables:
        return []
    try:
        live_config(build_live_parser().parse_args([]))
    except Problems as e:
        return [Check("config", FAIL, one_line(x), "vbg config edit, or fix the VBG_ variable it names")
                for x in e.errors]
    except VbgError as e:
        return [Check("config", FAIL, one_line(e), "vbg config edit, or fix the VBG_ variable it names")]
    read = ([str(path)] if path.exists() else []) + variables
    return [Check("config", OK, "read: " + ", ".join(read))]


def _hub_cache_room(spec) -> str | None:
    from .models import hub

    try:
        return hub.hub_cache_problem(spec)
    except Exception:  # what cached_path could read, this reads too: never stops the report
        return None


def _hub_token() -> str:
    """Where a token comes from (never the token itself)."""
    if os.environ.get("HF_TOKEN"):
        return "HF_TOKEN"
    try:
        from huggingface_hub import get_token

        if get_token():
            return "stored login"
    except Exception:  # no huggingface_hub, or an unreadable token file: no token
        pass
    return ""


def check_display(environ=None, system: str | None = None) -> list[Check]:
    from .sinks.preview import display_available

    if display_available(environ, system):
        return [Check("display", OK, "a window can open (--preview)")]
    return [Check("display", WARN, "no display: --preview cannot open a window (the virtual camera does not need one)",
                  "run from a desktop session, or under xvfb-run for tests")]


def check_python() -> list[Check]:
    v = sys.version_info
    if v < (3, 10):
        return [Check("python", FAIL, f"Python {platform.python_version()}", "vbg needs Python 3.10 or later")]
    return [Check("python", OK, f"Python {platform.python_version()} ({sys.executable})")]


def check_tensorrt_cache() -> list[Check]:
    """The TensorRT engines kept (one folder per model, size, precision, TensorRT and GPU);
    nothing to say where there are none."""
    from .inference.trt_cache import cache_summary
    from .models.hub import cache_dir

    root = cache_dir() / "trt"
    folders, size = cache_summary(root)
    if not folders:
        return []
    return [Check("tensorrt cache", OK, f"{folders} engine folder(s), {size / 1e6:.1f} MB in {root} (one per model, "
                                        "size, precision, TensorRT version and GPU; deleting one frees its space, "
                                        "its engine is built again when needed)")]


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    check_python, check_packages, check_versions, check_providers, check_gpu, check_virtual_camera,
    check_pipewire_camera, check_cameras, check_models, check_tensorrt_cache, check_config, check_display,
)


def run_checks(checks=None) -> Report:
    """Every check in order; a check that itself breaks is reported, never raised."""
    from .errors import one_line

    results: list[Check] = []
    for fn in CHECKS if checks is None else checks:
        name = fn.__name__.removeprefix("check_").replace("_", " ")
        try:
            results.extend(fn())
        except ImportError as e:  # a package the packages line names as missing or broken: said there
            results.append(Check(name, WARN, f"not checked: {e.name or 'a package it needs'} does not import "
                                             f"({one_line(e)[:120]})", "fix the packages line above first"))
        except Exception as e:  # a doctor that crashes helps nobody: report the check as failed
            results.append(Check(name, FAIL, f"the check itself failed: {type(e).__name__}: {e}",
                                 "report this with the output of vbg doctor -v"))
    return Report(tuple(results))


def format_report(report: Report) -> str:
    """The report as text: one line per check, its fix below, a verdict last."""
    width = max((len(c.name) for c in report.checks), default=8)
    lines = []
    for c in report.checks:
        tag = {OK: "ok", WARN: "warn", FAIL: "FAIL"}[c.status]
        lines.append(f"{tag:4}  {c.name:{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
    failed = report.failed
    if failed:
        names = ", ".join(dict.fromkeys(c.name for c in failed))
        lines.append(f"the live filter cannot start: {len(failed)} check(s) failed ({names})")
    else:
        lines.append("the live filter can start" + (" (see the warnings)" if any(
            c.status == WARN for c in report.checks) else ""))
    return "\n".join(lines)
