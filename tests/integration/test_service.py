"""vbg as a systemd user service: the unit vbg service install writes (checked by systemd's own
verifier where it is installed), install/uninstall/status with and without a reachable systemd,
and what vbg does under systemd (journal priorities, sd_notify readiness and status)."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_vbg
from vbg import service
from vbg.errors import OutputError

ROOT = Path(__file__).parents[2]


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's ``[Section] Key=value`` lines (systemd's syntax: a key may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def exec_argv(unit: dict) -> list[str]:
    """ExecStart as argv: systemd's quoting is close enough to the shell's for what quote() writes,
    with %% undone, and $$ in the arguments."""
    words = [a.replace("%%", "%") for a in shlex.split(unit["Service"]["ExecStart"][0])]
    return words[:1] + [a.replace("$$", "$") for a in words[1:]]


def systemd_verify(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["systemd-analyze", "verify", "--user", str(path)], capture_output=True, text=True,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, timeout=120)


needs_verifier = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                    reason="systemd-analyze is not installed (apt install systemd)")


def test_install_writes_a_runnable_unit_and_uninstall_removes_it_without_systemd(tmp_path, xdg):
    cfg = tmp_path / "my profile.toml"
    cfg.write_text("[model]\nmodel = 'selfie'\n")
    proc = run_vbg("service", "install", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    path = xdg / "systemd" / "user" / "vbg.service"
    assert f"vbg: wrote {path}" in proc.stderr and "does not reach a user systemd" in proc.stderr
    assert proc.stdout.splitlines() == ["systemctl --user daemon-reload", "systemctl --user enable --now vbg.service"]
    text = path.read_text()
    assert text.startswith(service.MARKER + "\n")
    unit = parse_unit(text)
    assert unit["Service"]["Type"] == ["notify"] and unit["Service"]["Restart"] == ["on-failure"]
    assert unit["Service"]["RestartPreventExitStatus"] == ["2 3"]  # a bad setting is not retried every 10 s
    assert unit["Install"]["WantedBy"] == ["default.target"]
    argv = exec_argv(unit)
    assert argv == [sys.executable, "-m", "vbg", "--config", str(cfg)]  # this vbg, absolute; the file, absolute
    ran = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=120)  # it runs
    assert ran.returncode == 0 and ran.stdout.startswith("vbg "), ran.stderr
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary beside it

    again = run_vbg("service", "install")
    assert again.returncode == 10 and f"{path} already exists" in again.stderr and path.read_text() == text

    status = run_vbg("service", "status")
    assert status.returncode == 0 and f"installed: {path}" in status.stdout

    wants = path.parent / "default.target.wants"
    wants.mkdir()
    (wants / "vbg.service").symlink_to(path)  # what enable made
    gone = run_vbg("service", "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not path.exists() and not os.path.lexists(wants / "vbg.service")
    assert gone.stdout.splitlines() == ["systemctl --user stop vbg.service", "systemctl --user daemon-reload"]
    status = run_vbg("service", "status")
    assert status.returncode == 1 and "not installed" in status.stdout


def test_a_read_only_config_home_names_the_folder_systemd_reads(tmp_path, monkeypatch):
    """No other folder can be chosen for a user unit: the line says to make systemd's own folder
    writable (it said "choose a folder you can write to", with no option to choose one)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(ro)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a read-only file system to write to needs root here (a mode does not stop root)")
    try:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(ro))
        proc = run_vbg("service", "install")
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    assert proc.returncode == 10 and "Traceback" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")] == [
        f"vbg: error: cannot write {ro / 'systemd' / 'user' / 'vbg.service'} (Read-only file system): systemd "
        f"reads your units from {ro / 'systemd' / 'user'}: make it writable for you"], proc.stderr


def test_a_bad_config_file_is_refused_before_anything_is_written(tmp_path, xdg):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[model]\nmodle = 1\n")
    proc = run_vbg("service", "install", "--config", str(cfg))
    assert proc.returncode == 2 and "unknown setting [model] modle" in proc.stderr and "Traceback" not in proc.stderr
    assert not (xdg / "systemd").exists()


@pytest.mark.parametrize("platform,needle", [("win32", "shell:startup"), ("darwin", "Login Item"),
                                             ("freebsd14", "autostart")])
def test_without_systemd_s_platform_it_says_what_to_do_there_and_writes_nothing(xdg, monkeypatch, capsys,
                                                                                  platform, needle):
    """On Windows and macOS a systemd unit under ~/.config would start nothing: one line says so,
    with that system's way to start vbg at login."""
    from vbg.cli import main

    monkeypatch.setattr(sys, "platform", platform)
    for verb in ("install", "uninstall", "status"):
        assert main(["service", verb]) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("vbg: error:")]
        assert len(lines) == 1 and "only Linux has" in lines[0] and needle in lines[0], err
    assert not xdg.exists()


def test_uninstall_leaves_a_unit_vbg_did_not_write_and_never_follows_a_link(tmp_path, xdg):
    path = xdg / "systemd" / "user" / "vbg.service"
    path.parent.mkdir(parents=True)
    path.write_text("[Service]\nExecStart=/usr/bin/someone-elses\n")
    proc = run_vbg("service", "uninstall")
    assert proc.returncode == 1 and "was not written by vbg service install" in proc.stderr
    assert path.read_text().startswith("[Service]")
    # a link to a file that carries the marker is not vbg's file either
    ours = tmp_path / "elsewhere.service"
    ours.write_text(service.MARKER + "\n")
    path.unlink()
    path.symlink_to(ours)
    proc = run_vbg("service", "uninstall")
    assert proc.returncode == 1 and path.is_symlink() and ours.exists()
    with pytest.raises(OutputError, match="already exists"):
        service.install(path=path, run=lambda argv: pytest.fail("no systemctl"))
    assert ours.read_text() == service.MARKER + "\n"


class FakeSystemctl:
    """systemctl --user where a user systemd answers (there is none here): records each call."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv):
        self.calls.append(list(argv))
        rc = 1 if self.fail and self.fail in argv else 0
        out = "● vbg.service - vbg virtual background\n     Active: active (running)" if "status" in argv else ""
        return subprocess.CompletedProcess(argv, rc, out, "Job failed" if rc else "")


def test_with_a_user_systemd_the_steps_run_in_order(tmp_path):
    path = tmp_path / "user" / "vbg.service"
    fake = FakeSystemctl()
    done = service.install(tmp_path / "c.toml", run=fake, path=path, command=["/opt/vbg/bin/vbg"])
    assert done.why_not is None and done.todo == []
    steps = [c for c in fake.calls if "show-environment" not in c]
    assert steps == [["systemctl", "--user", "daemon-reload"],
                     ["systemctl", "--user", "enable", "--now", "vbg.service"]]
    text, rc = service.status(run=fake, path=path)
    assert rc == 0 and "Active: active (running)" in text
    fake.calls.clear()
    service.uninstall(run=fake, path=path)
    assert [c for c in fake.calls if "show-environment" not in c] == [
        ["systemctl", "--user", "disable", "--now", "vbg.service"], ["systemctl", "--user", "daemon-reload"]]
    assert not path.exists()


def test_a_failing_systemctl_step_is_one_error_naming_it(tmp_path):
    with pytest.raises(service.ServiceError, match=r"^systemctl --user enable --now vbg.service failed \(Job failed\)"):
        service.install(run=FakeSystemctl(fail="enable"), path=tmp_path / "vbg.service", command=["/bin/vbg"])
    assert service.is_ours(tmp_path / "vbg.service")  # written: uninstall removes it


@needs_verifier
def test_systemd_accepts_the_unit_for_a_vbg_at_an_awkward_path(tmp_path):
    odd = tmp_path / "my tools 100% $HOME"
    odd.mkdir()
    (odd / "python").symlink_to(sys.executable)
    path = tmp_path / "unit" / "vbg.service"
    service.install(odd / "a b.toml", path=path, command=[str(odd / "python"), "-m", "vbg"],
                    run=FakeSystemctl())
    assert exec_argv(parse_unit(path.read_text())) == [str(odd / "python"), "-m", "vbg", "--config",
                                                       str(odd / "a b.toml")]
    proc = systemd_verify(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the verifier does catch a unit whose program is not there
    broken = tmp_path / "broken" / "vbg.service"
    service.install(path=broken, command=[str(tmp_path / "no-such-vbg")], run=FakeSystemctl())
    assert systemd_verify(broken, tmp_path).returncode != 0


@needs_verifier
def test_the_shipped_unit_is_the_packaged_one_and_systemd_accepts_it(tmp_path):
    shipped = (ROOT / "configs" / "vbg.service").read_text()
    assert (ROOT / "vbg" / "assets" / "vbg.service").read_text() == shipped
    unit = tmp_path / "vbg.service"
    unit.write_text(shipped.replace("ExecStart=%h/.local/bin/vbg", f"ExecStart={sys.executable} -m vbg"))
    proc = systemd_verify(unit, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_quote_keeps_every_path_one_word_with_nothing_expanded():
    assert service.quote("/usr/bin/vbg") == "/usr/bin/vbg"
    assert service.quote("/a b/c") == '"/a b/c"'
    assert service.quote("/x/100%/$HOME") == "\"/x/100%%/$$HOME\""
    assert service.quote("/x/100%/$HOME", program=True) == "\"/x/100%%/$HOME\""
    assert service.quote('/x/"q"\\') == '"/x/\\"q\\"\\\\"'


def test_journal_stream_is_recognised_by_its_device_and_inode(tmp_path):
    with open(tmp_path / "err", "w") as f:
        st = os.fstat(f.fileno())
        assert service.journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not service.journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f)
        assert not service.journal_stderr({"INVOCATION_ID": "0123"}, f)  # a service's child writing to a file
        assert not service.journal_stderr({}, f)


@pytest.fixture
def notify_socket(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    s.bind(str(path))
    s.settimeout(0)
    yield s, str(path)
    s.close()


def _received(s) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(65536).decode())
        except BlockingIOError:
            return out


def _as_a_service(tmp_path, env: dict, *args: str) -> tuple[int, str]:
    """vbg run as systemd runs a service: stderr a stream that JOURNAL_STREAM names (here a file)."""
    err = tmp_path / "journal"
    with open(err, "w") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, **env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "0123abcd"}
        rc = subprocess.run([sys.executable, "-m", "vbg", *args], stderr=f, stdout=subprocess.DEVNULL, env=env,
                            timeout=300).returncode
    return rc, err.read_text()


def test_under_systemd_vbg_logs_with_priorities_and_says_when_it_is_ready(tmp_path, notify_socket):
    sock, addr = notify_socket
    env = {"NOTIFY_SOCKET": addr}
    rc, stderr = _as_a_service(tmp_path, env, "--source", "demo", "--model", "selfie", "--no-vcam", "--record",
                               str(tmp_path / "o.mp4"), "--frames", "90")
    assert rc == 0, stderr
    lines = stderr.splitlines()
    assert lines and all(ln[:3] in ("<6>", "<4>") for ln in lines), stderr  # info, warning: no "vbg: "
    assert "\r" not in stderr and "\x1b" not in stderr  # no redraws, no colour
    got = _received(sock)
    assert got[0].startswith("READY=1\nSTATUS=out ") and "fps" in got[0]
    assert got[-1] == "STOPPING=1" and all(m.startswith("STATUS=") for m in got[1:-1])

    rc, stderr = _as_a_service(tmp_path, env, "--source", "demo", "--size", "huge")
    assert rc == 2 and stderr.startswith("<3>error: --size 'huge' is not a size"), stderr
    assert _received(sock) == []  # never ready
    # a child of a service whose stderr is not the journal (a CI runner's tests, a pipe): plain lines
    proc = run_vbg("--source", "demo", "--size", "huge", env={"INVOCATION_ID": "0123abcd", "JOURNAL_STREAM": "8:1"})
    assert proc.returncode == 2 and proc.stderr.startswith("vbg: error: --size 'huge'"), proc.stderr
