"""Joining separately encoded parts of one output (``vbg process --ray``) without re-encoding.

In: the parts in frame order (video files of one format, encoded with the same settings,
each holding its frames' original timestamps; or PNG folders holding their frames' final
names), the target and the source whose audio goes with it. Out: the target, written under a
fresh name and renamed into place (``vbg.fsutil``), as ``VideoWriter`` writes one: the video
packets copied as they are (stream copy), the source's audio muxed once, as the video advances
(``AudioMux``: copied or re-encoded where the container needs it). PNG frames are moved into
the new folder, not copied. Thread: the caller's.
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
        out = av.open(new.sink, "w", format=fmt.muxer)
        try:
            with av.open(str(parts[0])) as first:
                template = first.streams.video[0]
                extradata = template.codec_context.extradata
                video = out.add_stream_from_template(template)
            if audio_from is not None:
                audio = AudioMux(audio_from, out, fmt, warnings)
            with write_errors(new.sink):
                for part in parts:
                    _copy_video(part, out, video, extradata, audio)
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


def _copy_video(part: Path, out, video, extradata, audio: AudioMux | None) -> None:
    with av.open(str(part)) as src:
        stream = src.streams.video[0]
        if stream.codec_context.extradata != extradata:  # one encoder's settings, else no stream copy
            raise OutputError(f"{part}: its encoder set-up differs from the first part's: report this as a bug")
        for packet in src.demux(stream):
            if packet.dts is None and packet.pts is None:  # the demuxer's flush packet
                continue
            if audio is not None and packet.pts is not None:
                audio.mux_until(float(packet.pts * packet.time_base) + AUDIO_LEAD_S)
            packet.stream = video
            out.mux(packet)


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
