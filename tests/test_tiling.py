"""Tile grids and blending windows (numpy only), checked on their own."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.tiling import TileGrid, axis_window, pad_to_multiple, tile_starts


@pytest.mark.parametrize(("size", "tile", "step"), [(100, 40, 20), (96, 32, 32), (64, 64, 8),
                                                    (30, 50, 10), (52, 16, 12)])
def test_tile_starts_cover_the_axis(size, tile, step):
    starts = tile_starts(size, tile, step)
    assert starts == sorted(set(starts))
    assert starts[0] == 0
    covered = np.zeros(size, bool)
    for s in starts:
        assert 0 <= s and s + min(tile, size) <= size
        covered[s : s + tile] = True
    assert covered.all()
    if tile < size:
        assert starts[-1] == size - tile
        assert all(b - a <= step for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("size", [1, 4, 5, 37, 53, 64])
@pytest.mark.parametrize("multiple", [1, 4, 8])
def test_pad_to_multiple(size, multiple):
    ((before, after),) = pad_to_multiple([size], multiple)
    assert (size + before + after) % multiple == 0
    assert 0 <= before + after < multiple
    assert before <= after <= before + 1  # split as evenly as possible


@pytest.mark.parametrize(("overlap", "halo"), [(16, 4), (16, 8), (12, 0), (32, 10)])
def test_axis_window_profile(overlap, halo):
    n = 64
    ramp = overlap - 2 * halo
    both = axis_window(n, ramp_before=True, ramp_after=True, overlap=overlap, halo=halo)
    assert both.shape == (n,) and both.dtype == np.float32
    # Zero in the halo at a shared edge, one in the middle, rising in between.
    assert np.all(both[:halo] == 0) and np.all(both[n - halo :] == 0)
    assert np.all(both[halo + ramp : n - halo - ramp] == 1)
    rising = both[halo : halo + ramp]
    assert np.all(rising > 0) and np.all(rising < 1) and np.all(np.diff(rising) > 0)
    np.testing.assert_allclose(both, both[::-1])  # symmetric
    # A side that meets the canvas border stays at one.
    first = axis_window(n, ramp_before=False, ramp_after=True, overlap=overlap, halo=halo)
    assert np.all(first[: n - halo - ramp] == 1) and np.all(first[n - halo :] == 0)
    alone = axis_window(n, ramp_before=False, ramp_after=False, overlap=overlap, halo=halo)
    assert np.all(alone == 1)


def test_raised_cosine_ramps_of_neighbours_sum_to_one():
    """Two neighbours overlapping by ``overlap`` blend to a partition of unity."""
    overlap, halo, t = 16, 3, 40
    w = axis_window(t, ramp_before=True, ramp_after=True, overlap=overlap, halo=halo)
    total = np.zeros(t + t - overlap)
    total[:t] += w
    total[t - overlap :] += w
    inner = total[t - overlap + halo : t - halo]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("canvas", "tile_size", "overlap", "halo", "multiple"),
    [
        ((64, 96), 32, 16, 4, 4),
        ((40, 200), 48, 20, 6, 4),  # overlap rounded up to 20 -> 20
        ((36, 44), 16, 8, 4, 4),  # tile at its minimum (overlap + multiple)
        ((24, 32, 48), 16, 8, 2, 8),
        ((16, 16), 100, 8, 2, 4),  # one tile: the tile is clipped to the canvas
        ((8, 400), (8, 64), 30, 40, 8),  # halo clipped to overlap // 2
    ],
)
def test_grid_covers_every_pixel(canvas, tile_size, overlap, halo, multiple):
    grid = TileGrid.build(canvas, tile_size=tile_size, overlap=overlap, halo=halo,
                          multiple=multiple)
    assert grid.overlap % multiple == 0 and grid.overlap >= overlap
    assert grid.halo <= grid.overlap // 2
    weight = np.zeros(canvas, np.float32)
    count = 0
    for slices, w in grid:
        count += 1
        assert w.shape == tuple(s.stop - s.start for s in slices) == grid.tile
        for sl, size in zip(slices, canvas):
            assert sl.start % multiple == 0, "tiles must start on multiples"
            assert 0 <= sl.start and sl.stop <= size
        for t in grid.tile:
            assert t % multiple == 0
        weight[slices] += w
    assert count == len(grid)
    assert np.all(weight > 0), "some pixel got no weight from any tile"


@pytest.mark.parametrize(("size", "tiles", "tile"), [(2048, 3, 736), (3072, 4, 816), (1040, 2, 560),
                                                 (1024, 1, 1024), (1088, 2, 576)])
def test_tiles_are_no_longer_than_their_number_needs(size, tiles, tile):
    """Tiles of up to 1024 px with overlap 64: as few as possible, each as short as they can be
    (2048 px takes three of 736, not three of 1024), so little work is repeated."""
    grid = TileGrid.build((size, 48), tile_size=1024, overlap=64, halo=16, multiple=16)
    starts = grid.starts()[0]
    assert (len(starts), grid.tile[0]) == (tiles, tile)
    assert grid.tile[0] <= 1024
    # No fewer tiles of at most 1024 could cover the axis with that overlap ...
    assert (tiles - 1) * (1024 - 64) + 64 < size or tiles == 1
    # ... and one multiple of 16 shorter, these would not.
    if tiles > 1:
        assert tiles * (tile - 16 - 64) + 64 < size
    assert starts[-1] + tile == size and all(b - a <= tile - 64 for a, b in zip(starts, starts[1:]))


def test_halo_is_zero_at_shared_edges_and_one_at_canvas_borders():
    canvas, multiple = (64, 96), 4
    grid = TileGrid.build(canvas, tile_size=32, overlap=16, halo=5, multiple=multiple)
    assert len(grid) > 4
    h = grid.halo
    assert h == 5
    for slices, w in grid:
        for axis, (sl, size) in enumerate(zip(slices, canvas)):
            # The window is an outer product of 1D windows whose middle is one, so
            # its maximum over the other axes is the 1D window along this one.
            others = tuple(a for a in range(w.ndim) if a != axis)
            profile = w.max(axis=others)
            if sl.start > 0:  # shared with the previous tile
                assert np.all(profile[:h] == 0) and profile[h:].max() > 0
            else:  # canvas border
                assert profile[0] == 1.0
            if sl.stop < size:  # shared with the next tile
                assert np.all(profile[-h:] == 0)
            else:
                assert profile[-1] == 1.0
    # The tile at the origin touches the canvas on two sides: weight one in that corner.
    slices0, w0 = next(iter(grid))
    assert all(s.start == 0 for s in slices0)
    assert w0[0, 0] == 1.0


def test_grid_with_one_tile_has_uniform_weight():
    grid = TileGrid.build((32, 48), tile_size=64, overlap=16, halo=4, multiple=4)
    tiles = list(grid)
    assert len(tiles) == 1
    slices, w = tiles[0]
    assert slices == (slice(0, 32), slice(0, 48))
    assert np.all(w == 1)


def test_canvas_must_be_a_multiple():
    with pytest.raises(ValueError, match="multiple"):
        TileGrid.build((30, 32), tile_size=16, overlap=8, halo=2, multiple=4)
