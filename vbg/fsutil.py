"""Creating outputs safely: every file vbg writes is created exclusively (``O_EXCL``,
never following a symlink) under a fresh hidden name in its target's folder, written
through the descriptor that created it, and renamed into place when complete.

In: a target path. Out: ``NewFile`` / ``NewFolder`` (the temporary, written
through its descriptor or ``NewFile.sink``, then renamed to the target or
removed), ``write_new`` for small files at once. While a run writes, its
temporary is ``flock``-ed: a second run for the same target finds it busy
(``busy_writer``; with ``check_busy`` it refuses at start, ``OutputBusy`` with
the first one's pid); the kernel drops the lock however a run ends. Thread: any; the busy check and the temporary's creation happen
under a lock on the folder.

Names, all made here (one scheme for every output: the live recording, ``vbg
process``'s files and PNG folders, exported models):

* ``.NAME.XXXXXXXX.partial``: the temporary (``NewFile``, ``NewFolder``): hidden,
  random, never a result. Nothing needs the real extension at the end: the media
  writers name their format to PyAV, which writes through ``NewFile.sink``.
* ``NAME.partial.EXT`` (``partial_name``): where an unfinished output's frames so
  far are kept (an interrupted ``vbg process``), then ``NAME.partial-2.EXT``...
  (``free_name``): a kept partial never replaces a file.

Why (no fixed temporary names, the lock, refusing a second run):
docs/design/output-files.md.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

from vbg.errors import OutputError, one_line

try:
    import fcntl
except ImportError:  # Windows: no flock (there an open file cannot be renamed over, or removed, anyway)
    fcntl = None  # type: ignore[assignment]

# What only POSIX has, looked up once: without it (Windows) a lock is skipped, a folder is
# followed by its path instead of a descriptor, and mkstemp's own permissions stay.
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = (fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN) if fcntl else (1, 2, 4, 8)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FDS = os.open in os.supports_dir_fd and os.link in os.supports_dir_fd and os.unlink in os.supports_dir_fd
_LINK_NOFOLLOW = {"follow_symlinks": False} if os.link in os.supports_follow_symlinks else {}

TEMP_SUFFIX = ".partial"
_MKSTEMP_CHARS = 8  # the random part of a tempfile name
SEQUENCE_FRAME = re.compile(r"frame_\d{6}\.png")  # a frame of a PNG sequence vbg wrote


def _umask() -> int:
    """The process umask. Read from /proc where it is there: setting it to 0 and back (the
    portable way) races with files other threads create meanwhile (the recorder calls this
    while the live filter runs)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path) -> str:
    """``.NAME.``: the hidden prefix of ``target``'s temporaries. A long name is cut (a full
    255-byte name plus the random part and ``.partial`` would not fit the folder) and made
    unique again with a hash, so two long names that share a start do not meet."""
    name = target.name
    raw = os.fsencode(name)  # the name's bytes as on disk: one that is not UTF-8 too (its \udcXX)
    if len(raw) > 100:
        digest = hashlib.sha1(raw).hexdigest()[:8]
        name = _cut(name, 80) + "~" + digest
    return f".{name}."


def _cut(name: str, max_bytes: int) -> str:
    """The longest start of ``name`` whose bytes on disk fit ``max_bytes``, of whole characters: a
    UTF-8 one is never cut in two (a macOS or exFAT disk refuses such a name)."""
    cut = len(name)
    while cut and len(os.fsencode(name[:cut])) > max_bytes:
        cut -= 1
    return name[:cut]


def _lock(fd: int, flags: int) -> bool:
    """``flock``; False where the file system or the platform has no locks (then nothing is
    detected, nothing breaks)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, flags)
        return True
    except BlockingIOError:
        raise
    except OSError:
        return False


def try_lock(fd: int) -> bool | None:
    """An exclusive ``flock`` on ``fd`` if nobody holds one: True when taken, False when another
    process (or descriptor) holds it, None where there are no locks (nothing can be told)."""
    try:
        return True if _lock(fd, LOCK_EX | LOCK_NB) else None
    except BlockingIOError:
        return False


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (the directory itself): looking for another
    run's temporary and creating our own are one step for every vbg run."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        _wait_for_folder_lock(fd, folder)
        yield
    finally:
        os.close(fd)


FOLDER_LOCK_WAIT_S = 5.0  # vbg holds a folder's lock for milliseconds: longer is another program


def _wait_for_folder_lock(fd: int, folder: Path) -> None:
    """Take the folder's lock, waiting at most ``FOLDER_LOCK_WAIT_S``: anyone who can read a folder
    can lock it, and another user of a shared folder holding it for ever hung every vbg run writing
    there, unsaid. After the wait vbg goes on without it, saying so (what the lock guards, two runs
    writing one target at once, is then not told apart)."""
    deadline = time.monotonic() + FOLDER_LOCK_WAIT_S
    while True:
        try:
            _lock(fd, LOCK_EX | LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    pid = _lock_owner(fd)
    who = f"another program (pid {pid})" if pid else "another program"
    logging.getLogger("vbg").warning(
        "%s has held a lock on the folder %s for %g s: going on without it (two vbg runs writing one file there "
        "at once would not be told apart)", who, folder, FOLDER_LOCK_WAIT_S)


def _lock_owner(fd: int) -> int | None:
    """The pid holding a flock on ``fd``'s file, from /proc/locks (Linux); None if unknown."""
    if not hasattr(os, "major"):
        return None
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                # 1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[-3].count(":") == 2:
                    major, minor, inode = parts[-3].split(":")
                    if (int(inode) == st.st_ino and int(major, 16) == os.major(st.st_dev)
                            and int(minor, 16) == os.minor(st.st_dev)):
                        return int(parts[-4])
    except (OSError, ValueError):
        pass
    return None


def busy_writer(target: str | Path) -> int | None:
    """Whether another run is writing ``target`` now: the pid of the run holding the lock on
    one of ``target``'s temporaries (0 when the pid is unknown), or None when none is.
    A temporary left by a killed run holds no lock and does not count."""
    target = Path(target)
    prefix = _temp_prefix(target)
    try:
        names = [n for n in os.listdir(target.parent or ".")
                 if n.startswith(prefix) and n.endswith(TEMP_SUFFIX)
                 and len(n) == len(prefix) + _MKSTEMP_CHARS + len(TEMP_SUFFIX)]
    except OSError:
        return None
    for name in names:
        try:
            fd = os.open(target.parent / name, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
        except OSError:
            continue
        try:
            if _probe_shared(fd) is False:
                return _lock_owner(fd) or 0
        finally:
            os.close(fd)
    return None


def _take_shared(fd: int) -> bool | None:
    """A shared ``flock`` on ``fd`` if no run holds an exclusive one: True when taken (kept),
    False when a run holds the file, None where there are no locks (nothing can be told)."""
    try:
        return True if _lock(fd, LOCK_SH | LOCK_NB) else None
    except BlockingIOError:
        return False


def _probe_shared(fd: int) -> bool | None:
    """``_take_shared``, the lock let go at once: whether the file is free of runs writing it."""
    got = _take_shared(fd)
    if got:
        fcntl.flock(fd, LOCK_UN)
    return got


def busy_message(target: Path, pid: int) -> str:
    who = f"another vbg run (pid {pid})" if pid else "another vbg run"
    return f"{target} is being written by {who}: wait for it or choose another -o"


class OutputBusy(OSError):
    """Another run holds a temporary of the same target (see ``busy_writer``)."""

    def __init__(self, target: Path, pid: int) -> None:
        super().__init__(errno.EBUSY, busy_message(target, pid))
        self.target, self.pid = target, pid


class Swapped(OSError):
    """A temporary name no longer holds the file vbg made there: someone who can write in
    the folder replaced it (with a symlink, say) while vbg wrote."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EEXIST, f"{path} was replaced by someone else while vbg wrote it "
                                       "(the folder is writable by others): write to a folder only you can write to")


class Vanished(Swapped):
    """A temporary name holds nothing any more: it, or the whole folder, was removed while vbg
    wrote (handled as ``Swapped``: nothing is moved into place; said for what it is)."""

    def __init__(self, path: Path) -> None:
        folder = path.parent
        what = (f"the folder {folder} was removed while vbg wrote into it" if not os.path.isdir(folder)
                else f"{path} was removed while vbg wrote it")
        OSError.__init__(self, errno.ENOENT, what)


def _check_ours(path: Path, fd: int | None, made: os.stat_result | None = None) -> None:
    """``path`` (not followed) is still the file or folder open as ``fd`` (without a descriptor:
    the one ``made`` describes, stat when it was made); else ``Swapped``: renaming it would put
    the impostor in place (``Vanished`` where nothing is there: the file or its folder removed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Vanished(path) from None
    except OSError:
        raise Swapped(path) from None
    own = os.fstat(fd) if fd is not None else made
    if own is not None and (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):
        raise Swapped(path)


def _check_placed(dest: Path, fd: int | None, made: os.stat_result | None = None) -> None:
    """After a rename checked by ``_check_ours``: ``dest`` is the file we moved. If an impostor
    was swapped in between the check and the rename, its new name is removed (a link is
    removed, never followed) and ``Swapped`` raised."""
    try:
        _check_ours(dest, fd, made)
    except Swapped:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise


def free_name(target: Path, n: int, *, folder: bool = False) -> Path:
    """``NAME.EXT``, then ``NAME-2.EXT``, ``NAME-3.EXT``... (n = 1, 2, 3...); a folder's
    whole name gets the number (``seq.partial-2``)."""
    if n == 1:
        return target
    if folder:
        return target.with_name(f"{target.name}-{n}")
    return target.with_name(f"{target.stem}-{n}{target.suffix}")


def partial_name(target: str | Path) -> Path:
    """Where an unfinished output's frames so far are kept: ``out.mp4`` -> ``out.partial.mp4``,
    ``frames`` -> ``frames.partial`` (the stem cut to 200 bytes of whole characters, so a name
    that fits the folder's 255 bytes still fits with ``.partial``, a long Chinese or Cyrillic one
    too). ``keep()`` takes the next free name when it exists (``out.partial-2.mp4``,
    ``free_name``): it says which."""
    target = Path(target)
    return target.with_name(f"{_cut(target.stem, 200)}.partial{target.suffix}")


class NewFile:
    """A file made exclusively under a fresh hidden name beside ``target``
    (``.NAME.XXXXXXXX.partial``, mode 0600, locked while it is written).
    Write through ``fd`` (or ``sink``, a file object for PyAV); then ``commit()``
    renames it onto ``target``, ``keep()`` onto a free name that replaces
    nothing, ``discard()`` removes it. Raises ``OutputBusy`` when another run
    is writing ``target`` (unless ``check_busy`` is False; then the folder is not locked
    either, unless ``lock_folder``: a caller holding it itself). With ``replace``
    False, an existing ``target`` is refused now (``FileExistsError``) and
    ``commit()`` does not replace one that appears meanwhile."""

    def __init__(self, target: str | Path, *, check_busy: bool = True, replace: bool = True,
                 lock_folder: bool | None = None) -> None:
        self.target = Path(target)
        self.replace = replace
        folder = self.target.parent
        folder.mkdir(parents=True, exist_ok=True)
        # Under the folder's lock (with check_busy, or asked): made and locked in one step, so a
        # run looking for killed runs' leftovers (left_by_killed_runs) never takes it for one.
        with _folder_locked(folder) if (check_busy if lock_folder is None else lock_folder) else contextlib.nullcontext():
            _check_target(self.target, check_busy, replace)
            self.fd, name = tempfile.mkstemp(prefix=_temp_prefix(self.target), suffix=TEMP_SUFFIX, dir=folder)
            self.tmp = Path(name)
            self.done = False
            self._made: os.stat_result | None = None  # the file, once its descriptor is closed early
            _track(self)  # from here on, whatever stops the run removes it (see swept())
            _lock(self.fd, LOCK_EX)  # blocking: a busy_writer() may hold it shared for a moment
        self.sink = _Sink(self.fd)

    def write(self, data) -> None:
        self.sink.write(data)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _open_fd(self) -> int | None:
        return self.fd if self.fd >= 0 else None

    def _finish(self, dest: Path, place) -> Path:
        if self.done:
            raise ValueError(f"{self.tmp} was already committed or discarded")
        if self.fd >= 0 and hasattr(os, "fchmod"):
            os.fchmod(self.fd, 0o666 & ~_umask())  # the usual permissions, not mkstemp's 0600
        try:
            _check_ours(self.tmp, self._open_fd(), self._made)
            if fcntl is None and self.fd >= 0:  # no lock to hold, and Windows renames no file open
                self._made = os.fstat(self.fd)
                self._close_fd()
            dest = place(self.tmp, dest)
            _check_placed(dest, self._open_fd(), self._made)
        except Swapped:
            self.done = True
            _untrack(self)
            self._close_fd()
            raise
        self.done = True
        _untrack(self)
        self._close_fd()  # after the rename: the lock holds until the name is gone
        return dest

    def commit(self, dest: str | Path | None = None) -> Path:
        """Rename onto ``dest`` (default: the target), replacing what is there (a symlink
        there is replaced, never followed); without ``replace``, ``FileExistsError``
        when something is there (the temporary stays, for ``keep`` or ``discard``)."""
        def place(tmp: Path, dest: Path) -> Path:
            if self.replace:
                os.replace(tmp, dest)
            else:
                _rename_no_replace(tmp, dest, alternatives=False)
            return dest
        return self._finish(Path(dest) if dest is not None else self.target, place)

    def keep(self, dest: str | Path) -> Path:
        """Rename onto ``dest``, or onto ``dest-2``, ``dest-3``... when it exists: nothing is replaced."""
        return self._finish(Path(dest), _rename_no_replace)

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        if not self.done:
            self.done = True
            if fcntl is None:  # no lock to hold, and Windows removes no file open
                self._close_fd()
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            _untrack(self)
            self._close_fd()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.done:
            self.commit()
        else:
            self.discard()


def write_new(target: str | Path, data, *, check_busy: bool = False) -> Path:
    """``data`` into ``target``, whole or not at all: a ``NewFile`` written, synced to the disk
    and renamed over ``target``; on any failure the temporary is removed. ``check_busy``: as
    ``NewFile`` (off by default: a cache file written by two runs at once is the same file)."""
    new = NewFile(target, check_busy=check_busy)
    try:
        new.write(data)
        os.fsync(new.fd)
        return new.commit()
    except BaseException:
        new.discard()
        raise


def _check_target(target: Path, check_busy: bool, replace: bool) -> None:
    """Under the folder lock: no other run writes ``target``; it is not there unless it may be replaced."""
    if check_busy:
        pid = busy_writer(target)
        if pid is not None:
            raise OutputBusy(target, pid)
    if not replace and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, f"{target} already exists: pass --overwrite to replace it, "
                                            "or choose another -o")


def _rename_no_replace(tmp: Path, dest: Path, *, alternatives: bool = True, avoid: Collection[Path] = ()) -> Path:
    """Move file ``tmp`` to the first free one of ``dest``, ``dest-2``, ... (only ``dest``
    without ``alternatives``), never one of ``avoid``. A hard link fails if the name exists, so
    no file is ever replaced; where the file system has no hard links, the existence check and
    the rename are two steps."""
    taken = {os.path.normcase(os.path.abspath(p)) for p in avoid}
    for n in range(1, 10000 if alternatives else 2):
        cand = free_name(dest, n)
        if os.path.normcase(os.path.abspath(cand)) in taken:
            continue
        try:
            os.link(tmp, cand, **_LINK_NOFOLLOW)
        except FileExistsError:
            continue
        except OSError as e:
            # (EINVAL: Windows on a FAT/exFAT drive, which has no hard links)
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EINVAL):
                raise
            if os.path.lexists(cand):
                continue
            os.rename(tmp, cand)
            return cand
        os.unlink(tmp)
        return cand
    if not alternatives:
        raise FileExistsError(errno.EEXIST, f"{dest} appeared while vbg wrote it: it is not replaced "
                                            "without --overwrite")
    raise FileExistsError(errno.EEXIST, f"no free name like {dest}")


class _Sink:
    """A file object over a descriptor, for PyAV's ``av.open(file, "w")``: every byte is
    written or the call raises, and the first failure is kept in ``error``, so the
    writer sees a full disk at the packet that hit it (FFmpeg may only report it when
    the file is closed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as e:
            if self.error is None:
                self.error = e
            raise
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def flush(self) -> None:
        pass


class NewFolder:
    """A folder made exclusively under a fresh hidden name beside ``target``
    (``mkdtemp``: mode 0700, so no one else can plant anything in it), locked
    while it is filled. ``add(name, data)`` writes one file in it, exclusively.
    ``commit(replace=...)`` puts the whole folder in place of ``target``:
    an existing target is replaced only when it holds nothing but what
    ``replaceable`` accepts (a PNG sequence vbg wrote), and only by swapping
    folders, so ``target`` always holds exactly one run's files."""

    def __init__(self, target: str | Path, *, check_busy: bool = True, replace: bool = True) -> None:
        self.target = Path(target)
        folder = self.target.parent
        folder.mkdir(parents=True, exist_ok=True)
        with _folder_locked(folder) if check_busy else contextlib.nullcontext():
            _check_target(self.target, check_busy, replace)
            self.tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.target), suffix=TEMP_SUFFIX, dir=folder))
            # Its files are made through a descriptor of the folder, so a name swapped for a
            # link meanwhile is never followed; without descriptors of folders (Windows), by path.
            self._fd: int | None = None
            try:
                self._made = os.lstat(self.tmp)
                if _DIR_FDS:
                    self._fd = os.open(self.tmp, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.rmdir(self.tmp)
                raise
            self.done = False
            _track(self)  # from here on, whatever stops the run removes it (see swept())
            if self._fd is not None:
                _lock(self._fd, LOCK_EX)

    def add(self, name: str, data) -> None:
        """Write ``data`` as ``name`` in the folder: a new file, never one that is there."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_BINARY", 0)
        if self._fd is not None:
            fd = os.open(name, flags, 0o666, dir_fd=self._fd)
        else:
            fd = os.open(self.tmp / name, flags, 0o666)
        try:
            _Sink(fd).write(data)
        except BaseException:
            os.close(fd)  # first: Windows removes no file that is open
            fd = -1
            with contextlib.suppress(OSError):
                if self._fd is not None:
                    os.unlink(name, dir_fd=self._fd)
                else:
                    os.unlink(self.tmp / name)
            raise
        finally:
            if fd >= 0:
                os.close(fd)

    def move_in(self, path: Path, name: str) -> None:
        """Move the file ``path`` (in a folder of the caller's own) into this folder as ``name``,
        exclusively: a hard link, then the old name removed; copied where the two are on
        different file systems."""
        try:
            if self._fd is not None:
                os.link(path, name, dst_dir_fd=self._fd, **_LINK_NOFOLLOW)
            else:
                os.link(path, self.tmp / name, **_LINK_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EINVAL):  # EINVAL: Windows on FAT/exFAT
                raise
            with open(path, "rb") as f:
                self.add(name, f.read())
        os.unlink(path)

    def _close(self) -> None:
        self.done = True
        _untrack(self)
        if self._fd is not None:
            os.close(self._fd)

    def _ready(self) -> None:
        """Before ``commit``/``keep``: not finished yet, the usual permissions, and the
        temporary name still holds our folder (else ``Swapped``, and it is given up)."""
        if self.done:
            raise ValueError(f"{self.tmp} was already committed or discarded")
        if self._fd is not None and hasattr(os, "fchmod"):
            os.fchmod(self._fd, 0o777 & ~_umask())
        try:
            _check_ours(self.tmp, self._fd, self._made)
        except Swapped:
            self._close()
            raise

    def commit(self, *, replace: bool) -> Path:
        """Put the folder in place of ``target``. An existing target is replaced only
        with ``replace`` and only when ``foreign_files(target)`` is empty; otherwise
        ``FileExistsError`` (the folder stays, for ``keep`` or ``discard``)."""
        self._ready()
        if not os.path.lexists(self.target):
            try:
                os.rename(self.tmp, self.target)
                self._close()
                return self.target
            except OSError as e:  # made meanwhile, and not empty: handled as an existing target
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
        if not replace:
            raise FileExistsError(errno.EEXIST, f"{self.target} appeared while vbg wrote it: it is not replaced "
                                                "without --overwrite")
        foreign = foreign_files(self.target)
        if foreign:
            raise FileExistsError(errno.EEXIST, not_a_sequence_message(self.target, foreign))
        # Swap: the old sequence moves aside (onto an empty folder of our own), the new one in.
        was = os.lstat(self.target)
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.target), suffix=".old", dir=self.target.parent))
        _rename_onto_empty(self.target, old)
        foreign = foreign_files(old)  # put there between the check and the move: give it all back
        if foreign:
            os.rename(old, self.target)
            raise FileExistsError(errno.EEXIST, not_a_sequence_message(self.target, foreign))
        try:
            os.rename(self.tmp, self.target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rename(old, self.target)
            raise
        self._close()
        _remove_old_sequence(old, was)
        return self.target

    def keep(self, dest: str | Path) -> Path:
        """Rename onto the first free one of ``dest``, ``dest-2``, ...: nothing is replaced."""
        self._ready()
        dest = Path(dest)
        for n in range(1, 10000):
            cand = free_name(dest, n, folder=True)
            try:
                os.mkdir(cand, 0o700)  # ours now; renaming onto an empty folder replaces it
            except FileExistsError:
                continue
            try:
                _rename_onto_empty(self.tmp, cand)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # filled meanwhile by someone else
                    continue
                with contextlib.suppress(OSError):
                    os.rmdir(cand)
                raise
            self._close()
            return cand
        raise FileExistsError(errno.EEXIST, f"no free name like {dest}")

    def discard(self) -> None:
        """Remove the folder and what was written in it (idempotent). Its files are removed through
        the folder's descriptor, and the folder by name only while the name is still it: in a
        shared folder another user may rename it aside and put a link to a folder of yours at its
        name (by path, everything in that folder was removed)."""
        if self.done:
            return
        if self._fd is None:
            _remove_sequence(self.tmp, only_frames=False)
        else:
            _empty_by_fd(self._fd, only_frames=False)
            with contextlib.suppress(OSError):
                now = os.lstat(self.tmp)
                if (now.st_dev, now.st_ino) == (self._made.st_dev, self._made.st_ino):
                    os.rmdir(self.tmp)
        self._close()


def _rename_onto_empty(src: Path, empty: Path) -> None:
    """Rename the folder ``src`` onto ``empty``, an empty folder of our own made to hold the name:
    POSIX replaces it in one step. Where a rename never replaces (Windows: FileExistsError), the
    empty folder is removed first; a name someone takes in between makes the rename fail, and
    nothing is lost."""
    try:
        os.rename(src, empty)
    except FileExistsError:
        if not empty.is_dir() or empty.is_symlink() or any(empty.iterdir()):
            raise
        os.rmdir(empty)
        os.rename(src, empty)


def foreign_files(folder: Path) -> list[str]:
    """What in ``folder`` is not part of a PNG sequence vbg wrote (its ``frame_NNNNNN.png``
    files): replacing the folder would lose these. A link (the folder's, or one in it) counts."""
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if not (SEQUENCE_FRAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)):
                out.append(entry.name)
    return sorted(out)


def not_a_sequence_message(folder: Path, foreign: list[str]) -> str:
    if folder.is_symlink() or not folder.is_dir():
        return f"{folder} is a file or a link, not a folder of PNG frames: remove it, or choose another -o"
    more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
    return (f"{folder} holds files that are not a PNG sequence vbg wrote ({foreign[0]}{more}), "
            "so --overwrite will not replace it: choose a new or empty folder, or name a file (-o "
            f"{folder / 'out.mp4'})")


def _empty_by_fd(fd: int, *, only_frames: bool) -> None:
    """Remove the files in the folder open as ``fd`` (only its frames, unless ``only_frames`` is
    False), by name within it: a link put at the folder's name meanwhile is never followed."""
    with contextlib.suppress(OSError), os.scandir(fd) as it:
        for entry in list(it):
            if not only_frames or SEQUENCE_FRAME.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.name, dir_fd=fd)


def _remove_old_sequence(old: Path, was: os.stat_result) -> None:
    """Remove the frames of the sequence moved aside to ``old`` (then ``old``), only while ``old``
    is still the folder that was the target (``was``): another user of a shared folder could
    swap another folder of frames in at that name."""
    if not _DIR_FDS:
        _remove_sequence(old)
        return
    try:
        fd = os.open(old, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (was.st_dev, was.st_ino):
            return
        _empty_by_fd(fd, only_frames=True)
        now = os.lstat(old)
        if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            os.rmdir(old)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_sequence(folder: Path, *, only_frames: bool = True) -> None:
    """Remove a folder vbg filled: its frames (only those, unless ``only_frames`` is False), then itself."""
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for entry in list(it):
            if not only_frames or SEQUENCE_FRAME.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file (same device and inode: a hard link or a
    symlink counts), or will be once the folders on their way that are not there yet are
    made (``-o sub/../in.mp4`` names ``in.mp4``: the writer makes ``sub``); False when either
    does not exist."""
    try:
        sa, sb = _stat_as_made(a), _stat_as_made(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _stat_as_made(path: str | Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:  # a folder on the way is missing: ".." after it goes back, as once it is made
        return os.stat(os.path.realpath(path))


def write_error_hint(exc: BaseException) -> str:
    """What to do about a failed write, from its errno (a full disk, a size limit,
    a read-only or forbidden folder): the fix half of a one-line message."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, Vanished):  # the folder removed during the run (it read "choose a folder you can write to")
        return "keep the output's folder until vbg ends, and run it again"
    if isinstance(exc, Swapped):  # its message says what to do (it read "a file stands where a folder is needed")
        return "vbg moved nothing into place"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full: free some space or write to another disk"
    if code == errno.EFBIG:
        return "the file is larger than this file system (or the process's file size limit) allows: write elsewhere"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        return "choose a folder you can write to"
    if code in (errno.ENOTDIR, errno.EEXIST):  # a file where the path needs a folder
        return "a file stands where a folder is needed: choose another path"
    if code == errno.EINVAL and not isinstance(exc, OSError):  # FFmpeg's own (av.ArgumentError): not the disk's
        return ("FFmpeg refused the data, not the disk (the reason is in brackets): write another type (.mkv holds "
                "the most kinds of tracks), and report it with the input if that fails too")
    return "check the free disk space and the folder's permissions"


def cannot_write(target: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """The one-line error for an output that could not be created or opened: another run's
    temporary (``OutputBusy``) and a refused replacement (``FileExistsError``) keep their own
    message; anything else names the target, the reason and the fix for its errno."""
    # vbg's own refusals carry their whole message and no file name; the system's EEXIST (a file
    # where a folder had to be made) names the path and gets the generic line
    if isinstance(exc, OutputBusy) or isinstance(exc, FileExistsError) and exc.filename is None and exc.strerror:
        return OutputError(exc.strerror)
    return OutputError(f"{target}: cannot write there ({one_line(exc)}): {write_error_hint(exc)}")


# ---------------------------------------------------------------------------- what killed runs left
_LEFT_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{%d}%s" % (_MKSTEMP_CHARS, re.escape(TEMP_SUFFIX)))
_CUT_NAME = re.compile(r"(?P<start>.+)~[0-9a-f]{8}")  # a long name's start and hash (_temp_prefix)


class Left(NamedTuple):
    """A temporary a killed run left: where it is, the name it was to have, and whether that
    name is only its start (a long name is cut, with a hash, in its temporary's: no suffix)."""

    path: Path
    name: str
    cut: bool


def left_by_killed_runs(folder: str | Path) -> list[Left]:
    """A ``Left`` for each temporary file in ``folder`` that a run killed before it could finish
    left behind (``kill -9``, a crash, the power gone): a ``.NAME.XXXXXXXX.partial`` regular file
    of this user, with no other name, that no run holds locked. A long name's temporary gives the
    start of its name (``_temp_prefix`` cut it: ``cut``), without the spaces or dots it may end
    in. Looked for under the folder's lock, which every run holds while it makes a temporary and
    locks it: a brand-new one is never taken for a killed run's. Where there are no locks
    (Windows, some network file systems) a running vbg cannot be told from a killed one: none is
    given. Folders, symlinks and other users' files are left out; nothing is opened beyond the
    lock probe."""
    folder = Path(folder)
    if fcntl is None:
        return []
    found = []
    with _folder_locked(folder):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return []
        for name in names:
            m = _LEFT_NAME.fullmatch(name)
            if m is None:
                continue
            cut = _CUT_NAME.fullmatch(m["name"])
            path = folder / name
            try:
                fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
            except OSError:
                continue
            try:
                if _lone_file_of_ours(os.fstat(fd)) and _probe_shared(fd) is True:
                    found.append(Left(path, cut["start"].rstrip(" .") if cut else m["name"], cut is not None))
            finally:
                os.close(fd)
    return found


def _lone_file_of_ours(st: os.stat_result) -> bool:
    """A regular file of this user with no other name (renaming it touches nothing else)."""
    return (stat.S_ISREG(st.st_mode) and st.st_nlink == 1
            and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid()))


class Rescued:
    """A temporary that a killed run left (``left_by_killed_runs``), open and held with a shared
    lock (a run starting meanwhile does not take it for a run writing): ``fd`` to read it,
    ``keep(dest)`` to give it a visible name, ``close()``. Raises ``OutputBusy`` where it is no
    longer one (taken by another run meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
        try:
            self.stat = os.fstat(self.fd)
            if not _lone_file_of_ours(self.stat) or _take_shared(self.fd) is not True:
                raise OutputBusy(path, 0)
        except BaseException:
            os.close(self.fd)
            raise

    def keep(self, dest: str | Path, *, avoid: Collection[Path] = ()) -> Path:
        """Rename it to ``dest``, or ``dest-2``... when that exists (nothing is replaced), never
        to one of ``avoid`` (the run's own outputs, which it may replace); the name it got. Its
        mode is left as it is (0600, as made): the file may not be one vbg made (another user of
        a shared folder can rename any file there to a temporary's name), and it is not for vbg
        to open it to others."""
        _check_ours(self.path, self.fd)
        dest = _rename_no_replace(self.path, Path(dest), avoid=avoid)
        _check_placed(dest, self.fd)
        return dest

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Rescued:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------- the run's unfinished outputs
_unfinished_lock = threading.Lock()
_unfinished: dict[int, NewFile | NewFolder] = {}  # id -> a temporary output neither committed, kept nor discarded


def _track(new) -> None:
    with _unfinished_lock:
        _unfinished[id(new)] = new


def _untrack(new) -> None:
    with _unfinished_lock:
        _unfinished.pop(id(new), None)


@contextlib.contextmanager
def swept() -> Iterator[None]:
    """Discard, at the end, every temporary output created inside the block and never
    committed, kept or discarded: the last guard for "nothing half-written" when an
    interrupt lands between a temporary's creation and the code that owns its clean-up
    (a signal is a KeyboardInterrupt wherever the main thread happens to be)."""
    with _unfinished_lock:
        before = set(_unfinished)
    try:
        yield
    finally:
        with _unfinished_lock:
            left = [new for key, new in _unfinished.items() if key not in before]
        for new in left:
            with contextlib.suppress(OSError, ValueError):
                new.discard()
