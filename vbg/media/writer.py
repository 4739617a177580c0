"""Writing processed frames to a video file or a PNG folder: ``VideoWriter``.

In: ``VideoWriter(path, info, mode=...)``, then ``write`` per frame: uint8
RGB (``"rgb"``), RGBA with straight alpha (``"rgba"``) or a grey matte
(``"matte"``), with the source ``pts``; ``write`` encodes before it returns,
so the caller may reuse its array then. Out: ``NAME.EXT``, created under a
fresh hidden name (``vbg.fsutil``) and renamed into place by ``close()``;
``abort()`` keeps the frames so far as a playable ``NAME.partial.EXT``
(``partial_path``), nothing when there are none or a write failed. The path
picks the format:

==================  ====================================  ===================================
path                video                                 audio (``audio_from``)
==================  ====================================  ===================================
.mp4 .m4v           H.264 (libx264 or NVENC) yuv420p,     AAC, MP3, (E-)AC-3, ALAC, Opus
                    no alpha                              copied; others re-encoded to AAC
.mkv                H.264 (libx264 or NVENC) yuv420p,     copied (re-encoded to AAC if
                    no alpha                              Matroska refuses the codec)
.mov                rgba: ProRes 4444 + alpha             as .mp4, PCM copied too
                    rgb, matte: ProRes 422 HQ
.webm               rgba: VP9 yuva420p, else VP9 yuv420p  Opus, Vorbis copied; others
                                                          re-encoded to Opus 48 kHz
no suffix (or       PNG per frame, ``frame_000001.png``   none (see ``warnings``)
``sequence=True``)
==================  ====================================  ===================================

Audio is muxed as the video advances (``vbg.media.audio``); how frames are
encoded is ``vbg.media.encode``'s. Thread: ``write`` from one thread at a
time; ``abort()`` and ``close()`` may be called from another thread: they wait
for the ``write()`` in progress and make later ones raise.

Why (.mov formats, timestamps, whole files, PNG sequences):
docs/design/output-files.md.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from vbg.errors import ConfigError, InputError, OutputError, VbgError, one_line
from vbg.fsutil import partial_name
from vbg.fsutil import write_error_hint as disk_hint
from vbg.media.encode import QUALITIES, AvFile, encoder_for, nvenc_h264, output_format, padded_size
from vbg.media.info import VideoInfo
from vbg.media.png import PngFolder
from vbg.ranges import OUTPUT_MODES as MODES


class VideoWriter:
    """Write processed frames to ``path``; see the module docstring for formats.

    ``mode``: ``"rgb"`` (images H x W x 3), ``"rgba"`` (H x W x 4, straight
    alpha) or ``"matte"`` (H x W, written as grey); all uint8 at
    ``info.width`` x ``info.height``. ``quality``: ``"fast"``, ``"balanced"``,
    ``"best"`` (encoder speed/size trade-off; ProRes and PNG ignore it).
    ``audio_from``: a file whose first audio stream is copied (or re-encoded
    where the container needs it). ``threads``: encoder threads, 0 = FFmpeg's
    choice. ``sequence``: True writes a PNG folder whatever the name, False a
    file; None (default) decides by the name alone, never by what exists there:
    no suffix is a PNG folder, a suffix picks the file format. ``overwrite``
    False: an existing ``path`` is refused at once (``OutputError``), and one
    that appears while writing is not replaced (``close()`` keeps the frames
    under the partial name and raises). ``lookahead``: frames the encoder may
    hold to plan its rate (H.264's rc-lookahead, VP9's lag-in-frames), at most
    the quality's own (x264 veryfast 10, medium 40, slow 50; VP9 25); None = that:
    each is a picture in memory, which a memory budget caps. ``encoder``: who
    writes H.264 (x264, nvenc or auto, see ``encoder_for``; ``gpu``: NVENC's GPU);
    ``encoder_name`` is FFmpeg's name of the one writing the video.

    After ``close()``, ``output_path`` is the finished file; after ``abort()``
    it is ``partial_path`` (or None when no frame was written) and ``partial``
    is True: the caller says "N frames kept in <partial_path>". ``frame_size``
    is (width, height) in the file (see odd sizes). ``warnings`` lists what the
    output could not keep (audio re-encoded, PNG folders without timing/audio).
    """

    def __init__(self, path: str | Path, info: VideoInfo, *, mode: str, quality: str = "balanced",
                 audio_from: str | Path | None = None, threads: int = 0, sequence: bool | None = None,
                 overwrite: bool = True, lookahead: int | None = None, encoder: str = "x264",
                 gpu: int = 0) -> None:
        if mode not in MODES:
            raise ConfigError(f"output mode {mode!r} is unknown: use one of {', '.join(MODES)}")
        if quality not in QUALITIES:
            raise ConfigError(f"output quality {quality!r} is unknown: use one of {', '.join(QUALITIES)}")
        if info.width < 1 or info.height < 1:
            raise ConfigError(f"output size {info.width}x{info.height} is invalid: width and height must be >= 1")
        self.path = Path(path)
        self.info = info
        self.mode = mode
        self.quality = quality
        self.warnings: list[str] = []
        self.frames_written = 0
        self.output_path: Path | None = None
        self.partial_path: Path | None = None
        self.partial = False  # True once abort() kept the frames written so far
        self._lock = threading.Lock()
        self._closed = False
        self._failed = False  # a write failed: nothing is kept
        self._last_pts: int | None = None
        self._shape = {"rgb": (info.height, info.width, 3), "rgba": (info.height, info.width, 4),
                       "matte": (info.height, info.width)}[mode]

        sequence = sequence if sequence is not None else not self.path.suffix
        chosen = encoder_for(self.path, mode, encoder, gpu, sequence=sequence,  # before any file exists
                             size=padded_size(info.width, info.height))
        self.encoder = chosen
        if chosen is not None and chosen.too_small and encoder == "auto":
            self.warnings.append(chosen.describe())  # the batch's line said NVENC may be used
        if sequence:
            self._backend: _Backend = PngFolder(self.path, info, mode, overwrite)
            self.partial_path = partial_name(self.path)
            self.warnings.append(f"the PNG folder {self.path} keeps no frame timing"
                                 + (" and no audio" if audio_from is not None else ""))
        else:
            fmt, codec = output_format(self.path, mode)
            if chosen is not None and chosen.nvenc:
                codec = nvenc_h264(chosen.gpu)
            self.partial_path = partial_name(self.path)
            self._backend = AvFile(self.path, fmt, codec, info, mode, quality, audio_from, threads,
                                    self.warnings, overwrite, lookahead)
        self.frame_size: tuple[int, int] = self._backend.frame_size
        self.encoder_name = "png" if sequence else self._backend.codec.codec

    # ------------------------------------------------------------------ writing
    def write(self, index: int, pts: int | None, time_s: float, image: np.ndarray) -> None:
        """Encode one frame. ``pts`` is in ``info.time_base`` (None: taken from ``time_s``)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise TypeError(f"VideoWriter.write: image must be a uint8 numpy array, got {got}")
        if image.shape != self._shape:
            raise ValueError(f"VideoWriter.write: mode {self.mode!r} expects an image of shape "
                             f"{self._shape}, got {image.shape}")
        with self._lock:
            if self._closed:
                raise ValueError("VideoWriter.write: the writer is closed")
            if pts is None:
                pts = round(time_s / self.info.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
            self._last_pts = pts
            try:
                self._backend.write(index, pts, image)
            except InputError:  # the audio source: the output itself is fine
                raise
            except BaseException as e:
                if not isinstance(e, (VbgError, av.FFmpegError, OSError)):
                    raise  # an interrupt: abort() keeps what was written
                self._failed = True
                if isinstance(e, VbgError):
                    raise
                raise OutputError(f"{self.path}: writing failed after {self.frames_written} frames "
                                  f"({one_line(e)}): {disk_hint(e)}") from e
            self.frames_written += 1

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Flush the encoders, add the remaining audio, rename the file into
        place; returns ``output_path``. Idempotent. Raises ``OutputError`` when
        no frame was written (nothing is left behind then)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.output_path = self._backend.finish(complete=True, keep=self.path,
                                                        has_frames=self.frames_written > 0 and not self._failed)
                if self.output_path is None:
                    raise OutputError(f"{self.path}: no frames were written, so no file was made: "
                                      "check that the input has decodable frames")
        return self.output_path

    def abort(self) -> Path | None:
        """Finalize the frames written so far as a playable ``partial_path`` (or the next
        free name like it; its sound runs on at most ``AUDIO_LEAD_S``, half a second, past
        them: muxed ahead for interleaving); returns where, or None when no frame
        was written or a write failed (then the temporary output is removed).
        Idempotent; after ``close()`` it does nothing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.output_path = self._backend.finish(complete=False, keep=self.partial_path,
                                                        has_frames=self.frames_written > 0 and not self._failed)
                self.partial = self.output_path is not None
        return self.output_path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Backend(Protocol):
    """What ``VideoWriter`` writes through: ``PngFolder`` or ``AvFile``."""

    frame_size: tuple[int, int]

    def write(self, index: int, pts: int, image: np.ndarray) -> None: ...

    def finish(self, *, complete: bool, keep: Path, has_frames: bool) -> Path | None: ...
