"""``--model NAME|PATH`` (+ ``--variant``) -> a runnable model source.

A source knows the model family and normalisation and can hand out an ONNX
file for a given inference size: ONNX files as they are, torch checkpoints
exported once per size into vbg's cache (keyed by weights hash and size).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..ranges import BACKENDS
from ..ranges import VARIANTS
from .spec import MODELS, RMBG14, ModelSpec, get_spec

ONNX_SUFFIXES = (".onnx",)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")


@dataclass(frozen=True, slots=True)
class ModelSource:
    spec: ModelSpec
    label: str  # what to show the user: "rmbg-1.4 (fp32 ONNX)", a file name, ...
    onnx: Path | None = None  # runs as is
    weights: Path | None = None  # torch checkpoint (exported per size for ONNX Runtime)
    random_init: bool = False  # torch backend only: seeded random weights (benchmarks)

    def onnx_for(self, size_hw: tuple[int, int]) -> Path:
        if self.onnx is not None:
            return self.onnx
        from . import export, hub

        if self.weights is None:
            raise ModelError(f"{self.label} has no weights to export: pass --model PATH")
        return export.cached_export(self.weights, size_hw, hub.cache_dir())


AUTO = "auto"  # RMBG-1.4 when it is cached or can be downloaded now, else the bundled selfie model
FALLBACK = "selfie"


@dataclass(frozen=True, slots=True)
class Choice:
    model: str  # a name in MODELS or a path: never AUTO
    note: str | None = None  # one line for the user when AUTO fell back to the selfie model


def hub_variant(variant: str, backend: str) -> str:
    """The hub file a hub model needs: the safetensors weights for torch/export, else the ONNX variant."""
    return "weights" if backend == "torch" or variant == "export" else variant


def download_notes(variant: str = "fp32", backend: str = "onnx") -> dict[str, str]:
    """For the control page's model menu: the known models that are not on this machine yet
    (a switch to one downloads it first, under its licence), each with a short note. Never
    touches the network; a hub model counts as missing when huggingface_hub is not installed."""
    from .spec import MODELS

    notes = {}
    for name, spec in MODELS.items():
        if spec.bundled is not None or spec.hub_repo is None:
            continue
        try:
            from . import hub

            cached = hub.cached_path(spec, hub_variant(variant, backend))
        except Exception:  # no huggingface_hub, an unreadable cache: not usable as it is
            cached = None
        if cached is None:
            notes[name] = "not downloaded yet"
    return notes


def choose_model(model: str, *, variant: str = "fp32", backend: str = "onnx") -> Choice:
    """Settle ``--model auto``: RMBG-1.4 when it is cached or the hub would serve it now,
    else the bundled selfie model with a note that names the reason and the one step
    that enables RMBG-1.4. Any other name is returned as it is. The torch backend has
    no selfie model, so there ``auto`` is RMBG-1.4 and its own error stands."""
    if model != AUTO:
        return Choice(model)
    if backend == "torch" or variant not in VARIANTS:
        return Choice(RMBG14.name)
    from . import hub

    missing = hub.availability(RMBG14, hub_variant(variant, backend))
    if missing is None:
        return Choice(RMBG14.name)
    return Choice(FALLBACK, f"RMBG-1.4 is not available ({missing.reason}): running the bundled selfie model "
                            f"instead; to use RMBG-1.4, {missing.fix}")


def resolve_model(model: str, *, variant: str = "fp32", backend: str = "onnx") -> ModelSource:
    """Find (and if needed download) the model named or pointed to by ``model``."""
    if model == AUTO:
        choice = choose_model(model, variant=variant, backend=backend)
        if choice.note:
            import logging

            logging.getLogger("vbg.models").warning("%s", choice.note)
        model = choice.model
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not known: use onnx or torch")
    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r} is not known: use one of {', '.join(VARIANTS)}")
    if model in MODELS:
        spec = get_spec(model)
        if spec.bundled is not None:
            if backend == "torch":
                raise ConfigError(f"--model {model} runs on ONNX Runtime only: drop --backend torch")
            return ModelSource(spec, f"{spec.name} (bundled)", onnx=spec.bundled_path())
        from . import hub

        if hub_variant(variant, backend) == "weights":
            weights = hub.fetch(spec, "weights")
            return ModelSource(spec, f"{spec.name} (safetensors)", weights=weights)
        return ModelSource(spec, f"{spec.name} ({variant} ONNX)", onnx=hub.fetch(spec, variant))

    path = Path(model).expanduser()
    suffix = path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + WEIGHT_SUFFIXES:
        known = ", ".join(MODELS)
        raise ConfigError(
            f"unknown model {model!r}: use one of {known}, or a path to a .onnx/.safetensors/.pth/.bin file"
        )
    if path.is_dir():
        raise ModelError(f"model file {path} is a folder: give the model file in it to --model")
    from ..media.open import special_file

    kind = special_file(path)  # a FIFO would block the read, a device never ends
    if kind is not None:
        raise ModelError(f"model file {path} is {kind}, not a file: give the model file to --model")
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist: check the path given to --model")
    if path.stat().st_size == 0:
        raise ModelError(f"model file {path} is empty: download or export it again")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:  # another user's file (mode 0600), a failing disk: not a damaged model
        raise ModelError(f"cannot read the model file {path} ({e.strerror or e}): make it readable to you, "
                         "or pass another --model") from e
    if suffix in ONNX_SUFFIXES:
        if backend == "torch":
            raise ConfigError("an .onnx model runs on ONNX Runtime: drop --backend torch")
        # Normalisation comes from the file's vbg.* metadata when the session
        # opens; a file without it is taken to be RMBG-1.4 (the published ONNX).
        return ModelSource(replace(RMBG14, name=path.name), path.name, onnx=path)
    return ModelSource(replace(RMBG14, name=path.name), path.name, weights=path)
