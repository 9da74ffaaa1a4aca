"""Device choice: "auto" falls back to the CPU; a missing device is a clear error.

Written to hold on any machine: a CUDA index equal to the device count never
exists, and "auto"/"cuda"/"mps" are checked with availability patched off.
"""

from __future__ import annotations

import pytest
import torch

from napari_unet import device as device_mod
from napari_unet.device import available_devices, resolve_device
from napari_unet.errors import SegmentationError


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_auto_on_this_machine_is_usable():
    dev = resolve_device("auto")
    names = available_devices()
    assert names[-1] == "cpu"
    assert dev.type in {n.split(":")[0] for n in names}
    assert torch.zeros(2, device=dev).sum().item() == 0


@pytest.mark.parametrize("name", ["cpu", "CPU", torch.device("cpu")])
def test_cpu_always_works(name):
    assert resolve_device(name) == torch.device("cpu")


def test_cuda_index_that_does_not_exist():
    count = torch.cuda.device_count()
    with pytest.raises(SegmentationError, match="not available") as info:
        resolve_device(f"cuda:{count}")
    message = str(info.value)
    assert f"{count} CUDA GPU{'' if count == 1 else 's'} usable" in message and "'cpu'" in message


def test_a_missing_cuda_index_counts_one_gpu_in_the_singular(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SegmentationError, match="this machine has 1 CUDA GPU usable by torch"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3", "CUDA:1"])
def test_cuda_missing(no_accelerators, name):
    with pytest.raises(SegmentationError, match=r"is not available: this machine has 0 CUDA"):
        resolve_device(name)


def test_mps_missing(no_accelerators):
    with pytest.raises(SegmentationError, match="'mps' is not available") as info:
        resolve_device("mps")
    assert "Apple" in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "banana", "cuda:x", "", "tpu:0"])
def test_bogus_names(name):
    with pytest.raises(SegmentationError, match="Unknown device"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["meta", "xpu", "ipu"])
def test_known_to_torch_but_unsupported(name):
    with pytest.raises(SegmentationError, match="Unsupported device"):
        resolve_device(name)


def test_predictor_reports_a_missing_device(models):
    from napari_unet.predict import Predictor

    with pytest.raises(SegmentationError, match="not available"):
        Predictor(str(models["2d"]), device=f"cuda:{torch.cuda.device_count()}")
