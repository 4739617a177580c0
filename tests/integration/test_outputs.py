"""How vbg writes its outputs (issue 12, "Outputs"), as an adversary and a user meet it:
no symlink at a temporary name is ever followed, an output is never one of the inputs,
a kept partial file replaces nothing, two runs never share an output, a PNG sequence
holds one run's frames, -o means the same on every run, and a full disk stops the
job at the first failed write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import PEOPLE, StderrLines, progress_shows_frames, small_tmpfs
from media import person_clip_frames, write_clip
from vbg.errors import OutputError
from vbg.media.info import probe
from vbg.media.writer import VideoWriter

PRECIOUS = b"the user's own file\n"


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    clip = write_clip(d / "person.mp4", [f for f, _ in person_clip_frames(30, (180, 320))], fps=30)
    cv2.imwrite(str(d / "room.png"), cv2.imread(str(PEOPLE / "background01.jpg")))
    return {"dir": d, "clip": clip, "room": d / "room.png"}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4",
                      [f for f, _ in person_clip_frames(600, (360, 640))], fps=30)


def run(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vbg", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]


def one_error(proc, code: int, *needles: str) -> str:
    lines = errors(proc)
    assert len(lines) == 1 and proc.returncode == code, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def precious(folder: Path) -> Path:
    p = folder / "precious.txt"
    p.write_bytes(PRECIOUS)
    return p


# ---------------------------------------------------------------------------- 1. symlinks at temporary names
def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(m, tmp_path):
    """`ln -s ../home/precious.txt out/.o.partial.mp4` by anyone who can write in out/:
    vbg process -o out/o.mp4 must neither write through it nor leave o.mp4 a link."""
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    mine = precious(home)
    trap = out / ".o.partial.mp4"
    trap.symlink_to(mine)
    proc = run("process", m["clip"], "-o", out / "o.mp4", "--model", "selfie", "-q")
    assert proc.returncode == 0, proc.stderr
    assert mine.read_bytes() == PRECIOUS
    assert not (out / "o.mp4").is_symlink() and frames_in(out / "o.mp4") == 30
    assert trap.is_symlink()  # left as it was: vbg neither used nor removed it


def test_symlinks_planted_in_a_png_folder_are_not_followed(m, tmp_path):
    """The old fixed names inside a PNG folder (the write test and the frame temporaries):
    the folder holds files vbg did not write, so --overwrite refuses it, touching nothing."""
    home, seq = tmp_path / "home", tmp_path / "seq"
    home.mkdir()
    seq.mkdir()
    mine = precious(home)
    for name in (".vbg-write-test.partial", ".frame_000001.partial.png"):
        (seq / name).symlink_to(mine)
    proc = run("process", m["clip"], "-o", seq, "--model", "selfie", "--overwrite", "-q")
    one_error(proc, 10, str(seq), "not a PNG sequence vbg wrote", "--overwrite will not replace it")
    assert mine.read_bytes() == PRECIOUS
    assert sorted(p.name for p in seq.iterdir()) == [".frame_000001.partial.png", ".vbg-write-test.partial"]


# ---------------------------------------------------------------------------- 2. the output is an input
@pytest.mark.parametrize("case", ["same-path", "hard-link", "symlink", "through-a-missing-folder", "batch-into-its-folder",
                                  "background-video", "live-background", "record", "segment",
                                  "segment-through-a-missing-folder"])
def test_an_output_that_is_an_input_is_refused_whatever_the_flags(m, tmp_path, case):
    """Through a missing folder and back (``-o sub/../src.mp4``): the check looked for the file
    before the writer made ``sub``, saw none, and the finished output replaced the input."""
    src = tmp_path / "src.mp4"
    shutil.copy(m["clip"], src)
    original = src.read_bytes()
    if case == "same-path":
        proc = run("process", src, "-o", src, "--model", "selfie", "--overwrite")
    elif case == "through-a-missing-folder":
        proc = run("process", src, "-o", tmp_path / "sub" / ".." / "src.mp4", "--model", "selfie", "--overwrite")
    elif case == "hard-link":
        os.link(src, tmp_path / "link.mp4")
        proc = run("process", src, "-o", tmp_path / "link.mp4", "--model", "selfie", "--overwrite")
    elif case == "symlink":
        (tmp_path / "link.mp4").symlink_to(src)
        proc = run("process", src, "-o", tmp_path / "link.mp4", "--model", "selfie", "--overwrite")
    elif case == "batch-into-its-folder":
        shutil.copy(m["clip"], tmp_path / "other.mp4")
        proc = run("process", tmp_path / "*.mp4", "-o", tmp_path, "--model", "selfie", "--overwrite")
    elif case == "background-video":
        bg = tmp_path / "bg.mp4"
        shutil.copy(m["clip"], bg)
        original = bg.read_bytes()
        proc = run("process", m["clip"], "--background", bg, "-o", bg, "--model", "selfie", "--overwrite")
        src = bg
    elif case == "live-background":  # the live filter recording over its own background video
        bg = tmp_path / "bg.mov"
        shutil.copy(m["clip"], bg)
        original = bg.read_bytes()
        proc = run("--source", m["clip"], "--background", bg, "--record", bg, "--overwrite", "--model", "selfie",
                   "--no-vcam", "--frames", "3", "-q")
        src = bg
    elif case == "record":
        proc = run("--source", src, "--record", src, "--overwrite", "--model", "selfie", "--no-vcam",
                   "--frames", "3", "-q")
    else:
        img = tmp_path / "room.png"
        shutil.copy(m["room"], img)
        original = img.read_bytes()
        out = img if case == "segment" else tmp_path / "sub" / ".." / "room.png"
        proc = run("segment", img, "-o", out, "--model", "selfie", "--overwrite")
        src = img
    assert not (tmp_path / "sub").exists()  # refused before anything was made
    lines = errors(proc)
    assert proc.returncode == 10 and lines, proc.stderr
    assert len(lines) == (2 if case == "batch-into-its-folder" else 1), proc.stderr  # each output named once
    assert all("is the input" in ln and "choose another" in ln for ln in lines), lines
    assert src.read_bytes() == original


@pytest.mark.parametrize("case", ["batch", "file-below", "sequence-below", "deeper", "segment-batch", "segment-below",
                                  "record-below"])
def test_a_file_where_the_output_s_folder_should_be_is_said_at_start(m, tmp_path, case):
    """-o or --record through a path where a file stands instead of a folder (`-o notes.txt`
    for a batch, `-o notes.txt/out.mp4`): one line at start naming the file, exit 10, nothing
    loaded or written. It came after the model had loaded (and --workers auto had measured),
    as `clip.mp4: File exists`."""
    notes = precious(tmp_path)
    shutil.copy(m["clip"], tmp_path / "other.mp4")
    out = {"batch": notes, "file-below": notes / "o.mp4", "sequence-below": notes / "seq",
           "deeper": notes / "a" / "o.mp4", "segment-batch": notes, "segment-below": notes / "m.png",
           "record-below": notes / "r.mp4"}[case]
    if case.startswith("segment"):
        images = [m["room"], PEOPLE / "example03_background01.jpg"][: 2 if case == "segment-batch" else 1]
        proc = run("segment", *images, "-o", out, "--model", "selfie")
    elif case == "record-below":
        proc = run("--source", m["clip"], "--record", out, "--model", "selfie", "--no-vcam", "--frames", "3")
    else:
        inputs = [m["clip"], tmp_path / "other.mp4"] if case == "batch" else [m["clip"]]
        proc = run("process", *inputs, "-o", out, "--model", "selfie")
    option = "--record" if case == "record-below" else "-o"
    one_error(proc, 10, f"{option} {out}: {notes} is a file, not a folder: choose another {option}")
    assert "model selfie" not in proc.stderr
    assert notes.read_bytes() == PRECIOUS and sorted(p.name for p in tmp_path.iterdir()) == ["other.mp4", "precious.txt"]


def test_a_file_in_the_way_of_a_folder_is_named_when_it_appears_late(tmp_path):
    """Where the system itself says EEXIST (a file made where a folder had to be, after the
    start-up checks), the line names the path and says what is wrong, not only "File exists"."""
    from vbg.fsutil import cannot_write

    notes = precious(tmp_path)
    try:
        (notes / "sub").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = e
    msg = str(cannot_write(notes / "sub" / "o.png", err))
    assert msg.startswith(f"{notes / 'sub' / 'o.png'}: cannot write there (") and "a file stands where a folder" in msg


# ---------------------------------------------------------------------------- 3. partial names
def test_a_kept_partial_never_replaces_a_file(m, tmp_path):
    info = probe(m["clip"])
    theirs = tmp_path / "out.partial.mp4"
    theirs.write_bytes(PRECIOUS)
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "out.mp4", info, mode="rgb") as writer:
        for i in range(3):
            writer.write(i, i, i / 30, np.full((180, 320, 3), 40 * i, np.uint8))
        raise KeyboardInterrupt
    assert theirs.read_bytes() == PRECIOUS
    assert writer.output_path == tmp_path / "out.partial-2.mp4" and writer.partial
    assert frames_in(writer.output_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial-2.mp4", "out.partial.mp4"]


def test_a_kept_partial_png_sequence_never_replaces_a_folder(m, tmp_path):
    """The same for a PNG sequence: its frames so far go to seq.partial, or seq.partial-2 when
    that is taken; the target itself is left as it was."""
    info = probe(m["clip"])
    theirs = tmp_path / "seq.partial"
    theirs.mkdir()
    (theirs / "notes.txt").write_bytes(PRECIOUS)
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "seq", info, mode="matte") as writer:
        for i in range(3):
            writer.write(i, i, i / 30, np.full((180, 320), 40 * i, np.uint8))
        raise KeyboardInterrupt
    assert writer.output_path == tmp_path / "seq.partial-2" and writer.partial
    assert sorted(p.name for p in writer.output_path.iterdir()) == [f"frame_{i:06d}.png" for i in (1, 2, 3)]
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.partial", "seq.partial-2"]


def test_ctrl_c_on_a_partial_named_input_keeps_the_partial_beside_it(long_clip, tmp_path):
    """vbg process talk.partial.mp4 -o talk.mp4, then Ctrl-C: the partial output would be
    named like the input; it goes to talk.partial-2.mp4 and the message says so."""
    src = tmp_path / "talk.partial.mp4"
    shutil.copy(long_clip, src)
    original = src.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "process", str(src), "-o", str(tmp_path / "talk.mp4"),
                             "--model", "selfie", "--quality", "best"], stderr=subprocess.PIPE, text=True)
    stderr = StderrLines(proc)
    stderr.wait_for(progress_shows_frames(600), "progress line")
    proc.send_signal(signal.SIGINT)
    _, err = stderr.finish()
    assert proc.returncode == 130, err
    assert src.read_bytes() == original
    kept = tmp_path / "talk.partial-2.mp4"
    assert str(kept) in err
    assert 0 < frames_in(kept) < 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.partial-2.mp4", "talk.partial.mp4"]


# ---------------------------------------------------------------------------- 4. two runs, one output
def test_a_second_writer_of_the_same_output_is_refused(m, tmp_path):
    """Both passed the start-up checks; the one that creates its temporary second refuses."""
    info = probe(m["clip"])
    frame = np.zeros((180, 320, 3), np.uint8)
    for target in (tmp_path / "mix.mp4", tmp_path / "seq"):
        first = VideoWriter(target, info, mode="rgb")
        with pytest.raises(OutputError, match=f"being written by another vbg run \\(pid {os.getpid()}\\): "
                                              "wait for it or choose another -o"):
            VideoWriter(target, info, mode="rgb")
        first.write(0, 0, 0.0, frame)
        first.close()
        again = VideoWriter(target, info, mode="rgb")  # free again once the first is done
        again.write(0, 0, 0.0, frame)
        again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.mp4", "seq"]
    assert [p.name for p in (tmp_path / "seq").iterdir()] == ["frame_000001.png"]


def test_a_second_recording_to_the_same_file_is_refused(tmp_path):
    from vbg.sinks.recorder import Recorder

    from vbg.types import Composite

    first = Recorder(tmp_path / "rec.mp4", 64, 48, 30)
    try:
        with pytest.raises(OutputError, match="being written by another vbg run .*choose another --record file"):
            Recorder(tmp_path / "rec.mp4", 64, 48, 30)
        first.send(Composite(seq=0, t_capture=0.0, image=np.zeros((48, 64, 3), np.uint8), mask_seq=-1, fresh=False))
    finally:
        first.close()
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]


def test_output_names_that_are_not_utf8_are_written_as_given(m, tmp_path):
    """A name in another encoding (a Latin-1 ``ü`` from an old archive, byte 0xfc) as ``-o``, as
    ``--record``, or taken from such an input: the file is written under those very bytes. Each
    ended in a UnicodeEncodeError traceback (the temporary's name was measured as UTF-8)."""
    if sys.platform == "win32" or os.fsencode("\udcfc") != b"\xfc":
        pytest.skip("names are bytes only on POSIX, under a UTF-8 file system encoding")
    folder = os.fsencode(tmp_path)
    clip = os.fsdecode(folder + b"/t\xe4lk.mp4")
    shutil.copy(m["clip"], clip)
    proc = run("process", clip, "-o", os.fsdecode(folder + b"/o\xfct.mp4"), "--model", "selfie", "-q")
    assert proc.returncode == 0 and not errors(proc), proc.stderr
    assert frames_in(Path(os.fsdecode(folder + b"/o\xfct.mp4"))) == 30
    photo = os.fsdecode(folder + b"/ph\xf6to.jpg")
    shutil.copy(m["room"], photo)
    (tmp_path / "cut").mkdir()
    proc = run("segment", photo, "-o", tmp_path / "cut", "--model", "selfie")
    assert proc.returncode == 0 and not errors(proc), proc.stderr
    assert os.listdir(folder + b"/cut") == [b"ph\xf6to.png"]
    rec = os.fsdecode(folder + b"/r\xfc.mp4")
    proc = run("--source", m["clip"], "--model", "selfie", "--no-vcam", "--record", rec, "--frames", "10")
    assert proc.returncode == 0 and not errors(proc), proc.stderr
    assert frames_in(Path(rec)) > 0  # finalized and playable (frames a loaded machine drops are not counted)
    assert sorted(n for n in os.listdir(folder) if n.startswith(b".")) == []  # no temporary left


def test_two_concurrent_runs_for_one_output(long_clip, tmp_path):
    """Run A writes mix.mp4; run B for the same -o (even with --overwrite) refuses at start,
    naming A's pid. A is held still (SIGSTOP) while B runs, so the two meet for sure; then A
    finishes, and its report is true: the output is whole and nothing else is left."""
    from vbg.fsutil import busy_writer

    out = tmp_path / "mix.mp4"
    a = subprocess.Popen([sys.executable, "-m", "vbg", "process", str(long_clip), "-o", str(out),
                          "--model", "selfie", "-q"], stderr=subprocess.PIPE, text=True)
    a_err = StderrLines(a)
    deadline = time.monotonic() + 300  # a hang guard only
    while True:
        assert a.poll() is None, f"run A ended before it was caught writing: {a.stderr}"
        a.send_signal(signal.SIGSTOP)
        if busy_writer(out) == a.pid:
            break
        a.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "run A never started writing"
        time.sleep(0.05)
    try:
        b = run("process", long_clip, "-o", out, "--model", "selfie", "--overwrite")
    finally:
        a.send_signal(signal.SIGCONT)
    _, err = a_err.finish()
    one_error(b, 10, str(out), f"being written by another vbg run (pid {a.pid})", "wait for it or choose another -o")
    assert "model selfie" not in b.stderr  # refused in the start-up checks
    assert a.returncode == 0, err
    assert frames_in(out) == 600
    assert [p.name for p in tmp_path.iterdir()] == ["mix.mp4"]


# ---------------------------------------------------------------------------- 5. PNG sequences
def test_a_shorter_clip_into_an_existing_sequence_leaves_only_its_frames(m, tmp_path):
    info = probe(m["clip"])
    seq = tmp_path / "seq"
    for n in (10, 4):
        with VideoWriter(seq, info, mode="matte") as writer:
            for i in range(n):
                writer.write(i, i, i / 30, np.full((180, 320), 20 * n, np.uint8))
    names = sorted(p.name for p in seq.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(1, 5)]
    assert cv2.imread(str(seq / names[0]), cv2.IMREAD_UNCHANGED)[0, 0] == 80  # the second run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no temporary or old folder left


def test_overwrite_refuses_a_folder_that_is_not_a_sequence(m, tmp_path):
    """-o pointed at a folder of the user's: --overwrite must not delete (or mix into) it."""
    seq = tmp_path / "videos"
    seq.mkdir()
    (seq / "notes.txt").write_text("mine")
    (seq / "frame_000001.png").write_bytes(b"an older frame")
    proc = run("process", m["clip"], "-o", seq, "--model", "selfie", "--overwrite")
    one_error(proc, 10, "notes.txt", "not a PNG sequence vbg wrote")
    assert sorted(p.name for p in seq.iterdir()) == ["frame_000001.png", "notes.txt"]
    assert (seq / "frame_000001.png").read_bytes() == b"an older frame"


# ---------------------------------------------------------------------------- 6. one command, one result
def test_the_same_command_gives_the_same_result_every_run(m, tmp_path):
    seq = tmp_path / "seq"
    for extra in ((), ("--overwrite",)):
        proc = run("process", m["clip"], "-o", seq, "--model", "selfie", "-q", *extra)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in seq.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 31)]


@pytest.mark.parametrize("output,fmt,fix", [
    ("newdir/", "webm", "-o {tmp}/newdir/person.webm"),
    ("newdir", "mp4", "-o {tmp}/newdir/person.mp4"),
    ("f.mp4", "webm", "-o {tmp}/f.webm"),
    ("f.webm", "png", "-o {tmp}/f"),
    ("f.mkv", "mp4", "-o {tmp}/f.mp4"),
])
def test_contradictory_output_and_format_are_refused(m, tmp_path, output, fmt, fix):
    proc = run("process", m["clip"], "-o", f"{tmp_path}/{output}", "--format", fmt, "--model", "selfie")
    one_error(proc, 2, f"--format {fmt}", fix.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_format_that_agrees_with_the_output_is_accepted(m, tmp_path):
    proc = run("process", m["clip"], "-o", tmp_path / "f.m4v", "--format", "mp4", "--model", "selfie", "-q")
    assert proc.returncode == 0, proc.stderr
    assert frames_in(tmp_path / "f.m4v") == 30


def test_the_output_rule_is_in_the_help():
    proc = run("process", "--help")
    assert "what -o means" in proc.stdout and "whatever exists there" in proc.stdout


# ---------------------------------------------------------------------------- 7. a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 512 KB tmpfs (root only)."""
    with small_tmpfs(tmp_path / "small", "512k") as folder:
        yield folder


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_a_full_disk_stops_the_writer_at_the_first_failed_write(m, small_disk, suffix):
    """Noise frames (every packet large) until the writer raises: the frames accepted after the
    file system had no block left are few (none when the write that filled it raised at once),
    instead of the rest of the job, and the temporary output is gone."""
    info = probe(m["clip"])
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (180, 320, 3), np.uint8) for _ in range(8)]
    full_at = None
    with pytest.raises(OutputError, match="writing failed after .*the disk is full") as err:
        with VideoWriter(small_disk / f"out{suffix}", info, mode="rgb", quality="fast") as writer:
            for i in range(2000):
                writer.write(i, i, i / 30, noise[i % 8])
                if full_at is None and os.statvfs(small_disk).f_bavail == 0:
                    full_at = writer.frames_written
    if full_at is not None:
        assert writer.frames_written - full_at <= 3, (full_at, writer.frames_written, str(err.value))
    assert writer.output_path is None and not writer.partial
    assert list(small_disk.iterdir()) == []


# ---------------------------------------------------------------------------- without --overwrite
@pytest.mark.parametrize("name", ["out.mp4", "seq"])
def test_without_overwrite_an_output_that_appears_meanwhile_is_not_replaced(m, tmp_path, name):
    """Checked at start, the target was free; another program makes it while vbg writes:
    without --overwrite it is left as it is, and vbg's frames go to the partial name."""
    info = probe(m["clip"])
    target = tmp_path / name
    writer = VideoWriter(target, info, mode="matte", overwrite=False)
    writer.write(0, 0, 0.0, np.zeros((180, 320), np.uint8))
    if target.suffix:
        target.write_bytes(PRECIOUS)
    else:
        target.mkdir()
        (target / "frame_000001.png").write_bytes(PRECIOUS)
    with pytest.raises(OutputError, match="appeared while vbg wrote it.*kept in"):
        writer.close()
    theirs = target if target.suffix else target / "frame_000001.png"
    assert theirs.read_bytes() == PRECIOUS
    kept = tmp_path / ("out.partial.mp4" if target.suffix else "seq.partial")
    assert kept.exists()
    with pytest.raises(OutputError, match="already exists: pass --overwrite"):
        VideoWriter(target, info, mode="matte", overwrite=False)
