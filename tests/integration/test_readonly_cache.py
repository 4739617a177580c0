"""A cache folder that cannot be created (a read-only home, a path below a file): the bundled
selfie model still runs, nothing is created, and `vbg doctor` warns instead of failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from media import person_clip_frames, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("rocache") / "clip.mp4",
                      [f for f, _ in person_clip_frames(6, (96, 128))])


def _readonly_folder(tmp_path: Path, how: str):
    """A folder nothing can be created in, for root too: below a plain file, or a read-only mount
    (as root; permissions do not stop root) / a 0o555 folder (as another user)."""
    if how == "below-a-file":
        (tmp_path / "file").write_bytes(b"")
        return tmp_path / "file" / "below", None
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "home").mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        return ro, lambda: ro.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot mount a read-only tmpfs here ({done.stderr.decode().strip()}): "
                    "the below-a-file case covers it")
    return ro, lambda: subprocess.run(["umount", str(ro)], check=True)


@pytest.fixture(params=["below-a-file", "read-only-folder"])
def ro_env(request, tmp_path):
    folder, undo = _readonly_folder(tmp_path, request.param)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    env = {"VBG_CACHE_DIR": str(folder / "vbg"), "XDG_CACHE_HOME": str(folder / "xdg"), "HOME": str(folder / "home"),
           "HF_HOME": "", "HF_HUB_CACHE": "", "HF_TOKEN": ""}
    yield env
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "out" not in p.name)
    if undo is not None:
        undo()
    assert after == [p for p in before if "out" not in p.name]  # nothing was created


def _clean(env: dict) -> dict:
    """HF_HOME/HF_HUB_CACHE unset (not empty): they then follow XDG_CACHE_HOME / HOME into the folder."""
    full = {**os.environ, **env}
    for k in ("HF_HOME", "HF_HUB_CACHE"):
        full.pop(k, None)
    return full


def _run(*args, env):
    return subprocess.run([sys.executable, "-m", "vbg", *map(str, args)], capture_output=True, text=True,
                          env=_clean(env), timeout=300)


@pytest.mark.parametrize("which", ["VBG_CACHE_DIR", "XDG_CACHE_HOME", "HOME"])
def test_process_with_the_selfie_model_needs_no_cache_folder(clip, tmp_path, ro_env, which):
    env = dict(ro_env)
    for k in ("VBG_CACHE_DIR", "XDG_CACHE_HOME"):  # the cache path comes from `which`
        if k != which:
            env[k] = ""
    out = tmp_path / "out.mp4"
    proc = _run("process", clip, "-o", out, "--model", "selfie", env=env)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_live_filter_with_the_selfie_model_needs_no_cache_folder(clip, tmp_path, ro_env):
    out = tmp_path / "out.mp4"
    proc = _run("--source", clip, "--model", "selfie", "--no-vcam", "--frames", "3", "--record", out, env=ro_env)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_doctor_warns_about_an_unwritable_cache_and_does_not_fail_on_it(ro_env):
    proc = _run("doctor", "--json", env=ro_env)
    report = json.loads(proc.stdout)
    cache = [c for c in report["checks"] if c["name"] == "model cache"]
    assert not [c for c in cache if c["status"] == "fail"], cache
    warned = [c for c in cache if ro_env["VBG_CACHE_DIR"] in c["detail"]]
    assert len(warned) == 1 and warned[0]["status"] == "warn" and "VBG_CACHE_DIR" in warned[0]["fix"], cache


def test_tensorrt_that_cannot_run_needs_no_cache_folder(clip, tmp_path, ro_env):
    """Only TensorRT writes into the cache (its engines), and only where it can run: here, without
    TensorRT, the run falls back to the CPU, says so, and says nothing about the cache. (The line
    for an unwritable cache where TensorRT runs: tests/unit/test_trt_cache.py.)"""
    from vbg.inference import onnx_backend, trt_cache

    if trt_cache.tensorrt_usable(onnx_backend.import_ort().get_available_providers(),
                                 gpu_present=onnx_backend.gpu_present()):
        pytest.skip("TensorRT can run here")
    out = tmp_path / "out.mp4"
    proc = _run("process", clip, "-o", out, "--model", "selfie", "--device", "tensorrt", env=ro_env)
    assert proc.returncode == 0, proc.stderr
    assert "not usable here" in proc.stderr and "TensorRT engine" not in proc.stderr, proc.stderr


def test_weights_that_need_an_export_name_the_cache_folder_and_its_fix(rmbg_net, tmp_path):
    """--model WEIGHTS.safetensors is exported to ONNX into the cache: when the folder cannot be
    made, one line says which folder and VBG_CACHE_DIR (not -o, which is not where it writes)."""
    from safetensors.torch import save_file

    from conftest import PEOPLE

    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rmbg_net.state_dict().items()}, str(weights))
    (tmp_path / "file").write_bytes(b"")
    env = {"VBG_CACHE_DIR": str(tmp_path / "file" / "vbg")}
    proc = _run("segment", PEOPLE / "example03_background01.jpg", "--model", weights, "--size", "128",
                "-o", tmp_path / "m.png", env=env)
    assert proc.returncode == 10, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(tmp_path / "file" / "vbg" / "exports") in errors[0] and "VBG_CACHE_DIR" in errors[0]
    assert not (tmp_path / "m.png").exists()
    # where the cache can be written: the line names the device its session opened on (it was
    # "model model.safetensors on ", said before the export that opens the session)
    proc = _run("segment", PEOPLE / "example03_background01.jpg", "--model", weights, "--size", "128",
                "-o", tmp_path / "m.png", env={"VBG_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "vbg: model model.safetensors on CPUExecutionProvider\n" in proc.stderr, proc.stderr
