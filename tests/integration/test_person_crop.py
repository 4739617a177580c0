"""The person crop end to end (``--crop auto``, the default): someone small in the picture is
found better than from the whole frame alone, by ``vbg segment``, ``vbg process`` and the live
filter, with the bundled selfie model; a close-up is left as it was."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import iou, run_vbg
from media import person_clip_frames, read_alpha_video, write_clip

SMALL = 0.25  # the person's height, of the frame's: someone at the back of the room


@pytest.fixture(scope="module")
def small_person(tmp_path_factory):
    frames = list(person_clip_frames(24, (360, 640), scale=SMALL))
    d = tmp_path_factory.mktemp("small")
    return write_clip(d / "small.mp4", [f for f, _ in frames], fps=24), [a for _, a in frames]


def test_vbg_segment_finds_a_small_person_better_with_the_crop(tmp_path):
    shots = list(person_clip_frames(40, (360, 640), scale=SMALL))[::10]
    paths = []
    for i, (rgb, _) in enumerate(shots):
        p = tmp_path / f"shot{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    scores = {}
    for mode in ("auto", "off"):
        out = tmp_path / mode
        proc = run_vbg("segment", *paths, "--model", "selfie", "--crop", mode, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        scores[mode] = [iou(cv2.imread(str(out / f"shot{i}.png"), cv2.IMREAD_GRAYSCALE) / 255.0, truth)
                        for i, (_, truth) in enumerate(shots)]
    # (measured: 0.87 against 0.63 on these frames)
    assert np.mean(scores["auto"]) > np.mean(scores["off"]) + 0.1, scores
    assert min(a - o for a, o in zip(scores["auto"], scores["off"])) > -0.02, scores


def test_vbg_process_finds_a_small_person_better_with_the_crop_and_whatever_the_workers(small_person, tmp_path):
    clip, truth = small_person
    got = {}
    for name, flags in (("auto", ["--workers", "1"]), ("auto2", ["--workers", "2"]), ("off", ["--crop", "off"])):
        out = tmp_path / f"{name}.mov"
        proc = run_vbg("process", str(clip), "-o", str(out), "--alpha", "--model", "selfie", *flags)
        assert proc.returncode == 0, proc.stderr
        got[name] = [f[:, :, 3] for f in read_alpha_video(out)]
        assert len(got[name]) == len(truth)
    score = {k: float(np.mean([iou(a / 255.0, t) for a, t in zip(v, truth)])) for k, v in got.items()}
    assert score["auto"] > score["off"] + 0.05, score
    # Each frame's box comes from the masks of the frames two before it, whichever worker made them.
    for a, b in zip(got["auto"], got["auto2"]):
        np.testing.assert_array_equal(a, b)


def test_a_close_up_is_not_cropped(tmp_path):
    rgb, truth = next(person_clip_frames(1, (360, 640)))  # the person fills the frame's height
    p = tmp_path / "close.png"
    cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    masks = {}
    for mode in ("auto", "off"):
        out = tmp_path / f"{mode}.png"
        proc = run_vbg("segment", str(p), "--model", "selfie", "--crop", mode, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        masks[mode] = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(masks["auto"], masks["off"])
    assert iou(masks["auto"] / 255.0, truth) > 0.85


def _live(clip, mode: str, run_s: float, frames: int):
    """The live filter from its command line (``--crop MODE --align --skip 1``, green backdrop) on
    the lockstep clock: each model run, on the whole frame or on the box, takes ``run_s`` of it,
    whatever the machine's load. --align: every frame shown waits for its own mask, so what is
    compared is the masks, not which frames a busy machine skipped."""
    from lockstep import Lockstep
    from vbg import cli

    argv = ["--source", str(clip), "--model", "selfie", "--crop", mode, "--align", "--skip", "1",
            "--color", "#00ff00", "--no-vcam", "--no-control", "--frames", str(frames)]
    cfg = cli.live_config(cli.build_live_parser().parse_args(argv))

    def outputs(now):  # aligned: the frames the model has answered for by now
        done = run.model.answered(now)
        return sum(1 for k in range(run.captured()) if k in done)

    run = Lockstep(cfg, clip, run_s, frames=frames, outputs=outputs, to_model=lambda k: True, crop=True,
                   keep=lambda rgb: (rgb[:, :, 1].astype(np.int16) - np.maximum(rgb[:, :, 0], rgb[:, :, 2])) < 100)
    run.run()
    assert run.sink.seqs == list(range(frames)) and run.sink.mask_seqs[:-1] == run.sink.seqs[:-1]
    return run


@pytest.mark.parametrize("run_ms", [40, 70])
def test_the_live_filter_crops_a_small_person_while_two_model_runs_fit_a_frame_interval(tmp_path, run_ms,
                                                                                         monkeypatch):
    """At 8 fps (125 ms a frame) a 40 ms model crops (two runs, 80 ms) and finds the small person
    better than from the whole frame; a 70 ms one would need 140 ms, so it looks at the whole
    frame alone, and the output is what ``--crop off`` gives, bit for bit."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user config file
    fps, n = 8, 24
    frames = list(person_clip_frames(n, (360, 640), scale=SMALL))
    clip = write_clip(tmp_path / "small8.mp4", [f for f, _ in frames], fps=fps)
    truth = [a for _, a in frames]
    runs = {mode: _live(clip, mode, run_ms / 1000.0, n) for mode in ("auto", "off")}
    crop = runs["auto"].pipe._seg_now
    score = {mode: float(np.mean([iou(p.astype(np.float32), truth[s]) for s, p in zip(r.sink.seqs, r.sink.kept)]))
             for mode, r in runs.items()}
    if run_ms == 40:
        assert crop.crops >= n // 2 and crop.declined == 0, (crop.crops, crop.declined)
        assert score["auto"] > score["off"] + 0.05, score
    else:
        assert crop.crops == 0 and crop.declined >= n // 2, (crop.crops, crop.declined)
        for a, b in zip(runs["auto"].sink.kept, runs["off"].sink.kept):
            np.testing.assert_array_equal(a, b)


def test_the_python_api_crops_as_vbg_segment_does():
    from vbg.api import Segmenter

    shots = list(person_clip_frames(40, (360, 640), scale=SMALL))[::10]
    with Segmenter("selfie", device="cpu") as auto, Segmenter("selfie", device="cpu", crop="off") as off:
        a = [iou(auto.segment(rgb), truth) for rgb, truth in shots]
        o = [iou(off.segment(rgb), truth) for rgb, truth in shots]
        close, _ = next(person_clip_frames(1, (360, 640)))
        np.testing.assert_array_equal(auto.segment(close), off.segment(close))  # a close-up: unchanged
    assert np.mean(a) > np.mean(o) + 0.1, (a, o)
