"""`vbg process --ray` where Ray cannot start or reach its cluster: one line, its exit code, at once.

Real ``vbg`` processes and the real Ray package; no cluster is started (each case fails before one
would be of use), so these run in seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from media import person_clip_frames, write_clip

pytest.importorskip("ray", reason="the Ray tests need Ray: pip install 'vbg[ray]' (the README's test command installs it)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("raystart") / "clip.mp4", [f for f, _ in person_clip_frames(12, (96, 128))])


def _process(clip: Path, out: Path, *ray: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vbg", "process", str(clip), "-o", str(out), "--model", "selfie",
                           "--ray", *ray], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=240)


def _one_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert proc.returncode == code and len(errors) == 1, proc.stderr
    return errors[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize(("scheme", "workers"), [("", "auto"), ("ray://", "auto"), ("", "AUTO")],
                         ids=["HOST:PORT", "ray://HOST:PORT", "--workers AUTO"])
def test_a_cluster_address_nothing_answers_at_is_one_line(clip, tmp_path, scheme, workers):
    """It hung for minutes (Ray retries the address, printing a warning every few seconds). And
    ``--workers AUTO`` is auto with --ray too (an AttributeError traceback)."""
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    line = _one_error(_process(clip, tmp_path / "out.mp4", address, "--workers", workers), 2)
    assert line.startswith(f"vbg: error: --ray {address}: no Ray cluster answers there (")
    assert line.endswith("): start one (ray start --head) or pass its address")
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="/dev/null as a home folder is POSIX")
def test_a_home_ray_cannot_write_to_is_one_line(clip, tmp_path):
    """A local Ray keeps its session files under the home folder: one that is no folder (a
    service's ``HOME=/dev/null``) was a NotADirectoryError traceback from ray.init."""
    line = _one_error(_process(clip, tmp_path / "out.mp4", env={"HOME": "/dev/null",
                                                                "VBG_CACHE_DIR": str(tmp_path / "cache")}), 10)
    assert line.startswith("vbg: error: --ray: Ray could not write its files (Not a directory: '/dev/null/")
    assert line.endswith("make them writable (HOME, TMPDIR)")
    assert not (tmp_path / "out.mp4").exists()
