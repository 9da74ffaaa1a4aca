"""Tile grids, blending windows and stitching (numpy only).

A network that max-pools ``depth`` times only gives the same answer for a
shifted input when the shift is a multiple of ``multiple = 2**depth``; so tiles
start on multiples of it, inside a canvas padded to a multiple of it. Each
tile is weighted by a window that is zero within ``halo`` pixels of an edge it
shares with a neighbour, then rises smoothly (a raised cosine) to one. Where
``halo`` covers the network's receptive field, stitched output equals the
output of one pass over the whole canvas.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "tile_starts", "axis_window", "pad_to_multiple", "tiling_in_use"]


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, size)``.

    Tiles advance by ``step``; the last one is moved back to end at ``size``.
    ``size``, ``tile`` and ``step`` are assumed multiples of the same unit,
    so every start is too.
    """
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def axis_window(length: int, *, ramp_before: bool, ramp_after: bool, overlap: int, halo: int) -> np.ndarray:
    """1D blending weights for one tile axis, shape ``(length,)`` float32.

    A side that meets a neighbouring tile is zero for ``halo`` pixels, then
    rises as a raised cosine over ``overlap - 2 * halo`` pixels; a side that
    meets the canvas border stays at one.
    """
    w = np.ones(length, dtype=np.float32)
    ramp_len = max(overlap - 2 * halo, 0)
    t = (np.arange(ramp_len, dtype=np.float32) + 0.5) / max(ramp_len, 1)
    ramp = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    edge = np.concatenate([np.zeros(halo, np.float32), ramp])[:length]
    if ramp_before:
        w[: edge.size] = np.minimum(w[: edge.size], edge)
    if ramp_after:
        w[length - edge.size :] = np.minimum(w[length - edge.size :], edge[::-1])
    return w


def pad_to_multiple(shape: Sequence[int], multiple: int) -> list[tuple[int, int]]:
    """Pad widths (before, after) that bring each size up to a multiple."""
    widths = []
    for size in shape:
        total = (-size) % multiple
        widths.append((total // 2, total - total // 2))
    return widths


def tiling_in_use(tile_size: int, overlap: int, halo: int, multiple: int) -> tuple[int, int, int]:
    """The largest tile edge, overlap and halo a :class:`TileGrid` really uses for these requests.

    The overlap is rounded up to ``multiple``; the tile too, and made at least one
    ``multiple`` longer than the overlap; the halo is at most half the overlap. (A grid
    may still clip a tile to its canvas, or shorten it to cover an axis evenly.)

    Returns
    -------
    (tile_size, overlap, halo) : tuple of int
    """
    overlap = _round_up(max(int(overlap), 0), multiple)
    tile = max(_round_up(int(tile_size), multiple), overlap + multiple)
    return tile, overlap, int(np.clip(halo, 0, overlap // 2))


@dataclass(frozen=True)
class TileGrid:
    """Tiles over a canvas whose every size is a multiple of ``multiple``.

    Parameters
    ----------
    canvas : tuple of int
        Spatial shape of the padded canvas.
    tile : tuple of int
        Tile shape: at most the requested size (clipped to the canvas, rounded to
        ``multiple``), shrunk to the smallest that covers the axis with as few tiles.
    overlap : int
        Pixels shared by neighbouring tiles (a multiple of ``multiple``).
    halo : int
        Pixels at a shared tile edge that get zero weight.
    """

    canvas: tuple[int, ...]
    tile: tuple[int, ...]
    overlap: int
    halo: int

    @classmethod
    def build(
        cls,
        canvas: Sequence[int],
        *,
        tile_size: int | Sequence[int],
        overlap: int,
        halo: int,
        multiple: int,
    ) -> "TileGrid":
        canvas = tuple(int(s) for s in canvas)
        if any(s % multiple for s in canvas):
            raise ValueError(f"canvas {canvas} is not a multiple of {multiple}")
        sizes = [tile_size] * len(canvas) if np.isscalar(tile_size) else list(tile_size)
        _, overlap, halo = tiling_in_use(1, overlap, halo, multiple)
        tile = []
        for size, want in zip(canvas, sizes):
            t = min(tiling_in_use(want, overlap, halo, multiple)[0], size)
            if t < size:
                # As many tiles as ``t`` needs, but each only as long as they need to be:
                # 2048 px in tiles of up to 1024 with overlap 64 takes three of 736, not
                # three of 1024 (a third less work, and the same stitched result).
                n = -(-(size - overlap) // (t - overlap))
                t = min(t, _round_up(-(-(size + (n - 1) * overlap) // n), multiple))
            tile.append(t)
        return cls(canvas=canvas, tile=tuple(tile), overlap=overlap, halo=halo)

    def starts(self) -> list[list[int]]:
        """Start offsets along each axis."""
        return [
            tile_starts(size, t, t - self.overlap if t < size else t)
            for size, t in zip(self.canvas, self.tile)
        ]

    def __len__(self) -> int:
        return int(np.prod([len(s) for s in self.starts()]))

    def __iter__(self) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """Yield ``(slices, weights)`` per tile; weights have the tile's shape."""
        per_axis = self.starts()
        windows: dict[tuple, np.ndarray] = {}
        for start in itertools.product(*per_axis):
            sides = tuple(
                (s > 0, s + t < size) for s, t, size in zip(start, self.tile, self.canvas)
            )
            if sides not in windows:
                w = np.ones((), np.float32)
                for (before, after), t in zip(sides, self.tile):
                    axis_w = axis_window(t, ramp_before=before, ramp_after=after,
                                         overlap=self.overlap, halo=self.halo)
                    w = np.multiply.outer(w, axis_w)
                windows[sides] = w.astype(np.float32)
            yield tuple(slice(s, s + t) for s, t in zip(start, self.tile)), windows[sides]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
