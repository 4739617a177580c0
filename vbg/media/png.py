"""A PNG sequence: one run's frames, written whole into a new folder that then takes the target's place.

An existing target is replaced only when it holds nothing but ``frame_NNNNNN.png``
files (a sequence vbg wrote), otherwise the writer refuses at start.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vbg.errors import OutputError, one_line
from vbg.fsutil import NewFolder, cannot_write, foreign_files, not_a_sequence_message, partial_name
from vbg.fsutil import write_error_hint as disk_hint
from vbg.media.info import VideoInfo

# PNG is lossless: zlib level 1 for every quality (at 720p level 6 took 2x as long for 3% less).
_PNG_LEVEL = 1


class PngFolder:
    """One PNG per frame, ``frame_000001.png`` for index 0, written into a new hidden
    folder (``NewFolder``) that takes the target's place when complete."""

    def __init__(self, folder: Path, info: VideoInfo, mode: str, overwrite: bool) -> None:
        if overwrite and os.path.lexists(folder):
            foreign = foreign_files(folder)
            if foreign:
                raise OutputError(not_a_sequence_message(folder, foreign))
        self._overwrite = overwrite
        try:
            self._new = NewFolder(folder, replace=overwrite)
        except OSError as e:
            raise cannot_write(folder, e) from e
        self.folder = folder
        self._convert = {"rgb": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGBA2BGRA, "matte": None}[mode]
        self._params = [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL]
        self._buf: np.ndarray | None = None
        self.frame_size = (info.width, info.height)

    def write(self, index: int, pts: int, image: np.ndarray) -> None:
        if self._convert is not None:
            if self._buf is None:
                self._buf = np.empty_like(image)
            image = cv2.cvtColor(image, self._convert, dst=self._buf)
        name = f"frame_{index + 1:06d}.png"
        ok, buf = cv2.imencode(".png", image, self._params)
        if not ok:
            raise OutputError(f"{self.folder / name}: PNG could not be encoded: report this as a bug")
        try:  # written by Python, not libpng: a full disk is an OSError with its errno, not a log line
            self._new.add(name, buf.data)
        except OSError as e:
            raise OutputError(f"{self.folder / name}: writing failed after {index} frames ({one_line(e)}): "
                              f"{disk_hint(e)}") from e

    def finish(self, *, complete: bool, keep: Path, has_frames: bool) -> Path | None:
        try:
            if not has_frames:
                self._new.discard()
                return None
            if not complete:
                return self._new.keep(keep)
            try:
                return self._new.commit(replace=self._overwrite)
            except FileExistsError as e:  # a file was put in the target meanwhile: keep ours aside
                kept = self._new.keep(partial_name(self.folder))
                raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e
        except OutputError:
            raise
        except OSError as e:
            self._new.discard()
            raise OutputError(f"{self.folder}: cannot move the frames into place ({one_line(e)}): "
                              f"{disk_hint(e)}") from e
        except BaseException:
            self._new.discard()
            raise
