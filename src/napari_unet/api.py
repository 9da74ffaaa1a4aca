"""``segment``: image in; semantic mask, instance labels and probabilities out."""

from __future__ import annotations

from collections.abc import Generator
import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .axes import labelled_last
from .checkpoint import LoadedModel
from .errors import SegmentationError, check_fraction, check_whole
from .instances import METHODS, count_objects, label_instances, min_object_size
from .tracking import link_over_time
from .wording import plural
from .postprocess import (
    seeds_from_probabilities,
    semantic_from_probabilities,
    watershed_elevation,
)
from .predict import Predictor, check_scale, prepare_input, stream_probabilities
from .progress import Progress, drain

__all__ = ["Segmentation", "check_percentiles", "iter_segment", "median_object_area", "objects_are_small", "segment"]


@dataclass
class Segmentation:
    """What :func:`segment` returns.

    Attributes
    ----------
    semantic : ndarray (*out_shape) uint8
        0 background, 1.. classes (1 = nucleus for the default model).
    instances : ndarray (*out_shape) int32
        0 background, one id per object; unique per labelled block (a whole
        volume for z-stacks, each time point for time series).
    probabilities : ndarray (K, *out_shape) float32 or None
        Class probabilities (None when ``keep_probabilities=False``).
    axes : str
        Axes of the outputs (the input's, less ``C``).
    metadata : dict
        Model name and weight hash, parameters, package version. ``min_volume``: the
        voxels an object needed to be kept where the labels are 3D (None in 2D); for a
        2D model's planes labelled together, the ball as wide as ``min_size``'s disc.
    tracks : int or None
        For instances linked over time (``metadata["linked_over_time"]``), the number of
        tracks: linked ids are numbered from 1, so their largest. None when not linked.
    """

    semantic: np.ndarray
    instances: np.ndarray
    probabilities: np.ndarray | None
    axes: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tracks: int | None = None


def iter_segment(
    image: Any,
    *,
    model: LoadedModel | str = "default",
    axes: str | None = None,
    mode: str = "auto",
    channel: int | None = None,
    device: str = "auto",
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 1,
    scale: float | str | None = None,
    percentiles: tuple[float, float] | None = None,
    normalize_per: str = "stack",
    threshold: float | None = None,
    seed_threshold: float | None = None,
    instance_method: str | None = None,
    min_size: int | None = None,
    fill_holes: bool | None = None,
    link_time: bool = False,
    keep_probabilities: bool = True,
) -> Generator[Progress, None, Segmentation]:
    """Segment an image, yielding progress; returns a :class:`Segmentation`.

    Parameters
    ----------
    image : array-like (numpy, dask, zarr), 2 to 5 dimensions
    model : LoadedModel, name or path
        ``"default"`` is the bundled nuclei model.
    axes : str or None
        Letters from ``TZYXC`` (e.g. ``"ZYX"``, ``"YXC"``); None infers them.
    mode : {"auto", "2d", "3d"}
        Plane by plane (2D model) or whole volumes (3D model).
    channel : int or None
        Which channel feeds a 1-channel model (None: RGB becomes grey).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    tile_size, overlap, batch_size : tiling (see :class:`~napari_unet.predict.Predictor`)
        ``tile_size`` is at least :func:`~napari_unet.predict.smallest_tile` (64 px for the
        bundled model): smaller tiles see too little around their pixels. The metadata's
        ``tile_size``, ``overlap`` and ``halo`` are those the tiles really used (rounded up
        to the network's multiple).
    scale : float, "auto" or None
        Resample Y and X by this factor for the network: 2 when the objects
        are about half the size the model was trained on, 0.5 when twice. The
        outputs keep the image's size; ``min_size`` counts its pixels.
        ``"auto"`` segments at scale 1 and, when the objects' median area is
        under the model's ``auto_scale_area`` (pixels), once more at its
        ``auto_scale_factor``; a stack is measured as a whole and decided
        once. None takes the model's choice (``postprocess["scale"]``, 1 when
        it has none; the bundled model offers "auto" but defaults to 1).
        ``metadata["scale"]`` says which scale gave the result.
    percentiles : (low, high) or None
        The input's percentiles that become 0 and 1 for the network (each
        channel, over what ``normalize_per`` says); None takes the model's (1
        and 99.8 for the bundled one). Raise ``high`` (99.99, say) when a few
        very bright spots make the nuclei look dim. ``metadata["percentiles"]``
        records the pair used.
    normalize_per : {"stack", "frame", "plane"}
        What the percentiles are taken over. ``"stack"``: the whole array at
        once, all time points and planes. ``"frame"``: each time point on its
        own, so frames dimmed by photobleaching are brightened again.
        ``"plane"``: each 2D plane (each Z of each time point) on its own, for
        deep planes of a z-stack that are dimmer than the top ones. An image
        without a T axis is one frame (``"frame"`` is then ``"stack"``), one
        without T or Z one plane. A frame or plane that holds no nuclei has its
        background stretched to full range and may show false objects there:
        keep ``"stack"`` for series whose brightness does not change.
        ``metadata["normalize_per"]`` records the choice, and
        ``metadata["normalize_per_axes"]`` the axes whose every index had a
        range of its own (``"T"``, ``"Z"`` for a z-stack, ``"TZ"``, or ``""``: one range for the image).
    threshold, seed_threshold, instance_method, min_size, fill_holes :
        Post-processing; None takes the model's tuned defaults.
        ``instance_method`` is ``"components"`` or ``"watershed"``. ``min_size``
        is the smallest object kept, in the units the model sees: pixels for a 2D
        model, voxels for a 3D one. A z-stack segmented plane by plane (a 2D model)
        is labelled in 3D, and there ``min_size`` stays the area of a nucleus'
        cross-section: objects are kept when their volume reaches that of a ball as
        wide (88 voxels for 24 pixels; see
        :func:`napari_unet.instances.ball_volume_of_disc`).
        ``metadata["min_volume"]`` records the volume used.
    link_time : bool
        For a time series: give each object the id of the object it overlaps
        most in the time point before (:func:`napari_unet.tracking.link_over_time`),
        so a nucleus keeps its id over time. Without it each time point's ids
        start at 1. Given ``axes`` without T it does nothing; with axes inferred
        without T (a movie read as a z-stack) it is refused: give the axes.
    keep_probabilities : bool
        Return the class probabilities too (K floats per pixel).

    Yields
    ------
    Progress
        ``stage="predict"`` after each batch of ``batch_size`` tiles, then
        ``stage="instances"``; with ``scale="auto"``, a second pass (when it
        runs) yields its own ``"predict"`` and ``"instances"`` records.
    """
    predictor = Predictor(model, device=device, tile_size=tile_size, overlap=overlap,
                          batch_size=batch_size)
    cfg = predictor.config
    post = {**cfg.postprocess}
    for key, value in (("threshold", threshold), ("seed_threshold", seed_threshold),
                       ("instance_method", instance_method), ("min_size", min_size),
                       ("fill_holes", fill_holes)):
        if value is not None:
            post[key] = value
    if post["instance_method"] not in METHODS:
        raise SegmentationError(
            f"Unknown instance method {post['instance_method']!r}: use one of {METHODS}.")
    for name, flag in (("fill_holes", post["fill_holes"]), ("link_time", link_time),
                       ("keep_probabilities", keep_probabilities)):
        if not isinstance(flag, (bool, np.bool_)):  # "no" would count as true
            raise SegmentationError(f"{name} must be True or False, not {flag!r}.")
    auto, first = _scale_choice(scale, post)
    post["threshold"] = check_fraction("threshold", post["threshold"])
    post["seed_threshold"] = check_fraction("seed_threshold", post["seed_threshold"], ends=True)
    min_size = post["min_size"]
    if isinstance(min_size, float) and min_size.is_integer():
        min_size = int(min_size)  # a model's config.json may hold 24.0
    post["min_size"] = check_whole("min_size (pixels)", min_size, 0)
    norm = {**cfg.normalization}
    if percentiles is not None:
        norm.update(zip(("low", "high"), check_percentiles(percentiles)))
    prepared = prepare_input(image, dataclasses.replace(cfg, normalization=norm), axes=axes, mode=mode,
                             channel=channel, normalize_per=normalize_per)
    plan = prepared.plan
    if link_time and axes is None and "T" not in plan.axes:
        # A movie read as a z-stack would have its frames labelled together, as one volume.
        shape = tuple(int(n) for n in np.shape(image))
        todo = (f"give them, e.g. axes={plan.axes.replace('Z', 'T')!r} for a time series" if "Z" in plan.axes
                else "leave out link_time, or give the axes of a time series")
        raise SegmentationError(
            f"link_time=True needs a time axis, but the axes of the image (shape {shape}) were guessed "
            f"from its shape as {plan.axes!r}, without T: {todo}.")
    label_ndim = len(plan.label_axes)
    # What _one_pass keeps, for the metadata: a 2D model's min_size is an area (a ball in 3D).
    block = tuple(prepared.out_shape[i] for i in labelled_last(plan.out_axes, plan.label_axes)[-label_ndim:])
    min_kept = min_object_size(post["min_size"], block, min_size_is_area=cfg.spatial_dims == 2)
    semantic, instances, probs_out = yield from _one_pass(predictor, prepared, post, first,
                                                          keep_probabilities)
    used = first
    if auto:
        area = median_object_area(instances, plan.out_axes)
        if objects_are_small(area, post["auto_scale_area"]):
            used = check_scale(post.get("auto_scale_factor", 2.0))
            yield Progress("predict", 0, 1, f"small objects (median {area:.0f} px): again at scale {used:g}")
            # The first pass's outputs go before the second's are made: kept, they would
            # add their 5 bytes per pixel (17 with the probabilities) to its peak.
            semantic = instances = probs_out = None
            semantic, instances, probs_out = yield from _one_pass(predictor, prepared, post, used,
                                                                  keep_probabilities)
    linked = bool(link_time) and "T" in plan.out_axes
    if linked:
        instances = link_over_time(instances, time_axis=plan.out_axes.index("T"), out=instances)
    n_objects = count_objects(np.transpose(instances, labelled_last(plan.out_axes, plan.label_axes)), label_ndim)
    yield Progress("instances", 1, 1, plural(n_objects, "object"))
    meta = {
        "napari_unet_version": __version__,
        "model": predictor.model.name,
        "model_sha256": predictor.model.sha256,
        "device": str(predictor.device),
        "axes": plan.axes,
        # The channel that was segmented: an index, "grey" (RGB turned to luminance), or None.
        "channel": "grey" if prepared.channel_index == -1 else prepared.channel_index,
        "mode": "3d" if len(plan.net_axes) == 3 else "2d",
        "tile_size": predictor.tile_size,
        "scale": float(used),
        "scale_mode": "auto" if auto else "fixed",
        "percentiles": [float(norm["low"]), float(norm["high"])],
        "normalize_per": normalize_per.strip().lower(),
        "normalize_per_axes": prepared.normalize_axes,
        "overlap": predictor.overlap,
        "halo": predictor.halo,
        **{k: post[k] for k in ("threshold", "seed_threshold", "instance_method", "min_size", "fill_holes")},
        "min_volume": min_kept if label_ndim == 3 else None,
        "neck_ratio": post.get("neck_ratio"),
        "linked_over_time": linked,
        "n_objects": n_objects,
    }
    tracks = int(np.max(instances, initial=0)) if linked else None
    return Segmentation(semantic, instances, probs_out, plan.out_axes, meta, tracks)


def check_percentiles(percentiles: Any) -> tuple[float, float]:
    """``percentiles`` as (low, high) floats with 0 <= low < high <= 100, else a SegmentationError."""
    try:
        low, high = percentiles
    except (TypeError, ValueError):
        low = high = None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 100 for v in (low, high)) \
            or not low < high:
        raise SegmentationError(
            f"percentiles must be two numbers from 0 to 100, the lower one first (e.g. (1, 99.8)), "
            f"not {percentiles!r}.")
    return float(low), float(high)


def _scale_choice(scale: float | str | None, post: dict[str, Any]) -> tuple[bool, float]:
    """(auto?, scale of the first pass) from the caller's ``scale`` and the model's defaults."""
    chosen = post.get("scale", 1.0) if scale is None else scale
    if isinstance(chosen, str) and chosen.strip().lower() == "auto":
        if "auto_scale_area" not in post:
            raise SegmentationError(
                "This model has no reference object size, so scale 'auto' cannot be used: give a "
                "number instead (2 for objects half the size it was trained on, 0.5 for twice).")
        return True, 1.0
    if isinstance(chosen, str):
        try:
            chosen = float(chosen)
        except ValueError:
            raise SegmentationError(f"scale must be a number or 'auto', got {chosen!r}.") from None
    return False, check_scale(chosen)


def median_object_area(instances: np.ndarray, axes: str) -> float | None:
    """Median area in pixels of the objects' cross-sections in the Y/X planes (None if no objects).

    ``instances`` has the axes ``axes`` (letters from ``TZYX``, with Y and X).
    """
    planes = np.moveaxis(instances, [axes.index("Y"), axes.index("X")], [-2, -1])
    planes = planes.reshape(-1, *planes.shape[-2:])
    areas = [a[a > 0] for a in (np.bincount(p.ravel())[1:] for p in planes)]
    areas = np.concatenate(areas) if areas else np.zeros(0)
    return float(np.median(areas)) if areas.size else None


def objects_are_small(median_area: float | None, reference_area: float) -> bool:
    """Whether scale "auto" segments again: objects found, with a median area under the reference."""
    return median_area is not None and median_area < float(reference_area)


def _one_pass(predictor: Predictor, prepared: Any, post: dict[str, Any], scale: float,
              keep_probabilities: bool) -> Generator[Progress, None, tuple]:
    """Network and post-processing at one scale: (semantic, instances, probabilities or None).

    Each labelled block (a frame of a time series, a volume, a time point's z-stack
    segmented plane by plane) is labelled as soon as all its planes or volumes have left
    the network: only the outputs and the seeds and elevation of the blocks in progress
    are held. An image that is one block (a z-stack, a single image) is labelled once its
    planes are all in, after the "splitting objects" progress.
    """
    cfg = predictor.config
    plan = prepared.plan
    out_shape = prepared.out_shape
    net = {plan.axes[i] for i in plan.net_axes}
    in_block = [i for i, a in enumerate(plan.out_axes) if a in plan.label_axes]
    per_block = int(np.prod([out_shape[i] for i in in_block if plan.out_axes[i] not in net]))
    many_blocks = len(in_block) < len(out_shape)
    block_shape = tuple(out_shape[i] for i in in_block)
    semantic = np.zeros(out_shape, np.uint8)
    instances = np.zeros(out_shape, np.int32) if many_blocks else None
    seeded = cfg.target == "three_class"
    probs_out = np.zeros((cfg.out_channels, *out_shape), np.float32) if keep_probabilities else None
    threshold, seed_threshold = float(post["threshold"]), float(post["seed_threshold"])
    # Removed small objects and filled holes change the mask too: it follows the instances.
    mask_from_instances = seeded or cfg.out_channels == 2
    block_axes = "".join(plan.out_axes[i] for i in in_block)
    by_area = cfg.spatial_dims == 2  # a 2D model's min_size is a cross-section's area
    pending: dict[tuple, list] = {}  # a block's index (T) -> [items in, seeds, elevation]

    def finish(block: tuple, seeds: np.ndarray | None, elevation: np.ndarray | None) -> None:
        nonlocal instances
        labelled = _label(semantic[block], seeds, elevation, block_axes, plan.label_axes, post,
                          min_size_is_area=by_area)
        if many_blocks:
            instances[block] = labelled
        else:
            instances = labelled
        if mask_from_instances:
            np.greater(labelled, 0, out=semantic[block].view(bool))

    def store(key: tuple, probs: np.ndarray) -> None:
        semantic[key] = semantic_from_probabilities(probs, target=cfg.target, threshold=threshold)
        if probs_out is not None:
            probs_out[(slice(None), *key)] = probs
        block = tuple(slice(None) if i in in_block else k for i, k in enumerate(key))
        where = tuple(k for i, k in enumerate(key) if i not in in_block)  # (slices are not hashable)
        got = pending.setdefault(where, [0, None, None])
        got[0] += 1
        if seeded:
            seed = seeds_from_probabilities(probs, target=cfg.target, seed_threshold=seed_threshold)
            elev = watershed_elevation(probs)
            if per_block == 1:
                got[1:] = seed, elev
            else:
                if got[1] is None:
                    got[1:] = np.zeros(block_shape, bool), np.zeros(block_shape, np.uint8)
                inner = tuple(key[i] for i in in_block)
                got[1][inner], got[2][inner] = seed, elev
        if got[0] == per_block and many_blocks:
            finish(block, *pending.pop(where)[1:])

    yield from stream_probabilities(predictor, prepared, store, scale=scale)
    yield Progress("instances", 0, 1, "splitting objects")
    for where in list(pending):  # one block, the whole image: labelled once all is in
        finish((slice(None),) * len(out_shape), *pending.pop(where)[1:])
    return semantic, instances, probs_out


def _label(semantic: np.ndarray, seeds: np.ndarray | None, elevation: np.ndarray | None, axes: str,
           label_axes: str, post: dict[str, Any], *, min_size_is_area: bool) -> np.ndarray:
    """Instances (int32, ``semantic``'s shape and ``axes``) of a mask, ``label_axes`` labelled together;
    ``min_size_is_area``: a 2D model's, see :func:`~napari_unet.instances.label_instances`."""
    # label_instances labels the trailing axes together: put Z, Y, X last (e.g. ZTYX -> TZYX).
    order = labelled_last(axes, label_axes)

    def last(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.transpose(a, order)

    instances = label_instances(
        last(semantic), method=post["instance_method"], seeds=last(seeds), elevation=last(elevation),
        min_size=int(post["min_size"]), min_size_is_area=min_size_is_area, fill_holes=bool(post["fill_holes"]),
        ndim=len(label_axes), neck_ratio=post.get("neck_ratio"),
    )
    return np.ascontiguousarray(np.transpose(instances, np.argsort(order)))


def segment(image: Any, **kwargs: Any) -> Segmentation:
    """Segment an image; see :func:`iter_segment` for the parameters.

    Examples
    --------
    >>> result = napari_unet.segment(image)                # doctest: +SKIP
    >>> result.semantic.shape == image.shape               # a grey image; RGB drops C  # doctest: +SKIP
    True
    """
    return drain(iter_segment(image, **kwargs))
