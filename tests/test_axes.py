"""Axes: inference, validation, and how each layout is streamed through the network."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.axes import infer_axes, labelled_last, plan_axes
from napari_unet.errors import SegmentationError
from napari_unet.predict import Predictor, predict

# --- inference and planning ------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "in_channels", "expected"),
    [
        ((64, 64), 1, "YX"),
        ((5, 64, 64), 1, "ZYX"),
        ((64, 64, 3), 1, "YXC"),
        ((64, 64, 4), 1, "YXC"),
        ((64, 64, 2), 1, "ZYX"),  # two is not RGB, and the model takes one channel
        ((64, 64, 2), 2, "YXC"),  # ... but a 2-channel model makes it a channel axis
        ((64, 64, 5), 5, "YXC"),
        ((3, 64, 64), 1, "ZYX"),  # channels first is never guessed
        ((64, 64, 1), 1, "YXC"),  # a trailing 1 is one channel (H x W x 1), never an X one pixel wide
        ((5, 64, 64, 1), 1, "ZYXC"),
        ((4, 5, 64, 64), 1, "TZYX"),
        ((5, 64, 64, 3), 1, "ZYXC"),
        ((5, 64, 64, 2), 2, "ZYXC"),
        ((2, 3, 8, 64, 64), 1, "TZYXC"),
    ],
)
def test_infer_axes(shape, in_channels, expected):
    assert infer_axes(shape, in_channels=in_channels) == expected


@pytest.mark.parametrize("shape", [(7,), (), (2, 2, 2, 2, 8, 8)])
def test_infer_axes_refuses_other_dimensions(shape):
    with pytest.raises(SegmentationError, match="dimension"):
        infer_axes(shape)


def test_axes_refusals_count_in_the_right_number():
    with pytest.raises(SegmentationError, match=r"an array with 1 dimension \(shape"):
        infer_axes((7,))
    with pytest.raises(SegmentationError, match=r"has 1 letter but the image has 2 dimensions \(shape"):
        plan_axes((20, 30), "X", spatial_dims=2, mode="auto")


@pytest.mark.parametrize(
    ("shape", "axes", "dims", "mode", "loop", "net", "channel", "label", "out"),
    [
        ((20, 30), None, 2, "auto", (), (0, 1), None, "YX", "YX"),
        ((20, 30, 3), None, 2, "auto", (), (0, 1), 2, "YX", "YX"),
        ((3, 20, 30), "CYX", 2, "auto", (), (1, 2), 0, "YX", "YX"),
        ((30, 20), "XY", 2, "auto", (), (0, 1), None, "XY", "XY"),
        ((6, 20, 30), None, 2, "auto", (0,), (1, 2), None, "ZYX", "ZYX"),
        ((6, 20, 30), None, 2, "2d", (0,), (1, 2), None, "ZYX", "ZYX"),
        ((6, 20, 30), None, 3, "3d", (), (0, 1, 2), None, "ZYX", "ZYX"),
        ((6, 20, 30), None, 3, "auto", (), (0, 1, 2), None, "ZYX", "ZYX"),
        ((6, 20, 30), "TYX", 2, "auto", (0,), (1, 2), None, "YX", "TYX"),
        ((2, 6, 20, 30), None, 2, "auto", (0, 1), (2, 3), None, "ZYX", "TZYX"),
        ((2, 6, 20, 30), None, 3, "auto", (0,), (1, 2, 3), None, "ZYX", "TZYX"),
        ((2, 6, 20, 30, 3), None, 2, "auto", (0, 1), (2, 3), 4, "ZYX", "TZYX"),
        ((20, 2, 30), "YCX", 2, "auto", (), (0, 2), 1, "YX", "YX"),
        ((20, 30, 4), "yxt", 2, "auto", (2,), (0, 1), None, "YX", "YXT"),
    ],
)
def test_plan_axes(shape, axes, dims, mode, loop, net, channel, label, out):
    plan = plan_axes(shape, axes, spatial_dims=dims, mode=mode)
    assert plan.loop_axes == loop
    assert plan.net_axes == net
    assert plan.channel_axis == channel
    assert plan.label_axes == label
    assert plan.out_axes == out
    assert len(plan.axes) == len(shape)


@pytest.mark.parametrize(
    ("shape", "axes", "dims", "mode", "fragment"),
    [
        ((20, 30), "ZYX", 2, "auto", "letters"),
        ((20, 30), "QX", 2, "auto", "Invalid axes"),
        ((20, 30), "YY", 2, "auto", "Invalid axes"),
        ((20, 30, 4), "ZYT", 2, "auto", "Invalid axes"),
        ((5, 20, 30), "T,Y,X", 2, "auto", "write their letters together, without commas or spaces, e.g. 'TYX'"),
        ((5, 20, 30), "t y x", 2, "auto", "without commas or spaces, e.g. 'TYX'"),
        ((5, 20, 30), "TYX ", 2, "auto", "without commas or spaces, e.g. 'TYX'"),
        ((20, 30), "YX", 2, "3d", "3D mode needs a 3D model"),
        ((5, 20, 30), "ZYX", 3, "2d", "plane by plane"),
        ((20, 30), "YX", 3, "auto", "no Z axis"),
        ((20, 30), "YX", 2, "fast", "mode must be one of"),
    ],
)
def test_plan_axes_errors(shape, axes, dims, mode, fragment):
    with pytest.raises(SegmentationError, match=fragment):
        plan_axes(shape, axes, spatial_dims=dims, mode=mode)


# --- layouts through the predictor -------------------------------------------------------

def _same_values_stack(rng, n: int, shape=(20, 24)) -> np.ndarray:
    """``n`` planes holding the same values in different places, whose
    percentiles equal those of the whole stack.

    The darkest 2 % of the values are 0 and the brightest 1 % are 1000, so the
    1st and 99.8th percentiles are exactly 0 and 1000 for the stack and for each
    plane (interpolating between equal neighbours). Normalising the stack or a
    plane alone then gives the same numbers, and a plane can be compared with the
    prediction of that plane on its own.
    """
    values = np.sort(rng.random(int(np.prod(shape))).astype(np.float32) * 1000)
    values[: values.size // 50] = 0
    values[-(values.size // 100) :] = 1000
    return np.stack([rng.permutation(values).reshape(shape) for _ in range(n)])


@pytest.fixture
def recorded_arrays(monkeypatch):
    """Record the shape of every array handed to Predictor.iter_array."""
    shapes: list[tuple[int, ...]] = []
    original = Predictor.iter_array

    def spy(self, x):
        shapes.append(x.shape)
        return (yield from original(self, x))

    monkeypatch.setattr(Predictor, "iter_array", spy)
    return shapes


def test_yx(models, rng):
    image = rng.random((37, 53))
    probs = predict(image, str(models["2d"]))
    assert probs.shape == (2, 37, 53) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_rgb_becomes_grey_for_a_one_channel_model(models, rng):
    rgb = rng.integers(0, 256, size=(24, 28, 3), dtype=np.uint8)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    probs = predict(rgb, str(models["2d"]))
    assert probs.shape == (2, 24, 28)
    np.testing.assert_allclose(probs, predict(grey, str(models["2d"])), atol=1e-5)
    # Channels first, stated: the same image, the same answer.
    cyx = np.moveaxis(rgb, -1, 0)
    np.testing.assert_allclose(predict(cyx, str(models["2d"]), axes="CYX"), probs, atol=1e-5)


def test_channel_picks_one_channel(models, rng):
    image = rng.random((24, 28, 3)).astype(np.float32)
    probs = predict(image, str(models["2d"]), channel=1)
    np.testing.assert_allclose(probs, predict(image[..., 1], str(models["2d"])), atol=1e-5)


def test_two_channel_model_with_yxc_and_cyx(models, rng):
    image = rng.random((24, 28, 2)).astype(np.float32)
    image[..., 1] *= 50  # channels on different scales, normalised one by one
    probs = predict(image, str(models["2d_in2"]))  # YXC inferred from the model
    assert probs.shape == (2, 24, 28)
    cyx = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    np.testing.assert_allclose(predict(cyx, str(models["2d_in2"]), axes="CYX"), probs,
                               atol=1e-5)
    # Swapping the channels changes the answer: both channels reach the network.
    swapped = predict(image[..., ::-1], str(models["2d_in2"]))
    assert np.abs(swapped - probs).max() > 1e-3


@pytest.mark.parametrize("mode", ["2d", "auto"])
def test_zyx_with_a_2d_model_goes_plane_by_plane(models, rng, recorded_arrays, mode):
    stack = _same_values_stack(rng, 5)
    probs = predict(stack, str(models["2d"]), mode=mode)
    assert probs.shape == (2, 5, 20, 24)
    assert recorded_arrays == [(1, 20, 24)] * 5
    recorded_arrays.clear()
    for z in (0, 3):
        np.testing.assert_allclose(probs[:, z], predict(stack[z], str(models["2d"])),
                                   atol=1e-5)


def test_zyx_with_a_3d_model_goes_whole_volume(models, rng, recorded_arrays):
    volume = rng.random((7, 19, 23)).astype(np.float32)
    probs = predict(volume, str(models["3d"]), mode="3d")
    assert probs.shape == (2, 7, 19, 23)
    assert recorded_arrays == [(1, 7, 19, 23)]
    np.testing.assert_allclose(predict(volume, str(models["3d"])), probs, atol=1e-6)  # auto


def test_tyx_streams_one_plane_at_a_time(models, rng, recorded_arrays):
    series = _same_values_stack(rng, 4)
    probs = predict(series, str(models["2d"]), axes="TYX")
    assert probs.shape == (2, 4, 20, 24)
    assert recorded_arrays == [(1, 20, 24)] * 4
    for t in range(4):
        np.testing.assert_allclose(probs[:, t], predict(series[t], str(models["2d"])),
                                   atol=1e-5)


def test_tzyx_with_2d_and_3d_models(models, rng, recorded_arrays):
    data = rng.random((2, 4, 12, 16)).astype(np.float32)
    probs = predict(data, str(models["2d"]))
    assert probs.shape == (2, 2, 4, 12, 16)
    assert recorded_arrays == [(1, 12, 16)] * 8
    recorded_arrays.clear()
    probs3 = predict(data, str(models["3d"]))
    assert probs3.shape == (2, 2, 4, 12, 16)
    assert recorded_arrays == [(1, 4, 12, 16)] * 2


def test_tzyxc_rgb(models, rng, recorded_arrays):
    data = rng.integers(0, 255, size=(2, 4, 12, 16, 3)).astype(np.uint8)
    probs = predict(data, str(models["2d"]))
    assert probs.shape == (2, 2, 4, 12, 16)
    assert recorded_arrays == [(1, 12, 16)] * 8


def test_stated_axes_change_the_reading(models, rng):
    """(3, 20, 24) is a 3-plane stack unless stated to be channels first."""
    image = rng.random((3, 20, 24)).astype(np.float32)
    assert predict(image, str(models["2d"])).shape == (2, 3, 20, 24)
    assert predict(image, str(models["2d"]), axes="CYX").shape == (2, 20, 24)


def test_stated_xy_keeps_the_input_layout(models, rng):
    image = rng.random((30, 20)).astype(np.float32)
    probs = predict(image, str(models["2d"]), axes="XY")
    assert probs.shape == (2, 30, 20)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_stated_xy_means_the_transposed_image(models, rng):
    """The network always sees Y then X: 'XY' input gives the transposed answer."""
    image = rng.random((30, 20)).astype(np.float32)
    as_yx = predict(image, str(models["2d"]))
    as_xy = predict(np.ascontiguousarray(image.T), str(models["2d"]), axes="XY")
    np.testing.assert_allclose(as_xy, as_yx.transpose(0, 2, 1), atol=1e-5)


def test_trailing_loop_axis(models, rng, recorded_arrays):
    """A loop axis after Y and X ("YXT") is streamed like a leading one."""
    series = np.moveaxis(_same_values_stack(rng, 3), 0, -1)
    probs = predict(series, str(models["2d"]), axes="YXT")
    assert probs.shape == (2, 20, 24, 3)
    assert recorded_arrays == [(1, 20, 24)] * 3
    np.testing.assert_allclose(probs[..., 1], predict(series[..., 1], str(models["2d"])),
                               atol=1e-5)


def test_labelled_last_moves_the_labelled_axes_to_the_end_in_order():
    assert labelled_last("ZTYX", "ZYX") == [1, 0, 2, 3]
    assert labelled_last("TZYX", "ZYX") == [0, 1, 2, 3]
    assert labelled_last("YXT", "YX") == [2, 0, 1]
    assert labelled_last("TZYX", "YX") == [0, 1, 2, 3]
    assert labelled_last("YXZ", "ZYX") == [2, 0, 1]  # Z first: holes are filled per Z plane


def test_a_3d_array_is_a_volume_for_a_one_channel_3d_model():
    """A 4 x 4 x 4 volume (the minimum size) is not an RGBA image to a 3D model."""
    assert infer_axes((4, 4, 4)) == "YXC"  # to a 2D model, a last size of 4 is RGBA
    assert infer_axes((4, 4, 4), spatial_dims=3) == "ZYX"
    assert infer_axes((4, 4, 4), spatial_dims=3, in_channels=4) == "YXC"  # a 4-channel model: channels
    assert plan_axes((4, 4, 3), spatial_dims=3).axes == "ZYX"
