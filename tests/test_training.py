"""Training: targets, samples, crops, augmentation, the loop (resume, best model) and tuning.

Every network here is tiny (``base_width`` 4 or 8, ``depth`` 2) and every data set
a handful of 64 x 64 images of bright discs, so the whole module runs in seconds.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from skimage import io as skio
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

import napari_unet.api
from napari_unet.checkpoint import load_model
from napari_unet.errors import SegmentationError
from napari_unet.progress import drain
from napari_unet.training.augment import augment_batch, collate_crops
from napari_unet.training.data import (
    CONTACT,
    Sample,
    check_pair_shapes,
    is_binary_mask,
    load_pairs,
    mark_contacts,
    plane_name,
    plane_samples,
    prepare_sample,
    random_crops,
    sampling_weights,
    whole_labels,
    three_class_targets,
)
from napari_unet.training.loop import (
    COMPLETE,
    REPAIRED,
    TrainProgress,
    _autocast_dtype,
    _validate,
    crop_size_misfit,
    fit_crop_size,
    iter_train,
    train,
)
from napari_unet.training.snapshots import average_models, snapshot_path
from napari_unet.training.tune import TUNED, tune_auto_scale, tune_normalization, tune_postprocess
from scenes import DISCS, disc_scene


def _samples(indices, noise: float = 6.0) -> list[Sample]:
    return [prepare_sample(*disc_scene(DISCS[i], noise=noise, seed=i), name=f"s{i}") for i in indices]


def _halved_samples(indices) -> list[Sample]:
    """The scenes of :func:`_samples` with each disc cut in two touching halves, contacts marked."""
    samples = []
    for i in indices:
        image, labels = disc_scene(DISCS[i], noise=6.0, seed=i)
        cols = np.broadcast_to(np.arange(labels.shape[1]), labels.shape)
        for obj in ndi.find_objects(labels):
            if obj is not None:
                middle = (obj[1].start + obj[1].stop) // 2
                right = (labels > 0) & (cols >= middle) & (cols < obj[1].stop)
                right[:obj[0].start], right[obj[0].stop:] = False, False
                labels = np.where(right, labels + 1000, labels)
        samples.append(prepare_sample(image, labels, name=f"s{i}", contacts=True))
    assert all((s.target == CONTACT).any() for s in samples)
    return samples


def _drain(gen):
    records = []
    return records, drain(gen, records.append)


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


TINY = dict(base_width=4, depth=2, batch_size=2, crop_size=16, device="cpu")


# --- three-class targets -------------------------------------------------------------------

def test_three_class_targets_two_touching_squares():
    labels = np.zeros((7, 9), np.int32)
    labels[1:6, 1:4] = 1  # 5 x 3 square
    labels[1:6, 4:8] = 7  # 5 x 4 square touching it along column 3/4
    b, i = 2, 1
    expected = np.array([
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, b, b, b, b, b, b, b, 0],
        [0, b, i, b, b, i, i, b, 0],
        [0, b, i, b, b, i, i, b, 0],
        [0, b, i, b, b, i, i, b, 0],
        [0, b, b, b, b, b, b, b, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ], np.uint8)
    target = three_class_targets(labels)
    assert target.dtype == np.uint8
    np.testing.assert_array_equal(target, expected)


def test_three_class_targets_separate_objects_and_3d():
    labels = np.zeros((6, 6), np.uint16)
    labels[1:3, 1:3] = 5  # 2 x 2: all rim, no interior
    labels[4, 4] = 9  # a single pixel is boundary
    target = three_class_targets(labels)
    np.testing.assert_array_equal(target, np.where(labels > 0, 2, 0))

    cube = np.zeros((5, 5, 5), np.int32)
    cube[1:4, 1:4, 1:4] = 3
    target = three_class_targets(cube)
    assert target[2, 2, 2] == 1
    assert (target == 1).sum() == 1
    assert (target == 2).sum() == 26
    assert (target[cube == 0] == 0).all()


def test_three_class_targets_core_fraction_keeps_touching_cores_apart():
    # A big disc (radius 12) touching a small one (radius 5) along a line.
    _, labels = disc_scene([(20, 16, 12), (20, 33, 5)], shape=(40, 48), noise=0)
    rim = three_class_targets(labels)
    core = three_class_targets(labels, core_fraction=0.4)
    # The objects (interior + boundary) are the same; only interiors shrink.
    np.testing.assert_array_equal(core > 0, labels > 0)
    assert ((core == 1) <= (rim == 1)).all()
    # Each object keeps one interior core, at its centre.
    for index, (cy, cx, _) in enumerate([(20, 16, 12), (20, 33, 5)], start=1):
        assert core[cy, cx] == 1
        _, n = ndi.label((core == 1) & (labels == index))
        assert n == 1
    # Cores are size-relative: the band is about 0.4 x the radius for both discs.
    depth_big = np.ptp(np.flatnonzero((core[20] == 1) & (labels[20] == 1))) + 1
    depth_small = np.ptp(np.flatnonzero((core[20] == 1) & (labels[20] == 2))) + 1
    assert 12 <= depth_big <= 16  # 2 x 0.6 x 12 = 14.4
    assert 4 <= depth_small <= 7  # 2 x 0.6 x 5 = 6
    # With the one-pixel rim the two interiors lie 2 pixels apart; the cores lie
    # at least the two bands apart.
    gap = np.flatnonzero(core[20] == 1)
    assert np.diff(gap).max() >= 6
    assert np.diff(np.flatnonzero(rim[20] == 1)).max() == 3
    # core_fraction 0 is the rim target; an empty mask stays empty.
    np.testing.assert_array_equal(three_class_targets(labels, core_fraction=0.0), rim)
    assert not three_class_targets(np.zeros((5, 5), np.int32), core_fraction=0.4).any()


# --- samples ----------------------------------------------------------------------------------

def test_prepare_sample_normalises_with_percentiles():
    image = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    labels = np.zeros((25, 40), np.int32)
    labels[5:15, 5:20] = 1
    s = prepare_sample(image, labels, name="ramp")
    assert s.image.shape == (1, 25, 40) and s.image.dtype == np.float32
    assert s.target.shape == (25, 40) and s.target.dtype == np.uint8
    assert s.name == "ramp"
    lo, hi = np.percentile(image, [1.0, 99.8])
    np.testing.assert_allclose(s.image[0], (image - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    # The 1st and 99.8th percentiles map to 0 and 1; values outside are not clipped.
    np.testing.assert_allclose(np.percentile(s.image, [1.0, 99.8]), [0.0, 1.0], atol=1e-5)
    assert s.image.min() < 0 < 1 < s.image.max()
    np.testing.assert_array_equal(s.target, three_class_targets(labels))

    # Other percentiles are honoured: 0 and 100 map the extremes to exactly 0 and 1.
    full = prepare_sample(image, labels, low=0.0, high=100.0)
    assert full.image.min() == 0.0 and full.image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(full.image[0], image / 999.0, rtol=1e-5, atol=1e-6)


def test_prepare_sample_rgb_becomes_grey_for_one_channel():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    labels = np.zeros((20, 24), np.int32)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    from_rgb = prepare_sample(rgb, labels, in_channels=1)
    from_grey = prepare_sample(grey, labels, in_channels=1)
    assert from_rgb.image.shape == (1, 20, 24)
    np.testing.assert_allclose(from_rgb.image, from_grey.image, rtol=1e-5, atol=1e-5)
    # Alpha is ignored.
    rgba = np.concatenate([rgb, np.full((20, 24, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(prepare_sample(rgba, labels).image, from_rgb.image, atol=1e-6)
    # A 3-channel model keeps the colours, each channel normalised on its own.
    colour = prepare_sample(rgb, labels, in_channels=3)
    assert colour.image.shape == (3, 20, 24)
    for c in range(3):
        np.testing.assert_allclose(np.percentile(colour.image[c], [1, 99.8]), [0, 1], atol=1e-5)


def test_prepare_sample_refuses_mismatches():
    # The message pair_planes gives for the same mistake: the shapes and what to do.
    with pytest.raises(SegmentationError, match=re.escape(
            "a: image shape (20, 20) does not match mask shape (20, 21). Give each image a mask")):
        prepare_sample(np.ones((20, 20)), np.zeros((20, 21), np.int32), name="a")
    with pytest.raises(SegmentationError, match="a: the mask has colour channels"):
        prepare_sample(np.ones((20, 20)), np.zeros((20, 20, 3), np.int32), name="a")
    with pytest.raises(SegmentationError, match="channel"):
        prepare_sample(np.ones((20, 20, 2)), np.zeros((20, 20), np.int32), in_channels=1)
    with pytest.raises(SegmentationError, match="channel"):
        prepare_sample(np.ones((20, 20)), np.zeros((20, 20), np.int32), in_channels=2)
    two = prepare_sample(np.random.default_rng(0).random((20, 20, 2)), np.zeros((20, 20), np.int32),
                         in_channels=2)
    assert two.image.shape == (2, 20, 20)
    # Too small to segment (tuning would refuse it after the training): refused now, named.
    labels = np.zeros((1, 256), np.int32)
    labels[0, 10:20] = 1
    with pytest.raises(SegmentationError, match="thin: 1 x 256 pixels is too small to learn from"):
        prepare_sample(np.ones((1, 256)), labels, name="thin")
    assert prepare_sample(np.ones((4, 4)), np.ones((4, 4), np.int32)).target.shape == (4, 4)


def test_load_pairs_reads_matching_files(tmp_path):
    import tifffile

    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    for k in range(3):
        image, labels = disc_scene(DISCS[k], noise=6.0, seed=k)
        tifffile.imwrite(tmp_path / "im" / f"n{k}.tif", image)
        tifffile.imwrite(tmp_path / "ma" / f"n{k}.tif", labels.astype(np.uint16))
    (tmp_path / "im" / "notes.txt").write_text("not an image")
    for folder in ("im", "ma"):  # macOS's companions on exFAT drives and shares: not images
        (tmp_path / folder / "._n0.tif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    samples = load_pairs(tmp_path / "im", tmp_path / "ma")
    assert [s.name for s in samples] == ["n0", "n1", "n2"]
    np.testing.assert_array_equal(samples[1].target, three_class_targets(disc_scene(DISCS[1])[1]))
    assert [s.name for s in load_pairs(tmp_path / "im", tmp_path / "ma", names=["n2"])] == ["n2"]
    with pytest.raises(SegmentationError, match="1 of the images asked for are not in .*: zzz"):
        load_pairs(tmp_path / "im", tmp_path / "ma", names=["n2", "zzz"])
    (tmp_path / "ma" / "n1.tif").unlink()
    with pytest.raises(SegmentationError, match="No mask for n1.tif"):
        load_pairs(tmp_path / "im", tmp_path / "ma")


def test_load_pairs_reads_binary_masks_as_connected_regions(tmp_path):
    """A 0/255 mask of three discs teaches three objects, as its instance labels would."""
    import tifffile

    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0)
    tifffile.imwrite(tmp_path / "im" / "a.tif", image)
    tifffile.imwrite(tmp_path / "ma" / "a.tif", ((labels > 0) * 255).astype(np.uint8))
    sample, = load_pairs(tmp_path / "im", tmp_path / "ma")
    np.testing.assert_array_equal(sample.target, three_class_targets(labels))


def test_mark_contacts_marks_only_where_objects_touch():
    labels = np.zeros((20, 30), np.int32)
    labels[3:10, 3:10] = 1  # alone
    labels[12:18, 5:12] = 2  # 2 and 3 touch along one column
    labels[12:18, 12:20] = 3
    for lab in (labels, labels.astype(np.uint16), labels * 1000):
        target = mark_contacts(three_class_targets(lab), lab)
        contact = target == CONTACT
        assert not contact[labels == 1].any(), "an object touching nothing has no contact pixels"
        assert contact[12:18, 11].all() and contact[12:18, 12].all()
        assert not contact[:, :11].any() and not contact[:, 13:].any()
        assert np.array_equal(target > 0, lab > 0)


def test_three_class_targets_of_a_boolean_mask_with_cores():
    mask = np.zeros((20, 20), bool)
    mask[4:16, 4:16] = True
    target = three_class_targets(mask, core_fraction=0.3)
    assert np.array_equal(target > 0, mask) and (target == 1).any() and (target == 2).any()


def test_is_binary_mask_means_one_nonzero_value():
    """Whatever value marks the nuclei (1, 255, 7, -1), one value is a mask; two are instances."""
    mask = np.zeros((8, 8), np.int32)
    assert not is_binary_mask(mask)  # empty: no objects at all
    for value in (1, 255, 7, -1):
        mask[1:3, 1:3] = mask[5:7, 5:7] = value
        assert is_binary_mask(mask), value
    mask[5:7, 5:7] = 2
    assert not is_binary_mask(mask)
    mask[1:3, 1:3], mask[5:7, 5:7] = 7, -1
    assert not is_binary_mask(mask)  # -1 and 7: two values
    assert is_binary_mask(np.array([[0.0, 0.5], [0.5, 0.0]]))
    assert is_binary_mask(np.full((4, 4), 3, np.uint8))  # all nucleus
    assert not is_binary_mask(np.array([[0.0, np.nan], [np.nan, 0.0]]))
    assert not is_binary_mask(np.zeros((0, 4), np.int32))
    # Big labels are sampled first: a second id the sample misses is still found.
    big = np.zeros((1200, 1200), np.int32)
    big[100:300, 100:300] = 5
    assert is_binary_mask(big)
    big[1, 1] = 9  # not on the sample's stride
    assert not is_binary_mask(big)
    big[1, 1], big[100:300, 600:800] = 0, 6  # plenty for the sample to see
    assert not is_binary_mask(big)
    assert is_binary_mask(np.asfortranarray(np.where(big > 0, 3, 0)))  # not contiguous: read whole


def test_a_mask_marked_with_minus_one_trains_on_its_regions():
    """An int8 mask whose 255 wrapped to -1 is still a mask: its regions become the objects."""
    mask = np.zeros((2, 40, 40), np.int8)
    mask[:, 5:15, 5:15] = mask[:, 25:35, 22:32] = -1
    image = np.where(mask != 0, 200, 10).astype(np.uint8)
    assert is_binary_mask(mask)
    samples = list(plane_samples(image, mask, name="m", semantic=True))
    assert len(samples) == 2
    for sample in samples:
        assert (sample.target > 0).sum() == 200  # both squares, as objects (interior + rim)


def test_signed_small_masks_keep_the_ids_that_wrapped_negative():
    """An int8 mask with ids 1, 2 and 200 (stored as -56) keeps all three objects."""
    labels = np.zeros((20, 20), np.uint8)
    labels[2:6, 2:6], labels[8:12, 8:12], labels[14:18, 14:18] = 1, 2, 200
    for signed in (labels.astype(np.int8), labels.astype(np.int16) * 200):
        out = whole_labels(signed, "m")
        assert len(np.unique(out)) == 4 and (out > 0).sum() == 48
    wide = labels.astype(np.int32)
    wide[wide == 200] = -5  # a wide mask's negatives are no wrapped ids: background, as before
    assert len(np.unique(whole_labels(wide, "m"))) == 3
    unlabelled = labels.astype(np.int16)
    unlabelled[unlabelled == 200] = -1  # -1 beside ids: "unlabelled", background
    assert len(np.unique(whole_labels(unlabelled, "m"))) == 3


def test_train_takes_numpy_ints_and_the_planes_of_plane_samples(tmp_path):
    """NumPy whole numbers are numbers, and the None that plane_samples yields for an empty
    plane is skipped (as load_pairs skips it): no raw torch ValueError or AttributeError."""
    (image, labels), empty = disc_scene(DISCS[0], noise=6.0), np.zeros((64, 64), np.int32)
    stack, masks = np.stack([image, image]), np.stack([labels, empty])
    samples = plane_samples(stack, masks, name="z")  # a generator: Sample, then None
    model = train(samples, tmp_path / "run", epochs=np.int64(1), steps_per_epoch=np.int64(2),
                  batch_size=np.int32(2), crop_size=np.int64(32), base_width=4, depth=np.int64(2),
                  seed=np.int64(0), learning_rate=np.float32(1e-3), device="cpu")
    assert model.config.provenance["trained_on"] == ["z_z000"]
    assert model.config.provenance["epochs"] == 1 and type(model.config.provenance["epochs"]) is int
    with pytest.raises(SegmentationError, match="sequence of Sample"):
        train([image], tmp_path / "other", epochs=1, steps_per_epoch=1, batch_size=1, crop_size=32,
              base_width=4, depth=2, device="cpu")


def test_load_pairs_refuses_a_colour_mask(tmp_path):
    """An RGB mask beside an RGB image is not a stack of 64 planes of 64 x 3 pixels."""
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    image, labels = disc_scene(DISCS[0])
    rgb = np.repeat(image[..., None], 3, axis=-1)
    skio.imsave(tmp_path / "im" / "a.png", rgb, check_contrast=False)
    skio.imsave(tmp_path / "ma" / "a.png", np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, -1),
                check_contrast=False)
    with pytest.raises(SegmentationError, match="colour channels"):
        load_pairs(tmp_path / "im", tmp_path / "ma")
    # Beside a grey image, or in an RGB z-stack, too.
    for image_shape, mask_shape in (((64, 64), (64, 64, 3)), ((5, 64, 64, 3), (5, 64, 64, 3)),
                                    ((64, 64), (64, 64, 4))):
        with pytest.raises(SegmentationError, match="colour channels"):
            check_pair_shapes(image_shape, mask_shape, name="a")
    check_pair_shapes((5, 64, 64), (5, 64, 64))
    check_pair_shapes((64, 64, 3), (64, 64))


def _stack(tmp_path, name="vol", empty=(1,)):
    """A 3-plane volume (Z, Y, X) of disc scenes and its instance labels, written as TIFFs."""
    import tifffile

    planes = [disc_scene(DISCS[z], noise=6.0, seed=z) for z in range(3)]
    image = np.stack([im for im, _ in planes])
    labels = np.stack([np.zeros_like(lab) if z in empty else lab for z, (_, lab) in enumerate(planes)])
    for folder, array in (("im", image), ("ma", labels.astype(np.uint16))):
        (tmp_path / folder).mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / folder / f"{name}.tif", array, photometric="minisblack")
    return image, labels


def test_load_pairs_splits_stacks_into_planes_and_skips_empty_ones(tmp_path):
    import tifffile

    image, labels = _stack(tmp_path)  # plane 1 has no objects
    flat, flat_labels = disc_scene(DISCS[4], noise=6.0, seed=4)
    tifffile.imwrite(tmp_path / "im" / "flat.tif", flat)
    tifffile.imwrite(tmp_path / "ma" / "flat.tif", flat_labels.astype(np.uint16))
    samples = load_pairs(tmp_path / "im", tmp_path / "ma")
    assert [s.name for s in samples] == ["flat", "vol_z000", "vol_z002"]
    for s, z in zip(samples[1:], (0, 2), strict=True):
        expected = prepare_sample(image[z], labels[z])
        assert s.image.shape == (1, 64, 64) and s.target.shape == (64, 64)
        np.testing.assert_array_equal(s.image, expected.image)
        np.testing.assert_array_equal(s.target, three_class_targets(labels[z]))
    # The planes train a 2D network (a volume used to fail deep inside torch).
    records, model = _drain(iter_train(samples, tmp_path / "run", epochs=1, steps_per_epoch=1, **TINY))
    assert records[-1].stage == "validate" and model.config.provenance["trained_on"] == [
        "flat", "vol_z000", "vol_z002"]


def test_load_pairs_refuses_stacks_it_cannot_split(tmp_path):
    import tifffile

    image, labels = _stack(tmp_path, empty=(0, 1, 2))
    with pytest.raises(SegmentationError, match="empty"):
        load_pairs(tmp_path / "im", tmp_path / "ma")
    # A volume with a 2D mask, or with a mask of other planes: say what the mask must be.
    for mask in (labels[0], labels[:2]):
        tifffile.imwrite(tmp_path / "ma" / "vol.tif", mask.astype(np.uint16), photometric="minisblack")
        with pytest.raises(SegmentationError, match="one label plane per image plane"):
            load_pairs(tmp_path / "im", tmp_path / "ma")


def test_plane_samples_names_semantic_masks_and_channels():
    assert plane_name("a", ()) == "a"
    assert plane_name("a", (12,)) == "a_z012"
    assert plane_name("a", (3, 12)) == "a_003_z012"
    image, labels = disc_scene(DISCS[0], noise=6.0)
    stack, mask = np.stack([image, image]), np.stack([labels > 0, np.zeros_like(labels, bool)])
    # A 0/1 mask: each connected region of a plane is one object (here for the core targets).
    first, empty = plane_samples(stack, mask.astype(np.uint8), name="s", semantic=True, core_fraction=0.3)
    assert empty is None and first.name == "s_z000"
    np.testing.assert_array_equal(first.target, three_class_targets(labels, core_fraction=0.3))
    # Multichannel planes (Z, Y, X, C) keep their channels.
    two = np.stack([stack, 255 - stack], axis=-1)
    (sample, _) = plane_samples(two, np.stack([labels, labels * 0]), in_channels=2)
    assert sample.image.shape == (2, 64, 64)
    # A lone 2D image is kept even without objects (background is worth learning).
    (blank,) = plane_samples(image, np.zeros_like(labels), name="blank")
    assert blank.name == "blank" and not blank.target.any()


def test_iter_train_refuses_samples_that_are_not_2d(tmp_path):
    image, labels = disc_scene(DISCS[0], noise=6.0)
    volume = prepare_sample(np.stack([image, image]), np.stack([labels, labels]), name="vol")
    with pytest.raises(SegmentationError, match="vol: training takes 2D samples"):
        train([volume], tmp_path / "out", epochs=1, steps_per_epoch=1, **TINY)
    with pytest.raises(SegmentationError, match="takes 1 channel.*s2 has 2"):
        train(_samples([0]), tmp_path / "out", val_samples=[
            prepare_sample(np.stack([image, image], -1), labels, in_channels=2, name="s2")],
            epochs=1, steps_per_epoch=1, **TINY)
    assert not (tmp_path / "out").exists()


# --- crops and augmentation ---------------------------------------------------------------

def _class_image_sample(shape=(64, 64), seed=0) -> Sample:
    """A sample whose image equals its target (as floats), to check alignment."""
    target = np.random.default_rng(seed).integers(0, 3, shape).astype(np.uint8)
    return Sample(target[None].astype(np.float32), target, "classes")


def test_random_crops_shapes_and_alignment():
    samples = [_class_image_sample(seed=0), _class_image_sample((50, 70), seed=1)]
    crops = random_crops(samples, np.random.default_rng(0), count=12, size=32)
    assert len(crops) == 12
    for img, tgt, size in crops:
        assert size == 32
        src = tgt.shape[0]
        assert tgt.shape == (src, src) and img.shape == (1, src, src)
        assert round(32 / 1.4) <= src <= round(32 / 0.7)
        np.testing.assert_array_equal(img[0], tgt)
    assert len({c[1].shape for c in crops}) > 1, "crops are taken at several scales"


def test_random_crops_reflect_pad_small_images():
    target = np.arange(10 * 12).reshape(10, 12).astype(np.uint8)
    sample = Sample(target[None].astype(np.float32) / 10, target, "small")
    (img, tgt, size), = random_crops([sample], np.random.default_rng(1), count=1, size=32,
                                     scale_range=(1.0, 1.0))
    assert size == 32 and img.shape == (1, 32, 32) and tgt.shape == (32, 32)
    expected = np.pad(target, ((11, 11), (10, 10)), mode="reflect")
    np.testing.assert_array_equal(tgt, expected)
    np.testing.assert_allclose(img[0], expected / 10, rtol=1e-6)


def test_random_crops_are_deterministic_for_a_seed():
    samples = _samples([0, 1])
    a = random_crops(samples, np.random.default_rng(42), count=5, size=24)
    b = random_crops(samples, np.random.default_rng(42), count=5, size=24)
    c = random_crops(samples, np.random.default_rng(43), count=5, size=24)
    for (ia, ta, _), (ib, tb, _) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta, tb)
    assert any(ta.shape != tc.shape or not np.array_equal(ta, tc) for (_, ta, _), (_, tc, _) in zip(a, c))


def test_sampling_weights_follow_the_image_area():
    small, large = _class_image_sample((32, 32)), _class_image_sample((64, 128), seed=1)
    assert sampling_weights([small, large], "image") is None
    np.testing.assert_allclose(sampling_weights([small, large], "area"), [1 / 9, 8 / 9])
    with pytest.raises(SegmentationError, match="sampling must be one of image, area"):
        sampling_weights([small], "objects")


def test_area_sampling_picks_large_images_as_often_as_their_pixels_deserve():
    small = Sample(np.zeros((1, 32, 32), np.float32), np.zeros((32, 32), np.uint8), "small")
    large = Sample(np.ones((1, 64, 128), np.float32), np.ones((64, 128), np.uint8), "large")
    samples = [small, large]

    def share_of_large(weights):
        crops = random_crops(samples, np.random.default_rng(3), count=900, size=16,
                             scale_range=(1.0, 1.0), weights=weights)
        return np.mean([t[0, 0] == 1 for _, t, _ in crops])

    assert share_of_large(None) == pytest.approx(0.5, abs=0.06)
    assert share_of_large(sampling_weights(samples, "area")) == pytest.approx(8 / 9, abs=0.04)


def test_iter_train_records_the_sampling_and_refuses_unknown_ones(tmp_path):
    model = train(_samples([0, 1]), tmp_path / "run", sampling="area", epochs=1, steps_per_epoch=2, **TINY)
    assert model.config.provenance["sampling"] == "area"
    with pytest.raises(SegmentationError, match="sampling must be one of"):
        train(_samples([0]), tmp_path / "bad", sampling="pixels", **TINY)
    assert not (tmp_path / "bad").exists(), "a refused run leaves no folder behind"


def test_collate_crops_resizes_to_the_crop_size():
    samples = [_class_image_sample(seed=2)]
    crops = random_crops(samples, np.random.default_rng(5), count=4, size=20)
    crops.append((samples[0].image[:, :20, :20], samples[0].target[:20, :20], 20))
    x, t = collate_crops(crops, torch.device("cpu"))
    assert x.shape == (5, 1, 20, 20) and x.dtype == torch.float32
    assert t.shape == (5, 20, 20) and t.dtype == torch.int64
    assert set(t.unique().tolist()) <= {0, 1, 2}
    # A crop that is already at size passes through unchanged.
    np.testing.assert_array_equal(t[4].numpy(), samples[0].target[:20, :20])
    np.testing.assert_array_equal(x[4, 0].numpy(), samples[0].image[0, :20, :20])


@pytest.mark.parametrize("src", [11, 20, 45, 90])
def test_collate_crops_keeps_the_target_on_the_image_when_resizing(src):
    """Zooming a crop moves image and target alike: a disc's centre stays where the image has it."""
    yy, xx = np.mgrid[:src, :src]
    disc = ((yy - (src - 1) / 2) ** 2 + (xx - (src - 1) / 2) ** 2 <= (src / 3) ** 2)
    x, t = collate_crops([(disc[None].astype(np.float32), disc.astype(np.uint8), 64)], torch.device("cpu"))
    grid = np.mgrid[:64, :64]
    image, target = x[0, 0].numpy(), t[0].numpy().astype(float)
    for axis in (0, 1):
        centre_image = (grid[axis] * image).sum() / image.sum()
        centre_target = (grid[axis] * target).sum() / target.sum()
        assert abs(centre_image - centre_target) < 0.1, (axis, centre_image, centre_target)


def test_augment_blur_keeps_the_crop_edges_bright():
    image = torch.ones(64, 1, 32, 32)
    target = torch.zeros(64, 32, 32, dtype=torch.int64)
    x, _ = augment_batch(image, target, torch.Generator().manual_seed(3), strength=1.0)
    # Gain and offset change each sample evenly (noise averages out over a row); a blur
    # padded with zeros would darken the rim to about 0.6 of the middle.
    for sample in x[:, 0]:
        middle = sample[16].mean()
        for rim in (sample[0], sample[-1], sample[:, 0], sample[:, -1]):
            assert abs(rim.mean() - middle) < 0.1 * abs(middle)


def test_augment_blurs_the_smallest_crops_too():
    """A depth-1 network trains on 4 px crops; the widest blur kernel is 11 px."""
    image = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x, t = augment_batch(image, torch.zeros(64, 4, 4, dtype=torch.int64), torch.Generator().manual_seed(2))
    assert x.shape == image.shape and torch.isfinite(x).all()


def test_augment_keeps_pixels_below_zero_and_never_inverts():
    """Normalised images dip below 0 in the background; inference sees that, so training must."""
    n = 64
    ramp = torch.linspace(-0.2, 1.0, 256)
    image = ramp.reshape(1, 1, 16, 16).repeat(n, 1, 1, 1)
    where = torch.arange(256).reshape(1, 16, 16).repeat(n, 1, 1)  # each pixel's place, moved along
    for strength in (1.0, 5.0):
        x, t = augment_batch(image, where, torch.Generator().manual_seed(4), strength=strength)
        for i in range(n):
            back = torch.empty(256)
            back[t[i].flatten()] = x[i, 0].flatten()  # the augmented ramp, in its first order
            # Brighter stays brighter (a gain below 0 would invert the image).
            assert back[192:].mean() > back[:64].mean(), (strength, i)
            if strength == 1.0:
                # The pixels below 0 stay darker than those at 0, not clipped to them.
                assert back[:40].mean() < back[43:53].mean() - 0.03, i


def _dihedral(a: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for flip in (False, True):
        b = a.flip(-1) if flip else a
        out += [torch.rot90(b, k, (-2, -1)) for k in range(4)]
    return out


def test_augment_keeps_image_and_target_aligned():
    target = torch.randint(0, 3, (16, 24, 24), generator=torch.Generator().manual_seed(0))
    image = target[:, None].float()
    x, t = augment_batch(image, target, torch.Generator().manual_seed(1), strength=0.0)
    assert x.shape == image.shape and t.shape == target.shape
    assert x.dtype == torch.float32 and t.dtype == torch.int64
    # With no intensity changes the image still equals the class of every pixel.
    torch.testing.assert_close(x[:, 0], t.float(), rtol=0, atol=0)
    # Each sample is one of the 8 flips/turns of its input, and the batch uses several.
    used = set()
    for i in range(16):
        matches = [k for k, d in enumerate(_dihedral(target[i])) if torch.equal(d, t[i])]
        assert matches, f"sample {i} is not a flip/turn of its input"
        used.add(matches[0])
    assert len(used) >= 3


def test_augment_intensity_changes_and_determinism():
    image = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    target = (image[:, 0] > 0.5).long()
    a = augment_batch(image, target, torch.Generator().manual_seed(7), strength=1.0)
    b = augment_batch(image, target, torch.Generator().manual_seed(7), strength=1.0)
    c = augment_batch(image, target, torch.Generator().manual_seed(8), strength=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == image.shape and a[1].shape == target.shape
    assert torch.isfinite(a[0]).all()
    # Intensities change: no augmented sample is a mere flip/turn of its input.
    plain = augment_batch(image, target, torch.Generator().manual_seed(7), strength=0.0)
    assert torch.equal(plain[1], a[1]), "geometry does not depend on strength"
    assert not torch.allclose(plain[0], a[0])


# --- the training loop ----------------------------------------------------------------------

def test_short_training_lowers_the_loss(tmp_path):
    samples = _samples(range(4))
    out = tmp_path / "run"
    records, model = _drain(iter_train(samples, out, epochs=3, steps_per_epoch=10, batch_size=4,
                                       crop_size=48, base_width=8, depth=2, learning_rate=1e-2,
                                       device="cpu", name="discs"))
    train_recs = [r for r in records if r.stage == "train"]
    val_recs = [r for r in records if r.stage == "validate"]
    assert all(isinstance(r, TrainProgress) for r in records)
    assert len(train_recs) == 30 and len(val_recs) == 3
    assert [r.done for r in train_recs] == list(range(1, 31))
    assert all(r.total == 30 for r in records)
    assert [r.done for r in records] == sorted(r.done for r in records)
    assert all(math.isfinite(r.eta_s) and r.eta_s >= 0 for r in train_recs)
    assert train_recs[-1].eta_s == 0
    assert [r.epoch for r in val_recs] == [0, 1, 2]

    first = np.mean([r.loss for r in train_recs[:10]])
    last = np.mean([r.loss for r in train_recs[-10:]])
    assert last < 0.85 * first, (first, last)
    log = _log(out)
    assert [row["epoch"] for row in log] == [1, 2, 3]
    middle = np.mean([r.loss for r in train_recs[10:20]])
    assert [row["train_loss"] for row in log] == pytest.approx([first, middle, last])
    # Without validation images every epoch is kept; the returned model is the saved one.
    # (the log is strict JSON: no validation loss is null, not NaN)
    assert all(row["best"] for row in log) and all(row["val_loss"] is None for row in log)
    assert "NaN" not in (out / "train_log.jsonl").read_text()
    assert model.config.target == "three_class" and model.config.base_width == 8
    assert model.name == "discs"
    assert model.sha256 == load_model(out).sha256


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 4-epoch run with validation images."""
    out = tmp_path_factory.mktemp("full")
    records, model = _drain(iter_train(_samples([0, 1]), out, val_samples=_samples([2]),
                                       epochs=4, steps_per_epoch=2, **TINY))
    return out, records, model


def test_best_checkpoint_is_kept(full_run):
    out, records, model = full_run
    log = _log(out)
    assert [row["epoch"] for row in log] == [1, 2, 3, 4]
    best_so_far = math.inf
    for row in log:
        assert row["best"] == (row["val_loss"] < best_so_far)
        best_so_far = min(best_so_far, row["val_loss"])
    assert log[0]["best"]
    val_losses = [r.val_loss for r in records if r.stage == "validate"]
    assert val_losses == pytest.approx([row["val_loss"] for row in log])
    # The saved model is the one with the lowest validation loss.
    assert (out / "config.json").is_file() and (out / "weights.safetensors").is_file()
    loaded = load_model(out)
    assert loaded.sha256 == model.sha256
    cpu = torch.device("cpu")
    val_loss = _validate(loaded.net, _samples([2]), cpu, _autocast_dtype(cpu))
    assert val_loss == pytest.approx(best_so_far, rel=1e-4)
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["epoch"] == 3 and state["best"] == pytest.approx(best_so_far)
    assert not list(out.glob("*.tmp"))


def test_snapshots_keep_every_epoch_and_average(tmp_path):
    out = tmp_path / "snap"
    _, best = _drain(iter_train(_samples([0, 1]), out, val_samples=_samples([2]), epochs=3,
                                steps_per_epoch=2, snapshots=True, **TINY))
    snaps = [load_model(snapshot_path(out, e)) for e in (1, 2, 3)]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch_001", "epoch_002", "epoch_003"]
    assert len({m.sha256 for m in snaps}) == 3, "each epoch's weights differ"
    assert best.sha256 in {m.sha256 for m in snaps}, "the best model is one of the snapshots"
    avg = average_models([snaps[1], snaps[2]], tmp_path / "avg")
    assert load_model(snapshot_path(out, 3)).sha256 == snaps[2].sha256
    assert all(torch.equal(v, load_model(snapshot_path(out, 3)).net.state_dict()[k])
               for k, v in snaps[2].net.state_dict().items()), "the models given stay as they were"
    states = [m.net.state_dict() for m in (snaps[1], snaps[2], avg)]
    for key, value in states[2].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (states[0][key] + states[1][key]) / 2)
        else:
            assert torch.equal(value, states[1][key])
    assert avg.config.to_dict() == snaps[2].config.to_dict()
    one = average_models([snaps[0]], tmp_path / "one").net.state_dict()
    first = snaps[0].net.state_dict()
    assert all(torch.allclose(v.float(), first[k].float()) for k, v in one.items()), "one model: itself"


def test_fine_tuning_leaves_the_given_model_untouched(tmp_path):
    start = train(_samples([1]), tmp_path / "start", epochs=1, steps_per_epoch=1, **TINY)
    before = {k: v.clone() for k, v in start.net.state_dict().items()}
    train(_samples([0]), tmp_path / "tuned", init_model=start, epochs=1, steps_per_epoch=2, **TINY)
    assert not start.net.training
    assert all(torch.equal(v, before[k]) for k, v in start.net.state_dict().items())
    # The tuned model says where it started, not only what the starting model was trained on.
    tuned = load_model(tmp_path / "tuned")
    assert tuned.config.provenance["init_model"] == start.name
    assert tuned.config.provenance["init_model_sha256"] == start.sha256
    assert tuned.config.description.startswith(f"fine-tuned (from {start.name}: ")


def test_fine_tuning_takes_the_training_percentiles(tmp_path):
    """Percentiles tuned for the starting weights are not the new weights': the samples are normalised
    with 1-99.8, and so is the fine-tuned model's input."""
    import json

    train(_samples([1]), tmp_path / "start", epochs=1, steps_per_epoch=1, **TINY)
    config = json.loads((tmp_path / "start" / "config.json").read_text())
    config["normalization"].update(low=2.0, high=99.95)
    (tmp_path / "start" / "config.json").write_text(json.dumps(config))
    assert load_model(tmp_path / "start").config.normalization["high"] == 99.95
    tuned = train(_samples([0]), tmp_path / "tuned", init_model=str(tmp_path / "start"), epochs=1,
                  steps_per_epoch=1, **TINY)
    assert (tuned.config.normalization["low"], tuned.config.normalization["high"]) == (1.0, 99.8)
    assert load_model(tmp_path / "tuned").config.normalization["high"] == 99.8


def test_average_models_refuses_other_architectures(tmp_path, models):
    with pytest.raises(SegmentationError, match="another architecture"):
        average_models([models["2d"], models["2d_k3"]], tmp_path / "avg")
    with pytest.raises(SegmentationError, match="at least one"):
        average_models([], tmp_path / "avg")


def test_resume_continues_where_it_stopped(tmp_path, full_run):
    out = tmp_path / "resumable"
    train_s, val_s = _samples([0, 1]), _samples([2])
    gen = iter_train(train_s, out, val_samples=val_s, epochs=4, steps_per_epoch=2, **TINY)
    seen = 0
    for rec in gen:
        if rec.stage == "validate":
            seen += 1
            if seen == 2:
                break
    gen.close()
    assert [row["epoch"] for row in _log(out)] == [1, 2]
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["total_steps"] == 8

    # Stopped after writing epoch 3's log line but before saving its state, then while writing
    # epoch 4's: the resumed run repeats epoch 3, so those lines go (and the file stays JSON lines).
    with open(out / "train_log.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "train_loss": 9.0, "val_loss": 9.0, "best": false, "elapsed_s": 1.0}\n'
                 '{"epoch": 4, "train_lo')
    records, model = _drain(iter_train(train_s, out, val_samples=val_s, epochs=4, steps_per_epoch=2,
                                       resume=True, **TINY))
    assert records[0].stage == "train" and records[0].done == 2 * 2 + 1
    assert records[-1].done == records[-1].total == 8
    assert [r.epoch for r in records if r.stage == "validate"] == [2, 3]
    assert [row["epoch"] for row in _log(out)] == [1, 2, 3, 4]
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["epoch"] == 3
    assert model.config.target == "three_class"

    # Same seeds, same random stream: the resumed run ends where the uninterrupted one did.
    full_out = full_run[0]
    full_state = torch.load(full_out / "train_state.pt", weights_only=True)
    for key, value in full_state["net"].items():
        torch.testing.assert_close(state["net"][key], value, rtol=1e-4, atol=1e-5)
    assert [row["val_loss"] for row in _log(out)] == pytest.approx(
        [row["val_loss"] for row in _log(full_out)], rel=1e-4)

    # A finished run resumed again does no more steps, says so and returns the model.
    records, again = _drain(iter_train(train_s, out, val_samples=val_s, epochs=4, steps_per_epoch=2,
                                       **TINY))
    assert [r.stage for r in records] == [COMPLETE] and again.sha256 == model.sha256


def test_starting_over_drops_the_earlier_runs_state_and_snapshots(tmp_path):
    """resume=False (the Train widget's way) in a finished run's folder: stopped at once, the
    folder must not look like the old run (a rerun would say it was complete)."""
    out = tmp_path / "again"
    _drain(iter_train(_samples([0, 1]), out, epochs=2, steps_per_epoch=1, snapshots=True, **TINY))
    assert (out / "train_state.pt").is_file() and (out / "snapshots").is_dir()
    gen = iter_train(_samples([0, 1]), out, epochs=1, steps_per_epoch=2, resume=False, **TINY)
    assert next(gen).stage == "train"
    gen.close()
    assert not (out / "train_state.pt").exists() and not (out / "snapshots").exists()
    records, _ = _drain(iter_train(_samples([0, 1]), out, epochs=1, steps_per_epoch=2, **TINY))
    assert records[-1].stage == "validate" and [row["epoch"] for row in _log(out)] == [1]


@pytest.mark.parametrize(("epochs", "steps"), [(5, 2), (2, 4)])
def test_resume_with_another_schedule_is_refused(full_run, tmp_path, epochs, steps):
    out = tmp_path / "copy"
    shutil.copytree(full_run[0], out)
    with pytest.raises(SegmentationError, match="different schedule") as refused:
        train(_samples([0, 1]), out, epochs=epochs, steps_per_epoch=steps, **TINY)
    # The hint works from the command line (which has no resume=False) and from Python.
    message = str(refused.value)
    assert f"(4 epochs of 2 steps, not {epochs} of {steps})" in message
    assert "delete train_state.pt" in message and "(from Python: resume=False)" in message
    # resume=False starts over in the same folder.
    records, _ = _drain(iter_train(_samples([0]), out, epochs=1, steps_per_epoch=1, resume=False, **TINY))
    assert records[0].done == 1 and records[-1].total == 1


def test_a_run_stopped_before_its_first_save_can_be_run_again(tmp_path):
    """Stopped in epoch 1 (or while saving it): the folder is still a run, not "other files"."""
    out = tmp_path / "early"
    gen = iter_train(_samples([0, 1]), out, epochs=2, steps_per_epoch=2, **TINY)
    next(gen)
    gen.close()
    (out / "config.json").write_text("{}")  # as if stopped between the model and its state
    records, model = _drain(iter_train(_samples([0, 1]), out, epochs=2, steps_per_epoch=2, **TINY))
    assert records[0].done == 1 and records[-1].done == 4
    assert [row["epoch"] for row in _log(out)] == [1, 2]


def test_a_run_killed_while_saving_leaves_no_temporary_files_once_resumed(tmp_path):
    """Killed (SIGKILL, SIGTERM) while saving the model, a snapshot or the state: their temporary
    files (as large as the weights) stay; the run, resumed, removes them, and nothing else."""
    out = tmp_path / "killed"
    gen = iter_train(_samples([0, 1]), out, epochs=2, steps_per_epoch=1, snapshots=True, **TINY)
    for rec in gen:
        if rec.stage == "validate":
            break
    gen.close()
    leftovers = [out / ".0123456789ab.tmp", out / ".cdef01234567.tmp", out / "train_state.pt.tmp",
                 out / "snapshots" / "epoch_001" / ".89abcdef0123.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    (out / ".notes.tmp").write_text("mine")
    records, _ = _drain(iter_train(_samples([0, 1]), out, epochs=2, steps_per_epoch=1, snapshots=True, **TINY))
    assert records[0].done == 2
    assert not [path for path in leftovers if path.exists()]
    assert (out / ".notes.tmp").read_text() == "mine"


def test_a_full_disk_while_saving_the_state_says_so_and_the_run_resumes(tmp_path, monkeypatch):
    """torch reports a write that fails as a cryptic RuntimeError: the run says it could not write its
    state, removes the partial file (which fills the disk) and, run again, resumes."""
    from napari_unet.training import loop

    out = tmp_path / "full"
    real = torch.save
    calls = []

    def full(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's state
            Path(path).write_bytes(b"part of a state")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 7090368 vs 7090260")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(loop.torch, "save", full)
    with pytest.raises(SegmentationError, match="Cannot write the training state .*train_state.pt.*run the same"):
        train(_samples([0, 1]), out, epochs=3, steps_per_epoch=1, **TINY)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "train_log.jsonl", "train_state.pt",
                                                     "weights.safetensors"]
    assert torch.load(out / "train_state.pt", weights_only=True)["epoch"] == 0
    records, _ = _drain(iter_train(_samples([0, 1]), out, epochs=3, steps_per_epoch=1, **TINY))
    assert records[0].done == 2 and records[-1].done == 3


def test_each_epoch_sends_its_state_and_model_to_the_disk(tmp_path, disk_syncs, helpers):
    """Renamed before their bytes reach the disk, the files can be empty after a power cut: the run
    could not resume, and its model would be lost."""
    out = tmp_path / "durable"
    train(_samples([0, 1]), out, epochs=2, steps_per_epoch=1, **TINY)
    for name in ("train_state.pt", "weights.safetensors", "config.json"):
        helpers.assert_durable(disk_syncs, out / name)


def test_an_unfinished_run_resumes_only_with_its_own_settings(tmp_path):
    out = tmp_path / "half"
    gen = iter_train(_samples([0, 1]), out, epochs=3, steps_per_epoch=2, **TINY)
    for rec in gen:
        if rec.stage == "validate":
            break
    gen.close()
    for changes, fragment in (({"learning_rate": 0.05}, "learning_rate 0.002 (now 0.05)"),
                              ({"seed": 7}, "seed 0 (now 7)"),
                              ({"train_samples": _samples([0, 2])}, "data "),
                              ({"train_samples": _halved_samples([0, 1])}, "contacts False (now True)")):
        kwargs = {"train_samples": _samples([0, 1]), "output": out, "epochs": 3, "steps_per_epoch": 2,
                  "learning_rate": 0.002, **TINY, **changes}
        with pytest.raises(SegmentationError, match=re.escape(fragment)):
            train(**kwargs)
    records, _ = _drain(iter_train(_samples([0, 1]), out, epochs=3, steps_per_epoch=2,
                                   learning_rate=0.002, **TINY))
    assert records[0].done == 3


def test_targets_accept_whole_float_masks_and_huge_ids():
    image, labels = disc_scene(DISCS[0], noise=6.0)
    expected = prepare_sample(image, labels, core_fraction=0.35).target
    huge = np.where(labels > 0, labels.astype(np.int64) + 2**40, 0)
    for mask in (labels.astype(np.float32), huge):
        np.testing.assert_array_equal(prepare_sample(image, mask, core_fraction=0.35).target, expected)
    with pytest.raises(SegmentationError, match="fractional"):
        prepare_sample(image, labels * 0.5, name="half")


def test_a_diverging_run_still_writes_a_strict_json_log(tmp_path):
    out = tmp_path / "wild"
    train(_samples([0, 1]), out, val_samples=_samples([2]), epochs=1, steps_per_epoch=2,
          learning_rate=1e12, **TINY)
    text = (out / "train_log.jsonl").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the log"))


def test_all_empty_masks_are_refused(tmp_path):
    image, _ = disc_scene(DISCS[0])
    empty = [prepare_sample(image, np.zeros((64, 64), np.int32), name="e")]
    with pytest.raises(SegmentationError, match="Every training mask is empty"):
        train(empty, tmp_path / "out", epochs=1, steps_per_epoch=1, **TINY)
    assert not (tmp_path / "out").exists()


def test_resuming_a_complete_run_with_other_settings_says_nothing_was_trained(full_run, tmp_path):
    out = tmp_path / "done"
    shutil.copytree(full_run[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    settings = {**TINY, "crop_size": 32}  # the run was made with 16
    records, model = _drain(iter_train(_samples([0, 1]), out, val_samples=_samples([2]), epochs=4,
                                       steps_per_epoch=2, **settings))
    (record,) = records
    assert isinstance(record, TrainProgress) and record.stage == COMPLETE
    assert record.done == record.total == 8
    assert f"The run in {out} was already complete (4 epochs): nothing was trained" in record.message
    assert "another output folder" in record.message and "delete train_state.pt" in record.message
    assert model.sha256 == full_run[2].sha256
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "nothing was written"


def test_resume_refuses_a_broken_state_or_another_network(full_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(full_run[0], out)
    with pytest.raises(SegmentationError, match="another network.*delete train_state.pt"):
        train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **{**TINY, "base_width": 8})
    good = torch.load(out / "train_state.pt", weights_only=True)
    (out / "train_state.pt").write_bytes(b"not a state")
    with pytest.raises(SegmentationError, match="Cannot read .*train_state.pt"):
        train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY)
    # Readable, but not ours (a hand-made or foreign file): a message, never a raw KeyError.
    broken = {k: v for k, v in good.items() if k != "epoch"}
    foreign = [[1, 2], broken, {**good, "steps_per_epoch": 0}, {**broken, "epoch": 0, "args": {}, "optim": {"state": {}, "param_groups": []}}]
    for state, fragment in zip(foreign, ["not a napari-unet training state"] * 3 + ["broken optimiser state"]):
        torch.save(state, out / "train_state.pt")
        with pytest.raises(SegmentationError, match=fragment):
            train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY)


def _stopped_run(out: Path, *, val: bool, epochs_done: int = 2) -> None:
    """A run of 4 epochs of 2 steps in ``out``, stopped after ``epochs_done`` epochs."""
    gen = iter_train(_samples([0, 1]), out, val_samples=_samples([2]) if val else (), epochs=4,
                     steps_per_epoch=2, **TINY)
    for rec in gen:
        if rec.stage == "validate" and rec.epoch + 1 == epochs_done:
            break
    gen.close()


def test_resume_stops_at_once_when_the_best_model_is_lost(tmp_path):
    """Best weights broken since they were saved (a disk problem, a copy that broke off) and not in the
    state (a later epoch did worse): said before any training, not when the run ends hours later."""
    out = tmp_path / "lost"
    _stopped_run(out, val=True)
    log = _log(out)
    log[-1]["best"] = False  # epoch 2 did worse than epoch 1: the state's weights are not the best
    (out / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    weights = out / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    gen = iter_train(_samples([0, 1]), out, val_samples=_samples([2]), epochs=4, steps_per_epoch=2, **TINY)
    with pytest.raises(SegmentationError) as refused:
        next(gen)
    message = str(refused.value)
    assert f"{weights} cannot be read" in message and "corrupt or cut short" in message
    assert "delete config.json and weights.safetensors there" in message and "delete train_state.pt" in message
    assert [row["epoch"] for row in _log(out)] == [1, 2], "nothing was trained"
    # As the message says: without the lost model, the run goes on and keeps one of its epochs.
    weights.unlink()
    (out / "config.json").unlink()
    records, model = _drain(iter_train(_samples([0, 1]), out, val_samples=_samples([2]), epochs=4,
                                       steps_per_epoch=2, **TINY))
    assert records[0].done == 5 and load_model(out).sha256 == model.sha256


@pytest.mark.parametrize("broken", ["weights.safetensors", "config.json"])
def test_resume_repairs_a_broken_model_file_that_it_can_write_again(tmp_path, broken):
    """Weights cut short, when the state holds them (without validation every epoch is the best), or
    a config that is not JSON (the run's own settings make it): written again, with a warning, before
    any training."""
    out = tmp_path / "repair"
    _stopped_run(out, val=False)
    state_net = torch.load(out / "train_state.pt", weights_only=True)["net"]
    sha = load_model(out).sha256
    path = out / broken
    path.write_bytes(path.read_bytes()[:200])
    gen = iter_train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY)
    said = next(gen)
    assert said.stage == REPAIRED and said.message.startswith(f"{path} was missing or could not be read")
    repaired = load_model(out)
    assert repaired.sha256 == sha
    assert all(torch.equal(v, state_net[k]) for k, v in repaired.net.state_dict().items())
    assert next(gen).done == 5, "then the run goes on where it stopped"
    gen.close()
    # train() says it as a warning.
    path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(UserWarning, match=f"{re.escape(str(path))} was missing"):
        train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY)


def test_resume_without_validation_repairs_the_weights_whatever_the_log_says(tmp_path):
    """Without validation every epoch saves its model, so the state's weights are the best one's even
    when the log that says so is gone or broken too (a disk problem rarely breaks one file alone)."""
    out = tmp_path / "no_log"
    _stopped_run(out, val=False)
    sha = load_model(out).sha256
    weights = out / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    (out / "train_log.jsonl").unlink()
    gen = iter_train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY)
    said = next(gen)
    assert said.stage == REPAIRED and said.message.startswith(f"{weights} was missing or could not be read")
    assert load_model(out).sha256 == sha
    gen.close()


def test_resume_drops_log_lines_that_are_not_text(tmp_path):
    """A log line garbled into bytes that are not UTF-8 went up as a UnicodeDecodeError on resuming."""
    out = tmp_path / "garbled"
    _stopped_run(out, val=False)
    with open(out / "train_log.jsonl", "ab") as fh:
        fh.write(b"\xff\xfe\x00\x00 garbage\n")
    records, _ = _drain(iter_train(_samples([0, 1]), out, epochs=4, steps_per_epoch=2, **TINY))
    assert records[0].done == 5 and [row["epoch"] for row in _log(out)] == [1, 2, 3, 4]


def test_core_fraction_is_recorded_and_must_match_the_samples(tmp_path):
    cores = [prepare_sample(*disc_scene(DISCS[i], noise=6.0, seed=i), core_fraction=0.3) for i in (0, 1)]
    rims = _samples([0, 1])
    assert cores[0].core_fraction == 0.3 and rims[0].core_fraction == 0.0
    # A new network takes the samples' core fraction into its config.
    first = train(cores, tmp_path / "cores", epochs=1, steps_per_epoch=1, **TINY)
    assert first.config.core_fraction == pytest.approx(0.3)
    assert load_model(tmp_path / "cores").config.core_fraction == pytest.approx(0.3)
    # Fine-tuning it on rim targets would silently change what its classes mean.
    with pytest.raises(SegmentationError, match="core_fraction=0.3"):
        train(rims, tmp_path / "bad", init_model=tmp_path / "cores", epochs=1, steps_per_epoch=1, **TINY)
    with pytest.raises(SegmentationError, match="core_fraction"):
        train(cores[:1], tmp_path / "mixed", val_samples=rims[:1], epochs=1, steps_per_epoch=1, **TINY)
    # ... unless asked for: then the config records the new targets.
    retaught = train(rims, tmp_path / "rims", init_model=tmp_path / "cores", core_fraction=0.0,
                     epochs=1, steps_per_epoch=1, **TINY)
    assert retaught.config.core_fraction == 0.0


def test_train_refuses_bad_arguments(tmp_path):
    with pytest.raises(SegmentationError, match="No training samples"):
        train([], tmp_path / "a", **TINY)
    with pytest.raises(SegmentationError, match=">= 1"):
        train(_samples([0]), tmp_path / "b", epochs=0, **TINY)


@pytest.mark.parametrize(("option", "value"), [
    ("learning_rate", -1), ("learning_rate", 0.0), ("learning_rate", float("nan")),
    ("learning_rate", float("inf")), ("learning_rate", "0.01"), ("batch_size", 2.5),
    ("batch_size", 0), ("steps_per_epoch", 1.0), ("crop_size", 16.0), ("crop_size", "16"),
    ("seed", -1), ("augment_strength", float("nan")), ("augment_strength", -0.5),
    ("num_threads", 0), ("base_width", 0), ("depth", 0), ("core_fraction", 1.0),
])
def test_train_refuses_bad_numbers_before_writing(tmp_path, option, value):
    out = tmp_path / "out"
    with pytest.raises(SegmentationError, match=f"{option} must be a"):
        train(_samples([0]), out, **{**TINY, "epochs": 1, "steps_per_epoch": 1, option: value})
    assert not out.exists()


def test_crop_size_must_fit_the_network_depth(tmp_path, helpers):
    out = tmp_path / "out"
    # depth 2: crops are multiples of 4, and 8 keeps a 2 x 2 bottleneck for batch norm.
    with pytest.raises(SegmentationError, match="depth 2: use a multiple of 4 of at least 8"):
        train(_samples([0]), out, epochs=1, steps_per_epoch=1, **{**TINY, "crop_size": 5})
    with pytest.raises(SegmentationError, match=r"crop_size 10 .* \(e.g. 8\)"):
        train(_samples([0]), out, epochs=1, steps_per_epoch=1, **{**TINY, "crop_size": 10})
    assert not out.exists()
    # The smallest crop trains, even one crop at a time.
    records, _ = _drain(iter_train(_samples([0]), out, epochs=1, steps_per_epoch=1,
                                   **{**TINY, "crop_size": 8, "batch_size": 1}))
    assert math.isfinite(records[0].loss)
    # A model to fine-tune brings its own depth (3 here; the depth argument is ignored).
    deep = helpers.build_model(tmp_path / "deep", out_channels=3, target="three_class", depth=3)
    with pytest.raises(SegmentationError, match="depth 3: use a multiple of 8 of at least 16"):
        train(_samples([0]), tmp_path / "tuned", init_model=deep, epochs=1, steps_per_epoch=1,
              **{**TINY, "crop_size": 8})
    tuned = train(_samples([0]), tmp_path / "tuned", init_model=deep, epochs=1, steps_per_epoch=1, **TINY)
    assert tuned.config.depth == 3
    # One rule, which the command line words in its own spelling: what fits, and the nearest that does.
    assert crop_size_misfit(32, 4) is None and crop_size_misfit(96, 4) is None
    assert crop_size_misfit(100, 4) == ("a multiple of 16 of at least 32", 96)
    assert crop_size_misfit(5, 2) == ("a multiple of 4 of at least 8", 8)
    # The Train widget fits its crop size to the images and the network with the same rule.
    assert fit_crop_size(16, 64, depth=4) == 32
    assert fit_crop_size(256, 100, depth=4) == 96
    assert fit_crop_size(256, 30, depth=2) == 28


@pytest.mark.parametrize("files", [{"config.json": "notes"}, {"data.csv": "1,2"},
                                   {"config.json": "notes", "weights.safetensors": "mine"}])
def test_output_folder_of_other_files_is_refused(tmp_path, files):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    with pytest.raises(SegmentationError, match="Choose an empty or new folder") as refused:
        train(_samples([0]), out, epochs=1, steps_per_epoch=1, **TINY)
    assert str(out) in str(refused.value) and sorted(files)[0] in str(refused.value)
    assert {p.name: p.read_text() for p in out.iterdir()} == files, "nothing was touched"
    with pytest.raises(SegmentationError, match="is a file, not a folder"):
        train(_samples([0]), out / sorted(files)[0], epochs=1, steps_per_epoch=1, **TINY)


def test_output_folder_may_be_empty(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    (out / ".DS_Store").write_text("")  # hidden files do not count
    train(_samples([0]), out, epochs=1, steps_per_epoch=1, **TINY)
    assert (out / "config.json").is_file() and (out / "train_state.pt").is_file()


# --- post-processing search -------------------------------------------------------------

def test_tune_postprocess_on_a_tiny_grid(models, tmp_path, fake_net):
    """With a network whose interior probability is the image, small objects score perfectly."""
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    scenes = [disc_scene(DISCS[i], noise=2.0, seed=i) for i in (0, 3)]
    images = [im for im, _ in scenes]
    masks = [lab for _, lab in scenes]
    grid = {"threshold": (0.3, 0.5), "seed_threshold": (0.6, 0.7), "min_size": (0, 400)}

    best, table = tune_postprocess(str(model_dir), images, masks, grid=grid, device="cpu")
    assert fake_net, "the fake network ran"
    assert len(table) == 8
    assert sorted(tuple(p.values()) for p, _, _ in table) == sorted(
        (t, s, m) for t in (0.3, 0.5) for s in (0.6, 0.7) for m in (0, 400))
    keys = [(ap50, mean) for _, ap50, mean in table]
    assert keys == sorted(keys, reverse=True), "best first"
    assert table[0][1] == 1.0 and table[0][2] == 1.0
    for params, ap50, _ in table:
        assert 0.0 <= ap50 <= 1.0
        if params["min_size"] == 400:  # removes every disc (areas < 300)
            assert ap50 == 0.0
    assert {k: best[k] for k in grid} == table[0][0]
    assert best["min_size"] == 0
    assert best["instance_method"] == "watershed"
    # Without save=True the model folder is untouched.
    assert json.loads((model_dir / "config.json").read_text()) == json.loads(
        (models["three_class"] / "config.json").read_text())

    best2, _ = tune_postprocess(str(model_dir), images, masks, grid=grid, device="cpu", save=True)
    assert best2 == best
    saved = json.loads((model_dir / "config.json").read_text())["postprocess"]
    assert saved == best
    assert load_model(model_dir).config.postprocess == best

    # A grid over one setting scores the others at the model's values, and returns those.
    config = json.loads((model_dir / "config.json").read_text())
    config["postprocess"].update(threshold=0.5, seed_threshold=0.7, min_size=400)
    (model_dir / "config.json").write_text(json.dumps(config))
    one, rows = tune_postprocess(str(model_dir), images, masks, grid={"neck_ratio": (0.0, 0.7)}, device="cpu")
    assert [ap for _, ap, _ in rows] == [0.0, 0.0], "min_size 400 (the model's) removes every disc"
    assert (one["threshold"], one["seed_threshold"], one["min_size"]) == (0.5, 0.7, 400)
    with pytest.raises(SegmentationError, match="Cannot tune 'radius'"):
        tune_postprocess(str(model_dir), images, masks, grid={"radius": (1, 2)}, device="cpu")


def test_tune_keeps_the_models_settings_when_no_setting_finds_an_object(models, tmp_path, fake_net):
    """Masks that do not belong to their images (AP 0 everywhere): nothing is chosen, and the
    saved folder says so (a rerun of train does not tune it again and again)."""
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    own = load_model(model_dir).config.postprocess
    image, mask = disc_scene(DISCS[0], noise=2.0)
    wrong = np.zeros_like(mask)
    wrong[:3, :3] = 1  # one object, where the image shows none
    best, table = tune_postprocess(str(model_dir), [image], [wrong], device="cpu", save=True,
                                   grid={"threshold": (0.3, 0.5), "min_size": (0, 5)})
    assert fake_net and all(ap == 0.0 for _, ap, _ in table)
    saved = load_model(model_dir).config
    assert best == own == saved.postprocess
    assert "the model's settings were kept" in saved.provenance[TUNED]


def test_tune_scores_with_the_models_own_fill_holes(models, tmp_path, fake_net):
    """A ring nucleus (a hole the truth keeps): filled, its IoU is 0.44; a model that does not
    fill holes must be scored unfilled, as segment() will run it."""
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["postprocess"]["fill_holes"] = False
    (model_dir / "config.json").write_text(json.dumps(config))
    yy, xx = np.mgrid[:64, :64]
    r2 = (yy - 32) ** 2 + (xx - 32) ** 2
    ring = ((r2 < 144) & (r2 >= 81)).astype(np.int32)
    _, table = tune_postprocess(str(model_dir), [ring.astype(np.float32)], [ring], device="cpu",
                                grid={"threshold": (0.5,), "seed_threshold": (0.5,), "min_size": (0,)})
    assert fake_net and table[0][1] == 1.0


@pytest.mark.parametrize(("grid", "fragment"), [
    ({"threshold": (1.0,)}, "threshold must be a number between 0 and 1"),
    ({"seed_threshold": (2.0,)}, "seed_threshold must be a number from 0 to 1"),
    ({"min_size": (-5,)}, "min_size must be a whole number >= 0"),
    ({"neck_ratio": ("x",)}, "neck_ratio must be a number"),
    ({"neck_ratio": (1.0,)}, "neck_ratio must be below 1"),
    ({"threshold": ()}, "no value to try for 'threshold'"),
])
def test_tune_refuses_what_inference_would_refuse_before_any_work(models, tmp_path, grid, fragment):
    """A value that would make the saved config unloadable is never tried, let alone saved."""
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    before = (model_dir / "config.json").read_text()
    image, mask = disc_scene(DISCS[0])
    with pytest.raises(SegmentationError, match=re.escape(fragment)):
        tune_postprocess(str(model_dir), [image], [mask], grid=grid, device="cpu", save=True)
    assert (model_dir / "config.json").read_text() == before


def test_tune_saves_only_into_a_folder_of_the_models_own(models, tmp_path, fake_net):
    """Numpy grid values are fine; the bundled model, or one read from a .pt file beside another
    model, is refused instead of overwritten."""
    image, mask = disc_scene(DISCS[0])
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    best, _ = tune_postprocess(str(model_dir), [image], [mask], device="cpu", save=True,
                               grid={"threshold": np.array([0.5]), "min_size": (np.int64(3),)})
    assert load_model(model_dir).config.postprocess["min_size"] == 3 == best["min_size"]
    state = {k: v + 1 if v.is_floating_point() else v for k, v in load_model(model_dir).net.state_dict().items()}
    torch.save(state, model_dir / "other.pt")  # another model of this folder's architecture
    weights = (model_dir / "weights.safetensors").read_bytes()
    with pytest.raises(SegmentationError, match="holds another model's weights.safetensors"):
        tune_postprocess(str(model_dir / "other.pt"), [image], [mask], device="cpu", save=True,
                         grid={"threshold": (0.5,)})
    assert (model_dir / "weights.safetensors").read_bytes() == weights
    with pytest.raises(SegmentationError, match="is a bundled model"):
        tune_normalization("default", [image], [mask], lows=(1.0,), highs=(99.8,), device="cpu", save=True)
    # A .pt beside its config and no weights.safetensors: the folder is this model's, saved there.
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(model_dir / "config.json", lone / "config.json")
    torch.save(state, lone / "model.pt")
    best, _ = tune_postprocess(str(lone / "model.pt"), [image], [mask], device="cpu", save=True,
                               grid={"threshold": np.array(0.5), "neck_ratio": (None, 0.7)})
    saved = load_model(lone).net.state_dict()
    for key, value in load_model(lone / "model.pt").net.state_dict().items():
        assert torch.equal(saved[key], value), key
    assert load_model(lone).config.postprocess["neck_ratio"] == best["neck_ratio"]


def _outlier_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Discs at 100 on 10, and 12 single pixels at 1000 (0.3 % of the image) in the background."""
    image, labels = disc_scene(DISCS[seed])
    image = np.where(labels > 0, 100.0, 10.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(labels == 0)
    pick = rng.choice(len(ys), 12, replace=False)
    image[ys[pick], xs[pick]] = 1000.0
    return image, labels


def test_tune_normalization_escapes_bright_outliers(models, tmp_path, fake_net):
    """A few very bright pixels set the 99.8th percentile and dim every disc below the
    threshold; a lower upper percentile restores them, and the search finds it."""
    model_dir = tmp_path / "model"
    shutil.copytree(models["three_class"], model_dir)
    scenes = [_outlier_scene(i) for i in (0, 1)]
    images = [im for im, _ in scenes]
    masks = [lab for _, lab in scenes]

    best, table = tune_normalization(str(model_dir), images, masks, lows=(1.0, 99.5),
                                     highs=(99.0, 99.8), device="cpu")
    assert fake_net, "the fake network ran"
    pairs = sorted((n["low"], n["high"]) for n, _, _ in table)
    assert pairs == [(1.0, 99.0), (1.0, 99.8), (99.5, 99.8)], "low >= high is skipped"
    scores = {(n["low"], n["high"]): ap50 for n, ap50, _ in table}
    assert scores[(1.0, 99.0)] == 1.0
    assert scores[(1.0, 99.8)] == 0.0, "the discs fall under the threshold"
    assert best == {"method": "percentile", "low": 1.0, "high": 99.0}
    keys = [(ap50, mean) for _, ap50, mean in table]
    assert keys == sorted(keys, reverse=True), "best first"
    # Without save=True the model folder is untouched; with it, segment() uses the winner.
    assert load_model(model_dir).config.normalization["high"] == 99.8
    tune_normalization(str(model_dir), images, masks, lows=(1.0,), highs=(99.0, 99.8),
                       device="cpu", save=True)
    assert load_model(model_dir).config.normalization == best
    assert napari_unet.api.segment(images[0], model=str(model_dir), device="cpu").instances.max() == 3


def test_tune_normalization_prefers_the_current_pair_on_ties(models, fake_net):
    """Clean discs score perfectly under every pair: the model's own pair stays first."""
    scenes = [disc_scene(DISCS[i]) for i in (0, 2)]
    _, table = tune_normalization(str(models["three_class"]), [im for im, _ in scenes],
                                  [lab for _, lab in scenes], lows=(0.5, 1.0),
                                  highs=(99.5, 99.8), device="cpu")
    assert {ap50 for _, ap50, _ in table} == {1.0}
    assert (table[0][0]["low"], table[0][0]["high"]) == (1.0, 99.8)
    with pytest.raises(SegmentationError, match="No candidate"):
        tune_normalization(str(models["three_class"]), [scenes[0][0]], [scenes[0][1]],
                           lows=(99.9,), highs=(99.0,), device="cpu")


def test_tune_auto_scale_chooses_a_reference_area(monkeypatch):
    """Small objects come out right only at scale 2, big ones only at scale 1: the winning
    reference area lies between their sizes."""
    def pair(radius, centres):
        shape = (64, 96)
        labels = np.zeros(shape, np.int32)
        yy, xx = np.indices(shape)
        for i, (cy, cx) in enumerate(centres, 1):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
        return labels

    small = pair(2.5, [(10, 10), (10, 30), (40, 60)])   # about 21 px each
    big = pair(12, [(20, 20), (40, 70)])                 # about 450 px each
    merged_small, merged_big = (small > 0).astype(np.int32), (big > 0).astype(np.int32)
    answers = {("small", 1.0): merged_small, ("small", 2.0): small,
               ("big", 1.0): big, ("big", 2.0): merged_big}
    calls = []

    def fake_segment(image, *, scale, **kwargs):
        calls.append((image, scale))
        return SimpleNamespace(instances=answers[(image, scale)], axes="YX")

    monkeypatch.setattr(napari_unet.api, "segment", fake_segment)
    monkeypatch.setattr("napari_unet.training.tune.load_model", lambda model: model)
    area, table = tune_auto_scale("model", ["small", "big"], [small, big], factor=2.0,
                                  areas=(10, 100, 1000))
    assert sorted(calls) == sorted([("small", 1.0), ("small", 2.0), ("big", 1.0), ("big", 2.0)])
    assert area == 100
    scores = {row[0]: row[1] for row in table}
    assert scores[100] == 1.0
    assert scores[None] == scores[10] < 1.0 and scores[1000] < 1.0
    keys = [(ap50, mean) for _, ap50, mean in table]
    assert keys == sorted(keys, reverse=True), "best first"
    # The masks as one stacked array (a sequence of masks here, as for the other tuners).
    again, _ = tune_auto_scale("model", ["small", "big"], np.stack([small, big]), factor=2.0,
                               areas=(10, 100, 1000))
    assert again == 100


# --- audit: a finished run, odd folders ---------------------------------------------------

def test_train_warns_when_the_run_in_output_was_already_complete(tmp_path):
    """train() (not only iter_train) says that nothing was trained: it returns that run's model."""
    kw = {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "crop_size": 32, "base_width": 4, "depth": 2,
          "device": "cpu"}
    out = tmp_path / "m"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(_samples([0]), out, **kw)
    with pytest.warns(UserWarning, match="already complete"):
        model = train(_samples([1, 2]), out, **kw)
    assert model.config.provenance["trained_on"] == ["s0"]


def test_load_pairs_refuses_one_folder_for_images_and_masks(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    image, _ = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(folder / "a.tif", image)
    with pytest.raises(SegmentationError, match="same folder"):
        load_pairs(folder, tmp_path / "both" / ".")


def test_load_pairs_names_the_file_whose_pixels_cannot_be_normalised(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    for k in range(2):
        image, labels = disc_scene(DISCS[k], noise=6.0, seed=k)
        image = image.astype(np.float32)
        if k == 1:
            image[:3] = np.nan
        tifffile.imwrite(tmp_path / "i" / f"img{k}.tif", image)
        tifffile.imwrite(tmp_path / "m" / f"img{k}.tif", labels)
    with pytest.raises(SegmentationError, match=r"img1\.tif: .*NaN"):
        load_pairs(tmp_path / "i", tmp_path / "m")


def test_load_pairs_reads_the_channels_an_imagej_composite_declares(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "comp.tif", np.stack([image, image[::-1]]).astype(np.uint8),
                     imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "m" / "comp.tif", labels)
    with pytest.raises(SegmentationError, match="comp.tif has 2 channels .*Split Channels"):
        load_pairs(tmp_path / "i", tmp_path / "m")
    (two,) = load_pairs(tmp_path / "i", tmp_path / "m", in_channels=2)
    assert two.image.shape == (2, *labels.shape)


def test_load_pairs_names_the_files_of_a_pair_that_does_not_fit(tmp_path):
    """A mask a pixel short (after a crop), a colour mask: the error names both files with their
    folders, not only the stem (training and validation folders may hold the same names)."""
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "a.tif", image)
    tifffile.imwrite(tmp_path / "m" / "a.tif", labels[:-1])
    with pytest.raises(SegmentationError) as err:
        load_pairs(tmp_path / "i", tmp_path / "m")
    assert str(err.value).startswith(f"{tmp_path / 'i' / 'a.tif'}, mask {tmp_path / 'm' / 'a.tif'}: image shape")
    (tmp_path / "m" / "a.tif").unlink()
    skio.imsave(tmp_path / "m" / "a.png", np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, -1),
                check_contrast=False)
    with pytest.raises(SegmentationError, match=r"mask .*m[/\\]a\.png: the mask has colour channels"):
        load_pairs(tmp_path / "i", tmp_path / "m")


@pytest.mark.parametrize("mask_name", ["a_mask.tif", "a_masks.png", "a_labels.tif", "a_label.tif", "a-labels.tif",
                                       "a_seg.tif", "a_cp_masks.png", "a_instances.tif", "a.ome.tif"])
def test_load_pairs_finds_masks_named_as_annotation_tools_name_them(tmp_path, mask_name):
    """Cellpose's _cp_masks, this package's _instances, _mask, _labels ...: found when no mask has
    the image's own name; an OME-TIFF image's .ome is part of its extension."""
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "a.tif", image)
    tifffile.imwrite(tmp_path / "i" / "b.ome.tif", image)
    mask = labels.astype(np.uint8)
    for name in (mask_name, "b.tif"):
        if name.endswith(".tif"):
            tifffile.imwrite(tmp_path / "m" / name, mask)
        else:
            skio.imsave(tmp_path / "m" / name, mask, check_contrast=False)
    a, _ = load_pairs(tmp_path / "i", tmp_path / "m")
    np.testing.assert_array_equal(a.target, three_class_targets(labels))
    if mask_name == "a.ome.tif":  # a.png beside it would be a second mask of the same name
        return
    # The image's own name wins; two endings are two masks, which is refused.
    skio.imsave(tmp_path / "m" / "a.png", np.zeros_like(mask), check_contrast=False)
    assert not load_pairs(tmp_path / "i", tmp_path / "m")[0].target.any()
    (tmp_path / "m" / "a.png").unlink()
    tifffile.imwrite(tmp_path / "m" / "a_other_labels.tif", mask)  # not an ending of a's: ignored
    load_pairs(tmp_path / "i", tmp_path / "m")
    tifffile.imwrite(tmp_path / "m" / ("a_seg.tif" if mask_name != "a_seg.tif" else "a_mask.tif"), mask)
    with pytest.raises(SegmentationError, match="a.tif has 2 masks"):
        load_pairs(tmp_path / "i", tmp_path / "m")


def test_load_pairs_refuses_two_images_that_find_one_mask(tmp_path):
    """a.tif has no mask of its own, so its ending search finds a_labels.tif: the mask of the image
    a_labels.tif. Taken, a's nuclei would be trained (or scored) against another image's."""
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "a.tif", image)
    tifffile.imwrite(tmp_path / "i" / "a_labels.tif", image)
    tifffile.imwrite(tmp_path / "m" / "a_labels.tif", labels)
    with pytest.raises(SegmentationError, match=r"a\.tif and a_labels\.tif in .* would share the mask "
                                                r"a_labels\.tif in .*: give each image its own mask"):
        load_pairs(tmp_path / "i", tmp_path / "m")
    tifffile.imwrite(tmp_path / "m" / "a.tif", labels)
    assert len(load_pairs(tmp_path / "i", tmp_path / "m")) == 2


def test_load_pairs_without_a_mask_says_how_to_name_it(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "a.tif", image)
    tifffile.imwrite(tmp_path / "m" / "mask_a.tif", labels)
    with pytest.raises(SegmentationError, match=r"No mask for a\.tif in .*: give it a mask of the same name "
                                                r"\(a\.tif or a\.png; a_mask.*or move a\.tif out of its folder"):
        load_pairs(tmp_path / "i", tmp_path / "m")


def test_load_pairs_without_a_mask_names_the_masks_that_fit_no_image(tmp_path):
    """Masks named otherwise than their images (``mask_a.tif`` for ``a.tif``) are named in the refusal,
    with how many images lack a mask; an empty masks folder is said to be empty (a wrong folder?)."""
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir(), (tmp_path / "empty").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "i" / f"{name}.tif", image)
    tifffile.imwrite(tmp_path / "m" / "c.tif", labels)
    for name in ("mask_a.tif", "mask_b.png"):
        tifffile.imwrite(tmp_path / "m" / name, labels)
    with pytest.raises(SegmentationError, match=r"No mask for a\.tif in .* \(1 other image has none either\)"
                                                r".*fit no image's name: mask_a\.tif, mask_b\.png: rename each"):
        load_pairs(tmp_path / "i", tmp_path / "m")
    # Only the images asked for need masks; the spare masks are still those no image of the folder takes.
    with pytest.raises(SegmentationError, match=r"No mask for b\.tif in [^(]*: give.*mask_a\.tif, mask_b\.png:"):
        load_pairs(tmp_path / "i", tmp_path / "m", names=["b", "c"])
    assert [s.name for s in load_pairs(tmp_path / "i", tmp_path / "m", names=["c"])] == ["c"]
    with pytest.raises(SegmentationError, match=r"No mask for a\.tif .* holds no image files at all"):
        load_pairs(tmp_path / "i", tmp_path / "empty")


def test_load_pairs_refuses_two_images_of_one_name(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    image, labels = disc_scene(DISCS[0], noise=6.0, seed=0)
    tifffile.imwrite(tmp_path / "i" / "a.tif", image)
    tifffile.imwrite(tmp_path / "i" / "a.ome.tif", image)
    tifffile.imwrite(tmp_path / "m" / "a.tif", labels)
    with pytest.raises(SegmentationError, match=r"a\.ome\.tif and a\.tif in .* have one name, so one mask"):
        load_pairs(tmp_path / "i", tmp_path / "m")
