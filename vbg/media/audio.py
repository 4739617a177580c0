"""Audio (and subtitles) for an output video: every audio track of the source, and each
subtitle track the output's container can hold, muxed as the video advances.

Packets are muxed up to ``AUDIO_LEAD_S`` ahead of the last frame written, so the
streams are interleaved; copied packets are byte-identical and keep their
timestamps, which keeps them in sync. A recording's several tracks (OBS: the
microphone and the desktop apart) are all kept, in their order, with their
language and title. Subtitles are copied as they are where the container holds
them (SRT, ASS, WebVTT into Matroska, mov_text into MP4/MOV); a text track it
cannot hold is converted, with its timing and its italics and bold, by FFmpeg's
own decoder and encoder: to mov_text for MP4/MOV (the only text MP4 players
show), WebVTT for WebM, SRT for Matroska, said in one line. A picture track (DVD,
Blu-ray) the container cannot hold is named in a warning. A camera's data track (a GoPro's GPS
and motion telemetry) is copied where FFmpeg writes it so that it reads back (MP4, MOV), and named
in a warning elsewhere. The file's own metadata (creation time, title, location, ...)
is copied too, so a phone video keeps its date in a photo library: each container keeps
what it can hold. So are its chapters (a lecture's or a screen recording's sections), with
their titles: every output container vbg writes holds them; and its cover picture (a
downloaded video's thumbnail) into MP4, and into Matroska as its cover.jpg attachment (MOV and WebM:
a line says it is not kept).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from vbg.errors import InputError, one_line
from vbg.media.open import is_url, open_media, open_read
from vbg.media.timeline import Shifter, joins_of

if TYPE_CHECKING:
    from vbg.media.encode import Container

AUDIO_LEAD_S = 0.5  # audio is muxed this far ahead of the last video frame written
PAST_END_S = 1.0  # a packet timed this far past the file's stated end is a damaged one (a flipped bit of its time)
# the containers whose stated duration is the file's own (MP4/MOV's movie header, Matroska's segment
# duration): elsewhere FFmpeg may estimate it (an FLV's metadata, a stream's bitrate) short of the sound
_EXACT_DURATION = ("mov", "matroska")
log = logging.getLogger("vbg")
_AUDIO_SAMPLE_FORMAT = {"aac": "fltp", "libopus": "flt"}
_USUAL_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}  # by channels
# Layouts an encoder opens with but gets wrong, to the one whose channels hold them all, each in
# its place (the others silent): FFmpeg's libopus puts 5.0's centre (the dialogue) in the back
# right speaker and 6.1's in the back centre, and the usual 3- and 4-channel layouts have no LFE
# (2.1 and 3.1 lost it, and 3.1 its centre's place)
_WIDER = {"libopus": {"5.0": "5.1", "5.0(side)": "5.1", "6.1": "7.1", "2.1": "5.1", "3.1": "5.1"}}
_KEPT_METADATA = ("language", "title")
# what the muxer writes itself, or describes the old file's format rather than its content
_FORMAT_METADATA = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})
_MATROSKA_SUBTITLES = frozenset({"srt", "subrip", "ass", "ssa", "webvtt",  # what .mkv takes as they are
                                 "dvdsub", "pgssub", "dvbsub"})
# Text subtitles FFmpeg decodes to its ASS events, and the text codec each container takes.
_TEXT_SUBTITLES = frozenset({"srt", "subrip", "ass", "ssa", "webvtt", "mov_text", "text"})
_TEXT_CODEC = {"mp4": "mov_text", "mov": "mov_text", "webm": "webvtt", "matroska": "subrip"}
_SUBTITLE_NAMES = {"subrip": "SRT", "srt": "SRT", "webvtt": "WebVTT", "ass": "ASS", "ssa": "ASS",  # as users know them
               "dvdsub": "DVD", "pgssub": "Blu-ray (PGS)", "dvbsub": "DVB"}
_DATA_NAMES = {"klv": "KLV", "timed_id3": "ID3", "bin_data": "binary"}  # as users know them
_COVER_FILES = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png")}  # Matroska's cover attachments
_GENERIC_HANDLERS = frozenset({"DataHandler", "Data Handler", "MetadataHandler"})  # say nothing of the track


def _keep_metadata(source: av.stream.Stream, stream: av.stream.Stream) -> None:
    """``source``'s language and title, and which track a player starts with (the default flag:
    it moved to the first track in MP4, and was lost in Matroska) on ``stream``."""
    for key in _KEPT_METADATA:
        value = source.metadata.get(key)
        if value:
            stream.metadata[key] = value
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        stream.disposition = source.disposition


def _copy_file_metadata(source: av.container.InputContainer, output: av.container.OutputContainer) -> None:
    """The source file's metadata on the output (before its header is written); a key that a
    language-tagged twin repeats ("location-eng") is left to the muxer."""
    meta = source.metadata
    for key, value in meta.items():
        if key.lower() in _FORMAT_METADATA or not value:
            continue
        base, _, lang = key.rpartition("-")
        if base and len(lang) == 3 and base in meta:
            continue
        output.metadata[key] = value


def _copy_chapters(source: av.container.InputContainer, output: av.container.OutputContainer,
                   warnings: list[str]) -> None:
    """The source's chapters, with their times and titles, on the output (before its header is
    written); chapters FFmpeg cannot write are named in a warning, the video goes on."""
    try:
        chapters = source.chapters()
        if chapters:
            output.set_chapters(chapters)
    except (ValueError, TypeError, OverflowError, av.FFmpegError) as e:
        warnings.append(f"its chapters are not kept ({one_line(e)})")


def _encoded_layout(codec: str, source: av.AudioLayout, rate: int) -> str:
    """The channels ``codec`` encodes sound of ``source``'s layout in: that layout where the encoder
    takes it (a 5.1 recording stays 5.1), else the usual one of as many channels (Opus's 5.1 for
    5.1(side)), else stereo (mono for one channel): a downmix, said by the caller."""
    n = source.nb_channels
    wider = _WIDER.get(codec, {}).get(source.name)
    for name in dict.fromkeys((wider or source.name, _USUAL_LAYOUTS.get(n, "stereo"))):
        try:
            trial: Any = av.CodecContext.create(codec, "w")  # an AudioCodecContext (PyAV's stubs say less)
            trial.sample_rate, trial.layout, trial.format = rate, name, _AUDIO_SAMPLE_FORMAT[codec]
            trial.open()
        except (av.FFmpegError, ValueError, TypeError):
            continue
        return name
    return "stereo" if n >= 2 else "mono"


def _same_speakers(a: av.AudioLayout, b: av.AudioLayout) -> bool:
    """Whether two layouts of as many channels name the same speakers (5.1(side) and Opus's 5.1:
    the surrounds at the side or at the back, no sound moved); else a same-count remix is said."""
    if a.name.endswith("channels"):  # "2 channels": no speakers named, so none moved
        return True
    return {c.name for c in a.channels} == {c.name for c in b.channels} or \
        {a.name, b.name} <= {"5.1", "5.1(side)"} or {a.name, b.name} <= {"5.0", "5.0(side)"}


def _one_default(streams: list) -> None:
    """The default flag on one of ``streams`` at most, the first that has it: Matroska's reader
    says every track is default unless the file says not, and MP4 enables every default track
    (QuickTime then plays them all at once)."""
    flagged = [s for s in streams if int(getattr(s, "disposition", 0)) & int(av.stream.Disposition.default)]
    for s in flagged[1:]:
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            s.disposition = av.stream.Disposition(int(s.disposition) & ~int(av.stream.Disposition.default))


def _codec_of(source: av.stream.Stream) -> str:
    """``source``'s codec as FFmpeg's muxers and users name it ("mp3"), not its decoder's name
    ("mp3float", what FFmpeg picks to read MP3)."""
    cc = source.codec_context
    try:
        return cc.codec.canonical_name or cc.name
    except (AttributeError, ValueError, av.FFmpegError):
        return cc.name


def _copied(source: av.audio.stream.AudioStream, output: av.container.OutputContainer, fmt: Container) -> bool:
    """Whether ``source``'s packets go into ``output`` as they are: a codec players play in that
    container (``fmt.audio_copy``), and one its muxer writes with these parameters, tried on a
    header in memory (FFmpeg lists Opus for .mov, say, whose muxer then refuses it: MP4 only)."""
    name = _codec_of(source)
    if name not in output.supported_codecs or fmt.audio_copy is not None and name not in fmt.audio_copy:
        return False
    try:
        with av.open(io.BytesIO(), "w", format=fmt.muxer) as trial:
            trial.add_stream_from_template(source)
            trial.start_encoding()
    except (av.FFmpegError, ValueError, TypeError):
        return False
    return True


def _known(source: av.stream.Stream) -> bool:
    """FFmpeg knows ``source``'s codec (an iPhone's spatial-audio APAC track, say, it does not)."""
    cc = source.codec_context
    return cc is not None and bool(cc.name) and cc.name != "none"


# FFmpeg's probe looks at the first 5 s (5 MB) of a file for each stream's sample rate and channels:
# a recording whose sound starts later (an MPEG-TS broadcast's) is opened again looking through it
LONG_PROBE = {"analyzeduration": str(600 * 1_000_000), "probesize": str(128 << 20)}  # FFmpeg holds what it reads


def _unstated(source: av.audio.stream.AudioStream) -> bool:
    cc = source.codec_context
    return _known(source) and not (cc.sample_rate and cc.layout.nb_channels)


def _unreadable(source: av.audio.stream.AudioStream) -> str | None:
    """Why ``source``, which cannot be copied as it is, cannot be decoded to be re-encoded either, or None."""
    cc = source.codec_context
    if not _known(source):
        return "its codec is unknown to FFmpeg"
    try:
        av.Codec(cc.name, "r")
    except (ValueError, av.FFmpegError):
        return f"no {cc.name} decoder here"
    if not cc.sample_rate or not cc.layout.nb_channels:
        return f"its {cc.name} stream states no sample rate or channels"
    return None


def _copy_of(source: av.stream.Stream, output: av.container.OutputContainer) -> av.stream.Stream:
    """An output stream for ``source``'s packets as they are, with its language and title."""
    stream = output.add_stream_from_template(source)
    _keep_metadata(source, stream)
    return stream


def _writes_back(source: av.stream.Stream, muxer: str) -> bool:
    """FFmpeg writes data track ``source`` into a ``muxer`` file and its own reader finds it there
    again as the same kind of track: a trial of one packet in memory. (The mov muxer writes a
    KLV track, say, that reads back as an unknown one: not kept.)"""
    buf = io.BytesIO()
    time_base = source.time_base or Fraction(1, 1000)
    try:
        with av.open(buf, "w", format=muxer) as trial:
            stream = trial.add_stream_from_template(source)
            packet = av.Packet(bytes(16))
            packet.pts = packet.dts = 0
            packet.time_base, packet.stream = time_base, stream
            trial.mux(packet)
        buf.seek(0)
        with av.open(buf) as back:
            return [(s.type, s.name) for s in back.streams] == [("data", source.name)]
    except (av.FFmpegError, ValueError, TypeError):
        return False


def _data_kind(source: av.stream.Stream) -> str:
    """A data track's kind as a user knows it: its handler's name (a GoPro's "GoPro MET"), else its
    codec ("KLV"), else nothing."""
    handler = (source.metadata.get("handler_name") or "").strip()
    if handler and handler not in _GENERIC_HANDLERS:
        return handler
    return _DATA_NAMES.get(source.name, source.name) if source.name else ""


def _data_not_kept(source: av.stream.Stream, fmt: Container) -> str | None:
    """Why data track ``source`` (camera telemetry) cannot be copied as it is into ``fmt``'s files,
    with the fix where there is one (``{it}`` for the track or tracks); None where it can (a
    GoPro's GPS and motion in MP4 and MOV)."""
    if source.name is None:  # a codec FFmpeg does not know (an iPhone's mebx, a drone's djmd)
        return ": FFmpeg cannot write that kind of track"
    if _writes_back(source, fmt.muxer):
        return None
    keep = next((f".{m}" for m in ("mp4", "mov") if m != fmt.muxer and _writes_back(source, m)), None)
    fix = f"write {keep} to keep {{it}}" if keep else "FFmpeg cannot write {it} into any file vbg writes"
    return f" in {fmt.muxer} files: {fix}"


def _text_track(source: av.stream.Stream, output: av.container.OutputContainer, fmt: Container) -> _Track | None:
    """A track converting text subtitle ``source`` to the text codec ``output`` holds (its language
    and title kept), or None: a picture subtitle, no text codec there, or FFmpeg cannot do it."""
    target = _TEXT_CODEC.get(fmt.muxer)
    if source.codec_context.name not in _TEXT_SUBTITLES or target not in output.supported_codecs:
        return None
    time_base = source.time_base or Fraction(1, 1000)
    try:
        decoder: Any = source.codec_context  # a SubtitleCodecContext (PyAV's stubs say less)
        if not decoder.is_open:
            decoder.open()
        trial: Any = av.CodecContext.create(target, "w")  # the encoder opens with this header: else no track
        trial.subtitle_header = decoder.subtitle_header  # the styles: italic, bold
        trial.time_base = time_base
        trial.open()
    except (av.FFmpegError, ValueError, TypeError):
        return None
    stream = output.add_stream(target)
    encoder: Any = stream.codec_context
    encoder.subtitle_header = decoder.subtitle_header
    stream.time_base = time_base
    _keep_metadata(source, stream)
    return _Track(source, stream, None, text=True)


JITTER_SAMPLES = 64  # where the sound's kind changes, a frame this little before the end of the sound before is kept


@dataclass
class _Track:
    """One source audio or subtitle stream and the output stream it goes to."""

    source: av.stream.Stream
    stream: av.stream.Stream
    resampler: av.AudioResampler | None  # None: packets copied as they are (or text converted)
    text: bool = False  # a text subtitle decoded and encoded again in the output's text codec
    fed: tuple | None = None  # the (sample format, layout, rate) the resampler was fed (it takes no other)
    switched: bool = False  # its layout changed part-way, said once
    end: Fraction | None = None  # where the sound encoded so far ends, s
    guard: Fraction | None = None  # after a change of kind: frames that start before this (s) are left out

    @property
    def copied(self) -> bool:
        return self.resampler is None and not self.text


def _stated_end_s(container: av.container.InputContainer) -> float | None:
    """Past this time a packet of ``container`` is a damaged one; None where the file states no
    duration of its own (a Matroska recording that was never finished states none). An MP4's or
    MOV's stated duration is a length, from the file's first time: a TS recording copied into MP4
    starts at 1.4 s, say (its sound past 1.4 s before its end was taken for damaged); a Matroska
    file's is its end time (FFmpeg's writer states the last time, whatever the first)."""
    if not container.duration or not container.format.name.startswith(_EXACT_DURATION):
        return None
    start = (container.start_time or 0) if container.format.name.startswith("mov") else 0
    return (start + container.duration) / av.time_base + PAST_END_S


class AudioMux:
    """Every audio stream of a file, muxed into an output as video is written: packets
    copied unchanged when the container accepts the codec, otherwise decoded, resampled
    and re-encoded (Opus 48 kHz for WebM, AAC elsewhere); with them the subtitle streams
    the container holds as they are, and the file's metadata and chapters (see the module's note)."""

    def __init__(self, src: str | Path, output: av.container.OutputContainer, fmt: Container,
                 warnings: list[str]) -> None:
        try:
            self._in = open_media(src)
            if not is_url(str(src)) and any(_unstated(s) for s in self._in.streams.audio):
                self._in.close()  # sound that starts late (a broadcast's): FFmpeg's probe stopped before it
                self._in = open_read(src, options=LONG_PROBE)
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"{src}: cannot read its audio ({one_line(e)}): pass an intact media file") from e
        self._output = output
        self._from_zero = fmt.muxer in ("matroska", "webm")  # times below 0 move the whole file (``_shown``)
        self._pending: av.Packet | None = None
        self._done = False
        self._tracks: dict[int, _Track] = {}  # by the source stream's index
        self._last: dict[int, int] = {}  # each source stream's last muxed packet's time, in its time base
        self._end_s = _stated_end_s(self._in)
        self._damaged: dict[str, int] = {}  # packets left out for their times (_out_of_line), by track kind
        self._garbled = 0  # audio packets left out for their damaged data (_mux)
        # recordings joined end to end: every track on the file's one timeline (vbg.media.timeline),
        # as the picture is; a part's sound that overlaps the end of the part before is left out
        self._joins = joins_of(src, self._in)
        self._shifters: dict[int, Shifter] = {}
        self._settling: set[int] = set()  # tracks at a new part's start, until a packet is in line
        try:
            _copy_file_metadata(self._in, output)
            _copy_chapters(self._in, output, warnings)
            if not self._in.streams.audio:
                warnings.append("has no audio stream: the output has none")  # said after the input's name
            reencoded: dict[tuple[str, str], int] = {}
            for n, source in enumerate(self._in.streams.audio, 1):
                copied = _known(source) and _copied(source, output, fmt)
                why = None if copied else _unreadable(source)
                if why is not None:  # an iPhone's spatial-audio (APAC) track, say: the others are kept
                    warnings.append(f"its audio track {n} is not kept ({why})")
                    continue
                track = self._tracks[source.index] = self._add_track(source, output, fmt, copied)
                if not track.copied:
                    was, now = source.codec_context.layout, track.stream.codec_context.layout  # type: ignore[attr-defined]
                    mixed = f", its {was.name} mixed down to {now.name}" if now.nb_channels < was.nb_channels else \
                        f", its {was.name} remixed to {now.name}" if now.nb_channels == was.nb_channels \
                        and now.name != was.name and not _same_speakers(was, now) else ""
                    key = (_codec_of(source), mixed)
                    reencoded[key] = reencoded.get(key, 0) + 1
            for (name, mixed), n in reencoded.items():
                tracks = f" ({n} tracks)" if n > 1 else ""
                warnings.append(f"its {name} audio{tracks} is not kept as is in {fmt.muxer} files: "
                                f"re-encoded to {fmt.audio_codec}{mixed}")
            _one_default([t.stream for t in self._tracks.values()])
            for source in self._in.streams.subtitles:
                name = source.codec_context.name
                if name in output.supported_codecs:
                    self._tracks[source.index] = _Track(source, _copy_of(source, output), None)
                    continue
                converted = _text_track(source, output, fmt)
                shown = _SUBTITLE_NAMES.get(name, name)
                if converted is not None:
                    self._tracks[source.index] = converted
                    kept = ": write .mkv to keep it as it is" if shown == "ASS" else ""
                    into = converted.stream.codec_context.name
                    target = _SUBTITLE_NAMES.get(into, into)
                    warnings.append(f"its {shown} subtitle track is converted to {target} for {fmt.muxer} files{kept}")
                else:
                    fix = ": write .mkv to keep it" if name in _MATROSKA_SUBTITLES else ""
                    warnings.append(f"its {shown} subtitle track is not kept in {fmt.muxer} files{fix}")
            dropped: dict[tuple[str, str], int] = {}  # (kind, why): tracks (an iPhone has several alike)
            for source in self._in.streams.data:  # camera telemetry (GoPro GPS, accelerometer)
                if "timecode" in source.metadata:
                    continue  # a tape's or camera's timecode: the video's metadata carries it
                why = _data_not_kept(source, fmt)
                if why is None:
                    self._tracks[source.index] = _Track(source, _copy_of(source, output), None)
                else:
                    key = (_data_kind(source), why)
                    dropped[key] = dropped.get(key, 0) + 1
            for (kind, why), n in dropped.items():
                named = f" ({kind})" if kind else ""
                tracks = f"data track{named} is" if n == 1 else f"{n} data tracks{named} are"
                warnings.append(f"its {tracks} not kept{why.format(it='it' if n == 1 else 'them')}")
            for source in self._in.streams.video:  # a downloaded video's thumbnail (yt-dlp --embed-thumbnail)
                if not source.disposition & av.stream.Disposition.attached_pic:
                    continue
                # MP4 holds it as players read it, Matroska as an attachment named cover.jpg (a
                # copied stream would be a second video track); FFmpeg writes it into MOV where its
                # own reader does not find it again, and WebM holds no attachments
                name = source.codec_context.name
                if fmt.muxer == "mp4" and name in output.supported_codecs:
                    cover = _copy_of(source, output)
                    cover.disposition = av.stream.Disposition.attached_pic
                    self._tracks[source.index] = _Track(source, cover, None)
                elif fmt.muxer == "matroska" and name in _COVER_FILES and self._attach_cover(src, source):
                    pass
                else:
                    warnings.append(f"its cover picture is not kept in {fmt.muxer} files")
            if not self._tracks:
                self.close()
                self._done = True
                return
            self._packets = self._in.demux(*(t.source for t in self._tracks.values()))
        except BaseException:
            self.close()
            raise

    def _attach_cover(self, src: str | Path, source: av.stream.Stream) -> bool:
        """Cover picture ``source`` as a Matroska attachment, as players and mkvtoolnix name it
        (cover.jpg, cover.png); False where its picture cannot be read."""
        ext, mime = _COVER_FILES[source.codec_context.name]
        try:
            with open_media(src) as again:
                picture = next((bytes(p) for p in again.demux(again.streams[source.index]) if p.size), None)
        except (av.FFmpegError, OSError):
            picture = None
        if not picture:
            return False
        self._output.add_attachment(f"cover.{ext}", mime, picture)
        return True

    @property
    def tracks(self) -> int:
        """How many audio tracks the output gets."""
        return len(self._tracks)

    @staticmethod
    def _add_track(source: av.audio.stream.AudioStream, output: av.container.OutputContainer,
                   fmt: Container, copied: bool) -> _Track:
        """The output track for ``source``: its packets as they are where ``copied`` (``_copied``), else re-encoded."""
        if copied:
            return _Track(source, _copy_of(source, output), None)
        rate = fmt.audio_rate or source.codec_context.sample_rate
        layout = _encoded_layout(fmt.audio_codec, source.codec_context.layout, rate)
        stream = output.add_stream(fmt.audio_codec, rate=rate, layout=layout,
                                   format=_AUDIO_SAMPLE_FORMAT[fmt.audio_codec])
        stream.time_base = Fraction(1, rate)
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=rate)
        _keep_metadata(source, stream)
        return _Track(source, stream, resampler)

    def mux_until(self, t_s: float) -> None:
        """Mux source packets whose time is up to ``t_s`` seconds."""
        while not self._done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets, None)
                except av.FFmpegError as e:
                    raise InputError(f"{self._in.name}: reading its audio failed ({one_line(e)}): "
                                     "the file may be damaged") from e
                if packet is None:
                    self._done = True
                    return
                if not packet.size:  # the demuxer's empty flush packet (a real one may lack a dts)
                    continue
                index = packet.stream.index
                if self._joins is not None and packet.time_base is not None:
                    shifter = self._shifters.get(index)
                    if shifter is None:
                        shifter = self._shifters[index] = Shifter(self._joins, index, packet.time_base)
                    shifter.shift(packet)
                    if shifter.joined:
                        self._settling.add(index)
                if self._out_of_line(packet):
                    if index not in self._settling:  # else the overlap of a new part's start: no damage
                        kind = packet.stream.type
                        self._damaged[kind] = self._damaged.get(kind, 0) + 1
                    continue
                self._settling.discard(index)
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and float(ts * packet.time_base) > t_s:
                self._pending = packet
                return
            self._pending = None
            self._mux(packet)

    def _out_of_line(self, packet: av.Packet) -> bool:
        """A packet whose time a damaged file garbled: past the file's stated end (where it states
        one, ``_stated_end_s``), or not after the one before it in its track. Muxed, it stopped the whole output at its end (the muxer
        refuses times that go back); left out, it is a short gap, as ffmpeg leaves it."""
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is None:
            return False
        if self._end_s is not None and float(ts * packet.time_base) > self._end_s:
            return True
        last = self._last.get(packet.stream.index)  # (two subtitle cues may start together)
        if last is not None and (ts < last or ts == last and packet.stream.type != "subtitle"):
            return True
        self._last[packet.stream.index] = ts
        return False

    def _shown(self, packet: av.Packet, track: _Track) -> bool:
        """False for a packet a Matroska or WebM output must leave out: one the source hides
        before its time 0 (a cut MP4's edit list, an AAC encoder's priming packet). Matroska holds
        no time below 0, and FFmpeg moved every track later to make room: each frame of the
        picture late (a cut's hidden seconds, 21 ms for AAC's priming), the cut-away sound played
        over no picture. Opus keeps its own pre-skip there: only what ends by 0 is left out; any
        other packet that starts before 0 is left out whole (its part after 0: 1 ms for MP3's
        usual delay, up to 20 ms for a cut's). A cue that starts before 0 and ends after starts
        at 0. MP4 and MOV hold such times as they are (hidden by an edit list, as in the source).
        For copied and converted tracks: a decoder applies what its source hides itself."""
        ts = packet.pts if packet.pts is not None else packet.dts
        if not self._from_zero or ts is None or ts >= 0:
            return True
        end = ts + (packet.duration or 0)
        kind = track.source.type
        if kind == "audio":
            return track.source.codec_context.name == "opus" and end > 0
        if kind == "subtitle" and end > 0:
            packet.pts, packet.dts, packet.duration = 0, 0, end
            return True
        return False

    def _mux(self, packet: av.Packet) -> None:
        track = self._tracks[packet.stream.index]
        if (track.copied or track.text) and not self._shown(packet, track):
            return  # (a decoder applies what its source hides itself, and needs its priming packet)
        if track.copied:
            packet.stream = track.stream
            try:
                self._output.mux(packet)
            except av.InvalidDataError:  # a damaged ADTS header (MPEG-TS AAC into MP4/MOV/MKV): its
                # bitstream filter refuses the packet, which is left out as a damaged one is
                self._garbled += 1
            return
        if track.text:
            self._convert_text(track, packet)
            return
        try:
            frames = track.source.codec_context.decode(packet)
        except av.InvalidDataError:
            return  # one damaged audio packet: skipped (a short gap), as ffmpeg does
        for frame in frames:
            self._encode(track, frame)

    def _convert_text(self, track: _Track, packet: av.Packet) -> None:
        """One subtitle cue in the output's text codec, at its own time; a cue FFmpeg cannot
        read or write (damaged) is skipped, as a damaged audio packet is."""
        decoder: Any = track.source.codec_context  # SubtitleCodecContexts (PyAV's stubs say less)
        encoder: Any = track.stream.codec_context
        try:
            cues = decoder.decode2(packet)
            if cues is None or not len(cues):
                return
            out = encoder.encode_subtitle(cues)
        except (av.FFmpegError, ValueError):
            return
        out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
        out.time_base, out.stream = packet.time_base, track.stream
        self._output.mux(out)

    def _encode(self, track: _Track, frame: av.AudioFrame | None) -> None:
        tick = track.stream.time_base  # 1/rate
        assert track.resampler is not None and tick is not None
        if frame is not None:
            kind = (frame.format.name, frame.layout.name, frame.sample_rate)
            if track.fed is not None and kind != track.fed:
                # the sound changes part-way (a broadcast's advert in stereo, then the film in 5.1):
                # PyAV's resampler takes one kind only, so the rest goes through a new one, to the
                # output's layout (it raised "Frame does not match AudioResampler setup")
                self._resampled(track, track.resampler.resample(None), tick)
                track.guard = track.end  # the new kind's sound may overlap the old one's end
                cc: Any = track.stream.codec_context  # an audio one
                track.resampler = av.AudioResampler(format=cc.format, layout=cc.layout, rate=cc.sample_rate)
                if track.fed[1] != kind[1] and not track.switched:
                    track.switched = True
                    log.warning("%s: its sound changes from %s to %s at %.1f s: the rest is mixed to the output's %s",
                                self._in.name, track.fed[1], kind[1],
                                float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base
                                else 0.0, cc.layout.name)
            track.fed = kind
        self._resampled(track, track.resampler.resample(frame), tick)

    def _resampled(self, track: _Track, frames, tick: Fraction) -> None:
        for f in frames:
            if f.pts is not None and f.time_base is not None and f.time_base != tick:
                # the source's time base, where the rate stays (an AVI's MP3 counts 1152-sample
                # frames): the encoder's 1024-sample frames would round to one time twice there
                f.pts, f.time_base = round(f.pts * f.time_base / tick), tick
            if f.pts is not None and f.time_base is not None and f.sample_rate:
                at = f.pts * f.time_base
                if track.guard is not None:  # just after its kind changed (``_encode``)
                    if at < track.guard - Fraction(JITTER_SAMPLES, f.sample_rate):
                        continue  # sound that overlaps the sound before the change: left out
                    track.guard = None
                track.end = at + Fraction(f.samples, f.sample_rate)
            self._output.mux(track.stream.encode(f))

    def _left_out(self, what: str, n: int, one: str, many: str) -> None:
        log.warning("%s: its %s has %s: left out (%s)", self._in.name, what, one if n == 1 else f"{n} {many}",
                    "a short gap" if n == 1 else "a short gap each")

    def flush(self) -> None:
        if self._in is None:
            return
        for kind, n in self._damaged.items():
            what = {"audio": "audio", "subtitle": "subtitles", "data": "data track"}.get(kind, kind)
            self._left_out(what, n, "a packet with a damaged time", "packets with damaged times")
        if self._garbled:
            self._left_out("audio", self._garbled, "a damaged packet", "damaged packets")
        for track in self._tracks.values():
            if track.copied or track.text:
                continue
            for frame in track.source.codec_context.decode(None):
                self._encode(track, frame)
            self._encode(track, None)
            self._output.mux(track.stream.encode(None))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
