"""The models a Segment widget offers: bundled, made in this session, opened from disk, or saved.

Each model is named by a key string (``"bundled:nuclei"``, ``"session:my model"``,
``"file:/abs/path"``) that the widget's model list holds as its value; the
:class:`ModelCatalog` turns a key into a loaded model and caches it. The models saved in
:func:`default_models_dir` (by the Train widget, in this session or an earlier one) are
listed as ``"file:"`` keys of their folders, found by reading their configs only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..checkpoint import (
    CONFIG,
    DEFAULT_MODEL,
    WEIGHTS,
    LoadedModel,
    ModelConfig,
    bundled_models,
    load_model,
)
from ..errors import SegmentationError
from .session import REGISTRY

__all__ = ["ModelCatalog", "default_models_dir", "saved_models"]

BUNDLED, SESSION, FILE = "bundled:", "session:", "file:"


def default_models_dir() -> Path:
    """Where the Train widget saves models unless the user chooses another folder."""
    return Path.home() / ".napari-unet" / "models"


def saved_models(folder: str | os.PathLike | None = None) -> list[Path]:
    """The model folders in ``folder`` (default: :func:`default_models_dir`), most recent first.

    A model folder holds a ``config.json`` that napari-unet can read and a
    ``weights.safetensors``; only the configs are read (no weights are loaded), and a
    folder that is not such a model (broken, half-copied, unreadable) is left out.

    Parameters
    ----------
    folder : str or path, optional
        The folder whose sub-folders are models.

    Returns
    -------
    list of Path
        Resolved model folders, the most recently saved (config.json written) first.
    """
    parent = Path(folder) if folder is not None else default_models_dir()
    found: list[tuple[float, Path]] = []
    try:
        entries = list(parent.iterdir())
    except OSError:  # no such folder yet (nothing trained), or unreadable
        return []
    for entry in entries:
        try:
            config = entry / CONFIG
            if not (config.is_file() and (entry / WEIGHTS).is_file()):
                continue
            data = json.loads(config.read_text())
            if not isinstance(data, dict):
                continue
            ModelConfig.from_dict(data)
            found.append((config.stat().st_mtime, entry.resolve()))
        except (OSError, ValueError, TypeError, SegmentationError):
            continue  # not a model napari-unet can open: not offered
    return [path for _, path in sorted(found, key=lambda item: (-item[0], item[1].name))]


class ModelCatalog:
    """Lists model choices and loads the chosen one (loaded models are cached)."""

    def __init__(self) -> None:
        self._cache: dict[str, LoadedModel] = {}

    def choices(self) -> list[tuple[str, str]]:
        """``(label, key)`` pairs: the bundled default first, then session models, then files
        opened, then the models saved in :func:`default_models_dir` (most recent first), but
        for those of this session's models (listed as such)."""
        out: list[tuple[str, str]] = []
        bundled = sorted(bundled_models(), key=lambda n: (n != DEFAULT_MODEL, n))
        for name in bundled:
            tag = "bundled default" if name == DEFAULT_MODEL else "bundled"
            out.append((f"{name} ({tag})", BUNDLED + name))
        session = REGISTRY.snapshot()
        for name in session:
            out.append((f"{name} (this session)", SESSION + name))
        # Files opened in any widget of this session (each widget loads its own copy).
        out.extend((label, key) for key, label in REGISTRY.files().items())
        # Saved in an earlier session: loaded when chosen, as a file opened. (A folder also opened
        # with Browse… stays listed: hiding it would silently change a widget's choice of it.)
        trained = {Path(m.path).resolve() for m in session.values() if m.path is not None}
        out.extend((f"{folder.name} (saved)", FILE + str(folder))
                   for folder in saved_models() if folder not in trained)
        return out

    def default_key(self) -> str | None:
        """The key of the bundled default model, or the first choice there is."""
        keys = [key for _, key in self.choices()]
        preferred = BUNDLED + DEFAULT_MODEL
        return preferred if preferred in keys else (keys[0] if keys else None)

    def add_path(self, path: str | os.PathLike) -> str:
        """Load a model folder (or a file in one) and add it to the choices.

        Returns
        -------
        str
            The new choice's key.

        Raises
        ------
        SegmentationError
            When the path holds no loadable model.
        """
        p = Path(path).expanduser().resolve()
        key = FILE + str(p)
        model = load_model(p)  # raises a user-ready SegmentationError
        self._cache[key] = model
        folder = p if p.is_dir() else p.parent
        # The combo box tells its items apart by their text: two models with one short label
        # (a colleague's "models/nuclei-finetuned" beside yours) would collapse into one.
        taken = {label for other, label in REGISTRY.files().items() if other != key}
        label = f"{model.name} ({_short(folder)})"
        if label in taken:
            label = f"{model.name} ({p})"
        n = 2
        while label in taken:
            label, n = f"{model.name} ({p}) #{n}", n + 1
        REGISTRY.add_file(key, label)
        return key

    def get(self, key: str | None) -> LoadedModel:
        """The model behind ``key`` (loaded on first use)."""
        if not key:
            raise SegmentationError(
                "No model is chosen. The bundled model is missing from this installation: "
                "use 'Browse…' to open a model folder (config.json + weights.safetensors)."
            )
        if key.startswith(SESSION):
            model = REGISTRY.get(key[len(SESSION):])
            if model is None:
                raise SegmentationError(
                    f"The session model {key[len(SESSION):]!r} is no longer available; choose another model."
                )
            return model
        if key not in self._cache:
            if key.startswith(BUNDLED):
                # By path: a folder of the same name in the working directory is not this model.
                folder = bundled_models().get(key[len(BUNDLED):])
                if folder is None:
                    raise SegmentationError(f"The bundled model {key[len(BUNDLED):]!r} is missing.")
                self._cache[key] = load_model(folder)
            elif key.startswith(FILE):
                self._cache[key] = load_model(key[len(FILE):])
            else:
                raise SegmentationError(f"Unknown model choice {key!r}.")
        return self._cache[key]

    def config(self, key: str | None) -> ModelConfig:
        """The chosen model's config; bundled models are not loaded for this, only read."""
        if key and key.startswith(BUNDLED) and key not in self._cache:
            path = bundled_models().get(key[len(BUNDLED):])
            if path is not None:
                try:
                    return ModelConfig.from_dict(json.loads((path / CONFIG).read_text()))
                except SegmentationError:
                    raise
                except (OSError, ValueError, TypeError) as exc:
                    raise SegmentationError(f"The bundled model's config is unreadable ({exc}).") from None
        return self.get(key).config


def _short(folder: Path, keep: int = 2) -> str:
    parts = folder.parts
    return str(Path(*parts[-keep:])) if len(parts) > keep else str(folder)


MODEL_FILE_FILTER = "U-Net models (config.json *.safetensors *.pt *.pth);;All files (*)"


def ask_model_path(parent: object, title: str) -> str | None:
    """A file dialog for a model's config.json (or weights file); None if cancelled.

    It opens in the folder the Train widget saves models in, when there is one: a hidden
    folder (``~/.napari-unet``) that file dialogs do not show, so a model trained in an
    earlier session would be hard to find.
    """
    from qtpy.QtWidgets import QFileDialog

    start = default_models_dir()
    path, _ = QFileDialog.getOpenFileName(parent, title, str(start) if start.is_dir() else "",
                                          MODEL_FILE_FILTER)
    return path or None


def add_model_choice(catalog: ModelCatalog, combobox: object, path: str) -> bool:
    """Open the model at ``path``, add it to ``combobox``'s choices and select it.

    A model that cannot be opened becomes an error notification (False).
    """
    from napari.utils.notifications import show_error

    try:
        key = catalog.add_path(path)
    except SegmentationError as exc:
        show_error(str(exc))
        return False
    combobox.reset_choices()
    if combobox.value == key:
        # Opened again (retrained into the same folder, say): no change of choice, but a
        # new model, whose tuned values the widget takes as it does for any new choice.
        combobox.changed.emit(key)
    else:
        combobox.value = key
    return True
