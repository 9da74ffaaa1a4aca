"""Synthetic test scenes shared by several test modules (imported, not a fixture)."""

from __future__ import annotations

import numpy as np

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
