"""Resources of `vbg process`: what a file takes (threads, memory) is given back when it is
done, however many files a batch holds; frames in flight are bounded in bytes."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from media import person_clip_frames, write_clip

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
