"""Percentile normalisation per channel.

Every real integer and float dtype is accepted; boolean and complex arrays, and
arrays holding NaN or infinity, are refused with a :class:`SegmentationError`.
Percentiles come from an even subsample of at most ``max_samples`` values per
channel, so a large stack is never copied whole to compute them.
"""

from __future__ import annotations

import numpy as np

from .errors import SegmentationError

__all__ = ["check_dtype", "luminance", "percentile_range", "apply_range", "normalize"]

DEFAULT_LOW = 1.0
DEFAULT_HIGH = 99.8
NOT_FINITE = ("The image contains NaN or infinite values (a 32-bit image from Fiji often has NaN "
              "outside a region it was cleared or divided in). Replace them first, e.g. "
              "np.nan_to_num(image) in Python, or in Fiji with Process > Math > Remove NaNs..., "
              "or crop them away.")
"""The refusal of an image with NaN or infinite values, and what to do about them."""


def check_dtype(dtype: np.dtype) -> None:
    """Refuse dtypes that cannot hold an intensity image."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        raise SegmentationError(
            "The image is boolean, black and white only (a mask, or a 1-bit file?). Use an "
            "intensity image; to segment the mask itself, save it as 8-bit (from Python: "
            "image.astype('uint8'))."
        )
    if np.issubdtype(dtype, np.complexfloating):
        raise SegmentationError(
            "The image has a complex dtype. Take its magnitude (np.abs) or real part first."
        )
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise SegmentationError(f"Unsupported image dtype {dtype}: use integers or floats.")


def luminance(image: np.ndarray, *, channel_axis: int) -> np.ndarray:
    """Grey from the first three (RGB) channels, the ITU-R 601 weights, in float64.

    float32 would round large values (3e9 + 1000 in uint32) before they are normalised.

    Parameters
    ----------
    image : ndarray (..., C, ...) with C >= 3 at ``channel_axis``

    Returns
    -------
    ndarray float64, ``image``'s shape without ``channel_axis``
    """
    rgb = np.moveaxis(np.asarray(image), channel_axis, 0)[:3].astype(np.float64)
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _subsample(channel: np.ndarray, max_samples: int) -> np.ndarray:
    """An even, strided subsample of at most about ``max_samples`` values.

    Only the last two axes (Y, X) are strided: every plane of a stack or
    frame of a series is sampled.
    """
    size = int(np.prod(channel.shape))
    if size <= max_samples:
        return np.asarray(channel).ravel()
    strided = min(channel.ndim, 2)
    step = int(np.ceil((size / max_samples) ** (1.0 / strided)))
    sl = (slice(None),) * (channel.ndim - strided) + (slice(None, None, step),) * strided
    return np.asarray(channel[sl]).ravel()


def percentile_range(
    image: np.ndarray,
    *,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    channel_axis: int | None = None,
    max_samples: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentiles of each channel.

    Parameters
    ----------
    image : array (..., ) of any real dtype; numpy, dask or zarr
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    channel_axis : int or None
        Axis holding channels; ``None`` treats the image as one channel.
    max_samples : int
        Cap on the values read per channel.

    Returns
    -------
    lo, hi : ndarray (C,) float64
        C is 1 when ``channel_axis`` is None.
    """
    if not 0 <= low < high <= 100:
        raise SegmentationError(
            f"Percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}."
        )
    check_dtype(image.dtype)
    if channel_axis is None:
        channels = [image]
    else:
        channels = [np.take(image, c, axis=channel_axis) for c in range(image.shape[channel_axis])]
    lo, hi = [], []
    for ch in channels:
        sample = _subsample(ch, max_samples).astype(np.float64, copy=False)
        if not np.all(np.isfinite(sample)):
            raise SegmentationError(
                NOT_FINITE
            )
        p_lo, p_hi = np.percentile(sample, [low, high])
        lo.append(p_lo)
        hi.append(p_hi)
    return np.asarray(lo), np.asarray(hi)


def apply_range(block: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, channel_axis: int = 0) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 1 per channel; returns float32.

    A constant channel (``hi - lo`` zero, or below float64's resolution at
    the values' size) becomes all zeros rather than dividing by zero. The
    arithmetic is float64 (integers up to 2**53 exactly), so a small range on
    a large offset (1e7 + a few counts, or 3e9 + 1000 in uint32) or values of
    any magnitude are normalised like any other; the result is clipped to
    float32's finite range. NaN or infinity in ``block`` raise a
    SegmentationError.
    """
    x = np.asarray(block)
    if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
        raise SegmentationError(
            NOT_FINITE
        )
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    lo64 = np.asarray(lo, dtype=np.float64).reshape(shape)
    hi64 = np.asarray(hi, dtype=np.float64).reshape(shape)
    # In halves: hi - lo of two finite float64 values can overflow to infinity near
    # float64's limit, the difference of their halves cannot. A division (not a
    # reciprocal, which overflows for spans near 1e-308) keeps tiny ranges finite too.
    half_span = hi64 * 0.5 - lo64 * 0.5
    varies = half_span > 2.0 * np.spacing(np.maximum(np.abs(lo64), np.abs(hi64)))
    out = (x.astype(np.float64) * 0.5 - lo64 * 0.5) / np.where(varies, half_span, 1.0)
    out *= varies
    limit = float(np.finfo(np.float32).max)
    return np.clip(out, -limit, limit, out=out).astype(np.float32)


def normalize(
    image: np.ndarray,
    *,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Percentile-normalise a whole array (float32, same shape).

    ``low`` maps to 0 and ``high`` to 1 in each channel; values outside are not
    clipped. A constant image becomes zeros.
    """
    lo, hi = percentile_range(image, low=low, high=high, channel_axis=channel_axis)
    if channel_axis is None:
        return apply_range(np.asarray(image)[None], lo, hi, channel_axis=0)[0]
    return apply_range(image, lo, hi, channel_axis=channel_axis)
