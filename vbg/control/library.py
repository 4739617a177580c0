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
- ``recent:N``: the N-th most recently used of those (0 = the newest); kept for older clients:
  the listing names a recent one by the id it stands for (a stable id: a list made before another
  pick still names what it showed), with ``kind`` "recent".

A request names an id; the id is looked up in these sets (a dictionary, a fresh folder
listing), never joined onto a path: no ``..``, no absolute path, no link leads anywhere else.
A thumbnail's address names its file's version (``?v=``: inode, size, modification time), so a
browser may keep it, and a changed file gets a new address; the server keeps a few hundred made
thumbnails keyed the same way (a big JPEG is decoded at a half, a quarter or an eighth of its
size: a 24 Mpx photo's thumbnail costs a fraction of its whole decode). ``version()`` is a cheap
fingerprint of the listing (the folder's names and versions, the uploads and recent ones), for a
page to tell when to list again.
Default folder: ``$XDG_DATA_HOME/vbg/backgrounds`` (``~/.local/share/vbg/backgrounds``);
``[control] backgrounds_dir`` / ``--backgrounds-dir`` change it.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from urllib.parse import quote

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
from ..icc import to_srgb
from ..images import (
    apply_orientation,
    check_pixels,
    decode_srgb,
    embedded_icc,
    exif_orientation,
    file_moves,
    moving_picture,
    probe_image,
    read_srgb,
    to_rgb8,
)
from .uploads import UploadRefused, VideoUploads

PICTURE_SUFFIXES = (*IMAGE_SUFFIXES, ".heic", ".heif", ".avif")  # a phone's photos too (vbg.heif)
FOLDER_SUFFIXES = (*PICTURE_SUFFIXES, *OWN_DEMUXERS)  # an animated GIF plays as the video it is
_SUFFIXES = frozenset(FOLDER_SUFFIXES)

THUMB_WIDTH = 160
THUMBS_KEPT = 1024  # made thumbnails kept (a few kB each): a folder of a few hundred and more
THUMB_MAKERS = 2  # thumbnails made at once: the render thread keeps the other cores
# A big JPEG is decoded reduced (libjpeg's DCT scaling) while its width as shown stays at least this
REDUCED_MIN_SIDE = 2 * THUMB_WIDTH
REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
UPLOADS_KEPT = 16
VIDEO_UPLOADS_KEPT = 4  # on disk, up to MAX_VIDEO_UPLOAD each
RECENT_KEPT = 8
PNGS_TOLD = 1024  # the folder's PNGs and GIFs whose animation is remembered (by name, size and time)
FOLDER_MAX = 500  # pictures listed from the user's folder
LISTING_REUSE_S = 1.0  # a listing a thumbnail or version() uses is reused this long (a page asks for hundreds
# of thumbnails at once; every open page, every vbg ctl status asks for the version each second)


_clock = time.monotonic  # (a test's clock replaces it)


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
    """What a file of ``name`` is shown as: its stem, readable (a name that is not UTF-8, held with
    its bytes as surrogates, as os.listdir gives it, has U+FFFD where a byte does not decode)."""
    stem = Path(name).stem
    return stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _version(st: os.stat_result) -> str:
    """A file's version for a thumbnail's address: another file, or the same one changed, has another."""
    key = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.blake2b(key, digest_size=6).hexdigest()


UPLOAD_VERSION = "u"  # an upload never changes (its number is not reused in a run; the token differs per run)


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
        self._changes = 0  # uploads kept or let go of, recent ones changed: part of version()
        self._thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # (id, version) -> JPEG
        self._making = threading.BoundedSemaphore(THUMB_MAKERS)
        self._bundled_versions: dict[str, str] = {}
        self._listed: tuple[float, list[tuple[str, str]]] | None = None  # (when, entries): _recent_entries()
        self._animated: OrderedDict[tuple, bool] = OrderedDict()  # (name, inode, size, mtime) -> it moves?

    # ------------------------------------------------------------------ listing
    def _folder_entries(self) -> list[tuple[str, str]]:
        """(name, version) of the pictures and videos the folder lists, by name: the first
        ``FOLDER_MAX`` by name, and only those are stat()ed (a folder of thousands costs one
        readdir and a sort, not one lstat a file)."""
        try:
            with os.scandir(self.folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")
                                  and os.path.splitext(e.name)[1].lower() in _SUFFIXES), key=lambda e: e.name)
        except OSError:
            return []  # no folder yet: none of the user's own
        found = []
        for e in entries:
            if e.is_dir(follow_symlinks=False):  # d_type: no stat for a folder named like a picture
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((e.name, _version(st)))
                if len(found) == FOLDER_MAX:
                    break
        self._remember(found)
        return found

    def _remember(self, entries: list[tuple[str, str]]) -> None:
        with self._lock:
            self._listed = (_clock(), entries)

    def _recent_entries(self) -> list[tuple[str, str]]:
        """The folder's listing, made again at most every ``LISTING_REUSE_S`` (a fresh one made
        meanwhile, by ``listing()`` say, is reused): what ``version()`` (each status poll) and a
        thumbnail's lookup use. A pick looks its name up in a fresh listing."""
        with self._lock:
            got = self._listed
        if got is not None and 0 <= _clock() - got[0] < LISTING_REUSE_S:
            return got[1]
        return self._folder_entries()

    def _folder_names(self) -> list[str]:
        return [name for name, _ in self._folder_entries()]

    def _listed_names(self) -> frozenset[str]:
        """The folder's listing, made at most every ``LISTING_REUSE_S``: what a thumbnail's name is
        looked up in (a file removed since is not opened: ``open_own`` refuses what is not there)."""
        return frozenset(name for name, _ in self._recent_entries())

    def _bundled_version(self, name: str, path: Path) -> str:
        got = self._bundled_versions.get(name)
        if got is None:
            try:
                got = _version(os.stat(path))
            except OSError:
                got = "0"
            self._bundled_versions[name] = got
        return got

    def listing(self) -> tuple[list[dict], str]:
        """The items (``items()``) and the fingerprint (``version()``) of that same listing."""
        bundled = bundled_backgrounds()
        entries = self._folder_entries()
        versions = {f"bundled:{n}": self._bundled_version(n, p) for n, p in bundled.items()}
        versions.update((f"folder:{n}", v) for n, v in entries)
        out = [self._item(f"bundled:{n}", _label(n), "bundled", False, versions[f"bundled:{n}"]) for n in bundled]
        out += [self._item(f"folder:{n}", _label(n), "folder", self._plays(n), v) for n, v in entries]
        with self._lock:
            uploads = [(k, v[0], isinstance(v[1], Path)) for k, v in self._uploads.items()]
            recent = list(self._recent)
            changes = self._changes
        out += [self._item(f"upload:{k}", label, "upload", video, UPLOAD_VERSION) for k, label, video in uploads]
        for rid in recent:  # named by the id it stands for: its thumbnail and a pick are exact
            if rid.startswith("upload:") or rid in versions:  # a folder's file removed since: not listed
                out.append(self._item(rid, self.label(rid), "recent", self._is_video_id(rid),
                                      versions.get(rid, UPLOAD_VERSION)))
        return out, self._fingerprint(entries, changes)

    def items(self) -> list[dict]:
        return self.listing()[0]

    def version(self) -> str:
        """A cheap fingerprint of the listing: another whenever a file of the folder is added,
        removed or changed (seen within ``LISTING_REUSE_S``: the folder's listing is reused that
        long), an upload is kept or let go of, or the recent ones change (at once)."""
        with self._lock:
            changes = self._changes
        return self._fingerprint(self._recent_entries(), changes)

    @staticmethod
    def _fingerprint(entries: list[tuple[str, str]], changes: int) -> str:
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{changes}\0".encode())
        for name, version in entries:
            h.update(f"{name}\0{version}\0".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

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
    def _item(bid: str, label: str, kind: str, video: bool, version: str) -> dict:
        thumb = f"/api/thumb/{quote(bid, safe=':', errors='surrogateescape')}?v={version}"
        return {"id": bid, "label": label, "kind": kind, "thumb": thumb, "video": video}

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
            self._changes += 1

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
        try:
            image = decode_srgb(np.frombuffer(data, np.uint8), f"the uploaded {name}")
        except InputError as e:  # "image the uploaded x.png is empty": a file's words ("image x.png is empty")
            raise type(e)(str(e).removeprefix("image ")) from None
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
        try:
            jpeg = encode_jpeg(first, THUMB_WIDTH)
        except BaseException:
            self.videos.remove(path)
            raise
        bid = self._keep(name, path)
        self._keep_thumb((bid, UPLOAD_VERSION), jpeg)
        return bid

    def _keep(self, name: str, kept: np.ndarray | Path) -> str:
        """An upload numbered and listed, labelled ``name`` (``name 2``, ``name 3``... where another
        background listed has that label already); the oldest ones beyond the limits let go of (a
        video's file removed), except the one behind the person."""
        gone_files = []
        taken = {_label(n) for n in bundled_backgrounds()} | {_label(n) for n in self._folder_names()}
        with self._lock:
            n = self._next_upload
            self._next_upload += 1
            taken |= {label for label, _ in self._uploads.values()}
            label, k = name, 1
            while label in taken:
                k += 1
                label = f"{name} {k}"
            self._uploads[n] = (label, kept)
            self._changes += 1

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
                self._thumbs.pop((gone, UPLOAD_VERSION), None)
        for path in gone_files:
            self.videos.remove(path)
        return f"upload:{n}"

    def close(self) -> None:
        """The run ends: its uploaded videos are removed."""
        self.videos.close()

    # ------------------------------------------------------------------ thumbnails
    def thumb(self, bid) -> bytes:
        return self.versioned_thumb(bid)[0]

    def thumb_version(self, bid: str) -> str:
        """The version of the (resolved) ``bid``'s file now, as its listed thumbnail address has it."""
        kind, _, name = bid.partition(":")
        try:
            if kind == "folder":
                return _version(os.stat(self.folder / name, follow_symlinks=False))
            if kind == "bundled":
                path = bundled_backgrounds().get(name)
                return self._bundled_version(name, path) if path is not None else "0"
        except OSError:
            return "0"  # gone: picture() says so
        return UPLOAD_VERSION

    def versioned_thumb(self, bid) -> tuple[bytes, str]:
        """(JPEG, version): the thumbnail of the background ``bid`` names, made from its file as it
        is now, and that file's version (the ``v`` of its listed address: a thumbnail asked for
        with this version may be kept by the browser)."""
        bid = self.resolve(bid)
        version = self.thumb_version(bid)
        key = (bid, version)
        with self._lock:
            cached = self._thumbs.get(key)
            if cached is not None:
                self._thumbs.move_to_end(key)
                return cached, version
        with self._making:  # a few at once: a page of hundreds does not starve the render thread
            with self._lock:
                cached = self._thumbs.get(key)
            if cached is not None:
                return cached, version
            jpeg = encode_jpeg(self._thumb_picture(bid), THUMB_WIDTH)
        self._keep_thumb(key, jpeg)
        return jpeg, version

    def _keep_thumb(self, key: tuple[str, str], jpeg: bytes) -> None:
        with self._lock:
            self._thumbs[key] = jpeg
            self._thumbs.move_to_end(key)
            while len(self._thumbs) > THUMBS_KEPT:
                self._thumbs.popitem(last=False)

    def _thumb_picture(self, bid: str) -> np.ndarray:
        """The picture a thumbnail is made of: ``picture()``'s, a big JPEG of the folder or of
        vbg's decoded reduced (``thumb_source``)."""
        kind, _, name = bid.partition(":")
        if kind == "folder" and Path(name).suffix.lower() in (".jpg", ".jpeg") and name in self._listed_names():
            path = self.folder / name
            try:
                return thumb_source(_read_own_bytes(path), path)
            except VbgError as e:
                raise BadRequest(f"background {bid!r}: {e}") from None
        if kind == "bundled" and Path(name).suffix.lower() in (".jpg", ".jpeg"):
            shipped = bundled_backgrounds().get(name)
            if shipped is not None:
                try:
                    return thumb_source(np.fromfile(str(shipped), np.uint8), shipped)
                except (VbgError, OSError):
                    pass  # picture() says what is wrong
        return self.picture(bid)[2]


def _read_own(path: Path) -> np.ndarray:
    """A picture of the user's folder: opened without following a link (one put there after the
    listing is refused too) and only when it is a regular file (``open_own``)."""
    return decode_srgb(_read_own_bytes(path), path)


def _read_own_bytes(path: Path) -> np.ndarray:
    """The bytes of a file of the user's folder, as ``_read_own`` opens it."""
    from ..images import MAX_FILE_BYTES

    try:
        f = open_own(path)
    except InputError as e:
        raise NotFound(f"background {e}") from None
    with f:
        if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
            raise BadRequest(f"background {path.name} is too large for a picture: scale it down")
        data = f.read()
    return np.frombuffer(data, np.uint8)


def thumb_source(data: np.ndarray, name) -> np.ndarray:
    """The image file in ``data`` as ``decode_srgb`` gives it, for a thumbnail: a JPEG at least twice
    ``REDUCED_MIN_SIDE`` wide (as shown: turned as its EXIF says) is decoded at a half, a quarter or
    an eighth of its size (the largest reduction that keeps that width), turned and in sRGB; any
    other file (or a JPEG the reduced decode refuses) as ``decode_srgb`` does."""
    try:
        header = probe_image(data.data, str(name))
    except InputError:
        header = None  # decode_srgb says what is wrong
    if header is None or header[0] != "JPEG":
        return decode_srgb(data, name)
    _, w, h = header
    check_pixels(name, w, h)
    orientation = exif_orientation(data.data, "JPEG")
    shown_width = h if orientation >= 5 else w  # 5..8 turn it a quarter: its height is the thumbnail's width
    flag = next((f for r, f in REDUCED if shown_width // r >= REDUCED_MIN_SIDE), None)
    if flag is None:
        return decode_srgb(data, name)
    try:
        img = cv2.imdecode(data, flag | cv2.IMREAD_IGNORE_ORIENTATION)  # the EXIF turn is applied below, as decode_rgb does
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        return decode_srgb(data, name)  # its own error for a damaged file
    img = to_rgb8(apply_orientation(img, orientation))
    return to_srgb(img, embedded_icc(data, str(name)))


TALLEST = 4  # a thumbnail or preview is at most this many times as tall as its width is asked


def encode_jpeg(rgb: np.ndarray, width: int, quality: int = 75) -> bytes:
    """``rgb`` scaled to ``width`` pixels wide (aspect kept), as JPEG bytes; a picture taller than
    ``TALLEST`` times that (a strip, or a damaged file's stated size) is scaled to that height
    instead, narrower (JPEG holds no side over 65500 pixels)."""
    h, w = rgb.shape[:2]
    scale = min(width / w, TALLEST * width / h)
    width, height = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ControlError("a JPEG could not be encoded")
    return buf.tobytes()
