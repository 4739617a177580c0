"""Video sources: a camera, a device path, a video file, a stream URL or the demo clip.

A source is a context manager with ``read() -> RGB uint8 frame | None``
(None = end of stream) and ``width``/``height``/``fps``. ``open_source``
picks the implementation from ``--source``; :class:`CaptureWorker` runs one
on its own thread, stamps frames, and survives a camera that disappears.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..clock import Clock
from ..errors import ConfigError


@runtime_checkable
class Source(Protocol):
    width: int
    height: int
    fps: float
    # a camera or stream (reopened when it breaks off); either way read() paces itself: the filter
    # is live, and a frame read while the last is still being composed replaces it (to render
    # every frame of a file, vbg process / process_file)
    live: bool

    def read(self) -> np.ndarray | None: ...
    def close(self) -> None: ...


def parse_source(text: str | int) -> int | str:
    """``"0"`` -> camera index 0; anything else is a device path, file or URL (a leading ``~`` is
    the home folder, as for --background and --record: quoted or in a config file, no shell expands it)."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if s.isdigit():
        return int(s)
    if not s:
        raise ConfigError("--source is empty: give a camera index (0), a device path, a video file or a URL")
    return os.path.expanduser(s) if s.startswith("~") else s


def open_source(source: str | int, *, width: int | None = None, height: int | None = None,
                fps: float | None = None, loop: bool = False, paced: bool = True,
                clock: Clock | None = None, say: bool = True) -> Source:
    """Open ``--source``: camera index/device -> :class:`CameraSource`; file or
    URL -> :class:`VideoFileSource` (paced at its own rate when ``paced``);
    ``demo`` -> the bundled clip as a looping live source (:mod:`.demo`). ``say``: a file's
    conversions are logged (False: the same source opened again)."""
    src = parse_source(source)
    if is_demo(src):
        return open_demo(width=width, height=height, fps=fps, paced=paced, clock=clock)
    if isinstance(src, int) or str(src).startswith("/dev/video"):
        from .camera import CameraSource

        return CameraSource(src, width=width, height=height, fps=fps)
    from .video_file import VideoFileSource

    if "://" not in str(src) and not Path(src).exists():
        from ..errors import SourceError

        raise SourceError(f"--source {src}: no such file, camera index or URL; without a webcam, try --source demo")
    return VideoFileSource(src, loop=loop, paced=paced, clock=clock, say=say)


from .demo import DEMO_CLIP, demo_clip_path, is_demo, open_demo  # noqa: E402
from .worker import CaptureWorker  # noqa: E402

__all__ = ["DEMO_CLIP", "CaptureWorker", "Source", "demo_clip_path", "is_demo", "open_source", "parse_source"]
