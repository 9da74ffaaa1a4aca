"""The reader: results the command line wrote open as Labels layers, other TIFFs are left to napari."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from napari.layers import Image, Labels

from napari_unet._napari.reader import get_reader
from napari_unet._napari.widget import SegmentWidget
from napari_unet.cli import main
from napari_unet.io import read_image, write_labels

pytestmark = pytest.mark.gui

PLUGIN = "napari-unet-seg"
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "napari_unet" / "data" / "nuclei.tif"


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Path:
    """The folder of ``cells.tif`` (a crop of the sample) and its results, as ``segment`` wrote them
    with the bundled model and a pixel size of 0.5 µm."""
    folder = tmp_path_factory.mktemp("result")
    tifffile.imwrite(folder / "cells.tif", read_image(SAMPLE)[:160, :160])
    assert main(["segment", str(folder / "cells.tif"), "-o", str(folder), "--device", "cpu",
                 "--pixel-size", "0.5"]) == 0
    return folder


def test_a_result_opens_as_labels_placed_and_described(viewer, result):
    sem, = viewer.open(result / "cells_semantic.tif", plugin=PLUGIN)
    inst, = viewer.open(result / "cells_instances.tif", plugin=PLUGIN)
    for layer, role, dtype in ((sem, "semantic", np.uint8), (inst, "instances", np.int32)):
        assert isinstance(layer, Labels)
        assert layer.name == f"cells {role}"
        assert layer.data.dtype == dtype
        np.testing.assert_array_equal(layer.data, tifffile.imread(result / f"cells_{role}.tif"))
        assert tuple(layer.scale) == (0.5, 0.5)
        assert tuple(map(str, layer.units)) == ("micrometer", "micrometer")
        assert tuple(layer.axis_labels) == ("y", "x")
        meta = layer.metadata
        # As the Segment widget describes its outputs: the run's metadata, the image's axes and name, the role.
        assert meta["output"] == role and meta["source_layer"] == "cells" and meta["axes"] == "YX"
        assert meta["model"] == "nuclei" and meta["instance_method"] == "watershed"
        assert meta["opened_from"] == str(result / f"cells_{role}.tif")
    assert inst.data.max() >= inst.metadata["n_objects"] > 5
    assert set(np.unique(sem.data)) == {0, 1}


def test_other_tiffs_are_left_to_napari(viewer, tmp_path):
    labels = np.zeros((16, 16), np.uint16)
    labels[4:8, 4:8] = 3
    # Named as a result but without its metadata: a plain TIFF, and one from Fiji with an Info of its own.
    tifffile.imwrite(tmp_path / "plain_instances.tif", labels)
    tifffile.imwrite(tmp_path / "fiji_semantic.tif", labels, imagej=True, metadata={"Info": "exposure=10ms"})
    (tmp_path / "broken_instances.tif").write_bytes(b"not a tiff at all")
    # Holds the metadata, but not named as a result.
    write_labels(tmp_path / "mask.tif", labels, axes="YX", metadata={"napari_unet_version": "0.1.0"})
    for name in ("plain_instances.tif", "fiji_semantic.tif", "broken_instances.tif", "mask.tif"):
        assert get_reader(str(tmp_path / name)) is None, name
    assert get_reader([str(tmp_path / "plain_instances.tif")] * 2) is None  # a stack
    from napari.plugins._npe2 import get_readers

    assert PLUGIN not in get_readers(tmp_path / "mask.tif")  # ordinary names: napari's reader alone
    assert PLUGIN in get_readers(tmp_path / "plain_instances.tif")
    with pytest.raises(Exception, match="plain_instances.tif"):  # declined: napari's reader is for it
        viewer.open(tmp_path / "plain_instances.tif", plugin=PLUGIN)
    layer, = viewer.open(tmp_path / "plain_instances.tif")
    assert isinstance(layer, Image)


def test_a_result_with_an_upper_case_suffix_is_offered_to_the_reader(viewer, result, tmp_path):
    """``cells_semantic.TIF`` (as some systems and tools name files) is a result as ``.tif`` is:
    npe2 matches the manifest's patterns with the suffix in lower case, so the lower-case
    patterns cover it, and the reader takes it."""
    import shutil

    from napari.plugins._npe2 import get_readers

    for name, suffix in (("cells_semantic", ".TIF"), ("cells_instances", ".TIFF")):
        path = shutil.copy(result / f"{name}.tif", tmp_path / f"{name}{suffix}")
        assert PLUGIN in get_readers(path), suffix
        assert get_reader(str(path)) is not None, suffix
        layer, = viewer.open(path, plugin=PLUGIN)
        assert isinstance(layer, Labels) and layer.name == name.replace("_", " ")


def test_measure_and_update_go_on_with_an_opened_result(viewer, widget, result, wait_done, notes, monkeypatch):
    image, = viewer.open(result / "cells.tif")
    sem, = viewer.open(result / "cells_semantic.tif", plugin=PLUGIN)
    inst, = viewer.open(result / "cells_instances.tif", plugin=PLUGIN)
    opened = inst.data.copy()
    monkeypatch.setattr(SegmentWidget, "_ask_table_path", lambda self, name: None)
    viewer.layers.selection.active = inst
    widget.measure()
    wait_done(widget)
    assert not notes.messages("error")
    ids = np.unique(opened)[1:]
    assert sorted(inst.features["index"]) == list(ids)
    np.testing.assert_allclose(inst.features["area_um2"], inst.features["area"] * 0.25)
    # A nucleus erased from the mask: the instances follow, in a layer of their own (the file's stay).
    # With the options the file was made with, the other nuclei keep their ids.
    widget.instance_method.value = inst.metadata["instance_method"]
    widget.min_size.value = inst.metadata["min_size"]
    gone = ids[0]
    sem.data[opened == gone] = 0
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert not notes.messages("error")
    updated = viewer.layers["cells instances [2]"]
    np.testing.assert_array_equal(inst.data, opened)
    assert not np.any(updated.data[opened == gone])
    assert tuple(updated.scale) == (0.5, 0.5) and updated.metadata["updated_from"] == "cells semantic"
    kept = np.isin(opened, ids[1:])
    np.testing.assert_array_equal(updated.data[kept], opened[kept])
    assert widget._tracker.source_of(updated) is image
    # The options were those of the file: no note says they changed.
    assert not [m for m in notes.messages("info") if "options changed" in m]
    # A new run leaves the files' layers (maybe corrected on another day) alone.
    mask = sem.data.copy()
    widget.image.value = image
    widget.run()
    wait_done(widget)
    assert "cells semantic [2]" in viewer.layers and "cells instances [3]" in viewer.layers
    np.testing.assert_array_equal(sem.data, mask)
    np.testing.assert_array_equal(inst.data, opened)


def test_an_opened_result_without_its_image_says_to_open_it(viewer, widget, result, notes):
    inst, = viewer.open(result / "cells_instances.tif", plugin=PLUGIN)
    viewer.layers.selection.active = inst
    widget.measure()
    assert not widget.running
    message, = notes.messages("error")
    assert "open its image (cells) too" in message and "cells_instances.tif" in message


def test_file_open_asks_for_a_result_only(viewer, result, monkeypatch):
    """File > Open (and drag and drop): napari asks which reader to use for a result, as
    its own reader can open it too; an ordinary TIFF opens as before, without a question."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

    asked: list[str] = []

    def choose(dialog):
        asked.append(dialog._extension)
        return "U-Net Segmentation", False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose)
    qt_viewer = viewer.window._qt_viewer
    qt_viewer._qt_open([str(result / "cells.tif")], stack=False)
    assert asked == [] and isinstance(viewer.layers["cells"], Image)
    qt_viewer._qt_open([str(result / "cells_instances.tif")], stack=False)
    assert asked == [".tif"] and isinstance(viewer.layers["cells instances"], Labels)


def test_the_readme_line_that_places_the_image_ends_napari_unit_warnings(viewer, result, notes):
    """README's console line for an image napari's reader opened without its pixel size: after
    it, the image lies under its result and napari no longer warns, at each layer added, that the
    layers' units differ (the result is in µm, the image was in pixels)."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = re.search(r"in napari's console: `([^`]+)`", readme).group(1)
    viewer.open(result / "cells.tif", plugin="napari")
    viewer.open(result / "cells_instances.tif", plugin=PLUGIN)
    exec(line.replace("<image>", "cells"), {"viewer": viewer})  # noqa: S102 - the README's own line
    notes.items.clear()
    viewer.add_points([[1.0, 1.0]], scale=(0.5, 0.5), units="um")
    assert tuple(viewer.layers["cells"].scale) == (0.5, 0.5)
    assert not [m for m in notes.messages() if "units" in m.lower()], notes.messages()


def test_an_opened_result_that_does_not_record_its_options_keeps_ids_at_an_update(viewer, widget, result,
                                                                                   wait_done, notes, tmp_path):
    """A result whose metadata lacks the instance method and min size counts as made with the
    widget's options: an update with them keeps the ids of the nuclei the edit left alone."""
    from napari_unet.io import read_tiff_metadata

    tifffile.imwrite(tmp_path / "cells.tif", tifffile.imread(result / "cells.tif"))
    for role in ("semantic", "instances"):
        meta = read_tiff_metadata(result / f"cells_{role}.tif")
        for key in ("instance_method", "min_size"):
            del meta[key]
        write_labels(tmp_path / f"cells_{role}.tif", tifffile.imread(result / f"cells_{role}.tif"),
                     axes=meta.pop("axes"), pixel_size_um=meta.pop("pixel_size_um", None), metadata=meta)
    viewer.open(tmp_path / "cells.tif")
    sem, = viewer.open(tmp_path / "cells_semantic.tif", plugin=PLUGIN)
    inst, = viewer.open(tmp_path / "cells_instances.tif", plugin=PLUGIN)
    assert "instance_method" not in inst.metadata and "min_size" not in inst.metadata
    opened = inst.data.copy()
    ids = np.unique(opened)[1:]
    sem.data[opened == ids[0]] = 0
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert not notes.messages("error")
    updated = viewer.layers["cells instances [2]"]
    assert not np.any(updated.data[opened == ids[0]])
    kept = np.isin(opened, ids[1:])
    np.testing.assert_array_equal(updated.data[kept], opened[kept])


def test_edits_on_an_opened_instances_layer_are_taken_at_the_first_update(viewer, widget, result, wait_done,
                                                                          notes):
    """A nucleus erased on the instances of an opened result, before the widget ever saw them, is
    an edit like any other: 'Update instances' takes it (the mask follows), it does not come back."""
    viewer.open(result / "cells.tif")
    sem, = viewer.open(result / "cells_semantic.tif", plugin=PLUGIN)
    inst, = viewer.open(result / "cells_instances.tif", plugin=PLUGIN)
    widget.instance_method.value = inst.metadata["instance_method"]
    widget.min_size.value = inst.metadata["min_size"]
    opened = inst.data.copy()
    gone = np.unique(opened)[1]
    inst.fill(tuple(np.argwhere(opened == gone)[0]), 0)
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert not notes.messages("error")
    updated = viewer.layers["cells instances [2]"]
    assert not np.any(updated.data[opened == gone])
    assert not np.any(sem.data[opened == gone])
    assert "with your edits of 'cells instances'" in widget.status.value


def test_a_result_of_a_zcyx_image_keeps_a_one_plane_channel_axis(viewer, widget, wait_done, notes,
                                                                   tmp_path, monkeypatch):
    """The results of an image whose channel axis comes after Z open with that axis, one plane deep
    at the segmented channel, as the Segment widget's outputs keep it: napari lines their Z up
    with the image's Z, not its C, and Measure objects works on them."""
    crop = read_image(SAMPLE)[:96, :96]
    data = np.stack([np.stack([crop, np.zeros_like(crop)]), np.stack([crop[::-1], np.zeros_like(crop)])])
    tifffile.imwrite(tmp_path / "hyper.tif", data)  # Z, C, Y, X
    assert main(["segment", str(tmp_path / "hyper.tif"), "-o", str(tmp_path), "--device", "cpu",
                 "--axes", "ZCYX", "--channel", "0", "--pixel-size", "2,0.5,0.5"]) == 0
    image, = viewer.open(tmp_path / "hyper.tif")
    sem, = viewer.open(tmp_path / "hyper_semantic.tif", plugin=PLUGIN)
    inst, = viewer.open(tmp_path / "hyper_instances.tif", plugin=PLUGIN)
    for layer in (sem, inst):
        assert layer.data.shape == (2, 1, 96, 96)  # as the widget's outputs: (Z, 1, Y, X)
        assert layer.metadata["axes"] == "ZCYX"
        assert tuple(layer.scale) == (2.0, 1.0, 0.5, 0.5)
        assert tuple(map(str, layer.units)) == ("micrometer", "pixel", "micrometer", "micrometer")
        assert tuple(layer.axis_labels) == ("z", "c", "y", "x")
        role = layer.metadata["output"]
        np.testing.assert_array_equal(layer.data[:, 0], tifffile.imread(tmp_path / f"hyper_{role}.tif"))
    # The image placed as its results (README's console line): each plane of the instances lies at
    # its own Z of the image, at the segmented channel.
    image.scale, image.units = sem.scale, sem.units
    for z in range(2):
        index = tuple(np.round(inst.world_to_data(image.data_to_world((z, 0, 40, 40)))).astype(int))
        assert index == (z, 0, 40, 40)
    monkeypatch.setattr(SegmentWidget, "_ask_table_path", lambda self, name: None)
    viewer.layers.selection.active = inst
    widget.measure()
    wait_done(widget)
    assert not notes.messages("error")
    assert sorted(inst.features["index"]) == list(np.unique(inst.data)[1:])
    viewer.layers.selection.active = sem
    widget.update_instances()
    wait_done(widget)
    assert not notes.messages("error")
    assert viewer.layers["hyper instances [2]"].data.shape == (2, 1, 96, 96)
