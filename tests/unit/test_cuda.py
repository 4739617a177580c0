"""The NVIDIA stack under the CUDA and TensorRT providers (vbg/inference/cuda.py): which layer is
missing, told against fake /proc trees and fake library folders; the GPUs listed; --gpu checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from vbg.errors import ConfigError
from vbg.inference import cuda

VERSION_LINE = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Thu Feb 22 01:44:30 UTC 2024\n"
SMI = "0, NVIDIA H200, 143771\n1, NVIDIA GeForce RTX 4090, 24564\n"


def fake_proc(tmp_path: Path, driver: str | None, gpus: tuple[str, ...] = ()) -> str:
    proc = tmp_path / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    if driver is not None:
        nv = proc / "driver" / "nvidia"
        nv.mkdir(parents=True, exist_ok=True)
        (nv / "version").write_text(VERSION_LINE.format(driver) if driver else "")
        for i, model in enumerate(gpus):
            g = nv / "gpus" / f"0000:{i + 1:02x}:00.0"
            g.mkdir(parents=True)
            (g / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 150\nDevice Minor: \t {i}\n")
    return str(proc)


def fake_libs(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"\x7fELF")
    return folder


CUDA13 = ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13")


@pytest.mark.parametrize("version,build,major", [
    ("1.31.1", "13.0", 13), ("1.31.1", None, 13), ("1.27.0", None, 13), ("1.26.2", None, 12),
    ("1.21.0", "12.8", 12), ("1.21.0", None, 12)])
def test_cuda_major_follows_the_build_else_the_release(version, build, major):
    assert cuda.cuda_major(version, build) == major


def test_no_driver_is_named_first_whatever_else_is_there(tmp_path):
    libs = fake_libs(tmp_path / "site" / "nvidia" / "cu13" / "lib", *CUDA13)
    fake_libs(tmp_path / "site" / "nvidia" / "cudnn" / "lib", "libcudnn.so.9")
    folders = cuda.wheel_folders([tmp_path / "site"])
    assert libs in folders
    m = cuda.diagnose("cuda", major=13, proc_root=fake_proc(tmp_path, None), folders=folders)
    assert m.layer == "driver" and "no NVIDIA driver" in m.detail and "580 or newer" in m.fix


def test_libcuda_alone_counts_as_a_driver(tmp_path):
    """WSL has libcuda.so.1 but no /proc/driver/nvidia."""
    sys_lib = fake_libs(tmp_path / "usr" / "lib" / "wsl" / "lib", "libcuda.so.1")
    m = cuda.diagnose("cuda", major=13, proc_root=fake_proc(tmp_path, None), folders=[sys_lib])
    assert m.layer == "CUDA runtime"


@pytest.mark.parametrize("major,driver,old", [(13, "575.57.08", True), (13, "580.65.06", False),
                                              (12, "525.60.11", True), (12, "535.154.05", False)])
def test_driver_older_than_the_cuda_major_needs_says_which_version(tmp_path, major, driver, old):
    proc = fake_proc(tmp_path, driver)
    m = cuda.diagnose("cuda", major=major, proc_root=proc, folders=[])
    if old:
        assert m.layer == "driver version" and driver in m.detail and f"CUDA {major}" in m.detail
        assert m.fix.startswith("upgrade the NVIDIA driver to " + (".".join(map(str, cuda.MIN_DRIVER[major]))))
    else:
        assert m.layer == "CUDA runtime"  # the next layer up: nothing else is in the empty folder list


def test_each_library_layer_is_named_with_its_fix(tmp_path):
    proc = fake_proc(tmp_path, "580.95.05")
    site = tmp_path / "site"
    rt = tmp_path / "site" / "nvidia" / "cu13" / "lib"
    fake_libs(rt, "libcudart.so.13", "libcublas.so.13")

    def diag(device="cuda"):
        return cuda.diagnose(device, major=13, proc_root=proc, folders=cuda.wheel_folders([site]))

    m = diag()
    assert m.layer == "CUDA runtime" and "libcublasLt.so.13" in m.detail and "libcudart" not in m.detail
    assert m.fix == "pip install 'vbg[cuda]'"
    fake_libs(rt, "libcublasLt.so.13")
    m = diag()
    assert m.layer == "cuDNN" and "libcudnn.so.9" in m.detail and m.fix == "pip install 'vbg[cuda]'"
    fake_libs(site / "nvidia" / "cudnn" / "lib", "libcudnn.so.9")
    assert diag() is None
    m = diag("tensorrt")
    assert m.layer == "TensorRT" and "libnvinfer" in m.detail and "--device cuda" in m.fix
    fake_libs(site / "tensorrt_libs", "libnvinfer.so.10")
    assert diag("tensorrt") is None


def test_cuda12_libraries_of_a_cuda13_build_do_not_count(tmp_path):
    proc = fake_proc(tmp_path, "580.95.05")
    folders = [fake_libs(tmp_path / "lib", "libcudart.so.12", "libcublasLt.so.12", "libcublas.so.12",
                         "libcudnn.so.9")]
    assert cuda.diagnose("cuda", major=13, proc_root=proc, folders=folders).layer == "CUDA runtime"
    assert cuda.diagnose("cuda", major=12, proc_root=proc, folders=folders) is None


def test_system_folders_follow_ld_library_path_and_ld_so_conf(tmp_path):
    etc = tmp_path / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "ld.so.conf").write_text("include /nowhere/*.conf\ninclude ld.so.conf.d/*.conf\n/opt/a # comment\n")
    (etc / "ld.so.conf.d" / "cuda.conf").write_text("/usr/local/cuda/lib64\n")
    folders = cuda.system_folders({"LD_LIBRARY_PATH": "/first:/second"}, str(etc))
    assert folders[:4] == [Path("/first"), Path("/second"), Path("/usr/local/cuda/lib64"), Path("/opt/a")]
    assert Path("/usr/lib/x86_64-linux-gnu") in folders


def test_gpus_come_from_nvidia_smi_with_their_memory(tmp_path):
    gpus = cuda.list_gpus(fake_proc(tmp_path, "580.95.05", ("NVIDIA H200",)), smi=lambda: SMI)
    assert gpus == [cuda.Gpu(0, "NVIDIA H200", 143771), cuda.Gpu(1, "NVIDIA GeForce RTX 4090", 24564)]
    assert gpus[0].describe() == "0: NVIDIA H200, 140 GiB"


def test_gpus_come_from_proc_without_nvidia_smi(tmp_path):
    proc = fake_proc(tmp_path, "580.95.05", ("NVIDIA A100-SXM4-80GB", "NVIDIA L4"))
    assert cuda.list_gpus(proc, smi=lambda: None) == [cuda.Gpu(0, "NVIDIA A100-SXM4-80GB"), cuda.Gpu(1, "NVIDIA L4")]
    assert cuda.list_gpus(fake_proc(tmp_path / "none", None), smi=lambda: None) == []


def test_gpu_index_beyond_the_gpus_seen_is_a_config_error():
    two = [cuda.Gpu(0, "a"), cuda.Gpu(1, "b")]
    assert cuda.gpu_index_problem(1, two) is None
    e = cuda.gpu_index_problem(2, two)
    assert isinstance(e, ConfigError) and e.exit_code == 2
    assert str(e) == "--gpu 2 is beyond the 2 GPU(s) seen here (0, 1): pass one of them (vbg doctor lists them)"
    assert "no NVIDIA GPU is seen here" in str(cuda.gpu_index_problem(1, []))
    assert cuda.gpu_index_problem(0, []) is None  # the default: the device fallback says what is missing
    assert cuda.gpu_index_problem(7, None) is None  # cannot be counted here: not refused


def test_doctor_lists_the_gpus_with_their_memory(tmp_path):
    from vbg import doctor

    proc = fake_proc(tmp_path, "580.95.05", ("NVIDIA H200",))
    [c] = doctor.check_gpu(proc, str(tmp_path / "dev"), smi=lambda: SMI, major=13)
    assert c.status == doctor.OK
    assert c.detail == ("NVIDIA driver 580.95.05: GPU 0: NVIDIA H200, 140 GiB; GPU 1: NVIDIA GeForce RTX 4090, "
                        "24 GiB (--gpu N picks one)")
    [c] = doctor.check_gpu(proc, str(tmp_path / "dev"), smi=lambda: None, major=13)
    assert c.detail == "NVIDIA driver 580.95.05: GPU 0: NVIDIA H200 (--gpu N picks one)"


def test_doctor_warns_of_a_driver_too_old_for_the_cuda_major(tmp_path):
    from vbg import doctor

    proc = fake_proc(tmp_path, "550.54.14", ("NVIDIA L4",))
    [c] = doctor.check_gpu(proc, str(tmp_path / "dev"), smi=lambda: None, major=13)
    assert c.status == doctor.WARN and "CUDA 13" in c.detail and c.fix == "upgrade the NVIDIA driver to 580 or newer"
    [c] = doctor.check_gpu(proc, str(tmp_path / "dev"), smi=lambda: None, major=12)
    assert c.status == doctor.OK


def test_doctor_names_the_missing_layer_of_the_gpu_providers():
    from vbg import doctor

    def missing(device):
        return cuda.Missing("cuDNN", "cuDNN 9 is missing (libcudnn.so.9 not found)", "pip install 'vbg[cuda]'")

    c = doctor._gpu_providers_check("1.31.1", ["CPU"], [("Tensorrt", "x"), ("CUDA", "y")], missing)
    assert c.status == doctor.WARN and c.fix == "pip install 'vbg[cuda]'"
    assert c.detail == ("onnxruntime 1.31.1: CPU loads; listed but not loading: Tensorrt, CUDA: cuDNN 9 is missing "
                        "(libcudnn.so.9 not found)")
