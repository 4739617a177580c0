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
jump as a new part only where every audio and video stream of the file jumps there alike: a
stream that jumps alone is damage (an 11 s video dropout while the sound goes on, one packet's
garbled time) and is left to the damage rules. The offset of a part is the picture's (its frames
follow on, a frame interval apart), and every stream of the part takes it, so the sound of each
part stays with its picture: the sound may overlap the end of the part before by a few
milliseconds (that overlap is left out) or leave a short gap.
"""

from __future__ import annotations

import bisect
import os
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
    ``at_us``: where each part begins on the new timeline (the lead stream's decoding time)."""

    starts: dict[int, list[int]]
    offsets: dict[int, list[int]]
    first_pos: list[int]
    shifts: list[int]
    at_us: list[int]
    origin_us: int  # the lead stream's first time: ``at_us`` from it is where each part begins in the file

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


def joins_of(path: str | Path) -> Joins | None:
    """``path``'s ``Joins`` (None: a format whose clock cannot start over, a URL, one part), read
    once per file version."""
    from vbg.media.open import is_url, open_read

    if is_url(str(path)):
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
    """Every audio and video packet's decoding time, stream by stream; the jumps every stream
    makes alike (``_agree``) as parts."""
    kinds: dict[int, str] = {s.index: str(s.type) for s in container.streams if s.type in ("video", "audio")}
    if not kinds:
        return None
    jumps: dict[int, list[tuple[int, int, int]]] = {i: [] for i in kinds}  # (pos, delta µs, time µs)
    state: dict[int, tuple[int, int, int | None]] = {}  # last dts µs, end µs, a lone jump waiting: its index
    last_pos: dict[int, int] = {}  # each stream's last packet's place: a stream that has ended has no say
    first_us: dict[int, int] = {}
    first_pos: dict[int, int] = {}  # each stream's first packet's place: a stream that begins later has no say
    for packet in container.demux(*(container.streams[i] for i in kinds)):
        if not packet.size or packet.dts is None or packet.time_base is None:
            continue
        i = packet.stream.index
        if packet.pos is not None and packet.pos >= 0:
            last_pos[i] = packet.pos
        t = round(packet.dts * packet.time_base / US)
        end = t + round((packet.duration or 0) * packet.time_base / US)
        if i not in state:
            state[i] = (t, end, None)
            first_us[i] = t
            first_pos[i] = packet.pos if packet.pos is not None and packet.pos >= 0 else 0
            continue
        last, last_end, _ = state[i]
        if t < last - BACK_US or t > last_end + AHEAD_US:
            jumps[i].append((packet.pos if packet.pos is not None else -1, last_end - t, t))
            state[i] = (t, end, len(jumps[i]) - 1)
            continue
        held = state[i][2]
        if held is not None and len(jumps[i]) > held and _back_on(jumps[i][held], t, last_end):
            jumps[i].pop(held)  # one packet's garbled time: the next one is back on the old clock
        state[i] = (t, max(end, last_end) if t >= last else end, None)
    return _agree(kinds, jumps, (first_pos, last_pos), first_us)


def _back_on(jump: tuple[int, int, int], t: int, end: int) -> bool:
    """The packet after a jump, at ``t``, is back near where the stream stood before it."""
    _, delta, at = jump
    before = at + delta  # where the stream had reached before the jump
    return abs(t - before) <= AHEAD_US and abs(t - before) < abs(t - at)


def _agree(kinds: dict[int, str], jumps: dict[int, list[tuple[int, int, int]]],
           span: tuple[dict[int, int], dict[int, int]], first_us: dict[int, int]) -> Joins | None:
    """The jumps of the lead stream (the video where there is one) that every other stream with
    packets before and after it (``span``: each stream's first and last place) makes too, near it
    in the file and by about as much."""
    begins, ends = span
    order = sorted(kinds, key=lambda i: (kinds[i] != "video", i))
    lead = order[0]
    starts: dict[int, list[int]] = {i: [] for i in kinds}
    offsets: dict[int, list[int]] = {i: [] for i in kinds}
    first_pos: list[int] = []
    shifts: list[int] = []
    at: list[int] = []
    total = 0
    used: set[tuple[int, int]] = set()  # (stream, place) of the jumps already matched to a part
    late: set[int] = set()  # streams that begin after a part's start: they follow ``first_pos``
    for pos, delta, t in jumps[lead]:
        if pos < 0:
            continue
        matched = {}
        for i in order[1:]:
            if ends.get(i, -1) < pos:  # ended before: no say
                continue
            if begins.get(i, pos) >= pos:  # begins after: no say, and it takes the parts' offsets
                late.add(i)
                continue
            near = sorted((abs(p - pos), p) for p, d, _ in jumps[i] if p >= 0 and (i, p) not in used
                          and abs(p - pos) <= NEAR_BYTES and abs(d - delta) <= AGREE_US)
            if not near:
                break
            matched[i] = near[0][1]
        else:
            used.update(matched.items())
            total += delta
            for i, p in ((lead, pos), *matched.items()):
                starts[i].append(p)
                offsets[i].append(total)
            first_pos.append(min(pos, *matched.values()) if matched else pos)
            shifts.append(total)
            at.append(t + total)
    if not shifts:
        return None
    for i in late:
        del starts[i], offsets[i]
    return Joins(starts, offsets, first_pos, shifts, at, first_us.get(lead, 0))
