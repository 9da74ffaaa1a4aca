"""Segmentation -> layer data: placement (scale ... affine), names and metadata."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_unet._napari.layers import (
    channel_data_axis,
    create_layer,
    segmentation_layer_data,
    spatial_kwargs,
    tracks_layer_data,
)
from napari_unet._napari.options import axes_choices, resolve_axes
from napari_unet.api import Segmentation

pytestmark = pytest.mark.gui


def _seg(shape, axes):
    sem = np.zeros(shape, np.uint8)
    sem[..., 2:5, 2:5] = 1
    return Segmentation(sem, sem.astype(np.int32), None, axes, {"model": "m", "threshold": 0.5})


def test_placement_is_copied_verbatim_without_a_dropped_axis():
    layer = Image(np.zeros((3, 8, 9)), scale=(2, 0.5, 0.25), translate=(1, 2, 3), rotate=30,
                  shear=[0.1, 0.0, 0.0], units=("um", "nm", "nm"),
                  axis_labels=("z", "y", "x"))
    kwargs, notes = spatial_kwargs(layer)
    assert notes == []
    assert kwargs["scale"] == (2, 0.5, 0.25) and kwargs["translate"] == (1, 2, 3)
    assert kwargs["units"] == ("micrometer", "nanometer", "nanometer")
    assert kwargs["axis_labels"] == ("z", "y", "x")
    out = create_layer((np.zeros((3, 8, 9), np.uint8), kwargs, "labels"))
    np.testing.assert_allclose(out.rotate, layer.rotate)
    np.testing.assert_allclose(out.affine.affine_matrix, layer.affine.affine_matrix)
    point = np.array([1.0, 4.0, 5.0])
    np.testing.assert_allclose(out.data_to_world(point), layer.data_to_world(point))


def test_dropped_channel_axis_keeps_a_decoupled_rotation():
    layer = Image(np.zeros((2, 8, 9)), scale=(1, 0.5, 0.25), translate=(0, 2, 3), rotate=30)
    kwargs, notes = spatial_kwargs(layer, drop_axis=0)
    assert notes == []
    assert kwargs["scale"] == (0.5, 0.25) and kwargs["translate"] == (2, 3)
    out = create_layer((np.zeros((8, 9), np.uint8), kwargs, "labels"))
    np.testing.assert_allclose(out.rotate, layer.rotate[1:, 1:])
    np.testing.assert_allclose(out.data_to_world([4.0, 5.0]), layer.data_to_world([0.0, 4.0, 5.0])[1:])


def test_dropped_channel_axis_keeps_an_affine_that_only_shifts_it():
    affine = np.eye(4)
    affine[0, 3] = 7.0  # a shift along the channel axis
    affine[1, 3] = 2.0
    affine[2, 2] = 0.5
    layer = Image(np.zeros((2, 8, 9)), affine=affine)
    kwargs, notes = spatial_kwargs(layer, drop_axis=0)
    assert notes == []
    np.testing.assert_allclose(kwargs["affine"], [[1, 0, 2], [0, 0.5, 0], [0, 0, 1]])


def test_a_transform_mixing_in_the_channel_axis_is_left_out_with_a_note():
    affine = np.eye(4)
    affine[0, 1] = 0.5  # the channel axis shears into Y
    layer = Image(np.zeros((2, 8, 9)), affine=affine)
    kwargs, notes = spatial_kwargs(layer, drop_axis=0)
    assert "affine" not in kwargs
    assert notes and "affine" in notes[0]


def test_layer_data_names_and_metadata():
    layer = Image(np.zeros((6, 7)), scale=(0.5, 0.5))
    spatial, _ = spatial_kwargs(layer)
    tuples = segmentation_layer_data(_seg((6, 7), "YX"), source_name="dapi", spatial=spatial)
    (_, sem_kw, sem_type), (_, inst_kw, inst_type) = tuples["semantic"], tuples["instances"]
    assert (sem_type, inst_type) == ("labels", "labels")
    assert sem_kw["name"] == "dapi semantic" and inst_kw["name"] == "dapi instances"
    assert inst_kw["metadata"] == {"model": "m", "threshold": 0.5, "source_layer": "dapi",
                                   "output": "instances"}
    assert inst_kw["scale"] == (0.5, 0.5)
    assert (sem_kw["visible"], inst_kw["visible"]) == (False, True)  # README: the semantic one starts hidden
    with pytest.raises(ValueError, match="dimensions"):
        segmentation_layer_data(_seg((2, 6, 7), "ZYX"), source_name="x", spatial=spatial)


def test_tracks_layer_data_rows_graph_placement_and_a_channel_placeholder():
    """Tracks rows are (track id, t, [z,] y, x) in the instances layer's dimensions, a one-plane
    channel axis among them at 0; the graph maps a daughter to its mother; the measurements after
    ``parent_id`` are the layer's features, to colour the tracks by."""
    tracks = {"track_id": np.array([1, 1, 2]), "t": np.array([0, 1, 1]), "centroid_y": np.array([2.0, 3.0, 5.0]),
              "centroid_x": np.array([4.0, 4.5, 6.0]), "parent_id": np.array([0, 0, 1]),
              "area": np.array([30, 32, 12]), "mean_intensity": np.array([0.5, 0.25, 1.0])}
    instances = Image(np.zeros((2, 1, 8, 9)), scale=(1, 3, 0.5, 0.25), translate=(0, 0, 2, 3))
    spatial, _ = spatial_kwargs(instances)
    data, kwargs, kind = tracks_layer_data(tracks, axes="TYX", source_name="cells", spatial=spatial, placeholder=1)
    assert kind == "tracks" and kwargs["name"] == "cells tracks"
    np.testing.assert_array_equal(data, [[1, 0, 0, 2, 4], [1, 1, 0, 3, 4.5], [2, 1, 0, 5, 6]])
    assert kwargs["graph"] == {2: [1]} and kwargs["tail_length"] == 2
    assert kwargs["scale"] == (1, 3, 0.5, 0.25) and kwargs["translate"] == (0, 0, 2, 3)
    layer = create_layer((data, kwargs, kind))
    assert layer.ndim == 4 and layer.graph == {2: [1]} and layer.metadata["output"] == "tracks"
    assert list(kwargs["features"]) == ["area", "mean_intensity"]
    assert layer.features["area"].tolist() == [30, 32, 12]
    layer.color_by = "mean_intensity"
    empty = {name: column[:0] for name, column in tracks.items()}
    assert tracks_layer_data(empty, axes="TYX", source_name="cells", spatial=spatial) is None
    with pytest.raises(ValueError, match="time first"):
        tracks_layer_data(tracks, axes="YTX", source_name="cells", spatial=spatial)


def test_tracks_of_a_layer_with_its_one_plane_channel_axis_first_keep_time_first():
    """A one-plane channel axis before T (CTYX) is left out of the tracks and of their placement:
    napari takes the first coordinate as time and lines the tracks up with the instances' last
    dimensions, so each centroid lands at its time point, where the instances layer has it."""
    tracks = {"track_id": np.array([1, 1, 2]), "t": np.array([0, 1, 1]), "centroid_y": np.array([2.0, 3.0, 5.0]),
              "centroid_x": np.array([4.0, 4.5, 6.0]), "parent_id": np.array([0, 0, 1])}
    instances = Labels(np.zeros((1, 2, 8, 9), np.int32), scale=(4, 3, 0.5, 0.25), translate=(7, 1, 2, 3),
                       axis_labels=("c", "t", "y", "x"))
    spatial, _ = spatial_kwargs(instances)
    layer = create_layer(tracks_layer_data(tracks, axes="TYX", source_name="cells", spatial=spatial,
                                           placeholder=0))
    assert layer.ndim == 3 and layer.axis_labels == ("t", "y", "x")
    np.testing.assert_array_equal(layer.data, [[1, 0, 2, 4], [1, 1, 3, 4.5], [2, 1, 5, 6]])
    for row in layer.data:
        world = instances.data_to_world((0, *row[1:]))
        np.testing.assert_allclose(layer.data_to_world(row[1:]), world[1:])


def test_axes_choices_and_resolution():
    rgb = Image(np.zeros((8, 9, 3), np.uint8), rgb=True)
    stack = Image(np.zeros((4, 8, 9)))
    hyper = Image(np.zeros((2, 4, 8, 9)))
    assert [v for _, v in axes_choices(rgb)] == [None, "YXC"]
    assert resolve_axes(rgb, None) == "YXC" and channel_data_axis(rgb, "YXC") is None
    assert [v for _, v in axes_choices(stack)] == [None, "ZYX", "TYX", "CYX", "YXC"]
    assert resolve_axes(stack, None) == "ZYX" and resolve_axes(stack, "TYX") == "TYX"
    assert channel_data_axis(stack, "CYX") == 0
    assert resolve_axes(hyper, None) == "TZYX"
    # A Fiji hyperstack (ZCYX) can be described as such.
    assert "ZCYX" in [v for _, v in axes_choices(hyper)] and channel_data_axis(hyper, "ZCYX") == 1
    assert resolve_axes(Image(np.zeros((8, 9))), None) == "YX"
    # An HxWx1 array (a one-channel TIFF opens so) is one channel, not a stack of 1-pixel-wide planes.
    single = Image(np.zeros((8, 9, 1)))
    assert resolve_axes(single, None) == "YXC" and resolve_axes(Image(np.zeros((3, 8, 9, 1))), None) == "ZYXC"
    assert [v for _, v in axes_choices(single)][0] is None and "ZYX" in [v for _, v in axes_choices(single)]
