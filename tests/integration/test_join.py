"""``vbg.media.join.join_video`` (the join of ``vbg process --ray``) on real parts: each written
as a Ray worker writes one (``VideoWriter``, no sound, the source's frame times), then joined
with the source's sound. No Ray here: the join is the driver's alone."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import person_clip_frames, read_alpha_video, write_talk_clip
from vbg.media.info import probe
from vbg.media.join import join_video
from vbg.media.writer import VideoWriter

FPS = 30
GOP = 30  # a keyframe a second, as the clips of the audit
N = 90  # 3 s
SIZE = (144, 256)


@pytest.fixture(scope="module")
def person():
    """(rgb, alpha uint8) of 30 frames of the person clip, looped by the talk clip."""
    return [(rgb, (a * 255 + 0.5).astype(np.uint8)) for rgb, a in person_clip_frames(30, SIZE)]


@pytest.fixture(scope="module")
def talk(tmp_path_factory, person) -> Path:
    """3 s of H.264 with B-frames and AAC sound at 30 fps, a keyframe a second."""
    return write_talk_clip(tmp_path_factory.mktemp("join") / "talk.mp4", (rgb for rgb, _ in person), N, FPS, gop=GOP)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, talk, person):
    """``make(suffix, mode, count)``: the talk clip's frames as ``count`` parts (made once each)."""
    info = probe(talk)
    with av.open(str(talk)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) == N
    made: dict[tuple, list[Path]] = {}

    def make(suffix: str, mode: str, count: int) -> list[Path]:
        key = (suffix, mode, count)
        if key not in made:
            folder = tmp_path_factory.mktemp("parts")
            per = -(-N // count)
            paths = []
            for k in range(count):
                path = folder / f"part{k:05d}{suffix}"
                with VideoWriter(path, info, mode=mode, quality="fast") as w:
                    for i in range(k * per, min(N, (k + 1) * per)):
                        rgb, alpha = person[i % len(person)]
                        w.write(i, pts[i], 0.0, rgb if mode == "rgb" else np.dstack([rgb, alpha]))
                paths.append(path)
            made[key] = paths
        return made[key]

    return make


def source_times(path: Path) -> tuple[list[Fraction], float]:
    """The video frames' times and the sound's end (seconds) of ``path``."""
    with av.open(str(path)) as c:
        times = [f.pts * f.time_base for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        end = max(float((p.pts + p.duration) * a.time_base) for p in c.demux(a) if p.size)
    return times, end


def check_joined(path: Path, talk: Path, *, sound: bool) -> None:
    """Every frame at its source time, decode times increasing and never after the frame's, the
    sound (if any) with increasing times and about the source's length, all decoded without an
    error from FFmpeg; the frame rate the file states is the source's (with PyAV 18, a joined
    Matroska file stated 1/time base: 12800 fps)."""
    times, end = source_times(talk)
    with av.open(str(talk)) as src:
        rate = src.streams.video[0].average_rate
    with av.logging.Capture() as logs, av.open(str(path)) as c:
        v = c.streams.video[0]
        assert v.average_rate == rate and v.guessed_rate == rate
        got = [f.pts * f.time_base for f in c.decode(v)]
    assert len(got) == N
    assert all(a < b for a, b in zip(got, got[1:]))
    # as the source's, to Matroska's milliseconds; all shifted by the AAC's priming (21 ms) in
    # Matroska, as in a local run's file (the muxer makes the sound's negative start 0)
    shift = float(got[0] - times[0])
    assert 0 <= shift < 0.025
    assert max(abs(float(a - b) - shift) for a, b in zip(got, times)) <= 0.001
    with av.logging.Capture() as more, av.open(str(path)) as c:
        demuxed = [p for p in c.demux() if p.size]
        # Matroska stores no decode times: its demuxer gives none for the first packets of H.264
        # with B-frames, and works the others out
        packets = [(p.pts, p.dts) for p in demuxed if p.stream.type == "video" and p.dts is not None]
        assert len(packets) >= N - 2 and all(dts <= pts for pts, dts in packets)
        assert all(a[1] < b[1] for a, b in zip(packets, packets[1:]))
        if sound:
            a = c.streams.audio[0]
            audio = [p for p in demuxed if p.stream.type == "audio"]
            assert all(p.dts < q.dts for p, q in zip(audio, audio[1:]))
            length = float((audio[-1].pts + audio[-1].duration) * a.time_base)
            assert abs(length - end) < 0.1, (length, end)
            samples = sum(f.samples for p in audio for f in a.codec_context.decode(p))
            assert abs(samples / a.codec_context.sample_rate - end) < 0.1
        else:
            assert not c.streams.audio
    errors = [line for line in [*logs, *more] if line[0] <= av.logging.ERROR]
    assert errors == []


def test_a_webm_with_sound_has_its_opus_timed_in_order(parts, talk, tmp_path):
    """Bug: the header was written with the first packet, a sound one: the Opus encoder's first
    frames were timed in 1/48000 s and the rest in WebM's 1/1000 s, their times went back, and
    every .webm output of --ray with sound failed ("non monotonically increasing dts to muxer
    in stream 1: 34 >= 33"), one part or more."""
    for mode in ("rgb", "rgba"):
        out = join_video(parts(".webm", mode, 1), tmp_path / f"{mode}.webm", mode=mode, audio_from=talk,
                         overwrite=False, warnings=[])
        check_joined(out, talk, sound=True)
        with av.open(str(out)) as c:
            assert c.streams.audio[0].codec_context.name == "opus"


def test_matroska_parts_of_h264_with_b_frames_join_with_decode_times_in_order(parts, talk, tmp_path):
    """Bug: a Matroska part's first packets carry no decode time (dts); FFmpeg's muxer guessed
    them from the first part's times, went back at the second part ("non monotonically
    increasing dts to muxer in stream 0: 900 >= 0"), and --ray to .mkv failed once the file was
    cut into parts."""
    three = parts(".mkv", "rgb", 3)
    with av.open(str(three[1])) as c:  # the parts are what the bug met: packets without a dts
        assert any(p.dts is None for p in c.demux(video=0) if p.size)
    for sound in (False, True):
        out = join_video(three, tmp_path / f"{sound}.mkv", mode="rgb", audio_from=talk if sound else None,
                         overwrite=False, warnings=[])
        check_joined(out, talk, sound=sound)


@pytest.mark.parametrize("mode", ["rgba", "rgb"])
def test_prores_keeps_the_parts_tag_and_profile(parts, talk, tmp_path, mode):
    """Bug: the codec tag was reset on the joined stream and the mov muxer tagged ProRes 4444
    (``ap4h``, --alpha) as 422 HQ (``apch``): it decoded as yuva444p10le, not yuva444p12le as a
    local run's file does."""
    two = parts(".mov", mode, 2)
    out = join_video(two, tmp_path / "out.mov", mode=mode, audio_from=talk, overwrite=False, warnings=[])

    def coding(path):
        with av.open(str(path)) as c:
            cc = c.streams.video[0].codec_context
            return cc.codec_tag, cc.profile, cc.pix_fmt

    assert coding(out) == coding(two[0]) == {"rgba": ("ap4h", "4444", "yuva444p12le"),
                                             "rgb": ("apch", "HQ", "yuv422p10le")}[mode]


def test_a_webm_with_alpha_says_so_as_its_parts_do(parts, talk, tmp_path):
    """The joined stream did not state its alpha (Matroska's AlphaMode, which the muxer writes for
    the encoder's yuva420p and not for a copied stream): browsers then show no transparency."""
    two = parts(".webm", "rgba", 2)
    out = join_video(two, tmp_path / "out.webm", mode="rgba", audio_from=None, overwrite=False, warnings=[])
    for path in (two[0], out):
        with av.open(str(path)) as c:
            assert c.streams.video[0].metadata.get("alpha_mode") == "1", path
    whole = read_alpha_video(out)
    assert len(whole) == N
    assert np.array_equal(np.stack(whole), np.stack(read_alpha_video(two[0]) + read_alpha_video(two[1])))


@pytest.mark.parametrize("suffix,mode", [(".mp4", "rgb"), (".mkv", "rgb"), (".mov", "rgb"), (".mov", "rgba"),
                                         (".webm", "rgb"), (".webm", "rgba")])
@pytest.mark.parametrize("sound", [True, False], ids=["sound", "silent"])
def test_three_parts_join_whole_in_every_format(parts, talk, tmp_path, suffix, mode, sound):
    three = parts(suffix, mode, 3)
    out = join_video(three, tmp_path / f"out{suffix}", mode=mode, audio_from=talk if sound else None,
                     overwrite=False, warnings=[])
    check_joined(out, talk, sound=sound)
    with av.open(str(out)) as c, av.open(str(three[0])) as first:
        assert bytes(c.streams.video[0].codec_context.extradata or b"") == bytes(
            first.streams.video[0].codec_context.extradata or b"")
