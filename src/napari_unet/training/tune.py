"""Choosing inference settings on held-out training images.

:func:`tune_postprocess`: the network runs once per image; every combination of
thresholds and minimum size is then scored from the cached probabilities.
:func:`tune_normalization`: the network runs once per image and candidate pair
of input percentiles. :func:`tune_auto_scale`: the reference object area of
``scale="auto"``. Each winner is the highest AP at IoU 0.5, ties broken by the mean
AP over 0.5..0.9. The first two store theirs in the model's config with
``save=True``, where :func:`napari_unet.segment` takes its defaults; the caller
stores the third (``postprocess["auto_scale_area"]``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..checkpoint import WEIGHTS, LoadedModel, file_sha256, is_bundled, load_model, save_model
from ..errors import SegmentationError, check_fraction, check_whole
from ..instances import label_instances
from ..metrics import evaluate
from ..normalize import DEFAULT_HIGH, DEFAULT_LOW
from ..postprocess import (
    seeds_from_probabilities,
    semantic_from_probabilities,
    watershed_elevation,
)
from ..predict import Predictor, prepare_input
from ..progress import drain
from ..wording import plural

__all__ = ["AUTO_SCALE_AREAS", "DEFAULT_GRID", "TUNED", "NORMALIZATION_GRID", "matched_any", "tune_auto_scale",
           "tune_normalization", "tune_postprocess"]

TUNED = "postprocess_tuned_on"
"""Provenance key that :func:`tune_postprocess` (``save=True``) writes: the model's post-processing was chosen."""

DEFAULT_GRID: dict[str, Sequence[Any]] = {
    "threshold": (0.5, 0.6, 0.7),
    "seed_threshold": (0.5, 0.6, 0.7, 0.8, 0.9),
    "min_size": (0, 16, 24, 32),
    "neck_ratio": (0.0, 0.7),
}

NORMALIZATION_GRID: dict[str, Sequence[float]] = {
    "low": (0.5, 1.0, 2.0),
    "high": (99.5, 99.8, 99.9, 99.95, 99.99),
}
"""Candidate lower and upper input percentiles for :func:`tune_normalization`."""

AUTO_SCALE_AREAS: Sequence[float] = (60, 80, 100, 120, 150, 200)
"""Candidate median object areas (pixels) under which ``scale="auto"`` segments again."""


def _instances(probs: np.ndarray, target: str, params: dict[str, Any]) -> np.ndarray:
    fg = semantic_from_probabilities(probs, target=target, threshold=params["threshold"])
    seeds = seeds_from_probabilities(probs, target=target, seed_threshold=params["seed_threshold"])
    return label_instances(fg, method="watershed", seeds=seeds, elevation=watershed_elevation(probs),
                           min_size=params["min_size"], fill_holes=params.get("fill_holes", True), ndim=2,
                           neck_ratio=params.get("neck_ratio"))


def matched_any(table: Sequence[tuple[Any, float, float]]) -> bool:
    """False when no row of a tuning ``table`` (best first) matched a single object: AP 0 at every IoU."""
    return table[0][1] > 0.0 or table[0][2] > 0.0


def _check_grid(grid: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The grid with plain Python values, or a SegmentationError naming what inference would refuse."""
    unknown = set(grid) - set(DEFAULT_GRID)
    if unknown:
        raise SegmentationError(
            f"Cannot tune {', '.join(sorted(map(repr, unknown)))}: the grid takes {', '.join(DEFAULT_GRID)}.")
    def neck(value: Any) -> float | None:
        if value is None:  # no neck cuts, as 0
            return None
        value = check_fraction("neck_ratio", value, ends=True)
        if value >= 1.0:
            raise SegmentationError("neck_ratio must be below 1 (0 cuts no necks), not 1.")
        return value

    checks = {
        "threshold": lambda v: check_fraction("threshold", v),
        "seed_threshold": lambda v: check_fraction("seed_threshold", v, ends=True),
        "min_size": lambda v: check_whole("min_size", v, 0),
        "neck_ratio": neck,
    }
    checked = {}
    for key, values in grid.items():
        if isinstance(values, np.ndarray):
            values = values.reshape(-1).tolist()  # plain Python values, a 0-d array included
        values = list(values) if isinstance(values, (list, tuple, range)) else [values]
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        if not values:
            raise SegmentationError(f"The grid gives no value to try for {key!r}.")
        checked[key] = [checks[key](v) for v in values]
    return checked


def _save_tuned(loaded: LoadedModel, config, output=None) -> None:
    """Write ``config`` with ``loaded``'s weights into ``output``, or when it is None into the folder
    ``loaded`` came from, when that folder is its own."""
    if output is not None:
        save_model(output, loaded.net, config)
        return
    folder = loaded.path
    if folder is None:
        raise SegmentationError(
            "This model was not loaded from a folder, so there is nowhere to save the result: save "
            "it first (napari_unet.checkpoint.save_model) and tune that folder.")
    own = folder / WEIGHTS
    if is_bundled(folder):
        raise SegmentationError(
            f"{loaded.name} is a bundled model: save a copy (napari_unet.checkpoint.save_model) and "
            "tune that, so the installed package stays as it was.")
    if own.is_file() and file_sha256(own) != loaded.sha256:
        raise SegmentationError(
            f"{folder} holds another model's {WEIGHTS} (this one was read from another file there): "
            "save it to a folder of its own (napari_unet.checkpoint.save_model) and tune that.")
    save_model(folder, loaded.net, config)


def _probabilities(predictor: Predictor, image: np.ndarray, config) -> np.ndarray:
    """(K, Y, X) class probabilities of one 2D image, normalised as ``config`` says."""
    (_, x), = list(prepare_input(image, config).items())
    return drain(predictor.iter_array(x))


def tune_postprocess(
    model: LoadedModel | str,
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray],
    *,
    grid: dict[str, Sequence[Any]] | None = None,
    device: str = "auto",
    save: bool = False,
    output: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float, float]]]:
    """Grid-search the post-processing of a three-class model.

    Parameters
    ----------
    model : the model to tune
    images, masks : sequences of (Y, X[, C]) images and their instance labels
    grid : dict of parameter -> candidate values (see ``DEFAULT_GRID``)
    save : bool
        Write the winner into the model folder's ``config.json``.
    output : path, optional
        With ``save``, write the model with the winner into this folder instead
        of its own (a tuned copy). Nothing is written there before the winner is
        known, so a run stopped while tuning leaves no untuned copy behind.

    Returns
    -------
    best : dict
        The chosen parameters; the model's own when every setting scores AP 0
        (no object matched at all).
    table : list of (params, AP@0.5, mean AP 0.5..0.9), best first
    """
    grid = _check_grid(grid or DEFAULT_GRID)
    loaded = load_model(model)
    predictor = Predictor(loaded, device=device)
    cached = [(_probabilities(predictor, image, loaded.config), np.asarray(mask))
              for image, mask in zip(images, masks)]
    # What the grid leaves out keeps the model's value, in the scoring as in the result.
    fixed = {k: loaded.config.postprocess.get(k) for k in DEFAULT_GRID}
    fixed["fill_holes"] = bool(loaded.config.postprocess.get("fill_holes", True))  # scored as segment() does
    keys = list(grid)
    table = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        scores = evaluate((m for _, m in cached),
                          (_instances(p, loaded.config.target, {**fixed, **params}) for p, _ in cached))
        aps = [t.ap for t in scores.totals]
        table.append((params, aps[0], float(np.mean(aps))))
    table.sort(key=lambda row: (row[1], row[2]), reverse=True)
    found = matched_any(table)
    # No setting matched a single object (a network that finds nothing yet, or masks that do
    # not belong to their images): nothing was learnt, so the model keeps its own settings.
    best = ({**loaded.config.postprocess, **table[0][0], "instance_method": "watershed"} if found
            else dict(loaded.config.postprocess))
    if save:
        provenance = {**loaded.config.provenance,
                      TUNED: f"{plural(len(cached), 'image')}, AP@0.5 {table[0][1]:.4f}"
                      + ("" if found else " everywhere: the model's settings were kept")}
        config = dataclasses.replace(loaded.config, postprocess=best, provenance=provenance)
        _save_tuned(loaded, config, output)
        loaded.config = config
    return best, table


def tune_normalization(
    model: LoadedModel | str,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    lows: Sequence[float] = NORMALIZATION_GRID["low"],
    highs: Sequence[float] = NORMALIZATION_GRID["high"],
    device: str = "auto",
    save: bool = False,
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float, float]]]:
    """Choose the input percentiles that map to 0 and 1 at inference.

    Training normalises every image from its 1st to its 99.8th percentile
    (:func:`~napari_unet.training.data.prepare_sample`), and augments gain and
    offset around that. At inference a different pair can serve better, for
    example where a few very bright nuclei (mitoses, apoptotic cells) set the
    upper percentile and dim the rest. Each pair is scored by
    :func:`napari_unet.segment` at scale 1 with the model's own post-processing.

    Parameters
    ----------
    model : the model to tune
    images, masks : sequences of (Y, X[, C]) images and their instance labels
    lows, highs : candidate lower and upper percentiles (pairs with low >= high are skipped)
    save : bool
        Write the winner into the model folder's ``config.json``.

    Returns
    -------
    best : dict
        The chosen ``normalization`` entry of the config.
    table : list of (normalization, AP@0.5, mean AP 0.5..0.9), best first; on
        ties the model's current pair comes first.
    """
    from ..api import segment

    loaded = load_model(model)
    masks = [np.asarray(m) for m in masks]
    current = loaded.config.normalization
    table = []
    for low, high in itertools.product(lows, highs):
        if low >= high:
            continue
        norm = {**current, "method": "percentile", "low": float(low), "high": float(high)}
        candidate = dataclasses.replace(
            loaded, config=dataclasses.replace(loaded.config, normalization=norm))
        labels = [segment(image, model=candidate, device=device, scale=1.0,
                          keep_probabilities=False).instances for image in images]
        aps = [t.ap for t in evaluate(masks, labels).totals]
        table.append((norm, aps[0], float(np.mean(aps))))
    if not table:
        raise SegmentationError("No candidate normalisation: every low percentile is >= every high one.")

    def is_current(norm: dict[str, Any]) -> bool:
        return (float(current.get("low", DEFAULT_LOW)), float(current.get("high", DEFAULT_HIGH))) == (
            norm["low"], norm["high"])

    table.sort(key=lambda row: (row[1], row[2], is_current(row[0])), reverse=True)
    best = dict(table[0][0])
    if save:
        config = dataclasses.replace(loaded.config, normalization=best)
        _save_tuned(loaded, config)
        loaded.config = config
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
    masks = [np.asarray(m) for m in masks]  # a stacked array is a sequence of masks here
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
