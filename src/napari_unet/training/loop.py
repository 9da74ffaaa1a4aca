"""The training loop as a generator: :func:`iter_train` yields progress, returns the model.

A run writes into one output folder: the best model so far
(``config.json`` + ``weights.safetensors``, chosen on validation loss), the
full training state after every epoch (``train_state.pt``, tensors and plain
numbers only, read back with ``weights_only=True``) and a log
(``train_log.jsonl``). Run it again with the same folder and it resumes after
the last finished epoch, with the same random stream it would have had.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import shutil
import time
import warnings
from collections.abc import Generator, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._version import __version__
from ..checkpoint import (
    CONFIG,
    WEIGHTS,
    LoadedModel,
    ModelConfig,
    load_model,
    remove_save_leftovers,
    save_model,
)
from ..device import resolve_device
from ..errors import SegmentationError, check_real, check_whole
from ..io import durable_replace
from ..normalize import DEFAULT_HIGH, DEFAULT_LOW
from ..progress import Progress, drain
from ..wording import plural
from .augment import augment_batch, collate_crops
from .data import CONTACT, Sample, random_crops, sampling_weights
from .snapshots import SNAPSHOTS, snapshot_path

__all__ = ["CLASS_WEIGHTS", "COMPLETE", "DEPTH", "LR_FINE_TUNE", "LR_NEW", "REPAIRED", "TrainProgress", "crop_size_misfit", "data_digest", "fit_crop_size",
           "iter_train", "min_crop_size", "saved_run_args", "train"]

STATE = "train_state.pt"
LOG = "train_log.jsonl"
CLASS_WEIGHTS = (1.0, 1.0, 3.0)
DEPTH = 4
"""Depth (poolings) of a network trained from scratch, unless ``depth=`` says otherwise."""

LR_NEW = 2e-3
"""The default learning rate for a new network."""
LR_FINE_TUNE = 5e-4
"""The default learning rate for fine-tuning: higher rates can spoil a good starting model."""
CONTACT_WEIGHT = 5.0
COMPLETE = "complete"
"""Stage of the one record a run that was already complete yields (nothing was trained)."""
REPAIRED = "repaired"
"""Stage of the record a resumed run yields first when it wrote a broken model file again."""


@dataclass(frozen=True)
class TrainProgress(Progress):
    """A :class:`Progress` record with training figures."""

    epoch: int = 0
    loss: float = float("nan")
    val_loss: float = float("nan")
    eta_s: float = float("nan")


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):
            pass
    return None


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy plus soft Dice on foreground and interior.

    logits (N, 3, ...) float; target (N, ...) int64 with classes 0/1/2, and 3
    for boundary pixels where objects touch (trained as boundary, with
    ``CONTACT_WEIGHT`` times the weight).
    """
    contact = target == CONTACT
    target = target.clamp(max=2)
    weights = torch.tensor(CLASS_WEIGHTS, device=logits.device, dtype=torch.float32)
    pixel_w = weights[target] * (1 + (CONTACT_WEIGHT - 1) * contact.float())
    ce = (F.cross_entropy(logits.float(), target, reduction="none") * pixel_w).sum() / pixel_w.sum()
    prob = torch.softmax(logits.float(), dim=1)
    dims = tuple(range(1, target.ndim))
    dice = 0.0
    for pred, truth in ((1 - prob[:, 0], (target > 0).float()), (prob[:, 1], (target == 1).float())):
        inter = (pred * truth).sum(dims)
        dice = dice + 1 - ((2 * inter + 1) / (pred.sum(dims) + truth.sum(dims) + 1)).mean()
    return ce + 0.5 * dice


def min_crop_size(depth: int) -> int:
    """Smallest crop a U-Net of ``depth`` trains on: its bottleneck keeps 2 x 2 pixels.

    Batch norm needs more than one value per channel, and each of the
    ``depth`` poolings halves the crop; crops must also be multiples of
    ``2**depth`` (see :func:`_check_crop_size`).
    """
    return 2 ** (depth + 1)


def fit_crop_size(crop_size: int, smallest: int, *, depth: int) -> int:
    """``crop_size`` reduced to the ``smallest`` image edge, rounded down to a multiple of
    ``2**depth``, and at least :func:`min_crop_size` (smaller images are padded)."""
    multiple = 2**depth
    return max(min_crop_size(depth), min(int(crop_size), int(smallest)) // multiple * multiple)


def crop_size_misfit(crop_size: int, depth: int) -> tuple[str, int] | None:
    """How ``crop_size`` misses the crops a U-Net of ``depth`` trains on, or None when it fits.

    Returns
    -------
    (rule, example) or None
        ``rule`` is what a crop size must be (``"a multiple of 16 of at least 32"``);
        ``example`` the one that fits nearest below ``crop_size`` (the smallest, above it).
    """
    multiple, smallest = 2**depth, min_crop_size(depth)
    if crop_size >= smallest and not crop_size % multiple:
        return None
    return f"a multiple of {multiple} of at least {smallest}", max(smallest, crop_size // multiple * multiple)


def _check_crop_size(crop_size: int, depth: int) -> None:
    misfit = crop_size_misfit(crop_size, depth)
    if misfit:
        rule, example = misfit
        raise SegmentationError(
            f"crop_size {crop_size} does not fit a U-Net of depth {depth}: use {rule} (e.g. {example}).")


def _check_samples(samples: Sequence[Sample], in_channels: int) -> None:
    """Every sample a 2D pair with the model's channels: image (C, Y, X), target (Y, X)."""
    for s in samples:
        if s.image.ndim != 3 or s.target.ndim != 2 or s.image.shape[1:] != s.target.shape:
            raise SegmentationError(
                f"{s.name}: training takes 2D samples (image (C, Y, X), target (Y, X)), not image "
                f"{s.image.shape} with target {s.target.shape}. Make one sample per plane of a stack "
                "with napari_unet.training.data.plane_samples (load_pairs does this for files).")
        if s.image.shape[0] != in_channels:
            raise SegmentationError(
                f"The model takes {plural(in_channels, 'channel')}; {s.name} has {s.image.shape[0]}.")


def _sample_list(samples: Iterable[Sample | None] | Sample, arg: str) -> list[Sample]:
    """``samples`` as a list, without the None that :func:`~napari_unet.training.data.plane_samples`
    yields for planes whose mask is all 0 (as :func:`~napari_unet.training.data.load_pairs` skips them).

    A generator is read once; a single Sample counts as a list of one.
    """
    if isinstance(samples, Sample):
        return [samples]
    try:
        items = [s for s in samples if s is not None]
    except TypeError:  # not iterable: named below
        items = [samples]
    bad = [s for s in items if not isinstance(s, Sample)]
    if bad:
        raise SegmentationError(
            f"{arg} must be a sequence of Sample (from load_pairs, prepare_sample or plane_samples), "
            f"not one holding {type(bad[0]).__name__}.")
    return items


RUN_FILES = (STATE, LOG)
"""Files only a training run writes: a folder holding one of them is a run (resumed or redone)."""


def _check_output(out: Path) -> None:
    """Refuse an output that is a file, or a folder of other files (they could be overwritten).

    A missing or empty folder, or one that holds a run (see ``RUN_FILES``), is fine.
    Hidden files (``.DS_Store``, ...) do not count.
    """
    if out.exists() and not out.is_dir():
        raise SegmentationError(f"The output {out} is a file, not a folder: choose a new folder.")
    if not out.is_dir() or any((out / name).is_file() for name in RUN_FILES):
        return
    found = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if found:
        raise SegmentationError(
            f"The output folder {out} holds files (e.g. {found[0]}) but no napari-unet training "
            f"run; training writes {CONFIG}, weights and logs there and could overwrite yours. "
            "Choose an empty or new folder.")


def _trim_log(path: Path, done_epochs: int) -> None:
    """Keep the log lines of the first ``done_epochs`` epochs: drop those of epochs that a
    resumed run repeats, and a line cut off when a run was stopped while writing it."""
    if not path.is_file():
        return
    kept = []
    # Bytes that are not text (a disk problem) make lines that are not JSON: dropped.
    for line in path.read_bytes().decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= done_epochs:
            kept.append(line + "\n")
    path.write_text("".join(kept))


def _last_epoch_was_best(path: Path, epoch: int) -> bool:
    """True when the log says that ``epoch`` (counted from 1) saved the best model."""
    with suppress(OSError):
        for line in path.read_bytes().decode(errors="replace").splitlines():
            with suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("epoch") == epoch:
                    return record.get("best") is True
    return False


def _saved_config(path: Path) -> ModelConfig | None:
    """The model config in ``path``; None when it is missing or broken (not JSON, cut short)."""
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except Exception:  # noqa: BLE001 - any failure: the file cannot be used
        return None


def _saved_weights(path: Path, config: ModelConfig) -> torch.nn.Module | None:
    """``config``'s network with the weights in ``path``; None when they are missing, broken or
    another network's."""
    from safetensors.torch import load_file

    net = config.build()
    try:
        net.load_state_dict(load_file(path, device="cpu"))
    except Exception:  # noqa: BLE001 - any failure: the file cannot be used
        return None
    return net


def _check_saved_model(out: Path, net: torch.nn.Module, config: ModelConfig, *, last_best: bool,
                       start_over: str) -> str | None:
    """Make sure that the best model a resumed run keeps in ``out`` reads back, before it trains.

    A model file broken since it was written (a disk problem, a copy that broke off) would
    otherwise show only at the end of the run, hours later (unless a later epoch does
    better). A broken ``config.json`` is written again from this run's ``config``; broken
    weights from ``net`` (the state's) when ``last_best`` says they are the best epoch's.

    Returns
    -------
    str or None
        What was written again, for the user; None when the model read back (or none was saved).

    Raises
    ------
    SegmentationError
        When the best weights are lost: the message names the file and what to do.
    """
    if not ((out / CONFIG).exists() or (out / WEIGHTS).exists()):
        return None  # no epoch saved one yet: the run saves its last at the end
    saved = _saved_config(out / CONFIG)
    best = _saved_weights(out / WEIGHTS, config)
    if saved is not None and best is not None:
        return None
    if best is None and not last_best:
        broken = "is missing" if not (out / WEIGHTS).exists() else (
            "cannot be read (it is corrupt or cut short: a disk problem, or a copy that broke off?)")
        raise SegmentationError(
            f"{out / WEIGHTS} {broken}. It held the run's best model so far, which {STATE} cannot give "
            f"back (it holds the last epoch's weights, and that epoch was not the best). To go on "
            f"without it, delete {CONFIG} and {WEIGHTS} there (the model kept is then the best of the "
            f"epochs still to train, or the last one's); or {start_over}.")
    repaired, source = (CONFIG, "this run's settings") if best is not None else (
        WEIGHTS, f"{STATE}, whose weights are the same (the last epoch saved was the best)")
    save_model(out, net if best is None else best, saved or config)
    return (f"{out / repaired} was missing or could not be read (corrupt or cut short: a disk problem?): "
            f"it was written again from {source}.")


def _finite(value: float) -> float | None:
    """``value``, or None (JSON null) when it is NaN or infinite (no validation, or a run that diverged)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _names_digest(samples: Sequence[Sample]) -> str:
    """A short digest of the samples' names and shapes (which data a run was trained on)."""
    digest = hashlib.blake2b(digest_size=8)
    for s in samples:
        digest.update(repr((s.name, s.target.shape)).encode())
    return digest.hexdigest()


data_digest = _names_digest


def saved_run_args(output: str | os.PathLike) -> dict:
    """The settings a run in ``output`` was saved with (``{}`` when there is none to read)."""
    try:
        state = torch.load(Path(output) / STATE, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - no run, or one this function cannot read: nothing known
        return {}
    args = state.get("args") if isinstance(state, dict) else None
    return args if isinstance(args, dict) else {}


def _state_tmp(path: Path) -> Path:
    """The temporary file :func:`_save_state` writes before its rename."""
    return path.with_name(path.name + ".tmp")


def _save_state(state: dict, path: Path) -> None:
    """Write the training state to ``path`` through a temporary file and a rename (see
    :func:`~napari_unet.io.durable_replace`).

    Parameters
    ----------
    state : dict
        Tensors and plain values (read back with ``weights_only=True``).
    path : Path
        The state file; the state there stays as it was when the write fails.

    Raises
    ------
    SegmentationError
        When the state cannot be written (a full disk): the partial file is
        removed, and the message says that the run resumes from its last saved epoch.
    """
    tmp = _state_tmp(path)
    try:
        torch.save(state, tmp)
        durable_replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as a RuntimeError
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "is the disk full?"
        raise SegmentationError(
            f"Cannot write the training state {path} ({reason}): free some disk space there and run "
            "the same command again, to resume from the last epoch saved.") from None


@torch.no_grad()
def _validate(net: torch.nn.Module, samples: Sequence[Sample], device: torch.device,
              amp: torch.dtype | None) -> float:
    net.eval()
    m = net.multiple
    losses = []
    for s in samples:
        x = torch.from_numpy(s.image)[None].to(device)
        t = torch.from_numpy(s.target.astype(np.int64))[None].to(device)
        h, w = t.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x)[..., :h, :w]
        losses.append(float(segmentation_loss(logits, t)))
    net.train()
    return float(np.mean(losses)) if losses else float("nan")


def iter_train(
    train_samples: Sequence[Sample],
    output: str | os.PathLike,
    *,
    val_samples: Sequence[Sample] = (),
    epochs: int = 50,
    steps_per_epoch: int = 100,
    batch_size: int = 8,
    crop_size: int = 256,
    learning_rate: float = 2e-3,
    base_width: int = 12,
    depth: int = DEPTH,
    init_model: LoadedModel | str | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    name: str = "custom",
    description: str = "",
    augment_strength: float = 1.0,
    num_threads: int | None = None,
    core_fraction: float | None = None,
    snapshots: bool = False,
    sampling: str = "image",
) -> Generator[TrainProgress, None, LoadedModel]:
    """Train a three-class (background/interior/boundary) 2D U-Net.

    Parameters
    ----------
    train_samples, val_samples : sequence of Sample
        From :func:`~napari_unet.training.data.load_pairs`,
        :func:`~napari_unet.training.data.prepare_sample` or
        :func:`~napari_unet.training.data.plane_samples` (its None, for planes
        whose mask is all 0, are skipped). Without validation samples the last
        epoch's model is kept.
    output : path
        Folder for the model, the resumable state and the log: a new or empty
        folder, or one that holds a run of this function (resumed, or with
        ``resume=False`` started over). A folder of other files is refused.
    epochs, steps_per_epoch, batch_size : int >= 1
        Training schedule: ``epochs * steps_per_epoch`` steps of
        ``batch_size`` crops.
    crop_size : int
        Edge of the square crops, a multiple of ``2**depth`` of at least
        :func:`min_crop_size` (``2**(depth + 1)``), with the depth of
        ``init_model`` when one is given.
    learning_rate : float > 0
        Peak of the one-cycle cosine learning rate over all steps.
    base_width, depth : int >= 1
        Architecture (ignored when ``init_model`` is given).
    init_model : model to fine-tune from (e.g. the bundled default), optional
    seed : int
        Seeds crops, augmentation and initial weights.
    name, description : str
        The model's name and description, written into its config.
    device : str
        ``"auto"`` picks CUDA, then MPS, then CPU. CUDA (and CPUs with native
        bf16) train under bf16 autocast.
    resume : bool
        Continue from ``output/train_state.pt`` when it exists (with the same
        schedule). A run already complete trains nothing and says so.
    augment_strength : float >= 0
        Scales the intensity augmentation (0 turns it off).
    num_threads : int >= 1 or None
        CPU threads for torch; None leaves torch's setting.
    core_fraction : float in [0, 1) or None
        How interiors are taught (see
        :func:`~napari_unet.training.data.three_class_targets`), recorded in the
        model's config. None keeps ``init_model``'s, or for a new network takes
        the samples'. The samples' targets must have been made with it.
    snapshots : bool
        Also save the model after every epoch, in ``output/snapshots/epoch_NNN``
        (for :func:`~napari_unet.training.snapshots.average_models`).
    sampling : {"image", "area"}
        How each crop picks its image: every image equally often, or in
        proportion to its area (see :func:`~napari_unet.training.data.sampling_weights`).

    Yields
    ------
    TrainProgress
        After every step (``stage="train"``) and every validation (``"validate"``).
        Resuming a run that was already complete yields just one record,
        ``stage=COMPLETE`` (``"complete"``), whose message tells the user so.
        A resumed run that wrote a broken model file again (see Raises) yields
        ``stage=REPAIRED`` (``"repaired"``) before any other, whose message says which.

    Returns
    -------
    LoadedModel
        The best model, as saved in ``output``.

    Raises
    ------
    SegmentationError
        For arguments, samples or an output folder that cannot be trained
        with; all are checked before ``output`` is written to. A resumed run
        reads back the model saved so far first: a broken ``config.json`` is
        written again from the run's settings, broken weights from the training
        state when its last epoch was the best; else it stops at once.
    """
    train_samples = _sample_list(train_samples, "train_samples")
    val_samples = _sample_list(val_samples, "val_samples")
    if not train_samples:
        raise SegmentationError("No training samples: give at least one image with its mask.")
    if not any(np.any(s.target) for s in train_samples):
        raise SegmentationError("Every training mask is empty (no label above 0; 0 and negative values are "
                                "background): nothing to learn from. Label the objects first (1, 2, ...).")
    whole = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
             "crop_size": crop_size, "base_width": base_width, "depth": depth}
    # As Python ints: torch refuses NumPy ones (e.g. epochs=np.int64(5)), and the saved state must hold plain numbers.
    epochs, steps_per_epoch, batch_size, crop_size, base_width, depth = (
        check_whole(arg, value, 1) for arg, value in whole.items())
    seed = check_whole("seed", seed, 0)
    if num_threads is not None:
        num_threads = check_whole("num_threads", num_threads, 1)
    learning_rate = check_real("learning_rate", learning_rate, positive=True)
    augment_strength = check_real("augment_strength", augment_strength, positive=False)
    if core_fraction is not None and not (isinstance(core_fraction, numbers.Real) and 0 <= core_fraction < 1):
        raise SegmentationError(f"core_fraction must be a number in [0, 1), not {core_fraction!r}.")
    weights = sampling_weights(train_samples, sampling)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    in_channels = train_samples[0].image.shape[0]
    if init_model is not None:
        base = load_model(init_model)
        # Say what it is now: the starting model's description describes the starting data.
        # The new weights learn from samples normalised with the training pair: percentiles tuned
        # for the starting weights (tune --choose-percentiles) are not theirs.
        config = ModelConfig(**{**base.config.to_dict(), "name": name,
                                "description": f"{description or 'fine-tuned'} (from {base.name}: "
                                               f"{base.config.description or 'no description'})",
                                "normalization": {**base.config.normalization, "method": "percentile",
                                                  "low": DEFAULT_LOW, "high": DEFAULT_HIGH}})
        net = copy.deepcopy(base.net)  # a LoadedModel the caller holds is not trained in place
        if config.target != "three_class" or config.spatial_dims != 2:
            raise SegmentationError(
                "Fine-tuning needs a 2D three_class (background/interior/boundary) model.")
        if core_fraction is not None:
            config.core_fraction = float(core_fraction)
    else:
        config = ModelConfig(
            spatial_dims=2, in_channels=in_channels, out_channels=3, base_width=base_width,
            depth=depth, target="three_class", classes=["background", "interior", "boundary"],
            name=name, description=description,
            core_fraction=float(train_samples[0].core_fraction if core_fraction is None else core_fraction),
            postprocess={"threshold": 0.5, "seed_threshold": 0.5, "min_size": 10,
                         "instance_method": "watershed", "fill_holes": True},
        )
        net = config.build()
    _check_crop_size(crop_size, config.depth)
    _check_samples([*train_samples, *val_samples], config.in_channels)
    made = sorted({float(s.core_fraction) for s in (*train_samples, *val_samples)} - {config.core_fraction})
    if made:
        raise SegmentationError(
            f"The samples' targets were made with core_fraction {made[0]}, but the model is taught "
            f"with {config.core_fraction}: make the samples with core_fraction={config.core_fraction}.")
    out = Path(output)
    _check_output(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegmentationError(
            f"Cannot create the output folder {out} ({exc.strerror or exc}): choose another one.") from None
    # The temporary files of saves that an earlier run was killed in go (no cleanup ran then).
    for folder in (out, *sorted((out / SNAPSHOTS).glob("epoch_*"))):
        remove_save_leftovers(folder)
    with suppress(OSError):
        _state_tmp(out / STATE).unlink(missing_ok=True)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    amp = _autocast_dtype(dev)
    net = net.to(dev).train()
    total_steps = epochs * steps_per_epoch
    optim = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=learning_rate, total_steps=total_steps,
                                                pct_start=0.05)
    start_epoch, best = 0, math.inf
    state_path = out / STATE
    if not (resume and state_path.is_file()):
        # A fresh run starts a fresh log, at once: the folder is marked as a run even if
        # the process is stopped before the first epoch is saved. An earlier run's state and
        # snapshots go, or a rerun would resume (or average) that run instead of this one.
        (out / LOG).write_text("")
        state_path.unlink(missing_ok=True)
        shutil.rmtree(out / SNAPSHOTS, ignore_errors=True)
    start_over = (f"use another output folder, or delete {STATE} there (from Python: resume=False) "
                  "to start over")
    # What a resumed run must share with the run it continues (the schedule is checked apart).
    run_args = {"learning_rate": float(learning_rate), "batch_size": batch_size, "crop_size": crop_size,
                "seed": seed, "sampling": sampling, "augment_strength": float(augment_strength),
                "core_fraction": float(config.core_fraction),
                "init_model": base.sha256 if init_model is not None else None,
                "contacts": any(bool((s.target == CONTACT).any()) for s in train_samples),
                "data": _names_digest(train_samples), "val_data": _names_digest(val_samples)}
    if resume and state_path.is_file():
        try:
            state = torch.load(state_path, map_location=dev, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt or foreign: the same for a user
            raise SegmentationError(
                f"Cannot read {state_path} ({type(exc).__name__}): {start_over}.") from None
        old_steps = state.get("steps_per_epoch", steps_per_epoch) if isinstance(state, dict) else None
        if (not isinstance(state, dict) or any(k not in state for k in ("net", "optim", "sched", "epoch", "best"))
                or not isinstance(old_steps, int) or old_steps < 1 or not isinstance(state["epoch"], int)
                or not isinstance(state.get("args", {}), dict)):
            raise SegmentationError(f"{state_path} is not a napari-unet training state: {start_over}.")
        old_total = state.get("total_steps")
        if (old_total, old_steps) != (total_steps, steps_per_epoch):
            old_epochs = int(old_total or 0) // int(old_steps)
            raise SegmentationError(
                f"{state_path} is from a run with a different schedule ({plural(old_epochs, 'epoch')} of "
                f"{plural(old_steps, 'step')}, not {epochs} of {steps_per_epoch}): give that schedule to "
                f"resume it, or {start_over}.")
        try:
            net.load_state_dict(state["net"])
        except RuntimeError:
            raise SegmentationError(
                f"{state_path} is from a run of another network (width, depth or channels): "
                f"{start_over}.") from None
        old_args = state.get("args")
        # A key the saved run predates is not compared.
        changed = ", ".join(f"{k} {old_args[k]!r} (now {run_args[k]!r})"
                            for k in run_args if k in old_args and old_args[k] != run_args[k]
                            ) if old_args is not None else ""
        if int(state["epoch"]) + 1 < epochs and changed:
            raise SegmentationError(
                f"{state_path} is from an unfinished run with other settings: {changed}. Give the "
                f"same settings (and images) to resume it, or {start_over}.")
        try:
            optim.load_state_dict(state["optim"])
            sched.load_state_dict(state["sched"])
            start_epoch, best = int(state["epoch"]) + 1, float(state["best"])
        except (KeyError, TypeError, ValueError):
            raise SegmentationError(f"{state_path} holds a broken optimiser state: {start_over}.") from None
        _trim_log(out / LOG, start_epoch)
    config.provenance = {
        "package_version": __version__,
        "trained_on": [s.name for s in train_samples][:2000],
        "n_train": len(train_samples), "n_val": len(val_samples),
        "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
        "crop_size": crop_size, "learning_rate": learning_rate, "seed": seed,
        "augment_strength": augment_strength, "sampling": sampling, "device": dev.type,
        "autocast": str(amp) if amp else None,
    }
    if init_model is not None:
        config.provenance.update(init_model=base.name, init_model_sha256=base.sha256)
    t0, steps_done_at_start = time.perf_counter(), start_epoch * steps_per_epoch
    if start_epoch:  # resumed: the model saved so far must read back, or the run ends without one
        # Without validation every epoch saves its model: the state's weights are the best, whatever
        # the log says (a log broken by the same disk problem as the weights, or deleted).
        last_best = not val_samples or _last_epoch_was_best(out / LOG, start_epoch)
        repaired = _check_saved_model(out, net, config, last_best=last_best, start_over=start_over)
        if repaired:
            yield TrainProgress(REPAIRED, steps_done_at_start, total_steps, repaired, epoch=start_epoch - 1)
    for epoch in range(start_epoch, epochs):
        rng = np.random.default_rng([seed, epoch])
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        running = []
        for step in range(steps_per_epoch):
            crops = random_crops(train_samples, rng, count=batch_size, size=crop_size, weights=weights)
            x, t = collate_crops(crops, dev)
            x, t = augment_batch(x, t, gen, strength=augment_strength)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = net(x)
            loss = segmentation_loss(logits, t)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            running.append(loss.item())
            done = epoch * steps_per_epoch + step + 1
            rate = (time.perf_counter() - t0) / max(done - steps_done_at_start, 1)
            yield TrainProgress("train", done, total_steps,
                                f"epoch {epoch + 1}/{epochs} loss {np.mean(running[-20:]):.4f}",
                                epoch=epoch, loss=running[-1], eta_s=rate * (total_steps - done))
        val_loss = _validate(net, val_samples, dev, amp) if val_samples else float("nan")
        improved = not val_samples or val_loss < best
        if improved:
            best = val_loss if val_samples else best
            save_model(out, net, config)
        if snapshots:
            save_model(snapshot_path(out, epoch + 1), net, config)
        # The log line before the state: a run stopped between the two repeats this epoch on
        # resuming (and its line is trimmed then), rather than skipping the line for good.
        with open(out / LOG, "a") as fh:
            fh.write(json.dumps({"epoch": epoch + 1, "train_loss": _finite(np.mean(running)),
                                 "val_loss": _finite(val_loss), "best": improved,
                                 "elapsed_s": round(time.perf_counter() - t0, 1)}, allow_nan=False) + "\n")
        _save_state({"net": net.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                     "epoch": epoch, "best": best, "total_steps": total_steps,
                     "steps_per_epoch": steps_per_epoch, "args": run_args}, state_path)
        yield TrainProgress("validate", (epoch + 1) * steps_per_epoch, total_steps,
                            f"epoch {epoch + 1}/{epochs} val loss {val_loss:.4f}" + (" (best)" if improved else ""),
                            epoch=epoch, loss=float(np.mean(running)), val_loss=val_loss)
    if start_epoch >= epochs:
        yield TrainProgress(COMPLETE, total_steps, total_steps,
                            f"The run in {out} was already complete ({plural(epochs, 'epoch')}): nothing was trained "
                            f"and the settings given now were not used. To train again, {start_over}.",
                            epoch=epochs - 1)
    if not (out / CONFIG).is_file():
        save_model(out, net, config)
    return load_model(out)


def train(*args, **kwargs) -> LoadedModel:
    """Drain :func:`iter_train` and return the best model.

    A run already complete in ``output`` trains nothing: a ``UserWarning`` says so (the
    model returned is that run's). A broken model file written again on resuming is said
    the same way.
    """
    def note(record: TrainProgress) -> None:
        if record.stage in (COMPLETE, REPAIRED):
            warnings.warn(record.message, UserWarning, stacklevel=4)

    return drain(iter_train(*args, **kwargs), note)
