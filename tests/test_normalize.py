"""Percentile normalisation: ranges per channel, dtypes, constant and non-finite images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.errors import SegmentationError
from napari_unet.normalize import apply_range, check_dtype, normalize, percentile_range

ALL_DTYPES = ["uint8", "uint16", "int16", "int32", "uint32", "int64",
              "float16", "float32", "float64"]


def test_default_percentiles_are_1_and_99_8(rng):
    image = rng.gamma(2.0, 50.0, size=(64, 80))
    lo, hi = percentile_range(image)
    expected_lo, expected_hi = np.percentile(image, [1.0, 99.8])
    np.testing.assert_allclose(lo, [expected_lo])
    np.testing.assert_allclose(hi, [expected_hi])
    out = normalize(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, (image - expected_lo) / (expected_hi - expected_lo),
                               rtol=1e-5, atol=1e-5)
    # Not clipped: the brightest 0.2 % lie above one and the darkest 1 % below zero.
    assert out.max() > 1.0 and out.min() < 0.0
    assert np.isclose(np.mean(out < 0), 0.01, atol=0.002)


def test_each_channel_is_normalised_on_its_own(rng):
    a = rng.normal(10, 1, size=(40, 50))
    b = rng.normal(1000, 300, size=(40, 50))
    image = np.stack([a, b], axis=-1)
    lo, hi = percentile_range(image, channel_axis=-1)
    np.testing.assert_allclose(lo, [np.percentile(a, 1), np.percentile(b, 1)])
    np.testing.assert_allclose(hi, [np.percentile(a, 99.8), np.percentile(b, 99.8)])
    out = normalize(image, channel_axis=-1)
    for c, ch in enumerate((a, b)):
        p1, p998 = np.percentile(ch, [1, 99.8])
        np.testing.assert_allclose(out[..., c], (ch - p1) / (p998 - p1), rtol=1e-5, atol=1e-5)


def test_custom_percentiles():
    image = np.arange(101, dtype=np.float64).reshape(1, 101)  # values 0..100
    lo, hi = percentile_range(image, low=10, high=90)
    assert lo[0] == pytest.approx(10.0) and hi[0] == pytest.approx(90.0)
    out = normalize(image, low=10, high=90)
    assert out[0, 10] == pytest.approx(0.0) and out[0, 90] == pytest.approx(1.0)
    assert out[0, 50] == pytest.approx(0.5)


@pytest.mark.parametrize(("low", "high"), [(50, 50), (60, 40), (-1, 99), (1, 101)])
def test_bad_percentiles(low, high):
    with pytest.raises(SegmentationError, match="Percentiles"):
        percentile_range(np.ones((4, 4)), low=low, high=high)


def test_subsample_stays_close_to_the_full_percentiles(rng):
    image = rng.normal(0, 1, size=(300, 300))
    lo, hi = percentile_range(image, max_samples=10_000)
    full_lo, full_hi = np.percentile(image, [1, 99.8])
    # A strided subsample of about 10k of 90k values estimates the tails closely.
    assert abs(lo[0] - full_lo) < 0.15
    assert abs(hi[0] - full_hi) < 0.4


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_constant_image_gives_zeros(dtype):
    image = np.full((20, 30), 7, dtype=dtype)
    out = normalize(image)
    assert np.all(np.isfinite(out))
    assert np.all(out == 0)


@pytest.mark.parametrize("factor", [1e-9, 1e-30, 1e9])
def test_tiny_or_huge_values_are_not_taken_for_a_constant_image(rng, factor):
    """Intensities in watts or photon counts: the scale of the values does not matter."""
    image = rng.random((20, 30)) + 0.5
    np.testing.assert_allclose(normalize(image * factor), normalize(image), rtol=1e-4, atol=1e-4)
    assert np.all(normalize(np.full((8, 8), 3e-12)) == 0)


def test_small_range_on_a_large_offset_or_denormal_values():
    for base, step, dtype in ((1e7, 3, np.float32), (3e9, 1000, np.uint32), (1e12, 1e4, np.int64)):
        offset = np.full((10, 10), base, dtype)
        offset[:5] += dtype(step)
        out = normalize(offset)
        assert out.min() == 0 and out.max() == 1, (base, dtype)
    huge = np.linspace(-3e38, 3e38, 100, dtype=np.float32).reshape(10, 10)
    out = normalize(huge)
    assert np.all(np.isfinite(out)) and out.max() > 0.99
    assert np.all(np.isfinite(normalize(np.linspace(0, 1e39, 100).reshape(10, 10))))
    # float64 near its limit: hi - lo itself overflows, yet the image is a plain ramp.
    edge = np.linspace(-1, 1, 100).reshape(10, 10) * 1.7e308
    np.testing.assert_allclose(normalize(edge), normalize(np.linspace(-1, 1, 100).reshape(10, 10)), atol=1e-6)
    # And a range near float64's smallest normal numbers.
    np.testing.assert_allclose(normalize(np.linspace(0, 1e-308, 100).reshape(10, 10)),
                               normalize(np.linspace(0, 1, 100).reshape(10, 10)), atol=1e-5)
    tiny = (np.arange(100, dtype=np.float32).reshape(10, 10) + 1) * np.float32(1e-40)
    out = normalize(tiny)
    assert np.all(np.isfinite(out)) and out.max() > 0.99 and out.min() < 0.01


def test_constant_channel_next_to_a_varying_one(rng):
    image = np.stack([np.full((10, 10), 3.0), rng.random((10, 10))])
    out = normalize(image, channel_axis=0)
    assert np.all(out[0] == 0)
    assert out[1].std() > 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    image = np.ones((16, 16), np.float32)
    image[3, 4] = bad
    with pytest.raises(SegmentationError, match="NaN or infinite"):
        normalize(image)
    with pytest.raises(SegmentationError, match="NaN or infinite"):
        apply_range(image[None], np.zeros(1), np.ones(1))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_real_dtype_works(dtype):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    ramp = np.linspace(0, 1, 40 * 50).reshape(40, 50)
    if info is not None:
        # Use a good part of the dtype's range, negative values included when allowed.
        low = max(info.min, -1000) if info.min < 0 else 0
        image = (low + ramp * min(info.max - low, 60_000)).astype(dtype)
    else:
        image = (ramp * 100 - 20).astype(dtype)
    check_dtype(image.dtype)
    out = normalize(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.all(np.isfinite(out))
    p1, p998 = np.percentile(image.astype(np.float64), [1, 99.8])
    expected = (image.astype(np.float64) - p1) / (p998 - p1)
    np.testing.assert_allclose(out, expected, atol=2e-3)


@pytest.mark.parametrize(
    ("dtype", "fragment"),
    [("bool", "boolean"), ("complex64", "complex"), ("complex128", "complex"),
     ("U3", "Unsupported"), ("object", "Unsupported")],
)
def test_unusable_dtypes_are_refused(dtype, fragment):
    with pytest.raises(SegmentationError, match=fragment):
        check_dtype(np.dtype(dtype))
    if dtype in ("bool", "complex64", "complex128"):
        with pytest.raises(SegmentationError, match=fragment):
            normalize(np.zeros((8, 8), dtype=dtype))
