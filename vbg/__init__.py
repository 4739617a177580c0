"""vbg: real-time virtual background for video calls and recordings."""

import logging as _logging
import os as _os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

MAX_IMAGE_PIXELS = 100_000_000  # the largest image vbg decodes (vbg.images checks headers against it)

# OpenCV's decoders refuse images over this limit themselves, a second guard behind vbg's header
# checks. OpenCV reads the variable once, when cv2 is imported: so it is set here, before any vbg
# module imports cv2 (a value the user set wins).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

# ONNX Runtime (1.31 on Linux) sends usage telemetry from its import on: it keeps a device id and
# a database under ~/.cache/Microsoft and writes $TMPDIR/.ses, following a link planted there. A
# camera filter has no business reporting on its users, so it is off unless the user set the
# variable (ORT_DISABLE_TELEMETRY=0 turns it back on). Read at its import: set before any vbg
# module imports it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# A library's notes (a model fallback, a CUDA line) go to the "vbg" logger and print nothing until
# the program using vbg sets up logging; without a handler Python's last resort printed warnings.
_logging.getLogger("vbg").addHandler(_logging.NullHandler())

# The Python API (README, "Python API"): ``from vbg import Segmenter, LiveFilter, process_file``.
# Each name is imported on first use, so ``import vbg`` stays cheap: no OpenCV, ONNX Runtime or
# PyAV until a name that needs them is touched.
_API = {
    "Segmenter": "vbg.api",
    "LiveFilter": "vbg.api",
    "process_file": "vbg.api",
    "FileResult": "vbg.offline.process",
    "LiveStats": "vbg.stats",
    "Frame": "vbg.types",
    "Mask": "vbg.types",
    "Composite": "vbg.types",
    "Source": "vbg.capture",
    "Sink": "vbg.sinks",
    "SinkBase": "vbg.sinks",
    "SinkStats": "vbg.sinks",
    "LiveConfig": "vbg.config",
    "ProcessConfig": "vbg.config",
    "SegmenterConfig": "vbg.config",
    "SourceConfig": "vbg.config",
    "TemporalConfig": "vbg.config",
    "BackgroundConfig": "vbg.config",
    "OutputConfig": "vbg.config",
    "VbgError": "vbg.errors",
    "ConfigError": "vbg.errors",
    "InputError": "vbg.errors",
    "OutputError": "vbg.errors",
    "SourceError": "vbg.errors",
    "SinkError": "vbg.errors",
    "ModelError": "vbg.errors",
    "Problems": "vbg.errors",
}

__all__ = [  # spelled out for linters; the names of _API and the two above
    "MAX_IMAGE_PIXELS", "__version__", "Segmenter", "LiveFilter", "process_file", "FileResult", "LiveStats",
    "Frame", "Mask", "Composite", "Source", "Sink", "SinkBase", "SinkStats", "LiveConfig", "ProcessConfig",
    "SegmenterConfig", "SourceConfig", "TemporalConfig", "BackgroundConfig", "OutputConfig", "VbgError",
    "ConfigError", "InputError", "OutputError", "SourceError", "SinkError", "ModelError", "Problems",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from .api import LiveFilter, Segmenter, process_file
    from .capture import Source
    from .config import (BackgroundConfig, LiveConfig, OutputConfig, ProcessConfig, SegmenterConfig,
                         SourceConfig, TemporalConfig)
    from .errors import (ConfigError, InputError, ModelError, OutputError, Problems, SinkError, SourceError,
                         VbgError)
    from .offline.process import FileResult
    from .sinks import Sink, SinkBase, SinkStats
    from .stats import LiveStats
    from .types import Composite, Frame, Mask


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'vbg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
