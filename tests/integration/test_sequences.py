"""vbg process on image sequences: a folder of frames or a frame_%05d.png pattern, read as a
video at --fps (vbg.media.sequence), with the same output as the video of those frames."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from conftest import iou, run_vbg
from media import person_clip_frames, read_frames, write_clip
from vbg.media.sequence import find_sequence, natural_key

N = 12


@pytest.fixture(scope="module")
def frames():
    return [f for f, _ in person_clip_frames(N, (180, 320))]


def save(folder, frames, name="frame_{}.png", start=1):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / name.format(i + start)), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def video_info(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, s.average_rate, float(c.duration / av.time_base) if c.duration else None


def test_frames_are_in_number_order_not_alphabetical():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png", "frame_100.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "Frame_3.png", "frame_10.png",
                                              "frame_100.png"]


def test_a_folder_of_frames_gives_what_the_video_of_those_frames_gives(tmp_path, frames):
    """Unpadded numbers (frame_1 .. frame_12: alphabetical order would put frame_10 second), at
    30 fps by default, one line saying so; the mattes match the video's frame for frame."""
    shots = save(tmp_path / "shots", frames)
    clip = write_clip(tmp_path / "clip.mp4", frames, crf=0)
    outs = {src: tmp_path / f"matte_{src.name}.mp4" for src in (shots, clip)}
    said = {}
    for src, out in outs.items():
        proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--matte", "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        said[src] = proc.stderr.splitlines()
    assert f"vbg: {shots}: {N} images, read as a 30 fps video (--fps sets its rate)" in said[shots]
    n, rate, _ = video_info(outs[shots])
    assert (n, rate) == (N, 30)
    got, want = read_frames(outs[shots]), read_frames(outs[clip])
    assert len(got) == len(want) == N
    assert min(iou(g[..., 0] / 255, w[..., 0] / 255) for g, w in zip(got, want)) >= 0.95


def test_a_pattern_picks_its_frames_at_the_rate_given(tmp_path, frames):
    """frame_%04d.png takes frame_0001..; a cover image beside them is not a frame; --fps 24
    makes 12 frames half a second."""
    shots = save(tmp_path / "shots", frames, "frame_{:04d}.png")
    cv2.imwrite(str(shots / "cover.png"), np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(shots / "frame_%04d.png"), "-o", str(out), "--model", "selfie", "--fps", "24",
                   "--color", "green")
    assert proc.returncode == 0, proc.stderr
    assert f"vbg: {shots / 'frame_%04d.png'}: {N} images, read as a 24 fps video" in proc.stderr.splitlines()
    n, rate, duration = video_info(out)
    assert (n, rate) == (N, 24) and duration == pytest.approx(N / 24, abs=0.05)


def test_a_batch_names_a_sequences_output_after_its_folder(tmp_path, frames):
    shots = save(tmp_path / "take1", frames[:4], "img{:03d}.jpg")
    proc = run_vbg("process", str(shots / "img%03d.jpg"), str(write_clip(tmp_path / "b.mp4", frames[:4])),
                   "-o", str(tmp_path / "out"), "--model", "selfie", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.mp4", "take1.mp4"]


def test_a_folder_of_recordings_is_a_batch_of_its_videos(tmp_path, frames):
    """``vbg process card/ -o cleaned/``: a camera card's (or an export's) videos, in number order,
    each into the -o folder with its frames; hidden files and notes are not inputs. It was "a
    folder with no images in it: give a video file"; with -o naming one file, the line says to
    pass a folder."""
    card = tmp_path / "card"
    card.mkdir()
    write_clip(card / "clip10.mp4", frames[:3])
    write_clip(card / "clip2.mov", frames[:5])
    write_clip(card / ".clip3.partial.mp4", frames[:2])
    (card / "notes.txt").write_text("take 2 is the good one")
    out = tmp_path / "cleaned"
    proc = run_vbg("process", str(card), "-o", str(out), "--model", "selfie", "--color", "green", "--quiet")
    assert proc.returncode == 0, proc.stderr
    done = [ln.split(" -> ")[0] for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if " -> " in ln]
    assert done == [str(card / "clip2.mov"), str(card / "clip10.mp4")]
    assert sorted(p.name for p in out.iterdir()) == ["clip10.mp4", "clip2.mp4"]
    assert [video_info(out / n)[0] for n in ("clip2.mp4", "clip10.mp4")] == [5, 3]
    proc = run_vbg("process", str(card), "-o", str(tmp_path / "one.mp4"), "--model", "selfie")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (f"vbg: error: -o {tmp_path / 'one.mp4'} names one file but 2 inputs were "
                                            f"given: pass a folder, such as -o {tmp_path / 'one'}")


@pytest.mark.parametrize("holds", ["photos", "dpx", "videos and images"])
def test_a_folder_without_frames_says_what_it_holds_and_what_to_do(tmp_path, frames, holds):
    """A folder of phone photos, of film scans (DPX), or of a camera's clips beside their thumbnails:
    one line naming what it holds and the command for it, before the model loads. Each was "a
    folder with no images in it" (the last: its thumbnails processed as a video, the clips left)."""
    folder = tmp_path / "card"
    folder.mkdir()
    if holds == "photos":
        for n in (1, 2):
            (folder / f"IMG_000{n}.heic").write_bytes(b"\0\0\0\x18ftypheic")
        want = f"{folder} holds HEIC photos, not video frames: for their masks or cut-outs, vbg segment {folder} -o OUT"
    elif holds == "dpx":
        for n in (1, 2, 3):
            (folder / f"scan_{n:05d}.dpx").write_bytes(b"SDPX")
        want = f"{folder} holds DPX images, which vbg does not read as frames: convert them to PNG or TIFF first, " \
               f"such as ffmpeg -i {folder / 'scan_%05d.dpx'} {folder / 'scan_%05d.png'}"
    else:
        for n in (1, 2):
            write_clip(folder / f"MVI_000{n}.MP4", frames[:2])
        save(folder, frames[:2], "MVI_{:04d}.JPG")
        want = f"{folder} holds both videos (2, such as MVI_0001.MP4) and images (2): pass the videos as " \
               f"'{folder / '*.MP4'}', or the frames as a pattern, such as {folder / 'MVI_%04d.JPG'}"
    proc = run_vbg("process", str(folder), "-o", str(tmp_path / "out"), "--model", "selfie")
    assert proc.returncode == 9, proc.stderr
    assert proc.stderr.splitlines() == [f"vbg: error: {want}"]


@pytest.mark.parametrize("case", ["two names", "two formats", "empty", "no match", "not a sequence"])
def test_what_is_no_sequence_is_one_line_before_the_model_loads(tmp_path, frames, case):
    shots = save(tmp_path / "shots", frames[:3], "frame_{:04d}.png")
    src = str(shots)
    if case == "two names":
        cv2.imwrite(str(shots / "cover.png"), frames[0])
        want = f"{shots} holds images of more than one name (frame_0001.png, cover.png): pass the frames as a " \
               f"pattern, such as {shots / 'frame_%04d.png'}"
    elif case == "two formats":
        cv2.imwrite(str(shots / "frame_0004.jpg"), frames[0])
        want = f"{shots} holds both PNG and JPEG images: pass the frames as a pattern, such as " \
               f"{shots / 'frame_%04d.png'}"
    elif case == "empty":
        src = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("x")
        want = f"{src} is a folder with no images in it: give a video file, or a folder of PNG, JPEG, TIFF, WebP " \
               "or BMP frames"
    elif case == "no match":
        src = str(shots / "frame_%05d.png")
        want = f"{src} matches no file in {shots}: check the pattern (it names frame_00001.png and on)"
    else:
        src = str(write_clip(tmp_path / "v.mp4", frames[:3]))
        want = f"--fps sets the frame rate of an image sequence, and {src} is a video with its own: drop --fps"
    extra = ["--fps", "25"] if case == "not a sequence" else []
    proc = run_vbg("process", src, "-o", str(tmp_path / "out.mp4"), "--model", "selfie", *extra)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"vbg: error: {want}"], proc.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_a_lost_frame_is_said_once_and_the_rest_are_read(tmp_path, frames):
    shots = save(tmp_path / "shots", frames, "frame_{:04d}.png")
    (shots / "frame_0005.png").unlink()
    (shots / "frame_0006.png").unlink()
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(shots), "-o", str(out), "--model", "selfie", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "missing" in ln]
    assert said == [f"vbg: {shots}: 2 frame numbers are missing (the first after frame_0004.png): the frames are "
                    "read as they come, so the video is that much shorter"], proc.stderr
    assert video_info(out)[0] == N - 2


def test_frames_of_another_size_are_scaled_to_the_first(tmp_path, frames):
    shots = save(tmp_path / "shots", frames[:4], "f{:02d}.png")
    cv2.imwrite(str(shots / "f05.png"), cv2.resize(frames[4], (640, 360)))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(shots), "-o", str(out), "--model", "selfie", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if "change size" in ln] == [
        f"vbg: {shots}: its frames change size at f05.png (640x360, the first ones 320x180): each is scaled to "
        "320x180"], proc.stderr
    assert [f.shape for f in read_frames(out)] == [(180, 320, 3)] * 5


def test_a_frame_of_another_shape_is_fitted_not_stretched(tmp_path, frames):
    """A portrait shot among landscape ones: it comes out with its shape kept, between bars, the
    person found where the fitted picture has them (it was stretched to the landscape size)."""
    shots = save(tmp_path / "shots", frames[:4], "f{:02d}.png")
    [(portrait, truth)] = person_clip_frames(1, (320, 180))
    cv2.imwrite(str(shots / "f05.png"), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(shots), "-o", str(out), "--model", "selfie", "--matte")
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if "change size" in ln] == [
        f"vbg: {shots}: its frames change size at f05.png (180x320, the first ones 320x180): each is scaled to fit "
        "320x180 with its shape kept, black bars at the sides"], proc.stderr
    mattes = [f[..., 0] / 255 for f in read_frames(out)]
    assert [m.shape for m in mattes] == [(180, 320)] * 5
    fitted = np.zeros((180, 320))
    fitted[:, 109:210] = cv2.resize(truth, (101, 180), interpolation=cv2.INTER_AREA)
    stretched = cv2.resize(truth, (320, 180), interpolation=cv2.INTER_AREA)
    assert iou(mattes[4], fitted) >= 0.8 > 0.7 > iou(mattes[4], stretched)


def test_a_damaged_frame_stops_with_its_name_and_keeps_the_frames_before(tmp_path, frames):
    shots = save(tmp_path / "shots", frames, "frame_{:04d}.png")
    data = (shots / "frame_0007.png").read_bytes()
    (shots / "frame_0007.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(shots), "-o", str(out), "--model", "selfie", "--color", "green")
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "frame_0007.png" in errors[0], proc.stderr
    kept = [p for p in tmp_path.iterdir() if p.suffix == ".mp4"]
    assert len(kept) == 1, kept
    assert 0 < video_info(kept[0])[0] <= 6  # the frames before it, in a playable file


@pytest.mark.parametrize("as_pattern", [False, True], ids=["folder", "pattern"])
def test_a_png_output_never_lands_in_the_folder_of_frames_it_reads(tmp_path, frames, as_pattern):
    """vbg's own PNG output (frame_000001.png ...) read back as input: -o that same folder is
    refused even with --overwrite, which would replace the frames while they are read."""
    shots = save(tmp_path / "shots", frames[:3], "frame_{:06d}.png")
    before = {p.name: p.read_bytes() for p in shots.iterdir()}
    src = shots / "frame_%06d.png" if as_pattern else shots
    proc = run_vbg("process", str(src), "-o", str(shots), "--overwrite", "--model", "selfie")
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"vbg: error: -o {shots} is the input {shots}: vbg would overwrite what it "
                                        "reads: choose another -o"], proc.stderr
    assert {p.name: p.read_bytes() for p in shots.iterdir()} == before


def test_ray_says_it_takes_video_files(tmp_path, frames):
    pytest.importorskip("ray")
    shots = save(tmp_path / "shots", frames[:3])
    proc = run_vbg("process", str(shots), "-o", str(tmp_path / "out.mp4"), "--model", "selfie", "--ray")
    assert proc.returncode != 0
    assert proc.stderr.splitlines()[-1] == (f"vbg: error: --ray takes video files, and {shots} is an image sequence: "
                                            "process it without --ray"), proc.stderr


def test_hidden_files_are_never_frames(tmp_path, frames):
    """An unfinished write of an earlier run (a hidden .frame_... file) is not read."""
    shots = save(tmp_path / "shots", frames[:3], "frame_{:06d}.png")
    (shots / ".frame_000004.png.tmp.png").write_bytes(b"half")
    seq = find_sequence(shots)
    assert [p.name for p in seq.files] == ["frame_000001.png", "frame_000002.png", "frame_000003.png"]


def test_a_video_whose_name_looks_like_a_pattern_is_that_video(tmp_path, frames):
    clip = write_clip(tmp_path / "intro_%d.mp4", frames[:3])
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(clip), "-o", str(out), "--model", "selfie", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    assert video_info(out)[0] == 3


def test_the_python_api_takes_a_folder_of_frames_at_its_rate(tmp_path, frames):
    import vbg

    shots = save(tmp_path / "shots", frames[:6])
    res = vbg.process_file(shots, tmp_path / "out.mp4", model="selfie", fps=12, color="green")
    assert res.frames == 6
    n, rate, duration = video_info(tmp_path / "out.mp4")
    assert (n, rate) == (6, 12) and duration == pytest.approx(0.5, abs=0.05)
