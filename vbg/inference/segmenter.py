"""One segmenter interface over every model and backend.

In: ``Segmenter.segment(rgb)``: an H x W x 3 uint8 RGB frame. Out: a new
float32 alpha in [0, 1] at the network's resolution (the caller keeps it);
``segment_full`` also resizes it back to the frame. The inference size is the
model's fixed input, or ``size``: a long side (aspect ratio kept, sides
rounded to a multiple of 32) or an explicit (H, W); without ``size``,
``default_size`` as a long side (the live filter's config: 256, ``vbg
process``'s: 512), else the model's reference size. ``create_segmenter`` picks
the backend (ONNX Runtime or torch) from a ``SegmenterConfig``; ``close()``
releases the session. Thread: one segmenter per thread (live, the inference
thread; ``vbg process --workers 2``: one per worker).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from ..config import SegmenterConfig
from ..errors import ConfigError, ModelError
from ..models.preprocess import Preprocessor, inference_size, postprocess, resize_alpha
from ..models.resolve import ModelSource, resolve_model
from ..ranges import TRT_PRECISIONS

log = logging.getLogger("vbg.inference")

class Segmenter(Protocol):
    providers: list[str]

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]: ...
    def segment(self, rgb: np.ndarray, size_hw: tuple[int, int] | None = None) -> np.ndarray: ...
    def close(self) -> None: ...


class _Base:
    """Size policy, preprocessing buffers and the full-size convenience."""

    fixed_hw: tuple[int, int] | None = None
    can_crop = True  # segment() takes size_hw: the person crop (vbg.inference.crop) may wrap it

    def __init__(self, source: ModelSource, size, minmax: bool, default_size: int | None = None) -> None:
        self.source = source
        self.size = size
        self.default_size = default_size
        self.minmax = minmax
        self._pre: dict[tuple[int, int], Preprocessor] = {}

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        if self.fixed_hw is not None:
            return self.fixed_hw
        if self.size is None:
            if self.default_size is None:
                return self.source.spec.reference_size
            return inference_size(frame_hw, self.default_size)
        return inference_size(frame_hw, self.size)

    def _check_fixed(self) -> None:
        fixed, size = self.fixed_hw, self.size
        if fixed is None or size is None:
            return
        if (isinstance(size, tuple) and size != fixed) or (isinstance(size, int) and size != max(fixed)):
            # vbg export makes RMBG-1.4 graphs only: the bundled selfie models come at their one size
            rmbg = self.source.spec.name.startswith("rmbg")
            raise ConfigError(
                f"--size {size if isinstance(size, int) else 'x'.join(map(str, size))} does not fit "
                f"{self.source.label}, whose input is fixed at {fixed[0]}x{fixed[1]}: drop --size"
                + (", or export a model at that size (vbg export --size HxW, or --dynamic)" if rmbg else
                   " (this model comes at that size only; RMBG-1.4 takes any size)")
            )

    def _preprocessor(self, size_hw: tuple[int, int], dtype=np.float32) -> Preprocessor:
        pre = self._pre.get(size_hw)
        if pre is None:
            spec = self.source.spec
            pre = self._pre[size_hw] = Preprocessor(size_hw, spec.mean, spec.std, dtype)
        return pre

    def segment_full(self, rgb: np.ndarray) -> np.ndarray:
        """Alpha at the frame's own size (bilinear, as the reference)."""
        return resize_alpha(self.segment(rgb), rgb.shape[:2])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_matte(raw: np.ndarray, size_hw: tuple[int, int], label: str) -> None:
    """The network's output is a finite [1, 1, H, W] matte of the input's size: a wrong size would
    be stretched over the frame, and NaN would come out as an all-zero mask, silently."""
    if raw.ndim != 4 or raw.shape[:2] != (1, 1) or tuple(raw.shape[2:]) != tuple(size_hw):
        raise ModelError(f"model {label} returned a matte of shape {list(raw.shape)} for a "
                         f"{size_hw[0]}x{size_hw[1]} input, not [1, 1, {size_hw[0]}, {size_hw[1]}]: "
                         "pass a model whose matte has its input's size (vbg export makes one)")
    # a reduction, in the matte's own type where that holds its sum (a float64 one cast the whole
    # matte through a buffer on every run); float16 overflows at 65504, so it is summed as float32
    if not np.isfinite(raw.sum(dtype=np.float32 if raw.dtype == np.float16 else None)):
        raise ModelError(f"model {label} returned NaN or infinite values: the model file is broken "
                         "(or its precision too low for this input); pass another --model, or the fp32 variant")


class OnnxSegmenter(_Base):
    def __init__(self, source: ModelSource, *, size=None, device="auto", strict_device=False,
                 threads=None, minmax=False, default_size=None, gpu=0, trt_precision="fp16") -> None:
        super().__init__(source, size, minmax, default_size)
        self.device, self.strict, self.threads, self.gpu = device, strict_device, threads, gpu
        self.fp16 = trt_precision == "fp16"
        self._sessions: dict[tuple[Path, tuple[int, int] | None], tuple] = {}
        self._by_size: dict[tuple[int, int], tuple] = {}
        self._bound: dict[tuple[int, int], object] = {}  # GPU sessions only: size -> BoundRunner
        self.providers: list[str] = []
        if source.onnx is not None:
            self._open(source.onnx)
            self._check_fixed()

    def _open(self, path: Path, size_hw: tuple[int, int] | None = None):
        """A session on ``path``; with ``size_hw``, one built for that size alone (TensorRT)."""
        from ..models.hub import cache_dir
        from .onnx_backend import create_session, release_freed_memory

        entry = self._sessions.get((path, size_hw))
        if entry is not None:
            return entry
        sess, self.providers = create_session(path, self.device, strict=self.strict, threads=self.threads,
                                              cache_dir=cache_dir() / "trt", gpu=self.gpu, fp16=self.fp16,
                                              input_hw=size_hw, label=self.source.label)
        release_freed_memory()  # what loading freed: as much again as the model, for a large one
        inputs, outputs = sess.get_inputs(), sess.get_outputs()
        # Symbolic dims (str/None) are accepted: exporters name some they cannot infer.
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, None) \
                and not isinstance(inputs[0].shape[1], str):
            got = ", ".join(f"{i.name}{i.shape}" for i in inputs)
            raise ModelError(
                f"{path.name} does not take one [N,3,H,W] image (it takes {got}): "
                "pass an RMBG-1.4 or selfie ONNX, or export one with vbg export"
            )
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ModelError(
                f"{path.name} takes {inputs[0].type} input, but vbg feeds normalised float images: "
                "pass an RMBG-1.4 or selfie ONNX, or export one with vbg export"
            )
        if outputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ModelError(
                f"{path.name} returns {outputs[0].type}, not a float matte: "
                "pass an RMBG-1.4 or selfie ONNX, or export one with vbg export"
            )
        out_shape = outputs[0].shape
        if len(out_shape) != 4 or isinstance(out_shape[1], int) and out_shape[1] != 1:
            raise ModelError(
                f"{path.name} does not return one [N,1,H,W] matte (its first output is {outputs[0].name}"
                f"{out_shape}): export a single-output graph with vbg export"
            )
        h, w = inputs[0].shape[2:]
        if all(isinstance(v, int) for v in (h, w, *out_shape[2:])) and tuple(out_shape[2:]) != (h, w):
            raise ModelError(
                f"{path.name} returns a {out_shape[2]}x{out_shape[3]} matte for a {h}x{w} image: vbg needs "
                "a matte of the input's size; export the model with vbg export"
            )
        if isinstance(h, int) and isinstance(w, int) and path == self.source.onnx:
            self.fixed_hw = (h, w)  # per-size exports of weights are fixed too, but chosen by us
        meta = sess.get_modelmeta().custom_metadata_map
        if "vbg.mean" in meta and "vbg.std" in meta:
            from dataclasses import replace

            try:
                mean = tuple(float(v) for v in meta["vbg.mean"].split(","))
                std = tuple(float(v) for v in meta["vbg.std"].split(","))
            except ValueError as e:
                raise ModelError(f"{path.name} has malformed vbg.mean/vbg.std metadata") from e
            self.source = replace(self.source, spec=replace(self.source.spec, mean=mean, std=std))
        dtype = np.float16 if "float16" in inputs[0].type else np.float32
        entry = self._sessions[(path, size_hw)] = (sess, inputs[0].name, outputs[0].name, dtype)
        return entry

    def segment(self, rgb: np.ndarray, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """``size_hw``: the network's input size (default: the one for this frame; the person
        crop passes the whole frame's, so a crop costs what the frame does, on the same session)."""
        size_hw = size_hw or self.input_size(rgb.shape[:2])
        raw = self.infer(size_hw, self.prepare(rgb, size_hw))
        _check_matte(raw, size_hw, self.source.label)
        return postprocess(raw[0], minmax=self.minmax)

    def prepare(self, rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """The network's input for ``rgb`` at ``size_hw``, in the session's dtype; a buffer that
        the next ``prepare`` or ``segment`` at that size overwrites."""
        return self._preprocessor(size_hw, self._entry(size_hw)[3])(rgb)

    def _entry(self, size_hw: tuple[int, int]) -> tuple:
        entry = self._by_size.get(size_hw)
        if entry is None:
            path = self.source.onnx_for(size_hw)
            # TensorRT builds an engine per shape: a model that takes any size gets a session
            # (and a cached engine) for the size used, instead of a rebuild at its first frame.
            per_size = path == self.source.onnx and self.fixed_hw is None and self.device == "tensorrt" \
                and self.providers[:1] == ["TensorrtExecutionProvider"]
            try:
                was = path.stat()
                entry = self._open(path, size_hw if per_size else None)
            except ModelError:
                if path == self.source.onnx or not _damaged_onnx(path):  # the user's own file, or not
                    raise  # the file's fault (a GPU out of memory): theirs to mend, or to say as it is
                # vbg's own export of the weights, damaged since (vbg writes it whole): made again, once
                log.warning("the cached export %s cannot be loaded: exporting it again", path)
                with contextlib.suppress(OSError):
                    now = path.stat()
                    if (now.st_ino, now.st_mtime_ns) == (was.st_ino, was.st_mtime_ns):  # not remade meanwhile
                        path.unlink()
                path = self.source.onnx_for(size_hw)
                entry = self._open(path, None)
            self._by_size[size_hw] = entry
            self._bind(size_hw, entry)
        return entry

    def _bind(self, size_hw: tuple[int, int], entry: tuple) -> None:
        """On a GPU, run this size through I/O binding; the CPU keeps ``session.run``."""
        from .onnx_backend import BoundRunner, io_device

        sess, in_name, out_name, dtype = entry
        device = io_device(sess.get_providers())
        if device is None:
            return
        try:
            self._bound[size_hw] = BoundRunner(sess, in_name, out_name, (1, 3, *size_hw), dtype, device=device,
                                                 device_id=self.gpu)
        except Exception as e:  # noqa: BLE001 -- ORT's error classes derive from Exception alone
            # session.run still works without the binding: slower, not wrong.
            log.warning("I/O binding on %s is not available (%s); using session.run", device, e)

    def infer(self, size_hw: tuple[int, int], x: np.ndarray) -> np.ndarray:
        """The raw network output [1, 1, H, W] for the prepared input ``x`` (:meth:`prepare`)."""
        sess, in_name, out_name, _ = self._entry(size_hw)
        bound = self._bound.get(size_hw)
        if bound is not None:
            return bound(x)
        (raw,) = sess.run([out_name], {in_name: x})
        return raw

    def close(self) -> None:
        self._bound.clear()
        self._sessions.clear()
        self._by_size.clear()


def _damaged_onnx(path: Path) -> bool:
    """Whether ONNX cannot read ``path`` as a model at all (cut short, overwritten): only then is a
    cached export made again, not where a session failed for another reason."""
    try:
        import onnx
    except ImportError:
        return False
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 -- protobuf's DecodeError and its kin
        return True
    return False


class TorchSegmenter(_Base):
    """The IS-Net module in torch: for checking the ONNX path and for users who
    already run torch on a GPU. RMBG-1.4 only."""

    def __init__(self, source: ModelSource, *, size=None, device="auto", strict_device=False,
                 threads=None, minmax=False, default_size=None, gpu=0) -> None:
        super().__init__(source, size, minmax, default_size)
        from ..models.export import build_rmbg, require_torch
        from ..errors import DeviceError

        from .cuda import pci_order

        pci_order()  # before torch starts CUDA: --gpu N is the GPU vbg doctor lists as N
        torch = require_torch()
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        want_cuda = device in ("cuda", "tensorrt") or (device == "auto" and torch.cuda.is_available())
        if want_cuda and not torch.cuda.is_available():
            if strict_device:
                raise DeviceError(
                    f"--device {device} asked for CUDA, but this torch build sees no GPU: install a CUDA build "
                    "of torch, or use --device cpu"
                )
            log.warning("CUDA was asked for but torch sees no GPU; running on the CPU")
            want_cuda = False
        if want_cuda and gpu >= torch.cuda.device_count():
            raise ConfigError(f"--gpu {gpu} is beyond the {torch.cuda.device_count()} GPU(s) torch sees: pass "
                              "one of them (vbg doctor lists them)")
        self.torch_device = torch.device(f"cuda:{gpu}" if want_cuda else "cpu")
        net = build_rmbg(None if source.random_init else source.weights)
        self.net = net.to(self.torch_device)
        self.providers = [f"torch:{self.torch_device.type}"]

    def segment(self, rgb: np.ndarray, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        torch = self._torch
        size_hw = size_hw or self.input_size(rgb.shape[:2])
        x = torch.from_numpy(self._preprocessor(size_hw)(rgb)).to(self.torch_device)
        with torch.inference_mode():
            raw = self.net.matte(x)
        return postprocess(raw[0, 0].float().cpu().numpy(), minmax=self.minmax)

    def close(self) -> None:
        self.net = None


def create_segmenter(cfg: SegmenterConfig, source: ModelSource | None = None) -> OnnxSegmenter | TorchSegmenter:
    """Resolve ``cfg.model`` (downloading if needed) and open the backend."""
    if cfg.trt_precision not in TRT_PRECISIONS:  # before a download, not after it
        raise ConfigError(f"--trt-precision {cfg.trt_precision!r} is not known: use fp16 or fp32")
    if source is None:
        source = resolve_model(cfg.model, variant=cfg.variant, backend=cfg.backend)
    if cfg.backend == "torch":
        return TorchSegmenter(source, size=cfg.size, device=cfg.device, strict_device=cfg.strict_device,
                              threads=cfg.threads, minmax=cfg.minmax, default_size=cfg.default_size, gpu=cfg.gpu)
    return OnnxSegmenter(source, size=cfg.size, device=cfg.device, strict_device=cfg.strict_device,
                         threads=cfg.threads, minmax=cfg.minmax, default_size=cfg.default_size, gpu=cfg.gpu,
                         trt_precision=cfg.trt_precision)
