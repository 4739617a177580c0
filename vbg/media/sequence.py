"""Image sequences read as video: a folder of frames, or a numbered pattern, for ``vbg process``.

In: a folder holding one numbered run of images (PNG, JPEG, TIFF, WebP, BMP), or a printf
pattern in the file name (``shots/frame_%05d.png``), and the frame rate to give it.
Out: ``find_sequence(arg)`` -> an ``ImageSequence`` (None for anything else: a video file);
``ImageSequence.info(fps)`` -> ``VideoInfo`` (no audio); ``SequenceReader`` yields
``DecodedFrame``s as ``VideoReader`` does. Thread: the reading thread.

The order is the frame number, not the alphabet: ``frame_2.png`` comes before
``frame_10.png``. A folder whose images have more than one name (``frame_0001.png`` beside
``cover.png``) or more than one format is refused with a line that says how to pick the
frames; a gap in the numbers is said once (a render that lost frames) and the frames are read
as they are. Hidden files (a vbg run's unfinished ``.frame_...`` files) are never frames.
Every image goes through ``vbg.images.read_srgb``: its checks, 16-bit and alpha to 8-bit RGB,
EXIF orientation, a Display P3 or Adobe RGB profile converted to sRGB. Frames of another size than the first are scaled to it, with one warning,
as ``VideoReader`` does for a video.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vbg.errors import InputError
from vbg.images import read_srgb
from vbg.media.info import VideoInfo, check_frame_size
from vbg.media.reader import DecodedFrame, letterboxed, say_size_change

log = logging.getLogger("vbg")

KINDS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WebP",
         ".bmp": "BMP"}
DEFAULT_FPS = 30.0  # a sequence states no rate: --fps gives it
# What a folder of recordings holds (a camera's card, an export): a folder of these is a batch
VIDEO_FILES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".flv", ".wmv",
                         ".asf", ".mpg", ".mpeg", ".vob", ".3gp", ".mxf", ".dv", ".ogv", ".mod", ".tod"})
PHOTOS = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF"}  # vbg reads them as photos (vbg segment), not as frames
# Frames of kinds vbg does not read (film scans, VFX renders, older tools)
OTHER_FRAMES = {".dpx": "DPX", ".exr": "OpenEXR", ".tga": "TGA", ".jp2": "JPEG 2000", ".j2k": "JPEG 2000",
                ".sgi": "SGI", ".rgb": "SGI", ".qoi": "QOI", ".pam": "PAM", ".pnm": "PNM", ".ppm": "PPM",
                ".pgm": "PGM", ".cin": "Cineon", ".gif": "GIF", ".jxl": "JPEG XL", ".psd": "Photoshop"}
_PRINTF = re.compile(r"%(0?)(\d*)d")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """'frame_2.png' before 'frame_10.png': digit runs compare as numbers, the rest without case."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
                 for part in _DIGITS.split(name) if part)


def _number(name: str) -> int | None:
    """The last run of digits in a file name's stem (the frame number), or None."""
    runs = _DIGITS.findall(Path(name).stem)
    return int(runs[-1]) if runs else None


def is_pattern(arg: str | Path) -> bool:
    """A printf frame pattern in the file name: ``frame_%05d.png``."""
    return bool(_PRINTF.search(Path(str(arg)).name))


@dataclass(frozen=True, slots=True)
class ImageSequence:
    """The frames of one sequence, in order; ``source`` as the user gave it."""

    source: str
    files: tuple[Path, ...]

    def info(self, fps: float | None = None) -> VideoInfo:
        """``VideoInfo`` from the first frame (decoded once: its size after EXIF orientation);
        ``fps`` (None: ``DEFAULT_FPS``) as the frame rate; no audio, no rotation left."""
        rate = Fraction(fps or DEFAULT_FPS).limit_denominator(1001)
        first = read_srgb(self.files[0])
        h, w = first.shape[:2]
        check_frame_size(self.source, w, h)
        return VideoInfo(width=w, height=h, fps=float(rate), time_base=1 / rate, frames=len(self.files),
                         duration_s=float(len(self.files) / rate), rotation=0, has_audio=False, audio_codec=None,
                         pix_fmt="rgb24", has_alpha=False, codec=KINDS[self.files[0].suffix.lower()].lower(),
                         sequence=True)


def find_sequence(arg: str | Path) -> ImageSequence | None:
    """``arg`` as an image sequence: a folder of images, or a printf pattern (``InputError``
    when it holds no frames or more than one run of them); None when it is neither (a file)."""
    path = Path(arg)
    if is_pattern(path) and not path.is_file():  # a video named 'intro_%d.mp4' is that video
        return _from_pattern(str(arg))
    try:
        if not path.is_dir():
            return None
        shown = _visible(path)
    except OSError as e:
        raise InputError(f"{arg}: the folder cannot be read ({e.strerror or e}): check its permissions") from e
    images = [e for e in shown if e.suffix.lower() in KINDS]
    videos = [e for e in shown if e.suffix.lower() in VIDEO_FILES]
    if images and videos:  # a camera's clips with their thumbnails, say: which is meant?
        example = min(videos, key=lambda e: natural_key(e.name))
        frames = _suggest(min(images, key=lambda e: natural_key(e.name)))
        raise InputError(f"{arg} holds both videos ({len(videos)}, such as {example.name}) and images "
                         f"({len(images)}): pass the videos as {shlex.quote(str(path / ('*' + example.suffix)))}, "
                         f"or the frames as a pattern, such as {shlex.quote(frames)}")
    if not images:
        raise InputError(_no_frames(arg, shown))
    files = sorted(images, key=lambda e: natural_key(e.name))
    kinds = _groups(files, lambda e: KINDS[e.suffix.lower()])
    if len(kinds) > 1:
        (kind, main), (other_kind, _) = kinds[:2]
        raise InputError(f"{arg} holds both {kind} and {other_kind} images: pass the frames as a pattern, such as "
                         f"{_suggest(main[0])}")
    names = _groups(files, lambda e: _DIGITS.sub("#", e.name).casefold())
    if len(names) > 1:
        main, other = names[0][1], names[1][1]
        raise InputError(f"{arg} holds images of more than one name ({main[0].name}, {other[0].name}): pass the "
                         f"frames as a pattern, such as {_suggest(main[0])}")
    return ImageSequence(str(arg), tuple(files))


def _visible(folder: Path) -> list[Path]:
    """The files in ``folder`` a file manager shows: no hidden ones (a Mac's ._ twins, .DS_Store),
    no sub-folders. ``OSError`` when it cannot be read."""
    return [e for e in folder.iterdir() if not e.name.startswith(".") and e.is_file()]


def videos_in(folder: Path) -> list[Path] | None:
    """The recordings in ``folder`` (its video files, in number order: clip2 before clip10) when
    it holds videos and no image frames: a batch; None for anything else (a sequence's folder,
    an empty one: ``find_sequence`` says what it is)."""
    try:
        entries = _visible(folder)
    except OSError:
        return None
    if any(e.suffix.lower() in KINDS for e in entries):
        return None
    videos = sorted((e for e in entries if e.suffix.lower() in VIDEO_FILES), key=lambda e: natural_key(e.name))
    return videos or None


def photos_in(folder: Path) -> list[Path] | None:
    """The still images in ``folder`` that vbg reads (frames' kinds and phone photos), in number
    order (``vbg segment FOLDER``); None when it holds none or cannot be read."""
    try:
        entries = _visible(folder)
    except OSError:
        return None
    # a GIF too, as vbg segment a.gif reads it (its first image): a folder's were left out unsaid
    photos = sorted((e for e in entries if e.suffix.lower() in KINDS or e.suffix.lower() in PHOTOS
                     or e.suffix.lower() == ".gif"), key=lambda e: natural_key(e.name))
    return photos or None


def _no_frames(arg, files: list[Path]) -> str:
    """What to do with folder ``arg``, which holds no frames vbg reads, from what it does hold."""
    photos = [e for e in files if e.suffix.lower() in PHOTOS]
    others = [e for e in files if e.suffix.lower() in OTHER_FRAMES]
    if photos and len(photos) >= len(others):
        kind = PHOTOS[photos[0].suffix.lower()]
        return (f"{arg} holds {kind} photos, not video frames: for their masks or cut-outs, vbg segment "
                f"{shlex.quote(str(arg))} -o OUT")
    if others:
        first = min(others, key=lambda e: natural_key(e.name))
        kind = OTHER_FRAMES[first.suffix.lower()]
        return (f"{arg} holds {kind} images, which vbg does not read as frames: convert them to PNG or TIFF first, "
                f"such as ffmpeg -i {shlex.quote(_suggest(first))} {shlex.quote(_suggest(first.with_suffix('.png')))}")
    return f"{arg} is a folder with no images in it: give a video file, or a folder of PNG, JPEG, TIFF, WebP or BMP frames"


def _groups(files: list[Path], key) -> list[tuple[str, list[Path]]]:
    """``files`` grouped by ``key``, the largest group first (the frames, most likely)."""
    out: dict[str, list[Path]] = {}
    for f in files:
        out.setdefault(key(f), []).append(f)
    return sorted(out.items(), key=lambda kv: -len(kv[1]))


def _suggest(example: Path) -> str:
    """``shots/frame_00001.png`` -> ``shots/frame_%05d.png`` (its last digit run as a pattern)."""
    runs = list(_DIGITS.finditer(example.stem))
    if not runs:
        return str(example.parent / ("NAME_%05d" + example.suffix))
    r = runs[-1]
    stem = example.stem[:r.start()] + f"%0{len(r.group())}d" + example.stem[r.end():]
    return str(example.parent / (stem + example.suffix))


def _from_pattern(pattern: str) -> ImageSequence:
    p = Path(pattern)
    m = _PRINTF.search(p.name)
    assert m is not None
    width = int(m.group(2) or 0)
    digits = rf"(\d{{{width},}})" if m.group(1) and width else r"(\d+)"
    regex = re.compile(re.escape(p.name[:m.start()]) + digits + re.escape(p.name[m.end():]) + r"\Z")
    folder = p.parent
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        raise InputError(f"{pattern}: there is no folder {folder}: check the path") from None
    except OSError as e:
        raise InputError(f"{pattern}: the folder {folder} cannot be read ({e.strerror or e}): check its "
                         "permissions") from e
    found = [(int(m2.group(1)), e) for e in entries
             if (m2 := regex.match(e.name)) and not e.name.startswith(".") and e.is_file()]
    if not found:
        example = p.name[:m.start()] + (f"{1:0{width}d}" if width else "1") + p.name[m.end():]
        raise InputError(f"{pattern} matches no file in {folder}: check the pattern (it names {example} and on)")
    if p.suffix.lower() not in KINDS:
        raise InputError(f"{pattern}: {p.suffix or 'no suffix'} is not an image type vbg reads: frames must be PNG, "
                         "JPEG, TIFF, WebP or BMP")
    files = [e for _, e in sorted(found, key=lambda t: t[0])]
    return ImageSequence(pattern, tuple(files))


def missing_frames(files: tuple[Path, ...]) -> tuple[int, Path | None]:
    """How many frame numbers the run skips (a render that lost frames), and the frame the
    first gap follows; (0, None) when none does or the names hold no numbers."""
    numbers = [_number(f.name) for f in files]
    if None in numbers or len(numbers) < 2:
        return 0, None
    gaps = [(i, b - a - 1) for i, (a, b) in enumerate(zip(numbers, numbers[1:])) if b > a + 1]  # type: ignore[operator]
    return sum(n for _, n in gaps), (files[gaps[0][0]] if gaps else None)


class SequenceReader:
    """Every frame of an ``ImageSequence`` as a ``DecodedFrame`` (pts = index in 1/fps), at the
    first frame's size. A frame that cannot be read is an ``InputError`` naming it; what was
    read before it is the caller's to keep (``frames_read``)."""

    def __init__(self, sequence: ImageSequence, fps: float | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.path = sequence.source
        self.sequence = sequence
        rate = Fraction(fps or DEFAULT_FPS).limit_denominator(1001)
        self.time_base: Fraction = 1 / rate
        self.rate: Fraction = rate
        self._cancel = cancel
        self._size: tuple[int, int] | None = None
        self._resized = False
        self.frames_read = 0

    def __iter__(self) -> Iterator[DecodedFrame]:
        missing, after = missing_frames(self.sequence.files)
        if missing:
            log.warning("%s: %d frame number%s missing (the first after %s): the frames are read as they come, "
                        "so the video is that much shorter", self.path, missing, " is" if missing == 1 else "s are",
                        after.name if after else "?")
        for index, file in enumerate(self.sequence.files):
            if self._cancel is not None and self._cancel.is_set():
                return
            rgb = read_srgb(file)  # a camera's Adobe RGB frames in sRGB, as the video is
            size = (rgb.shape[1], rgb.shape[0])
            if self._size is None:
                self._size = size
            elif size != self._size:
                if not self._resized:
                    self._resized = True
                    say_size_change(self.path, file.name, size, self._size)
                rgb = letterboxed(rgb, self._size)
            self.frames_read += 1
            yield DecodedFrame(index=index, pts=index, time_s=float(index * self.time_base), rgb=rgb)

    def close(self) -> None:
        """Nothing is held open between frames."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
