"""Recordings joined end to end, each part's clock starting over: one timeline for the file.

In: a local file. Out: ``Joins`` (None where there are none): for each stream, the offset to add
to a packet's times from a byte position on, the same for every stream of a part, so that each
part plays after the one before and keeps its own sync of picture and sound. Thread: any (the
scan is cached per file, and the result is read-only).

MPEG-TS and MPEG-PS carry no index: a camcorder's AVCHD chunks (00000.MTS, 00001.MTS), a DVR's,
or any two recordings put together with ``cat`` play as one file, each part's clock starting
where its recorder's did. FFmpeg's demuxers flag such formats ``AVFMT_TS_DISCONT``, and its
command line shifts every later timestamp of the file when one jumps back by more than a tenth
of a second, or ahead by more than ten. vbg scans the packets once (no decoding) and takes a
jump of the picture as a new part only where every stream shown in that part jumps there too,
to a new time near the picture's: a stream that jumps alone is damage (an 11 s video dropout
while the sound goes on, one packet's garbled time) and is left to the damage rules; a stream
absent from a part (a clip without sound) has no say in it. The offset of a part is the
picture's, on the times frames are shown (parts coded with other B-frame delays follow on a
frame interval apart), and every stream of the part takes it, so the sound of each part stays
with its picture: it may overlap the end of the part before by a few milliseconds (that overlap
is left out) or leave a short gap.
"""

from __future__ import annotations

import bisect
import os
from array import array
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

TS_DISCONT = 0x0200  # AVFMT_TS_DISCONT, libavformat's flag (av.format.Flags.ts_discont)
BACK_US = 100_000  # a time further back than this is a new part (FFmpeg's tenth of a second)
AHEAD_US = 10_000_000  # and further ahead than this (FFmpeg's dts_delta_threshold)
AGREE_US = 1_000_000  # the streams' jumps at a new part agree to within this
NEAR_BYTES = 8 << 20  # and lie within this much of the file of each other
US = Fraction(1, 1_000_000)


def restarts(container: av.container.InputContainer) -> bool:
    """``container``'s format lets a file start its timestamps over part-way (MPEG-TS, MPEG-PS)."""
    return bool(container.format.flags & TS_DISCONT)


@dataclass(frozen=True, slots=True)
class Joins:
    """Where each part of a joined file begins, per stream: ``starts[index]`` the byte positions
    (sorted) and ``offsets[index]`` the offset (microseconds) from each on; ``first_pos`` where
    each part begins in the file (for streams that take part in no decision: subtitles, data);
    ``at_us``: where each part begins to be shown on the new timeline (the lead stream's)."""

    starts: dict[int, list[int]]
    offsets: dict[int, list[int]]
    first_pos: list[int]
    shifts: list[int]
    at_us: list[int]
    origin_us: int  # the lead stream's first shown time: ``at_us`` from it is where each part begins

    def offset_us(self, index: int, pos: int) -> int | None:
        """The offset for stream ``index``'s packet at byte ``pos`` (None: unknown position)."""
        if pos < 0:
            return None
        starts = self.starts.get(index, self.first_pos)
        offsets = self.offsets.get(index, self.shifts)
        i = bisect.bisect_right(starts, pos)
        return offsets[i - 1] if i else 0


class Shifter:
    """One stream's packets shifted onto the file's one timeline (``Joins``): ``shift(packet)``
    moves its times; ``joined``: the last packet was the first of a new part."""

    def __init__(self, joins: Joins, index: int, time_base: Fraction) -> None:
        self._joins, self._index, self._tb = joins, index, time_base
        self._us = 0
        self._by = 0
        self.joined = False

    def shift(self, packet: av.Packet) -> None:
        us = self._joins.offset_us(self._index, packet.pos if packet.pos is not None else -1)
        us = self._us if us is None else us  # a packet of unknown place keeps the last offset
        self.joined = us != self._us
        if self.joined:
            self._us, self._by = us, round(Fraction(us) * US / self._tb)
        if self._by:
            if packet.dts is not None:
                packet.dts += self._by
            if packet.pts is not None:
                packet.pts += self._by


_cache: dict[tuple[str, int, int], Joins | None] = {}
_lock = threading.Lock()


def joins_of(path: str | Path, opened: av.container.InputContainer | None = None) -> Joins | None:
    """``path``'s ``Joins`` (None: a format whose clock cannot start over, a URL, one part), read
    once per file version; ``opened``: ``path`` open already (its format is looked at, and a file
    whose clock cannot start over is not opened again)."""
    from vbg.media.open import is_url, open_read

    if is_url(str(path)) or (opened is not None and not restarts(opened)):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        with open_read(path) as container:
            found = _scan(container) if restarts(container) else None
    except (av.FFmpegError, OSError):
        found = None  # the readers say what is wrong with the file
    with _lock:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = found
    return found


def _scan(container: av.container.InputContainer) -> Joins | None:
    """Every audio and video packet's time, stream by stream: where each stream's clock jumps (on
    its decoding times), and where the part after each jump begins to be shown; the jumps every
    stream makes alike (``_agree``) as parts."""
    kinds: dict[int, str] = {s.index: str(s.type) for s in container.streams if s.type in ("video", "audio")}
    if not kinds:
        return None
    jumps: dict[int, list[_Jump]] = {i: [] for i in kinds}
    places: dict[int, array] = {i: array("q") for i in kinds}  # each stream's packets' places, in order
    state: dict[int, list[int]] = {}  # last dts µs, end µs, the part's latest shown end µs (pts + duration)
    held: dict[int, _Jump | None] = {}  # a stream's last jump, while its next packets are looked at
    first_us: dict[int, int] = {}
    for packet in container.demux(*(container.streams[i] for i in kinds)):
        if not packet.size or packet.dts is None or packet.time_base is None:
            continue
        i = packet.stream.index
        pos = packet.pos if packet.pos is not None and packet.pos >= 0 else -1
        if pos >= 0:
            places[i].append(pos)
        tb = packet.time_base / US
        t = round(packet.dts * tb)
        shown = round((packet.pts if packet.pts is not None else packet.dts) * tb)
        dur = round((packet.duration or 0) * tb)
        if i not in state:
            state[i] = [t, t + dur, shown + dur]
            first_us[i] = shown
            continue
        last, last_end, top = state[i]
        if t < last - BACK_US or t > last_end + AHEAD_US:
            jump = _Jump(pos, t, shown, top, last_end)
            jumps[i].append(jump)
            held[i] = jump
            state[i] = [t, t + dur, shown + dur]
            continue
        if len(places[i]) <= LOOK_PACKETS:  # the stream's first shown time (B-frames come before their keyframe)
            first_us[i] = min(first_us[i], shown)
        waiting = held.get(i)
        if waiting is not None:
            if waiting.looked == 0 and abs(t - waiting.before) <= AHEAD_US \
                    and abs(t - waiting.before) < abs(t - waiting.at):
                jumps[i].remove(waiting)  # one packet's garbled time: the next one is back on the old clock
                held[i] = None
            else:
                waiting.first_shown = min(waiting.first_shown, shown)  # B-frames before the keyframe's time
                waiting.looked += 1
                if waiting.looked >= LOOK_PACKETS:
                    held[i] = None
        state[i] = [t, max(t + dur, last_end) if t >= last else t + dur, max(top, shown + dur)]
    return _agree(kinds, jumps, places, first_us)


LOOK_PACKETS = 16  # the packets after a jump looked at for the part's first shown time


class _Jump:
    """Where one stream's clock jumps: its place, its decoding time ``at``, the part's first shown
    time after it, and before it the part's latest shown end (``top``) and decoding end."""

    __slots__ = ("pos", "at", "first_shown", "top", "before", "looked")

    def __init__(self, pos: int, at: int, first_shown: int, top: int, before: int) -> None:
        self.pos, self.at, self.first_shown, self.top, self.before = pos, at, first_shown, top, before
        self.looked = 0


def _agree(kinds: dict[int, str], jumps: dict[int, list[_Jump]], places: dict[int, array],
           first_us: dict[int, int]) -> Joins | None:
    """The jumps of the lead stream (the video where there is one) that every other stream shown
    in the part after it makes too: near it in the file, before the lead's next jump, and to a
    new time within ``AGREE_US`` of the lead's (a part's picture and sound start together). A
    stream with packets in that part but no such jump makes it no part (the lead jumped alone:
    damage); a stream absent from the part, ended before it or begun after it, has no say. The
    lead's offset puts the part's first shown frame where the part before ended being shown."""
    order = sorted(kinds, key=lambda i: (kinds[i] != "video", i))
    lead = order[0]
    own = [j for j in jumps[lead] if j.pos >= 0]
    starts: dict[int, list[int]] = {i: [] for i in kinds}
    offsets: dict[int, list[int]] = {i: [] for i in kinds}
    first_pos: list[int] = []
    shifts: list[int] = []
    at: list[int] = []
    total = 0
    used: set[int] = set()  # id() of the jumps matched to a part
    late: set[int] = set()  # streams begun after a part's start: they follow ``first_pos``
    for k, jump in enumerate(own):
        lo, hi = jump.pos, own[k + 1].pos if k + 1 < len(own) else 1 << 62
        matched: dict[int, int] = {}
        for i in order[1:]:
            mine = places[i]
            if not mine or mine[-1] < lo:  # ended before: no say
                continue
            if mine[0] >= lo:  # begun after: no say, and it takes the parts' offsets
                late.add(i)
                continue
            near = sorted((abs(j.pos - lo), id(j), j.pos) for j in jumps[i]
                          if j.pos >= 0 and id(j) not in used and lo - NEAR_BYTES <= j.pos < hi
                          and abs(j.first_shown - jump.first_shown) <= AGREE_US)
            if near:
                matched[i] = near[0][2]
                used.add(near[0][1])
            elif bisect.bisect_left(mine, hi) > bisect.bisect_left(mine, lo):
                break  # shown in the part, on the old clock: the lead jumped alone
        else:
            total += jump.top - jump.first_shown
            for i, p in ((lead, lo), *matched.items()):
                starts[i].append(p)
                offsets[i].append(total)
            first_pos.append(min(lo, *matched.values()) if matched else lo)
            shifts.append(total)
            at.append(jump.first_shown + total)
    if not shifts:
        return None
    for i in late:
        del starts[i], offsets[i]
    return Joins(starts, offsets, first_pos, shifts, at, first_us.get(lead, 0))
