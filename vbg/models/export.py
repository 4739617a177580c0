"""RMBG-1.4 weights -> torch module -> single-output ONNX graph.

Graph contract (stable, documented in the README):
  input  ``input``  float32 [N, 3, H, W], RGB, ``x/255 - 0.5``
  output ``output`` float32 [N, 1, H, W], d1 after sigmoid, in [0, 1]
Fixed-shape exports (N=1, given H x W) run 5-8% faster on ONNX Runtime's CPU
provider than ``--dynamic`` ones (N, H, W free). Metadata props record the
model family, normalisation, weights hash and size so ``--model FILE.onnx``
needs no other flag.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import pickle
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import DependencyError, ModelError, OutputError
from ..fsutil import write_error_hint, write_new
from .spec import RMBG14

log = logging.getLogger("vbg.export")

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17
TORCH_HINT = "pip install 'vbg[torch]'"
RANDOM_SIDE_GAIN = 100.0


def require_torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise DependencyError(
            f"this needs PyTorch, which is not installed: run {TORCH_HINT}"
        ) from e
    return torch


def load_state_dict(path: Path) -> dict:
    """Read a checkpoint: safetensors, or ``.pth``/``.bin`` with ``weights_only=True``."""
    torch = require_torch()
    path = Path(path)
    if path.is_dir():  # a downloaded model's folder
        raise ModelError(f"{path} is a folder, not a weights file: pass the file in it (model.safetensors)")
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist: check the path given to --model/--weights")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError as e:
                raise DependencyError(f"reading .safetensors needs safetensors: run {TORCH_HINT}") from e
            return load_file(str(path))
        if suffix in (".pth", ".bin", ".pt"):
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
            if not isinstance(sd, dict):
                raise ModelError(f"{path.name} holds a {type(sd).__name__}, not a state_dict of tensors")
            return sd
    except DependencyError:
        raise
    except ModelError:
        raise
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # no class or function named: bytes that are not a pickle at all
            raise ModelError(f"cannot read weights {path.name}: the file is damaged or not a checkpoint of "
                             "tensors (loaded with weights_only=True); download it again or pass another weights file") from e
        raise ModelError(
            f"refused to load {path.name}: it holds Python objects or code, not only tensors "
            "(loaded with weights_only=True); use the published model.safetensors instead"
        ) from e
    except Exception as e:  # safetensors / torch raise many types for a damaged file
        raise ModelError(
            f"cannot read weights {path.name}: the file is damaged or not a checkpoint ({type(e).__name__}); "
            "download it again or pass another weights file"
        ) from e
    raise ModelError(
        f"unknown weights format {path.suffix!r} for {path.name}: use .safetensors, .pth or .bin (or an .onnx)"
    )


def build_rmbg(weights: Path | None = None, *, seed: int = 0):
    """The IS-Net module in eval mode, from weights or seeded random init."""
    torch = require_torch()
    from .rmbg import BriaRMBG

    if weights is None:
        torch.manual_seed(seed)
        net = BriaRMBG().eval()
        # PyTorch's default init leaves d1's logits within +-0.05 (a flat 0.5
        # matte); scaling the side heads spreads them over the sigmoid's range
        # so outputs are informative in tests. The compute cost is unchanged.
        with torch.no_grad():
            for i in range(1, 7):
                getattr(net, f"side{i}").weight.mul_(RANDOM_SIDE_GAIN)
        return net
    sd = load_state_dict(Path(weights))
    net = BriaRMBG()
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    try:
        if not_tensors:  # load_state_dict fails on them with an AttributeError
            raise RuntimeError(f"not a tensor {len(not_tensors)} (e.g. {not_tensors[0]})")
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        expected = net.state_dict()
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        shape = [k for k in expected if k in sd and isinstance(sd[k], torch.Tensor)
                 and tuple(sd[k].shape) != tuple(expected[k].shape)]
        detail = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape),
                                ("not a tensor", not_tensors))
            if keys
        )
        raise ModelError(
            f"{Path(weights).name} is not an RMBG-1.4 checkpoint ({detail or e}): "
            "use the weights from briaai/RMBG-1.4"
        ) from e
    return net.eval()


def weights_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(
    net,
    out: Path,
    *,
    size_hw: tuple[int, int] | None = (256, 256),
    dynamic: bool = False,
    fp16: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export d1 of ``net`` to ``out`` atomically: the graph is built in memory, then written
    to a file created exclusively under a fresh name beside ``out`` and renamed into place."""
    torch = require_torch()
    from .rmbg import RMBGMatte

    out = Path(out)
    if dynamic:
        size_hw = size_hw or (320, 320)  # trace size only; the graph accepts any
    elif size_hw is None:
        raise ValueError("size_hw is required for a fixed-shape export")
    h, w = size_hw
    model = RMBGMatte(net).eval()
    x = torch.zeros(1, 3, h, w)
    if fp16:
        model = copy.deepcopy(model).half()  # never change the caller's module
        x = x.half()
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        from ..liblogs import verbose

        if not verbose():  # torch.onnx's tracer warnings: shown with -v only
            warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buf,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=OPSET, dynamic_axes=axes, do_constant_folding=True,
            dynamo=False,
        )
    data = _stamp_metadata(buf.getvalue(), {
        "vbg.family": "rmbg",
        "vbg.mean": ",".join(str(v) for v in RMBG14.mean),
        "vbg.std": ",".join(str(v) for v in RMBG14.std),
        "vbg.size": "dynamic" if dynamic else f"{h}x{w}",
        "vbg.precision": "fp16" if fp16 else "fp32",
        **(metadata or {}),
    })
    try:
        write_new(out, data)
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror or e}: {write_error_hint(e)}") from e
    return out


def _stamp_metadata(data: bytes, props: dict[str, str]) -> bytes:
    """The serialised graph ``data`` with ``props`` set in its metadata, and its output's channel
    axis stated as 1 (a ``--dynamic`` export left it a symbol, ``Sigmoidoutput_dim_1``)."""
    import onnx

    model = onnx.load_from_string(data)
    channel = model.graph.output[0].type.tensor_type.shape.dim[1]
    if not channel.HasField("dim_value"):
        channel.dim_value = 1
    existing = {p.key: p for p in model.metadata_props}
    for k, v in props.items():
        if k in existing:
            existing[k].value = v
        else:
            model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _export_lock(out: Path) -> Iterator[None]:
    """Held while ``out`` is exported: by the workers of one ``vbg process`` (each its own
    session, each asking for the same size at its first frame) and by separate vbg processes
    sharing the cache. ``flock`` on a lock file beside the export (opened with O_NOFOLLOW:
    never through a link); the lock of two descriptors excludes threads of one process too.
    The lock file stays: removing it could let a third process lock a new file while a
    second still holds the old one."""
    with _THREAD_LOCKS_GUARD:
        in_process = _THREAD_LOCKS.setdefault(out, threading.Lock())
    with in_process:  # where flock is missing (not POSIX), at least this process's workers wait
        try:
            import fcntl
        except ImportError:  # pragma: no cover
            yield
            return
        lock = out.with_name(f".{out.name}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise OutputError(f"cannot use the export cache: {lock} cannot be opened ({e.strerror or e}): "
                              f"{write_error_hint(e)}, or set VBG_CACHE_DIR to another folder") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def cached_export(weights: Path, size_hw: tuple[int, int], cache_root: Path, *, fp16: bool = False) -> Path:
    """Fixed-shape ONNX for ``weights`` at ``size_hw``, exported once and cached,
    keyed by the weights' sha256 and the size."""
    digest = weights_fingerprint(weights)
    h, w = size_hw
    out = Path(cache_root) / "exports" / f"rmbg14-{digest[:16]}-{h}x{w}{'-fp16' if fp16 else ''}.onnx"
    if out.is_file():
        return out
    try:  # made now, before the minutes of work, as it is about to be written
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot create the vbg cache folder {out.parent} for the ONNX export of {Path(weights).name} "
            f"({e.strerror or e}): set VBG_CACHE_DIR to a writable folder, or pass an .onnx file as --model"
        ) from e
    with _export_lock(out):
        if out.is_file():  # another worker or vbg process exported it while this one waited
            return out
        log.info("exporting %s to ONNX at %dx%d (once; cached in %s)", Path(weights).name, h, w, out.parent)
        net = build_rmbg(weights)
        return export_onnx(net, out, size_hw=size_hw, fp16=fp16,
                           metadata={"vbg.weights_sha256": digest})
