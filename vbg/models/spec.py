"""Everything model-specific lives in one ``ModelSpec`` per model.

Nothing here imports a heavy dependency: the registry is read by the CLI's
argument parser and by ``vbg doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of a hub repository, pinned by its published size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    family: str  # "rmbg" or "selfie": picks the torch architecture / export path
    description: str
    # Input normalisation: the network sees (rgb / 255 - mean) / std, per channel.
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Size the model was trained/published at (H, W); live and offline defaults.
    reference_size: tuple[int, int]
    live_size: int | None  # long side used by the live filter; None = fixed model
    fixed_size: tuple[int, int] | None = None  # set when the model only runs at one size
    license: str = ""
    license_url: str = ""
    attribution: str = ""
    commercial_use: bool = True
    hub_repo: str | None = None
    gated: bool = False  # the hub serves it only to a signed-in user who accepted its terms
    hub_files: dict[str, HubFile] = field(default_factory=dict)  # variant -> file
    bundled: str | None = None  # file name under vbg/models/assets

    def bundled_path(self) -> Path:
        if self.bundled is None:
            raise ConfigError(f"model {self.name!r} is not bundled with vbg")
        return Path(str(resources.files("vbg.models").joinpath("assets", self.bundled)))


RMBG_LICENSE_URL = "https://bria.ai/bria-huggingface-model-license-agreement/"

RMBG14 = ModelSpec(
    name="rmbg-1.4",
    family="rmbg",
    description="BRIA RMBG-1.4 (IS-Net), background removal; non-commercial licence, downloaded on first use",
    mean=(0.5, 0.5, 0.5),
    std=(1.0, 1.0, 1.0),
    reference_size=(1024, 1024),
    live_size=256,
    license="bria-rmbg-1.4 (source-available, non-commercial; commercial use needs an agreement with BRIA AI)",
    license_url=RMBG_LICENSE_URL,
    attribution="RMBG-1.4 by BRIA AI, https://huggingface.co/briaai/RMBG-1.4",
    commercial_use=False,
    hub_repo="briaai/RMBG-1.4",
    gated=True,
    hub_files={
        # ONNX variants run as they are; "weights" feeds the local export.
        "fp32": HubFile(
            "onnx/model.onnx", 176_153_355,
            "8cafcf770b06757c4eaced21b1a88e57fd2b66de01b8045f35f01535ba742e0f"),
        "fp16": HubFile(
            "onnx/model_fp16.onnx", 88_217_533,
            "9fdfdb41866d872e0acf4a010c35c1a8547bf0eebe0d1544406bbf1c824cb59d"),
        "int8": HubFile(
            "onnx/model_quantized.onnx", 44_403_226,
            "a6648479275dfd0ede0f3a8abc20aa5c437b394681b05e5af6d268250aaf40f3"),
        "weights": HubFile(
            "model.safetensors", 176_381_984,
            "46ef7fe46f2ae284d8f1aaa24bfa5fca5ef25a34e2c7caa890a0029eb100e87f"),
    },
)

SELFIE = ModelSpec(
    name="selfie",
    family="selfie",
    description="MediaPipe selfie segmentation, 256x256 (Apache-2.0, bundled, ~3 ms on a CPU)",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    reference_size=(256, 256),
    live_size=None,
    fixed_size=(256, 256),
    license="Apache-2.0",
    license_url="http://www.apache.org/licenses/LICENSE-2.0",
    attribution="MediaPipe Selfie Segmentation by Google LLC (mediapipe==0.10.14), converted to ONNX",
    bundled="selfie_segmentation.onnx",
)

SELFIE_LANDSCAPE = ModelSpec(
    name="selfie-landscape",
    family="selfie",
    description="MediaPipe selfie segmentation, landscape 144x256 (Apache-2.0, bundled, ~2 ms on a CPU)",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    reference_size=(144, 256),
    live_size=None,
    fixed_size=(144, 256),
    license="Apache-2.0",
    license_url="http://www.apache.org/licenses/LICENSE-2.0",
    attribution="MediaPipe Selfie Segmentation (landscape) by Google LLC (mediapipe==0.10.14), converted to ONNX",
    bundled="selfie_segmentation_landscape.onnx",
)

MODELS: dict[str, ModelSpec] = {s.name: s for s in (RMBG14, SELFIE, SELFIE_LANDSCAPE)}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(MODELS)
        raise ConfigError(
            f"unknown model {name!r}: use one of {known}, or a path to a .onnx/.safetensors/.pth/.bin file"
        ) from None
