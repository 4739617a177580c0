"""Which encoder writes vbg's H.264: NVENC on an NVIDIA GPU, libx264 otherwise.

In: an ``--encoder`` choice (``ENCODERS``: ``auto``, the default, ``x264`` or
``nvenc``), a GPU index and, where known, the frame size. Out:
:func:`choose_encoder` returns an :class:`Encoder` (FFmpeg's name, the GPU, and
for ``auto``'s fallback why not NVENC, in one line for the user), decided before
any output file exists; ``nvenc`` that does not open is a ``DeviceError``, frames
under ``NVENC_MIN`` a ``ConfigError`` for ``nvenc`` and libx264 for ``auto``.
Thread: any; the NVENC probe (:func:`nvenc_problem`: open an encoder in memory,
encode one frame) runs once per process and GPU, under a lock.

Why probe by opening, the NVENC quality presets, yuv420p, no HEVC:
docs/design/output-files.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

from .config import check_encoder
from .errors import ConfigError, DeviceError

X264 = "libx264"
NVENC = "h264_nvenc"
NVENC_FIX = "install the NVIDIA driver (on a GPU with NVENC) or use --encoder x264"
NVENC_MIN = (145, 145)  # H.264 NVENC's smallest frame (NV_ENC_CAPS_WIDTH_MIN/HEIGHT_MIN on Turing to Blackwell)
_PROBE_SIZE = 256  # over NVENC_MIN: opens on every GPU that has NVENC

_lock = threading.Lock()
_problems: dict[int, str | None] = {}  # GPU index -> None (NVENC opens) or why not


@dataclass(frozen=True, slots=True)
class Encoder:
    """The H.264 encoder chosen: FFmpeg's name, the GPU for NVENC, and why not NVENC (auto's fallback)."""

    name: str  # X264 or NVENC
    gpu: int | None = None  # the GPU NVENC runs on; None for libx264
    why_not: str | None = None  # set when auto fell back to libx264
    too_small: bool = False  # the fallback is for the frame size (NVENC may well work for larger frames)

    @property
    def nvenc(self) -> bool:
        return self.name == NVENC

    def describe(self) -> str:
        """The one line for the user: ``encoding with h264_nvenc (GPU 0)``."""
        if self.nvenc:
            return f"encoding with {self.name} (GPU {self.gpu})"
        if self.too_small:
            return f"encoding with {self.name} ({self.why_not})"
        if self.why_not is not None:
            return f"encoding with {self.name} (no NVENC here: {self.why_not})"
        return f"encoding with {self.name}"


def choose_encoder(encoder: str = "auto", gpu: int = 0, size: tuple[int, int] | None = None) -> Encoder:
    """The encoder ``--encoder ENCODER`` means on this machine for frames of ``size``
    (width, height; None: not known yet). ``x264`` probes nothing; ``auto`` and ``nvenc``
    open NVENC once per process (:func:`nvenc_problem`); ``nvenc`` that does not open is a
    ``DeviceError`` saying why. Frames smaller than NVENC encodes (:data:`NVENC_MIN`) go
    to libx264 under ``auto`` (it is fast at that size) and are a ``ConfigError`` for ``nvenc``."""
    check_encoder(encoder)
    if encoder == "x264":
        return Encoder(X264)
    if size is not None and (size[0] < NVENC_MIN[0] or size[1] < NVENC_MIN[1]):
        why = f"{size[0]}x{size[1]} frames are smaller than NVENC encodes ({NVENC_MIN[0]}x{NVENC_MIN[1]} at least)"
        if encoder == "nvenc":
            raise ConfigError(f"--encoder nvenc: {why}: use --encoder x264 (or leave --encoder out)")
        return Encoder(X264, why_not=why, too_small=True)
    why = nvenc_problem(gpu)
    if why is None:
        return Encoder(NVENC, gpu)
    if encoder == "nvenc":
        raise DeviceError(f"--encoder nvenc: {NVENC} does not open on GPU {gpu} ({why}): {NVENC_FIX}")
    return Encoder(X264, why_not=why)


def nvenc_problem(gpu: int = 0) -> str | None:
    """None when H.264 NVENC opens and encodes on GPU ``gpu``, else why not (FFmpeg's words).
    Probed on the first call for each GPU, remembered for the process."""
    with _lock:
        if gpu not in _problems:
            _problems[gpu] = _probe(gpu)
        return _problems[gpu]


def _probe(gpu: int) -> str | None:
    import av
    import av.logging
    import numpy as np

    if NVENC not in av.codecs_available:
        return f"the FFmpeg inside PyAV {av.__version__} has no {NVENC}"
    # FFmpeg's log is off unless -v; the reason is only there, so it is turned on (to errors)
    # for this thread's capture and set back.
    old = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR if old is None else max(old, av.logging.ERROR))
    try:
        with av.logging.Capture() as logs:
            try:
                cc = av.CodecContext.create(NVENC, "w")
                cc.width = cc.height = _PROBE_SIZE
                cc.pix_fmt = "yuv420p"
                cc.time_base = Fraction(1, 30)
                cc.framerate = Fraction(30)
                cc.options = {"gpu": str(gpu), "preset": "p1"}
                cc.open()
                frame = av.VideoFrame.from_ndarray(np.full((_PROBE_SIZE * 3 // 2, _PROBE_SIZE), 128, np.uint8),
                                                   format="yuv420p")
                frame.pts = 0
                cc.encode(frame)
                cc.encode(None)
                return None
            except (av.FFmpegError, OSError, ValueError) as e:
                # Only the text is kept: the exception's traceback holds this frame and, through
                # it, the caller's (a file's stages and frames) in a cycle until the collector runs.
                failure = " ".join(str(getattr(e, "strerror", None) or e).split())
    finally:
        av.logging.set_level(old)
    said = [" ".join(text.split()) for level, _name, text in logs if level <= av.logging.ERROR and text.strip()]
    return "; ".join(dict.fromkeys(said)) or failure
