"""A video background for offline rendering: frame i of the output gets frame i
of the background (looped), decoded in step, so a render is deterministic."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..compositing.backgrounds import cover_fit
from ..errors import InputError


class SyncVideoBackground:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"background video {self.path} does not exist: check the path")
        self._container = None
        self._frames = None
        self._out: np.ndarray | None = None
        self._open()

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError, OSError) as e:
            self.close()
            raise InputError(f"background {self.path.name} is not a readable video: pass an image or a video file") from e
        self._frames = self._container.decode(stream)

    def prepare(self, out_hw: tuple[int, int]) -> None:
        self._out = np.zeros((*out_hw, 3), np.uint8)

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        nxt = next(self._frames, None)
        if nxt is None:  # loop
            self._container.close()
            self._open()
            nxt = next(self._frames, None)
            if nxt is None:
                raise InputError(f"background video {self.path.name} has no frames")
        cover_fit(nxt.to_ndarray(format="rgb24"), self._out.shape[:2], dst=self._out)
        return self._out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
