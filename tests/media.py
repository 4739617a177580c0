"""Media the tests make themselves: a person with exact alpha moving over a room."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from conftest import PEOPLE


def person_clip_frames(n: int = 60, size: tuple[int, int] = (360, 640), seed: int = 0, scale: float = 0.9):
    """Yield (rgb, alpha_float) for a webcam-like person swaying over a room.

    The person (example03, exact alpha) moves sideways +-80 px over 40 frames
    and bobs +-4 px: a "video call" with per-frame ground truth. ``scale``: the
    picture of the person's height, of the frame's (0.3: someone at the back of the room).
    """
    h, w = size
    rgba = cv2.cvtColor(cv2.imread(str(PEOPLE / "example03_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    room = cv2.cvtColor(cv2.imread(str(PEOPLE / "background01.jpg")), cv2.COLOR_BGR2RGB)
    room = cv2.resize(room, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    ph = int(h * scale)
    person = cv2.resize(rgba, (ph, ph), interpolation=cv2.INTER_AREA).astype(np.float32)
    fg, a = person[:, :, :3], person[:, :, 3:] / 255.0
    for i in range(n):
        dx = int(round(80 * np.sin(2 * np.pi * i / 40)))
        dy = int(round(4 * np.sin(2 * np.pi * i / 15)))
        x0, y0 = (w - ph) // 2 + dx, h - ph + 4 + dy
        alpha = np.zeros((h, w, 1), np.float32)
        frame = room.copy()
        ys, xs = slice(max(0, y0), min(h, y0 + ph)), slice(max(0, x0), min(w, x0 + ph))
        py = slice(ys.start - y0, ys.stop - y0)
        px = slice(xs.start - x0, xs.stop - x0)
        alpha[ys, xs] = a[py, px]
        frame[ys, xs] = fg[py, px] * a[py, px] + frame[ys, xs] * (1 - a[py, px])
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8), alpha[:, :, 0]


def write_clip(path: Path, frames, fps: int = 30, *, crf: int = 12, codec: str = "libx264",
               pix_fmt: str = "yuv420p", fmt: str | None = None, pts=None, rotation: int = 0,
               preset: str = "veryfast", metadata: dict[str, str] | None = None,
               chapters: list[tuple[float, float, str]] | None = None, sar: Fraction | None = None,
               interlaced: bool = False, cover: bytes | None = None) -> Path:
    """Encode RGB frames with PyAV: H.264 (near-lossless) by default. ``pts(i)`` is frame i's
    timestamp in 1/fps units (default i), ``rotation`` a display matrix (degrees counter-clockwise
    when played), ``fmt`` the container where the suffix does not say it (``"mpegts"``),
    ``metadata`` the file's own (creation_time, title, ...), ``chapters`` (start s, end s, title),
    ``sar`` the pixel aspect stated (the frames are stored as given: squeeze them first),
    ``interlaced`` coded as interlaced fields, bottom field first (``interlace`` makes such frames),
    ``cover`` a JPEG as the file's cover picture (as yt-dlp embeds a thumbnail)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        out.metadata.update(metadata or {})
        if chapters:
            out.set_chapters([{"id": n, "start": round(a * 1000), "end": round(b * 1000), "time_base": Fraction(1, 1000),
                               "metadata": {"title": title}} for n, (a, b, title) in enumerate(chapters, 1)])
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": preset}  # ultrafast: no B-frames
            if interlaced:
                stream.options = {**stream.options, "flags": "+ildct+ilme"}  # field order: bottom first
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        stream.time_base = Fraction(1, fps)
        if rotation:
            stream.set_display_rotation(rotation)
        art = None
        if cover is not None:
            art = out.add_stream("mjpeg")
            art.width, art.height, art.pix_fmt = 160, 90, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts, vf.time_base = (i if pts is None else pts(i)), Fraction(1, fps)
            for pkt in stream.encode(vf):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
        if art is not None:
            packet = av.Packet(cover)
            packet.pts = packet.dts = 0
            packet.time_base, packet.stream = Fraction(1, fps), art
            out.mux(packet)
    return path


def write_turns_interlaced_clip(path: Path, progressive, interlaced, fps: int = 25, gop: int = 250,
                                fmt: str = "mpegts") -> Path:
    """An H.264 clip whose first frames (``progressive``) are coded progressive and the rest
    (``interlaced``) as interlaced fields, bottom first: a broadcast recording that switches
    programme (``write_recoded_clip``)."""
    return write_recoded_clip(path, progressive, interlaced, fps, gop, fmt, fields=True)


def write_recoded_clip(path: Path, first, then, fps: int = 25, gop: int = 250, fmt: str = "mpegts", *,
                       fields: bool = False) -> Path:
    """One H.264 stream (MPEG-TS by default, or ``fmt``) of two encoders: ``first`` frames, then
    ``then`` frames at their own size, coded as interlaced fields (bottom first) with ``fields``: a
    broadcast's programme change, or a recording joined from two. The second encoder's parameter
    sets come in-band; each keyframes every ``gop`` frames from its first."""
    first, then = list(first), list(then)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = first[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "12", "preset": "ultrafast", "g": str(gop)}  # no B-frames: decode order is order
        second = av.CodecContext.create("libx264", "w")
        second.height, second.width = then[0].shape[:2]
        second.pix_fmt = "yuv420p"
        second.time_base, second.framerate = Fraction(1, fps), Fraction(fps)
        second.options = {"crf": "12", "preset": "ultrafast", "g": str(gop),
                          **({"flags": "+ildct+ilme"} if fields else {})}
        for i, rgb in enumerate([*first, *then]):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            if i < len(first):
                packets = stream.encode(vf)
            else:
                packets = [*stream.encode(None), *second.encode(vf)] if i == len(first) else second.encode(vf)
            for pkt in packets:
                pkt.stream = stream
                out.mux(pkt)
        for pkt in second.encode(None):
            pkt.stream = stream
            out.mux(pkt)
    return path


TS_PACKET = 188


def damage_ts(src: Path, dst: Path, *, drop: tuple[float, float] | None = None, garble: int = 0,
              within: tuple[float, float] = (0.25, 0.75), seed: int = 0, unflagged: bool = False) -> Path:
    """``src`` (MPEG-TS) as a weak broadcast's recording. ``drop``: the 188-byte packets from that
    fraction of the file to that one lost, of every stream (a signal dropout: the demuxer meets
    continuity errors, the decoder loses the frames they held); ``unflagged``: the end moved on
    until the video's packets lost are a multiple of 16, so that its continuity counter comes
    round and the demuxer flags nothing of the video's (one dropout in 16 is so). ``garble``:
    that many of the video's packets ``within`` that part of the file (the middle half), none
    starting a frame, their payloads overwritten with random bytes (the timing stays whole; the
    decoder patches what it cannot read)."""
    data = src.read_bytes()
    packets = [data[i:i + TS_PACKET] for i in range(0, len(data), TS_PACKET)]
    assert all(p[0] == 0x47 and len(p) == TS_PACKET for p in packets), "not MPEG-TS"
    with av.open(str(src)) as c:
        video = c.streams.video[0].id
    counted = [((p[1] & 0x1F) << 8 | p[2]) == video and bool(p[3] & 0x10) for p in packets]  # the counter counts payloads
    if drop is not None:
        lo, hi = (round(f * len(packets)) for f in drop)
        while unflagged and sum(counted[lo:hi]) % 16:
            hi += 1
        packets = packets[:lo] + packets[hi:]
    if garble:
        def payload(p: bytes) -> int | None:  # where a video packet's payload starts, or None
            if ((p[1] & 0x1F) << 8 | p[2]) != video or p[1] & 0x40 or not p[3] & 0x10:
                return None
            return 4 + (1 + p[4] if p[3] & 0x20 else 0)

        n = len(packets)
        pick = [i for i in range(round(within[0] * n), round(within[1] * n)) if (at := payload(packets[i])) is not None and at < TS_PACKET]
        rng = np.random.default_rng(seed)
        for i in sorted(rng.choice(pick, size=garble, replace=False)):
            at = payload(packets[i])
            packets[i] = packets[i][:at] + rng.integers(0, 256, TS_PACKET - at, dtype=np.uint8).tobytes()
    dst.write_bytes(b"".join(packets))
    return dst


def write_ts_av(path: Path, frames, fps: int, *, video_pts=None, audio_s: float | None = None,
                audio_pts=None, x264: dict[str, str] | None = None) -> Path:
    """MPEG-TS of H.264 ``frames`` and a 440 Hz AAC tone, as a broadcast or a camcorder records:
    ``video_pts(i)`` frame i's time in frame intervals (default i); the tone ``audio_s`` long
    (default the picture's; 0: no sound), ``audio_pts(n)`` its n-th 1024-sample frame's time in
    samples (default n * 1024); ``x264`` more encoder options (``{"b-pyramid": "none"}``)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    audio_s = len(frames) / fps if audio_s is None else audio_s
    with av.open(str(path), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "18", "preset": "veryfast", "g": str(fps), **(x264 or {})}
        v.time_base = Fraction(1, fps)
        a = out.add_stream("aac", rate=48000, layout="stereo") if audio_s else None
        items = [("v", (i if video_pts is None else video_pts(i)) / fps, i) for i in range(len(frames))]
        items += [("a", (n * 1024 if audio_pts is None else audio_pts(n)) / 48000, n)
                  for n in range(int(audio_s * 48000) // 1024)]
        for kind, _, n in sorted(items, key=lambda it: it[1]):
            if kind == "v":
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[n]), format="rgb24")
                f.pts, f.time_base = (n if video_pts is None else video_pts(n)), Fraction(1, fps)
                out.mux(v.encode(f))
            elif a is not None:
                t = (n * 1024 + np.arange(1024)) / 48000
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.time_base = 48000, Fraction(1, 48000)
                af.pts = n * 1024 if audio_pts is None else audio_pts(n)
                out.mux(a.encode(af))
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return path


def join_video_tracks(paths, dst: Path) -> Path:
    """The video tracks of ``paths`` as the tracks of one Matroska file ``dst``, in that order (a
    two-camera or two-angle recording)."""
    inputs = [av.open(str(path)) for path in paths]
    try:
        with av.open(str(dst), "w") as out:
            streams = [out.add_stream_from_template(a.streams.video[0]) for a in inputs]  # all before the header
            for a, stream in zip(inputs, streams):
                for packet in a.demux(a.streams.video[0]):
                    if packet.size:
                        packet.stream = stream
                        out.mux(packet)
    finally:
        for a in inputs:
            a.close()
    return dst


def interlace(fields) -> list:
    """Frames as an interlaced camera stores them, from pictures taken at twice the frame rate,
    bottom field first as DV cameras (and libx264 by default) have it: frame i holds picture 2i's
    odd lines (the bottom field, first in time) and picture 2i+1's even lines."""
    fields = list(fields)
    frames = []
    for bottom, top in zip(fields[0::2], fields[1::2]):
        frame = bottom.copy()
        frame[0::2] = top[0::2]
        frames.append(frame)
    return frames


BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433],  # BT.2087, linear light, D65
                            [0.0691, 0.9195, 0.0114],
                            [0.0164, 0.0880, 0.8956]])


def hdr_signal(rgb: np.ndarray, transfer: int, white: float = 203) -> np.ndarray:
    """An SDR picture (RGB uint8, BT.709, BT.1886 gamma 2.4) as the HDR signal (R'G'B' 0..1,
    BT.2020) that shows it at the same light, with SDR white at BT.2408's 203 cd/m2 (``white``:
    at that many, up to 1000, for a picture with highlights above SDR's): PQ (16)
    from ST 2084's inverse EOTF, HLG (18) through BT.2100's inverse OOTF (1000 cd/m2, gamma
    1.2) and its OETF; BT.2020's 10-bit SDR (14) as BT.1886's inverse of the same light, white
    at 1.0 (an SDR file in BT.2020 colours: ``white`` unused). Written from the standards, apart
    from vbg's own code."""
    linear = (rgb.astype(np.float64) / 255) ** 2.4 @ BT709_TO_BT2020.T
    if transfer == 14:
        return np.clip(linear, 0, 1) ** (1 / 2.4)
    nits = white * linear
    if transfer == 16:
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        y = (nits / 10000) ** m1
        return ((c1 + c2 * y) / (1 + c3 * y)) ** m2
    ys = (nits @ np.array([0.2627, 0.6780, 0.0593]) / 1000) ** (1 / 1.2)  # scene luminance
    e = nits / (1000 * np.maximum(ys, 1e-12)[..., None] ** 0.2)  # scene light, 0..1
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)


def write_hdr_clip(path: Path, frames, transfer: int, fps: int = 30, *, codec: str = "libx264",
                   x265_params: str | None = None, white: float = 203) -> Path:
    """A phone's HDR recording of SDR ``frames`` (``hdr_signal``): 10-bit 4:2:0, limited range,
    BT.2020 matrix and primaries, tagged HLG (18) or PQ (16), or BT.2020 SDR (14), near-lossless. The YUV is made
    here, so no converter's idea of the BT.2020 matrix is in the file. ``x265_params`` (with
    ``codec="libx265"``) adds HDR10 metadata such as ``max-cll=1500,400``; ``white`` as
    ``hdr_signal`` takes it."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p10le"
        cc = stream.codec_context
        cc.color_trc, cc.color_primaries, cc.colorspace, cc.color_range = transfer, 9, 9, 1
        stream.options = ({"crf": "4", "preset": "veryfast"} if codec == "libx264"
                          else {"x265-params": ":".join(p for p in ("log-level=error", "lossless=1", x265_params) if p)})
        stream.time_base = Fraction(1, fps)
        for i, rgb in enumerate(frames):
            sig = hdr_signal(rgb, transfer, white)
            luma = sig @ np.array([0.2627, 0.6780, 0.0593])
            cb, cr = (sig[..., 2] - luma) / 1.8814, (sig[..., 0] - luma) / 1.4746
            half = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
            planes = (64 + 876 * luma, 512 + 896 * half(cb), 512 + 896 * half(cr))
            vf = av.VideoFrame(w, h, "yuv420p10le")
            for plane, values in zip(vf.planes, planes):
                rows = np.frombuffer(plane, np.uint16).reshape(-1, plane.line_size // 2)
                rows[: values.shape[0], : values.shape[1]] = np.clip(np.round(values), 0, 1023)
            vf.colorspace, vf.color_range = 9, 1
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in stream.encode(vf):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    return path


def write_size_switch_clip(path: Path, first, then, fps: int = 30) -> Path:
    """An MPEG-TS recording whose resolution changes part-way (adaptive streaming, joined
    files): ``first`` frames at their size, then ``then`` at theirs, timestamps continuous."""
    first, then = list(first), list(then)
    a = write_clip(path.with_suffix(".a.ts"), first, fps, fmt="mpegts")
    b = write_clip(path.with_suffix(".b.ts"), then, fps, fmt="mpegts", pts=lambda i: i + len(first))
    path.write_bytes(a.read_bytes() + b.read_bytes())
    a.unlink()
    b.unlink()
    return path


def write_tracks_clip(path: Path, frames, tracks, fps: int = 30, rate: int = 48000, default=None) -> Path:
    """H.264 video with several AAC audio tracks, as OBS records the microphone and the desktop
    apart: ``tracks`` is a list of (tone Hz, language, title), each as long as the video;
    ``default``: the index (or indices) of the tracks flagged as the one a player starts with."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "12", "preset": "veryfast"}
        audio = []
        for hz, language, title in tracks:
            a = out.add_stream("aac", rate=rate, layout="stereo")
            a.metadata["language"], a.metadata["title"] = language, title
            if default is not None:
                flagged = len(audio) in (default if isinstance(default, (list, tuple)) else (default,))
                a.disposition = av.stream.Disposition.default if flagged else av.stream.Disposition(0)
            audio.append((a, hz))
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(v.encode(vf))
        out.mux(v.encode(None))
        n = round(len(frames) / fps * rate)
        for a, hz in audio:
            for start in range(0, n, 1024):
                t = (start + np.arange(min(1024, n - start))) / rate
                tone = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = rate, start, Fraction(1, rate)
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


def dvd_subpicture(x: int, y: int, w: int, h: int, duration: int = 50) -> bytes:
    """One DVD subtitle packet (an SPU, as on a DVD and in its rips): a ``w`` x ``h`` block of
    colour 1 at (``x``, ``y``), shown at once and hidden after ``duration`` ticks (1024/90000 s)."""
    line = b"\x00\x01"  # run-length code: colour 1 to the end of the line
    top, bottom = line * ((h + 1) // 2), line * (h // 2)  # the two fields' lines
    control = 4 + len(top) + len(bottom)
    x2, y2 = x + w - 1, y + h - 1
    area = bytes([x >> 4, (x & 15) << 4 | x2 >> 8, x2 & 255, y >> 4, (y & 15) << 4 | y2 >> 8, y2 & 255])
    show = (b"\x01" + b"\x03\x32\x10" + b"\x04\xff\xf0" + b"\x05" + area
            + b"\x06" + struct.pack(">HH", 4, 4 + len(top)) + b"\xff")
    hide_at = control + 4 + len(show)
    body = top + bottom + struct.pack(">HH", 0, hide_at) + show + struct.pack(">HH", duration, hide_at) + b"\x02\xff"
    return struct.pack(">HH", 4 + len(body), control) + body


def with_dvd_subtitles(src: Path, dst: Path, cues, language: str = "deu") -> Path:
    """``src``'s video in the Matroska file ``dst`` with a DVD (picture) subtitle track: ``cues``
    are (start ms, x) of a 40x10 block each, shown 400 ms."""
    with av.open(str(src)) as a, av.open(str(dst), "w") as out:
        video = out.add_stream_from_template(a.streams.video[0])
        sub = out.add_stream("dvdsub")
        sub.time_base = Fraction(1, 1000)
        sub.metadata["language"] = language
        for packet in a.demux(a.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        for start, x in cues:
            packet = av.Packet(dvd_subpicture(x, 20, 40, 10))
            packet.pts = packet.dts = start
            packet.duration, packet.time_base, packet.stream = 400, Fraction(1, 1000), sub
            out.mux(packet)
    return dst


def _mux_copies(a, copies: dict, out) -> None:
    """Every packet of input ``a`` into ``out``, as it is, on the stream ``copies`` maps its stream to
    (the demuxer's empty flush packets left out)."""
    for packet in a.demux():
        if packet.size:
            packet.stream = copies[packet.stream.index]
            out.mux(packet)


def with_subtitles(src: Path, srt_text: str, dst: Path, language: str = "fra", kind: str = "srt") -> Path:
    """``src``'s streams copied into the Matroska file ``dst``, with an SRT subtitle track of
    ``srt_text`` added (its ``language``); ``kind="ass"``: the text is an ASS script."""
    srt = dst.with_suffix(f".{kind}")
    srt.write_text(srt_text)
    with av.open(str(src)) as a, av.open(str(srt)) as b, av.open(str(dst), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in a.streams}
        sub = out.add_stream_from_template(b.streams.subtitles[0])
        sub.metadata["language"] = language
        for container, target in ((a, copies.get), (b, lambda _: sub)):
            for packet in container.demux():
                if packet.size:  # not the demuxer's empty flush packet
                    packet.stream = target(packet.stream.index)
                    out.mux(packet)
    srt.unlink()
    return dst


def with_data_track(src: Path, dst: Path, packets, kind: str = "gpmd", tracks: int = 1) -> Path:
    """``src``'s streams copied into ``dst`` with a data track of ``packets`` ((ms, bytes) each,
    lasting until the next): ``gpmd``: a GoPro's telemetry track in MP4 (FFmpeg names its handler
    "GoPro MET"); ``klv``: a drone's KLV metadata in MPEG-TS; ``unknown``: a MOV data track in a
    codec FFmpeg does not know (as an iPhone's mebx or a DJI drone's djmd is to it), made by
    copying a KLV track into MOV, where it reads back as codec none. ``tracks`` such tracks (an
    iPhone's video has several)."""
    if kind == "unknown":
        ts = with_data_track(src, dst.with_suffix(".klv.ts"), packets, "klv", tracks)
        with av.open(str(ts)) as a, av.open(str(dst), "w", format="mov") as out:
            copies = {s.index: out.add_stream_from_template(s) for s in a.streams}
            _mux_copies(a, copies, out)
        ts.unlink()
        return dst
    muxer, codec = {"gpmd": ("mp4", "bin_data"), "klv": ("mpegts", "klv")}[kind]
    with av.open(str(src)) as a, av.open(str(dst), "w", format=muxer) as out:
        copies = {s.index: out.add_stream_from_template(s) for s in a.streams}
        datas = [out.add_data_stream(codec_name=codec) for _ in range(tracks)]
        _mux_copies(a, copies, out)
        for i, (ms, payload) in enumerate(packets):
            last = i + 1 == len(packets)
            step = (ms - packets[i - 1][0] if i else 1000) if last else packets[i + 1][0] - ms
            for data in datas:
                packet = av.Packet(payload)
                packet.pts = packet.dts = ms
                packet.duration, packet.time_base, packet.stream = step, Fraction(1, 1000), data
                out.mux(packet)
    return dst


def data_packets(path: Path) -> list[tuple[int, bytes]]:
    """(ms, bytes) of each packet of ``path``'s first data track."""
    with av.open(str(path)) as c:
        s = c.streams.data[0]
        return [(round(float(p.pts * p.time_base) * 1000), bytes(p)) for p in c.demux(s) if p.size]


def with_unknown_audio_track(src: Path, dst: Path, rate: int = 48000) -> Path:
    """``src``'s streams copied into the Matroska file ``dst`` with one more audio track in a codec
    FFmpeg does not know (as an iPhone's spatial-audio APAC track is to FFmpeg 7): a PCM track
    whose codec ID is renamed in the file."""
    tmp = dst.with_suffix(".pcm.mkv")
    with av.open(str(src)) as a, av.open(str(tmp), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in a.streams}
        pcm = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        _mux_copies(a, copies, out)
        for start in range(0, rate, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.int16), format="s16", layout="stereo")
            af.sample_rate, af.pts, af.time_base = rate, start, Fraction(1, rate)
            out.mux(pcm.encode(af))
        out.mux(pcm.encode(None))
    data = tmp.read_bytes()
    assert data.count(b"A_PCM/INT/LIT") == 1
    dst.write_bytes(data.replace(b"A_PCM/INT/LIT", b"A_VBG/INT/LIT"))
    tmp.unlink()
    return dst


def loudest_hz(path: Path, track: int) -> float:
    """The strongest frequency of audio track ``track`` (0: the first) of ``path``."""
    with av.open(str(path)) as c:
        s = c.streams.audio[track]
        pcm = np.concatenate([f.to_ndarray().reshape(f.layout.nb_channels if f.format.is_planar else 1, -1)[0]
                              for f in c.decode(s)])
        rate = s.codec_context.sample_rate
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def channel_hz(path: Path) -> tuple[str, list[float]]:
    """The first audio track's layout, and the strongest frequency of each of its channels."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        layout, rate = s.codec_context.layout, s.codec_context.sample_rate
        n = layout.nb_channels  # packed, read from the buffer: PyAV's to_ndarray of 8 planes crashed
        packed = av.AudioResampler(format="flt", layout=layout, rate=rate)
        pcm = np.concatenate([np.frombuffer(bytes(g.planes[0]), np.float32)[: g.samples * n].reshape(-1, n)
                              for f in c.decode(s) for g in packed.resample(f)], axis=0).T
    freqs = np.fft.rfftfreq(pcm.shape[1], 1 / rate)
    return layout.name, [float(freqs[int(np.argmax(np.abs(np.fft.rfft(ch))))]) for ch in pcm]


def write_surround_clip(path: Path, frames, fps: int, layout: str, tones, codec: str = "pcm_s16le") -> Path:
    """H.264 ``frames`` with one ``codec`` sound track in ``layout``, channel ``i`` a tone of
    ``tones[i]`` Hz (which channel went where can be heard in the output), as long as the picture."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = out.add_stream(codec, rate=48000, layout=layout)
        a.time_base = Fraction(1, 48000)
        size = a.codec_context.frame_size or 1024
        to_encoder = av.AudioResampler(format=a.codec_context.format, layout=layout, rate=48000)
        for i, frame in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for start in range(0, len(frames) * 48000 // fps, size):
            t = (start + np.arange(size)) / 48000
            pcm = np.stack([0.2 * np.sin(2 * np.pi * hz * t) for hz in tones]).astype(np.float32)
            if codec == "pcm_s16le":  # its packets are the samples (PyAV builds no frame of over 8 channels)
                packet = av.Packet((pcm.T * 32767).astype("<i2").tobytes())
                packet.pts = packet.dts = start
                packet.duration, packet.time_base, packet.stream = size, Fraction(1, 48000), a
                out.mux(packet)
                continue
            af = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
            af.sample_rate, af.pts, af.time_base = 48000, start, Fraction(1, 48000)
            for g in to_encoder.resample(af):
                out.mux(a.encode(g))
        if codec != "pcm_s16le":
            out.mux(a.encode(None))
    return path


def write_dv_clip(path: Path, frames, sar: Fraction = Fraction(64, 45)) -> Path:
    """A raw DV file as a tape capture (dvgrab, WinDV) gives it: PAL's 720x576 at 25 fps in
    pixels of ``sar`` (64:45: 16:9 widescreen), fields bottom first, 48 kHz 16-bit PCM sound.
    ``frames`` are RGB at any size (scaled to 720x576: squeeze them to the pixel shape first)."""
    with av.open(str(path), "w", format="dv") as out:
        v = out.add_stream("dvvideo", rate=25)
        v.width, v.height, v.pix_fmt = 720, 576, "yuv420p"
        v.codec_context.sample_aspect_ratio = sar
        a = out.add_stream("pcm_s16le", rate=48000, layout="stereo")
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(cv2.resize(rgb, (720, 576))), format="rgb24")
            vf.pts = i
            out.mux(v.encode(vf))
            t = (i * 1920 + np.arange(1920)) / 48000
            tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone], axis=1).reshape(1, -1), format="s16",
                                            layout="stereo")
            af.sample_rate, af.pts = 48000, i * 1920
            out.mux(a.encode(af))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return path


def write_talk_clip(path: Path, frames, n: int, fps: int, *, gop: int, crf: int = 18, amplitude: float = 0.3,
                    interlaced: bool = False) -> Path:
    """``n`` frames (``frames`` looped) as H.264 with B-frames and a keyframe every ``gop`` frames,
    and a 440 Hz AAC tone beside them: a recording to cut into parts (vbg process --ray);
    ``interlaced`` as ``write_clip``'s."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                     **({"flags": "+ildct+ilme"} if interlaced else {})}
        v.time_base = Fraction(1, fps)
        a = out.add_stream("aac", rate=48000, layout="stereo")
        sample = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i % len(frames)]), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            out.mux(v.encode(f))
            while sample < (i + 1) * 48000 // fps:
                t = (sample + np.arange(1024)) / 48000
                tone = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = 48000, sample, Fraction(1, 48000)
                out.mux(a.encode(af))
                sample += 1024
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return path

class _Unseekable:
    """A file a muxer can only append to (a pipe, a live stream's recording): it cannot go back
    to write the duration into the header."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb")

    def write(self, data) -> int:
        return self._f.write(data)

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._f.close()


def write_with_audio(target, frames, fps: int, *, fmt: str, video: str = "libx264", audio: str = "aac",
                     audio_s: float | None = None, pix_fmt: str = "yuv420p") -> None:
    """``frames`` coded with ``video`` and ``audio_s`` seconds (the picture's length by default)
    of a 440 Hz stereo tone coded with ``audio``, muxed as ``fmt`` into ``target`` (a path or a
    file object), the sound at the encoder's own frame size and time base."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    seconds = len(frames) / fps if audio_s is None else audio_s
    with av.open(target, "w", format=fmt) as out:
        v = out.add_stream(video, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        a = out.add_stream(audio, rate=48000, layout="stereo")
        a.bit_rate = 128_000  # WMA's encoder opens with a rate only
        a.codec_context.open()  # for its frame size
        size = a.codec_context.frame_size or 1024
        to_encoder = av.AudioResampler(format=a.codec_context.format, layout="stereo", rate=48000)
        for i, frame in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for start in range(0, int(seconds * 48000), size):
            tone = (0.3 * np.sin(2 * np.pi * 440 * (start + np.arange(size)) / 48000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 48000, start, Fraction(1, 48000)
            for g in to_encoder.resample(af):
                out.mux(a.encode(g))
        out.mux(a.encode(None))


def write_live_recording(path: Path, fmt: str, frames, fps: int, *, audio_s: float) -> Path:
    """H.264 ``frames`` and ``audio_s`` seconds of AAC tone (longer than the picture, as a stream's
    recording whose sound runs on), muxed as ``fmt`` to an append-only file, as a streaming tool
    writes one: the header states what the muxer guessed at the start, or nothing."""
    sink = _Unseekable(path)
    try:
        write_with_audio(sink, frames, fps, fmt=fmt, audio_s=audio_s)
    finally:
        sink.close()
    return path


def write_gif(path: Path, colours, times_cs, size: tuple[int, int] = (48, 64)) -> Path:
    """An animated GIF of solid ``colours`` (pure ones survive its palette), frame ``i`` shown from
    ``times_cs[i]`` hundredths of a second: a GIF's uneven delays (a pause on one frame)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("gif", rate=100)
        stream.height, stream.width = size
        stream.pix_fmt = "rgb8"
        stream.codec_context.time_base = Fraction(1, 100)
        for colour, t in zip(colours, times_cs, strict=True):
            rgb = np.full((*size, 3), colour, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="rgb8")
            frame.pts, frame.time_base = t, Fraction(1, 100)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def pad_gif(path: Path, at_least: int) -> Path:
    """The GIF at ``path`` made at least ``at_least`` bytes long and still a valid GIF of the same
    frames: an application extension block of no meaning to any reader ("VBGPAD00"), skipped by
    decoders, before its trailer."""
    data = path.read_bytes()
    assert data.endswith(b";"), "a GIF ends with its trailer"
    blocks, rest = divmod(max(0, at_least - len(data) - 15), 256)
    pad = b"\xff" + b"\0" * 255
    with open(path, "wb") as f:
        f.write(data[:-1] + b"\x21\xff\x0bVBGPAD00pad")
        f.write(pad * blocks)
        f.write(bytes([max(1, rest)]) + b"\0" * max(1, rest))
        f.write(b"\0;")
    return path


def write_animation(path: Path, fmt: str, colours, fps: int = 10, size: tuple[int, int] = (48, 64)) -> Path:
    """An animated PNG (``fmt`` "apng") or WebP ("webp") of solid ``colours`` at ``fps``."""
    codec, pix_fmt = {"apng": ("apng", "rgb24"), "webp": ("libwebp_anim", "yuv420p")}[fmt]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = pix_fmt
        for i, colour in enumerate(colours):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), colour, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def read_alpha_video(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as RGBA (H x W x 4 uint8): ProRes 4444 in .mov, VP9/VP8 alpha in
    .webm (through the libvpx decoders: FFmpeg's native VP9 decoder drops the alpha plane). A
    video without alpha comes back with alpha 255."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        libvpx = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(stream.codec_context.name)
        if libvpx is None:
            stream.thread_type = "AUTO"
            return [f.to_ndarray(format="rgba", threads=1) for f in container.decode(stream)]
        ctx = av.CodecContext.create(libvpx, "r")
        out: list[np.ndarray] = []
        for packet in container.demux(stream):
            if packet.size:
                out.extend(f.to_ndarray(format="rgba", threads=1) for f in ctx.decode(packet))
        out.extend(f.to_ndarray(format="rgba", threads=1) for f in ctx.decode(None))
        return out
