"""Synthetic test scenes, and helpers, shared by several test modules (imported, not fixtures)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
from scipy import ndimage as ndi

from napari_unet.instances import (
    _enclosed,
    _keep_untouched,
    label_instances,
    min_object_size,
)

#: Disc layouts (centre y, centre x, radius) inside 64 x 64 images.
DISCS = [
    [(16, 16, 7), (18, 46, 6), (46, 30, 8)],
    [(14, 40, 6), (44, 14, 7), (48, 48, 6)],
    [(20, 20, 8), (44, 44, 7), (12, 52, 5)],
    [(32, 18, 9), (30, 48, 8)],
    [(50, 16, 6), (16, 30, 7), (40, 50, 8)],
]


def disc_scene(discs, shape=(64, 64), *, noise: float = 0.0, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image of bright discs on a dark background, and its int32 instance labels.

    Disc ``i`` (from 1) is labelled ``i``; later discs overwrite earlier ones
    where they overlap. ``noise`` is the standard deviation of Gaussian noise.
    """
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx, r) in enumerate(discs, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = i
    image = np.where(labels > 0, 200.0, 20.0)
    if noise:
        image = image + np.random.default_rng(seed).normal(0.0, noise, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def sliver_and_ball(shape=(12, 40, 40)) -> tuple[np.ndarray, tuple[int, int, int], tuple[int, int, int]]:
    """A z-stack's bool mask: a small nucleus and a sliver, with a voxel of each.

    The nucleus is a ball of radius 4 (257 voxels) centred on plane 6; the sliver a
    disc of radius 3 (29 pixels, more than a 2D ``min_size`` of 24) in the first two
    planes only (58 voxels, under the 88 of a ball of that area's radius): what a
    2D model, plane by plane, finds at the top of a nucleus or in noise.
    """
    z, y, x = np.indices(shape)
    ball = (z - 6) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 4**2
    sliver = ((y - 28) ** 2 + (x - 28) ** 2 <= 3**2) & (z < 2)
    return ball | sliver, (6, 12, 12), (0, 28, 28)


def disc(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` around ``center`` in an array of ``shape``."""
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def touched_regions(fg: np.ndarray, previous: np.ndarray, *, min_size: int = 0, fill_holes: bool = True
                    ) -> np.ndarray:
    """The pixels of one block's mask ``fg`` in regions an edit touched, as ``relabel_edited``
    labels them again: regions joined at corners, each with its holes (3D ones and a plane's), that
    hold a painted pixel, a pixel of an earlier object that lost pixels, or a hole, less those
    without an earlier object that are smaller than ``min_size`` (the block's); all of ``fg``
    when ``previous`` holds no object."""
    if previous.max(initial=0) <= 0:
        return fg.copy()
    holes = ndi.binary_fill_holes(fg) & ~fg if fill_holes else np.zeros(fg.shape, bool)
    if fill_holes and fg.ndim == 3:
        holes |= np.stack([ndi.binary_fill_holes(plane) & ~plane for plane in fg])
    regions, _ = ndi.label(fg | holes, np.ones((3,) * fg.ndim, bool))
    damaged = np.isin(previous, np.unique(previous[~fg & (previous > 0)]))
    touched = (fg & ((previous == 0) | damaged)) | holes
    ids = set(np.unique(regions[touched]).tolist()) - {0}
    sizes = np.bincount(regions.ravel())
    ids = {i for i in ids if (previous[regions == i] > 0).any() or sizes[i] >= min_size}
    return np.isin(regions, sorted(ids)) & fg


def relabel_every_block(mask, previous, *, ndim, first_new_id=None, **kwargs):
    """relabel_edited as it was before it skipped blocks and labelled only the rows round an edit:
    in every block, the regions the edit touched (:func:`touched_regions`) labelled afresh, alone,
    in the whole block."""
    fg = mask != 0
    lead = fg.shape[: fg.ndim - ndim]
    redo = np.zeros(fg.shape, bool)
    min_size = min_object_size(kwargs.get("min_size", 0), fg.shape[fg.ndim - ndim:],
                               min_size_is_area=kwargs.get("min_size_is_area", False))
    for index in np.ndindex(*lead):
        redo[index] = touched_regions(fg[index], previous[index], min_size=min_size,
                                      fill_holes=kwargs.get("fill_holes", True))
    fresh = label_instances(redo, ndim=ndim, **kwargs)
    out = np.zeros(fg.shape, np.int64)
    for index in np.ndindex(*lead):
        out[index] = _keep_untouched(fg[index], previous[index].astype(np.int64), fresh[index],
                                     first_new_id, np.int64,
                                     holes=_enclosed(fg[index]) if kwargs.get("fill_holes", True) else None)
    return out


def moving_nuclei(frames: int = 6, shape=(48, 64), seed: int = 0, *, ring: bool = True, missed: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A series of discs drifting from frame to frame (a pair touching, one ring round a speck
    unless not ``ring``, specks smaller than a nucleus, one nucleus missed in frame 3 if
    ``missed``: the only difference) and seeds that split differently
    from a plain relabelling (as a three-class network's do): (mask, seeds), both (T, Y, X) bool."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform((6, 6), (shape[0] - 6, shape[1] - 6), size=(6, 2))
    mask = np.zeros((frames, *shape), bool)
    seeds = np.zeros((frames, *shape), bool)
    yy, xx = np.indices(shape)
    for t in range(frames):
        for k, (y, x) in enumerate(centres + t * np.array([0.7, -0.5])):
            if missed and k == 5 and t == 3:
                continue  # missed by the "network"
            mask[t] |= disc(shape, (y, x), 5)
            seeds[t] |= disc(shape, (y, x), 2)
        mask[t] |= disc(shape, (24, 8 + 3 * t), 4) | disc(shape, (24, 14 + 3 * t), 4)  # touching pair
        seeds[t] |= disc(shape, (24, 9 + 3 * t), 1.5)  # one seed: one object where a relabel makes two
        if ring:
            mask[t] |= (np.hypot(yy - 40, xx - 54) <= 6) & (np.hypot(yy - 40, xx - 54) > 3)
            mask[t] |= disc(shape, (40, 54), 1)  # a speck inside the ring
        mask[t, rng.integers(0, shape[0], 3), rng.integers(0, shape[1], 3)] = True  # specks
    return mask, seeds


def random_edit(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with one brush stroke in one frame: a disc painted or erased, often at the frame's border."""
    mask = mask.copy()
    t = int(rng.integers(len(mask)))
    shape = mask.shape[1:]
    centre = rng.uniform((0, 0), shape)
    if rng.random() < 0.4:  # on the border
        axis = int(rng.integers(2))
        centre[axis] = (shape[axis] - 1) * int(rng.integers(2))
    mask[t][disc(shape, tuple(centre), float(rng.uniform(1, 6)))] = rng.random() < 0.6
    return mask


def peak_numpy_bytes(fn) -> int:
    """The most memory numpy held at once (tracemalloc sees its arrays) while ``fn()`` ran."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
