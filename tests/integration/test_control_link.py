"""The control page's address as a user gets it: printed at start with its token on a terminal (the
page opens only with it), hidden in a log file and the journal, and given again by ``vbg ctl page``.

Real ``vbg`` processes on a real clip with the selfie model; the browser that ``vbg ctl page``
opens is a script named by ``BROWSER`` (Python's webbrowser honours it) that writes down what it
was asked to open.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lockstep import wait_until
from media import person_clip_frames, write_clip

H, W = 180, 320


def _start(tmp_path: Path, env: dict, stderr) -> subprocess.Popen:
    clip = tmp_path / "clip.mp4"
    if not clip.exists():
        write_clip(clip, (f for f, _ in person_clip_frames(30, (H, W))), fps=30)
    return subprocess.Popen([sys.executable, "-m", "vbg", "--source", str(clip), "--loop", "--model", "selfie",
                             "--no-vcam", "--record", str(tmp_path / f"out-{len(list(tmp_path.iterdir()))}.mp4")],
                            stderr=stderr, text=True, env=env)


def _ctl(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vbg", "ctl", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        return r.read().decode()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(120)


class _Terminal:
    """A pseudo-terminal for a child's stderr: what it wrote, read as it comes."""

    def __init__(self) -> None:
        import pty

        self.master, self.slave = pty.openpty()
        self.text = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child's end closed
                return
            if not chunk:
                return
            self.text += chunk.decode("utf-8", "replace")

    def close(self) -> None:
        os.close(self.slave)
        self._reader.join(60)
        os.close(self.master)


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_the_printed_address_opens_the_page_and_vbg_ctl_page_gives_it_again(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="vbgl-", dir="/tmp")}
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    browser.chmod(0o755)
    term = _Terminal()
    proc = _start(tmp_path, env, term.slave)
    try:
        wait_until(lambda: "control: http://127.0.0.1:" in term.text or proc.poll() is not None, "the control line")
        line = next(ln for ln in term.text.splitlines() if "control: " in ln)
        url = line.split("control: ", 1)[1].split()[0]
        assert "***" not in url and "?token=" in url, line  # on a terminal the token is there to be used
        assert 'id="' in _page(url)  # the page itself, not a refusal
        r = _ctl(env, "page", "--print")
        assert (r.returncode, r.stdout, r.stderr) == (0, url + "\n", "")
        r = _ctl({**env, "BROWSER": str(browser)}, "page")
        assert (r.returncode, r.stdout) == (0, url + "\n"), r.stderr
        # the browser is handed a one-time address: its command line is every local user's to read
        given = opened.read_text()
        token = url.split("?token=")[1]
        assert given.startswith(url.split("?")[0] + "?ticket=") and token not in given, given
        assert 'id="' in _page(given)  # sent on to the page (urllib follows the redirect, as a browser)
        with pytest.raises(urllib.error.HTTPError) as used:  # once only
            _page(given)
        assert used.value.code == 403 and token not in used.value.read().decode()
        r = _ctl({**env, "BROWSER": str(tmp_path / "no-such-browser")}, "page")  # no browser opens
        assert r.returncode == 0 and "vbg: no web browser could be opened: open http://127.0.0.1:" in r.stderr
        assert "?token=***" in r.stderr  # its stderr is a pipe here: the token hidden
    finally:
        _stop(proc)
        term.close()
    r = _ctl(env, "page")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no vbg filter is running" in r.stderr


def test_a_log_file_hides_the_token(tmp_path):
    """stderr to a file (``2>vbg.log``, nohup, a supervisor): ``?token=***``, since a log written
    with the usual umask is readable by every local user, and the token opens the camera's picture."""
    env = {**os.environ, "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="vbgl-", dir="/tmp")}
    log = tmp_path / "vbg.log"
    with open(log, "w") as f:
        proc = _start(tmp_path, env, f)
        try:
            wait_until(lambda: "control: " in log.read_text() or proc.poll() is not None, "the control line")
            url = _ctl(env, "page", "--print").stdout.strip()
        finally:
            _stop(proc)
    text = log.read_text()
    assert "control: http://127.0.0.1:" in text and "?token=***  (vbg ctl --help)" in text, text
    assert "?token=" in url and url.split("?token=")[1] not in text


def test_the_journal_hides_the_token_and_vbg_ctl_page_opens_the_page(tmp_path):
    """Under systemd (stderr is the journal's stream) the address is written with ``token=***``:
    the journal is read by others than the user; ``vbg ctl page`` gives the page instead."""
    env = {**os.environ, "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="vbgl-", dir="/tmp")}
    log = tmp_path / "journal.txt"
    with open(log, "w") as journal:
        st = os.fstat(journal.fileno())
        proc = _start(tmp_path, {**env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, journal)
        try:
            wait_until(lambda: "control: " in log.read_text() or proc.poll() is not None, "the control line")
            r = _ctl(env, "page", "--print")
            assert r.returncode == 0, r.stderr
            url = r.stdout.strip()
            assert "***" not in url and 'id="' in _page(url)
        finally:
            _stop(proc)
    text = log.read_text()
    assert "<6>control: http://127.0.0.1:" in text and "?token=***" in text, text
    assert url.split("?token=")[1] not in text
