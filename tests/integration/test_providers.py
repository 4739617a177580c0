"""Provider choice: what was asked for is compared with what ONNX Runtime really uses."""

from __future__ import annotations

import logging

import pytest

from vbg.errors import ConfigError, DeviceError
from vbg.inference.onnx_backend import create_session, gpu_present, provider_list
from vbg.models.spec import SELFIE

SELFIE_ONNX = SELFIE.bundled_path()


def test_cpu_is_used_when_asked():
    sess, active = create_session(SELFIE_ONNX, "cpu")
    assert active == ["CPUExecutionProvider"] == sess.get_providers()


def test_auto_picks_cuda_only_with_a_gpu(caplog):
    caplog.set_level(logging.WARNING, logger="vbg")
    _, active = create_session(SELFIE_ONNX, "auto")
    if gpu_present():
        assert active[0] == "CUDAExecutionProvider"
    else:
        assert active == ["CPUExecutionProvider"]
        assert not caplog.records  # no failed CUDA load, no warning, on a machine without a GPU


@pytest.mark.parametrize("device,name", [("cuda", "CUDA"), ("tensorrt", "Tensorrt")])
def test_gpu_request_falls_back_loudly_or_fails_when_strict(caplog, tmp_path, device, name):
    caplog.set_level(logging.INFO, logger="vbg")
    wanted = provider_list(device, cache_dir=tmp_path)
    assert wanted[0][0] == f"{name}ExecutionProvider" and wanted[-1] == "CPUExecutionProvider"
    if gpu_present():
        _, active = create_session(SELFIE_ONNX, device, strict=True, cache_dir=tmp_path)
        assert active[0] == f"{name}ExecutionProvider"
        return
    _, active = create_session(SELFIE_ONNX, device, cache_dir=tmp_path)
    assert active == ["CPUExecutionProvider"]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and name in warning[0] and "--strict-device" in warning[0]
    with pytest.raises(DeviceError, match="--device cpu") as err:
        create_session(SELFIE_ONNX, device, strict=True, cache_dir=tmp_path)
    assert err.value.exit_code == 8


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="auto, cpu, cuda, tensorrt"):
        provider_list("gpu")


def test_spinning_is_off_and_threads_are_set():
    from vbg.inference.onnx_backend import session_options

    so = session_options(1)
    assert so.intra_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
