"""What both widgets share: following the viewer's layers and the session models.

A widget that mixes in :class:`ViewerListener` defines ``_on_layers_changed``,
``_on_layer_removed`` and ``_on_session_models_changed``; ``_listen`` connects
them, and they are disconnected again when the widget's Qt object is destroyed
(the viewer and the registry may outlive a closed dock).

What a widget says about a layer the user removed goes through
:meth:`ViewerListener._say_removed`, which keeps quiet when the viewer is closing:
``viewer.close()`` removes every layer before it closes its window.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtCore import QEvent, QObject, QTimer

from .session import REGISTRY

__all__ = ["ViewerListener", "reset_keeping_choice", "unwrap"]

LAYER_EVENTS = ("inserted", "removed", "reordered", "renamed")


def unwrap(obj: Any) -> Any:
    """The object behind napari's plugin proxy (layer identity matters here)."""
    return getattr(obj, "__wrapped__", obj)


def reset_keeping_choice(box: Any) -> None:
    """Refresh a layer box's choices, keeping the chosen layer while the viewer still holds it.

    magicgui matches the old and new choices by their text, so a renamed layer would be
    dropped and the first layer chosen instead. ``changed`` is emitted only when the chosen
    layer really changed (it was removed, or there was none).
    """
    chosen = box.value
    with box.changed.blocked():
        box.reset_choices()
        if chosen is not None and any(choice is chosen for choice in box.choices):
            box.value = chosen
    if box.value is not chosen:
        box.changed.emit(box.value)


class ViewerListener:
    """Mixin: connect to and disconnect from the viewer's layer list and the registry."""

    _viewer: Any
    native: Any

    def _listen(self) -> None:
        events = self._viewer.layers.events
        for name in LAYER_EVENTS:
            getattr(events, name).connect(self._on_layers_changed)
        events.removed.connect(self._on_layer_removed)
        REGISTRY.changed.connect(self._on_session_models_changed)
        self.native.destroyed.connect(partial(_teardown, weakref.ref(self)))

    def _stop_listening(self) -> None:
        events = self._viewer.layers.events
        for name in LAYER_EVENTS:
            getattr(events, name).disconnect(self._on_layers_changed)
        events.removed.disconnect(self._on_layer_removed)
        REGISTRY.changed.disconnect(self._on_session_models_changed)

    def _disconnect(self) -> None:  # overridden to also stop work in flight
        self._stop_listening()

    def _say_removed(self, message: str | Callable[[], str]) -> None:
        """Show ``message``, about a layer removed from the viewer, unless the viewer is closing.

        ``viewer.close()`` removes every layer, then closes the window: a note that a job was
        stopped or a pair dropped would only mislead. So the note waits for the event loop's next
        turn, and is dropped if the widget's window was closed (or destroyed) by then.
        A callable ``message`` is called then, so that what it says of the layers left is true
        when shown (several layers removed at once go one by one).
        """
        top = self.native
        while top.parentWidget() is not None:  # the viewer's main window (a floating dock's too)
            top = top.parentWidget()
        watch = _WindowWatch(top)

        def say() -> None:
            if not watch.stop():
                show_info(message() if callable(message) else message)

        QTimer.singleShot(0, say)

    def _on_layers_changed(self, _event: Any = None) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_layer_removed(self, event: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_session_models_changed(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _WindowWatch(QObject):
    """Notes whether ``window`` is closed or destroyed until :meth:`stop` is called."""

    def __init__(self, window: Any) -> None:
        super().__init__()  # no parent: it outlives a window destroyed before stop()
        self._window = weakref.ref(window)  # a pending note must not keep a closed viewer alive
        self.closed = False
        window.installEventFilter(self)
        window.destroyed.connect(self._on_destroyed)

    def _on_destroyed(self, *_: Any) -> None:
        self.closed = True

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.Type.Close:
            self.closed = True
        return False

    def stop(self) -> bool:
        """Stop watching; True when the window was closed or destroyed meanwhile."""
        window = self._window()
        if window is None:
            return True
        with suppress(RuntimeError, TypeError):  # the window is gone already
            window.removeEventFilter(self)
            window.destroyed.disconnect(self._on_destroyed)
        return self.closed


def _teardown(ref: weakref.ref, *_: Any) -> None:
    """Called when the widget's Qt object is destroyed (holds the widget weakly)."""
    widget = ref()
    if widget is not None:
        widget._disconnect()
