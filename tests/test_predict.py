"""Tiled, streamed inference: shapes, exact stitching, progress and cancelling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.checkpoint import load_model
from napari_unet.errors import SegmentationError
from napari_unet.normalize import normalize
from napari_unet.predict import (
    MIN_SIZE,
    MIN_TILE_MULTIPLES,
    Predictor,
    iter_predict,
    predict,
    smallest_tile,
)
from napari_unet.progress import Progress, drain

# --- shapes --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(37, 53), (5, 301), (4, 4), (MIN_SIZE, 9), (64, 64),
                                   (129, 7)])
def test_2d_output_shape_equals_input_shape(models, rng, shape):
    image = rng.random(shape).astype(np.float32)
    probs = predict(image, str(models["2d"]))
    assert probs.shape == (2, *shape)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(7, 19, 23), (4, 5, 6), (5, 9, 13)])
def test_3d_output_shape_equals_input_shape(models, rng, shape):
    volume = rng.random(shape).astype(np.float32)
    probs = predict(volume, str(models["3d"]), mode="3d")
    assert probs.shape == (2, *shape)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_odd_sizes_tiled(models, rng):
    """Odd sizes with many tiles still come back at the input's size."""
    image = rng.random((37, 53)).astype(np.float32)
    predictor = Predictor(str(models["2d"]), device="cpu", tile_size=16, overlap=8, halo=2)
    assert len(predictor.grid(image.shape)) > 4
    probs = predict(image, predictor)
    assert probs.shape == (2, 37, 53)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


# --- agreement with the network ----------------------------------------------------------

def test_probabilities_are_softmax_of_the_network(models, rng):
    """On a size the network accepts as is, with one tile, the predictor is just
    softmax(net(normalised image)); the conv+BN fusion on the CPU changes nothing."""
    image = rng.gamma(2.0, 30.0, size=(32, 48)).astype(np.float32)
    model = load_model(models["2d"])
    x = torch.from_numpy(normalize(image))[None, None]
    with torch.no_grad():
        expected = torch.softmax(model.net.eval()(x), dim=1)[0].numpy()
    probs = predict(image, str(models["2d"]), device="cpu")
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_predictor_leaves_the_loaded_network_alone(models):
    model = load_model(models["2d"])
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    Predictor(model, device="cpu")
    after = model.net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(type(m).__name__ == "BatchNorm2d" for m in model.net.modules())


# --- tiled equals untiled ------------------------------------------------------------------

def _structural_radius(net: torch.nn.Module, spatial_dims: int = 2) -> int:
    """How far (in pixels) one input pixel can influence the output.

    With every weight positive and a positive input, no ReLU ever cuts a path,
    and a max pool passes a raised pixel on; so raising one pixel changes every
    output the receptive field reaches. Trying all 2**depth alignments of the
    pixel relative to the pooling grid gives the largest reach.

    By hand, for depth 2 (each 3x3 conv adds 1 pixel at its level's scale, 2 at
    level 1 and 4 at level 2; each pool or transposed conv adds at most one cell
    less one pixel): convs 2*1 + 2*2 + 2*4 + 2*2 + 2*1 = 20, cells 1 + 2 + 2 + 1 = 6,
    so at most 26.
    """
    import copy

    probe = copy.deepcopy(net).eval()
    radius = 0
    with torch.no_grad():
        for p in probe.parameters():
            p.fill_(0.1)
        for m in probe.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        # The field is a box, so it is measured one axis at a time: 64 pixels
        # along that axis, a thin 8 along the others.
        for axis in range(spatial_dims):
            shape = [8] * spatial_dims
            shape[axis] = 64
            x = torch.ones(1, probe.stem[0].in_channels, *shape)
            base = probe(x)
            for offset in range(probe.multiple):
                center = [4] * spatial_dims
                center[axis] = 32 + offset
                y = x.clone()
                y[(0, slice(None), *center)] += 10.0
                changed = (probe(y) - base).abs().amax(dim=(0, 1)) > 0
                reach = np.argwhere(changed.numpy())[:, axis] - center[axis]
                radius = max(radius, int(np.abs(reach).max()))
    return radius


def test_fused_network_is_made_once_per_state(models, rng):
    """Predictors of one model share its fused copy, until the weights change in place."""
    model = load_model(models["2d"])
    a, b = Predictor(model, device="cpu"), Predictor(model, device="cpu")
    assert a.net is b.net and a.net is not model.net
    x = rng.random((1, 32, 32)).astype(np.float32)
    before = drain(Predictor(model, device="cpu").iter_array(x))
    with torch.no_grad():
        next(model.net.parameters()).mul_(2.0)  # as a training step would, in place
    c = Predictor(model, device="cpu")
    assert c.net is not a.net
    after = drain(c.iter_array(x))
    assert not np.allclose(before, after), "the new weights are used"
    assert Predictor(model, device="cpu").net is c.net


def test_models_loaded_from_one_file_share_a_fused_copy(models, rng):
    """segment(image) loads the bundled model afresh at each call: networks loaded from one file,
    untouched since, share one fused copy, and a network changed in place gets its own."""
    a, b = load_model(models["2d"]), load_model(models["2d"])
    assert a.net is not b.net
    assert Predictor(a, device="cpu").net is Predictor(b, device="cpu").net
    x = rng.random((1, 32, 32)).astype(np.float32)
    before = drain(Predictor(a, device="cpu").iter_array(x))
    with torch.no_grad():
        next(b.net.parameters()).mul_(2.0)
    changed = Predictor(b, device="cpu")
    assert changed.net is not Predictor(a, device="cpu").net
    assert not np.allclose(drain(changed.iter_array(x)), before), "b's new weights are used"
    np.testing.assert_array_equal(drain(Predictor(load_model(models["2d"]), device="cpu").iter_array(x)), before)


def test_structural_radius_is_within_the_hand_bound(models):
    net = load_model(models["2d"]).net
    radius = _structural_radius(net)
    assert 10 < radius <= 26


@pytest.mark.parametrize("shape", [(150, 171), (97, 133), (61, 200)])
def test_tiled_equals_untiled(models, rng, shape):
    model = load_model(models["2d"])
    radius = _structural_radius(model.net)
    halo = 28
    overlap = 2 * halo + 8  # the halo may be at most overlap // 2
    assert halo > radius
    image = rng.normal(100, 20, size=shape).astype(np.float32)
    tiled = Predictor(model, device="cpu", tile_size=96, overlap=overlap, halo=halo)
    grid = tiled.grid(shape)
    assert grid.halo == halo
    assert len(grid) > 1, "the test needs several tiles"
    whole = Predictor(model, device="cpu", tile_size=1024)
    assert len(whole.grid(shape)) == 1
    p_tiled = predict(image, tiled)
    p_whole = predict(image, whole)
    assert p_tiled.shape == p_whole.shape == (2, *shape)
    np.testing.assert_allclose(p_tiled, p_whole, atol=1e-4, rtol=0)
    # The comparison has teeth: the classes are not flat.
    assert p_whole[1].std() > 1e-3


def test_tiled_3d_equals_untiled(models, rng):
    model = load_model(models["3d"])
    radius = _structural_radius(model.net, spatial_dims=3)
    assert radius <= 26  # the same bound as in 2D, per axis
    shape = (7, 70, 9)
    volume = rng.normal(0, 1, size=shape).astype(np.float32)
    halo = 28
    tiled = Predictor(model, device="cpu", tile_size=36, overlap=2 * halo, halo=halo)
    grid = tiled.grid(shape)
    # Canvas (8, 72, 12): several tiles along Y only, whose halo covers the field.
    assert len(grid) > 1 and grid.halo == halo > radius
    whole = Predictor(model, device="cpu", tile_size=512)
    assert len(whole.grid(shape)) == 1
    p_tiled, p_whole = predict(volume, tiled), predict(volume, whole)
    assert p_tiled.shape == (2, *shape)
    np.testing.assert_allclose(p_tiled, p_whole, atol=1e-4, rtol=0)
    assert p_whole[1].std() > 1e-3


def test_default_tiles_agree_with_one_pass_on_real_nuclei():
    """The bundled model on the bundled sample: 512 px tiles with the default overlap and halo
    give the mask one pass over the whole image gives, nearly pixel for pixel."""
    from napari_unet import segment
    from napari_unet._napari.sample_data import nuclei_sample

    (image, _, _), _ = nuclei_sample()  # 520 x 696: 2 x 2 tiles of 512
    tiled, whole = segment(image, tile_size=512, device="cpu"), segment(image, tile_size=2048, device="cpu")
    assert tiled.metadata["overlap"] == 128
    assert (tiled.semantic != whole.semantic).sum() < 0.0005 * image.size  # 13 px of 361,920 measured
    assert tiled.metadata["n_objects"] == whole.metadata["n_objects"]


@pytest.mark.parametrize(("axes", "shape"), [("TYX", (2, 1500, 1500)), ("TZYX", (2, 3, 1200, 1200)),
                                             ("YXT", (1500, 1500, 2)),
                                             # just over the budget after striding Y and X: a second
                                             # stride must not fall on X and T (only even frames)
                                             ("YXT", (2001, 1999, 4))])
def test_normalisation_samples_every_frame_of_a_big_series(models, axes, shape):
    """A blank first frame must not set the range: the nuclei are in the second one."""
    from napari_unet.normalize import percentile_range
    from napari_unet.predict import prepare_input

    image = np.zeros(shape, np.uint8)
    t = axes.index("T")
    frame = [slice(None)] * len(shape)
    frame[t] = 1
    image[tuple(frame)] = np.random.default_rng(0).integers(0, 200, image[tuple(frame)].shape)
    assert image.size > 4_000_000  # sampled, not read whole
    prepared = prepare_input(image, load_model(models["2d"]).config, axes=axes)
    assert prepared.hi[0] > 150
    lo, hi = percentile_range(np.moveaxis(image, t, 0), low=1, high=99.8, max_samples=1_000_000)
    assert hi[0] > 150


def test_too_small_halo_is_not_exact(models, rng):
    """With no halo the tiles see zero padding at their edges: stitching is not exact.
    (This guards the previous test against passing for a trivial reason.)"""
    model = load_model(models["2d"])
    image = rng.normal(100, 20, size=(150, 171)).astype(np.float32)
    tiled = Predictor(model, device="cpu", tile_size=32, overlap=8, halo=0)
    whole = Predictor(model, device="cpu", tile_size=1024)
    assert np.abs(predict(image, tiled) - predict(image, whole)).max() > 1e-3


@pytest.mark.parametrize("batch_size", [2, 5])
def test_batch_size_does_not_change_the_result(models, rng, batch_size):
    image = rng.random((41, 47)).astype(np.float32)
    one = predict(image, str(models["2d"]), device="cpu", tile_size=16, overlap=8, halo=2)
    many = predict(image, str(models["2d"]), device="cpu", tile_size=16, overlap=8, halo=2,
                   batch_size=batch_size)
    np.testing.assert_allclose(one, many, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{"tile_size": -16}, {"overlap": -1}, {"halo": -2}, {"batch_size": 0}, {"tile_size": 0}],
)
def test_bad_tiling_parameters(models, kwargs):
    with pytest.raises(SegmentationError, match=">= 1|>= 0"):
        Predictor(str(models["2d"]), device="cpu", **kwargs)


# --- lazy inputs ----------------------------------------------------------------------

class _LazyStack:
    """A minimal read-only array-like (like a dask or zarr array): shape, dtype,
    ndim and basic indexing only. It records every read."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[tuple] = []

    def __getitem__(self, key):
        self.reads.append(key if isinstance(key, tuple) else (key,))
        return self._data[key]


def test_lazy_array_is_read_one_plane_at_a_time(models, rng):
    data = rng.integers(0, 5000, size=(5, 24, 28)).astype(np.uint16)
    lazy = _LazyStack(data)
    probs = predict(lazy, str(models["2d"]), axes="TYX")
    np.testing.assert_allclose(probs, predict(data, str(models["2d"]), axes="TYX"), atol=1e-6)
    # One strided read for the percentiles, then one read per time point.
    plane_reads = [k for k in lazy.reads if isinstance(k[0], (int, np.integer))]
    assert sorted(int(k[0]) for k in plane_reads) == list(range(5))
    assert len(lazy.reads) == 1 + 5


# --- progress and cancelling -------------------------------------------------------------

def _drain(gen):
    records = []
    return records, drain(gen, records.append)


def test_progress_records(models, rng):
    image = rng.random((3, 40, 44)).astype(np.float32)
    predictor = Predictor(str(models["2d"]), device="cpu", tile_size=16, overlap=8, halo=2,
                          batch_size=2)
    per_plane = len(predictor.grid((40, 44)))
    records, probs = _drain(iter_predict(image, predictor, axes="TYX"))
    assert probs.shape == (2, 3, 40, 44)
    assert all(isinstance(r, Progress) and r.stage == "predict" for r in records)
    total = 3 * per_plane
    assert {r.total for r in records} == {total}
    done = [r.done for r in records]
    assert all(b > a for a, b in zip(done, done[1:]))
    assert done[-1] == total
    # batch_size=2: one record per batch, i.e. ceil(tiles / 2) per plane.
    assert len(records) == 3 * -(-per_plane // 2)
    assert records[-1].fraction == 1.0
    np.testing.assert_allclose(probs, predict(image, predictor, axes="TYX"))


def test_closing_the_generator_stops_work(models, rng, forward_calls):
    calls = forward_calls
    image = rng.random((2, 40, 44)).astype(np.float32)
    predictor = Predictor(str(models["2d"]), device="cpu", tile_size=16, overlap=8, halo=2)
    gen = iter_predict(image, predictor, axes="TYX")
    first = next(gen)
    assert first.done == 1 and first.total > 2
    assert len(calls) == 1
    gen.close()
    assert len(calls) == 1
    with pytest.raises(StopIteration):
        next(gen)
    assert len(calls) == 1


@pytest.mark.parametrize("scale", [2.0, 0.5, 1.5])
def test_scale_resamples_for_the_network_and_back(models, fake_net, scale):
    from napari_unet.predict import predict

    yy, xx = np.mgrid[:60, :84]
    image = (np.sin(yy / 7.0) * np.cos(xx / 9.0) + 1.0).astype(np.float32)  # smooth
    same = predict(image, str(models["2d"]), device="cpu")
    fake_net.clear()
    scaled = predict(image, str(models["2d"]), device="cpu", scale=scale)
    assert scaled.shape == same.shape == (2, 60, 84)
    # The network saw the resampled image (padded up to its multiple of 4).
    (batch,) = fake_net
    assert batch[-2:] == tuple(-(-round(s * scale) // 4) * 4 for s in (60, 84))
    # Resampling a smooth image there and back changes it little.
    assert np.abs(scaled - same).max() < 0.06
    np.testing.assert_allclose(scaled.sum(axis=0), 1.0, atol=1e-5)


def test_scale_leaves_z_alone_for_3d_models(models, fake_net, rng):
    from napari_unet.predict import predict

    vol = rng.random((8, 20, 24)).astype(np.float32)
    out = predict(vol, str(models["3d"]), device="cpu", scale=2.0)
    assert out.shape == (2, 8, 20, 24)
    assert all(b[-3:] == (8, 40, 48) for b in fake_net)


def test_shrinking_a_volume_in_y_and_x_averages_as_in_2d():
    """scale < 1 with a 3D model shrinks Y and X only: each plane is averaged as a 2D image is, so a
    pattern finer than the new pixels turns grey instead of aliasing into stripes."""
    from napari_unet.predict import resample

    yy, xx = np.mgrid[:32, :32]
    checker = ((yy + xx) % 2).astype(np.float32)
    volume = np.stack([checker, 1 - checker, checker])[None]  # (K=1, Z=3, Y, X)
    small = resample(volume, (3, 16, 16))
    assert small.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(small, 0.5, atol=0.02)  # aliasing would give 0 and 1
    for z in range(3):
        np.testing.assert_array_equal(small[:, z], resample(volume[:, z], (16, 16)))
    # Z resized too (no caller does): trilinear, the shape asked for.
    assert resample(volume, (6, 16, 16)).shape == (1, 6, 16, 16)


@pytest.mark.parametrize(("image", "words"), [
    ("cells.tif", "file name"),
    (Path("cells.tif"), "file name"),
    (b"cells.tif", "file name"),
    (None, "not an image"),
    (3.5, "not an image"),
    (np.array(7), "not an image"),
])
def test_a_file_name_or_a_single_value_is_not_called_an_empty_image(models, image, words):
    """A script that passes the path of its image, or None from a reader that found nothing,
    is told what it gave and what to give, not that the image is empty."""
    with pytest.raises(SegmentationError, match=words) as info:
        predict(image, load_model(models["2d"]), device="cpu")
    assert "empty" not in str(info.value)


@pytest.mark.parametrize(("name", "axes"), [("cells.png", "YX"), ("movie.tif", "TYX")])
def test_a_file_name_is_refused_with_a_reader_that_keeps_its_axes(models, tmp_path, name, axes):
    """The refusal of a path names a reader for every format the command line takes (a PNG too,
    which tifffile.imread cannot read), and the call to segment what it read with the axes the file
    declares: run as written, a TYX movie is segmented as a series (read_image's pixels alone were
    guessed to be a ZYX volume, its frames labelled together)."""
    import re

    import tifffile
    from skimage import io as skio

    import napari_unet

    path = tmp_path / name
    pixels = (np.arange(3 * 32 * 32).reshape(3, 32, 32) % 251).astype(np.uint8)
    if axes == "YX":
        skio.imsave(path, pixels[0], check_contrast=False)
    else:
        tifffile.imwrite(path, pixels, imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(SegmentationError) as info:
        napari_unet.segment(str(path), model=str(models["2d"]), device="cpu")
    text = str(info.value)
    assert "PNG" in text
    read_call = re.search(r"read = napari_unet\.io\.(\w+)\(path\)", text)
    assert read_call and "segment(read.image, axes=read.axes)" in text, text
    # What the message says to do, done as written.
    read = getattr(napari_unet.io, read_call.group(1))(path)
    result = napari_unet.segment(read.image, axes=read.axes, model=str(models["2d"]), device="cpu")
    assert result.axes == axes and result.instances.shape == pixels.shape[3 - len(axes):]


@pytest.mark.parametrize(("shape", "hint"), [((32, 32, 2), "YXC"), ((5, 32, 32, 2), "ZYXC")])
def test_a_guess_that_leaves_the_last_axis_too_small_suggests_channels_last(models, shape, hint):
    """Two stains stored last (Y, X, 2) are guessed as Z, Y, X; the hint must name the axes
    that fit them (YXC), not ImageJ's CYX, which would leave X 2 pixels wide again."""
    with pytest.raises(SegmentationError, match="too small") as info:
        predict(np.ones(shape, np.float32), load_model(models["2d"]), device="cpu")
    assert f"axes='{hint}'" in str(info.value)


def test_a_tile_below_the_smallest_is_refused_saying_what_to_give(models):
    # The test networks have depth 2 (a multiple of 4): 16 px is their smallest tile.
    model = load_model(models["2d"])
    assert smallest_tile(model) == MIN_TILE_MULTIPLES * 4 == 16
    Predictor(model, device="cpu", tile_size=16)
    with pytest.raises(SegmentationError, match=r"tile_size 8 is too small .*give at least 16 \(pixels\), "
                                                r"or None for the default 1024"):
        Predictor(model, device="cpu", tile_size=8)


def test_the_bundled_model_refuses_tiles_under_64_px():
    assert smallest_tile(load_model("default")) == 64
    with pytest.raises(SegmentationError, match="tile_size 3 is too small .*at least 64"):
        Predictor("default", device="cpu", tile_size=3)


def test_the_predictor_keeps_the_tiling_the_grid_really_uses(models):
    # 17 px runs as 20 (a multiple of 4); an overlap of 5 as 8, and a halo of 6 as 4 (half of it).
    predictor = Predictor(str(models["2d"]), device="cpu", tile_size=17, overlap=5, halo=6)
    assert (predictor.tile_size, predictor.overlap, predictor.halo) == (20, 8, 4)
    grid = predictor.grid((80, 80))
    assert (grid.tile, grid.overlap, grid.halo) == ((20, 20), 8, 4)


def test_the_default_tile_of_a_deep_network_is_its_smallest(tmp_path):
    """A 3D U-Net of depth 6 takes multiples of 64: its smallest tile (256) is above the 3D
    default (128), which must not be refused (its message offered that same default)."""
    from napari_unet.checkpoint import ModelConfig, save_model

    config = ModelConfig(spatial_dims=3, base_width=2, depth=6, name="deep")
    model = load_model(save_model(tmp_path / "deep", config.build(), config))
    assert smallest_tile(model) == 256
    predictor = Predictor(model, device="cpu")
    assert predictor.tile_size == 256 and predictor.overlap == 64  # 32, rounded up to its multiple
    with pytest.raises(SegmentationError, match="give at least 256 .*or None for the default 256"):
        Predictor(model, device="cpu", tile_size=128)
