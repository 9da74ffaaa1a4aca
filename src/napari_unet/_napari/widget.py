"""The Segment widget: choose an image, a model and options; run the U-Net in a thread.

The engine's generator runs in a napari thread worker; each progress record it
yields moves a napari progress bar and the widget's own bar, and Cancel stops
the work at the next tile. Results become Labels layers placed like the source
image (see :mod:`.layers`); outputs the user has edited are never overwritten
(see :mod:`.outputs`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from superqt.utils import ensure_main_thread

from ..axes import labelled_last
from ..device import available_devices
from ..errors import SegmentationError
from ..instances import min_object_size
from ..wording import plural
from .engine_widget import EngineWidget, Run, row
from .jobs import (
    JobDone,
    JobFailed,
    Measured,
    Relabelled,
    measure_job,
    relabel_job,
    segment_job,
)
from .layers import (
    ROLES,
    channel_data_axis,
    channel_placeholder,
    create_layer,
    label_layer_data,
    placeholder_axis,
    segmentation_layer_data,
    spatial_kwargs,
    tracks_layer_data,
)
from .model_choices import SESSION, ModelCatalog
from .options import (
    ALL_CHANNELS,
    METHOD_CHOICES,
    MODE_CHOICES,
    NORMALIZE_CHOICES,
    TILE_CHOICES,
    TOOLTIPS,
    axes_choices,
    channel_choices,
    layer_array,
    link_time_tooltip,
    resolve_axes,
)
from .outputs import OutputTracker, RunRecord, fingerprint
from .reader import OPENED_FROM
from .session import REGISTRY
from .spinbox import DecimalSpinBox
from .wiring import reset_keeping_choice, unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget", "segment_widgets"]

_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # viewer -> WeakSet of its Segment widgets


def segment_widgets(viewer: Any) -> list[SegmentWidget]:
    """The Segment widgets open in ``viewer`` (a closed dock's widget is no longer listed)."""
    return list(_OPEN.get(unwrap(viewer), ()))

@dataclass(kw_only=True)
class _Run(Run):
    """One piece of work in flight (a segmentation or an instance update)."""

    kind: str
    source: Image
    source_name: str
    source_removed: bool = False  # the image (or a layer of ``reads``) was removed
    source_data: Any = None  # the array being segmented (the layer's own object, not a copy)
    reads: tuple[Labels, ...] = ()  # the labels it works on: the instances measured, an update's pair
    axes_guessed: bool = False  # the axes were 'auto': guessed from the layer's shape


@dataclass
class _Table:
    """The last measurements, which 'Save table…' writes: of which layer, and of which labels."""

    table: dict[str, np.ndarray]
    layer: weakref.ref  # the instances layer measured (held weakly)
    digest: str | None  # the fingerprint of its labels as measured
    source_name: str  # the image's name, for the file's default name


class SegmentWidget(EngineWidget):
    """Segment nuclei (or cells) in an image layer with a U-Net.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are offered and receive the results (napari
        passes it when the widget is opened from the Plugins or Layers menu).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = unwrap(napari_viewer)
        self._catalog = ModelCatalog()
        self._tracker = OutputTracker.of(self._viewer)  # shared with a widget closed before
        self._run = None
        self._one_channel_model = True  # a channel is picked only for a 1-channel model
        self._applied: object = None  # the session model whose tuned values the options hold
        self._table: _Table | None = None  # the last measurements ('Save table…')
        self._build()
        self._connect()
        default = self._catalog.default_key()
        if default is not None:
            self.model.value = default
        self._on_model_changed(default)
        _OPEN.setdefault(self._viewer, weakref.WeakSet()).add(self)

    def _disconnect(self) -> None:
        super()._disconnect()
        _OPEN.get(self._viewer, set()).discard(self)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        tip = TOOLTIPS
        self.image = ComboBox(label="Image", choices=self._image_choices, tooltip=tip["image"])
        self.model = ComboBox(choices=self._model_choices, tooltip=tip["model"])
        self.browse = PushButton(text="Browse…", tooltip=tip["browse"])
        model_row = row(self.model, self.browse, label="Model")
        self.axes = ComboBox(label="Axes", choices=self._axes_choices, tooltip=tip["axes"])
        self.channel = ComboBox(label="Channel", choices=self._channel_choices, tooltip=tip["channel"])
        self.mode = ComboBox(label="Mode", choices=MODE_CHOICES, value="auto", tooltip=tip["mode"])
        self.device = ComboBox(label="Device", choices=["auto", *available_devices()],
                               value="auto", tooltip=tip["device"])
        self.tile_size = ComboBox(label="Tile size", choices=TILE_CHOICES, value=0,
                                  tooltip=tip["tile_size"])
        # Each number shows the digits it has: scale 1 or 1.25, percentiles 1 and 99.8 (99.9995
        # when a model says so), thresholds 0.50 or a tuned 0.375; min size is a whole number.
        self.scale = DecimalSpinBox(1.0, min=0.1, max=10.0, step=0.25, decimals=2, tooltip=tip["scale"])
        self.auto_scale = CheckBox(text="auto", value=False, tooltip=tip["auto_scale"])
        scale_row = row(self.scale, self.auto_scale, label="Scale")
        self.low_percentile = DecimalSpinBox(1.0, min=0.0, max=100.0, step=0.5, decimals=3,
                                             tooltip=tip["percentiles"])
        self.high_percentile = DecimalSpinBox(99.8, min=0.0, max=100.0, step=0.05, decimals=4,
                                              tooltip=tip["percentiles"])
        self.normalize_per = ComboBox(choices=NORMALIZE_CHOICES, value="stack", tooltip=tip["normalize_per"])
        percentile_row = row(self.low_percentile, self.high_percentile, self.normalize_per, label="Percentiles")
        self.threshold = DecimalSpinBox(0.5, label="Threshold", min=0.001, max=0.999, step=0.05,
                                        decimals=3, least=2, tooltip=tip["threshold"])
        self.instance_method = ComboBox(label="Objects", choices=METHOD_CHOICES, value="watershed",
                                        tooltip=tip["instance_method"])
        self.seed_threshold = DecimalSpinBox(0.5, label="Seed threshold", min=0.001, max=0.999, step=0.05,
                                             decimals=3, least=2, tooltip=tip["seed_threshold"])
        self._seeded_model = False  # the chosen model tells interiors from boundaries (three_class)
        self.min_size = SpinBox(label="Min size (px)", value=10, min=0, max=10_000_000,
                                tooltip=tip["min_size"])
        self.link_time = CheckBox(text="Link time points", value=False, tooltip=tip["link_time"])
        self.run_button = PushButton(text="Run", tooltip=tip["run"])
        buttons = self._job_controls(self.run_button, cancel_tooltip=tip["cancel"])
        self.update_button = PushButton(text="Update instances", tooltip=tip["update"])
        self.measure_button = PushButton(text="Measure objects", tooltip=tip["measure"])
        self.save_button = PushButton(text="Save table…", enabled=False, tooltip=tip["save_table"])
        self.extend([self.image, model_row, self.axes, self.channel, self.mode, self.device, scale_row, self.tile_size,
                     percentile_row, self.threshold, self.instance_method, self.seed_threshold, self.min_size, self.link_time,
                     buttons,
                     row(self.update_button, self.measure_button, self.save_button), self.progress_bar,
                     self.status])

    def _connect(self) -> None:
        self.image.changed.connect(self._on_image_changed)
        # Qt's signal: magicgui's `changed` is not emitted for the "auto" choice (None).
        self.axes.native.currentIndexChanged.connect(self._on_axes_chosen)
        self.model.changed.connect(self._on_model_changed)
        self.browse.changed.connect(self._browse)
        self.auto_scale.changed.connect(self._on_auto_scale_changed)
        self.instance_method.changed.connect(self._on_seed_option)
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)
        self.update_button.changed.connect(self.update_instances)
        self.measure_button.changed.connect(self.measure)
        self.save_button.changed.connect(self.save_table)
        self._listen()

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        return self._catalog.choices()

    def _axes_choices(self, _widget: Any = None) -> list[tuple[str, str | None]]:
        return axes_choices(self.image.value if hasattr(self, "image") else None)

    def _channel_choices(self, _widget: Any = None) -> list[tuple[str, int | None]]:
        layer = self.image.value if hasattr(self, "image") else None
        axes = self.axes.value if hasattr(self, "axes") else None
        choices = channel_choices(layer, axes)
        if len(choices) > 1 and not self._one_channel_model:
            return [(ALL_CHANNELS, None)]  # a multichannel model: nothing to pick
        return choices

    def _on_layers_changed(self, event: Any = None) -> None:
        added = getattr(event, "value", None) if getattr(event, "type", None) == "inserted" else None
        if isinstance(added, Labels) and added not in _FORGET and added.features.shape[1] and \
                isinstance(added.metadata, dict) and added.metadata.get("output") == "instances":
            # A copy of measured instances (napari's Duplicate layer) carries their values: they
            # must go at its first edit too, as the original's do.
            _forget_features_on_edit(added)
        if isinstance(added, Labels) and isinstance(added.metadata, dict) and \
                added.metadata.get("output") == "instances" and isinstance(added.metadata.get(OPENED_FROM), str):
            # Instances opened from a file, as opened: the labels an update compares the user's edits with.
            _AS_OPENED[added] = np.array(added.data, copy=True)
        reset_keeping_choice(self.image)  # a renamed image stays chosen
        self.axes.reset_choices()
        self._on_axes_changed()

    def _on_image_changed(self, _value: Any = None) -> None:
        # The axes and channel describe one image: another image starts from "auto" again.
        self.axes.reset_choices()
        self.axes.value = None
        self.channel.reset_choices()
        self.channel.value = None
        self._on_axes_changed()

    def _on_axes_chosen(self, _value: Any = None) -> None:
        # Channel numbers mean another axis under other axes: start from "all" again.
        self.channel.value = None
        self._on_axes_changed()

    def _on_axes_changed(self, _value: Any = None) -> None:
        """Offer a channel choice only for images with a channel axis (keep a choice that still
        fits), and 'Link time points' only for images with a time axis. Both stay in place,
        greyed out, when they do not apply: the rows below them do not move."""
        layer = self.image.value
        axes = resolve_axes(layer, self.axes.value) if layer is not None else None
        self.link_time.enabled = axes is not None and "T" in axes
        self.link_time.tooltip = link_time_tooltip(axes)
        chosen = self.channel.value
        self.channel.reset_choices()
        offered = len(self.channel.choices) > 1
        self.channel.value = chosen if offered and chosen in self.channel.choices else None
        self.channel.enabled = offered

    @ensure_main_thread
    def _on_session_models_changed(self) -> None:
        self.model.reset_choices()
        key = self.model.value
        if self._session_model(key) is not self._applied:
            self._on_model_changed(key)  # the chosen name was registered again: a new model

    @staticmethod
    def _session_model(key: str | None) -> object:
        """The model registered under a session key; None for the other keys."""
        return REGISTRY.get(key[len(SESSION):]) if isinstance(key, str) and key.startswith(SESSION) else None

    def _on_model_changed(self, key: str | None) -> None:
        """Take the chosen model's tuned post-processing values as the option defaults."""
        self._applied = self._session_model(key)
        if key is None:
            self.status.value = "No bundled model here: use 'Browse…' to open a model folder."
            return
        try:
            config = self._catalog.config(key)
        except SegmentationError as exc:
            show_error(str(exc))
            return
        post = config.postprocess
        self.low_percentile.value = float(config.normalization["low"])
        self.high_percentile.value = float(config.normalization["high"])
        # A channel is picked only for a 1-channel model; a multichannel one takes them all.
        self._one_channel_model = config.in_channels == 1
        self._on_axes_changed()
        # Any threshold in (0, 1) is valid in a config; the box holds 0.001-0.999.
        threshold = float(post.get("threshold", self.threshold.value))
        self.threshold.value = min(max(threshold, self.threshold.min), self.threshold.max)
        self.min_size.value = int(post.get("min_size", self.min_size.value))
        if post.get("instance_method") in {v for _, v in METHOD_CHOICES}:
            self.instance_method.value = post["instance_method"]
        self._seeded_model = config.target == "three_class"
        seed = float(post.get("seed_threshold", self.seed_threshold.value))
        self.seed_threshold.value = min(max(seed, self.seed_threshold.min), self.seed_threshold.max)
        self._on_seed_option()
        # "auto" needs the model's reference object size; a model without one runs at a fixed scale.
        self.auto_scale.enabled = "auto_scale_area" in post
        self.auto_scale.value = self.auto_scale.enabled and post.get("scale") == "auto"
        default = post.get("scale", 1.0)
        if not self.auto_scale.value and not isinstance(default, str):
            self.scale.value = float(default)

    def _on_auto_scale_changed(self, auto: bool) -> None:
        self.scale.enabled = not auto

    def _on_seed_option(self, _value: Any = None) -> None:
        """Seeds split objects only for a three-class model splitting touching nuclei."""
        self.seed_threshold.enabled = self._seeded_model and self.instance_method.value == "watershed"

    def _model_box(self) -> ComboBox:
        return self.model

    def choose_model(self, key: str) -> bool:
        """Choose the model ``key`` (one just trained, say) and take its tuned values, as picking
        it in the list does. False, choosing nothing, while a segmentation runs (its results are
        the chosen model's) or when ``key`` is not on offer."""
        if self._run is not None and getattr(self._run, "kind", "") == "segment":
            return False
        self.model.reset_choices()
        if key not in self.model.choices:
            return False
        self.model.value = key  # no change (already chosen) or a changed event that applies it
        return True

    # --------------------------------------------------------------------- run
    def run(self, layer: Layer | None = None) -> None:
        """Segment ``layer`` (default: the chosen image) in a background thread."""
        if self._run is not None:
            show_info("A segmentation is already running: wait for it or press Cancel.")
            return
        layer = unwrap(self.image.value if layer is None else layer)
        try:
            self._check_image(layer)
            options = self._options(layer)
        except SegmentationError as exc:
            show_error(str(exc))
            self.status.value = "Not started: see the notification."  # not the last run's count
            return
        worker = create_worker(segment_job, layer_array(layer), options, axes_guessed=self.axes.value is None,
                               _start_thread=False, _ignore_errors=True)
        self._set_busy(True, cancellable=True)
        self.status.value = f"Segmenting {layer.name}…"
        self._start(_Run(kind="segment", source=layer, source_name=layer.name, worker=worker,
                         source_data=layer_array(layer), axes_guessed=self.axes.value is None,
                         pbar=progress(total=0, desc=f"U-Net: {layer.name}")),
                    self._on_segmented)

    def _check_image(self, layer: Any) -> None:
        if layer is None:
            raise SegmentationError(
                "There is no image layer to segment. Open an image (or File > Open Sample > "
                "Nuclei (DSB2018) (U-Net Segmentation)) and choose it under 'Image'."
            )
        if isinstance(layer, Labels):
            raise SegmentationError(
                f"'{layer.name}' is a Labels layer (a mask), not an image: choose an image layer to segment."
            )
        if not isinstance(layer, Image):
            raise SegmentationError(
                f"'{layer.name}' is a {type(layer).__name__} layer, not an image: choose an image layer."
            )
        if layer not in self._viewer.layers:
            raise SegmentationError(f"The layer '{layer.name}' is no longer in the viewer.")

    def _options(self, layer: Image) -> dict[str, Any]:
        axes = resolve_axes(layer, self.axes.value)
        return {
            "model": self._catalog.get(self.model.value),
            "axes": axes,
            "channel": self.channel.value,
            "mode": self.mode.value,
            "device": self.device.value,
            # None lets the engine choose; its default overlap shrinks with small tiles.
            "tile_size": int(self.tile_size.value) or None,
            "scale": "auto" if self.auto_scale.value else float(self.scale.value),
            "percentiles": self._percentiles(),
            "normalize_per": self.normalize_per.value,
            "threshold": float(self.threshold.value),
            "instance_method": self.instance_method.value,
            "seed_threshold": float(self.seed_threshold.value) if self._seeded_model else None,
            "min_size": int(self.min_size.value),
            # Disabled (and ignored) without a time axis; kept for the next time series.
            "link_time": bool(self.link_time.value) and "T" in (axes or ""),
            "keep_probabilities": False,
        }

    def _percentiles(self) -> tuple[float, float]:
        low, high = float(self.low_percentile.value), float(self.high_percentile.value)
        if low >= high:
            raise SegmentationError(
                f"The percentiles are {low:g} and {high:g}: the first (black) must be below the second "
                "(white), e.g. 1 and 99.8.")
        return low, high

    def _set_busy(self, busy: bool, *, cancellable: bool = False) -> None:
        self.run_button.enabled = not busy
        self.update_button.enabled = not busy
        self.measure_button.enabled = not busy
        self.save_button.enabled = not busy and self._table_layer() is not None
        self.cancel_button.enabled = busy and cancellable
        if busy:
            self.progress_bar.max, self.progress_bar.value = 1, 0

    def _on_layer_removed(self, event: Any) -> None:
        if self._table is not None and self._table.layer() is event.value:
            self._table = None  # its labels are gone: nothing left that the table describes
            self.save_button.enabled = False
        run = self._run
        if run is not None and (event.value is run.source or any(event.value is layer for layer in run.reads)):
            run.source_removed = True
            run.answered = True  # progress records still queued must not rewrite the status
            run.worker.quit()
            name = run.source_name if event.value is run.source else event.value.name
            what = {"segment": "segmentation", "update": "instance update"}.get(run.kind, "measurement")
            # A measurement adds no layer of its own: its table, values on hover and tracks are not kept.
            left = "nothing was kept" if run.kind == "measure" else "nothing was added"
            gone = event.value  # the note says what is left when it is shown (the pair removed at once)
            self._say_removed(lambda: f"'{name}' was removed from the viewer: its {what} was stopped and {left}"
                              + self._left_note(run, gone))
            self.status.value = f"Stopped: '{name}' was removed."
            self.progress_bar.value = 0

    def _left_note(self, run: _Run, gone: Layer) -> str:
        """The end of the note that ``gone``, which ``run`` works on, was removed: what the run
        leaves as it was, and what to do."""
        found = self._tracker.owner(run.source, gone) if run.kind == "update" else None
        if found is None:
            return "."
        pair, role = found
        other = pair.layer("instances" if role == "semantic" else "semantic")
        if other is None or other not in self._viewer.layers:
            return "."
        if role == "instances":
            return f". Press 'Update instances' again to make new instances from '{other.name}'."
        return (f"; '{other.name}' is left as it was. To update instances again, run the segmentation, "
                "correct the new mask, then press 'Update instances'.")

    def _on_segmented(self, result: JobDone | JobFailed) -> None:
        run = self._run
        if run is None or run.source_removed:
            return
        run.answered = True
        if isinstance(result, JobFailed):
            show_error(result.message)
            self.status.value = "Failed: see the notification."
            return
        if run.source not in self._viewer.layers:
            show_warning(f"'{run.source_name}' was removed from the viewer while it was "
                         "being segmented: the result was discarded.")
            return
        if layer_array(run.source) is not run.source_data:  # new data, of any shape, were assigned
            show_warning(f"The data of '{run.source.name}' were replaced while it was being segmented: "
                         "the result, made for the old data, was discarded. Press 'Run' again.")
            self.status.value = "Discarded: the image changed."
            return
        seg = result.segmentation
        # The axes the engine read the image with (the widget's guess may have been None).
        # A channel axis after others stays, one plane deep, so that the outputs line up with the image.
        keep = channel_placeholder(run.source, seg.metadata.get("axes", ""))
        drop_axis = channel_data_axis(run.source, seg.metadata.get("axes", "")) if keep is None else None
        spatial, notes = spatial_kwargs(run.source, drop_axis=drop_axis, span_axis=keep)
        tuples = segmentation_layer_data(seg, source_name=run.source.name, spatial=spatial, notes=notes,
                                         placeholder=keep)
        label_ndim = sum(a in "ZYX" for a in seg.axes)
        published = self._tracker.publish(run.source, tuples, label_ndim=label_ndim, metadata=seg.metadata,
                                          digests=result.digests)
        meta = seg.metadata
        self._remember_instances(run.source, result.instances_copy, {
            "method": meta["instance_method"], "min_size": int(meta["min_size"]),
            "fill_holes": bool(meta["fill_holes"]), "linked": bool(meta["linked_over_time"])})
        kept = _kept_note(published.kept, published.renamed, list(published.layers.values()))
        if kept:
            show_info(kept)
        count = seg.metadata["n_objects"]
        times = seg.instances.shape[seg.axes.index("T")] if "T" in seg.axes else 1
        where = f" over {times} time points" if times > 1 else ""
        # Linked over time, each id is a nucleus followed over the series: say how many.
        where += f", in {plural(result.tracks, 'track')}" if result.tracks is not None else ""
        few = _few_planes_note(seg.axes, seg.semantic.shape, meta.get("axes", "")) if run.axes_guessed else ""
        said = " ".join(note for note in (kept, few) if note)  # each a sentence of its own
        self.status.value = (f"{plural(count, 'object')} in {run.source.name}{where} "
                             f"({time.perf_counter() - run.started:.1f} s)" + (f". {said}" if said else ""))

    def _on_aborted(self) -> None:
        run = self._run
        if run is not None:
            run.answered = True
        if run is not None and not run.source_removed:
            show_info("Segmentation cancelled: no layers were added.")
            self.status.value = "Cancelled."

    # --------------------------------------------------------- update instances
    def _working_source(self) -> Image | None:
        """The image whose results the user is working on: the one that made the selected
        layer (the user may have gone back to an earlier image's result), else the chosen image.
        A SegmentationError when the selected result's image was removed (not another image's pair)."""
        active = self._viewer.layers.selection.active
        made = self._tracker.source_of(active) if active is not None else None
        if made is not None and made not in self._viewer.layers:
            raise SegmentationError(
                f"'{active.name}' was made from '{made.name}', which is no longer in the viewer: open "
                f"that image again and segment it, or select a result of an image that is still here.")
        return made if made is not None else unwrap(self.image.value)

    def _adopt_opened(self) -> bool:
        """Take the results opened from files (napari-unet's reader) as pairs of their image.

        A result's semantic and instances files, from one folder, make one pair; its image is
        the image layer of the name the files carry (``nuclei`` for ``nuclei_instances.tif``),
        else the chosen one. False (the user told what to do) when the selected layer is such
        a result and there is no image to pair it with.
        """
        pairs: dict[tuple[str, str], dict[str, Labels]] = {}
        for layer in self._viewer.layers:
            meta = layer.metadata if isinstance(layer, Labels) and isinstance(layer.metadata, dict) else {}
            opened = meta.get(OPENED_FROM)
            if isinstance(opened, str) and meta.get("output") in ROLES and self._tracker.source_of(layer) is None:
                key = (os.path.dirname(opened), str(meta.get("source_layer")))
                pairs.setdefault(key, {})[meta["output"]] = layer
        images = {layer.name: layer for layer in self._viewer.layers if isinstance(layer, Image)}
        for (_, name), layers in pairs.items():
            source = images.get(name) or unwrap(self.image.value)
            if source is not None:
                meta = {k: v for k, v in next(iter(layers.values())).metadata.items()
                        if k not in ("output", OPENED_FROM)}
                self._tracker.adopt(source, layers, metadata=meta, defaults={
                    "method": self.instance_method.value, "min_size": int(self.min_size.value)},
                    opened=_AS_OPENED.pop(layers["instances"], None) if "instances" in layers else None)
                continue
            active = self._viewer.layers.selection.active
            if any(layer is active for layer in layers.values()):
                show_error(f"'{active.name}' was opened from {active.metadata[OPENED_FROM]}: open its "
                           f"image ({name}) too, then press the button again.")
                return False
        return True

    def update_instances(self) -> None:
        """Recompute the instances from the (edited) semantic mask, without the network."""
        if self._run is not None:
            show_info("Wait for the running segmentation to finish (or cancel it) first.")
            return
        if not self._adopt_opened():
            return
        try:
            source = self._working_source()
        except SegmentationError as exc:
            show_error(str(exc))
            return
        # The pair the user is working on (the selected layer's), else the newest still shown.
        record = (self._tracker.pair_for(source, "semantic", self._viewer.layers.selection.active)
                  if source is not None else None)
        semantic = record.layer("semantic") if record is not None else None
        active = self._viewer.layers.selection.active
        if semantic is None and source is not None and active is not None and \
                self._tracker.owner(source, active) is not None and \
                self._tracker.pair_for(source, "semantic") is not None:
            show_error(f"The semantic mask of the result '{active.name}' belongs to was removed: select "
                       f"the mask of another result of {source.name} in the layer list, then press "
                       "'Update instances' again.")
            return
        if semantic is None and source is not None and self._tracker.record(source) is not None:
            show_error(f"The semantic masks of {source.name} were removed from the viewer: run the "
                       "segmentation again, correct its mask, then press 'Update instances'.")
            return
        if semantic is None:
            name = source.name if source is not None else "the image"
            show_error(f"There is no semantic mask of {name} to update from: run the "
                       "segmentation first, correct '<image> semantic' with the brush, "
                       "then press 'Update instances'.")
            return
        keep = placeholder_axis(semantic)  # the results' arrays lack the one-plane channel axis
        mask = np.array(semantic.data, copy=True)
        if keep is not None:
            mask = np.squeeze(mask, axis=keep)
        params = {
            "method": self.instance_method.value,
            "min_size": int(self.min_size.value),
            "fill_holes": bool(record.metadata.get("fill_holes", True)),
            "ndim": min(record.label_ndim, mask.ndim),
            # A 2D model's planes labelled in 3D: its min_size is a cross-section's area, as in the run.
            "min_size_is_area": record.metadata.get("mode", "2d") == "2d",
        }
        out_axes = str(record.metadata.get("axes") or "").replace("C", "")
        if len(out_axes) != mask.ndim:
            out_axes = ""
        # 'Link time points' is greyed out when the chosen image has no T: a time series' result
        # (selected in the layer list) then keeps the link setting it was made with.
        made_linked = record.instance_params.get("linked", record.metadata.get("linked_over_time", False))
        wanted = self.link_time.value if self.link_time.enabled else made_linked
        linked = bool(wanted) and "T" in out_axes
        made = {"method": params["method"], "min_size": params["min_size"],
                "fill_holes": params["fill_holes"], "linked": linked}
        # Objects the edit left alone keep their ids and split, unless the options changed.
        same = (record.instances is not None and record.instances.shape == mask.shape
                and record.instance_params == made)
        # Ids the user painted, filled or erased on the instances layer are taken as they are (the
        # worker copies and compares: a copy of a big stack here would stall the GUI).
        edited = self._instances_as_shown(record, mask.shape) if same else None
        order = _label_axes_last(out_axes, params["ndim"], mask.ndim)
        block = tuple(mask.shape[i] for i in order[mask.ndim - params["ndim"]:])
        min_volume = (min_object_size(params["min_size"], block, min_size_is_area=params["min_size_is_area"])
                      if params["ndim"] == 3 else None)
        worker = create_worker(relabel_job, mask, params, previous=record.instances if same else None,
                               order=order, time_axis=out_axes.index("T") if linked else None,
                               edited=edited, _start_thread=False, _ignore_errors=True)
        self._set_busy(True)
        self.status.value = f"Updating instances of {source.name}…"
        # The mask it splits and the instances it replaces (edits taken into the mask): either removed
        # while it runs, the update stops. The other is left as it was, and nothing comes back.
        instances = record.layer("instances")
        reads = (semantic, instances) if instances is not None and instances in self._viewer.layers else (semantic,)
        self._start(_Run(kind="update", source=source, source_name=source.name, worker=worker, reads=reads),
                    lambda result: self._on_relabelled(result, semantic, params, made, record, keep,
                                                       min_volume=min_volume),
                    progress_records=False)

    def _instances_as_shown(self, record: RunRecord, shape: tuple[int, ...]) -> np.ndarray | None:
        """``record``'s instances layer's data, the user's edits included (a view, not a copy: the
        worker copies it; of ``shape``, as the labels "Update instances" works on); None when it
        is no longer in the viewer, or not a numpy array."""
        layer = record.layer("instances")
        if layer is None or layer not in self._viewer.layers or not isinstance(layer.data, np.ndarray):
            return None
        edited = layer.data
        keep = placeholder_axis(layer)
        if keep is not None:
            edited = np.squeeze(edited, axis=keep)
        return edited if edited.shape == shape else None

    def _on_relabelled(self, result: Relabelled | JobFailed, semantic: Labels, params: dict,
                       made: dict[str, Any], record: RunRecord, keep: int | None = None, *,
                       min_volume: int | None = None) -> None:
        """Show the updated instances of ``record``'s pair; ``made`` are the settings that made them,
        ``keep`` the one-plane channel axis the layers have and the labels lack (None: none),
        ``min_volume`` the voxels an object needed (None: labelled in 2D)."""
        run = self._shown_run(result)
        if run is None:
            return
        earlier, earlier_out = record.layer("instances"), record.outputs.get("instances")
        hand_edited = earlier if result.mask_synced is not None else None
        options_changed = record.instance_params != made
        if result.mask_synced is not None and result.mask_synced[1].size and semantic in self._viewer.layers:
            # The mask follows the ids painted or erased on the instances layer. (Labels.data_setitem,
            # which would make it one undoable step, fails on a hidden layer.)
            where, values = result.mask_synced
            if keep is not None:
                where = (*where[:keep], np.zeros_like(where[0]), *where[keep:])
            semantic.data[where] = values
            semantic.refresh()
        spatial, _ = spatial_kwargs(semantic)
        meta = {**record.metadata, "source_layer": run.source.name,
                "instance_method": params["method"], "min_size": params["min_size"], "min_volume": min_volume,
                # The update may link (or unlink) the ids and changes the count: say what it made.
                "linked_over_time": bool(made["linked"]), "n_objects": int(result.count),
                "updated_from": semantic.name}
        labels = result.labels if keep is None else np.expand_dims(result.labels, keep)
        data_tuple = label_layer_data(labels, "instances", source_name=run.source.name,
                                      spatial=spatial, metadata=meta)
        # Made from the network's mask as it came (other options only): a new run may replace it.
        mask_out = record.outputs.get("semantic")
        edited = (mask_out is None or result.mask_digest is None or result.mask_digest != mask_out.digest
                  or hand_edited is not None)
        # The edits taken are all in the new labels: the layer they were taken from, if it still
        # holds just them, is updated in place (no new '[2]' layer at each round of corrections).
        taken = {"instances": result.edited_digest} if result.edited_digest is not None else None
        published = self._tracker.publish(run.source, {"instances": data_tuple}, from_edits=True,
                                          holds_edits=edited, digests={"instances": result.digest},
                                          record=record, mask_digest=result.mask_digest, taken=taken)
        record.instances = result.labels_copy
        record.instance_params = dict(made)
        self._show_done()
        new = published.layers["instances"]
        with_edits = f", with your edits of '{hand_edited.name}'" if hand_edited is not None else ""
        if result.edits_lost is not None and hand_edited is not None and new is not hand_edited \
                and hand_edited in self._viewer.layers:
            # The labels lack some edits as the user made them: their layer is kept, never overwritten.
            why = {"mask": f"some lie where you also changed '{semantic.name}', which was split again",
                   "filled": "the update filled again pixels you erased inside objects (holes are filled)",
                   }.get(result.edits_lost, "the update split or joined some of the objects you edited")
            show_info(f"'{hand_edited.name}' keeps your edits as you made them: {why}; '{new.name}' holds the update.")
        elif hand_edited is not None and new is not hand_edited and hand_edited in self._viewer.layers \
                and earlier_out is not None and earlier_out.digest is not None:
            # Edited again while the update ran: those edits are not in the new labels. The worker
            # copied the layer as it started, a moment after the press: edits made in between are in.
            show_info(f"'{hand_edited.name}' changed while the update ran, so it is kept as you left it: "
                      f"'{new.name}' holds the update, with the edits '{hand_edited.name}' had when the "
                      f"update started; those made since are only in '{hand_edited.name}'.")
        if options_changed and hand_edited is None and earlier is not None and earlier in self._viewer.layers \
                and new is not earlier:
            # Edited by hand, then the object options changed: every object is split again.
            show_info(f"'{earlier.name}' keeps your edits as you made them: the object options changed, "
                      f"so '{new.name}' splits the mask again without them.")
        tracks = f", in {plural(result.tracks, 'track')}" if result.tracks is not None else ""
        self.status.value = (f"{plural(result.count, 'object')} after the update of {run.source.name}{tracks} "
                             f"('{semantic.name}' -> '{new.name}'{with_edits})")

    def _shown_run(self, result: Any) -> _Run | None:
        """The run whose ``result`` is to be shown; None (the failure said) when there is nothing to show."""
        run = self._run
        if run is None or run.source_removed:
            return None
        if isinstance(result, JobFailed):
            show_error(result.message)
            self.status.value = "Failed: see the notification."
            return None
        return run

    # ----------------------------------------------------------------- measure
    def measure(self) -> None:
        """Measure the objects of an instances layer as it is now (edits included): the selected
        one, or the selected result's, else the newest of the chosen image."""
        if self._run is not None:
            show_info("Wait for the running job to finish (or cancel it) first.")
            return
        if not self._adopt_opened():
            return
        try:
            source = self._working_source()
        except SegmentationError as exc:
            show_error(str(exc))
            return
        active = self._viewer.layers.selection.active
        found = self._tracker.owner(source, active) if source is not None and active is not None else None
        if found is not None and found[1] == "instances" and active in self._viewer.layers:
            record, layer = found[0], active  # the instances the user selected, even a kept earlier one
        else:
            record = self._tracker.pair_for(source, "instances", active) if source is not None else None
            layer = record.layer("instances") if record is not None else None
        if layer is None:
            name = source.name if source is not None else "the image"
            show_error(f"There are no instance labels of {name} to measure: run the segmentation "
                       "first (or put back '<image> instances' if you deleted it; with a layer of "
                       "another result selected, select that result's instances).")
            return
        own = layer.metadata.get("axes") if isinstance(layer.metadata, dict) else None
        image_axes = str(own if isinstance(own, str) else record.metadata.get("axes") or "")
        axes = image_axes.replace("C", "")
        keep = placeholder_axis(layer)  # a one-plane channel axis, which the measurements lack
        if len(axes) != layer.ndim - (keep is not None):
            show_error(f"'{layer.name}' no longer has the {len(axes)} dimensions its run made "
                       f"({axes or 'unknown axes'}): run the segmentation again to measure it.")
            return
        labels = np.array(layer.data, copy=True)  # what the user sees now, safe from later edits
        spacing, unit = _calibration(layer, axes, skip=keep)
        # A series linked over time (as made, or as the last update left it) has tracks to show;
        # napari's Tracks layer takes time as its first dimension.
        linked = "T" in axes and bool(layer.metadata.get("linked_over_time", False)
                                      if isinstance(layer.metadata, dict) else False)
        worker = create_worker(measure_job, labels if keep is None else np.squeeze(labels, axis=keep),
                               axes, layer_array(source), image_axes,
                               spacing=spacing, unit=unit, tracks=linked and axes.startswith("T"),
                               _start_thread=False, _ignore_errors=True)
        self._set_busy(True)
        self.status.value = f"Measuring the objects of {layer.name}…"
        self._start(_Run(kind="measure", source=source, source_name=source.name, worker=worker, reads=(layer,)),
                    lambda result: self._on_measured(result, layer, axes, labels, keep=keep, linked=linked),
                    progress_records=False)

    def _on_measured(self, measured_result: Measured | JobFailed, layer: Labels, axes: str,
                     measured: np.ndarray, *, keep: int | None = None, linked: bool = False) -> None:
        """Show the measurements of ``measured`` (a copy of ``layer``'s labels, less its one-plane
        channel axis ``keep``) on hover and, for a series ``linked`` over time, its tracks."""
        run = self._shown_run(measured_result)
        if run is None:
            return
        self._show_done()
        result = measured_result.table
        count = len(result["label"])
        shown = layer in self._viewer.layers
        if shown:  # 'Save table…' writes it (the button is enabled when the job ends)
            self._table = _Table(result, weakref.ref(layer), measured_result.digest, run.source_name)
        hover = "T" not in axes and shown  # ids repeat over time points
        # Edited while it was measured (compared once, where hover values or tracks need to know)
        changed = (hover or linked) and shown and not np.array_equal(layer.data, measured)
        if hover and not changed:
            layer.features = {"index": result["label"], **{k: v for k, v in result.items() if k != "label"}}
            _forget_features_on_edit(layer)
        self.status.value = (f"{plural(count, 'object')} measured in {layer.name}"
                             + ("; hover one to see its values." if hover and not changed else
                                " (as it was when you pressed the button: it changed since, measure again "
                                "to see the values on hover)." if hover else "."))
        if linked and shown:
            self.status.value += " " + self._show_tracks(measured_result.tracks, layer, axes, keep,
                                                         run.source_name, edited=changed)
        elif shown and (stale := self._stale_tracks(layer)) is not None:
            # Unlinked since its tracks were drawn: the note then may have said to measure again.
            self.status.value += (f" '{stale.name}' stays hidden: the ids of '{layer.name}' "
                                  "are not linked over time (press 'Update instances' with 'Link time points' "
                                  "on, then 'Measure objects').")

    def _stale_tracks(self, layer: Labels) -> Layer | None:
        """The Tracks layer drawn from ``layer`` and out of date, while it is in the viewer, else None."""
        ref = _TRACKS.get(layer)
        tracks = ref() if ref is not None else None
        return tracks if tracks is not None and tracks in self._viewer.layers \
            and tracks.metadata.get("out_of_date") else None

    def _table_layer(self) -> Labels | None:
        """The instances layer the last measurements describe, while it is in the viewer."""
        layer = self._table.layer() if self._table is not None else None
        return layer if layer is not None and layer in self._viewer.layers else None

    def save_table(self) -> None:
        """Write the table of the last 'Measure objects' to a CSV file the user chooses (the
        columns of :func:`~napari_unet.measure.write_csv`).

        A table whose labels changed since they were measured (painted, updated, run again) is
        not saved: the user is told to measure again, so a file never describes objects that
        are no longer there.
        """
        if self._run is not None:
            show_info("Wait for the running job to finish (or cancel it) first.")
            return
        saved, layer = self._table, self._table_layer()
        if saved is None or layer is None:
            show_info("There is no table to save: press 'Measure objects' first.")
            return
        if saved.digest is None or fingerprint(np.asarray(layer.data)) != saved.digest:
            show_warning(f"'{layer.name}' changed since it was measured, so the table no longer describes "
                         "its objects: press 'Measure objects' again, then 'Save table…'.")
            self.status.value = "Not saved: the table is out of date (measure again)."
            return
        path = self._ask_table_path(f"{saved.source_name}_objects.csv")
        if not path:
            return
        from ..measure import write_csv

        try:
            write_csv(saved.table, path)
        except OSError as exc:
            show_error(f"Cannot write {path} ({exc.strerror or exc}): choose another folder.")
            return
        self.status.value = (f"Table of {plural(len(saved.table['label']), 'object')} in {layer.name} "
                             f"saved to {path}.")

    def _show_tracks(self, tracks: dict[str, np.ndarray] | None, layer: Labels, axes: str, keep: int | None,
                     source_name: str, *, edited: bool = False) -> str:
        """Show ``tracks`` (of ``layer``'s instances) in a Tracks layer placed like ``layer``: the one
        made from it before, updated in place (shown again if it was out of date), else a new
        '<image> tracks'. Says what it did.

        The tracks are marked out of date (:func:`_mark_out_of_date`) at the next change of
        ``layer``'s labels (a run or update that replaces them, a brush stroke, undo), or at once
        when ``edited`` (they changed while they were measured).
        """
        if tracks is None:
            return (f"Its tracks are not shown: napari shows tracks with time as the first axis, and "
                    f"'{layer.name}' has the axes {axes}.")
        spatial, _ = spatial_kwargs(layer)
        data_tuple = tracks_layer_data(tracks, axes=axes, source_name=source_name, spatial=spatial,
                                       placeholder=keep)
        if data_tuple is None:
            return "No tracks: no objects."
        data, kwargs, _ = data_tuple
        ndim = data.shape[1] - 1
        ref = _TRACKS.get(layer)
        shown = ref() if ref is not None else None
        if shown is None or shown not in self._viewer.layers or shown.ndim != ndim:
            shown = create_layer(data_tuple)
            self._viewer.add_layer(shown)
            _TRACKS[layer] = weakref.ref(shown)
        else:  # measured again: the same layer, its name and look as the user left them
            placement = {"scale": kwargs["scale"], "translate": kwargs["translate"], "units": kwargs["units"],
                         "axis_labels": kwargs["axis_labels"], "rotate": kwargs.get("rotate", np.eye(ndim)),
                         "shear": kwargs.get("shear", np.eye(ndim)),
                         "affine": kwargs.get("affine", np.eye(ndim + 1))}
            for key, value in placement.items():
                setattr(shown, key, value)
            color_by = shown.color_by
            shown.color_by = "track_id"  # new data drop the features (napari would warn of the colouring)
            shown.data = data  # drops the graph (its ids may be gone): set it again
            shown.graph = kwargs["graph"]
            shown.features = kwargs["features"]
            if color_by in shown.features.columns:
                shown.color_by = color_by  # coloured by a measurement: by its new values
            if shown.metadata.get("out_of_date"):  # current again: shown, under the name it had
                shown.visible = True
                shown.name = shown.name.removesuffix(_OUT_OF_DATE)
            shown.metadata = dict(kwargs["metadata"])
            shown.tail_length = max(shown.tail_length, kwargs["tail_length"])
        if edited:
            _mark_out_of_date(shown, layer)
        else:
            tracks_ref, layers = weakref.ref(shown), weakref.ref(self._viewer.layers)

            def outdate(instances: Labels) -> None:
                target, shown_in = tracks_ref(), layers()
                if target is not None and shown_in is not None and target in shown_in:
                    _mark_out_of_date(target, instances)

            _on_next_edit(layer, _OUTDATE, outdate)
        divisions = len(kwargs["graph"])
        return (f"{plural(len(np.unique(data[:, 0])), 'track')} in '{shown.name}'"
                + (f" ({divisions} from a division)." if divisions else "."))

    def _ask_table_path(self, default_name: str) -> str | None:
        """A CSV path chosen by the user (None when cancelled)."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save the measurements", default_name,
                                              "CSV table (*.csv)")
        return path or None

    def _remember_instances(self, source: Image, instances: np.ndarray | None, params: dict[str, Any]) -> None:
        """Keep ``instances`` (a private copy of the labels just made with ``params``) for "Update instances"."""
        record = self._tracker.record(source)
        if record is not None:
            record.instances = instances
            record.instance_params = dict(params)


#: A z-stack guessed from the shape with at most this many planes is more likely a few stains.
_FEW_PLANES = 4


def _few_planes_note(axes: str, shape: tuple[int, ...], image_axes: str) -> str:
    """What to do when 'auto' axes read a few stains stored first as a z-stack of ``shape``
    (the result's ``axes``; ``image_axes`` the image's): empty when there are more planes."""
    if "Z" not in axes or "C" in image_axes or shape[axes.index("Z")] > _FEW_PLANES:
        return ""
    planes = shape[axes.index("Z")]
    return (f"Read as a z-stack of {plural(planes, 'plane')} (Axes: auto, {image_axes}): if they are stains, "
            f"choose {image_axes.replace('Z', 'C')} under 'Axes' and the nuclear stain under 'Channel', "
            "then press Run again.")


def _kept_note(kept: list[str], renamed: list[str], layers: list[Labels]) -> str:
    """Why a run went to new ``layers``: the earlier outputs ``kept`` hold the user's work (those
    ``renamed`` were named by the user); empty when nothing was kept."""
    if not kept:
        return ""

    def names(found: list[str]) -> str:
        return " and ".join(f"'{name}'" for name in found)

    edited = [name for name in kept if name not in renamed]
    why = []
    if edited:
        why.append(f"your work in {names(edited)} was kept")
    if renamed:
        why.append(f"{names(renamed)} {'was' if len(renamed) == 1 else 'were'} renamed by you, so "
                   f"{'it is' if len(renamed) == 1 else 'they are'} kept as yours")
    text = "; ".join(why)
    return f"{text[0].upper()}{text[1:]}: the new results are in {names([layer.name for layer in layers])}."


_FORGET: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> its (forget, refreshed) handlers
_TRACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # instances layer -> ref to its Tracks layer
_OUTDATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # instances layer -> its (outdate, refreshed)
_AS_OPENED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # opened instances layer -> its data as opened
_OUT_OF_DATE = " (out of date)"  # ends the name of tracks whose instances changed since they were measured


def _history(layer: Labels) -> tuple[int, int]:
    """Lengths of ``layer``'s undo and redo histories: Ctrl+Z and Ctrl+Shift+Z change them, and the
    labels, without a paint or data event (napari only refreshes the layer)."""
    return len(getattr(layer, "_undo_history", ())), len(getattr(layer, "_redo_history", ()))


def _on_next_edit(layer: Labels, registry: weakref.WeakKeyDictionary,
                  action: Callable[[Labels], None]) -> None:
    """Call ``action(layer)`` once, at ``layer``'s next edit (brush, fill, eraser, undo, redo, new
    data: a run or an update that replaces them). ``registry`` keeps one such action per layer:
    a new one replaces the one before."""
    ref = weakref.ref(layer)  # the handler is kept in the registry: it must not keep the layer alive
    history = _history(layer)

    def edited(_event: Any = None) -> None:
        target = ref()
        if target is None:
            return
        target.events.paint.disconnect(edited)
        target.events.data.disconnect(edited)
        target.events.set_data.disconnect(refreshed)
        registry.pop(target, None)
        action(target)

    def refreshed(_event: Any = None) -> None:  # also at every slice change: cheap unless undone
        target = ref()
        if target is not None and _history(target) != history:
            edited()

    old = registry.pop(layer, None)
    for emitter in (layer.events.paint, layer.events.data):
        if old is not None:
            emitter.disconnect(old[0])  # measured again: one handler
        emitter.connect(edited)
    if old is not None:
        layer.events.set_data.disconnect(old[1])
    layer.events.set_data.connect(refreshed)
    registry[layer] = (edited, refreshed)


def _forget_features_on_edit(layer: Labels) -> None:
    """Drop ``layer``'s measurements at its next edit (brush, fill, eraser, undo, redo, new data):
    they describe the objects as they were, and hovering must not show stale values."""
    _on_next_edit(layer, _FORGET, lambda target: setattr(target, "features", {}))


def _mark_out_of_date(tracks: Layer, instances: Labels) -> None:
    """Hide ``tracks``, made from ``instances`` before their labels changed, and say so in its name
    and in a notification: the paths no longer match the labels. 'Measure objects' shows them again."""
    if tracks.metadata.get("out_of_date"):
        return
    tracks.metadata = {**tracks.metadata, "out_of_date": True}
    tracks.visible = False
    tracks.name = f"{tracks.name}{_OUT_OF_DATE}"
    meta = instances.metadata if isinstance(instances.metadata, dict) else {}
    todo = ("press 'Measure objects' to draw them again" if meta.get("linked_over_time", False) else
            "its ids are no longer linked over time: press 'Update instances' with 'Link time points' "
            "on, then 'Measure objects'")
    show_info(f"'{instances.name}' changed since its tracks were measured, so they are hidden as "
              f"'{tracks.name}': {todo}.")


_SHORT_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "meter": "m"}


def _calibration(layer: Labels, axes: str, skip: int | None = None) -> tuple[list[float] | None, str]:
    """Pixel sizes along the layer's Z/Y/X axes and their unit's short name, for measurements.

    ``axes`` name the layer's dimensions but ``skip`` (a one-plane channel axis). None when the
    layer is in plain pixels (scale 1); unit "units" when it has a scale but no length unit; None
    when its spatial axes have different units.
    """
    dims = [i for i in range(layer.ndim) if i != skip]
    spatial = [dims[i] for i, a in enumerate(axes) if a in "ZYX"]
    scale = [float(layer.scale[i]) for i in spatial]
    units = {str(layer.units[i]) for i in spatial}
    if units == {"pixel"}:
        return (None, "") if all(v == 1.0 for v in scale) else (scale, "units")
    if len(units) != 1:
        return None, ""
    name = units.pop()
    return scale, _SHORT_UNITS.get(name, name)


def _label_axes_last(axes: str, label_ndim: int, ndim: int) -> list[int]:
    """Axes labelled together (Y, X, and Z in 3D) last; identity when the axes are unknown."""
    return labelled_last(axes, "ZYX"[-label_ndim:]) if len(axes) == ndim else list(range(ndim))
