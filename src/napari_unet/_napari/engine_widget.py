"""What the Segment and Train widgets share: one engine job at a time, in a thread.

:class:`EngineWidget` starts a napari thread worker over an engine generator,
moves its own progress bar and a napari progress bar with each record, lets
Cancel stop the work at the next step, and stops the work quietly when the
dock is closed. It also opens model folders for the widget's model chooser.
Subclasses build the controls (``status``, ``progress_bar``, ``cancel_button``
and a model chooser are expected) and handle the job's result.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton
from napari.utils import progress
from qtpy.QtCore import QEvent, QObject

from ..progress import Progress
from .model_choices import ModelCatalog, add_model_choice, ask_model_path
from .wiring import ViewerListener

__all__ = ["EngineWidget", "Run", "row"]


def row(*widgets: Any, label: str | None = None) -> Container:
    """Widgets side by side, flush with the form's other rows (one form label, or none)."""
    box = Container(widgets=list(widgets), layout="horizontal", labels=False,
                    **({"label": label} if label is not None else {}))
    box.margins = (0, 0, 0, 0)
    return box


#: How the engine's progress stages read in a status line (the engine names them for code).
STAGE_NAMES = {"prepare": "Preparing", "predict": "Network", "instances": "Instances",
               "train": "Training", "validate": "Validation", "complete": "Done"}


def stage_name(stage: str) -> str:
    """``stage`` as a status line shows it (capitalised; "predict" is "Network")."""
    return STAGE_NAMES.get(stage, stage[:1].upper() + stage[1:])


@dataclass(kw_only=True)
class Run:
    """One job in flight: its worker, napari progress bar and state."""

    worker: Any
    started: float = field(default_factory=time.perf_counter)
    pbar: progress | None = None
    stage: str = ""
    answered: bool = False  # the result arrived (progress signals may still trail it)
    #: Run once the worker has stopped when nobody is left to show its result (the dock was
    #: closed); it must not need the widget, which may be gone.
    on_orphaned: Callable[[], None] | None = None


class _Slot:
    """The job in flight, held apart from its widget: when the dock is closed the widget may be
    collected before its Qt object is destroyed, and the job must still be stopped."""

    run: Run | None = None


def _stop(slot: _Slot, *_: Any) -> None:
    """Stop the job in ``slot`` quietly: nobody is left to show its result."""
    run, slot.run = slot.run, None
    if run is None:
        return
    run.worker.quit()
    for name in ("yielded", "returned", "aborted", "finished"):
        # At interpreter exit the worker's signals may be deleted already: reading one raises.
        with suppress(TypeError, RuntimeError):
            getattr(run.worker, name).disconnect()
    if run.pbar is not None:
        run.pbar.close()
    if run.on_orphaned is not None:
        # Connected before the check: a worker that ends in between still runs it (it may run twice).
        try:
            run.worker.finished.connect(run.on_orphaned)
        except RuntimeError:  # its signals are gone (interpreter exit): it will say nothing more
            if not run.worker.is_running:  # else its clean-up could pull files from under it
                run.on_orphaned()
            return
        if not run.worker.is_running:
            run.on_orphaned()


class _CloseWatch(QObject):
    """Stops the job in ``slot`` when the widget leaves its dock: napari's close button takes
    the widget out (``setParent(None)``), and a running job keeps the widget itself alive."""

    def __init__(self, slot: _Slot, parent: Any) -> None:
        super().__init__(parent)
        self._slot = slot

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            _stop(self._slot)
        return False


def _fit_labels(container: Container) -> None:
    """Make the form's label column as wide as its widest label in the font it is drawn in.

    magicgui measures the labels in the application's font; napari's style draws them larger,
    so the longest label ('Seed threshold', 'Steps per epoch') pushed its field out of line.
    """
    labels = []
    for widget in container:  # magicgui's private parts: a later magicgui without them fits nothing
        labelled = getattr(widget, "_labeled_widget", lambda: None)()
        label = getattr(labelled, "_label_widget", None)
        if label is not None:
            labels.append(label.native)
    if labels:
        width = max(label.sizeHint().width() for label in labels)
        for label in labels:
            label.setMinimumWidth(width)


class _LabelFit(QObject):
    """Fits the label column of a widget (held weakly) each time it is shown, styled by then."""

    def __init__(self, container: Container) -> None:
        super().__init__(container.native)
        self._container = weakref.ref(container)

    def eventFilter(self, obj: Any, event: Any) -> bool:
        container = self._container()
        if event.type() == QEvent.Type.Show and container is not None:
            _fit_labels(container)
        return False


class EngineWidget(ViewerListener, Container):
    """Base class of a widget that runs engine generators in a thread worker."""

    #: Title of the file dialog that opens a model.
    BROWSE_TITLE = "Open a U-Net model: choose its config.json (or weights file)"

    _catalog: ModelCatalog
    status: Label
    progress_bar: ProgressBar
    cancel_button: PushButton

    def _job_controls(self, start: PushButton, *, cancel_tooltip: str) -> Container:
        """Make ``cancel_button``, ``progress_bar`` and ``status``; return the start/Cancel row."""
        self.cancel_button = PushButton(text="Cancel", enabled=False, tooltip=cancel_tooltip)
        self.progress_bar = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.status = Label(value="")
        # Wrapped: a long status (a saved table's path, say) must not widen the dock past the screen.
        self.status.native.setWordWrap(True)
        return row(start, self.cancel_button)

    # ------------------------------------------------------------------ models
    def _model_box(self) -> ComboBox:  # pragma: no cover - overridden
        """The combo box that lists models."""
        raise NotImplementedError

    def _browse(self) -> None:
        path = self._ask_model_path()
        if path:
            self.add_model(path)

    def _ask_model_path(self) -> str | None:
        return ask_model_path(self.native, self.BROWSE_TITLE)

    def add_model(self, path: str) -> bool:
        """Open the model at ``path`` (folder or file), add it to the list and choose it."""
        return add_model_choice(self._catalog, self._model_box(), path)

    # -------------------------------------------------------------------- jobs
    @property
    def _slot(self) -> _Slot:
        slot = self.__dict__.get("_job_slot")
        if slot is None:
            slot = self.__dict__["_job_slot"] = _Slot()
        return slot

    @property
    def _run(self) -> Run | None:
        """The job in flight (kept in a slot that a closed dock can still stop)."""
        return self._slot.run

    @_run.setter
    def _run(self, run: Run | None) -> None:
        self._slot.run = run

    def _listen(self) -> None:
        super()._listen()
        # Both hold the slot, not the widget: the job stops when the dock is closed, and when
        # the widget is destroyed (even if collected first).
        self._close_watch = _CloseWatch(self._slot, self.native)
        self.native.installEventFilter(self._close_watch)
        self._label_fit = _LabelFit(self)
        self.native.installEventFilter(self._label_fit)
        self.native.destroyed.connect(partial(_stop, self._slot))

    @property
    def running(self) -> bool:
        """True while a job is in progress."""
        return self._run is not None

    def _start(self, run: Run, on_returned: Callable[[Any], None], *, progress_records: bool = True) -> None:
        """Make ``run`` the current job, connect its worker and start it."""
        worker = run.worker
        if progress_records:
            worker.yielded.connect(self._on_progress)
            worker.aborted.connect(self._on_aborted)
        else:
            # No records to count: Qt's busy bar (maximum 0) says it works until it is done.
            self.progress_bar.max, self.progress_bar.value = 0, 0
        worker.returned.connect(on_returned)
        worker.finished.connect(self._on_finished)
        self._run = run
        worker.start()

    def cancel(self) -> None:
        """Stop the running job at its next step; nothing is added."""
        if self._run is not None:
            self._run.worker.quit()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling…"

    def _disconnect(self) -> None:
        """Stop listening to the viewer and the registry, and stop any work quietly."""
        self._stop_listening()
        _stop(self._slot)

    def _set_busy(self, busy: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_aborted(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # ---------------------------------------------------------------- progress
    def _status_text(self, record: Progress) -> str:
        return f"{stage_name(record.stage)}: {record.message}"

    def _phase(self, record: Progress) -> str:
        """Records of one phase share one count on the napari progress bar."""
        return record.stage

    def _describe(self, run: Run, record: Progress) -> str:
        """The napari progress bar's description."""
        return f"U-Net {stage_name(record.stage).lower()}: {record.message}"

    def _on_progress(self, record: Progress) -> None:
        run = self._run
        if run is None or run.answered:
            return
        self.progress_bar.max = max(int(record.total), 1)
        self.progress_bar.value = min(int(record.done), self.progress_bar.max)
        self.status.value = self._status_text(record)
        pbar = run.pbar
        if pbar is None:
            return
        phase = self._phase(record)
        if phase != run.stage:
            run.stage = phase
            pbar.total = record.total
            pbar.n = 0
        # napari's progress bar widget processes Qt events when it changes, so later
        # records (even the result) may be handled inside these calls: check in between.
        if self._run is run and not run.answered:
            pbar.update(record.done - pbar.n)
        if self._run is run and not run.answered:
            pbar.set_description(self._describe(run, record))

    def _show_done(self) -> None:
        """A full progress bar: the job (one without progress records too) is done."""
        self.progress_bar.max, self.progress_bar.value = 1, 1

    def _on_finished(self) -> None:
        run = self._run
        if run is not None and not run.answered and getattr(run.worker, "abort_requested", False):
            # Cancelled after the job's last progress record: the worker then sends neither
            # its result nor "aborted", only "finished".
            self._on_aborted()
        run, self._run = self._run, None
        if run is not None and run.pbar is not None:
            run.pbar.close()
        if self.progress_bar.max == 0:  # a busy bar whose job did not say it was done: empty
            self.progress_bar.max, self.progress_bar.value = 1, 0
        self._set_busy(False)
