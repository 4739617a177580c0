"""One exception root for everything vbg reports to a user.

Every error carries a message that says what happened *and* what to do, and an
exit code that the CLI returns. Each class also inherits the matching builtin,
so callers that catch ``ValueError`` or ``OSError`` keep working.
"""

from __future__ import annotations


def one_line(e: BaseException, empty: str | None = None) -> str:
    """``str(e)`` on one line (every run of whitespace, newlines included, one space), for the
    "(why)" part of a message; ``empty`` (default: the exception's class name) when it says nothing.
    An OS or FFmpeg error's "[Errno N] " is left out: the words after it say it."""
    text = " ".join(str(e).split())
    errno = getattr(e, "errno", None)  # OSError, and PyAV's FFmpegError (not an OSError)
    if isinstance(errno, int):
        text = text.removeprefix(f"[Errno {errno}] ")
    return text or empty or type(e).__name__


class VbgError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    exit_code = 1


class ConfigError(VbgError, ValueError):
    """A bad option value: names the option and what is allowed."""

    exit_code = 2


class DependencyError(VbgError, ImportError):
    """An optional package is missing: the message holds the pip command."""

    exit_code = 3


class ModelError(VbgError, RuntimeError):
    """A model file that cannot be used (corrupt, wrong shape, unknown format)."""

    exit_code = 4


class ModelDownloadError(ModelError, ConnectionError):
    """The model could not be fetched (no network, hub error)."""

    exit_code = 5


class ModelAccessError(ModelDownloadError, PermissionError):
    """The hub refused the download: gated repository, no or bad token."""

    exit_code = 6


class ChecksumError(ModelError):
    """A downloaded file does not match its published sha256."""

    exit_code = 7


class DeviceError(VbgError, RuntimeError):
    """The requested execution provider is not usable (with --strict-device), or the
    asked-for hardware encoder does not open (--encoder nvenc)."""

    exit_code = 8


class InputError(VbgError, OSError):
    """An input file that cannot be read (missing, not an image, ...)."""

    exit_code = 9


class OutputError(VbgError, OSError):
    """An output that cannot be written."""

    exit_code = 10


class SourceError(VbgError, OSError):
    """The video source cannot be opened or read (camera missing or busy, bad file)."""

    exit_code = 11


class SinkError(VbgError, OSError):
    """A sink cannot be opened or fails: no virtual camera device, device busy."""

    exit_code = 12


class OutOfMemory(VbgError, MemoryError):
    """Memory ran out (an allocation failed): says what was being held and what lowers it."""

    exit_code = 13


class ControlError(VbgError, RuntimeError):
    """Control while live (vbg ctl, the control server): no filter running, a refused request."""

    exit_code = 1


class Problems(VbgError):
    """Several problems found at once by the start-up checks, each its own one-line error.

    The CLI prints one line per problem; the exit code is the first problem's."""

    def __init__(self, errors: list[VbgError]) -> None:
        if not errors:
            raise ValueError("Problems needs at least one error")
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.errors[0].exit_code
