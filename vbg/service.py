"""vbg as a systemd user service: the unit (``configs/vbg.service``) written for this user, the
``systemctl --user`` steps around it, and what a process started by systemd does differently
(log lines journald understands, readiness and status by ``sd_notify``).

In: this vbg's path, the user's ``--config``, a runner for ``systemctl`` (injectable: the tests
run without systemd). Out: the unit file, created exclusively and renamed into place
(``vbg.fsutil``), marked as vbg's so that ``uninstall`` removes only a file it wrote; the
commands run, or the ones the user should run where ``systemctl --user`` cannot be used. Never
prints: the CLI says what happened.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, OutputError, VbgError

UNIT = "vbg.service"
MARKER = "# Written by `vbg service install`; `vbg service uninstall` removes it (vbg-service-unit)."
TEMPLATE_SOURCE = Path(__file__).parent / "assets" / "vbg.service"  # configs/vbg.service, shipped

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


class ServiceError(VbgError, RuntimeError):
    """A systemctl step failed, or the unit there is not one vbg wrote."""

    exit_code = 1


def run_systemctl(argv: Sequence[str]) -> subprocess.CompletedProcess:
    """The real runner: ``argv`` run, its output captured as text (a time-out bounds a hung bus)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def unit_path(environ=None, home: Path | None = None) -> Path:
    """Where systemd looks for this user's own units: ``$XDG_CONFIG_HOME/systemd/user`` (default
    ``~/.config``)."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else (Path.home() if home is None else home) / ".config"
    return base / "systemd" / "user" / UNIT


def vbg_command(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """This vbg, absolute: the ``vbg`` script it was started as, else ``python -m vbg`` with this
    interpreter."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if Path(argv0).name in ("vbg", "vbg.exe") and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    return [os.path.abspath(executable), "-m", "vbg"]


_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def quote(arg: str, *, program: bool = False) -> str:
    """``arg`` as one word of a systemd command line, quoted with C escapes when it holds more
    than plain characters: ``%`` doubled (no specifier is expanded from a path), and ``$`` too in
    an argument (systemd expands variables in the arguments, not in the ``program`` path)."""
    arg = arg.replace("%", "%%") if program else arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return arg
    if any(ord(c) < 32 for c in arg):
        raise ConfigError(f"{arg!r} holds a control character: a service cannot be started with it")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(command: Sequence[str], template: str) -> str:
    """The unit for ``command``: the template with its ``ExecStart=`` set, marked as vbg's."""
    line = "ExecStart=" + " ".join(quote(a, program=i == 0) for i, a in enumerate(command))
    text, n = re.subn(r"^ExecStart=.*$", lambda _: line, template, count=1, flags=re.MULTILINE)
    if n != 1:
        raise ValueError("the unit template has no ExecStart= line")
    return f"{MARKER}\n{text}"


def is_ours(path: Path) -> bool:
    """``path`` is a plain file (not a link) that ``vbg service install`` wrote."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        return f.read(len(MARKER)).decode("utf-8", "replace") == MARKER


def usable(run: Runner) -> str | None:
    """None when ``systemctl --user`` reaches this user's systemd, else why not (one line)."""
    try:
        done = run(["systemctl", "--user", "show-environment"])
    except (OSError, subprocess.SubprocessError) as e:
        return f"systemctl cannot be run ({getattr(e, 'strerror', None) or e})"
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout or "").split()) or f"exit status {done.returncode}"
        return f"systemctl --user does not reach a user systemd ({why})"
    return None


@dataclass
class Outcome:
    """What install / uninstall did: the unit file, the commands run (with their output) and, where
    systemctl could not be used, why and the commands the user runs instead."""

    path: Path
    ran: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    why_not: str | None = None


def _steps(outcome: Outcome, steps: list[list[str]], run: Runner) -> Outcome:
    outcome.why_not = usable(run)
    if outcome.why_not is not None:
        outcome.todo = [" ".join(s) for s in steps]
        return outcome
    for step in steps:
        done = run(step)
        if done.returncode != 0:
            why = " ".join((done.stderr or done.stdout or "").split()) or f"exit status {done.returncode}"
            raise ServiceError(f"{' '.join(step)} failed ({why}): see journalctl --user -u vbg")
        outcome.ran.append(" ".join(step))
    return outcome


def install(config: str | Path | None = None, *, run: Runner = run_systemctl, path: Path | None = None,
            command: Sequence[str] | None = None, template: Path = TEMPLATE_SOURCE) -> Outcome:
    """Write the unit for this user (``vbg [--config FILE]``) exclusively, then reload systemd and
    enable and start it where ``systemctl --user`` works."""
    from .fsutil import NewFile

    path = unit_path() if path is None else path
    argv = list(vbg_command() if command is None else command)
    if config is not None:
        argv += ["--config", os.path.abspath(config)]
    text = unit_text(argv, template.read_text(encoding="utf-8"))
    if os.path.lexists(path):
        raise OutputError(f"{path} already exists: vbg service uninstall removes it (if vbg wrote it), then "
                          "install again")
    try:
        new = NewFile(path, check_busy=False, replace=False)
        try:
            new.write(text.encode("utf-8"))
            os.fsync(new.fd)
            new.commit()
        except BaseException:
            new.discard()
            raise
    except FileExistsError:
        raise OutputError(f"{path} appeared meanwhile: it is left as it is") from None
    except OSError as e:
        from .fsutil import write_error_hint

        hint = write_error_hint(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # no other folder to choose: systemd reads it
            hint = f"systemd reads your units from {path.parent}: make it writable for you"
        raise OutputError(f"cannot write {path} ({e.strerror or e}): {hint}") from None
    return _steps(Outcome(path), [["systemctl", "--user", "daemon-reload"],
                                  ["systemctl", "--user", "enable", "--now", UNIT]], run)


def uninstall(*, run: Runner = run_systemctl, path: Path | None = None) -> Outcome | None:
    """Stop and disable the service, remove the unit (only one vbg wrote) and reload systemd; None
    when there is no unit."""
    path = unit_path() if path is None else path
    if not os.path.lexists(path):
        return None
    if not is_ours(path):
        raise ServiceError(f"{path} was not written by vbg service install: it is left as it is (remove it "
                           "yourself if it is vbg's)")
    outcome = _steps(Outcome(path), [["systemctl", "--user", "disable", "--now", UNIT]], run)
    if outcome.why_not is not None:  # disable by hand: the link install's enable made
        link = path.parent / "default.target.wants" / UNIT
        if link.is_symlink() and os.path.realpath(link) == os.path.realpath(path):
            os.unlink(link)
        outcome.todo = [f"systemctl --user stop {UNIT}", "systemctl --user daemon-reload"]
    os.unlink(path)
    if outcome.why_not is None:
        _steps(outcome, [["systemctl", "--user", "daemon-reload"]], run)
    return outcome


# --- Running under systemd.


def journal_stderr(environ=None, stream=None) -> bool:
    """Whether stderr is the journal's stream: ``JOURNAL_STREAM`` names its device and inode
    (systemd.exec(5)). Not ``INVOCATION_ID`` alone: every process a service starts inherits it
    (a CI runner's tests, a script whose stderr goes to a file), and so does ``JOURNAL_STREAM``,
    which then names another file than stderr."""
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    dev, _, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def notify(state: str, environ=None) -> bool:
    """Send ``state`` (``READY=1``, ``STATUS=...``, ``STOPPING=1``) to systemd's notify socket
    (``sd_notify``); False when there is none or it cannot be reached (never raises)."""
    import socket

    environ = os.environ if environ is None else environ
    addr = environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # an abstract socket
    elif not addr.startswith("/"):
        return False
    if not hasattr(socket, "AF_UNIX"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode("utf-8", "replace"))
    except OSError:
        return False
    return True


def status(*, run: Runner = run_systemctl, path: Path | None = None) -> tuple[str, int]:
    """What ``vbg service status`` shows, and its exit status: systemctl's own status of the unit,
    or why there is none to show (1: not installed)."""
    path = unit_path() if path is None else path
    if not os.path.lexists(path):
        return f"vbg service is not installed ({path} is not there): vbg service install sets it up", 1
    note = "" if is_ours(path) else " (not written by vbg service install)"
    why = usable(run)
    if why is not None:
        return f"installed: {path}{note}; {why}, so its state cannot be shown", 0
    done = run(["systemctl", "--user", "status", "--no-pager", UNIT])
    return f"installed: {path}{note}\n{(done.stdout or '').rstrip()}", done.returncode
