"""Precision resolution: bf16 on a CPU without native bf16 warns (once) that it is slow."""

import warnings

import pytest
import torch

from socialfusion import runtime


@pytest.fixture()
def fresh_warning(monkeypatch):
    monkeypatch.setattr(runtime, "_warned_slow_bf16", False)


def test_bf16_on_a_cpu_without_bf16_warns_once(monkeypatch, fresh_warning):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match="much slower than fp32.*fp32"):
        ctx = runtime.autocast(cpu, "bf16")
    with ctx:  # still bf16 autocast: only slower
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.autocast(cpu, "bf16")  # the second time: silent


def test_no_warning_with_native_bf16_or_without_bf16(monkeypatch, fresh_warning):
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
        runtime.autocast(cpu, "bf16")
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
        for precision in ("fp32", "auto"):  # auto is fp32 on a CPU
            with runtime.autocast(cpu, precision):
                assert not torch.is_autocast_enabled("cpu")
    assert runtime._warned_slow_bf16 is False


def test_the_support_check_is_the_onednn_one(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert runtime.cpu_has_bf16() is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert runtime.cpu_has_bf16() is False


@pytest.mark.parametrize(
    "device_type,native,expected",
    [
        ("cuda", True, "bf16"),
        ("cuda", False, "fp32"),
        ("cpu", True, "bf16"),
        ("cpu", False, "fp32"),
        ("mps", True, "fp32"),
    ],
)
def test_auto_precision_is_bf16_where_the_hardware_has_it(monkeypatch, device_type, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda: native)
    assert runtime.resolve_precision(torch.device(device_type), "auto") == expected
    for explicit in ("fp32", "bf16"):  # asked for: kept
        assert runtime.resolve_precision(torch.device(device_type), explicit) == explicit
    assert runtime.compute_dtype(torch.device(device_type), "auto") == (
        torch.bfloat16 if expected == "bf16" else torch.float32
    )


def test_autocast_follows_the_resolved_precision(monkeypatch, fresh_warning):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    with runtime.autocast(cpu, "auto"):  # a CPU with native bf16: auto is bf16
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with runtime.autocast(cpu, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve_precision(cpu, "fp16")
