"""Models on offer in this napari session: made here, or opened from disk.

A widget that trains a model calls :func:`register_session_model`; every open
Segment widget then offers that model in its model list, labelled
"(this session)". Registering a name again replaces the model. A model folder
opened with 'Browse…' in one widget is offered in the others too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psygnal import Signal

if TYPE_CHECKING:  # checkpoint imports torch: opening the sample data should not
    from ..checkpoint import LoadedModel

__all__ = ["register_session_model", "unregister_session_model", "session_models", "REGISTRY"]


class _SessionModels:
    """Name -> :class:`LoadedModel`, and the model files opened, with a ``changed`` signal for widgets."""

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._files: dict[str, str] = {}  # choice key -> label, in the order opened

    def set(self, name: str, model: LoadedModel) -> None:
        self._models[name] = model
        self.changed.emit()

    def remove(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            self.changed.emit()

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def snapshot(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    def add_file(self, key: str, label: str) -> None:
        """Remember a model file opened in one widget, for every widget's list."""
        if self._files.get(key) != label:
            self._files[key] = label
            self.changed.emit()

    def files(self) -> dict[str, str]:
        """The model files opened so far: choice key -> label, in the order opened."""
        return dict(self._files)

    def forget_files(self) -> None:
        """Forget the opened files (a fresh napari session; tests use it)."""
        if self._files:
            self._files.clear()
            self.changed.emit()


REGISTRY = _SessionModels()
"""The one registry of this Python process (napari runs one per process)."""


def register_session_model(name: str, model: LoadedModel) -> None:
    """Offer ``model`` in every Segment widget under ``name``.

    Parameters
    ----------
    name : str
        The name shown in the model list (a name registered before is replaced).
    model : LoadedModel
        A model as :func:`napari_unet.checkpoint.load_model` returns it, or one
        built from a freshly trained network.

    Notes
    -----
    Safe to call from any thread: widgets refresh their lists in the main thread.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("A session model needs a non-empty name.")
    from ..checkpoint import LoadedModel

    if not isinstance(model, LoadedModel):
        raise TypeError(f"Expected a LoadedModel, got {type(model).__name__}.")
    REGISTRY.set(name.strip(), model)


def unregister_session_model(name: str) -> None:
    """Withdraw a model registered with :func:`register_session_model` (no-op if absent).

    The name is stripped of surrounding spaces, as registering stripped it.
    """
    REGISTRY.remove(name.strip() if isinstance(name, str) else name)


def session_models() -> dict[str, LoadedModel]:
    """A copy of the models registered in this session, by name."""
    return REGISTRY.snapshot()
