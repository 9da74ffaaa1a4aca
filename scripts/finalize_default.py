"""Tune post-processing on the `tune` subset and install a trained run as the bundled model.

    python scripts/finalize_default.py --data ../shared/data/dsb2018_stage1_train \
        --run runs/nuclei2 --dest src/napari_unet/models/nuclei

Reads only the `tune` subset of the `train` split (see train_default.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_default import split_ids  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--dest", type=Path, required=True)
    p.add_argument("--stages", default="", help="JSON list describing the training commands")
    args = p.parse_args()

    from napari_unet.checkpoint import load_model, save_model
    from napari_unet.io import read_image
    from napari_unet.training.tune import tune_postprocess

    meta = {r["id"]: r for r in csv.DictReader(open(args.data / "metadata.csv"))}
    ids = [i for i in split_ids(args.data)[1] if meta[i]["modality"] == "fluorescence"]
    model = load_model(args.run)
    best, table = tune_postprocess(
        model, [read_image(args.data / "images" / f"{i}.tif") for i in ids],
        [read_image(args.data / "masks" / f"{i}.tif") for i in ids])
    print("chosen:", best, "tune AP@0.5 %.3f mean AP %.3f" % table[0][1:])
    cfg = model.config
    cfg.postprocess = best
    prov = dict(cfg.provenance)
    prov.pop("trained_on", None)
    prov.update({
        "data": "DSB2018 stage1_train (BBBC038v1, CC0), community-fixed; 'train' split of splits.csv only",
        "fit_images": prov.get("n_train"), "tune_images": prov.get("n_val"),
        "postprocess_tuned_on": f"{len(ids)} fluorescence images of the tune subset",
        "tune_ap50": round(table[0][1], 4), "tune_mean_ap": round(table[0][2], 4),
    })
    if args.stages:
        prov["stages"] = json.loads(args.stages)
    cfg.provenance = prov
    save_model(args.dest, model.net, cfg)
    print("installed", args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
