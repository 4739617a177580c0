"""An animated WebP behind the person, played at its own frames' delays.

FFmpeg has no decoder for an animated WebP (the web's successor to the GIF: what GIPHY and the
sticker sites serve); OpenCV has one from 4.12 (``cv2.imdecodeanimation``). It gives whole frames
(each composed on the canvas) from a given index, but asking for frame ``k`` decodes the ``k``
before it again, so an animation is not streamed as a video is: its frames are decoded once, at
the first ``prepare``, in runs of at most ``CHUNK_BYTES``, and kept in memory at their own size,
upright and in sRGB as a still picture is shown, in I420 (a video's 4:2:0 YUV, half of RGB's bytes:
100 frames of 1280x720 take 132 MB). A frame is turned into RGB and cover-fitted to the output
when it comes on screen, into buffers ``prepare`` made (the one ``render`` returns and one at the
frame's size). An animation whose frames would take more than ``KEEP_BYTES`` stands still (its
first frame), said in one line with the fix: a video plays from a file of any length.

Live (``clock``): each frame is on screen for its own delay from the first ``render``, round again
after the last one's. After a pause in the renders (over ``IDLE_S``: the effect switched off,
another background picked) it goes on from where it stood. Offline (``live=False``): the frame on
screen ``t`` seconds in (``show_at``), looped, as ``SyncVideoBackground`` plays a video in
``vbg process``.
"""

from __future__ import annotations

import bisect
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..clock import Clock, MonotonicClock
from ..errors import InputError
from ..images import (
    MAX_FILE_BYTES,
    apply_orientation,
    check_pixels,
    embedded_icc,
    exif_orientation,
    file_bytes,
    probe_image,
    to_rgb8,
    webp_frame_count,
)
from ..icc import to_srgb
from ..liblogs import c_stderr_quiet
from .backgrounds import _check_hw, cover_fit, open_own

log = logging.getLogger("vbg")

KEEP_BYTES = 256 << 20  # the decoded frames kept (I420); a longer or larger animation stands still
CHUNK_BYTES = 64 << 20  # decoded at once (OpenCV's frames, up to 4 channels)
_SAID: set[str] = set()  # animations shown still, said once a run


def _own_bytes(path: Path) -> np.ndarray:
    """The bytes of ``path`` in a folder others may write to (the control page's backgrounds folder,
    the run's uploads): a regular file, not a link (``open_own``), of a picture's size at most."""
    with open_own(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path.name} is {size / 2**30:.1f} GB: too large for an animated WebP; save it as a "
                             "video (.mp4)")
        return np.frombuffer(f.read(), np.uint8)


def _even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its last row or column repeated where it has an odd number of them (I420
    halves both; the repeated ones are never shown)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


class AnimatedPictureBackground:
    """An animated WebP file looped behind the person (the module's note). ``own_file``: the file is
    in a folder others may write to, read as ``VideoBackground`` reads one there (``open_own``)."""

    IDLE_S = 0.5  # no render for this long: a pause; the animation goes on from where it stood
    SLACK_S = 1e-6  # a frame whose time is this close is due (its time is a sum of delays: rounding)
    SHORTEST_MS = 10  # a delay at or below this is shown for 100 ms, as web browsers show it

    def __init__(self, path: str | Path, clock: Clock | None = None, *, live: bool = True,
                 own_file: bool = False) -> None:
        self.path = Path(path)
        self._clock = clock or MonotonicClock()
        self._live = live
        self._data: np.ndarray | None = _own_bytes(self.path) if own_file else file_bytes(self.path)
        header = probe_image(self._data.data, str(self.path))
        if header is None or header[0] != "WebP":
            raise InputError(f"{self.path} is not an animated WebP: pass an image or a video file")
        _, self._w, self._h = header
        check_pixels(self.path, self._w, self._h)
        self._icc = embedded_icc(self._data, str(self.path))
        self._orientation = exif_orientation(self._data.data, "WebP")
        self.frame_count = max(1, webp_frame_count(self._data))  # its ANMF chunks
        self._frames: list[np.ndarray] = []  # I420, upright, sRGB, at their own size (evened: _even)
        self._hw: tuple[int, int] | None = None  # the frames' size as shown (upright)
        self._ends: list[float] = []  # each frame's end, in seconds from the first's start
        if self._decode(0, 1) == 0:  # a damaged or cut file is said here, in one line
            raise InputError(f"{self.path} is a damaged animated WebP (it cannot be decoded): copy or download it "
                             "again, or save it as a GIF or a video")
        if self.frame_count * self._frames[0].nbytes > KEEP_BYTES:  # stands still: its first frame
            if str(self.path) not in _SAID:
                _SAID.add(str(self.path))
                log.warning("%s is an animated WebP of %d frames at %dx%d, more than vbg keeps in memory (%d MB): "
                            "it stands still (its first frame); for a moving background, save it as a video (.mp4)",
                            self.path, self.frame_count, self._w, self._h, KEEP_BYTES >> 20)
            self.frame_count, self._data = 1, None
        self._out: np.ndarray | None = None
        self._rgb: np.ndarray | None = None  # a frame in RGB at its own size (evened), before the fit
        self._shown = -1  # the frame whose picture is in ``_out``
        self._t = 0.0  # offline: the output's time (show_at)
        self._t0: float | None = None  # live: the clock when the first frame came on screen
        self._last: float | None = None  # live: the clock at the last render

    @property
    def first_frame(self) -> np.ndarray:
        """The first frame as shown (RGB, at its own size): a thumbnail's picture."""
        assert self._hw is not None  # the first frame was decoded in __init__
        h, w = self._hw
        return cv2.cvtColor(self._frames[0], cv2.COLOR_YUV2RGB_I420)[:h, :w]

    def _decode(self, start: int, count: int) -> int:
        """Frames ``start`` .. ``start + count - 1`` decoded and kept: how many were."""
        assert self._data is not None
        try:
            with c_stderr_quiet():  # OpenCV logs a damaged file's error from C: only with -v
                ok, anim = cv2.imdecodeanimation(self._data, start, count)
        except cv2.error:
            ok = False
        if not ok:
            return 0
        for img, ms in zip(anim.frames, anim.durations):
            rgb = to_srgb(to_rgb8(apply_orientation(img, self._orientation)), self._icc)
            self._hw = self._hw or rgb.shape[:2]
            self._frames.append(cv2.cvtColor(_even(rgb), cv2.COLOR_RGB2YUV_I420))
            start_s = self._ends[-1] if self._ends else 0.0
            self._ends.append(start_s + (int(ms) if ms > self.SHORTEST_MS else 100) / 1000)
        return len(anim.frames)

    def _decode_all(self) -> None:
        """Every frame, once (the first is decoded already); a file whose later frames cannot be
        decoded plays those before them, said once."""
        if self._data is None:
            return
        run = max(1, CHUNK_BYTES // (4 * self._w * self._h))
        while len(self._frames) < self.frame_count:
            if self._decode(len(self._frames), min(run, self.frame_count - len(self._frames))) == 0:
                log.warning("%s cannot be decoded after %d of its %d frames: those play; copy or download it again",
                            self.path, len(self._frames), self.frame_count)
                break
        self.frame_count = len(self._frames)
        self._data = None  # all there is, decoded

    def prepare(self, out_hw: tuple[int, int]) -> None:
        out_hw = _check_hw(out_hw)
        self._decode_all()
        self._out = np.empty((*out_hw, 3), np.uint8)
        if self._rgb is None:
            self._rgb = np.empty((self._frames[0].shape[0] * 2 // 3, self._frames[0].shape[1], 3), np.uint8)
        self._shown = -1
        self._t0 = self._last = None

    def show_at(self, t_s: float) -> None:
        """Offline: the next ``render`` is for the output frame ``t_s`` seconds after its file's first."""
        self._t = max(0.0, t_s)

    def render(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        if self._out is None:
            raise RuntimeError("AnimatedPictureBackground.prepare(out_hw) must be called before render()")
        k = self._frame_at(self._live_time() if self._live else self._t)
        if k != self._shown:
            assert self._rgb is not None and self._hw is not None  # prepare() made it
            cv2.cvtColor(self._frames[k], cv2.COLOR_YUV2RGB_I420, dst=self._rgb)
            cover_fit(self._rgb[:self._hw[0], :self._hw[1]], self._out.shape[:2], dst=self._out)
            self._shown = k
        return self._out

    def _live_time(self) -> float:
        """Seconds of the animation played by now: from the first render, less the pauses."""
        now = self._clock.now()
        if self._t0 is None:
            self._t0 = now
        elif self._last is not None and now - self._last > self.IDLE_S:
            self._t0 += now - self._last  # on from where it stood
        self._last = now
        return now - self._t0

    def _frame_at(self, t: float) -> int:
        """The frame on screen ``t`` seconds in, looped."""
        if self.frame_count == 1:
            return 0
        loop = self._ends[self.frame_count - 1]
        t %= loop
        if t >= loop - self.SLACK_S:
            t = 0.0
        return min(bisect.bisect_right(self._ends, t + self.SLACK_S), self.frame_count - 1)

    def close(self) -> None:
        """Nothing to release: no thread, and the file was read whole. The frames go with the
        object; a render under way on another thread when another background is picked finishes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
