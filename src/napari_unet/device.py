"""Choosing the torch device: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from .errors import SegmentationError
from .wording import plural

__all__ = ["resolve_device", "available_devices"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names a user can pick here, best first (always ends with ``"cpu"``)."""
    names = [f"cuda:{i}" if i else "cuda" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a device.

    Raises
    ------
    SegmentationError
        When the device asked for does not exist on this machine.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise SegmentationError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        index = dev.index or 0
        if index >= count:
            raise SegmentationError(
                f"Device {device!r} is not available: this machine has "
                f"{plural(count, 'CUDA GPU')} usable by torch. Use device='auto' or 'cpu'."
            )
    elif dev.type == "mps":
        if not _mps_available():
            raise SegmentationError(
                "Device 'mps' is not available (it needs Apple silicon and a torch "
                "build with MPS). Use device='auto' or 'cpu'."
            )
    elif dev.type != "cpu":
        raise SegmentationError(
            f"Unsupported device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    return dev
