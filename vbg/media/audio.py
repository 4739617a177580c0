"""Audio for an output video: the source's first audio stream muxed as the video advances.

Audio is muxed up to ``AUDIO_LEAD_S`` ahead of the last frame written, so the
streams are interleaved; copied packets are byte-identical and keep their
timestamps, which keeps them in sync.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av

from vbg.errors import InputError, one_line
from vbg.media.open import open_media

if TYPE_CHECKING:
    from vbg.media.encode import Container

AUDIO_LEAD_S = 0.5  # audio is muxed this far ahead of the last video frame written
_AUDIO_SAMPLE_FORMAT = {"aac": "fltp", "libopus": "flt"}


class AudioMux:
    """The first audio stream of a file, muxed into an output as video is written:
    packets copied unchanged when the container accepts the codec, otherwise
    decoded, resampled and re-encoded (Opus 48 kHz for WebM, AAC elsewhere)."""

    def __init__(self, src: str | Path, output: av.container.OutputContainer, fmt: Container,
                 warnings: list[str]) -> None:
        try:
            self._in = open_media(src)
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"{src}: cannot read its audio ({one_line(e)}): pass an intact media file") from e
        self._output = output
        self._pending: av.Packet | None = None
        self._done = False
        self._resampler = None
        self.stream: av.audio.stream.AudioStream | None = None
        self.copied = True
        if not self._in.streams.audio:
            warnings.append("has no audio stream: the output has none")  # said after the input's name
            self._in.close()
            self._in = None
            self._done = True
            return
        try:
            self._add_stream(self._in.streams.audio[0], output, fmt, warnings)
        except BaseException:
            self.close()
            raise

    def _add_stream(self, source: av.audio.stream.AudioStream, output: av.container.OutputContainer,
                    fmt: Container, warnings: list[str]) -> None:
        self._source = source
        name = source.codec_context.name
        if name in output.supported_codecs and (fmt.audio_copy is None or name in fmt.audio_copy):
            self.stream = output.add_stream_from_template(source)
            self.copied = True
        else:
            rate = fmt.audio_rate or source.codec_context.sample_rate
            layout = "stereo" if source.codec_context.layout.nb_channels >= 2 else "mono"
            self.stream = output.add_stream(fmt.audio_codec, rate=rate, layout=layout,
                                            format=_AUDIO_SAMPLE_FORMAT[fmt.audio_codec])
            self.stream.time_base = Fraction(1, rate)
            self._resampler = av.AudioResampler(format=self.stream.codec_context.format, layout=layout, rate=rate)
            self.copied = False
            warnings.append(f"its {name} audio is not kept as is in {fmt.muxer} files: re-encoded to {fmt.audio_codec}")
        self._packets = self._in.demux(source)

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
                if packet.dts is None:  # demuxer flush packet
                    continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if float(ts * packet.time_base) > t_s:
                self._pending = packet
                return
            self._pending = None
            self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        if self.copied:
            packet.stream = self.stream
            self._output.mux(packet)
            return
        try:
            frames = self._source.codec_context.decode(packet)
        except av.InvalidDataError:
            return  # one damaged audio packet: skipped (a short gap), as ffmpeg does
        for frame in frames:
            self._encode(frame)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        frames = self._resampler.resample(frame)
        for f in frames:
            self._output.mux(self.stream.encode(f))

    def flush(self) -> None:
        if self.copied or self._in is None:
            return
        for frame in self._source.codec_context.decode(None):
            self._encode(frame)
        self._encode(None)
        self._output.mux(self.stream.encode(None))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
