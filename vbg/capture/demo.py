"""``--source demo``: a bundled clip of a person on a video call, played as a camera.

In: ``open_demo`` (the requested size and rate are not applied: one info line
says so). Out: a looping, paced :class:`~vbg.capture.video_file.VideoFileSource`
that drops late frames as a camera does; ``SourceError`` when the clip is
missing from the installation. Thread: as that source (the capture thread).

So the whole live path (capture, model, compositing, preview, recording) can be
seen without a webcam. The clip (``vbg/assets/demo/demo.mp4``, a synthetic
person, Apache-2.0: see ATTRIBUTION.md beside it; made by
``tools/make_demo.py``) loops without a seam and plays like a camera: forever
(``--loop`` or not), paced at its own rate on the clock, and a frame that is
late is dropped, not handed out behind time.

A camera has modes; the clip has one, so ``--width/--height/--fps`` are not
applied (the rest of the pipeline takes the source's size, as with a camera
that cannot honour a request): one info line says so.

A regular file named ``demo`` in the current folder is the user's own video
and wins over the keyword (``--source ./demo`` says the same explicitly); a
folder named ``demo`` does not, since it could never be a source.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from ..clock import Clock
from ..errors import SourceError

log = logging.getLogger("vbg.capture")

KEYWORD = "demo"
DEMO_CLIP: Path = Path(str(resources.files("vbg").joinpath("assets", "demo", "demo.mp4")))


def demo_clip_path() -> Path:
    """Where the bundled demo clip is."""
    return DEMO_CLIP


def is_demo(source: str | int) -> bool:
    """``source`` (as :func:`parse_source` returns it) names the demo clip."""
    return source == KEYWORD and not Path(KEYWORD).is_file()


def open_demo(*, width: int | None = None, height: int | None = None, fps: float | None = None,
              paced: bool = True, clock: Clock | None = None):
    """The demo clip as a live, endlessly looping source (unpaced with ``paced=False``)."""
    from .video_file import VideoFileSource

    if not DEMO_CLIP.is_file():
        raise SourceError(f"the demo clip is missing from this installation ({DEMO_CLIP}): reinstall vbg, "
                          "or pass a camera index or a video file with --source")
    src = VideoFileSource(DEMO_CLIP, loop=True, paced=paced, clock=clock, drop_late=True)
    if width or height or fps:
        log.info("--source demo plays at its own %dx%d and %g fps; --width/--height/--fps apply to cameras",
                 src.width, src.height, src.fps)
    return src
