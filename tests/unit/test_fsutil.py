"""vbg.fsutil on a real file system: outputs are created exclusively under fresh names,
written through their own descriptor, and only what vbg wrote is renamed into place."""

from __future__ import annotations

import os

import pytest

from vbg.fsutil import NewFile, NewFolder, OutputBusy, Swapped, busy_writer

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
