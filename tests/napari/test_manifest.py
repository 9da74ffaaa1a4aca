"""The npe2 manifest: discovered from the installed package, every entry importable and working."""

from __future__ import annotations

import importlib
from pathlib import Path

import npe2
import numpy as np
import pytest

import napari_unet
from napari_unet._napari.widget import SegmentWidget

pytestmark = pytest.mark.gui

PLUGIN = "napari-unet-seg"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_distribution(PLUGIN)


def test_manifest_is_found_through_the_installed_package(manifest):
    assert manifest.name == PLUGIN
    assert manifest.display_name == "U-Net Segmentation"
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert pm.get_manifest(PLUGIN).name == PLUGIN
    # The package carries the root file: through a relative symlink in the checkout
    # (editable install), as a copy of it in an installed wheel or sdist (tox).
    in_package = Path(napari_unet.__file__).parent / "napari.yaml"
    if in_package.is_symlink():
        assert in_package.resolve() == (ROOT / "napari.yaml").resolve()
    else:
        assert in_package.read_bytes() == (ROOT / "napari.yaml").read_bytes()


def test_every_python_name_imports(manifest):
    commands = manifest.contributions.commands or []
    assert commands
    for command in commands:
        if not command.python_name:
            continue
        module_name, _, attr = command.python_name.partition(":")
        module = importlib.import_module(module_name)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        assert callable(obj), command.python_name


def test_contributions(manifest):
    contrib = manifest.contributions
    ids = {c.id for c in contrib.commands}
    assert {f"{PLUGIN}.segment_widget", f"{PLUGIN}.sample_nuclei"} <= ids
    assert [w.display_name for w in contrib.widgets] == ["Segment (U-Net)", "Train (U-Net)"]
    assert [(s.key, s.display_name) for s in contrib.sample_data] == [("nuclei", "Nuclei (DSB2018)")]
    menu = contrib.menus["napari/layers/segment"]
    assert [item.command for item in menu] == [f"{PLUGIN}.segment_widget"]
    # Every referenced command exists.
    for widget in contrib.widgets:
        assert widget.command in ids
    for sample in contrib.sample_data:
        assert sample.command in ids
    # Results reopen as Labels: only files named as the command line names them are offered to it.
    reader, = contrib.readers
    assert reader.command == f"{PLUGIN}.get_reader" and reader.command in ids
    assert sorted(reader.filename_patterns) == ["*_instances.tif", "*_instances.tiff",
                                                "*_semantic.tif", "*_semantic.tiff"]
    assert not reader.accepts_directories


def test_widget_from_the_manifest_gets_the_viewer(make_napari_viewer, tiny_model, wait_done):
    viewer = make_napari_viewer()
    _, wdg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment (U-Net)")
    assert isinstance(wdg, SegmentWidget)
    assert wdg.image.choices == ()
    # The image list follows layers being added, renamed and removed.
    first = viewer.add_image(np.zeros((8, 8), np.float32), name="first")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="mask")
    second = viewer.add_image(np.zeros((8, 8), np.float32), name="second")
    assert [c.name for c in wdg.image.choices] == ["first", "second"]
    first.name = "renamed"
    combo = wdg.image.native
    assert sorted(combo.itemText(i) for i in range(combo.count())) == ["renamed", "second"]
    viewer.layers.remove(second)
    assert [c.name for c in wdg.image.choices] == ["renamed"]
    # napari hands plugins a proxy of the viewer; results still land in it.
    assert wdg.add_model(str(tiny_model))
    first.data = np.random.default_rng(0).random((32, 40), np.float32)
    wdg.run()
    wait_done(wdg)
    assert viewer.layers["renamed instances"].data.shape == (32, 40)
    # The same widget is offered under Layers > Segment.
    from napari._app_model import get_app_model

    # Found by the title napari shows: napari 0.7.0 gives the menu item an id of its own.
    menu = get_app_model().menus.get_menu("napari/layers/segment")
    assert "Segment (U-Net) (U-Net Segmentation)" in [item.command.title for item in menu]


def test_sample_data_opens_image_and_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei")
    image, labels = viewer.layers
    assert image.name == "nuclei" and image.data.shape == (520, 696)
    assert labels.name == "nuclei ground truth" and labels.data.shape == (520, 696)
    assert labels.data.max() == 168 == len(np.unique(labels.data)) - 1
    assert image.metadata["license"] == "CC0 1.0"


def test_sample_files_are_small_and_attributed():
    data = Path(napari_unet.__file__).parent / "data"
    for name in ("nuclei.tif", "nuclei_labels.tif"):
        assert (data / name).stat().st_size < 1_000_000
    readme = (data / "README.md").read_text()
    image_id = "9620c33d8ef2772dbc5bd152429f507bd7fafb27e12109003292b671e556b089"
    for needle in ("CC0", "Caicedo", "16, 1247", image_id):
        assert needle in readme


def test_readmes_name_the_sample_as_napari_shows_it(make_napari_viewer):
    """napari puts a plugin's only sample straight into File > Open Sample, titled
    "<sample> (<plugin>)": there is no "U-Net Segmentation" submenu to look for."""
    from napari._app_model import get_app_model

    make_napari_viewer()
    sample = (f"{PLUGIN}.nuclei", f"{PLUGIN}:nuclei")  # the command's id (the second in napari 0.7.0)
    titles = [
        item.command.title
        for item in get_app_model().menus.get_menu("napari/file/samples")
        if hasattr(item, "command") and item.command.id in sample
    ]
    assert titles == ["Nuclei (DSB2018) (U-Net Segmentation)"]
    path = f"File > Open Sample > {titles[0]}"
    assert path in (ROOT / "README.md").read_text()
    assert path in (Path(napari_unet.__file__).parent / "data" / "README.md").read_text()
