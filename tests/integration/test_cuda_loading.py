"""The CUDA path loads: the nvidia wheels' libraries are loaded before the first GPU session (ONNX
Runtime's provider has no RUNPATH to them), once per process; what is missing reaches the terminal
as one vbg line naming the layer and its fix, never ONNX Runtime's own log; --gpu N is checked and
reaches the providers.

The wheels are stood in for by a fake site-packages folder holding real shared objects under the
CUDA libraries' names, next to the real onnxruntime package: the real ``preload_dlls`` loads them,
and this process's memory map shows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PEOPLE, run_vbg
from vbg.inference import cuda
from vbg.inference.onnx_backend import create_session, gpu_present, provider_list
from vbg.models.spec import SELFIE

WORKTREE = Path(__file__).resolve().parents[2]
ROOM = PEOPLE / "background01.jpg"
NO_DRIVER = not os.path.exists("/proc/driver/nvidia/version") and not gpu_present()

# Where the wheels keep each library, per CUDA major (nvidia-*-cu12 packages; one nvidia/cu13 from 13 on).
WHEEL_LAYOUT = {
    12: {"libcudart.so.12": "cuda_runtime", "libcublasLt.so.12": "cublas", "libcublas.so.12": "cublas"},
    13: {"libcudart.so.13": "cu13", "libcublasLt.so.13": "cu13", "libcublas.so.13": "cu13"},
}

PROBE = r"""
import json, sys
site = sys.argv[1]
def mapped():
    out = set()
    for line in open("/proc/self/maps"):
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].strip().startswith(site):
            out.add(parts[5].strip())
    return sorted(out)
from vbg.inference.onnx_backend import create_session
from vbg.inference import cuda
from vbg.models.spec import SELFIE
before = mapped()
sess, active = create_session(SELFIE.bundled_path(), sys.argv[2])
after = mapped()
print(json.dumps({"before": before, "after": after, "again": cuda.preload(sys.argv[2]), "active": active}))
"""


def a_shared_object() -> Path:
    """A real ELF shared object that loads anywhere Python runs: one of the interpreter's own extensions."""
    import _ctypes

    return Path(_ctypes.__file__)


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory) -> tuple[Path, list[Path]]:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("the CPU-only onnxruntime package: it has no CUDA provider to load libraries for")
    major = cuda.installed_cuda_major()
    site = tmp_path_factory.mktemp("site")
    (site / "onnxruntime").symlink_to(Path(onnxruntime.__file__).parent, target_is_directory=True)
    so = a_shared_object()
    libs = []
    for name, package in [*WHEEL_LAYOUT[major].items(), (cuda.CUDNN, "cudnn")]:
        target = site / "nvidia" / package / "lib" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(so, target)
        libs.append(target)
    return site, libs


def probe(site: Path, device: str = "cuda") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(WORKTREE)])}
    done = subprocess.run([sys.executable, "-c", PROBE, str(site), device], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # nothing but the result on stdout: ONNX Runtime's prints are kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_wheel_libraries_are_loaded_before_the_first_gpu_session_once(fake_site, device):
    site, libs = fake_site
    got = probe(site, device)
    assert got["before"] == []
    assert set(map(str, libs)) <= set(got["after"]), got
    assert got["again"] == []  # once per process


DOCTOR_PROBE = PROBE.split("from vbg.inference.onnx_backend")[0] + r"""
from vbg import doctor
[check] = doctor.check_providers()
print(json.dumps({"after": mapped(), "detail": check.detail}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_doctor_loads_the_wheel_libraries_before_it_tries_the_gpu_providers(fake_site):
    site, libs = fake_site
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(WORKTREE)])}
    done = subprocess.run([sys.executable, "-c", DOCTOR_PROBE, str(site)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert set(map(str, libs)) <= set(got["after"]), got
    if NO_DRIVER:  # the libraries are there, so the driver is what the doctor names
        assert "no NVIDIA driver is loaded" in got["detail"] and "libcublas" not in got["detail"]


def test_cpu_sessions_load_nothing_of_cuda(fake_site):
    site, _ = fake_site
    got = probe(site, "cpu")
    assert got["after"] == [] and got["active"] == ["CPUExecutionProvider"]


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
@pytest.mark.parametrize("strict", [False, True])
def test_cuda_without_a_driver_says_so_in_one_line(tmp_path, strict):
    """With or without the CUDA libraries, no driver is the layer named; ONNX Runtime's own
    multi-line log (in colour) never reaches the terminal."""
    out = tmp_path / "mask.png"
    args = ["segment", str(ROOM), "-o", str(out), "--model", "selfie", "--device", "cuda"]
    proc = run_vbg(*args, *(["--strict-device"] if strict else []))
    lines = proc.stderr.splitlines()
    assert len(lines) == (1 if strict else 3), proc.stderr  # else: the model line and the image written
    assert "\x1b" not in proc.stderr and "onnxruntime" not in proc.stderr.lower() and proc.stdout == ""
    assert "no NVIDIA driver is loaded" in lines[0] and "install the NVIDIA driver, 5" in lines[0]
    if strict:
        assert proc.returncode == 8 and lines[0].startswith("vbg: error: --device cuda asked for CUDA")
        assert not out.exists()
    else:
        assert proc.returncode == 0 and lines[0].startswith("vbg: CUDA is not usable here, so the model runs on CPU")
        assert out.exists()


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
def test_gpu_beyond_the_gpus_seen_is_one_config_error_line(tmp_path):
    proc = run_vbg("segment", str(ROOM), "-o", str(tmp_path / "m.png"), "--model", "selfie", "--gpu", "1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == ("vbg: error: --gpu 1: no NVIDIA GPU is seen here: leave out --gpu "
                                           "(vbg doctor says what is missing)")
    assert not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("args,config", [(("--gpu", "256"), None), ((), "[model]\ngpu = 256\n"),
                                         (("--gpu", "-1"), None)])
def test_gpu_out_of_range_flag_or_key_is_a_config_error(tmp_path, args, config):
    extra = ()
    if config is not None:
        (tmp_path / "c.toml").write_text(config)
        extra = ("--config", str(tmp_path / "c.toml"))
    proc = run_vbg("--source", str(ROOM), "--no-vcam", "--record", str(tmp_path / "o.mp4"), "--frames", "1",
                   *args, *extra)
    assert proc.returncode == 2, proc.stderr
    label = "[model] gpu =" if config else "--gpu"
    value = "256" if config or "256" in args else "-1"
    assert f"vbg: error: {label} {value} is out of range: use 0..255" in proc.stderr.splitlines()[0]


def test_gpu_flag_and_config_key_reach_the_providers_and_the_encoder_setting(tmp_path, monkeypatch):
    from vbg import cli
    from vbg.inference import onnx_backend, segmenter

    (tmp_path / "c.toml").write_text("[model]\ngpu = 2\n")
    parse = cli.build_live_parser().parse_args
    assert cli.live_config(parse(["--config", str(tmp_path / "c.toml")])).model.gpu == 2
    assert cli.live_config(parse(["--config", str(tmp_path / "c.toml"), "--gpu", "1"])).model.gpu == 1
    assert cli.live_config(parse([])).model.gpu == 0
    seg_args = cli.build_parser().parse_args(["segment", "x.png", "-o", "y.png", "--gpu", "3"])
    assert cli._segmenter_config(seg_args).gpu == 3

    asked = []
    real = onnx_backend.provider_list

    def spy(device, **kw):
        asked.append(real(device, **kw))
        return asked[-1]

    monkeypatch.setattr(onnx_backend, "provider_list", spy)
    with segmenter.create_segmenter(segmenter.SegmenterConfig(model="selfie", device="cuda", gpu=1)):
        pass
    assert asked[0][0] == ("CUDAExecutionProvider", {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC"})


def test_provider_options_carry_the_gpu_index(tmp_path):
    trt, cuda_, cpu = provider_list("tensorrt", cache_dir=tmp_path, gpu=3)
    assert trt[1]["device_id"] == 3 and cuda_[1]["device_id"] == 3 and cpu == "CPUExecutionProvider"
    assert "device_id" not in provider_list("cuda")[0][1]  # GPU 0: ONNX Runtime's default, options as before


@pytest.mark.gpu
@pytest.mark.skipif(NO_DRIVER, reason="needs an NVIDIA driver and GPU")
def test_cuda_loads_from_the_wheels_on_the_gpu_asked_for():
    """On a GPU machine with vbg[cuda]: the CUDA provider really loads (the preload), on --gpu's device."""
    sess, active = create_session(SELFIE.bundled_path(), "cuda", strict=True, gpu=0)
    assert active[0] == "CUDAExecutionProvider"
    assert sess.get_provider_options()["CUDAExecutionProvider"]["device_id"] == "0"


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
def test_benchmarks_gpu_note_names_the_missing_layer():
    from benchmarks.gpu import probe as gpu_probe

    note = gpu_probe("cuda")
    assert note.startswith("no usable CUDA GPU here: ONNX Runtime was asked for CUDAExecutionProvider")
    assert "(no NVIDIA driver is loaded" in note and "install the NVIDIA driver, 5" in note
    assert note.endswith("; GPU tables not produced") and "\n" not in note
