"""Interlaced video to progressive frames, for the readers (``vbg.media.reader``).

In: decoded PyAV frames, in order. Out: the same number of frames, with the same
timestamps, each frame that was interlaced now whole. Thread: the reading thread.

A camcorder's 1080i (AVCHD), a DV or DVD tape capture and most broadcast video
store each frame as two fields, the even lines and the odd lines, taken 1/50 or
1/60 s apart. Shown as they are, anything that moves has comb teeth along its
edges, and the model sees them too: a person's outline is serrated and the matte
with it. Frames FFmpeg's decoder flags as interlaced go through its ``bwdif``
filter (motion-adaptive, Bob Weaver): still areas keep both fields' detail, moving
ones are rebuilt from one field; a progressive frame in the same file passes
unchanged. One frame comes out per frame in, so the rate, the frame count,
the audio sync and a progress bar's total all stay as they were: 50i becomes 25p,
as a video editor's default export does (the field rate, 50p, would double the
model's work for motion that a call or a clean-up rarely needs).

The filter holds one frame back (it looks at the next one to rebuild the current
one): ``push`` returns what is ready, ``flush`` the rest at the end. It counts time
in half the stream's time base; the frames come back in the stream's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction

import av

FILTER = "bwdif"
_OPTIONS = "mode=send_frame:parity=auto:deint=interlaced"


def whole_frames(frames: Iterable[av.VideoFrame], time_base: Fraction,
                 started: Callable[[], None] | None = None) -> Iterator[av.VideoFrame]:
    """``frames`` (decoded, in order, of a stream in ``time_base``) with each interlaced one made
    whole (see the module's note): the frames before the first interlaced one pass as they are,
    from it on all go through a ``Deinterlacer``. ``started()`` is called when that first
    interlaced frame arrives, before it goes in."""
    fields = None
    for frame in frames:
        if fields is None and frame.interlaced_frame:
            fields = Deinterlacer(time_base)
            if started is not None:
                started()
        if fields is None:
            yield frame
        else:
            yield from fields.push(frame)
    if fields is not None:
        yield from fields.flush()


class Deinterlacer:
    """``push(frame)`` -> the progressive frames ready so far; ``flush()`` -> the rest (see the
    module's note). A change of frame size or format part-way starts a new filter, after the
    old one's frames are out."""

    def __init__(self, time_base: Fraction) -> None:
        self._time_base = time_base
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        shape = (frame.width, frame.height, frame.format.name)
        out: list[av.VideoFrame] = []
        if shape != self._shape:
            out = self.flush()
            self._graph = self._open(frame)
            self._shape = shape
        assert self._graph is not None
        self._graph.push(frame)
        return out + self._pull()

    def flush(self) -> list[av.VideoFrame]:
        """The frames still held; the filter is closed (a later ``push`` opens a new one)."""
        graph, self._graph, self._shape = self._graph, None, None
        if graph is None:
            return []
        graph.push(None)
        return self._pull(graph)

    def _open(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=self._time_base)
        fields = graph.add(FILTER, _OPTIONS)
        sink = graph.add("buffersink")
        source.link_to(fields)
        fields.link_to(sink)
        graph.configure()
        return graph

    def _pull(self, graph: av.filter.Graph | None = None) -> list[av.VideoFrame]:
        graph = graph or self._graph
        out = []
        while graph is not None:
            try:
                frame = graph.vpull()
            except (BlockingIOError, EOFError):  # nothing more yet / the end after a flush
                break
            # The filter counts in half the stream's time base (room for one frame per field):
            # back to the stream's, so each frame keeps its own timestamp.
            if frame.pts is not None and frame.time_base and frame.time_base != self._time_base:
                frame.pts = round(frame.pts * frame.time_base / self._time_base)
                frame.time_base = self._time_base
            out.append(frame)
        return out
