"""Foreground masks -> instance labels.

Two methods:

- ``"components"``: scikit-image connected components of the foreground.
- ``"watershed"``: a seeded watershed that separates touching objects. Seeds
  are the object interiors a three-class model predicts; without them (a
  hand-edited mask, a plain semantic model) seeds are the maxima of the
  distance transform that stand out by at least ``h`` pixels.

Labels are consecutive from 1 and unique within each labelled block (a whole
volume when labelled in 3D; each time point of a series).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, morphology, segmentation

from .errors import SegmentationError

__all__ = ["ball_volume_of_disc", "label_instances", "min_object_size", "relabel_edited", "split_touching",
           "take_hand_edits", "hand_edits_kept", "mask_changed_round_edits", "split_seeds_at_necks",
           "count_objects", "ids_and_ranks", "METHODS"]

METHODS = ("components", "watershed")


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` without the objects smaller than ``min_size`` pixels, removed in place."""
    if min_size <= 1:
        return labels
    sizes = _id_counts(labels)
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels


CHUNK = 1 << 20
"""Pixels per chunk of :func:`_id_counts` and :func:`_relabel_sequential`."""


def _id_counts(labels: np.ndarray) -> np.ndarray:
    """``np.bincount(labels.ravel())`` of ids >= 0, counted a chunk at a time: bincount
    takes int32 ids as a whole int64 copy (8 bytes per pixel)."""
    flat = labels.reshape(-1)
    counts = np.zeros(int(flat.max(initial=0)) + 1, np.intp)
    for start in range(0, flat.size, CHUNK):
        counts += np.bincount(flat[start:start + CHUNK], minlength=counts.size)
    return counts


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """``labels`` (ids >= 0) renumbered in place to 1..n in the order of their ids, 0 kept:
    what ``skimage.segmentation.relabel_sequential`` gives, without its sorted copy of
    every pixel. (A copy if ``labels`` is not C-contiguous: use the result.)"""
    labels = np.ascontiguousarray(labels)
    present = _id_counts(labels) > 0
    present[0] = False
    rank = np.cumsum(present, dtype=labels.dtype)
    flat = labels.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        flat[start:start + CHUNK] = rank[flat[start:start + CHUNK]]
    return labels


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels enclosed by ``mask`` (what ``binary_fill_holes`` would fill).

    A hole is a face-connected background region that touches no edge of the
    array. One labelling of the background finds them all; this is many times
    faster than ``scipy.ndimage.binary_fill_holes``, which grows the outside
    by repeated dilation.
    """
    background, n = ndi.label(~mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    outside = np.zeros(n + 1, bool)
    outside[0] = True
    for axis in range(mask.ndim):
        for end in (0, -1):
            outside[np.take(background, end, axis=axis)] = True
    return ~outside[background]


def _enclosed(mask: np.ndarray) -> np.ndarray:
    """The holes :func:`_fill_holes_per_label` fills in ``mask``: in a volume, a plane's too."""
    holes = _holes(mask)
    if mask.ndim == 3:
        for z, plane in enumerate(mask):
            holes[z] |= _holes(plane)
    return holes


def _fill_holes_per_label(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of the foreground, in place: each hole pixel takes the nearest object's label.

    A hole is background that objects enclose: inside one object, or where
    several touching objects meet around it (a dim spot at a contact is
    taken as nucleus, shared between the nearest objects).

    Holes are few and small, so each is filled within its own bounding box
    (grown by one pixel, which reaches the object around it). In a volume, a
    hole of one plane counts too (a nucleus is solid in each plane): one that
    reaches the first or last plane is open in 3D, yet a z-stack segmented plane
    by plane must match its planes segmented alone.
    """
    holes = _enclosed(labels > 0)
    if not holes.any():
        return labels
    hole_ids, _ = ndi.label(holes)
    del holes
    # Each hole takes its labels from the unfilled ones: all are found first, then written.
    fills = []
    for index, box in enumerate(ndi.find_objects(hole_ids), start=1):
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        local = labels[box]
        hole = hole_ids[box] == index
        _, nearest = ndi.distance_transform_edt(local == 0, return_indices=True)
        fills.append((box, hole, local[tuple(ix[hole] for ix in nearest)]))
    del hole_ids
    for box, hole, values in fills:
        labels[box][hole] = values
    return labels


def _round_blob(radius: float, dims: int, thin: int = 0) -> float:
    """Pixels (voxels) of a disc (``dims=2``) or ball (3) of ``radius``; a ball wider than
    ``thin`` (the depth of a stack of a few planes, 0 for none) is sliced to that depth."""
    if dims == 2:
        return float(np.pi * radius**2)
    if 0 < thin < 2 * radius:
        return float(np.pi * (radius**2 * thin - thin**3 / 12.0))
    return float(4.0 / 3.0 * np.pi * radius**3)


def ball_volume_of_disc(area: float, *, depth: int = 0) -> int:
    """Voxels of a ball whose cross-section through its centre is a disc of ``area`` pixels.

    The ball has the disc's radius ``r = sqrt(area / pi)`` and holds ``4/3 pi r**3``
    voxels, rounded to the nearest whole one: 88 for 24 pixels, 24 for 10. Planes are
    taken as far apart as pixels. In a stack ``depth`` planes deep that is thinner than
    the ball (``0 < depth < 2 r``) the ball is sliced to that depth: one plane holds
    the disc itself (``area``, rounded), two about twice it.

    Parameters
    ----------
    area : float >= 0
        Pixels of the disc.
    depth : int
        Planes of the stack; 0 for a stack deeper than any ball.
    """
    return round(_round_blob(float(np.sqrt(area / np.pi)), 3, int(depth)))


def min_object_size(min_size: int, block_shape: tuple[int, ...], *, min_size_is_area: bool = False) -> int:
    """Pixels (voxels) an object of a labelled block needs to be kept, from the user's ``min_size``.

    ``min_size`` counts pixels in 2D, voxels in 3D, unless ``min_size_is_area``:
    then it is the area of a nucleus' cross-section in one plane (a 2D model's
    ``min_size``, whose planes a z-stack segmented plane by plane labels together),
    and a 3D block (Z first) keeps objects whose volume reaches that of a ball as
    wide (:func:`ball_volume_of_disc`, sliced to the block's depth).

    Parameters
    ----------
    min_size : int
    block_shape : tuple of int
        Shape of the block labelled together: (Y, X) or (Z, Y, X).
    min_size_is_area : bool
    """
    if min_size_is_area and len(block_shape) == 3:
        return ball_volume_of_disc(min_size, depth=block_shape[0])
    return int(min_size)


def split_seeds_at_necks(seeds: np.ndarray, *, neck_ratio: float = 0.7, lobed: float = 1.3) -> np.ndarray:
    """Label seed regions, cutting each one where it narrows to a neck.

    Two touching nuclei often share one connected interior joined by a thin
    waist. Within each seed region that is clearly not one round blob (area
    above ``lobed`` times the disc of its largest inscribed radius), every
    maximum of the distance transform whose saddle to a higher maximum lies
    below ``neck_ratio`` times its own height becomes a separate seed; the
    pieces are grown back over the region. The test is a ratio, so it treats
    small and large nuclei alike.

    Parameters
    ----------
    seeds : ndarray (...) bool, 2D or 3D
    neck_ratio : float in (0, 1)
        Lower cuts only deeper necks.
    lobed : float
        Regions rounder than this are never cut (and cost nothing).

    Returns
    -------
    ndarray (...) int32
        Seed labels, full connectivity.
    """
    structure = np.ones((3,) * seeds.ndim, bool)
    markers, n = ndi.label(seeds, structure, output=np.int32)
    if n == 0:
        return markers
    # An axis one pixel long adds no dimension to a region's shape: a one-plane stack's
    # regions are discs, and are cut as its plane alone would be.
    dims = max(sum(n > 1 for n in seeds.shape), 2)
    # A stack of a few planes cuts its nuclei: its first and last planes are no background, so
    # a region's largest inscribed radius can exceed half the stack's depth. Its round blob is
    # then that ball sliced to the stack (2 identical planes: twice the disc of one).
    thin = min(n for n in seeds.shape if n > 1) if dims == 3 else 0
    next_id = n + 1
    # Regions never touch (full connectivity), so the nearest background of a region's pixel is
    # no other region's, and lies within the region's box grown by one pixel: the distance
    # transform of the region alone in that box, and its maxima, are the whole mask's there.
    # Region by region, no transform of the whole array is held (about 40 bytes per voxel of
    # scipy's temporaries beside its float64 result, and as much again for its maxima).
    # Pieces take ids above n: the regions still to come keep theirs.
    for label, box in enumerate(ndi.find_objects(markers), start=1):
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        region = markers[box] == label
        dist = ndi.distance_transform_edt(region)
        if region.sum() <= lobed * _round_blob(dist.max(), dims, thin):
            continue
        # A region with one distance maximum cannot be cut (each maximum of the reconstruction
        # holds one of them).
        if ndi.label(morphology.local_maxima(dist) & region, structure)[1] < 2:
            continue
        domes = morphology.reconstruction(dist * neck_ratio, dist, method="dilation")
        peaks, count = ndi.label(morphology.local_maxima(domes) & region, structure)
        if count < 2:
            continue
        # The region is joined at corners too: so is the flood, or a part attached only at a
        # corner would stay unlabelled (and take another region's id below).
        pieces = segmentation.watershed(-dist, peaks, mask=region, connectivity=seeds.ndim)
        markers[box][region] = pieces[region] + next_id - 1
        next_id += count
    return markers


def split_touching(
    foreground: np.ndarray,
    *,
    seeds: np.ndarray | None = None,
    elevation: np.ndarray | None = None,
    h: float = 1.0,
    neck_ratio: float | None = None,
) -> np.ndarray:
    """Seeded watershed of one foreground block (2D or 3D), int32 labels.

    Parameters
    ----------
    foreground : ndarray (...) bool
    seeds : ndarray (...) bool, optional
        Object interiors; each connected seed becomes one object. Without
        seeds, each maximum of the distance transform that rises at least
        ``h`` pixels above the saddle joining it to a higher one is a seed.
    elevation : ndarray (...) float, optional
        Landscape to flood (low first). Defaults to the negative distance
        transform of the foreground.
    neck_ratio : float or None
        With seeds: also cut seed regions at narrow necks
        (:func:`split_seeds_at_necks`). None or 0 keeps each region whole.
    """
    distance = None
    if elevation is None or seeds is None:
        distance = ndi.distance_transform_edt(foreground)
    if seeds is None:
        # Plain local maxima (peak_local_max) cut an elongated object into many
        # pieces: the ridge of its distance transform is a plateau or a chain of
        # tiny bumps. Maxima of the reconstruction from (distance - h) are whole
        # plateaus joining every peak that a dip shallower than h separates.
        # A ridge along a diagonal is joined at corners: its plateaus are one seed.
        domes = morphology.reconstruction(distance - h, distance, method="dilation")
        markers = measure.label(morphology.local_maxima(domes) & foreground).astype(np.int32)
        del domes
    else:
        if neck_ratio:
            markers = split_seeds_at_necks(seeds & foreground, neck_ratio=neck_ratio)
        else:
            markers = measure.label(seeds & foreground).astype(np.int32)
    del seeds  # (label_instances' boolean copy goes with it: skimage's flood is the peak)
    if elevation is None:
        elevation = -distance
    del distance
    labels = segmentation.watershed(elevation, markers, mask=foreground).astype(np.int32, copy=False)
    del markers, elevation
    # The flood moves only across faces: foreground that no seed reached (a component
    # without a seed, or one joined to a seeded one only at a corner) would vanish. Keep
    # it, joined at corners as the seeds are (a thin diagonal stroke stays one object).
    # Labelled within the box of those pixels: their components, in the same order.
    missed = ndi.find_objects((foreground & (labels == 0)).view(np.uint8))
    if missed:
        box = missed[0]
        comps = measure.label(foreground[box] & (labels[box] == 0))
        top = labels.max()
        labels[box][comps > 0] = comps[comps > 0] + top
    return labels


def _checked_blocks(method: str, ndim: int | None, shape: tuple[int, ...]) -> int:
    """The dimensions labelled together (``ndim``, None for all), or a SegmentationError
    saying why ``method`` cannot label blocks of that many dimensions of ``shape``."""
    if method not in METHODS:
        raise SegmentationError(f"Unknown instance method {method!r}: use one of {METHODS}.")
    ndim = len(shape) if ndim is None else int(ndim)
    if not 1 <= ndim <= 3 or ndim > len(shape):
        raise SegmentationError(
            f"Cannot label {ndim}D blocks of an array with shape {shape}."
        )
    return ndim


def label_instances(
    foreground: np.ndarray,
    *,
    method: str = "components",
    seeds: np.ndarray | None = None,
    elevation: np.ndarray | None = None,
    min_size: int = 0,
    min_size_is_area: bool = False,
    fill_holes: bool = True,
    ndim: int | None = None,
    neck_ratio: float | None = None,
) -> np.ndarray:
    """Instance labels from a foreground mask.

    Parameters
    ----------
    foreground : ndarray (..., *spatial)
        Nonzero where objects are (a semantic mask: any nonzero class counts).
    method : {"components", "watershed"}
        Plain connected components, or a watershed split of touching objects.
    seeds, elevation : ndarray, optional
        Same shape as ``foreground``; see :func:`split_touching`.
    min_size : int
        Objects smaller than this many pixels (voxels) are removed.
    min_size_is_area : bool
        ``min_size`` is the area of a cross-section in one plane (a 2D model's, its
        planes labelled together): in 3D blocks, objects smaller than a ball as wide
        are removed (see :func:`min_object_size`). 2D blocks are unaffected.
    fill_holes : bool
        Fill holes: background enclosed by objects, inside one or where several
        touching objects meet around it (see :func:`_fill_holes_per_label`).
    ndim : int or None
        Trailing dimensions labelled together (2 or 3); leading dimensions are
        labelled one block at a time, each from 1. None labels all dimensions
        together (at most 3).
    neck_ratio : float or None
        Watershed with seeds: cut seed regions at narrow necks (see
        :func:`split_seeds_at_necks`).

    Returns
    -------
    ndarray (same shape) int32
    """
    fg = np.asarray(foreground)  # made boolean a block at a time: no copy of a whole series
    ndim = _checked_blocks(method, ndim, fg.shape)
    lead = fg.shape[: fg.ndim - ndim]
    if not lead:  # one block: its labels are the result
        return _label_block(fg, method=method, seeds=seeds, elevation=elevation, fill_holes=fill_holes,
                            min_size=min_object_size(min_size, fg.shape, min_size_is_area=min_size_is_area),
                            neck_ratio=neck_ratio)
    out = np.zeros(fg.shape, np.int32)
    kept = min_object_size(min_size, fg.shape[len(lead):], min_size_is_area=min_size_is_area)
    for index in np.ndindex(*lead):
        out[index] = _label_block(
            fg[index], method=method, seeds=None if seeds is None else seeds[index],
            elevation=None if elevation is None else elevation[index], fill_holes=fill_holes,
            min_size=kept, neck_ratio=neck_ratio)
    return out


def _label_block(fg: np.ndarray, *, method: str, seeds: np.ndarray | None, elevation: np.ndarray | None,
                 fill_holes: bool, min_size: int, neck_ratio: float | None) -> np.ndarray:
    """One block of :func:`label_instances`: int32 labels of ``fg`` (nonzero where objects are),
    objects of fewer than ``min_size`` pixels (the block's) removed."""
    block = fg != 0
    if method == "components":
        labels = measure.label(block, connectivity=1).astype(np.int32, copy=False)
    else:
        labels = split_touching(
            block,
            seeds=None if seeds is None else np.asarray(seeds) > 0,
            elevation=None if elevation is None else np.asarray(elevation),
            neck_ratio=neck_ratio,
        )
    if fill_holes:
        labels = _fill_holes_per_label(labels)
    del block
    return _relabel_sequential(_remove_small(labels, min_size))


def relabel_edited(
    mask: np.ndarray, previous: np.ndarray, *, ndim: int | None = None, first_new_id: int | None = None,
    **kwargs,
) -> np.ndarray:
    """Instance labels for an edited mask that keep every object the edit left alone.

    A connected region of ``mask`` that the edit did not touch (no pixel
    added, every object of ``previous`` in it still whole) keeps the ids
    ``previous`` gave it, so its split and its colours stay. The other
    regions are labelled afresh, on their own, by :func:`label_instances` (with
    ``kwargs``); the watershed in the rows and columns round them only: a brush
    stroke in a big image or a z-stack costs about the nuclei it touched. Each of their
    objects takes the id of the earlier object it covers most when that id is
    free (a trimmed nucleus keeps its id), the others new ids after the
    largest of ``previous``. Ids are unique per labelled block but
    need not be consecutive. A block (time point) whose labels this would give
    back unchanged is not labelled at all: a brush stroke in one frame of a
    long series costs one frame.

    Parameters
    ----------
    mask : ndarray (..., *spatial)
        The edited foreground (nonzero where objects are).
    previous : ndarray (same shape) int
        The instance labels the mask was made from (or last updated to).
    ndim : int or None
        Trailing dimensions labelled together (see :func:`label_instances`).
    first_new_id : int or None
        The first id of a relabelled object; None starts after the largest id
        of ``previous`` in the same block. (Give one above every block's ids
        when the ids must mean the same object across blocks, e.g. linked
        over time.)
    **kwargs
        ``method``, ``min_size``, ``fill_holes``... for the regions relabelled.

    Returns
    -------
    ndarray (same shape) int32, or int64 where the ids need it
    """
    fg = np.asarray(mask) != 0
    prev = np.asarray(previous)
    if prev.shape != fg.shape:
        raise SegmentationError(
            f"The earlier labels ({prev.shape}) do not match the mask ({fg.shape}): "
            "segment the image again."
        )
    ndim = _checked_blocks(kwargs.get("method", "components"), ndim, fg.shape)
    block_shape = fg.shape[fg.ndim - ndim:]
    # New ids follow the largest earlier one (or first_new_id): past int32, the labels widen.
    highest = max(int(np.max(prev, initial=0)), int(first_new_id or 0)) + int(np.prod(block_shape))
    dtype = np.int32 if highest <= np.iinfo(np.int32).max else np.int64
    min_size = min_object_size(int(kwargs.get("min_size", 0)), block_shape,
                               min_size_is_area=bool(kwargs.get("min_size_is_area", False)))
    fill_holes = bool(kwargs.get("fill_holes", True))
    out = np.zeros(fg.shape, dtype)
    for index in np.ndindex(*fg.shape[: fg.ndim - ndim]):
        # Blocks (time points) the edit left alone come out as they were: only the others are
        # labelled again (a brush stroke in one frame of a long series costs one frame).
        if _unchanged_by_relabelling(fg[index], prev[index], min_size=min_size, fill_holes=fill_holes):
            out[index] = prev[index]
            continue
        block_prev = prev[index].astype(np.int64)
        # Only the regions the edit touched are watershed again, and only the rows and columns round
        # them: a brush stroke in a big image or a stack costs about its nuclei, not the whole block.
        # (Components of the whole block cost about what finding those regions does.)
        redo = None
        if kwargs.get("method", "components") == "watershed":
            redo = _regions_to_relabel(fg[index], block_prev, min_size=min_size, fill_holes=fill_holes)
        fresh = np.zeros(block_shape, np.int32)
        if redo is None or redo.any():
            near = (slice(None),) * ndim if redo is None else _rows_round(redo)
            block_kwargs = {k: (np.asarray(v)[index][near] if k in ("seeds", "elevation") and v is not None
                                else v) for k, v in kwargs.items()}
            fresh[near] = label_instances((fg[index] if redo is None else redo)[near], ndim=ndim, **block_kwargs)
        out[index] = _keep_untouched(fg[index], block_prev, fresh, first_new_id, dtype,
                                     holes=_enclosed(fg[index]) if fill_holes else None)
    return out


def take_hand_edits(mask: np.ndarray, previous: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bring the edits a user made on the instance labels into the mask, in place.

    ``edited`` holds the labels as the user left them (ids painted, filled or erased by
    hand), ``previous`` as they were made. Where the two differ, ``mask`` follows
    ``edited``: 1 where it holds an id, 0 where it was erased. Then
    ``relabel_edited(mask, edited, ...)`` keeps every hand-edited object as the user made it
    (two fragments filled with one id stay one object, which the watershed of a painted
    bridge may split again), unless the mask was also edited round it: a region of the
    mask the user painted or erased is split again, as always.

    Parameters
    ----------
    mask : ndarray (..., *spatial)
        The (edited) foreground, changed in place.
    previous : ndarray (same shape) int
        The instance labels as they were made (or last updated).
    edited : ndarray (same shape) int
        The same labels after the user's edits.

    Returns
    -------
    tuple of ndarray
        The indices (``np.nonzero``) of the pixels of ``mask`` changed.
    """
    mask, previous, edited = np.asarray(mask), np.asarray(previous), np.asarray(edited)
    if not mask.shape == previous.shape == edited.shape:
        raise SegmentationError(
            f"The edited labels ({edited.shape}) do not match the mask ({mask.shape}) or the labels "
            f"it was made with ({previous.shape}): segment the image again.")
    wanted = edited != 0
    where = np.nonzero((edited != previous) & (wanted != (mask != 0)))
    mask[where] = wanted[where]
    return where


def hand_edits_kept(previous: np.ndarray, edited: np.ndarray, labels: np.ndarray, *, ndim: int | None = None
                    ) -> bool:
    """Whether ``labels`` hold every hand edit of ``edited`` as the user made it.

    ``labels`` are what :func:`relabel_edited` made after :func:`take_hand_edits` took the
    edits (``edited`` where it differs from ``previous``). They hold them when, in each block:
    the pixels edited are background in ``labels`` exactly where the user erased them; and the
    objects the user gave an id to by hand (every pixel of those ids) are still whole, one
    object each, their own: each such id is one id of ``labels`` (not necessarily the same,
    were they renumbered), no two of them share one, and none is shared with another object
    of ``edited``. An edited object grown into background (the mask painted round it) or
    trimmed outside the pixels edited (the mask erased there) still holds the edits. An object
    split again or joined to another (the mask changed round it, and its region labelled
    afresh) does not.

    Parameters
    ----------
    previous : ndarray (..., *spatial) int
        The instance labels as they were made (or last updated).
    edited : ndarray (same shape) int
        The same labels after the user's edits.
    labels : ndarray (same shape) int
        The labels made from the mask that took those edits.
    ndim : int or None
        Trailing dimensions labelled together, whose ids are unique (None: all of them; ids
        may mean other objects, e.g. tracks, in other blocks).

    Returns
    -------
    bool
    """
    previous, edited, labels = np.asarray(previous), np.asarray(edited), np.asarray(labels)
    if not previous.shape == edited.shape == labels.shape:
        raise SegmentationError(
            f"The labels ({labels.shape}) do not match the edited labels ({edited.shape}) or those they "
            f"were made from ({previous.shape}): segment the image again.")
    ndim = edited.ndim if ndim is None else min(int(ndim), edited.ndim)
    for index in np.ndindex(*edited.shape[: edited.ndim - ndim]):
        prev, hand, out = previous[index], edited[index], labels[index]
        changed, ids = _hand_edited(prev, hand)
        if not changed.any():
            continue
        if ((hand[changed] == 0) != (out[changed] == 0)).any():
            return False  # an erased pixel labelled, or a painted one left out
        if not ids.size:
            continue
        objects = np.isin(hand, ids)
        theirs = np.unique(out[objects])
        region = (objects | np.isin(out, theirs[theirs != 0])) & (hand != 0) & (out != 0)
        # Each as int64 on its own (the same ids wrap alike): stacked first, uint64 and int32 ids
        # became float64, which makes ids above 2**53 one.
        pairs = np.unique(np.stack([hand[region].astype(np.int64), out[region].astype(np.int64)]), axis=1)
        if not np.isin(pairs[0], ids.astype(np.int64)).all():
            return False  # joined to an object the user did not edit
        if np.unique(pairs[0]).size != pairs.shape[1] or np.unique(pairs[1]).size != pairs.shape[1]:
            return False  # split again, or two of the user's objects joined
    return True


def _hand_edited(previous: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels where ``edited`` differs from ``previous`` (bool, same shape) and the ids the
    user gave there (sorted, 0 left out)."""
    changed = edited != previous
    ids = np.unique(edited[changed])
    return changed, ids[ids != 0]


def mask_changed_round_edits(mask: np.ndarray, previous: np.ndarray, edited: np.ndarray, *,
                             ndim: int | None = None) -> bool:
    """Whether an object the user edited on the instance labels lies in a region of ``mask``
    that also differs from ``previous`` elsewhere (the mask changed round it, which
    :func:`relabel_edited` labels afresh, hand-edited ids included).

    ``mask`` is the mask after :func:`take_hand_edits` took the edits (``edited`` where it
    differs from ``previous``). Regions are those of ``mask`` and the pixels erased from it,
    joined at corners too, in each block of ``ndim`` trailing dimensions (None: all).

    Parameters
    ----------
    mask : ndarray (..., *spatial)
        The foreground, the hand edits taken.
    previous : ndarray (same shape) int
        The instance labels as they were made (or last updated).
    edited : ndarray (same shape) int
        The same labels after the user's edits.
    ndim : int or None
        Trailing dimensions labelled together.

    Returns
    -------
    bool
    """
    mask, previous, edited = np.asarray(mask) != 0, np.asarray(previous), np.asarray(edited)
    ndim = mask.ndim if ndim is None else min(int(ndim), mask.ndim)
    for index in np.ndindex(*mask.shape[: mask.ndim - ndim]):
        fg, prev, hand = mask[index], previous[index], edited[index]
        changed, ids = _hand_edited(prev, hand)
        if not ids.size:
            continue
        differs = (fg != (prev != 0)) & ~changed  # the mask changed by itself (not by the edits taken)
        if not differs.any():
            continue
        regions, _ = ndi.label(fg | differs, np.ones((3,) * fg.ndim, bool))
        near = np.unique(regions[np.isin(hand, ids) & fg])
        if np.isin(regions[differs], near[near != 0]).any():
            return True
    return False


def _regions_to_relabel(fg: np.ndarray, prev: np.ndarray, *, min_size: int, fill_holes: bool
                        ) -> np.ndarray | None:
    """The pixels of the block ``fg`` whose labels :func:`_keep_untouched` takes from a fresh
    labelling (with those of other regions it keeps ``prev``), or None to label the whole block.

    Regions here are joined at corners too (as the watershed and the neck cuts join pixels),
    each with the holes it encloses, which a fresh labelling fills from it (``fill_holes``):
    those with a painted pixel (none in ``prev``), a pixel of an earlier object that lost
    pixels, or a hole. Every other region keeps its earlier ids: it is untouched (its pixels
    are kept), and no fresh object of it reaches outside it. Nor is a region labelled that
    holds no earlier object and, holes and all, fewer pixels than ``min_size`` (the block's
    :func:`min_object_size`): each of its objects would be removed again (the specks a mask
    keeps where the labels dropped them would be labelled at every update).

    :func:`label_instances` labels each such region (with its holes) on its own: the distance
    transform's nearest background, the flood, the seeds and their neck cuts, the holes and
    the objects too small all lie within it. So these regions labelled alone in the rows and
    columns round them (see :func:`_rows_round`) give the objects, and the order of their ids,
    that labelling them alone in the whole block gives. (Labelling the whole block instead
    gives the same objects, except where the watershed floods two basins to one level: which
    reaches a pixel first, skimage decides from all the seeds of the block.)
    """
    if not fg.any() or prev.min(initial=0) < 0 or prev.max(initial=0) <= 0:
        return None  # no earlier ids to keep (or ids below 0, background there): label it all
    holes = _enclosed(fg) if fill_holes else np.zeros(fg.shape, bool)
    regions, n = ndi.label(fg | holes, np.ones((3,) * fg.ndim, bool))
    index, damaged = _damaged_ids(fg, prev)
    redo = np.zeros(n + 1, bool)
    redo[regions[fg & ((prev == 0) | damaged[index])]] = True
    redo[regions[holes]] = True
    labelled = np.zeros(n + 1, bool)
    labelled[regions[fg & (prev > 0)]] = True
    redo &= labelled | (np.bincount(regions.ravel(), minlength=n + 1) >= min_size)
    redo[0] = False
    return redo[regions] & fg


def _rows_round(redo: np.ndarray) -> tuple[np.ndarray, ...]:
    """Indices (for ``np.ix_``-style indexing) of the rows, along each axis of a block, in which
    :func:`label_instances` labels ``redo`` as it would in the whole block.

    Those within one pixel of ``redo`` are kept, and of each run of the others (background
    only) the first: the block with each run of empty rows shrunk to one. Each region keeps
    its bounding box grown by one pixel, where its nearest background, its holes and their
    nearest objects lie, and its neighbourhood; background joined across a run is joined
    across its one row (no hole opens or closes), and the pixels keep their raster order (the
    order of new ids). A volume keeps all planes (its depth sets the smallest volume kept),
    and no axis is shorter than the block's thinnest side (a thin stack's nuclei are cut at
    necks as balls sliced to its depth).
    """
    shape = redo.shape
    sides = [n for n in shape if n > 1]
    thinnest = min(sides) if len(sides) == 3 else 2
    rows = []
    for axis, n in enumerate(shape):
        if len(shape) == 3 and axis == 0:
            rows.append(np.arange(n))
            continue
        used = redo.any(axis=tuple(a for a in range(len(shape)) if a != axis))
        near = used | np.r_[used[1:], False] | np.r_[False, used[:-1]]
        keep = near | np.r_[True, near[:-1]]  # the first row of each run of empty ones
        short = min(n, thinnest) - int(keep.sum())
        # Fewer rows than the block's thinnest side would make them the thinnest: the neck cuts
        # would take a nucleus against the border for a ball sliced thinner than the block's
        # planes. More empty rows then (runs grow longer).
        if short > 0:
            keep[np.flatnonzero(~keep)[:short]] = True
        rows.append(np.flatnonzero(keep))
    return np.ix_(*rows)


def _unchanged_by_relabelling(fg: np.ndarray, prev: np.ndarray, *, min_size: int, fill_holes: bool) -> bool:
    """Whether :func:`_keep_untouched` would give back ``prev`` for the block ``fg``, whatever
    labelling ``fg`` afresh makes, so that it need not be labelled.

    It does when no object of ``prev`` reaches outside ``fg`` (none was cut or trimmed), the
    pixels of ``fg`` that ``prev`` leaves out form whole regions (joined at corners too, as
    the watershed joins them) smaller than ``min_size``, which labelling removes again, and
    ``fg`` has no holes to fill: then only those regions count as painted, the fresh labels
    hold nothing in them nor outside ``fg``, and every other pixel keeps its earlier id.
    """
    if prev.size and prev.min() < 0:  # ids below 0 count as background there
        return False
    if np.any((prev > 0) & ~fg):
        return False
    left_out = fg & (prev == 0)
    box = ndi.find_objects(left_out.astype(np.uint8))
    if box:
        if min_size <= 1:
            return False
        # Labelled within the box of the left-out pixels grown by one: a region of it that holds
        # left-out pixels alone lies inside, with its neighbours, so it is a region of the block.
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box[0])
        regions, _ = ndi.label(fg[box], np.ones((3,) * fg.ndim, bool))
        sizes = np.bincount(regions.ravel())
        left = np.bincount(regions[left_out[box]], minlength=sizes.size)
        reached = left > 0
        # A region too large to vanish, or one that also holds earlier objects, is relabelled.
        if (sizes[reached] >= min_size).any() or (left[reached] != sizes[reached]).any():
            return False
    return not (fill_holes and _enclosed(fg).any())


def _keep_untouched(fg: np.ndarray, prev: np.ndarray, fresh: np.ndarray,
                    first_new_id: int | None, dtype: type = np.int32, *,
                    holes: np.ndarray | None = None) -> np.ndarray:
    """One block of :func:`relabel_edited`: ``prev`` ids where untouched, else new ones after them.

    ``holes`` are the holes of ``fg`` that ``fresh`` filled (None: none). One that ``prev`` left
    unlabelled is painted, as it were: its region is touched, so that it comes out as a fresh
    labelling makes it. (Kept, with the hole filled, the next update would take the filled
    pixels, outside ``fg``, for erased ones, and label the region again: pressing Update twice
    would not give what pressing it once did.)
    """
    if holes is not None:
        holes = holes & (prev <= 0)
        if holes.any():
            fg = fg | holes
    regions, n = ndi.label(fg)
    top = int(prev.max(initial=0))
    if n == 0 or top <= 0:
        return (fresh if first_new_id is None
                else np.where(fresh > 0, fresh.astype(dtype) + (int(first_new_id) - 1), 0)).astype(dtype)
    prev = np.maximum(prev, 0)
    index, damaged = _damaged_ids(fg, prev)  # objects with pixels erased (cut, trimmed or deleted in part)
    size = damaged.size
    touched = np.zeros(n + 1, bool)
    touched[regions[fg & (prev == 0)]] = True  # pixels painted
    touched[regions[fg & damaged[index]]] = True
    keep = fg & ~touched[regions]
    out = np.where(keep, prev, 0).astype(dtype)
    # A fresh object over kept pixels is a kept object (its filled holes take its id);
    # the other fresh objects get new ids.
    kept_id = np.zeros(int(fresh.max(initial=0)) + 1, np.int64)
    kept_id[fresh[keep]] = prev[keep]
    rest = (fresh > 0) & ~keep
    out[rest] = kept_id[fresh[rest]]
    new = rest & (out == 0)
    # An edited object keeps the id of the earlier object it covers most, when that
    # id is free (one to one, largest overlap first); the rest get new ids.
    inherit = np.zeros(kept_id.size, np.int64)
    # Each (fresh id, earlier id) pair counted as one integer, the earlier id by its row in the
    # table above (same order): unique pairs of rows (axis=1) are sorted as records, which holds
    # the GIL throughout (napari froze for seconds when a whole 4096 x 4096 mask was redone).
    over = new & (prev > 0)
    earlier = index[over]
    id_of = np.zeros(size, np.int64)
    id_of[earlier] = prev[over]
    pairs, counts = np.unique(fresh[over].astype(np.int64) * size + earlier, return_counts=True)
    taken = set(np.unique(prev[keep]).tolist())
    for k in np.argsort(-counts, kind="stable"):
        f, p = int(pairs[k] // size), int(id_of[pairs[k] % size])
        if not inherit[f] and p not in taken:
            inherit[f] = p
            taken.add(p)
    out[new] = inherit[fresh[new]]
    new &= out == 0
    _, new_ids = ids_and_ranks(fresh[new])
    start = top + 1 if first_new_id is None else int(first_new_id)
    out[new] = new_ids.reshape(-1) + start
    return out


def _damaged_ids(fg: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which objects of ``prev`` (ids >= 0) have pixels outside ``fg``: erased (cut, trimmed
    or deleted in part).

    Returns
    -------
    index : ndarray (same shape) int
        Each pixel's row in ``damaged``: its id, or, where ids run far above the pixel count
        (hand-numbered), the id's rank (a table as long as 2**40 would not fit).
    damaged : ndarray (rows,) bool
    """
    index = prev
    if int(prev.max(initial=0)) > 4 * prev.size:
        _, index = np.unique(prev, return_inverse=True)
        index = index.reshape(prev.shape) + int(prev.min() > 0)  # 0 stays background
    size = int(index.max(initial=0)) + 1
    damaged = np.bincount(index.ravel(), minlength=size) != np.bincount(index[fg], minlength=size)
    damaged[0] = False
    return index, damaged


def ids_and_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``values`` and each one's rank among them, as
    ``np.unique(values, return_inverse=True)`` gives them, in a way that lets go of the GIL.

    np.unique ranks through a cumulative sum over a boolean array, which holds the GIL
    throughout (numpy 2.4: about 1.5 s for 42 million values), so napari froze while a
    worker measured or relabelled a big stack. Label ids (integers from 0 up to four times
    their count) are ranked through a table instead; other values go to np.unique.

    Parameters
    ----------
    values : ndarray (n,)
        The values, e.g. the ids of a block's labelled pixels.

    Returns
    -------
    ids : ndarray (k,)
        The distinct values, sorted, of ``values``' dtype.
    ranks : ndarray (n,) intp
        ``ids[ranks]`` is ``values``.
    """
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind not in "iu" or not values.size or values.min() < 0 or values.max() > 4 * values.size:
        ids, ranks = np.unique(values, return_inverse=True)
        return ids, ranks.reshape(-1)
    present = np.bincount(values.astype(np.intp, copy=False)) > 0
    table = np.cumsum(present.astype(np.intp)) - 1  # a bool cumsum would hold the GIL again
    return np.flatnonzero(present).astype(values.dtype), table[values]


def count_objects(instances: np.ndarray, label_ndim: int) -> int:
    """Objects in all labelled blocks: the distinct nonzero ids of each block, summed.

    Parameters
    ----------
    instances : ndarray (..., *spatial) int
    label_ndim : int
        Trailing dimensions labelled together; each leading index (a time
        point) is counted on its own, so an object linked over time counts
        once per time point.
    """
    instances = np.asarray(instances)
    blocks = instances.reshape(-1, *instances.shape[max(instances.ndim - label_ndim, 0):])

    def distinct(block: np.ndarray) -> int:
        top, low = int(block.max(initial=0)), int(block.min(initial=0))
        if top > block.size or low < 0:  # ids far above the count, or signed: sort instead
            return int(np.count_nonzero(np.unique(block)))
        if top == 0:
            return 0
        return int(np.count_nonzero(np.bincount(block.ravel(), minlength=top + 1)[1:]))  # linear time

    return sum(distinct(b) for b in blocks)
