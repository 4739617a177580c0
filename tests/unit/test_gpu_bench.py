"""The GPU benchmark and the GPU inference path, as far as a machine without a
GPU can check them: the provider options asked for, the "asked for CUDA but
running on the CPU" detection (which really happens here with onnxruntime-gpu),
its one-line note in place of GPU tables, and the I/O binding code run on the
CPU device. The tests marked ``gpu`` check the real thing where there is one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from benchmarks import __main__ as bench_main
from benchmarks import common, inference
from benchmarks.gpu import NoGpu, open_session, parse_devices, probe, unusable_note
from vbg.inference import onnx_backend
from vbg.inference.onnx_backend import (
    BoundRunner,
    create_session,
    io_device,
    provider_list,
)
from vbg.models.spec import SELFIE

ROOT = Path(__file__).resolve().parents[2]
SELFIE_ONNX = SELFIE.bundled_path()
ORT_LOAD_ERROR = (
    "\x1b[1;31m2026-01-01 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] ... Failed to load "
    "library .../libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object "
    "file: No such file or directory\n\x1b[m\n"
)


@pytest.fixture(scope="module")
def cuda_note() -> str:
    """The note this machine gives for CUDA; the CPU-only tests skip where a GPU works."""
    note = probe("cuda")
    if note is None:
        pytest.skip("a CUDA GPU is usable here: the no-GPU behaviour cannot be seen")
    return note


# ------------------------------------------------------------------ provider options

def test_cuda_providers_end_with_the_cpu():
    wanted = provider_list("cuda")
    assert wanted[0] == ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
    assert wanted[1:] == ["CPUExecutionProvider"]


def test_tensorrt_options_carry_fp16_and_both_caches(tmp_path):
    wanted = provider_list("tensorrt", cache_dir=tmp_path, fp16=True)
    name, opts = wanted[0]
    assert name == "TensorrtExecutionProvider"
    assert opts == {"trt_fp16_enable": True,
                    "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path),
                    "trt_timing_cache_enable": True, "trt_timing_cache_path": str(tmp_path)}
    assert [p if isinstance(p, str) else p[0] for p in wanted[1:]] == ["CUDAExecutionProvider",
                                                                       "CPUExecutionProvider"]
    assert provider_list("tensorrt", fp16=False)[0][1] == {"trt_fp16_enable": False}  # no cache asked: none set


class _RecordingSession:
    """Stands in for ort.InferenceSession: records what it was asked for and,
    like onnxruntime-gpu without a GPU, runs on the CPU."""

    asked: ClassVar[list] = []

    def __init__(self, path, sess_options=None, providers=None):
        type(self).asked = providers

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_create_session_passes_fp16_and_makes_no_cache_folder_where_tensorrt_cannot_run(monkeypatch, tmp_path):
    from vbg.inference import trt_cache

    ort = onnx_backend.import_ort()
    if trt_cache.tensorrt_usable(ort.get_available_providers(), gpu_present=onnx_backend.gpu_present()):
        pytest.skip("TensorRT can run here (tests/unit/test_trt_cache.py covers the cache)")
    monkeypatch.setattr(ort, "InferenceSession", _RecordingSession)
    cache = tmp_path / "trt" / "engines"
    _, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache, fp16=False)
    assert _RecordingSession.asked[0][1] == {"trt_fp16_enable": False}
    assert not (tmp_path / "trt").exists()  # no TensorRT here: nothing to keep
    assert active == ["CPUExecutionProvider"]


def test_parse_devices():
    assert parse_devices("cuda,tensorrt") == ["cuda", "tensorrt"]
    assert parse_devices(" cpu , cuda,cpu") == ["cpu", "cuda"]
    with pytest.raises(ValueError, match="cpu, cuda, tensorrt"):
        parse_devices("gpu")
    with pytest.raises(ValueError):
        parse_devices(",")


# ------------------------------------------------------------------ the fallback note

def test_note_is_none_when_the_provider_asked_for_is_in_use():
    assert unusable_note("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert unusable_note("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider"]) is None


def test_cpu_fallback_note_is_one_line_with_the_reason():
    note = unusable_note("cuda", ["CPUExecutionProvider"], ORT_LOAD_ERROR, gpu_present=False)
    assert note == ("no usable CUDA GPU here: ONNX Runtime was asked for CUDAExecutionProvider and runs on "
                    "CPUExecutionProvider (no NVIDIA driver found; libcublasLt.so.13: cannot open shared object "
                    "file: No such file or directory); GPU tables not produced")
    # TensorRT that ended on the CPU has no GPU either: the same kind of note.
    assert unusable_note("tensorrt", ["CPUExecutionProvider"], "", gpu_present=True).startswith(
        "no usable CUDA GPU here: ONNX Runtime was asked for TensorrtExecutionProvider")


def test_tensorrt_falling_back_to_cuda_names_tensorrt_alone():
    note = unusable_note("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"], "", gpu_present=True)
    assert note.startswith("TensorRT not usable here: ")
    assert note.endswith("; TensorRT table not produced") and "\n" not in note


def test_asking_for_cuda_here_is_caught_and_nothing_leaks(cuda_note, capfd):
    """Real: onnxruntime-gpu without a GPU creates the session on the CPU."""
    with pytest.raises(NoGpu) as err:
        open_session(SELFIE_ONNX, "cuda")
    note = str(err.value)
    assert note == cuda_note
    assert note.startswith("no usable CUDA GPU here: ONNX Runtime was asked for CUDAExecutionProvider and runs "
                           "on CPUExecutionProvider")
    assert note.endswith("; GPU tables not produced") and "\n" not in note
    out, errout = capfd.readouterr()
    assert out == "" and errout == ""  # ONNX Runtime's own load errors were captured, not printed


def test_gpu_part_without_a_gpu_prints_one_line_and_makes_no_rows(cuda_note, capsys, tmp_path):
    gpu = {"rows": [], "notes": []}
    inference.gpu_part(gpu, ["cuda", "tensorrt"], None, {64: SELFIE_ONNX}, tmp_path, repeat=1, threads=1)
    assert gpu["rows"] == []
    assert gpu["notes"] == [{"device": "cuda", "note": cuda_note}, {"device": "tensorrt", "note": cuda_note}]
    assert capsys.readouterr().out == cuda_note + "\n"
    md = inference.gpu_markdown(gpu, ["cuda", "tensorrt"], {"gpu": None, "cpu": "x", "cores": 2})
    assert md.count("**Not run**: no usable CUDA GPU here") == 1
    assert "| model |" not in md


def test_gpu_markdown_tables():
    t = {"median_ms": 4.0, "p95_ms": 5.0, "min_ms": 3.0, "runs": 50}
    rows = [{"device": "cuda", "model": "m", "size": "256x256", "precision": "fp16", "run": dict(t, median_ms=6.0),
             "iobinding_host": t, "iobinding_device": dict(t, median_ms=3.0)},
            {"device": "tensorrt", "model": "m", "size": "256x256", "precision": "fp32 graph, fp16 kernels",
             "first_session_s": 41.0, "cached_session_s": 1.5, "run": t, "iobinding_device": t}]
    md = inference.gpu_markdown({"rows": rows, "notes": []}, ["cuda", "tensorrt"],
                                {"gpu": "NVIDIA H100", "cpu": "x", "cores": 16})
    assert "GPU: NVIDIA H100" in md and "Median (p95) of 50 runs" in md and "Not run" not in md
    assert "| m | 256x256 | fp16 | 6.00 (5.00) | 4.00 (5.00) | 3.00 (5.00) | 1.50x |" in md
    assert "| m | 256x256 | 41.0 | 1.5 | 4.00 (5.00) | 4.00 (5.00) |" in md


# ------------------------------------------------------------------ I/O binding, run on the CPU device

def _selfie_session():
    sess, _ = create_session(SELFIE_ONNX, "cpu", threads=1)
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    return sess, inp.name, out.name, tuple(inp.shape)


def test_bound_runner_matches_session_run_and_returns_fresh_arrays():
    sess, in_name, out_name, shape = _selfie_session()
    rng = np.random.default_rng(0)
    x1, x2 = (rng.random(shape, dtype=np.float32) for _ in range(2))
    run = BoundRunner(sess, in_name, out_name, shape, np.float32, device="cpu")
    a = run(x1)
    a_copy = a.copy()
    b = run(x2)
    np.testing.assert_allclose(a, sess.run([out_name], {in_name: x1})[0], atol=1e-6)
    np.testing.assert_allclose(b, sess.run([out_name], {in_name: x2})[0], atol=1e-6)
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, a_copy)  # a later run does not overwrite a mask still in use


def test_on_device_runner_runs_with_io_binding():
    sess, _, _, shape = _selfie_session()
    run = inference.on_device_runner(sess, np.zeros(shape, np.float32), device="cpu")
    run()
    run()


def test_io_device():
    assert io_device(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert io_device(["TensorrtExecutionProvider", "CUDAExecutionProvider"]) == "cuda"
    assert io_device(["CPUExecutionProvider"]) is None
    assert io_device([]) is None


def _segment_twice(frame):
    from vbg.inference import SegmenterConfig, create_segmenter

    with create_segmenter(SegmenterConfig(model="selfie", device="cpu", threads=1)) as seg:
        first = seg.segment(frame)
        second = seg.segment(frame)
        return first, second, dict(seg._bound)


def test_segmenter_binds_only_gpu_sessions(monkeypatch):
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    plain, plain2, bound = _segment_twice(frame)
    assert bound == {}  # the CPU path keeps session.run
    assert not np.shares_memory(plain, plain2)
    # The same wiring a CUDA session gets, with the CPU device standing in for the GPU:
    monkeypatch.setattr(onnx_backend, "io_device", lambda active: "cpu")
    via_binding, again, bound = _segment_twice(frame)
    assert len(bound) == 1 and isinstance(next(iter(bound.values())), BoundRunner)
    np.testing.assert_allclose(via_binding, plain, atol=1e-6)
    assert not np.shares_memory(via_binding, again)


# ------------------------------------------------------------------ machine info, RESULTS

def test_gpu_name_from_nvidia_smi(monkeypatch):
    try:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    except ImportError:
        pass
    monkeypatch.setattr(common.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def smi(cmd, **kw):
        assert cmd[0] == "/usr/bin/nvidia-smi" and "--format=csv,noheader" in cmd
        return subprocess.CompletedProcess(cmd, 0, "NVIDIA H100 80GB HBM3, 570.86.15, 81559 MiB\n", "")

    assert common.gpu_name(run=smi) == "NVIDIA H100 80GB HBM3 (driver 570.86.15, 81559 MiB)"
    assert common.gpu_name(run=lambda cmd, **kw: subprocess.CompletedProcess(cmd, 9, "", "no devices")) is None
    monkeypatch.setattr(common.shutil, "which", lambda name: None)
    assert common.gpu_name(run=smi) is None


def test_results_headings_move_one_level_down():
    assert bench_main.demote_headings("# A\n\ntext # not\n## B\n") == "## A\n\ntext # not\n### B\n"


class _FakeStages:
    """A CPU part that costs nothing."""

    @staticmethod
    def main(argv):
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "stages.md").write_text("# Per-stage costs\n\n| stage | ms |\n|---|---|\n| resize | 0.1 |\n")
        return 0


def test_benchmarks_gpu_without_a_gpu_still_writes_the_cpu_results(cuda_note, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench_main, "PARTS", {"stages": _FakeStages})
    assert bench_main.main(["--quick", "--gpu", "--only", "stages", "--out", str(tmp_path)]) == 0
    results = (tmp_path / "RESULTS.md").read_text()
    assert "`python -m benchmarks --quick --gpu`" in results
    assert "## Per-stage costs" in results and "| resize | 0.1 |" in results
    assert "## Inference on the GPU" in results
    assert f"**Not run**: {cuda_note}." in results
    assert capsys.readouterr().out.count("no usable CUDA GPU here") == 1


def test_inference_cli_with_cuda_here_exits_cleanly_with_the_note(cuda_note, tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.inference", "--device", "cuda", "--sizes", "192", "--repeat", "1",
           "--no-torch", "--int8", "", "--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == cuda_note and lines[1].startswith("wrote ") and len(lines) == 2
    assert res.stderr == ""
    assert f"**Not run**: {cuda_note}." in (tmp_path / "inference_gpu.md").read_text()
    payload = json.loads((tmp_path / "inference_gpu.json").read_text())
    assert payload["rows"] == [] and payload["notes"] == [{"device": "cuda", "note": cuda_note}]
    assert not (tmp_path / "inference.md").exists()  # the CPU tables are not touched by a GPU run


# ------------------------------------------------------------------ on a GPU

@pytest.mark.gpu
def test_cuda_segmenter_uses_io_binding_and_agrees_with_the_cpu():
    note = probe("cuda")
    if note is not None:
        pytest.skip(note)
    from vbg.inference import SegmenterConfig, create_segmenter

    frame = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with create_segmenter(SegmenterConfig(model="selfie", device="cpu")) as cpu:
        want = cpu.segment(frame)
    with create_segmenter(SegmenterConfig(model="selfie", device="cuda", strict_device=True)) as gpu:
        got = gpu.segment(frame)
        assert gpu.providers[0] == "CUDAExecutionProvider" and len(gpu._bound) == 1
    np.testing.assert_allclose(got, want, atol=2e-3)
