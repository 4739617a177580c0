"""The wall-clock quality benchmark's recorder (benchmarks/quality_live.py) keeps, for each frame
the live pipeline outputs, the very alpha that frame was composited with: the pipeline runs on
the lockstep clock (tests/lockstep.py) with the real selfie model, and every output is rebuilt
from the clip's frame and the recorded alpha."""

import numpy as np

from benchmarks.quality_live import RecordedPipeline
from fakecam import fake_camera
from lockstep import Lockstep, _Observed
from media import person_clip_frames, write_clip
from vbg.compositing import Compositor, background_from_options
from vbg.config import LiveConfig, apply

N = 12


class _RecordedObserved(RecordedPipeline, _Observed):
    """The recorder with the lockstep driver's view of the hand-over slots."""


def test_the_recorder_keeps_the_alpha_each_output_frame_was_composited_with(tmp_path):
    frames = [f for f, _ in person_clip_frames(N, (180, 320))]
    clip = write_clip(tmp_path / "person.mp4", frames, fps=30)
    cfg = apply(LiveConfig(), {"model": {"model": "selfie"}, "background": {"color": "blue"},
                               "output": {"vcam_backend": "vbg-test-livq", "frames": N},
                               "control": {"control": False}})
    with fake_camera("vbg-test-livq", keep=False):
        run = Lockstep(cfg, clip, 0.02, frames=N, keep=lambda im: im.copy())
        pipe = run.pipe = _RecordedObserved(cfg, source=run.clip, n_frames=N, clock=run.clock,
                                            segmenter=run.model, sinks=[run.sink])
        run.run()
    assert run.sink.seqs == list(range(N))
    assert list(pipe.mask_seqs) == run.sink.mask_seqs and max(run.sink.mask_seqs) > 0
    b = cfg.background
    comp = Compositor((180, 320), background_from_options(None, b.color, None, live=True),
                      feather=b.feather, threshold=b.threshold)
    shifted = 0
    for seq, shown in zip(run.sink.seqs, run.sink.kept):
        image = run.clip.images[seq]
        np.testing.assert_array_equal(comp.compose(image, pipe.alphas[seq]), shown)
        if seq and not np.array_equal(comp.compose(image, pipe.alphas[seq - 1]), shown):
            shifted += 1  # the neighbour's alpha would not do: the check can see an off-by-one
    assert shifted >= N // 2
