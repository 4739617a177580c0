"""The backgrounds a control request may name, and nothing else.

- ``bundled:NAME``: a picture that ships with vbg (``vbg backgrounds``), NAME its file name;
- ``folder:NAME``: a picture or a video directly in the user's backgrounds folder (a regular
  file, not a link, not hidden, an image or video suffix), NAME as that folder's listing has
  it; a video plays in a loop at its own rate, as ``--background clip.mp4`` does, and so do
  a GIF and an animated PNG;
- ``upload:N``: a picture or a video the page (or ``vbg ctl background FILE``) sent for this
  run: a picture decoded and kept in memory, a video kept in a private folder of this run's
  (:mod:`.uploads`) and played from there as a folder's video is; a GIF and an animated PNG
  are kept and played as videos too (as the folder's: a still GIF in one frame);
- ``recent:N``: the N-th most recently used of those (0 = the newest).

A request names an id; the id is looked up in these sets (a dictionary, a fresh folder
listing), never joined onto a path: no ``..``, no absolute path, no link leads anywhere else.
Default folder: ``$XDG_DATA_HOME/vbg/backgrounds`` (``~/.local/share/vbg/backgrounds``);
``[control] backgrounds_dir`` / ``--backgrounds-dir`` change it.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from collections import OrderedDict, deque
from pathlib import Path

import cv2
import numpy as np

from ..compositing.backgrounds import (
    ANIMATED_WEBP,
    MOVING_PICTURES,
    OWN_DEMUXERS,
    PLAYED_KINDS,
    first_picture,
    open_own,
)
from ..compositing.bundled import IMAGE_SUFFIXES, bundled_backgrounds
from ..errors import ControlError, InputError, VbgError
from ..images import decode_srgb, file_moves, moving_picture, read_srgb
from .uploads import UploadRefused, VideoUploads

PICTURE_SUFFIXES = (*IMAGE_SUFFIXES, ".heic", ".heif", ".avif")  # a phone's photos too (vbg.heif)
FOLDER_SUFFIXES = (*PICTURE_SUFFIXES, *OWN_DEMUXERS)  # an animated GIF plays as the video it is

THUMB_WIDTH = 160
UPLOADS_KEPT = 16
VIDEO_UPLOADS_KEPT = 4  # on disk, up to MAX_VIDEO_UPLOAD each
RECENT_KEPT = 8
PNGS_TOLD = 1024  # the folder's PNGs and GIFs whose animation is remembered (by name, size and time)
FOLDER_MAX = 500  # pictures listed from the user's folder


class NotFound(ControlError):
    status = 404


class BadRequest(ControlError):
    status = 400


def default_folder(environ=None) -> Path:
    env = os.environ if environ is None else environ
    data = env.get("XDG_DATA_HOME", "")
    base = Path(data) if data and os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "vbg" / "backgrounds"


def _label(name: str) -> str:
    return Path(name).stem


class Library:
    """The allowed backgrounds; thread-safe (the server's threads call it)."""

    def __init__(self, folder: str | Path | None = None, *, uploads: VideoUploads | None = None) -> None:
        self.folder = Path(os.path.expanduser(str(folder))) if folder else default_folder()
        self._lock = threading.Lock()
        # upload number -> (label, the picture, or the path of an uploaded video)
        self._uploads: OrderedDict[int, tuple[str, np.ndarray | Path]] = OrderedDict()
        self.videos = uploads or VideoUploads()
        self._showing: str | None = None  # the id behind the person: an upload never let go of while shown
        self._next_upload = 1
        self._recent: deque[str] = deque(maxlen=RECENT_KEPT)
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._animated: OrderedDict[tuple, bool] = OrderedDict()  # (name, inode, size, mtime) -> it moves?

    # ------------------------------------------------------------------ listing
    def _folder_names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return []  # no folder yet: none of the user's own
        names = []
        for e in entries:
            if e.name.startswith(".") or Path(e.name).suffix.lower() not in FOLDER_SUFFIXES:
                continue
            try:
                if not stat.S_ISREG(e.stat(follow_symlinks=False).st_mode):
                    continue
            except OSError:
                continue
            names.append(e.name)
        return sorted(names)[:FOLDER_MAX]

    def items(self) -> list[dict]:
        out = [self._item(f"bundled:{n}", _label(n), "bundled") for n in bundled_backgrounds()]
        out += [self._item(f"folder:{n}", _label(n), "folder", self._plays(n)) for n in self._folder_names()]
        with self._lock:
            uploads = [(k, v[0], isinstance(v[1], Path)) for k, v in self._uploads.items()]
            recent = list(self._recent)
        out += [self._item(f"upload:{k}", label, "upload", video) for k, label, video in uploads]
        for i, rid in enumerate(recent):
            out.append(self._item(f"recent:{i}", self.label(rid), "recent", self._is_video_id(rid)))
        return out

    def _is_video_id(self, bid: str) -> bool:
        kind, _, name = bid.partition(":")
        if kind == "upload":
            got = self._kept(name)
            return got is not None and isinstance(got[1], Path)
        return kind == "folder" and self._plays(name)

    def _plays(self, name: str) -> bool:
        """Whether the folder's file ``name`` plays as a video: by its suffix, and for a PNG, a GIF
        or a WebP by what it holds (an animated PNG, a GIF of more than one image, an animated
        WebP where OpenCV reads one, as ``images.file_moves`` tells), read once a version."""
        suffix = Path(name).suffix.lower()
        if suffix not in (".png", ".gif", ANIMATED_WEBP):
            return suffix in OWN_DEMUXERS
        path = self.folder / name
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        key = (name, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            told = self._animated.get(key)
        if told is None:
            try:
                with open_own(path) as f:
                    told = file_moves(f)
            except (InputError, OSError):
                told = False
            with self._lock:
                self._animated[key] = told
                while len(self._animated) > PNGS_TOLD:
                    self._animated.popitem(last=False)
        return told

    @staticmethod
    def _item(bid: str, label: str, kind: str, video: bool = False) -> dict:
        return {"id": bid, "label": label, "kind": kind, "thumb": f"/api/thumb/{bid}", "video": video}

    # ------------------------------------------------------------------ lookup
    def resolve(self, bid) -> str:
        """``bid`` with ``recent:N`` replaced by the id it stands for; refuses anything else
        than the four kinds."""
        if not isinstance(bid, str) or ":" not in bid:
            raise BadRequest(f"background id {bid!r} is not KIND:NAME: use one of GET /api/backgrounds's ids")
        kind, _, name = bid.partition(":")
        if kind == "recent":
            with self._lock:
                recent = list(self._recent)
            if not name.isdigit() or int(name) >= len(recent):
                raise NotFound(f"background {bid!r}: there is no such recent background: list them again")
            return recent[int(name)]
        if kind not in ("bundled", "folder", "upload"):
            raise BadRequest(f"background id {bid!r}: the kind must be bundled, folder, upload or recent")
        return bid

    def label(self, bid: str) -> str:
        kind, _, name = bid.partition(":")
        if kind == "upload":
            got = self._kept(name)
            return got[0] if got else bid
        return _label(name)

    def _kept(self, number: str) -> tuple[str, np.ndarray | Path] | None:
        """(label, picture or video path) of upload ``number`` (an id's part after "upload:"), if kept."""
        with self._lock:
            return self._uploads.get(int(number)) if number.isdigit() else None

    def _upload(self, bid: str) -> tuple[str, np.ndarray | Path]:
        got = self._kept(bid.partition(":")[2])
        if got is None:
            raise NotFound(f"background {bid!r}: no such upload in this run: upload the file again")
        return got

    def video(self, bid) -> tuple[str, str, Path] | None:
        """(resolved id, label, path) when ``bid`` names a video in the user's folder or an uploaded
        one (open it with ``open_own``: a link swapped in since is refused); None for a picture;
        NotFound when the folder's listing, or this run's uploads, have no such file."""
        bid = self.resolve(bid)
        kind, _, name = bid.partition(":")
        if kind == "upload":
            label, kept = self._upload(bid)
            return (bid, label, kept) if isinstance(kept, Path) else None
        if kind != "folder" or not self._plays(name):
            return None
        if name not in self._folder_names():
            raise NotFound(f"background {bid!r}: no such video in {self.folder}: put it there")
        return bid, _label(name), self.folder / name

    def picture(self, bid) -> tuple[str, str, np.ndarray]:
        """(resolved id, label, RGB image) of an allowed background (a video's first frame);
        NotFound / BadRequest otherwise."""
        video = self.video(bid)
        if video is not None:
            bid, label, clip = video
            try:
                return bid, label, first_picture(clip, own_file=True)
            except VbgError as e:
                raise BadRequest(f"background {bid!r}: {e}") from None
        bid = self.resolve(bid)
        kind, _, name = bid.partition(":")
        if kind == "upload":
            label, kept = self._upload(bid)
            assert isinstance(kept, np.ndarray)  # a video was returned above
            return bid, label, kept
        if kind == "bundled":
            path = bundled_backgrounds().get(name)  # the exact file name, nothing joined
            if path is None:
                raise NotFound(f"background {bid!r}: no bundled background of that name: see vbg backgrounds")
        else:
            if name not in self._folder_names():  # only what the folder's listing holds
                raise NotFound(f"background {bid!r}: no such picture in {self.folder}: put it there, "
                               "or upload it")
            path = self.folder / name
        try:
            image = read_srgb(path) if kind == "bundled" else _read_own(path)
        except VbgError as e:
            raise BadRequest(f"background {bid!r}: {e}") from None
        return bid, _label(name), image

    def used(self, bid: str) -> None:
        """``bid`` (resolved) was just put behind the person: first of the recent ones."""
        with self._lock:
            if bid in self._recent:
                self._recent.remove(bid)
            self._recent.appendleft(bid)

    def showing(self, bid: str | None) -> None:
        """The background behind the person is now ``bid`` (None: not one of the library's): an
        upload shown is not let go of, however many come after it."""
        with self._lock:
            self._showing = bid

    # ------------------------------------------------------------------ uploads
    def add_upload(self, data: bytes, name: str = "upload") -> str:
        """A picture sent whole, decoded and kept in memory; its ``upload:N`` id, labelled by the
        stem of its file ``name``. A GIF of more than one image, an animated PNG or an animated
        WebP is kept on disk as a video instead (``images.moving_picture``), and plays as the
        folder's do."""
        label = Path(name).stem or name
        kind = moving_picture(data)
        moving = ANIMATED_WEBP if kind == "animated WebP" else MOVING_PICTURES.get(kind or "")
        if moving is not None:
            return self.add_video_upload(io.BytesIO(data).read, len(data), label, moving)
        # InputError (one line, naming the upload) for anything not an image; a phone's P3 in sRGB
        image = decode_srgb(np.frombuffer(data, np.uint8), f"the uploaded {name}")
        return self._keep(label, image)

    def add_video_upload(self, read, length: int, name: str, suffix: str) -> str:
        """A video of ``length`` bytes from ``read`` (a file's ``read``), of the kind ``suffix``
        names (a key of ``OWN_DEMUXERS``, or ``ANIMATED_WEBP``), kept on disk for this run
        (:mod:`.uploads`) once its first frame decodes; its ``upload:N`` id. BadRequest for bytes
        that are not such a video (nothing is kept); ``UploadRefused`` where it cannot be kept."""
        if suffix not in OWN_DEMUXERS and suffix != ANIMATED_WEBP:
            raise UploadRefused(415, f"a {suffix or 'nameless'} video: the filter plays {PLAYED_KINDS} videos: "
                                     "convert it to mp4")
        path = self.videos.add(read, length, suffix)
        try:
            first = first_picture(path, own_file=True)  # read as its suffix says, as a folder's video
        except VbgError as e:
            self.videos.remove(path)
            raise BadRequest(str(e).replace(str(path), f"the uploaded {name}{suffix}")) from None
        bid = self._keep(name, path)
        jpeg = encode_jpeg(first, THUMB_WIDTH)
        with self._lock:
            self._thumbs[bid] = jpeg
        return bid

    def _keep(self, name: str, kept: np.ndarray | Path) -> str:
        """An upload numbered and listed; the oldest ones beyond the limits let go of (a video's
        file removed), except the one behind the person."""
        gone_files = []
        with self._lock:
            n = self._next_upload
            self._next_upload += 1
            self._uploads[n] = (f"{name} {n}", kept)

            def over() -> list[int]:
                videos = [k for k, v in self._uploads.items() if isinstance(v[1], Path)]
                if len(videos) > VIDEO_UPLOADS_KEPT:
                    return videos
                return list(self._uploads) if len(self._uploads) > UPLOADS_KEPT else []

            while (candidates := [k for k in over() if f"upload:{k}" != self._showing]):
                old = candidates[0]
                _, dropped = self._uploads.pop(old)
                if isinstance(dropped, Path):
                    gone_files.append(dropped)
                gone = f"upload:{old}"
                if gone in self._recent:
                    self._recent.remove(gone)
                self._thumbs.pop(gone, None)
        for path in gone_files:
            self.videos.remove(path)
        return f"upload:{n}"

    def close(self) -> None:
        """The run ends: its uploaded videos are removed."""
        self.videos.close()

    # ------------------------------------------------------------------ thumbnails
    def thumb(self, bid) -> bytes:
        bid = self.resolve(bid)
        with self._lock:
            cached = self._thumbs.get(bid)
        if cached is not None:
            return cached
        _, _, image = self.picture(bid)
        jpeg = encode_jpeg(image, THUMB_WIDTH)
        with self._lock:
            self._thumbs[bid] = jpeg
            while len(self._thumbs) > 64:
                self._thumbs.popitem(last=False)
        return jpeg


def _read_own(path: Path) -> np.ndarray:
    """A picture of the user's folder: opened without following a link (one put there after the
    listing is refused too) and only when it is a regular file (``open_own``)."""
    from ..images import MAX_FILE_BYTES

    try:
        f = open_own(path)
    except InputError as e:
        raise NotFound(f"background {e}") from None
    with f:
        if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
            raise BadRequest(f"background {path.name} is too large for a picture: scale it down")
        data = f.read()
    return decode_srgb(np.frombuffer(data, np.uint8), path)


def encode_jpeg(rgb: np.ndarray, width: int, quality: int = 75) -> bytes:
    """``rgb`` scaled to ``width`` pixels wide (aspect kept), as JPEG bytes."""
    h, w = rgb.shape[:2]
    height = max(1, round(h * width / w))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ControlError("a JPEG could not be encoded")
    return buf.tobytes()
