"""A one-minute soak of the live filter (python -m benchmarks.soak runs the
ten-minute one): paced looped clip, selfie model, recording on, virtual camera
through a discarding backend. Memory must stay flat while it runs, and every
thread and file it opened must be gone once it is closed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.soak import RSS_LIMIT_MB, make_clip, soak, table

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="samples /proc/self")


@pytest.mark.slow
def test_one_minute_live_run_leaks_nothing(tmp_path):
    clip = make_clip(tmp_path / "person.mp4", (360, 640), frames=60)
    result = soak(clip, 45.0, tmp_path, warmup_s=8.0, interval_s=15.0, prime_s=2.0)
    report = table(result) + f"\nthreads not there before: {result.leftover_threads}"
    assert [s.label for s in result.samples][:2] == ["before", "start"], report
    assert result.samples[-2].label == "end" and result.samples[-1].label == "closed", report
    # frames kept coming the whole time (how many is the machine's speed: benchmarks.soak reports it)
    flowing = [s.out_frames for s in result.samples if s.label not in ("before", "closed")]
    assert len(flowing) >= 3 and all(b > a for a, b in zip(flowing, flowing[1:])), report
    assert result.rss_growth_mb < RSS_LIMIT_MB, report
    assert result.leaked_threads <= 0, report
    assert result.leaked_fds <= 0, report
    assert result.recording_mb > 0, report
