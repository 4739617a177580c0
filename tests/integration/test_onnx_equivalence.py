"""The exported graph computes what the torch module computes (d1), on ONNX Runtime's CPU provider."""

from __future__ import annotations

import numpy as np
import pytest

# Both sides of the comparison come from the torch extra (torch, onnx).
_WHY = "exporting and running the torch module needs the torch extra: pip install -e '.[torch]'"
torch = pytest.importorskip("torch", reason=_WHY)
onnx = pytest.importorskip("onnx", reason=_WHY)

from conftest import RMBG_TEST_SIZE, iou  # noqa: E402
from vbg.inference.onnx_backend import create_session  # noqa: E402
from vbg.inference.segmenter import OnnxSegmenter, TorchSegmenter  # noqa: E402
from vbg.models.resolve import ModelSource, resolve_model  # noqa: E402
from vbg.models.spec import RMBG14  # noqa: E402


def _eager(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.matte(torch.from_numpy(x)).numpy()


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess, _ = create_session(path, "cpu")
    return sess.run(["output"], {"input": x})[0]


def test_graph_contract(rmbg_onnx, rmbg_onnx_dynamic):
    fixed = onnx.load(str(rmbg_onnx), load_external_data=False)
    assert [i.name for i in fixed.graph.input] == ["input"]
    assert [o.name for o in fixed.graph.output] == ["output"]  # a single output: d1
    dims = [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *RMBG_TEST_SIZE]
    meta = {p.key: p.value for p in fixed.metadata_props}
    assert meta["vbg.family"] == "rmbg" and meta["vbg.mean"] == "0.5,0.5,0.5" and meta["vbg.std"] == "1.0,1.0,1.0"
    dyn = onnx.load(str(rmbg_onnx_dynamic), load_external_data=False)
    assert [d.dim_param for d in dyn.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    # the output as the README states it, [N,1,H,W] (its channel axis was a symbol, Sigmoidoutput_dim_1)
    out = dyn.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out] == ["batch", 1, "height", "width"]
    assert [d.dim_value for d in fixed.graph.output[0].type.tensor_type.shape.dim] == [1, 1, *RMBG_TEST_SIZE]


def test_fixed_square_export_matches_eager(rmbg_net, rmbg_onnx):
    x = (np.random.default_rng(0).random((1, 3, *RMBG_TEST_SIZE), dtype=np.float32) - 0.5)
    ref, got = _eager(rmbg_net, x), _ort(rmbg_onnx, x)
    assert got.shape == ref.shape == (1, 1, *RMBG_TEST_SIZE)
    assert ref.std() > 0.05  # the random-init matte is not flat: the comparison means something
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize("hw", [(96, 160), (160, 96), (97, 131), (65, 33)])
def test_dynamic_export_matches_eager_at_non_square_and_odd_sizes(rmbg_net, rmbg_onnx_dynamic, hw):
    x = (np.random.default_rng(hw[0]).random((1, 3, *hw), dtype=np.float32) - 0.5)
    ref, got = _eager(rmbg_net, x), _ort(rmbg_onnx_dynamic, x)
    assert got.shape == (1, 1, *hw)
    assert np.abs(got - ref).max() < 1e-4


def test_torch_and_onnx_segmenters_agree_on_a_photo(people, rmbg_net, rmbg_onnx, tmp_path):
    """Same preprocessing, same network: the two backends give the same matte."""
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rmbg_net.state_dict().items()}, str(weights))
    _, rgb, _ = people[0]
    onnx_seg = OnnxSegmenter(ModelSource(RMBG14, "test", onnx=rmbg_onnx), device="cpu")
    torch_seg = TorchSegmenter(resolve_model(str(weights), backend="torch"), size=RMBG_TEST_SIZE, device="cpu")
    a, b = onnx_seg.segment(rgb), torch_seg.segment(rgb)
    assert a.shape == b.shape == RMBG_TEST_SIZE and a.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4
    assert iou(a, b) > 0.99


def test_fp16_export_runs_and_stays_close(rmbg_net, tmp_path, people):
    from vbg.models.export import export_onnx

    path = export_onnx(rmbg_net, tmp_path / "m16.onnx", size_hw=(64, 64), fp16=True)
    g = onnx.load(str(path), load_external_data=False)
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert path.stat().st_size < 100_000_000  # half the fp32 weights
    _, rgb, _ = people[0]
    seg = OnnxSegmenter(resolve_model(str(path)), device="cpu")
    ref = OnnxSegmenter(ModelSource(RMBG14, "fp32", onnx=export_onnx(rmbg_net, tmp_path / "m32.onnx",
                                                                     size_hw=(64, 64))), device="cpu")
    a, b = seg.segment(rgb), ref.segment(rgb)
    assert a.dtype == np.float32 and a.shape == (64, 64)
    assert np.abs(a - b).max() < 2e-2


def test_weights_file_is_exported_once_per_size_and_cached(rmbg_net, tmp_path, monkeypatch, people):
    """--model model.safetensors on ONNX Runtime: a fixed-shape export per size, keyed by hash and size."""
    from safetensors.torch import save_file

    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rmbg_net.state_dict().items()}, str(weights))
    _, rgb, _ = people[0]  # 640x361: long side 128 -> 72x128 -> 64x128
    seg = OnnxSegmenter(resolve_model(str(weights)), size=128, device="cpu")
    alpha = seg.segment(rgb)
    assert alpha.shape == (64, 128)
    exports = sorted((tmp_path / "cache" / "exports").glob("*.onnx"))
    assert [p.name.rsplit("-", 1)[-1] for p in exports] == ["64x128.onnx"]
    mtime = exports[0].stat().st_mtime_ns
    seg2 = OnnxSegmenter(resolve_model(str(weights)), size=128, device="cpu")
    np.testing.assert_array_equal(seg2.segment(rgb), alpha)
    assert exports[0].stat().st_mtime_ns == mtime  # reused, not exported again
    # The same graph the torch module computes.
    torch_seg = TorchSegmenter(resolve_model(str(weights), backend="torch"), size=128, device="cpu")
    assert np.abs(torch_seg.segment(rgb) - alpha).max() < 1e-4
