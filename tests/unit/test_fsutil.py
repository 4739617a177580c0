"""vbg.fsutil on a real file system: outputs are created exclusively under fresh names,
written through their own descriptor, and only what vbg wrote is renamed into place."""

from __future__ import annotations

import os

import pytest

from vbg.fsutil import NewFile, NewFolder, OutputBusy, Swapped, busy_writer, partial_name, write_new

PRECIOUS = b"the user's own file\n"


@pytest.fixture
def mine(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    p = home / "precious.txt"
    p.write_bytes(PRECIOUS)
    return p


def test_a_temporary_swapped_for_a_symlink_is_never_put_in_place(tmp_path, mine):
    """Someone who can write in the folder replaces vbg's temporary file by a link to the
    user's file while vbg writes: vbg's data does not go there, and the output does not
    become that link."""
    out = tmp_path / "out"
    new = NewFile(out / "o.mp4")
    os.unlink(new.tmp)
    new.tmp.symlink_to(mine)
    new.write(b"video")
    with pytest.raises(Swapped, match="replaced by someone else"):
        new.commit()
    assert mine.read_bytes() == PRECIOUS
    assert not os.path.lexists(out / "o.mp4")


def test_a_temporary_folder_swapped_for_a_symlink_is_never_put_in_place(tmp_path, mine):
    out = tmp_path / "out"
    mode = mine.parent.stat().st_mode
    new = NewFolder(out / "seq")
    new.add("frame_000001.png", b"png")
    os.rename(new.tmp, tmp_path / "moved-away")
    new.tmp.symlink_to(mine.parent)
    with pytest.raises(Swapped):
        new.commit(replace=True)
    assert not os.path.lexists(out / "seq")
    assert sorted(p.name for p in mine.parent.iterdir()) == ["precious.txt"]
    assert mine.parent.stat().st_mode == mode  # not chmod-ed through the link either


def test_a_temporary_folder_swapped_for_a_link_is_discarded_without_touching_what_the_link_names(tmp_path, mine):
    """A run that fails (a disk another user filled, Ctrl-C) discards its PNG folder: in a shared
    folder without the sticky bit, another user renamed it aside and put a link to a folder of
    the user's at its name, and every file there was removed (found by a security audit). Only
    vbg's own frames go, from its own folder wherever it was moved."""
    out = tmp_path / "shared"
    new = NewFolder(out / "frames")
    new.add("frame_000001.png", b"png")
    moved = tmp_path / "moved-by-someone"
    os.rename(new.tmp, moved)
    new.tmp.symlink_to(mine.parent)
    new.discard()
    assert sorted(p.name for p in mine.parent.iterdir()) == ["precious.txt"]
    assert mine.read_bytes() == PRECIOUS
    assert list(moved.iterdir()) == []


def test_an_old_sequence_swapped_before_its_removal_is_left_alone(tmp_path):
    """--overwrite of a PNG folder moves the old frames aside, then removes them: a folder of other
    frames put at that name meanwhile (another user's swap) keeps its frames."""
    from vbg.fsutil import _remove_old_sequence

    old, other = tmp_path / ".seq.old", tmp_path / "someone-elses"
    for folder in (old, other):
        folder.mkdir()
        (folder / "frame_000001.png").write_bytes(b"png")
    was = os.lstat(old)
    os.rename(old, tmp_path / "aside")
    os.rename(other, old)
    _remove_old_sequence(old, was)
    assert (old / "frame_000001.png").read_bytes() == b"png"
    os.rename(old, other)
    os.rename(tmp_path / "aside", old)
    _remove_old_sequence(old, was)
    assert not old.exists()


def test_each_new_file_has_its_own_name_and_the_second_writer_is_refused(tmp_path):
    a = NewFile(tmp_path / "o.mp4")
    assert busy_writer(tmp_path / "o.mp4") == os.getpid()
    with pytest.raises(OutputBusy):
        NewFile(tmp_path / "o.mp4")
    b = NewFile(tmp_path / "o.mp4", check_busy=False)  # a name of its own, never a's
    assert a.tmp != b.tmp
    a.write(b"a")
    b.write(b"b")
    b.discard()
    assert a.commit().read_bytes() == b"a"
    assert busy_writer(tmp_path / "o.mp4") is None
    assert [p.name for p in tmp_path.iterdir()] == ["o.mp4"]


def test_partial_name_keeps_the_extension_and_fits_the_folder(tmp_path):
    assert partial_name(tmp_path / "out.mp4") == tmp_path / "out.partial.mp4"
    assert partial_name(tmp_path / "frames") == tmp_path / "frames.partial"
    long = partial_name(tmp_path / ("x" * 250 + ".mkv"))
    assert long.name == "x" * 200 + ".partial.mkv"
    title = "会议记录" * 20 + "abcdef"  # 246 bytes of UTF-8: with .mp4 a name the folder takes
    long = partial_name(tmp_path / (title + ".mp4"))
    assert long.name == "会议记录" * 16 + "会议.partial.mp4" and len(os.fsencode(long.name)) <= 255
    (tmp_path / (title + ".mp4")).write_bytes(b"")
    long.write_bytes(b"")  # the folder takes it too (it was 258 bytes: ENAMETOOLONG)


def test_a_long_name_s_temporary_is_cut_between_characters(tmp_path):
    """The hidden temporary of a long output name is cut to fit, between whole characters: a
    UTF-8 character cut in two makes a name macOS and exFAT refuse."""
    target = tmp_path / ("a" * 79 + "é" * 20 + ".mp4")
    new = NewFile(target)
    try:
        name = new.tmp.name
        os.fsencode(name).decode("utf-8")  # valid UTF-8
        assert name.startswith("." + "a" * 79 + "~") and len(os.fsencode(name)) < 255
    finally:
        new.discard()


def test_write_new_replaces_the_target_whole_or_leaves_it_alone(tmp_path):
    target = tmp_path / "cache" / "model.onnx"
    assert write_new(target, b"first") == target and target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # the usual mode, not mkstemp's 0600
    with pytest.raises(TypeError):
        write_new(target, object())  # fails while writing
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]  # no temporary left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_muxer_refusal_is_not_blamed_on_the_disk():
    """FFmpeg's muxer refusing what it is given (here times that go back, as damaged or oddly timed
    sound once made it do) says so and names the fix; it said "check the free disk space". An
    OS error of the same number is still the disk's or the folder's."""
    import errno
    import io
    from fractions import Fraction

    import av

    from vbg.fsutil import write_error_hint

    with av.open(io.BytesIO(), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000, layout="mono")
        stream.time_base = Fraction(1, 48000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.sample_rate, frame.time_base = 48000, Fraction(1, 48000)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        packets = []
        for i in range(4):
            frame.pts = 1024 * i
            packets += stream.encode(frame)
        with pytest.raises(av.FFmpegError) as refused:
            for packet in (*packets, packets[-1]):  # the last packet's time again
                out.mux(packet)
    assert refused.value.errno == errno.EINVAL
    assert write_error_hint(refused.value).startswith("FFmpeg refused the data, not the disk")
    assert write_error_hint(OSError(errno.EINVAL, "Invalid argument")) == \
        "check the free disk space and the folder's permissions"


def test_only_what_a_killed_run_left_counts_as_left(tmp_path):
    """``left_by_killed_runs``: temporaries no run holds (a killed run's), this user's, with no other
    name (a long name's gives the start of its name); not what a run writes now (locked), not a
    hard link to a file elsewhere (renaming it would touch that file), not a folder, not another
    user's file (where this test can make one: as root). Where there are no locks (Windows), a
    running vbg cannot be told from a killed one: none."""
    from vbg.fsutil import left_by_killed_runs

    killed = tmp_path / ".call.mp4.k1ll3d00.partial"
    killed.write_bytes(b"x")
    writing = NewFile(tmp_path / "now.mp4")  # a run writing now: locked
    (tmp_path / "elsewhere").write_bytes(b"y")
    os.link(tmp_path / "elsewhere", tmp_path / ".linked.mp4.h4rdl1nk.partial")
    cut = tmp_path / ".a~0123abcd.k1ll3d00.partial"  # a long name's: its start, a hash
    cut.write_bytes(b"z")
    (tmp_path / ".seq.k1ll3d00.partial").mkdir()
    theirs = tmp_path / ".theirs.mp4.k1ll3d00.partial"
    theirs.write_bytes(b"t")
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
    try:
        got = left_by_killed_runs(tmp_path)
    finally:
        writing.discard()
    want = [(cut, "a", True), (killed, "call.mp4", False)] + ([] if os.geteuid() == 0 else [(theirs, "theirs.mp4", False)])
    assert got == want

    from vbg import fsutil

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fsutil, "fcntl", None)
        assert left_by_killed_runs(tmp_path) == []


def test_a_folder_another_program_keeps_locked_holds_a_new_file_back_only_a_while(tmp_path, monkeypatch):
    """Anyone who can read a folder can ``flock`` it; another user of a shared folder holding it
    for ever hung every vbg run writing there, saying nothing. vbg waits its while for it
    (``FOLDER_LOCK_WAIT_S``, shortened here), then writes the file anyway and says who held it."""
    import fcntl
    import logging

    from vbg import fsutil

    monkeypatch.setattr(fsutil, "FOLDER_LOCK_WAIT_S", 0.2)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record) -> None:
            seen.append(record.getMessage())

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("vbg")
    logger.addHandler(handler)
    holder = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open of the folder: another program, as flock sees it
    try:
        path = write_new(tmp_path / "out.bin", b"data", check_busy=True)
    finally:
        os.close(holder)
        logger.removeHandler(handler)
    assert path.read_bytes() == b"data" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert seen == [f"another program (pid {os.getpid()}) has held a lock on the folder {tmp_path} for 0.2 s: going "
                    "on without it (two vbg runs writing one file there at once would not be told apart)"]
