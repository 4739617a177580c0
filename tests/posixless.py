"""Run vbg with what Windows lacks taken away, on this Linux machine: ``python tests/posixless.py
ARGS`` is ``vbg ARGS`` in a process where

- POSIX-only modules (``fcntl``, ...) do not import, and POSIX-only ``os`` functions, flags and
  signals are not there (Ctrl-Break, SIGBREAK, is sent as SIGUSR2);
- no call takes a directory descriptor and ``link`` cannot be told not to follow a link
  (``NotImplementedError``; ``os.supports_dir_fd`` and ``os.supports_follow_symlinks`` say so);
- a file open in the process cannot be renamed, replaced or removed (Windows opens files without
  ``FILE_SHARE_DELETE``), and a rename never lands on something that exists.

This checks that vbg never reaches for those pieces without a fallback. It is not Windows: its
file locking, path rules, OBS camera and codecs are not what runs here, and ``sys.platform`` stays
"linux" (the third-party packages would look for their Windows parts), so vbg's Linux-only checks
still run, on a Linux that lacks these pieces.
"""

from __future__ import annotations

import os
import signal
import sys

MODULES = ("fcntl", "termios", "grp", "pwd", "resource")
OS_NAMES = ("O_NOFOLLOW", "O_DIRECTORY", "O_CLOEXEC", "O_NONBLOCK", "O_NOCTTY", "getloadavg", "setpriority", "getpriority",
            "getuid", "geteuid", "getgid", "getgroups", "fchmod", "lchmod", "major", "minor", "sched_getaffinity",
            "mkfifo", "getpgrp", "killpg", "setsid", "statvfs", "sync", "fchown", "lchown", "chown", "sysconf", "getegid",
            "PRIO_PROCESS", "nice", "fork", "pipe2", "posix_fadvise", "sendfile", "memfd_create")
SIGNALS = ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGPIPE", "SIGALRM", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP")
_FD_ARGS = ("dir_fd", "src_dir_fd", "dst_dir_fd")


def _refusing(name: str, fn):
    def call(*args, **kwargs):
        for key in _FD_ARGS:
            if kwargs.get(key) is not None:
                raise NotImplementedError(f"{name}: {key} unavailable on this platform")
        if name in ("link", "chmod", "utime") and kwargs.get("follow_symlinks") is False:
            raise NotImplementedError(f"{name}: follow_symlinks unavailable on this platform")
        return fn(*args, **kwargs)

    call.__name__ = name
    return call


_SHARING = "The process cannot access the file because it is being used by another process"


def _open_in_this_process(path, readlink, listdir) -> bool:
    try:
        real = os.path.realpath(path)
        for fd in listdir("/proc/self/fd"):
            try:
                if readlink(f"/proc/self/fd/{fd}") == real:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def _windows_sharing(name: str, fn, readlink, listdir):
    """Windows opens files without FILE_SHARE_DELETE: a file open anywhere in the process cannot
    be renamed, replaced or removed (``PermissionError``, WinError 32) until it is closed."""
    def call(*args, **kwargs):
        paths = args[:2] if name in ("rename", "replace") else args[:1]
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)) and os.path.isfile(p) \
                    and _open_in_this_process(p, readlink, listdir):
                raise PermissionError(13, _SHARING, str(p))
        return fn(*args, **kwargs)

    call.__name__ = name
    return call


def _windows_rename(name: str, fn):
    """Windows' rename never replaces: ``os.rename`` onto anything that exists raises
    FileExistsError (POSIX replaces a file, or an empty folder); ``os.replace`` replaces a file
    but not a folder (PermissionError)."""
    def call(src, dst, *args, **kwargs):
        if name == "rename" and os.path.lexists(dst):
            raise FileExistsError(17, "Cannot create a file when that file already exists", str(src))
        if name == "replace" and os.path.isdir(dst):
            raise PermissionError(13, "Access is denied", str(src))
        return fn(src, dst, *args, **kwargs)

    call.__name__ = name
    return call


def hide() -> None:
    for m in MODULES:
        sys.modules[m] = None  # type: ignore[assignment]  # "import fcntl" raises ImportError
    for name in OS_NAMES:
        if hasattr(os, name):
            delattr(os, name)
    signal.SIGBREAK = signal.SIGUSR2  # type: ignore[attr-defined]  # Windows' Ctrl-Break, sent here as SIGUSR2
    for name in SIGNALS:
        if hasattr(signal, name):
            delattr(signal, name)
    for name in ("open", "link", "unlink", "rename", "replace", "mkdir", "rmdir", "stat", "chmod", "utime",
                 "readlink", "symlink", "access", "chown", "scandir", "listdir"):
        if hasattr(os, name):
            setattr(os, name, _refusing(name, getattr(os, name)))
    readlink, listdir = os.readlink, os.listdir
    for name in ("rename", "replace"):
        setattr(os, name, _windows_rename(name, getattr(os, name)))
    for name in ("rename", "replace", "unlink", "remove"):
        setattr(os, name, _windows_sharing(name, getattr(os, name), readlink, listdir))
    # Windows: no call takes a directory descriptor, link/chmod cannot be told not to follow
    os.supports_dir_fd = set()
    os.supports_fd = {f for f in os.supports_fd if f in (os.stat, os.truncate)}
    os.supports_follow_symlinks = {os.stat}
    import shutil

    shutil._use_fd_functions = False  # type: ignore[attr-defined]  # decided at its import, as on Windows


if __name__ == "__main__":
    hide()
    sys.argv = ["vbg", *sys.argv[1:]]
    from vbg.cli import main

    raise SystemExit(main())
