"""Per-object measurements of instance labels: one table row per object.

The table answers what most segmentations are made for: how many nuclei, how
large, where, how bright (the integrated intensity of a DNA stain is the
classic cell-cycle readout), and which ones the image border cuts. It is a
dict of equal-length columns, which ``pandas.DataFrame`` takes as it is, and
:func:`write_csv` writes for a spreadsheet.
"""

from __future__ import annotations

import csv
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SegmentationError, refuse_file_name
from .instances import ids_and_ranks

__all__ = ["measure_objects", "write_csv"]


def _check_axes(axes: str, ndim: int, what: str) -> str:
    axes = str(axes).upper()
    if len(axes) != ndim or len(set(axes)) != ndim or set(axes) - set("TZYXC") or not {"Y", "X"} <= set(axes):
        raise SegmentationError(
            f"Axes {axes!r} do not fit {what} with {ndim} dimensions: give one distinct letter of "
            "TZYX per dimension, Y and X included (C too for an image with channels).")
    return axes


def measure_objects(
    instances: np.ndarray,
    *,
    axes: str,
    image: Any = None,
    image_axes: str | None = None,
    spacing: float | Sequence[float] | None = None,
    unit: str = "um",
) -> dict[str, np.ndarray]:
    """Measure every object of ``instances``: one row per object and time point.

    Parameters
    ----------
    instances : ndarray (*out_shape) int
        Instance labels, 0 for background, objects 1, 2, ... (negative values
        are refused) (:attr:`Segmentation.instances`). Ids are unique per
        labelled block: the Z, Y and X axes together, each time point on its own.
    axes : str
        One letter of ``TZYX`` per dimension of ``instances``
        (:attr:`Segmentation.axes`).
    image : array-like, optional
        The image that was segmented, for intensities: its axes are
        ``image_axes``, which are ``axes`` plus, optionally, ``C``. A lazy
        array (dask, zarr, a memory map) is read one time point at a time.
    image_axes : str or None
        Axes of ``image`` (``Segmentation.metadata["axes"]``). None means
        ``axes`` when ``image`` has the same number of dimensions.
    spacing : float or sequence of float, optional
        The size of a pixel along each of the Z (when present), Y and X axes,
        in ``unit``, in their order in ``axes`` (as napari's ``scale``), or,
        without Z, one number for the same size along Y and X (e.g. ``0.65``,
        as the command line's ``--pixel-size 0.65``): adds the column
        ``area_<unit>2`` (``area_<unit>3`` with Z).
    unit : str
        The unit of ``spacing``, for the column's name (e.g. ``"um"``).

    Returns
    -------
    dict of str -> ndarray (N,)
        ``label``; ``t`` (time point, with a T axis); ``area`` (pixels, or
        voxels with a Z axis); ``centroid_z`` (with Z), ``centroid_y``,
        ``centroid_x`` (pixel coordinates); ``touches_border`` (bool: the
        object reaches the edge of the image, so it may be cut; an axis one
        pixel long, as the Z of a one-plane stack, has no such edge); for 2D
        objects (no Z axis) ``axis_major_length``, ``axis_minor_length``
        (pixels) and ``eccentricity`` (0 for a disc, towards 1 for
        elongated) of the ellipse with the object's second moments, as
        scikit-image's ``regionprops`` defines them; with an
        image ``mean_intensity`` and ``sum_intensity``, or
        ``mean_intensity_c<k>`` and ``sum_intensity_c<k>`` for each channel
        ``k`` of an image with a C axis; with ``spacing`` the calibrated size
        after ``area`` and, in 2D, the calibrated axis lengths
        (``axis_major_length_<unit>``...). Rows are sorted by ``t``, then label.
    """
    refuse_file_name(instances, "The instance labels are", reader="read_labels", give="its ids")
    labels = np.asarray(instances)
    if labels.dtype.kind not in "iub":
        raise SegmentationError(
            f"Instance labels must be integers, not {labels.dtype}: give the 'instances' output.")
    axes = _check_axes(axes, labels.ndim, "instance labels")
    if labels.size == 0:
        raise SegmentationError(f"The instance labels are empty (shape {labels.shape}): nothing to measure.")
    if labels.dtype.kind == "i" and labels.min() < 0:
        # -1 as background (some tools write it) would be measured as one object.
        raise SegmentationError(
            "The instance labels hold negative values: 0 is the background and objects are 1, 2, "
            "...; set the others to 0 first (e.g. np.where(labels < 0, 0, labels)).")
    if "C" in axes:
        raise SegmentationError("Instance labels have no channel (C) axis: give the outputs' axes.")
    intensity, image_axes, channels = ((None, None, None) if image is None
                                       else _intensity(image, image_axes, axes, labels.shape))
    t_axis = axes.find("T")
    spatial = [a for a in axes if a != "T"]
    sizes = _pixel_sizes(spacing, len(spatial))
    voxel = None if sizes is None else float(np.prod(sizes))
    blocks = range(labels.shape[t_axis]) if t_axis >= 0 else [None]
    names = (["label"] + (["t"] if t_axis >= 0 else []) + ["area"]
             + ([f"area_{unit}{len(spatial)}"] if voxel is not None else [])
             + [f"centroid_{a.lower()}" for a in spatial] + ["touches_border"])
    if len(spatial) == 2:
        names += ["axis_major_length", "axis_minor_length", "eccentricity"]
        if sizes is not None:
            names += [f"axis_major_length_{unit}", f"axis_minor_length_{unit}"]
    if intensity is not None:
        suffixes = [""] if channels is None else [f"_c{c}" for c in range(channels)]
        names += [f"{kind}_intensity{suffix}" for suffix in suffixes for kind in ("mean", "sum")]
    parts: list[list[np.ndarray]] = []
    for t in blocks:
        block = labels if t is None else np.take(labels, t, axis=t_axis)
        values = None if intensity is None else _values(intensity, image_axes, t)
        parts.append(_measure_block(block, values, t, sizes))
    columns = [np.concatenate(col) for col in zip(*parts)]
    if voxel is not None:
        area = columns[names.index("area")]
        columns.insert(names.index("area") + 1, area * voxel)
    return dict(zip(names, columns))


def _pixel_sizes(spacing: float | Sequence[float] | None, ndim: int) -> list[float] | None:
    """The size of a pixel along each spatial axis (one number: the same along Y and X), or None
    without ``spacing``."""
    if spacing is None:
        return None
    given = spacing
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        if ndim == 3:  # as the command line's --pixel-size: a z-step is seldom the pixel size
            raise SegmentationError(
                f"spacing={float(spacing):g} is one size, but the labels have a Z axis, whose step is seldom the "
                "pixel size: give the sizes along Z, Y and X, e.g. spacing=(2.0, 0.65, 0.65).")
        spacing = [spacing] * ndim
    try:
        sizes = [float(v) for v in spacing]
    except (TypeError, ValueError):
        sizes = []
    if len(sizes) != ndim or not all(np.isfinite(v) and v > 0 for v in sizes):
        raise SegmentationError(
            f"spacing must give {ndim} positive pixel sizes (one per {'Z, ' if ndim == 3 else ''}Y and X "
            f"axis){'' if ndim == 3 else ', or one for both'}, not {given!r}.")
    return sizes


def _intensity(image: Any, image_axes: str | None, axes: str, shape: tuple[int, ...]
               ) -> tuple[Any, str, int | None]:
    """``image`` checked against the labels (unread, when it is an array: a lazy one is read a time
    point at a time by :func:`_values`), its axes, and its channel count (None: no C axis)."""
    refuse_file_name(image, give="image=read.image, image_axes=read.axes")
    data = image if isinstance(getattr(image, "dtype", None), np.dtype) and hasattr(image, "shape") \
        else np.asarray(image)
    ndim = len(data.shape)
    if image_axes is None:
        if ndim != len(axes):
            raise SegmentationError(
                f"An image with shape {tuple(data.shape)} does not fit labels with axes {axes!r}: "
                "give image_axes (e.g. the segmentation's metadata['axes']).")
        image_axes = axes
    image_axes = _check_axes(image_axes, ndim, "the image")
    if image_axes.replace("C", "") != axes:
        raise SegmentationError(
            f"The image's axes {image_axes!r} are not the labels' axes {axes!r} (plus C): "
            "give the image that was segmented, with its axes.")
    if data.dtype.kind not in "iufb":
        raise SegmentationError(f"Cannot measure intensities of a {data.dtype} image.")
    spatial_shape = tuple(int(n) for a, n in zip(image_axes, data.shape) if a != "C")
    if spatial_shape != tuple(shape):
        raise SegmentationError(
            f"The image ({' x '.join(map(str, spatial_shape))} without channels) and the labels "
            f"({' x '.join(map(str, shape))}) differ in shape: give the image that was segmented.")
    return data, image_axes, (data.shape[image_axes.index("C")] if "C" in image_axes else None)


def _values(image: Any, image_axes: str, t: int | None) -> np.ndarray:
    """The pixels of time point ``t`` of ``image`` (all of it for None), read, any C axis last."""
    key = tuple(t if a == "T" and t is not None else slice(None) for a in image_axes)
    values = np.asarray(image[key])
    kept = image_axes.replace("T", "") if t is not None else image_axes
    return np.moveaxis(values, kept.index("C"), -1) if "C" in kept else values


def _ellipse(yy: np.ndarray, xx: np.ndarray, xy: np.ndarray) -> list[np.ndarray]:
    """Major and minor axis lengths and eccentricity of ellipses with these second central moments.

    As scikit-image's ``regionprops`` defines them: 4 sqrt(eigenvalue) of the coordinates'
    covariance, and sqrt(1 - minor^2 / major^2).
    """
    half_trace, root = (yy + xx) / 2, np.sqrt(((yy - xx) / 2) ** 2 + xy * xy)
    big, small = np.maximum(half_trace + root, 0), np.maximum(half_trace - root, 0)
    ecc = np.sqrt(1 - np.divide(small, big, out=np.ones(len(big)), where=big > 0))
    return [4 * np.sqrt(big), 4 * np.sqrt(small), ecc]


def _measure_block(block: np.ndarray, values: np.ndarray | None, t: int | None,
                   sizes: Sequence[float] | None = None) -> list[np.ndarray]:
    """The columns of one labelled block (in :func:`measure_objects`' order)."""
    flat = block.ravel()
    where = np.flatnonzero(flat)
    ids, rank = ids_and_ranks(flat[where])
    n = len(ids)
    area = np.bincount(rank, minlength=n)
    # uint64 ids above 2**63 (napari allows them) would wrap to negative int64 ids
    cols: list[np.ndarray] = [ids.astype(np.uint64 if block.dtype == np.uint64 else np.int64)]
    if t is not None:
        cols.append(np.full(n, t, np.int64))
    cols.append(area.astype(np.int64))
    coords = np.unravel_index(where, block.shape)
    weight = np.maximum(area, 1)
    centroids = [np.bincount(rank, weights=c, minlength=n) / weight for c in coords]
    cols += centroids
    edge = np.zeros(n, bool)
    for dim, c in enumerate(coords):
        if block.shape[dim] == 1:
            continue  # a one-plane stack is cut along Z no more than a 2D image is
        edge |= np.bincount(rank, weights=(c == 0) | (c == block.shape[dim] - 1), minlength=n) > 0
    cols.append(edge)
    if block.ndim == 2:
        (y, x), (my, mx) = coords, centroids
        yy = np.bincount(rank, weights=y * y, minlength=n) / weight - my * my
        xx = np.bincount(rank, weights=x * x, minlength=n) / weight - mx * mx
        xy = np.bincount(rank, weights=y * x, minlength=n) / weight - my * mx
        cols += _ellipse(yy, xx, xy)
        if sizes is not None:  # the same moments in calibrated units
            sy, sx = sizes
            cols += _ellipse(yy * sy * sy, xx * sx * sx, xy * sy * sx)[:2]
    if values is not None:
        pix = values.reshape(block.size, -1)[where].astype(np.float64)  # (pixels, channels)
        for k in range(pix.shape[1]):
            total = np.bincount(rank, weights=pix[:, k], minlength=n)
            cols += [total / np.maximum(area, 1), total]
    return cols


def write_csv(table: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``table`` (:func:`measure_objects`) as CSV, atomically (temporary file, then rename).

    Booleans become 0/1; floats keep 6 significant digits.
    """
    from .io import durable_replace, new_temp_file

    path = Path(path)
    names = list(table)
    columns = [_text(np.asarray(table[name])) for name in names]
    tmp = None
    try:
        tmp = new_temp_file(path.parent, prefix=f".{path.stem}.", suffix=".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows(zip(*columns))
        durable_replace(tmp, path)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def _text(column: np.ndarray) -> list[str]:
    if column.dtype.kind == "b":
        return ["1" if v else "0" for v in column]
    if column.dtype.kind == "f":
        return [f"{v:.6g}" for v in column]
    return [str(v) for v in column]
