"""Joining separately encoded parts of one output (``vbg process --ray``) without re-encoding.

In: the parts in frame order (video files of one format, encoded with the same settings,
each holding its frames' original timestamps; or PNG folders holding their frames' final
names), the target and the source whose audio goes with it. Out: the target, written under a
fresh name and renamed into place (``vbg.fsutil``), as ``VideoWriter`` writes one: the video
packets copied as they are (stream copy; their decode times made again for the whole, the codec
tag and alpha flag kept), the source's audio muxed once, as the video advances (``AudioMux``:
copied or re-encoded where the container needs it), the header written before either. PNG
frames are moved into the new folder, not copied. ``remux_video``: one finished fragmented
recording rewritten unfragmented (``vbg.sinks.recorder``). Thread: the caller's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import av

from vbg.errors import InputError, OutputError, one_line
from vbg.fsutil import NewFile, NewFolder, cannot_write, partial_name
from vbg.fsutil import write_error_hint as disk_hint
from vbg.media.audio import AUDIO_LEAD_S, AudioMux
from vbg.media.encode import output_format, write_errors


def join_video(parts: list[Path], target: Path, *, mode: str, audio_from: str | Path | None,
               overwrite: bool, warnings: list[str]) -> Path:
    """``parts`` (video files in frame order) as one ``target`` with ``audio_from``'s audio; the target."""
    if not parts:
        raise ValueError("join_video: no parts")
    fmt, _ = output_format(target, mode)
    try:
        new = NewFile(target, replace=overwrite)
    except OSError as e:
        raise cannot_write(target, e) from e
    audio = None
    try:
        decode_times = _decode_times(parts)  # every part read once first: a bad one fails before any write
        out = av.open(new.sink, "w", format=fmt.muxer)
        try:
            with av.open(str(parts[0])) as first:
                template = first.streams.video[0]
                extradata = template.codec_context.extradata
                video = out.add_stream_from_template(template)
                _keep_what_players_read(template, video)
            if audio_from is not None:
                audio = AudioMux(audio_from, out, fmt, warnings)
            with write_errors(new.sink):
                # The header first, as VideoWriter writes it: the muxer then sets each stream's time
                # base (WebM's 1/1000 s) before any sound is encoded. Written with the first packet,
                # the re-encoded sound (Opus) had its first frames timed in 1/48000 s and the rest in
                # 1/1000 s, and its times went back ("non monotonically increasing dts").
                out.start_encoding()
                for part, dts in zip(parts, decode_times, strict=True):
                    _copy_video(part, out, video, extradata, audio, dts)
                if audio is not None:
                    audio.mux_until(float("inf"))
                    audio.flush()
        finally:
            if audio is not None:
                audio.close()
            out.close()
        if new.sink.error is not None:
            raise new.sink.error
    except (InputError, OutputError):
        new.discard()
        raise
    except (av.FFmpegError, OSError) as e:
        new.discard()
        raise OutputError(f"{target}: joining its {len(parts)} parts failed ({one_line(e)}): {disk_hint(e)}") from e
    except BaseException:
        new.discard()
        raise
    try:
        return new.commit()
    except FileExistsError as e:  # the target appeared meanwhile, and --overwrite was not given
        kept = new.keep(partial_name(target))
        raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e


def _keep_what_players_read(template, video) -> None:
    """What ``add_stream_from_template`` leaves out of the first part's stream and players read
    (the frame rate too: below).
    The codec tag: in MOV it names ProRes's profile, and the muxer's default for an untagged
    ProRes is ``apch`` (422 HQ), which decoders read a ProRes 4444 (``ap4h``, with alpha) as, at
    10 bits, not 12. WebM's AlphaMode: the muxer writes it for the encoder's yuva420p, which a
    copied VP9 stream does not state (FFmpeg's VP9 decoder reads no alpha), and without it
    browsers drop the alpha the packets carry."""
    tag = template.codec_context.codec_tag
    if tag.strip("\x00"):  # Matroska and WebM keep none
        video.codec_context.codec_tag = tag
    # The frame rate: PyAV 18 states the codec's as the stream's average, and a copied H.264
    # stream's codec rate is its timing header's 1/time base (a joined Matroska file said 12800 fps).
    rate = template.average_rate or template.guessed_rate
    if rate:
        video.codec_context.framerate = rate
    if template.metadata.get("alpha_mode") == "1" and video.codec_context.pix_fmt == "yuv420p":
        video.codec_context.pix_fmt = "yuva420p"  # what the muxer writes AlphaMode for, as for the parts


def _video_packets(src):
    """``src``'s first video stream and its packets in decode order, the demuxer's flush packet left out."""
    stream = src.streams.video[0]
    return stream, (p for p in src.demux(stream) if p.pts is not None or p.dts is not None)


def _decode_times(parts: list[Path]) -> list[list[int]]:
    """Per part, the decode time (dts) each of its packets gets in the joined stream: packet ``i``
    of the whole gets the ``i``-th frame time in order, less the most any packet's frame time
    comes before its place in that order (nothing for ProRes or VP9, a frame or two for H.264's
    B-frames): increasing across the parts, and never after the packet's own time. The parts'
    own are not used: a Matroska part's first packets of H.264 with B-frames carry none (its
    demuxer finds them from the packets before), and FFmpeg's muxer, guessing them from the
    previous part's times, went back at the second part ("non monotonically increasing dts")."""
    times: list[list[int]] = []
    time_base = None
    for part in parts:
        with av.open(str(part)) as src:
            stream, packets = _video_packets(src)
            if time_base is not None and stream.time_base != time_base:
                raise OutputError(f"{part}: its time base differs from the first part's: report this as a bug")
            time_base = stream.time_base
            times.append([p.pts if p.pts is not None else p.dts for p in packets])
    flat = [t for ts in times for t in ts]
    order = sorted(flat)
    lead = max((o - t for o, t in zip(order, flat)), default=0)
    out, i = [], 0
    for ts in times:
        out.append([t - lead for t in order[i:i + len(ts)]])
        i += len(ts)
    return out


def _copy_video(part: Path, out, video, extradata, audio: AudioMux | None, dts: list[int]) -> None:
    """``part``'s packets as they are, each with its decode time ``dts`` (``_decode_times``)."""
    with av.open(str(part)) as src:
        stream, packets = _video_packets(src)
        if stream.codec_context.extradata != extradata:  # one encoder's settings, else no stream copy
            raise OutputError(f"{part}: its encoder set-up differs from the first part's: report this as a bug")
        n = 0
        for n, packet in enumerate(packets, 1):
            if n > len(dts):
                break
            if audio is not None and packet.pts is not None:
                audio.mux_until(float(packet.pts * packet.time_base) + AUDIO_LEAD_S)
            packet.dts = dts[n - 1]
            packet.stream = video
            out.mux(packet)
        if n != len(dts):
            raise OutputError(f"{part}: its packets changed while the parts were joined: report this as a bug")


def remux_video(src, sink, muxer: str) -> int:
    """``src``'s first video stream (a file object: a finished fragmented MP4 or MOV recording)
    stream-copied into ``sink`` with ``muxer``, unfragmented (its index written once, at the end,
    as editors expect); the number of packets. Raises ``av.FFmpegError`` or ``OSError`` (the
    sink's first failed write, with its errno)."""
    n = 0
    with av.open(src, "r") as inp:
        out = av.open(sink, "w", format=muxer)
        try:
            template, packets = _video_packets(inp)
            video = out.add_stream_from_template(template)
            _keep_what_players_read(template, video)
            # A fragmented file keeps no edit list: its first frame shows at the encoder's delay
            # (two frames for x264's B-frames); moved back to 0, as an unfragmented file has it.
            start = template.start_time or 0
            with write_errors(sink):
                out.start_encoding()
                for packet in packets:
                    if packet.pts is not None:
                        packet.pts -= start
                    if packet.dts is not None:
                        packet.dts -= start
                    packet.stream = video
                    out.mux(packet)
                    n += 1
        finally:
            out.close()
    if sink.error is not None:
        raise sink.error
    return n


def join_sequences(parts: list[Path], target: Path, *, overwrite: bool) -> Path:
    """PNG folders (their frames already named as in the whole sequence) moved into one new
    folder that takes ``target``'s place (as ``PngFolder`` commits one); the target."""
    try:
        new = NewFolder(target, replace=overwrite)
    except OSError as e:
        raise cannot_write(target, e) from e
    try:
        for part in parts:
            for name in sorted(os.listdir(part)):
                new.move_in(part / name, name)
        try:
            return new.commit(replace=overwrite)
        except FileExistsError as e:
            kept = new.keep(partial_name(target))
            raise OutputError(f"{e.strerror} (the frames are kept in {kept})") from e
    except OutputError:
        raise
    except OSError as e:
        new.discard()
        raise OutputError(f"{target}: cannot move the frames into place ({one_line(e)}): {disk_hint(e)}") from e
    except BaseException:
        with contextlib.suppress(OSError):
            new.discard()
        raise
