"""The exported graph computes what the torch module computes (d1), on ONNX Runtime's CPU provider."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from conftest import RMBG_TEST_SIZE, iou
from vbg.inference.onnx_backend import create_session
from vbg.inference.segmenter import OnnxSegmenter, TorchSegmenter
from vbg.models.resolve import ModelSource, resolve_model
from vbg.models.spec import RMBG14


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
