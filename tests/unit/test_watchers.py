"""Who reads the virtual camera: the v4l2loopback usage event's structs and the /proc scan.

No kernel module here: the event code is checked against structs packed as the kernel lays them
out (x86-64), the /proc scan against a real process holding a real file open.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from vbg.sinks import watchers as W


def _event(ev_type: int, payload: bytes = b"", sequence: int = 0) -> bytes:
    """A ``struct v4l2_event`` as VIDIOC_DQEVENT fills it on x86-64 (136 bytes)."""
    return W.EVENT.pack(ev_type, payload.ljust(64, b"\0"), 0, sequence, 1, 2, 0)


def test_request_numbers_and_sizes_are_the_headers():
    # linux/videodev2.h on x86-64: VIDIOC_DQEVENT 0x80885659, VIDIOC_SUBSCRIBE_EVENT 0x4020565a
    assert W.EVENT.size == 136 and W.SUBSCRIPTION.size == 32
    assert W.VIDIOC_DQEVENT == 0x80885659 and W.VIDIOC_SUBSCRIBE_EVENT == 0x4020565A
    assert W.V4L2_EVENT_PRI_CLIENT_USAGE == 0x10E00001


def test_subscription_asks_for_the_usage_event_and_its_current_state():
    raw = W.subscription()
    assert len(raw) == 32
    assert int.from_bytes(raw[0:4], sys.byteorder) == 0x10E00001
    assert int.from_bytes(raw[8:12], sys.byteorder) == 1  # V4L2_EVENT_SUB_FL_SEND_INITIAL
    assert raw[12:] == bytes(20)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_usage_event_count_is_read_from_the_payload(count):
    assert W.parse_usage(_event(W.V4L2_EVENT_PRI_CLIENT_USAGE, count.to_bytes(4, sys.byteorder))) == count


def test_other_events_are_not_usage():
    assert W.parse_usage(_event(5, (7).to_bytes(4, sys.byteorder))) is None  # V4L2_EVENT_SOURCE_CHANGE


class _Driver:
    """An ioctl that answers as v4l2loopback would: the queued events, then ENOENT."""

    def __init__(self, events, subscribe_error: int | None = None) -> None:
        self.queue, self.subscribe_error, self.subscribed = list(events), subscribe_error, None

    def __call__(self, fd, request, buf):
        if request == W.VIDIOC_SUBSCRIBE_EVENT:
            if self.subscribe_error is not None:
                raise OSError(self.subscribe_error, os.strerror(self.subscribe_error))
            self.subscribed = bytes(buf)
            return 0
        assert request == W.VIDIOC_DQEVENT and len(buf) == W.EVENT.size
        if not self.queue:
            raise OSError(errno.ENOENT, "no event")
        buf[:] = self.queue.pop(0)
        return 0


def _usage(n: int) -> bytes:
    return _event(W.V4L2_EVENT_PRI_CLIENT_USAGE, n.to_bytes(4, sys.byteorder))


def test_event_watcher_keeps_the_last_count_of_the_queue(tmp_path):
    node = tmp_path / "video10"
    node.write_bytes(b"")
    driver = _Driver([_usage(0), _event(5), _usage(1)])
    w = W.UsageEventWatcher(str(node), ioctl=driver)
    try:
        assert driver.subscribed == W.subscription()
        assert w.readers() == 1  # drained: the newest usage event wins, others are skipped
        assert w.readers() == 1  # nothing new: as it stood
        driver.queue.append(_usage(0))
        assert w.readers() == 0
    finally:
        w.close()


def test_a_module_without_the_event_falls_back_to_the_proc_scan(tmp_path):
    node = tmp_path / "video10"
    node.write_bytes(b"")
    with pytest.raises(OSError):
        W.UsageEventWatcher(str(node), ioctl=_Driver([], subscribe_error=errno.EINVAL))
    # a plain file answers the real ioctl with ENOTTY, as an old v4l2loopback answers EINVAL
    w = W.open_watcher(str(node))
    assert isinstance(w, W.ProcWatcher) and w.kind == "/proc scan"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "timed"])
def test_proc_scan_counts_other_processes_holding_the_node(tmp_path, inotify):
    node = tmp_path / "video10"
    node.write_bytes(b"")
    watcher = W.ProcWatcher(str(node), use_inotify=inotify, rescan_s=1e9)  # scans only when told
    assert watcher.interval == (W.EVENT_INTERVAL_S if inotify else W.PROC_INTERVAL_S)
    with open(node, "rb"):  # this process's own descriptor (pyvirtualcam's) never counts
        assert watcher.readers() == 0
        if inotify:  # nobody opened or closed it since: no scan
            scans = watcher.scans
            assert watcher.readers() == 0 and watcher.scans == scans
        reader = subprocess.Popen(
            [sys.executable, "-c", "import sys; f = open(sys.argv[1], 'rb'); print('open', flush=True); "
                                   "sys.stdin.read()", str(node)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout.readline().strip() == "open"
            assert watcher.readers() == 1
            other = tmp_path / "other"
            other.write_bytes(b"")
            assert W.ProcWatcher(str(other)).readers() == 0  # another file is not the node
        finally:
            reader.stdin.close()
            reader.wait(60)
        assert watcher.readers() == 0  # the reader went away
    watcher.close()
