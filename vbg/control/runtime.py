"""The runtime file: how ``vbg ctl`` finds the running filter.

In the runtime folder (``$XDG_RUNTIME_DIR/vbg``, else ``<tmp>/vbg-UID``; made 0700 and
checked to be the user's own, not a link, with no access for others) the filter writes
``vbg-PID.json`` ({pid, port, socket, token, started}), mode 0600, created under a fresh
name and renamed into place, and removes it at exit. A file whose process is gone is
stale: :func:`find_running` removes it (and its socket) and looks on.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

from ..errors import ControlError

PREFIX = "vbg-"
_WINDOWS = os.name == "nt"
STILL_ACTIVE = 259  # GetExitCodeProcess's code for a process that has not ended
_QUERY_LIMITED = 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION
_ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED: the process is there, another user's


def _uid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None  # None: no owners to check (Windows)


def _user_tag() -> str:
    """Whose runtime folder this is, for its name under the shared temporary folder: the uid, else
    the user name (``getpass``: from the environment first, so no terminal is needed)."""
    uid = _uid()
    if uid is not None:
        return str(uid)
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 -- no name to be had: one folder for all
        return "user"


NONE_RUNNING = "no vbg filter is running (start one with: vbg --source ...), or it was started with --no-control"


def runtime_dir(environ=None, *, create: bool = True) -> Path:
    """The private folder for the runtime file and the socket (made when ``create``)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        folder = Path(xdg) / "vbg"
    else:
        folder = Path(tempfile.gettempdir()) / f"vbg-{_user_tag()}"
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    _check_private(folder)
    return folder


def _check_private(folder: Path) -> None:
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return  # not made yet (create=False): nothing runs
    except OSError as e:
        raise ControlError(f"runtime folder {folder} cannot be read ({e.strerror or e}): check its permissions") from e
    if not stat.S_ISDIR(st.st_mode) or (_uid() is not None and st.st_uid != _uid()):
        raise ControlError(f"runtime folder {folder} is not a folder of yours (a link, or another user's): "
                           "remove it, or set XDG_RUNTIME_DIR to a private folder")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)  # ours: made private again


def write_runtime(folder: Path, info: dict) -> Path:
    """``info`` as ``folder/vbg-PID.json``, 0600: written under a fresh exclusive name, then
    renamed into place."""
    target = folder / f"{PREFIX}{info['pid']}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{PREFIX}{info['pid']}.", suffix=".partial", dir=folder)  # O_EXCL, 0600
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # before the rename: Windows renames no file that is open
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs. On Windows not by ``os.kill(pid, 0)``: there every signal
    number but the console's two terminates the process."""
    if _WINDOWS:
        import ctypes

        return _alive_windows(pid, ctypes.windll.kernel32)  # type: ignore[attr-defined]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive_windows(pid: int, kernel32) -> bool:
    """``process_alive`` through the Win32 API (``kernel32``): a handle that may only ask, its exit code."""
    import ctypes

    handle = kernel32.OpenProcess(_QUERY_LIMITED, False, pid)
    if not handle:
        return kernel32.GetLastError() == _ACCESS_DENIED
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # cannot tell: not removed
        return code.value == STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _remove_stale(path: Path, info: dict | None) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    sock = (info or {}).get("socket")
    if sock and Path(sock).parent == path.parent:  # only a socket in our own folder
        with contextlib.suppress(OSError):
            os.unlink(sock)


def running(folder: Path | None = None) -> list[dict]:
    """The runtime files of the filters running now, newest first (stale ones removed)."""
    try:
        folder = folder or runtime_dir(create=False)
        names = sorted(folder.glob(f"{PREFIX}*.json"))
    except OSError:
        return []
    found = []
    for path in names:
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or (_uid() is not None and st.st_uid != _uid()):
                continue  # not ours to read or to remove
            info = json.loads(path.read_text(encoding="utf-8"))
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            _remove_stale(path, None)
            continue
        if pid == os.getpid() or process_alive(pid):
            info["file"] = str(path)
            found.append(info)
        else:
            _remove_stale(path, info)
    found.sort(key=lambda i: i.get("started", 0), reverse=True)
    return found


def find_running(folder: Path | None = None) -> dict:
    """The newest running filter's runtime info; :class:`ControlError` (one line) when none runs."""
    found = running(folder)
    if not found:
        raise ControlError(NONE_RUNNING)
    return found[0]
