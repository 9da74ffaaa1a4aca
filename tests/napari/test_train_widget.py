"""The Train widget in a real viewer: trains, registers, cancels, refuses bad input.

Training runs are tiny (1 epoch of 2 steps on 32 px crops) so each takes seconds on a CPU.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from napari_unet._napari import session_models, unregister_session_model
from napari_unet._napari import train_widget as tw
from napari_unet._napari.model_choices import default_models_dir
from napari_unet._napari.train_widget import NEW, TrainWidget
from napari_unet._napari.widget import SegmentWidget
from napari_unet.checkpoint import load_model

pytestmark = pytest.mark.gui


def discs(shape=(64, 64), seed=0):
    """A float32 image of bright discs and its instance labels (int32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i in range(1, 7):
        cy, cx = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(16, 40)] = i
    image = (labels > 0) * 0.8 + rng.normal(0.1, 0.05, shape)
    return image.astype(np.float32), labels


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    """Session models made here are withdrawn (the home folder is the test's: see conftest)."""
    monkeypatch.setattr(tw, "_RATES", {})  # no training speed measured yet
    before = set(session_models())
    yield
    for name in set(session_models()) - before:
        unregister_session_model(name)


@pytest.fixture
def trainer(viewer, tmp_path):
    """A docked Train widget set for a tiny run that saves under ``tmp_path/models``."""
    wdg = TrainWidget(viewer)
    viewer.window.add_dock_widget(wdg, name="Train (U-Net)")
    wdg.start_model.value = NEW
    wdg.epochs.value, wdg.steps.value, wdg.batch_size.value = 1, 2, 2
    wdg.crop_size.value = 32
    wdg.device.value = "cpu"
    wdg.model_name.value = "test-net"
    wdg.save_in.value = tmp_path / "models"
    return wdg


def wait_trained(qtbot, wdg, timeout=60_000):
    qtbot.waitUntil(lambda: not wdg.running, timeout=timeout)


def test_fields_have_their_labels_without_a_labels_layer(viewer, trainer, qtbot):
    """Opened before any Labels layer exists, the form still names its fields ('Labels' was
    the widget's own switch for them, and an empty list of layers turned them off)."""
    assert trainer.labels_layer.choices == ()
    viewer.show()
    qtbot.waitExposed(trainer.native)
    for field in (trainer.image, trainer.labels_layer, trainer.epochs, trainer.steps, trainer.learning_rate):
        row = field._labeled_widget()
        assert row is not None and row._label_widget.visible and row._label_widget.value == field.label
    lefts = {w.native.mapTo(trainer.native, w.native.rect().topLeft()).x()
             for w in (trainer.image, trainer.epochs, trainer.steps, trainer.crop_size)}
    assert len(lefts) == 1, lefts  # in line under the longest label, 'Steps per epoch'


def test_training_registers_a_model_the_segment_widget_can_use(viewer, trainer, qtbot, notes,
                                                               tmp_path, home):
    image, labels = discs()
    img = viewer.add_image(image, name="cells")
    viewer.add_labels(np.zeros((32, 32), np.int32), name="other")
    lab = viewer.add_labels(labels, name="cells instances")
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment (U-Net)")
    # Choosing the image offers its fitting labels; the pair goes into the list.
    trainer.image.value = img
    assert trainer.labels_layer.value is lab
    assert trainer.add_pair()
    assert trainer.pair_layers == [(img, lab)]
    assert trainer.pairs.choices == (0,)
    assert trainer.learning_rate.value == pytest.approx(tw.LR_NEW)  # a new network's default
    trainer.train_button.clicked()
    assert trainer.running and not trainer.train_button.enabled and trainer.cancel_button.enabled
    wait_trained(qtbot, trainer)
    assert not trainer.running and trainer.train_button.enabled and not trainer.cancel_button.enabled
    folder = tmp_path / "models" / "test-net"
    assert trainer.last_folder == folder.resolve()
    assert re.fullmatch(rf"'test-net' saved in {re.escape(str(folder.resolve()))} \(\d+ s\)\. "
                        r"'Start from' is now 'test-net \(this session\)'.*",
                        trainer.status.value)  # seconds, not "0.1 min"
    assert (folder / "config.json").is_file() and (folder / "weights.safetensors").is_file()
    assert "test-net" in session_models()
    assert session_models()["test-net"].name == "test-net"
    # The Segment widget lists it beside the bundled default, has chosen it and segments with it.
    assert "session:test-net" in segment.model.choices
    assert segment.model.value == "session:test-net"
    assert segment._catalog.default_key() in segment.model.choices
    (info,) = [m for m in notes.messages("info") if "trained" in m]
    assert str(folder.resolve()) in info and "test-net (this session)" in info
    assert "now uses 'test-net (this session)'" in info
    assert f"open it there with 'Browse…' ({folder.resolve() / 'config.json'})" in info  # not the default folder
    assert not notes.messages("error")
    segment.image.value = img
    segment.device.value = "cpu"
    segment.run()
    qtbot.waitUntil(lambda: not segment.running, timeout=30_000)
    (made,) = [layer for layer in viewer.layers if layer.metadata.get("output") == "instances"]
    assert made.metadata["model"] == "test-net" and made.data.shape == (64, 64)
    assert viewer.layers["cells instances"] is lab  # the user's labels stay as they were
    # The same name again makes a new folder and a new session model, never overwriting.
    trainer.train()
    wait_trained(qtbot, trainer)
    assert {"test-net", "test-net-2"} <= set(session_models())
    # An emptied 'Save in' field means the default folder.
    trainer.save_in.line_edit.value = ""
    trainer.train()
    wait_trained(qtbot, trainer)
    assert (default_models_dir() / "test-net-3" / "config.json").is_file()
    assert str(default_models_dir()).startswith(str(home))  # not the user's home
    # Saved in the folder whose models are listed as '(saved)': listed once, as this session's.
    assert "session:test-net-3" in segment.model.choices
    assert not [c for c in segment.model.choices if c.startswith("file:")]
    assert "In a later session the model lists offer it as 'test-net-3 (saved)'." in notes.messages("info")[-1]
    assert (tmp_path / "models" / "test-net-2" / "config.json").is_file()


def test_the_training_time_is_estimated_from_a_run_timed_with_those_settings(viewer, trainer, qtbot, notes,
                                                                            tiny_model):
    """No estimate before a run has been timed; after one, its time per step times the steps, for
    the same device, network, batch and crop size only."""
    image, labels = discs()
    img = viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells instances")
    trainer.image.value = img
    assert trainer.estimate.value == ""
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    ((key, per_step),) = tw._RATES.items()
    assert key == ("cpu", (tw.NEW_DEPTH, tw.NEW_WIDTH, 1), 2, 32) and per_step > 0
    assert trainer.estimate.value.startswith("Estimated training time: about ")
    trainer.epochs.value, trainer.steps.value = 50, 200
    assert f"about {tw._format_eta(per_step * 10_000)} for 10000 steps" in trainer.estimate.value
    trainer.batch_size.value = 8  # steps of another size: not timed
    assert trainer.estimate.value == ""
    trainer.batch_size.value = 2
    trainer.device.value = "auto"
    assert trainer.estimate.value == ""
    trainer.device.value = "cpu"
    assert trainer.add_model(str(tiny_model))  # another network
    assert trainer.estimate.value == ""


def test_the_next_run_starts_from_the_model_just_trained(viewer, trainer, qtbot, notes):
    """Teaching in rounds: correct, train, correct more, train again. The second run continues
    from the first run's model, not from the model the first run started from."""
    image, labels = discs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells instances")
    assert trainer.start_model.value == NEW
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    first = session_models()["test-net"]
    assert trainer.start_model.value == "session:test-net"
    assert "'Start from' is now 'test-net (this session)'" in trainer.status.value
    assert trainer.learning_rate.value == pytest.approx(tw.LR_FINE_TUNE)  # continuing is fine-tuning
    assert trainer._options()["init"] is first
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    provenance = session_models()["test-net-2"].config.provenance
    assert provenance["init_model"] == "test-net" and provenance["init_model_sha256"] == first.sha256
    assert trainer.start_model.value == "session:test-net-2"


def test_a_trained_model_waits_for_a_running_segmentation(viewer, widget, trainer, qtbot, notes,
                                                          tiny_model, make_blobs, start_run):
    """A model trained while the Segment widget segments is not chosen under the running job: the
    notification says to choose it when the segmentation has finished."""
    from napari_unet._napari import register_session_model

    img = viewer.add_image(make_blobs((8, 256, 256)), name="stack")
    chosen = widget.model.value
    start_run(widget, img)
    register_session_model("test-net", load_model(tiny_model))
    text = trainer._offer_to_segment("test-net")
    assert "is segmenting: choose 'test-net (this session)' there when it has finished" in text
    assert widget.model.value == chosen
    assert "session:test-net" in widget.model.choices
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    # Idle again, it takes the next one.
    assert "now uses" in trainer._offer_to_segment("test-net")
    assert widget.model.value == "session:test-net"


def test_a_model_opened_in_one_widget_is_offered_in_the_other(viewer, trainer, tiny_model, tuned_model):
    from napari_unet._napari.widget import SegmentWidget

    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment (U-Net)")
    # Opened to segment with: the Train widget offers it to start from, and can load it.
    assert segment.add_model(str(tuned_model))
    key = segment.model.value
    assert key in trainer.start_model.choices and trainer.start_model.value == NEW  # offered, not chosen
    trainer.start_model.value = key
    assert trainer._catalog.get(key).config == segment._catalog.get(key).config
    # Opened to start from: the Segment widget offers it, keeping its own choice.
    assert trainer.add_model(str(tiny_model))
    assert trainer.start_model.value in segment.model.choices and segment.model.value == key
    assert [c for c in segment.model.choices if c.startswith("file:")] == \
        [c for c in trainer.start_model.choices if c.startswith("file:")]


def test_fine_tunes_a_stack_with_a_semantic_mask(viewer, trainer, qtbot, notes, tiny_model):
    image, labels = discs()
    stack = np.stack([image, image[::-1], image.T])
    mask = np.stack([labels > 0, np.zeros_like(labels, bool), (labels > 0).T]).astype(np.uint8)
    img = viewer.add_image(stack, name="stack")
    lab = viewer.add_labels(mask, name="stack mask")
    assert trainer.add_model(str(tiny_model))
    assert trainer.learning_rate.value == pytest.approx(tw.LR_FINE_TUNE)
    start = trainer._catalog.get(trainer.start_model.value)
    start.config.core_fraction = 0.25  # taught on core targets: fine-tuning must keep them
    before = {k: v.clone() for k, v in start.net.state_dict().items()}
    trainer.model_name.value = "tuned stack"  # made folder-safe
    assert trainer.add_pair(img, lab)
    assert "read as a mask" in trainer.status.value
    seen = []
    trainer.train()
    assert trainer.status.value == "Preparing 1 training pair for 'tuned_stack'…"
    trainer._run.worker.yielded.connect(seen.append)
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    model = session_models()["tuned_stack"]
    assert model.config.base_width == 4 and model.config.depth == 2  # the tiny model's
    assert model.config.core_fraction == 0.25
    (info,) = [m for m in notes.messages("info") if "trained" in m]
    assert "on 2 images (1 empty plane skipped)" in info
    assert model.config.provenance["trained_on"] == ["stack_z000", "stack_z002"]
    assert model.config.provenance["crop_size"] == 32
    # The starting model was copied, not trained in place.
    for key, value in start.net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(r.stage == "train" for r in seen)


def test_cancel_registers_nothing(viewer, trainer, qtbot, notes, tmp_path):
    image, labels = discs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells instances")
    trainer.epochs.value, trainer.steps.value = 50, 100
    records = []
    trainer.train()  # an empty list: the pair chosen above
    trainer._run.worker.yielded.connect(records.append)
    qtbot.waitUntil(lambda: any(r.stage == "train" for r in records), timeout=30_000)
    with qtbot.waitSignal(trainer._run.worker.finished, timeout=10_000):
        trainer.cancel_button.clicked()
    assert not trainer.running and trainer.train_button.enabled
    assert "test-net" not in session_models()
    assert trainer.start_model.value == NEW  # nothing new to continue from
    assert any("cancelled" in m for m in notes.messages("info"))
    assert not (tmp_path / "models" / "test-net").exists()  # no epoch finished: nothing kept
    assert records[-1].done < records[-1].total


def test_closing_the_dock_mid_training_removes_the_empty_model_folder(viewer, qtbot, tmp_path, close_dock):
    """The dock's X stops the run as Cancel does, and its folder, holding no model yet, goes too:
    left behind, it would push the next model of that name to '-2'."""
    dock, wdg = viewer.window.add_plugin_dock_widget("napari-unet-seg", "Train (U-Net)")
    wdg.start_model.value = NEW
    wdg.epochs.value, wdg.steps.value, wdg.batch_size.value, wdg.crop_size.value = 50, 100, 2, 32
    wdg.device.value, wdg.model_name.value, wdg.save_in.value = "cpu", "closed-net", tmp_path / "models"
    image, labels = discs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells instances")
    wdg.train()
    worker, folder = wdg._run.worker, wdg._run.folder
    records = []
    worker.yielded.connect(records.append)
    qtbot.waitUntil(lambda: any(r.stage == "train" for r in records), timeout=30_000)
    assert folder.is_dir()
    button = dock.title.close_button
    del wdg, dock
    close_dock(button)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.waitUntil(lambda: not folder.exists(), timeout=5_000)
    assert not (tmp_path / "models" / "closed-net").exists()


def test_a_failure_after_an_epoch_says_where_its_model_stays(viewer, trainer, qtbot, notes, tmp_path,
                                                            monkeypatch):
    import napari_unet.training.loop as loop

    real = loop.iter_train

    def failing(*args, **kwargs):  # the epoch's model is saved, then the run fails
        yield from real(*args, **kwargs)
        raise MemoryError

    monkeypatch.setattr(loop, "iter_train", failing)
    image, labels = discs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells instances")
    trainer.train()
    wait_trained(qtbot, trainer)
    (error,) = notes.messages("error")
    assert "ran out of memory" in error
    assert f"The model of the last finished epoch stays in {tmp_path / 'models' / 'test-net'}" in error
    assert (tmp_path / "models" / "test-net" / "config.json").is_file()
    assert "test-net" not in session_models()
    assert trainer.start_model.value == NEW  # a failed run is no start for the next


def test_bad_input_becomes_a_notification(viewer, trainer, qtbot, notes, tmp_path):
    # No layers at all.
    trainer.train_button.clicked()
    assert not trainer.running
    (error,) = notes.messages("error")
    assert "no training pairs" in error
    # Image and labels of different shapes.
    notes.items.clear()
    img = viewer.add_image(discs()[0], name="img")
    small = viewer.add_labels(np.ones((32, 32), np.int32), name="small")
    assert trainer.add_pair(img, viewer.add_labels(discs()[1], name="fits"))
    assert trainer.status.value.startswith("Added")
    notes.items.clear()
    assert not trainer.add_pair(img, small)
    assert trainer.status.value == "Pair not added: see the notification."  # not the last success
    trainer.clear_button.clicked()
    (error,) = notes.messages("error")
    assert "differ in shape" in error and "'img'" in error and "'small'" in error
    notes.items.clear()
    trainer.image.value, trainer.labels_layer.value = img, small
    trainer.train()
    assert not trainer.running
    assert "differ in shape" in notes.messages("error")[0]
    # A boolean image (a mask opened as an image) is refused when the pair is added.
    notes.items.clear()
    binary = viewer.add_image(discs()[1] > 0, name="binary")
    assert not trainer.add_pair(binary, viewer.layers["fits"])
    assert "'binary': The image is boolean" in notes.messages("error")[0]
    viewer.layers.remove(binary)
    # Labels with no object.
    notes.items.clear()
    empty = viewer.add_labels(np.zeros((64, 64), np.int32), name="empty")
    assert not trainer.add_pair(img, empty)
    assert "no labelled objects" in notes.messages("error")[0]
    # A pair whose labels were erased after it was added.
    notes.items.clear()
    lab = viewer.add_labels(discs()[1], name="lab")
    assert trainer.add_pair(img, lab)
    lab.data = np.zeros_like(lab.data)
    trainer.train()  # the labels are read in the worker
    wait_trained(qtbot, trainer)
    assert "no labelled objects" in notes.messages("error")[0]
    # Labels painted with negative values only (napari allows them): background, and said so.
    notes.items.clear()
    lab.data = -discs()[1]
    trainer.train()
    wait_trained(qtbot, trainer)
    assert "negative values are background" in notes.messages("error")[0]
    # A removed layer takes its pairs out of the list.
    notes.items.clear()
    lab.data = discs()[1]
    viewer.layers.remove(lab)
    assert trainer.pair_layers == []
    qtbot.waitUntil(lambda: bool(notes.messages("info")), timeout=2_000)
    assert notes.messages("info") == [("'lab' was removed from the viewer: 1 training pair using it was removed "
                                       "from the list.")]
    for note in notes.items:
        assert "Traceback" not in note.message
    assert not list((tmp_path / "models").glob("*"))
    # Clear and Remove.
    lab2 = viewer.add_labels(discs()[1], name="lab2")
    assert trainer.add_pair(img, lab2)
    assert not trainer.add_pair(img, lab2)  # already there
    trainer.pairs.value = [0]
    trainer.remove_button.clicked()
    assert trainer.pair_layers == []
    trainer.add_pair(img, lab2)
    trainer.clear_button.clicked()
    assert trainer.pairs.choices == ()


def test_removing_a_pair_layer_while_training_says_the_run_goes_on(viewer, trainer, qtbot, notes):
    """Removing a pair's layer takes the pair out of the list, but the training in progress holds
    its data and goes on: the message says so, and how to stop it."""
    image, labels = discs()
    img, lab = viewer.add_image(image, name="cells"), viewer.add_labels(labels, name="cells instances")
    assert trainer.add_pair(img, lab)
    trainer.epochs.value, trainer.steps.value = 50, 100
    trainer.train()
    records = []
    trainer._run.worker.yielded.connect(records.append)
    qtbot.waitUntil(lambda: any(r.stage == "train" for r in records), timeout=30_000)
    notes.items.clear()
    viewer.layers.remove(lab)
    assert trainer.pair_layers == []
    qtbot.waitUntil(lambda: bool(notes.messages("info")), timeout=2_000)
    assert notes.messages("info") == [(
        "'cells instances' was removed from the viewer: 1 training pair using it was removed from the list; "
        "the training in progress goes on with the data it already took from it (press Cancel to stop it).")]
    seen = len(records)
    qtbot.waitUntil(lambda: len(records) >= seen + 3, timeout=30_000)  # it does go on
    assert trainer.running
    trainer.cancel()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")


def test_closing_the_viewer_says_nothing_of_the_pairs(viewer, trainer, qtbot, notes):
    """viewer.close() removes every layer before it closes the window: the pairs' layers go, but
    nobody removed them, so nothing says '1 training pair using it was removed from the list'."""
    image, labels = discs()
    img, lab = viewer.add_image(image, name="cells"), viewer.add_labels(labels, name="cells instances [2]")
    assert trainer.add_pair(img, lab)
    viewer.close()
    qtbot.wait(100)
    assert not [m for m in notes.messages() if "removed" in m], notes.messages()


def test_train_reads_the_labels_in_the_worker_not_the_gui_thread(viewer, trainer, qtbot, notes, tiny_model,
                                                                  on_gui_thread):
    """A big labels stack must not freeze napari when Train is pressed: only its shape is checked there."""
    on_main = on_gui_thread(tw, "is_binary_mask")
    image, labels = discs()
    img = viewer.add_image(image, name="img")
    lab = viewer.add_labels((labels > 0).astype(np.int32) * 3, name="mask")
    assert trainer.add_model(str(tiny_model))
    assert trainer.add_pair(img, lab)  # adding one pair reads it at once, to say how it is read
    assert on_main == [True] and "read as a mask" in trainer.status.value
    on_main.clear()
    trainer.epochs.value, trainer.steps.value = 1, 1
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    assert on_main == [False]


@pytest.fixture
def seen_images(monkeypatch) -> list:
    """The image of every pair that training makes samples of, as the network is shown it."""
    import napari_unet.training.data as data

    seen = []
    real = data.plane_samples

    def spy(image, labels, **kwargs):
        seen.append(np.asarray(image))
        return real(image, labels, **kwargs)

    monkeypatch.setattr(data, "plane_samples", spy)
    return seen


def test_a_multichannel_image_trains_on_the_channel_it_was_segmented_with(viewer, trainer, qtbot, notes,
                                                                           seen_images):
    """Labels of a CYX composite lack its C axis; their metadata says which stain made them."""
    seen = seen_images
    image, labels = discs()
    composite = np.stack([np.random.default_rng(1).random(image.shape, np.float32), image])
    img = viewer.add_image(composite, name="comp")
    lab = viewer.add_labels(labels, name="comp instances", metadata={"axes": "CYX", "channel": 1})
    trainer.image.value = img
    assert tw.unwrap(trainer.labels_layer.value) is lab, "offered as the labels that fit"
    assert trainer.add_pair(img, lab), notes.messages("error")
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    np.testing.assert_array_equal(seen[0], image)
    # Without that metadata (or with a channel the image lacks) the shapes still differ.
    for meta in ({}, {"axes": "CYX", "channel": 5}):
        notes.items.clear()
        other = viewer.add_labels(labels, name=f"other {len(meta)}", metadata=meta)
        assert not trainer.add_pair(img, other)
        assert "differ in shape" in notes.messages("error")[0]


def test_a_hyperstack_trains_on_the_channel_its_outputs_keep_one_plane_of(viewer, trainer, qtbot, notes,
                                                                           seen_images):
    """Outputs of a ZCYX image keep its channel axis with one plane (so that napari lines them up
    with the image): they pair with the image, and train on the stain that was segmented."""
    image, labels = discs()
    noise = np.random.default_rng(1).random(image.shape, np.float32)
    stack = np.stack([np.stack([noise, image])] * 2)  # Z C Y X
    img = viewer.add_image(stack, name="hyper")
    lab = viewer.add_labels(np.stack([labels[None]] * 2), name="hyper instances",
                            metadata={"axes": "ZCYX", "channel": 1})
    trainer.image.value = img
    assert tw.unwrap(trainer.labels_layer.value) is lab, "offered as the labels that fit"
    assert trainer.add_pair(img, lab), notes.messages("error")
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    np.testing.assert_array_equal(seen_images[0], np.stack([image] * 2))


def test_an_rgb_image_trains_on_the_channel_it_was_segmented_with(viewer, trainer, qtbot, notes, seen_images):
    """The Segment widget can segment one channel of an RGB layer (say the blue DAPI of a composite):
    training must show the network that channel, not the grey image."""
    seen = seen_images
    image, labels = discs()
    rng = np.random.default_rng(1)
    rgb = np.stack([rng.random(image.shape, np.float32), rng.random(image.shape, np.float32), image], axis=-1)
    img = viewer.add_image(rgb, name="rgb", rgb=True)
    lab = viewer.add_labels(labels, name="rgb instances", metadata={"axes": "YXC", "channel": 2})
    trainer.image.value = img
    assert tw.unwrap(trainer.labels_layer.value) is lab
    assert trainer.add_pair(img, lab), notes.messages("error")
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    np.testing.assert_array_equal(seen[0], image)
    # Segmented with 'all' (RGB as grey), or painted by hand: the whole RGB image, as before.
    for meta in ({"axes": "YXC", "channel": "grey"}, {}):
        other = viewer.add_labels(labels, name=f"other {len(meta)}", metadata=meta)
        assert tw.check_pair(img, other, viewer.layers).image_planes().shape == (64, 64, 3)


def test_a_one_channel_image_with_a_channel_axis_is_one_image(viewer, trainer, qtbot, notes):
    """A one-channel TIFF opens as H x W x 1 (read as YXC, as the Segment widget reads it), and a
    new Labels layer painted on it has that shape: one image, not 64 planes one pixel wide."""
    image, labels = discs()
    img = viewer.add_image(image[..., None], name="one")
    painted = viewer.add_labels(labels[..., None], name="painted")  # as napari's new Labels layer
    assert trainer.add_pair(img, painted), notes.messages("error")
    mask = viewer.add_labels(labels, name="mask")  # a mask file opened beside it
    trainer.image.value = img
    assert tw.unwrap(trainer.labels_layer.value) in (painted, mask)
    assert trainer.add_pair(img, mask), notes.messages("error")
    trainer.train()
    wait_trained(qtbot, trainer)
    assert not notes.messages("error")
    (info,) = [m for m in notes.messages("info") if "trained" in m]
    assert "on 2 images" in info and "skipped" not in info
    assert session_models()["test-net"].config.provenance["trained_on"] == ["one", "one"]


def test_a_mask_painted_in_any_one_label_is_read_as_connected_regions(viewer):
    """The widget reads masks as the command line does: one value marks nuclei, not one nucleus."""
    image, labels = discs()
    img = viewer.add_image(image, name="img")
    for value in (1, 7):
        painted = viewer.add_labels((labels > 0).astype(np.int32) * value, name=f"mask {value}")
        assert tw.check_pair(img, painted, viewer.layers).semantic, value
    instances = viewer.add_labels(labels, name="instances")
    assert not tw.check_pair(img, instances, viewer.layers).semantic


def test_options_explain_themselves_and_default_sensibly(make_napari_viewer):
    viewer = make_napari_viewer()
    _, wdg = viewer.window.add_plugin_dock_widget("napari-unet-seg", "Train (U-Net)")
    assert isinstance(wdg, TrainWidget)
    assert wdg.start_model.value == "bundled:nuclei"
    assert NEW in wdg.start_model.choices
    assert (wdg.epochs.value, wdg.steps.value, wdg.crop_size.value) == (10, 20, 256)
    assert wdg.learning_rate.value == pytest.approx(5e-4)
    assert wdg.model_name.value == "nuclei-finetuned"
    assert wdg.device.choices[0] == "auto"
    for name in ("image", "labels_layer", "add_button", "remove_button", "clear_button", "pairs",
                 "start_model", "browse", "epochs", "steps", "batch_size", "learning_rate",
                 "crop_size", "device", "model_name", "save_in", "train_button", "cancel_button"):
        assert getattr(wdg, name).tooltip, name
    assert "connected components" in wdg.labels_layer.tooltip
    assert load_model("nuclei").config.target == "three_class"  # fine-tunable


def test_segmenting_the_chosen_image_offers_its_instances(viewer, widget, trainer, qtbot):
    """The Train widget opened first: segmenting adds '<image> semantic', then '<image> instances'.
    The instances are offered (a mask would merge touching nuclei), as choosing the image offers them."""
    image, _ = discs()
    img = viewer.add_image(image, name="cells")
    assert trainer.image.value is img
    widget.image.value = img
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert trainer.labels_layer.value is viewer.layers["cells instances"]
    # A labels layer chosen by hand stays chosen when other layers come.
    trainer.labels_layer.value = viewer.layers["cells semantic"]
    viewer.add_labels(np.zeros((64, 64), np.int32), name="other")
    assert trainer.labels_layer.value is viewer.layers["cells semantic"]


def test_instances_made_before_their_mask_was_corrected_are_refused(viewer, widget, trainer, qtbot,
                                                                   notes):
    """Corrections painted into '<image> semantic' reach '<image> instances' only through
    'Update instances': until then the instances are the network's own output, and training on
    them would teach it its mistakes back. They are refused, at 'Add pair' and at 'Train'."""
    image, _ = discs()
    img = viewer.add_image(image, name="cells")
    widget.image.value = img
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    sem, inst = viewer.layers["cells semantic"], viewer.layers["cells instances"]
    assert trainer.add_pair(img, inst)  # as the run made them

    def correct(layer):
        layer.data[:6, :6] = np.where(layer.data[:6, :6] > 0, 0, 1)
        layer.refresh()

    correct(sem)
    trainer.train()
    assert not trainer.running and trainer.status.value == "Not started: see the notification."
    trainer.clear_pairs()
    assert not trainer.add_pair(img, inst)
    errors = notes.messages("error")
    assert len(errors) == 2 and all("'cells semantic' was corrected after 'cells instances'" in e
                                    and "Update instances" in e for e in errors)
    viewer.layers.selection.active = sem
    widget.update_instances()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert viewer.layers["cells instances"] is inst
    assert trainer.add_pair(img, inst)
    # Instances the user edited too hold their own work: taken as they are.
    trainer.clear_pairs()
    correct(sem)
    inst.data[60:, 60:] = 7
    inst.refresh()
    assert trainer.add_pair(img, inst)
    assert len(notes.messages("error")) == 2


def test_renaming_the_chosen_layers_keeps_them_chosen(viewer, trainer):
    for name in ("a", "b"):
        image, labels = discs()
        viewer.add_image(image, name=name)
        viewer.add_labels(labels, name=f"{name} labels")
    image, labels = viewer.layers["b"], viewer.layers["b labels"]
    trainer.image.value, trainer.labels_layer.value = image, labels
    labels.name = "b corrected"
    image.name = "b renamed"
    assert trainer.image.value is image and trainer.labels_layer.value is labels


def test_the_last_loss_is_nan_where_the_log_does_not_say(tmp_path):
    """A loss that was not a number is logged as null: the run's result says NaN, not a TypeError
    in the worker (which would end the run without a word)."""
    assert np.isnan(tw.last_loss(tmp_path))  # no log
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "train_loss": 0.25}\n')
    assert tw.last_loss(tmp_path) == 0.25
    log.write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "train_loss": null}\n')
    assert np.isnan(tw.last_loss(tmp_path))
