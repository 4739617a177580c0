"""A video file (or stream URL) as a live source: ``vbg.media.reader.VideoReader``, paced and looped.

In: a path or URL (and ``loop``, ``paced``, ``drop_late``, a clock). Out:
``read()`` returns the next frame as a new upright H x W x 3 RGB uint8 array
(the caller keeps it), or None at the end (never with ``loop``). Thread: read
on the capture thread (``vbg.capture.worker``); ``cancel`` from any thread.

As a live source it is *paced*: frame i is handed out when its timestamp is
due on the clock, as a camera would, and ``loop`` starts it again at the end
(timestamps keep increasing). With ``drop_late`` it also drops frames as a
camera does: a frame whose successor is already due when it is read is decoded
but never handed out (``frames_dropped`` counts them), so a reader that fell
behind gets the frame due now, not a burst of old ones. Without it, a frame
read more than ``RESUME_AFTER_S`` late (the process was stopped with Ctrl-Z, or
starved) goes out at once and the file goes on at its pace from there, as a
paused player does, instead of handing out every frame missed as fast as it
decodes them. Unpaced
(``paced=False``, used by tests) it hands out every frame as fast as it
decodes; ``vbg process`` does not use this source: it reads files through
``VideoReader`` directly.

A timestamp jump of more than ``MAX_JUMP_S`` (a damaged file, a stream that
restarted) is played over as one frame interval instead of waited for.
Frames are turned upright as a player shows them (a phone video's display
rotation), and ``width``/``height`` are the upright size.

A stream URL is decoded on a helper thread (the reader's
:class:`~vbg.media.open.NetworkFrames`), so that :meth:`cancel` ends a read that waits
for a server gone silent mid-stream at once, instead of after the network time-out.
"""

from __future__ import annotations

import logging
import threading

import av
import numpy as np

from ..clock import Clock, MonotonicClock
from ..errors import InputError, SourceError, one_line
from ..media.info import Conversions, check_frame_size, other_video_tracks, quarter_turns, say_conversions
from ..media.open import (NotAFileError, http_refusal, is_url, no_reply, open_media, picture_stream, timed_out,
                          timeout_s)
from ..media.reader import VideoReader


log = logging.getLogger("vbg.capture")

MAX_JUMP_S = 10.0  # a longer jump between two frames' timestamps (either way) is played as one frame interval
RESUME_AFTER_S = 0.5  # a frame read this late goes out now, and the frames after it at the file's pace from it


class VideoFileSource:
    live = True

    def __init__(self, path: str, *, loop: bool = False, paced: bool = True, clock: Clock | None = None,
                 drop_late: bool = False, say: bool = True) -> None:
        """``say``: log what the reader changes on the way in (``vbg.media.info.say_conversions``);
        False when the same file is opened again (the live filter's camera reopened)."""
        self.path = str(path)
        self.loop = loop
        self.paced = paced
        self.drop_late = drop_late
        self.live = paced
        # a stream that broke off is connected to again; a file's error (damage) would only come
        # again: it ends the run, as vbg process ends on it
        self.comes_back = paced and is_url(self.path)
        self.clock = clock or MonotonicClock()
        self._cancel = threading.Event()
        try:
            container = open_media(path)
        except NotAFileError as e:
            raise SourceError(f"--source {e}: pass a video file, a camera index or a URL") from e
        except (av.FFmpegError, OSError) as e:
            if is_url(path) and timed_out(e):
                raise SourceError(f"--source {no_reply(self.path)}") from e
            refused = http_refusal(path, e)
            if refused is not None:
                raise SourceError(f"--source {refused}") from e
            raise SourceError(f"cannot open {self.path} as a video ({e.__class__.__name__}): "
                              "check the file, or pass a camera index with --source 0") from e
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.path} has no video stream: pass a video file")
        if picture_stream(container) is None:
            container.close()
            raise SourceError(f"{self.path} has no video stream, only cover art (a still picture): "
                              "pass a video file")
        stream = picture_stream(container)
        self.has_audio = bool(container.streams.audio)  # not played: the live filter carries pictures only
        cc = stream.codec_context  # read now: a URL's decoding helper owns the container once it starts
        told = (cc.width, cc.height, cc.color_trc, cc.name, other_video_tracks(container, stream))
        # (and closes it once a short stream is all read: PyAV 18 then refuses the stream's properties)
        time_base = stream.time_base
        # a photo (FFmpeg's image demuxers) is a still camera: its one picture shown on, paced
        self.still = paced and (container.format.name == "image2" or container.format.name.endswith("_pipe")) \
            and not is_url(self.path) and "%" not in self.path
        self._still: np.ndarray | None = None
        self._reader = VideoReader(self.path, self._cancel, rotate=None, container=container)
        self._frames = self._decode()
        try:  # the first frame carries the display rotation: kept for read()
            self._pending = next(self._frames, None)
        except BaseException:
            self.close()
            raise
        self.rotation = self._reader.rotation or 0
        # square pixels (a DV file's 720x576 at 16:15 is shown 768x576), as the reader gives them
        w, h = self._reader.size or (getattr(self._pending, "width", 0), getattr(self._pending, "height", 0))
        self.width, self.height = (h, w) if quarter_turns(self.rotation) % 2 else (w, h)
        try:
            check_frame_size(self.path, self.width, self.height)
        except InputError as e:
            self.close()
            raise SourceError(str(e)) from e
        if say and self._pending is not None:  # as vbg process says them: the same reader converts the same way
            say_conversions(log, self.path, self._conversions(told, self._pending), live=True)
        self.fps = float(self._reader.rate)
        self._tb = float(time_base) if time_base else 1.0 / self.fps
        self._t0: float | None = None  # clock time that timestamp 0 maps to
        self._first_ts: float | None = None  # first timestamp of the current pass
        self._prev_ts = 0.0  # timestamp of the frame before
        self._pass_offset = 0.0  # seconds added to this pass (looping)
        self._last_rel = 0.0
        self._decoded = 0
        self.frames_read = 0
        self.frames_dropped = 0

    def _conversions(self, told: tuple, first) -> Conversions:
        """``told``: the stream's (width, height, transfer, codec, other video tracks)."""
        from ..media.tonemap import HDR_TRANSFERS, wide_gamut_sdr

        width, height, trc, codec, others = told
        stored = (width or first.width, height or first.height)
        return Conversions(hdr=HDR_TRANSFERS.get(trc or getattr(first, "color_trc", 0) or 0),
                           wide_gamut=wide_gamut_sdr(first), interlaced=self._reader.deinterlacing,
                           sar=self._reader.sar, size=self._reader.size or stored, stored=stored,
                           codec=codec, other_videos=others)

    def _decode(self):
        try:
            yield from self._reader.frames()
        except av.FFmpegError as e:
            if is_url(self.path) and timed_out(e):
                raise SourceError(f"{self.path}: the server sent nothing for {timeout_s():g} s") from e
            if is_url(self.path):
                raise SourceError(f"error decoding {self.path}: {e}; the stream may be damaged") from e
            raise SourceError(f"--source {self.path}: decoding failed after {self.frames_read} frames "
                              f"({one_line(e)}): the file is damaged: pass an intact copy") from e

    def read(self) -> np.ndarray | None:
        """Next frame as RGB uint8, or None at the end (never with ``loop``)."""
        if self._frames is None:
            raise ValueError(f"read() on a closed source ({self.path})")
        while True:
            if self._still is not None:  # a photo as the camera: its picture again, a frame interval on
                self._last_rel += 1.0 / self.fps
                if not self._due(self._last_rel):
                    continue
                self.frames_read += 1
                return self._still.copy()
            frame = self._next_frame()
            if frame is None:
                return None
            ts = frame.pts * self._tb if frame.pts is not None else self._decoded / self.fps
            self._decoded += 1
            if self._first_ts is None:
                self._first_ts = ts
            elif abs(ts - self._prev_ts) > MAX_JUMP_S:  # damage or a restarted stream: play on, as a camera would
                self._pass_offset -= ts - self._prev_ts - 1.0 / self.fps
            self._prev_ts = ts
            rel = self._last_rel = ts - self._first_ts + self._pass_offset
            if not self._due(rel):
                continue
            self.frames_read += 1
            rgb = self._reader.rgb(frame)
            if self.still:  # kept, not decoded again for every frame
                self._still = rgb.copy()
            return rgb

    def _due(self, rel: float) -> bool:
        """Waits until the frame at ``rel`` s is due (paced); False: it is dropped (``drop_late``)."""
        if not self.paced:
            return True
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now - rel
        late = now - (self._t0 + rel)
        if late > RESUME_AFTER_S:  # the process was stopped (Ctrl-Z, a debugger), starved, or paused
            self._t0 += late      # (idle): on from this frame at the file's pace, not a burst of every
            late = 0.0            # frame missed (or, dropping late ones, each decoded to be dropped)
        if self.drop_late and late >= 1.0 / self.fps:
            self.frames_dropped += 1  # the next frame is due already: this one is gone, as on a camera
            return False
        self.clock.sleep(-late)
        return True

    def _next_frame(self):
        frame, self._pending = self._pending, None
        if frame is None:
            frame = next(self._frames, None)
        if frame is None:
            try:  # a local Matroska file cut short ends as vbg process ends on it
                self._reader.check_whole(self._decoded)
            except InputError as e:
                raise SourceError(f"--source {e}") from e
            if not (self.loop and self._decoded):
                return None
            self._pass_offset = self._last_rel + 1.0 / self.fps
            self._first_ts = None
            try:  # a file seeks; a stream cannot, and is played again from a new connection
                self._reader.rewind()
            except KeyboardInterrupt:
                if self._cancel.is_set():
                    return None
                raise
            except (av.FFmpegError, OSError) as e:
                raise SourceError(f"cannot open {self.path} again to loop it: {e}") from e
            self._frames = self._decode()
            frame = next(self._frames, None)
        return frame

    def cancel(self) -> None:
        """From any thread: a stream URL's read that waits for the server ends now (read()
        returns None, as at the end). A file's read never waits for long: nothing to do."""
        self._cancel.set()

    def close(self) -> None:
        # Drop the decoder too: FFmpeg's decoding threads live as long as the stream
        # object, and the generator holds it (and self) in a cycle until a gc pass.
        if self._frames is not None:
            try:
                self._frames.close()
            except ValueError:  # still running on a reader that did not stop: it ends with the helper
                pass
            self._frames = None
        self._reader.close()  # a stream's helper closes its container once FFmpeg lets it go

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
