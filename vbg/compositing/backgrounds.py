"""What goes behind the person: a still image, a colour, the blurred camera frame or a video.

The contract every background keeps (the :class:`Background` protocol):

- ``prepare(out_hw)`` is called before the first ``render`` and again whenever
  the output size changes; it precomputes and allocates everything.
- ``render(frame, alpha)`` returns an ``H x W x 3`` uint8 RGB buffer for this
  frame. ``frame`` is the (already mirrored, if mirroring) camera frame and
  ``alpha`` the full-resolution uint8 mask the compositor will blend with.
  The buffer belongs to the background: it stays valid until the next
  ``render`` or ``prepare`` call and must not be written to. Static
  backgrounds return the same read-only buffer every time; nothing allocates
  per frame.
- ``close()`` releases threads and files; it is idempotent. Backgrounds are
  context managers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from ..clock import Clock, MonotonicClock
from ..config import parse_color
from ..errors import ConfigError, DependencyError, InputError, one_line
from ..images import animation, opencv_reads_animations, png_animated, read_srgb
from ..media.info import frame_rate, frame_rotation, pixel_aspect, quarter_turns, square_size, upright
from ..media.open import alpha_decoder, open_read, picture_stream, special_file
from ..media.sequence import VIDEO_FILES
from ..media.deinterlace import whole_frames
from ..media.tonemap import SdrFrames
from ..ranges import BLUR
from .bundled import find_background

log = logging.getLogger("vbg")


@runtime_checkable
class Background(Protocol):
    def prepare(self, out_hw: tuple[int, int]) -> None: ...
    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray: ...
    def close(self) -> None: ...


def _check_hw(out_hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in out_hw)
    except (TypeError, ValueError):
        raise ValueError(f"output size must be (height, width), got {out_hw!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"output size must be positive, got {h}x{w} (height x width)")
    return h, w


def cover_fit(src: np.ndarray, out_hw: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """Scale ``src`` to cover ``out_hw`` keeping its aspect, centre-cropping the excess.

    Crops first and resizes the crop, so no oversized intermediate is made.
    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    H, W = out_hw
    h, w = src.shape[:2]
    scale = max(H / h, W / w)
    cw = min(w, max(1, round(W / scale)))
    ch = min(h, max(1, round(H / scale)))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = src[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    if dst is None:
        return cv2.resize(crop, (W, H), interpolation=interp)
    cv2.resize(crop, (W, H), dst=dst, interpolation=interp)
    return dst


def fitted_frame(to_rgb: SdrFrames, frame, sar, rotation: int, out_hw: tuple[int, int], dst: np.ndarray) -> None:
    """A video background's ``frame`` covering ``out_hw``, into ``dst``: in square pixels (a DV or
    HDV clip's wide pixels widened: ``square_size``), turned upright as a player shows it
    (``rotation``: a phone's portrait video is stored on its side), then ``cover_fit``."""
    if sar:
        rgb = to_rgb(frame, *square_size(frame.width, frame.height, sar), "BICUBIC")
    else:
        rgb = to_rgb(frame)
    cover_fit(upright(rgb, rotation), out_hw, dst=dst)


class _Static:
    """A background that is one fixed picture per output size."""

    _buf: np.ndarray | None = None

    def _make(self, out_hw: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, out_hw: tuple[int, int]) -> None:
        out_hw = _check_hw(out_hw)
        if self._buf is not None and self._buf.shape[:2] == out_hw:
            return
        buf = self._make(out_hw)
        buf.flags.writeable = False  # shared with every frame: nobody may draw on it
        self._buf = buf

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        if self._buf is None:
            raise RuntimeError(f"{type(self).__name__}.prepare(out_hw) must be called before render()")
        return self._buf

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PictureBackground(_Static):
    """A still picture already in memory (H x W x 3 RGB uint8), cover-fitted: an image the
    control page uploaded (vbg.control), decoded there."""

    def __init__(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"a picture background is H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
        self._image = image

    def _make(self, out_hw: tuple[int, int]) -> np.ndarray:
        return cover_fit(self._image, out_hw)


class ImageBackground(PictureBackground):
    """A still image, read once (any format :func:`vbg.images.read_rgb` reads), cover-fitted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._image = read_srgb(self.path)  # InputError for missing / non-image files; a phone's P3 in sRGB

class ColorBackground(_Static):
    """A solid colour: an (r, g, b) triple or any text :func:`parse_color` accepts."""

    def __init__(self, rgb: tuple[int, int, int] | str) -> None:
        if isinstance(rgb, str):
            rgb = parse_color(rgb)
        try:
            ok = len(rgb) == 3 and all(int(c) == c and 0 <= c <= 255 for c in rgb)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"--color {rgb!r} is not an RGB triple: give three integers in 0-255")
        self.rgb = tuple(int(c) for c in rgb)

    def _make(self, out_hw: tuple[int, int]) -> np.ndarray:
        buf = np.empty((*out_hw, 3), np.uint8)
        buf[:] = self.rgb
        return buf


class BlurBackground:
    """The camera frame itself, blurred, with the person left out of the blur.

    A plain blur smears the person into the background next to them (a bright
    halo around the silhouette). This uses normalised convolution instead:
    ``blur(frame * w) / blur(w)`` with ``w`` the background weight, so each
    background pixel is an average of background pixels only. Where no
    background lies within reach (deep inside the person, where the result is
    hidden anyway) a small constant ``EPS`` in the weight makes it fall back to
    the plain blur.

    It all runs at reduced size: frame and mask are downscaled by ``k`` with
    INTER_AREA (by halvings, the fast path), blurred, divided and the result
    upscaled linearly, straight into the compositor's output buffer
    (``render_into``): 0.8 ms at 720p against 7-13 ms for a full-size blur of
    similar reach. Because a downscaled pixel mixes a ``k x k`` block, the
    weight is sharpened to ``1 - k^2 * mean_alpha`` (clipped at 0): any block
    holding as much as one full person pixel gets weight 0, so mixed blocks at
    the silhouette cannot carry the person's colour outwards.

    Strength: the Gaussian sigma is ``strength * 2%`` of the output's shorter
    side (strength 1.0 = sigma 14.4 px at 720p, moderate; 3.0 = strong), in
    ``STRENGTH_RANGE``. ``k`` is at least 4 and grows with sigma so that the
    small-image sigma stays near 1.8 px: the cost barely depends on strength
    (and below about 0.5 the x4 resampling itself sets the softness).
    Measured at 720p, strength 1 (k = 8): the background differs from a
    full-resolution normalised convolution by 0.68 grey levels on average
    (0.39 at k = 4, which took 1.56 ms instead of 0.84 ms).
    """

    STRENGTH_RANGE = (BLUR.lo, BLUR.hi)  # declared in vbg.ranges
    SIGMA_FRACTION = 0.02
    SMALL_SIGMA = 1.8
    MIN_FACTOR = 4.0
    EPS = 1e-3

    def __init__(self, strength: float = 1.0) -> None:
        lo, hi = self.STRENGTH_RANGE
        try:
            s = float(strength)
        except (TypeError, ValueError):
            s = math.nan
        if not lo <= s <= hi:  # also refuses NaN
            raise ConfigError(f"--blur strength {strength!r} is out of range: "
                              f"use a number from {lo} to {hi} (1.0 = moderate)")
        self.strength = s
        self._hw: tuple[int, int] | None = None

    def prepare(self, out_hw: tuple[int, int]) -> None:
        out_hw = _check_hw(out_hw)
        if out_hw == self._hw:
            return
        H, W = out_hw
        sigma = self.strength * self.SIGMA_FRACTION * min(H, W)
        k = max(self.MIN_FACTOR, sigma / self.SMALL_SIGMA)
        h, w = max(1, round(H / k)), max(1, round(W / k))
        k = math.sqrt((H * W) / (h * w))  # the factor actually used
        self.factor = k
        self.small_sigma = s = sigma / k
        r = max(1, math.ceil(3.0 * s))
        self._ksize = (2 * r + 1, 2 * r + 1)
        self._sharpen = -(k * k) / 255.0
        # Halve with INTER_AREA while at least twice too big (exact 2x2 means, fast
        # path), then one INTER_AREA step to the final size: 0.2 ms instead of
        # 1.0 ms for a direct x4 INTER_AREA of a 720p frame.
        self._steps: list[tuple[tuple[int, int], np.ndarray, np.ndarray]] = []
        ch, cw = H, W
        while ch // 2 >= h and cw // 2 >= w and (ch // 2, cw // 2) != (h, w):
            ch, cw = ch // 2, cw // 2
            self._steps.append(((cw, ch), np.empty((ch, cw, 3), np.uint8), np.empty((ch, cw), np.uint8)))
        self._small_f = np.empty((h, w, 3), np.uint8)
        self._small_a = np.empty((h, w), np.uint8)
        self._wgt = np.empty((h, w), np.float32)
        self._wgt3 = np.empty((h, w, 3), np.float32)
        self._num = np.empty((h, w, 3), np.float32)
        self._small_out = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((H, W, 3), np.uint8)
        self._small_wh = (w, h)
        self._hw = out_hw

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return self.render_into(frame, alpha, self._out)

    def render_into(self, frame: np.ndarray, alpha: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``render`` written into ``out`` (H x W x 3 uint8): the compositor's output buffer, saving a copy."""
        if self._hw is None:
            raise RuntimeError("BlurBackground.prepare(out_hw) must be called before render()")
        for wh, f, a in self._steps:
            cv2.resize(frame, wh, dst=f, interpolation=cv2.INTER_AREA)
            cv2.resize(alpha, wh, dst=a, interpolation=cv2.INTER_AREA)
            frame, alpha = f, a
        cv2.resize(frame, self._small_wh, dst=self._small_f, interpolation=cv2.INTER_AREA)
        cv2.resize(alpha, self._small_wh, dst=self._small_a, interpolation=cv2.INTER_AREA)
        # OpenCV does the uint8 <-> float32 conversions: numpy's mixed-type ufuncs
        # would allocate a casting buffer on every call.
        wgt, wgt3, num, ks, sig = self._wgt, self._wgt3, self._num, self._ksize, self.small_sigma
        # background weight, sharpened and never 0: w = max(1 + eps - k^2 * a/255, eps)
        cv2.addWeighted(self._small_a, self._sharpen, self._small_a, 0.0, 1.0 + self.EPS, dst=wgt, dtype=cv2.CV_32F)
        cv2.max(wgt, self.EPS, dst=wgt)
        cv2.cvtColor(wgt, cv2.COLOR_GRAY2RGB, dst=wgt3)
        cv2.multiply(self._small_f, wgt3, dst=num, dtype=cv2.CV_32F)
        cv2.GaussianBlur(num, ks, sig, dst=num)
        cv2.GaussianBlur(wgt, ks, sig, dst=wgt)
        cv2.cvtColor(wgt, cv2.COLOR_GRAY2RGB, dst=wgt3)
        cv2.divide(num, wgt3, dst=self._small_out, dtype=cv2.CV_8U)
        cv2.resize(self._small_out, out.shape[1::-1], dst=out, interpolation=cv2.INTER_LINEAR)
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_file(path: Path) -> None:
    """A background video is a regular file (a FIFO would block the open for good)."""
    what = special_file(path)
    if what is not None:
        raise InputError(f"background video {path} is {what}, not a file: pass a video file")
    if not path.is_file():
        raise InputError(f"background video {path} does not exist: check the path")


def open_own(path: Path):
    """``path`` opened for reading as a binary file, refusing a link (whatever it points to) and
    anything but a regular file (``InputError``): for a folder others may write to, where a
    file listed a moment ago may have been swapped for a link to one of the user's own."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise InputError(f"{path.name} cannot be opened ({e.strerror or e}): a regular file, not a link, "
                         "directly in the folder") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path.name} is not a regular file: put the file itself in the folder")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# The demuxer a shared folder's video is read with, from its name, never guessed from its bytes:
# FFmpeg takes a text file that starts "ffconcat version 1.0" for a list of files to play, and
# opened from a file object its names are looked up from the working folder (one of the user's).
OWN_DEMUXERS = {".mp4": "mov", ".m4v": "mov", ".mov": "mov", ".mkv": "matroska", ".webm": "matroska",
                ".avi": "avi", ".gif": "gif", ".apng": "apng"}
PLAYED_KINDS = ", ".join(s.lstrip(".") for s in OWN_DEMUXERS)  # for messages: "mp4, m4v, mov, ..."
# Moving pictures (``images.moving_picture``'s kinds): sent as pictures, kept and played as videos
# of these kinds; one larger than a picture may be is sent as a video of the kind its name says.
MOVING_PICTURES = {"GIF": ".gif", "APNG": ".apng"}


@contextlib.contextmanager
def open_own_video(path: Path):
    """The video at ``path`` in a folder others may write to, opened for decoding: ``open_own``
    (no link, a regular file), read as its suffix says (``OWN_DEMUXERS``; a ``.png`` as an
    animated PNG, when its header says it is one): a file whose bytes are another kind, a
    playlist say, does not open."""
    with open_own(path) as f:
        with open_read(f, format=_own_demuxer(path, f)) as container:
            yield container


def _own_demuxer(path: Path, f) -> str:
    """The demuxer of ``path``, a shared folder's video open as ``f``: from its name (a ``.png``'s
    header telling an animated one); ``f`` left at its start."""
    suffix = path.suffix.lower()
    demuxer = OWN_DEMUXERS.get(suffix)
    if demuxer is None and suffix != ".png":
        raise InputError(f"{path.name}: not a video kind vbg plays from a folder ({', '.join(OWN_DEMUXERS)})")
    if demuxer is None:
        if not png_animated(f):
            raise InputError(f"{path.name} is a still PNG: a picture, not a moving one")
        f.seek(0)
        demuxer = "apng"
    return demuxer


@contextlib.contextmanager
def _open_video(path: Path, own_file: bool):
    """A background video opened for decoding: from a folder others may write to (``own_file``)
    with ``open_own_video``, else as FFmpeg reads any file the user named."""
    if own_file:
        with open_own_video(path) as container:
            yield container
    else:
        with open_read(path) as container:
            yield container


class HeldVideo:
    """A background video's file, opened once and read from its start at every pass (``pass_()``):
    removed or replaced while it plays (a downloads folder tidied, the file saved again), it plays on
    as it was. Each pass opened it again by name: a removed file stopped the live filter (exit 9,
    the virtual camera gone mid-call). A file the user named is read the first time by name, as
    FFmpeg reads any file, and then with the demuxer that found; a shared folder's as
    ``open_own_video`` reads it. ``close()`` lets the file go."""

    def __init__(self, path: Path, own_file: bool) -> None:
        self.path, self._own = path, own_file
        self._file = None
        self._format: str | None = None

    def open(self):
        """A container reading the file from its start (the caller closes it; one at a time)."""
        if self._file is None:
            if self._own:
                f = open_own(self.path)
                try:
                    self._format = _own_demuxer(self.path, f)
                except BaseException:
                    f.close()
                    raise
                self._file = f
            else:
                f = open(self.path, "rb")  # noqa: SIM115 (held until close())
                try:
                    container = open_read(self.path)
                except BaseException:
                    f.close()
                    raise
                self._file, self._format = f, container.format.name.split(",")[0]
                return container
        self._file.seek(0)
        return open_read(self._file, format=self._format)

    @contextlib.contextmanager
    def pass_(self):
        with self.open() as container:
            yield container

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def decoded(container, stream):
    """The frames of ``stream``, as ``container.decode(stream)`` gives them; a VP8/VP9 stream that
    carries transparency (WebM's AlphaMode) through libvpx, which keeps it (``alpha_decoder``)."""
    codec = alpha_decoder(stream)
    if codec is None:
        return container.decode(stream)

    def frames():
        for packet in container.demux(stream):
            for frame in codec.decode(packet):
                if frame.time_base is None:
                    frame.time_base = stream.time_base
                yield frame
    return frames()


@contextlib.contextmanager
def _first_frame(path: Path, own_file: bool = False):
    """(picture stream, its first decoded frame) of the background video at ``path``, while it is
    open; ``InputError`` in one line for a file with neither, or one FFmpeg cannot read."""
    av = _import_av()
    try:
        with _open_video(path, own_file) as container:
            stream = picture_stream(container)
            if stream is None:
                raise InputError(f"{path} has no video stream: pass a video file (mp4, mkv, webm, ...)")
            first = next(decoded(container, stream), None)
            if first is None:
                raise InputError(f"background video {path} has no decodable frames: pass another video file")
            yield stream, first
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise InputError(f"cannot read background video {path} ({why}): pass a video file FFmpeg can decode") from e


def _shown_hw(frame, sar, rotation: int) -> tuple[int, int]:
    """(h, w) of ``frame`` as a player shows it: square pixels, turned upright."""
    w, h = square_size(frame.width, frame.height, sar)
    return (w, h) if quarter_turns(rotation) % 2 else (h, w)


ANIMATED_WEBP = ".webp"  # a moving one plays from OpenCV's frames (.animated), not FFmpeg's


def played_background(path: Path, clock: Clock | None = None, *, own_file: bool = False) -> Background:
    """The live background that plays the moving file at ``path`` (a folder's or an upload's), as
    its suffix says: an animated WebP from its frames decoded by OpenCV
    (:class:`vbg.compositing.animated.AnimatedPictureBackground`), any other as a video."""
    if Path(path).suffix.lower() == ANIMATED_WEBP:
        from .animated import AnimatedPictureBackground

        return AnimatedPictureBackground(path, clock, own_file=own_file)
    return VideoBackground(path, clock=clock, own_file=own_file)


def first_picture(path: Path, *, own_file: bool = False) -> np.ndarray:
    """The first frame of the background video (or animated WebP) at ``path`` as it plays: upright
    RGB in square pixels, HDR as SDR (a thumbnail's picture); ``InputError`` as the background
    playing it raises it."""
    if path.suffix.lower() == ANIMATED_WEBP:
        from .animated import AnimatedPictureBackground

        return AnimatedPictureBackground(path, own_file=own_file).first_frame
    with _first_frame(path, own_file) as (stream, first):
        sar = pixel_aspect(stream)
        rotation = frame_rotation(first, stream)
        hw = _shown_hw(first, sar, rotation)
        rgb = np.empty((*hw, 3), np.uint8)
        fitted_frame(SdrFrames(), first, sar, rotation, hw, rgb)
        return rgb


def _import_av():
    try:
        import av
    except ImportError as e:
        raise DependencyError("video backgrounds need PyAV: pip install av") from e
    return av


class VideoBackground:
    """A video file played in a loop behind the person, decoded on its own thread.

    The decoder thread (started by ``prepare``) decodes with PyAV, cover-fits
    each frame to the output size and publishes it when it is due: at its own
    time in the file (its timestamp; ``k / fps`` for frames without one) after
    the first frame, on ``clock`` (a :class:`vbg.clock.Clock`; real time by
    default), so the video plays at its own rate whatever the camera's rate, and
    a GIF's frames keep their own delays. At the end of the file, once its last
    frame's time is over, it starts again from the beginning. If decoding falls
    more than half a second behind, it re-anchors instead of racing to catch up.

    ``render`` never waits: it returns the newest published frame (black until
    the first one is ready). Three preallocated buffers rotate between the
    thread and the caller, so the buffer ``render`` returned is not touched by
    the thread until the next ``render`` call. A decoding failure in the thread
    is raised from the next ``render`` as :class:`InputError`.

    A frame no ``render`` will show is decoded (the next ones need it) but not
    converted: a 60 fps clip behind a 30 fps camera, or a 30 fps one behind a
    camera that drops to 15 in dim light, fitted each frame to the output size,
    half of them for nothing (a 1080p frame to 720p is 5 ms of a laptop's core).
    ``render`` notes when it is called; from its rate, once steady, the thread tells
    whether the next ``render`` after a frame is due comes only once the frame
    after it is out (by a fifth of a frame's time: a frame shown one frame late
    rather than a conversion saved). Where the rates are alike, or ``render``
    has not run at a steady rate, every frame is converted. Once no ``render``
    has come for ``IDLE_S`` (the effect switched off, another background picked
    in the control page or with a key, the camera unwatched or lost), the thread
    waits, decoding nothing (``holding``), and the next ``render`` wakes it: the
    clip goes on from where it stood. ``skip_unseen=False`` converts every
    frame, rendered or not (the benchmark's baseline).

    ``own_file``: the file is in a folder others may write to (the control page's
    backgrounds folder): each opening refuses a link or anything but a regular
    file, so one swapped in after the folder was listed is never played.

    With an injected clock, real time only bounds how often the waiting thread
    looks at the clock again (``POLL_S``).
    """

    POLL_S = 0.05
    MAX_LAG_S = 0.5
    IDLE_S = 0.5  # no render for this long: the thread holds, and the renders' rate is measured afresh
    MARGIN = 1.2  # skip a frame only when the next render comes this many frame times after it is due
    STEADY = 3  # ... and the last this many renders came at a steady rate

    def __init__(self, path: str | Path, clock: Clock | None = None, *, skip_unseen: bool = True,
                 own_file: bool = False) -> None:
        self.path = Path(path)
        self._clock = clock or MonotonicClock()
        self._skip_unseen = skip_unseen
        self._own_file = own_file
        _check_file(self.path)
        with _first_frame(self.path, own_file) as (stream, first):
            rate = frame_rate(stream)
            self.fps = float(rate) if rate and float(rate) > 0 else 30.0
            self.rotation = frame_rotation(first, stream)  # degrees counter-clockwise, as the video readers take it
            self.source_hw = _shown_hw(first, pixel_aspect(stream), self.rotation)
        self.frames_published = 0  # frames that became visible (counter for stats and tests)
        self.frames_skipped = 0  # frames decoded but not converted: no render would have shown them
        self._rendered_at: float | None = None  # the clock at the last render
        self._prepared_at = 0.0  # the clock when prepare() started the thread
        self._render_period = 0.0  # the renders' average interval (seconds; 0: not known yet)
        self._steady = 0  # renders in a row that came at about that interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by each render: a held thread goes on
        self.holding = False  # the thread waits for a render (none for IDLE_S): nothing decoded meanwhile
        self._shown = threading.Event()  # the first frame since prepare() is published, or the thread ended
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._hw: tuple[int, int] | None = None
        self._fresh = False
        self._front: np.ndarray | None = None
        self._middle: np.ndarray | None = None
        self._back: np.ndarray | None = None

    # -- caller side ---------------------------------------------------------

    def prepare(self, out_hw: tuple[int, int]) -> None:
        out_hw = _check_hw(out_hw)
        if out_hw == self._hw and self._thread is not None:
            return
        self._stop_thread()
        self._front = np.zeros((*out_hw, 3), np.uint8)  # black until the first frame
        self._middle = np.zeros_like(self._front)
        self._back = np.zeros_like(self._front)
        self._fresh = False
        self._error = None
        self._hw = out_hw
        self._stop.clear()
        self._shown.clear()
        self._prepared_at = self._clock.now()
        self._thread = threading.Thread(target=self._run, args=(out_hw,), name="vbg-bg-video", daemon=True)
        self._thread.start()

    def wait_first_frame(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread ``prepare`` started to publish its first
        frame (``render`` gives black until then), or to end (an error ``render`` raises): whether
        it did. A background picked while the camera runs is swapped in once it has something to
        show: opening and decoding a large clip's first frame took a few frames' time, shown black."""
        return self._shown.wait(timeout)

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        if self._front is None:
            raise RuntimeError("VideoBackground.prepare(out_hw) must be called before render()")
        if self._error is not None:
            err = self._error
            raise InputError(f"background video {self.path} stopped: {err}; check the file") from err
        self._note_render(self._clock.now())
        self._wake.set()
        if self._fresh:
            with self._lock:
                self._front, self._middle = self._middle, self._front
                self._fresh = False
        return self._front  # type: ignore[return-value]  # prepare() made all three

    def close(self) -> None:
        self._stop_thread()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _note_render(self, now: float) -> None:
        """The renders' rate, for the thread's ``_unseen``: an average of their intervals, and how
        many in a row came within a quarter of it (``_steady``), started afresh from an interval
        that does not (a change of rate) and after a pause; two at the same instant are one."""
        last, self._rendered_at = self._rendered_at, now
        if last is None or now <= last:
            return
        gap, period = now - last, self._render_period
        if gap > self.IDLE_S:
            self._render_period, self._steady = 0.0, 0
        elif abs(gap - period) > 0.25 * period:  # the first interval, or a change of rate: from this one on
            self._render_period, self._steady = gap, 0
        else:
            self._render_period, self._steady = period + 0.25 * (gap - period), self._steady + 1

    def _unseen(self, due: float, step: float) -> bool:
        """Whether the frame due at ``due`` and on screen for ``step`` seconds would be replaced
        before any render shows it, on the renders' steady rate (see the class's note). Renders that
        stopped are the hold's: the thread holds (``_hold``) before it asks this."""
        last, period = self._rendered_at, self._render_period
        if not self._skip_unseen or last is None or self._steady < self.STEADY or period <= 0.0:
            return False
        ahead = max(0.0, due - last)
        next_render = last + math.ceil(ahead / period) * period  # the first render at or after ``due``
        return next_render - due >= self.MARGIN * step

    def _stop_thread(self) -> None:
        t = self._thread
        if t is None:
            return
        self._stop.set()
        if t is not threading.current_thread():
            t.join()
        self._thread = None

    # -- decoder thread ------------------------------------------------------

    def _run(self, out_hw: tuple[int, int]) -> None:
        _import_av()
        clock, stop = self._clock, self._stop
        t0: float | None = None
        to_rgb = SdrFrames()  # a phone's HDR clip as the SDR picture it shows
        loops = 0.0  # the passes before this one, in seconds
        video = HeldVideo(self.path, self._own_file)
        try:
            while not stop.is_set():
                got = False
                origin, at, step = None, 0.0, 1 / self.fps
                with video.pass_() as container:
                    stream = picture_stream(container)
                    sar = pixel_aspect(stream)
                    for k, frame in enumerate(whole_frames(decoded(container, stream), stream.time_base)):
                        if stop.is_set():
                            return
                        if t0 is None:
                            t0 = clock.now()
                        # due at its own time (a GIF's frames keep their delays), or at the rate
                        tb = frame.time_base
                        if frame.pts is not None and tb is not None and (origin is not None or k == 0):
                            origin = frame.pts if origin is None else origin
                            at = float((frame.pts - origin) * tb)
                        else:
                            at = k / self.fps
                        step = float(frame.duration * tb) if frame.duration and tb is not None else 1 / self.fps
                        due = t0 + loops + at
                        if got and self._skip_unseen and self._unrendered():
                            held = self._hold()
                            if held is None:
                                return
                            t0 += held  # on from where it stood, not as far on as the time it waited
                            due += held
                        if got and self._unseen(due, step):
                            self.frames_skipped += 1
                            continue
                        assert self._back is not None  # prepare() made it before starting this thread
                        fitted_frame(to_rgb, frame, sar, self.rotation, out_hw, self._back)
                        got = True
                        if not self._wait_until(due):
                            return
                        late = clock.now() - due
                        if late > self.MAX_LAG_S:
                            t0 += late
                        with self._lock:
                            self._back, self._middle = self._middle, self._back
                            self._fresh = True
                        self.frames_published += 1
                        self._shown.set()
                if not got:
                    raise InputError("no frames could be decoded")
                if k == 0:  # one frame (a still GIF): shown; decoding it again 100 times a second took a core
                    return
                loops += at + max(step, 1e-3)  # the next pass starts as its last frame ends
        except Exception as e:  # reported to the caller by render()
            self._error = e
        finally:
            video.close()
            self._shown.set()  # no first frame will come: nobody waits for one

    def _unrendered(self) -> bool:
        """No render for ``IDLE_S``, or none in the ``IDLE_S`` since ``prepare``."""
        last = self._rendered_at if self._rendered_at is not None else self._prepared_at
        return self._clock.now() - last > self.IDLE_S

    def _hold(self) -> float | None:
        """Wait, decoding nothing, until the next render (the effect off, the camera unwatched or
        lost, another background picked in the page or with a key): the clock's seconds waited,
        or None when asked to stop."""
        self._wake.clear()
        if not self._unrendered():  # a render came in between
            return 0.0
        start = self._clock.now()
        self.holding = True
        try:
            while not self._wake.wait(self.POLL_S):
                if self._stop.is_set():
                    return None
            # read before ``holding`` goes false: whoever waits for that (a test's clock) may move
            # the clock on at once, and the wait would count that too (a frame ahead on resuming)
            waited = self._clock.now() - start
        finally:
            self.holding = False
        return waited

    def _wait_until(self, due: float) -> bool:
        """Sleep until ``due`` on the clock; False when asked to stop."""
        while True:
            left = due - self._clock.now()
            if left <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(left, self.POLL_S)):
                return False


class SyncVideoBackground:
    """Offline video background, played at its own rate as the live one is: output frame ``t``
    seconds into its file (``show_at``) gets the background frame on screen ``t`` seconds into the
    background (looped), whatever the two frame rates (a 24 fps loop behind 60 fps footage: each
    frame shown two or three times; 60 behind 30: every other one) and wherever a ``--ray`` part
    starts. The frame is chosen by its timestamp (a GIF's frames keep their own delays) and
    decoded in step, so a render is deterministic. A file that cannot be decoded (damaged,
    truncated) raises :class:`InputError` from ``render``, so the output it was for stops with one
    line and a batch goes on with its next file."""

    SLACK_S = 1e-3  # a frame whose time rounds (a millisecond time base) just past the output's is due
    SEEK_S = 2.0  # further ahead than this, the decoder seeks (a --ray part late in a long background)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _check_file(self.path)
        self._container: Any = None  # PyAV's (its stubs say less than it does)
        self._video = HeldVideo(self.path, False)  # each pass read from the file opened first
        self._frames: Any = None
        self._stream: Any = None
        self._out: np.ndarray | None = None
        self._decoded = 0  # frames decoded in this pass
        self._sar: Fraction | None = None  # the pixel aspect where not square (pixel_aspect)
        self._to_rgb = SdrFrames()  # a phone's HDR clip as the SDR picture it shows
        self._t = 0.0  # the output's time for the next render (show_at)
        self._origin: int | None = None  # the background's first frame's pts
        self._loop: float | None = None  # its length, known once a pass has reached its end
        self._cur = self._next = None  # the frame on screen at the last time asked, the one after it
        self._cur_t = self._next_t = 0.0
        self._shown = None  # the frame whose picture is in ``_out``
        self._rotation = 0  # the first frame's display rotation (read below)
        self._open()
        try:
            self._advance()
        except InputError:
            self.close()
            raise
        if self._next is None:
            self.close()
            raise InputError(f"background video {self.path.name} has no frames: pass another background")
        self._origin, self._next_t = self._next.pts, 0.0
        self._rotation = self._first_rotation()  # a phone's portrait video, stored on its side

    def _open(self) -> None:
        av = _import_av()
        if self._container is not None:
            self._container.close()
        try:
            self._container = self._video.open()
            stream = picture_stream(self._container)
            if stream is None:
                raise IndexError("no video stream")
        except (av.FFmpegError, IndexError, OSError) as e:
            self.close()
            raise InputError(
                f"background {self.path.name} is not a readable video: pass an image or a video file") from e
        self._stream = stream
        self._frames = whole_frames(decoded(self._container, stream), stream.time_base)
        self._sar = pixel_aspect(stream)
        self._decoded = 0
        self._cur = self._next = None

    def _first_rotation(self) -> int:
        """The display rotation of the file's first frame as decoded (a deinterlaced frame keeps
        no side data)."""
        av = _import_av()
        try:
            with open_read(self.path) as container:
                stream = picture_stream(container)
                first = next(container.decode(stream), None) if stream is not None else None
                return frame_rotation(first, stream) if first is not None else 0
        except (av.FFmpegError, OSError, ValueError):
            return 0

    def _time(self, frame) -> float:
        if frame.pts is None or self._origin is None:  # no timestamps: the frames at the stream's rate
            rate = frame_rate(self._stream) or 30
            return self._decoded / float(rate)
        return float((frame.pts - self._origin) * frame.time_base)

    def _advance(self) -> None:
        """The frame after ``_next`` into ``_next`` (None at the end), ``_next`` into ``_cur``."""
        av = _import_av()
        self._cur, self._cur_t = self._next, self._next_t
        try:
            frame = next(self._frames, None)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"background video {self.path} cannot be decoded after {self._decoded} frames "
                             f"({one_line(e)}): the file is damaged; pass another background") from e
        self._next = frame
        if frame is not None:
            self._decoded += 1
            self._next_t = self._time(frame)

    def _length(self, last) -> float:
        """The loop's length: up to the end of its last frame (a GIF's last delay too)."""
        step = float(last.duration * last.time_base) if last.duration else 0.0
        if step <= 0:
            rate = frame_rate(self._stream) or 30
            step = 1 / float(rate)
        return self._cur_t + step

    def _seek(self, target: float) -> None:
        """Decoding from the keyframe at or before ``target`` seconds in (a seek the file cannot do
        leaves it where it is)."""
        av = _import_av()
        stream = self._stream
        try:
            self._container.seek((self._origin or 0) + int(target / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, OverflowError, ValueError):
            return
        self._frames = whole_frames(decoded(self._container, stream), stream.time_base)
        self._cur = self._next = None
        self._advance()

    def show_at(self, t_s: float) -> None:
        """The next ``render`` is for the output frame ``t_s`` seconds after its file's first."""
        self._t = max(0.0, t_s)

    def _frame_at(self, t: float):
        """The background frame on screen ``t`` seconds in (looped)."""
        if self._loop is not None:
            t %= self._loop
        if self._cur is None and self._next is not None and self._next_t > t + self.SLACK_S or \
                self._cur is not None and self._cur_t > t + self.SLACK_S:  # earlier than the decoder: again
            self._open()
            self._advance()
        if self._next is not None and t - self._next_t > self.SEEK_S and self._stream.duration and \
                t < float(self._stream.duration * self._stream.time_base):
            self._seek(t)
            if self._next is not None and self._next_t > t + self.SLACK_S:  # landed after it: from the start
                self._open()
                self._advance()
        while self._next is not None and self._next_t <= t + self.SLACK_S:
            self._advance()
        if self._next is None:  # the end of the file
            if self._cur is None:
                raise InputError(f"background video {self.path.name} has no frames: pass another background")
            if self._loop is None:
                self._loop = self._length(self._cur)
            if t >= self._loop - self.SLACK_S:  # past its last frame: from the start again
                self._open()
                self._advance()
                again = t % self._loop
                return self._frame_at(again if again < self._loop - self.SLACK_S else 0.0)
        return self._cur

    def prepare(self, out_hw: tuple[int, int]) -> None:
        self._out = np.zeros((*out_hw, 3), np.uint8)
        self._shown = None

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        av = _import_av()
        if self._out is None:
            raise RuntimeError("SyncVideoBackground.prepare(out_hw) must be called before render()")
        shown = self._frame_at(self._t)
        if shown is not self._shown:
            try:
                fitted_frame(self._to_rgb, shown, self._sar, self._rotation, self._out.shape[:2], self._out)
            except (av.FFmpegError, ValueError) as e:
                raise InputError(f"background video {self.path} cannot be decoded after {self._decoded} frames "
                                 f"({one_line(e)}): the file is damaged; pass another background") from e
            self._shown = shown
        return self._out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._video.close()
        self._cur = self._next = self._shown = None


def _blur(value: float | str | None) -> BlurBackground:
    if value is None or value == "":
        return BlurBackground()
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--blur strength {value!r} is not a number: use e.g. 1.0 (range 0.1-5)") from None
    return BlurBackground(strength)


# name -> factory(value, clock): what ``--background KIND`` can be
BACKGROUNDS: dict[str, Callable[..., Background]] = {
    "image": lambda value, clock=None: ImageBackground(value),
    "color": lambda value, clock=None: ColorBackground(value),
    "blur": lambda value, clock=None: _blur(value),
    "video": lambda value, clock=None: VideoBackground(value, clock=clock),
    "video-sync": lambda value, clock=None: SyncVideoBackground(value),
}

# What --background plays as a video, by its name: every kind vbg process reads (a camcorder's .MTS,
# a phone's .3gp, a recorder's .ts were refused as "not an image") and a GIF
VIDEO_SUFFIXES = (".gif", *sorted(VIDEO_FILES))
_STILL_SAID: set[str] = set()  # animated WebPs shown still (OpenCV 4.11), said once a run


def background_from_options(background: str | None = None, color: str | None = None, blur: float | None = None,
                            *, live: bool = True, clock: Clock | None = None) -> Background:
    """The background the CLI options ask for (at most one set; none = blur).
    A video file (an animated GIF or PNG too) plays on its own thread against the
    clock when ``live``, and by the output frames' times in their file otherwise;
    an animated WebP, which FFmpeg cannot decode, is played from its frames decoded by
    OpenCV 4.12 or later (:mod:`vbg.compositing.animated`; 4.11 shows it still, said
    once). ``background`` may also name a bundled picture ("beach.jpg", "beach"); a file
    of that name that the user has wins (:func:`vbg.compositing.bundled.find_background`)."""
    if blur is not None:
        return make_background("blur", blur)
    if color is not None:
        return make_background("color", color)
    if background is not None:
        background = find_background(background)
        moving = animation(background)
        if str(background).lower().endswith(VIDEO_SUFFIXES) or moving == "APNG":  # FFmpeg plays an APNG
            return make_background("video" if live else "video-sync", background, clock=clock)
        if moving == "animated WebP" and opencv_reads_animations():
            from .animated import AnimatedPictureBackground

            return AnimatedPictureBackground(background, clock, live=live)
        still = make_background("image", background)  # OpenCV 4.10 reads no animated WebP: said there
        if moving == "animated WebP" and background not in _STILL_SAID:  # 4.11 reads its first frame
            _STILL_SAID.add(background)
            log.warning("%s is an animated WebP: OpenCV %s reads only its first frame, so it stands still; update "
                        "opencv-python to 4.12 or later to play it, or save it as a GIF or a video",
                        background, cv2.__version__)
        return still
    return make_background("blur", 1.0)


def make_background(kind: str, value=None, *, clock: Clock | None = None) -> Background:
    """Build a background by name: image/video take a path, color a colour, blur a strength."""
    try:
        factory = BACKGROUNDS[kind]
    except KeyError:
        raise ConfigError(f"background kind {kind!r} is unknown: use one of {', '.join(BACKGROUNDS)}") from None
    if value is None and kind in ("image", "video", "color"):
        raise ConfigError(f"background {kind} needs a value: give a {'colour' if kind == 'color' else 'file path'}")
    return factory(value, clock=clock)
