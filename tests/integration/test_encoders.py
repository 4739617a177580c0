"""--encoder auto|x264|nvenc for vbg process and the live filter's --record (issue 13, point 4).

This machine has no NVIDIA driver: PyAV's FFmpeg lists h264_nvenc, but opening it fails.
So here auto falls back to libx264 with one line saying why, an explicit nvenc is one
error line (a device error, exit 8) with no file left, and x264 probes nothing. Where
NVENC does open, those tests skip and the gpu test below checks auto picks it."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from conftest import run_vbg
from media import person_clip_frames, write_clip

from vbg.encoders import nvenc_problem

NO_NVENC = nvenc_problem()  # None where NVENC opens
needs_no_nvenc = pytest.mark.skipif(NO_NVENC is None, reason="NVENC opens here: test_auto_picks_nvenc covers it")
FRAMES = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("encoders")
    # 320x240: above NVENC's smallest frame (about 145x49), so the gpu test can use it too
    return write_clip(folder / "clip.mp4", [f for f, _ in person_clip_frames(FRAMES, (240, 320))])


def _process(clip: Path, out: Path, *flags: str, env=None) -> subprocess.CompletedProcess:
    return run_vbg("process", str(clip), "-o", str(out), "--model", "selfie", "--workers", "1", *flags, env=env)


def _live(clip: Path, out: Path, *flags: str, env=None) -> subprocess.CompletedProcess:
    return run_vbg("--source", str(clip), "--model", "selfie", "--color", "green", "--no-vcam",
                   "--frames", str(FRAMES), "--record", str(out), *flags, env=env)


def _encoding_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("vbg: encoding with ")]


def _written_by_x264(path: Path) -> int:
    """The frames of an H.264 file that libx264 wrote (its SEI names it), decoded back."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = sum(1 for _ in c.decode(stream))
    assert b"x264 - core" in path.read_bytes()  # libx264's version SEI; NVENC writes none
    return frames


def _one_nvenc_error(proc: subprocess.CompletedProcess, folder: Path) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("vbg: error: --encoder nvenc: ") and errors[0].endswith(
        ": install the NVIDIA driver (on a GPU with NVENC) or use --encoder x264"), errors[0]
    assert NO_NVENC in errors[0]  # FFmpeg's reason, e.g. "Cannot load libcuda.so.1"
    assert proc.returncode == 8, proc.stderr  # DeviceError: this machine, not the input (9)
    assert sorted(p.name for p in folder.iterdir()) == [], "a failed NVENC probe left a file"
    assert not _encoding_lines(proc.stderr)


def _probed_in_process(args: list[str]) -> tuple[int, dict]:
    """Run vbg in a fresh interpreter; its exit code and the GPUs NVENC was probed for."""
    code = ("import json, sys; from vbg import cli, encoders; rc = cli.main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'probed': list(encoders._problems)}))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    return out["rc"], {"probed": out["probed"], "stderr": proc.stderr}


# ---------------------------------------------------------------------------- vbg process
@needs_no_nvenc
def test_process_auto_falls_back_to_x264_and_says_why(clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _process(clip, out, "--encoder", "auto")
    assert proc.returncode == 0, proc.stderr
    assert _encoding_lines(proc.stderr) == [f"vbg: encoding with libx264 (no NVENC here: {NO_NVENC})"]
    assert _written_by_x264(out) == FRAMES


@needs_no_nvenc
def test_process_auto_is_the_default_and_json_stays_clean(clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _process(clip, out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(_encoding_lines(proc.stderr)) == 1  # the line goes to stderr ...
    events = [json.loads(ln) for ln in proc.stdout.splitlines()]  # ... stdout is JSON lines only
    assert events[-1]["event"] == "done" and events[-1]["frames"] == FRAMES
    assert _written_by_x264(out) == FRAMES


@needs_no_nvenc
def test_process_nvenc_where_it_does_not_open_is_one_device_error(clip, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    _one_nvenc_error(_process(clip, folder / "out.mp4", "--encoder", "nvenc"), folder)


@needs_no_nvenc
def test_process_nvenc_in_a_batch_is_refused_once_before_any_file(clip, tmp_path):
    second = tmp_path / "second.mp4"
    second.write_bytes(clip.read_bytes())
    folder = tmp_path / "out"
    folder.mkdir()
    proc = run_vbg("process", str(clip), str(second), "-o", str(folder), "--model", "selfie", "--encoder", "nvenc")
    _one_nvenc_error(proc, folder)


def test_process_x264_probes_nothing(clip, tmp_path):
    out = tmp_path / "out.mp4"
    rc, seen = _probed_in_process(["process", str(clip), "-o", str(out), "--model", "selfie", "--workers", "1",
                                   "--encoder", "x264"])
    assert rc == 0, seen["stderr"]
    assert seen["probed"] == []
    assert _encoding_lines(seen["stderr"]) == ["vbg: encoding with libx264"]
    assert _written_by_x264(out) == FRAMES


def test_process_auto_probes_once_for_a_batch(clip, tmp_path):
    second = tmp_path / "second.mp4"
    second.write_bytes(clip.read_bytes())
    rc, seen = _probed_in_process(["process", str(clip), str(second), "-o", str(tmp_path / "out"),
                                   "--model", "selfie", "--workers", "1"])
    assert rc == 0, seen["stderr"]
    assert seen["probed"] == [0]
    assert len(_encoding_lines(seen["stderr"])) == 1  # one line for the batch, not one per file


@pytest.mark.parametrize("flags,what", [(["--alpha"], "ProRes 4444"), ([], "a folder of PNG frames")])
def test_process_nvenc_for_an_output_nvenc_cannot_write_is_a_config_error(clip, tmp_path, flags, what):
    out = tmp_path / ("out.mov" if flags else "frames")
    proc = _process(clip, out, "--encoder", "nvenc", *flags)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert f"is {what}, which NVENC does not encode: write .mp4, .m4v or .mkv" in errors[0]
    assert not out.exists()


def test_process_auto_leaves_a_prores_output_alone(clip, tmp_path):
    rc, seen = _probed_in_process(["process", str(clip), "-o", str(tmp_path / "out.mov"), "--model", "selfie",
                                   "--workers", "1", "--encoder", "auto"])
    assert rc == 0, seen["stderr"]
    assert seen["probed"] == [] and not _encoding_lines(seen["stderr"])


@needs_no_nvenc
def _info(width: int, height: int):
    from vbg.media.info import VideoInfo

    return VideoInfo(width=width, height=height, fps=30.0, time_base=Fraction(1, 30), frames=None, duration_s=1.0,
                     rotation=0, has_audio=False, audio_codec=None, pix_fmt="yuv420p", has_alpha=False, codec="h264")


@needs_no_nvenc
def test_the_writers_refuse_nvenc_before_creating_a_file(tmp_path):
    """The library's own callers get the same device error, and no file either."""
    from vbg.errors import DeviceError
    from vbg.media.writer import VideoWriter
    from vbg.sinks.recorder import Recorder

    with pytest.raises(DeviceError, match="--encoder nvenc: .*use --encoder x264"):
        VideoWriter(tmp_path / "out.mp4", _info(320, 240), mode="rgb", encoder="nvenc")
    with pytest.raises(DeviceError, match="--encoder nvenc: .*use --encoder x264"):
        Recorder(tmp_path / "rec.mp4", 320, 240, 30, encoder="nvenc")
    assert list(tmp_path.iterdir()) == []
    with Recorder(tmp_path / "rec.mp4", 320, 240, 30, encoder="auto") as rec:
        assert rec.encoder.name == "libx264" and rec.encoder.why_not == NO_NVENC


SMALL_FRAMES = """
import json, sys
from fractions import Fraction
from vbg import encoders
from vbg.errors import ConfigError
from vbg.media.info import VideoInfo
from vbg.media.writer import VideoWriter
from vbg.sinks.recorder import Recorder

out = sys.argv[1]
info = VideoInfo(width=128, height=96, fps=30.0, time_base=Fraction(1, 30), frames=None, duration_s=1.0, rotation=0,
                 has_audio=False, audio_codec=None, pix_fmt="yuv420p", has_alpha=False, codec="h264")
said = []
for make in (lambda: VideoWriter(out + "/o.mp4", info, mode="rgb", encoder="nvenc"),
             lambda: Recorder(out + "/r.mp4", 128, 96, 30, encoder="nvenc")):
    try:
        make()
    except ConfigError as e:
        said.append(str(e))
import numpy as np
with VideoWriter(out + "/auto.mp4", info, mode="rgb", encoder="auto") as w:
    w.write(0, 0, 0.0, np.zeros((96, 128, 3), np.uint8))
    auto = [w.encoder_name, w.warnings]
print(json.dumps({"said": said, "auto": auto, "probed": list(encoders._problems)}))
"""


def test_frames_smaller_than_nvenc_encodes_go_to_x264_without_a_probe(tmp_path):
    """NVENC's smallest frame is 145x145: a smaller video is libx264's under auto (named as such, the GPU never
    asked), and --encoder nvenc for it is a configuration error naming the size, before any file exists. Before,
    auto would pick NVENC on a GPU machine and fail at the first frame."""
    proc = subprocess.run([sys.executable, "-c", SMALL_FRAMES, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["said"] == ["--encoder nvenc: 128x96 frames are smaller than NVENC encodes (145x145 at least): "
                           "use --encoder x264 (or leave --encoder out)"] * 2
    assert out["auto"][0] == "libx264"
    assert out["auto"][1] == ["encoding with libx264 (128x96 frames are smaller than NVENC encodes (145x145 at least))"]
    assert out["probed"] == []  # the size alone decided
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.mp4"]


def _nvenc_option_sets():
    from vbg.media.encode import NVENC_OPTIONS
    from vbg.sinks.recorder import NVENC_PRESETS

    live = [{"preset": p, "tune": "ll", "rc": "vbr", "cq": "20", "b": "0"} for p in sorted(set(NVENC_PRESETS.values()))]
    return [pytest.param({**o, "gpu": "0"}, id=q) for q, o in NVENC_OPTIONS.items()] + [
        pytest.param({**o, "gpu": "0"}, id=f"record-{o['preset']}") for o in live]


@pytest.mark.parametrize("options", _nvenc_option_sets())
def test_ffmpeg_takes_every_nvenc_option_value_vbg_sets(options):
    """FFmpeg parses the options before it loads the driver: a value it does not know is
    EINVAL (av.ArgumentError) here too, where opening then fails for want of a driver."""
    from fractions import Fraction as F

    cc = av.CodecContext.create("h264_nvenc", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = 320, 240, "yuv420p", F(1, 30)
    cc.options = dict(options)
    try:
        cc.open()
    except av.FFmpegError as e:
        assert not isinstance(e, av.ArgumentError), e
        assert NO_NVENC is not None, e  # where NVENC opens, these options must open it too


# ---------------------------------------------------------------------------- live --record
@needs_no_nvenc
def test_record_auto_falls_back_to_x264_and_says_why(clip, tmp_path):
    out = tmp_path / "rec.mp4"
    proc = _live(clip, out, "--encoder", "auto")
    assert proc.returncode == 0, proc.stderr
    assert _encoding_lines(proc.stderr) == [f"vbg: encoding with libx264 (no NVENC here: {NO_NVENC})"]
    assert _written_by_x264(out) >= 1  # live may drop camera frames; what it showed is recorded


@needs_no_nvenc
def test_record_nvenc_where_it_does_not_open_is_one_device_error(clip, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    _one_nvenc_error(_live(clip, folder / "rec.mp4", "--encoder", "nvenc"), folder)


@needs_no_nvenc
def test_record_nvenc_from_the_config_file_too(clip, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    config = tmp_path / "vbg.toml"
    config.write_text('[output]\nencoder = "nvenc"\n')
    _one_nvenc_error(_live(clip, folder / "rec.mp4", "--config", str(config)), folder)


def test_record_x264_probes_nothing(clip, tmp_path):
    out = tmp_path / "rec.mp4"
    rc, seen = _probed_in_process(["--source", str(clip), "--model", "selfie", "--color", "green", "--no-vcam",
                                   "--frames", str(FRAMES), "--record", str(out), "--encoder", "x264"])
    assert rc == 0, seen["stderr"]
    assert seen["probed"] == []
    assert _encoding_lines(seen["stderr"]) == ["vbg: encoding with libx264"]
    assert _written_by_x264(out) >= 1


def test_an_unknown_encoder_in_the_config_file_is_one_line(clip, tmp_path):
    config = tmp_path / "vbg.toml"
    config.write_text('[output]\nencoder = "gpu"\n')
    proc = _live(clip, tmp_path / "rec.mp4", "--config", str(config))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    # named with the file and the key, as every setting with choices is (it said "encoder 'gpu'")
    assert proc.returncode == 2 and errors == [f"vbg: error: --config {config}: [output] encoder = 'gpu' is not known: "
                                               "use auto, x264 or nvenc"], proc.stderr
    assert not (tmp_path / "rec.mp4").exists()


# ---------------------------------------------------------------------------- on an NVIDIA GPU
def _nvidia_gpu_here() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


# FFmpeg's words when the GPU has no encoder unit (H100/H200, A100 and other compute GPUs).
_NO_ENCODER_UNIT = ("no encode device", "unsupported device", "No NVENC capable devices", "does not support NVENC")


@pytest.mark.gpu
def test_auto_picks_nvenc_on_an_nvidia_gpu_and_the_output_decodes(clip, tmp_path):
    if not _nvidia_gpu_here():
        pytest.skip("no NVIDIA driver here (libcuda.so.1 does not load)")
    if NO_NVENC is not None and any(s in NO_NVENC for s in _NO_ENCODER_UNIT):
        pytest.skip(f"this GPU has no NVENC unit: {NO_NVENC}")
    out, rec = tmp_path / "out.mp4", tmp_path / "rec.mp4"
    proc = _process(clip, out)
    assert proc.returncode == 0, proc.stderr
    assert _encoding_lines(proc.stderr) == ["vbg: encoding with h264_nvenc (GPU 0)"]
    live = _live(clip, rec)
    assert live.returncode == 0, live.stderr
    assert _encoding_lines(live.stderr) == ["vbg: encoding with h264_nvenc (GPU 0)"]
    for path, least in ((out, FRAMES), (rec, 1)):
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in c.decode(video=0)) >= least
        assert b"x264 - core" not in path.read_bytes()
