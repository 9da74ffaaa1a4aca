"""The Train widget: teach a U-Net from corrected labels, in a thread.

The user picks image/labels pairs from the viewer (a 2D image, or a stack whose
planes become separate samples), a starting model (the bundled one, a session
model, or a new network) and a short schedule. The engine's
:func:`~napari_unet.training.loop.iter_train` runs in a napari thread worker,
each progress record moves a napari progress bar, and Cancel stops at the next
step. The trained model is saved in its own folder and offered to every
Segment widget through :func:`~napari_unet._napari.session.register_session_model`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Generator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from ..checkpoint import CONFIG, LoadedModel
from ..device import available_devices
from ..errors import SegmentationError, describe
from ..normalize import check_dtype
from ..progress import Progress
from ..training.data import is_binary_mask
from ..training.loop import LR_FINE_TUNE, LR_NEW
from ..wording import plural
from .engine_widget import EngineWidget, Run, row, stage_name
from .jobs import JobFailed
from .model_choices import SESSION, ModelCatalog, default_models_dir
from .options import layer_array, one_channel_axis
from .outputs import OutputTracker
from .session import REGISTRY, register_session_model
from .wiring import reset_keeping_choice, unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "TrainDone", "train_job", "default_models_dir"]

log = logging.getLogger(__name__)

NEW = "new"
"""The start-model choice meaning "a fresh, untrained network"."""
NEW_DEPTH = 4
NEW_WIDTH = 12
NEW_CORE_FRACTION = 0.0

TOOLTIPS = {
    "image": "The image the network should learn from (2D, RGB, or a stack of 2D planes).",
    "labels": (
        "The corrected labels of that image, same height and width (and same planes for a stack).\n"
        "Instance labels (each nucleus its own id) teach the network to split touching nuclei.\n"
        "A mask painted in one label value (e.g. all 1) is accepted too: its objects are its connected regions\n"
        "(scikit-image connected components), so touching nuclei count as one.\n"
        "Planes of a stack whose labels are all 0 are skipped."
    ),
    "add": "Add the image/labels pair above to the training pairs.",
    "pairs": (
        "The training pairs. With an empty list, Train uses the Image and Labels chosen above.\n"
        "Select pairs and press 'Remove' to drop them."
    ),
    "remove": "Remove the selected pairs from the list.",
    "clear": "Remove every pair from the list.",
    "start": (
        "The network to start from. Fine-tuning the bundled model (or a model trained in this\n"
        "session, or saved in an earlier one) needs few corrected images; 'new network' learns\n"
        "from scratch and needs more data and epochs. A finished run switches it to the model\n"
        "just trained, so that the next run (after more corrections) continues from that model."
    ),
    "browse": "Fine-tune a model from disk: choose its config.json or weights file.",
    "epochs": "Passes over the training schedule; the model is saved after every epoch.",
    "steps": "Batches per epoch. Training time grows with epochs x steps.",
    "batch_size": "Random crops per step. Lower it if the device runs out of memory.",
    "learning_rate": (
        f"How fast the weights change. {LR_FINE_TUNE:g} suits fine-tuning (the default);\n"
        f"{LR_NEW:g} suits a new network. Too high a value can spoil a good starting model."
    ),
    "crop_size": (
        "Edge of the square random crops the network sees, in pixels. It is reduced to the\n"
        "smallest training image and rounded down to a multiple of 16 (at least 32)."
    ),
    "device": "Where training runs: 'auto' uses a GPU when there is one, else the CPU (slow).",
    "name": (
        "The new model's name: the Segment widget lists it as '<name> (this session)'.\n"
        "If the name is taken, a number is added (e.g. nuclei-finetuned-2)."
    ),
    "save_in": (
        "The model is saved in a new folder '<name>' inside this folder (created if needed).\n"
        "Models saved in the default folder are listed in later sessions as '<name> (saved)';\n"
        "from another folder, open them with 'Browse…'."
    ),
    "train": "Train on the pairs (a background thread: napari stays usable).",
    "cancel": "Stop training at the next step; the model is not added to the Segment widget.",
}


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


#: Training speed measured in this session: (device choice, network, batch size, crop size) -> seconds
#: per training step (steps after a run's first, which also warms up). Only the number of steps is
#: scaled: a step's time does not grow in proportion to its crops (fixed costs dominate small ones).
_RATES: dict[tuple[Any, ...], float] = {}


# --------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class _Pair:
    image: Image
    labels: Labels

    @property
    def label(self) -> str:
        return f"{self.image.name}  +  {self.labels.name}"


@dataclass(frozen=True)
class _PairData:
    """What the worker needs of one pair: arrays (not copies) and how to read them."""

    name: str
    image: Any  # (..., Y, X) or (..., Y, X, C) when rgb
    labels: Any  # (..., Y, X)
    rgb: bool
    labels_name: str
    semantic: bool | None = None  # None: not read yet (see check_pair_data)
    # An image segmented with a channel axis (e.g. CYX, or one channel of an RGB layer): the axis
    # its labels lack, and the channel that was segmented (None: all of them, channels last).
    # Applied in the worker.
    channel_axis: int | None = None
    channel: int | None = None

    def image_planes(self) -> Any:
        """The image as the labels see it: (..., Y, X), or (..., Y, X, C) channels last."""
        if self.channel_axis is None:
            return self.image
        moved = np.moveaxis(self.image, self.channel_axis, -1)
        return moved if self.channel is None else moved[..., self.channel]


def _spatial_shape(layer: Image) -> tuple[int, ...]:
    shape = tuple(layer_array(layer).shape)
    return shape[:-1] if layer.rgb else shape


def _labels_array(layer: Labels) -> Any:
    return layer.data[0] if layer.multiscale else layer.data


def check_pair(image: Any, labels: Any, layers: Sequence[Any], *, read_data: bool = True) -> _PairData:
    """Check one image/labels pair and describe it for the worker.

    With ``read_data=False`` only the layers and shapes are checked (instant);
    :func:`check_pair_data` then reads the labels, in the worker, and tells
    whether they are a mask (``semantic`` stays None until then).

    Raises
    ------
    SegmentationError
        With a message for the user (layer gone, wrong kind, shapes differ; labels empty
        only with ``read_data``).
    """
    for layer, kind, cls in ((image, "image", Image), (labels, "labels", Labels)):
        if layer is None:
            raise SegmentationError(
                f"There is no {kind} layer to train on. Open an image, segment it (or draw "
                "labels with a new Labels layer), correct the labels, then choose both here."
            )
        if not isinstance(layer, cls):
            raise SegmentationError(f"'{layer.name}' is not a {kind} layer: choose a {cls.__name__} layer.")
        if layer not in layers:
            raise SegmentationError(f"The layer '{layer.name}' is no longer in the viewer.")
    if len(_spatial_shape(image)) < 2:
        raise SegmentationError(f"'{image.name}' is not an image of at least 2 dimensions.")
    try:  # known from the dtype alone: refused when the pair is added, not when training starts
        check_dtype(layer_array(image).dtype)
    except SegmentationError as exc:
        raise SegmentationError(f"'{image.name}': {exc}") from None
    channel_axis, channel = _segmented_channel(image, labels)
    img_shape, lab = _labelled_shape(image, channel_axis), _pair_labels(image, labels, channel_axis)
    if img_shape != tuple(lab.shape):
        raise SegmentationError(
            f"'{image.name}' ({' x '.join(map(str, img_shape))} pixels) and '{labels.name}' "
            f"({' x '.join(map(str, lab.shape))}) differ in shape: choose the labels made for "
            "this image (e.g. '<image> instances')."
        )
    pair = _PairData(image.name, layer_array(image), lab, bool(image.rgb), labels.name,
                     channel_axis=channel_axis, channel=channel)
    return check_pair_data(pair) if read_data else pair


def _fits(image: Image, labels: Labels) -> bool:
    """Whether ``labels`` have the shape of ``image`` (without a channel axis they lack)."""
    axis = _segmented_channel(image, labels)[0]
    return tuple(_pair_labels(image, labels, axis).shape) == _labelled_shape(image, axis)


def _labelled_shape(image: Image, channel_axis: int | None) -> tuple[int, ...]:
    """The shape of ``image`` without ``channel_axis`` (None: without an RGB layer's colours)."""
    if channel_axis is None:
        return _spatial_shape(image)
    shape = tuple(layer_array(image).shape)
    return shape[:channel_axis] + shape[channel_axis + 1:]


def _pair_labels(image: Image, labels: Labels, channel_axis: int | None) -> Any:
    """The labels array, without an axis of size 1 where the image has its channel axis (a new
    Labels layer painted on an H x W x 1 image has it, and the Segment widget's outputs of a
    ZCYX image keep it, so that napari lines them up with the image)."""
    lab = _labels_array(labels)
    ndim = len(layer_array(image).shape)
    if channel_axis is not None and lab.ndim == ndim and lab.shape[channel_axis] == 1:
        return lab[(slice(None),) * channel_axis + (0,)]
    return lab


def _segmented_channel(image: Image, labels: Labels) -> tuple[int | None, int | None]:
    """(channel axis, channel) of an image whose labels were segmented from it with a C axis.

    The segmentation's metadata (on the labels layer) holds the axes it read the image
    with and the channel it used; labels of a multichannel image lack its channel axis.
    An RGB layer counts only when one of its channels was segmented (else it is turned
    grey, as segmenting it did). Without such metadata, a last axis of size 1 is the channel.
    """
    meta = labels.metadata if isinstance(labels.metadata, dict) else {}
    axes = meta.get("axes")
    shape = layer_array(image).shape
    if not isinstance(axes, str) or "C" not in axes.upper() or len(axes) != len(shape):
        return one_channel_axis(image), None
    channel = meta.get("channel")
    channel = int(channel) if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool) else None
    axis = axes.upper().index("C")
    if image.rgb and (channel is None or axis != len(shape) - 1):
        return None, None
    if channel is not None and not 0 <= channel < shape[axis]:
        return None, None
    return axis, channel


def check_pair_data(pair: _PairData) -> _PairData:
    """``pair`` with ``semantic`` set, once its labels are known to hold objects.

    Reads the whole labels array: the worker calls it for the pairs checked
    with ``read_data=False``, so that big stacks do not freeze napari.
    """
    if not np.any(pair.labels):
        raise SegmentationError(
            f"'{pair.labels_name}' has no labelled objects (all 0): paint the nuclei of "
            f"'{pair.name}' first, or segment it and correct the result."
        )
    # One rule with the command line and train(): a single painted value marks
    # where nuclei are (a mask), whichever label number was used.
    return replace(pair, semantic=is_binary_mask(pair.labels))


# ---------------------------------------------------------------------------- job
@dataclass(frozen=True)
class TrainDone:
    """Training finished; ``model`` was saved in ``folder``."""

    model: LoadedModel
    folder: Path
    n_samples: int
    n_skipped: int
    final_loss: float


def _n_planes(pair: _PairData) -> int:
    return int(np.prod(pair.labels.shape[:-2], dtype=np.int64))


def _train_message(exc: BaseException) -> str:
    if isinstance(exc, SegmentationError):
        return str(exc)
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return ("Training ran out of memory. Lower 'Batch size' or 'Crop size', or choose the "
                "CPU device.")
    return (f"Training failed unexpectedly ({describe(exc)}). "
            "Check the pairs and the options, and report this if it happens again.")


def train_job(pairs: Sequence[_PairData], options: dict[str, Any]
              ) -> Generator[Progress, None, TrainDone | JobFailed]:
    """Make samples from ``pairs`` and run :func:`~napari_unet.training.loop.iter_train`.

    Runs in a thread worker: yields the preparation's and the engine's progress
    records and never raises (a failure comes back as :class:`JobFailed`).
    ``options["init"]`` is the model to fine-tune (iter_train trains a copy: it is never changed)
    or None for a new network.
    """
    from ..training.data import plane_samples
    from ..training.loop import fit_crop_size, iter_train

    try:
        init: LoadedModel | None = options["init"]
        in_channels = init.config.in_channels if init is not None else 1
        core = init.config.core_fraction if init is not None else NEW_CORE_FRACTION
        pairs = [check_pair_data(p) if p.semantic is None else p for p in pairs]
        total = sum(_n_planes(p) for p in pairs)
        samples, skipped, done = [], 0, 0
        for pair in pairs:
            how = (f" ('{pair.labels_name}' read as a mask: each connected region is one object)"
                   if pair.semantic else "")
            for sample in plane_samples(pair.image_planes(), pair.labels, name=pair.name, in_channels=in_channels,
                                        core_fraction=core, semantic=pair.semantic):
                done += 1
                if sample is None:
                    skipped += 1
                else:
                    samples.append(sample)
                yield Progress("prepare", done, total, f"plane {done}/{total}{how}")
        if not samples:
            raise SegmentationError("Every plane of the chosen labels is empty (no label above 0; 0 and negative "
                                    "values are background): nothing to learn from. Paint the objects "
                                    "with labels 1, 2, ...")
        smallest = min(min(s.target.shape) for s in samples)
        crop = fit_crop_size(options["crop_size"], smallest,
                             depth=init.config.depth if init is not None else NEW_DEPTH)
        folder: Path = options["folder"]
        model = yield from iter_train(
            samples, folder,
            epochs=options["epochs"], steps_per_epoch=options["steps"],
            batch_size=options["batch_size"], crop_size=crop,
            learning_rate=options["learning_rate"],
            init_model=init,  # iter_train trains a copy of its network
            base_width=NEW_WIDTH, depth=NEW_DEPTH,
            device=options["device"], resume=False, name=options["name"],
            description="trained in napari with the Train (U-Net) widget",
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        if not isinstance(exc, SegmentationError):
            log.exception("napari-unet: training failed")
        return JobFailed(_train_message(exc))
    return TrainDone(model, folder, len(samples), skipped, last_loss(folder))


def last_loss(folder: Path) -> float:
    """The training loss of the run's last epoch in ``folder``, NaN when its log does not say
    (no log, or a loss that was not a number, which the log writes as null)."""
    with suppress(OSError, ValueError, KeyError, IndexError, TypeError):
        last = (folder / "train_log.jsonl").read_text().strip().splitlines()[-1]
        return float(json.loads(last)["train_loss"])
    return float("nan")


# ------------------------------------------------------------------------- widget
@dataclass(kw_only=True)
class _Run(Run):
    name: str
    folder: Path
    timing_key: tuple[Any, ...] = ()  # what the speed of its steps is stored under (see _RATES)
    layers: tuple[Any, ...] = ()  # the image and labels layers it trains on (it holds their data)
    first_step: tuple[float, int] | None = None  # (time, step) of the first and last training records
    last_step: tuple[float, int] | None = None


class TrainWidget(EngineWidget):
    """Train (or fine-tune) a U-Net on image/labels pairs of the viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose Image and Labels layers are offered as training pairs.
    """

    BROWSE_TITLE = "Fine-tune a U-Net model: choose its config.json (or weights file)"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = unwrap(napari_viewer)
        self._catalog = ModelCatalog()
        self._pairs: list[_Pair] = []
        self._run = None
        self.last_folder: Path | None = None
        self._build()
        self._connect()
        default = self._catalog.default_key()
        self.start_model.value = default if default is not None else NEW
        self._on_start_changed(self.start_model.value)
        self._on_image_changed()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        tip = TOOLTIPS
        self.image = ComboBox(label="Image", choices=self._image_choices, tooltip=tip["image"])
        self.labels_layer = ComboBox(label="Labels", choices=self._labels_choices, tooltip=tip["labels"])
        self.add_button = PushButton(text="Add pair", tooltip=tip["add"])
        self.remove_button = PushButton(text="Remove", tooltip=tip["remove"])
        self.clear_button = PushButton(text="Clear", tooltip=tip["clear"])
        pair_buttons = row(self.add_button, self.remove_button, self.clear_button)
        self.pairs = Select(label="Pairs", choices=self._pair_choices, tooltip=tip["pairs"])
        self.pairs.native.setFixedHeight(90)
        self.start_model = ComboBox(choices=self._start_choices, tooltip=tip["start"])
        self.browse = PushButton(text="Browse…", tooltip=tip["browse"])
        start_row = row(self.start_model, self.browse, label="Start from")
        self.epochs = SpinBox(label="Epochs", value=10, min=1, max=10_000, tooltip=tip["epochs"])
        self.steps = SpinBox(label="Steps per epoch", value=20, min=1, max=100_000, tooltip=tip["steps"])
        self.batch_size = SpinBox(label="Batch size", value=8, min=1, max=256, tooltip=tip["batch_size"])
        self.learning_rate = FloatSpinBox(label="Learning rate", value=LR_FINE_TUNE, min=1e-4,
                                          max=0.1, step=1e-4, tooltip=tip["learning_rate"])
        self.crop_size = SpinBox(label="Crop size (px)", value=256, min=16, max=2048, step=16,
                                 tooltip=tip["crop_size"])
        self.device = ComboBox(label="Device", choices=["auto", *available_devices()], value="auto",
                               tooltip=tip["device"])
        self.model_name = LineEdit(label="Model name", value="nuclei-finetuned", tooltip=tip["name"])
        self.save_in = FileEdit(label="Save in", mode="d", value=default_models_dir(),
                                tooltip=tip["save_in"])
        self.train_button = PushButton(text="Train", tooltip=tip["train"])
        buttons = self._job_controls(self.train_button, cancel_tooltip=tip["cancel"])
        # Filled once a run on this device and network has been timed (nothing to guess from before).
        self.estimate = Label(value="")
        self.estimate.native.setWordWrap(True)
        self.extend([self.image, self.labels_layer, pair_buttons, self.pairs, start_row, self.epochs,
                     self.steps, self.batch_size, self.learning_rate, self.crop_size, self.device,
                     self.model_name, self.save_in, buttons, self.estimate, self.progress_bar, self.status])
        from qtpy.QtWidgets import QSizePolicy

        pairs_row = self.pairs.native.parentWidget()  # the list's labelled row: keep it compact
        if pairs_row is not None:
            pairs_row.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.native.layout().addStretch()  # spare height goes below the controls

    def _connect(self) -> None:
        self.image.changed.connect(self._on_image_changed)
        self.add_button.changed.connect(lambda: self.add_pair())
        self.remove_button.changed.connect(self.remove_selected)
        self.clear_button.changed.connect(self.clear_pairs)
        self.start_model.changed.connect(self._on_start_changed)
        self.browse.changed.connect(self._browse)
        self.train_button.changed.connect(lambda: self.train())
        self.cancel_button.changed.connect(self.cancel)
        for box in (self.start_model, self.epochs, self.steps, self.batch_size, self.crop_size, self.device):
            box.changed.connect(self._show_estimate)
        self._listen()

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

    def _pair_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        return [(pair.label, i) for i, pair in enumerate(getattr(self, "_pairs", ()))]

    def _start_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        return [*self._catalog.choices(), ("new network (untrained, small U-Net)", NEW)]

    def _on_layers_changed(self, event: Any = None) -> None:
        reset_keeping_choice(self.image)  # renamed layers stay chosen
        reset_keeping_choice(self.labels_layer)
        self.pairs.reset_choices()  # names may have changed
        # A segmentation adds '<image> semantic' before '<image> instances': offer the latter.
        added = unwrap(event.value) if getattr(event, "type", None) == "inserted" else None
        self._match_labels(prefer_named=False, added=added)

    def _on_layer_removed(self, event: Any) -> None:
        gone = unwrap(event.value)
        kept = [p for p in self._pairs if gone is not p.image and gone is not p.labels]
        if len(kept) != len(self._pairs):
            dropped = len(self._pairs) - len(kept)
            self._pairs = kept
            self.pairs.reset_choices()
            run = self._run
            # The worker holds the data it was given: taking the pair out of the list stops nothing.
            going_on = ("; the training in progress goes on with the data it already took from it "
                        "(press Cancel to stop it)"
                        if run is not None and any(gone is layer for layer in run.layers) else "")
            self._say_removed(f"'{gone.name}' was removed from the viewer: {plural(dropped, 'training pair')} "
                              f"using it {'was' if dropped == 1 else 'were'} removed from the list{going_on}.")

    def _on_image_changed(self, _value: Any = None) -> None:
        self._match_labels(prefer_named=True)

    def _match_labels(self, *, prefer_named: bool, added: Any = None) -> None:
        """Offer labels that fit the chosen image: its '<image> instances' first when asked (or
        when ``added`` is that layer), else keep the current labels if they fit, else take the
        first that fits."""
        image = unwrap(self.image.value)
        if image is None:
            return
        current = unwrap(self.labels_layer.value)
        fits = [layer for _, layer in self._labels_choices() if _fits(image, layer)]
        named = [layer for layer in fits if layer.name == f"{image.name} instances"]
        if named and (prefer_named or named[0] is added):
            self.labels_layer.value = named[0]
        elif fits and not any(layer is current for layer in fits):
            self.labels_layer.value = (named or fits)[0]

    @ensure_main_thread
    def _on_session_models_changed(self) -> None:
        self.start_model.reset_choices()

    def _on_start_changed(self, key: str | None) -> None:
        """A new network learns faster than a fine-tuned one should: swap the default rate."""
        value = self.learning_rate.value
        if key == NEW and math.isclose(value, LR_FINE_TUNE):
            self.learning_rate.value = LR_NEW
        elif key != NEW and math.isclose(value, LR_NEW):
            self.learning_rate.value = LR_FINE_TUNE

    def _model_box(self) -> ComboBox:
        return self.start_model

    def _timing_key(self) -> tuple[Any, ...]:
        """What a step's time depends on: device, network (depth, width, channels), batch, crop."""
        key = self.start_model.value
        network: tuple[int, ...] | None = (NEW_DEPTH, NEW_WIDTH, 1)
        if key != NEW:
            try:
                config = self._catalog.config(key)
                network = (config.depth, config.base_width, config.in_channels)
            except SegmentationError:
                network = None
        return (self.device.value, network, int(self.batch_size.value), int(self.crop_size.value))

    def _show_estimate(self, _value: Any = None) -> None:
        """The training time of the current settings, from the steps of a run timed in this session
        with the same device, network, batch and crop size; nothing when there was none."""
        per_step = _RATES.get(self._timing_key())
        if per_step is None:
            self.estimate.value = ""
            return
        steps = int(self.epochs.value) * int(self.steps.value)
        self.estimate.value = (f"Estimated training time: about {_format_eta(per_step * steps)} for "
                               f"{plural(steps, 'step')} ({per_step:.2g} s per step, measured with these settings "
                               "in this session; validation adds to it)")

    def _on_progress(self, record: Progress) -> None:
        super()._on_progress(record)
        run = self._run
        if run is not None and record.stage == "train":
            mark = (time.perf_counter(), int(record.done))
            if run.first_step is None:
                run.first_step = mark
            run.last_step = mark

    def _remember_rate(self, run: _Run) -> None:
        """Store the time of ``run``'s training steps (the first, a warm-up, left out)."""
        if run.first_step is None or run.last_step is None or run.last_step[1] <= run.first_step[1]:
            return
        steps = run.last_step[1] - run.first_step[1]
        _RATES[run.timing_key] = (run.last_step[0] - run.first_step[0]) / steps

    # ------------------------------------------------------------------- pairs
    @property
    def pair_layers(self) -> list[tuple[Image, Labels]]:
        """The training pairs in the list, as (image, labels) layers."""
        return [(p.image, p.labels) for p in self._pairs]

    def add_pair(self, image: Image | None = None, labels: Labels | None = None) -> bool:
        """Add ``image`` and ``labels`` (default: those chosen) to the pairs, if they fit."""
        image = unwrap(self.image.value if image is None else image)
        labels = unwrap(self.labels_layer.value if labels is None else labels)
        try:
            data = check_pair(image, labels, self._viewer.layers)
            self._check_not_outdated(labels)
        except SegmentationError as exc:
            show_error(str(exc))
            self.status.value = "Pair not added: see the notification."
            return False
        if any(p.image is image and p.labels is labels for p in self._pairs):
            show_info(f"'{image.name}' with '{labels.name}' is already in the list.")
            return False
        self._pairs.append(_Pair(image, labels))
        self.pairs.reset_choices()
        note = (" ('" + labels.name + "' holds one label value, so it is read as a mask: each "
                "connected region counts as one object)"
                if data.semantic else "")
        self.status.value = f"Added {image.name} + {labels.name}{note}."
        return True

    def remove_selected(self) -> None:
        """Drop the pairs selected in the list."""
        chosen = set(self.pairs.value)
        self._pairs = [p for i, p in enumerate(self._pairs) if i not in chosen]
        self.pairs.reset_choices()

    def clear_pairs(self) -> None:
        """Empty the list of pairs."""
        self._pairs = []
        self.pairs.reset_choices()

    # ------------------------------------------------------------------- train
    def train(self) -> None:
        """Train on the pairs (or the chosen image and labels) in a background thread."""
        if self._run is not None:
            show_info("Training is already running: wait for it or press Cancel.")
            return
        try:
            pairs = self._checked_pairs()
            options = self._options()
            name, folder = self._reserve_folder()
        except SegmentationError as exc:
            show_error(str(exc))
            self.status.value = "Not started: see the notification."
            return
        options.update(name=name, folder=folder)
        used = tuple(layer for p in self._pairs for layer in (p.image, p.labels)) or \
            (unwrap(self.image.value), unwrap(self.labels_layer.value))
        worker = create_worker(train_job, pairs, options, _start_thread=False, _ignore_errors=True)
        total = options["epochs"] * options["steps"]
        self._set_busy(True)
        self.status.value = f"Preparing {plural(len(pairs), 'training pair')} for '{name}'…"
        self._start(_Run(worker=worker, name=name, folder=folder,
                         pbar=progress(total=total, desc=f"Training {name}"),
                         timing_key=self._timing_key(), layers=used,
                         on_orphaned=partial(_remove_if_no_model, folder)),
                    self._on_returned)

    def _checked_pairs(self) -> list[_PairData]:
        """The pairs to train on, their layers and shapes checked; the worker reads their labels."""
        layers = self._viewer.layers
        if self._pairs:
            pairs = [check_pair(p.image, p.labels, layers, read_data=False) for p in self._pairs]
            for p in self._pairs:
                self._check_not_outdated(p.labels)
            return pairs
        image, labels = unwrap(self.image.value), unwrap(self.labels_layer.value)
        if image is None and labels is None:
            raise SegmentationError(
                "There are no training pairs: open an image and its corrected labels, choose "
                "them under 'Image' and 'Labels', and press 'Add pair' (or just 'Train')."
            )
        pair = check_pair(image, labels, layers, read_data=False)
        self._check_not_outdated(labels)
        return [pair]

    def _check_not_outdated(self, labels: Labels) -> None:
        """Refuse instances the Segment widget made from a mask the user has corrected since:
        they lack the corrections, and the network would learn its own mistakes back."""
        mask = OutputTracker.of(self._viewer).outdated_mask(labels)
        if mask is not None:
            raise SegmentationError(
                f"'{mask.name}' was corrected after '{labels.name}' were made from it, so "
                f"'{labels.name}' lack the corrections: press 'Update instances' in the Segment "
                "(U-Net) widget first, then try again."
            )

    def _options(self) -> dict[str, Any]:
        key = self.start_model.value
        init = None
        if key != NEW:
            init = self._catalog.get(key)
            if init.config.target != "three_class" or init.config.spatial_dims != 2:
                raise SegmentationError(
                    f"'{init.name}' cannot be fine-tuned here (only 2D background/interior/"
                    "boundary models can): start from the bundled model or a new network."
                )
        return {
            "init": init,
            "epochs": int(self.epochs.value),
            "steps": int(self.steps.value),
            "batch_size": int(self.batch_size.value),
            "learning_rate": float(self.learning_rate.value),
            "crop_size": int(self.crop_size.value),
            "device": self.device.value,
        }

    def _reserve_folder(self) -> tuple[str, Path]:
        """A model name and a new, empty folder for it (numbered when taken)."""
        wanted = re.sub(r"[^\w.-]+", "_", str(self.model_name.value).strip()).strip("._")
        if not wanted:
            raise SegmentationError("Give the model a name (letters, digits, '-', '_' or '.').")
        text = str(self.save_in.value or "").strip()
        parent = Path(text).expanduser() if text not in ("", ".") else default_models_dir()
        taken = set(REGISTRY.snapshot())
        number = 1
        while True:
            name = wanted if number == 1 else f"{wanted}-{number}"
            folder = parent / name
            if name not in taken and not folder.exists():
                break
            number += 1
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise SegmentationError(
                f"Cannot create the model folder {folder} ({exc.strerror or exc}): choose "
                "another folder under 'Save in'."
            ) from None
        return name, folder.resolve()

    def _set_busy(self, busy: bool) -> None:
        self.train_button.enabled = not busy
        self.browse.enabled = not busy
        self.cancel_button.enabled = busy
        if busy:
            self.progress_bar.max, self.progress_bar.value = 1, 0

    def _status_text(self, record: Progress) -> str:
        eta = _format_eta(getattr(record, "eta_s", float("nan")))
        return f"{stage_name(record.stage)}: {record.message}" + (f", about {eta} left" if eta else "")

    def _phase(self, record: Progress) -> str:
        # The bar counts prepared planes, then training steps.
        return "prepare" if record.stage == "prepare" else "train"

    def _describe(self, run: Run, record: Progress) -> str:
        return f"Training {run.name}: {record.message}"

    def _on_returned(self, result: TrainDone | JobFailed) -> None:
        run = self._run
        if run is None:
            return
        run.answered = True
        if isinstance(result, JobFailed):
            show_error(result.message + _kept_model_note(run.folder))
            self.status.value = "Failed: see the notification."
            _remove_if_no_model(run.folder)
            return
        self._remember_rate(run)
        self._show_estimate()
        register_session_model(run.name, result.model)
        self.last_folder = result.folder
        took = _format_eta(time.perf_counter() - run.started)  # "6 s", "2 min 05 s", not "0.1 min"
        skipped = f" ({plural(result.n_skipped, 'empty plane')} skipped)" if result.n_skipped else ""
        loss = f", final loss {result.final_loss:.3f}" if math.isfinite(result.final_loss) else ""
        show_info(
            f"Model '{run.name}' trained on {plural(result.n_samples, 'image')}{skipped}{loss}. "
            f"Saved in {result.folder}. {self._offer_to_segment(run.name)} {_later_note(result.folder)}"
        )
        self.status.value = f"'{run.name}' saved in {result.folder} ({took}). {self._continue_from(run.name)}".rstrip()

    def _continue_from(self, name: str) -> str:
        """Choose the model ``name`` just trained under 'Start from' (teaching in rounds: the next run
        goes on from it); say so."""
        key = SESSION + name
        self.start_model.reset_choices()
        if key not in self.start_model.choices:  # withdrawn at once (by another plugin, say)
            return ""
        self.start_model.value = key
        return (f"'Start from' is now '{name} (this session)': correct more and train again to "
                "continue from it.")

    def _offer_to_segment(self, name: str) -> str:
        """Choose the model ``name`` just trained in this viewer's Segment widgets; say what happened."""
        from .widget import (
            segment_widgets,  # the Segment widget's module is the larger one
        )

        label = f"'{name} (this session)'"
        widgets = segment_widgets(self._viewer)
        if not widgets:
            return f"Choose {label} in the Segment (U-Net) widget to use it."
        if all([w.choose_model(SESSION + name) for w in widgets]):  # noqa: C419 - a list: every widget tries, no short-circuit
            return (f"The Segment (U-Net) widget now uses {label}; the "
                    "bundled default stays in its model list.")
        return (f"The Segment (U-Net) widget is segmenting: choose {label} there when it has "
                "finished.")

    def _on_aborted(self) -> None:
        run = self._run
        if run is None:
            return
        run.answered = True
        where = _kept_model_note(run.folder)
        _remove_if_no_model(run.folder)
        show_info(f"Training of '{run.name}' cancelled: it was not added to the model list.{where}")
        self.status.value = "Cancelled."


def _later_note(folder: Path) -> str:
    """How a later napari session finds the model saved in ``folder``."""
    with suppress(OSError):
        if folder.parent.resolve() == default_models_dir().resolve():
            return f"In a later session the model lists offer it as '{folder.name} (saved)'."
    return f"In a later session open it there with 'Browse…' ({folder / CONFIG})."


def _kept_model_note(folder: Path) -> str:
    """What a stopped run left behind: the model of its last finished epoch, if one was saved."""
    if not (folder / CONFIG).is_file():
        return ""
    return (f" The model of the last finished epoch stays in {folder}; open it with 'Browse…' "
            "if you want it.")


def _remove_if_no_model(folder: Path) -> None:
    """Remove a model folder this widget made when no model was saved in it."""
    if folder.is_dir() and not (folder / CONFIG).is_file():
        with suppress(OSError):
            shutil.rmtree(folder)


