"""Re-runs never overwrite edited outputs; "Update instances" relabels an edited mask."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._napari import jobs
from napari_unet._napari.outputs import fingerprint

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
                                                                 segmented):
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
    sem.brush_size = 5
    sem.paint((10, 10), 2)
    painted = sem.data.copy()
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances", "img semantic [2]"]
    np.testing.assert_array_equal(sem.data, painted)
    assert viewer.layers["img instances"] is inst  # still untouched: replaced in place
    new = viewer.layers["img semantic [2]"]
    assert new.data.shape == (48, 64) and not np.array_equal(new.data, painted)
    np.testing.assert_allclose(new.scale, (0.5, 0.5))
    # Another run replaces the fresh copy, never the painted layer.
    widget.run()
    wait_done(widget)
    assert names(viewer) == ["img", "img semantic", "img instances", "img semantic [2]"]
    np.testing.assert_array_equal(sem.data, painted)


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
    """Erase the mask, then paint two overlapping discs (one blob with a waist)."""
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


def test_update_instances_keeps_edited_instances(viewer, widget, wait_done, segmented):
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
    widget.update_instances()
    wait_done(widget)
    assert inst.data.shape == (2, 40, 48)
    assert inst.data[0].max() == inst.data[1].max() == 1  # ids restart per frame


def test_fingerprint_sees_any_change():
    a = np.zeros((4, 5), np.int32)
    before = fingerprint(a)
    assert fingerprint(a.copy()) == before
    a[2, 3] = 1
    assert fingerprint(a) != before
    assert fingerprint(np.zeros((5, 4), np.int32)) != before  # shape counts
    assert fingerprint(np.zeros((4, 5), np.int64)) != before  # dtype counts
    assert fingerprint([1, 2]) is None
