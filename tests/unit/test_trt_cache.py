"""The TensorRT engine cache: its key, its folder, the first-build line and the unwritable-folder
line, as far as a machine without TensorRT can check them. ONNX Runtime itself runs for real
where it can (the session that falls back to the CPU); where TensorRT would have to run, a
recording stand-in takes ORT's place. The ``gpu`` test builds a real engine twice."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from vbg.inference import onnx_backend, trt_cache
from vbg.inference.onnx_backend import create_session, provider_list
from vbg.inference.trt_cache import engine_key, gpu_identity, model_inputs, tensorrt_version
from vbg.models.spec import SELFIE

SELFIE_ONNX = SELFIE.bundled_path()
H200 = "Model: \t\t NVIDIA H200\nIRQ:   \t\t 41\nGPU UUID: \t GPU-0000\nBus Location: \t 0000:18:00.0\n"
DRIVER = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"


def _proc(root: Path, models: list[str], driver: str = DRIVER) -> Path:
    """A fake /proc with one NVIDIA GPU per model name, in bus order."""
    (root / "driver/nvidia").mkdir(parents=True, exist_ok=True)
    (root / "driver/nvidia/version").write_text(driver)
    for i, model in enumerate(models):
        gpu = root / f"driver/nvidia/gpus/0000:{0x18 + i:02x}:00.0"
        gpu.mkdir(parents=True)
        (gpu / "information").write_text(H200.replace("NVIDIA H200", model))
    return root


def _onnx(path: Path, *, offset: float = 0.0, dims=(1, 3, 64, 64)) -> Path:
    """A tiny image model (input + constant) whose bytes change with ``offset``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    c = numpy_helper.from_array(np.full((1, 1, 1, 1), offset, np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Add", ["m", "c"], ["out"])],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(dims)),
              helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1, 1, 1])],  # an old-style initializer input
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, *dims[2:]])], initializer=[c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _key(path, root, **kw):
    args = {"fp16": True, "tensorrt": "10.9.0", "proc_root": root / "proc"}
    args.update(kw)
    return engine_key(path, root / "trt", **args)


@pytest.fixture(autouse=True)
def _vbg_records_reach_caplog(vbg_records):
    """These tests read the "vbg" logger's records through caplog (conftest's ``vbg_records``)."""


@pytest.fixture
def gpu_root(tmp_path) -> Path:
    _proc(tmp_path / "proc", ["NVIDIA H200"])
    return tmp_path


# ------------------------------------------------------------------ the key

def test_the_key_changes_with_each_of_its_parts_and_with_nothing_else(gpu_root):
    root = gpu_root
    model = _onnx(root / "a.onnx", dims=(1, 3, "h", "w"))
    base, profile = _key(model, root, input_hw=(512, 512))
    assert profile == "input:1x3x512x512" and base.input == "input:1x3x512x512"
    assert (base.precision, base.tensorrt, base.gpu, base.driver) == ("fp16", "10.9.0", "NVIDIA H200", "550.54.15")

    # Not otherwise: the same bytes elsewhere, touched, hashed again.
    copy = root / "elsewhere" / "b.onnx"
    copy.parent.mkdir()
    shutil.copy(model, copy)
    os.utime(copy, ns=(1, 1))
    assert _key(copy, root, input_hw=(512, 512))[0].digest() == base.digest()
    assert _key(model, root, input_hw=(512, 512))[0].digest() == base.digest()

    changed = {
        "model bytes": _key(_onnx(root / "c.onnx", offset=1.0, dims=(1, 3, "h", "w")), root, input_hw=(512, 512)),
        "shape": _key(model, root, input_hw=(256, 512)),
        "precision": _key(model, root, input_hw=(512, 512), fp16=False),
        "TensorRT": _key(model, root, input_hw=(512, 512), tensorrt="10.8.0"),
        "GPU": _key(model, root, input_hw=(512, 512), proc_root=_proc(root / "p2", ["NVIDIA A10"])),
        "driver": _key(model, root, input_hw=(512, 512),
                       proc_root=_proc(root / "p3", ["NVIDIA H200"], DRIVER.replace("550.54.15", "570.86.10"))),
    }
    digests = {part: k.digest() for part, (k, _) in changed.items()}
    assert base.digest() not in digests.values(), digests
    assert len(set(digests.values())) == len(digests), digests


def test_a_fixed_input_needs_no_profile_and_its_shape_is_the_models(gpu_root):
    key, profile = _key(SELFIE_ONNX, gpu_root)
    assert key.input == "input:1x3x256x256" and profile is None
    # input_hw does not override a fixed shape: the model runs at its own size
    assert _key(SELFIE_ONNX, gpu_root, input_hw=(512, 512)) == (key, None)


def test_model_inputs_reads_names_and_dims_and_skips_initializers(tmp_path):
    assert model_inputs(_onnx(tmp_path / "d.onnx", dims=(1, 3, "height", 320))) == [("input", (1, 3, "height", 320))]
    assert model_inputs(SELFIE_ONNX) == [("input", (1, 3, 256, 256))]
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert model_inputs(tmp_path / "junk.onnx") is None and model_inputs(tmp_path / "empty.onnx") is None


def test_gpu_identity_from_proc(tmp_path):
    assert gpu_identity(proc_root=tmp_path / "none") is None
    same = gpu_identity(proc_root=_proc(tmp_path / "two", ["NVIDIA L4", "NVIDIA L4"]))
    assert same == trt_cache.GpuIdentity("NVIDIA L4", "550.54.15")
    mixed = _proc(tmp_path / "mixed", ["NVIDIA L4", "NVIDIA A10"])
    first = gpu_identity(0, proc_root=mixed, environ={})
    second = gpu_identity(1, proc_root=mixed, environ={})
    assert first != second and "NVIDIA L4" in first.name and "NVIDIA A10" in first.name
    assert gpu_identity(0, proc_root=mixed, environ={"CUDA_VISIBLE_DEVICES": "1"}) != first


def test_tensorrt_version_from_the_library_the_loader_finds(tmp_path, monkeypatch):
    system, empty = tmp_path / "lib", tmp_path / "empty"
    system.mkdir()
    empty.mkdir()
    (system / "libnvinfer.so.10.9.0").write_bytes(b"")
    (system / "libnvinfer.so.10").symlink_to("libnvinfer.so.10.9.0")
    (system / "libnvinfer_plugin.so.10.3.0").write_bytes(b"")
    assert tensorrt_version([str(empty), str(system)]) == "10.9.0"
    assert tensorrt_version([str(empty)]) is None
    wheel = tmp_path / "site-packages" / "tensorrt_libs"  # a wheel: libnvinfer.so.10 alone, the version in its metadata
    wheel.mkdir(parents=True)
    (wheel / "libnvinfer.so.10").write_bytes(b"")
    assert tensorrt_version([str(wheel)]) == "10"
    monkeypatch.setattr(trt_cache, "_pip_dirs", lambda: [(str(wheel), "10.13.0.35")])
    monkeypatch.setenv("LD_LIBRARY_PATH", str(wheel) + "/")
    assert tensorrt_version() == "10.13.0.35"


def test_a_large_models_hash_is_kept_by_path_size_times_and_inode(tmp_path, monkeypatch):
    """A large model's hash is kept: a later start reads no bytes. Other bytes of the same size put
    back with the same modification time are hashed again (the change time moved, which no user
    can set back): they passed as the old file."""
    from vbg.models import hub

    reads = []
    real_hash = hub.file_sha256
    monkeypatch.setattr(hub, "file_sha256", lambda path, *a, **k: reads.append(path) or real_hash(path, *a, **k))
    big = tmp_path / "big.onnx"
    big.write_bytes(b"a" * (9 << 20))
    memo = tmp_path / "sums"
    first = trt_cache.model_sha256(big, memo)
    assert trt_cache.model_sha256(big, memo) == first and len(reads) == 1  # the memo answers
    st = big.stat()
    with open(big, "r+b") as f:  # same size, same mtime, other bytes
        f.write(b"b")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert trt_cache.model_sha256(big, memo) != first and len(reads) == 2
    assert [p.name for p in memo.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_a_hub_file_vbg_verified_is_keyed_by_its_pin_without_reading_it(tmp_path, monkeypatch):
    """The hub code's verification stamp (resolved path, size, times, inode) stands for the pinned sha256."""
    from vbg.models import spec as specs
    from vbg.models.spec import HubFile, ModelSpec

    model = tmp_path / "model.onnx"
    model.write_bytes(b"m" * 1000)
    pin = "ab" * 32  # not the file's real hash: proof that the pin is used, not a fresh hash
    hub_model = ModelSpec("hubbed", "rmbg", "", (0.5,) * 3, (1.0,) * 3, (64, 64), 64,
                          hub_files={"fp32": HubFile("onnx/model.onnx", 1000, pin)})
    monkeypatch.setattr(specs, "MODELS", {**specs.MODELS, "hubbed": hub_model})
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    assert trt_cache.model_sha256(model, None) != pin  # not verified yet: hashed
    st = model.stat()
    (tmp_path / "cache" / "verified").mkdir(parents=True)
    from vbg.models.hub import file_stamp

    (tmp_path / "cache" / "verified" / pin).write_text(json.dumps(file_stamp(model.resolve(), st)))
    assert trt_cache.model_sha256(model, None) == pin
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # changed since: the stamp no longer holds
    assert trt_cache.model_sha256(model, None) != pin


# ------------------------------------------------------------------ the options ORT is given

def test_tensorrt_options_point_at_the_folder_with_the_profile_and_fp16(tmp_path):
    name, opts = provider_list("tensorrt", cache_dir=tmp_path, profile="input:1x3x512x512")[0]
    assert name == "TensorrtExecutionProvider"
    assert opts == {"trt_fp16_enable": True,
                    "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path),
                    "trt_timing_cache_enable": True, "trt_timing_cache_path": str(tmp_path),
                    "trt_profile_min_shapes": "input:1x3x512x512", "trt_profile_opt_shapes": "input:1x3x512x512",
                    "trt_profile_max_shapes": "input:1x3x512x512"}


class _RecordingSession:
    """Stands in for ort.InferenceSession where TensorRT would have to run: records the providers
    asked for; ``runs_on`` is what it then reports, as ORT would after building (or falling back)."""

    asked: ClassVar[list] = []
    runs_on: ClassVar[list] = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def __init__(self, path, sess_options=None, providers=None):
        type(self).asked = providers

    def get_providers(self):
        return type(self).runs_on


@pytest.fixture
def trt_here(monkeypatch):
    """ONNX Runtime as if TensorRT 10.9.0 could run here: the provider, a driver, the library."""
    ort = onnx_backend.import_ort()
    monkeypatch.setattr(ort, "InferenceSession", _RecordingSession)
    monkeypatch.setattr(trt_cache, "tensorrt_usable", lambda available, gpu_present: "10.9.0")
    monkeypatch.setattr(_RecordingSession, "runs_on", list(_RecordingSession.runs_on))
    return _RecordingSession


def _infos(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("vbg") and r.levelno >= logging.INFO]


def test_a_tensorrt_session_builds_into_its_key_folder_and_announces_the_first_build(trt_here, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vbg")
    cache = tmp_path / "trt"
    model = _onnx(tmp_path / "dyn.onnx", dims=(1, 3, "h", "w"))
    _, active = create_session(model, "tensorrt", cache_dir=cache, input_hw=(512, 384), label="rmbg-1.4")
    assert active[0] == "TensorrtExecutionProvider"
    opts = trt_here.asked[0][1]
    folder = Path(opts["trt_engine_cache_path"])
    assert folder.parent == cache and opts["trt_fp16_enable"] is True  # fp16 unless asked otherwise
    assert opts["trt_profile_opt_shapes"] == "input:1x3x512x384"
    key = json.loads((folder / "key.json").read_text())
    assert folder.name == trt_cache.EngineKey(**key).digest()
    assert key["input"] == "input:1x3x512x384" and key["precision"] == "fp16" and key["tensorrt"] == "10.9.0"
    assert _infos(caplog) == [f"building the TensorRT engine for rmbg-1.4 at 512x384 fp16 (first run with this "
                              f"model, size and GPU; takes a few minutes; cached in {folder})"]

    (folder / "TensorrtExecutionProvider_TRTKernel_graph_g_1_0_sm90.engine").write_bytes(b"engine")
    caplog.clear()
    create_session(model, "tensorrt", cache_dir=cache, input_hw=(512, 384), label="rmbg-1.4")
    assert trt_here.asked[0][1]["trt_engine_cache_path"] == str(folder)
    assert _infos(caplog) == []  # built before: nothing to say

    create_session(model, "tensorrt", cache_dir=cache, input_hw=(512, 384), fp16=False)
    fp32 = Path(trt_here.asked[0][1]["trt_engine_cache_path"])
    assert fp32 != folder and trt_here.asked[0][1]["trt_fp16_enable"] is False
    assert [m for m in _infos(caplog) if "building" in m] == [
        f"building the TensorRT engine for dyn.onnx at 512x384 fp32 (first run with this model, size and GPU; "
        f"takes a few minutes; cached in {fp32})"]


def test_a_folder_made_for_a_session_that_fell_back_is_removed(trt_here, tmp_path, caplog):
    trt_here.runs_on = ["CPUExecutionProvider"]
    cache = tmp_path / "trt"
    _, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache)
    assert active == ["CPUExecutionProvider"]
    assert "trt_engine_cache_path" in trt_here.asked[0][1]
    assert [p.name for p in cache.iterdir() if p.name != trt_cache.SUMS] == []


def test_without_tensorrt_a_tensorrt_session_runs_on_the_cpu_and_writes_nothing(tmp_path, caplog):
    """Real: this machine's ONNX Runtime has no usable TensorRT."""
    if trt_cache.tensorrt_usable(onnx_backend.import_ort().get_available_providers(),
                                 gpu_present=onnx_backend.gpu_present()):
        pytest.skip("TensorRT can run here")
    caplog.set_level(logging.INFO, logger="vbg")
    sess, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=tmp_path / "cache" / "trt")
    assert active == ["CPUExecutionProvider"]
    assert sess.run(None, {"input": np.zeros((1, 3, 256, 256), np.float32)})[0].shape[:2] == (1, 1)
    assert list(tmp_path.iterdir()) == []
    messages = _infos(caplog)
    assert len(messages) == 1 and messages[0].startswith("Tensorrt is not usable here, so the model runs on CPU"), messages


# ------------------------------------------------------------------ a cache that cannot be written

def _readonly(tmp_path: Path):
    """A folder nothing can be created in, for root too (a read-only tmpfs; as another user, 0o555)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        return ro, lambda: ro.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot mount a read-only tmpfs here ({done.stderr.decode().strip()}), and "
                    "permissions do not stop root")
    return ro, lambda: subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize("where", ["read-only folder", "below a file"])
def test_an_unwritable_cache_is_one_line_and_the_session_runs_without_it(trt_here, tmp_path, caplog, where):
    caplog.set_level(logging.INFO, logger="vbg")
    if where == "below a file":
        (tmp_path / "file").write_bytes(b"")
        cache, undo = tmp_path / "file" / "trt", None
    else:
        cache, undo = _readonly(tmp_path)
    try:
        _, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache, strict=True)
    finally:
        if undo is not None:
            undo()
    assert active[0] == "TensorrtExecutionProvider"  # --strict-device too: the device asked for runs
    opts = trt_here.asked[0][1]
    assert "trt_engine_cache_path" not in opts and opts["trt_fp16_enable"] is True
    messages = _infos(caplog)
    assert len(messages) == 1, messages
    assert messages[0].startswith("cannot use the TensorRT engine cache ") and str(cache) in messages[0]
    assert messages[0].endswith("the engine is built again on every start (minutes); "
                                "set VBG_CACHE_DIR to a writable folder")


def test_a_full_cache_says_so_and_leaves_no_empty_key_folder(trt_here, tmp_path, caplog):
    """The key folder can be made but not key.json (no inode left): one line, and the folder goes again."""
    if os.geteuid() != 0:
        pytest.skip("mounting a full tmpfs needs root")
    cache = tmp_path / "full"
    cache.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=2", "tmpfs", str(cache)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        caplog.set_level(logging.INFO, logger="vbg")
        _, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache)
        left = sorted(p.name for p in cache.iterdir())
    finally:
        subprocess.run(["umount", str(cache)], check=True)
    assert active[0] == "TensorrtExecutionProvider" and "trt_engine_cache_path" not in trt_here.asked[0][1]
    messages = _infos(caplog)
    assert len(messages) == 1 and messages[0].startswith(f"cannot use the TensorRT engine cache {cache}/"), messages
    assert "(No space left on device)" in messages[0]
    assert left == []


def test_a_key_folder_that_became_read_only_is_said_too(trt_here, tmp_path, caplog):
    cache = tmp_path / "trt"
    create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache)
    folder = Path(trt_here.asked[0][1]["trt_engine_cache_path"])
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    else:  # permissions do not stop root: the folder bound read-only onto itself
        done = subprocess.run(f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}",
                              shell=True, capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip(f"root cannot bind-mount read-only here ({done.stderr.decode().strip()})")
        undo = lambda: subprocess.run(["umount", str(folder)], check=True)  # noqa: E731
    try:
        caplog.set_level(logging.INFO, logger="vbg")
        create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache)
    finally:
        undo()
    assert "trt_engine_cache_path" not in trt_here.asked[0][1]
    assert [m for m in _infos(caplog) if m.startswith(f"cannot use the TensorRT engine cache {folder}")]


# ------------------------------------------------------------------ the real thing

@pytest.mark.gpu
def test_a_real_engine_is_built_once_and_loaded_the_second_time(tmp_path, caplog):
    ort = onnx_backend.import_ort()
    if not trt_cache.tensorrt_usable(ort.get_available_providers(), gpu_present=onnx_backend.gpu_present()):
        pytest.skip("TensorRT cannot run here (needs onnxruntime-gpu, an NVIDIA driver and libnvinfer)")
    caplog.set_level(logging.INFO, logger="vbg")
    cache = tmp_path / "trt"
    x = np.random.default_rng(0).random((1, 3, 256, 256), np.float32)
    sess, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache, strict=True, label="selfie")
    assert active[0] == "TensorrtExecutionProvider"
    first = sess.run(None, {"input": x})[0]
    assert [m for m in _infos(caplog) if m.startswith("building the TensorRT engine for selfie at 256x256 fp16")]
    engines = sorted(cache.glob("*/*.engine"))
    assert engines, sorted(cache.rglob("*"))
    stamps = [(e.stat().st_ino, e.stat().st_mtime_ns) for e in engines]
    del sess
    caplog.clear()
    sess, active = create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache, strict=True, label="selfie")
    assert active[0] == "TensorrtExecutionProvider"
    assert _infos(caplog) == []
    assert sorted(cache.glob("*/*.engine")) == engines
    assert [(e.stat().st_ino, e.stat().st_mtime_ns) for e in engines] == stamps  # loaded, not rebuilt
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], first, atol=2e-2)


# ------------------------------------------------------------------ fp16 by default, fp32 when asked

class _CpuBehindTheRecorder(_RecordingSession):
    """Records the providers asked for, then really runs on ONNX Runtime's CPU provider."""

    def __init__(self, path, sess_options=None, providers=None):
        super().__init__(path, sess_options, providers)
        self._real = _REAL_SESSION(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    def __getattr__(self, name):
        return getattr(self._real, name)


_REAL_SESSION = onnx_backend.import_ort().InferenceSession


@pytest.mark.parametrize("argv,fp16", [([], True), (["--trt-precision", "fp32"], False)])
def test_the_cli_asks_tensorrt_for_fp16_unless_told_fp32(trt_here, monkeypatch, tmp_path, argv, fp16):
    from vbg.cli import _segmenter_config, build_parser
    from vbg.inference.segmenter import create_segmenter

    monkeypatch.setattr(onnx_backend.import_ort(), "InferenceSession", _CpuBehindTheRecorder)
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    args = build_parser().parse_args(["segment", "x.png", "-o", "m.png", "--model", "selfie",
                                      "--device", "tensorrt", *argv])
    seg = create_segmenter(_segmenter_config(args))
    mask = seg.segment(np.zeros((256, 256, 3), np.uint8))
    assert mask.shape == (256, 256)
    opts = _CpuBehindTheRecorder.asked[0][1]
    assert opts["trt_fp16_enable"] is fp16
    key = json.loads((Path(opts["trt_engine_cache_path"]) / "key.json").read_text())
    assert key["precision"] == ("fp16" if fp16 else "fp32")
    assert Path(opts["trt_engine_cache_path"]).parent == tmp_path / "cache" / "trt"


def test_a_model_of_any_size_gets_a_session_and_an_engine_for_the_size_used(trt_here, monkeypatch, tmp_path, caplog):
    """Opened before the first frame, such a model has no size yet: no engine to keep, nothing
    said; the first frame's size gets its own session, built for that shape and cached."""
    from vbg.inference.segmenter import SegmenterConfig, create_segmenter

    caplog.set_level(logging.INFO, logger="vbg")
    monkeypatch.setattr(onnx_backend.import_ort(), "InferenceSession", _CpuBehindTheRecorder)
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    model = _onnx(tmp_path / "any.onnx", dims=(1, 3, "h", "w"))
    seg = create_segmenter(SegmenterConfig(model=str(model), device="tensorrt", size=256))
    assert "trt_engine_cache_path" not in _CpuBehindTheRecorder.asked[0][1]
    assert _infos(caplog) == [] and not (tmp_path / "cache").exists()

    assert seg.segment(np.zeros((300, 400, 3), np.uint8)).shape == (192, 256)
    opts = _CpuBehindTheRecorder.asked[0][1]
    assert opts["trt_profile_min_shapes"] == opts["trt_profile_max_shapes"] == "input:1x3x192x256"
    folder = Path(opts["trt_engine_cache_path"])
    assert [p.name for p in (tmp_path / "cache" / "trt").iterdir()] == [folder.name]
    assert [m for m in _infos(caplog) if m.startswith("building the TensorRT engine for any.onnx at 192x256 fp16")]
    asked = _CpuBehindTheRecorder.asked
    seg.segment(np.zeros((300, 400, 3), np.uint8))
    assert _CpuBehindTheRecorder.asked is asked  # the same size: the same session, none opened


def test_a_second_session_waits_for_the_first_build_and_then_loads_it(trt_here, tmp_path, caplog):
    """Two vbg processes (or workers) on one key: the second waits on the key folder's lock
    while the first builds, then finds the engine and says nothing. Seen through /proc/locks,
    where the kernel lists a waiting flock."""
    import fcntl
    import threading
    import time

    cache = tmp_path / "trt"
    caplog.set_level(logging.INFO, logger="vbg")
    create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache)
    folder = Path(trt_here.asked[0][1]["trt_engine_cache_path"])
    caplog.clear()  # the first session's first-build line
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "the first build"
    ino = os.stat(folder).st_ino
    done = threading.Event()
    second = threading.Thread(target=lambda: (create_session(SELFIE_ONNX, "tensorrt", cache_dir=cache), done.set()))
    second.start()
    try:
        deadline = time.monotonic() + 60  # a hang guard only
        while not any("->" in line and f":{ino} " in line for line in Path("/proc/locks").read_text().splitlines()):
            assert time.monotonic() < deadline and not done.is_set(), "the second session did not wait for the lock"
            time.sleep(0.01)
        (folder / "TensorrtExecutionProvider_TRTKernel_graph_x_sm90.engine").write_bytes(b"built")
    finally:
        os.close(fd)
    second.join(60)
    assert done.is_set()
    assert [m for m in _infos(caplog) if "TensorRT engine" in m] == [
        f"waiting for another vbg run that builds the same TensorRT engine ({folder})"]


def test_an_unknown_precision_is_a_config_error_naming_the_choices():
    from vbg.errors import ConfigError
    from vbg.inference.segmenter import SegmenterConfig, create_segmenter

    with pytest.raises(ConfigError, match=r"^--trt-precision 'fp8' is not known: use fp16 or fp32$") as err:
        # checked first: a model that would be downloaded (or fail to be) is not looked at
        create_segmenter(SegmenterConfig(model=str(Path("/nonexistent/model.onnx")), trt_precision="fp8"))
    assert err.value.exit_code == 2
