"""What a video file holds, and opening it for reading.

``probe(path)`` describes a file (``VideoInfo``). Rotation metadata (a phone's
display matrix) is reported, not applied: ``upright()`` turns frames as a player
shows them, and ``info.upright()`` describes them so. Pixels that are not square
(DV, DVD, HDV's 1440x1080: ``pixel_aspect``) are reported by the size the readers
give, in square pixels (``square_size``), as a player shows the picture.
``open_input`` opens a file or URL for its video with a one-line ``InputError``
for everything that is no video (missing, damaged, a text file, audio with cover
art).
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vbg.errors import ConfigError, InputError, one_line
from vbg.media.open import NotAFileError, http_refusal, is_url, no_reply, open_media, picture_stream, timed_out
from vbg.media.tonemap import HDR_TRANSFERS, wide_gamut_sdr

TEXT_DEMUXERS = {"tty", "srt", "ass", "webvtt", "subviewer", "microdvd"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What ``probe`` found in a video file."""

    width: int  # size in square pixels (the coded size unless ``sar`` says otherwise), before rotation
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
    hdr: str | None = None  # "PQ (HDR10)" or "HLG" when the transfer is an HDR one (phones record HLG), else None;
    # the reader tone-maps such frames to SDR (vbg.media.tonemap)
    sequence: bool = False  # an image sequence (vbg.media.sequence): a folder of frames or a %05d pattern
    sar: Fraction | None = None  # pixel aspect of the coded frames where not square (DV's 16:15), else None
    coded: tuple[int, int] | None = None  # (w, h) as stored, where ``sar`` makes it differ from width x height
    interlaced: bool = False  # its first frame is interlaced (1080i, DV): the readers deinterlace it
    wide_gamut: bool = False  # SDR in BT.2020 colours (UHD broadcast): the readers convert it to BT.709
    other_videos: tuple[str, ...] = ()  # the file's other video tracks ("1920x1080 hevc"), not processed

    def upright(self) -> VideoInfo:
        """This video as ``upright`` frames show it: display size, no rotation left."""
        turns = quarter_turns(self.rotation)
        w, h = (self.height, self.width) if turns % 2 else (self.width, self.height)
        return replace(self, width=w, height=h, rotation=0)

    def conversions(self) -> Conversions:
        """What the readers change on the way in, and the tracks they leave out."""
        return Conversions(hdr=self.hdr, wide_gamut=self.wide_gamut, interlaced=self.interlaced,
                           sar=self.sar if self.coded else None, size=(self.width, self.height),
                           stored=self.coded or (self.width, self.height), codec=self.codec,
                           other_videos=self.other_videos)


@dataclass(frozen=True, slots=True)
class Conversions:
    """What the readers (``vbg.media.reader``) change in a file's frames on the way in, from its
    first frame, and its video tracks they leave out: said once per file (``say_conversions``),
    by ``vbg process`` and by the live filter playing a file as its camera."""

    hdr: str | None  # tone-mapped to SDR (vbg.media.tonemap)
    wide_gamut: bool  # BT.2020 SDR converted to BT.709
    interlaced: bool  # deinterlaced (vbg.media.deinterlace)
    sar: Fraction | None  # pixels not square: made square, ``stored`` -> ``size``
    size: tuple[int, int]  # (w, h) in square pixels, before rotation
    stored: tuple[int, int]  # (w, h) as coded
    codec: str
    other_videos: tuple[str, ...]  # "WxH codec" of each video track after the one read


def other_video_tracks(container, stream) -> tuple[str, ...]:
    """``container``'s video tracks other than ``stream`` and its cover pictures, as "WxH codec"."""
    return tuple(f"{o.codec_context.width}x{o.codec_context.height} {o.codec_context.name}"
                 for o in container.streams.video
                 if o is not stream and not o.disposition & av.stream.Disposition.attached_pic)


def say_conversions(log, src, c: Conversions, *, live: bool = False) -> None:
    """One line for each thing the reader changes on the way in (README, "Video files"): HDR
    tone-mapped, BT.2020 colours converted, interlaced fields deinterlaced, pixels that are not
    square made square; and one for video tracks after the first, which are left out. ``live``:
    the file plays as the live filter's camera."""
    if c.hdr is not None:  # vbg.media.tonemap
        log.info("%s: HDR video (%s): tone-mapped to SDR (BT.709), as an SDR screen shows it", src, c.hdr)
    if c.wide_gamut:  # vbg.media.tonemap, WIDE_SDR
        log.info("%s: SDR video in BT.2020 colours: converted to BT.709, as an SDR screen shows them", src)
    if c.interlaced:  # vbg.media.deinterlace
        from .deinterlace import FILTER

        log.info("%s: interlaced video: deinterlaced (%s), one frame out per frame in", src, FILTER)
    if c.other_videos:  # a two-camera or two-angle file: the first video track is the one read
        # ffmpeg's 0:V:N counts video tracks that are not cover pictures, as other_videos does: the
        # first one is N = 1 wherever the file's cover stands (0:v:1 could name the cover)
        n = len(c.other_videos)
        tracks = f"other video track ({c.other_videos[0]}) is" if n == 1 else \
            f"{n} other video tracks ({', '.join(c.other_videos)}) are"
        done, does, use = ("not used", "plays", "play") if live else ("not kept", "processes", "process")
        log.warning("%s: its %s %s: vbg %s the first one (%dx%d %s); to %s another, put it first: "
                    "ffmpeg -i IN -map 0:V:1 -map 0:a? -c copy OUT", src, tracks, done, does, *c.stored, c.codec, use)
    if c.sar is not None:  # square_size
        log.info("%s: its pixels are not square (%d:%d): its %dx%d frames come out as %dx%d square pixels, "
                 "the shape a player shows", src, c.sar.numerator, c.sar.denominator, *c.stored, *c.size)


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


MAX_FPS = 1000  # no video plays more frames a second: a larger "rate" is a time base (raw DV's 1/60000)


def frame_rate(stream) -> Fraction | None:
    """The average frame rate; the stream's nominal one when the average is under one frame a
    second, which is a gap in the timestamps (a damaged file), not the rate the frames play at,
    or over ``MAX_FPS``, which is the demuxer's clock (FFmpeg gives a raw DV file 60000)."""
    average = stream.average_rate
    nominal = stream.guessed_rate or stream.base_rate
    if average and (average < 1 or average > MAX_FPS):
        for rate in (nominal, getattr(stream.codec_context, "framerate", None)):
            if rate and 1 <= rate <= MAX_FPS:
                return rate
        return None if average > MAX_FPS else average
    return average or nominal


def pixel_aspect(stream) -> Fraction | None:
    """The stream's sample (pixel) aspect ratio where its pixels are not square (a DV or DVD
    capture's 16:15 or 64:45, HDV's 1440x1080 at 4:3), else None: square (or within 1 % of it),
    not stated, or a value no video has (outside 1:4 to 4:1, a damaged header). The container's,
    else the codec's."""
    for owner in (stream, stream.codec_context):
        try:
            sar = owner.sample_aspect_ratio
        except (AttributeError, ValueError, ZeroDivisionError):
            continue
        if sar and sar.numerator > 0 and sar.denominator > 0:
            sar = Fraction(sar)
            # within 1 % of square (an encoder's rounding): square; no standard aspect is that close
            return sar if abs(sar - 1) >= Fraction(1, 100) and Fraction(1, 4) <= sar <= 4 else None
    return None


def square_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """``width`` x ``height`` pixels of aspect ``sar`` as square pixels showing the same picture,
    none of its detail dropped: wider when the pixels are wide, taller when they are narrow."""
    if not sar:
        return width, height
    if sar > 1:
        return max(1, round(width * sar)), height
    return width, max(1, round(height / sar))


def open_input(path: str | Path, cancel: threading.Event | None = None) -> av.container.InputContainer:
    _refuse_photo(path)
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
            raise InputError(no_reply(path)) from e
        refused = http_refusal(path, e)
        if refused is not None:
            raise InputError(refused) from e
        raise InputError(f"{path}: not a readable video ({one_line(e)}): pass an intact video file") from e
    if container.format.name in TEXT_DEMUXERS:  # FFmpeg renders text files as "ANSI art" video
        container.close()
        raise InputError(f"{path} is a text file, not a video: pass a video file")
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream: pass a video file")
    if picture_stream(container) is None:
        container.close()
        raise InputError(f"{path} has no video stream, only cover art (a still picture): pass a video file")
    return container


def _refuse_photo(path: str | Path) -> None:
    """A photo is no video: FFmpeg opens one as a one-frame video (of an iPhone's tiled HEIC only
    its first tile), so a HEIC, AVIF or still PNG, JPEG, WebP, BMP or TIFF is named, with the
    command for a photo, before FFmpeg sees it; an animated WebP, which FFmpeg cannot decode, is
    named as such. An animated PNG or a GIF is a video to FFmpeg, and stays one."""
    if is_url(path) or not os.path.isfile(path):  # a FIFO or a device is never read here
        return
    from vbg.images import ANIMATION_HEAD_BYTES, animation_in, heif_kind, image_kind

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            kind = heif_kind(head) or image_kind(head[:32])
            if kind in ("PNG", "WebP"):
                head += f.read(ANIMATION_HEAD_BYTES - len(head))
    except OSError:  # open_media says what is wrong with it
        return
    if kind is None or kind in ("GIF", "PNM"):
        return
    moving = animation_in(head) if kind in ("PNG", "WebP") else None
    if moving == "APNG":
        return
    if moving is not None:
        raise InputError(f"{path} is an animated WebP, which FFmpeg cannot decode: save it as a GIF or a video "
                         "(.mp4) to process it")
    name = Path(path)
    what = kind if kind.startswith(("a ", "an ")) else f"a still {kind} image"  # heif_kind: "a HEIC photo"
    mask = name.with_suffix(".png") if name.suffix.lower() != ".png" else name.with_name(name.stem + "_mask.png")
    raise InputError(f"{path} is {what}, not a video: for its mask or cut-out, vbg segment {shlex.quote(str(name))} "
                     f"-o {shlex.quote(str(mask))} (--cutout for the person on transparency){_sequence_hint(name)}")


def _sequence_hint(name: Path) -> str:
    """Where ``name`` is one numbered frame of several (frame_0001.png beside frame_0002.png), how
    to process them all as a video."""
    runs = list(re.finditer(r"\d+", name.stem))
    if not runs:
        return ""
    r = runs[-1]
    pattern = re.compile(re.escape(name.stem[:r.start()]) + r"\d+" + re.escape(name.stem[r.end():] + name.suffix) + r"\Z")
    try:
        siblings = len([e for e in os.scandir(name.parent or ".") if pattern.match(e.name)])
    except OSError:
        return ""
    if siblings < 2:
        return ""
    from vbg.media.sequence import _suggest  # here: the sequences read their frames' info from this module
    return f"; for the frames it begins, as a video: vbg process {shlex.quote(_suggest(name))}"


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


def probe(path: str | Path, cancel: threading.Event | None = None, *, fps: float | None = None) -> VideoInfo:
    """Describe ``path``'s first video stream (decodes one frame for the rotation).

    Raises ``InputError`` for a missing, corrupt or unsupported file, or one
    without a video stream. A URL is opened with time-outs; ``cancel`` (or a
    signal) ends the wait for it with ``KeyboardInterrupt``. A folder of images or a
    ``frame_%05d.png`` pattern is an image sequence (``vbg.media.sequence``) at ``fps``.
    """
    if not is_url(path):
        from vbg.media.sequence import find_sequence  # it builds on this module

        sequence = find_sequence(path)
        if sequence is not None:
            return sequence.info(fps)
    with open_input(path, cancel) as container:
        stream = picture_stream(container)
        cc = stream.codec_context
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as e:
            if isinstance(e, MemoryError):  # ENOMEM: out of memory, not a damaged file
                raise
            raise InputError(f"{path}: cannot decode its video ({one_line(e)}): the file may be damaged") from e
        if first is None:
            raise InputError(f"{path}: its video stream has no decodable frame: pass an intact video file")
        rotation = frame_rotation(first, stream)
        coded = (cc.width or first.width, cc.height or first.height)
        sar = pixel_aspect(stream)
        width, height = square_size(*coded, sar)
        check_frame_size(path, width, height)
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
            other_videos=other_video_tracks(container, stream),
            hdr=HDR_TRANSFERS.get(cc.color_trc or getattr(first, "color_trc", 0) or 0),
            width=width,
            height=height,
            sar=sar,
            coded=coded if sar else None,
            interlaced=bool(first.interlaced_frame),
            wide_gamut=wide_gamut_sdr(first),
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
