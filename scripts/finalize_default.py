"""Tune inference settings on the `tune` subset and install a trained run as the bundled model.

In order: the input percentiles (``tune_normalization``, with the run's own
post-processing), then the post-processing grid (``tune_postprocess``), then
the reference area of ``scale="auto"`` (``tune_auto_scale``).

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
    p.add_argument("--auto-scale-factor", type=float, default=2.0,
                   help="scale of the second pass of scale='auto' (0: no reference size, no 'auto')")
    p.add_argument("--keep-normalization", action="store_true",
                   help="keep the run's input percentiles (else choose them on tune first)")
    p.add_argument("--auto-by-default", action="store_true",
                   help="make scale='auto' the model's default (else it is offered, and the default is 1)")
    args = p.parse_args()

    from napari_unet.checkpoint import load_model, save_model
    from napari_unet.io import read_image
    from napari_unet.training.tune import tune_auto_scale, tune_normalization, tune_postprocess

    meta = {r["id"]: r for r in csv.DictReader(open(args.data / "metadata.csv"))}
    ids = [i for i in split_ids(args.data)[1] if meta[i]["modality"] == "fluorescence"]
    model = load_model(args.run)
    images = [read_image(args.data / "images" / f"{i}.tif") for i in ids]
    masks = [read_image(args.data / "masks" / f"{i}.tif") for i in ids]
    if not args.keep_normalization:
        norm, norm_table = tune_normalization(model, images, masks)
        for row in norm_table:
            print(f"percentiles {row[0]['low']}-{row[0]['high']}: tune AP@0.5 {row[1]:.4f} "
                  f"mean AP {row[2]:.4f}")
        model.config.normalization = norm
    best, table = tune_postprocess(model, images, masks)
    print("chosen:", best, "tune AP@0.5 %.3f mean AP %.3f" % table[0][1:])
    cfg = model.config
    for key in ("scale", "auto_scale_area", "auto_scale_factor"):
        best.pop(key, None)
    cfg.postprocess = best
    scores, auto_scores = table[0][1:], None
    if args.auto_scale_factor:
        area, auto_table = tune_auto_scale(model, images, masks, factor=args.auto_scale_factor)
        for row in auto_table:
            print(f"auto scale below median area {row[0]}: tune AP@0.5 {row[1]:.4f} mean AP {row[2]:.4f}")
        if area is not None:
            cfg.postprocess = {**best, "auto_scale_area": area, "auto_scale_factor": args.auto_scale_factor}
            auto_scores = auto_table[0][1:]
            if args.auto_by_default:
                cfg.postprocess["scale"] = "auto"
                scores = auto_scores
    prov = dict(cfg.provenance)
    prov.pop("trained_on", None)
    prov.update({
        "data": "DSB2018 stage1_train (BBBC038v1, CC0), community-fixed; 'train' split of splits.csv only",
        "fit_images": prov.get("n_train"), "tune_images": prov.get("n_val"),
        "postprocess_tuned_on": f"{len(ids)} fluorescence images of the tune subset",
        "normalization_tuned_on": (None if args.keep_normalization
                                   else f"{len(ids)} fluorescence images of the tune subset"),
        "tune_ap50": round(scores[0], 4), "tune_mean_ap": round(scores[1], 4),
    })
    if auto_scores is not None:
        prov["tune_ap50_scale_auto"] = round(auto_scores[0], 4)
        prov["tune_mean_ap_scale_auto"] = round(auto_scores[1], 4)
    if args.stages:
        prov["stages"] = json.loads(args.stages)
    cfg.provenance = prov
    save_model(args.dest, model.net, cfg)
    print("installed", args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
