"""Model files: a folder with ``weights.safetensors`` and ``config.json``.

Loading never unpickles: weights are read with safetensors. Foreign PyTorch
checkpoints (``.pt``/``.pth``) are imported with ``torch.load(weights_only=True)``,
which refuses arbitrary objects. Every failure is a :class:`SegmentationError`
that names the file and says what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .errors import SegmentationError
from .io import durable_replace, new_temp_file
from .model import UNet

__all__ = [
    "FORMAT_VERSION",
    "ModelConfig",
    "LoadedModel",
    "save_model",
    "load_model",
    "bundled_models",
    "DEFAULT_MODEL",
]

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
DEFAULT_MODEL = "nuclei"
_BUNDLED_DIR = Path(__file__).parent / "models"


@dataclass
class ModelConfig:
    """Everything needed to rebuild, feed and post-process a network.

    ``target`` says what the output classes mean:

    - ``"semantic"``: class 0 is background, classes 1.. are object classes;
      the semantic mask is the argmax (or, with two classes, probability of
      class 1 above ``postprocess["threshold"]``).
    - ``"three_class"``: background / interior / boundary. The semantic mask is
      interior + boundary; instances grow from interior seeds.

    ``core_fraction`` (three_class only) says how the model was taught: 0 for
    a one-pixel boundary rim; above 0, interiors are each object's core deeper
    than this fraction of its inscribed radius (see
    :func:`napari_unet.training.data.three_class_targets`). Fine-tuning keeps it.

    ``normalization`` holds the percentiles that map to 0 and 1 at inference.
    Training always normalises from the 1st to the 99.8th percentile (with gain
    and offset augmented around that); :func:`napari_unet.training.tune.tune_normalization`
    may choose another pair on held-out images. Fine-tuning keeps the starting
    model's pair, as it keeps its post-processing.
    """

    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 2
    base_width: int = 16
    depth: int = 4
    target: str = "semantic"
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    normalization: dict[str, Any] = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8}
    )
    postprocess: dict[str, Any] = field(
        default_factory=lambda: {
            "threshold": 0.5,
            "seed_threshold": 0.5,
            "min_size": 10,
            "instance_method": "components",
            "fill_holes": True,
            "neck_ratio": 0.0,
        }
    )
    core_fraction: float = 0.0
    pixel_size_um: float | None = None
    name: str = "unnamed"
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.target not in ("semantic", "three_class"):
            raise SegmentationError(f"Unknown model target {self.target!r}.")
        if self.target == "three_class" and self.out_channels != 3:
            raise SegmentationError("A three_class model must have 3 output channels.")
        if not 0.0 <= float(self.core_fraction) < 1.0:
            raise SegmentationError(f"core_fraction must be in [0, 1), got {self.core_fraction}.")
        if not isinstance(self.name, str) or not isinstance(self.description, str):
            raise SegmentationError(
                f"The model config's name {self.name!r} and description must be text.")
        if not isinstance(self.classes, (list, tuple)) or not all(isinstance(c, str) for c in self.classes):
            raise SegmentationError(
                f"The model config's classes must be a list of names, one per output channel, not "
                f"{self.classes!r}.")
        size = self.pixel_size_um
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                                 or not 0 < size < float("inf")):
            raise SegmentationError(
                f"The model config's pixel_size_um is {size!r}: give the pixel size in micrometres "
                "(a number above 0), or null.")
        if len(self.classes) != self.out_channels:
            raise SegmentationError(
                f"The model config names {len(self.classes)} classes but has "
                f"{self.out_channels} output channels."
            )
        self._check_sections()

    def _check_sections(self) -> None:
        """Refuse ``normalization``/``postprocess`` values that inference could not use."""
        def number(section: str, key: str, low: float, high: float) -> None:
            value = getattr(self, section).get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
            if not ok:
                raise SegmentationError(
                    f"The model config's {section}[{key!r}] is {value!r}: it must be a number from "
                    f"{low:g} to {high:g}. Fix config.json, or save the model again.")

        for section in ("normalization", "postprocess"):
            if not isinstance(getattr(self, section), dict):
                raise SegmentationError(f"The model config's {section} must be a mapping of settings.")
        number("normalization", "low", 0.0, 100.0)
        number("normalization", "high", 0.0, 100.0)
        if self.normalization["low"] >= self.normalization["high"]:
            raise SegmentationError("The model config's normalization 'low' must be below 'high'.")
        number("postprocess", "threshold", 0.0, 1.0)
        number("postprocess", "seed_threshold", 0.0, 1.0)
        number("postprocess", "min_size", 0, float("inf"))
        threshold, min_size = self.postprocess["threshold"], self.postprocess["min_size"]
        if not 0.0 < threshold < 1.0 or not float(min_size).is_integer():
            raise SegmentationError(
                f"The model config's postprocess threshold {threshold!r} and min_size {min_size!r} must "
                "be a number between 0 and 1 and a whole number of pixels. Fix config.json, or save "
                "the model again.")
        post = self.postprocess
        neck = post.get("neck_ratio")
        if neck is not None:
            number("postprocess", "neck_ratio", 0.0, 1.0)
            if neck >= 1.0:
                raise SegmentationError(
                    f"The model config's postprocess['neck_ratio'] is {neck!r}: it must be below 1 "
                    "(0 or null cuts no necks). Fix config.json, or save the model again.")
        if "auto_scale_area" in post:
            number("postprocess", "auto_scale_area", 1e-9, float("inf"))
        if "auto_scale_factor" in post:
            number("postprocess", "auto_scale_factor", 0.1, 10.0)
        scale = post.get("scale", "auto")
        if not (isinstance(scale, str) and scale.strip().lower() == "auto"):
            number("postprocess", "scale", 0.1, 10.0)
        if not isinstance(self.postprocess.get("fill_holes", True), bool):
            raise SegmentationError(
                f"The model config's postprocess['fill_holes'] is {self.postprocess['fill_holes']!r}: "
                "it must be true or false. Fix config.json, or save the model again.")
        if self.postprocess.get("instance_method") not in ("components", "watershed"):
            raise SegmentationError(
                f"The model config's postprocess['instance_method'] is "
                f"{self.postprocess.get('instance_method')!r}: use 'components' or 'watershed'.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise SegmentationError(
                f"Model format version {version!r} is not supported by napari-unet "
                f"{__version__} (it reads version {FORMAT_VERSION}). Update napari-unet-seg."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise SegmentationError(f"Unknown keys in model config: {sorted(unknown)}.")
        data = dict(data)
        defaults = cls()
        for section in ("normalization", "postprocess"):
            if section in data and isinstance(data[section], dict):
                # Settings a config leaves out take their defaults.
                data[section] = {**getattr(defaults, section), **data[section]}
        return cls(**data)

    def build(self) -> UNet:
        """A fresh network with this architecture."""
        return UNet(
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            base_width=self.base_width,
            depth=self.depth,
        )


@dataclass
class LoadedModel:
    """A network in eval mode with its config, ready for :mod:`napari_unet.predict`."""

    net: UNet
    config: ModelConfig
    name: str
    path: Path | None
    sha256: str
    # The version counters of ``net``'s tensors just after its weights were read from the file
    # ``sha256`` names: while they are unchanged, the network holds exactly that file's weights.
    loaded_versions: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    def __repr__(self) -> str:
        """One line of what a user checks (which model, which weights, what it does), not the
        network's hundred lines of layers (``model.net`` shows those)."""
        c = self.config
        return (f"LoadedModel(name={self.name!r}, path={None if self.path is None else str(self.path)!r}, "
                f"weights sha256 {self.short_hash}, {c.spatial_dims}D U-Net depth {c.depth} width {c.base_width}, "
                f"in_channels={c.in_channels}, classes={c.classes}, postprocess={c.postprocess})")


def tensor_versions(net: torch.nn.Module) -> tuple[int, ...]:
    """The version counters of ``net``'s parameters and buffers: any in-place change moves one."""
    return tuple(t._version for t in itertools.chain(net.parameters(), net.buffers()))


def is_bundled(folder: str | os.PathLike) -> bool:
    """True for a folder of the models installed with the package."""
    return Path(folder).resolve().is_relative_to(_BUNDLED_DIR.resolve())


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (a model's ``sha256`` is that of its weights file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_models() -> dict[str, Path]:
    """Bundled model names and their folders (``"default"`` is an alias)."""
    found = {
        p.name: p for p in sorted(_BUNDLED_DIR.iterdir()) if (p / CONFIG).is_file()
    } if _BUNDLED_DIR.is_dir() else {}
    return found


def save_model(path: str | os.PathLike, net: torch.nn.Module, config: ModelConfig) -> Path:
    """Write ``net``'s weights and ``config`` into the folder ``path``.

    The files are written to temporary names, sent to the disk and renamed
    (:func:`~napari_unet.io.durable_replace`), so an interrupted save, or a
    power cut, never leaves a half-written model behind. They get the permissions of
    any new file (the umask). A write that fails (a full disk) raises a
    :class:`SegmentationError` that says so.
    """
    from safetensors.torch import save

    if not isinstance(net, torch.nn.Module) or not isinstance(config, ModelConfig):
        raise SegmentationError(
            f"save_model takes a network and its ModelConfig, not {type(net).__name__} and "
            f"{type(config).__name__}: for a loaded model, save_model(path, model.net, model.config).")
    try:
        # What load_model would refuse (or JSON cannot hold) is never written.
        ModelConfig.from_dict(config.to_dict())
        text = json.dumps(config.to_dict(), indent=2) + "\n"
        with torch.device("meta"):  # the architecture's shapes, without memory
            expected = {k: tuple(v.shape) for k, v in config.build().state_dict().items()}
    except (TypeError, ValueError) as exc:
        raise SegmentationError(f"The model config cannot be saved: {exc}.") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != expected:
        raise SegmentationError(
            "The network does not fit its config (depth, base_width or channels differ), so "
            "load_model would refuse the saved model: give the config the network was built from.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SegmentationError(f"{folder} is a file: a model is saved in a folder, so choose a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegmentationError(
            f"Cannot create the model folder {folder} ({exc.strerror or exc}): choose another one.") from None
    tmp_w = new_temp_file(folder)
    tmp_c = new_temp_file(folder)
    try:
        # One metadata key only: safetensors writes metadata from a hash map in
        # random order, so two keys would make the file's bytes (and its sha256)
        # differ between saves of the same weights. The format version lives in
        # config.json.
        # Bytes written into our own file (save_file would make an owner-only one).
        Path(tmp_w).write_bytes(save(state, metadata={"format": "pt"}))
        Path(tmp_c).write_text(text)
        durable_replace(tmp_w, folder / WEIGHTS)
        durable_replace(tmp_c, folder / CONFIG)
    except OSError as exc:  # e.g. a full disk: the model files there are as they were
        raise SegmentationError(
            f"Cannot save the model in {folder} ({exc.strerror or exc}): free some disk space there, "
            "or choose another folder.") from None
    finally:
        for tmp in (tmp_w, tmp_c):
            if os.path.exists(tmp):
                os.remove(tmp)
    return folder


_SAVE_TEMP = re.compile(r"\.[0-9a-f]{12}\.tmp")
"""Names of the temporary files :func:`save_model` writes (see :func:`~napari_unet.io.new_temp_file`)."""


def remove_save_leftovers(folder: str | os.PathLike) -> None:
    """Remove the temporary files of saves into ``folder`` that were stopped before their rename.

    :func:`save_model` removes its own when it fails, but a process killed
    (SIGKILL, SIGTERM, a power cut) while saving leaves them: hidden files as
    large as the weights, which nothing else would ever remove. Only for a
    folder that no other process is saving into at the same time.

    Parameters
    ----------
    folder : path
        A model folder; a missing or unreadable one is left as it is.
    """
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for path in entries:
        if _SAVE_TEMP.fullmatch(path.name) and path.is_file():
            try:
                path.unlink()
            except OSError:
                pass


def _resolve(name_or_path: str | os.PathLike) -> tuple[str, Path]:
    text = os.fspath(name_or_path)
    bundled = bundled_models()
    key = DEFAULT_MODEL if text == "default" else text
    if key in bundled:
        local = Path(text).expanduser()
        # "default" always means the bundled model (it is segment()'s default argument).
        if text != "default" and (local / CONFIG).is_file() and local.resolve() != bundled[key].resolve():
            raise SegmentationError(
                f"{text!r} names both a bundled model and the model folder {local.resolve()}: give "
                f"{os.path.join('.', text)!r} (or its full path) for the folder, or 'default' for the "
                "bundled model.")
        return key, bundled[key]
    path = Path(text).expanduser()
    if not path.exists():
        if text == "default" or key in (DEFAULT_MODEL,):
            raise SegmentationError(
                "The bundled default model is missing from this installation. "
                "Reinstall napari-unet-seg, or pass model=PATH to a model folder."
            )
        raise SegmentationError(
            f"Model {text!r} not found: give a bundled name ({', '.join(sorted(bundled)) or 'none'}), "
            "or the path of a model folder holding config.json and weights.safetensors."
        )
    return path.stem if path.is_file() else path.name, path


def load_model(name_or_path: str | os.PathLike = "default") -> LoadedModel:
    """Load a bundled model by name, or a model folder (or a file inside it).

    Parameters
    ----------
    name_or_path : str or path
        ``"default"``, a bundled model name, a model folder, its
        ``config.json`` or ``weights.safetensors``, or a PyTorch ``.pt``/``.pth``
        state dict with a ``config.json`` beside it.

    Returns
    -------
    LoadedModel
        The network on the CPU in eval mode.
    """
    if isinstance(name_or_path, LoadedModel):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise SegmentationError(
            f"model must be a model name such as 'default', a model folder or a LoadedModel, "
            f"not {name_or_path!r}.")
    name, path = _resolve(name_or_path)
    if path.is_dir():
        folder, weights = path, path / WEIGHTS
    elif path.name == CONFIG:
        folder, weights = path.parent, path.parent / WEIGHTS
    else:
        folder, weights = path.parent, path
    config_path = folder / CONFIG
    if path.is_dir() and not config_path.is_file():
        raise SegmentationError(
            f"No {CONFIG} in {folder}: a model is a folder with {CONFIG} and {WEIGHTS}."
        )
    if not config_path.is_file():
        raise SegmentationError(
            f"No {CONFIG} next to {weights}: a model is a folder with {CONFIG} and {WEIGHTS}."
        )
    if not weights.is_file():
        raise SegmentationError(f"Model weights {weights} are missing.")
    try:
        data = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmentationError(f"Model config {config_path} is unreadable or not JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise SegmentationError(f"Model config {config_path} must hold a JSON object.")
    try:
        config = ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:  # e.g. "core_fraction": "deep"
        raise SegmentationError(f"Model config {config_path} is invalid ({exc}).") from None
    try:
        net = config.build()
    except (TypeError, ValueError) as exc:  # e.g. "depth": "two", or spatial_dims 5
        raise SegmentationError(f"Model config {config_path} is invalid ({exc}).") from None
    state = _read_weights(weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SegmentationError(
            f"The weights in {weights} do not fit the architecture in {config_path} "
            f"({first}). Was the file saved for another model?"
        ) from None
    net.eval()
    return LoadedModel(net=net, config=config, name=config.name if config.name != "unnamed" else name,
                       path=folder, sha256=file_sha256(weights), loaded_versions=tensor_versions(net))


def _read_weights(weights: Path) -> dict[str, torch.Tensor]:
    if weights.suffix in (".pt", ".pth"):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "refuse the file"
            raise SegmentationError(
                f"Could not import {weights}: it is not a plain PyTorch state dict "
                f"(only tensors are accepted, never arbitrary pickled objects): {type(exc).__name__}."
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            # E.g. a training run's train_state.pt, beside the model it saved.
            model = (f" It is not a model; the model beside it is in {weights.parent}: choose "
                     f"{weights.parent / CONFIG}." if (weights.parent / WEIGHTS).is_file() else "")
            raise SegmentationError(f"{weights} does not hold a state dict of tensors.{model}")
        return state
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(weights, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SegmentationError(
            f"Model weights {weights} are corrupt, truncated or not a safetensors file "
            f"({exc}). Re-export or re-download the model."
        ) from None
