"""Re-runs never overwrite edited outputs; "Update instances" relabels an edited mask."""

from __future__ import annotations

import numpy as np
import pytest
from scenes import DISCS, disc_scene, moving_nuclei, random_edit, relabel_every_block

from napari_unet._napari import jobs
from napari_unet._napari.outputs import fingerprint
from napari_unet.tracking import join_tracks, link_over_time

pytestmark = pytest.mark.gui


@pytest.fixture
def segmented(viewer, widget, wait_done, make_blobs):
    """The widget after one run on a 2D image called "img"."""
    img = viewer.add_image(make_blobs((48, 64)), name="img", scale=(0.5, 0.5))
    widget.image.value = img
    widget.run()
    wait_done(widget)
    return img


def names(viewer):
    return [layer.name for layer in viewer.layers]


def test_rerun_replaces_untouched_outputs_and_keeps_painted_ones(viewer, widget, wait_done,
                                                                 segmented, notes):
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    # Untouched: updated in place.
    widget.threshold.value = 0.9
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances"]
    assert viewer.layers["img semantic"] is sem and viewer.layers["img instances"] is inst
    assert sem.metadata["threshold"] == pytest.approx(0.9)
    assert inst.metadata["threshold"] == pytest.approx(0.9)
    # Painted with the brush: kept; the new mask goes to a new layer.
    sem.visible = True  # shown to be corrected (napari 0.7 cannot paint a hidden Labels layer)
    sem.brush_size = 5
    sem.paint((10, 10), 2)
    painted = sem.data.copy()
    widget.run()
    wait_done(widget)
    # Both outputs go to new layers: the painted mask keeps the instances it came with.
    assert names(viewer) == ["img", "img semantic", "img instances", "img semantic [2]",
                             "img instances [2]"]
    np.testing.assert_array_equal(sem.data, painted)
    assert viewer.layers["img instances"] is inst
    assert any("'img semantic' was kept" in m for m in notes.messages("info"))
    new = viewer.layers["img semantic [2]"]
    assert new.data.shape == (48, 64) and not np.array_equal(new.data, painted)
    np.testing.assert_allclose(new.scale, (0.5, 0.5))
    # Another run replaces the fresh pair, never the painted layer.
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances", "img semantic [2]",
                             "img instances [2]"]
    np.testing.assert_array_equal(sem.data, painted)


def test_a_renamed_output_is_kept_as_the_users(viewer, widget, wait_done, segmented, notes):
    """A result the user renamed was named to keep it: the next run leaves the pair alone, goes to
    a new pair and says why, even after Update instances refreshed the renamed layer; Update
    instances and Measure objects go on working on the renamed pair when it is selected."""
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    inst.name = "my cells"
    viewer.layers.selection.active = sem
    widget.min_size.value = 3
    widget.update_instances()  # the mask is unedited: the renamed instances are updated in place
    wait_done(widget)
    assert "'img semantic' -> 'my cells'" in widget.status.value
    assert viewer.layers["my cells"] is inst and inst.metadata["min_size"] == 3
    sem.name = "my mask"
    kept = sem.data.copy(), inst.data.copy()
    widget.threshold.value = 0.9
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "my mask", "my cells", "img semantic", "img instances"]
    assert viewer.layers["my mask"] is sem and viewer.layers["my cells"] is inst
    np.testing.assert_array_equal(sem.data, kept[0])
    np.testing.assert_array_equal(inst.data, kept[1])
    assert sem.metadata["threshold"] == pytest.approx(0.5)
    assert viewer.layers["img semantic"].metadata["threshold"] == pytest.approx(0.9)
    why = ("'my mask' and 'my cells' were renamed by you, so they are kept as yours: the new results "
           "are in 'img semantic' and 'img instances'.")
    assert why in notes.messages("info")
    assert widget.status.value.endswith(why)
    # The renamed pair, selected, is the one updated (in place) and measured.
    _paint_touching_discs(sem)
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert "'my mask' -> 'my cells'" in widget.status.value
    assert viewer.layers["my cells"] is inst
    np.testing.assert_array_equal(inst.data > 0, sem.data > 0)  # the painted discs, nothing else
    viewer.layers.selection.active = inst
    widget.measure()
    wait_done(widget)
    n = len(np.unique(inst.data)) - 1
    assert widget.status.value.startswith(f"{n} object{'s' if n != 1 else ''} measured in my cells")
    assert names(viewer) == ["img", "my mask", "my cells", "img semantic", "img instances"]
    assert not notes.messages("error")


def test_replacing_outputs_in_place_sets_only_the_placement_that_changed(viewer, widget, wait_done,
                                                                       segmented):
    """Each placement setter makes napari render a shown layer's whole slice again on the GUI
    thread (about 0.1 s each for a 4096 x 4096 result): a re-run leaves an unchanged placement alone."""
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    emitted = []
    for layer in (sem, inst):
        for name in ("scale", "translate", "units", "axis_labels", "rotate", "shear", "affine"):
            getattr(layer.events, name).connect(lambda _e, name=name: emitted.append(name))
    widget.threshold.value = 0.9
    widget.run()
    wait_done(widget)
    assert viewer.layers["img semantic"] is sem and viewer.layers["img instances"] is inst
    assert inst.metadata["threshold"] == pytest.approx(0.9)
    assert emitted == []
    # The source moved: the outputs replaced in place follow it.
    segmented.scale, segmented.translate = (0.25, 0.5), (3.0, 4.0)
    segmented.rotate, segmented.shear = 30, [0.2]
    segmented.units = ("um", "um")
    widget.run()
    wait_done(widget)
    assert viewer.layers["img semantic"] is sem and viewer.layers["img instances"] is inst
    for layer in (sem, inst):
        np.testing.assert_allclose(layer.scale, (0.25, 0.5))
        np.testing.assert_allclose(layer.translate, (3.0, 4.0))
        np.testing.assert_allclose(layer.rotate, segmented.rotate)
        np.testing.assert_allclose(layer.shear, segmented.shear)
        np.testing.assert_allclose(layer.affine.affine_matrix, segmented.affine.affine_matrix)
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]


def test_any_change_of_the_data_counts_as_an_edit(viewer, widget, wait_done, segmented):
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    inst.data[:4, :4] = 77  # written straight into the array: no napari event
    sem.data = np.zeros_like(sem.data)  # new data assigned
    widget.run()
    wait_done(widget)
    assert (inst.data[:4, :4] == 77).all() and not sem.data.any()
    assert names(viewer) == ["img", "img semantic", "img instances",
                             "img semantic [2]", "img instances [2]"]
    # An output the user deleted is simply made again.
    viewer.layers.remove("img semantic [2]")
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances",
                             "img instances [2]", "img semantic [2]"]


def _paint_touching_discs(sem) -> None:
    """Erase the mask, then paint two overlapping discs (one blob with a waist).

    The mask is shown first, as a user does: napari 0.7 cannot paint a hidden Labels layer
    (the semantic output starts hidden)."""
    sem.visible = True
    sem.data = np.zeros_like(sem.data)
    sem.brush_size = 15
    sem.paint((24, 22), 1)
    sem.paint((24, 34), 1)


def test_update_instances_after_painting(viewer, widget, wait_done, segmented, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("Update instances must not run the network")

    monkeypatch.setattr(jobs, "iter_segment", no_network)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    _paint_touching_discs(sem)
    widget.min_size.value = 5
    for method, expected in (("components", 1), ("watershed", 2)):
        widget.instance_method.value = method
        widget.update_button.clicked()
        wait_done(widget)
        assert viewer.layers["img instances"] is inst  # untouched instances: updated in place
        assert inst.data.max() == expected, method
        np.testing.assert_array_equal(inst.data > 0, sem.data > 0)
        assert inst.metadata["instance_method"] == method
        assert inst.metadata["updated_from"] == "img semantic"
    assert names(viewer) == ["img", "img semantic", "img instances"]


def test_update_of_an_unedited_mask_holds_no_user_work(viewer, widget, wait_done, segmented):
    """Instances made again from the network's own mask (another method, another minimum size)
    are the options' work, not the user's: a new run replaces them in place, no [2] pair.
    Made from a painted mask, they are kept."""
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    widget.instance_method.value = "components"
    widget.min_size.value += 3
    widget.update_instances()
    wait_done(widget)
    assert inst.metadata["updated_from"] == "img semantic"
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances"]
    assert "updated_from" not in viewer.layers["img instances"].metadata
    _paint_touching_discs(sem)
    widget.update_instances()
    wait_done(widget)
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances", "img semantic [2]", "img instances [2]"]


def test_update_instances_counts_and_copies_in_the_worker(viewer, widget, wait_done, segmented, on_gui_thread):
    """The GUI thread neither counts nor copies the new labels: both happen in the worker."""
    on_main = on_gui_thread(jobs, "count_objects")
    sem = viewer.layers["img semantic"]
    _paint_touching_discs(sem)
    widget.min_size.value = 5
    widget.instance_method.value = "watershed"
    widget.update_instances()
    wait_done(widget)
    assert on_main == [False]
    assert widget.status.value.startswith("2 objects after the update")
    kept = widget._tracker.record(viewer.layers["img"]).instances
    np.testing.assert_array_equal(kept, viewer.layers["img instances"].data)
    assert not np.shares_memory(kept, viewer.layers["img instances"].data)  # painting cannot change it


def test_update_instances_keeps_edited_instances(viewer, widget, wait_done, segmented, notes):
    """Edited by hand, then updated with other options: the edited layer stays, and a note says
    that the new split (in a new layer) lacks its edits."""
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    inst.brush_size = 3
    inst.paint((5, 5), 9)
    edited = inst.data.copy()
    _paint_touching_discs(sem)
    widget.instance_method.value = "watershed"
    widget.update_instances()
    wait_done(widget)
    np.testing.assert_array_equal(inst.data, edited)
    assert viewer.layers["img instances [2]"].data.max() == 2
    assert any("'img instances' keeps your edits" in m for m in notes.messages("info"))


def test_update_instances_of_a_time_series_labels_each_frame(viewer, widget, wait_done, notes,
                                                             make_blobs):
    img = viewer.add_image(make_blobs((2, 40, 48)), name="movie")
    widget.image.value = img
    widget.update_instances()  # nothing to update from yet
    assert not widget.running
    (error,) = notes.messages("error")
    assert "run the segmentation first" in error
    widget.axes.value = "TYX"
    widget.run()
    wait_done(widget)
    sem, inst = viewer.layers["movie semantic"], viewer.layers["movie instances"]
    mask = np.zeros(sem.data.shape, np.uint8)
    mask[:, 5:15, 5:15] = 1  # one square in each frame
    sem.data = mask
    widget.instance_method.value = "components"
    widget.min_size.value += 1  # other options: every object is labelled again
    widget.update_instances()
    wait_done(widget)
    assert inst.data.shape == (2, 40, 48)
    assert inst.data[0].max() == inst.data[1].max() == 1  # ids restart per frame
    # The last run's mask deleted: said plainly, not "run the segmentation first".
    notes.items.clear()
    viewer.layers.remove(sem)
    widget.update_instances()
    assert not widget.running
    (error,) = notes.messages("error")
    assert "The semantic masks of movie were removed from the viewer" in error


def test_update_keeps_what_the_edit_left_alone_and_rerun_keeps_the_corrections(
        viewer, widget, wait_done, notes):
    from napari_unet._napari.sample_data import nuclei_sample

    (data, _, _), _ = nuclei_sample()
    img = viewer.add_image(data[:160, :160], name="cells")  # real nuclei, some touching
    widget.model.value = widget._catalog.default_key()  # the bundled model
    widget.image.value = img
    widget.run()
    wait_done(widget)
    sem, inst = viewer.layers["cells semantic"], viewer.layers["cells instances"]
    ran = inst.data.copy()
    assert ran.max() >= 10
    # No edit: the update changes nothing (the run's split survives).
    widget.update_instances()
    wait_done(widget)
    np.testing.assert_array_equal(inst.data, ran)
    # One nucleus erased: it is gone; every other keeps its id.
    gone = int(np.bincount(ran.ravel())[1:].argmax()) + 1
    sem.data = np.where(ran == gone, 0, sem.data).astype(sem.data.dtype)
    widget.update_instances()
    wait_done(widget)
    corrected = inst.data.copy()
    others = (ran > 0) & (ran != gone)
    assert not (corrected == gone).any() and np.array_equal(corrected[others], ran[others])
    # Run again: the corrected pair is kept whole, the new results go to a new pair.
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["cells", "cells semantic", "cells instances", "cells semantic [2]",
                             "cells instances [2]"]
    np.testing.assert_array_equal(inst.data, corrected)
    np.testing.assert_array_equal(viewer.layers["cells instances [2]"].data, ran)
    # Update instances now works on the new pair.
    widget.update_instances()
    wait_done(widget)
    assert viewer.layers["cells instances [2]"].metadata["updated_from"] == "cells semantic [2]"
    np.testing.assert_array_equal(inst.data, corrected)


def test_the_five_corrections_of_the_bundled_sample_in_napari(viewer, widget, wait_done):
    """The corrections a biologist makes to the bundled model's result on the bundled sample,
    with napari's own tools, then "Update instances": a nucleus cut in two joined by filling one
    fragment with the other's id on the instances, a false positive erased there, two nuclei
    made one cut apart on the mask, a missed one painted and an outline grown on it. The update
    takes the edits of the instances layer, and so goes into it, edits and all (no new layer)."""
    from pathlib import Path

    import tifffile
    from scipy import ndimage as ndi

    import napari_unet
    from napari_unet._napari.sample_data import nuclei_sample

    (data, _, _), _ = nuclei_sample()
    truth = tifffile.imread(Path(napari_unet.__file__).parent / "data" / "nuclei_labels.tif").astype(np.int32)
    img = viewer.add_image(data, name="nuclei")
    widget.model.value = widget._catalog.default_key()  # the bundled model
    widget.image.value = img
    widget.run()
    wait_done(widget)
    sem, inst = viewer.layers["nuclei semantic"], viewer.layers["nuclei instances"]
    sem.visible = True  # shown to be corrected (napari cannot paint a hidden Labels layer)
    ran, mask = inst.data.copy(), sem.data.copy()

    def covering(labels, region):
        ids, counts = np.unique(labels[region], return_counts=True)
        return [int(i) for i, n in zip(ids, counts) if i and n > 0.2 * region.sum()]

    objects = range(1, int(ran.max()) + 1)
    ((a, b),) = [covering(ran, truth == g) for g in range(1, truth.max() + 1) if len(covering(ran, truth == g)) == 2]
    (false,) = [p for p in objects if (ran == p).any() and not truth[ran == p].any()]
    merged, (g1, g2) = next((p, covering(truth, ran == p)) for p in objects if len(covering(truth, ran == p)) == 2)
    inside = np.zeros(ran.shape, bool)
    inside[10:-10, 10:-10] = True
    alone = next(p for p in objects if (ran == p).sum() > 100 and p not in (a, b, false, merged) and not
                 (ndi.binary_dilation(ran == p, iterations=6) & ((ran != p) & (mask > 0) | ~inside)).any())
    far = ndi.distance_transform_edt(mask == 0)
    spot = np.unravel_index(far.argmax(), far.shape)
    # On the instances: fragment b filled with a's id; the false positive filled with 0.
    inst.fill(tuple(np.argwhere(ran == b)[0]), a)
    inst.fill(tuple(np.argwhere(ran == false)[0]), 0)
    hand = inst.data.copy()
    # On the mask: a line erased between the two nuclei, one painted, an outline grown.
    sem.brush_size = 1
    for y, x in np.argwhere(ndi.binary_dilation(truth == g1) & ndi.binary_dilation(truth == g2) & (ran == merged)):
        sem.paint((y, x), 0)
    sem.brush_size = 11
    sem.paint(spot, 1)
    ys, xs = np.nonzero(ran == alone)
    sem.brush_size = 3
    sem.paint((ys.min() - 1, int(xs[ys == ys.min()].mean())), 1)  # just above its top
    grown = (sem.data > 0) & (mask == 0) & (ndi.distance_transform_edt(ran != alone) <= 3)
    assert grown.any()
    widget.update_button.clicked()
    wait_done(widget)
    assert viewer.layers["nuclei instances"] is inst
    out = inst.data.copy()
    np.testing.assert_array_equal(out[hand != ran], hand[hand != ran])  # the edits on it, as made
    assert set(np.unique(out[(ran == a) | (ran == b)])) == {a}  # 1. joined, and not split again
    assert "with your edits of 'nuclei instances'" in widget.status.value
    assert not out[ran == false].any() and not sem.data[ran == false].any()  # 3. gone, from the mask too
    pieces = [set(np.unique(out[(ran == merged) & (truth == g)])) - {0} for g in (g1, g2)]
    assert len(pieces[0] | pieces[1]) == 2 and merged in pieces[0] | pieces[1]  # 2. two, one keeps its id
    assert pieces[0] != pieces[1]
    assert out[spot] > ran.max()  # 4. a new id
    assert np.all(out[(ran == alone) | grown] == alone)  # 5. the same id, grown
    untouched = (ran > 0) & ~np.isin(ran, [a, b, false, merged, alone])
    np.testing.assert_array_equal(out[untouched], ran[untouched])
    # Another update changes nothing: the false positive stays gone, the join stays.
    widget.update_button.clicked()
    wait_done(widget)
    np.testing.assert_array_equal(inst.data, out)
    assert names(viewer) == ["nuclei", "nuclei semantic", "nuclei instances"]


def _paint_a_nucleus(inst) -> np.ndarray:
    """Paint a new id, with a brush 5 wide, where the instances are farthest from any object and
    the edge (a nucleus the network missed); the pixels it now covers."""
    from scipy import ndimage as ndi

    far = ndi.distance_transform_edt(np.pad(inst.data == 0, 1))[1:-1, 1:-1]
    assert far.max() > 4  # room for the disc, away from every object
    new_id = int(inst.data.max()) + 1
    inst.brush_size = 5
    inst.paint(np.unravel_index(far.argmax(), far.shape), new_id)
    painted = inst.data == new_id
    assert painted.sum() > 10
    return painted


def _segment_discs(viewer, widget, wait_done):
    """Three discs, segmented by the fake network (pixels brighter than the threshold): their
    instances, with room round them to paint missed nuclei. The image layer "img"."""
    image, _ = disc_scene(DISCS[0])
    img = viewer.add_image(image, name="img")
    widget.image.value = img
    widget.run()
    wait_done(widget)
    assert viewer.layers["img instances"].data.max() == 3
    return img


def test_rounds_of_corrections_on_the_instances_stay_in_one_pair(viewer, widget, wait_done, fake_net, notes):
    """Paint on the instances, Update, paint again, Update: each update took all the edits of the
    layer, so it writes into that layer (no '[2]', then '[3]' at each round), which holds both
    rounds' edits, the mask following them. Ctrl+Z then undoes the last stroke, not the update's
    work or the first round."""
    segmented = _segment_discs(viewer, widget, wait_done)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    first = _paint_a_nucleus(inst)
    first_id = int(inst.data[first][0])
    widget.update_instances()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances"]
    assert viewer.layers["img instances"] is inst
    assert "'img semantic' -> 'img instances', with your edits of 'img instances'" in widget.status.value
    second = _paint_a_nucleus(inst)
    second_id = int(inst.data[second][0])
    widget.update_instances()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances"]
    assert viewer.layers["img instances"] is inst
    assert (inst.data[first] == first_id).all() and (inst.data[second] == second_id).all()
    assert (sem.data[first | second] > 0).all()  # the mask follows both
    np.testing.assert_array_equal(widget._tracker.record(segmented).instances, inst.data)
    assert not notes.messages("info") and not notes.messages("error")
    inst.undo()  # the second stroke
    assert not (inst.data[second] == second_id).any() and (inst.data[first] == first_id).all()


def test_instances_edited_where_the_mask_changed_too_are_kept(viewer, widget, wait_done, fake_net, notes):
    """A nucleus painted on the instances against another, and the mask changed in the same
    region: that region is split again, the painted id replaced (joined to its neighbour).
    The update lacks the edit as made, so it does not write into the user's layer: that stays
    as they left it, the update goes to '[2]', and a note says why."""
    _segment_discs(viewer, widget, wait_done)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    first = int(inst.data[16, 16])
    assert first
    painted_id = int(inst.data.max()) + 1
    inst.brush_size = 5
    inst.paint((16, 24), painted_id)  # against the first disc (x up to 22)
    painted = inst.data == painted_id
    assert painted.sum() > 10 and (inst.data[16, 16:27] > 0).all()
    sem.brush_size = 3
    sem.paint((16, 8), 1)  # the mask grown on the other side of that disc
    left = inst.data.copy()
    widget.update_instances()
    wait_done(widget)
    np.testing.assert_array_equal(inst.data, left)  # the user's layer, as they left it
    assert names(viewer) == ["img", "img semantic", "img instances", "img instances [2]"]
    new = viewer.layers["img instances [2]"].data
    assert (new[painted] == first).all()  # split again: joined to the disc
    assert (sem.data[painted] > 0).all()  # the mask took the edit
    (note,) = notes.messages("info")
    assert note == ("'img instances' keeps your edits as you made them: some lie where you also changed "
                    "'img semantic', which was split again; 'img instances [2]' holds the update.")
    assert not notes.messages("error")


def _gated_update_job(monkeypatch):
    """Make "Update instances"' job wait for the event ``gate`` before it starts (before it
    copies any layer), and set ``done`` when it has run. Returns ``(gate, done)``."""
    import threading

    from napari_unet._napari import widget as widget_module

    gate, done, real = threading.Event(), threading.Event(), widget_module.relabel_job

    def job(*args, **kwargs):
        try:
            assert gate.wait(30)
            return real(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(widget_module, "relabel_job", job)
    return gate, done


def test_instances_edited_while_the_update_runs_are_kept(viewer, widget, wait_done, fake_net, notes,
                                                         monkeypatch):
    """A stroke on the instances after the update copied them is not in its labels: the layer is
    kept as the user left it, the update goes to a new layer, with the edits made before the copy,
    and a note says why."""
    gate, done = _gated_update_job(monkeypatch)
    gate.set()  # waited for below: the job has run (a worker not yet started is not running either)
    _segment_discs(viewer, widget, wait_done)
    inst = viewer.layers["img instances"]
    before = _paint_a_nucleus(inst)
    widget.update_instances()
    assert done.wait(30)  # no Qt events handled here: the result stays queued
    assert widget.running
    late = _paint_a_nucleus(inst)
    left = inst.data.copy()
    wait_done(widget)
    np.testing.assert_array_equal(inst.data, left)
    assert names(viewer) == ["img", "img semantic", "img instances", "img instances [2]"]
    new = viewer.layers["img instances [2]"].data
    assert (new[before] > 0).all() and not new[late].any()
    (note,) = notes.messages("info")
    assert "'img instances' changed while the update ran, so it is kept as you left it" in note
    assert "'img instances [2]' holds the update" in note


def test_the_note_of_instances_edited_during_an_update_names_the_edits_it_took(
        viewer, widget, wait_done, fake_net, notes, monkeypatch):
    """The worker copies the instances a moment after the press: a stroke made in between is in
    the update, so the note must not say it holds only the edits made before the press."""
    gate, done = _gated_update_job(monkeypatch)  # the worker starts, and waits before its copy
    _segment_discs(viewer, widget, wait_done)
    inst = viewer.layers["img instances"]
    before = _paint_a_nucleus(inst)
    widget.update_instances()
    after_press = _paint_a_nucleus(inst)
    gate.set()
    assert done.wait(30)  # no Qt events handled here: the result stays queued
    late = _paint_a_nucleus(inst)
    wait_done(widget)
    new = viewer.layers["img instances [2]"].data
    assert (new[before] > 0).all() and (new[after_press] > 0).all() and not new[late].any()
    (note,) = notes.messages("info")
    assert "before you pressed" not in note
    assert ("'img instances [2]' holds the update, with the edits 'img instances' had when the update "
            "started; those made since are only in 'img instances'") in note


def _hold_the_update(monkeypatch, when: str):
    """Hold "Update instances" ``when`` its layer is to be removed: "running" (its job waits
    for ``release()``) or "queued" (``release()`` waits until the job has run, no Qt events
    handled, so its result waits in the event queue). Returns ``release``."""
    gate, done = _gated_update_job(monkeypatch)
    if when == "queued":
        gate.set()
        return lambda: done.wait(30)
    return gate.set


@pytest.mark.parametrize("when", ["running", "queued"])
def test_the_mask_removed_while_the_update_runs_stops_it(viewer, widget, wait_done, fake_net, notes,
                                                         monkeypatch, when):
    """The semantic mask removed while the instances are updated from it: the update went on,
    replaced the instances with the split of a mask no longer in the viewer, and the status
    read '4 objects after the update of img ('img semantic' -> 'img instances', ...)'. It stops,
    as when the image is removed: the instances stay as the user left them, edits and all."""
    _segment_discs(viewer, widget, wait_done)
    inst = viewer.layers["img instances"]
    _paint_a_nucleus(inst)
    edited = inst.data.copy()
    release = _hold_the_update(monkeypatch, when)
    widget.update_instances()
    release()
    viewer.layers.remove("img semantic")
    wait_done(widget)
    assert names(viewer) == ["img", "img instances"] and viewer.layers["img instances"] is inst
    np.testing.assert_array_equal(inst.data, edited)
    assert "updated_from" not in inst.metadata
    assert widget.status.value == "Stopped: 'img semantic' was removed."
    assert notes.messages("info") == [(
        "'img semantic' was removed from the viewer: its instance update was stopped and nothing was "
        "added; 'img instances' is left as it was. To update instances again, run the segmentation, "
        "correct the new mask, then press 'Update instances'.")]
    assert not notes.messages("error") and not notes.messages("warning")


@pytest.mark.parametrize("when", ["running", "queued"])
def test_the_instances_removed_while_the_update_runs_stop_it(viewer, widget, wait_done, fake_net, notes,
                                                             monkeypatch, when):
    """The instances layer removed while it is updated: the update put it back as a new
    'img instances', with the edits of the layer removed, and wrote those edits into the mask,
    saying nothing of the removal. It stops, as when the image is removed: nothing is added, the
    mask is left as it was, and the note says how to make instances again."""
    _segment_discs(viewer, widget, wait_done)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    mask = sem.data.copy()
    _paint_a_nucleus(inst)  # the update would add it to the mask
    release = _hold_the_update(monkeypatch, when)
    widget.update_instances()
    release()
    viewer.layers.remove(inst)
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic"]
    np.testing.assert_array_equal(sem.data, mask)
    assert widget.status.value == "Stopped: 'img instances' was removed."
    assert notes.messages("info") == [(
        "'img instances' was removed from the viewer: its instance update was stopped and nothing was "
        "added. Press 'Update instances' again to make new instances from 'img semantic'.")]
    assert not notes.messages("error") and not notes.messages("warning")
    # Which makes them (the job is no longer held).
    widget.update_instances()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances"]
    assert viewer.layers["img instances"].data.max() == 3


def test_the_pair_removed_at_once_while_it_is_updated(viewer, widget, wait_done, fake_net, notes, monkeypatch):
    """The mask and the instances selected and deleted together while they are updated: each
    removal is noted, and neither note tells to update from the mask deleted with them (the
    note of the instances, removed first, read 'Press 'Update instances' again to make new
    instances from 'img semantic'', the mask going a moment later)."""
    _segment_discs(viewer, widget, wait_done)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    release = _hold_the_update(monkeypatch, "running")
    widget.update_instances()
    viewer.layers.selection = {sem, inst}
    viewer.layers.remove_selected()
    release()
    wait_done(widget)
    assert names(viewer) == ["img"]
    assert sorted(notes.messages("info")) == [
        f"'img {role}' was removed from the viewer: its instance update was stopped and nothing was added."
        for role in ("instances", "semantic")]
    assert widget.status.value.startswith("Stopped: ")
    assert not notes.messages("error") and not notes.messages("warning")


def test_fingerprint_sees_any_change():
    a = np.zeros((4, 5), np.int32)
    before = fingerprint(a)
    assert fingerprint(a.copy()) == before
    a[2, 3] = 1
    assert fingerprint(a) != before
    assert fingerprint(np.zeros((5, 4), np.int32)) != before  # shape counts
    assert fingerprint(np.zeros((4, 5), np.int64)) != before  # dtype counts
    assert fingerprint([1, 2]) is None


def test_fingerprint_of_big_arrays_hashes_chunks_in_order(monkeypatch):
    """Hashed in chunks on several threads: any change, and chunks in another order, still show."""
    from napari_unet._napari import outputs

    monkeypatch.setattr(outputs, "_CHUNK", 64)  # 16 int32 values a chunk
    a = np.arange(16 * 40, dtype=np.int32).reshape(40, 16)
    before = fingerprint(a)
    assert fingerprint(a.copy()) == before == fingerprint(np.asfortranarray(a))  # the values count
    for row in (0, 17, 39):
        b = a.copy()
        b[row, 5] += 1
        assert fingerprint(b) != before
    swapped = a.copy()
    swapped[[3, 4]] = swapped[[4, 3]]  # two whole chunks trade places
    assert fingerprint(swapped) != before


def test_relabel_job_labels_z_stacks_per_time_point_whatever_the_axis_order():
    """ZTYX: each time point's volume is labelled across Z, as the engine does (not T across Z)."""
    mask = np.zeros((2, 3, 12, 12), np.uint8)  # Z, T, Y, X
    mask[:, :, 2:6, 2:6] = 1  # one nucleus through both planes, at time points 0 and 2
    mask[:, 1] = 0
    order = [1, 0, 2, 3]  # T first, then the labelled Z, Y, X
    done = jobs.relabel_job(mask, {"method": "components", "min_size": 0, "ndim": 3}, order=order)
    labels = done.labels
    assert labels.shape == mask.shape
    for t in (0, 2):
        assert set(np.unique(labels[:, t])) == {0, 1}  # one object per time point, ids from 1
    assert done.count == 2  # one per time point that holds it
    assert np.array_equal(done.labels_copy, labels) and not np.shares_memory(done.labels_copy, labels)
    unordered = jobs.relabel_job(mask, {"method": "components", "min_size": 0, "ndim": 3})
    assert unordered.labels.max() == 2  # each Z plane labelled over T instead: two objects in it
    assert unordered.count == 4  # two in each of the Z planes


def test_new_results_are_hashed_in_the_worker_not_the_gui_thread(viewer, widget, wait_done, make_blobs,
                                                                 on_gui_thread):
    """Publishing a big stack must not freeze napari: the GUI thread hashes only earlier outputs."""
    from napari_unet._napari import outputs

    real = outputs.fingerprint
    threads = on_gui_thread(outputs, "fingerprint")
    img = viewer.add_image(make_blobs((48, 64)), name="img")
    widget.image.value = img
    widget.run()
    wait_done(widget)
    assert threads == [False, False]  # both outputs, in the worker
    threads.clear()
    widget.run()
    wait_done(widget)
    assert threads.count(True) == 2  # the two earlier outputs, checked for edits once each
    record = widget._tracker.record(img)
    for role, layer in (("semantic", viewer.layers["img semantic"]), ("instances", viewer.layers["img instances"])):
        assert record.outputs[role].digest == real(layer.data)
    # Update instances: its new labels and the mask it read are hashed in the worker; on the GUI
    # thread only the instances layer it may replace is checked for edits (not the semantic one).
    threads.clear()
    _paint_touching_discs(viewer.layers["img semantic"])
    widget.update_instances()
    wait_done(widget)
    assert sorted(threads) == [False, False, True]
    assert record.outputs["instances"].digest == real(viewer.layers["img instances"].data)


def test_jobs_give_napari_uint16_labels_where_the_ids_fit():
    """napari colours int32 labels on the GUI thread through a slow path (about 1 s to add a
    4096 x 4096 layer, 0.2 s as uint16): the jobs hand it uint16 ids, made in the worker, while
    they leave room (up to 32767) for the objects a user paints."""
    mask = np.zeros((20, 60), bool)
    mask[5:12, 2:9] = mask[5:12, 20:27] = True
    params = {"method": "components", "min_size": 0, "ndim": 2}
    done = jobs.relabel_job(mask, params)
    assert done.labels.dtype == done.labels_copy.dtype == np.uint16
    assert done.count == 2 and done.digest == fingerprint(done.labels)
    previous = np.where(mask, 40_000, 0).astype(np.int32)  # hand-numbered ids: kept as they are
    mask[15:18, 40:45] = True
    done = jobs.relabel_job(mask, params, previous=previous)
    assert done.labels.dtype == np.int32 and done.labels[16, 42] == 40_001
    assert jobs.display_labels(np.array([[-1, 2]], np.int32)).dtype == np.int32


def test_relabel_job_says_whether_the_labels_hold_the_hand_edits():
    """The worker checks that the new labels hold every hand edit as made (only then may the
    layer they were taken from be updated in place: ``edited_digest``), and says why not."""
    previous = np.zeros((2, 20, 60), np.int32)
    for k, x in enumerate((2, 14, 26), start=1):
        previous[:, 5:12, x:x + 7] = k  # three nuclei, linked ids 1-3 in both frames
    params = {"method": "components", "min_size": 0, "ndim": 2}
    edited = previous.copy()
    edited[1, 5:12, 45:52] = 9  # a missed nucleus painted in frame 1
    done = jobs.relabel_job(previous > 0, params, previous=previous, time_axis=0, edited=edited)
    assert done.edits_lost is None and done.edited_digest == fingerprint(edited)
    assert (done.labels[1, 5:12, 45:52] > 3).all()  # linked: an id of its own (a new track)
    # Painted against nucleus 3, the mask grown on its other side: joined to it, the painted id lost.
    edited = previous.copy()
    edited[1, 5:12, 33:37] = 9
    mask = previous > 0
    mask[1, 5:12, 24:26] = True
    done = jobs.relabel_job(mask, params, previous=previous, time_axis=0, edited=edited)
    assert (done.labels[1, 5:12, 24:37] == 3).all()
    assert done.edits_lost == "mask" and done.edited_digest is None and done.mask_synced is not None


def test_relabel_job_says_when_pixels_erased_by_hand_were_filled_again():
    """Pixels erased inside a nucleus on the instances are a hole the update fills again: the
    edit is lost, and the reason given is that, not a split or a join of the user's objects."""
    previous = np.zeros((20, 60), np.int32)
    previous[3:14, 2:13] = 1
    previous[3:14, 30:41] = 2
    edited = previous.copy()
    edited[7:10, 6:9] = 0  # a hole erased inside nucleus 1
    params = {"method": "components", "min_size": 0, "ndim": 2, "fill_holes": True}
    done = jobs.relabel_job(previous > 0, params, previous=previous, edited=edited)
    assert (done.labels[7:10, 6:9] == done.labels[5, 5]).all()  # filled again
    assert done.edits_lost == "filled" and done.edited_digest is None


def test_relabel_job_with_linking_keeps_the_ids_of_untouched_objects():
    previous = np.zeros((2, 20, 60), np.int32)
    for k, x in enumerate((2, 14, 26, 38, 50), start=1):
        previous[:, 5:12, x:x + 7] = k  # five nuclei, linked ids 1-5 in both frames
    mask = previous > 0
    mask[0, 5:12, 26:29] = False  # object 3 trimmed in frame 0
    params = {"method": "components", "min_size": 0, "ndim": 2}
    done = jobs.relabel_job(mask, params, previous=previous, time_axis=0)
    labels = done.labels
    assert done.count == 10  # five objects in each of the two frames
    for k, x in ((1, 2), (2, 14), (4, 38), (5, 50)):
        assert np.all(labels[:, 5:12, x:x + 7] == k)
    assert labels[0, 8, 30] == labels[1, 8, 30] == 3  # the trimmed object is linked back to its id


def _paint_nucleus_a_into_frame_1(previous: np.ndarray) -> np.ndarray:
    """Update instances' job on the linked series ``previous`` (T, 20, 40) after nucleus A
    (rows 5-11, columns 2-8) is painted into frame 1: the labels it gives."""
    mask = previous > 0
    mask[1, 5:12, 2:9] = True
    params = {"method": "components", "min_size": 0, "ndim": 2}
    return jobs.relabel_job(mask, params, previous=previous, time_axis=0).labels


def test_relabel_job_with_linking_joins_the_track_a_painted_nucleus_connects():
    """The network missed nucleus A in frame 1, so linking gave it ids 1 (frame 0) and 2 (frames 2-3).
    The user paints it into frame 1: it links back to 1, and the track after it goes on as 1.
    Nucleus B, untouched, keeps its id."""
    previous = np.zeros((4, 20, 40), np.int32)
    previous[0, 5:12, 2:9] = 1
    previous[2:, 5:12, 2:9] = 2
    previous[:, 5:12, 25:32] = 3
    labels = _paint_nucleus_a_into_frame_1(previous)
    assert labels[:, 8, 5].tolist() == [1, 1, 1, 1]
    assert labels[:, 8, 28].tolist() == [3, 3, 3, 3]


def test_relabel_job_with_linking_keeps_the_id_of_the_track_a_painted_nucleus_starts():
    """The network missed nucleus A in frames 0-1, so its track (id 2) starts at frame 2. The
    user paints it into frame 1: it joins that track, whose id stays 2 in frames 2-3."""
    previous = np.zeros((4, 20, 40), np.int32)
    previous[2:, 5:12, 2:9] = 2
    previous[:, 5:12, 25:32] = 1
    labels = _paint_nucleus_a_into_frame_1(previous)
    assert labels[:, 8, 5].tolist() == [0, 2, 2, 2]
    assert labels[:, 8, 28].tolist() == [1, 1, 1, 1]


def test_relabel_job_with_linking_gives_the_ids_of_relabelling_and_linking_every_frame():
    """Update instances on a linked series labels only the frames an edit changed (see
    relabel_edited), yet links and joins tracks as relabelling every frame does, id for id,
    through a chain of random edits; the nucleus the network missed in frame 3, painted
    back, joins the track before and after it."""
    mask, seeds = moving_nuclei(ring=False)
    params = {"method": "watershed", "min_size": 12, "fill_holes": True, "ndim": 2}
    previous = link_over_time(relabel_every_block(mask, np.zeros(mask.shape, np.int32), seeds=seeds, **params))
    missed = moving_nuclei(ring=False, missed=False)[0][3] & ~mask[3]
    rng = np.random.default_rng(3)
    for step in range(10):
        if step == 0:
            mask[3] |= missed
        else:
            mask = random_edit(mask, rng)
        top = int(previous.max())
        relabelled = relabel_every_block(mask, previous, first_new_id=top + 1, **params)
        expected = join_tracks(link_over_time(relabelled, linked_up_to=top), linked_up_to=top)
        labels = jobs.relabel_job(mask, params, previous=previous, time_axis=0).labels
        np.testing.assert_array_equal(labels, expected)
        if step == 0:
            y, x = np.round(np.argwhere(missed).mean(axis=0)).astype(int)  # its centre
            assert len(set(labels[2:5, y, x].tolist())) == 1 and labels[3, y, x] > 0
        previous = labels


def test_segment_job_reports_running_out_of_memory_while_hashing(monkeypatch, tiny_model):
    """Hashing and copying a big result can fail too: a message, never a silent stop."""
    from napari_unet._napari import outputs
    from napari_unet.progress import drain

    def no_memory(data):
        raise MemoryError

    monkeypatch.setattr(outputs, "fingerprint", no_memory)
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    done = drain(jobs.segment_job(image, {"model": str(tiny_model), "device": "cpu"}))
    assert isinstance(done, jobs.JobFailed) and "ran out of memory" in done.message


def test_measure_objects_measures_the_edited_instances(viewer, widget, wait_done, fake_net, notes,
                                                      monkeypatch, tmp_path, on_gui_thread):
    """'Measure objects' measures the instances as they are now (an erased object is gone), in
    the worker, without asking anything; the values show on hover (features), and 'Save table…'
    writes them to the CSV the user chooses."""
    import csv

    from scenes import disc_scene

    segmented = viewer.add_image(disc_scene([(16, 16, 6), (40, 44, 8), (50, 12, 5)])[0], name="img",
                                 scale=(0.5, 0.25), units=("um", "um"))
    widget.image.value = segmented
    widget.run()
    wait_done(widget)
    inst = viewer.layers["img instances"]
    ids = [int(i) for i in np.unique(inst.data) if i]
    assert len(ids) >= 2
    gone = ids[0]
    original = inst.data.copy()
    inst.data = np.where(inst.data == gone, 0, inst.data).astype(inst.data.dtype)  # the user erases one
    asked = []
    monkeypatch.setattr(type(widget), "_ask_table_path",
                        lambda self, name: asked.append(name) or str(tmp_path / "table.csv"))
    from napari_unet import measure as measure_module

    calls = on_gui_thread(measure_module, "measure_objects")
    assert not widget.save_button.enabled  # no table yet
    widget.measure_button.clicked()
    wait_done(widget)
    assert calls == [False]
    assert asked == []  # measuring asks nothing
    assert widget.status.value.startswith(f"{len(ids) - 1} objects measured in img instances")
    assert widget.save_button.enabled
    widget.save_button.clicked()
    assert asked == ["img_objects.csv"]
    with open(tmp_path / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == ids[1:]
    image = np.asarray(segmented.data)
    for r in rows:
        mask = inst.data == int(r["label"])
        assert int(r["area"]) == mask.sum()
        assert float(r["mean_intensity"]) == pytest.approx(image[mask].mean(), rel=1e-5)
    assert inst.features["index"].tolist() == ids[1:]
    assert inst.features["area"].tolist() == [int(r["area"]) for r in rows]
    np.testing.assert_allclose(inst.features["area_um2"], inst.features["area"] * 0.125)
    assert widget.status.value == f"Table of {len(ids) - 1} objects in img instances saved to {tmp_path / 'table.csv'}."
    # Cancelling the dialog writes nothing.
    (tmp_path / "table.csv").unlink()
    monkeypatch.setattr(type(widget), "_ask_table_path", lambda self, name: None)
    widget.save_button.clicked()
    assert not (tmp_path / "table.csv").exists()
    # The edit undone, a new run replaces the instances in place: their old values go with them.
    inst.data = original
    widget.measure()
    wait_done(widget)
    assert len(inst.features) == len(ids)
    widget.run()
    wait_done(widget)
    assert viewer.layers["img instances"] is inst and inst.features.shape[1] == 0
    assert not notes.messages("error")


def test_save_table_refuses_a_table_the_labels_no_longer_match(viewer, widget, wait_done, segmented, notes,
                                                               monkeypatch, tmp_path):
    """'Save table…' writes the last measurements only while the labels are as they were measured:
    after a brush stroke it says the table is out of date and asks nothing; measured again, it
    saves (the new object included). With the measured layer removed the button is greyed out."""
    import csv

    asked = []
    monkeypatch.setattr(type(widget), "_ask_table_path",
                        lambda self, name: asked.append(name) or str(tmp_path / "t.csv"))
    inst = viewer.layers["img instances"]
    widget.measure_button.clicked()
    wait_done(widget)
    assert widget.save_button.enabled
    new_id = int(inst.data.max()) + 1
    inst.brush_size = 3
    inst.paint((4, 4), new_id)  # the user adds an object after measuring
    widget.save_button.clicked()
    assert asked == [] and not (tmp_path / "t.csv").exists()
    (warning,) = notes.messages("warning")
    assert "'img instances' changed since it was measured" in warning
    assert "press 'Measure objects' again, then 'Save table…'" in warning
    assert widget.status.value == "Not saved: the table is out of date (measure again)."
    widget.measure_button.clicked()
    wait_done(widget)
    widget.save_button.clicked()
    assert asked == ["img_objects.csv"]
    with open(tmp_path / "t.csv", newline="") as f:
        labels = [int(r["label"]) for r in csv.DictReader(f)]
    assert labels == [int(i) for i in np.unique(inst.data) if i] and new_id in labels
    viewer.layers.remove(inst)
    assert not widget.save_button.enabled
    widget.save_table()
    assert asked == ["img_objects.csv"]
    assert "There is no table to save: press 'Measure objects' first." in notes.messages("info")
    assert not notes.messages("error")


def test_instances_removed_while_measured_keep_nothing(viewer, widget, wait_done, segmented, notes,
                                                     monkeypatch):
    """The instances layer removed while it is measured: the status said '... objects measured in
    img instances.', as if the table were kept. It says the layer was removed and the measurement
    stopped, as a removed image's job does, and 'Save table…' stays greyed out."""
    import threading

    from napari_unet._napari import widget as widget_module

    inst = viewer.layers["img instances"]
    widget.measure()
    wait_done(widget)
    assert widget.save_button.enabled  # a table of it, measured before
    gate, measure_job = threading.Event(), widget_module.measure_job
    monkeypatch.setattr(widget_module, "measure_job", lambda *a, **k: gate.wait(10) and measure_job(*a, **k))
    widget.measure()
    viewer.layers.remove(inst)
    gate.set()
    wait_done(widget)
    assert widget.status.value == "Stopped: 'img instances' was removed."
    assert ("'img instances' was removed from the viewer: its measurement was stopped and nothing was kept."
            in notes.messages("info"))
    assert not widget.save_button.enabled and widget._table is None
    assert names(viewer) == ["img", "img semantic"]
    assert not notes.messages("error") and not notes.messages("warning")


def test_measure_objects_needs_a_run_first(viewer, widget, notes, make_blobs):
    widget.image.value = viewer.add_image(make_blobs((32, 32)), name="fresh")
    widget.measure()
    assert not widget.running
    assert any("no instance labels of fresh" in m and "run the segmentation" in m
               for m in notes.messages("error"))


def test_update_instances_updates_the_pair_being_corrected(viewer, widget, wait_done, segmented, notes):
    """After a re-run put new results in a [2] pair, correcting the first mask and pressing
    Update instances updates the first pair (the selected layer's), not the newest; and with
    the newest pair deleted, the first can still be updated."""
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    edit = sem.data.copy()
    edit[0, 0] = 1 - edit[0, 0]
    sem.data = edit  # the user's work: the next run goes to a new pair
    widget.run()
    wait_done(widget)
    assert "img semantic [2]" in names(viewer)
    _paint_touching_discs(sem)  # the user goes on correcting the first mask
    viewer.layers.selection.active = sem
    widget.min_size.value = 5
    widget.instance_method.value = "watershed"
    newest = viewer.layers["img instances [2]"].data.copy()
    widget.update_instances()
    wait_done(widget)
    assert inst.data.max() == 2 and (inst.data > 0).sum() == (sem.data > 0).sum()
    np.testing.assert_array_equal(viewer.layers["img instances [2]"].data, newest)
    assert "'img semantic' -> 'img instances'" in widget.status.value
    # Selecting the newest pair updates that one.
    viewer.layers.selection.active = viewer.layers["img semantic [2]"]
    widget.update_instances()
    wait_done(widget)
    assert "'img semantic [2]' -> 'img instances [2]'" in widget.status.value
    # The newest pair deleted (and the image selected): the first pair is the one left to update.
    viewer.layers.remove("img semantic [2]")
    viewer.layers.remove("img instances [2]")
    viewer.layers.selection.active = segmented
    sem.paint((40, 56), 1)
    widget.update_instances()
    wait_done(widget)
    assert "'img semantic' -> 'img instances'" in widget.status.value
    assert inst.data[40, 56] > 0
    assert not notes.messages("error")
    # Every mask removed: a message, no traceback.
    viewer.layers.remove("img semantic")
    widget.update_instances()
    assert not widget.running
    assert any("were removed from the viewer" in m for m in notes.messages("error"))


def test_measure_objects_measures_the_selected_instances_and_forgets_on_edit(
        viewer, widget, wait_done, fake_net, notes, monkeypatch):
    """The selected instances layer is measured, even one a later update left aside (the user's
    corrected labels); a pair whose instances are gone is said, not swapped for another; and a
    brush stroke drops the values, which no longer describe the objects."""
    from scenes import disc_scene

    img = viewer.add_image(disc_scene([(16, 16, 6), (40, 44, 8), (50, 12, 5)])[0], name="img")
    widget.image.value = img
    monkeypatch.setattr(type(widget), "_ask_table_path", lambda self, name: None)
    widget.run()
    wait_done(widget)
    sem, inst = viewer.layers["img semantic"], viewer.layers["img instances"]
    inst.data = np.where(inst.data == inst.data[16, 16], 0, inst.data).astype(inst.data.dtype)  # erase one
    widget.run()  # the edited pair is kept: the results go to [2]
    wait_done(widget)
    edit = sem.data.copy()
    edit[0, 0] = 1
    sem.data = edit
    viewer.layers.selection.active = sem
    widget.min_size.value += 1  # other options: the edits of 'img instances' are not taken
    widget.update_instances()  # so it is kept as the user left it: the update goes to a new layer
    wait_done(widget)
    assert "img instances [3]" in names(viewer)
    viewer.layers.selection.active = inst  # the user's corrected labels, no longer in a pair
    widget.measure()
    wait_done(widget)
    assert widget.status.value.startswith("2 objects measured in img instances;")
    assert sorted(inst.features["index"]) == sorted(int(i) for i in np.unique(inst.data) if i)
    # A brush stroke: the values describe objects that changed, so they go.
    inst.brush_size = 3
    inst.paint((40, 44), 0)
    assert inst.features.shape[1] == 0
    # Undo (Ctrl+Z) brings the erased pixels back without a paint or data event: the values
    # measured without them go too. A refresh (as moving through a stack makes) keeps them.
    widget.measure()
    wait_done(widget)
    area = inst.features["area"].tolist()
    inst.refresh()
    assert inst.features["area"].tolist() == area
    inst.undo()
    assert inst.data[40, 44] != 0 and inst.features.shape[1] == 0
    inst.redo()
    # Painted while it was being measured: the values describe the labels as they were, so they
    # are not shown on hover (the status says so).
    widget.measure()
    inst.paint((50, 12), 0)
    wait_done(widget)
    assert inst.features.shape[1] == 0 and "changed since" in widget.status.value
    # The [2] pair's instances deleted, its mask selected: said, not another pair measured.
    viewer.layers.remove("img instances [2]")
    viewer.layers.selection.active = viewer.layers["img semantic [2]"]
    notes.items.clear()
    widget.measure()
    assert not widget.running
    assert any("select that result's instances" in m for m in notes.messages("error"))
    # The first result's mask deleted, labels it made selected: Update instances says to pick
    # another result's mask ('img semantic [2]' is still there), not that every mask is gone.
    viewer.layers.remove("img semantic")
    viewer.layers.selection.active = inst
    notes.items.clear()
    widget.update_instances()
    assert not widget.running
    assert any("select the mask of another result" in m for m in notes.messages("error"))


def test_a_deleted_pair_is_forgotten_at_the_next_run(make_blobs):
    """Every shown pair is remembered, with a copy of its instances; a pair whose layers the
    user deleted must not keep that copy alive once a later run is published."""
    import gc
    import weakref

    from napari.layers import Image

    from napari_unet._napari.outputs import OutputTracker

    class Viewer:  # what OutputTracker uses of a viewer
        def __init__(self):
            self.layers = []

        def add_layer(self, layer):
            self.layers.append(layer)

    def tuples(seed):
        mask = (np.random.default_rng(seed).random((16, 16)) > 0.5).astype(np.uint8)
        meta = {"metadata": {}, "scale": (1, 1), "translate": (0, 0), "units": ("pixel", "pixel"),
                "axis_labels": ("y", "x")}
        return {role: (mask.copy(), {**meta, "name": f"img {role}"}, "labels")
                for role in ("semantic", "instances")}

    viewer = Viewer()
    source = Image(make_blobs((16, 16)), name="img")
    tracker = OutputTracker(viewer)
    first = tracker.publish(source, tuples(0)).layers
    kept = np.zeros((16, 16), np.int32)
    tracker.record(source).instances = kept  # what the widget remembers for Update instances
    ref = weakref.ref(kept)
    del kept
    first["semantic"].data = 1 - first["semantic"].data  # the user's work: a new pair
    tracker.publish(source, tuples(1))
    assert len(viewer.layers) == 4 and ref() is not None  # both pairs shown, both remembered
    for layer in first.values():
        viewer.layers.remove(layer)  # the user deletes the first pair
    tracker.publish(source, tuples(2))  # a re-run into the (untouched) newest pair
    gc.collect()
    assert ref() is None


def test_update_and_measure_work_on_the_selected_layer_of_another_image(viewer, widget, wait_done, fake_net,
                                                                         monkeypatch, notes):
    """With image B chosen (segmented last), the user goes back to image A's result, corrects its
    mask and selects it: Update instances and Measure objects work on A's pair, as the selection
    says, not on B's (whose untouched pair an update would quietly relabel)."""
    from scenes import DISCS, disc_scene

    a = viewer.add_image(disc_scene(DISCS[0])[0], name="A")
    b = viewer.add_image(disc_scene(DISCS[1])[0], name="B")
    widget.min_size.value = 0
    for image in (a, b):
        widget.image.value = image
        widget.run()
        wait_done(widget)
    b_instances = viewer.layers["B instances"].data.copy()
    sem = viewer.layers["A semantic"]
    sem.visible = True  # shown to be corrected (napari 0.7 cannot paint a hidden Labels layer)
    sem.brush_size = 5
    sem.paint((5, 58), 1)  # a nucleus the network missed
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert "'A semantic' -> 'A instances'" in widget.status.value
    assert viewer.layers["A instances"].data[5, 58] > 0
    np.testing.assert_array_equal(viewer.layers["B instances"].data, b_instances)
    assert widget.image.value is b  # the choice for the next run stays
    asked = []
    monkeypatch.setattr(type(widget), "_ask_table_path", lambda self, name: asked.append(name))
    viewer.layers.selection.active = viewer.layers["A instances"]
    widget.measure()
    wait_done(widget)
    assert widget.status.value.startswith("4 objects measured in A instances")
    widget.save_table()
    assert asked == ["A_objects.csv"]
    # Image A removed, its mask still selected: said, and B's pair is not updated or measured instead.
    viewer.layers.remove(a)
    viewer.layers.selection.active = sem
    asked.clear()
    for action in (widget.update_instances, widget.measure):
        notes.items.clear()
        action()
        (error,) = notes.messages("error")
        assert "was made from 'A', which is no longer in the viewer" in error
        assert widget._run is None and not asked
    np.testing.assert_array_equal(viewer.layers["B instances"].data, b_instances)


def test_a_widget_opened_again_goes_on_with_the_results_of_the_closed_one(viewer, wait_done, fake_net, notes,
                                                                          tiny_model, qtbot, close_dock):
    """Closed with its X and opened again from the Plugins menu, the Segment widget still knows the
    results in the viewer: it updates the mask the user corrected and replaces untouched outputs in
    place, instead of saying to run the segmentation first and adding a second pair."""
    from scenes import DISCS, disc_scene

    def open_widget():
        dock, wdg = viewer.window.add_plugin_dock_widget("napari-unet-seg", "Segment (U-Net)")
        assert wdg.add_model(str(tiny_model))
        wdg.device.value, wdg.min_size.value = "cpu", 0
        return dock, wdg

    a = viewer.add_image(disc_scene(DISCS[0])[0], name="A")
    b = viewer.add_image(disc_scene(DISCS[1])[0], name="B")
    dock, wdg = open_widget()
    for image in (a, b):
        wdg.image.value = image
        wdg.run()
        wait_done(wdg)
    button = dock.title.close_button
    del wdg, dock
    close_dock(button)
    _, wdg = open_widget()
    sem, b_layers = viewer.layers["A semantic"], (viewer.layers["B semantic"], viewer.layers["B instances"])
    sem.visible = True  # shown to be corrected (napari 0.7 cannot paint a hidden Labels layer)
    sem.brush_size = 5
    sem.paint((5, 58), 1)  # a nucleus the network missed
    viewer.layers.selection.active = sem
    wdg.update_instances()
    wait_done(wdg)
    assert not notes.messages("error")
    assert "'A semantic' -> 'A instances'" in wdg.status.value
    assert viewer.layers["A instances"].data[5, 58] > 0
    wdg.image.value = b
    wdg.threshold.value = 0.6
    wdg.run()
    wait_done(wdg)
    assert names(viewer) == ["A", "B", "A semantic", "A instances", "B semantic", "B instances"]
    assert (viewer.layers["B semantic"], viewer.layers["B instances"]) == b_layers
    assert b_layers[1].metadata["threshold"] == pytest.approx(0.6)


def test_a_duplicate_of_measured_instances_forgets_the_values_at_its_first_edit(viewer, widget, wait_done,
                                                                               fake_net, monkeypatch):
    """napari's Duplicate layer copies the measurements with the labels: painting the copy must drop
    them, as painting the original does, so that hovering never shows values of objects that changed."""
    from napari.layers._layer_actions import _duplicate_layer
    from scenes import DISCS, disc_scene

    monkeypatch.setattr(type(widget), "_ask_table_path", lambda self, name: None)
    widget.image.value = viewer.add_image(disc_scene(DISCS[0])[0], name="A")
    widget.min_size.value = 0
    widget.run()
    wait_done(widget)
    inst = viewer.layers["A instances"]
    viewer.layers.selection = {inst}
    widget.measure()
    wait_done(widget)
    assert inst.features.shape[1]
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["A instances copy"]
    assert copy.features["area"].tolist() == inst.features["area"].tolist()  # still true of the copy
    copy.brush_size = 5
    copy.paint((16, 16), 0)
    assert copy.features.shape[1] == 0
    assert inst.features.shape[1]  # the original was not edited


def test_outputs_in_a_numbered_pair_follow_a_renamed_image(viewer, widget, wait_done, segmented):
    """Results replaced in place take the image's new name, in a '[2]' pair as in the first one:
    'img semantic [2]' must not go on naming the results of an image now called 'cells'."""
    sem = viewer.layers["img semantic"]
    sem.visible = True  # shown to be corrected (napari 0.7 cannot paint a hidden Labels layer)
    sem.paint((10, 10), 1 - int(sem.data[10, 10]))  # the user's work: the next run goes to [2]
    widget.run()
    wait_done(widget)
    new = viewer.layers["img semantic [2]"], viewer.layers["img instances [2]"]
    segmented.name = "cells"
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["cells", "img semantic", "img instances", "cells semantic", "cells instances"]
    assert (viewer.layers["cells semantic"], viewer.layers["cells instances"]) == new
    # A layer the user renamed is the user's: it keeps its name and data, and the run goes to a new pair.
    new[0].name = "my mask"
    segmented.name = "nuclei"
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["nuclei", "img semantic", "img instances", "my mask", "cells instances",
                             "nuclei semantic", "nuclei instances"]
    assert (viewer.layers["my mask"], viewer.layers["cells instances"]) == new


def test_progress_bar_shows_update_and_measure_working_then_done(viewer, widget, wait_done, segmented,
                                                                  monkeypatch):
    """Update instances and Measure objects send no progress records: while they work the bar is
    busy (Qt's moving bar, maximum 0), and once done it is full, not left at 0% beside a status
    that says the job is done; a failed job leaves it empty."""
    monkeypatch.setattr(type(widget), "_ask_table_path", lambda self, name: None)
    bar = widget.progress_bar
    _paint_touching_discs(viewer.layers["img semantic"])
    for button in (widget.update_button, widget.measure_button):
        button.clicked()
        assert widget.running and bar.max == 0, button.text
        wait_done(widget)
        assert (bar.value, bar.max) == (1, 1), button.text
        assert bar.native.text() == "100%", button.text

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(jobs, "label_instances", broken)
    monkeypatch.setattr(jobs, "relabel_edited", broken)
    widget.update_button.clicked()
    wait_done(widget)
    assert widget.status.value == "Failed: see the notification."
    assert (bar.value, bar.max) == (0, 1)


def test_update_instances_copies_the_edited_instances_in_the_worker(viewer, widget, wait_done, segmented,
                                                                    monkeypatch):
    """The instances layer as the user left it goes to the worker as it is, copied there: a copy of
    a 30 x 1024 x 1024 stack on the GUI thread stalls napari for 0.3 to 0.8 s."""
    from napari_unet._napari import widget as widget_module

    given = []
    real = widget_module.relabel_job

    def spy(mask, params, **kwargs):
        given.append(kwargs["edited"])
        return real(mask, params, **kwargs)

    monkeypatch.setattr(widget_module, "relabel_job", spy)
    inst = viewer.layers["img instances"]
    inst.brush_size = 3
    inst.paint((5, 5), int(inst.data.max()) + 1)
    shown = inst.data
    widget.update_instances()
    wait_done(widget)
    (edited,) = given
    assert np.shares_memory(edited, shown)  # not copied on the GUI thread
    assert "with your edits of 'img instances'" in widget.status.value
