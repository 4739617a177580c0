"""Where a run keeps the videos the control page (or ``vbg ctl background CLIP``) uploads.

A picture upload is decoded and kept in memory; a video plays from a file, decoded as it
plays. Each run that is sent one makes a folder of its own, ``run-XXXXXXXX``, under
``<vbg cache>/uploads`` (``mkdtemp``: a fresh random name, mode 0700, made exclusively), holds
an ``flock`` on its ``.lock`` file while it runs, and writes each video there through
:class:`vbg.fsutil.NewFile` (a fresh hidden name, ``O_EXCL``, renamed into place once whole),
so a video is either all there or not at all. A video is removed when the library lets go of it
(an older upload pushed out by newer ones), and the folder when the run ends; a folder left by
a run that crashed (its lock free) is removed by the next run that makes one. Where there are no
locks to tell (Windows, some network file systems) the ``.lock`` file names its run (host and
process id): a folder of this machine whose process is gone is removed; another machine's is
left alone.

The bytes come from whoever holds the control token, so the file is read as its name's kind
says (``OWN_DEMUXERS``), never as FFmpeg guesses from the bytes, as for the backgrounds folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ControlError
from ..fsutil import NewFile, try_lock, write_error_hint
from .runtime import process_alive

MAX_UPLOAD = 25 << 20  # bytes: a picture, read whole and decoded in memory
MAX_VIDEO_UPLOAD = 1 << 30  # bytes: a few minutes of 1080p; longer belongs in the backgrounds folder
CHUNK = 1 << 20
FREE_MARGIN = 256 << 20  # what an upload leaves free on the disk at least
STALE_UNLOCKED_S = 600  # a run folder without a lock file (its run died making it) is removed after this
LOCK_NAME = ".lock"


class UploadRefused(ControlError):
    """An upload vbg does not keep: ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class VideoUploads:
    """This run's uploaded videos on disk (see the module docstring); thread-safe."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._folder: Path | None = None
        self._lock_fd = -1
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # one upload at a time: N at once would need N times the disk
        self._count = 0
        self.finished = 0  # uploads whose writing has ended, kept or not

    @property
    def root(self) -> Path:
        if self._root is None:
            from ..models.hub import cache_dir

            self._root = cache_dir() / "uploads"
        return self._root

    @property
    def folder(self) -> Path | None:
        """This run's folder, once the first upload made it."""
        return self._folder

    def _made(self) -> Path:
        """This run's folder, made (and the folders of dead runs removed) on first use."""
        if self._folder is not None:
            return self._folder
        root = self.root
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            remove_dead_runs(root)
            folder = Path(tempfile.mkdtemp(prefix="run-", dir=root))  # 0700, a name nobody had
            fd = os.open(folder / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as e:
            raise UploadRefused(507, f"a video upload cannot be kept in {root} ({e.strerror or e}): "
                                     f"{write_error_hint(e)}, or set VBG_CACHE_DIR to a writable folder") from None
        try_lock(fd)  # a new file: nobody else has it
        with contextlib.suppress(OSError):  # whose run it is, for a machine without locks to tell
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
        self._folder, self._lock_fd = folder, fd
        return folder

    def add(self, read: Callable[[int], bytes], length: int, suffix: str) -> Path:
        """``length`` bytes from ``read`` written to a new file of this run's folder, named with
        ``suffix``; its path once whole. ``UploadRefused`` (507) where the disk has no room or
        the folder cannot be written; ``ConnectionError`` when the sender stops short (nothing
        is left behind either way); 409 while another upload is being written."""
        if length > MAX_VIDEO_UPLOAD:
            raise UploadRefused(413, f"the video is {length / 2**20:.0f} MB: an upload may be at most "
                                     f"{MAX_VIDEO_UPLOAD >> 20} MB; put a longer one in the backgrounds folder")
        if not self._writing.acquire(blocking=False):
            raise UploadRefused(409, "another video is being uploaded: wait until it is done")
        try:
            with self._lock:
                folder = self._made()
                self._count += 1
                target = folder / f"{self._count}{suffix}"
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                free = None
            if free is not None and free < length + FREE_MARGIN:
                raise UploadRefused(507, f"the video is {length / 2**20:.0f} MB and {folder.parent} has "
                                         f"{free / 2**20:.0f} MB free: free some disk space, or set "
                                         "VBG_CACHE_DIR to a folder on another disk")
            return _receive(read, length, target)
        finally:
            self.finished += 1
            self._writing.release()

    def remove(self, path: Path) -> None:
        """A video the library let go of (only one of this run's folder)."""
        if self._folder is not None and Path(path).parent == self._folder:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        """The run ends: its folder and every video in it removed."""
        with self._lock:
            folder, fd = self._folder, self._lock_fd
            self._folder, self._lock_fd = None, -1
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def _receive(read: Callable[[int], bytes], length: int, target: Path) -> Path:
    new = NewFile(target, check_busy=False, replace=False)
    try:
        left = length
        while left:
            chunk = read(min(CHUNK, left))  # the sender's errors (gone, stalled) go up as they are
            if not chunk:
                raise ConnectionError(f"the upload stopped after {length - left} of {length} bytes")
            try:
                new.write(chunk)
            except OSError as e:
                raise _WriteFailed(e) from e
            left -= len(chunk)
        try:
            return new.commit()
        except OSError as e:
            raise _WriteFailed(e) from e
    except _WriteFailed as failed:
        new.discard()
        error = failed.error
        if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise UploadRefused(507, f"the disk of {target.parent.parent} filled up during the upload: free some "
                                     "disk space, or set VBG_CACHE_DIR to a folder on another disk") from None
        raise UploadRefused(507, f"the video could not be written to {target.parent} ({error.strerror or error}): "
                                 f"{write_error_hint(error)}") from None
    except BaseException:
        new.discard()
        raise


class _WriteFailed(Exception):
    """Writing the upload's file failed (not reading what was sent)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def remove_dead_runs(root: Path, lock: Callable[[int], bool | None] = try_lock) -> list[str]:
    """Remove the run folders under ``root`` whose run has ended without removing its own (a crash,
    a kill): their lock is free, or, where there are no locks (``lock`` says None), their ``.lock``
    names a process of this machine that is gone. The names removed."""
    gone = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return gone
    for e in entries:
        if not e.name.startswith("run-") or not e.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(os.path.join(e.path, LOCK_NAME), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:  # made, but its run died before the lock: remove it once it is old
            if _old(e):
                shutil.rmtree(e.path, ignore_errors=True)
                gone.append(e.name)
            continue
        except OSError:
            continue
        try:
            free = lock(fd)  # free: its run is gone (a live run holds it); None: no locks here to tell
            if free is None:
                free = _owner_gone(fd, e)
        finally:
            os.close(fd)
        if free:
            shutil.rmtree(e.path, ignore_errors=True)
            gone.append(e.name)
    return gone


def _old(entry: os.DirEntry) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_UNLOCKED_S
    except OSError:
        return False


def _owner_gone(fd: int, entry: os.DirEntry) -> bool:
    """Whether the run a ``.lock`` (open as ``fd``) names has ended: a process of this machine that
    no longer runs. One of another machine, or a process that runs (perhaps another program by
    now), is not; a record that cannot be read is taken for a run that died writing it, once old."""
    try:
        owner = json.loads(os.read(fd, 4096) or b"null")
    except (OSError, ValueError):
        owner = None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int) or not isinstance(owner.get("host"), str):
        return _old(entry)
    return owner["host"] == socket.gethostname() and owner["pid"] != os.getpid() and not process_alive(owner["pid"])
