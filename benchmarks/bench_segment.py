"""Speed and memory of `segment` on a 1024x1024 fluorescence image, and 2x2 of it (CPU).

    python benchmarks/bench_segment.py [--threads 2] [--repeats 7] [--model default]

The image is a 2x2 mosaic of 512x512 crops from four 520x696 fluorescence
images of the DSB2018 `train` split (../shared/data), or the bundled sample
tiled when that folder is absent. Prints a table of medians (seconds) per
setting, each setting timed in the same run so the ratios are comparable on a
noisy machine. Peak RSS is read from the kernel after all runs. The last row labels
a 16-plane z-stack of the network's outputs in 3D (label_instances as segment runs it
for a 2D model's stack); numpy's peak for it is printed in bytes per voxel.
"""

from __future__ import annotations

import argparse
import csv
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_stage1_train"


def mosaic() -> tuple[np.ndarray, str]:
    from napari_unet.io import read_image

    if (DATA / "metadata.csv").is_file():
        meta = list(csv.DictReader(open(DATA / "metadata.csv")))
        split = {r["id"]: r["split"] for r in csv.DictReader(open(DATA / "splits.csv"))}
        ids = [r["id"] for r in meta if r["height"] == "520" and split[r["id"]] == "train"][:4]
        tiles = [read_image(DATA / "images" / f"{i}.tif")[:512, :512] for i in ids]
        return np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]), "DSB2018 train mosaic"
    img = read_image(Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "data" / "nuclei.tif")
    return np.tile(img, (4, 4))[:1024, :1024], "bundled sample, tiled"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--model", default="default")
    args = p.parse_args()

    import torch

    import napari_unet
    from napari_unet.checkpoint import load_model
    from napari_unet.predict import Predictor, prepare_input

    torch.set_num_threads(args.threads)
    image, source = mosaic()
    model = load_model(args.model)
    print(f"image {image.shape} {image.dtype} ({source}); model {model.name} "
          f"({model.short_hash}); torch {torch.__version__}, {args.threads} thread(s)")

    big = np.block([[image, image], [image, image]])  # 4x the pixels: tiling's overhead shows as > 4x
    predictor = Predictor(model, device="cpu")
    (_, x), = list(prepare_input(image, model.config).items())

    def network_only() -> None:
        gen = predictor.iter_array(x)
        for _ in gen:
            pass

    result = napari_unet.segment(image, model=model, device="cpu", keep_probabilities=False)

    def measure() -> None:
        napari_unet.measure_objects(result.instances, axes=result.axes, image=image,
                                    image_axes=result.metadata["axes"], spacing=(0.5, 0.5))

    # A z-stack of the mosaic's network outputs, each plane shifted (nuclei slant through it), labelled
    # in 3D as segment labels a 2D model's stack: watershed from the seeds, cut at necks.
    from napari_unet.instances import label_instances
    from napari_unet.postprocess import (
        seeds_from_probabilities,
        semantic_from_probabilities,
        watershed_elevation,
    )

    probs = napari_unet.segment(image, model=model, device="cpu").probabilities
    cfg = model.config
    planes = [np.roll(probs, 3 * z, axis=-1) for z in range(16)]
    stack = {"foreground": np.stack([semantic_from_probabilities(p, target=cfg.target) for p in planes]),
             "seeds": np.stack([seeds_from_probabilities(p, target=cfg.target) for p in planes]),
             "elevation": np.stack([watershed_elevation(p) for p in planes])}
    del probs, planes

    def label_stack() -> None:
        label_instances(stack["foreground"], seeds=stack["seeds"], elevation=stack["elevation"], method="watershed",
                        ndim=3, neck_ratio=0.7, min_size=24, min_size_is_area=True)

    rows = [
        ("segment, defaults (end to end)", lambda: napari_unet.segment(image, model=model, device="cpu")),
        ("segment, no probabilities kept", lambda: napari_unet.segment(image, model=model, device="cpu",
                                                                        keep_probabilities=False)),
        ("segment, connected components", lambda: napari_unet.segment(image, model=model, device="cpu",
                                                                        instance_method="components")),
        ("segment, 512 px tiles", lambda: napari_unet.segment(image, model=model, device="cpu", tile_size=512)),
        ("network only (fused, 1 tile)", network_only),
        ("segment 2048x2048 (2x2 of it), defaults", lambda: napari_unet.segment(big, model=model, device="cpu")),
        (f"measure_objects ({result.metadata['n_objects']} objects)", measure),
        (f"label_instances, {'x'.join(map(str, stack['seeds'].shape))} stack in 3D", label_stack),
    ]
    results = [(name, timed(fn, args.repeats)) for name, fn in rows]
    base = results[0][1]
    print(f"\n{'setting':<42} {'median s':>9} {'vs default':>11}")
    for name, t in results:
        print(f"{name:<42} {t:>9.3f} {t / base:>10.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the process: {peak:.0f} MiB")
    tracemalloc.start()
    label_stack()
    per_voxel = tracemalloc.get_traced_memory()[1] / stack["seeds"].size
    tracemalloc.stop()
    print(f"label_instances of the stack: numpy's peak {per_voxel:.1f} bytes per voxel")


if __name__ == "__main__":
    main()
