"""Foreground masks -> instance labels: components, watershed, size filter, holes."""

from __future__ import annotations

import numpy as np
import pytest
from scenes import moving_nuclei, random_edit, relabel_every_block, sliver_and_ball
from scipy import ndimage as ndi
from skimage import measure

from napari_unet import instances
from napari_unet.errors import SegmentationError
from napari_unet.instances import (
    METHODS,
    ball_volume_of_disc,
    count_objects,
    ids_and_ranks,
    label_instances,
    min_object_size,
    relabel_edited,
    split_seeds_at_necks,
    split_touching,
)


def _objects(labels: np.ndarray) -> set[int]:
    return set(np.unique(labels)) - {0}


def _assert_consecutive(labels: np.ndarray) -> None:
    ids = sorted(_objects(labels))
    assert ids == list(range(1, len(ids) + 1))


def test_connected_components(helpers):
    mask = np.zeros((30, 40), np.uint8)
    mask[2:8, 3:10] = 1
    mask[15:25, 5:12] = 1
    mask[10:12, 30:38] = 2  # any nonzero class counts as foreground
    mask[20, 20] = 1  # one isolated pixel
    labels = label_instances(mask, min_size=0)
    assert labels.dtype == np.int32 and labels.shape == mask.shape
    assert len(_objects(labels)) == 4
    _assert_consecutive(labels)
    np.testing.assert_array_equal(labels > 0, mask > 0)
    # Each object carries one label, and different objects different ones.
    blocks = [labels[2:8, 3:10], labels[15:25, 5:12], labels[10:12, 30:38]]
    ids = [np.unique(b) for b in blocks]
    assert all(len(i) == 1 for i in ids)
    assert len({int(i[0]) for i in ids}) == 3


def test_diagonal_neighbours_are_separate_objects():
    """Components use face connectivity: pixels touching at a corner are two objects."""
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = True
    assert len(_objects(label_instances(mask, fill_holes=False))) == 2


@pytest.mark.parametrize("with_seeds", [False, True])
def test_watershed_splits_touching_discs(helpers, with_seeds):
    mask, c1, c2 = helpers.touching_discs()
    # The discs overlap: one connected blob.
    assert len(_objects(label_instances(mask, method="components"))) == 1
    seeds = None
    if with_seeds:
        seeds = helpers.disc(mask.shape, c1, 3) | helpers.disc(mask.shape, c2, 3)
    labels = label_instances(mask, method="watershed", seeds=seeds)
    assert len(_objects(labels)) == 2
    np.testing.assert_array_equal(labels > 0, mask)
    # Each disc's centre is in its own object, and each object is about half the blob.
    a, b = labels[int(c1[0]), int(c1[1])], labels[int(c2[0]), int(c2[1])]
    assert a > 0 and b > 0 and a != b
    sizes = np.bincount(labels.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) < 0.1 * mask.sum()
    # The cut runs through the waist between the discs (the middle column).
    mid = mask.shape[1] // 2
    left = set(np.unique(labels[:, : mid - 2])) - {0}
    right = set(np.unique(labels[:, mid + 2 :])) - {0}
    assert left == {a} and right == {b}


def _elongated_objects(helpers):
    rect = np.zeros((20, 60), bool)
    rect[5:12, 5:50] = True
    yy, xx = np.indices((60, 80))
    u, v = (yy - 30) * 0.8 + (xx - 40) * 0.6, -(yy - 30) * 0.6 + (xx - 40) * 0.8
    tilted = (u / 6) ** 2 + (v / 25) ** 2 <= 1
    rough = helpers.disc((60, 60), (30, 30), 14)
    edge = rough & ~np.pad(rough[1:-1, 1:-1] & rough[:-2, 1:-1] & rough[2:, 1:-1]
                           & rough[1:-1, :-2] & rough[1:-1, 2:], 1)
    rough[edge & (np.random.default_rng(0).random(rough.shape) < 0.5)] = False
    box = np.zeros((10, 20, 30), bool)
    box[2:8, 4:16, 3:27] = True
    return {"rectangle": rect, "tilted ellipse": tilted, "ragged disc": rough, "3d box": box}


def test_watershed_does_not_cut_single_elongated_objects(helpers):
    """The ridge of an elongated object's distance transform is a plateau or a
    chain of tiny bumps, not separate peaks: one object must stay one object."""
    for name, mask in _elongated_objects(helpers).items():
        labels = label_instances(mask, method="watershed", min_size=0)
        assert len(_objects(labels)) == 1, name
        np.testing.assert_array_equal(labels > 0, mask)


def test_watershed_splits_unequal_touching_discs(helpers):
    mask = helpers.disc((60, 80), (30, 30), 10) | helpers.disc((60, 80), (30, 44), 6)
    labels = label_instances(mask, method="watershed")
    assert len(_objects(labels)) == 2
    assert labels[30, 30] != labels[30, 45]


def test_watershed_depth_h(helpers):
    """Touching discs of radius 9 meet at a waist where the distance to the
    background is 6: a dip of 3. A seed depth h above that merges them."""
    mask, _, _ = helpers.touching_discs()
    assert len(_objects(split_touching(mask, h=2.0))) == 2
    assert len(_objects(split_touching(mask, h=4.0))) == 1


def test_watershed_keeps_separate_objects_and_unseeded_ones(helpers):
    mask = np.zeros((30, 60), bool)
    mask |= helpers.disc(mask.shape, (15, 10), 6)
    mask |= helpers.disc(mask.shape, (15, 45), 6)
    # Seeds for the first disc only: the second must not vanish.
    seeds = helpers.disc(mask.shape, (15, 10), 2)
    labels = split_touching(mask, seeds=seeds)
    assert len(_objects(labels)) == 2
    np.testing.assert_array_equal(labels > 0, mask)
    labels = split_touching(mask)
    assert len(_objects(labels)) == 2


def test_watershed_keeps_a_blob_joined_only_at_a_corner():
    """A small blob touching a nucleus diagonally (e.g. painted by hand) is not dropped from the instances."""
    mask = np.zeros((20, 20), bool)
    mask[2:10, 2:10] = True
    mask[10:12, 10:12] = True  # corner to corner with the square, too small for a seed of its own
    for labels in (split_touching(mask), label_instances(mask, method="watershed", min_size=0)):
        np.testing.assert_array_equal(labels > 0, mask)
        assert len(_objects(labels)) == 2


def test_relabel_keeps_a_blob_painted_at_a_nucleus_corner():
    """Update instances after painting a blob that touches a kept nucleus only at a corner."""
    previous = np.zeros((20, 20), np.int32)
    previous[2:10, 2:10] = 5
    mask = previous > 0
    mask[10:12, 10:12] = True
    labels = relabel_edited(mask, previous, method="watershed", min_size=0)
    assert np.all(labels[2:10, 2:10] == 5)
    assert np.unique(labels[10:12, 10:12]).tolist() == [6]  # its own, new id


def test_watershed_follows_the_elevation(helpers):
    """A seeded watershed floods the given landscape: a ridge decides the border."""
    mask = np.zeros((10, 30), bool)
    mask[2:8, 2:28] = True
    seeds = np.zeros_like(mask)
    seeds[4:6, 3] = seeds[4:6, 26] = True
    elevation = np.zeros(mask.shape, np.float32)
    elevation[:, 8] = 1.0  # a ridge close to the left seed
    labels = split_touching(mask, seeds=seeds, elevation=elevation)
    left = labels[5, 3]
    assert np.all(labels[2:8, 2:8] == left)
    assert np.all(labels[2:8, 9:28] != left)


def test_min_size_removes_small_objects():
    mask = np.zeros((30, 30), bool)
    mask[1:4, 1:4] = True  # 9 pixels
    mask[10:14, 10:14] = True  # 16 pixels
    mask[20:25, 20:25] = True  # 25 pixels
    for min_size, expected in [(0, 3), (9, 3), (10, 2), (16, 2), (17, 1), (26, 0)]:
        labels = label_instances(mask, min_size=min_size)
        assert len(_objects(labels)) == expected, min_size
        _assert_consecutive(labels)
    labels = label_instances(mask, min_size=10)
    assert np.all(labels[1:4, 1:4] == 0) and np.all(labels[20:25, 20:25] > 0)


def test_ball_volume_of_disc():
    """The ball as wide as a disc of that area: 4/3 pi r**3 with r = sqrt(area / pi), rounded;
    sliced to a stack thinner than it (one plane: the disc itself)."""
    assert [ball_volume_of_disc(a) for a in (0, 1, 10, 24, 32)] == [0, 1, 24, 88, 136]
    assert [ball_volume_of_disc(24, depth=d) for d in (1, 2, 5, 6, 100)] == [24, 46, 87, 88, 88]
    assert all(ball_volume_of_disc(a, depth=1) == a for a in range(200))  # a one-plane stack is its plane
    assert min_object_size(24, (12, 40, 40), min_size_is_area=True) == 88
    assert min_object_size(24, (12, 40, 40)) == 24  # voxels (a 3D model's)
    assert min_object_size(24, (40, 40), min_size_is_area=True) == 24  # 2D: the area itself


def test_min_size_as_an_area_keeps_nuclei_and_drops_slivers_in_3d():
    """A 2D model's min_size (24 px) is a cross-section's area: labelled in 3D, a sliver two planes
    deep (58 voxels, 29 px in each plane) is dropped, a small nucleus (a ball of radius 4) kept.
    Counted as voxels (a 3D model's min_size), the sliver stays; 2D blocks are unaffected."""
    mask, nucleus, sliver = sliver_and_ball()
    for method in METHODS:
        area = label_instances(mask, method=method, min_size=24, min_size_is_area=True)
        assert area[nucleus] > 0 and area[sliver] == 0 and len(_objects(area)) == 1, method
        voxels = label_instances(mask, method=method, min_size=24)
        assert voxels[nucleus] > 0 and voxels[sliver] > 0 and len(_objects(voxels)) == 2, method
        # Each plane labelled on its own (ndim=2): the sliver's 29 px pass 24, as in 2D.
        planes = label_instances(mask, method=method, min_size=24, min_size_is_area=True, ndim=2)
        np.testing.assert_array_equal(planes, label_instances(mask, method=method, min_size=24, ndim=2))
        assert planes[sliver] > 0
    # A stack of one plane is that plane.
    one = mask[6:7]
    np.testing.assert_array_equal(label_instances(one, min_size=50, min_size_is_area=True),
                                  label_instances(one[0], min_size=50)[None])
    # Update instances relabels the same way: a sliver painted into the first planes goes.
    previous = label_instances(mask, min_size=0)
    previous[:2] = 0
    edited = relabel_edited(mask, previous, method="components", min_size=24, min_size_is_area=True)
    assert edited[nucleus] > 0 and edited[sliver] == 0


def test_holes_are_filled():
    ring = np.zeros((20, 20), bool)
    ring[4:15, 4:15] = True
    ring[8:11, 8:11] = False  # a 3x3 hole
    filled = label_instances(ring, fill_holes=True)
    assert len(_objects(filled)) == 1
    assert np.all(filled[4:15, 4:15] == filled[5, 5])
    kept = label_instances(ring, fill_holes=False)
    assert np.all(kept[8:11, 8:11] == 0)
    # A gap open to the outside is not a hole.
    notch = ring.copy()
    notch[9, 4:11] = False
    assert np.all(label_instances(notch, fill_holes=True)[8:11, 8:11] == 0)


def test_a_stack_fills_the_holes_of_each_plane_like_the_plane_alone():
    """A hole through every plane reaches the top and bottom: open in 3D, a hole in each plane."""
    ring = np.zeros((20, 20), bool)
    ring[4:15, 4:15] = True
    ring[8:11, 8:11] = False
    stack = np.stack([ring] * 3)
    for method in ("components", "watershed"):
        alone = label_instances(ring, method=method, fill_holes=True)
        labelled = label_instances(stack, method=method, fill_holes=True, ndim=3)
        np.testing.assert_array_equal(labelled > 0, np.stack([alone > 0] * 3))
        assert len(_objects(labelled)) == 1
    assert not label_instances(stack, fill_holes=False, ndim=3)[:, 8:11, 8:11].any()


@pytest.mark.parametrize("shape", [(40, 50), (6, 20, 24)])
def test_holes_match_scipy_fill_holes(shape):
    from scipy import ndimage as ndi

    from napari_unet.instances import _holes

    rng = np.random.default_rng(len(shape))
    found = 0
    for density in (0.3, 0.55, 0.7, 0.8):
        mask = ndi.binary_opening(rng.random(shape) < density)
        expected = ndi.binary_fill_holes(mask) & ~mask
        np.testing.assert_array_equal(_holes(mask), expected)
        found += int(expected.sum())
    assert found > 0  # the dense masks did enclose holes
    assert not _holes(np.ones(shape, bool)).any()
    assert not _holes(np.zeros(shape, bool)).any()


def test_hole_between_two_touching_objects_goes_to_a_neighbour(helpers):
    mask, _, _ = helpers.touching_discs()
    centre = (mask.shape[0] // 2, mask.shape[1] // 2)
    holed = mask & ~helpers.disc(mask.shape, centre, 2)
    labels = label_instances(holed, method="watershed", fill_holes=True)
    assert len(_objects(labels)) == 2
    np.testing.assert_array_equal(labels > 0, mask)


def test_3d_labels_are_unique_across_the_volume():
    vol = np.zeros((4, 12, 12), bool)
    vol[0, 1:4, 1:4] = True  # object A, plane 0 only
    vol[1:3, 6:10, 6:10] = True  # object B, spans planes 1 and 2
    vol[3, 1:4, 1:4] = True  # object C: same place as A but not touching it
    labels = label_instances(vol, ndim=3)
    assert len(_objects(labels)) == 3
    assert labels[0, 2, 2] != labels[3, 2, 2]
    assert labels[1, 7, 7] == labels[2, 7, 7]  # one object through the planes
    # Touching planes join: connect A to C through planes 1 and 2.
    vol[1:3, 2, 2] = True
    assert len(_objects(label_instances(vol, ndim=3))) == 2


def test_2d_labels_restart_per_time_point():
    series = np.zeros((3, 12, 12), bool)
    series[:, 1:4, 1:4] = True
    series[:, 6:10, 6:10] = True
    series[2, 6:10, 1:3] = True  # a third object at the last time point
    labels = label_instances(series, ndim=2)
    assert labels.shape == series.shape
    for t, n in enumerate([2, 2, 3]):
        assert _objects(labels[t]) == set(range(1, n + 1))
    # In 3D the same stack would be two tubes plus one blob.
    assert len(_objects(label_instances(series, ndim=3))) == 3


def test_ndim_2_on_tzyx_blocks_and_default_ndim():
    data = np.zeros((2, 3, 8, 8), bool)
    data[:, :, 2:5, 2:5] = True
    labels = label_instances(data, ndim=3)
    assert labels.max() == 1 and np.all(labels[data] == 1)  # one tube per time point
    labels2 = label_instances(data, ndim=2)
    assert np.all(labels2[data] == 1)  # one square per plane
    with pytest.raises(SegmentationError, match="Cannot label"):
        label_instances(data)  # 4 dimensions at once


@pytest.mark.parametrize("kwargs", [{"method": "flood"}, {"ndim": 4}, {"ndim": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(SegmentationError):
        label_instances(np.ones((2, 5, 5), bool), **kwargs)


def test_empty_mask():
    labels = label_instances(np.zeros((9, 9), np.uint8), method="watershed", min_size=3)
    assert labels.dtype == np.int32 and not labels.any()


# --- seeds cut at necks ----------------------------------------------------------------------

def _disc(shape, center, radius):
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2


def test_necked_seed_region_is_cut_in_two():
    # Two discs of radius 8 whose centres are 14 px apart overlap in a waist
    # about 2 * sqrt(8**2 - 7**2) ~ 7.7 px wide: the saddle of the distance
    # transform (~4) is far below 0.7 x the peaks (8).
    seeds = _disc((40, 60), (20, 20), 8) | _disc((40, 60), (20, 34), 8)
    assert measure.label(seeds).max() == 1
    markers = split_seeds_at_necks(seeds, neck_ratio=0.7)
    assert len(np.unique(markers[markers > 0])) == 2
    assert markers[20, 14] != markers[20, 40] and markers[20, 14] > 0 and markers[20, 40] > 0
    assert np.array_equal(markers > 0, seeds)


def _necks_of_the_whole_array(seeds, neck_ratio):
    """split_seeds_at_necks as it was, from the distance transform of the whole array and its
    maxima (the reference the region-by-region transform must give back)."""
    from skimage import morphology, segmentation

    structure = np.ones((3,) * seeds.ndim, bool)
    regions, n = ndi.label(seeds, structure)
    markers = regions.astype(np.int32)
    distance = ndi.distance_transform_edt(seeds)
    plateaus, _ = ndi.label(morphology.local_maxima(distance) & seeds, structure)
    _, first = np.unique(plateaus[plateaus > 0], return_index=True)
    maxima = np.bincount(regions[plateaus > 0][first], minlength=n + 1)
    dims = max(sum(k > 1 for k in seeds.shape), 2)
    thin = min(k for k in seeds.shape if k > 1) if dims == 3 else 0
    next_id = n + 1
    for label, box in enumerate(ndi.find_objects(regions), start=1):
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        region = regions[box] == label
        dist = np.where(region, distance[box], 0.0)
        if maxima[label] < 2 or region.sum() <= 1.3 * instances._round_blob(dist.max(), dims, thin):
            continue
        domes = morphology.reconstruction(dist * neck_ratio, dist, method="dilation")
        peaks, count = ndi.label(morphology.local_maxima(domes) & region, structure)
        if count >= 2:
            pieces = segmentation.watershed(-dist, peaks, mask=region, connectivity=seeds.ndim)
            markers[box][region] = pieces[region] + next_id - 1
            next_id += count
    return markers


def test_neck_split_takes_its_distance_transform_region_by_region_with_the_same_result(monkeypatch):
    # scipy's transform of a whole stack holds ~40 bytes per voxel of temporaries beside its
    # float64 result, and the maxima of that as much again: it runs on each region's box.
    import napari_unet.instances as inst

    rng = np.random.default_rng(3)
    seeds = np.zeros((600, 200), bool)
    for cy, cx in zip(rng.integers(10, 590, 60), rng.integers(10, 190, 60)):
        seeds |= _disc(seeds.shape, (cy, cx), int(rng.integers(4, 9)))
    seeds |= _disc(seeds.shape, (300, 80), 8) | _disc(seeds.shape, (300, 94), 8)  # a neck to cut
    seeds[0, :20] = True  # regions at the array's edge
    seeds[-8:, 150:] = True
    volume = np.stack([seeds.T[:, :200]] * 3 + [seeds.T[:, 200:400]] * 4)  # (7, 200, 200), necks in 3D
    volume[5:, 40:60, 40:60] = True  # a block at the last plane
    sizes = []
    real_edt = ndi.distance_transform_edt

    def edt(mask, *args, **kwargs):
        sizes.append(mask.size)
        return real_edt(mask, *args, **kwargs)

    monkeypatch.setattr(inst.ndi, "distance_transform_edt", edt)
    for mask in (seeds, volume, volume[:2], volume[:1]):
        for ratio in (0.7, 0.9):
            sizes.clear()
            markers = split_seeds_at_necks(mask, neck_ratio=ratio)
            assert sizes and max(sizes) < mask.size // 4
            np.testing.assert_array_equal(markers, _necks_of_the_whole_array(mask, ratio))
    assert split_seeds_at_necks(seeds, neck_ratio=0.7).max() > ndi.label(seeds, np.ones((3, 3), bool))[1]


@pytest.mark.parametrize("planes", [1, 2, 3])
def test_a_stack_of_a_few_planes_is_cut_at_necks_as_its_plane_alone(planes):
    """A (1, Y, X) stack (a z-stack of one plane) is no volume: its regions are discs, not balls.
    A stack of 2 or 3 planes is thinner than its nuclei: their round blobs are balls cut by it."""
    seeds = _disc((40, 60), (20, 20), 8) | _disc((40, 60), (20, 34), 8)
    fg = _disc((40, 60), (20, 20), 11) | _disc((40, 60), (20, 34), 11)
    plane = label_instances(fg, method="watershed", seeds=seeds, neck_ratio=0.7)
    stack = label_instances(np.stack([fg] * planes), method="watershed", seeds=np.stack([seeds] * planes),
                            neck_ratio=0.7, ndim=3)
    assert plane.max() == 2 and plane[20, 20] != plane[20, 34]
    if planes == 1:
        np.testing.assert_array_equal(stack[0], plane)
    # (Pixels equally far from both centres may go to either side: the flood runs in 3D.)
    assert stack.max() == 2 and np.all(stack[:, 20, 20] == 1) and np.all(stack[:, 20, 34] == 2)


def test_a_thick_stack_of_two_necked_balls_is_cut_and_one_ball_is_not():
    zz, yy, xx = np.indices((30, 30, 44))
    ball = (zz - 15) ** 2 + (yy - 15) ** 2 + (xx - 15) ** 2 <= 64
    two = ball | ((zz - 15) ** 2 + (yy - 15) ** 2 + (xx - 29) ** 2 <= 64)
    assert len(np.unique(split_seeds_at_necks(two, neck_ratio=0.7))) - 1 == 2
    assert len(np.unique(split_seeds_at_necks(ball, neck_ratio=0.7))) - 1 == 1


def test_a_seed_part_joined_at_a_corner_stays_with_its_cut_region():
    """Cutting a region at a neck must not hand a corner-joined part another region's id."""
    seeds = np.zeros((9, 20), bool)
    seeds[1:6, 1:6] = seeds[1:6, 9:14] = True  # two squares joined by a thin neck: cut in two
    seeds[3, 6:9] = True
    seeds[6, 0] = True  # touches the left square only at a corner
    seeds[7:9, 17:19] = True  # another seed, far away
    markers = split_seeds_at_necks(seeds, neck_ratio=0.7)
    assert markers[6, 0] == markers[3, 3] != markers[3, 11]
    assert markers[7, 17] not in (markers[3, 3], markers[3, 11])
    labels = label_instances(seeds, method="watershed", seeds=seeds, neck_ratio=0.7)
    assert len(_objects(labels)) == 3
    assert labels[7, 17] != labels[6, 0]


def test_negative_mask_values_are_objects_as_the_docstring_says():
    mask = np.zeros((4, 6), np.int8)
    mask[1:3, 1:3], mask[1:3, 4:6] = -1, 2  # e.g. an int8 mask whose 255 wrapped to -1
    assert label_instances(mask).max() == 2
    assert relabel_edited(mask, np.zeros(mask.shape, np.int32)).max() == 2


def test_round_and_elongated_seeds_stay_whole():
    disc = _disc((40, 40), (20, 20), 10)
    yy, xx = np.indices((40, 80))
    ellipse = ((yy - 20) / 6.0) ** 2 + ((xx - 40) / 30.0) ** 2 <= 1
    for seeds in (disc, ellipse):
        markers = split_seeds_at_necks(seeds, neck_ratio=0.7)
        assert len(np.unique(markers[markers > 0])) == 1


def test_label_instances_uses_neck_split_only_when_asked():
    seeds = _disc((40, 60), (20, 20), 8) | _disc((40, 60), (20, 34), 8)
    fg = _disc((40, 60), (20, 20), 11) | _disc((40, 60), (20, 34), 11)
    plain = label_instances(fg, method="watershed", seeds=seeds)
    cut = label_instances(fg, method="watershed", seeds=seeds, neck_ratio=0.7)
    assert plain.max() == 1
    assert cut.max() == 2
    assert np.array_equal(cut > 0, fg)


def _squares_scene():
    """Labels of three objects: two touching squares (a straight seam, ids 1, 2) and one apart (3)."""
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches 1: one region of the mask, split by the earlier method
    labels[25:35, 40:50] = 3
    return labels


def test_relabel_edited_without_edits_changes_nothing():
    """The split the run made (here one no distance transform would find) survives an update."""
    previous = _squares_scene()
    for method in ("watershed", "components"):
        out = relabel_edited(previous > 0, previous, method=method, min_size=0)
        np.testing.assert_array_equal(out, previous)
        # Without the earlier labels, the two squares are relabelled as one object.
        assert label_instances(previous > 0, method=method).max() == 2


def test_relabel_edited_redoes_only_what_was_edited():
    previous = _squares_scene()
    mask = previous > 0
    # A nucleus painted apart (on background): a new id after the largest; the others keep theirs.
    mask[25:33, 5:13] = True
    out = relabel_edited(mask, previous, method="watershed", min_size=0)
    assert np.all(out[previous > 0] == previous[previous > 0])
    assert set(np.unique(out[25:33, 5:13])) == {4}
    # Object 3 erased: gone; 1 and 2 untouched.
    mask = previous > 0
    mask[previous == 3] = False
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert _objects(out) == {1, 2} and np.array_equal(out[previous < 3], previous[previous < 3])
    # Square 2 trimmed: its region (1 and 2) is labelled afresh (components: one object, which
    # keeps the id of the earlier object it covers most); 3 keeps its id.
    mask = previous > 0
    mask[5:15, 22:25] = False
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert np.all(out[previous == 3] == 3)
    assert set(np.unique(out[5:15, 5:22])) == {1}
    # Painting next to object 3 makes it one object with the paint, still number 3.
    mask = previous > 0
    mask[25:35, 50:55] = True
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert set(np.unique(out[25:35, 40:55])) == {3}
    squares = (previous == 1) | (previous == 2)
    assert np.array_equal(out[squares], previous[squares])


def test_relabel_edited_per_block_and_checks_shapes():
    previous = np.stack([_squares_scene(), _squares_scene()])
    mask = previous > 0
    mask[1][previous[1] == 1] = False  # erased in the second time point only
    out = relabel_edited(mask, previous, ndim=2, method="watershed", min_size=0)
    np.testing.assert_array_equal(out[0], previous[0])
    assert _objects(out[1]) == {2, 3}
    with pytest.raises(SegmentationError, match="do not match"):
        relabel_edited(mask, previous[0], ndim=2)


def test_relabel_edited_fills_a_kept_objects_new_hole_with_its_own_id():
    """A ring painted round an untouched object: the gap becomes the ring's or the object's, never a third."""
    previous = np.zeros((40, 40), np.int32)
    previous[15:25, 15:25] = 1  # the untouched object
    previous[2:6, 30:36] = 2
    mask = previous > 0
    mask[8:32, 8:32] |= True
    mask[10:30, 10:30] = False  # a ring round object 1, with a gap between
    mask[15:25, 15:25] = True
    out = relabel_edited(mask, previous, method="components", min_size=0, fill_holes=True)
    plain = label_instances(mask, method="components", min_size=0, fill_holes=True)
    assert len(_objects(out)) == len(_objects(plain)) == 3
    assert np.all(out[15:25, 15:25] == 1) and np.all(out[2:6, 30:36] == 2)
    assert np.array_equal(out > 0, plain > 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fill_holes", [True, False])
@pytest.mark.parametrize("ring", [True, False])
def test_relabel_edited_skips_frames_with_the_result_of_relabelling_every_frame(method, fill_holes, ring):
    """Frames whose labels relabelling would keep are not labelled again; the result is the same,
    id for id, through a chain of random edits (paint, erase, at the borders, a speck, a hole)."""
    mask, seeds = moving_nuclei(ring=ring)
    params = {"method": method, "min_size": 12, "fill_holes": fill_holes, "ndim": 2}
    previous = label_instances(mask, seeds=seeds if method == "watershed" else None, **params)
    rng = np.random.default_rng(1)
    for step in range(12):
        mask = random_edit(mask, rng)
        first_new = int(previous.max()) + 1 if step % 2 else None
        out = relabel_edited(mask, previous, first_new_id=first_new, **params)
        np.testing.assert_array_equal(out, relabel_every_block(mask, previous, first_new_id=first_new, **params))
        previous = out


def test_relabel_edited_looks_for_regions_only_round_the_unlabelled_pixels(monkeypatch):
    """Whether a speck painted in a z-stack vanishes again is checked around it, not over the stack."""
    previous = np.zeros((8, 200, 200), np.int32)
    previous[2:6, 50:70, 50:70] = 1
    mask = previous > 0
    mask[4, 5, 5] = True
    looked = []
    real = instances.ndi.label

    def spy(data, structure=None, **kwargs):
        if structure is not None:
            looked.append(np.asarray(data).size)
        return real(data, structure, **kwargs)

    monkeypatch.setattr(instances.ndi, "label", spy)
    out = relabel_edited(mask, previous, ndim=3, method="watershed", min_size=12)
    np.testing.assert_array_equal(out, previous)
    assert looked == [3 * 3 * 3]


@pytest.mark.parametrize("method", METHODS)
def test_relabel_edited_skips_3d_blocks_with_the_result_of_relabelling_every_block(method):
    """Blocks labelled in 3D (two time points of three planes) too, specks painted included."""
    mask, seeds = moving_nuclei(ring=False)
    params = {"method": method, "min_size": 12, "fill_holes": True, "ndim": 3}
    shape = (2, 3, *mask.shape[1:])
    previous = label_instances(mask.reshape(shape), seeds=seeds.reshape(shape), **params)
    rng = np.random.default_rng(2)
    for step in range(8):
        mask = random_edit(mask, rng)
        if step == 3:
            mask[1, 30, 30] = mask[1, 31, 31] = True  # specks alone
        out = relabel_edited(mask.reshape(shape), previous, **params)
        np.testing.assert_array_equal(out, relabel_every_block(mask.reshape(shape), previous, **params))
        previous = out


def _hole_line_and_sliver() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """(mask, previous labels, options) of frames whose labels relabelling changes, though the
    mask is unedited or edited only by a speck smaller than ``min_size``."""
    ring = np.zeros((1, 20, 20), np.int32)
    ring[0, 4:12, 4:12] = 1
    ring[0, 7:9, 7:9] = 0  # a hole, which relabelling fills
    sliver = np.zeros((1, 20, 20), np.int32)
    sliver[0, 4, 4:9] = 1  # an object smaller than min_size (hand-labelled, say)...
    painted = sliver > 0
    painted[0, 5, 4:7] = True  # ...with a speck painted beside it: gone together
    line = np.zeros((1, 20, 20), np.int32)
    line[0, 2, 2:18] = 1  # one pixel wide
    joined = line > 0
    joined[0, 3, 18] = True  # a speck at its corner: the watershed's seed takes it in
    return [(ring > 0, ring, {"method": "components", "min_size": 0, "fill_holes": True}),
            (painted, sliver, {"method": "components", "min_size": 12, "fill_holes": False}),
            (joined, line, {"method": "watershed", "min_size": 12, "fill_holes": False})]


@pytest.mark.parametrize("case", range(3))
def test_relabel_edited_relabels_a_frame_whose_labels_relabelling_changes(case):
    mask, previous, options = _hole_line_and_sliver()[case]
    out = relabel_edited(mask, previous, ndim=2, **options)
    assert not np.array_equal(out, previous)
    np.testing.assert_array_equal(out, relabel_every_block(mask, previous, ndim=2, **options))


def _shapes_labelled(monkeypatch) -> list[tuple[int, ...]]:
    """The shape of each foreground :func:`instances.label_instances` is given from now on (a list
    the calls fill), for tests of how much of a block an update labels again."""
    calls: list[tuple[int, ...]] = []
    real = instances.label_instances

    def spy(foreground, **kwargs):
        calls.append(np.asarray(foreground).shape)
        return real(foreground, **kwargs)

    monkeypatch.setattr(instances, "label_instances", spy)
    return calls


def test_relabel_edited_labels_only_the_frames_an_edit_changed(monkeypatch):
    """A brush stroke in one frame of a series labels that frame alone, even where the labels
    differ from the mask elsewhere (specks that min_size removed); the split the seeds made stays."""
    mask, seeds = moving_nuclei(ring=False)
    params = {"method": "watershed", "min_size": 12, "fill_holes": True, "ndim": 2}
    previous = label_instances(mask, seeds=seeds, **params)
    assert not np.array_equal(previous > 0, mask)
    calls = _shapes_labelled(monkeypatch)
    np.testing.assert_array_equal(relabel_edited(mask, previous, **params), previous)
    assert calls == []
    mask[4][_disc(mask.shape[1:], (10, 10), 4)] = True
    out = relabel_edited(mask, previous, **params)
    assert len(calls) == 1 and np.all(np.array(calls[0]) <= mask.shape[1:])  # in frame 4 (round the stroke)
    np.testing.assert_array_equal(out[:4], previous[:4])
    np.testing.assert_array_equal(out[5:], previous[5:])
    monkeypatch.undo()
    np.testing.assert_array_equal(out, relabel_every_block(mask, previous, **params))


def test_relabel_edited_first_new_id():
    previous = _squares_scene()
    mask = previous > 0
    mask[25:33, 5:13] = True
    out = relabel_edited(mask, previous, method="components", min_size=0, first_new_id=50)
    assert set(np.unique(out[25:33, 5:13])) == {50}


def test_count_objects_per_block_whatever_the_ids():
    stack = np.zeros((2, 6, 6), np.int64)
    stack[0, :2, :2], stack[0, 4:, 4:] = 1, 7
    stack[1, :2, :2] = 2**40  # a hand-numbered id far above the pixel count: no huge table
    assert count_objects(stack, 2) == 3
    assert count_objects(stack, 3) == 3
    assert count_objects(np.zeros((4, 4), np.int32), 2) == 0
    assert count_objects(np.array([[0, -1], [3, 3]]), 2) == 2


def test_relabel_edited_with_ids_far_above_the_pixel_count():
    """Hand-numbered ids (2**40) need no table as long as the id, and are not wrapped to int32."""
    previous = _squares_scene().astype(np.int64)
    huge = 2**40
    previous[previous == 3] = huge
    mask = previous > 0
    mask[25:33, 5:13] = True  # a nucleus painted apart: the next id after the largest
    mask[previous == 1] = False  # object 1 erased
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert out.dtype == np.int64
    assert np.all(out[previous == huge] == huge) and np.all(out[previous == 2] == 2)
    assert set(np.unique(out[25:33, 5:13])) == {huge + 1}
    assert 1 not in _objects(out)
    # Every pixel labelled (no background id among the earlier labels) works too.
    full = np.full((4, 6), huge, np.int64)
    full[:, 3:] = huge + 5
    np.testing.assert_array_equal(relabel_edited(full > 0, full, method="components", min_size=0), full)
    # A new id past int32 from first_new_id alone widens the labels as well.
    fresh = relabel_edited(mask, np.zeros_like(previous), method="components", first_new_id=2**33)
    assert fresh.dtype == np.int64 and fresh.max() > 2**33


@pytest.mark.parametrize("big", [20, 2**40])
def test_relabel_edited_counts_overlaps_as_integers(monkeypatch, big):
    """An edited object keeps the earlier id it covers most, ids far above the pixel count
    too, and the (new, earlier) pairs are counted as plain integers: unique pairs of rows
    (``np.unique(..., axis=1)``) are sorted as records, holding the GIL all along, which froze
    napari for seconds while a whole 4096 x 4096 mask was relabelled in its worker."""
    from napari_unet import instances

    axes = []
    real = np.unique

    def spy(*args, **kwargs):
        axes.append(kwargs.get("axis"))
        return real(*args, **kwargs)

    monkeypatch.setattr(instances.np, "unique", spy)
    previous = np.zeros((30, 40), np.int64)
    previous[5:20, 5:20] = big  # the larger object
    previous[8:14, 24:30] = 7
    mask = previous > 0
    mask[10:12, 20:24] = True  # a bridge painted between them: one object now
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert _objects(out) == {big}
    assert np.all(out[mask] == big)
    assert axes and all(axis is None for axis in axes)


@pytest.mark.parametrize("values", [
    np.array([0, 5, 5, 2, 9, 0], np.int32),
    np.array([3, 3, 1], np.uint16),
    np.array([7], np.uint64),
    np.array([2**40, 3, 2**40], np.int64),  # hand-numbered far apart: np.unique's way
    np.array([-1, 4, 4], np.int32),
    np.array([0.5, 0.5, 2.0]),
    np.zeros(0, np.int32),
])
def test_ids_and_ranks_are_np_unique(values):
    ids, ranks = ids_and_ranks(values)
    want_ids, want_ranks = np.unique(values, return_inverse=True)
    assert ids.dtype == values.dtype and ranks.shape == values.shape
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(ranks, want_ranks)


def test_label_ids_are_ranked_without_np_unique(unique_inverse_calls):
    """np.unique(return_inverse=True) ranks through a cumulative sum over booleans that holds
    the GIL throughout: napari froze while its worker measured or relabelled a big stack."""
    inverse = unique_inverse_calls
    previous = _squares_scene()
    mask = previous > 0
    mask[25:33, 5:13] = True  # a nucleus painted apart: ranked among the new ones
    out = relabel_edited(mask, previous, method="components", min_size=0)
    assert set(np.unique(out[25:33, 5:13])) == {4}
    ids, ranks = ids_and_ranks(previous[previous > 0])
    np.testing.assert_array_equal(ids[ranks], previous[previous > 0])
    assert not any(inverse)


def test_a_stack_is_labelled_in_3d_in_under_31_bytes_per_voxel():
    """The watershed of a z-stack with seeds and neck cuts (segment's path for a 2D model's
    stack) peaks at skimage's flood (its float64 copies of the landscape, about 23 bytes per
    voxel) beside the mask and the int32 seeds, not also the boolean seeds, an int32 result
    allocated ahead, or copies of the labels (64 bytes per voxel with the neck cuts' distance
    transform of the whole stack, 35 without)."""
    from scenes import peak_numpy_bytes

    shape = (16, 96, 96)
    rng = np.random.default_rng(0)
    z, y, x = np.indices(shape)
    fg = np.zeros(shape, bool)
    seeds = np.zeros(shape, bool)
    for cz, cy, cx in rng.uniform((0, 0, 0), shape, size=(49, 3)):  # nuclei, touching ones too
        r = rng.uniform(4, 7)
        d = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
        fg |= d <= r * r
        seeds |= d <= (0.6 * r) ** 2
    elevation = np.round(255 * np.exp(-ndi.distance_transform_edt(fg) / 3)).astype(np.uint8)
    kwargs = {"method": "watershed", "seeds": seeds, "elevation": elevation, "ndim": 3, "neck_ratio": 0.7,
              "min_size": 24, "min_size_is_area": True}
    labels = label_instances(fg.astype(np.uint8), **kwargs)
    assert labels.max() > 30 and labels.dtype == np.int32
    per_voxel = peak_numpy_bytes(lambda: label_instances(fg.astype(np.uint8), **kwargs)) / fg.size
    assert per_voxel < 31, f"{per_voxel:.1f} bytes per voxel"


def test_a_series_is_made_boolean_a_block_at_a_time():
    """Labelling a long series (the widget's Update instances does) holds the int32 ids and one
    block's work, not a boolean copy of the whole series besides (5 bytes per pixel before)."""
    import gc
    import tracemalloc

    frame = np.zeros((64, 64), np.uint8)
    frame[10:20, 10:20] = frame[40:50, 30:45] = 1

    def peak(n: int) -> int:
        series = np.stack([np.roll(frame, t % 8, axis=1) for t in range(n)])
        gc.collect()
        tracemalloc.start()
        try:
            labels = label_instances(series, ndim=2, method="components")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert labels.max() == 2 and labels.dtype == np.int32

    lengths = (50, 150)
    per_pixel = (peak(lengths[1]) - peak(lengths[0])) / ((lengths[1] - lengths[0]) * frame.size)
    assert per_pixel < 4.5, f"{per_pixel:.1f} bytes per pixel of the series"


def _sample_labels() -> np.ndarray:
    """The bundled sample's ground truth: 168 nuclei, many touching, hand-split (520 x 696)."""
    from pathlib import Path

    import tifffile

    import napari_unet

    return tifffile.imread(Path(napari_unet.__file__).parent / "data" / "nuclei_labels.tif").astype(np.int32)


def _sample_stack(planes: int = 6) -> np.ndarray:
    """The sample's labels as a z-stack: a crop shifted a little from plane to plane, so that each
    nucleus is a slanted tube (``planes`` x 200 x 260)."""
    truth = _sample_labels()
    return np.stack([truth[100 + z : 300 + z, 150 + 2 * z : 410 + 2 * z] for z in range(planes)])


def _brush(shape: tuple[int, ...], points: list[tuple[float, ...]], radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the segment through ``points`` (a brush stroke, in every plane
    of a stack when the points are 2D)."""
    grid = np.indices(shape[-2:]).reshape(2, -1).T.astype(float)
    (y0, x0), (y1, x1) = points[0][-2:], points[-1][-2:]
    d = np.array([y1 - y0, x1 - x0])
    t = np.clip(((grid - [y0, x0]) @ d) / max(float(d @ d), 1e-9), 0, 1)
    near = (np.hypot(*(grid - ([y0, x0] + t[:, None] * d)).T) <= radius).reshape(shape[-2:])
    return np.broadcast_to(near, shape)


def _edits(previous: np.ndarray) -> dict[str, np.ndarray]:
    """Edited masks of ``previous``'s nuclei (2D, or a stack: every plane edited alike)."""
    mask = previous > 0
    plane = previous if previous.ndim == 2 else previous[previous.shape[0] // 2]
    centres = {i: np.argwhere(plane == i).mean(axis=0) for i in np.unique(plane) if i}
    ids = sorted(centres)
    # Two nuclei near each other, apart: a stroke from one centre to the other joins them.
    a, b = min(((i, j) for i in ids for j in ids if i < j),
               key=lambda p: abs(np.hypot(*(centres[p[0]] - centres[p[1]])) - 25))
    biggest = max(ids, key=lambda i: (plane == i).sum())
    c = centres[biggest]
    w = plane.shape[1]
    free = np.array(np.unravel_index(np.argmax(ndi.distance_transform_edt(plane == 0)), plane.shape), float)
    edits = {
        "join two": mask | _brush(mask.shape, [centres[a], centres[b]], 2),
        "cut one": mask & ~(_brush(mask.shape, [c - (0, 60), c + (0, 60)], 1) & (previous == biggest)),
        "new nucleus": mask | _brush(mask.shape, [free, free + 2], 6),
        "at the border": mask | _brush(mask.shape, [(0, w // 2), (6, w // 2 + 20)], 3),
        "deleted": mask & (previous != ids[len(ids) // 2]),
    }
    for name, edited in edits.items():
        assert not np.array_equal(edited, mask), name
    together = mask.copy()
    for edited in list(edits.values()):
        together = (together | (edited & ~mask)) & ~(mask & ~edited)
    edits["all at once"] = together
    return edits


def _seeds_elevation(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seeds and a uint8 elevation as a three-class model gives them (interiors; low inside)."""
    interior = np.stack([ndi.distance_transform_edt(p) for p in mask.reshape(-1, *mask.shape[-2:])])
    interior = interior.reshape(mask.shape)
    return interior > 3, np.round(255 * (1 - np.minimum(interior, 8) / 8)).astype(np.uint8)


_LOCAL_CASES = {
    "components": {"method": "components"},
    "watershed": {"method": "watershed"},
    "watershed, seeds": {"method": "watershed", "neck_ratio": 0.7},
}


@pytest.mark.parametrize("case", _LOCAL_CASES)
@pytest.mark.parametrize("planes", [0, 6, 3], ids=["2D", "z-stack", "thin z-stack"])
def test_relabel_edited_labels_round_the_touched_regions_as_in_the_whole_block(case, planes):
    """Relabelling only round an edit gives, id for id, the touched regions labelled in the whole
    block (on their own), on real nuclei: a stroke joining two, a cut, a new one, one at the border,
    one deleted, all at once; with seeds, elevation and neck cuts too. With plain components, that
    is the whole block labelled afresh (each component is labelled on its own)."""
    params = {"min_size": 24, "fill_holes": True, **_LOCAL_CASES[case]}
    if planes:
        previous = label_instances(_sample_stack(planes) > 0, ndim=3, min_size_is_area=True, **params)
        params.update(ndim=3, min_size_is_area=True)
    else:
        previous, params["ndim"] = _sample_labels(), 2
    for name, mask in _edits(previous).items():
        kwargs = dict(params)
        if "neck_ratio" in params:
            kwargs["seeds"], kwargs["elevation"] = _seeds_elevation(mask)
        out = relabel_edited(mask, previous, **kwargs)
        assert not np.array_equal(out, previous), name
        np.testing.assert_array_equal(out, relabel_every_block(mask, previous, **kwargs), err_msg=name)
        if params["method"] == "components":
            whole = instances._keep_untouched(mask, previous.astype(np.int64), label_instances(mask, **kwargs),
                                              None, np.int64, holes=instances._enclosed(mask > 0))
            np.testing.assert_array_equal(out, whole, err_msg=name)


@pytest.mark.parametrize("stack", [False, True], ids=["2D", "z-stack"])
def test_relabel_edited_labels_only_round_a_small_stroke(monkeypatch, stack):
    """A nucleus painted in a big image or a z-stack labelled in 3D is labelled in the rows round
    it (and the nuclei it touches), not over the whole block; specks left in the mask elsewhere
    (labels drop them as too small) do not widen it."""
    params = {"method": "watershed", "min_size": 24, "fill_holes": True}
    if stack:
        params.update(ndim=3, min_size_is_area=True)
        previous = label_instances(_sample_stack() > 0, **params)
    else:
        previous, params["ndim"] = _sample_labels(), 2
    mask = _edits(previous)["new nucleus"]
    # Specks the labels dropped (under min_size) stay in the mask, all over it: not labelled again.
    apart = np.argwhere(ndi.distance_transform_edt(mask == 0) >= 3)
    for speck in np.random.default_rng(0).choice(apart, 80, replace=False):
        mask[tuple(speck)] = True
    calls = _shapes_labelled(monkeypatch)
    out = relabel_edited(mask, previous, **params)
    assert len(calls) == 1
    assert np.prod(calls[0]) * 50 < previous.size, (calls, previous.shape)
    monkeypatch.undo()
    np.testing.assert_array_equal(out, relabel_every_block(mask, previous, **params))
    assert out.max() == previous.max() + 1  # the new nucleus, the rest kept


def test_relabel_edited_round_a_stroke_at_the_border_of_a_thin_stack_keeps_its_depth():
    """A nucleus painted against the image border of a stack of 7 planes, cut at necks, is labelled
    as in the whole block. Round it lie only 6 rows (the border is no background: its inscribed
    radius reaches 4 rows); with fewer rows than planes, the rows would be the thinnest side and
    the neck cuts would take the nucleus for a ball sliced to 6 (thinner than the 7 planes), not a
    whole one, and cut it in two (see split_seeds_at_necks)."""
    _, yy, xx = np.indices((7, 40, 60))

    def lobe(cx, r):
        return ((xx - cx) ** 2 + yy**2 <= r * r) & (yy < 4)

    painted = lobe(15, 3.2) | lobe(21.3, 3.9) | ((yy < 2) & (xx >= 15) & (xx <= 21.3))
    previous = np.zeros(painted.shape, np.int32)
    previous[:, 30:36, 40:46] = 1  # an earlier nucleus, away from the stroke: kept
    mask = painted | (previous > 0)
    kwargs = {"method": "watershed", "ndim": 3, "neck_ratio": 0.85, "seeds": mask}
    out = relabel_edited(mask, previous, **kwargs)
    np.testing.assert_array_equal(out, relabel_every_block(mask, previous, **kwargs))
    assert np.unique(out[painted]).tolist() == [2]  # one nucleus, a new id
    assert instances._rows_round(painted)[1].size == 7  # a row more than the 6 round it


# --- the five corrections a biologist makes --------------------------------------------------

#: The options "Update instances" relabels a 2D result of the bundled model with.
_UPDATE = {"method": "watershed", "min_size": 24, "fill_holes": True, "ndim": 2, "min_size_is_area": True}


@pytest.fixture(scope="module")
def sample_result():
    """The bundled sample, segmented with the bundled model, and its annotated nuclei."""
    from pathlib import Path

    import tifffile

    import napari_unet

    data = Path(napari_unet.__file__).parent / "data"
    result = napari_unet.segment(tifffile.imread(data / "nuclei.tif"), device="cpu", keep_probabilities=False)
    instances = result.instances.astype(np.uint16)  # as the widget shows them
    return result.semantic, instances, tifffile.imread(data / "nuclei_labels.tif").astype(np.int32)


def _covering(labels: np.ndarray, region: np.ndarray) -> list[int]:
    """The ids of ``labels`` that each cover over a fifth of ``region``."""
    ids, counts = np.unique(labels[region], return_counts=True)
    return [int(i) for i, n in zip(ids, counts) if i and n > 0.2 * region.sum()]


def _others_kept(out: np.ndarray, previous: np.ndarray, edited: list[int]) -> bool:
    others = (previous > 0) & ~np.isin(previous, edited)
    return bool(np.array_equal(out[others], previous[others]))


def test_the_five_corrections_of_the_bundled_sample(sample_result):
    """Each correction a biologist makes to the bundled model's result on the bundled sample,
    updated as the widget's "Update instances" does: every other nucleus keeps its id."""
    semantic, previous, truth = sample_result
    # 1. A nucleus cut in two: one fragment filled with the other's id on the instances.
    (nucleus,) = [g for g in range(1, truth.max() + 1) if len(_covering(previous, truth == g)) == 2]
    a, b = _covering(previous, truth == nucleus)
    assert ndi.binary_dilation(previous == a)[previous == b].any()  # touching: the mask cannot join them
    edited, mask = np.where(previous == b, a, previous), semantic.copy()
    assert instances.take_hand_edits(mask, previous, edited)[0].size == 0  # the mask is right already
    out = relabel_edited(mask, edited, **_UPDATE)
    assert set(np.unique(out[(previous == a) | (previous == b)])) == {a}
    assert _others_kept(out, previous, [a, b])
    # 2. Two nuclei as one: a line erased on the mask between them makes two, one keeping the id.
    merged = [(p, _covering(truth, previous == p)) for p in range(1, previous.max() + 1)]
    merged = [(p, pair) for p, pair in merged if len(pair) == 2]
    assert merged
    for p, (g1, g2) in merged:
        mask = semantic.copy()
        mask[ndi.binary_dilation(truth == g1) & ndi.binary_dilation(truth == g2) & (previous == p)] = 0
        out = relabel_edited(mask, previous, **_UPDATE)
        ids = _objects(out[previous == p])
        assert len(ids) == 2 and p in ids and max(ids) > previous.max(), (p, ids)
        assert _objects(out[truth == g1]) != _objects(out[truth == g2])
        assert _others_kept(out, previous, [p])
    # 3. A false positive (no annotated nucleus under it) erased on the mask: gone.
    (false,) = [p for p in range(1, previous.max() + 1) if (previous == p).any() and not truth[previous == p].any()]
    mask = semantic.copy()
    mask[ndi.binary_dilation(previous == false, iterations=2)] = 0
    out = relabel_edited(mask, previous, **_UPDATE)
    assert not (out == false).any() and not out[previous == false].any()
    assert _others_kept(out, previous, [false])
    # 4. A missed nucleus painted on the mask (here in the widest empty spot): a new id.
    far = ndi.distance_transform_edt(semantic == 0)
    missed = _disc(semantic.shape, np.unravel_index(far.argmax(), far.shape), 7)
    mask = semantic.copy()
    mask[missed] = 1
    out = relabel_edited(mask, previous, **_UPDATE)
    assert _objects(out[missed]) == {int(previous.max()) + 1} and np.all(out[missed] > 0)
    assert _others_kept(out, previous, [])
    # 5. Wrong outlines: a nucleus apart grown by its rim, or trimmed: it keeps its id.
    alone = next(p for p in range(1, previous.max() + 1) if (previous == p).sum() > 100
                 and not (ndi.binary_dilation(previous == p, iterations=4) & (previous != p) & (semantic > 0)).any())
    rim = ndi.binary_dilation(previous == alone, iterations=2) & (previous != alone)
    mask = semantic.copy()
    mask[rim] = 1
    out = relabel_edited(mask, previous, **_UPDATE)
    assert _objects(out[(previous == alone) | rim]) == {alone} and np.all(out[rim] == alone)
    assert _others_kept(out, previous, [alone])
    mask = semantic.copy()
    mask[(previous == alone) & ~ndi.binary_erosion(previous == alone, iterations=2)] = 0
    out = relabel_edited(mask, previous, **_UPDATE)
    assert _objects(out[previous == alone]) == {alone} and _others_kept(out, previous, [alone])


def test_fragments_joined_on_the_mask_may_be_split_again_joined_on_the_labels_they_stay_one():
    """A nucleus the run cut in two at a neck: a bridge painted on the mask leaves a neck the
    watershed of the distance transform cuts again. One fragment filled with the other's id on
    the labels is taken as it is (the mask is right already, so nothing is split again)."""
    previous = np.zeros((40, 60), np.uint16)
    previous[_disc(previous.shape, (20, 18), 9)] = 3
    previous[_disc(previous.shape, (20, 40), 9)] = 4
    previous[_disc(previous.shape, (20, 29), 3) & (previous == 0)] = 4  # a thin join
    bridged = previous > 0
    bridged[18:23, 24:35] = True
    assert _objects(relabel_edited(bridged, previous, **_UPDATE)) == {3, 4}
    edited = np.where(previous == 4, 3, previous)
    mask = (previous > 0).astype(np.uint8)
    where = instances.take_hand_edits(mask, previous, edited)
    assert where[0].size == 0
    np.testing.assert_array_equal(relabel_edited(mask, edited, **_UPDATE), edited)


def test_take_hand_edits_brings_painted_and_erased_ids_into_the_mask():
    previous = _squares_scene().astype(np.uint16)
    edited = previous.copy()
    edited[previous == 3] = 0  # a false positive erased on the labels
    edited[25:33, 5:13] = 7  # a missed nucleus painted on the labels, with an id of its own
    edited[previous == 2] = 1  # a split nucleus joined
    mask = (previous > 0).astype(np.uint8)
    mask[0:3, 50:53] = 1  # a nucleus painted on the mask: stays
    before = mask.copy()
    where = instances.take_hand_edits(mask, previous, edited)
    expected = before.copy()
    expected[previous == 3] = 0
    expected[edited == 7] = 1
    np.testing.assert_array_equal(mask, expected)
    assert set(zip(*where)) == set(zip(*np.nonzero(before != mask)))
    out = relabel_edited(mask, edited, **{**_UPDATE, "min_size": 0})
    np.testing.assert_array_equal(out[edited > 0], edited[edited > 0])
    assert _objects(out) == {1, 7, 8}  # the nucleus painted on the mask: a new id after them
    with pytest.raises(SegmentationError, match="do not match"):
        instances.take_hand_edits(mask, previous, edited[:-1])


def _update(previous: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What "Update instances" makes: the hand edits taken into ``mask`` (in place), then relabelled."""
    instances.take_hand_edits(mask, previous, edited)
    return relabel_edited(mask, edited, method="components", min_size=0)


def test_hand_edits_kept_when_the_update_holds_them():
    previous = _squares_scene()
    edited = previous.copy()
    edited[25:33, 5:13] = 7  # a missed nucleus painted on the labels
    edited[previous == 2] = 1  # a split nucleus joined
    edited[previous == 3] = 0  # a false positive erased
    mask = previous > 0
    out = _update(previous, edited, mask)
    assert instances.hand_edits_kept(previous, edited, out)
    assert not instances.mask_changed_round_edits(mask, previous, edited)
    # Renumbered one to one, the objects are the user's still.
    assert instances.hand_edits_kept(previous, edited, np.where(out == 7, 9, np.where(out == 1, 7, out)))
    # The mask painted round the painted nucleus (grown), or erased off the rest of the joined one.
    mask = previous > 0
    mask[25:33, 13:16] = True
    mask[5:15, 5:7] = False
    out = _update(previous, edited, mask)
    assert set(np.unique(out[25:33, 5:16])) == {7} and not out[5:15, 5:7].any()
    assert instances.hand_edits_kept(previous, edited, out)
    # Ids mean other objects in other blocks (time points): each block is checked on its own.
    series = np.stack([previous, np.where(previous > 0, previous + 4, 0)])  # ids 5, 6, 7 in the second
    hand = np.stack([edited, series[1]])
    out = np.stack([edited, np.where(series[1] == 7, 9, series[1])])  # that 7 renumbered, not the painted one
    assert instances.hand_edits_kept(series, hand, out, ndim=2)
    assert not instances.hand_edits_kept(series, hand, out)  # one block: the 7s one object, split


def test_hand_edits_kept_tells_uint64_ids_above_2_53_apart():
    """Two objects painted with uint64 ids one apart, above 2**53 (float64 makes them one),
    each relabelled to an id of its own: the edits are held."""
    previous = np.zeros((10, 20), np.uint64)
    edited = previous.copy()
    edited[2:5, 2:5], edited[2:5, 10:13] = 2**53, 2**53 + 1
    labels = np.zeros((10, 20), np.int32)
    labels[2:5, 2:5], labels[2:5, 10:13] = 1, 2
    assert instances.hand_edits_kept(previous, edited, labels)
    assert not instances.hand_edits_kept(previous, edited, (labels > 0).astype(np.int32))  # joined


def test_hand_edits_not_kept_when_the_mask_changed_round_them():
    previous = _squares_scene()
    # A nucleus painted against object 3, the mask grown on its other side: the region is
    # labelled afresh, one object, with 3's id (the painted id is gone).
    edited = previous.copy()
    edited[25:35, 50:54] = 7
    mask = previous > 0
    mask[25:35, 38:40] = True
    out = _update(previous, edited, mask)
    assert set(np.unique(out[25:35, 38:54])) == {3}
    assert not instances.hand_edits_kept(previous, edited, out)
    assert instances.mask_changed_round_edits(mask, previous, edited)
    # The two squares joined by hand, then a line erased on the mask between them: split again.
    edited = np.where(previous == 2, 1, previous)
    mask = previous > 0
    mask[5:15, 14:16] = False
    out = _update(previous, edited, mask)
    assert len(_objects(out[5:15, 5:25])) == 2
    assert not instances.hand_edits_kept(previous, edited, out)
    assert instances.mask_changed_round_edits(mask, previous, edited)
    # Pixels the user erased labelled again, or painted ones left out; two of their objects as one.
    edited = previous.copy()
    edited[25:33, 5:13] = 7
    edited[0:4, 0:4] = 8
    assert not instances.hand_edits_kept(previous, edited, previous)
    assert not instances.hand_edits_kept(previous, edited, np.where(edited == 8, 7, edited))
    assert instances.hand_edits_kept(previous, edited, edited)
    with pytest.raises(SegmentationError, match="do not match"):
        instances.hand_edits_kept(previous, edited, edited[:-1])


def test_update_twice_gives_what_updating_once_did():
    # Two overlapping discs with a hole, one object as a plain labelling of the mask gives it (the
    # hole unlabelled). The first update labels its region again, as it fills the hole (before, it
    # kept the object and filled the hole with its id; the second update then took the filled hole,
    # outside the mask, for erased pixels and split the object: one more object each time).
    yy, xx = np.mgrid[:40, :60]
    mask = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 38) ** 2 <= 100)
    mask[19:21, 15:17] = False
    labels = measure.label(mask).astype(np.int32)
    kwargs = {"method": "watershed", "min_size": 10, "fill_holes": True}
    once = relabel_edited(mask, labels, **kwargs)
    assert np.array_equal(once, label_instances(mask, **kwargs))  # split in two, hole filled
    assert np.array_equal(relabel_edited(mask, once, **kwargs), once)
    # Linked over time, as 'Update instances' does it: the same, a time point at a time.
    series = np.stack([mask, mask])
    first = relabel_edited(series, np.stack([labels, labels]), ndim=2, first_new_id=2, **kwargs)
    assert np.array_equal(relabel_edited(series, first, ndim=2, first_new_id=2, **kwargs), first)
