"""Which encoder writes vbg's H.264: NVENC on an NVIDIA GPU, libx264 otherwise.

``--encoder`` (``vbg process``; the live filter's ``--record``, config key
``[output] encoder``) is one of ``ENCODERS``: ``auto`` (the default: NVENC when
it opens here, else libx264), ``x264`` or ``nvenc`` (NVENC or an error).
:func:`choose_encoder` decides, before any output file exists, and its
:class:`Encoder` says in one line what it chose and, for a fallback, why
(``encoding with libx264 (no NVENC here: Cannot load libcuda.so.1)``): the
x264 encode is what limits ``vbg process`` on a CPU (``benchmarks/RESULTS.md``),
so a user should see which one ran.

Decisions:

* **Probe by opening, once per process and GPU.** PyAV's wheels build FFmpeg
  with NVENC, so ``h264_nvenc`` is in ``av.codecs_available`` on every
  machine; it is opening it that fails without the driver's libraries
  (libcuda.so.1, libnvidia-encode.so.1) or on a GPU without an encoder unit.
  ``add_stream("h264_nvenc")`` succeeds; ``avcodec_open2`` (at
  ``start_encoding()``, or the first ``encode()``) returns EPERM, raised by
  PyAV as ``av.PermissionError`` ("Operation not permitted"), and the reason is
  only in FFmpeg's log. So :func:`nvenc_problem` opens a 256x256 encoder in
  memory and encodes one frame (about 5 ms without a driver; a CUDA context on
  a GPU), with FFmpeg's log captured for the reason, and remembers the answer:
  a batch or a live run probes once, and a failed probe leaves no file behind.
* **Quality presets** (``vbg process --quality``; ``VideoWriter``): constant
  quality, like x264's CRF: ``-rc vbr -cq N -b 0`` (``b 0``: no bit-rate cap;
  the encoder's default is 2 Mb/s), ``-tune hq``; fast = ``p2`` cq 23,
  balanced = ``p4`` cq 20, best = ``p6`` cq 17 (presets p1 fastest .. p7 best):
  the numbers of x264's CRF, both being quantizer targets on H.264's 0..51
  scale. NVENC spends somewhat more bits for a look like x264's; the sizes
  and quality were not measured here (no GPU on the development machine).
* **The live recorder** (``--record``) uses ``-tune ll`` (low latency: no
  frames held back for look-ahead), the x264 preset it is given mapped to
  p1..p7 (``veryfast`` -> p2) and its CRF as cq.
* **Pixel format yuv420p** (I420), as for libx264: NVENC takes it as is
  (IYUV), vbg already converts to it with OpenCV, and nv12 would only move the
  U/V interleave from the driver to the CPU. Odd sizes are padded the same way.
* **HEVC: not used.** Every vbg output that NVENC could write (.mp4, .m4v,
  .mkv, ``--record``) is H.264, which every player and browser plays; ProRes
  (.mov from ``vbg process``), VP9 (.webm) and PNG have no NVENC encoder, so
  ``--encoder nvenc`` with them is refused (``auto`` leaves them alone).
* **The GPU**: NVENC's ``gpu`` option, the index :func:`choose_encoder` gets
  (``gpu=0`` until the CLI's ``--gpu`` feeds it).
* Decoding stays on the CPU (no NVDEC): decoding is not the bottleneck.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

from .config import ENCODERS, check_encoder  # noqa: F401  (ENCODERS: imported from here too)
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
