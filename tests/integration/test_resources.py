"""Resources of `vbg process`: what a file takes (threads, memory) is given back when it is
done, however many files a batch holds; frames in flight are bounded in bytes."""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_vbg
from media import person_clip_frames, write_clip
from procstatus import status as _status, thread_names as _thread_names

TESTS = Path(__file__).resolve().parents[1]
PHOTO = TESTS / "data/people/example03_background01.jpg"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="samples /proc/self/status")


# One batch in a fresh interpreter, as `vbg process DIR` runs it: the heap of a long test session
# (a thousand tests before it) would decide where the allocator puts each file's buffers.
_BATCH = """
import gc, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[5])  # tests/: procstatus
from procstatus import status
from vbg.inference import SegmenterConfig, create_segmenter
from vbg.offline.process import FileProcessor, ProcessConfig
from vbg.progress import Progress

clip, outdir, suffix, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
gc.collect()
gc.disable()
with create_segmenter(scfg) as a, create_segmenter(scfg) as b:
    proc = FileProcessor(ProcessConfig(model=scfg), a, b)
    # a first file sets up what libraries create once per process (codec tables, pools)
    proc.process(clip, outdir / f"prime{suffix}", Progress("prime", None, mode="quiet"))
    threads0, _ = status()
    per_file = []
    for i in range(1, n + 1):
        out = outdir / f"out{i % 2}{suffix}"  # alternate names: the old output is replaced
        out.unlink(missing_ok=True)
        frames = proc.process(clip, out, Progress(str(i), None, mode="quiet")).frames
        per_file.append([frames, *status(threads0)])
print(json.dumps({"threads0": threads0, "files": per_file}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_batch_gives_back_each_files_threads_and_memory(tmp_path, suffix):
    """A batch of 24 short files through one processor, as `vbg process` runs a folder. Each
    file's encoder threads are gone when it ends, and memory does not grow with the number of
    files (it grew ~30 MB a file, 4 threads a file: the encoder lived on until the garbage
    collector happened to run). The collector is off there, since when it runs depends on how
    many objects were allocated: whatever a file holds must be freed when the file is done."""
    import json

    clip = write_clip(tmp_path / "clip.mp4", [f for f, _ in person_clip_frames(15, (360, 640))])
    run = subprocess.run([sys.executable, "-c", _BATCH, str(clip), str(tmp_path), suffix, "24", str(TESTS)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout.splitlines()[-1])
    rss = {}
    for i, (frames, threads, mb) in enumerate(res["files"], 1):
        assert frames == 15
        assert threads == res["threads0"], f"after file {i}: {threads} threads, {res['threads0']} before the batch"
        rss[i] = mb
    # The leak was ~30 MB a file (600 MB over these 20). The allocator's arenas jump by 30-70 MB
    # now and then and settle (libvpx most): medians of five files, and a margin well above that.
    early = statistics.median(rss[i] for i in range(2, 7))
    late = statistics.median(rss[i] for i in range(20, 25))
    assert late - early < 150.0, f"RSS per file: {[round(rss[i]) for i in sorted(rss)]} MB"


class _FailsAt:
    """A real segmenter that fails at its n-th frame of each file, as a model can (a GPU error)."""

    def __init__(self, seg, n: int) -> None:
        self._seg, self._n, self.calls = seg, n, 0

    def input_size(self, hw):
        return self._seg.input_size(hw)

    def segment(self, rgb):
        self.calls += 1
        if self.calls % self._n == 0:
            from vbg.errors import ModelError

            raise ModelError("inference failed (test)")
        return self._seg.segment(rgb)


def test_files_that_fail_give_back_their_threads_and_frames_too(tmp_path):
    """A batch where every file fails half-way (its partial output kept): the failed file's
    encoder threads and frames are gone when process() returns (the error kept its stage, and
    so the writer and the frames in flight, in a reference cycle)."""
    from vbg.errors import ModelError
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    clip = write_clip(tmp_path / "clip.mp4", [f for f, _ in person_clip_frames(15, (180, 320))])
    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with create_segmenter(scfg) as seg:
            proc = FileProcessor(ProcessConfig(model=scfg), _FailsAt(seg, 8))
            with pytest.raises(ModelError):  # a first file sets up what libraries create once per process
                proc.process(clip, tmp_path / "prime.mp4", Progress("prime", None, mode="quiet"))
            threads0, _ = _status()
            names0 = _thread_names()
            for i in range(6):
                with pytest.raises(ModelError, match="frames before it are kept"):
                    proc.process(clip, tmp_path / f"out{i}.mp4", Progress(str(i), None, mode="quiet"))
                threads, _ = _status(threads0)
                assert threads == threads0, (f"after failed file {i}: {threads} threads, {threads0} before "
                                             f"({_thread_names()} against {names0})")
            gc.set_debug(gc.DEBUG_SAVEALL)  # what only the collector would free, kept to be looked at
            gc.collect()
            held = {type(o).__name__ for o in gc.garbage} & {"DecodedFrame", "VideoWriter", "FrameQueue", "_Stage"}
            assert not held, f"a failed file left {held} in reference cycles"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------------------- the export cache
@pytest.fixture(scope="module")
def weights(tmp_path_factory, rmbg_net) -> Path:
    """A safetensors checkpoint (random init): what --model weights.safetensors exports."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rmbg_net.state_dict().items()}, str(path), metadata={"format": "pt"})
    return path


def _exports(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "exports").iterdir())


@pytest.mark.slow
def test_two_workers_export_the_weights_once(tmp_path, weights):
    """--workers 2 on an empty cache: both sessions want the same export at their first frame.
    One exports, the other waits for it (they used to run torch.onnx.export at once: a traceback)."""
    clip = write_clip(tmp_path / "clip.mp4", [f for f, _ in person_clip_frames(6, (90, 160))])
    cache = tmp_path / "cache"
    out = tmp_path / "out.mp4"
    proc = run_vbg("process", str(clip), "-o", str(out), "--model", str(weights), "--workers", "2",
                   "--size", "64", env={"VBG_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("exporting model.safetensors") == 1, proc.stderr
    onnx = [n for n in _exports(cache) if n.endswith(".onnx")]
    assert len(onnx) == 1 and not [n for n in _exports(cache) if "partial" in n], _exports(cache)
    assert "6 frames" in proc.stderr


@pytest.mark.slow
def test_two_vbg_processes_share_one_export(tmp_path, weights):
    """Two vbg runs started together on one empty cache: the second waits for the first's export
    (a lock between processes) instead of exporting the same file again."""
    cache = tmp_path / "cache"
    env = {**os.environ, "VBG_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-m", "vbg", "segment", str(PHOTO), "--model", str(weights),
                               "--size", "64", "-o", str(tmp_path / f"mask{i}.png")],
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum(e.count("exporting model.safetensors") for e in errs) == 1, errs
    assert len([n for n in _exports(cache) if n.endswith(".onnx")]) == 1, _exports(cache)
    assert (tmp_path / "mask0.png").is_file() and (tmp_path / "mask1.png").is_file()


@pytest.mark.slow
def test_a_damaged_cached_export_is_made_again(tmp_path, weights):
    """vbg's own export of --model weights.safetensors, cut short since (a disk fault, another
    tool): the next run says so in one line and exports it again. Every later run failed with
    "ONNX Runtime cannot load rmbg14-...onnx: ... download or export it again, or pass another
    --model", naming neither the file nor the cache."""
    cache = tmp_path / "cache"
    env = {"VBG_CACHE_DIR": str(cache)}

    def segment(i: int) -> subprocess.CompletedProcess:
        return run_vbg("segment", str(PHOTO), "--model", str(weights), "--size", "64",
                       "-o", str(tmp_path / f"mask{i}.png"), env=env)

    assert segment(0).returncode == 0
    (export,) = [p for p in (cache / "exports").iterdir() if p.suffix == ".onnx"]
    whole = export.stat().st_size
    with open(export, "r+b") as f:
        f.truncate(1000)
    proc = segment(1)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"vbg: the cached export {export} cannot be loaded: exporting it again" in proc.stderr.splitlines()
    assert export.stat().st_size == whole and (tmp_path / "mask1.png").is_file()
    again = segment(2)
    assert again.returncode == 0 and "exporting" not in again.stderr, again.stderr  # kept, whole


def test_a_link_planted_at_the_export_lock_is_not_followed(tmp_path, weights):
    """The export cache opens its lock file with O_NOFOLLOW: a symbolic link put there (by another
    user of a shared cache) is refused in one line, and nothing is created where it points."""
    from vbg.errors import OutputError
    from vbg.models.export import cached_export, weights_fingerprint

    cache = tmp_path / "cache"
    (cache / "exports").mkdir(parents=True)
    name = f"rmbg14-{weights_fingerprint(weights)[:16]}-64x64.onnx"
    elsewhere = tmp_path / "elsewhere" / "planted"
    elsewhere.parent.mkdir()
    (cache / "exports" / f".{name}.lock").symlink_to(elsewhere)
    with pytest.raises(OutputError) as err:
        cached_export(weights, (64, 64), cache)
    assert "cannot use the export cache" in str(err.value) and "\n" not in str(err.value)
    assert not elsewhere.exists()
    assert not (cache / "exports" / name).exists()


# ---------------------------------------------------------------------------- frames in flight
def test_frames_in_flight_fit_the_memory_budget():
    """The queues, the decoder's threads and the encoder's look-ahead come from the budget and the
    frame size: small frames get the full queues, the codecs' own thread counts and all the
    look-ahead the budget buys, large ones as many as fit (8K used to hold ~40 frames: 5.5 GB),
    never less than the smoothing window needs."""
    from vbg.config import MEMORY_MB
    from vbg.offline.process import LOOKAHEAD_MB, QUEUE, plan_buffers

    budget = MEMORY_MB << 20
    small = plan_buffers((360, 640), "rgb", 2, 2, budget, cores=16)
    assert small.depth == QUEUE and small.lookahead == MEMORY_MB // LOOKAHEAD_MB and small.bytes <= budget
    for hw in ((1080, 1920), (2160, 3840), (2160, 4096)):
        for cores in (2, 16, 64):
            b = plan_buffers(hw, "rgba", 2, 2, budget, cores=cores)
            assert b.bytes <= budget, (hw, cores, b)
            assert 1 <= b.depth <= QUEUE and b.decoder_threads >= 1
    big = plan_buffers((4320, 7680), "rgb", 2, 2, budget, cores=16)
    assert (big.depth, big.decoder_threads, big.encoder_threads, big.lookahead) == (1, 1, 1, 0)
    # the minimum: window centre and the 2 frames ahead, reader, 2 workers (+1 waiting each), two
    # queues of one, three output images and the one in the queue, one picture in each codec
    rgb = 7680 * 4320 * 3
    assert big.bytes == rgb * (3 + 1 + 4 + 2) + rgb * 4 + rgb // 2 + rgb
    tight = plan_buffers((4320, 7680), "rgb", 8, 2, 64 << 20)
    assert tight.depth == 1 and tight.bytes > 64 << 20  # the window is held whatever the budget


def test_many_cores_smooth_several_frames_at_once_within_the_budget():
    """On a GPU machine the one compose thread's smoothing bounded vbg process (RESULTS.md, "On an
    NVIDIA H200"): with many cores several frames are smoothed at once, one thread per 4 cores,
    4 at most, the frames and alphas they hold counted in the budget; a laptop's 2 or 4 cores, or
    a budget without room for it, keep one."""
    from vbg.config import MEMORY_MB
    from vbg.offline.process import plan_buffers

    budget = MEMORY_MB << 20
    assert [plan_buffers((1080, 1920), "rgb", 2, 1, budget, cores=c).smooth_threads
            for c in (2, 4, 8, 12, 16, 64)] == [1, 1, 2, 3, 4, 4]
    assert plan_buffers((1080, 1920), "rgb", 2, 1, budget, cores=16).bytes <= budget
    assert plan_buffers((4320, 7680), "rgb", 2, 2, budget, cores=16).smooth_threads == 1  # no room


def test_a_720p_file_holds_few_frames_at_the_default_budget():
    """Issue 13: at the default budget a 720p file holds 44 RGB frames' worth at most (queues of 2,
    25 frames of encoder look-ahead): it held 77 (queues of 8, x264 medium's 40 frames ahead),
    which made `vbg process` peak at 1.45x a plain per-frame loop's memory (now 1.15x). A larger
    budget still buys the presets' full look-ahead, and a small frame gets no longer a one."""
    from vbg.config import MEMORY_MB
    from vbg.offline.process import plan_buffers

    for workers in (1, 2):
        b = plan_buffers((720, 1280), "rgb", 2, workers, MEMORY_MB << 20, cores=2)
        assert b.depth == 2 and b.lookahead == 25, b
        assert b.bytes <= (44 + 2 * (workers - 1)) * b.frame_bytes, (b.bytes / b.frame_bytes, b)
    assert plan_buffers((720, 1280), "rgb", 2, 1, 1024 << 20, cores=2).lookahead == 50
    assert plan_buffers((90, 160), "rgb", 2, 1, MEMORY_MB << 20, cores=2).lookahead == 25


def _x264_options(path: Path) -> str:
    """The settings x264 wrote into the stream (its SEI: "x264 - core ... options: ...")."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    return data[start:data.index(b"\0", start)].decode("ascii", "replace")


def test_the_encoder_runs_with_the_look_ahead_the_budget_buys(tmp_path):
    """What x264 really ran with, read back from the file: 25 frames ahead at the default budget
    (x264 medium's 40 before), its preset's 40 with --memory 1024, and never more than a faster
    preset's own (veryfast: 10), whatever the budget."""
    import re

    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    clip = write_clip(tmp_path / "in.mp4", [f for f, _ in person_clip_frames(4, (90, 160))])
    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    got = {}
    with create_segmenter(scfg) as seg:
        for quality, memory in (("balanced", None), ("balanced", 1024), ("fast", 1024), ("best", 1024)):
            cfg = ProcessConfig(model=scfg, mode="matte", quality=quality)
            if memory is not None:
                cfg = ProcessConfig(model=scfg, mode="matte", quality=quality, memory=memory)
            out = tmp_path / f"{quality}-{memory}.mp4"
            res = FileProcessor(cfg, seg).process(clip, out, Progress(out.name, None, mode="quiet"))
            assert res.frames == 4
            got[quality, memory] = int(re.search(r"rc_lookahead=(\d+)", _x264_options(out)).group(1))
    assert got == {("balanced", None): 25, ("balanced", 1024): 40, ("fast", 1024): 10, ("best", 1024): 50}


def test_a_webm_opens_whatever_look_ahead_the_budget_allows(tmp_path):
    """VP9 holds at most 25 frames ahead (libvpx refuses 26 and up): a budget that allows more
    (1080p at --memory 400 planned 31 on 2 cores: "cannot set up VP9", exit 10) gets libvpx's 25."""
    import numpy as np

    from media import read_frames
    from vbg.media.info import probe
    from vbg.media.writer import VideoWriter

    clip = write_clip(tmp_path / "in.mp4", [f for f, _ in person_clip_frames(3, (90, 160))])
    info = probe(clip)
    with VideoWriter(tmp_path / "out.webm", info, mode="rgb", lookahead=40) as w:
        for i in range(3):
            w.write(i, None, i / 30, np.full((90, 160, 3), 80 * i, np.uint8))
    assert len(read_frames(tmp_path / "out.webm")) == 3


def test_a_large_file_runs_with_shallow_queues(tmp_path):
    """What a file got is reported with its result: a 4K file runs with the look-ahead the budget
    allows for it, a small one with all the budget buys, in the same batch."""
    import numpy as np

    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.config import MEMORY_MB
    from vbg.offline.process import QUEUE, FileProcessor, ProcessConfig
    from vbg.progress import Progress

    big = write_clip(tmp_path / "big.mp4", [np.full((2160, 3840, 3), 40 * i, np.uint8) for i in range(4)], crf=40)
    small = write_clip(tmp_path / "small.mp4", [f for f, _ in person_clip_frames(4, (90, 160))])
    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    with create_segmenter(scfg) as seg:
        proc = FileProcessor(ProcessConfig(model=scfg, mode="matte"), seg)
        r_big = proc.process(big, tmp_path / "big_out", Progress("big", None, mode="quiet"))
        r_small = proc.process(small, tmp_path / "small_out", Progress("small", None, mode="quiet"))
    assert r_big.frames == 4 and r_small.frames == 4
    assert r_big.buffers.lookahead < r_small.buffers.lookahead and r_big.buffers.bytes <= MEMORY_MB << 20
    assert r_small.buffers.depth == QUEUE


def _limited(limit_mb: int):
    import resource

    def set_limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    return set_limit


@pytest.mark.slow
def test_out_of_memory_is_reported_as_such(tmp_path):
    """An allocation that fails (here: an address-space limit that a 360p file fits in and an 8K
    file does not) is 'out of memory' with what to lower, its own exit code, one line; never a
    traceback or 'the file may be damaged'."""
    import numpy as np

    small = write_clip(tmp_path / "small.mp4", [f for f, _ in person_clip_frames(4, (360, 640))])
    big = write_clip(tmp_path / "big.mp4", [np.full((4320, 7680, 3), 60 * i, np.uint8) for i in range(3)], crf=40)
    limit = None
    for mb in (1500, 2000, 2500, 3000, 4000):  # the least this machine's vbg runs a small file in
        proc = subprocess.run([sys.executable, "-m", "vbg", "process", str(small), "-o", str(tmp_path / f"s{mb}.mp4"),
                               "--model", "selfie"], capture_output=True, text=True, preexec_fn=_limited(mb))
        if proc.returncode == 0:
            limit = mb
            break
    if limit is None:
        pytest.skip("vbg does not start under a 4 GB address-space limit here")
    proc = subprocess.run([sys.executable, "-m", "vbg", "process", str(big), "-o", str(tmp_path / "b.mp4"),
                           "--model", "selfie"], capture_output=True, text=True, preexec_fn=_limited(limit))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == 13, proc.stderr
    assert "Traceback" not in proc.stderr and "damaged" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and "out of memory while processing 7680x4320 frames" in errors[0], proc.stderr
    assert "lower --memory or --window" in errors[0]
