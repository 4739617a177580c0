"""Atomic file creation: write to a temporary name beside the target, rename when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success it replaces
    ``target`` (with the usual umask permissions, not mkstemp's 0600), on any
    error or interrupt it is removed, so ``target`` is never half-written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The name is cut in the prefix: a full 255-byte name plus mkstemp's 8 characters and
    # ".partial" would be too long for the folder where the target itself fits.
    fd, name = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_error_hint(exc: BaseException) -> str:
    """What to do about a failed write, from its errno (a full disk, a size limit,
    a read-only or forbidden folder): the fix half of a one-line message."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full: free some space or write to another disk"
    if code == errno.EFBIG:
        return "the file is larger than this file system (or the process's file size limit) allows: write elsewhere"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR):
        return "choose a folder you can write to"
    return "check the free disk space and the folder's permissions"
