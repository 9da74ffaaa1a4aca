"""Reopen napari-unet results (``<image>_semantic.tif``, ``<image>_instances.tif``) as Labels layers.

The command line writes each result with its provenance (see
:func:`napari_unet.io.write_labels`). napari's own reader would open such a
file as an Image layer, which cannot be painted, updated or measured; this
reader opens it as the Labels layer the Segment widget would have made,
named, placed and described the same way. Any other file is left to napari
and other plugins: the reader reads the file's tags only, not its pixels,
to tell.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import is_result_file, read_image_file, read_tiff_metadata, result_role
from .layers import OPACITY, LayerDataTuple, output_name, placeholder_for_axes

__all__ = ["OPENED_FROM", "get_reader", "read_result", "result_role"]

OPENED_FROM = "opened_from"
"""Metadata key of a layer this reader made: the file it was read from."""


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerDataTuple]] | None:
    """The npe2 reader hook: :func:`read_result` for a napari-unet result file, else None.

    A file is a result when it is named ``<image>_semantic.tif`` or
    ``<image>_instances.tif`` and holds the metadata napari-unet writes;
    only the file's tags are read here. Lists of files (stacks) are not results.
    """
    if not isinstance(path, str) or not is_result_file(path):
        return None
    return read_result


def read_result(path: str) -> list[LayerDataTuple]:
    """One result file as Labels layer data, as the Segment widget makes its outputs.

    Returns
    -------
    list of (data, kwargs, "labels")
        ``data`` is the label image, shape one size per letter of the
        result's axes (``YX``, ``ZYX``, ``TYX``, ``TZYX``): uint8 for a
        semantic mask, int32 (or wider) for instances. When the image's axes
        had a channel after others (``ZCYX``, ``TZCYX``), the data keep it with
        one plane, as the Segment widget's outputs do (see
        :func:`~.layers.placeholder_for_axes`), so that napari lines their Z
        up with the image's; that plane lies at the channel that was
        segmented. A channel stored last is taken for RGB's, which napari
        shows without a channel dimension. ``kwargs`` name the
        layer ``"<image> <role>"`` and place it with the pixel size in
        micrometres the file records (1 per pixel where it records none);
        its metadata is the run's, with ``axes`` the image's axes,
        ``source_layer`` the image's name, ``output`` the role, and
        ``opened_from`` this file.
    """
    name, role = result_role(path)
    meta = read_tiff_metadata(path)
    labels = read_image_file(path).image
    out_axes = str(meta["axes"]).upper()
    if len(out_axes) != labels.ndim:
        raise ValueError(f"{Path(path).name} has {labels.ndim} dimensions but its metadata names "
                         f"the axes {out_axes!r}: open it with napari's own reader instead.")
    if role == "instances" and labels.dtype.itemsize < 4:
        labels = labels.astype(np.int32)  # as the engine makes them: new ids can be painted
    sizes = meta.get("pixel_size_um") if isinstance(meta.get("pixel_size_um"), dict) else {}
    calibrated = [a in sizes for a in out_axes]
    input_axes = meta.pop("input_axes", None)
    metadata: dict[str, Any] = {
        **meta,
        # The widget's outputs record the axes their image was read with (a channel axis included).
        "axes": input_axes if isinstance(input_axes, str) else out_axes,
        "source_layer": name,
        "output": role,
        OPENED_FROM: str(path),
    }
    scale = [float(sizes[a]) if known else 1.0 for a, known in zip(out_axes, calibrated)]
    units = ["micrometer" if known else "pixel" for known in calibrated]
    translate = [0.0] * labels.ndim
    axis_labels = list(out_axes.lower())
    # napari shows an image with its channels last (3 or 4) as RGB: no dimension to line up with.
    keep = placeholder_for_axes(metadata["axes"], rgb=metadata["axes"].upper().endswith("C"))
    if keep is not None:
        labels = np.expand_dims(labels, keep)
        channel = meta.get("channel")
        scale.insert(keep, 1.0)
        units.insert(keep, "pixel")
        translate.insert(keep, float(channel) if isinstance(channel, int) else 0.0)
        axis_labels.insert(keep, "c")
    kwargs = {
        "name": output_name(name, role),
        "scale": tuple(scale),
        "translate": tuple(translate),
        "units": tuple(units),
        "axis_labels": tuple(axis_labels),
        "metadata": metadata,
        "opacity": OPACITY[role],  # as the Segment widget's outputs
    }
    return [(labels, kwargs, "labels")]
