"""Encoding video files with PyAV: the codec and container tables, the file backend
(``AvFile``, for ``vbg process``), and what every writer shares, the live recorder
(``vbg.sinks.recorder``) included: ``padded_size``/``Padder`` (odd sizes),
``add_video_stream`` (colour tags), ``write_errors`` (a failed write stops at once),
the recorder's H.264 options (``live_h264_options``).

In: RGB, RGBA or matte uint8 frames, by the output mode. Out:
packets muxed into a file that ``vbg.fsutil`` created under a fresh name.
H.264 is libx264 (``encoder`` x264, the default here) or NVENC (``nvenc``,
``auto``: ``vbg.encoders``), chosen before the file is created
(``encoder_for``); H.264 outputs of odd size are padded by one pixel
(``frame_size`` is the size in the file); colour is BT.601 limited range,
tagged (``COLOR_TAGS``); alpha is straight. A failed write raises at the packet
that hit it. Thread: not thread-safe; its callers (``VideoWriter``, the
recorder's thread) make one call at a time.

Why (odd sizes, colour, write errors): docs/design/output-files.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vbg.encoders import Encoder, check_encoder, choose_encoder
from vbg.errors import ConfigError, InputError, OutputError, one_line
from vbg.fsutil import NewFile, cannot_write, partial_name
from vbg.fsutil import write_error_hint as disk_hint
from vbg.media.audio import AUDIO_LEAD_S, AudioMux
from vbg.media.info import VideoInfo
from vbg.ranges import QUALITIES

SUPPORTED_OUTPUTS = ".mp4/.m4v/.mkv (H.264), .mov (ProRes), .webm (VP9) or a folder (PNG frames)"

# BT.601 limited range, what cv2's RGB->I420 computes; primaries/transfer of sRGB.
COLOR_TAGS = {"color_range": 1, "colorspace": 6, "color_primaries": 1, "color_trc": 1}

# The live recorder: x264 presets, and the NVENC preset each maps to (p1 fastest .. p7 best).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
NVENC_PRESETS = dict(zip(PRESETS, ("p1", "p1", "p2", "p3", "p3", "p4", "p5", "p6", "p7")))
RECORD_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}  # suffix -> muxer, H.264 in each


def padded_size(width: int, height: int, even: tuple[bool, bool] = (True, True)) -> tuple[int, int]:
    """(width, height) in the file: an odd side that must be ``even`` grows by one pixel."""
    return width + width % 2 * even[0], height + height % 2 * even[1]


class Padder:
    """Images grown by at most one row and one column, repeating the last, into one buffer
    kept for the next frame (an odd size for 4:2:0). Not thread-safe: one per writer."""

    def __init__(self) -> None:
        self._pad: np.ndarray | None = None

    def __call__(self, image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
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


def add_video_stream(container: av.container.OutputContainer, codec: str, *, rate: Fraction,
                     size: tuple[int, int], pix_fmt: str, time_base: Fraction, threads: int,
                     options: dict[str, str]) -> av.video.stream.VideoStream:
    """A video stream of ``codec`` in ``container``, tagged with ``COLOR_TAGS``."""
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt
    stream.time_base = time_base
    cc = stream.codec_context
    cc.time_base = time_base
    cc.thread_count = threads
    for name, value in COLOR_TAGS.items():
        setattr(cc, name, value)
    stream.options = options
    return stream


@contextlib.contextmanager
def write_errors(sink) -> Iterator[None]:
    """Around encoding and muxing into a ``NewFile``'s ``sink``: its first failed write is
    raised as itself (with its errno) at the packet that hit it, also where FFmpeg reported
    it as its own error, or swallowed it to report when the file is closed."""
    try:
        yield
    except (av.FFmpegError, OSError) as e:
        if sink.error is not None and sink.error is not e:
            raise sink.error from e  # the write error itself, with its errno
        raise
    if sink.error is not None:  # FFmpeg may have swallowed it: stop at the first failed write
        raise sink.error


def live_h264_options(encoder: Encoder, preset: str, crf: int) -> dict[str, str]:
    """The recorder's options: x264 ``preset``/``crf``; NVENC with ``-tune ll`` (low latency),
    the preset mapped to p1..p7 and ``crf`` as its constant quality ``cq``."""
    if encoder.nvenc:
        return {"preset": NVENC_PRESETS[preset], "tune": "ll", "rc": "vbr", "cq": str(crf), "b": "0",
                "gpu": str(encoder.gpu)}
    return {"preset": preset, "crf": str(crf)}


@dataclass(frozen=True, slots=True)
class Codec:
    """One video encoding: codec, pixel format, options per quality."""

    label: str  # for messages
    codec: str
    pix_fmt: str
    even: tuple[bool, bool]  # (width, height) must be even: an odd one is padded by one pixel
    options: dict[str, dict[str, str]]  # quality -> encoder options


# rc-lookahead: each preset's own (x264's tables), spelled out because a memory budget
# only ever shortens it (VideoWriter's ``lookahead``), never lengthens a fast preset's.
H264 = Codec("H.264", "libx264", "yuv420p", (True, True), {
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


def nvenc_h264(gpu: int) -> Codec:
    return Codec("H.264 (NVENC)", "h264_nvenc", "yuv420p", (True, True),
                  {q: {**options, "gpu": str(gpu)} for q, options in NVENC_OPTIONS.items()})


# ProRes has no quality knob worth exposing: the profile sets the data rate. FFmpeg's
# ProRes 422 garbles the last columns of an odd width (4:2:2 chroma): padded like H.264.
_PRORES_4444 = Codec("ProRes 4444", "prores_ks", "yuva444p10le", (False, False),
                      {q: {"profile": "4", "vendor": "apl0"} for q in QUALITIES})
_PRORES_422HQ = Codec("ProRes 422 HQ", "prores_ks", "yuv422p10le", (True, False),
                       {q: {"profile": "3", "vendor": "apl0"} for q in QUALITIES})
# lag-in-frames 25: libvpx's default and its most (26 and up fail to open the encoder).
_VP9_OPTIONS = {
    "fast": {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
    "balanced": {"deadline": "good", "cpu-used": "5", "crf": "30", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
    "best": {"deadline": "good", "cpu-used": "2", "crf": "24", "b": "0", "row-mt": "1", "lag-in-frames": "25"},
}
_VP9_ALPHA = Codec("VP9", "libvpx-vp9", "yuva420p", (False, False), _VP9_OPTIONS)
_VP9 = Codec("VP9", "libvpx-vp9", "yuv420p", (False, False), _VP9_OPTIONS)


@dataclass(frozen=True, slots=True)
class Container:
    """A file format: muxer, the codec per mode, the audio codec used when copying is impossible."""

    muxer: str
    codecs: dict[str, Codec]  # mode -> codec; a missing mode is refused
    audio_codec: str  # for audio that cannot be copied
    audio_rate: int | None  # None: keep the source's rate
    audio_copy: frozenset[str] | None  # codecs copied as they are; None: whatever the muxer takes


H264_CONTAINER = {"rgb": H264, "matte": H264}
# FFmpeg's mp4/mov muxers accept more (Vorbis, FLAC, ...) than players play there.
_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus"})
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le", "pcm_f32be"}
FORMATS = {
    ".mp4": Container("mp4", H264_CONTAINER, "aac", None, _MP4_AUDIO),
    ".m4v": Container("mp4", H264_CONTAINER, "aac", None, _MP4_AUDIO),
    ".mkv": Container("matroska", H264_CONTAINER, "aac", None, None),
    ".mov": Container("mov", {"rgb": _PRORES_422HQ, "rgba": _PRORES_4444, "matte": _PRORES_422HQ}, "aac", None,
                       _MOV_AUDIO),
    ".webm": Container("webm", {"rgb": _VP9, "rgba": _VP9_ALPHA, "matte": _VP9}, "libopus", 48000,
                        frozenset({"opus", "vorbis"})),
}


def output_format(path: Path, mode: str) -> tuple[Container, Codec]:
    """The container and codec a file output ``path`` is written with in ``mode``
    (rgb / rgba / matte); :class:`OutputError` when the suffix cannot hold it."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: cannot write {path.suffix!r} files: use {SUPPORTED_OUTPUTS}")
    codec = fmt.codecs.get(mode)
    if codec is None:
        raise OutputError(f"{path}: {fmt.codecs['rgb'].label} has no alpha: use .mov, .webm or a folder")
    return fmt, codec


def encoder_for(path: Path, mode: str, encoder: str, gpu: int = 0, *, sequence: bool = False,
                size: tuple[int, int] | None = None) -> Encoder | None:
    """The H.264 encoder ``encoder`` (``vbg.ranges.ENCODERS``) means for output ``path``; None
    when the output is no H.264 (ProRes, VP9, PNG: nothing probed; a format ``output_format``
    refuses is left to it). ``nvenc`` for ProRes, VP9 or PNG is a ``ConfigError``, and where
    NVENC does not open a ``DeviceError``."""
    check_encoder(encoder)
    fmt = None if sequence else FORMATS.get(Path(path).suffix.lower())
    codec = fmt.codecs.get(mode) if fmt is not None else None
    if codec is H264:
        return choose_encoder(encoder, gpu, size)
    if encoder == "nvenc" and (sequence or codec is not None):
        what = "a folder of PNG frames" if sequence else codec.label
        raise ConfigError(f"--encoder nvenc: {path} is {what}, which NVENC does not encode: "
                          "write .mp4, .m4v or .mkv, or leave --encoder out")
    return None


class AvFile:
    """A video file written with PyAV under a temporary name, optionally with audio."""

    def __init__(self, path: Path, fmt: Container, codec: Codec, info: VideoInfo, mode: str,
                 quality: str, audio_from: str | Path | None, threads: int, warnings: list[str],
                 overwrite: bool, lookahead: int | None = None) -> None:
        self.path, self.codec = path, codec
        w, h = info.width, info.height
        self.frame_size = padded_size(w, h, codec.even)
        self._tb = info.time_base
        self._frame_duration = max(1, round(1 / (Fraction(info.fps or 30) * info.time_base)))
        # The class's functions, not bound methods: a bound method kept on self is a reference
        # cycle, and the encoder (x264's threads and buffers) would then live on until the
        # garbage collector happens to run, one more per file of a batch.
        self._convert = {
            "yuv420p": AvFile._yuv420p, "yuva420p": AvFile._yuva420p,
            "yuva444p10le": AvFile._swscale,
            "yuv422p10le": AvFile._grey10 if mode == "matte" else AvFile._swscale,
        }[codec.pix_fmt]
        # I420 needs an even size even where the codec does not: convert a padded copy,
        # then copy the visible part of each plane into the frame.
        self._even = (h + h % 2, w + w % 2)
        self._pad = Padder()
        self._i420 = np.empty((self._even[0] * 3 // 2, self._even[1]), np.uint8)
        self._matte_lut = (16 + np.arange(256) * 219 / 255 + 0.5).astype(np.uint8)  # full -> limited luma
        self._matte_lut10 = (64 + np.arange(256) * 876 / 255 + 0.5).astype(np.uint16)  # 10-bit: 64 .. 940
        self._mode = mode
        self._audio: AudioMux | None = None

        if path.is_dir():
            raise OutputError(f"{path} is a folder: name the output file, or remove the folder")
        try:  # fails here, with a clear reason, rather than inside FFmpeg
            self._new = NewFile(path, replace=overwrite)
        except OSError as e:
            raise cannot_write(path, e) from e
        self.tmp = self._new.tmp
        try:
            self._container = av.open(self._new.sink, "w", format=fmt.muxer)
        except (av.FFmpegError, OSError) as e:
            self._new.discard()
            raise cannot_write(path, e) from e
        self._open_streams(fmt, codec, info, quality, audio_from, threads, warnings, lookahead)

    def _open_streams(self, fmt: Container, codec: Codec, info: VideoInfo, quality: str,
                      audio_from: str | Path | None, threads: int, warnings: list[str], lookahead: int | None) -> None:
        """The video stream (and the audio, if any) in the open container, codecs opened; on any
        failure (an interrupt too) the container is closed and the temporary file goes."""
        path = self.path
        try:
            options = dict(codec.options[quality])
            name = {"libx264": "rc-lookahead", "libvpx-vp9": "lag-in-frames"}.get(codec.codec)
            if lookahead is not None and name is not None:  # shortened, never lengthened
                options[name] = str(min(lookahead, int(options[name])))
            stream = add_video_stream(self._container, codec.codec,
                                      rate=Fraction(info.fps or 30).limit_denominator(1001), size=self.frame_size,
                                      pix_fmt=codec.pix_fmt, time_base=info.time_base, threads=threads,
                                      options=options)
            if info.rotation:
                stream.set_display_rotation(info.rotation)
            self._stream = stream
            if audio_from is not None:
                self._audio = AudioMux(audio_from, self._container, fmt, warnings)
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
            raise OutputError(f"{path}: cannot set up {codec.label} ({one_line(e)}): {fix}") from e

    # ------------------------------------------------------------------ pixel conversion
    def _yuv420p(self, image: np.ndarray) -> av.VideoFrame:
        fw, fh = self.frame_size
        frame = av.VideoFrame(fw, fh, "yuv420p")
        if self._mode == "matte":
            self._fill_grey(frame, image)
            return frame
        cv2.cvtColor(self._pad(image, self._even), cv2.COLOR_RGB2YUV_I420, dst=self._i420)
        self._fill_i420(frame)
        return frame

    def _yuva420p(self, image: np.ndarray) -> av.VideoFrame:
        fw, fh = self.frame_size
        frame = av.VideoFrame(fw, fh, "yuva420p")
        cv2.cvtColor(self._pad(image, self._even), cv2.COLOR_RGBA2YUV_I420, dst=self._i420)
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

    def _grey10(self, matte: np.ndarray) -> av.VideoFrame:
        """A matte as 10-bit 4:2:2 grey (ProRes 422): its luma 64 .. 940 by table, as ``_fill_grey``
        does in 8 bits; swscale's gray -> limited range topped out at 937 (99.7%: the layer behind
        showed through the whole person in an editor's luma matte)."""
        fw, fh = self.frame_size
        frame = av.VideoFrame(fw, fh, "yuv422p10le")
        h, w = matte.shape
        y = _plane16(frame, 0, fh, fw)
        np.take(self._matte_lut10, matte, out=y[:h, :w])
        if fw > w:
            y[:h, w:] = y[:h, w - 1:w]
        if fh > h:
            y[h:] = y[h - 1]
        _plane16(frame, 1, fh, (fw + 1) // 2)[:] = 512
        _plane16(frame, 2, fh, (fw + 1) // 2)[:] = 512
        return _tagged(frame)

    def _swscale(self, image: np.ndarray) -> av.VideoFrame:
        src_format = {"rgb": "rgb24", "rgba": "rgba", "matte": "gray"}[self._mode]
        fw, fh = self.frame_size
        src = av.VideoFrame.from_ndarray(self._pad(image, (fh, fw)), format=src_format)
        return _tagged(src.reformat(format=self.codec.pix_fmt, src_colorspace="ITU601", dst_colorspace="ITU601",
                                    src_color_range="JPEG", dst_color_range="MPEG"))

    # ------------------------------------------------------------------ encoding
    def write(self, index: int, pts: int, image: np.ndarray) -> None:
        frame = self._convert(self, image)
        frame.pts = pts
        frame.time_base = self._tb
        frame.duration = self._frame_duration
        with write_errors(self._new.sink):
            self._container.mux(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.mux_until(float(pts * self._tb) + AUDIO_LEAD_S)

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
                raise OutputError(f"{self.path}: cannot finalize it ({one_line(failure)}): "
                                  f"{disk_hint(failure)}") from failure
            return None
        try:
            return self._new.commit(keep) if complete else self._new.keep(keep)
        except FileExistsError as e:  # the target appeared meanwhile, and --overwrite was not given
            kept = self._new.keep(partial_name(self.path))
            raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e
        except OSError as e:
            self._new.discard()
            raise OutputError(f"{keep}: cannot move {self.tmp.name} into place ({one_line(e)}): "
                              "check the folder's permissions") from e


def _tagged(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` with ``COLOR_TAGS``: FFmpeg's ProRes encoder writes each frame's header from the
    frame's own tags, not the stream's (they said primaries and transfer unspecified)."""
    for name, value in COLOR_TAGS.items():
        setattr(frame, name, value)
    return frame


def _plane16(frame: av.VideoFrame, i: int, h: int, w: int) -> np.ndarray:
    """A writable uint16 view of plane ``i``'s visible h x w samples (a 10-bit format, little-endian)."""
    return _plane(frame, i, h, 2 * w).view(np.uint16)


def _plane(frame: av.VideoFrame, i: int, h: int, w: int) -> np.ndarray:
    """A writable uint8 view of plane ``i``'s visible h x w samples."""
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
