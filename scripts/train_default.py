"""Train the bundled default nuclei model on the DSB2018 `train` split.

Reproduces ``src/napari_unet/models/nuclei``::

    python scripts/train_default.py --data ../shared/data/dsb2018_stage1_train \
        --output runs/nuclei --epochs E --steps-per-epoch 200 --batch-size 16

The `train` split of ``splits.csv`` is divided once more (by a hash of the
image id) into images that train the network and a `tune` subset that picks
the best epoch and, later, the post-processing parameters. The `val` split is
never read here.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
import time
from pathlib import Path


def split_ids(data: Path, modality: str = "all") -> tuple[list[str], list[str]]:
    """(fit, tune) image ids, both from the `train` split, of one modality or all."""
    fit, tune = [], []
    with open(data / "splits.csv") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != "train" or modality not in ("all", row["modality"]):
                continue
            h = int(hashlib.sha1(("tune:" + row["id"]).encode()).hexdigest(), 16)
            (tune if h % 10 == 0 else fit).append(row["id"])
    return fit, tune


def run_settings(args: argparse.Namespace) -> dict:
    """The ``iter_train`` arguments that the run and its timing probe share."""
    return {"batch_size": args.batch_size, "crop_size": args.crop_size, "learning_rate": args.lr,
            "base_width": args.base_width, "depth": args.depth, "seed": args.seed, "device": args.device,
            "init_model": args.init_model, "num_threads": args.threads,
            "core_fraction": args.core_fraction, "sampling": args.sampling}


def probe(fit_s, tune_s, args: argparse.Namespace, steps: int) -> tuple[float, float]:
    """Seconds per training step and per validation, timed on a throwaway run of ``steps`` steps."""
    from napari_unet.training.loop import iter_train

    out = args.output.with_name(args.output.name + "_probe")
    gen = iter_train(fit_s, out, val_samples=tune_s, epochs=1, steps_per_epoch=steps, resume=False,
                     **run_settings(args))
    times, val_s = [], 0.0
    for rec in gen:
        now = time.perf_counter()
        if rec.stage == "train":
            times.append(now)
        else:
            val_s = now - times[-1]  # validation and saving the epoch's files
    shutil.rmtree(out, ignore_errors=True)
    half = len(times) // 2  # the first steps warm up
    return (times[-1] - times[half]) / max(len(times) - 1 - half, 1), val_s


def resumed_epochs(args: argparse.Namespace) -> int | None:
    """Epochs of the run being resumed in ``--output`` (None for a fresh run)."""
    import torch

    state = args.output / "train_state.pt"
    if not state.is_file():
        return None
    return int(torch.load(state, map_location="cpu", weights_only=True)["total_steps"]) // args.steps_per_epoch


def budget_epochs(args: argparse.Namespace, rate: float, val_s: float, spent_s: float) -> int:
    """Epochs that fit in what is left of ``--time-budget`` minutes."""
    left = args.time_budget * 60 - spent_s
    return max(1, int(left / (1.05 * (rate * args.steps_per_epoch + val_s))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--base-width", type=int, default=12)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--contacts", action="store_true",
                   help="weight up boundary pixels where nuclei touch (see training.data.mark_contacts)")
    p.add_argument("--core-fraction", type=float, default=0.0,
                   help="interior = each nucleus' core deeper than this fraction of its radius (see training.data.three_class_targets)")
    p.add_argument("--modality", default="all", choices=["all", "fluorescence", "color", "brightfield_gray"],
                   help="train (and pick the best epoch) on images of this modality only")
    p.add_argument("--snapshots", action="store_true",
                   help="keep the model of every epoch in OUTPUT/snapshots (see scripts/average_snapshots.py)")
    p.add_argument("--sampling", default="image", choices=["image", "area"],
                   help="crops pick images equally often, or in proportion to their area")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--init-model", help="continue from this model folder (a second stage)")
    p.add_argument("--probe", type=int, default=0, help="only time this many steps and exit")
    p.add_argument("--time-budget", type=float, default=None,
                   help="minutes for the whole run: times a few steps, then sets --epochs to fit "
                        "(a resumed run keeps its schedule)")
    args = p.parse_args(argv)

    from napari_unet.training.data import load_pairs
    from napari_unet.training.loop import iter_train

    fit, tune = split_ids(args.data, args.modality)
    t0 = time.perf_counter()
    fit_s = load_pairs(args.data / "images", args.data / "masks", names=fit, contacts=args.contacts,
                       core_fraction=args.core_fraction)
    tune_s = load_pairs(args.data / "images", args.data / "masks", names=tune, contacts=args.contacts,
                        core_fraction=args.core_fraction)
    print(f"loaded {len(fit_s)} fit + {len(tune_s)} tune images in {time.perf_counter() - t0:.1f}s", flush=True)
    if args.probe:
        rate, val_s = probe(fit_s, tune_s, args, args.probe)
        print(f"PROBE_SECONDS_PER_STEP {rate:.4f} validation {val_s:.1f}s", flush=True)
        return 0
    if args.time_budget:
        resumed = resumed_epochs(args)
        if resumed is not None:  # keep the schedule of the run being resumed; no timing needed
            args.epochs = resumed
            print(f"resuming a run of {resumed} epochs", flush=True)
        else:
            rate, val_s = probe(fit_s, tune_s, args, 40)
            args.epochs = budget_epochs(args, rate, val_s, time.perf_counter() - t0)
            print(f"{rate:.4f} s/step, validation {val_s:.1f}s: {args.epochs} epochs fit "
                  f"{args.time_budget:g} min", flush=True)
    gen = iter_train(
        fit_s, args.output, val_samples=tune_s, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        snapshots=args.snapshots, **run_settings(args),
        name="nuclei", description="2D nuclei (DSB2018 train split), background/interior/boundary U-Net",
    )
    for rec in gen:
        if rec.stage == "validate":
            print(rec.message, flush=True)
        elif rec.done % 100 == 0:
            print(f"{rec.message}  eta {rec.eta_s / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
