"""The Segment widget in a real viewer: runs, shapes, placement, threads, bad input.

A napari viewer costs about a second to make and close, so related checks share
one viewer and run one after the other.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time

import dask.array as da
import numpy as np
import pytest
from napari.utils import progress
from qtpy.QtCore import QTimer

import napari_unet
from napari_unet._napari import jobs, register_session_model, unregister_session_model
from napari_unet._napari.options import ALL_CHANNELS, NO_CHANNEL
from napari_unet._napari.widget import SegmentWidget
from napari_unet.checkpoint import ModelConfig, load_model, save_model
from scenes import disc_scene, sliver_and_ball

pytestmark = pytest.mark.gui


def outputs(viewer, name):
    return viewer.layers[f"{name} semantic"], viewer.layers[f"{name} instances"]


def _segment_linked_movie(viewer, widget, wait_done, frames, **placement):
    """Runs the widget, linked over time, on the frames as a TYX image 'movie' (placed with
    ``placement``, e.g. scale and translate): the image layer and its instances layer."""
    movie = viewer.add_image(np.stack(frames).astype(np.float32), name="movie", **placement)
    widget.image.value = movie
    widget.axes.value = "TYX"
    widget.min_size.value = 0
    widget.link_time.value = True
    widget.run()
    wait_done(widget)
    return movie, outputs(viewer, "movie")[1]


def test_run_2d_places_outputs_like_the_source(viewer, widget, wait_done, make_blobs):
    img = viewer.add_image(make_blobs((64, 80)), name="cells", scale=(0.5, 0.25),
                           translate=(10.0, -4.0), units=("um", "um"))
    widget.image.value = img
    widget.scale.value = 1.5  # the network sees a 96 x 120 image; the layers keep 64 x 80
    widget.run_button.clicked()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    wait_done(widget)
    sem, inst = outputs(viewer, "cells")
    assert sem.data.shape == inst.data.shape == (64, 80)
    assert sem.data.dtype == np.uint8 and inst.data.dtype == np.uint16  # napari draws uint16 faster
    for layer in (sem, inst):
        np.testing.assert_allclose(layer.scale, (0.5, 0.25))
        np.testing.assert_allclose(layer.translate, (10.0, -4.0))
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    meta = inst.metadata
    assert meta["source_layer"] == "cells" and meta["output"] == "instances"
    assert meta["model"] == "tiny"
    assert meta["model_sha256"] == load_model(widget.model.value[len("file:"):]).sha256
    assert meta["napari_unet_version"] == napari_unet.__version__
    assert meta["threshold"] == pytest.approx(widget.threshold.value)
    assert meta["instance_method"] == widget.instance_method.value
    assert meta["scale"] == 1.5
    assert sem.metadata["output"] == "semantic"
    assert not widget.running and widget.run_button.enabled and not widget.cancel_button.enabled
    n = len(np.unique(inst.data)) - int((inst.data == 0).any())
    assert widget.status.value.startswith(f"{n} object{'' if n == 1 else 's'} in cells")
    assert not [p for p in progress._all_instances if "cells" in p.desc]  # bar closed


def _rgb(make_blobs):
    return (np.clip(make_blobs((48, 64, 3)), 0, 1) * 255).astype(np.uint8)


# name, image, layer kwargs, widget settings, output shape, output scale, engine axes, label ndim
CASES = [
    ("rgb", _rgb, {"scale": (2.0, 3.0)}, {}, (48, 64), (2.0, 3.0), "YXC", 2),
    ("stack", lambda b: b((4, 40, 48)), {"scale": (2.0, 0.5, 0.5)}, {"mode": "2d"},
     (4, 40, 48), (2.0, 0.5, 0.5), "ZYX", 3),
    ("movie", lambda b: b((3, 40, 48)), {"scale": (5.0, 1.0, 1.0)}, {"axes": "TYX"},
     (3, 40, 48), (5.0, 1.0, 1.0), "TYX", 2),
    ("lazy", lambda b: da.from_array(b((3, 40, 48)), chunks=(1, 40, 48)), {}, {},
     (3, 40, 48), (1.0, 1.0, 1.0), "ZYX", 3),
    # A movie of RGB frames is a time series, not a colour z-stack.
    ("rgb movie", lambda b: np.stack([_rgb(b)] * 3), {"scale": (5.0, 2.0, 3.0)}, {"axes": "TYXC"},
     (3, 48, 64), (5.0, 2.0, 3.0), "TYXC", 2),
    # A 5D layer under 'auto': ImageJ's hyperstack order; the outputs keep its channel axis with one
    # plane, stretched over both channels, so that their T and Z line up with the image's.
    ("hyper", lambda b: np.stack([b((2, 2, 40, 48))] * 2, axis=0), {"scale": (4.0, 2.0, 1.0, 0.5, 0.5)},
     {"channel": 1}, (2, 2, 1, 40, 48), (4.0, 2.0, 2.0, 0.5, 0.5), "TZCYX", 3),
]


def test_rgb_stacks_time_series_and_dask(viewer, widget, wait_done, make_blobs, monkeypatch):
    seen = []
    real = jobs.iter_segment

    def spy(image, **kwargs):
        seen.append(image)
        return (yield from real(image, **kwargs))

    monkeypatch.setattr(jobs, "iter_segment", spy)
    for name, make, layer_kwargs, settings, shape, scale, axes, label_ndim in CASES:
        img = viewer.add_image(make(make_blobs), name=name, **layer_kwargs)
        widget.image.value = img
        for option, value in settings.items():
            getattr(widget, option).value = value
        widget.run()
        wait_done(widget)
        sem, inst = outputs(viewer, name)
        assert sem.data.shape == inst.data.shape == shape, name
        np.testing.assert_allclose(inst.scale, scale)
        np.testing.assert_allclose(sem.scale, scale)
        assert inst.metadata["axes"] == axes, name
        assert widget._tracker.record(img).label_ndim == label_ndim, name
        times = shape[axes.replace("C", "").index("T")] if "T" in axes else 1
        assert ("time points" in widget.status.value) == (times > 1), widget.status.value
        assert times == 1 or f" over {times} time points" in widget.status.value, widget.status.value
        widget.mode.value = "auto"
    assert viewer.layers["rgb"].rgb and widget.axes.choices
    # The dask layer reached the engine as it was, not read into memory.
    assert isinstance(seen[[case[0] for case in CASES].index("lazy")], da.Array)


def test_a_pyramid_is_segmented_at_full_resolution(viewer, widget, wait_done, make_blobs, notes):
    """A multiscale layer (an OME-Zarr or a slide read lazily: a list of levels, dask arrays) is
    segmented at its level 0, and its outputs lie over it as they lie over that level alone."""
    full = make_blobs((96, 128))
    levels = [da.from_array(full, chunks=(48, 64)), da.from_array(full[::2, ::2]),
              da.from_array(full[::4, ::4])]
    pyramid = viewer.add_image(levels, multiscale=True, name="pyramid", scale=(0.5, 0.25),
                               translate=(3.0, -2.0))
    flat = viewer.add_image(full, name="flat", scale=(0.5, 0.25), translate=(3.0, -2.0))
    for layer in (pyramid, flat):
        widget.image.value = layer
        widget.run()
        wait_done(widget)
    assert not notes.messages("error")
    for kind, (got, want) in zip(("semantic", "instances"), zip(outputs(viewer, "pyramid"), outputs(viewer, "flat"))):
        assert got.data.shape == full.shape, kind
        np.testing.assert_array_equal(got.data, want.data)
        np.testing.assert_allclose(got.scale, (0.5, 0.25))
        np.testing.assert_allclose(got.translate, (3.0, -2.0))
    assert outputs(viewer, "pyramid")[1].data.max() > 0


def test_channel_axis_named_by_the_user_is_dropped(viewer, widget, wait_done, make_blobs,
                                                   two_channel_model):
    img = viewer.add_image(make_blobs((2, 40, 48)), name="two", scale=(1.0, 0.3, 0.2),
                           translate=(0.0, 5.0, 6.0))
    widget.image.value = img
    widget.axes.value = "CYX"
    widget.channel.value = 1  # meaningful for the 1-channel model ...
    assert widget.add_model(str(two_channel_model))
    # ... but a 2-channel model takes both: nothing to pick, no channel passed.
    assert not widget.channel.enabled and widget.channel.value is None
    assert widget.channel.current_choice == ALL_CHANNELS
    assert "CYX" in widget.axes.choices
    widget.run()
    wait_done(widget)
    sem, inst = outputs(viewer, "two")
    assert inst.data.shape == (40, 48)
    np.testing.assert_allclose(inst.scale, (0.3, 0.2))
    np.testing.assert_allclose(inst.translate, (5.0, 6.0))


def test_channel_choice_for_multichannel_images(viewer, widget, wait_done, make_blobs, notes,
                                                monkeypatch):
    """A 1-channel model on a 2-channel image: 'all' asks for a channel, and the Channel
    box (enabled only when the axes hold C) picks one."""
    seen = []
    real = jobs.iter_segment

    def spy(image, **kwargs):
        seen.append(kwargs["channel"])
        return (yield from real(image, **kwargs))

    monkeypatch.setattr(jobs, "iter_segment", spy)

    def shown() -> bool:  # offered; greyed out, saying why, otherwise (never hidden)
        assert not widget.channel.native.isHidden()
        offered = widget.channel.enabled
        assert offered or widget.channel.current_choice == NO_CHANNEL
        return offered

    plain = viewer.add_image(make_blobs((40, 48)), name="plain")
    widget.image.value = plain
    assert not shown() and widget.channel.value is None
    rgb = viewer.add_image(_rgb(make_blobs), name="rgb")
    widget.image.value = rgb
    assert shown() and widget.channel.choices == (None, 0, 1, 2)

    data = np.stack([np.zeros((40, 48), np.float32), make_blobs((40, 48))])
    two = viewer.add_image(data, name="two")
    widget.image.value = two
    assert not shown(), "napari's plain 3D layer is a z-stack until told otherwise"
    widget.axes.value = "CYX"
    assert shown() and widget.channel.choices == (None, 0, 1)
    widget.run()
    wait_done(widget)
    assert any("channel" in m for m in notes.messages("error"))
    assert "two instances" not in [layer.name for layer in viewer.layers]
    widget.channel.value = 1
    widget.run()
    wait_done(widget)
    assert seen == [None, 1]
    sem, inst = outputs(viewer, "two")
    assert inst.data.shape == sem.data.shape == (40, 48)
    # The result layers joined the viewer: the choice stays for the next run.
    assert widget.channel.value == 1 and widget.axes.value == "CYX"
    widget.run()
    wait_done(widget)
    assert seen == [None, 1, 1]
    # Other axes: channel 1 would name another dimension, so the choice starts again.
    widget.axes.value = None  # "auto" again (ZYX): no channel to choose
    assert not shown() and widget.channel.value is None and widget.channel.choices == (None,)
    widget.axes.value = "CYX"
    assert widget.channel.value is None
    widget.image.value = plain
    assert not shown() and widget.channel.value is None


def test_rows_stay_in_place_when_the_image_changes(viewer, widget, make_blobs, qtbot):
    """Switching between a grey and an RGB image greys the Channel row out or in: the rows
    below it do not move (the form used to jump by a row)."""
    grey = viewer.add_image(make_blobs((40, 48)), name="grey")
    rgb = viewer.add_image(_rgb(make_blobs), name="rgb")
    viewer.show()  # laid out in its dock
    qtbot.waitExposed(widget.native)

    def layout() -> tuple:
        widget.native.layout().activate()
        below = (widget.mode, widget.threshold, widget.min_size, widget.link_time, widget.run_button)
        tops = tuple(w.native.mapTo(widget.native, w.native.rect().topLeft()).y() for w in below)
        return widget.native.sizeHint().height(), tops

    widget.image.value = grey
    before = layout()
    assert not widget.channel.enabled and widget.channel.visible and widget.channel.current_choice == NO_CHANNEL
    widget.image.value = rgb
    assert widget.channel.enabled and layout() == before
    widget.image.value = grey
    assert not widget.channel.enabled and layout() == before


def test_fields_line_up_under_the_longest_label(viewer, widget, qtbot):
    """The labels are measured as napari draws them: 'Seed threshold', the longest, no longer
    pushes its field out of line with the others."""
    viewer.show()
    qtbot.waitExposed(widget.native)
    fields = (widget.image, widget.model, widget.axes, widget.threshold, widget.seed_threshold,
              widget.min_size)
    lefts = {w.native.mapTo(widget.native, w.native.rect().topLeft()).x() for w in fields}
    assert len(lefts) == 1, lefts


def test_link_time_points_in_the_widget(viewer, widget, wait_done, fake_net, notes):
    """With 'Link time points' a disc keeps its id over a movie, also after 'Update instances'."""
    frames = [disc_scene([(16, 16 + t, 6), (44, 40 - t, 7)])[0] for t in range(3)]
    frames[1] = disc_scene([(4, 50, 3), (16, 17, 6), (44, 39, 7)])[0]  # a newcomer shifts its ids
    movie, inst = _segment_linked_movie(viewer, widget, wait_done, frames)

    def tracks(data):
        return [data[t, 16, 16 + t] for t in range(3)], [data[t, 44, 40 - t] for t in range(3)]

    top, bottom = tracks(inst.data)
    assert len(set(top)) == len(set(bottom)) == 1 and top[0] != bottom[0]
    assert inst.metadata["linked_over_time"] is True
    # 2 discs followed over 3 frames and a newcomer: 7 objects, 3 nuclei followed (as the command line says).
    assert "7 objects in movie over 3 time points, in 3 tracks (" in widget.status.value
    widget.update_instances()
    wait_done(widget)
    top, bottom = tracks(viewer.layers["movie instances"].data)
    assert len(set(top)) == len(set(bottom)) == 1 and top[0] != bottom[0]
    # The box is read at each update, like the other object options.
    widget.link_time.value = False
    widget.update_instances()
    wait_done(widget)
    top, _ = tracks(viewer.layers["movie instances"].data)
    assert top == [1, 2, 1]
    # The metadata says what the update made: no longer linked.
    assert viewer.layers["movie instances"].metadata["linked_over_time"] is False
    assert viewer.layers["movie instances"].metadata["n_objects"] == 7
    assert not notes.messages("warning")
    # Read as a z-stack (no T), nothing can be linked: the box is greyed and the run ignores it.
    widget.axes.value = None
    widget.link_time.value = True
    assert not widget.link_time.enabled and widget._options(movie)["link_time"] is False


def test_update_of_a_linked_series_counts_its_tracks(viewer, widget, wait_done, fake_net, notes):
    """After 'Update instances' of a series linked over time the status says how many tracks, as a
    Run's does: it counted only the objects summed over the time points. Ids erased by hand leave
    gaps, so the count is of the ids there are, not the largest."""
    frames = [disc_scene([(16, 16 + t, 6), (44, 40 - t, 7)])[0] for t in range(3)]
    frames[1] = disc_scene([(4, 50, 3), (16, 17, 6), (44, 39, 7)])[0]  # a newcomer in frame 1
    _, inst = _segment_linked_movie(viewer, widget, wait_done, frames)
    assert ", in 3 tracks (" in widget.status.value
    widget.update_instances()
    wait_done(widget)
    assert widget.status.value.startswith("7 objects after the update of movie, in 3 tracks ('movie semantic' -> "
                                          "'movie instances'"), widget.status.value
    # The user erases the first track in every frame: the ids left have a gap.
    gone = inst.data[0, 16, 16]
    for t in range(3):
        inst.fill((t, 16, 16 + t), 0)
    widget.update_instances()
    wait_done(widget)
    ids = set(np.unique(viewer.layers["movie instances"].data)) - {0}
    assert gone not in ids and len(ids) == 2 and max(ids) == 3
    assert widget.status.value.startswith("4 objects after the update of movie, in 2 tracks ("), widget.status.value
    assert not notes.messages("error") and not notes.messages("warning")


def test_measure_shows_the_tracks_of_a_linked_series(viewer, widget, wait_done, fake_net, notes, monkeypatch):
    """'Measure objects' on a series segmented with 'Link time points' shows each nucleus' path in
    '<image> tracks', placed like the image: a row per nucleus and time point at its centroid, and
    the daughter of a division linked to its mother, each point with its nucleus' measurements.
    Measuring again updates that layer, coloured as the user chose; a series segmented without the
    link gets none."""
    from napari.layers import Tracks

    monkeypatch.setattr(SegmentWidget, "_ask_table_path", lambda self, name: None)
    frames = [disc_scene([(16, 12 + 3 * t, 6), (44, 40, 7)])[0] for t in range(2)]
    # The bottom nucleus divides: the larger daughter keeps its place, the other lies partly where it
    # was (a daughter shares pixels with its mother's last outline, see tracking.tracks_table).
    frames += [disc_scene([(16, 12 + 3 * t, 6), (44, 35, 6), (44, 47, 4)])[0] for t in range(2, 4)]
    movie, inst = _segment_linked_movie(viewer, widget, wait_done, frames, scale=(1, 0.5, 0.5),
                                        translate=(0, 10, 20))
    widget.measure()
    wait_done(widget)
    tracks = viewer.layers["movie tracks"]
    assert isinstance(tracks, Tracks) and tracks.ndim == 3
    assert tuple(tracks.scale) == tuple(inst.scale) == (1, 0.5, 0.5)
    assert tuple(tracks.translate) == tuple(inst.translate) == (0, 10, 20)

    def check_rows(layer, labels):
        rows = {(int(i), int(t)): (y, x) for i, t, y, x in layer.data}
        present = {(int(i), t) for t in range(len(labels)) for i in np.unique(labels[t]) if i}
        assert set(rows) == present
        for (i, t), (y, x) in rows.items():
            yy, xx = np.nonzero(labels[t] == i)
            assert (y, x) == pytest.approx((yy.mean(), xx.mean()))

    labels = inst.data
    check_rows(tracks, labels)
    top, mother, daughter = labels[0, 16, 12], labels[0, 44, 40], labels[2, 44, 47]
    assert len({top, mother, daughter}) == 3 and labels[3, 44, 35] == mother
    assert tracks.graph == {int(daughter): [int(mother)]}
    assert "3 tracks in 'movie tracks' (1 from a division)." in widget.status.value

    def check_features(layer, labels):  # each point's measurements, to colour the tracks by
        for (i, t, _, _), area, mean in zip(layer.data, layer.features["area"], layer.features["mean_intensity"]):
            nucleus = labels[int(t)] == i
            assert area == np.count_nonzero(nucleus) and mean == pytest.approx(movie.data[int(t)][nucleus].mean())

    check_features(tracks, labels)
    tracks.color_by = "area"
    # The user erases the top nucleus in the last frame and renames the layer: measured again, the
    # same layer shows the tracks as they are now.
    inst.data = np.where((np.arange(4)[:, None, None] == 3) & (labels == top), 0, labels).astype(labels.dtype)
    tracks.name = "my paths"
    widget.measure()
    wait_done(widget)
    assert viewer.layers["my paths"] is tracks and "movie tracks" not in viewer.layers
    assert (int(top), 3) not in {(int(i), int(t)) for i, t, *_ in tracks.data}
    check_rows(tracks, inst.data)
    assert tracks.graph == {int(daughter): [int(mother)]}
    check_features(tracks, inst.data)
    assert tracks.color_by == "area"  # as the user chose, by the new values
    # Without 'Link time points' ids are per time point: no tracks.
    plain = viewer.add_image(np.stack(frames).astype(np.float32), name="plain")
    widget.image.value = plain
    widget.axes.value = "TYX"
    widget.link_time.value = False
    widget.run()
    wait_done(widget)
    widget.measure()
    wait_done(widget)
    assert widget.status.value.startswith("10 objects measured in plain instances")
    assert [layer.name for layer in viewer.layers if isinstance(layer, Tracks)] == ["my paths"]
    assert not notes.messages("error")


def test_tracks_go_out_of_date_when_their_instances_change(viewer, widget, wait_done, fake_net, notes,
                                                           monkeypatch):
    """Tracks show the labels they were measured from, no others: a run that replaces the instances,
    an update (one that turns the link off too) or a brush stroke hides them and says so in their
    name and a notification; 'Measure objects' of linked labels shows the same layer again, current."""
    frames = [disc_scene([(16, 12 + 3 * t, 6), (44, 40, 7), (52, 12, 2)])[0] for t in range(3)]
    _, inst = _segment_linked_movie(viewer, widget, wait_done, frames)
    widget.measure()
    wait_done(widget)
    tracks = viewer.layers["movie tracks"]
    assert len(np.unique(tracks.data[:, 0])) == 3

    def out_of_date() -> bool:
        return (tracks in viewer.layers and not tracks.visible and tracks.name == "movie tracks (out of date)"
                and tracks.metadata.get("out_of_date") is True)

    def measured_again(count: int) -> None:
        widget.measure()
        wait_done(widget)
        assert viewer.layers["movie tracks"] is tracks and tracks.visible and not out_of_date()
        assert len(np.unique(tracks.data[:, 0])) == count
        assert tracks.features["area"].tolist() == [np.count_nonzero(inst.data[int(t)] == i)
                                                   for i, t, *_ in tracks.data]

    # A run with a larger least size replaces the (untouched) pair in place, the small nucleus gone.
    widget.min_size.value = 30
    widget.run()
    wait_done(widget)
    assert outputs(viewer, "movie")[1] is inst and len(np.unique(inst.data)) == 3
    assert out_of_date()
    assert any("'movie tracks (out of date)'" in m and "press 'Measure objects'" in m
               for m in notes.messages("info"))
    measured_again(2)
    # An update that turns the link off: the tracks stay out of date, measured or not.
    widget.link_time.value = False
    widget.update_instances()
    wait_done(widget)
    assert outputs(viewer, "movie")[1] is inst and not inst.metadata["linked_over_time"]
    assert out_of_date() and "no longer linked over time" in notes.messages("info")[-1]
    widget.measure()
    wait_done(widget)
    assert out_of_date()
    # The status says why Measure objects did not draw them again, and what to do.
    assert widget.status.value.endswith(
        "'movie tracks (out of date)' stays hidden: the ids of 'movie instances' are not linked over time "
        "(press 'Update instances' with 'Link time points' on, then 'Measure objects').")
    # Linked again and measured, they are current until a brush stroke changes the labels.
    widget.link_time.value = True
    widget.update_instances()
    wait_done(widget)
    measured_again(2)
    inst.brush_size = 3
    inst.paint((2, 16, 18), 0)
    assert out_of_date()
    # Painted while it is measured: the tracks, of the labels as they were, are out of date at once.
    from napari_unet._napari import widget as widget_module

    gate, measure_job = threading.Event(), widget_module.measure_job
    monkeypatch.setattr(widget_module, "measure_job", lambda *a, **k: gate.wait(10) and measure_job(*a, **k))
    widget.measure()
    inst.paint((2, 44, 40), 0)
    gate.set()
    wait_done(widget)
    assert out_of_date() and len(np.unique(tracks.data[:, 0])) == 2
    assert not notes.messages("error") and not notes.messages("warning")


def test_update_of_a_time_series_result_keeps_its_link_while_the_box_is_greyed(viewer, widget, wait_done,
                                                                              fake_net):
    """With a 2D image chosen, 'Link time points' is greyed out and its value means nothing: the
    update of a movie's result (selected in the layer list) keeps the link the result was made with."""
    frames = [disc_scene([(16, 16 + t, 6), (44, 40 - t, 7)])[0] for t in range(3)]
    frames[1] = disc_scene([(4, 50, 3), (16, 17, 6), (44, 39, 7)])[0]  # a newcomer shifts its ids
    movie = viewer.add_image(np.stack(frames).astype(np.float32), name="movie")
    plane = viewer.add_image(frames[0].astype(np.float32), name="plane")
    widget.min_size.value = 0

    def update_top_track(link_box: bool) -> list:
        widget.image.value = plane
        widget.link_time.value = link_box  # as left from before; greyed out now
        assert not widget.link_time.enabled
        sem, _ = outputs(viewer, "movie")
        viewer.layers.selection.active = sem
        widget.update_instances()
        wait_done(widget)
        inst = viewer.layers["movie instances"]
        return [inst.data[t, 16, 16 + t] for t in range(3)], inst.metadata["linked_over_time"]

    for linked in (True, False):
        widget.image.value = movie
        widget.axes.value = "TYX"
        widget.link_time.value = linked
        widget.run()
        wait_done(widget)
        top, meta = update_top_track(not linked)
        assert meta is linked
        assert (len(set(top)) == 1) if linked else (top == [1, 2, 1])


def test_min_size_of_a_2d_model_is_an_area_in_a_stack_run_and_update(viewer, widget, wait_done, fake_net):
    """A z-stack segmented plane by plane is labelled in 3D, Run and Update instances alike: the
    2D model's min_size (24 px) is a cross-section's area, so a sliver two planes deep (58 voxels)
    goes, painted back or not, and a small nucleus (a ball of radius 4) stays."""
    mask, nucleus, sliver = sliver_and_ball()
    img = viewer.add_image(mask.astype(np.float32) * 200, name="stack")
    widget.image.value = img
    widget.min_size.value = 24
    widget.run()
    wait_done(widget)
    sem, inst = outputs(viewer, "stack")
    assert inst.metadata["mode"] == "2d" and inst.metadata["axes"] == "ZYX"
    assert inst.data[nucleus] > 0 and inst.data[sliver] == 0
    assert inst.metadata["min_size"] == 24 and inst.metadata["min_volume"] == 88
    sem.data[:2] = mask[:2]  # the sliver painted back into the mask
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    inst = viewer.layers["stack instances"]
    assert inst.data[nucleus] > 0 and inst.data[sliver] == 0
    assert inst.metadata["min_volume"] == 88 and inst.metadata["n_objects"] == 1
    widget.min_size.value = 10  # a ball of 24 voxels: the sliver's 58 reach it
    widget.update_instances()
    wait_done(widget)
    inst = viewer.layers["stack instances"]
    assert inst.data[sliver] > 0 and inst.metadata["min_volume"] == 24 and inst.metadata["n_objects"] == 2


def test_link_time_points_is_offered_only_with_a_time_axis(viewer, widget, make_blobs):
    """The box follows the chosen image and its axes: greyed without a T axis, its tooltip
    saying why and what to choose; the user's tick is kept for the next time series."""
    from napari_unet._napari.options import TOOLTIPS

    def offered() -> bool:
        return widget.link_time.enabled

    assert not offered() and "there is no image" in widget.link_time.tooltip
    movies = viewer.add_image(make_blobs((2, 3, 40, 48)), name="movies")  # chosen as it comes
    assert widget.image.value is movies and offered()  # auto: TZYX
    assert widget.link_time.tooltip == TOOLTIPS["link_time"]
    stack = viewer.add_image(make_blobs((3, 40, 48)), name="stack")
    widget.image.value = stack
    assert not offered() and "read as ZYX" in widget.link_time.tooltip
    assert "TYX" in widget.link_time.tooltip
    widget.axes.value = "TYX"
    assert offered() and widget.link_time.tooltip == TOOLTIPS["link_time"]
    widget.link_time.value = True
    assert widget._options(stack)["link_time"] is True
    widget.axes.value = "CYX"
    assert not offered() and "read as CYX" in widget.link_time.tooltip
    assert widget.link_time.value and widget._options(stack)["link_time"] is False
    widget.axes.value = "TYX"
    widget.axes.native.setCurrentIndex(0)  # "auto" picked in the list: ZYX again
    assert widget.axes.value is None and not offered()
    widget.image.value = viewer.add_image(make_blobs((40, 48)), name="plain")
    assert not offered() and "read as YX" in widget.link_time.tooltip
    widget.image.value = movies
    assert offered() and widget._options(movies)["link_time"] is True


def test_cancel_stops_soon_and_adds_nothing(viewer, widget, qtbot, notes):
    img = viewer.add_image(np.random.default_rng(0).random((40, 512, 512), np.float32), name="big")
    widget.image.value = img
    widget.tile_size.value = 128
    records = []
    n_layers = len(viewer.layers)
    widget.run()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    widget._run.worker.yielded.connect(records.append)
    qtbot.waitUntil(lambda: len(records) >= 1, timeout=20_000)
    start = time.perf_counter()
    with qtbot.waitSignal(widget._run.worker.finished, timeout=5_000):
        widget.cancel_button.clicked()
    assert time.perf_counter() - start < 2.5
    assert not widget.running and widget.run_button.enabled and not widget.cancel_button.enabled
    assert len(viewer.layers) == n_layers
    assert records[-1].done < records[-1].total
    assert any("cancelled" in m.lower() for m in notes.messages("info"))


def test_cancel_after_the_last_progress_record_is_said(viewer, widget, qtbot, notes, monkeypatch, make_blobs):
    """Cancel pressed while the job finishes its result (after its last record): the worker
    sends neither the result nor 'aborted', and the widget must still say it was cancelled."""
    real = jobs.iter_segment

    def late_cancel(image, **options):
        result = yield from real(image, **options)
        widget._run.worker.quit()  # Cancel, pressed after the worker last looked for it
        return result

    monkeypatch.setattr(jobs, "iter_segment", late_cancel)
    img = viewer.add_image(make_blobs((40, 48)), name="late")
    widget.image.value = img
    n_layers = len(viewer.layers)
    widget.run()
    worker = widget._run.worker
    qtbot.waitUntil(lambda: not widget.running, timeout=20_000)
    assert worker.abort_requested
    assert len(viewer.layers) == n_layers
    assert widget.status.value == "Cancelled."
    assert sum("cancelled" in m.lower() for m in notes.messages("info")) == 1


def test_closing_the_dock_stops_the_job_and_its_progress_bar(viewer, qtbot, tiny_model, close_dock):
    """Closed with its X, the panel's widget can be collected before its Qt object is
    destroyed: the job must still stop, and napari's progress bar must not stay open."""
    dock, wdg = viewer.window.add_plugin_dock_widget("napari-unet-seg", "Segment (U-Net)")
    assert wdg.add_model(str(tiny_model))
    wdg.device.value, wdg.tile_size.value = "cpu", 128
    wdg.image.value = viewer.add_image(np.random.default_rng(2).random((40, 512, 512), np.float32), name="big")
    wdg.run()
    worker, bar = wdg._run.worker, wdg._run.pbar
    records = []
    worker.yielded.connect(records.append)
    qtbot.waitUntil(lambda: len(records) >= 1, timeout=20_000)
    button = dock.title.close_button
    del wdg, dock
    close_dock(button)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5_000)
    assert records[-1].done < records[-1].total, "stopped, not run to the end"
    assert bar not in progress._all_instances
    assert "big instances" not in [layer.name for layer in viewer.layers]


def test_closing_the_viewer_during_a_run_stops_it_quietly(viewer, widget, qtbot, notes, start_run):
    """viewer.close() removes every layer before it closes the window: the run stops, and nothing
    says 'C was removed from the viewer: its segmentation was stopped' (nobody removed it), nor
    raises. Removing the image by hand still says so (test_removing_the_source_discards_the_result)."""
    img = viewer.add_image(np.random.default_rng(3).random((1024, 1024), np.float32), name="C")
    records = start_run(widget, img, tile_size=128)
    worker = widget._run.worker
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.wait(100)
    assert records[-1].done < records[-1].total, "stopped, not run to the end"
    assert not [m for m in notes.messages() if "removed" in m], notes.messages()
    assert not notes.messages("error") and not notes.messages("warning")


def test_progress_reads_in_words_in_the_status(viewer, widget, qtbot):
    """The status names the stage for a biologist ("Network: tile 1/...", capitalised), not by
    the engine's code name ("predict: ...")."""
    img = viewer.add_image(np.random.default_rng(1).random((2, 256, 256), np.float32), name="words")
    widget.image.value = img
    widget.tile_size.value = 64
    seen = []
    widget.run()
    # Connected after the widget's own slot: each record has set the status when this runs.
    widget._run.worker.yielded.connect(lambda record: seen.append((record.stage, widget.status.value)))
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert [text for stage, text in seen if stage == "predict"], seen
    for stage, text in seen:
        assert text.startswith({"predict": "Network: ", "instances": "Instances: "}[stage]), seen


def test_event_loop_keeps_turning_during_a_run(viewer, widget, qtbot):
    img = viewer.add_image(np.random.default_rng(1).random((6, 512, 512), np.float32), name="busy")
    widget.image.value = img
    widget.tile_size.value = 128
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(widget.running))
    records = []
    timer.start()
    widget.run()
    widget._run.worker.yielded.connect(lambda rec: records.append(len(ticks)))
    bar_values = []
    widget._run.pbar.events.value.connect(lambda event: bar_values.append(event.value))
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    timer.stop()
    # The napari progress bar advanced tile by tile (150 tiles, then the instance step).
    assert 150 in bar_values and len(set(bar_values)) > 100
    assert len(records) > 100  # 6 planes x 25 tiles, each record handled in the GUI thread
    assert sum(ticks) >= 10  # the timer fired while the worker ran ...
    assert len(set(records)) > 5  # ... and between tiles, not only before and after
    assert viewer.layers["busy instances"].data.shape == (6, 512, 512)


def test_removing_the_source_discards_the_result(viewer, widget, qtbot, notes, make_blobs, start_run):
    # Removed while the network runs: the work stops.
    img = viewer.add_image(np.random.default_rng(2).random((20, 256, 256), np.float32), name="gone")
    start_run(widget, img)
    viewer.layers.remove(img)
    qtbot.waitUntil(lambda: not widget.running, timeout=5_000)
    assert len(viewer.layers) == 0 and widget.image.value is None
    assert sum("removed" in m for m in notes.messages()) == 1
    qtbot.wait(200)  # progress records still queued do not bring the old tile count back
    assert widget.status.value == "Stopped: 'gone' was removed." and widget.progress_bar.value == 0
    # Removed when the result is already waiting in the event queue: it is dropped.
    img = viewer.add_image(make_blobs((40, 48)), name="late")
    widget.image.value = img
    widget.tile_size.value = 0
    widget.run()
    run = widget._run
    deadline = time.monotonic() + 30
    while run.worker.is_running and time.monotonic() < deadline:
        time.sleep(0.01)  # no Qt events handled here: the result stays queued
    assert not run.worker.is_running and widget.running
    viewer.layers.remove(img)
    qtbot.waitUntil(lambda: not widget.running, timeout=5_000)
    assert len(viewer.layers) == 0
    assert sum("removed" in m for m in notes.messages()) == 2


@pytest.mark.parametrize("new_shape", [(40, 48), (6, 256, 256)], ids=["other shape", "same shape"])
def test_image_data_replaced_during_a_run_discards_the_result(viewer, widget, qtbot, notes, make_blobs,
                                                              new_shape, start_run):
    """New data assigned to the image while it is segmented (another shape: a traceback before; the
    same shape: the old image's labels over the new one): the result fits the old data, not the
    layer; it is discarded with a warning, no layers placed."""
    img = viewer.add_image(np.random.default_rng(3).random((6, 256, 256), np.float32), name="swapped")
    start_run(widget, img)
    img.data = make_blobs(new_shape) if len(new_shape) == 2 else np.random.default_rng(4).random(new_shape, np.float32)
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["swapped"]
    (warning,) = notes.messages("warning")
    assert "were replaced" in warning and "Run" in warning
    assert widget.run_button.enabled and widget.status.value == "Discarded: the image changed."


def test_bad_input_becomes_a_notification(viewer, widget, wait_done, notes, monkeypatch,
                                          two_channel_model, make_blobs):
    # No image layer at all (a Labels layer is not offered as an image).
    mask = viewer.add_labels(np.zeros((16, 16), np.uint8), name="mask")
    assert widget.image.choices == ()
    widget.run_button.clicked()
    assert not widget.running
    (error,) = notes.messages("error")
    assert "no image layer" in error
    assert widget.status.value == "Not started: see the notification."
    # A Labels layer handed over as the image.
    notes.items.clear()
    widget.run(layer=mask)
    assert not widget.running
    assert notes.messages("error") == [
        "'mask' is a Labels layer (a mask), not an image: choose an image layer to segment."
    ]
    # A model that wants two channels, on a one-channel image (found in the worker).
    notes.items.clear()
    img = viewer.add_image(make_blobs((40, 48)), name="grey")
    assert widget.add_model(str(two_channel_model))
    widget.image.value = img
    widget.run()
    wait_done(widget)
    (error,) = notes.messages("error")
    assert "takes 2 channels" in error
    assert [layer.name for layer in viewer.layers] == ["mask", "grey"]
    assert widget.run_button.enabled
    # An unexpected failure deep in the engine: a plain message, no traceback.
    notes.items.clear()

    def broken(image, **kwargs):
        yield from ()
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(jobs, "iter_segment", broken)
    widget.run()
    wait_done(widget)
    (error,) = notes.messages("error")
    assert "ran out of memory" in error and "smaller tile size" in error
    for note in notes.items:
        assert "Traceback" not in note.message
        assert type(note).__name__ == "Notification"  # not an ErrorNotification with a traceback


def test_two_stains_stored_last_are_told_to_choose_axes_in_the_widget(viewer, widget, wait_done, notes,
                                                                       make_blobs):
    """Two stains stored last (Y, X, 2) are read as a 2-pixel-wide z-stack under 'auto': the
    message names the widget's Axes box, not only Python's axes= and the command line's --axes."""
    two = viewer.add_image(np.stack([make_blobs((48, 64)), make_blobs((48, 64), seed=1)], axis=-1), name="two")
    widget.image.value = two
    widget.run()
    wait_done(widget)
    (error,) = notes.messages("error")
    assert "axis X has 2 pixels" in error and "axes='YXC'" in error and "Axes in the widget" in error
    assert [layer.name for layer in viewer.layers] == ["two"]


def test_axes_guessed_under_auto_are_not_called_given(viewer, widget, wait_done, notes, make_blobs):
    """Under 'auto' the widget guesses the axes (ZYX for two stains stored last) and hands them to
    the engine, which took them for the user's: 'These are the axes given', though none were. The
    message says they were guessed; axes chosen under 'Axes' are still the ones given."""
    two = viewer.add_image(np.stack([make_blobs((48, 64)), make_blobs((48, 64), seed=1)], axis=-1), name="two")
    widget.image.value = two
    widget.run()
    wait_done(widget)
    (error,) = notes.messages("error")
    assert "These axes were guessed from the shape: " in error and "given" not in error
    widget.axes.value = "ZYX"
    widget.run()
    wait_done(widget)
    assert "These are the axes given: " in notes.messages("error")[-1]


def test_two_stains_stored_first_read_as_a_z_stack_are_told_what_to_choose(viewer, widget, wait_done,
                                                                              make_blobs):
    """Under 'auto', a 3D layer is a z-stack: two stains stored first (2, Y, X) were segmented as two
    planes labelled together, silently. The status says so and what to choose; a stack of more
    planes, or axes the user chose, get no such line."""
    two = viewer.add_image(np.stack([make_blobs((48, 64)), make_blobs((48, 64), seed=1)]), name="two")
    widget.image.value = two
    widget.run()
    wait_done(widget)
    assert widget.status.value.endswith(
        "s). Read as a z-stack of 2 planes (Axes: auto, ZYX): if they are stains, choose CYX under 'Axes' "
        "and the nuclear stain under 'Channel', then press Run again.")
    movie = viewer.add_image(np.stack([make_blobs((48, 64))] * 6).reshape(3, 2, 48, 64), name="movie")
    widget.image.value = movie
    widget.run()
    wait_done(widget)
    assert "Read as a z-stack of 2 planes (Axes: auto, TZYX): if they are stains, choose TCYX" in widget.status.value
    for layer, axes in ((two, "ZYX"), (viewer.add_image(make_blobs((5, 48, 64)), name="stack"), None)):
        widget.image.value = layer
        widget.axes.value = axes
        widget.run()
        wait_done(widget)
        assert re.fullmatch(rf"\d+ objects? in {layer.name} \(\d+\.\d s\)", widget.status.value)


def test_browse_opens_in_the_folder_trained_models_are_saved_in(widget, tmp_path, monkeypatch):
    """A model trained in an earlier session lies in ~/.napari-unet/models, a hidden folder a
    file dialog does not show: Browse… opens there (where it exists) so that it can be found."""
    from qtpy.QtWidgets import QFileDialog

    asked = []

    def dialog(parent, title, start, filters):
        asked.append(start)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(dialog))
    monkeypatch.setenv("HOME", str(tmp_path))
    widget.browse.clicked()  # nothing trained yet: the dialog's own choice
    models = tmp_path / ".napari-unet" / "models"
    models.mkdir(parents=True)
    widget.browse.clicked()
    assert asked == ["", str(models)]


def test_model_choices_defaults_and_tooltips(viewer, widget, tuned_model, auto_model, tmp_path,
                                            monkeypatch, notes, make_blobs):
    # Browse… opens a model; its tuned post-processing values become the defaults.
    # (patched on the class: magicgui containers treat attribute deletion as widget removal)
    # A model whose config asks for scale "auto" (as the bundled one does) gets it.
    assert not widget.auto_scale.value and widget.scale.enabled  # the tiny model has a fixed scale
    assert widget.add_model(str(auto_model))
    assert widget.auto_scale.enabled and widget.auto_scale.value and not widget.scale.enabled
    img = viewer.add_image(make_blobs((32, 32)), name="blobs")
    assert widget._options(img)["scale"] == "auto"
    widget.auto_scale.value = False
    assert widget.scale.enabled and widget._options(img)["scale"] == widget.scale.value
    monkeypatch.setattr(SegmentWidget, "_ask_model_path", lambda self: str(tuned_model / "config.json"))
    widget.browse.clicked()
    assert widget.model.value == f"file:{tuned_model / 'config.json'}"
    # A model without a reference object size cannot scale automatically.
    assert not widget.auto_scale.enabled and not widget.auto_scale.value and widget.scale.enabled
    assert widget.threshold.value == pytest.approx(0.3)
    assert widget.min_size.value == 25
    assert widget.instance_method.value == "components"
    # The seed threshold: the model's, offered where seeds split objects, and used.
    assert widget.seed_threshold.value == pytest.approx(0.6) and not widget.seed_threshold.enabled
    widget.instance_method.value = "watershed"
    assert widget.seed_threshold.enabled
    widget.seed_threshold.value = 0.85
    assert widget._options(img)["seed_threshold"] == pytest.approx(0.85)
    # A plain foreground model has no interiors to seed from: no seed threshold.
    config = ModelConfig(base_width=4, depth=2, out_channels=2, target="semantic",
                         classes=["background", "nucleus"], name="plain",
                         postprocess={"threshold": 0.5, "seed_threshold": 0.5, "min_size": 0,
                                      "instance_method": "watershed", "fill_holes": True})
    assert widget.add_model(str(save_model(tmp_path / "plain", config.build(), config)))
    assert widget.instance_method.value == "watershed" and not widget.seed_threshold.enabled
    assert widget._options(img)["seed_threshold"] is None
    widget.model.value = f"file:{tuned_model / 'config.json'}"
    widget.instance_method.value = "components"
    # A folder without a model: a notification, and the choice stays.
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(SegmentWidget, "_ask_model_path", lambda self: str(tmp_path / "empty"))
    widget.browse.clicked()
    assert widget.model.value == f"file:{tuned_model / 'config.json'}"
    (error,) = notes.messages("error")
    assert "config.json" in error
    # Any threshold a config may hold: 0.375 shown and used as it is; 0.0005 (valid, outside
    # the box) clamped, without an error that would leave the other options stale.
    for value, shown in ((0.375, 0.375), (0.0005, 0.001)):
        folder = tmp_path / f"t{value}"
        shutil.copytree(tuned_model, folder)
        config = json.loads((folder / "config.json").read_text())
        config["postprocess"].update(threshold=value, min_size=7)
        (folder / "config.json").write_text(json.dumps(config))
        assert widget.add_model(str(folder))
        assert widget.threshold.value == pytest.approx(shown) and widget.min_size.value == 7
    # Two models whose short labels would be the same stay two choices, each its own model.
    keys = []
    for project in ("projA", "projB"):
        folder = tmp_path / project / "models" / "nf"
        shutil.copytree(tuned_model, folder)
        config = json.loads((folder / "config.json").read_text())
        config["postprocess"]["min_size"] = 3 if project == "projA" else 4
        (folder / "config.json").write_text(json.dumps(config))
        assert widget.add_model(str(folder))
        keys.append(widget.model.value)
    assert len(set(keys)) == 2 and set(keys) <= set(widget.model.choices)
    widget.model.value = keys[0]
    assert widget.min_size.value == 3
    # The chosen model opened again after it changed on disk (retrained there): its new values.
    config = json.loads((tmp_path / "projA" / "models" / "nf" / "config.json").read_text())
    config["postprocess"]["min_size"] = 9
    (tmp_path / "projA" / "models" / "nf" / "config.json").write_text(json.dumps(config))
    assert widget.add_model(str(tmp_path / "projA" / "models" / "nf"))
    assert widget.model.value == keys[0] and widget.min_size.value == 9
    # Every option explains itself.
    for name in ("image", "model", "browse", "axes", "mode", "device", "scale", "auto_scale", "tile_size",
                 "threshold", "seed_threshold",
                 "instance_method", "min_size", "run_button", "cancel_button", "update_button"):
        assert getattr(widget, name).tooltip, name
    assert widget.device.choices[0] == "auto" and "cpu" in widget.device.choices


def test_numbers_show_the_digits_they_have(viewer, widget, tuned_model, tmp_path):
    """No padded zeros (0.500, 99.8000, 1.000): thresholds show two decimals or a tuned third,
    percentiles and the scale what they hold, the minimum size a whole number."""
    def shown(box) -> str:
        return box.native.lineEdit().text()

    folder = tmp_path / "digits"
    shutil.copytree(tuned_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["normalization"].update(low=1.0, high=99.8)
    config["postprocess"].update(threshold=0.7, seed_threshold=0.375, min_size=24, scale=1.0)
    (folder / "config.json").write_text(json.dumps(config))
    assert widget.add_model(str(folder))
    assert [shown(box) for box in (widget.scale, widget.low_percentile, widget.high_percentile,
                                   widget.threshold, widget.seed_threshold, widget.min_size)] == \
        ["1", "1", "99.8", "0.70", "0.375", "24"]
    assert widget.threshold.step == widget.seed_threshold.step == 0.05 and widget.scale.step == 0.25
    assert isinstance(widget.min_size.value, int)
    widget.scale.value, widget.high_percentile.value = 1.25, 99.9995
    assert (shown(widget.scale), shown(widget.high_percentile)) == ("1.25", "99.9995")
    assert widget.high_percentile.value == 99.9995


def test_a_long_status_wraps_instead_of_widening_the_dock(viewer, widget):
    narrow = widget.native.minimumSizeHint().width()
    widget.status.value = ("161 objects measured in nuclei instances; table saved to /home/someone/"
                           "projects/2024-06 nuclei screen/plate 3/well B07/field 12/nuclei_objects.csv")
    assert widget.status.native.minimumSizeHint().width() <= narrow


def test_percentiles_come_from_the_model_and_reach_the_run(viewer, widget, wait_done, tuned_model, make_blobs,
                                                           tmp_path, notes):
    folder = tmp_path / "norm"
    shutil.copytree(tuned_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["normalization"].update(low=2.0, high=99.95)
    (folder / "config.json").write_text(json.dumps(config))
    assert widget.add_model(str(folder))
    assert (widget.low_percentile.value, widget.high_percentile.value) == (2.0, 99.95)
    assert widget.low_percentile.tooltip and widget.high_percentile.tooltip
    img = viewer.add_image(make_blobs((40, 48)), name="blobs")
    widget.image.value = img
    widget.high_percentile.value = 99.995
    widget.run()
    wait_done(widget)
    assert viewer.layers["blobs instances"].metadata["percentiles"] == [2.0, 99.995]
    # Black above white: said, and nothing runs.
    widget.low_percentile.value = 99.995
    widget.run()
    (error,) = notes.messages("error")
    assert "the first (black) must be below the second" in error and widget._run is None
    assert "blobs instances [2]" not in [layer.name for layer in viewer.layers]


def test_percentiles_per_frame_reach_the_run(viewer, widget, wait_done, fake_net, notes):
    """'per frame' beside the percentiles: a movie whose second frame bleached to a tenth keeps
    that frame's discs (over the whole movie they are lost), and the layers record the choice."""
    image, _ = disc_scene([(16, 16, 6), (44, 40, 7)])
    movie = viewer.add_image(np.stack([image, image // 10]), name="movie")
    widget.image.value = movie
    widget.axes.value = "TYX"
    widget.min_size.value = 0
    assert widget.normalize_per.value == "stack" and widget.normalize_per.tooltip
    widget.run()
    wait_done(widget)
    sem, inst = outputs(viewer, "movie")
    assert sem.data[0].any() and not sem.data[1].any()
    assert inst.metadata["normalize_per"] == "stack"
    widget.normalize_per.value = "frame"
    widget.run()
    wait_done(widget)
    sem, inst = outputs(viewer, "movie")  # untouched: replaced in place
    np.testing.assert_array_equal(sem.data[1] > 0, sem.data[0] > 0)
    assert sem.data[1].any() and inst.metadata["normalize_per"] == "frame"
    assert inst.metadata["normalize_per_axes"] == "T" and not notes.messages("error")


def test_session_models_appear_and_run(viewer, widget, wait_done, tuned_model, make_blobs):
    model = load_model(tuned_model)
    register_session_model(" trained here ", model)  # stripped, on the way in as on the way out
    try:
        assert "session:trained here" in widget.model.choices
        widget.model.value = "session:trained here"
        assert widget.min_size.value == 25
        viewer.add_image(make_blobs((40, 48)), name="img")
        widget.run()
        wait_done(widget)
        assert viewer.layers["img instances"].metadata["model"] == "tuned"
        # Registered again under the chosen name: the new model's tuned values are taken.
        widget.min_size.value = 3
        again = load_model(tuned_model)
        again.config.postprocess["min_size"] = 40
        register_session_model("trained here", again)
        assert widget.model.value == "session:trained here" and widget.min_size.value == 40
        # Another model registered: the options stay as the user left them.
        widget.min_size.value = 5
        register_session_model("another", model)
        assert widget.min_size.value == 5
    finally:
        unregister_session_model(" trained here ")
        unregister_session_model("another")
    assert "session:trained here" not in widget.model.choices


def test_models_saved_in_earlier_sessions_are_offered(viewer, tiny_model, tuned_model, notes, monkeypatch,
                                                     make_blobs, wait_done):
    """Models the Train widget saved in ~/.napari-unet/models in an earlier napari session are
    listed as '<name> (saved)', the latest first, in both widgets, and loaded only when chosen;
    a folder that holds no readable model is left out without a word."""
    import os

    from napari_unet._napari import model_choices
    from napari_unet._napari.train_widget import TrainWidget

    saved = model_choices.default_models_dir()
    for name, source, when in (("older", tuned_model, 1_000_000), ("newer", tiny_model, 2_000_000)):
        shutil.copytree(source, saved / name)
        os.utime(saved / name / "config.json", (when, when))
    (saved / "broken").mkdir()
    (saved / "broken" / "config.json").write_text("{not json")
    (saved / "broken" / "weights.safetensors").write_bytes(b"")
    shutil.copytree(tiny_model, saved / "future")
    config = json.loads((saved / "future" / "config.json").read_text())
    (saved / "future" / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    shutil.copytree(tiny_model, saved / "no-weights")
    (saved / "no-weights" / "weights.safetensors").unlink()
    (saved / "notes.txt").write_text("not a model")
    loaded = []
    real = model_choices.load_model
    monkeypatch.setattr(model_choices, "load_model", lambda path: loaded.append(path) or real(path))

    segment, trainer = SegmentWidget(viewer), TrainWidget(viewer)
    newer, older = (f"file:{(saved / name).resolve()}" for name in ("newer", "older"))
    for box in (segment.model, trainer.start_model):
        labels = [box.native.itemText(i) for i in range(box.native.count())]
        assert [t for t in labels if t.endswith("(saved)")] == ["newer (saved)", "older (saved)"]
        assert newer in box.choices and older in box.choices
    assert segment.model.value == segment._catalog.default_key()  # the bundled default stays chosen
    assert loaded == [] and not notes.messages("error")  # listed from their configs only
    segment.model.value = older
    assert loaded == [str((saved / "older").resolve())]
    assert segment.min_size.value == 25  # the saved model's tuned values, as for any model chosen
    viewer.add_image(make_blobs((40, 48)), name="img")
    segment.device.value = "cpu"
    segment.run()
    wait_done(segment)
    assert viewer.layers["img instances"].metadata["model"] == "tuned"
    trainer.start_model.value = newer
    assert trainer._options()["init"].name == "tiny"
    # The folder chosen here opened with Browse… in the other widget: still listed, still chosen.
    assert trainer.add_model(str(saved / "older" / "config.json"))
    assert segment.model.value == older and older in trainer.start_model.choices
    assert not notes.messages("error")


def test_auto_scale_run_records_its_scale(viewer, widget, wait_done, auto_model, helpers, fake_net):
    """Discs of about 13 px, under the model's 50 px reference: segmented again at scale 2."""
    assert widget.add_model(str(auto_model)) and widget.auto_scale.value
    image = sum(helpers.disc((40, 48), (10 + 20 * (i // 3), 8 + 14 * (i % 3)), 2) for i in range(6))
    viewer.add_image(image.astype(np.float32), name="img")
    widget.run()
    wait_done(widget)
    assert any(b[-2:] == (80, 96) for b in fake_net), "the second pass saw the image at 2x"
    meta = viewer.layers["img instances"].metadata
    assert meta["model"] == "auto" and meta["scale_mode"] == "auto" and meta["scale"] == 2.0
    assert viewer.layers["img instances"].data.shape == (40, 48)


def test_widget_without_a_bundled_model_says_what_to_do(make_napari_viewer, monkeypatch, notes):
    monkeypatch.setattr("napari_unet._napari.model_choices.bundled_models", dict)
    viewer = make_napari_viewer()
    wdg = SegmentWidget(viewer)
    viewer.add_image(np.zeros((16, 16), np.float32))
    assert wdg.model.choices == ()
    assert "Browse" in wdg.status.value
    wdg.run()
    assert not wdg.running
    (error,) = notes.messages("error")
    assert "Browse" in error


def test_renaming_the_chosen_image_keeps_it_chosen(viewer, widget, make_blobs):
    """magicgui matches choices by name: a renamed image must not hand the widget another layer."""
    viewer.add_image(make_blobs((40, 48)), name="first")
    movie = viewer.add_image(make_blobs((3, 40, 48)), name="movie")
    widget.image.value = movie
    widget.axes.value = "TYX"
    movie.name = "movie renamed"
    assert widget.image.value is movie
    assert widget.axes.value == "TYX"  # the same image: its axes choice stays
    viewer.layers.remove(movie)  # a removed image is still replaced by another one
    assert widget.image.value is viewer.layers["first"] and widget.axes.value is None


def test_a_single_channel_last_layer_is_segmented_as_one_image(viewer, widget, wait_done, make_blobs):
    """An HxWx1 layer (how a one-channel TIFF opens) is segmented as one 2D image, as the engine reads
    such an array, instead of failing on planes one pixel wide; its outputs keep the channel axis (one
    plane) so that napari lines their Y and X up with the image's."""
    blobs = make_blobs((40, 48))
    img = viewer.add_image(blobs[..., None], name="single", scale=(0.5, 0.25, 1.0))
    widget.image.value = img
    widget.run()
    wait_done(widget)
    sem, inst = outputs(viewer, "single")
    assert inst.data.shape == sem.data.shape == (40, 48, 1)
    np.testing.assert_allclose(inst.scale, (0.5, 0.25, 1.0))
    assert inst.metadata["axes"] == "YXC" and inst.data.max() > 0


def test_outputs_of_a_channel_axis_after_others_line_up_with_the_image(viewer, widget, wait_done, fake_net,
                                                                        notes, monkeypatch):
    """napari lines a layer with fewer dimensions up with the last dimensions of the others: outputs
    that dropped a ZCYX image's channel axis had their Z on the image's channel slider. They keep a
    one-plane channel axis that spans every channel, so each nucleus shows at its own Z whatever
    channel is viewed; Update instances and Measure objects work on them."""
    centres = [(12, 12), (30, 30), (12, 40)]  # one disc per plane, each plane's elsewhere
    planes = [disc_scene([(cy, cx, 6)], shape=(48, 56))[0] for cy, cx in centres]
    data = np.stack([np.stack([p, np.zeros_like(p)]) for p in planes]).astype(np.float32)
    img = viewer.add_image(data, name="hyper", scale=(2.0, 1.0, 0.5, 0.5), translate=(1.0, 0.0, 3.0, -2.0),
                           units=("um", "pixel", "um", "um"))
    widget.image.value = img
    widget.axes.value = "ZCYX"
    widget.channel.value = 0
    widget.min_size.value = 0
    widget.run()
    wait_done(widget)

    def check(layer):
        for z, (cy, cx) in enumerate(centres):
            for c in range(2):
                index = tuple(np.round(layer.world_to_data(img.data_to_world((z, c, cy, cx)))).astype(int))
                assert index == (z, 0, cy, cx), (layer.name, z, c, index)
                assert layer.data[index] > 0

    sem, inst = outputs(viewer, "hyper")
    for layer in (sem, inst):
        check(layer)
        assert layer.data.shape == (3, 1, 48, 56)
    widget.run()  # untouched: replaced in place, not taken for the user's work
    wait_done(widget)
    assert outputs(viewer, "hyper") == (sem, inst) and len(viewer.layers) == 3
    sem.data[0, 0, 40:44, 40:44] = 1  # a nucleus painted into the first plane
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    check(inst)
    assert inst.data[0, 0, 42, 42] > 0 and inst.data[0, 0, 42, 42] != inst.data[0, 0, 12, 12]
    monkeypatch.setattr(SegmentWidget, "_ask_table_path", lambda self, name: None)
    viewer.layers.selection.active = inst
    widget.measure()
    wait_done(widget)
    assert not notes.messages("error")
    assert len(inst.features) == 4 and "area_um3" in inst.features  # 3 discs and the painted one, in µm³
    np.testing.assert_allclose(inst.features["area_um3"] / inst.features["area"], 2.0 * 0.5 * 0.5)


def test_counts_of_one_read_in_the_singular(viewer, widget, wait_done, fake_net, notes):
    """One nucleus: '1 object in ...', '1 object after the update ...', '1 object measured ...';
    one nucleus over time: '1 track in ...'."""
    one = viewer.add_image(disc_scene([(32, 32, 8)])[0], name="one")
    widget.image.value = one
    widget.min_size.value = 0
    widget.run()
    wait_done(widget)
    assert widget.status.value.startswith("1 object in one ("), widget.status.value
    sem, inst = outputs(viewer, "one")
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert widget.status.value.startswith("1 object after the update of one"), widget.status.value
    viewer.layers.selection.active = inst
    widget.measure()
    wait_done(widget)
    assert widget.status.value.startswith("1 object measured in one instances"), widget.status.value
    movie = viewer.add_image(np.stack([disc_scene([(32, 30 + t, 8)])[0] for t in range(3)]), name="movie")
    widget.image.value = movie
    widget.axes.value = "TYX"
    widget.link_time.value = True
    widget.run()
    wait_done(widget)
    viewer.layers.selection.active = viewer.layers["movie instances"]
    widget.measure()
    wait_done(widget)
    assert "1 track in 'movie tracks'." in widget.status.value, widget.status.value
    assert not notes.messages("error")


def test_a_job_is_stopped_quietly_when_its_workers_signals_are_gone(qtbot):
    """At interpreter exit Qt may delete a worker's signals before the widget stops its job:
    stopping it must not raise (it printed a RuntimeError traceback), and the job's clean-up runs."""
    from napari.qt.threading import create_worker
    from qtpy import API_NAME

    from napari_unet._napari.engine_widget import Run, _Slot, _stop

    sip = __import__("PySide6.shiboken6" if API_NAME == "PySide6" else f"{API_NAME}.sip", fromlist=["x"])

    def job():
        yield 1

    worker = create_worker(job, _start_thread=False)
    orphaned = []
    slot = _Slot()
    slot.run = Run(worker=worker, on_orphaned=lambda: orphaned.append(1))
    sip.delete(worker.signals)
    _stop(slot)
    assert slot.run is None
    assert orphaned == [1]
