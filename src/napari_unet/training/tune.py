"""Choosing post-processing parameters on held-out training images.

The network runs once per image; every combination of thresholds and
minimum size is then scored from the cached probabilities. The winner
(highest AP at IoU 0.5, ties broken by the mean AP over 0.5..0.9) is stored in
the model's config, where :func:`napari_unet.segment` takes its defaults.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..checkpoint import LoadedModel, load_model, save_model
from ..instances import label_instances
from ..metrics import evaluate
from ..postprocess import (
    seeds_from_probabilities,
    semantic_from_probabilities,
    watershed_elevation,
)
from ..predict import Predictor, prepare_input

__all__ = ["AUTO_SCALE_AREAS", "DEFAULT_GRID", "tune_auto_scale", "tune_postprocess"]

DEFAULT_GRID: dict[str, Sequence[Any]] = {
    "threshold": (0.5, 0.6, 0.7),
    "seed_threshold": (0.5, 0.6, 0.7, 0.8, 0.9),
    "min_size": (0, 16, 24, 32),
    "neck_ratio": (0.0, 0.7),
}

AUTO_SCALE_AREAS: Sequence[float] = (60, 80, 100, 120, 150, 200)
"""Candidate median object areas (pixels) under which ``scale="auto"`` segments again."""


def _instances(probs: np.ndarray, target: str, params: dict[str, Any]) -> np.ndarray:
    fg = semantic_from_probabilities(probs, target=target, threshold=params["threshold"])
    seeds = seeds_from_probabilities(probs, target=target, seed_threshold=params["seed_threshold"])
    return label_instances(fg, method="watershed", seeds=seeds, elevation=watershed_elevation(probs),
                           min_size=params["min_size"], fill_holes=True, ndim=2,
                           neck_ratio=params.get("neck_ratio"))


def tune_postprocess(
    model: LoadedModel | str,
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray],
    *,
    grid: dict[str, Sequence[Any]] | None = None,
    device: str = "auto",
    save: bool = False,
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float, float]]]:
    """Grid-search the post-processing of a three-class model.

    Parameters
    ----------
    model : the model to tune
    images, masks : sequences of (Y, X[, C]) images and their instance labels
    grid : dict of parameter -> candidate values (see ``DEFAULT_GRID``)
    save : bool
        Write the winner into the model folder's ``config.json``.

    Returns
    -------
    best : dict
        The chosen parameters.
    table : list of (params, AP@0.5, mean AP 0.5..0.9), best first
    """
    loaded = load_model(model)
    predictor = Predictor(loaded, device=device)
    cached = []
    for image, mask in zip(images, masks):
        prepared = prepare_input(image, loaded.config)
        (_, x), = list(prepared.items())
        gen = predictor.iter_array(x)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                cached.append((stop.value, np.asarray(mask)))
                break
    grid = grid or DEFAULT_GRID
    keys = list(grid)
    table = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        scores = evaluate((m for _, m in cached),
                          (_instances(p, loaded.config.target, params) for p, _ in cached))
        aps = [t.ap for t in scores.totals]
        table.append((params, aps[0], float(np.mean(aps))))
    table.sort(key=lambda row: (row[1], row[2]), reverse=True)
    best = {**loaded.config.postprocess, **table[0][0], "instance_method": "watershed"}
    if save and loaded.path is not None:
        loaded.config.postprocess = best
        save_model(loaded.path, loaded.net, loaded.config)
    return best, table


def tune_auto_scale(
    model: LoadedModel | str,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    factor: float = 2.0,
    areas: Sequence[float] = AUTO_SCALE_AREAS,
    device: str = "auto",
) -> tuple[float | None, list[tuple[float | None, float, float]]]:
    """Choose the median object area under which ``scale="auto"`` segments again at ``factor``.

    Every image is segmented with the model's post-processing at scale 1 and
    at ``factor``; each candidate area picks, per image, the second result
    when the first one's median object area is under it.

    Returns
    -------
    area : float or None
        The winner (highest AP at IoU 0.5, then mean AP); None when never
        rescaling scores best.
    table : list of (area or None, AP@0.5, mean AP 0.5..0.9), best first
    """
    from ..api import median_object_area, objects_are_small, segment

    loaded = load_model(model)
    first, second, medians = [], [], []
    for image in images:
        a = segment(image, model=loaded, device=device, scale=1.0, keep_probabilities=False)
        first.append(a.instances)
        medians.append(median_object_area(a.instances, a.axes))
        second.append(segment(image, model=loaded, device=device, scale=factor,
                              keep_probabilities=False).instances)
    table = []
    for area in (None, *areas):
        chosen = [b if area is not None and objects_are_small(m, area) else a
                  for a, b, m in zip(first, second, medians)]
        aps = [t.ap for t in evaluate(masks, chosen).totals]
        table.append((area, aps[0], float(np.mean(aps))))
    # Best AP@0.5, then mean AP; on ties the smallest area (fewest second passes).
    table.sort(key=lambda row: (row[1], row[2], -(row[0] or 0)), reverse=True)
    return table[0][0], table
