"""The torch IS-Net has exactly the published checkpoint's layout, so the real
weights load with strict=True; damaged or hostile checkpoints are refused."""

from __future__ import annotations

import os

import pytest

# Everything here is the torch module itself.
torch = pytest.importorskip("torch", reason="the torch IS-Net needs the torch extra: pip install -e '.[torch]'")

from conftest import DATA  # noqa: E402
from vbg.errors import ModelError  # noqa: E402
from vbg.models.export import build_rmbg, load_state_dict  # noqa: E402
from vbg.models.rmbg import BriaRMBG  # noqa: E402


def manifest() -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in (DATA / "rmbg14_state_dict.tsv").read_text().splitlines():
        name, shape, dtype = line.split("\t")
        rows.append((name, tuple(int(v) for v in shape.split(",")) if shape else (), dtype))
    return rows


def test_state_dict_equals_published_manifest():
    sd = BriaRMBG().state_dict()
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    expected = manifest()
    assert len(expected) == 798
    assert ours == expected  # names, order, shapes and dtypes


def test_parameter_count_matches_reference():
    assert sum(p.numel() for p in BriaRMBG().parameters()) == 44_046_790


def test_forward_returns_six_sigmoid_maps_at_input_size():
    net = BriaRMBG().eval()
    x = torch.rand(1, 3, 70, 90) - 0.5
    with torch.no_grad():
        ds, feats = net(x)
        d1 = net.matte(x)
    assert len(ds) == 6 and len(feats) == 6
    assert all(d.shape == (1, 1, 70, 90) for d in ds)
    assert all(0.0 <= float(d.min()) and float(d.max()) <= 1.0 for d in ds)
    assert torch.equal(d1, ds[0])  # the matte shortcut is d1 exactly


def test_safetensors_checkpoint_loads_strictly(tmp_path, rmbg_net):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rmbg_net.state_dict().items()}, str(path), metadata={"format": "pt"})
    # A safetensors file of exactly the manifest's entries has the published file's size.
    assert path.stat().st_size == 176_381_984
    net = build_rmbg(path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, rmbg_net.state_dict()[k]), k


def test_pth_checkpoint_loads_with_weights_only(tmp_path, rmbg_net):
    path = tmp_path / "model.pth"
    torch.save(rmbg_net.state_dict(), path)
    net = build_rmbg(path)
    assert torch.equal(net.side1.weight, rmbg_net.side1.weight)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pth_holding_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(ModelError, match="weights_only=True"):
        load_state_dict(path)
    assert not marker.exists()


def test_wrong_checkpoint_names_what_does_not_fit(tmp_path, rmbg_net):
    sd = dict(rmbg_net.state_dict())
    sd.pop("side6.bias")
    sd["conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / "other.pth"
    torch.save(sd, path)
    with pytest.raises(ModelError) as err:
        build_rmbg(path)
    msg = str(err.value)
    assert "missing 1 (e.g. side6.bias)" in msg and "wrong shape 1 (e.g. conv_in.weight)" in msg
    assert "\n" not in msg


def test_a_folder_given_as_weights_is_said_to_be_one(tmp_path):
    """A downloaded model's folder passed as the weights: said to be a folder, naming the file to
    pass (it read "does not exist")."""
    with pytest.raises(ModelError, match=r"is a folder, not a weights file: pass the file in it \(model.safetensors\)"):
        load_state_dict(tmp_path)


def test_a_checkpoint_holding_a_number_for_a_weight_is_named(tmp_path, rmbg_net):
    """A value that is no tensor (a number saved under a weight's name): the same one line naming it,
    exit 4 from the CLI; it was an AttributeError traceback."""
    sd = dict(rmbg_net.state_dict())
    sd["conv_in.weight"] = 5
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(ModelError) as err:
        build_rmbg(path)
    assert "odd.pth is not an RMBG-1.4 checkpoint (not a tensor 1 (e.g. conv_in.weight))" in str(err.value)
    assert err.value.exit_code == 4


def test_damaged_safetensors_is_a_model_error(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelError, match="damaged"):
        load_state_dict(path)
