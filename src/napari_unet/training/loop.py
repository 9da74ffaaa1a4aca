"""The training loop as a generator: :func:`iter_train` yields progress, returns the model.

A run writes into one output folder: the best model so far
(``config.json`` + ``weights.safetensors``, chosen on validation loss), the
full training state after every epoch (``train_state.pt``, tensors and plain
numbers only, read back with ``weights_only=True``) and a log
(``train_log.jsonl``). Run it again with the same folder and it resumes after
the last finished epoch, with the same random stream it would have had.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._version import __version__
from ..checkpoint import LoadedModel, ModelConfig, load_model, save_model
from ..device import resolve_device
from ..errors import SegmentationError
from ..progress import Progress, drain
from .augment import augment_batch, collate_crops
from .data import Sample, random_crops, sampling_weights
from .snapshots import snapshot_path

__all__ = ["TrainProgress", "iter_train", "train", "CLASS_WEIGHTS"]

STATE = "train_state.pt"
LOG = "train_log.jsonl"
CLASS_WEIGHTS = (1.0, 1.0, 3.0)
CONTACT_WEIGHT = 5.0


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
    contact = target == 3
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
    depth: int = 4,
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
        From :func:`~napari_unet.training.data.load_pairs` or
        :func:`~napari_unet.training.data.prepare_sample`. Without validation
        samples the last epoch's model is kept.
    output : path
        Folder for the model, the resumable state and the log.
    epochs, steps_per_epoch, batch_size, crop_size, learning_rate : training schedule
        One-cycle cosine learning rate over all steps.
    base_width, depth : architecture (ignored when ``init_model`` is given)
    init_model : model to fine-tune from (e.g. the bundled default), optional
    seed : int
        Seeds crops, augmentation and initial weights.
    device : str
        ``"auto"`` picks CUDA, then MPS, then CPU. CUDA (and CPUs with native
        bf16) train under bf16 autocast.
    resume : bool
        Continue from ``output/train_state.pt`` when it exists.
    core_fraction : float or None
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

    Returns
    -------
    LoadedModel
        The best model, as saved in ``output``.
    """
    if not train_samples:
        raise SegmentationError("No training samples: give at least one image with its mask.")
    if epochs < 1 or steps_per_epoch < 1 or batch_size < 1:
        raise SegmentationError("epochs, steps_per_epoch and batch_size must be >= 1.")
    weights = sampling_weights(train_samples, sampling)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if num_threads:
        torch.set_num_threads(num_threads)
    amp = _autocast_dtype(dev)
    torch.manual_seed(seed)
    in_channels = train_samples[0].image.shape[0]
    if init_model is not None:
        base = load_model(init_model)
        config = ModelConfig(**{**base.config.to_dict(), "name": name})
        net = base.net
        if config.target != "three_class":
            raise SegmentationError("Fine-tuning needs a three_class model.")
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
    if config.in_channels != in_channels:
        raise SegmentationError(
            f"The model takes {config.in_channels} channel(s); the images have {in_channels}.")
    made = sorted({float(s.core_fraction) for s in (*train_samples, *val_samples)} - {config.core_fraction})
    if made:
        raise SegmentationError(
            f"The samples' targets were made with core_fraction {made[0]}, but the model is taught "
            f"with {config.core_fraction}: make the samples with core_fraction={config.core_fraction}.")
    net = net.to(dev).train()
    total_steps = epochs * steps_per_epoch
    optim = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=learning_rate, total_steps=total_steps,
                                                pct_start=0.05)
    start_epoch, best = 0, math.inf
    state_path = out / STATE
    if not (resume and state_path.is_file()):
        (out / LOG).unlink(missing_ok=True)  # a fresh run starts a fresh log
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=dev, weights_only=True)
        if (state.get("total_steps") != total_steps
                or state.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch):
            raise SegmentationError(
                f"{state_path} is from a run with a different schedule; use another output "
                "folder, or resume=False to start over.")
        net.load_state_dict(state["net"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best"])
    config.provenance = {
        "package_version": __version__,
        "trained_on": [s.name for s in train_samples][:2000],
        "n_train": len(train_samples), "n_val": len(val_samples),
        "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
        "crop_size": crop_size, "learning_rate": learning_rate, "seed": seed,
        "augment_strength": augment_strength, "sampling": sampling, "device": dev.type,
        "autocast": str(amp) if amp else None,
    }
    t0, steps_done_at_start = time.perf_counter(), start_epoch * steps_per_epoch
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
        torch.save({"net": net.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch, "best": best, "total_steps": total_steps,
                    "steps_per_epoch": steps_per_epoch},
                   str(state_path) + ".tmp")
        os.replace(str(state_path) + ".tmp", state_path)
        with open(out / LOG, "a") as fh:
            fh.write(json.dumps({"epoch": epoch + 1, "train_loss": float(np.mean(running)),
                                 "val_loss": val_loss, "best": improved,
                                 "elapsed_s": round(time.perf_counter() - t0, 1)}) + "\n")
        yield TrainProgress("validate", (epoch + 1) * steps_per_epoch, total_steps,
                            f"epoch {epoch + 1}/{epochs} val loss {val_loss:.4f}" + (" (best)" if improved else ""),
                            epoch=epoch, loss=float(np.mean(running)), val_loss=val_loss)
    if not (out / "config.json").is_file():
        save_model(out, net, config)
    return load_model(out)


def train(*args, **kwargs) -> LoadedModel:
    """Drain :func:`iter_train` and return the best model."""
    return drain(iter_train(*args, **kwargs))
