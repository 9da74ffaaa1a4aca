"""``napari_unet.segment`` / ``iter_segment``: the whole pipeline, image to labels.

Shape and consistency checks use real (tiny, seeded) networks. Checks of what is
segmented use ``fake_net``, a stand-in network whose foreground probability is
the normalised intensity, so that a synthetic image has a known answer.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scenes import DISCS, disc_scene, peak_numpy_bytes, sliver_and_ball

import napari_unet
from napari_unet.api import median_object_area
from napari_unet.checkpoint import load_model
from napari_unet.errors import SegmentationError
from napari_unet.predict import predict
from napari_unet.progress import Progress, drain


def _objects(labels: np.ndarray) -> set[int]:
    return set(np.unique(labels)) - {0}


def _two_discs(helpers, shape=(40, 60), *, touching: bool) -> np.ndarray:
    if touching:
        mask, _, _ = helpers.touching_discs(shape)
    else:
        mask = helpers.disc(shape, (20, 14), 8) | helpers.disc(shape, (20, 44), 8)
    return mask.astype(np.uint16) * 1000


# --- shapes and the result object -----------------------------------------------------

@pytest.mark.parametrize(
    ("key", "shape", "kwargs"),
    [
        ("2d", (37, 53), {}),
        ("2d", (5, 301), {}),
        ("2d", (4, 4), {}),
        ("2d_k3", (33, 18), {}),
        ("3d", (7, 19, 23), {"mode": "3d"}),
        ("2d", (3, 21, 17), {"axes": "TYX"}),
        ("2d", (2, 5, 13, 9), {}),
    ],
)
def test_outputs_have_the_image_shape(models, rng, key, shape, kwargs):
    image = rng.integers(0, 4000, size=shape).astype(np.uint16)
    result = napari_unet.segment(image, model=str(models[key]), device="cpu", **kwargs)
    assert isinstance(result, napari_unet.Segmentation)
    assert result.semantic.shape == shape and result.semantic.dtype == np.uint8
    assert result.instances.shape == shape and result.instances.dtype == np.int32
    k = load_model(models[key]).config.out_channels
    assert result.probabilities.shape == (k, *shape)
    assert result.probabilities.dtype == np.float32
    assert len(result.axes) == len(shape)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32", "int64",
                                   "float16", "float32", "float64"])
def test_every_real_dtype(models, dtype):
    """Normalisation makes the dtype irrelevant: each gives the float64 image's answer."""
    values = np.random.default_rng(3).integers(0, 120, size=(20, 24))
    image = values.astype(dtype)
    result = napari_unet.segment(image, model=str(models["2d"]), device="cpu")
    reference = predict(values.astype(np.float64), str(models["2d"]), device="cpu")
    np.testing.assert_allclose(result.probabilities, reference, atol=1e-4)
    assert result.semantic.shape == image.shape


def test_rgb_outputs_drop_the_channel_axis(models, rng):
    image = rng.integers(0, 255, size=(21, 27, 3)).astype(np.uint8)
    result = napari_unet.segment(image, model=str(models["2d"]))
    assert result.axes == "YX"
    assert result.semantic.shape == result.instances.shape == (21, 27)
    assert result.probabilities.shape == (2, 21, 27)


def test_metadata_records_the_tiling_that_ran_not_the_one_asked(models, rng):
    # The test networks take multiples of 4: a tile of 18 runs as 20, its overlap of 4 (a
    # quarter) stays, and the halo is half of it.
    result = napari_unet.segment(rng.random((50, 50)), model=str(models["2d"]), device="cpu", tile_size=18)
    assert {k: result.metadata[k] for k in ("tile_size", "overlap", "halo")} == \
        {"tile_size": 20, "overlap": 4, "halo": 2}


def test_a_tile_too_small_for_the_model_is_refused(models, rng):
    with pytest.raises(SegmentationError, match="tile_size 3 is too small .* give at least 16"):
        napari_unet.segment(rng.random((50, 50)), model=str(models["2d"]), device="cpu", tile_size=3)


def test_metadata_says_how_the_result_was_made(models, rng):
    model = load_model(models["2d"])
    result = napari_unet.segment(rng.random((20, 20)), model=str(models["2d"]), device="cpu",
                                 tile_size=64, min_size=3)
    meta = result.metadata
    assert meta["model_sha256"] == model.sha256
    assert len(meta["model_sha256"]) == 64
    assert meta["model"] == model.name == "2d"
    assert meta["device"] == "cpu"
    assert meta["napari_unet_version"] == napari_unet.__version__
    assert meta["tile_size"] == 64 and meta["min_size"] == 3
    assert meta["axes"] == "YX"
    assert meta["scale"] == 1.0
    # Model defaults fill in what was not given.
    assert meta["threshold"] == model.config.postprocess["threshold"]
    assert meta["channel"] is None
    # Which stain was segmented, or whether RGB became grey.
    stains = rng.random((2, 20, 20))
    assert napari_unet.segment(stains, model=model, axes="CYX", channel=1).metadata["channel"] == 1
    assert napari_unet.segment(rng.random((20, 20, 3)), model=model, axes="YXC").metadata["channel"] == "grey"


def test_rgb_turns_grey_at_full_precision(models):
    """Grey from RGB keeps what float32 would round away: a 3e9 offset in uint32, or 1e300 floats."""
    base = np.zeros((24, 24), np.uint32)
    base[4:12, 4:12], base[14:22, 10:20] = 250, 120
    grey = napari_unet.segment(base, model=str(models["2d"]), keep_probabilities=True).probabilities
    for image in (base * 4 + 3_000_000_000, base.astype(np.float64) * 1e300):
        rgb = np.stack([image] * 3, -1)
        probs = napari_unet.segment(rgb, model=str(models["2d"]), keep_probabilities=True).probabilities
        np.testing.assert_allclose(probs, grey, atol=1e-4)


def test_a_torch_tensor_is_read_or_refused_clearly(models, rng):
    image = rng.random((20, 20)).astype(np.float32)
    plain = napari_unet.segment(image, model=str(models["2d"]))
    tensor = napari_unet.segment(torch.from_numpy(image), model=str(models["2d"]))
    np.testing.assert_array_equal(tensor.instances, plain.instances)
    with pytest.raises(SegmentationError, match=r"tensor\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        napari_unet.segment(torch.from_numpy(image).requires_grad_(), model=str(models["2d"]))


def test_semantic_follows_the_probabilities(models, rng):
    image = rng.normal(100, 30, size=(40, 44)).astype(np.float32)
    two = napari_unet.segment(image, model=str(models["2d"]), threshold=0.6, fill_holes=False,
                              min_size=0)
    np.testing.assert_array_equal(two.semantic, two.probabilities[1] > 0.6)
    assert 0 < two.semantic.mean() < 1, "the test needs both classes"
    three = napari_unet.segment(image, model=str(models["2d_k3"]))
    np.testing.assert_array_equal(three.semantic, three.probabilities.argmax(axis=0))
    assert len(np.unique(three.semantic)) > 1
    # The probabilities are those of predict().
    np.testing.assert_allclose(two.probabilities, predict(image, str(models["2d"])), atol=1e-6)


def test_instances_lie_on_the_semantic_mask(models, rng):
    image = rng.normal(100, 30, size=(48, 52)).astype(np.float32)
    result = napari_unet.segment(image, model=str(models["2d"]), fill_holes=False, min_size=0)
    np.testing.assert_array_equal(result.instances > 0, result.semantic > 0)


def test_keep_probabilities_false(models, rng):
    result = napari_unet.segment(rng.random((16, 16)), model=str(models["2d"]),
                                 keep_probabilities=False)
    assert result.probabilities is None
    assert result.semantic.shape == (16, 16)


# --- what gets segmented (fake network) -----------------------------------------------------

def test_separate_objects(models, helpers, fake_net):
    image = _two_discs(helpers, touching=False)
    result = napari_unet.segment(image, model=str(models["2d"]))
    np.testing.assert_array_equal(result.semantic, image > 0)
    assert len(_objects(result.instances)) == 2
    assert fake_net, "the fake network was used"


def test_percentiles_replace_the_models_for_one_run(models, fake_net):
    """A few very bright pixels: under the model's percentiles (1, 99.8) they lie above the upper
    one and the discs stay bright; with 100 as the upper one the discs turn dim (0.02 of white)
    and nothing is found. The pair used is recorded."""
    image, _ = disc_scene([(16, 16, 6), (40, 44, 8)])
    image = image.astype(np.uint16)
    image[0, :3] = 10_000
    model = str(models["2d"])
    default = napari_unet.segment(image, model=model)
    assert len(_objects(default.instances)) == 2 and default.metadata["percentiles"] == [1.0, 99.8]
    bright = napari_unet.segment(image, model=model, percentiles=(1, 100))
    assert not bright.instances.any() and bright.metadata["percentiles"] == [1.0, 100.0]
    assert load_model(model).config.normalization["high"] == 99.8  # the model is unchanged
    for bad in ((99.8, 1), (1, 101), (-1, 50), (1,), "1 99", (True, 50), (1, float("nan"))):
        with pytest.raises(SegmentationError, match="percentiles must be two numbers from 0 to 100"):
            napari_unet.segment(image, model=model, percentiles=bad)


def test_scale_keeps_outputs_at_the_image_size(models, helpers, fake_net):
    image = _two_discs(helpers, touching=False)
    result = napari_unet.segment(image, model=str(models["2d"]), scale=2.0)
    assert result.metadata["scale"] == 2.0
    assert result.semantic.shape == result.instances.shape == image.shape
    assert result.probabilities.shape[1:] == image.shape
    assert all(b[-2:] == tuple(2 * s for s in image.shape) for b in fake_net)
    # Two discs, found where they are, to within the blur of resampling.
    assert len(_objects(result.instances)) == 2
    assert ((result.semantic > 0) != (image > 0)).mean() < 0.02


def _auto_model(helpers, folder, area):
    return helpers.build_model(folder, postprocess={"scale": "auto", "auto_scale_area": area,
                                                    "auto_scale_factor": 2.0})


@pytest.mark.parametrize(("area", "again"), [(300.0, True), (150.0, False)])
def test_auto_scale_segments_again_only_when_objects_are_small(helpers, fake_net, tmp_path, area, again):
    """Discs of radius 8 cover about 200 px: under a 300 px reference they are small."""
    image = _two_discs(helpers, touching=False)
    model = _auto_model(helpers, tmp_path / "auto", area)
    result = napari_unet.segment(image, model=str(model))  # scale=None: the model's "auto"
    assert fake_net[0][-2:] == image.shape, "the first pass is at the image's own size"
    doubled = [b for b in fake_net if b[-2:] == tuple(2 * s for s in image.shape)]
    assert bool(doubled) == again
    assert result.metadata["scale"] == (2.0 if again else 1.0)
    assert result.metadata["scale_mode"] == "auto"
    assert result.semantic.shape == result.instances.shape == result.probabilities.shape[1:] == image.shape
    assert len(_objects(result.instances)) == 2


def test_auto_scale_frees_the_first_pass_before_the_second(helpers, fake_net, tmp_path, monkeypatch):
    """The first pass's arrays (probabilities included) are not held while the second runs."""
    import gc
    import weakref

    from napari_unet import api

    image = _two_discs(helpers, touching=False)
    real_one_pass = api._one_pass
    first: list = []

    def one_pass(*args, **kwargs):
        if first:
            gc.collect()
            assert all(ref() is None for ref in first), "the first pass's results are still held"
        result = yield from real_one_pass(*args, **kwargs)
        if not first:
            first.extend(weakref.ref(a) for a in result if a is not None)
        return result

    monkeypatch.setattr(api, "_one_pass", one_pass)
    result = napari_unet.segment(image, model=str(_auto_model(helpers, tmp_path / "auto", 300.0)))
    assert result.metadata["scale"] == 2.0 and len(first) == 3


def test_explicit_scale_overrides_the_models_auto(helpers, fake_net, tmp_path):
    image = _two_discs(helpers, touching=False)
    result = napari_unet.segment(image, model=str(_auto_model(helpers, tmp_path / "auto", 300.0)), scale=1.0)
    assert {b[-2:] for b in fake_net} == {image.shape}
    assert result.metadata["scale"] == 1.0 and result.metadata["scale_mode"] == "fixed"


def test_auto_scale_decides_once_for_a_whole_stack(helpers, fake_net, tmp_path):
    plane = _two_discs(helpers, touching=False)
    stack = np.stack([plane, plane, np.zeros_like(plane)])
    result = napari_unet.segment(stack, model=str(_auto_model(helpers, tmp_path / "auto", 300.0)),
                                 axes="TYX")
    doubled = [b for b in fake_net if b[-2:] == tuple(2 * s for s in plane.shape)]
    assert len(doubled) == 3, "every plane, the empty one too, is segmented again"
    assert result.metadata["scale"] == 2.0
    assert result.instances.shape == stack.shape
    assert [len(_objects(p)) for p in result.instances] == [2, 2, 0]


def test_median_object_area_counts_cross_sections_in_yx():
    labels = np.zeros((2, 6, 5), np.int32)  # ZYX: object 1 spans both planes
    labels[0, :2, :2] = 1    # 4 px
    labels[1, :3, :3] = 1    # 9 px
    labels[1, 4:, 3:] = 2    # 4 px
    assert median_object_area(labels, "ZYX") == 4.0
    assert median_object_area(np.moveaxis(labels, 0, -1), "YXZ") == 4.0
    assert median_object_area(np.zeros((4, 4), np.int32), "YX") is None


def test_touching_objects_components_vs_watershed(models, helpers, fake_net):
    image = _two_discs(helpers, touching=True)
    kwargs = {"model": str(models["2d"]), "min_size": 0}
    comp = napari_unet.segment(image, instance_method="components", **kwargs)
    water = napari_unet.segment(image, instance_method="watershed", **kwargs)
    assert len(_objects(comp.instances)) == 1
    assert len(_objects(water.instances)) == 2
    assert water.metadata["instance_method"] == "watershed"


def test_min_size_and_holes(models, helpers, fake_net):
    image = _two_discs(helpers, touching=False)
    image[5:7, 30:32] = 1000  # a 4-pixel speck
    image[20, 14] = 0  # a one-pixel hole in the first disc
    big = napari_unet.segment(image, model=str(models["2d"]), min_size=10)
    assert len(_objects(big.instances)) == 2 and big.instances[6, 31] == 0
    assert big.instances[20, 14] > 0  # hole filled
    small = napari_unet.segment(image, model=str(models["2d"]), min_size=1, fill_holes=False)
    assert len(_objects(small.instances)) == 3 and small.instances[20, 14] == 0


def test_min_size_of_a_2d_model_is_an_area_in_a_stack_labelled_in_3d(models, helpers, fake_net):
    """A 2D model segments a z-stack plane by plane and labels it in 3D: its min_size (24 px here)
    stays a cross-section's area, so a sliver two planes deep (58 voxels, 29 px per plane) goes
    and a small nucleus (a ball of radius 4) stays; the metadata says the volume used (88 voxels).
    A 3D model's min_size counts voxels; a 2D image keeps its pixels, with no volume."""
    mask, nucleus, sliver = sliver_and_ball()
    stack = mask.astype(np.uint16) * 1000
    planes = napari_unet.segment(stack, model=str(models["2d"]), min_size=24)
    assert planes.metadata["mode"] == "2d" and planes.axes == "ZYX"
    assert planes.instances[nucleus] > 0 and planes.instances[sliver] == 0
    assert planes.metadata["n_objects"] == 1 and planes.semantic[sliver] == 0
    assert planes.metadata["min_size"] == 24 and planes.metadata["min_volume"] == 88
    volume = napari_unet.segment(stack, model=str(models["3d"]), min_size=24)
    assert volume.metadata["mode"] == "3d"
    assert volume.instances[nucleus] > 0 and volume.instances[sliver] > 0 and volume.metadata["n_objects"] == 2
    assert volume.metadata["min_size"] == volume.metadata["min_volume"] == 24
    flat = napari_unet.segment(stack[0], model=str(models["2d"]), min_size=24)
    assert flat.instances[sliver[1:]] > 0 and flat.metadata["min_volume"] is None
    # A time series of planes is labelled in 2D: each plane's sliver stays.
    movie = napari_unet.segment(stack, model=str(models["2d"]), axes="TYX", min_size=24)
    assert movie.instances[sliver] > 0 and movie.metadata["min_volume"] is None


def test_three_class_model_splits_at_seeds(models, helpers, fake_net):
    """A three-class model: seeds from the interior class, mask from interior + boundary.

    With the fake network the interior probability is the normalised intensity;
    an intensity that peaks at each disc's centre gives one seed per disc. The
    image is the distance to the background: 6 at the waist between the discs,
    8.2 at the 99.8th percentile, so interior > 0.85 (distance > 7) is two seeds.
    """
    from scipy import ndimage as ndi

    mask, _, _ = helpers.touching_discs()
    image = ndi.distance_transform_edt(mask).astype(np.float32)
    result = napari_unet.segment(image, model=str(models["three_class"]), threshold=0.05,
                                 seed_threshold=0.85, instance_method="watershed", min_size=0)
    np.testing.assert_array_equal(result.semantic, mask)
    assert len(_objects(result.instances)) == 2
    # Without the seeds' help (components) the blob stays one object.
    one = napari_unet.segment(image, model=str(models["three_class"]), threshold=0.05,
                              instance_method="components", min_size=0)
    assert len(_objects(one.instances)) == 1
    np.testing.assert_array_equal(result.semantic, result.instances > 0)


def test_time_series_labels_restart_per_time_point(models, helpers, fake_net):
    frame = _two_discs(helpers, touching=False)
    series = np.stack([frame, frame, np.roll(frame, 3, axis=1)])
    result = napari_unet.segment(series, model=str(models["2d"]), axes="TYX")
    assert result.axes == "TYX"
    for t in range(3):
        assert _objects(result.instances[t]) == {1, 2}


@pytest.mark.parametrize(("key", "link"), [("2d", False), ("three_class", False), ("three_class", True)])
def test_a_time_series_holds_its_outputs_and_one_frames_work(models, fake_net, key, link):
    """Each frame of a series is labelled as it comes: a long series costs its outputs, 5 bytes
    per pixel (uint8 mask, int32 ids), not also a whole-series copy of its mask, seeds and
    watershed landscape (9 bytes per pixel with a three-class model, 7 with two classes);
    linking over time relabels the ids in place (a second int32 copy before)."""
    frame, _ = disc_scene(DISCS[0], noise=5, seed=0)  # 64 x 64
    lengths = (40, 120)
    series = {n: np.stack([np.roll(frame, t, axis=1) for t in range(n)]) for n in lengths}
    # Each frame its own range: the whole series' range comes from a sample of up to 4 million
    # pixels (a fixed cost, but the whole of a series this short).
    kwargs = {"model": str(models[key]), "axes": "TYX", "keep_probabilities": False, "normalize_per": "frame",
              "link_time": link}
    peaks = [peak_numpy_bytes(lambda n=n: napari_unet.segment(series[n], **kwargs)) for n in lengths]
    per_pixel = (peaks[1] - peaks[0]) / ((lengths[1] - lengths[0]) * frame.size)
    assert per_pixel < 5.5, f"{per_pixel:.1f} bytes per pixel of the series"
    # ... and each frame is labelled as it would be alone.
    result = napari_unet.segment(series[lengths[0]], **kwargs)
    assert result.metadata["linked_over_time"] == link
    for t in (0, 7, 39):
        alone = napari_unet.segment(series[lengths[0]][t], **{**kwargs, "axes": "YX"})
        np.testing.assert_array_equal(result.instances[t] if not link else result.instances[t] > 0,
                                      alone.instances if not link else alone.instances > 0)
        np.testing.assert_array_equal(result.semantic[t], alone.semantic)


def test_a_series_of_z_stacks_segmented_plane_by_plane_holds_one_stacks_work(models, fake_net):
    """A TZYX series through a 2D model: each time point's z-stack is labelled in 3D as soon as
    its planes are in, so the series costs its outputs (5 bytes per pixel), not also a
    whole-series copy of its seeds and watershed landscape (2 more bytes per pixel)."""
    frame, _ = disc_scene(DISCS[0], noise=5, seed=0)  # 64 x 64
    stack = np.stack([np.roll(frame, z, axis=0) for z in range(4)])
    lengths = (10, 30)
    series = {n: np.stack([np.roll(stack, t, axis=2) for t in range(n)]) for n in lengths}
    kwargs = {"model": str(models["three_class"]), "axes": "TZYX", "keep_probabilities": False,
              "normalize_per": "frame"}
    peaks = [peak_numpy_bytes(lambda n=n: napari_unet.segment(series[n], **kwargs)) for n in lengths]
    per_pixel = (peaks[1] - peaks[0]) / ((lengths[1] - lengths[0]) * stack.size)
    assert per_pixel < 5.5, f"{per_pixel:.1f} bytes per pixel of the series"
    # ... and each time point is labelled as its z-stack alone, with the same minimum volume.
    result = napari_unet.segment(series[lengths[0]], **kwargs)
    for t in (0, 9):
        alone = napari_unet.segment(series[lengths[0]][t], **{**kwargs, "axes": "ZYX"})
        np.testing.assert_array_equal(result.instances[t], alone.instances)
        np.testing.assert_array_equal(result.semantic[t], alone.semantic)
        assert result.metadata["min_volume"] == alone.metadata["min_volume"]


@pytest.mark.parametrize("key", ["2d", "3d"])
def test_z_stack_labels_are_unique_across_the_volume(models, helpers, fake_net, key):
    """A z-stack is labelled in 3D, whether planes or volumes go through the network."""
    frame = _two_discs(helpers, touching=False)
    stack = np.stack([frame] * 4 + [np.zeros_like(frame)] + [frame])
    result = napari_unet.segment(stack, model=str(models[key]))
    assert result.axes == "ZYX"
    # Two tubes through planes 0-3, and two more discs in plane 5 after a gap.
    assert _objects(result.instances) == {1, 2, 3, 4}
    for z in range(1, 4):
        np.testing.assert_array_equal(result.instances[z], result.instances[0])
    assert _objects(result.instances[5]).isdisjoint(_objects(result.instances[0]))
    batch_dims = {len(shape) for shape in fake_net}
    assert batch_dims == ({4} if key == "2d" else {5})


# --- percentiles per stack, frame or plane --------------------------------------------------

def test_normalize_per_frame_finds_the_nuclei_of_a_bleached_frame(models, fake_net):
    """A time series whose second frame bleached to a tenth: over the whole stack its nuclei
    lie at a tenth of white and are lost; each frame normalised on its own, both are found,
    in tiles as in one piece."""
    image, labels = disc_scene(DISCS[0])
    series = np.stack([image, image // 10]).astype(np.uint16)
    model = str(models["2d"])
    stack = napari_unet.segment(series, model=model, axes="TYX")
    np.testing.assert_array_equal(stack.semantic[0], labels > 0)
    assert not stack.instances[1].any()
    assert (stack.metadata["normalize_per"], stack.metadata["normalize_per_axes"]) == ("stack", "")
    frame = napari_unet.segment(series, model=model, axes="TYX", normalize_per="frame")
    for t in range(2):
        np.testing.assert_array_equal(frame.semantic[t], labels > 0)
        assert _objects(frame.instances[t]) == {1, 2, 3}
    assert (frame.metadata["normalize_per"], frame.metadata["normalize_per_axes"]) == ("frame", "T")
    tiled = napari_unet.segment(series, model=model, axes="TYX", normalize_per="Frame", tile_size=32)
    np.testing.assert_array_equal(tiled.instances, frame.instances)


@pytest.mark.parametrize(("key", "axes"), [("2d", "TZYX"), ("3d", "TZYX"), ("2d", "ZTYX")])
def test_normalize_per_frame_shares_a_range_across_its_planes_and_plane_does_not(models, fake_net, key, axes):
    """Two time points of four planes; the second dimmed to a tenth in planes 0-1 and a
    hundredth in planes 2-3. "stack" finds nothing in it, "frame" the brighter planes (one range
    for the time point's stack), "plane" every plane: the same whether a 2D model reads plane by
    plane or a 3D model whole volumes, and whichever of T and Z comes first."""
    image, labels = disc_scene(DISCS[1])
    bright = image.astype(np.uint16) * 100
    series = np.stack([np.stack([bright] * 4), np.stack([bright // 10] * 2 + [bright // 100] * 2)])
    found = {}
    for per in ("stack", "frame", "plane"):
        result = napari_unet.segment(series if axes == "TZYX" else series.swapaxes(0, 1),
                                     model=str(models[key]), axes=axes, normalize_per=per)
        semantic = result.semantic if axes == "TZYX" else result.semantic.swapaxes(0, 1)
        for t, z in np.ndindex(2, 4):
            assert not semantic[t, z].any() or np.array_equal(semantic[t, z], labels > 0)
        found[per] = semantic.any(axis=(2, 3)).astype(int).tolist()
        assert result.metadata["normalize_per_axes"] == {"stack": "", "frame": "T", "plane": "TZ"}[per]
    assert found == {"stack": [[1, 1, 1, 1], [0, 0, 0, 0]],
                     "frame": [[1, 1, 1, 1], [1, 1, 0, 0]],
                     "plane": [[1, 1, 1, 1], [1, 1, 1, 1]]}


def test_normalize_per_frame_or_plane_of_a_single_image_is_the_stack(models, fake_net):
    """An image without T is one frame, one without T or Z one plane: the result is the
    stack's, and the metadata says no axis had ranges of its own."""
    image, _ = disc_scene(DISCS[2])
    deep = np.stack([image, image // 10]).astype(np.uint16)
    model = str(models["2d"])
    for array, axes in ((image, "YX"), (deep, "ZYX")):
        stack = napari_unet.segment(array, model=model, axes=axes)
        frame = napari_unet.segment(array, model=model, axes=axes, normalize_per="frame")
        np.testing.assert_array_equal(frame.instances, stack.instances)
        assert (frame.metadata["normalize_per"], frame.metadata["normalize_per_axes"]) == ("frame", "")
    plane = napari_unet.segment(image, model=model, normalize_per="plane")
    np.testing.assert_array_equal(plane.instances, napari_unet.segment(image, model=model).instances)
    assert plane.metadata["normalize_per_axes"] == ""
    # ... while the dim plane of the z-stack is found only with a range of its own.
    planes = napari_unet.segment(deep, model=model, axes="ZYX", normalize_per="plane")
    assert planes.semantic[1].any() and planes.metadata["normalize_per_axes"] == "Z"
    assert not napari_unet.segment(deep, model=model, axes="ZYX").semantic[1].any()


# --- progress and cancelling ----------------------------------------------------------------

def _drain(gen):
    records = []
    return records, drain(gen, records.append)


def test_iter_segment_progress(models, rng):
    image = rng.random((2, 40, 44)).astype(np.float32)
    gen = napari_unet.iter_segment(image, model=str(models["2d"]), axes="TYX", tile_size=16,
                                   overlap=8, batch_size=3)
    records, result = _drain(gen)
    assert isinstance(result, napari_unet.Segmentation)
    assert all(isinstance(r, Progress) for r in records)
    predict_records = [r for r in records if r.stage == "predict"]
    rest = [r for r in records if r.stage != "predict"]
    assert records[: len(predict_records)] == predict_records  # prediction comes first
    done = [r.done for r in predict_records]
    assert all(b > a for a, b in zip(done, done[1:]))
    total = predict_records[0].total
    assert {r.total for r in predict_records} == {total} and done[-1] == total
    assert total > 2
    assert [(r.stage, r.done, r.total) for r in rest] == [("instances", 0, 1),
                                                          ("instances", 1, 1)]
    assert "objects" in rest[-1].message
    assert predict_records[-1].message.endswith(" of plane 2/2")
    # A 3D model's items are volumes: two time points of a TZYX stack.
    stack = rng.random((2, 8, 16, 16)).astype(np.float32)
    records, _ = _drain(napari_unet.iter_segment(stack, model=str(models["3d"]), axes="TZYX"))
    assert [r.message for r in records if r.stage == "predict"][-1].endswith(" of volume 2/2")


def test_closing_iter_segment_stops_work(models, rng, forward_calls):
    calls = forward_calls
    gen = napari_unet.iter_segment(rng.random((3, 40, 44)), model=str(models["2d"]),
                                   axes="TYX", tile_size=16, overlap=8)
    first = next(gen)
    assert first.stage == "predict" and first.done == 1 and first.total > 3
    assert len(calls) == 1
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert len(calls) == 1


# --- parameter checks ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"instance_method": "magic"}, "Unknown instance method"),
        ({"threshold": 1.5}, "threshold must be a number between 0 and 1"),
        ({"threshold": 0.0}, "threshold must be a number between 0 and 1"),
        ({"threshold": "x"}, "threshold must be a number between 0 and 1, not 'x'"),
        ({"seed_threshold": 2}, "seed_threshold must be a number from 0 to 1"),
        ({"seed_threshold": float("nan")}, "seed_threshold must be a number from 0 to 1"),
        ({"seed_threshold": "x"}, "seed_threshold must be a number from 0 to 1"),
        ({"mode": "4d"}, "mode must be one of"),
        ({"min_size": -5}, "min_size (pixels) must be a whole number >= 0"),
        ({"min_size": 2.5}, "min_size (pixels) must be a whole number >= 0, not 2.5"),
        ({"batch_size": "2"}, "batch_size must be a whole number >= 1"),
        ({"tile_size": 0}, "tile_size must be a whole number >= 1"),
        ({"channel": "0"}, "channel must be a whole number >= 0"),
        ({"axes": ["Y", "X"]}, "axes must be a string of letters"),
        ({"fill_holes": "no"}, "fill_holes must be True or False, not 'no'"),
        ({"link_time": "no"}, "link_time must be True or False, not 'no'"),
        ({"keep_probabilities": "False"}, "keep_probabilities must be True or False, not 'False'"),
        ({"scale": True}, "scale must be a number, got True"),
        ({"normalize_per": "time"}, "normalize_per must be one of 'stack', 'frame', 'plane', not 'time'"),
        ({"normalize_per": None}, "normalize_per must be one of 'stack', 'frame', 'plane', not None"),
    ],
)
def test_bad_parameters(models, kwargs, fragment):
    with pytest.raises(SegmentationError, match=re.escape(fragment)):
        napari_unet.segment(np.ones((16, 16)), model=str(models["2d"]), **kwargs)


def test_whole_valued_numbers_are_accepted_and_bad_images_or_models_explained(models):
    """24.0 is a whole number (JSON may hold it so); a ragged list or no model gets a message."""
    result = napari_unet.segment(np.ones((16, 16)), model=str(models["2d"]), min_size=24.0)
    assert result.metadata["min_size"] == 24 and isinstance(result.metadata["min_size"], int)
    with pytest.raises(SegmentationError, match="not a regular array"):
        napari_unet.segment([[1, 2, 3], [1, 2]], model=str(models["2d"]))
    with pytest.raises(SegmentationError, match="model must be a model name"):
        napari_unet.segment(np.ones((16, 16)), model=None)


def test_link_time_only_acts_on_a_time_axis(models):
    rng = np.random.default_rng(1)
    stack = rng.random((3, 32, 32)).astype(np.float32)
    movie = napari_unet.segment(stack, model=str(models["2d"]), axes="TYX", link_time=True)
    assert movie.metadata["linked_over_time"] is True
    # Linked ids are tracks numbered from 1: the result counts them once, for the CLI and widget.
    assert movie.tracks == len(np.unique(movie.instances[movie.instances > 0])) == movie.instances.max()
    planes = napari_unet.segment(stack, model=str(models["2d"]), axes="ZYX", link_time=True)
    assert planes.metadata["linked_over_time"] is False and planes.tracks is None
    plain = napari_unet.segment(stack, model=str(models["2d"]), axes="ZYX")
    np.testing.assert_array_equal(planes.instances, plain.instances)


def test_link_time_on_axes_guessed_without_a_time_axis_is_refused(models):
    """A movie given without axes is guessed as a z-stack: linking asked for is refused before the
    network runs (its frames would be labelled together as one volume), saying which axes to give."""
    stack = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    with pytest.raises(SegmentationError, match=re.escape("guessed from its shape as 'ZYX', without T: "
                                                          "give them, e.g. axes='TYX'")):
        napari_unet.segment(stack, model=str(models["2d"]), link_time=True)
    with pytest.raises(SegmentationError, match="as 'YX', without T: leave out link_time"):
        napari_unet.segment(stack[0], model=str(models["2d"]), link_time=True)


def test_time_axis_after_z_labels_each_z_stack_together(models, fake_net):
    """Axes ZTYX: objects are labelled per time point across Z (not per Z across time), so
    two discs in different planes are two objects, and linking keeps them apart."""
    a, _ = disc_scene([(16, 16, 6)])
    b, _ = disc_scene([(44, 44, 6)])
    zero = np.zeros_like(a)
    stack = np.stack([np.stack([a, a]), np.stack([zero, zero])]).astype(np.float32)  # Z, T, Y, X
    stack[1, :] = b
    for link in (False, True):
        r = napari_unet.segment(stack, model=str(models["2d"]), axes="ZTYX", link_time=link, min_size=0)
        assert r.instances.shape == stack.shape
        ids_a = {int(r.instances[0, t, 16, 16]) for t in range(2)}
        ids_b = {int(r.instances[1, t, 44, 44]) for t in range(2)}
        assert 0 not in ids_a | ids_b
        assert ids_a.isdisjoint(ids_b), "two discs in different planes are two objects"
        assert r.metadata["n_objects"] == 4  # two objects in each of two time points
        if link:
            assert len(ids_a) == len(ids_b) == 1


def test_z_stack_with_z_last_fills_the_holes_of_each_plane(models, helpers, fake_net):
    """A z-stack given as YXZ is segmented as its ZYX transpose: a hole in the first plane of
    a nucleus (open in 3D) is filled in its plane, not looked for in the Y slices."""
    frame = _two_discs(helpers, touching=False)
    stack = np.stack([frame] * 3)
    stack[0, 20, 14] = 0  # a one-pixel hole in the first plane: it reaches the top of the volume
    zyx = napari_unet.segment(stack, model=str(models["2d"]), axes="ZYX")
    assert zyx.instances[0, 20, 14] > 0
    yxz = napari_unet.segment(np.moveaxis(stack, 0, -1), model=str(models["2d"]), axes="YXZ")
    np.testing.assert_array_equal(np.moveaxis(yxz.instances, -1, 0) > 0, zyx.instances > 0)


def test_mode_ignores_case(models):
    stack = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    lower = napari_unet.segment(stack, model=str(models["2d"]), mode="2d")
    upper = napari_unet.segment(stack, model=str(models["2d"]), mode="2D")
    np.testing.assert_array_equal(lower.instances, upper.instances)
    assert upper.metadata["mode"] == "2d"
