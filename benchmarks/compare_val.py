"""Object-level AP on the DSB2018 `val` fluorescence images: bundled model vs baselines.

    python benchmarks/compare_val.py

Rows: the bundled model with its tuned post-processing; the same network with
plain connected components; a classical pipeline (Otsu threshold, then a
distance-transform watershed, then the same hole filling and size filter).
Scores only: nothing here tunes anything.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_stage1_train"


def main() -> None:
    from skimage.filters import threshold_otsu

    import napari_unet
    from napari_unet.checkpoint import load_model
    from napari_unet.instances import label_instances
    from napari_unet.io import read_image
    from napari_unet.metrics import evaluate

    meta = {r["id"]: r for r in csv.DictReader(open(DATA / "metadata.csv"))}
    ids = [r["id"] for r in csv.DictReader(open(DATA / "splits.csv"))
           if r["split"] == "val" and meta[r["id"]]["modality"] == "fluorescence"]
    images = [read_image(DATA / "images" / f"{i}.tif") for i in ids]
    truths = [read_image(DATA / "masks" / f"{i}.tif") for i in ids]
    model = load_model("default")

    def otsu(img: np.ndarray) -> np.ndarray:
        fg = img > threshold_otsu(img)
        return label_instances(fg, method="watershed", min_size=24)

    methods = {
        "bundled model (watershed, tuned)": lambda img: napari_unet.segment(
            img, model=model, device="cpu", keep_probabilities=False).instances,
        "same network, connected components": lambda img: napari_unet.segment(
            img, model=model, device="cpu", keep_probabilities=False,
            instance_method="components").instances,
        "Otsu + distance watershed": otsu,
    }
    print(f"{len(ids)} val fluorescence images, {sum(int(t.max()) for t in truths)} nuclei")
    print(f"{'method':<38} {'AP@0.5':>7} {'AP@0.75':>8} {'AP@0.9':>7} {'F1@0.5':>7} {'s/img':>6}")
    for name, fn in methods.items():
        t = time.perf_counter()
        preds = [fn(img) for img in images]
        per = (time.perf_counter() - t) / len(images)
        s = evaluate(truths, preds, thresholds=(0.5, 0.75, 0.9)).totals
        print(f"{name:<38} {s[0].ap:>7.3f} {s[1].ap:>8.3f} {s[2].ap:>7.3f} {s[0].f1:>7.3f} {per:>6.2f}")


if __name__ == "__main__":
    main()
