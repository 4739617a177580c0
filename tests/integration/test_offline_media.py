"""vbg.media on real files the tests make with PyAV: probe, decode with
original pts, and write every output format (timing, rotation, audio, alpha,
partial files)."""

from __future__ import annotations

import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import read_alpha_video
from vbg.errors import ConfigError, InputError, OutputError
from vbg.fsutil import partial_name as partial_path_for
from vbg.media.info import VideoInfo, probe
from vbg.media.reader import VideoReader
from vbg.media.writer import VideoWriter

W, H, FPS, N = 161, 97, 30, 24  # odd size on purpose
RATE = 48000
ONSET_S = 0.3  # the tone starts here (silence before): a mark to check A/V sync with


# ---------------------------------------------------------------------------- media the tests make
def pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """RGB frame i: smooth gradients plus a bright square that moves, easy to compress and compare."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, (i * 9) % 256)], -1)
    rgb = rgb.astype(np.uint8)
    x0 = (i * 5) % max(w - 20, 1)
    rgb[10:30, x0:x0 + 20] = (250, 250, 40)
    return rgb


def alpha_pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """RGBA frame i: the pattern with an alpha ramp and a transparent hole."""
    a = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    a[h // 3: 2 * h // 3, w // 3: w // 3 + 30] = 0
    a[:, :10] = 255
    return np.dstack([pattern(i, w, h), np.roll(a, i, axis=1)])


def make_clip(path: Path, *, pts: list[int] | None = None, time_base: Fraction = Fraction(1, FPS),
              size: tuple[int, int] = (W, H), audio: bool = True, rotation: int = 0) -> Path:
    """H.264 (yuv444p, so odd sizes work) with an optional 440 Hz AAC 48 kHz stereo tone as long as the video."""
    w, h = size
    pts = list(range(N)) if pts is None else pts
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = w, h, "yuv444p"
        v.time_base = v.codec_context.time_base = time_base
        v.options = {"preset": "ultrafast", "crf": "10"}
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=RATE, layout="stereo") if audio else None
        frame_s = 1 / FPS
        end_s = float(pts[-1] * time_base) + frame_s
        sample = 0
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            f.pts, f.time_base = p, time_base
            f.duration = round(frame_s / time_base)
            out.mux(v.encode(f))
            t_next = end_s if i == len(pts) - 1 else float(pts[i + 1] * time_base)
            while a is not None and sample < round(t_next * RATE):
                n = min(1024, round(end_s * RATE) - sample)
                if n <= 0:
                    break
                t = (sample + np.arange(n)) / RATE
                tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (t >= ONSET_S)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = RATE, sample, Fraction(1, RATE)
                out.mux(a.encode(af))
                sample += n
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return path


def make_png_mov(path: Path, n: int = 8) -> Path:
    """QuickTime with PNG frames (a codec that refuses damaged data instead of concealing it)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("png", rate=FPS)
        v.width, v.height, v.pix_fmt = 64, 48, "rgb24"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def packets(path: Path, kind: str, index: int = 0) -> list[av.Packet]:
    with av.open(str(path)) as c:
        streams = getattr(c.streams, kind)
        if not streams:
            return []
        return [p for p in c.demux(streams[index]) if p.size]


def span_s(path: Path, kind: str, index: int = 0) -> float:
    """Seconds from the first packet's start to the last packet's end (``index``: which stream of ``kind``)."""
    ps = packets(path, kind, index)
    start = min(p.pts for p in ps) * ps[0].time_base
    end = max((p.pts + p.duration) * p.time_base for p in ps)
    return float(end - start)


def frame_pts_s(path: Path) -> list[float]:
    """Frame times relative to the first frame (muxers may shift a whole file to avoid negative times)."""
    with av.open(str(path)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    return [t - times[0] for t in times]


def tone_onset_s(path: Path) -> float:
    """When the tone is heard, relative to the first video frame (what a player syncs)."""
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
        video_s = float(first.pts * first.time_base)
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])
    loud = int(np.argmax(np.abs(samples) > 0.15))
    return float(frames[0].pts * frames[0].time_base) + loud / frames[0].sample_rate - video_s


def copy_frames(src: Path, dst: Path, *, mode: str = "rgb", audio: bool = True, **kw) -> VideoWriter:
    """The pipeline in miniature: decode src, write each frame (as ``mode``) to dst."""
    info = probe(src)
    with VideoReader(src) as reader, VideoWriter(dst, info, mode=mode, audio_from=src if audio else None,
                                                 **kw) as writer:
        for fr in reader:
            image = {"rgb": fr.rgb, "rgba": np.dstack([fr.rgb, alpha_pattern(fr.index, info.width,
                                                                              info.height)[..., 3]]),
                     "matte": fr.rgb[..., 1]}[mode]
            writer.write(fr.index, fr.pts, fr.time_s, image)
    return writer


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    vfr_pts = [0, 3000, 6000, 12000, 13500, 15000, 24000, 27000, 30000, 45000, 48000, 51000]
    clips = {
        "tone": make_clip(d / "tone.mp4"),
        "vfr": make_clip(d / "vfr.mp4", pts=vfr_pts, time_base=Fraction(1, 90000), audio=False),
        "rotated": make_clip(d / "rotated.mp4", rotation=90, size=(64, 48), audio=False),
        "silent": make_clip(d / "silent.mkv", audio=False),
    }
    data = clips["tone"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov is at the end: lost
    (d / "notes.txt").write_text("not a video\n" * 50)
    clips["truncated"] = d / "truncated.mp4"
    clips["text"] = d / "notes.txt"
    clips["vfr_pts"] = vfr_pts  # type: ignore[assignment]
    return clips


# ---------------------------------------------------------------------------- probe and reader
def test_probe_reports_the_clip(clips):
    info = probe(clips["tone"])
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.frames == N
    assert info.duration_s == pytest.approx(N / FPS, abs=1 / FPS)
    assert info.rotation == 0
    assert info.has_audio and info.audio_codec == "aac"
    assert info.pix_fmt == "yuv444p" and not info.has_alpha
    assert info.codec == "h264"
    assert info.time_base * FPS * round(1 / (info.time_base * FPS)) == 1  # a multiple of 1/fps


def test_probe_rotation_and_missing_fields(clips):
    assert probe(clips["rotated"]).rotation == 90
    silent = probe(clips["silent"])
    assert not silent.has_audio and silent.audio_codec is None
    assert silent.frames is None  # Matroska keeps no frame count
    assert silent.duration_s == pytest.approx(N / FPS, abs=1 / FPS)


@pytest.mark.parametrize("name", ["truncated", "text"])
def test_unreadable_inputs_raise_input_error(clips, name):
    with pytest.raises(InputError) as err:
        probe(clips[name])
    assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        VideoReader(clips[name])


def test_missing_file_and_audio_only_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=RATE)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate = RATE
        out.mux(a.encode(f))
        out.mux(a.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        probe(audio_only)


def test_reader_yields_every_frame_with_original_pts(clips):
    with av.open(str(clips["vfr"])) as c:
        truth = [f.pts for f in c.decode(video=0)]
    info = probe(clips["vfr"])
    with VideoReader(clips["vfr"]) as reader:
        frames = list(reader)
    assert [f.pts for f in frames] == truth
    assert [f.index for f in frames] == list(range(len(truth)))
    assert len(frames) == len(clips["vfr_pts"])
    assert frames[3].time_s == pytest.approx(float(truth[3] * info.time_base))
    assert frames[0].rgb.shape == (H, W, 3) and frames[0].rgb.dtype == np.uint8
    assert np.abs(frames[5].rgb.astype(int) - pattern(5)).mean() < 3


PATCHES = [(200, 40, 40), (40, 160, 60), (50, 60, 200), (230, 200, 60)]


def _untagged_clip(path: Path, w: int, h: int, matrix: str) -> Path:
    """Two frames of colour patches coded with ``matrix``'s YUV, losslessly, and no colour tags (as
    many screen recorders and encoders write)."""
    rgb = np.full((h, w, 3), 128, np.uint8)
    for k, c in enumerate(PATCHES):
        rgb[20 + k * 60:70 + k * 60, 20:120] = c
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt, v.options = w, h, "yuv420p", {"crf": "0", "preset": "ultrafast"}
        for i in range(2):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=matrix)
            f.colorspace, f.pts = 2, i  # unspecified
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with av.open(str(path)) as c:
        assert next(c.decode(video=0)).colorspace == 2
    return path


@pytest.mark.parametrize("size, matrix", [((1280, 720), "ITU709"), ((640, 360), "ITU601")])
def test_an_untagged_clip_has_the_colours_a_player_shows(tmp_path, size, matrix):
    """A clip that does not say which matrix its YUV was made with is read as players (mpv,
    browsers, VLC) read it: BT.709 when it is HD, BT.601 when not, so ``vbg process``'s output shows
    the colours the input showed. An untagged HD clip came out with its reds dulled and its greens
    brighter (200,40,40 -> 185,23,41): FFmpeg's converter takes BT.601 for every size. (Read as
    vbg process reads it: an --alpha output kept the frame's RGB, but keeps nothing where no
    person is since the person's own colour is estimated.)"""
    src = _untagged_clip(tmp_path / "in.mp4", *size, matrix)
    with VideoReader(src) as reader:
        first = next(iter(reader)).rgb
    for k, c in enumerate(PATCHES):
        got = first[30 + k * 60:60 + k * 60, 30:110].reshape(-1, 3).mean(0)
        assert np.abs(got - c).max() <= 4, (c, got)


def test_decode_error_mid_file_says_how_many_frames_were_read(tmp_path):
    path = make_png_mov(tmp_path / "png.mov")
    data = bytearray(path.read_bytes())
    sig = b"\x89PNG\r\n\x1a\n"
    starts = [i for i in range(len(data)) if data.startswith(sig, i)]
    assert len(starts) == 8
    data[starts[5]: starts[5] + 8] = b"garbage!"
    path.write_bytes(bytes(data))
    with VideoReader(path) as reader, pytest.raises(InputError, match="after 5 frames") as err:
        for _ in reader:
            pass
    assert reader.frames_read == 5
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- writer round trips
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".webm"])
def test_round_trip_keeps_count_duration_and_audio(clips, tmp_path, suffix):
    src = clips["tone"]
    dst = tmp_path / f"out{suffix}"
    writer = copy_frames(src, dst, quality="fast")
    assert writer.output_path == dst and dst.is_file()
    assert not list(tmp_path.glob(".*"))  # no temporary left
    out = probe(dst)
    assert writer.frames_written == N
    with VideoReader(dst) as r:
        frames = list(r)
    assert len(frames) == N
    # H.264 pads odd sizes by one pixel, ProRes 422 an odd width; VP9 keeps the size.
    expected = {".mp4": (W + 1, H + 1), ".mkv": (W + 1, H + 1), ".mov": (W + 1, H), ".webm": (W, H)}[suffix]
    assert (out.width, out.height) == expected == writer.frame_size
    error = np.abs(frames[7].rgb.astype(int)[:H, :W] - pattern(7))
    assert error.mean() < 3 and error[:, -3:].mean() < 4  # no garbled edge columns
    if out.width > W:
        assert np.abs(frames[7].rgb[:H, W].astype(int) - pattern(7)[:, -1]).mean() < 3  # edge repeated
    assert span_s(dst, "video") == pytest.approx(span_s(src, "video"), abs=1 / FPS)
    assert frame_pts_s(dst) == pytest.approx(frame_pts_s(src), abs=1e-3)
    # Audio: same length within one video frame, and in sync (same start relative to the video).
    assert out.has_audio
    assert span_s(dst, "audio") == pytest.approx(span_s(src, "audio"), abs=1 / FPS)
    assert tone_onset_s(src) == pytest.approx(ONSET_S, abs=0.002)
    assert tone_onset_s(dst) == pytest.approx(ONSET_S, abs=0.002)
    a_src, a_dst = packets(src, "audio"), packets(dst, "audio")
    if suffix == ".webm":
        assert out.audio_codec == "opus" and writer.warnings
    else:  # copied byte for byte (Matroska leaves out the AAC priming packet before 0: see the next test)
        assert out.audio_codec == "aac"
        kept = [p for p in a_src if p.pts >= 0] if suffix == ".mkv" else a_src
        assert len(a_src) - len(kept) <= 1 and [bytes(p) for p in a_dst] == [bytes(p) for p in kept]


def test_vfr_timing_and_rotation_survive(clips, tmp_path):
    for suffix in (".mp4", ".webm"):
        dst = tmp_path / f"vfr{suffix}"
        copy_frames(clips["vfr"], dst)
        assert frame_pts_s(dst) == pytest.approx(frame_pts_s(clips["vfr"]), abs=1e-3)
    for suffix in (".mp4", ".mov", ".mkv", ".webm"):
        dst = tmp_path / f"rot{suffix}"
        copy_frames(clips["rotated"], dst)
        out = probe(dst)
        assert out.rotation == 90, suffix
        assert (out.width, out.height) == (64, 48)  # pixels not rotated


@pytest.mark.parametrize("suffix,tolerance", [(".mov", 3), (".webm", 8)])
def test_rgba_alpha_reads_back(clips, tmp_path, suffix, tolerance):
    info = probe(clips["silent"])
    dst = tmp_path / f"alpha{suffix}"
    written = [alpha_pattern(i) for i in range(6)]
    with VideoWriter(dst, info, mode="rgba") as writer:
        for i, rgba in enumerate(written):
            writer.write(i, i, i / FPS, rgba)
    assert probe(dst).has_alpha
    back = read_alpha_video(dst)
    assert len(back) == len(written)
    for got, want in zip(back, written, strict=True):
        assert got.shape == want.shape
        assert np.abs(got[..., 3].astype(int) - want[..., 3]).mean() < tolerance
        opaque = want[..., 3] == 255
        assert np.abs(got[..., :3].astype(int) - want[..., :3])[opaque].mean() < 2 * tolerance


def test_png_folder_rgba_and_matte(clips, tmp_path):
    info = probe(clips["tone"])
    folder = tmp_path / "frames"
    with VideoWriter(folder, info, mode="rgba", audio_from=clips["tone"]) as writer:
        for i in range(3):
            writer.write(i, i, i / FPS, alpha_pattern(i))
    assert writer.output_path == folder
    assert any("no audio" in w for w in writer.warnings)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame_000001.png", "frame_000002.png", "frame_000003.png"]
    back = cv2.cvtColor(cv2.imread(str(folder / "frame_000002.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert np.array_equal(back, alpha_pattern(1))

    existing = tmp_path / "mattes.d"  # an existing folder with a suffix: a sequence when asked for
    existing.mkdir()
    with VideoWriter(existing, info, mode="matte", sequence=True) as writer:
        writer.write(0, 0, 0.0, pattern(0)[..., 0])
    grey = cv2.imread(str(existing / "frame_000001.png"), cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2 and np.array_equal(grey, pattern(0)[..., 0])


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_matte_mode_writes_grey_video(clips, tmp_path, suffix):
    dst = tmp_path / f"matte{suffix}"
    copy_frames(clips["silent"], dst, mode="matte", audio=False)
    with VideoReader(dst) as r:
        frames = list(r)
    assert len(frames) == N
    rgb = frames[4].rgb[:H, :W].astype(int)
    want = pattern(4)[..., 1]
    assert np.abs(rgb[..., 0] - want).mean() < 4
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() <= 3  # grey


@pytest.mark.parametrize("suffix,ends", [(".mp4", (16, 235)), (".mov", (64, 940)), (".webm", (16, 235))])
def test_a_matte_s_person_and_background_are_the_codec_s_white_and_black(clips, tmp_path, suffix, ends):
    """A matte's sure person and sure background stored at the limited range's ends, as an editor
    reads a luma matte: ProRes's person was 937 of 940 (99.7%: the layer behind showed through
    the whole person). ProRes's frame headers carry the file's colour tags (they said primaries
    and transfer unspecified)."""
    info = probe(clips["silent"])
    half = np.zeros((info.height, info.width), np.uint8)
    half[:, : info.width // 2] = 255
    dst = tmp_path / f"matte{suffix}"
    with VideoWriter(dst, info, mode="matte") as writer:
        for i in range(3):
            writer.write(i, i, i / FPS, half)
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
    bits = np.uint16 if "10" in frame.format.name else np.uint8
    plane = frame.planes[0]
    y = np.frombuffer(plane, bits).reshape(-1, plane.line_size // np.dtype(bits).itemsize)[:info.height, :info.width]
    w = info.width
    assert (int(np.median(y[:, 4: w // 2 - 4])), int(np.median(y[:, w // 2 + 4: -4]))) == (ends[1], ends[0])
    if suffix == ".mov":
        assert (frame.color_primaries, frame.color_trc, frame.colorspace) == (1, 1, 6)


# ---------------------------------------------------------------------------- refusals and failures
def test_refusals(clips, tmp_path):
    info = probe(clips["silent"])
    with pytest.raises(OutputError, match="H.264 has no alpha: use .mov, .webm or a folder"):
        VideoWriter(tmp_path / "a.mp4", info, mode="rgba")
    with pytest.raises(OutputError, match=r"\.avi"):
        VideoWriter(tmp_path / "a.avi", info, mode="rgb")
    with pytest.raises(ConfigError, match="mode"):
        VideoWriter(tmp_path / "a.mp4", info, mode="bgr")
    with pytest.raises(ConfigError, match="quality"):
        VideoWriter(tmp_path / "a.mp4", info, mode="rgb", quality="ultra")
    assert not list(tmp_path.iterdir())
    with VideoWriter(tmp_path / "a.mp4", info, mode="rgb") as writer:
        with pytest.raises(ValueError, match=r"\(97, 161, 3\)"):
            writer.write(0, 0, 0.0, np.zeros((H, W, 4), np.uint8))
        with pytest.raises(TypeError, match="uint8"):
            writer.write(0, 0, 0.0, np.zeros((H, W, 3), np.float32))
        writer.write(0, 0, 0.0, pattern(0))
    with pytest.raises(ValueError, match="closed"):
        writer.write(1, 1, 1 / FPS, pattern(1))


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder the test process cannot write to (root ignores permissions: /proc then)."""
    if os.geteuid() == 0:
        if not Path("/proc/self").is_dir():
            pytest.skip("running as root without /proc: no unwritable folder to test with")
        yield Path("/proc")
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    yield locked
    locked.chmod(0o700)


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "frames"])
def test_unwritable_output_folder(clips, unwritable_folder, name):
    with pytest.raises(OutputError, match="cannot write there") as err:
        VideoWriter(unwritable_folder / name, probe(clips["tone"]), mode="rgb", audio_from=clips["tone"])
    assert "\n" not in str(err.value)


def test_output_in_a_regular_file_path_is_refused(clips, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        VideoWriter(blocker / "out.mp4", probe(clips["silent"]), mode="rgb")


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_exception_inside_with_keeps_a_playable_partial_file(clips, tmp_path, suffix):
    dst = tmp_path / f"out{suffix}"
    src = clips["tone"]
    info = probe(src)
    with (pytest.raises(KeyboardInterrupt), VideoReader(src) as reader,
          VideoWriter(dst, info, mode="rgb", audio_from=src) as writer):
        for fr in reader:
            if fr.index == 10:
                raise KeyboardInterrupt  # Ctrl-C after 10 frames
            writer.write(fr.index, fr.pts, fr.time_s, fr.rgb)
    partial = partial_path_for(dst)
    assert partial == tmp_path / f"out.partial{suffix}"
    assert writer.output_path == writer.partial_path == partial and writer.partial
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial.name]  # no hidden temp left
    with VideoReader(partial) as r:
        assert len(list(r)) == 10
    assert probe(partial).has_audio
    assert span_s(partial, "audio") < 10 / FPS + 0.6  # audio stops near the last frame
    assert writer.abort() == partial and writer.close() == partial  # idempotent


def test_close_without_frames_leaves_nothing(clips, tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", probe(clips["silent"]), mode="rgb")
    with pytest.raises(OutputError, match="no frames"):
        writer.close()
    assert not list(tmp_path.iterdir())
    writer2 = VideoWriter(tmp_path / "out.mov", probe(clips["silent"]), mode="rgb")
    assert writer2.abort() is None
    assert not list(tmp_path.iterdir())


def test_pts_that_do_not_increase_are_moved_forward(clips, tmp_path):
    info = replace(probe(clips["silent"]), time_base=Fraction(1, 1000))
    dst = tmp_path / "dup.mkv"
    with VideoWriter(dst, info, mode="rgb") as writer:
        for i, p in enumerate([0, 40, 40, 30, None]):
            writer.write(i, p, 0.2, pattern(i))
    assert frame_pts_s(dst) == pytest.approx([0, 0.040, 0.041, 0.042, 0.2])


def test_videoinfo_is_frozen(clips):
    info = probe(clips["silent"])
    assert isinstance(info, VideoInfo)
    with pytest.raises(AttributeError):
        info.width = 3  # type: ignore[misc]


def make_trimmed_clip(path: Path, hidden_s: float, *, audio: str = "aac") -> Path:
    """An MP4 cut as ``ffmpeg -ss`` with ``-c copy``, editors and phones cut one: its first
    ``hidden_s`` still stored, hidden by an edit list (times below 0). The tone starts at
    ONSET_S of what is shown; the hidden part has a tone of its own (a click before the cut)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv444p"
        v.time_base = v.codec_context.time_base = Fraction(1, FPS)
        v.options = {"preset": "ultrafast", "bf": "0"}
        a = out.add_stream(audio, rate=RATE, layout="stereo")
        a.time_base = Fraction(1, RATE)
        first = -round(hidden_s * FPS)
        for i in range(first, N):
            f = av.VideoFrame.from_ndarray(pattern(i - first), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        size = a.codec_context.frame_size or 1024
        for start in range(-round(hidden_s * RATE), round(N / FPS * RATE), size):
            t = (start + np.arange(size)) / RATE
            heard = (t >= ONSET_S) | (t < -0.1)  # the cut-away sound is loud too
            tone = (0.3 * np.sin(2 * np.pi * 440 * t) * heard).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = RATE, start, Fraction(1, RATE)
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


def first_frame_s(path: Path) -> float:
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
        return float(first.pts * first.time_base)


def heard_s(path: Path) -> tuple[float, float]:
    """Where the decoded sound starts and ends, s (what a player plays: hidden samples are not)."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    return (float(frames[0].pts * frames[0].time_base),
            float(frames[-1].pts * frames[-1].time_base) + frames[-1].samples / frames[-1].sample_rate)


@pytest.mark.parametrize("suffix,hidden_s,audio", [
    *((suffix, hidden_s, "aac") for suffix in (".mkv", ".mp4", ".mov", ".webm") for hidden_s in (0.0, 0.5)),
    (".mkv", 0.5, "libopus"), (".mkv", 0.5, "libmp3lame")])
def test_a_cut_mp4_s_hidden_start_stays_hidden_and_the_picture_keeps_its_times(tmp_path, suffix, hidden_s, audio):
    """A trimmed MP4 (its first 0.5 s stored but hidden by an edit list), and a plain one whose
    AAC starts with its encoder's priming packet (21 ms before 0): into Matroska, whose times
    cannot go below 0, the copied sound's hidden packets moved the whole file later (every
    frame 0.5 s late, the cut-away sound played over no picture; 21 ms for every MP4 with AAC).
    The picture starts at 0 as it did, the sound is heard where it was and is no longer. (Opus
    keeps its pre-skip in Matroska; MP3's first packet straddles 0.)"""
    src = make_trimmed_clip(tmp_path / "cut.mp4", hidden_s, audio=audio)
    assert first_frame_s(src) == 0.0 and tone_onset_s(src) == pytest.approx(ONSET_S, abs=0.002)
    dst = tmp_path / f"out{suffix}"
    copy_frames(src, dst, quality="fast")
    assert first_frame_s(dst) == pytest.approx(0.0, abs=1e-3)
    assert heard_s(dst) == pytest.approx(heard_s(src), abs=0.03)  # (0, 0.8): not (0, 1.3)
    assert tone_onset_s(dst) == pytest.approx(ONSET_S, abs=0.002)
    if suffix != ".webm":  # (re-encoded to Opus there)
        assert [bytes(p) for p in packets(dst, "audio")][-5:] == [bytes(p) for p in packets(src, "audio")][-5:]


@pytest.mark.parametrize("name,codec,pix,opts", [
    ("in.webm", "libvpx-vp9", "yuva420p", {"crf": "10", "b": "0"}),
    ("in.mov", "prores_ks", "yuva444p10le", {"profile": "4"}),
])
def test_an_input_with_alpha_has_its_transparent_part_laid_over_black(tmp_path, name, codec, pix, opts):
    """A transparent WebM (VP9 with alpha: vbg's own --alpha output, say) given to vbg process:
    its clear part read as black, as a ProRes 4444's is and as the README says of every input
    with an alpha channel. FFmpeg's own VP9 decoder drops the alpha: the magenta stored under it
    showed. Seeking (a --ray part's start) and rewinding keep it."""
    w, h, n = 64, 48, 12
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[:, : w // 2] = (200, 40, 40, 255)  # opaque red
    rgba[:, w // 2:] = (255, 0, 255, 0)  # clear, magenta stored under it
    src = tmp_path / name
    with av.open(str(src), "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt, s.options = w, h, pix, opts
        for i in range(n):
            f = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format=pix)
            f.pts, f.time_base = i, Fraction(1, FPS)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    with VideoReader(src) as reader:
        frames = list(reader)
        assert len(frames) == n and [f.index for f in frames] == list(range(n))
        for f in frames:
            assert f.rgb[:, w // 2 + 4:].max() <= 6, f.rgb[h // 2, 3 * w // 4]  # black, not magenta
            np.testing.assert_allclose(f.rgb[:, : w // 2 - 4].reshape(-1, 3).mean(0), (200, 40, 40), atol=6)
        reader.seek(frames[6].pts)  # (from the keyframe before it on: the caller skips the ones before)
        after = list(reader)
        assert frames[6].pts in [f.pts for f in after]
        assert all(f.rgb[:, w // 2 + 4:].max() <= 6 for f in after)
        reader.rewind()
        assert next(iter(reader)).rgb[:, w // 2 + 4:].max() <= 6
