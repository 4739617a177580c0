"""Timestamps that start over part-way, made continuous: recordings joined end to end.

In: a stream's timestamps in order (a video's frames as decoded, an audio track's packets as
demuxed), each with its duration. Out: the same timestamps, shifted where the file starts its
clock again, so that each part follows the one before. Thread: the caller's (each reader keeps
its own ``Continuity`` per stream).

MPEG-TS and MPEG-PS carry no index and no duration: a camcorder's AVCHD chunks (00000.MTS,
00001.MTS), a DVR's, or any two recordings put together with ``cat`` play as one file, and each
part's clock starts where its recorder's did. FFmpeg's demuxers say so with
``AVFMT_TS_DISCONT``; its command line shifts every later timestamp when one jumps back by more
than a tenth of a second, or ahead by more than ten. vbg does the same, stream by stream: the
picture and the sound each continue where they ended, so they stay together to within the
difference of the parts' own ends (a frame at most, in a camera's chunks). Before, the frames of
every part after the first were written at one instant, and their sound was left out as
"damaged".
"""

from __future__ import annotations

from fractions import Fraction

import av

BACK_S = 0.1  # a time further back than this, in a file that may start its clock over, is a new part
AHEAD_S = 10.0  # and further ahead than this
TS_DISCONT = 0x0200  # AVFMT_TS_DISCONT, libavformat's flag (av.format.Flags.ts_discont)


def restarts(container: av.container.InputContainer) -> bool:
    """``container``'s format lets a file start its timestamps over part-way (MPEG-TS, MPEG-PS)."""
    return bool(container.format.flags & TS_DISCONT)


class Continuity:
    """One stream's timestamps, shifted past each point where its clock starts over (``shift``).
    ``joins``: how many such points it has met; ``at_s``: the first one's time, as shifted."""

    def __init__(self, time_base: Fraction) -> None:
        self._back = max(1, round(BACK_S / time_base))
        self._ahead = max(1, round(AHEAD_S / time_base))
        self._tb = time_base
        self.offset = 0  # added to every timestamp from the last new start on
        self._end: int | None = None  # where the stream has reached, shifted: the next timestamp expected
        self.joins = 0
        self.at_s: float | None = None

    def shift(self, ts: int, duration: int = 0) -> int:
        """``ts`` (with the stream's ``duration`` for it; 0 where unknown) as shifted."""
        t = ts + self.offset
        end = self._end
        if end is not None and (t < end - self._back or t > end + self._ahead):
            self.offset += end - t
            t = end
            self.joins += 1
            if self.at_s is None:
                self.at_s = float(t * self._tb)
        self._end = t + max(duration, 0) if end is None else max(end, t + max(duration, 0))
        return t
