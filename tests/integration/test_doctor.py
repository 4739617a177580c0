"""`vbg doctor`: on this machine (no v4l2loopback, no camera) and on fake /sys and
/dev trees and a fake V4L2 driver for what this machine does not have."""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import pytest

from conftest import run_vbg, unreadable_to_child
from vbg import doctor
from vbg.capture import v4l2
from vbg.doctor import FAIL, OK, WARN, Check, Report

LOOPBACK_LOADED = Path("/sys/module/v4l2loopback").exists()
CHECK_NAMES = ("python", "packages", "versions", "onnxruntime", "gpu", "v4l2loopback", "pipewire", "cameras",
               "model cache", "display")


@pytest.fixture(scope="module")
def doctor_run(tmp_path_factory):
    env = {"HF_HOME": str(tmp_path_factory.mktemp("hf")), "VBG_CACHE_DIR": str(tmp_path_factory.mktemp("vbg")),
           "HF_TOKEN": ""}
    return run_vbg("doctor", env=env, timeout=120), run_vbg("doctor", "--json", env=env, timeout=120)


@pytest.mark.skipif(LOOPBACK_LOADED, reason="this machine has v4l2loopback loaded")
def test_doctor_names_the_missing_module_and_fails(doctor_run):
    proc, _ = doctor_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip() == ""
    lines = proc.stdout.splitlines()
    module = next(i for i, ln in enumerate(lines) if ln.startswith("FAIL") and "v4l2loopback" in ln)
    assert "not loaded" in lines[module]
    fix = lines[module + 1]
    assert "fix:" in fix and "modprobe v4l2loopback" in fix and "exclusive_caps=1" in fix
    assert lines[-1].startswith("the live filter cannot start") and "v4l2loopback" in lines[-1]


def test_doctor_lists_every_check(doctor_run):
    proc, _ = doctor_run
    lines = [ln for ln in proc.stdout.splitlines() if ln[:4] in ("ok  ", "warn", "FAIL")]
    for name in CHECK_NAMES:
        assert any(ln[6:].startswith(name) for ln in lines), (name, proc.stdout)


def test_doctor_json_is_one_parseable_object(doctor_run):
    text, js = doctor_run
    data = json.loads(js.stdout)  # ONNX Runtime's provider errors must not leak into stdout
    assert js.returncode == text.returncode
    assert data["ok"] is (js.returncode == 0)
    assert {c["name"] for c in data["checks"]} >= set(CHECK_NAMES)
    for c in data["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in (OK, WARN, FAIL)
        assert c["status"] == OK or c["fix"], c
    cpu = next(c for c in data["checks"] if c["name"] == "onnxruntime")
    assert cpu["status"] in (OK, WARN) and "CPU" in cpu["detail"]


def test_a_hub_cache_that_cannot_take_the_model_is_said_not_a_download_promised(tmp_path):
    """RMBG-1.4 not downloaded and a Hugging Face cache that cannot be written (HF_HOME under a
    file): doctor said the next run downloads it; it names the cache's problem and HF_HOME."""
    (tmp_path / "file").write_bytes(b"")
    env = {"HF_HOME": str(tmp_path / "file" / "hf"), "VBG_CACHE_DIR": str(tmp_path / "vbg"), "HF_TOKEN": "hf_x"}
    data = json.loads(run_vbg("doctor", "--json", env=env, timeout=120).stdout)
    cache = [c for c in data["checks"] if c["name"] == "model cache"]
    assert len(cache) == 1 and cache[0]["status"] == WARN, cache
    assert "the Hugging Face cache cannot take it" in cache[0]["detail"] and "is not a folder" in cache[0]["detail"]
    assert cache[0]["fix"].startswith("set HF_HOME to a writable folder with room for it")


def test_a_cached_model_the_user_cannot_read_is_said_not_called_missing(tmp_path):
    """RMBG-1.4 in a shared Hugging Face cache, another user's copy with mode 0600: doctor said it
    "is not downloaded yet"; it names the file that cannot be read and how to make it readable.
    As root, doctor runs without root's capabilities (``setpriv``) so that the mode holds."""
    import subprocess
    import sys

    from vbg.models.spec import RMBG14

    f = RMBG14.hub_files["fp32"]
    repo = tmp_path / "hf" / "hub" / ("models--" + RMBG14.hub_repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / f.sha256
    blob.parent.mkdir()
    with open(blob, "wb") as out:
        out.truncate(f.size)  # the published size (sparse): the copy is read for its checksum
    link = repo / "snapshots" / commit / f.path
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    prefix = unreadable_to_child(blob)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "VBG_CACHE_DIR": str(tmp_path / "vbg")}
    proc = subprocess.run([*prefix, sys.executable, "-m", "vbg", "doctor", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    cache = [c for c in json.loads(proc.stdout)["checks"] if c["name"] == "model cache"]
    assert len(cache) == 1 and cache[0]["status"] == WARN, cache
    assert cache[0]["detail"].startswith(f"the cached {f.path} of {RMBG14.hub_repo} cannot be read (Permission denied")
    assert cache[0]["fix"].startswith("make it readable to you")


def test_exit_code_is_zero_only_without_failures(monkeypatch, capsys, vbg_logging):
    from vbg.cli import main

    monkeypatch.setattr(doctor, "CHECKS", (lambda: [Check("a", OK, "fine")], lambda: [Check("b", WARN, "meh", "x")]))
    assert main(["doctor"]) == 0
    assert "the live filter can start (see the warnings)" in capsys.readouterr().out
    monkeypatch.setattr(doctor, "CHECKS", (lambda: [Check("a", FAIL, "broken", "fix it")],))
    assert main(["doctor"]) == 1


def test_a_check_that_breaks_is_reported_not_raised():
    def check_broken():
        raise RuntimeError("boom")

    report = doctor.run_checks((check_broken, lambda: [Check("x", OK, "fine")]))
    assert not report.ok
    assert report.checks[0].name == "broken" and "boom" in report.checks[0].detail
    assert report.checks[1].status == OK


def test_providers_check_loads_cpu_and_keeps_stdout_clean(capfd):
    checks = doctor.check_providers()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert checks[0].status in (OK, WARN) and "CPU" in checks[0].detail


def test_missing_required_package_is_a_failure_with_the_pip_command():
    real = __import__("importlib").import_module

    def importer(name):
        if name == "pyvirtualcam":
            raise ImportError("No module named 'pyvirtualcam'")
        return real(name)

    checks = doctor.check_packages(importer)
    assert checks[0].status == FAIL and "pyvirtualcam" in checks[0].detail
    assert checks[0].fix == "pip install pyvirtualcam"



def test_a_broken_package_is_installed_again_and_the_checks_that_need_it_wait(tmp_path):
    """A package that is installed but fails at import (OpenCV without libGL.so.1 on a headless
    machine, a protobuf that does not fit onnx): doctor runs to its end, no traceback (it crashed
    before any check, building its parser); the fix installs it again (``pip install`` alone says
    "already satisfied"), or for OpenCV's libGL names the two ways out; the checks that need it say
    they were not run, and a broken optional package is called broken, not "not installed"."""
    shadow = tmp_path / "shadow"
    (shadow / "cv2").mkdir(parents=True)
    (shadow / "cv2" / "__init__.py").write_text('raise ImportError("libGL.so.1: cannot open shared object file")\n')
    proc = run_vbg("doctor", env={"PYTHONPATH": str(shadow), "HF_TOKEN": ""}, timeout=120)
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("FAIL  packages"))
    assert "cv2 (cv2: libGL.so.1" in lines[at] and "apt install libgl1" in lines[at + 1], lines[at:at + 2]
    assert "opencv-python-headless" in lines[at + 1]
    assert any(ln.startswith("warn  providers") and "not checked" in ln for ln in lines), proc.stdout
    real = __import__("importlib").import_module

    def importer(name):
        if name in ("av", "onnx"):
            raise TypeError("Descriptors cannot be created directly")
        return real(name) if name not in doctor.OPTIONAL_USES else object()

    checks = {c.name: c for c in doctor.check_packages(importer)}
    assert checks["packages"].fix == "pip install --force-reinstall av"
    if doctor._dist_versions(("onnx",)):
        assert checks["optional packages"].detail.startswith("broken: onnx (Descriptors cannot be created directly)")
        assert checks["optional packages"].fix == "pip install --force-reinstall onnx"


def test_the_config_the_filter_would_read_is_checked(tmp_path):
    """A default config file that is not valid TOML, or a bad VBG_ variable, stops the live filter
    at once (exit 2): doctor says so and fails (it said nothing, and "the live filter can start"
    where the rest was fine). A good one is named; with neither, no line."""
    home = tmp_path / "xdg"
    (home / "vbg").mkdir(parents=True)
    env = {"XDG_CONFIG_HOME": str(home), "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")}
    assert not any(ln.split()[1:2] == ["config"] for ln in run_vbg("doctor", env=env, timeout=120).stdout.splitlines())
    (home / "vbg" / "config.toml").write_text("[model\n")
    proc = run_vbg("doctor", env=env, timeout=120)
    line = next(ln for ln in proc.stdout.splitlines() if ln.split()[1:2] == ["config"])
    assert line.startswith("FAIL  config") and "is not valid TOML" in line and proc.returncode == 1, proc.stdout
    (home / "vbg" / "config.toml").write_text("[model]\nsize = 256\n")
    proc = run_vbg("doctor", "--json", env={**env, "VBG_SIZE": "abc"}, timeout=120)
    config = [c for c in json.loads(proc.stdout)["checks"] if c["name"] == "config"]
    assert [c["status"] for c in config] == ["fail"] and "VBG_SIZE 'abc' is not a size" in config[0]["detail"]
    proc = run_vbg("doctor", "--json", env=env, timeout=120)
    config = [c for c in json.loads(proc.stdout)["checks"] if c["name"] == "config"]
    assert config == [{"name": "config", "status": "ok", "detail": f"read: {home / 'vbg' / 'config.toml'}",
                       "fix": config[0]["fix"]}]


@pytest.mark.parametrize(("env", "said"), [
    ({"HF_TOKEN": "hf_abc def"}, "the Hugging Face token holds a character no token has"),
    ({"HF_TOKEN": "hf_abcdef", "HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set: RMBG-1.4 cannot be downloaded"),
    ({"HF_TOKEN": "hf_abcdef", "HF_ENDPOINT": "huggingface.co"}, "HF_ENDPOINT='huggingface.co' is not a URL"),
])
def test_hub_settings_the_download_refuses_are_said(tmp_path, env, said):
    """Settings vbg's own download refuses without asking the hub were called fine ("hub token set",
    "the next run downloads it once"): doctor says what is wrong and how to set it."""
    proc = run_vbg("doctor", "--json", env={"HF_HOME": str(tmp_path / "hf"), "VBG_CACHE_DIR": str(tmp_path / "c"),
                                            **env}, timeout=120)
    hub = [c for c in json.loads(proc.stdout)["checks"] if c["name"] in ("hub token", "hub settings")]
    assert len(hub) == 1 and hub[0]["status"] == "warn" and hub[0]["detail"].startswith(said), hub


@pytest.mark.parametrize(("absent", "detail"), [
    (("torch", "onnx"), "not installed: torch, onnx (--backend torch, --variant export, vbg export)"),
    (("huggingface_hub",), "not installed: huggingface_hub (downloading RMBG-1.4)"),
    (("huggingface_hub", "onnx"), "not installed: huggingface_hub (downloading RMBG-1.4); onnx (--backend torch, "
                                  "--variant export, vbg export)"),
])
def test_a_missing_optional_package_names_only_what_it_is_for(absent, detail):
    """A fresh ``pip install vbg`` has no torch: the doctor no longer says that downloading
    RMBG-1.4 needs it (huggingface_hub fetches the ONNX file alone)."""
    real = __import__("importlib").import_module

    def importer(name):
        if name in absent:
            raise ImportError(f"No module named {name!r}")
        if name in doctor.OPTIONAL_USES:  # the others there, whether or not this machine has them
            return object()
        return real(name)

    optional = [c for c in doctor.check_packages(importer) if c.name == "optional packages"]
    assert [(c.status, c.detail) for c in optional] == [(WARN, detail)]


# ---------------------------------------------------------------------------- dependency floors
def _installed(versions: dict[str, str]):
    """A version lookup over a fixed table, with pip's name normalisation (huggingface_hub == huggingface-hub)."""
    table = {k.lower().replace("_", "-"): v for k, v in versions.items()}
    return lambda name: table.get(name.lower().replace("_", "-"))


# Written as Requires-Dist lines, the way importlib.metadata.requires() returns pyproject's dependencies.
REQUIRES = [
    "numpy>=1.24.0",
    "av>=17.1.0",
    "huggingface_hub>=0.34.0",
    "tomli>=2.0.0; python_version < \"3.8\"",  # vbg needs 3.10: never holds
    "onnxruntime-gpu>=1.19.0; python_version >= \"3.8\"",  # always holds
    "torch>=2.5.0; extra == \"torch\"",
    "onnxruntime-gpu[cuda,cudnn]>=1.21.0; extra == \"cuda\"",
    "pytest>=8.0.0; extra == \"test\"",
]


def test_outdated_lists_each_package_below_its_floor_with_the_fix():
    found = doctor.outdated(REQUIRES, _installed({
        "numpy": "2.4.6",  # above
        "av": "12.3.0",  # below
        "huggingface-hub": "0.34.0",  # exactly the floor
        "tomli": "1.0.0",  # below, but its marker never holds: not vbg's concern here
        "onnxruntime-gpu": "1.18.0",  # below vbg's own floor
        "torch": "2.2.0+cpu",  # below, a local version label
    }), extras=["torch", "cuda", "test"])  # pytest is not installed: check_packages' business, not this one's
    assert [(o.name, o.installed, o.needed, o.extra) for o in found] == [
        ("av", "12.3.0", ">=17.1.0", ""),
        ("onnxruntime-gpu", "1.18.0", ">=1.19.0", ""),  # once, against vbg's own floor
        ("torch", "2.2.0+cpu", ">=2.5.0", "torch"),
    ]
    assert [o.fix for o in found] == ["pip install -U 'av>=17.1.0'", "pip install -U 'onnxruntime-gpu>=1.19.0'",
                                      "pip install -U 'torch>=2.5.0'"]


def test_outdated_is_empty_when_everything_meets_its_floor():
    installed = _installed({"numpy": "1.24.0", "av": "18.1.0", "huggingface_hub": "2.4.0",
                            "onnxruntime-gpu": "1.21.0", "torch": "2.13.0+cpu", "pytest": "9.2.0"})
    assert doctor.outdated(REQUIRES, installed, extras=["torch", "cuda", "test"]) == []
    # vbg[cuda] asks more of onnxruntime-gpu than vbg does; whether that extra was installed is not
    # recorded anywhere, so a plain install at vbg's own floor is not flagged.
    at_own_floor = _installed({"onnxruntime-gpu": "1.19.0"})
    assert doctor.outdated(REQUIRES, at_own_floor, extras=["torch", "cuda", "test"]) == []
    # Without the extras known, an extra's requirement does not apply at all.
    old_torch = _installed({"torch": "2.2.0"})
    assert doctor.outdated(REQUIRES, old_torch) == []
    assert [o.name for o in doctor.outdated(REQUIRES, old_torch, extras=["torch"])] == ["torch"]


def test_versions_check_passes_on_this_machine():
    """The environment the tests run in was installed from pyproject.toml, so it meets every floor
    (in CI also the one installed at exactly the floors)."""
    (check,) = doctor.check_versions()
    assert check.status == OK, check


def _fake_distribution(root: Path, name: str, requires: list[str], extras: list[str]) -> None:
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Provides-Extra: {e}" for e in extras] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_versions_check_reads_the_floors_from_installed_metadata(tmp_path, monkeypatch):
    """A distribution whose declared floors lie above what is installed here: one line per package,
    a failure for its own dependency, a warning for an extra's, each with the pip command."""
    _fake_distribution(tmp_path, "vbg-floor-probe", ["pytest>=999", 'hypothesis>=999; extra == "test"',
                                                   "numpy>=1.0"], ["test"])
    monkeypatch.syspath_prepend(str(tmp_path))
    checks = doctor.check_versions("vbg-floor-probe")
    assert [c.status for c in checks] == [FAIL, WARN]
    assert checks[0].detail.startswith("pytest ") and "older than vbg-floor-probe needs (>=999)" in checks[0].detail
    assert checks[0].fix == "pip install -U 'pytest>=999'"
    assert "vbg-floor-probe[test]" in checks[1].detail and checks[1].fix == "pip install -U 'hypothesis>=999'"
    assert doctor.check_versions("vbg-no-such-distribution")[0].status == WARN


# ---------------------------------------------------------------------------- fake /sys and /dev trees
def fake_loopback(tmp_path, *, caps="Y", devices=(10,), module=True) -> tuple[str, str]:
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    dev_root.mkdir(parents=True)
    if module:
        params = sys_root / "module/v4l2loopback/parameters"
        params.mkdir(parents=True)
        (params / "exclusive_caps").write_text(caps + "\n")
    for n in devices:
        (sys_root / f"devices/virtual/video4linux/video{n}").mkdir(parents=True)
        cls = sys_root / f"class/video4linux/video{n}"
        cls.mkdir(parents=True)
        (cls / "name").write_text("vbg\n")
        (dev_root / f"video{n}").write_bytes(b"")
    return str(sys_root), str(dev_root)


def _by_name(checks, name):
    return [c for c in checks if c.name == name]


def test_module_not_loaded(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, module=False, devices=())
    (check,) = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", pipewire=lambda: False)
    assert check.status == FAIL and "modprobe v4l2loopback" in check.fix and "exclusive_caps=1" in check.fix


def test_without_the_module_a_working_pipewire_camera_makes_it_a_warning(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, module=False, devices=())
    (check,) = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", pipewire=lambda: True)
    assert check.status == WARN and "PipeWire camera stands in" in check.detail and "modprobe" in check.fix
    assert Report((check,)).ok  # the live filter starts: auto picks the PipeWire camera


def test_loaded_with_exclusive_caps_and_a_free_device(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, caps="Y,N,N,N")
    checks = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", users=lambda p: [])
    assert all(c.status == OK for c in checks), checks
    assert f"{dev_root}/video10 (vbg)" in _by_name(checks, "v4l2loopback")[0].detail
    assert _by_name(checks, "exclusive_caps")[0].status == OK
    # a plain file refuses the usage-event subscription, as v4l2loopback before 0.13 does
    assert "/proc" in _by_name(checks, "reader detection")[0].detail


def test_exclusive_caps_off_is_a_warning_with_the_reload(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, caps="N,N")
    checks = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", users=lambda p: [])
    (caps,) = _by_name(checks, "exclusive_caps")
    assert caps.status == WARN and "Chrome" in caps.detail and "exclusive_caps=1" in caps.fix
    assert Report(tuple(checks)).ok  # it still starts


def test_device_without_permission_names_the_video_group(tmp_path, monkeypatch):
    sys_root, dev_root = fake_loopback(tmp_path)
    monkeypatch.setattr(doctor, "_in_video_group", lambda: (False, "video"))
    real_access = os.access
    monkeypatch.setattr(doctor.os, "access", lambda p, mode: False if "video10" in str(p) else real_access(p, mode))
    checks = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", users=lambda p: [])
    bad = [c for c in checks if c.status == FAIL]
    assert bad and "'video' group" in bad[0].detail and "usermod -aG video" in bad[0].fix


def test_device_in_use_names_the_program(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path)
    checks = doctor.check_virtual_camera(sys_root, dev_root, system="Linux", users=lambda p: [(77, "obs")])
    assert any(c.status == WARN and "obs (pid 77)" in c.detail for c in checks)


def test_cameras_are_listed_with_their_modes_and_loopback_nodes_skipped(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, devices=(10,))
    for n in (0, 1):
        (Path(dev_root) / f"video{n}").write_bytes(b"")
    infos = {
        f"{dev_root}/video0": v4l2.V4l2Info(f"{dev_root}/video0", "uvcvideo", "HD Webcam", True, False,
                                              ("MJPG 1280x720@30", "YUYV 640x480@30")),
        f"{dev_root}/video1": v4l2.V4l2Info(f"{dev_root}/video1", "uvcvideo", "HD Webcam", False, False),
    }
    checks = doctor.check_cameras(sys_root, dev_root, system="Linux", query=infos.get, users=lambda p: [])
    assert len(checks) == 1 and checks[0].status == OK
    assert "--source 0" in checks[0].detail and "MJPG 1280x720@30" in checks[0].detail
    busy = doctor.check_cameras(sys_root, dev_root, system="Linux", query=infos.get, users=lambda p: [(5, "zoom")])
    assert busy[0].status == WARN and "zoom (pid 5)" in busy[0].detail


def test_no_camera_is_a_failure(tmp_path):
    sys_root, dev_root = fake_loopback(tmp_path, devices=())
    (check,) = doctor.check_cameras(sys_root, dev_root, system="Linux", query=lambda p: None)
    assert check.status == FAIL and "--source FILE" in check.fix


class FakeV4l2:
    """A UVC camera behind the V4L2 ioctls: MJPG (two sizes) and YUYV (one), 30 and 15 fps."""

    formats = (b"MJPG", b"YUYV")
    sizes = {b"MJPG": ((1280, 720), (640, 480)), b"YUYV": ((640, 480),)}

    def __call__(self, fd, request, buf):
        if request == v4l2.VIDIOC_QUERYCAP:
            caps = v4l2.V4L2_CAP_DEVICE_CAPS | v4l2.V4L2_CAP_VIDEO_CAPTURE
            buf[:] = v4l2.CAPABILITY.pack(b"uvcvideo", b"HD Webcam", b"usb-1", 1, caps, v4l2.V4L2_CAP_VIDEO_CAPTURE)
        elif request == v4l2.VIDIOC_ENUM_FMT:
            index, typ, *_ = v4l2.FMTDESC.unpack(bytes(buf))
            if index >= len(self.formats):
                raise OSError(errno.EINVAL, "end")
            fourcc = struct.unpack("<I", self.formats[index])[0]
            buf[:] = v4l2.FMTDESC.pack(index, typ, 0, b"Motion-JPEG", fourcc, 0)
        elif request == v4l2.VIDIOC_ENUM_FRAMESIZES:
            index, fourcc, *_ = v4l2.FRMSIZE.unpack(bytes(buf))
            sizes = self.sizes[struct.pack("<I", fourcc)]
            if index >= len(sizes):
                raise OSError(errno.EINVAL, "end")
            buf[:] = v4l2.FRMSIZE.pack(index, fourcc, v4l2.V4L2_FRMSIZE_TYPE_DISCRETE, *sizes[index], 0, 0, 0, 0)
        elif request == v4l2.VIDIOC_ENUM_FRAMEINTERVALS:
            index, fourcc, w, h, *_ = v4l2.FRMIVAL.unpack(bytes(buf))
            if index >= 2:
                raise OSError(errno.EINVAL, "end")
            den = (30, 15)[index]
            buf[:] = v4l2.FRMIVAL.pack(index, fourcc, w, h, v4l2.V4L2_FRMIVAL_TYPE_DISCRETE, 1, den, 0, 0, 0, 0)
        else:
            raise OSError(errno.ENOTTY, "unknown ioctl")


def test_v4l2_struct_sizes_match_the_kernel_headers():
    assert (v4l2.CAPABILITY.size, v4l2.FMTDESC.size, v4l2.FRMSIZE.size, v4l2.FRMIVAL.size) == (104, 64, 44, 52)
    assert v4l2.VIDIOC_QUERYCAP == 0x80685600  # the values from linux/videodev2.h on x86-64
    assert v4l2.VIDIOC_ENUM_FMT == 0xC0405602
    assert v4l2.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert v4l2.VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B


def test_query_device_reads_formats_sizes_and_rates(tmp_path):
    node = tmp_path / "video0"
    node.write_bytes(b"")
    info = v4l2.query_device(str(node), ioctl=FakeV4l2())
    assert info is not None and info.capture and not info.output
    assert (info.driver, info.card) == ("uvcvideo", "HD Webcam")
    assert info.modes == ("MJPG 1280x720@30", "MJPG 640x480@30", "YUYV 640x480@30")


def test_query_device_of_something_else_is_none(tmp_path):
    node = tmp_path / "not-video"
    node.write_bytes(b"")

    def not_v4l2(fd, request, buf):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    assert v4l2.query_device(str(node), ioctl=not_v4l2) is None
    assert v4l2.query_device(str(tmp_path / "missing")) is None


def test_gpu_check_reads_the_driver_version_from_proc(tmp_path):
    """The driver version comes from /proc/driver/nvidia/version (whose files report size 0, so
    the check must read, not stat); an unreadable or empty file still says the driver is there."""
    proc = tmp_path / "proc"
    version = proc / "driver" / "nvidia" / "version"
    version.parent.mkdir(parents=True)
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
                       "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    no_smi = lambda: None  # noqa: E731 -- this machine's nvidia-smi, if any, is not the fake tree's
    [c] = doctor.check_gpu(str(proc), str(tmp_path / "dev"), smi=no_smi, major=12)
    assert (c.status, c.detail) == (OK, "NVIDIA driver 550.54.14")
    version.write_text("")
    [c] = doctor.check_gpu(str(proc), str(tmp_path / "dev"), smi=no_smi, major=12)
    assert (c.status, c.detail) == (OK, "NVIDIA driver loaded")
    [c] = doctor.check_gpu(str(tmp_path / "none"), str(tmp_path / "dev"), smi=no_smi)
    assert c.status == WARN and "no NVIDIA GPU" in c.detail


def test_atomic_outputs_follow_the_umask(tmp_path):
    """Files written whole-or-not-at-all get the usual permissions (0666 less the umask), not mkstemp's 0600."""
    from vbg.fsutil import NewFile

    old = os.umask(0o027)
    try:
        with NewFile(tmp_path / "out.bin") as new:
            new.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o640


def test_tensorrt_cache_lists_its_engine_folders_and_their_size(tmp_path, monkeypatch):
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path))
    assert doctor.check_tensorrt_cache() == []  # none kept: nothing to say
    for key, engine in (("a1", 1_500_000), ("b2", 700_000)):
        (tmp_path / "trt" / key).mkdir(parents=True)
        (tmp_path / "trt" / key / "key.json").write_text("{}")
        (tmp_path / "trt" / key / "TensorrtExecutionProvider_TRTKernel_x_sm90.engine").write_bytes(b"e" * engine)
    (tmp_path / "trt" / "sums").mkdir()
    (tmp_path / "trt" / "sums" / "f00").write_bytes(b"s" * 50)
    (check,) = doctor.check_tensorrt_cache()
    assert check.status == OK and check.detail.startswith(f"2 engine folder(s), 2.2 MB in {tmp_path / 'trt'} (")
