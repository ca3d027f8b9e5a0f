"""``device=`` of the local backend: names resolved and refused without loading a model."""

from __future__ import annotations

import pytest

from openautoglm.backends.device import device_scope, resolve_device
from openautoglm.errors import BackendError

torch = pytest.importorskip("torch")


def test_auto_picks_the_gpu_only_where_one_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("CPU") == "cpu"


def test_cuda_without_a_gpu_and_unknown_names_are_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="sees no CUDA GPU") as info:
        resolve_device("cuda")
    assert "device='cpu'" in info.value.hint
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_the_cpu_scope_wraps_nothing():
    with device_scope("cpu"):
        assert torch.zeros(1).device.type == "cpu"
