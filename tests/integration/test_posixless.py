"""vbg without what only POSIX has (Windows lacks it): no ``fcntl``, no ``os.getloadavg``, no
``O_NOFOLLOW``/``O_DIRECTORY``, no directory descriptors, no ``fchmod``, no SIGHUP/SIGUSR1
(``tests/posixless.py`` takes them away on this Linux machine). vbg once imported ``fcntl`` on its
first line of file writing, so on Windows no command ran at all. Each command here runs as a
user runs it, in its own process, and its outputs are read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import PEOPLE, iou, read_alpha
from media import person_clip_frames, write_talk_clip

SHIM = Path(__file__).resolve().parents[1] / "posixless.py"
PHOTO = PEOPLE / "example03_background01.jpg"


def posixless(*args, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHIM), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("posixless")
    frames = [f for f, _ in person_clip_frames(20, (180, 320))]
    return write_talk_clip(d / "talk.mp4", frames, n=20, fps=20, gop=10)


@pytest.fixture
def env(tmp_path) -> dict:
    # a cache of its own: --workers auto measures (the load average is read then) and writes its choice
    return {"VBG_CACHE_DIR": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "",
            "HF_ENDPOINT": "http://vbg-no-such-host.invalid"}


def _clean(proc) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "fcntl" not in proc.stderr, proc.stderr


def test_the_shim_takes_away_what_windows_lacks(env):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import posixless; posixless.hide(); import os, signal\n"
            "try:\n    import fcntl\nexcept ImportError:\n    print('no fcntl')\n"
            "print(hasattr(os, 'getloadavg'), hasattr(os, 'O_NOFOLLOW'), hasattr(signal, 'SIGHUP'), "
            "os.open in os.supports_dir_fd)\n"
            "try:\n    os.open('x', os.O_RDONLY, dir_fd=0)\nexcept NotImplementedError:\n    print('no dir_fd')\n")
    out = subprocess.run([sys.executable, "-c", code, str(SHIM.parent)], capture_output=True, text=True,
                         timeout=60).stdout.split("\n")
    assert out[:3] == ["no fcntl", "False False False False", "no dir_fd"]


def test_vbg_process_with_workers_measured_keeps_every_frame_and_the_sound(talk, tmp_path, env):
    out = tmp_path / "out.mp4"
    proc = posixless("process", talk, "-o", out, "--model", "selfie", "--color", "green", env=env)
    _clean(proc)
    assert "--workers auto:" in proc.stderr and "kept in" not in proc.stderr  # measured here, this time
    assert (tmp_path / "cache" / "workers.json").is_file()  # and kept
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert sum(1 for _ in c.decode(video=0)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.mp4"]  # no temporary left


def test_a_png_sequence_is_written_and_replaced_without_folder_descriptors(talk, tmp_path, env):
    """The PNG sequence is the output made as a folder (through a descriptor of it on Linux):
    written, then replaced with --overwrite, then refused over a folder of someone else's files."""
    seq = tmp_path / "seq"
    for extra in ((), ("--overwrite",)):
        proc = posixless("process", talk, "-o", seq, "--alpha", "--model", "selfie", *extra, env=env)
        _clean(proc)
        frames = sorted(p.name for p in seq.iterdir())
        assert len(frames) == 20 and frames[0] == "frame_000001.png"
        assert cv2.imread(str(seq / frames[0]), cv2.IMREAD_UNCHANGED).shape == (180, 320, 4)
    (seq / "notes.txt").write_text("mine")
    proc = posixless("process", talk, "-o", seq, "--alpha", "--model", "selfie", "--overwrite", env=env)
    assert proc.returncode == 10 and "notes.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert (seq / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "seq"]


def test_a_file_that_dies_mid_way_keeps_its_frames_as_a_playable_partial(tmp_path, env):
    """The partial output is renamed aside (NewFile.keep) after the encoder let go of it: on
    Windows a file still open cannot be renamed, so the descriptor is closed first there."""
    from test_bad_inputs import write_png_mov

    src = write_png_mov(tmp_path / "dies.mov", 40, damaged_at=25)
    out = tmp_path / "out" / "o.mp4"
    proc = posixless("process", src, "-o", out, "--model", "selfie", env=env)
    assert proc.returncode == 9 and "the 25 frames before it are kept in" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out.parent.iterdir()] == ["o.partial.mp4"]  # no temporary left
    with av.open(str(out.parent / "o.partial.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 25
    # a PNG sequence: its folder renamed aside (onto a name held by an empty folder on POSIX; a
    # Windows rename never replaces one)
    proc = posixless("process", src, "-o", out.parent / "seq", "--alpha", "--model", "selfie", env=env)
    assert proc.returncode == 9 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.partial.mp4", "seq.partial"]
    assert len(list((out.parent / "seq.partial").iterdir())) == 25


def test_ctrl_break_stops_vbg_process_keeping_a_playable_partial(tmp_path, env):
    """Windows' Ctrl-Break (SIGBREAK; posixless.py makes SIGUSR2 stand for it) stops a run as
    Ctrl-C does: the frames so far kept in a playable partial file, exit 130. Unhandled, it ended
    the process at once, the output left half-written."""
    import time

    from conftest import StderrLines, wait_until_vbg_handles
    from media import write_clip

    n = 900
    src = write_clip(tmp_path / "long.mp4", [f for f, _ in person_clip_frames(150, (180, 320))] * (n // 150), fps=30)
    out = tmp_path / "cut.mp4"
    proc = subprocess.Popen([sys.executable, str(SHIM), "process", str(src), "-o", str(out), "--model", "selfie",
                             "--quality", "best"], stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    wait_until_vbg_handles(proc, signal.SIGUSR2)
    stderr = StderrLines(proc)

    def written() -> int:  # bytes in the output's hidden temporary so far
        try:
            return max((p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith(".cut.mp4.")), default=0)
        except OSError:
            return 0

    # Frames are being written once the temporary holds more than x264's first packets; most of
    # the clip is still to come then (a guard of 300 s against a hang, not a measurement).
    end = time.monotonic() + 300
    while written() < 30_000:
        assert proc.poll() is None and time.monotonic() < end, "".join(stderr.lines)
        time.sleep(0.005)
    proc.send_signal(signal.SIGUSR2)
    rc, err = stderr.finish()
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    partial = tmp_path / "cut.partial.mp4"
    with av.open(str(partial)) as c:
        assert 0 < sum(1 for _ in c.decode(video=0)) < n
    assert not out.exists()


def test_vbg_segment_finds_the_person(tmp_path, env):
    mask = tmp_path / "mask.png"
    _clean(posixless("segment", PHOTO, "--model", "selfie", "-o", mask, env=env))
    pred = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert iou(pred, read_alpha(PEOPLE / "example03_background01_alpha.png")) >= 0.85


def test_the_live_filter_records_and_serves_its_control_page(talk, tmp_path, env):
    """No uid there: the control server's private folder under the temporary folder is named
    after the user (it was os.getlogin(), which fails without a terminal)."""
    rec = tmp_path / "rec.mp4"
    (tmp_path / "tmp").mkdir()
    proc = posixless("--source", talk, "--no-vcam", "--record", rec, "--frames", "20", "--model", "selfie",
                     env={**env, "XDG_RUNTIME_DIR": "", "TMPDIR": str(tmp_path / "tmp"), "USER": "ada",
                          "LOGNAME": "ada"}, timeout=300)
    _clean(proc)
    assert "control: http://127.0.0.1:" in proc.stderr, proc.stderr  # the control server started
    # (ONNX Runtime 1.31 leaves a ".ses" file of its own in the temporary folder)
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("vbg")] == ["vbg-ada"]
    assert list((tmp_path / "tmp" / "vbg-ada").iterdir()) == []  # its runtime file removed at exit
    with av.open(str(rec)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert frames and frames[0].shape == (180, 320, 3)


def test_vbg_doctor_runs_every_check(env):
    proc = posixless("doctor", env=env)
    assert "the check itself failed" not in proc.stdout + proc.stderr, proc.stdout
    assert "Traceback" not in proc.stderr


def test_on_windows_a_signal_is_sent_again_without_os_kill(monkeypatch):
    """A signal that came inside an import is delivered again once it is done. On Windows
    os.kill(own pid, SIGINT) would terminate vbg at once (no partial file finalized): there the
    signal is raised in-process, and Python's handler runs as for a real one."""
    import signal

    from vbg import cli

    raised = []
    monkeypatch.setattr(cli, "_WINDOWS", True)
    monkeypatch.setattr(cli.os, "kill", lambda *a: pytest.fail(f"os.kill{a} on Windows"))
    monkeypatch.setattr(signal, "raise_signal", raised.append)
    cli._deliver(signal.SIGINT)
    assert raised == [signal.SIGINT]
