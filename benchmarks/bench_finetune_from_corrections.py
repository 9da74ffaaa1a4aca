"""Does fine-tuning on a user's corrected images help on other images of the same kind?

    python benchmarks/bench_finetune_from_corrections.py [--kind brightfield] [--train 2] [--threads 2]

The Train widget's promise, measured with ground truth standing in for hand corrections:
the first ``--train`` images (by id) of one kind of image from the DSB2018 `train` split
(../shared/data; `val` is never read) are the corrected pairs; the bundled model is
fine-tuned on them with the Train widget's default schedule (the options below default to
its values) and no validation, as the widget does; both models are then scored (AP at
IoU 0.5, with the model's own post-processing) on the training images and on the other
images of that kind. Kinds: ``brightfield`` (1024x1024 grey brightfield), ``tissue``
(603x1272 dense fluorescence tissue), ``color`` (256x320 H&E, turned grey). The bundled
model was trained on most of the `train` split, these images among them (all but one
brightfield and 14 colour images), so "held out" means held out from the fine-tune.

2026-11-27, 2 threads on a shared 2-core machine (load 4-6, so the minutes are high; two runs of brightfield, the same scores),
the defaults, the first two images of each kind:

| kind | minutes | trained on (2): bundled -> fine-tuned | held out: bundled -> fine-tuned |
| --- | --- | --- | --- |
| brightfield 1024x1024 | 9.5, 14.4 | 0.661 -> 0.719 | 12 images, 0.557 -> 0.565 (6 better, 4 worse) |
| tissue 603x1272 | 20.2 | 0.762 -> 0.805 | 3 images, 0.758 -> 0.756 (1 better, 2 worse) |
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_stage1_train"
KINDS = {
    "brightfield": lambda row: row["modality"] == "brightfield_gray",
    "tissue": lambda row: (row["height"], row["width"]) == ("603", "1272"),
    "color": lambda row: row["modality"] == "color",
}


def image_ids(kind: str) -> list[str]:
    """The `train` split's images of ``kind``, sorted by id."""
    with open(DATA / "splits.csv") as fh:
        split = {r["id"]: r["split"] for r in csv.DictReader(fh)}
    with open(DATA / "metadata.csv") as fh:
        return sorted(r["id"] for r in csv.DictReader(fh) if split[r["id"]] == "train" and KINDS[kind](r))


def scores(model, ids: list[str]) -> list[float]:
    """AP at IoU 0.5 of ``model`` on each image."""
    import napari_unet
    from napari_unet.io import read_image
    from napari_unet.metrics import evaluate

    aps = []
    for i in ids:
        found = napari_unet.segment(read_image(DATA / "images" / f"{i}.tif"), model=model).instances
        truth = read_image(DATA / "masks" / f"{i}.tif")
        aps.append(evaluate([truth], [found], thresholds=0.5).totals[0].ap)
    return aps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), default="brightfield")
    p.add_argument("--train", type=int, default=2, help="corrected images to fine-tune on")
    p.add_argument("--max-heldout", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    # The Train widget's defaults (tests/napari/test_train_widget.py pins them).
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="default: LR_FINE_TUNE, as the widget")
    args = p.parse_args()

    import torch

    from napari_unet.checkpoint import load_model
    from napari_unet.io import read_image
    from napari_unet.progress import drain
    from napari_unet.training.data import plane_samples
    from napari_unet.training.loop import LR_FINE_TUNE, fit_crop_size, iter_train

    torch.set_num_threads(args.threads)
    ids = image_ids(args.kind)
    train_ids, held_out = ids[:args.train], ids[args.train:][:args.max_heldout]
    bundled = load_model("default")
    samples = [s for i in train_ids
               for s in plane_samples(read_image(DATA / "images" / f"{i}.tif"),
                                      read_image(DATA / "masks" / f"{i}.tif"), name=i[:8],
                                      core_fraction=bundled.config.core_fraction)]
    crop = fit_crop_size(args.crop_size, min(min(s.target.shape) for s in samples), depth=bundled.config.depth)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        tuned = drain(iter_train(samples, out, epochs=args.epochs, steps_per_epoch=args.steps,
                                 batch_size=args.batch_size, crop_size=crop,
                                 learning_rate=args.lr or LR_FINE_TUNE, init_model=bundled,
                                 resume=False, name="finetuned"))
        minutes = (time.perf_counter() - start) / 60

    print(f"{args.kind}: fine-tuned on {len(train_ids)} image(s) ({', '.join(i[:8] for i in train_ids)}), "
          f"{args.epochs} x {args.steps} steps x {args.batch_size} crops of {crop} px, "
          f"lr {args.lr or LR_FINE_TUNE:g}, {args.threads} threads: {minutes:.1f} min")
    print("| images | n | AP@0.5 bundled | AP@0.5 fine-tuned | better / worse |")
    print("| --- | --- | --- | --- | --- |")
    for label, group in (("trained on", train_ids), ("held out", held_out)):
        before, after = np.array(scores(bundled, group)), np.array(scores(tuned, group))
        print(f"| {label} | {len(group)} | {before.mean():.3f} | {after.mean():.3f} | "
              f"{int((after > before + 0.01).sum())} / {int((after < before - 0.01).sum())} |")


if __name__ == "__main__":
    main()
