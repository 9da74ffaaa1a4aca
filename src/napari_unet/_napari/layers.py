"""Segmentation results -> napari layer data, placed where the source image is.

Output layers carry the source layer's world placement (scale, translate,
rotate, shear, affine, units, axis labels) so that they overlay the image, and
metadata that says how they were made (the engine's metadata plus the source
layer's name).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Layer

from ..api import Segmentation
from ..io import RESULT_ROLES

__all__ = [
    "OPACITY",
    "ROLES",
    "channel_data_axis",
    "channel_placeholder",
    "placeholder_axis",
    "placeholder_for_axes",
    "spatial_kwargs",
    "segmentation_layer_data",
    "label_layer_data",
    "tracks_layer_data",
    "output_name",
    "create_layer",
]

ROLES = RESULT_ROLES
LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

OPACITY = {"semantic": 0.5, "instances": 0.6}
"""The opacity of each output layer (the reader's layers of opened results have it too)."""

_STYLE = {
    # The semantic mask is the layer to correct with the brush; hidden at first so the
    # instances (one colour per object) are what one sees.
    "semantic": {"visible": False, "opacity": OPACITY["semantic"]},
    "instances": {"visible": True, "opacity": OPACITY["instances"]},
}


def channel_data_axis(layer: Image, axes: str | None) -> int | None:
    """The data axis of ``layer`` that the outputs lose, or None.

    napari already leaves the channel axis of an RGB layer out of the layer's
    dimensions, so only a channel axis the user named in a non-RGB layer (e.g.
    ``"CYX"``) has to be dropped from the layer's placement.
    """
    return _channel_axis(axes, rgb=layer.rgb)


def _channel_axis(axes: str | None, *, rgb: bool) -> int | None:
    """The index of C in ``axes``, or None without one or for an RGB image (no dimension of its layer)."""
    if rgb or not axes or "C" not in axes.upper():
        return None
    return axes.upper().index("C")


def channel_placeholder(layer: Image, axes: str | None) -> int | None:
    """The channel axis of ``layer`` that the outputs keep with one plane, or None.

    See :func:`placeholder_for_axes`; napari already leaves the channel axis of
    an RGB layer out of the layer's dimensions.
    """
    return placeholder_for_axes(axes, rgb=layer.rgb)


def placeholder_for_axes(axes: str | None, *, rgb: bool = False) -> int | None:
    """The channel axis that the outputs of an image read with ``axes`` keep with one plane, or None.

    napari lines a layer with fewer dimensions up with the *last* dimensions of
    the others. Outputs without a channel axis that has other axes before it
    (``ZCYX``, ``TZCYX``, an H x W x 1 ``YXC`` layer) would put their Z (or T)
    on the image's channel slider, so they keep that axis with one plane
    (:func:`spatial_kwargs` stretches it over every channel). A leading channel
    axis (``CYX``) is left out: the axes after it line up as they are; so is the
    channel axis of an RGB image (``rgb``), which is no dimension of its layer.
    """
    return _channel_axis(axes, rgb=rgb) or None


def placeholder_axis(layer: Layer) -> int | None:
    """The one-plane channel axis an output layer keeps (see :func:`channel_placeholder`), or None.

    Read from the layer's metadata (the axes its image was read with): the output
    has one dimension per axis, channel included, and that axis has one plane.
    """
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    axes = meta.get("axes")
    if not isinstance(axes, str) or "C" not in axes.upper() or len(axes) != layer.ndim:
        return None
    axis = axes.upper().index("C")
    return axis if axis and np.shape(layer.data)[axis] == 1 else None


def _decoupled(matrix: np.ndarray, axis: int) -> bool:
    """True when ``axis`` does not mix with any other axis in ``matrix``."""
    row = np.delete(matrix[axis], axis)
    col = np.delete(matrix[:, axis], axis)
    return bool(np.allclose(row, 0) and np.allclose(col, 0))


def _shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
    shear = np.asarray(shear, dtype=float)
    if shear.ndim == 2:
        return shear
    out = np.eye(ndim)
    out[np.triu_indices(ndim, 1)] = shear
    return out


def spatial_kwargs(layer: Layer, *, drop_axis: int | None = None,
                   span_axis: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """World placement of ``layer`` as layer keyword arguments.

    Parameters
    ----------
    layer : napari.layers.Layer
        The source layer.
    drop_axis : int or None
        A layer dimension the outputs do not have (a channel axis); its entries
        are removed. Rotation, shear and affine are kept only when that axis
        does not mix with the others.
    span_axis : int or None
        A layer dimension (a channel axis) the outputs have with one plane: its
        scale and translate are set so that the plane covers all of the
        layer's planes along it (it shows whichever channel is viewed).
        Rotation, shear and affine are kept only when that axis does not mix
        with the others.

    Returns
    -------
    kwargs : dict
        ``scale``, ``translate``, ``units``, ``axis_labels`` and, where they are
        not the identity, ``rotate``, ``shear``, ``affine``.
    notes : list of str
        What could not be carried over (empty when everything was).
    """
    ndim = layer.ndim
    keep = [i for i in range(ndim) if i != drop_axis]
    kwargs: dict[str, Any] = {
        "scale": tuple(float(layer.scale[i]) for i in keep),
        "translate": tuple(float(layer.translate[i]) for i in keep),
        "units": tuple(str(layer.units[i]) for i in keep),
        "axis_labels": tuple(str(layer.axis_labels[i]) for i in keep),
    }
    if span_axis is not None:
        size = int(layer.level_shapes[0][span_axis])
        step = float(layer.scale[span_axis])
        kwargs["scale"] = tuple(step * size if i == span_axis else v for i, v in enumerate(kwargs["scale"]))
        kwargs["translate"] = tuple(v + step * (size - 1) / 2 if i == span_axis else v
                                    for i, v in enumerate(kwargs["translate"]))
    axis = drop_axis if drop_axis is not None else span_axis
    notes: list[str] = []
    matrices = {
        "rotate": np.asarray(layer.rotate, dtype=float),
        "shear": _shear_matrix(layer.shear, ndim),
        "affine": np.asarray(layer.affine.affine_matrix, dtype=float),
    }
    for name, matrix in matrices.items():
        if np.allclose(matrix, np.eye(len(matrix))):
            continue
        if axis is None:
            kwargs[name] = matrix
        elif _decoupled(matrix[:ndim, :ndim], axis):  # a shift along C does not matter
            sub = [*keep, ndim] if name == "affine" else keep
            kwargs[name] = matrix[np.ix_(sub, sub)]
        else:
            notes.append(f"the source layer's {name} mixes in the channel axis and was not applied")
    return kwargs, notes


def output_name(source_name: str, role: str) -> str:
    """``"<image> semantic"`` or ``"<image> instances"``."""
    return f"{source_name} {role}"


def segmentation_layer_data(
    seg: Segmentation,
    *,
    source_name: str,
    spatial: dict[str, Any],
    notes: list[str] | tuple[str, ...] = (),
    placeholder: int | None = None,
) -> dict[str, LayerDataTuple]:
    """Labels layer data for the semantic mask and the instances of ``seg``.

    Parameters
    ----------
    seg : Segmentation
        The engine's result.
    source_name : str
        Name of the segmented image layer (names the outputs, goes in metadata).
    spatial : dict
        Placement from :func:`spatial_kwargs`.
    notes : sequence of str
        Remarks stored in the metadata (e.g. a transform that was not carried over).
    placeholder : int or None
        Where the outputs keep a one-plane channel axis (see :func:`channel_placeholder`):
        the data get it as a view (painting the layer changes the result's array).

    Returns
    -------
    dict
        ``{"semantic": (data, kwargs, "labels"), "instances": (...)}``.
    """
    meta = {**seg.metadata, "source_layer": source_name}
    if notes:
        meta["placement_notes"] = list(notes)
    return {
        role: label_layer_data(data if placeholder is None else np.expand_dims(data, placeholder), role,
                               source_name=source_name, spatial=spatial, metadata=meta)
        for role, data in (("semantic", seg.semantic), ("instances", seg.instances))
    }


def label_layer_data(
    data: np.ndarray,
    role: str,
    *,
    source_name: str,
    spatial: dict[str, Any],
    metadata: dict[str, Any],
) -> LayerDataTuple:
    """One output as Labels layer data: named for its source, placed, styled for its role.

    Parameters
    ----------
    data : ndarray
        The labels (as many dimensions as ``spatial`` places).
    role : {"semantic", "instances"}
    source_name : str
        Name of the segmented image layer.
    spatial : dict
        Placement from :func:`spatial_kwargs`.
    metadata : dict
        How the output was made; ``"output": role`` is added.
    """
    if data.ndim != len(spatial["scale"]):
        raise ValueError(
            f"{role} has {data.ndim} dimensions but the source placement has "
            f"{len(spatial['scale'])}."
        )
    kwargs = {
        "name": output_name(source_name, role),
        "metadata": {**metadata, "output": role},
        **spatial,
        **_STYLE[role],
    }
    return (data, kwargs, "labels")


def _without_axis(spatial: dict[str, Any], axis: int) -> dict[str, Any]:
    """``spatial`` (from :func:`spatial_kwargs`) less the layer dimension ``axis``."""
    ndim = len(spatial["scale"])
    keep = [i for i in range(ndim) if i != axis]
    out = dict(spatial)
    for name in ("scale", "translate", "units", "axis_labels"):
        if name in out:
            out[name] = tuple(out[name][i] for i in keep)
    for name in ("rotate", "shear", "affine"):
        if name in out:
            matrix = _shear_matrix(out[name], ndim) if name == "shear" else np.asarray(out[name], float)
            sub = [*keep, ndim] if name == "affine" else keep
            out[name] = matrix[np.ix_(sub, sub)]
    return out


def tracks_layer_data(
    tracks: dict[str, np.ndarray],
    *,
    axes: str,
    source_name: str,
    spatial: dict[str, Any],
    placeholder: int | None = None,
) -> LayerDataTuple | None:
    """A table of tracks as Tracks layer data, placed like the instances it was made from.

    Parameters
    ----------
    tracks : dict of str -> ndarray (N,)
        :func:`~napari_unet.tracking.tracks_table` of the instances; its
        ``features`` columns (measurements) become the layer's features, to
        colour the tracks by.
    axes : str
        The instances' axes (``TZYX`` letters, no C); napari's Tracks layer
        takes time as its first dimension, so T must be first.
    source_name : str
        Name of the segmented image layer (names the layer ``"<image> tracks"``).
    spatial : dict
        The instances layer's placement (:func:`spatial_kwargs`).
    placeholder : int or None
        A one-plane channel axis the instances layer has and ``axes`` lack.
        After T, the tracks get coordinate 0 along it. First (before T), the
        tracks leave it out, and its entries are removed from ``spatial``:
        napari lines the tracks up with the instances' last dimensions, and
        takes the first coordinate after the track id as time.

    Returns
    -------
    (data (N, 1 + ndim) float, kwargs, "tracks"), or None without rows
        Each row ``track id, t, [z,] y, x`` (the centroids, in the instances
        layer's data coordinates, a placeholder after T included);
        ``graph`` maps a track to the one it divided from; ``features`` holds
        the columns after ``track_id``, ``t``, the centroids and ``parent_id``.
    """
    if not axes.startswith("T"):
        raise ValueError(f"napari's Tracks layer takes time first; these axes are {axes!r}.")
    n = len(tracks["track_id"])
    if not n:
        return None
    columns = [np.asarray(tracks["t" if a == "T" else f"centroid_{a.lower()}"], float) for a in axes]
    if placeholder == 0:
        spatial = _without_axis(spatial, 0)
    elif placeholder is not None:
        columns.insert(placeholder, np.zeros(n))
    data = np.column_stack([np.asarray(tracks["track_id"], float), *columns])
    graph = {int(c): [int(p)] for c, p in zip(tracks["track_id"], tracks["parent_id"]) if p}
    # The whole path so far shows (napari's default is the last 30 time points).
    tail = int(np.max(tracks["t"])) + 1
    known = {"track_id", "t", "parent_id", *(f"centroid_{a.lower()}" for a in axes)}
    features = {name: np.asarray(column) for name, column in tracks.items() if name not in known}
    kwargs = {"name": output_name(source_name, "tracks"), "graph": graph, "tail_length": tail,
              "features": features, "metadata": {"output": "tracks", "source_layer": source_name}, **spatial}
    return (data, kwargs, "tracks")


def create_layer(data_tuple: LayerDataTuple) -> Layer:
    """A napari layer from a layer data tuple."""
    data, kwargs, layer_type = data_tuple
    return Layer.create(data, kwargs, layer_type)
