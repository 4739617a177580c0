"""Other libraries' messages: kept off the terminal, shown with ``-v``.

In: :func:`configure` (``verbose``, the handler ``-v`` sends them to), called
once by the CLI at start; :func:`c_stderr_quiet` around C code that prints
with no switch. Out: each library's channel silenced, or routed to the
handler. Thread: ``configure`` before the workers start;
``c_stderr_quiet`` from any thread (it mutes every thread's descriptor 2 while
it runs, so blocks stay short).

Each library has its own channel, and each is set where it lives:

- OpenCV logs through its own logger (``OPENCV_LOG_LEVEL`` before it loads,
  ``cv2.setLogLevel`` after); libtiff's warnings ("unknown field with
  tag ...") reach stderr through it too. libpng's warnings ("iCCP: ...", "tEXt: CRC
  error") do not: libpng prints them from C with no switch, so the image decoder runs
  inside :func:`c_stderr_quiet` (``images.read_rgb``).
- FFmpeg (x264's "using cpu capabilities", "frame I:...", decoder complaints) logs
  through ``av.logging``: off by default in PyAV; ``-v`` passes it to Python logging.
- ONNX Runtime: each session's ``log_severity_level`` and the default logger
  (:func:`ort_severity`), set in ``inference/onnx_backend.py``; its import itself can
  print from C (a telemetry id it cannot store in a read-only home) before any switch
  exists, so :func:`c_stderr_quiet` holds descriptor 2 on /dev/null around that import
  (vbg turns that telemetry off in ``vbg/__init__.py``; a user who set
  ``ORT_DISABLE_TELEMETRY=0`` has it, and this line with it).
- huggingface_hub: its logger and its progress bars (``HF_HUB_VERBOSITY``,
  ``HF_HUB_DISABLE_PROGRESS_BARS``); a download's bar shows on a terminal (not with ``-q``).
- Python warnings (torch's export, deprecations): ignored, or logged with ``-v``.

A setting the user made (an environment variable, ``python -W``) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator

_SET_BY_US: dict[str, str] = {}  # environment variables vbg set (not the user's own)
ENV_KEYS = ("OPENCV_LOG_LEVEL", "HF_HUB_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")


def restore_env(saved: dict[str, str | None]) -> None:
    """Put :data:`ENV_KEYS` back as ``saved`` had them (``main()`` called in-process, e.g. by tests)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
        _SET_BY_US.pop(key, None)


def verbose() -> bool:
    """``-v`` was given: the vbg logger shows debug messages."""
    return logging.getLogger("vbg").isEnabledFor(logging.DEBUG)


def ort_severity() -> int:
    """ONNX Runtime's log severity: warnings with ``-v``, else fatal only. Its errors are
    reported by vbg: a model that cannot load raises (its text under -v), a provider that
    cannot load ("Failed to load library ... TensorRT") is a fallback vbg detects and says."""
    return 2 if verbose() else 4


def _env_default(name: str, value: str) -> bool:
    """Set ``name`` unless the user did; False when the user's own value stands."""
    current = os.environ.get(name)
    if current is not None and _SET_BY_US.get(name) != current:
        return False
    os.environ[name] = _SET_BY_US[name] = value
    return True


def _env_clear(name: str) -> bool:
    """Remove a value vbg set earlier in this process; False when the user's own value stands."""
    current = os.environ.get(name)
    if current is not None and _SET_BY_US.get(name) != current:
        return False
    os.environ.pop(name, None)
    _SET_BY_US.pop(name, None)
    return True


def configure(verbose: bool, handler: logging.Handler, bars: bool = False) -> None:
    """Silence each library's channel, or with ``verbose`` send it through ``handler``. ``bars``:
    a download shows huggingface_hub's progress bar (a person watches a terminal) even without
    ``verbose``; its log lines stay off."""
    # OpenCV (and libtiff through it).
    if _env_default("OPENCV_LOG_LEVEL", "WARNING" if verbose else "SILENT") and "cv2" in sys.modules:
        import cv2

        # cv2.utils.logging in newer builds, cv2.setLogLevel in older ones (4.10 has only that);
        # OpenCV's levels: 0 silent, 1 fatal, 2 error, 3 warning, 4 info.
        logging_ = getattr(cv2.utils, "logging", None)
        set_level = getattr(logging_, "setLogLevel", None) or getattr(cv2, "setLogLevel", None)
        if set_level is not None:
            set_level(3 if verbose else 0)

    # FFmpeg through PyAV: off unless -v (importing av only when it is wanted or already there).
    libav = logging.getLogger("libav")
    if verbose:
        import av.logging

        av.logging.set_level(av.logging.INFO)
        libav.handlers[:] = [handler]
        libav.setLevel(logging.DEBUG)
        libav.propagate = False
    elif "av" in sys.modules:
        import av.logging

        av.logging.set_level(None)
        libav.handlers[:] = []

    # huggingface_hub: its own stderr handler and tqdm bars.
    bars = bars or verbose
    ours = [_env_clear("HF_HUB_VERBOSITY") if verbose else _env_default("HF_HUB_VERBOSITY", "error"),
            _env_clear("HF_HUB_DISABLE_PROGRESS_BARS") if bars else _env_default("HF_HUB_DISABLE_PROGRESS_BARS", "1")]
    own = not all(ours)
    if "huggingface_hub" in sys.modules and not own:
        from huggingface_hub.utils import logging as hub_logging
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        if verbose:
            hub_logging.set_verbosity_warning()
        else:
            hub_logging.set_verbosity_error()
        if bars:
            enable_progress_bars()
        else:
            disable_progress_bars()

    # Python warnings (torch.onnx's export, libraries' deprecations).
    if not sys.warnoptions:
        if verbose:
            logging.captureWarnings(True)
            py_warnings = logging.getLogger("py.warnings")
            py_warnings.handlers[:] = [handler]
            py_warnings.propagate = False
        else:
            warnings.simplefilter("ignore")


_quiet_lock = threading.Lock()
_quiet_depth = [0, -1]  # blocks inside, the saved descriptor 2


@contextlib.contextmanager
def c_stderr_quiet() -> Iterator[None]:
    """Descriptor 2 on /dev/null while the block runs, unless ``-v``: for C code that prints
    with no switch to turn it off (ONNX Runtime's import, libpng's warnings from OpenCV's
    decoder). Other threads' stderr is muted too meanwhile, so keep the block short; blocks
    in several threads at once share one redirection (the last one out restores it)."""
    if verbose():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with _quiet_lock:
        if _quiet_depth[0] == 0:
            try:
                saved = os.dup(2)
            except OSError:
                saved = -1
            if saved >= 0:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            _quiet_depth[1] = saved
        _quiet_depth[0] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth[0] -= 1
            if _quiet_depth[0] == 0 and _quiet_depth[1] >= 0:
                os.dup2(_quiet_depth[1], 2)
                os.close(_quiet_depth[1])
                _quiet_depth[1] = -1
