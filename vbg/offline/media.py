"""File I/O for offline processing: probe a video, decode every frame with its
original timestamp, write the processed frames to a video file or a PNG folder.

Reading
    ``probe(path)`` describes a file (``VideoInfo``); ``VideoReader(path)`` yields
    every frame as RGB with its original ``pts``, so a variable frame rate
    survives the round trip. Rotation metadata (a phone's display matrix) is
    reported; ``VideoReader(path, rotate=info.rotation)`` turns the frames
    upright, and ``info.upright()`` describes them so: ``vbg process`` works on
    upright frames and writes an upright file without a display matrix, which
    plays the same in every player.

Writing
    ``VideoWriter(path, info, mode=...)``: the path picks the format.

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

    Audio is muxed as the video advances (up to ``AUDIO_LEAD_S`` ahead of the
    last frame), so the streams are interleaved; copied packets are
    byte-identical and keep their timestamps, which keeps them in sync.

    Decisions:

    * **H.264 by NVENC or libx264** (``encoder``: x264, the default here, nvenc
      or auto; ``vbg.encoders`` probes NVENC and documents its options per
      quality): chosen before the file is created.
    * **Odd sizes.** H.264 in 4:2:0 cannot code an odd width or height (its
      cropping works in 2-pixel steps), so H.264 outputs are padded by one pixel
      on the right/bottom, repeating the last column/row: nothing is lost and
      the file plays everywhere. ``frame_size`` gives the size in the file.
      4:4:4 H.264 would keep the size, but browsers and QuickTime refuse it.
      ProRes 422 HQ pads an odd width the same way (FFmpeg's encoder garbles
      the last columns of an odd 4:2:2 width). VP9, ProRes 4444 and PNG keep
      the exact size.
    * **.mov without alpha is ProRes 422 HQ**: .mov is the editing format; a
      small H.264 file is what .mp4 is for.
    * **Timestamps.** Frames keep the source ``pts`` in the source time base
      (the muxer may rescale it: WebM and Matroska store milliseconds), so the
      frame count, the duration and a variable frame rate are preserved. A
      ``pts`` that does not increase is moved to ``last + 1``.
    * **Colour.** RGB is converted with the BT.601 limited-range matrix (what
      OpenCV's I420 conversion uses) and the streams are tagged so. Alpha is
      straight (not premultiplied).
    * **Files appear whole, and only where asked.** An output is created
      exclusively under a fresh hidden name in the target folder (a file for
      videos, a folder for PNG sequences; ``vbg.fsutil``), written through the
      descriptor that made it and renamed to ``NAME.EXT`` by ``close()``: a
      symlink planted in the folder is never followed, and a second run for the
      same target is refused while this one writes (``OutputBusy``).
      ``abort()`` (also run when the ``with`` block raises, Ctrl-C included)
      finalizes the frames written so far and keeps them as a playable
      ``NAME.partial.EXT`` (``partial_path``), or ``NAME.partial-2.EXT`` ... when
      that exists: a kept partial never replaces a file. With no frames, or
      after a failed write (a full disk), nothing is kept.
    * **A PNG sequence is one run's frames.** It is written whole into a new
      folder that then takes the target's place; an existing target is replaced
      only when it holds nothing but ``frame_NNNNNN.png`` files (a sequence vbg
      wrote), otherwise the writer refuses at start.
    * **A failed write stops at once.** The file is written through a Python
      file object that keeps the first write error; ``write()`` raises it at
      the packet that hit it (FFmpeg itself reports a full disk late, when the
      file is closed).

The writer is not thread-safe for concurrent ``write`` calls, but ``abort()``
and ``close()`` may be called from another thread: they wait for the
``write()`` in progress and make later ones raise.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vbg.encoders import Encoder, check_encoder, choose_encoder
from vbg.errors import ConfigError, InputError, OutputError, VbgError
from vbg.fsutil import NewFile, NewFolder, OutputBusy, foreign_files, not_a_sequence_message
from vbg.fsutil import write_error_hint as disk_hint
from vbg.mediaopen import (TIMEOUT_ENV, NetworkFrames, NotAFileError, is_url, open_media, picture_stream, timed_out,
                           timeout_s)
from vbg.ranges import OUTPUT_MODES as MODES, QUALITIES

AUDIO_LEAD_S = 0.5  # audio is muxed this far ahead of the last video frame written
SUPPORTED_OUTPUTS = ".mp4/.m4v/.mkv (H.264), .mov (ProRes), .webm (VP9) or a folder (PNG frames)"

_TEXT_DEMUXERS = {"tty", "srt", "ass", "webvtt", "subviewer", "microdvd"}

# BT.601 limited range, what cv2's RGB->I420 computes; primaries/transfer of sRGB.
_COLOR_TAGS = {"color_range": 1, "colorspace": 6, "color_primaries": 1, "color_trc": 1}


# ---------------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What ``probe`` found in a video file."""

    width: int  # coded size, before rotation
    height: int
    fps: float  # average frame rate
    time_base: Fraction  # of the video stream: pts * time_base = seconds
    frames: int | None  # frame count from the container's index (as PyAV's stream.frames); None if unknown (mkv, webm)
    duration_s: float
    rotation: int  # display rotation, degrees counter-clockwise, 0..359; not applied to pixels (see upright())
    has_audio: bool
    audio_codec: str | None
    pix_fmt: str
    has_alpha: bool
    codec: str  # video codec name, e.g. "h264"

    def upright(self) -> VideoInfo:
        """This video as ``upright`` frames show it: display size, no rotation left."""
        turns = quarter_turns(self.rotation)
        w, h = (self.height, self.width) if turns % 2 else (self.width, self.height)
        return replace(self, width=w, height=h, rotation=0)


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # 0, 1, 2, ... in decode output (presentation) order
    pts: int  # original pts in ``VideoInfo.time_base``
    time_s: float  # pts * time_base (need not start at 0)
    rgb: np.ndarray  # H x W x 3 uint8: coded size, or upright with VideoReader(rotate=...)


_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise display rotation in degrees -> quarter turns 0..3 (nearest)."""
    return round(rotation / 90) % 4


def frame_rotation(frame: av.VideoFrame, stream) -> int:
    """A decoded frame's display rotation, degrees counter-clockwise 0..359: its display
    matrix, else the stream's older 'rotate' tag (clockwise degrees)."""
    rotation = frame.rotation
    if not rotation and "rotate" in stream.metadata:
        try:
            rotation = -int(float(stream.metadata["rotate"]))
        except ValueError:
            rotation = 0
    return int(rotation) % 360


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``rgb`` turned as a player shows it (``rotation``: degrees counter-clockwise)."""
    turns = quarter_turns(rotation)
    return rgb if turns == 0 else cv2.rotate(rgb, _ROTATE[turns])


def frame_rate(stream) -> Fraction | None:
    """The average frame rate; the stream's nominal one when the average is under one frame a
    second, which is a gap in the timestamps (a damaged file), not the rate the frames play at."""
    average = stream.average_rate
    nominal = stream.guessed_rate or stream.base_rate
    if average and average < 1 and nominal and nominal >= 1:
        return nominal
    return average or nominal


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _open_input(path: str | Path, cancel: threading.Event | None = None) -> av.container.InputContainer:
    try:
        container = open_media(path, cancel)
    except ConfigError:
        raise
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file: check the path") from e
    except NotAFileError as e:
        raise InputError(f"{e}: pass a video file") from e
    except (av.FFmpegError, OSError) as e:
        if is_url(path) and timed_out(e):
            raise InputError(f"{path}: the server sent nothing for {timeout_s():g} s: check the URL, "
                             f"or allow longer with {TIMEOUT_ENV}=SECONDS") from e
        raise InputError(f"{path}: not a readable video ({_one_line(e)}): pass an intact video file") from e
    if container.format.name in _TEXT_DEMUXERS:  # FFmpeg renders text files as "ANSI art" video
        container.close()
        raise InputError(f"{path} is a text file, not a video: pass a video file")
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream: pass a video file")
    if picture_stream(container) is None:
        container.close()
        raise InputError(f"{path} has no video stream, only cover art (a still picture): pass a video file")
    return container


MAX_TIMESTAMP_JUMP_S = 600  # a longer gap between two frames is damage, not a pause (an output of one still frame)

MIN_SIDE = 16  # smaller frames hold nothing to segment (and 1-pixel sizes break resampling)
MAX_ASPECT = 10  # wider or taller than 10:1 is a strip, not a picture


def check_frame_size(name, width: int, height: int) -> None:
    """Refuse a frame size no person fits in: a side under ``MIN_SIDE`` or an aspect over ``MAX_ASPECT``."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise InputError(f"{name}: its frames are {width}x{height}: too small or too narrow to segment "
                         f"(at least {MIN_SIDE} pixels a side, at most {MAX_ASPECT}:1); pass a video of a person")


def _alpha_in_stream(stream: av.video.stream.VideoStream, pix_fmt: str) -> bool:
    if stream.metadata.get("alpha_mode") == "1":  # VP8/VP9 alpha in Matroska/WebM
        return True
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError):
        return False


def probe(path: str | Path, cancel: threading.Event | None = None) -> VideoInfo:
    """Describe ``path``'s first video stream (decodes one frame for the rotation).

    Raises ``InputError`` for a missing, corrupt or unsupported file, or one
    without a video stream. A URL is opened with time-outs; ``cancel`` (or a
    signal) ends the wait for it with ``KeyboardInterrupt``.
    """
    with _open_input(path, cancel) as container:
        stream = picture_stream(container)
        cc = stream.codec_context
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as e:
            if isinstance(e, MemoryError):  # ENOMEM: out of memory, not a damaged file
                raise
            raise InputError(f"{path}: cannot decode its video ({_one_line(e)}): the file may be damaged") from e
        if first is None:
            raise InputError(f"{path}: its video stream has no decodable frame: pass an intact video file")
        rotation = frame_rotation(first, stream)
        check_frame_size(path, cc.width or first.width, cc.height or first.height)
        pix_fmt = cc.pix_fmt or first.format.name
        has_alpha = _alpha_in_stream(stream, pix_fmt)
        if has_alpha and stream.metadata.get("alpha_mode") == "1" and pix_fmt == "yuv420p":
            pix_fmt = "yuva420p"  # what the libvpx decoder gives; FFmpeg's native one drops alpha
        time_base = stream.time_base or Fraction(1, 90000)
        rate = frame_rate(stream)
        if stream.duration:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frames = stream.frames or None
        if not rate:
            rate = Fraction(frames) / Fraction(duration) if frames and duration else Fraction(30)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            width=cc.width or first.width,
            height=cc.height or first.height,
            fps=float(rate),
            time_base=time_base,
            frames=frames,
            duration_s=duration,
            rotation=int(rotation) % 360,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            pix_fmt=pix_fmt,
            has_alpha=has_alpha,
            codec=cc.name,
        )


class VideoReader:
    """Every frame of ``path``'s first video stream as RGB with its original pts.

    ``for frame in reader`` yields ``DecodedFrame``s; a decode error mid-file, or
    timestamps that jump forward by more than ``MAX_TIMESTAMP_JUMP_S``,
    raise ``InputError`` that says how many frames were read (``frames_read``),
    so the caller can still finalize what it has. A frame without a pts gets
    the previous one plus one frame interval. ``rotate`` (``VideoInfo.rotation``)
    turns each frame upright.
    """

    def __init__(self, path: str | Path, cancel: threading.Event | None = None, *, rotate: int = 0,
                 threads: int | None = None) -> None:
        """``threads``: FFmpeg's decoding threads (None: as many as it likes); with frame
        threading each holds a picture, so a memory budget caps them for large frames."""
        self.path = str(path)
        self._rotate = rotate
        self._container = _open_input(path, cancel)
        self._stream = picture_stream(self._container)
        self._stream.thread_type = "AUTO"
        if threads is not None:
            self._stream.codec_context.thread_count = threads
        self.time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
        rate = frame_rate(self._stream) or Fraction(30)
        self._step = max(1, round(1 / (rate * self.time_base)))
        self._cancel = cancel
        self._network: NetworkFrames | None = None
        self.frames_read = 0

    def __iter__(self) -> Iterator[DecodedFrame]:
        if self._container is None:
            raise ValueError("VideoReader is closed")
        last_pts: int | None = None
        if is_url(self.path):  # a server may go silent: decoded on a helper, so that ``cancel`` ends the wait
            frames = self._network = NetworkFrames(self._container, self._stream, self._cancel)
        else:
            frames = self._container.decode(self._stream)
        while True:
            try:
                frame = next(frames, None)
                if frame is None:
                    return
                rgb = upright(frame.to_ndarray(format="rgb24", threads=1), self._rotate)  # threads=1: no
                # swscale thread pool per frame
            except av.FFmpegError as e:
                if isinstance(e, MemoryError):  # ENOMEM: out of memory, not a damaged file
                    raise
                raise InputError(f"{self.path}: decoding failed after {self.frames_read} frames "
                                 f"({_one_line(e)}): the file may be damaged") from e
            pts = frame.pts
            if pts is None:
                pts = 0 if last_pts is None else last_pts + self._step
            if last_pts is not None and (gap := float((pts - last_pts) * self.time_base)) > MAX_TIMESTAMP_JUMP_S:
                raise InputError(f"{self.path}: its timestamps jump by {gap:.0f} s "
                                 f"after {self.frames_read} frames: the file is damaged; re-encode it with "
                                 "continuous timestamps (ffmpeg -i IN -vf setpts=N/FRAME_RATE/TB OUT)")
            last_pts = pts
            index = self.frames_read
            self.frames_read += 1
            yield DecodedFrame(index=index, pts=pts, time_s=float(pts * self.time_base), rgb=rgb)

    def close(self) -> None:
        if self._network is not None:  # its helper thread closes the container
            self._network.abandon()
        elif self._container is not None:
            self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_alpha_video(path: str | Path) -> list[np.ndarray]:
    """Decode every frame of ``path`` to RGBA (H x W x 4 uint8): ProRes 4444 in
    .mov, VP9/VP8 alpha in .webm (through the libvpx decoders, since FFmpeg's
    native VP9 decoder drops the alpha plane). A video without alpha comes back
    with alpha 255."""
    out: list[np.ndarray] = []
    with _open_input(path) as container:
        stream = container.streams.video[0]
        libvpx = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(stream.codec_context.name)
        try:
            if libvpx is None:
                stream.thread_type = "AUTO"
                out = [f.to_ndarray(format="rgba", threads=1) for f in container.decode(stream)]
            else:
                ctx = av.CodecContext.create(libvpx, "r")
                for packet in container.demux(stream):
                    if packet.size:
                        out.extend(f.to_ndarray(format="rgba", threads=1) for f in ctx.decode(packet))
                out.extend(f.to_ndarray(format="rgba", threads=1) for f in ctx.decode(None))
        except av.FFmpegError as e:
            raise InputError(f"{path}: decoding failed after {len(out)} frames ({_one_line(e)}): "
                             "the file may be damaged") from e
    return out


# ---------------------------------------------------------------------------- writing
@dataclass(frozen=True, slots=True)
class _Codec:
    """One video encoding: codec, pixel format, options per quality."""

    label: str  # for messages
    codec: str
    pix_fmt: str
    even: tuple[bool, bool]  # (width, height) must be even: an odd one is padded by one pixel
    options: dict[str, dict[str, str]]  # quality -> encoder options


# rc-lookahead: each preset's own (x264's tables), spelled out because a memory budget
# only ever shortens it (VideoWriter's ``lookahead``), never lengthens a fast preset's.
_H264 = _Codec("H.264", "libx264", "yuv420p", (True, True), {
    "fast": {"preset": "veryfast", "crf": "23", "rc-lookahead": "10"},
    "balanced": {"preset": "medium", "crf": "20", "rc-lookahead": "40"},
    "best": {"preset": "slow", "crf": "17", "rc-lookahead": "50"},
})
# NVENC at constant quality (vbg.encoders says why these values); "gpu" is added per writer.
NVENC_OPTIONS = {
    "fast": {"preset": "p2", "tune": "hq", "rc": "vbr", "cq": "23", "b": "0"},
    "balanced": {"preset": "p4", "tune": "hq", "rc": "vbr", "cq": "20", "b": "0"},
    "best": {"preset": "p6", "tune": "hq", "rc": "vbr", "cq": "17", "b": "0"},
}


def _nvenc_h264(gpu: int) -> _Codec:
    return _Codec("H.264 (NVENC)", "h264_nvenc", "yuv420p", (True, True),
                  {q: {**options, "gpu": str(gpu)} for q, options in NVENC_OPTIONS.items()})


# ProRes has no quality knob worth exposing: the profile sets the data rate. FFmpeg's
# ProRes 422 garbles the last columns of an odd width (4:2:2 chroma): padded like H.264.
_PRORES_4444 = _Codec("ProRes 4444", "prores_ks", "yuva444p10le", (False, False),
                      {q: {"profile": "4", "vendor": "apl0"} for q in QUALITIES})
_PRORES_422HQ = _Codec("ProRes 422 HQ", "prores_ks", "yuv422p10le", (True, False),
                       {q: {"profile": "3", "vendor": "apl0"} for q in QUALITIES})
# lag-in-frames 25: libvpx's default and its most (26 and up fail to open the encoder).
_VP9_OPTIONS = {
    "fast": {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
    "balanced": {"deadline": "good", "cpu-used": "5", "crf": "30", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
    "best": {"deadline": "good", "cpu-used": "2", "crf": "24", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
}
_VP9_ALPHA = _Codec("VP9", "libvpx-vp9", "yuva420p", (False, False), _VP9_OPTIONS)
_VP9 = _Codec("VP9", "libvpx-vp9", "yuv420p", (False, False), _VP9_OPTIONS)


@dataclass(frozen=True, slots=True)
class _Container:
    """A file format: muxer, the codec per mode, the audio codec used when copying is impossible."""

    muxer: str
    codecs: dict[str, _Codec]  # mode -> codec; a missing mode is refused
    audio_codec: str  # for audio that cannot be copied
    audio_rate: int | None  # None: keep the source's rate
    audio_copy: frozenset[str] | None  # codecs copied as they are; None: whatever the muxer takes


_H264_CONTAINER = {"rgb": _H264, "matte": _H264}
# FFmpeg's mp4/mov muxers accept more (Vorbis, FLAC, ...) than players play there.
_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus"})
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le", "pcm_f32be"}
_FORMATS = {
    ".mp4": _Container("mp4", _H264_CONTAINER, "aac", None, _MP4_AUDIO),
    ".m4v": _Container("mp4", _H264_CONTAINER, "aac", None, _MP4_AUDIO),
    ".mkv": _Container("matroska", _H264_CONTAINER, "aac", None, None),
    ".mov": _Container("mov", {"rgb": _PRORES_422HQ, "rgba": _PRORES_4444, "matte": _PRORES_422HQ}, "aac", None,
                       _MOV_AUDIO),
    ".webm": _Container("webm", {"rgb": _VP9, "rgba": _VP9_ALPHA, "matte": _VP9}, "libopus", 48000,
                        frozenset({"opus", "vorbis"})),
}
_AUDIO_SAMPLE_FORMAT = {"aac": "fltp", "libopus": "flt"}
# PNG is lossless: zlib level 1 for every quality (at 720p level 6 took 2x as long for 3% less).
_PNG_LEVEL = 1


def partial_path_for(path: str | Path) -> Path:
    """Where an aborted output is kept: ``out.mp4`` -> ``out.partial.mp4``, ``frames`` ->
    ``frames.partial`` (the stem cut to 200 characters, so a name that fits the folder still
    fits with ``.partial``). When that name exists, the next free one is taken instead
    (``out.partial-2.mp4``): ``VideoWriter.output_path`` says which."""
    path = Path(path)
    return path.with_name(f"{path.stem[:200]}.partial{path.suffix}")


def output_format(path: Path, mode: str) -> tuple[_Container, _Codec]:
    """The container and codec a file output ``path`` is written with in ``mode``
    (rgb / rgba / matte); :class:`OutputError` when the suffix cannot hold it."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: cannot write {path.suffix!r} files: use {SUPPORTED_OUTPUTS}")
    codec = fmt.codecs.get(mode)
    if codec is None:
        raise OutputError(f"{path}: {fmt.codecs['rgb'].label} has no alpha: use .mov, .webm or a folder")
    return fmt, codec


def encoder_for(path: Path, mode: str, encoder: str, gpu: int = 0, *, sequence: bool = False,
                size: tuple[int, int] | None = None) -> Encoder | None:
    """The H.264 encoder ``encoder`` (``vbg.encoders.ENCODERS``) means for output ``path``; None
    when the output is no H.264 (ProRes, VP9, PNG: nothing probed; a format ``output_format``
    refuses is left to it). ``nvenc`` for ProRes, VP9 or PNG is a ``ConfigError``, and where
    NVENC does not open a ``DeviceError``."""
    check_encoder(encoder)
    fmt = None if sequence else _FORMATS.get(Path(path).suffix.lower())
    codec = fmt.codecs.get(mode) if fmt is not None else None
    if codec is _H264:
        return choose_encoder(encoder, gpu, size)
    if encoder == "nvenc" and (sequence or codec is not None):
        what = "a folder of PNG frames" if sequence else codec.label
        raise ConfigError(f"--encoder nvenc: {path} is {what}, which NVENC does not encode: "
                          "write .mp4, .m4v or .mkv, or leave --encoder out")
    return None


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
                             size=(info.width + info.width % 2, info.height + info.height % 2))
        self.encoder = chosen
        if chosen is not None and chosen.too_small and encoder == "auto":
            self.warnings.append(f"{self.path}: {chosen.describe()}")  # the batch's line said NVENC may be used
        if sequence:
            self._backend: _Backend = _PngFolder(self.path, info, mode, overwrite)
            self.partial_path = partial_path_for(self.path)
            self.warnings.append(f"{self.path}: a PNG folder keeps no frame timing"
                                 + (" and no audio" if audio_from is not None else ""))
        else:
            fmt, codec = output_format(self.path, mode)
            if chosen is not None and chosen.nvenc:
                codec = _nvenc_h264(chosen.gpu)
            self.partial_path = partial_path_for(self.path)
            self._backend = _AvFile(self.path, fmt, codec, info, mode, quality, audio_from, threads,
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
                                  f"({_one_line(e)}): {disk_hint(e)}") from e
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
        free name like it; no audio past them); returns where, or None when no frame
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


class _Backend:
    frame_size: tuple[int, int]

    def write(self, index: int, pts: int, image: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self, *, complete: bool, keep: Path, has_frames: bool) -> Path | None:
        raise NotImplementedError


class _PngFolder(_Backend):
    """One PNG per frame, ``frame_000001.png`` for index 0, written into a new hidden
    folder (``NewFolder``) that takes the target's place when complete."""

    def __init__(self, folder: Path, info: VideoInfo, mode: str, overwrite: bool) -> None:
        if overwrite and os.path.lexists(folder):
            foreign = foreign_files(folder)
            if foreign:
                raise OutputError(not_a_sequence_message(folder, foreign))
        self._overwrite = overwrite
        try:
            self._new = NewFolder(folder, replace=overwrite)
        except (OutputBusy, FileExistsError) as e:
            raise OutputError(e.strerror) from e
        except OSError as e:
            raise OutputError(f"{folder}: cannot write there ({_one_line(e)}): choose a folder you can write to") from e
        self.folder = folder
        self._convert = {"rgb": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGBA2BGRA, "matte": None}[mode]
        self._params = [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL]
        self._buf: np.ndarray | None = None
        self.frame_size = (info.width, info.height)

    def write(self, index: int, pts: int, image: np.ndarray) -> None:
        if self._convert is not None:
            if self._buf is None:
                self._buf = np.empty_like(image)
            image = cv2.cvtColor(image, self._convert, dst=self._buf)
        name = f"frame_{index + 1:06d}.png"
        ok, buf = cv2.imencode(".png", image, self._params)
        if not ok:
            raise OutputError(f"{self.folder / name}: PNG could not be encoded: report this as a bug")
        try:  # written by Python, not libpng: a full disk is an OSError with its errno, not a log line
            self._new.add(name, buf.data)
        except OSError as e:
            raise OutputError(f"{self.folder / name}: writing failed after {index} frames ({_one_line(e)}): "
                              f"{disk_hint(e)}") from e

    def finish(self, *, complete: bool, keep: Path, has_frames: bool) -> Path | None:
        try:
            if not has_frames:
                self._new.discard()
                return None
            if not complete:
                return self._new.keep(keep)
            try:
                return self._new.commit(replace=self._overwrite)
            except FileExistsError as e:  # a file was put in the target meanwhile: keep ours aside
                kept = self._new.keep(partial_path_for(self.folder))
                raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e
        except OutputError:
            raise
        except OSError as e:
            self._new.discard()
            raise OutputError(f"{self.folder}: cannot move the frames into place ({_one_line(e)}): "
                              f"{disk_hint(e)}") from e
        except BaseException:
            self._new.discard()
            raise


class _AvFile(_Backend):
    """A video file written with PyAV under a temporary name, optionally with audio."""

    def __init__(self, path: Path, fmt: _Container, codec: _Codec, info: VideoInfo, mode: str,
                 quality: str, audio_from: str | Path | None, threads: int, warnings: list[str],
                 overwrite: bool, lookahead: int | None = None) -> None:
        self.path, self.codec = path, codec
        w, h = info.width, info.height
        self.frame_size = (w + w % 2 * codec.even[0], h + h % 2 * codec.even[1])
        self._tb = info.time_base
        self._frame_duration = max(1, round(1 / (Fraction(info.fps or 30) * info.time_base)))
        # The class's functions, not bound methods: a bound method kept on self is a reference
        # cycle, and the encoder (x264's threads and buffers) would then live on until the
        # garbage collector happens to run, one more per file of a batch.
        self._convert = {
            "yuv420p": _AvFile._yuv420p, "yuva420p": _AvFile._yuva420p,
            "yuva444p10le": _AvFile._swscale, "yuv422p10le": _AvFile._swscale,
        }[codec.pix_fmt]
        # I420 needs an even size even where the codec does not: convert a padded copy,
        # then copy the visible part of each plane into the frame.
        self._even = (h + h % 2, w + w % 2)
        self._pad: np.ndarray | None = None
        self._i420 = np.empty((self._even[0] * 3 // 2, self._even[1]), np.uint8)
        self._matte_lut = (16 + np.arange(256) * 219 / 255 + 0.5).astype(np.uint8)  # full -> limited luma
        self._mode = mode
        self._audio: _Audio | None = None

        if path.is_dir():
            raise OutputError(f"{path} is a folder: name the output file, or remove the folder")
        try:  # fails here, with a clear reason, rather than inside FFmpeg
            self._new = NewFile(path, replace=overwrite)
        except (OutputBusy, FileExistsError) as e:
            raise OutputError(e.strerror) from e
        except OSError as e:
            raise OutputError(f"{path}: cannot write there ({_one_line(e)}): "
                              "choose a folder you can write to") from e
        self.tmp = self._new.tmp
        try:
            self._container = av.open(self._new.sink, "w", format=fmt.muxer)
        except (av.FFmpegError, OSError) as e:
            self._new.discard()
            raise OutputError(f"{path}: cannot write there ({_one_line(e)}): choose a folder you can write to") from e
        try:
            stream = self._container.add_stream(codec.codec, rate=Fraction(info.fps or 30).limit_denominator(1001))
            stream.width, stream.height = self.frame_size
            stream.pix_fmt = codec.pix_fmt
            stream.time_base = info.time_base
            cc = stream.codec_context
            cc.time_base = info.time_base
            cc.thread_count = threads
            for name, value in _COLOR_TAGS.items():
                setattr(cc, name, value)
            options = dict(codec.options[quality])
            name = {"libx264": "rc-lookahead", "libvpx-vp9": "lag-in-frames"}.get(codec.codec)
            if lookahead is not None and name is not None:  # shortened, never lengthened
                options[name] = str(min(lookahead, int(options[name])))
            stream.options = options
            if info.rotation:
                stream.set_display_rotation(info.rotation)
            self._stream = stream
            if audio_from is not None:
                self._audio = _Audio(audio_from, self._container, fmt, warnings)
            self._container.start_encoding()  # opens the codecs: a bad setting fails here, not at frame 1
        except BaseException as e:
            if self._audio is not None:
                self._audio.close()
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            self._new.discard()
            if isinstance(e, (InputError, OutputError)) or not isinstance(e, Exception):
                raise
            fix = "use --encoder x264" if codec.codec == "h264_nvenc" else f"use {SUPPORTED_OUTPUTS}"
            raise OutputError(f"{path}: cannot set up {codec.label} ({_one_line(e)}): {fix}") from e

    # ------------------------------------------------------------------ pixel conversion
    def _padded(self, image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """``image`` grown to ``size_hw`` (at most one more row/column, repeating the last)."""
        h, w = image.shape[:2]
        ph, pw = size_hw
        if (ph, pw) == (h, w):
            return image
        if self._pad is None:
            self._pad = np.empty((ph, pw, *image.shape[2:]), np.uint8)
        pad = self._pad
        pad[:h, :w] = image
        if pw > w:
            pad[:h, w] = image[:, w - 1]
        if ph > h:
            pad[h] = pad[h - 1]
        return pad

    def _yuv420p(self, image: np.ndarray) -> av.VideoFrame:
        fw, fh = self.frame_size
        frame = av.VideoFrame(fw, fh, "yuv420p")
        if self._mode == "matte":
            self._fill_grey(frame, image)
            return frame
        cv2.cvtColor(self._padded(image, self._even), cv2.COLOR_RGB2YUV_I420, dst=self._i420)
        self._fill_i420(frame)
        return frame

    def _yuva420p(self, image: np.ndarray) -> av.VideoFrame:
        fw, fh = self.frame_size
        frame = av.VideoFrame(fw, fh, "yuva420p")
        cv2.cvtColor(self._padded(image, self._even), cv2.COLOR_RGBA2YUV_I420, dst=self._i420)
        self._fill_i420(frame)
        _plane(frame, 3, fh, fw)[:] = image[:fh, :fw, 3]
        return frame

    def _fill_i420(self, frame: av.VideoFrame) -> None:
        """Copy the I420 buffer (even, padded size) into the frame's planes."""
        fw, fh = frame.width, frame.height
        ph, pw = self._even
        i420 = self._i420
        flat = i420.reshape(-1)
        cw, ch = pw // 2, ph // 2
        _plane(frame, 0, fh, fw)[:] = i420[:fh, :fw]
        u = flat[pw * ph: pw * ph + cw * ch].reshape(ch, cw)
        v = flat[pw * ph + cw * ch: pw * ph + 2 * cw * ch].reshape(ch, cw)
        _plane(frame, 1, (fh + 1) // 2, (fw + 1) // 2)[:] = u[: (fh + 1) // 2, : (fw + 1) // 2]
        _plane(frame, 2, (fh + 1) // 2, (fw + 1) // 2)[:] = v[: (fh + 1) // 2, : (fw + 1) // 2]

    def _fill_grey(self, frame: av.VideoFrame, matte: np.ndarray) -> None:
        fw, fh = frame.width, frame.height
        h, w = matte.shape
        y = _plane(frame, 0, fh, fw)
        cv2.LUT(matte, self._matte_lut, dst=y[:h, :w])
        if fw > w:
            y[:h, w] = y[:h, w - 1]
        if fh > h:
            y[h] = y[h - 1]
        _plane(frame, 1, (fh + 1) // 2, (fw + 1) // 2)[:] = 128
        _plane(frame, 2, (fh + 1) // 2, (fw + 1) // 2)[:] = 128

    def _swscale(self, image: np.ndarray) -> av.VideoFrame:
        src_format = {"rgb": "rgb24", "rgba": "rgba", "matte": "gray"}[self._mode]
        fw, fh = self.frame_size
        src = av.VideoFrame.from_ndarray(self._padded(image, (fh, fw)), format=src_format)
        return src.reformat(format=self.codec.pix_fmt, src_colorspace="ITU601", dst_colorspace="ITU601",
                            src_color_range="JPEG", dst_color_range="MPEG")

    # ------------------------------------------------------------------ encoding
    def write(self, index: int, pts: int, image: np.ndarray) -> None:
        frame = self._convert(self, image)
        frame.pts = pts
        frame.time_base = self._tb
        frame.duration = self._frame_duration
        sink = self._new.sink
        try:
            self._container.mux(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.mux_until(float(pts * self._tb) + AUDIO_LEAD_S)
        except (av.FFmpegError, OSError) as e:
            if sink.error is not None and sink.error is not e:
                raise sink.error from e  # the write error itself, with its errno
            raise
        if sink.error is not None:  # FFmpeg may have swallowed it: stop at the first failed write
            raise sink.error

    def finish(self, *, complete: bool, keep: Path, has_frames: bool) -> Path | None:
        failure: BaseException | None = None
        try:
            try:
                if has_frames:
                    self._container.mux(self._stream.encode(None))
                    if self._audio is not None:
                        if complete:
                            self._audio.mux_until(float("inf"))
                        self._audio.flush()
            except (av.FFmpegError, OSError) as e:
                failure = e
            finally:
                if self._audio is not None:
                    self._audio.close()
                try:
                    self._container.close()
                except (av.FFmpegError, OSError) as e:
                    failure = failure or e
                failure = self._new.sink.error or failure  # a write FFmpeg did not report
        except BaseException:  # a second Ctrl-C during the flush: stop, but leave no half-written file
            self._new.discard()
            raise
        if failure is not None or not has_frames:
            self._new.discard()
            if failure is not None and has_frames:
                raise OutputError(f"{self.path}: cannot finalize it ({_one_line(failure)}): "
                                  f"{disk_hint(failure)}") from failure
            return None
        try:
            return self._new.commit(keep) if complete else self._new.keep(keep)
        except FileExistsError as e:  # the target appeared meanwhile, and --overwrite was not given
            kept = self._new.keep(partial_path_for(self.path))
            raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e
        except OSError as e:
            self._new.discard()
            raise OutputError(f"{keep}: cannot move {self.tmp.name} into place ({_one_line(e)}): "
                              "check the folder's permissions") from e


def _plane(frame: av.VideoFrame, i: int, h: int, w: int) -> np.ndarray:
    """A writable uint8 view of plane ``i``'s visible h x w samples."""
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]


class _Audio:
    """The first audio stream of a file, muxed into an output as video is written:
    packets copied unchanged when the container accepts the codec, otherwise
    decoded, resampled and re-encoded (Opus 48 kHz for WebM, AAC elsewhere)."""

    def __init__(self, src: str | Path, output: av.container.OutputContainer, fmt: _Container,
                 warnings: list[str]) -> None:
        try:
            self._in = open_media(src)
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"{src}: cannot read its audio ({_one_line(e)}): pass an intact media file") from e
        self._output = output
        self._pending: av.Packet | None = None
        self._done = False
        self._resampler = None
        self.stream: av.audio.stream.AudioStream | None = None
        self.copied = True
        if not self._in.streams.audio:
            warnings.append(f"{src} has no audio stream: the output has none")
            self._in.close()
            self._in = None
            self._done = True
            return
        try:
            self._add_stream(self._in.streams.audio[0], output, fmt, warnings)
        except BaseException:
            self.close()
            raise

    def _add_stream(self, source: av.audio.stream.AudioStream, output: av.container.OutputContainer,
                    fmt: _Container, warnings: list[str]) -> None:
        self._source = source
        name = source.codec_context.name
        if name in output.supported_codecs and (fmt.audio_copy is None or name in fmt.audio_copy):
            self.stream = output.add_stream_from_template(source)
            self.copied = True
        else:
            rate = fmt.audio_rate or source.codec_context.sample_rate
            layout = "stereo" if source.codec_context.layout.nb_channels >= 2 else "mono"
            self.stream = output.add_stream(fmt.audio_codec, rate=rate, layout=layout,
                                            format=_AUDIO_SAMPLE_FORMAT[fmt.audio_codec])
            self.stream.time_base = Fraction(1, rate)
            self._resampler = av.AudioResampler(format=self.stream.codec_context.format, layout=layout, rate=rate)
            self.copied = False
            warnings.append(f"{name} audio is not kept as is in {fmt.muxer} files: re-encoded to {fmt.audio_codec}")
        self._packets = self._in.demux(source)

    def mux_until(self, t_s: float) -> None:
        """Mux source packets whose time is up to ``t_s`` seconds."""
        while not self._done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets, None)
                except av.FFmpegError as e:
                    raise InputError(f"{self._in.name}: reading its audio failed ({_one_line(e)}): "
                                     "the file may be damaged") from e
                if packet is None:
                    self._done = True
                    return
                if packet.dts is None:  # demuxer flush packet
                    continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if float(ts * packet.time_base) > t_s:
                self._pending = packet
                return
            self._pending = None
            self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        if self.copied:
            packet.stream = self.stream
            self._output.mux(packet)
            return
        try:
            frames = self._source.codec_context.decode(packet)
        except av.InvalidDataError:
            return  # one damaged audio packet: skipped (a short gap), as ffmpeg does
        for frame in frames:
            self._encode(frame)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        frames = self._resampler.resample(frame)
        for f in frames:
            self._output.mux(self.stream.encode(f))

    def flush(self) -> None:
        if self.copied or self._in is None:
            return
        for frame in self._source.codec_context.decode(None):
            self._encode(frame)
        self._encode(None)
        self._output.mux(self.stream.encode(None))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
