"""The napari layer: the Segment widget, layer conversion and sample data.

This sub-package is the only place in ``napari_unet`` that imports napari,
magicgui or qtpy; the engine never sees a napari layer. Other parts of a
napari session (e.g. a training widget) hand models to the Segment widget with
:func:`register_session_model`.
"""

from __future__ import annotations

from .session import register_session_model, session_models, unregister_session_model

__all__ = ["register_session_model", "session_models", "unregister_session_model"]
