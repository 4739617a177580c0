"""Resources of `vbg process`: what a file takes (threads, memory) is given back when it is
done, however many files a batch holds; frames in flight are bounded in bytes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_vbg
from media import person_clip_frames, write_clip

PHOTO = Path(__file__).resolve().parents[1] / "data/people/example03_background01.jpg"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="samples /proc/self/status")


def _status() -> tuple[int, float]:
    """(OS threads of this process, resident memory in MB)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_batch_gives_back_each_files_threads_and_memory(tmp_path, suffix):
    """A batch of 24 short files through one processor, as `vbg process` runs a folder. Each
    file's encoder threads are gone when it ends, and memory does not grow with the number of
    files (it grew ~30 MB a file, 4 threads a file: the encoder lived on until the garbage
    collector happened to run). The collector is off here, since when it runs depends on how
    many objects were allocated: whatever a file holds must be freed when the file is done."""
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    clip = write_clip(tmp_path / "clip.mp4", [f for f, _ in person_clip_frames(15, (360, 640))])
    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with create_segmenter(scfg) as a, create_segmenter(scfg) as b:
            proc = FileProcessor(ProcessConfig(model=scfg), a, b)
            # a first file sets up what libraries create once per process (codec tables, pools)
            proc.process(clip, tmp_path / f"prime{suffix}", Progress("prime", None, mode="quiet"))
            threads0, _ = _status()
            rss = {}
            for i in range(1, 25):
                out = tmp_path / f"out{i % 2}{suffix}"  # alternate names: the old output is replaced
                out.unlink(missing_ok=True)
                res = proc.process(clip, out, Progress(str(i), None, mode="quiet"))
                assert res.frames == 15
                threads, rss[i] = _status()
                assert threads == threads0, f"after file {i}: {threads} threads, {threads0} before the batch"
    finally:
        if was_enabled:
            gc.enable()
    # 20 files later: a leak of even a few MB a file shows; allocator noise stays far below
    assert rss[24] - rss[4] < 40.0, f"RSS after file 4: {rss[4]:.0f} MB, after file 24: {rss[24]:.0f} MB"


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
