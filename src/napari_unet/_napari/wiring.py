"""What both widgets share: following the viewer's layers and the session models.

A widget that mixes in :class:`ViewerListener` defines ``_on_layers_changed``,
``_on_layer_removed`` and ``_on_session_models_changed``; ``_listen`` connects
them, and they are disconnected again when the widget's Qt object is destroyed
(the viewer and the registry may outlive a closed dock).
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any

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

    def _on_layers_changed(self, _event: Any = None) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_layer_removed(self, event: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_session_models_changed(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _teardown(ref: weakref.ref, *_: Any) -> None:
    """Called when the widget's Qt object is destroyed (holds the widget weakly)."""
    widget = ref()
    if widget is not None:
        widget._disconnect()
