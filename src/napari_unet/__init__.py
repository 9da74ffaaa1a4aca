"""U-Net segmentation of microscopy images, for napari and for scripts.

The public API is imported lazily: ``import napari_unet`` loads neither torch,
Qt nor napari. Touching ``napari_unet.segment`` (etc.) imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "segment": "napari_unet.api",
    "iter_segment": "napari_unet.api",
    "Segmentation": "napari_unet.api",
    "load_model": "napari_unet.checkpoint",
    "save_model": "napari_unet.checkpoint",
    "UNet": "napari_unet.model",
    "train": "napari_unet.training.loop",
    "iter_train": "napari_unet.training.loop",
    "evaluate": "napari_unet.metrics",
    "measure_objects": "napari_unet.measure",
    "tracks_table": "napari_unet.tracking",
    "SegmentationError": "napari_unet.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .api import Segmentation, iter_segment, segment
    from .checkpoint import load_model, save_model
    from .errors import SegmentationError
    from .measure import measure_objects
    from .metrics import evaluate
    from .model import UNet
    from .tracking import tracks_table
    from .training.loop import iter_train, train


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
