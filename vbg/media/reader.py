"""Decoding every frame of a video, for ``vbg process`` and the live file source.

In: a path or URL, an optional ``cancel`` event, ``rotate`` and decoder
``threads``. Out: ``DecodedFrame``s in order, each a new upright RGB uint8
array with its pts (the caller keeps it); a decode error is an ``InputError``
that says how many frames were read. Thread: the reading thread (``vbg
process``'s reader thread, the live capture thread); ``cancel`` from any.

``VideoReader(path)`` yields every frame as RGB with its original ``pts``, so a
variable frame rate survives the round trip; HDR video (HLG, PQ) is tone-mapped to
SDR on the way (``vbg.media.tonemap``), interlaced video deinterlaced
(``vbg.media.deinterlace``), pixels that are not square (DV, HDV) made square at
the size a player shows (``vbg.media.info.square_size``). ``VideoReader(path,
rotate=info.rotation)`` turns the frames upright (``vbg.media.info``): ``vbg
process`` works on upright frames and writes an upright file without a display
matrix, which plays the same in every player.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vbg.errors import InputError, one_line
from vbg.media.deinterlace import FILTER as DEINTERLACE_FILTER
from vbg.media.deinterlace import whole_frames
from vbg.media.info import frame_rate, frame_rotation, open_input, pixel_aspect, square_size, upright
from vbg.media.open import TIMEOUT_ENV, NetworkFrames, alpha_decoder, is_url, open_media, picture_stream
from vbg.media.timeline import Joins, Shifter, joins_of
from vbg.media.tonemap import SdrFrames

log = logging.getLogger("vbg.reader")
MIDWAY = "vbg_midway"  # a log record's (kind, frame number) for a change met part-way: a --ray part's driver says
# the earliest of each kind its parts met (vbg.offline.distributed)

@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # 0, 1, 2, ... in decode output (presentation) order
    pts: int  # original pts in ``VideoInfo.time_base``
    time_s: float  # pts * time_base (need not start at 0)
    rgb: np.ndarray  # H x W x 3 uint8: coded size, or upright with VideoReader(rotate=...)


def fitted(size: tuple[int, int], first: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Where a frame of ``size`` (w, h) goes in a picture of the ``first`` frames' size: (x, y, w, h),
    scaled to fit with its shape kept and centred; None when it fills the picture (the same
    shape, give or take the two pixels that rounding a size to even numbers moves)."""
    w, h = size
    fw, fh = first
    scale = min(fw / w, fh / h)
    sw, sh = max(1, min(fw, round(w * scale))), max(1, min(fh, round(h * scale)))
    if fw - sw <= 2 and fh - sh <= 2:
        return None
    return (fw - sw) // 2, (fh - sh) // 2, sw, sh


def letterboxed(rgb: np.ndarray, first: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H x W x 3) at the ``first`` frames' size (w, h): scaled to fill it when it has the same
    shape, else scaled to fit with its shape kept, black bars on the rest (never stretched)."""
    h, w = rgb.shape[:2]
    box = fitted((w, h), first)
    if box is None:
        return np.ascontiguousarray(cv2.resize(rgb, first, interpolation=cv2.INTER_AREA))
    x, y, sw, sh = box
    out = np.zeros((first[1], first[0], 3), np.uint8)
    cv2.resize(rgb, (sw, sh), dst=out[y:y + sh, x:x + sw], interpolation=cv2.INTER_AREA)
    return out


def say_size_change(path: str, where: str, size: tuple[int, int], first: tuple[int, int],
                    frame: int | None = None) -> None:
    """The one warning a reader gives when its frames change size ``where`` (``frame 31``,
    ``f05.png``): each later frame is scaled to the first size, its shape kept (``fitted``).
    ``frame``: that frame's number, for a ``--ray`` part's driver (``MIDWAY``)."""
    box = fitted(size, first)
    if box is None:
        how = "each is scaled to %dx%d" % first
    else:
        bars = "at the sides" if box[0] else "above and below"
        how = "each is scaled to fit %dx%d with its shape kept, black bars %s" % (*first, bars)
    log.warning("%s: its frames change size at %s (%dx%d, the first ones %dx%d): %s", path, where, *size, *first, how,
                extra={MIDWAY: ("size", frame)})


def _scaling(size: tuple[int, int], to: tuple[int, int]) -> str:
    """swscale's method for ``size`` to ``to``: area averaging to shrink, bicubic where a side grows
    (DV's 720 pixels to 768 square ones)."""
    return "AREA" if to[0] <= size[0] and to[1] <= size[1] else "BICUBIC"


GAP_STEPS = 1.5  # frames further apart than this many frame intervals, where the file shows damage, have frames lost between them
SIGNAL_FRAMES = 16  # damage shown this many frames handed out before a gap, or fewer, is that gap's (decoder delay, reordering)
FLAGGED_KEPT = 64  # decoded frames flagged damaged, waiting to be handed out: the oldest are let go past this
SENT_KEPT = 64  # the latest packets' times sent to the decoder, looked at for frames it swallowed in a gap
SENT_MIN_BYTES = 64  # smaller packets are placeholders the decoder skips by design (an AVI's dropped-frame N-VOP)
TORN_LOOK = 3  # packets looked at after one flagged corrupt: a keyframe there where the clock leaps is a file joined on
JOIN_LEAP_S = 0.5  # ... where it leaps on by this much at least (recordings begun half a second or more apart)


@dataclass(slots=True)
class Damage:
    """What decoding a damaged file lost (an MPEG-TS recording of a weak broadcast, a stream cut off
    and resumed): ``missing`` frames that never decoded (a gap in the timestamps), ``patched`` frames
    the decoder hid errors in (blocks or smears may show), between ``first_s`` and ``last_s``
    (seconds from the file's first frame, once ``shifted``). The output keeps its timing around a gap:
    the frame before it stays up for as long."""

    missing: int = 0
    patched: int = 0
    first_s: float = 0.0
    last_s: float = 0.0

    def merged(self, other: Damage | None) -> Damage:
        """Both records' frames (a ``--ray`` file's parts, each counting its own frames)."""
        if other is None:
            return self
        return Damage(self.missing + other.missing, self.patched + other.patched,
                      min(self.first_s, other.first_s), max(self.last_s, other.last_s))

    def shifted(self, by: float) -> Damage:
        return Damage(self.missing, self.patched, self.first_s + by, self.last_s + by)

    def line(self, timed: bool = True) -> str:
        """The one line said after the input's name (``vbg process``); ``timed``: the output keeps
        frame timing (a video file; a PNG folder numbers the frames there are)."""
        where = (f"at {self.first_s:.1f} s" if round(self.first_s, 1) == round(self.last_s, 1)
                 else f"between {self.first_s:.1f} s and {self.last_s:.1f} s")
        kept = ("the frame before each gap stays up, the timing is kept" if timed
                else "the PNG folder's numbering runs on past each gap")
        parts = []
        if self.missing:
            parts.append(f"{_frames(self.missing)} {'is' if self.missing == 1 else 'are'} missing ({kept})")
        if self.patched:
            parts.append(f"{_frames(self.patched)} came out patched by the decoder (blocks or smears may show)")
        return (f"the file is damaged {where}: {' and '.join(parts)}; only a better copy of the "
                "recording mends it")


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


MAX_TIMESTAMP_JUMP_S = 600  # a longer gap between two frames is damage, not a pause (an output of one still frame)

EBML_ID = b"\x1a\x45\xdf\xa3"  # a Matroska or WebM file's first element: its EBML header
SEGMENT_ID = b"\x18\x53\x80\x67"  # the element after it, holding everything else
MATROSKA_HEAD = 1024  # bytes read for the two: an EBML header is some 40


def _vint(data: bytes, at: int) -> tuple[int, int | None] | None:
    """The EBML variable-length integer at ``data[at]``: (its length in bytes, its value, None for
    the "unknown" size of all data bits 1); None where it is not one or runs past ``data``."""
    if at >= len(data) or not data[at]:
        return None
    length = 9 - data[at].bit_length()  # the marker bit: 0x80 one byte, ... 0x01 eight
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at:at + length], "big") & ((1 << 7 * length) - 1)
    return length, None if value == (1 << 7 * length) - 1 else value


def matroska_end(head: bytes) -> int | None:
    """Where a Matroska or WebM file whose first bytes are ``head`` ends as its header says: the
    offset past its Segment (the Segment's data offset plus its stated size). None where no end is
    stated: a Segment of unknown size (a recording still being written: OBS, a live stream), or a
    ``head`` that is not an EBML header followed at once by a Segment (no verdict)."""
    if not head.startswith(EBML_ID):
        return None
    size = _vint(head, len(EBML_ID))
    if size is None or size[1] is None:
        return None
    at = len(EBML_ID) + size[0] + size[1]
    if head[at:at + len(SEGMENT_ID)] != SEGMENT_ID:
        return None
    size = _vint(head, at + len(SEGMENT_ID))
    if size is None or size[1] is None:
        return None
    return at + len(SEGMENT_ID) + size[0] + size[1]


def cut_short(path: str) -> tuple[int, int] | None:
    """(bytes held, bytes stated) where the local Matroska or WebM file ``path`` ends before the end
    its header states (``matroska_end``: a copy or download that stopped part-way); None where it
    does not, or nothing is known (not a regular file, unreadable, no size stated)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never opened: a FIFO would block
            return None
        with open(path, "rb") as f:
            held = os.fstat(f.fileno()).st_size
            head = f.read(MATROSKA_HEAD)
    except OSError:
        return None
    end = matroska_end(head)
    return None if end is None or end <= held else (held, end)


class VideoReader:
    """Every frame of ``path``'s first video stream as RGB with its original pts.

    ``for frame in reader`` yields ``DecodedFrame``s; a decode error mid-file,
    timestamps that jump forward by more than ``MAX_TIMESTAMP_JUMP_S``, or a
    Matroska or WebM file that ends before its stated size (``cut_short``)
    raise ``InputError`` that says how many frames were read (``frames_read``),
    so the caller can still finalize what it has. A frame without a pts gets
    the previous one plus one frame interval. ``rotate`` (``VideoInfo.rotation``)
    turns each frame upright; None: as the first decoded frame's display
    rotation says (``rotation`` then holds it).

    The live file source (``vbg.capture.video_file``) paces and loops the same
    reader one layer down: ``frames()`` (PyAV's frames, errors as FFmpeg raises
    them), ``rgb(frame)`` (converted only when handed out) and ``rewind()``.
    """

    def __init__(self, path: str | Path, cancel: threading.Event | None = None, *, rotate: int | None = 0,
                 threads: int | None = None, container: av.container.InputContainer | None = None,
                 joined: bool = False) -> None:
        """``threads``: FFmpeg's decoding threads (None: as many as it likes); with frame
        threading each holds a picture, so a memory budget caps them for large frames.
        ``container``: ``path`` already opened by the caller (with its own messages for
        what is no video), holding a picture stream; the reader closes it. ``joined``: a file of
        recordings joined end to end, each part's clock starting over, plays its parts one after
        the other (``vbg.media.timeline``: a scan of the file's packets first; ``vbg process``)."""
        self.path = str(path)
        self.rotation = rotate
        self._container = open_input(path, cancel) if container is None else container
        self._stream = picture_stream(self._container)
        self._stream.thread_type = "AUTO"
        if threads is not None:
            self._stream.codec_context.thread_count = threads
        self._threads = threads
        self._alpha = alpha_decoder(self._stream, threads)  # a transparent WebM's: libvpx keeps its alpha
        self.time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
        self.rate: Fraction = frame_rate(self._stream) or Fraction(30)
        self._step = max(1, round(1 / (self.rate * self.time_base)))
        self._cancel = cancel
        self._network: NetworkFrames | None = None
        self.frames_read = 0
        # Every frame comes out at the stream's first size (as probe reports it): a recording
        # whose resolution changes part-way (adaptive streaming, a joined file) has its later
        # frames scaled to it, as FFmpeg's own tools do, instead of stopping the run.
        cc = self._stream.codec_context
        self.sar = pixel_aspect(self._stream)  # not square (DV, HDV): every frame is shown at square_size
        self._size: tuple[int, int] | None = square_size(cc.width, cc.height, self.sar) \
            if cc.width and cc.height else None
        self._resized = False
        self._fields = False  # this pass of frames() met an interlaced frame: deinterlacing from it on
        self._quiet = False  # the frame being read comes before a seek's target: its lines are not said
        self._said_fields = False  # the line for a file whose fields start part-way
        self._told_join = False  # the line for a file of recordings joined end to end
        self._decoded = 0  # frames() has given since the start (or the last rewind): the last one's number
        self._seen = 0  # frames this pass of frames() has decoded
        self._anchor: tuple[int, int] | None = None  # seek(): (pts, number) of the frame numbering resumes at
        self._sought = False  # seek() was called: frames() starts at the first keyframe packet
        self._to_rgb = SdrFrames()  # HDR (a phone's HLG, HDR10) comes out tone-mapped to SDR
        # Damage: packets the demuxer flagged corrupt (data lost: an MPEG-TS continuity error), the
        # pts of decoded frames the decoder flagged (errors concealed) not yet handed out, and what
        # the frames handed out met: (index, time s, frames missing before it, patched 0/1).
        self._torn = 0
        self._flagged: dict[int | None, None] = {}  # in order: the oldest let go past FLAGGED_KEPT
        self._signal_at: int | None = None  # frames handed out when the latest damage showed (torn or flagged)
        self._hurt: list[tuple[int, float, int, int]] = []
        self._high: int | None = None  # the latest pts handed out
        self._gaps: list[tuple[int, int]] = []  # the latest jumps counted missing: (pts before, pts after)
        self._jump: tuple[int, int, int] | None = None  # the latest jump not counted: (pts before, after, frame)
        self._sent: deque[int] = deque(maxlen=SENT_KEPT)  # the pts of the latest packets sent to the decoder
        self._torn_look = 0  # packets still looked at for a keyframe after one flagged corrupt
        self._last_t: int | None = None  # the latest packet's decoding time
        self._joins: Joins | None = joins_of(path, self._container) if joined else None
        self._shifter = None if self._joins is None else Shifter(self._joins, self._stream.index, self.time_base)

    @property
    def size(self) -> tuple[int, int] | None:
        """(w, h) of the frames ``rgb`` gives, before rotation: square pixels (None until known)."""
        return self._size

    @property
    def deinterlacing(self) -> bool:
        """The frames read so far turned interlaced, and ``frames()`` deinterlaces them."""
        return self._fields

    @property
    def stream(self) -> av.video.stream.VideoStream | None:
        """The picture stream being decoded (None once closed)."""
        return self._stream

    def frames(self) -> Iterator[av.VideoFrame]:
        """The decoded frames as PyAV gives them, from where the reader stands: no conversion,
        no timestamp checks, a decoding error raised as FFmpeg raises it; interlaced ones
        deinterlaced (``vbg.media.deinterlace``: the same count and timestamps). A URL is decoded
        on a helper (``NetworkFrames``), so that ``cancel`` ends a wait for a silent server."""
        if self._container is None:
            raise ValueError("VideoReader is closed")
        frames: Iterable[av.VideoFrame]
        if is_url(self.path):  # the helper owns the container from here on
            frames = self._network = NetworkFrames(self._container, self._stream, self._cancel)
        elif self._sought:
            frames, self._sought = self._demuxed(keyed=False), False
        else:
            frames = self._demuxed()
        self._fields = False  # each pass starts afresh (after a seek or a rewind): no frame of before held
        self._seen = 0
        yield from whole_frames(self._counted(frames), self.time_base, self._fields_start)

    def _counted(self, frames: Iterable[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """``frames`` as they are, each one counted and its size checked (for ``frames``)."""
        for frame in frames:
            if self.rotation is None:
                self.rotation = frame_rotation(frame, self._stream)  # before the filter: it keeps no side data
            if frame.is_corrupt:  # before the filter too: the deinterlaced frame keeps the pts, not the flag
                self._flagged[frame.pts] = None
                self._signal_at = self.frames_read
                if len(self._flagged) > FLAGGED_KEPT:  # a live source never hands them out through __iter__
                    del self._flagged[next(iter(self._flagged))]
            self._decoded += 1
            self._seen += 1
            # after a seek, the frames before the one asked for are another part's to say (--ray)
            anchor = self._anchor
            self._quiet = anchor is not None
            if anchor is not None and frame.pts is not None and frame.pts >= anchor[0]:
                self._decoded, self._anchor, self._quiet = anchor[1] + 1, None, False
            size = square_size(frame.width, frame.height, self.sar)
            if self._size is None:
                self._size = size
            elif size != self._size and not self._resized:  # said here: the live source converts only some
                self._resized = True
                if not self._quiet:
                    say_size_change(self.path, f"frame {self._decoded}", size, self._size, self._decoded)
            yield frame

    def _fields_start(self) -> None:
        """The frame just counted is this pass's first interlaced one: deinterlacing from it on. A first
        interlaced frame is said by its VideoInfo (a part's, by the part before: not known here)."""
        self._fields = True
        if self._seen > 1 and not self._quiet and not self._said_fields:
            self._said_fields = True
            log.info("%s: its frames are interlaced from frame %d on: deinterlaced (%s), one frame out "
                     "per frame in", self.path, self._decoded, DEINTERLACE_FILTER,
                     extra={MIDWAY: ("fields", self._decoded)})

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """``frame`` as upright RGB (H x W x 3 uint8), at the stream's first size (``fitted``); an HDR frame
        tone-mapped to SDR (``vbg.media.tonemap``)."""
        coded = (frame.width, frame.height)
        if self._size is None:
            self._size = square_size(*coded, self.sar)
        # SdrFrames converts with threads=1: each frame gets its own swscale context, and the default
        # starts (and ends) a pool of slice threads for every one of them; one is also faster here.
        if coded == self._size:
            return upright(self._to_rgb(frame), self.rotation or 0)
        w, h = self._size
        box = fitted(square_size(*coded, self.sar), self._size)
        if box is None:
            return upright(self._to_rgb(frame, w, h, _scaling(coded, (w, h))), self.rotation or 0)
        x, y, sw, sh = box  # another shape (a joined file's portrait part): fitted, never stretched
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[y:y + sh, x:x + sw] = self._to_rgb(frame, sw, sh, _scaling(coded, (sw, sh)))
        return upright(rgb, self.rotation or 0)

    def seek(self, pts: int, number: int | None = None, *, key_ts: int | None = None) -> None:
        """Before reading: decoding starts at the keyframe at or before ``pts`` (in ``time_base``), so
        the frames from ``pts`` on come out whole (a file only; ``vbg process --ray``'s parts).
        ``key_ts``: that keyframe's decoding timestamp, where the caller knows it: the target in a
        file with no index (MPEG-TS), where a seek lands on the frame at its target, keyframe or
        not; packets before the first keyframe reached are skipped, never decoded half.
        ``number``: the frame at ``pts`` is the file's frame ``number`` (from 0): the lines said of
        a change part-way name the file's frame, and frames before it say nothing."""
        if self._container is None or is_url(self.path):
            raise ValueError("VideoReader.seek: only an open file can seek")
        target = pts if key_ts is None else min(pts, key_ts)
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._alpha = alpha_decoder(self._stream, self._threads)  # (the seek flushed only the stream's own)
        self._anchor = None if number is None else (pts, number)
        self._sought = True

    def _demuxed(self, keyed: bool = True) -> Iterator[av.VideoFrame]:
        """The frames decoded from the stream's packets, each packet the demuxer flagged corrupt
        counted. ``keyed=False`` (after a seek): from the first keyframe packet on, since a frame
        decoded without the keyframe before it comes out damaged, or fails where the coding
        changed part-way."""
        for packet in self._container.demux(self._stream):
            keyed = keyed or packet.is_keyframe
            if keyed:
                if self._shifter is not None:
                    self._shifter.shift(packet)
                    if self._shifter.joined:
                        self._said_join()
                t = packet.dts if packet.dts is not None else packet.pts
                if self._torn_look and not packet.size:  # the end, a flag still looked at: damage
                    self._torn_look = 0
                    self._signal_at = self.frames_read
                if self._torn_look and not packet.is_corrupt:
                    self._torn_look -= 1
                    d = 0 if t is None or self._last_t is None else t - self._last_t
                    leap = not 0 <= d <= GAP_STEPS * self._step  # the clock leaps here
                    if leap or not self._torn_look:
                        self._torn_look = 0
                        # a keyframe where the clock goes back, or on by half a second or more: a recording
                        # joined on, not data lost (a shorter leap to a keyframe may be either: taken as a loss)
                        if not (leap and packet.is_keyframe and (d < 0 or d * self.time_base >= JOIN_LEAP_S)):
                            self._signal_at = self.frames_read
                if packet.is_corrupt:  # data lost (a continuity error), or another recording joined on (cat)
                    self._torn += 1
                    self._torn_look = TORN_LOOK
                if t is not None:
                    self._last_t = t
                if packet.pts is not None and packet.size >= SENT_MIN_BYTES:
                    self._sent.append(packet.pts)
                if self._alpha is None:
                    yield from packet.decode()
                    continue
                for frame in self._alpha.decode(packet):
                    if frame.time_base is None:
                        frame.time_base = self._stream.time_base
                    yield frame

    def _said_join(self) -> None:
        """The line for the first part after the first (``joined``)."""
        if self._joins is None or self._told_join:
            return
        self._told_join = True
        at_s = (self._joins.at_us[0] - self._joins.origin_us) / 1e6
        log.info("%s: recordings joined end to end: its clock starts over at %.1f s, and each part is put after "
                 "the one before (%d parts)", self.path, at_s, len(self._joins.shifts) + 1)

    def rewind(self) -> None:
        """Back to the first frame, for ``frames()`` again: a file seeks; a stream cannot, so it
        is opened again (``open_media``: its errors, and KeyboardInterrupt once ``cancel`` is set)."""
        self._decoded = 0
        if self._network is None:
            self._container.seek(0)
            self._alpha = alpha_decoder(self._stream, self._threads)
            return
        self._network.abandon()  # its helper closes the old connection
        self._network = self._container = self._stream = None
        self._container = open_media(self.path, self._cancel)
        self._stream = picture_stream(self._container)
        self._stream.thread_type = "AUTO"
        self._alpha = alpha_decoder(self._stream, self._threads)

    def __iter__(self) -> Iterator[DecodedFrame]:
        last_pts: int | None = None
        frames = self.frames()
        while True:
            try:
                frame = next(frames, None)
                if frame is None:
                    self.check_whole()
                    return
                rgb = self.rgb(frame)
            except av.FFmpegError as e:
                if isinstance(e, MemoryError):  # ENOMEM: out of memory, not a damaged file
                    raise
                if is_url(self.path):  # a connection that dropped or a server gone silent, not damage
                    raise InputError(f"{self.path}: the stream broke off after {self.frames_read} frames "
                                     f"({one_line(e)}): the server went silent or the connection dropped: "
                                     f"try again, or allow longer with {TIMEOUT_ENV}=SECONDS") from e
                raise InputError(f"{self.path}: decoding failed after {self.frames_read} frames "
                                 f"({one_line(e)}): the file may be damaged") from e
            pts = frame.pts
            if pts is None:
                pts = 0 if last_pts is None else last_pts + self._step
            if last_pts is not None and (gap := float((pts - last_pts) * self.time_base)) > MAX_TIMESTAMP_JUMP_S:
                raise InputError(f"{self.path}: its timestamps jump by {gap:.0f} s "
                                 f"after {self.frames_read} frames: the file is damaged; re-encode it with "
                                 "continuous timestamps (ffmpeg -i IN -vf setpts=N/FRAME_RATE/TB OUT)")
            index = self.frames_read
            time_s = float(pts * self.time_base)
            patched = frame.pts in self._flagged
            if patched:
                del self._flagged[frame.pts]
            missing = self._missing(pts)
            if missing is None:
                continue
            if patched or missing:
                self._hurt.append((index, time_s, missing, int(patched)))
            last_pts = pts
            self.frames_read += 1
            yield DecodedFrame(index=index, pts=pts, time_s=time_s, rgb=rgb)

    def _missing(self, pts: int) -> int | None:
        """The frames missing before the frame at ``pts`` (which comes out next): those a jump past the
        latest time so far leaves out. A jump counts only where the file shows damage beside it: a
        packet the demuxer flagged corrupt (unless a keyframe follows at once where the clock leaps:
        another recording joined on with cat, ``_demuxed``), or a frame the decoder flagged, within
        the last ``SIGNAL_FRAMES`` frames handed out (the decoder gives frames out some way behind
        the packets); or a packet sent to the decoder whose time lies inside the jump (a frame it
        swallowed); or, later, a frame it gives out late into the jump (``_counted_late``).
        Elsewhere it is a variable frame rate, or a frame the recorder dropped, kept as timed, even
        after damage earlier in the file. None: a frame the decoder gives out late, into such a gap
        already passed: left out, counted in its gap (the output cannot go back to its time, and it
        would flash an older picture). A time going back elsewhere is the writer's to order (parts
        of a joined file that ``vbg.media.timeline`` did not match: their times are not shifted)."""
        high = self._high
        if high is not None and pts < high:
            if any(lo < pts < hi for lo, hi in self._gaps):
                return None
            jump = self._jump
            if jump is not None and jump[0] < pts < jump[1] and self.frames_read - jump[2] <= SIGNAL_FRAMES:
                self._counted_late(*jump)  # the decoder lost its way there: damage
                return None
            return 0
        self._high = pts
        if high is None or pts - high <= GAP_STEPS * self._step:
            return 0
        near = self._signal_at is not None and self.frames_read - self._signal_at <= SIGNAL_FRAMES
        if not near and not any(high + self._step <= p < pts for p in self._sent):  # the decoder swallowed none
            self._jump = (high, pts, self.frames_read)
            return 0
        self._gaps = [*self._gaps[-7:], (high, pts)]
        return round((pts - high) / self._step) - 1

    def _counted_late(self, high: int, pts: int, index: int) -> None:
        """The jump from ``high`` to ``pts`` (the frame ``index`` handed out), not counted when it
        was passed, counted now: a frame came out late into it."""
        self._jump = None
        self._gaps = [*self._gaps[-7:], (high, pts)]
        self._hurt.append((index, float(pts * self.time_base), round((pts - high) / self._step) - 1, 0))

    def damage(self, first: int = 0, count: int | None = None) -> Damage | None:
        """What the frames handed out so far lost to damage (``Damage``, times as the frames'), counting
        the frames ``first`` .. ``first + count - 1`` only (a ``--ray`` part's own); None when they
        met none. A gap in the timestamps counts only where the file shows damage beside it
        (``_missing``): elsewhere it is a variable frame rate or a recorder's dropped frame."""
        hurt = [h for h in self._hurt if h[0] >= first and (count is None or h[0] < first + count)]
        missing, patched = sum(h[2] for h in hurt), sum(h[3] for h in hurt)
        if not missing and not patched:
            return None
        step_s = float(self._step * self.time_base)
        return Damage(missing, patched, min(h[1] - step_s * h[2] for h in hurt), max(h[1] for h in hurt))

    def check_whole(self, frames: int | None = None) -> None:
        """At the end of the frames: a local Matroska or WebM file that ends before the size its header
        states is an ``InputError`` (FFmpeg's demuxer just stops there, "File ended prematurely"), so
        that an interrupted download is not taken for the whole video. ``frames``: the frames read
        (default ``frames_read``: a reader read through ``frames()`` counts its own)."""
        if is_url(self.path) or self._container is None \
                or "matroska" not in self._container.format.name.split(","):
            return
        cut = cut_short(self.path)
        if cut is not None:
            raise InputError(f"{self.path}: the file is cut short after "
                             f"{self.frames_read if frames is None else frames} frames (it holds "
                             f"{cut[0]} of its {cut[1]} bytes): copy or download it again")

    def close(self) -> None:
        """Idempotent. Drops the stream too: FFmpeg's decoding threads live as long as it does."""
        self._stream = None
        if self._network is not None:  # its helper thread closes the container
            self._network.abandon()
        elif self._container is not None:
            self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
