"""`vbg process` end to end, as a user runs it: every frame, audio kept, alpha outputs,
progress for people and for scripts, and nothing lost on bad input or Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import PEOPLE, StderrLines, iou, progress_shows_frames, run_vbg
from media import (damage_ts, interlace, person_clip_frames, write_dv_clip, read_alpha_video, read_frames, write_clip, write_hdr_clip,
                   write_size_switch_clip)
from test_offline_media import FPS, frame_pts_s, make_clip, span_s
from vbg.media.info import probe


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("process")
    frames, alphas = zip(*person_clip_frames(45, (360, 640)))
    vfr = [0, 3000, 6000, 12000, 13500, 15000, 24000, 27000, 30000, 45000, 48000, 51000]
    return {
        "tone": make_clip(d / "tone.mp4"),  # 161x97 (odd), 24 frames, AAC tone
        "vfr": make_clip(d / "vfr.mp4", pts=vfr, time_base=Fraction(1, 90000), audio=False),
        "rotated": make_clip(d / "rotated.mp4", rotation=90, size=(64, 48), audio=False),
        "person": write_clip(d / "person.mp4", frames, fps=30),
        "person_alpha": np.stack(alphas),
        "vfr_pts": vfr,
        "dir": d,
    }


def _frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_mp4_keeps_every_frame_and_the_audio(clips, tmp_path):
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(clips["tone"]), "-o", str(out), "--model", "selfie", "--color", "#00ff00")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == _frames(clips["tone"]) == 24
    info = probe(out)
    assert info.has_audio
    assert abs(span_s(out, "audio") - span_s(clips["tone"], "audio")) <= 1 / FPS
    assert abs(span_s(out, "video") - span_s(clips["tone"], "video")) <= 1 / FPS
    assert "24 frames" in proc.stderr  # the per-file summary


@pytest.mark.parametrize("suffix", [".mov", ".webm"])
def test_alpha_output_matches_the_moving_person(clips, tmp_path, suffix):
    out = tmp_path / f"alpha{suffix}"
    proc = run_vbg("process", str(clips["person"]), "-o", str(out), "--alpha", "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    rgba = read_alpha_video(out)
    truth = clips["person_alpha"]
    assert len(rgba) == len(truth)
    scores = [iou(f[:, :, 3] / 255.0, t) for f, t in zip(rgba, truth)]
    assert np.mean(scores) >= 0.88, np.mean(scores)
    # nothing of the room under the transparency (it was all there: an app that drops the alpha
    # showed it); the codec's loss leaves a level or two
    clear = np.concatenate([f[..., :3][f[..., 3] == 0] for f in rgba])
    assert len(clear) and clear.astype(np.float32).mean() < 2.0, clear.mean(0)


def test_png_sequence_and_matte(clips, tmp_path):
    seq = tmp_path / "frames"
    proc = run_vbg("process", str(clips["person"]), "-o", str(seq), "--alpha", "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(seq.glob("*.png"))
    assert len(pngs) == 45
    import cv2

    first = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert first.shape == (360, 640, 4)
    clear = first[..., 3] == 0
    assert clear.mean() > 0.3 and not first[..., :3][clear].any()  # nothing of the room kept under it
    matte = tmp_path / "matte.mp4"
    assert run_vbg("process", str(clips["person"]), "-o", str(matte), "--matte", "--model", "selfie").returncode == 0
    assert _frames(matte) == 45


def test_mirror_threshold_and_feather_shape_the_alpha_and_the_matte(clips, tmp_path):
    """--mirror, --threshold and --feather do to an --alpha or --matte output what they do to a
    composite (they were dropped without a word): the same masks, flipped, hardened, softened.
    A background given with them is not used, and a line says so."""
    import cv2

    from vbg.compositing import threshold_lut

    def run(name, *args):
        out = tmp_path / name
        proc = run_vbg("process", str(clips["person"]), "-o", str(out), "--model", "selfie", "--workers", "1", *args)
        assert proc.returncode == 0, proc.stderr
        images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(out.glob("*.png"))]
        assert len(images) == 45
        return np.stack(images), proc.stderr

    plain, said = run("plain", "--alpha")
    assert "not used" not in said
    mirrored, said = run("mirrored", "--alpha", "--mirror", "--color", "blue")
    assert "--alpha writes the person over transparency: the background colour blue is not used" in said
    np.testing.assert_array_equal(mirrored, plain[:, :, ::-1])  # picture and alpha flipped together
    alpha = plain[..., 3]
    hard, said = run("hard", "--matte", "--threshold", "0.5", "--background", "beach")
    assert "--matte writes the mask alone: the background image beach is not used" in said
    hard = hard if hard.ndim == 3 else hard[..., 0]
    np.testing.assert_array_equal(hard, threshold_lut(0.5)[alpha])
    assert ((hard > 0) & (hard < 255)).mean() < 0.5 * ((alpha > 0) & (alpha < 255)).mean()
    soft, _ = run("soft", "--matte", "--feather", "4")
    soft = soft if soft.ndim == 3 else soft[..., 0]
    np.testing.assert_array_equal(soft, [cv2.GaussianBlur(a, (9, 9), 2.0) for a in alpha])


def test_variable_frame_rate_odd_size_and_rotation_are_kept_or_applied(clips, tmp_path):
    out = tmp_path / "vfr.mp4"
    assert run_vbg("process", str(clips["vfr"]), "-o", str(out), "--model", "selfie", "--blur").returncode == 0
    np.testing.assert_allclose(frame_pts_s(out), frame_pts_s(clips["vfr"]), atol=1e-3)
    rot = tmp_path / "rot.mp4"
    assert run_vbg("process", str(clips["rotated"]), "-o", str(rot), "--model", "selfie").returncode == 0
    assert probe(clips["rotated"]).rotation == 90
    out = probe(rot)  # turned upright, the display matrix gone (test_bad_inputs checks the pictures)
    assert (out.width, out.height, out.rotation) == (48, 64, 0)
    odd = tmp_path / "odd.webm"
    assert run_vbg("process", str(clips["tone"]), "-o", str(odd), "--model", "selfie").returncode == 0
    i = probe(odd)
    assert (i.width, i.height) == (161, 97) and i.has_audio  # AAC re-encoded to Opus for WebM


def test_a_file_s_notes_name_it_once(clips, tmp_path):
    """What vbg says about one file's output starts with that file's name, once ("vbg: in.mp4:
    in.mp4 has no audio stream" read twice)."""
    def notes(*args) -> list[str]:
        proc = run_vbg("process", *args, "--model", "selfie", "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        return [ln for ln in proc.stderr.splitlines() if ln.startswith(f"vbg: {args[0]}: ")]

    silent, tone = str(clips["rotated"]), str(clips["tone"])
    seq = tmp_path / "seq"
    said = {"mp4": notes(silent, "-o", str(tmp_path / "o.mp4")), "png": notes(silent, "-o", str(seq)),
            "webm": notes(tone, "-o", str(tmp_path / "o.webm"))}
    assert f"vbg: {silent}: has no audio stream: the output has none" in said["mp4"], said
    assert f"vbg: {silent}: the PNG folder {seq} keeps no frame timing and no audio" in said["png"], said
    assert f"vbg: {tone}: its aac audio is not kept as is in webm files: re-encoded to libopus" in said["webm"], said
    assert all(ln.count(silent if k != "webm" else tone) == 1 for k, lns in said.items() for ln in lns), said


def test_two_inputs_with_one_output_name_are_refused_naming_both(clips, tmp_path):
    """a/tone.mp4 and b/tone.mkv would both give OUT/tone.mp4: refused before anything loads or
    is written, the line naming both inputs and the output."""
    for d, suffix in (("a", ".mp4"), ("b", ".mkv")):
        (tmp_path / d).mkdir()
        (tmp_path / d / f"tone{suffix}").write_bytes(clips["tone"].read_bytes())
    a, b = tmp_path / "a/tone.mp4", tmp_path / "b/tone.mkv"
    proc = run_vbg("process", str(a), str(b), "-o", str(tmp_path / "out"), "--model", "selfie")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert f"{a} and {b} would both be written to {tmp_path / 'out' / 'tone.mp4'}" in errors[0], errors
    assert not (tmp_path / "out").exists() and "model selfie" not in proc.stderr


def test_a_quoted_tilde_is_the_home_folder_as_for_record(clips, tmp_path):
    """"~/in.mp4" -o "~/out.mp4" in quotes (or from a script) reads and writes in the home folder,
    as --source, --background and --record take "~"; it wrote a folder named "~" where vbg ran.
    The same for vbg segment."""
    import os
    import shutil

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    shutil.copy(clips["rotated"], home / "in.mp4")
    shutil.copy(PEOPLE / "example03_background01.jpg", home / "p.jpg")
    env = {**os.environ, "HOME": str(home)}
    for args in (["process", "~/in.mp4", "-o", "~/out.mp4", "--workers", "1"],
                 ["process", "~/*.mp4", "-o", "~/batch", "--workers", "1"],
                 ["segment", "~/p.jpg", "-o", "~/m.png"]):
        proc = subprocess.run([sys.executable, "-m", "vbg", *args, "--model", "selfie"], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert _frames(home / "out.mp4") == _frames(home / "batch" / "in.mp4") == _frames(clips["rotated"])
    assert (home / "m.png").is_file() and list(cwd.iterdir()) == []


def test_a_one_frame_video_gives_its_one_frame(tmp_path):
    """A clip of one frame (a photo saved as video): no neighbours to smooth over, one frame out,
    said in the singular; the person found on it."""
    frames, alphas = zip(*person_clip_frames(1, (360, 640)))
    src = write_clip(tmp_path / "one.mp4", list(frames), fps=30)
    out = tmp_path / "m.mov"
    proc = run_vbg("process", str(src), "-o", str(out), "--matte", "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"{src} -> {out}: 1 frame in " in proc.stderr, proc.stderr
    with av.open(str(out)) as c:
        mattes = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(mattes) == 1 and iou(mattes[0] / 255.0, alphas[0]) >= 0.85


def switch_mattes(tmp_path, then_hw):
    """12 frames at 640x360, then 12 at ``then_hw``, as one MPEG-TS file to ``vbg process --matte``:
    (the file, its lines about the size change, the 24 mattes, the later frames' own truth)."""
    first, _ = zip(*person_clip_frames(12, (360, 640)))
    then, then_truth = zip(*person_clip_frames(12, then_hw))
    src = write_size_switch_clip(tmp_path / "switch.ts", first, then)
    out = tmp_path / "m.mov"
    proc = run_vbg("process", str(src), "-o", str(out), "--matte", "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    with av.open(str(out)) as c:
        mattes = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(mattes) == 24 and {m.shape for m in mattes} == {(360, 640)}
    return src, [ln for ln in proc.stderr.splitlines() if "change size" in ln], mattes, then_truth


def test_a_recording_whose_frame_size_changes_part_way_is_processed_whole(tmp_path):
    """Adaptive streaming or a joined file: 640x360 frames, then 426x240. Every frame comes out
    at the first size, the person found on the later ones too, with one line saying so. It
    stopped with a traceback at the first smaller frame."""
    import cv2

    src, said, mattes, small_truth = switch_mattes(tmp_path, (240, 426))
    assert said == [f"vbg: {src}: its frames change size at frame 13 (426x240, the first ones 640x360): each is "
                    "scaled to 640x360"]
    # the later frames' person is found where their own truth, scaled to 640x360, has them
    truth = [cv2.resize(t, (640, 360), interpolation=cv2.INTER_LINEAR) for t in small_truth]
    assert min(iou(m / 255.0, t) for m, t in zip(mattes[12:], truth)) >= 0.8


def test_frames_of_another_shape_part_way_are_fitted_not_stretched(tmp_path):
    """A joined file whose second part is square (360x360 after 640x360): those frames come out
    at 640x360 with their shape kept, centred between bars that are background (alpha 0), and
    the person found where the fitted picture has them. They were stretched to 640x360, the
    person nearly twice as wide."""
    import cv2

    src, said, mattes, square_truth = switch_mattes(tmp_path, (360, 360))
    assert said == [f"vbg: {src}: its frames change size at frame 13 (360x360, the first ones 640x360): each is "
                    "scaled to fit 640x360 with its shape kept, black bars at the sides"]
    later = np.stack(mattes[12:])
    assert later[:, :, :136].max() <= 8 and later[:, :, 504:].max() <= 8  # the bars: nobody there
    truth = [np.pad(t, ((0, 0), (140, 140))) for t in square_truth]
    stretched = [cv2.resize(t, (640, 360), interpolation=cv2.INTER_LINEAR) for t in square_truth]
    assert min(iou(m / 255.0, t) for m, t in zip(later, truth)) >= 0.8
    assert max(iou(m / 255.0, t) for m, t in zip(later, stretched)) < 0.7  # what stretching gave


def comb_teeth(rgb: np.ndarray) -> float:
    """The share of pixels that stand out from both the line above and the line below in the same
    direction by more than 20 levels: the comb teeth of two fields shown as one frame."""
    y = rgb.astype(np.float32).mean(axis=2)
    return float(np.mean((y[1:-1] - y[:-2]) * (y[1:-1] - y[2:]) > 400))


def test_an_interlaced_background_video_comes_out_without_comb_teeth(tmp_path):
    """A DV or broadcast clip (interlaced: fields 1/50 s apart) as the background video: the output
    has no more comb teeth than with the same clip filmed progressive. Its fields were shown as
    stored, serrated wherever the background moved."""
    pictures = [p for p, _ in person_clip_frames(40, (180, 320), seed=5)]  # at the field rate
    talk = write_clip(tmp_path / "talk.mp4", [p for p, _ in person_clip_frames(20, (180, 320))], fps=25)
    teeth = {}
    for kind, frames in (("interlaced", interlace(pictures)), ("progressive", pictures[0::2])):
        bg = write_clip(tmp_path / f"{kind}.mp4", frames, fps=25, interlaced=kind == "interlaced")
        out = tmp_path / f"out-{kind}.mp4"
        proc = run_vbg("process", str(talk), "-o", str(out), "--background", str(bg), "--model", "selfie",
                       "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        teeth[kind] = float(np.mean([comb_teeth(f) for f in read_frames(out)]))
    assert teeth["interlaced"] <= 1.5 * teeth["progressive"] + 0.002, teeth


def test_an_interlaced_camcorder_recording_comes_out_without_comb_teeth(tmp_path):
    """A camcorder's interlaced recording (fields 1/50 s apart, bottom first as DV has it) of
    someone moving: the output has no more comb teeth than the same scene filmed progressive,
    the matte follows the person at each frame's time, and the frame count and timestamps are
    the file's own. The fields were shown as they were stored: serrated edges on whatever
    moved, in the picture and in the matte (its worst frame 0.49 IoU, now 0.83)."""
    pictures = list(person_clip_frames(40, (360, 640)))  # at the field rate
    src = write_clip(tmp_path / "camcorder.mp4", interlace(p for p, _ in pictures), fps=25, interlaced=True)
    progressive = write_clip(tmp_path / "progressive.mp4", [p for p, _ in pictures[0::2]], fps=25)
    teeth = {}
    for clip in (src, progressive):
        out = tmp_path / f"out_{clip.name}"
        proc = run_vbg("process", str(clip), "-o", str(out), "--model", "selfie", "--color", "green")
        assert proc.returncode == 0, proc.stderr
        said = [ln for ln in proc.stderr.splitlines() if "interlaced video" in ln]
        assert said == ([f"vbg: {src}: interlaced video: deinterlaced (bwdif), one frame out per frame in"]
                        if clip is src else []), proc.stderr
        teeth[clip] = np.mean([comb_teeth(f) for f in read_frames(out)])
    assert np.mean([comb_teeth(f) for f in read_frames(src)]) > 5 * teeth[progressive]  # the input has them
    assert teeth[src] <= 1.5 * teeth[progressive]
    matte = tmp_path / "matte.mov"
    proc = run_vbg("process", str(src), "-o", str(matte), "--model", "selfie", "--matte")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(matte)) as c, av.open(str(src)) as i:
        got = [(f.pts * f.time_base, f.to_ndarray(format="gray")) for f in c.decode(video=0)]
        want = [f.pts * f.time_base for f in i.decode(video=0)]
    assert [t for t, _ in got] == want and len(want) == 20
    assert min(iou(m / 255.0, a) for (_, m), (_, a) in zip(got, pictures[0::2])) >= 0.75


def test_a_recording_that_turns_interlaced_part_way_says_where_and_has_no_comb_teeth(tmp_path):
    """A broadcast recording whose programme changes from progressive to interlaced fields
    part-way: the interlaced frames are deinterlaced, and one line says from which frame on (the
    file's first frame, progressive, says nothing of it). The switch was deinterlaced unsaid."""
    from media import write_turns_interlaced_clip

    pictures = [p for p, _ in person_clip_frames(40, (360, 640))]
    src = write_turns_interlaced_clip(tmp_path / "recording.ts", pictures[:10], interlace(pictures[20:]))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "interlaced" in ln]
    assert said == [f"vbg: {src}: its frames are interlaced from frame 11 on: deinterlaced (bwdif), "
                    "one frame out per frame in"], proc.stderr
    stored, shown = read_frames(src)[10:], read_frames(out)[10:]
    assert len(shown) == 10
    assert np.mean([comb_teeth(f) for f in shown]) * 5 < np.mean([comb_teeth(f) for f in stored])


def test_a_video_whose_tags_are_not_utf8_is_processed_and_its_title_kept(tmp_path):
    """An older camera's or tool's file whose title and track name are Latin-1, not UTF-8 (as
    FFmpeg expects), as the input and as a video background: processed, the title kept with
    the letters it could not read replaced. Opening it raised UnicodeDecodeError (a traceback)."""
    src = tmp_path / "latin.mp4"
    with av.open(str(src), "w", metadata_encoding="latin-1") as out:
        out.metadata["title"] = "Café Müller"
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.metadata["handler_name"] = "Kamera Ü"
        for i, (rgb, _) in enumerate(person_clip_frames(5, (180, 320))):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--background", str(src))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(read_frames(out)) == 5
    with av.open(str(out)) as c:
        assert c.metadata["title"] == "Caf\ufffd M\ufffdller"


def test_an_audio_packet_with_a_damaged_time_is_left_out_and_the_output_finished(tmp_path):
    """A damaged recording whose one audio packet's time is garbled (a flipped bit: 31 s into a
    2 s file, as a byte-flipping search found): the output is finished and playable, every frame
    and the rest of the sound in it, and one line says what was left out. The muxer refused the
    time going back at the end, and the whole output was lost (exit 10, "check the free disk
    space")."""
    from media import write_talk_clip

    clip = write_talk_clip(tmp_path / "talk.mkv", [f for f, _ in person_clip_frames(4, (90, 160))], 20, 10, gop=5)
    with av.open(str(clip)) as c:
        audio = [(p.pos, p.dts) for p in c.demux(audio=0) if p.size]
    data = bytearray(clip.read_bytes())
    pos, _ = audio[len(audio) // 2]
    assert data[pos] == 0x82  # the Matroska block's track number (2): its 16-bit time in ms follows
    data[pos + 1] = 0x7A  # +31 s
    src = tmp_path / "damaged.mkv"
    src.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"vbg: {src}: its audio has a packet with a damaged time: left out (a short gap)" in proc.stderr
    assert len(read_frames(out)) == 20
    with av.open(str(out)) as c:
        kept = [p.dts for p in c.demux(audio=0) if p.size]
    assert len(kept) == len(audio) - 1 and all(b > a for a, b in zip(kept, kept[1:]))


@pytest.fixture(scope="module")
def broadcast(tmp_path_factory) -> Path:
    """90 frames (3 s at 30 fps) of H.264 with B-frames in MPEG-TS, as a TV card or a stream records."""
    frames = [f for f, _ in person_clip_frames(90, (144, 256))]
    return write_clip(tmp_path_factory.mktemp("broadcast") / "broadcast.ts", frames, fps=30, fmt="mpegts", crf=20)


def _damage_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "the file is damaged" in ln]


def test_a_recording_with_a_dropout_is_finished_in_time_order_and_one_line_says_what_was_lost(tmp_path, broadcast):
    """A broadcast recording that lost a fifth of its packets to a weak signal: the output is
    finished, its frames in time order with the timing kept (the frame before the gap stays up),
    and one line says how many frames are missing, and where. Before, the frames were
    lost without a word, and those the decoder gave out late after the gap were written out of
    place: an older picture flashed in after it."""
    src = damage_ts(broadcast, tmp_path / "dropout.ts", drop=(0.4, 0.6))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    times = frame_pts_s(out)
    # in time order, a frame interval apart at least: no late picture squeezed in after another
    assert min(b - a for a, b in zip(times, times[1:])) > 0.9 / 30, times
    assert times[-1] == pytest.approx(89 / 30, abs=0.01)  # the timing kept: the last frame at its time
    lines = _damage_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    said = re.search(r"vbg: .*dropout\.ts: the file is damaged between ([\d.]+) s and ([\d.]+) s: (\d+) frames "
                     r"are missing \(the frame before each gap stays up, the timing is kept\)", lines[0])
    assert said is not None, lines[0]
    assert int(said[3]) == 90 - len(times) > 10
    gap = max(zip(times, times[1:]), key=lambda ab: ab[1] - ab[0])
    assert float(said[1]) <= gap[0] + 1 / 30 + 0.05 and float(said[2]) >= gap[1] - 0.05  # the gap is within


def test_a_dropout_the_demuxer_does_not_flag_is_still_counted_and_kept_in_order(tmp_path):
    """A dropout that loses a multiple of 16 of the video's packets: its continuity counter comes
    round, and the demuxer flags nothing (one dropout in 16 is so). The decoder still swallows
    frames after the gap and gives some out late: the gap is counted from that, and the late
    frames are left out. Before, nothing was said, and a late frame was written after the gap:
    an older picture flashed in."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(60, (144, 256))] * 2
    src = damage_ts(write_ts_av(tmp_path / "tv.ts", frames, 30), tmp_path / "dropout.ts", drop=(0.4, 0.6),
                    unflagged=True)
    with av.open(str(src)) as c:
        assert not any(p.is_corrupt for p in c.demux(video=0))  # nothing flagged
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    times = frame_pts_s(out)
    assert min(b - a for a, b in zip(times, times[1:])) > 0.9 / 30, times  # in time order
    lines = _damage_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    said = re.search(r"the file is damaged between [\d.]+ s and [\d.]+ s: (\d+) frames are missing", lines[0])
    assert said is not None and int(said[1]) == 120 - len(times) > 10, (lines[0], len(times))


def test_two_recordings_joined_with_a_pause_are_not_called_damaged(tmp_path):
    """Two recordings put together with ``cat``, the second begun 2 s after the first ended (its
    clock going on, not starting over): the pause is kept as timed, and nothing is said of
    damage. The demuxer flags the join, and every clock leaps ahead there as at a dropout: it
    was said as "58 frames are missing". A leap to a keyframe right after the flag is taken as a
    recording joined on; the decoder, which loses nothing there, would show a real loss."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(60, (90, 160))]
    first = write_ts_av(tmp_path / "a.ts", frames, 30)
    second = write_ts_av(tmp_path / "b.ts", frames, 30, video_pts=lambda i: i + 120,
                         audio_pts=lambda n: n * 1024 + 120 * 1600)
    src = tmp_path / "joined.ts"
    src.write_bytes(first.read_bytes() + second.read_bytes())
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "damaged" not in proc.stderr, proc.stderr
    times = frame_pts_s(out)
    assert times == pytest.approx(frame_pts_s(src), abs=0.002)  # every frame, at its time
    assert times[60] - times[59] > 1.9  # the pause kept


def test_a_dropout_into_a_png_folder_says_the_numbering_runs_on(tmp_path, broadcast):
    """The same dropout rendered to a PNG folder: one file per frame there is, and the line says
    the numbering runs on past the gap (it said the frame before stays up and the timing is
    kept, which a folder of pictures cannot do)."""
    src = damage_ts(broadcast, tmp_path / "dropout.ts", drop=(0.4, 0.6))
    out = tmp_path / "frames"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"frame_{i:06d}.png" for i in range(1, len(files) + 1)] and 10 < len(files) < 80, files
    lines = _damage_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    said = re.search(r"dropout\.ts: the file is damaged between [\d.]+ s and [\d.]+ s: (\d+) frames are missing "
                     r"\(the PNG folder's numbering runs on past each gap\)", lines[0])
    assert said is not None and int(said[1]) == 90 - len(files), lines[0]


def test_a_recording_with_garbled_packets_keeps_every_frame_and_one_line_counts_the_patched(tmp_path, broadcast):
    """Packets garbled in the middle of a recording (their timing whole): every frame is kept,
    and one line says how many came out patched by the decoder, which may show blocks."""
    src = damage_ts(broadcast, tmp_path / "garbled.ts", garble=6)
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(frame_pts_s(out)) == 90
    lines = _damage_lines(proc.stderr)
    assert len(lines) == 1 and "missing" not in lines[0], proc.stderr
    said = re.search(r"the file is damaged (?:at|between) .*: (\d+) frames? came out patched by the decoder "
                     r"\(blocks or smears may show\); only a better copy of the recording mends it$", lines[0])
    assert said is not None and int(said[1]) >= 1, lines[0]


def test_a_gap_in_the_timing_far_from_the_damage_is_kept_as_timed_not_called_missing(tmp_path):
    """A recording with a few packets garbled near its start, and later a pause in its timing (a
    recorder's dropped frames, a variable frame rate): the line counts the patched frames only.
    A gap anywhere after the first damage was counted as frames missing."""
    frames = [f for f, _ in person_clip_frames(90, (144, 256))]
    src = write_clip(tmp_path / "paused.ts", frames, fps=30, fmt="mpegts", crf=20,
                     pts=lambda i: i if i < 60 else i + 3)  # 3 frame intervals missing at frame 60, 2 s in
    src = damage_ts(src, tmp_path / "early.ts", garble=4, within=(0.1, 0.3))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = _damage_lines(proc.stderr)
    assert len(lines) == 1 and "came out patched" in lines[0] and "missing" not in lines[0], proc.stderr
    times = frame_pts_s(out)
    assert len(times) == 90 and times[60] - times[59] == pytest.approx(4 / 30, abs=0.005)  # the pause kept


def test_a_whole_recording_or_a_variable_frame_rate_is_not_called_damaged(broadcast, clips, tmp_path):
    """The same recording undamaged, and a phone's variable frame rate (frames 2 to 9 intervals
    apart), say nothing of damage: a gap in the timing is damage only where the file shows it."""
    for src in (broadcast, clips["vfr"]):
        out = tmp_path / f"{src.stem}.mp4"
        proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
        assert proc.returncode == 0 and not _damage_lines(proc.stderr), proc.stderr
        assert len(frame_pts_s(out)) == (90 if src == broadcast else len(clips["vfr_pts"]))


def test_recordings_joined_end_to_end_play_one_after_the_other_in_sync(tmp_path):
    """Six MPEG-TS recordings with sound put together with ``cat`` (a camcorder's AVCHD chunks, a
    DVR's), each part's clock starting from the same time: the parts play one after the other,
    every frame a frame interval after the one before, the sound kept and still with the picture
    at the end; one line says so; --ray runs such a file whole. Before, every later part's frames
    were written at one instant, and its sound was left out as packets "with damaged times"; a
    first fix that let each stream continue on its own drifted the sound ~25 ms per join."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(15, (90, 160))]
    parts = [write_ts_av(tmp_path / f"0000{i}.ts", frames, 30) for i in range(6)]
    src = tmp_path / "joined.ts"
    src.write_bytes(b"".join(p.read_bytes() for p in parts))
    with av.open(str(src)) as c:
        sound = [p for p in c.demux(audio=0) if p.size]
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "damaged" not in proc.stderr, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "joined end to end" in ln]
    assert len(said) == 1 and said[0].startswith(f"vbg: {src}: recordings joined end to end: its clock starts over "
                                                 "at 0.5 s, and each part is put after the one before (6 parts)"), said
    times = frame_pts_s(out)
    steps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 90 and min(steps) > 0.9 / 30 and max(steps) < 1.1 / 30, times
    with av.open(str(out)) as c:
        kept = [p for p in c.demux(audio=0) if p.size]
    with av.open(str(out)) as c:
        v0 = min(p.pts * p.time_base for p in c.demux(video=0) if p.size)
    assert len(sound) - 2 * 5 <= len(kept) <= len(sound)  # a part's overlap with the one before: left out
    assert all(b.dts > a.dts for a, b in zip(kept, kept[1:]))
    sound_end = float((kept[-1].pts + kept[-1].duration) * kept[-1].time_base - v0)
    with av.open(str(parts[-1])) as c:  # the last part's own sound's end, from its own first frame
        ends = [float((p.pts + p.duration) * p.time_base) for p in c.demux(audio=0) if p.size]
    with av.open(str(parts[-1])) as c:
        first = min(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
    # in sync as the part was (each stream going on by itself drifted ~25 ms a join: 0.12 s here)
    assert sound_end - times[-1] == pytest.approx(max(ends) - first - 14 / 30, abs=0.01)
    from vbg.offline.distributed import plan_spans

    assert plan_spans(src, 3, 0.2) is None and plan_spans(write_ts_av(tmp_path / "long.ts", frames * 3, 30), 3, 0.2)


def test_an_mp4_whose_clock_starts_late_keeps_all_its_sound(tmp_path):
    """A TS recording copied into MP4 packet for packet (``ffmpeg -c copy``: the usual way to make a
    camcorder's or a DVR's recording play everywhere) keeps its clock, starting at 1.4 s, or 10 s.
    The sound is kept to its end, in .mp4 and .webm alike. Its last 0.4 s (and from 10 s on, all of
    it) was left out as packets "with damaged times": the file's stated length was taken for the
    time it ends."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(60, (90, 160))]
    for start in (1.4, 10.0):
        ts = write_ts_av(tmp_path / f"rec-{start}.ts", frames, 30, video_pts=lambda i, s=start: i + round(s * 30),
                         audio_pts=lambda n, s=start: n * 1024 + round(s * 48000))
        src = tmp_path / f"rec-{start}.mp4"
        with av.open(str(ts)) as ci, av.open(str(src), "w") as co:
            streams = {s.index: co.add_stream_from_template(s) for s in ci.streams}
            for pkt in ci.demux():
                if pkt.dts is not None:
                    pkt.stream = streams[pkt.stream.index]
                    co.mux(pkt)
        with av.open(str(src)) as c:
            assert c.start_time / 1e6 == pytest.approx(start, abs=0.1)  # the clock kept
            sound_in = [p for p in c.demux(audio=0) if p.size]
        span_in = float((sound_in[-1].pts + sound_in[-1].duration - sound_in[0].pts) * sound_in[0].time_base)
        for ext in ("mp4", "webm"):
            out = tmp_path / f"out-{start}.{ext}"
            proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1",
                           "--color", "green")
            assert proc.returncode == 0 and "damaged" not in proc.stderr, proc.stderr
            with av.open(str(out)) as c:
                kept = [p for p in c.demux(audio=0) if p.size]
            span_out = float((kept[-1].pts + kept[-1].duration - kept[0].pts) * kept[0].time_base)
            assert span_out == pytest.approx(span_in, abs=0.05), (start, ext)


def test_a_damaged_aac_header_loses_that_packet_not_the_output(tmp_path, broadcast):
    """A broadcast recording whose one AAC frame header (ADTS) is garbled: copied into MP4, FFmpeg's
    ADTS-to-MP4 step refuses that packet. The packet is left out with one line, and the rest is
    finished. The whole output was lost: exit 10, "writing failed after 19 frames (Invalid data
    found ...): check the free disk space" (found by the damage fuzzing)."""
    from media import write_ts_av

    src = write_ts_av(tmp_path / "tv.ts", [f for f, _ in person_clip_frames(60, (90, 160))], 25)
    with av.open(str(src)) as c:
        pid = c.streams.audio[0].id
    data = bytearray(src.read_bytes())
    starts = [i for i in range(0, len(data), 188)
              if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) == pid and data[i + 1] & 0x40]
    i = starts[len(starts) // 2]
    at = i + 4 + (1 + data[i + 4] if data[i + 3] & 0x20 else 0)  # the PES header
    adts = at + 9 + data[at + 8]  # its payload: an ADTS header (0xFFF sync)
    assert data[adts] == 0xFF and data[adts + 1] >> 4 == 0xF
    data[adts + 3:adts + 7] = b"\xff" * 4  # its frame length garbled
    src.write_bytes(bytes(data))
    with av.open(str(src)) as c:
        sound = len([p for p in c.demux(audio=0) if p.size])
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"vbg: {src}: its audio has a damaged packet: left out (a short gap)" in proc.stderr.splitlines()
    assert len(frame_pts_s(out)) == 60
    with av.open(str(out)) as c:
        assert len([p for p in c.demux(audio=0) if p.size]) == sound - 1


def test_sound_that_starts_late_in_a_broadcast_recording_is_kept_in_sync(tmp_path):
    """An MPEG-TS recording whose sound starts 8 s in (a broadcast recorded from a quiet moment;
    FFmpeg's probe looks at the first 5 s): the sound is kept, at its time. It was dropped with
    "its audio track 1 is not kept (its aac stream states no sample rate or channels)"."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(30, (72, 128))] * 9
    src = write_ts_av(tmp_path / "late.ts", frames, 30, audio_s=0.5, audio_pts=lambda n: n * 1024 + 8 * 48000)
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.sample_rate == 0  # what FFmpeg's probe finds
        first = next(p for p in c.demux(audio=0) if p.size)
        late_s = float((first.pts - c.streams.video[0].start_time) * first.time_base)
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "not kept" not in proc.stderr, proc.stderr
    with av.open(str(out)) as c:
        video_s = float(c.streams.video[0].start_time * c.streams.video[0].time_base)
        sound = [p for p in c.demux(audio=0) if p.size]
        assert c.streams.audio[0].sample_rate == 48000 and len(sound) >= 20
        assert float(sound[0].pts * sound[0].time_base) - video_s == pytest.approx(late_s, abs=0.03)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_sound_whose_channels_change_part_way_is_kept_whole(tmp_path, suffix):
    """A broadcast recording whose MPEG audio goes from mono to stereo after 1 s (an advert, then
    the programme): re-encoded whole, the rest mixed to the output's layout, one line saying so.
    It stopped with a traceback ("Frame does not match AudioResampler setup"), 15 frames kept."""
    src = tmp_path / "switch.ts"
    with av.open(str(src), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "g": "30"}
        a = out.add_stream("mp2", rate=48000, layout="mono")
        packets = []
        for layout, t0, t1 in (("mono", 0, 48000), ("stereo", 48000, 96000)):
            enc = av.CodecContext.create("mp2", "w")
            enc.sample_rate, enc.layout, enc.format, enc.time_base = 48000, layout, "s16", Fraction(1, 48000)
            enc.open()
            n, size = enc.layout.nb_channels, enc.frame_size
            for at in range(t0, t1, size):
                f = av.AudioFrame(format="s16", layout=layout, samples=size)
                tone = (6000 * np.sin(2 * np.pi * 440 * (at + np.arange(size)) / 48000)).astype("<i2")
                f.planes[0].update(np.repeat(tone, n).tobytes())
                f.sample_rate, f.pts, f.time_base = 48000, at, Fraction(1, 48000)
                packets += enc.encode(f)
            packets += enc.encode(None)
        items = [(i / 30, 0, i) for i in range(60)] + [(float(p.pts * p.time_base), 1, p) for p in packets]
        for _, kind, x in sorted(items, key=lambda it: (it[0], it[1])):
            if kind == 0:
                f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), x * 4, np.uint8), format="rgb24")
                f.pts, f.time_base = x, Fraction(1, 30)
                out.mux(v.encode(f))
            else:
                x.stream = a
                out.mux(x)
        out.mux(v.encode(None))
    dst = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(dst), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "its sound changes from mono to stereo at 1.0 s: the rest is mixed to the output's mono" in proc.stderr
    assert len(frame_pts_s(dst)) == 60
    assert span_s(dst, "audio") == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("layout", ["a part without sound", "parts coded with other B-frames"])
def test_joined_parts_that_differ_each_start_where_the_part_before_ended(tmp_path, layout):
    """Three recordings joined with cat that differ: the middle one without sound (a clip from
    another camera), or coded with another B-frame delay. Each part's first frame comes a frame
    interval after the part before's last, and the third part's sound starts with its picture.
    A part without sound had the next part's sound matched to the wrong join: the third part's
    frames were written at one instant and its sound played over the second part's picture; and
    parts of other B-frame delays overlapped by a frame or left a gap of two (both found by a review
    helper)."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(50, (90, 160))]
    other = {"audio_s": 0} if layout == "a part without sound" else {"x264": {"b-pyramid": "none", "bframes": "1"}}
    parts = [write_ts_av(tmp_path / "a.ts", frames, 25), write_ts_av(tmp_path / "b.ts", frames, 25, **other),
             write_ts_av(tmp_path / "c.ts", frames, 25)]
    src = tmp_path / "joined.ts"
    src.write_bytes(b"".join(p.read_bytes() for p in parts))
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "is damaged" not in proc.stderr and "damaged times" not in proc.stderr, proc.stderr
    assert "(3 parts)" in proc.stderr, proc.stderr
    times = frame_pts_s(out)
    steps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 150 and min(steps) > 0.9 / 25 and max(steps) < 1.1 / 25, times
    with av.open(str(out)) as c:
        v0 = min(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
    with av.open(str(out)) as c:
        sound = [(float(p.pts * p.time_base) - v0, float(p.duration * p.time_base))
                 for p in c.demux(audio=0) if p.size]
    with av.open(str(parts[2])) as c:  # the third part's own sound against its own first frame
        own = [(float(p.pts * p.time_base), float(p.duration * p.time_base)) for p in c.demux(audio=0) if p.size]
    with av.open(str(parts[2])) as c:
        f0 = min(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
    if layout == "a part without sound":  # the third part's sound begins after the silent part
        third = min(t for t, _ in sound if t > times[50])
        assert third - times[100] == pytest.approx(own[0][0] - f0, abs=0.01), (third, times[100])
    ends = sum(sound[-1]) - times[100], sum(own[-1]) - f0  # where the sound ends, from the third part's start
    assert ends[0] == pytest.approx(ends[1], abs=0.01), ends


def test_a_video_dropout_while_the_sound_goes_on_is_not_a_join(tmp_path):
    """A recording whose picture stops for 11 s while its sound goes on (a camera's video feed
    lost): not recordings joined end to end, since the sound's clock does not start over. The
    last frame stays up through the gap and the sound is whole: still in sync after it. Letting
    each stream decide alone put the picture after the gap 11 s early."""
    from media import write_ts_av

    frames = [f for f, _ in person_clip_frames(60, (90, 160))]
    src = write_ts_av(tmp_path / "feed.ts", frames, 30, video_pts=lambda i: i if i < 30 else i + 330, audio_s=13)
    with av.open(str(src)) as c:
        sound = [p for p in c.demux(audio=0) if p.size]
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "joined end to end" not in proc.stderr, proc.stderr
    times = frame_pts_s(out)
    assert len(times) == 60 and times[30] - times[29] == pytest.approx(11 + 1 / 30, abs=0.01)
    with av.open(str(out)) as c:
        assert len([p for p in c.demux(audio=0) if p.size]) == len(sound)


@pytest.mark.parametrize("fmt", ["flv", "matroska"])
def test_the_sound_of_a_live_recording_is_kept_past_the_duration_its_header_guessed(tmp_path, fmt):
    """A stream's recording written as it went (OBS to FLV, a Matroska file never finished): the
    header states a guess (the FLV's, from its first seconds) or no duration, and the sound runs on
    past the picture. Every audio packet is kept and nothing is called damaged. The damaged-time
    rule (above) read FFmpeg's duration as the file's own, and left out the sound past the FLV's
    guess, a line calling it damaged."""
    from media import write_live_recording

    src = write_live_recording(tmp_path / f"stream.{'flv' if fmt == 'flv' else 'mkv'}", fmt,
                               [f for f, _ in person_clip_frames(20, (90, 160))], 10, audio_s=4.0)
    with av.open(str(src)) as c:
        audio = [p for p in c.demux(audio=0) if p.size]
        stated = c.duration / av.time_base if c.duration else None
    assert float(audio[-1].pts * audio[-1].time_base) > 3.9
    if fmt == "flv":
        assert stated is not None and stated < 2.5  # the guess: the picture's 2 s
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "damaged" not in proc.stderr, proc.stderr
    assert len(read_frames(out)) == 20
    with av.open(str(out)) as c:
        kept = [p for p in c.demux(audio=0) if p.size]
    assert len(kept) == len(audio)


def test_a_second_video_track_is_named_with_how_to_process_it(tmp_path):
    """A two-camera (or two-angle) file: the first video track is processed, and one line says
    the other is not kept and how to pick it. It was dropped unsaid."""
    from media import join_video_tracks

    first = write_clip(tmp_path / "a.mp4", [f for f, _ in person_clip_frames(10, (180, 320))])
    other = write_clip(tmp_path / "b.mp4", [f for f, _ in person_clip_frames(10, (360, 640), seed=3)], codec="mpeg4")
    src = join_video_tracks([first, other], tmp_path / "two-cameras.mkv")
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "video track" in ln]
    assert said == [f"vbg: {src}: its other video track (640x360 mpeg4) is not kept: vbg processes the first one "
                    "(320x180 h264); to process another, put it first: ffmpeg -i IN -map 0:V:1 -map 0:a? -c copy OUT"]
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and (c.streams.video[0].width, c.streams.video[0].height) == (320, 180)
    assert len(read_frames(out)) == 10


def test_non_square_pixels_come_out_in_the_shape_a_player_shows(tmp_path):
    """HDV's 1440x1080, DV and DVD store wide pixels (here 480x360 at 4:3, shown as 640x360): the
    output has square pixels at the size a player shows, the person in proportion and found, one
    line saying so. It kept the stored size without the pixel aspect: every player showed a 4:3
    picture, the person squeezed."""
    import cv2

    pictures = list(person_clip_frames(10, (360, 640)))
    stored = [cv2.resize(p, (480, 360), interpolation=cv2.INTER_AREA) for p, _ in pictures]
    src = write_clip(tmp_path / "hdv.mp4", stored, fps=25, sar=Fraction(4, 3))
    out = tmp_path / "m.mov"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--matte")
    assert proc.returncode == 0, proc.stderr
    assert (f"vbg: {src}: its pixels are not square (4:3): its 480x360 frames come out as 640x360 square pixels, "
            "the shape a player shows") in proc.stderr.splitlines(), proc.stderr
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.width, stream.height) == (640, 360) and stream.sample_aspect_ratio in (None, 1)
        mattes = [f.to_ndarray(format="gray") for f in c.decode(stream)]
    assert len(mattes) == 10 and min(iou(m / 255.0, a) for m, (_, a) in zip(mattes, pictures)) >= 0.8


def test_a_dv_tape_capture_comes_out_as_a_player_shows_it(tmp_path):
    """A raw .dv file from a tape capture: interlaced, 16:9 in 64:45 pixels, PCM sound, and a
    frame rate FFmpeg reports as 60000 (its DV clock). The MP4 plays at 25 fps, 1024x576 square
    pixels, deinterlaced, the sound in AAC, the tape's timecode kept. It failed at the end:
    "cannot finalize it (Invalid argument)", the 60000 fps rate refused by the MP4 muxer."""
    import cv2

    pictures = [p for p, _ in person_clip_frames(40, (576, 1024))]
    src = write_dv_clip(tmp_path / "tape.dv", [cv2.resize(f, (720, 576)) for f in interlace(pictures)])
    out = tmp_path / "tape.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    for said in ("interlaced video: deinterlaced (bwdif)", "its pixels are not square (64:45): its 720x576 frames "
                 "come out as 1024x576 square pixels", "its pcm_s16le audio is not kept as is in mp4 files"):
        assert said in proc.stderr, proc.stderr
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert (video.width, video.height, video.average_rate) == (1024, 576, 25)
        assert c.streams.audio[0].codec_context.name == "aac"
        assert video.metadata.get("timecode") == "00:00:00:00"
        times = [float(f.pts * f.time_base) for f in c.decode(video)]
    assert times == pytest.approx([i / 25 for i in range(20)])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_every_audio_track_of_a_recording_is_kept(tmp_path, suffix):
    """An OBS-style recording with the microphone and the desktop on two tracks: both come out,
    in their order, with their language and title, each its own sound (copied into MP4 and
    Matroska, re-encoded to Opus for WebM), as long as the video. Only the first was kept: the
    desktop's sound was lost without a word. The track flagged as the one a player starts with
    stays flagged (the flag moved to the first track in MP4, and was lost in Matroska)."""
    from media import loudest_hz, write_tracks_clip

    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    src = write_tracks_clip(tmp_path / "obs.mkv", frames, [(440, "eng", "microphone"), (1000, "deu", "desktop")],
                            default=1)
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        tracks = [(s.codec_context.name, s.metadata.get("language"), s.metadata.get("title")) for s in c.streams.audio]
    codec = "opus" if suffix == ".webm" else "aac"
    assert [t[0] for t in tracks] == [codec, codec], tracks
    assert [t[1] for t in tracks] == ["eng", "deu"] or suffix == ".mp4" and [t[1] for t in tracks] == ["eng", "ger"]
    if suffix != ".mp4":  # MP4 keeps no per-track title
        assert [t[2] for t in tracks] == ["microphone", "desktop"], tracks
    assert abs(loudest_hz(out, 0) - 440) < 5 and abs(loudest_hz(out, 1) - 1000) < 5
    for track in (0, 1):
        assert abs(span_s(out, "audio", track) - span_s(out, "video")) <= 2 / 30
    with av.open(str(out)) as c:
        assert [bool(s.disposition & av.stream.Disposition.default) for s in c.streams.audio] == [False, True]


def test_of_tracks_all_flagged_default_one_stays_default(tmp_path):
    """Both tracks flagged default (as Matroska files often are): in MP4 each default track is
    enabled and QuickTime plays them all at once; the first keeps the flag, the other loses it."""
    from media import write_tracks_clip

    frames = [f for f, _ in person_clip_frames(15, (90, 160))]
    src = write_tracks_clip(tmp_path / "two.mkv", frames, [(440, "eng", "a"), (1000, "deu", "b")], default=[0, 1])
    with av.open(str(src)) as c:
        assert [bool(s.disposition & av.stream.Disposition.default) for s in c.streams.audio] == [True, True]
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert [bool(s.disposition & av.stream.Disposition.default) for s in c.streams.audio] == [True, False]


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_an_audio_track_no_decoder_reads_is_left_out_and_the_others_kept(tmp_path, suffix):
    """A track in a codec FFmpeg does not know (an iPhone's spatial audio, APAC) beside a normal
    one: the normal one is kept, the other named as not kept, and the video is processed. With
    every track kept, it stopped the file ("cannot set up H.264 ('NoneType' object ...)")."""
    from media import loudest_hz, with_unknown_audio_track, write_tracks_clip

    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    clip = write_tracks_clip(tmp_path / "talk.mkv", frames, [(440, "eng", "voice")])
    src = with_unknown_audio_track(clip, tmp_path / "phone.mkv")
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"vbg: {src}: its audio track 2 is not kept (its codec is unknown to FFmpeg)" in proc.stderr
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1 and sum(1 for _ in c.decode(video=0)) == 30
    assert abs(loudest_hz(out, 0) - 440) < 5


@pytest.mark.parametrize("fmt,video,audio,suffix,kept,line", [
    ("avi", "mpeg4", "libmp3lame", ".mp4", "mp3", None),
    ("avi", "mpeg4", "libmp3lame", ".mov", "mp3", None),
    ("avi", "mpeg4", "wmav2", ".mp4", "aac", "its wmav2 audio is not kept as is in mp4 files: re-encoded to aac"),
    ("avi", "mpeg4", "libmp3lame", ".webm", "opus",
     "its mp3 audio is not kept as is in webm files: re-encoded to libopus"),
    ("webm", "libvpx-vp9", "libopus", ".mov", "aac", "its opus audio is not kept as is in mov files: re-encoded to aac"),
], ids=["avi-mp3-to-mp4", "avi-mp3-to-mov", "avi-wma-to-mp4", "avi-mp3-to-webm", "webm-opus-to-mov"])
def test_sound_the_output_cannot_hold_as_it_is_is_reencoded_and_the_rest_copied(tmp_path, fmt, video, audio, suffix,
                                                                              kept, line):
    """An AVI with MP3 or WMA sound (an older camera's or Windows capture's, a download's) and a
    WebM's Opus, into MP4, MOV or WebM: every frame and all the sound come out, each sound packet at
    its own time; MP3 copied as it is into MP4 and MOV (they hold it), the others re-encoded, each
    with one line naming the codec as users know it. The AVI's MP3 was re-encoded (its decoder's
    name, "mp3float", matched nothing, and the line said "mp3float") and, as the WMA was, timed in
    the AVI's ticks (24 and 43 ms): the AAC encoder's 21 ms frames rounded to one time twice, and
    the output was lost (exit 10, "check the free disk space"); the WebM's Opus was copied into the
    MOV, whose header refused it (exit 10, "cannot set up ProRes 422 HQ")."""
    from media import loudest_hz, write_with_audio

    src = tmp_path / f"clip.{fmt}"
    write_with_audio(str(src), [f for f, _ in person_clip_frames(30, (180, 320))], 25, fmt=fmt, video=video, audio=audio)
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "audio" in ln]
    assert said == ([f"vbg: {src}: {line}"] if line else []), proc.stderr
    assert len(read_frames(out)) == 30
    with av.open(str(out)) as c:
        assert [s.codec_context.codec.canonical_name for s in c.streams.audio] == [kept]
        times = [p.pts for p in c.demux(audio=0) if p.size]
    assert all(b > a for a, b in zip(times, times[1:]))  # each sound packet its own time, in order
    assert abs(span_s(out, "audio") - span_s(src, "audio")) <= 0.05
    assert abs(loudest_hz(out, 0) - 440) < 5
    if kept == "mp3":
        with av.open(str(src)) as a, av.open(str(out)) as b:
            assert [bytes(p) for p in b.demux(audio=0) if p.size] == [bytes(p) for p in a.demux(audio=0) if p.size]


@pytest.mark.parametrize("layout,suffix,kept", [("5.1", ".mp4", "5.1"), ("5.1(side)", ".webm", "5.1"),
                                                 ("quad", ".mov", "quad"), ("7.1.2", ".mp4", "stereo")])
def test_surround_sound_reencoded_keeps_its_channels_where_the_codec_can(tmp_path, layout, suffix, kept):
    """5.1 or quad sound (a camcorder's surround microphone, a film) that the output cannot hold as
    it is: re-encoded with its channels, each where it was (AAC for .mp4 and .mov, Opus for .webm;
    a camcorder's 5.1(side) as Opus's 5.1); only what no encoder here takes (7.1.2's ten) is
    mixed down to stereo, and the line says so. Every re-encode was mixed down to stereo unsaid.
    (The low-frequency channel, the fourth of 5.1, carries a low tone: encoders keep only those.)"""
    from media import channel_hz, write_surround_clip

    tones = [80 if i == 3 and layout != "quad" else 300 + 100 * i
             for i in range({"5.1": 6, "5.1(side)": 6, "quad": 4, "7.1.2": 10}[layout])]
    src = write_surround_clip(tmp_path / "surround.mkv", [f for f, _ in person_clip_frames(25, (90, 160))], 25,
                              layout, tones, codec="flac" if layout != "7.1.2" else "pcm_s16le")
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    codec, muxer = {".mp4": ("aac", "mp4"), ".mov": ("aac", "mov"), ".webm": ("libopus", "webm")}[suffix]
    source = "flac" if layout != "7.1.2" else "pcm_s16le"
    mixed = ", its 10 channels mixed down to stereo" if kept == "stereo" else ""  # (Matroska keeps the count)
    assert [ln for ln in proc.stderr.splitlines() if "audio" in ln] == [
        f"vbg: {src}: its {source} audio is not kept as is in {muxer} files: re-encoded to {codec}{mixed}"]
    got, hz = channel_hz(out)
    assert got == kept
    if kept != "stereo":
        assert max(abs(a - b) for a, b in zip(hz, tones)) < 5, hz


@pytest.mark.parametrize("layout,wider", [("5.0", "5.1"), ("6.1", "7.1"), ("2.1", "5.1")])
def test_sound_opus_misplaces_goes_to_webm_with_each_channel_where_it_was(tmp_path, layout, wider):
    """5.0 (a DVD's 3/2), 6.1 and 2.1 sound re-encoded to Opus for .webm: FFmpeg's libopus took
    5.0 and 6.1 and put the centre (the dialogue) in a back speaker, and 2.1 went to Opus's 3.0,
    its LFE lost, unsaid. They go as the layout that holds every channel in its place (the
    others silent; 6.1's back centre to both backs)."""
    from media import channel_hz, write_surround_clip

    names = [c.name for c in av.AudioLayout(layout).channels]
    tones = [80 if name == "LFE" else 300 + 100 * i for i, name in enumerate(names)]
    src = write_surround_clip(tmp_path / "surround.mkv", [f for f, _ in person_clip_frames(25, (90, 160))], 25,
                              layout, tones, codec="flac")
    out = tmp_path / "out.webm"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    got, hz = channel_hz(out)
    assert got == wider
    heard = dict(zip([c.name for c in av.AudioLayout(wider).channels], hz))
    want = dict(zip(names, tones))
    if "BC" in want:  # 6.1's back centre is heard from both backs
        want["BL"] = want["BR"] = want.pop("BC")
    assert all(abs(heard[name] - hz_) < 5 for name, hz_ in want.items()), (heard, want)
    assert all(heard[name] == 0 for name in heard if name not in want), heard  # the added ones silent


SRT = "1\n00:00:00,000 --> 00:00:00,400\nBonjour <i>à tous</i>\n\n2\n00:00:00,500 --> 00:00:00,900\nau revoir\n"


def subtitle_cues(path):
    """(text as FFmpeg's ASS dialogue, start s, duration s) of each cue of the first subtitle track,
    its language."""
    with av.open(str(path)) as c:
        sub = c.streams.subtitles[0]
        cues = []
        for p in c.demux(sub):
            for rect in (sub.codec_context.decode2(p) if p.size else None) or []:
                # The ASS event's text field, tags kept (PyAV 18.1's ``dialogue`` strips them); mov_text
                # ends italics at the cue's end.
                text = rect.ass.decode().split(",", 8)[8].replace("{\\i0}", "")
                cues.append((text, round(float(p.pts * p.time_base), 2), round(float(p.duration * p.time_base), 2)))
        return cues, sub.metadata.get("language")


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".mov", ".webm"])
def test_a_subtitle_track_is_kept_in_every_container(tmp_path, suffix):
    """An SRT track comes out in Matroska as it was (the same bytes); MP4 and MOV hold no SRT and
    WebM only WebVTT, so there it is converted (mov_text, the only text their players show;
    WebVTT), with its times, its italics and its language, and one line says so. It was left out
    of MP4 with a line naming .mkv as the fix, and out of WebM too."""
    from media import with_subtitles, write_tracks_clip

    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    clip = write_tracks_clip(tmp_path / "talk.mkv", frames, [(440, "eng", "voice")])
    src = with_subtitles(clip, SRT, tmp_path / "subbed.mkv")
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]
        if suffix == ".mkv":
            sub = c.streams.subtitles[0]
            raw = [(bytes(p), round(float(p.pts * p.time_base), 2)) for p in c.demux(sub) if p.size]
            assert raw == [("Bonjour <i>à tous</i>".encode(), 0.0), (b"au revoir", 0.5)]
    assert subtitle_cues(out) == ([("Bonjour {\\i1}à tous", 0.0, 0.4), ("au revoir", 0.5, 0.4)], "fra")
    target = {".mkv": None, ".mp4": "mov_text", ".mov": "mov_text", ".webm": "WebVTT"}[suffix]
    said = [ln for ln in proc.stderr.splitlines() if "subtitle track" in ln]
    muxer = {".mp4": "mp4", ".mov": "mov", ".webm": "webm"}.get(suffix)
    assert said == ([f"vbg: {src}: its SRT subtitle track is converted to {target} for {muxer} files"]
                    if target else []), proc.stderr


ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Sign,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,8,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.00,0:00:00.60,Sign,,0,0,0,,Hello {\\b1}there{\\b0}
""".replace("\\\n", "")


def test_an_ass_track_into_mp4_keeps_its_text_and_says_how_to_keep_its_styles(tmp_path):
    """An ASS track (styled: fonts, positions) into MP4: its text, bold and times as mov_text, and
    the line says that Matroska keeps it as it is."""
    from media import with_subtitles

    clip = write_clip(tmp_path / "v.mp4", [f for f, _ in person_clip_frames(20, (180, 320))])
    src = with_subtitles(clip, ASS, tmp_path / "styled.mkv", language="eng", kind="ass")
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"vbg: {src}: its ASS subtitle track is converted to mov_text for mp4 files: write .mkv to keep it as it " \
           "is" in proc.stderr.splitlines(), proc.stderr
    assert subtitle_cues(out) == ([("Hello {\\b1}there{\\b0}".replace("{\\b0}", ""), 0.0, 0.6)], "eng")


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".webm"])
def test_a_dvd_subtitle_track_is_kept_where_the_container_holds_pictures(tmp_path, suffix):
    """A DVD rip's picture subtitles (not text: nothing to convert) are copied as they are into
    Matroska and MP4, with their times and language; WebM holds no picture subtitles, and the line
    names the fix."""
    from media import dvd_subpicture, with_dvd_subtitles

    clip = write_clip(tmp_path / "v.mp4", [f for f, _ in person_clip_frames(30, (180, 320))])
    src = with_dvd_subtitles(clip, tmp_path / "rip.mkv", [(0, 10), (500, 60)])
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "subtitle track" in ln]
    with av.open(str(out)) as c:
        if suffix == ".webm":
            assert not c.streams.subtitles
            assert said == [f"vbg: {src}: its DVD subtitle track is not kept in webm files: write .mkv to keep it"]
            return
        sub = c.streams.subtitles[0]
        got = [(bytes(p), round(float(p.pts * p.time_base), 2)) for p in c.demux(sub) if p.size]
        assert sub.metadata.get("language") == "deu" and said == []
    assert got == [(dvd_subpicture(10, 20, 40, 10), 0.0), (dvd_subpicture(60, 20, 40, 10), 0.5)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_a_downloaded_videos_cover_picture_is_kept(tmp_path, suffix):
    """A video with its thumbnail embedded (yt-dlp --embed-thumbnail): MP4 keeps the picture as
    it was, as the cover players and file managers show, and Matroska as its cover.jpg
    attachment (FFmpeg's own reader shows both as the same cover picture); MOV, where FFmpeg
    writes it so its own reader does not find it, does not, and one line says so. It was
    dropped unsaid."""
    import cv2

    _, jpeg = cv2.imencode(".jpg", np.full((90, 160, 3), (200, 80, 40), np.uint8))
    src = write_clip(tmp_path / "download.mp4", [f for f, _ in person_clip_frames(10, (180, 320))],
                     cover=jpeg.tobytes())
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "cover picture" in ln]
    with av.open(str(out)) as c:
        covers = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        kept = [bytes(p) for p in c.demux(covers[0]) if p.size] if covers else []
        assert len(c.streams.video) == len(covers) + 1
        names = [s.metadata.get("filename") for s in covers]
    assert len(read_frames(out)) == 10
    if suffix == ".mov":
        assert kept == [] and said == [f"vbg: {src}: its cover picture is not kept in mov files"]
    else:
        assert kept == [jpeg.tobytes()] and said == []
        assert names == (["cover.jpg"] if suffix == ".mkv" else [None])


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_a_gopro_recordings_telemetry_track_is_kept(tmp_path, suffix):
    """A GoPro's GPS and motion track (gpmd: what telemetry overlays and editors read) is copied
    byte for byte, at its times, into MP4 and MOV; Matroska cannot hold it, and one line says so
    and names the container that does. It was dropped unsaid."""
    from media import data_packets, with_data_track

    clip = write_clip(tmp_path / "v.mp4", [f for f, _ in person_clip_frames(30, (180, 320))])
    packets = [(ms, b"DEVC" + bytes([i + 1]) * 40) for i, ms in enumerate(range(0, 1000, 250))]
    src = with_data_track(clip, tmp_path / "GX010001.MP4", packets, "gpmd")
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "data track" in ln]
    assert len(read_frames(out)) == 30
    with av.open(str(out)) as c:
        handlers = [s.metadata.get("handler_name") for s in c.streams.data]
    if suffix == ".mkv":
        assert handlers == [] and said == [
            f"vbg: {src}: its data track (GoPro MET) is not kept in matroska files: write .mp4 to keep it"]
    else:
        assert handlers == ["GoPro MET"] and said == [], proc.stderr
        assert data_packets(out) == packets


@pytest.mark.parametrize("kind", ["klv", "unknown"])
def test_a_data_track_no_output_can_hold_is_named(tmp_path, kind):
    """A drone's KLV track (MPEG-TS), or tracks in a codec FFmpeg does not know (an iPhone's three
    mebx tracks, a DJI drone's djmd): the video comes out, and one line names what is not kept
    and why."""
    from media import with_data_track

    clip = write_clip(tmp_path / "v.mp4", [f for f, _ in person_clip_frames(10, (180, 320))])
    src = with_data_track(clip, tmp_path / ("drone.ts" if kind == "klv" else "phone.mov"),
                          [(0, b"\x06\x0e\x2b\x34" + bytes(12)), (100, b"\x06\x0e\x2b\x34" + bytes(12))], kind,
                          tracks=1 if kind == "klv" else 3)
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "data track" in ln]
    why = {"klv": "its data track (KLV) is not kept in mp4 files: FFmpeg cannot write it into any file vbg writes",
           "unknown": "its 3 data tracks are not kept: FFmpeg cannot write that kind of track"}[kind]
    assert said == [f"vbg: {src}: {why}"], proc.stderr
    assert len(read_frames(out)) == 10
    with av.open(str(out)) as c:
        assert not c.streams.data


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_phone_video_keeps_its_date_title_and_place(tmp_path, suffix):
    """The file's own metadata is copied as FFmpeg's tools copy it: a processed phone video keeps
    its creation time (the date a photo library sorts it by), its title and its location. They
    were dropped: the video moved to the day it was processed."""
    frames = [f for f, _ in person_clip_frames(10, (180, 320))]
    src = write_clip(tmp_path / "phone.mp4", frames, metadata={"creation_time": "2026-07-14T10:20:30.000000Z",
                                                               "title": "Holiday", "location": "+48.8584+002.2945/"})
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        meta = {k.lower(): v for k, v in c.metadata.items()}
    assert meta["creation_time"] == "2026-07-14T10:20:30.000000Z" and meta["title"] == "Holiday", meta
    assert meta["location"] == "+48.8584+002.2945/", meta


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".mov"])
def test_a_recordings_chapters_are_kept(tmp_path, suffix):
    """A lecture or screen recording split into chapters keeps them, with their times and titles,
    in every container vbg writes: a player's chapter menu still jumps to each section. They
    were dropped."""
    frames = [f for f, _ in person_clip_frames(30, (180, 320))]
    chapters = [(0.0, 0.4, "Intro"), (0.4, 0.8, "Démo"), (0.8, 1.0, "Questions")]
    src = write_clip(tmp_path / "talk.mp4", frames, chapters=chapters)
    out = tmp_path / f"out{suffix}"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--workers", "1", "--color", "green")
    assert proc.returncode == 0 and "chapters are not kept" not in proc.stderr, proc.stderr
    with av.open(str(out)) as c:
        got = [(round(float(ch["start"] * ch["time_base"]), 2), round(float(ch["end"] * ch["time_base"]), 2),
                ch["metadata"].get("title")) for ch in c.chapters()]
        assert len(c.streams.video) == 1 and sum(1 for _ in c.decode(video=0)) == 30
    assert got == chapters


@pytest.mark.parametrize("transfer", [18, 14], ids=["hlg", "bt2020-sdr"])
def test_an_hdr_phone_video_comes_out_in_the_colours_of_its_sdr_version(tmp_path, transfer):
    """A phone's HDR recording (10-bit, BT.2020, HLG) of a scene comes out as the same scene
    recorded in SDR does, not dim and grey: vbg tone-maps it and says so in one line; an SDR
    file says nothing of it. The same for SDR in BT.2020 colours (a UHD broadcast), which came
    out pale: its colours are converted, with a line of its own."""
    frames = [f for f, _ in person_clip_frames(6, (180, 320))]
    hdr = write_hdr_clip(tmp_path / "hdr.mp4", frames, transfer)
    sdr = write_clip(tmp_path / "sdr.mp4", frames)
    line = {18: f"vbg: {hdr}: HDR video (HLG): tone-mapped to SDR (BT.709), as an SDR screen shows it",
            14: f"vbg: {hdr}: SDR video in BT.2020 colours: converted to BT.709, as an SDR screen shows them"}
    outs = {}
    for src in (hdr, sdr):
        outs[src] = tmp_path / f"out_{src.name}"
        proc = run_vbg("process", str(src), "-o", str(outs[src]), "--model", "selfie", "--workers", "1",
                       "--color", "green")
        assert proc.returncode == 0, proc.stderr
        said = [ln for ln in proc.stderr.splitlines() if "HDR video" in ln or "BT.2020" in ln]
        assert said == ([] if src is sdr else [line[transfer]]), proc.stderr
    got, want = (np.stack(read_frames(outs[src])).astype(int) for src in (hdr, sdr))
    assert got.shape == want.shape
    # The person, where the two may differ: highlights above SDR's knee roll off, and the mask
    # edge moves with the model's input.
    person = np.abs(want - np.array([0, 128, 0])).sum(axis=-1) > 60  # where the SDR output is not the green
    assert person.mean() > 0.1
    diff = np.abs(got - want)[person]  # HLG 4 (median), 6.5 (mean), 18 and 22 without; BT.2020 SDR 4, 5.9, 6 and 8.2
    assert np.median(diff) <= 5 and diff.mean() <= 10, (np.median(diff), diff.mean())
    with av.open(str(outs[hdr])) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_primaries, cc.color_trc) == (1, 1)  # tagged BT.709, as SDR


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_names_that_differ_only_in_case_are_one_output_where_the_file_system_says_so(monkeypatch, platform):
    """a/Talk.mp4 and b/talk.mov give OUT/Talk.mp4 and OUT/talk.mp4: two files on Linux, one on
    macOS's and Windows's usual file systems, where the second would replace the first."""
    from vbg import cli
    from vbg.errors import ConfigError

    monkeypatch.setattr(sys, "platform", platform)
    inputs = [Path("a/Talk.mp4"), Path("b/talk.mov")]
    if platform == "linux":
        assert [t for t, _ in cli._process_targets(inputs, Path("out"), None, False, True)] == \
            [Path("out/Talk.mp4"), Path("out/talk.mp4")]
        return
    with pytest.raises(ConfigError, match="a/Talk.mp4 and b/talk.mov would both be written to out/talk.mp4"):
        cli._process_targets(inputs, Path("out"), None, False, True)


def test_batch_with_a_corrupt_file_goes_on_and_fails(clips, tmp_path):
    bad = tmp_path / "broken.mp4"
    data = clips["tone"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    outdir = tmp_path / "out"
    proc = run_vbg("process", str(clips["tone"]), str(bad), str(clips["rotated"]), "-o", str(outdir),
                   "--model", "selfie")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    assert sorted(p.name for p in outdir.iterdir()) == ["rotated.mp4", "tone.mp4"]


def test_an_unreadable_input_is_said_before_the_model_loads(clips, tmp_path):
    """Not one input reads as a video: each is named on its own line at once, with PyAV's reason in
    words (no "[Errno 1094995529]"), the model never loads, and no `vbg doctor` hint follows (the
    machine is fine, the file is not)."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all\n" * 100)
    half = tmp_path / "half.mp4"
    data = clips["tone"].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    proc = run_vbg("process", str(bad), "-o", str(tmp_path / "o.mp4"), "--model", "selfie")
    assert proc.returncode == 9 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and "broken.mp4: not a readable video (Invalid data" in errors[0], proc.stderr
    assert "Errno" not in proc.stderr and "vbg doctor" not in proc.stderr
    assert "model selfie" not in proc.stderr  # nothing loaded, no worker count measured
    proc = run_vbg("process", str(bad), str(half), "-o", str(tmp_path / "out"), "--model", "selfie")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 9 and len(errors) == 2, proc.stderr
    assert "broken.mp4" in errors[0] and "half.mp4" in errors[1] and "model selfie" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "half.mp4"]


def test_glob_pattern_and_existing_output_refused(clips, tmp_path):
    outdir = tmp_path / "g"
    pattern = str(clips["dir"] / "t*.mp4")
    proc = run_vbg("process", pattern, "-o", str(outdir), "--model", "selfie", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in outdir.iterdir()] == ["tone.mp4"]
    before = (outdir / "tone.mp4").read_bytes()
    again = run_vbg("process", pattern, "-o", str(outdir), "--model", "selfie")
    # refused before any model loads or any file is touched: exit 10 (an output in the way)
    assert again.returncode == 10 and "--overwrite" in again.stderr
    assert "model selfie" not in again.stderr  # the model was never loaded
    assert (outdir / "tone.mp4").read_bytes() == before


def test_one_input_whose_name_has_glob_characters_is_not_a_batch(clips, tmp_path):
    """A downloaded 'talk [1080p].mp4' is one file, not a pattern: -o names the output file."""
    src = tmp_path / "talk [1080p] *?.mp4"
    src.write_bytes(clips["tone"].read_bytes())
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(src), "-o", str(out), "--model", "selfie", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == 24


def test_json_lines_for_scripts(clips, tmp_path):
    proc = run_vbg("process", str(clips["tone"]), "-o", str(tmp_path / "j.mp4"), "--model", "selfie", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["frames"] == 24
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 24 and events[-1]["output"].endswith("j.mp4")


def test_sigint_leaves_a_playable_partial_file(clips, tmp_path):
    long_clip = write_clip(tmp_path / "long.mp4", [f for f, _ in person_clip_frames(600, (360, 640))], fps=30)
    out = tmp_path / "cut.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "process", str(long_clip), "-o", str(out),
                             "--model", "selfie", "--quality", "best"], stderr=subprocess.PIPE, text=True)
    stderr = StderrLines(proc)
    stderr.wait_for(progress_shows_frames(600), "progress line")  # frames are being written
    proc.send_signal(signal.SIGINT)
    _, err = stderr.finish()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    partial = tmp_path / "cut.partial.mp4"
    assert partial.is_file() and not out.exists()
    n = _frames(partial)
    assert 0 < n < 600
    assert str(n) in err  # it says how many frames it kept


def test_a_batch_interrupted_names_the_files_it_did_not_begin(clips, tmp_path):
    """Ctrl-C during the first file of three: its partial file is kept, and one line names the two
    not begun (they went unsaid, and the same command run again stops at the first output there)."""
    long_clip = write_clip(tmp_path / "long.mp4", [f for f, _ in person_clip_frames(600, (360, 640))], fps=30)
    outdir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "process", str(long_clip), str(clips["tone"]),
                             str(clips["rotated"]), "-o", str(outdir), "--model", "selfie", "--quality", "best"],
                            stderr=subprocess.PIPE, text=True)
    stderr = StderrLines(proc)
    stderr.wait_for(progress_shows_frames(600), "progress line")
    proc.send_signal(signal.SIGINT)
    _, err = stderr.finish()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert (f"vbg: error: interrupted: 2 file(s) not begun: {clips['tone']}, {clips['rotated']} (the same command "
            "with --skip-existing does them, leaving the outputs done)") in err.splitlines()
    assert sorted(p.name for p in outdir.iterdir()) == ["long.partial.mp4"]


def test_skip_existing_does_the_rest_of_a_batch_and_leaves_the_outputs_done(clips, tmp_path):
    """An interrupted batch run again: without a flag it stops at the first output there (exit 10),
    and --overwrite would redo every file. --skip-existing leaves the outputs there untouched, says
    which inputs it left in one line, and does the rest (an interrupted file's ``.partial`` output
    is not its output: that file is done again). With every output there, nothing is loaded
    (exit 0); --json gives a ``skipped`` event per input; with --overwrite it is refused."""

    outdir = tmp_path / "out"
    batch = [str(clips["tone"]), str(clips["rotated"])]
    first = run_vbg("process", *batch, "-o", str(outdir), "--model", "selfie", "-q")
    assert first.returncode == 0, first.stderr
    done, redo = outdir / "tone.mp4", outdir / "rotated.mp4"
    kept = (done.stat().st_ino, done.read_bytes())
    redo.unlink()
    (outdir / "rotated.partial.mp4").write_bytes(b"what an interrupted run kept")
    again = run_vbg("process", *batch, "-o", str(outdir), "--model", "selfie", "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert (f"vbg: skipping 1 input(s) whose output is already there (--overwrite redoes them): {clips['tone']}; "
            "1 to do") in again.stderr.splitlines()
    assert (done.stat().st_ino, done.read_bytes()) == kept
    assert _frames(redo) == _frames(clips["rotated"])

    json_run = run_vbg("process", *batch, "-o", str(outdir), "--model", "selfie", "--skip-existing", "--json")
    assert json_run.returncode == 0, json_run.stderr
    assert [json.loads(line) for line in json_run.stdout.splitlines()] == [
        {"event": "skipped", "input": src, "output": str(outdir / f"{Path(src).stem}.mp4")} for src in batch]
    assert "model selfie" not in json_run.stderr  # nothing left to do: the model is not loaded

    quiet = run_vbg("process", *batch, "-o", str(outdir), "--model", "selfie", "--skip-existing", "-q")
    assert quiet.returncode == 0 and "skipping 2 input(s)" in quiet.stderr  # -q: one line per file, this too

    both = run_vbg("process", *batch, "-o", str(outdir), "--model", "selfie", "--skip-existing", "--overwrite")
    assert both.returncode == 2 and "give one of the two" in both.stderr

    own = tmp_path / "own"  # -o the inputs' folder: an output that is its input is refused, never "done"
    own.mkdir()
    for src in batch:
        (own / Path(src).name).write_bytes(Path(src).read_bytes())
    into_itself = run_vbg("process", *(str(own / Path(src).name) for src in batch), "-o", str(own), "--model",
                          "selfie", "--skip-existing")
    assert into_itself.returncode == 10 and "is the input" in into_itself.stderr, into_itself.stderr


def test_a_pattern_leaves_out_an_earlier_run_s_folder_and_takes_a_file_named_twice_once(clips, tmp_path):
    """``vbg process 'rec/*' -o rec/out`` run again once a new recording came: the pattern matches
    the first run's output folder, which is left out with a line (it stopped the batch: "rec/out
    is a folder with no images in it"); a file both matched and named is processed once (it was
    refused: "would both be written to")."""
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "tone.mp4").write_bytes(clips["tone"].read_bytes())
    first = run_vbg("process", str(rec / "*"), "-o", str(rec / "out"), "--model", "selfie", "--quiet")
    assert first.returncode == 0, first.stderr
    (rec / "new.mp4").write_bytes(clips["tone"].read_bytes())
    again = run_vbg("process", str(rec / "*"), str(rec / "new.mp4"), "-o", str(rec / "out"), "--model", "selfie",
                    "--overwrite")
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    lines = again.stderr.splitlines()
    assert f"vbg: {rec / '*'}: left out: {rec / 'out'} (a folder; name a folder to process the videos in it)" in lines
    assert f"vbg: given more than once, processed once: {rec / 'new.mp4'}" in lines
    assert sorted(p.name for p in (rec / "out").iterdir()) == ["new.mp4", "tone.mp4"]


def test_a_trailing_slash_makes_a_png_folder_of_a_name_with_a_dot(clips, tmp_path):
    """``-o shots.v2/``: the slash says a folder, whatever its name holds (it was refused as an
    unknown output type '.v2'); without the slash the name stays refused as an unknown file type."""
    out = tmp_path / "shots.v2"
    proc = run_vbg("process", str(clips["tone"]), "-o", f"{out}/", "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("frame_*.png"))) == 24
    proc = run_vbg("process", str(clips["tone"]), "-o", str(tmp_path / "notes.v2"), "--model", "selfie")
    assert proc.returncode == 2 and "unknown output type '.v2'" in proc.stderr, proc.stderr


def test_the_current_folder_as_output_is_a_named_png_folder(clips, tmp_path, monkeypatch):
    """``-o .`` (one input: a PNG folder) in an empty folder, with --overwrite as the refusal says:
    the frames are written there (it ended in a traceback: '.' has an empty name), also where the
    folder's name holds a dot, and from the Python API; ``-o x.mp4/`` is a folder too."""
    here = tmp_path / "release-1.0"
    here.mkdir()
    proc = subprocess.run([sys.executable, "-m", "vbg", "process", str(clips["tone"]), "-o", ".", "--model", "selfie",
                           "--overwrite"], capture_output=True, text=True, cwd=here, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(list(here.glob("frame_*.png"))) == 24
    proc = run_vbg("process", str(clips["tone"]), "-o", f"{tmp_path / 'x.mp4'}/", "--model", "selfie")
    assert proc.returncode == 0 and len(list((tmp_path / "x.mp4").glob("frame_*.png"))) == 24, proc.stderr
    import vbg

    api = tmp_path / "api"
    api.mkdir()
    monkeypatch.chdir(api)
    assert vbg.process_file(clips["tone"], ".", model="selfie", mode="matte", overwrite=True).frames == 24
    assert len(list(api.glob("frame_*.png"))) == 24


def test_bad_options_are_one_line(clips, tmp_path):
    for args, needle in ((["--alpha", "-o", str(tmp_path / "a.mp4")], "H.264 has no alpha"),
                         (["-o", str(tmp_path / "x.avi")], "unknown output type"),
                         (["--color", "nocolour", "-o", str(tmp_path / "c.mp4")], "--color"),
                         (["--window", "0", "-o", str(tmp_path / "w.mp4")], "--window"),
                         (["--workers", "0", "-o", str(tmp_path / "k.mp4")], "--workers '0' is out of range"),
                         (["--workers", "two", "-o", str(tmp_path / "t.mp4")],
                          "--workers 'two' is neither a number nor auto: use 1..16 or auto")):
        proc = run_vbg("process", str(clips["tone"]), "--model", "selfie", *args)
        assert proc.returncode != 0
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
        assert len(errors) == 1 and needle in errors[0] and "Traceback" not in proc.stderr, proc.stderr


def test_workers_auto_is_understood_in_capitals(clips, tmp_path):
    proc = run_vbg("process", str(clips["tone"]), "--model", "selfie", "--workers", "AUTO", "-o",
                   str(tmp_path / "k.mp4"), "-q")
    assert proc.returncode == 0 and (tmp_path / "k.mp4").exists(), proc.stderr


def test_an_unknown_mode_in_a_config_file_is_said_alone(clips, tmp_path):
    """``[output] mode = 'bogus'``: one line naming the mode; the output check took the unknown mode
    for an alpha one and said "H.264 has no alpha" as well."""
    config = tmp_path / "bad.toml"
    config.write_text("[output]\nmode = 'bogus'\n")
    proc = run_vbg("process", str(clips["tone"]), "-o", str(tmp_path / "o.mp4"), "--config", str(config),
                   "--model", "selfie")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 2 and errors == [f"vbg: error: --config {config}: [output] mode = 'bogus' is not known: "
                                               "use rgb, rgba or matte"], proc.stderr


def test_video_background_is_frame_exact_and_deterministic(clips, tmp_path):
    """Offline, the background frame on screen at an output frame's time goes behind it (looped):
    two runs give the same file."""
    bg = make_clip(tmp_path / "bg.mp4", size=(64, 48), audio=False)  # 24 frames, a moving square
    outs = []
    for name in ("a.mp4", "b.mp4"):
        out = tmp_path / name
        proc = run_vbg("process", str(clips["person"]), "-o", str(out), "--background", str(bg), "--model", "selfie")
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    with av.open(str(outs[0])) as a, av.open(str(outs[1])) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    assert len(fa) == 45
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    # The corner (room, not person) changes between frames: the background video plays.
    assert np.abs(fa[0][:40, :40].astype(int) - fa[5][:40, :40].astype(int)).mean() > 5


def test_a_camcorders_mts_plays_as_a_background(clips, tmp_path):
    """A camcorder's .MTS (a phone's .3gp, a recorder's .ts: every kind vbg process reads) given as
    --background plays as a video. It was refused: "not an image vbg can read"."""
    from media import write_ts_av

    colours = [np.full((48, 64, 3), (255, 0, 0) if i < 15 else (0, 0, 255), np.uint8) for i in range(30)]
    bg = write_ts_av(tmp_path / "00001.MTS", colours, 30, audio_s=0)
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(clips["person"]), "-o", str(out), "--background", str(bg), "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    frames = read_frames(out)
    corner = [f[:8, :8].reshape(-1, 3).mean(0) for f in (frames[0], frames[20])]
    assert corner[0][0] > 200 > corner[0][2] and corner[1][2] > 200 > corner[1][0], corner  # red, then blue


@pytest.mark.parametrize("fps", [50, 25])
def test_a_video_background_plays_at_its_own_rate_behind_footage_of_another(tmp_path, fps):
    """A 25 fps background loop behind 50 fps footage (a phone's 60p behind a 24p stock loop, say):
    it plays at its own speed, each of its frames behind two output frames, and loops at its end,
    as the live filter plays it. It advanced one frame per output frame: twice as fast here."""
    import cv2

    greys = [np.full((90, 160, 3), 12 + 12 * k, np.uint8) for k in range(20)]  # 0.8 s at 25 fps
    bg = write_clip(tmp_path / "bg.mp4", greys, fps=25, crf=0)
    src = write_clip(tmp_path / "talk.mp4", [f for f, _ in person_clip_frames(80, (90, 160))], fps=fps)
    out = tmp_path / "frames"  # PNG frames: the background's levels as they are
    proc = run_vbg("process", str(src), "-o", str(out), "--background", str(bg), "--model", "selfie",
                   "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    corners = [float(cv2.imread(str(p))[:6, :6].mean()) for p in sorted(out.glob("frame_*.png"))]  # the room
    assert len(corners) == 80
    shown = [round((c - 12) / 12) for c in corners]  # which background frame
    assert shown == [(i * 25 // fps) % 20 for i in range(80)], shown


def test_an_animated_webp_background_plays_at_its_own_rate_in_vbg_process(tmp_path):
    """``vbg process --background loop.webp`` (an animated WebP, GIPHY's format, which FFmpeg cannot
    decode) plays it behind 50 fps footage at its own 25 fps, looped, as a video background plays.
    It stood still on its first frame. OpenCV 4.10 cannot read one, 4.11 reads its first frame: said in one line."""
    import cv2

    from media import write_animation
    from vbg.images import opencv_reads_animations

    bg = write_animation(tmp_path / "loop.webp", "webp", [(12 + 12 * k,) * 3 for k in range(20)], fps=25,
                         size=(90, 160))  # 0.8 s
    src = write_clip(tmp_path / "talk.mp4", [f for f, _ in person_clip_frames(80, (90, 160))], fps=50)
    out = tmp_path / "frames"
    proc = run_vbg("process", str(src), "-o", str(out), "--background", str(bg), "--model", "selfie",
                   "--workers", "1")
    if not opencv_reads_animations():  # 4.10 cannot read one; 4.11 reads its first frame only
        said = "reads only its first frame" if hasattr(cv2, "imreadanimation") else "is an animated WebP, which OpenCV"
        assert proc.returncode == (0 if hasattr(cv2, "imreadanimation") else 9) and said in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    corners = [float(cv2.imread(str(p))[:6, :6].mean()) for p in sorted(out.glob("frame_*.png"))]  # the room
    assert len(corners) == 80
    shown = [round((c - 12) / 12) for c in corners]  # which background frame
    assert shown == [(i * 25 // 50) % 20 for i in range(80)], shown


class _Worker:
    """A real segmenter made awkward: late on every other frame (``delay_s``), so that two
    workers finish out of order, or failing with a model error on its ``fail_at``-th frame."""

    failed = threading.Event()  # set by a worker as it fails

    def __init__(self, seg, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self._seg, self._delay, self._fail_at, self.calls = seg, delay_s, fail_at, 0
        self.calls_after_failure = 0

    def __getattr__(self, name):
        return getattr(self._seg, name)

    def segment(self, rgb):
        self.calls += 1
        self.calls_after_failure += _Worker.failed.is_set()
        if self.calls == self._fail_at:
            from vbg.errors import ModelError

            _Worker.failed.set()
            raise ModelError("inference failed (test)")
        if self._delay and self.calls % 2:
            time.sleep(self._delay)
        return self._seg.segment(rgb)


def test_two_workers_give_the_same_frames_in_order_as_one(clips, tmp_path):
    """vbg process runs two model sessions on alternate frames by default on a CPU; masks that come
    back out of order must still be smoothed and written in frame order: the matte equals the
    one-worker matte frame for frame."""
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    cfg = ProcessConfig(model=scfg, mode="matte")
    mattes = {}
    with create_segmenter(scfg) as a, create_segmenter(scfg) as b:
        for name, segs in (("one", (a,)), ("two", (_Worker(a, delay_s=0.03), b))):
            out = tmp_path / f"{name}"
            res = FileProcessor(cfg, *segs).process(clips["person"], out, Progress(name, None, mode="quiet"))
            assert res.frames == 45
            mattes[name] = [cv2_read(p) for p in sorted(out.glob("*.png"))]
    assert len(mattes["one"]) == len(mattes["two"]) == 45
    for i, (x, y) in enumerate(zip(mattes["one"], mattes["two"])):
        assert np.array_equal(x, y), f"frame {i} differs"


def test_smoothing_on_several_threads_writes_the_same_matte(clips, tmp_path, monkeypatch):
    """On a machine with many cores vbg process smooths several frames at once (one thread per 4
    cores): the matte it writes is the one-thread matte, frame for frame, and the run reports
    the threads it used."""
    import os

    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    cfg = ProcessConfig(model=scfg, mode="matte")
    mattes = {}
    with create_segmenter(scfg) as seg:
        for cores in (2, 16):
            monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
            out = tmp_path / f"cores{cores}"
            res = FileProcessor(cfg, seg).process(clips["person"], out, Progress("p", None, mode="quiet"))
            assert res.frames == 45 and res.buffers.smooth_threads == (1 if cores == 2 else 4)
            mattes[cores] = [cv2_read(p) for p in sorted(out.glob("*.png"))]
    assert len(mattes[2]) == len(mattes[16]) == 45
    for i, (x, y) in enumerate(zip(mattes[2], mattes[16])):
        assert np.array_equal(x, y), f"frame {i} differs"


def cv2_read(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_a_failing_worker_stops_the_whole_file(clips, tmp_path):
    """One of two workers fails: the file stops there, instead of the other worker running on
    through the whole input while every later mask waits in memory for the frame that never
    comes; the error is the model's, and any frames written before it are kept playable."""
    from vbg.errors import ModelError
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    _Worker.failed.clear()
    with create_segmenter(scfg) as a, create_segmenter(scfg) as b:
        good = _Worker(b)
        proc = FileProcessor(ProcessConfig(model=scfg), _Worker(a, fail_at=3), good)
        with pytest.raises(ModelError, match="inference failed") as err:
            proc.process(clips["person"], tmp_path / "out.mp4", Progress("x", None, mode="quiet"))
    # Counted from the failure on: how far the other worker got before it is a matter of speed.
    assert good.calls_after_failure <= 8, f"the other worker ran on through {good.calls_after_failure} more frames"
    assert not (tmp_path / "out.mp4").exists()
    msg = str(err.value)
    if " kept in " in msg:
        assert 1 <= _frames(msg.split(" kept in ")[1].rstrip(")")) < 45


def test_an_output_name_near_the_length_limit_is_written(clips, tmp_path):
    """A 249-character name fits the folder (255 bytes at most); the temporary and partial
    names built from it must fit too, or the run fails with a misleading 'name too long'."""
    out = tmp_path / ("n" * 245 + ".mp4")
    proc = run_vbg("process", str(clips["tone"]), "-o", str(out), "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == 24
