"""The one exception type the engine raises for problems a user can fix."""

from __future__ import annotations

import math
import numbers
import os


class SegmentationError(ValueError):
    """Bad input, a missing or broken model file, or an unavailable device.

    The message says what went wrong and what to do next; the command line and
    the napari widget show it as it is, without a traceback.
    """


def describe(exc: BaseException) -> str:
    """``"TypeName: first line of its message"`` (the type alone when it has none), for one-line reports."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def refuse_file_name(value: object, what: str = "The image is", *, hint: str = "",
                     give: str = "its pixels with the axes the file declares: segment(read.image, axes=read.axes)",
                     reader: str = "read_image_file") -> None:
    """A SegmentationError when ``value`` is a file name (str, bytes or path) where an array is
    wanted (read as an array, it would be one text value, refused for some other reason).
    ``what`` names the argument with its verb ("The image is"); ``reader`` the function of
    :mod:`napari_unet.io` that reads such a file (``"read_labels"`` for label images), and
    ``give`` what of its result to give: by default :func:`~napari_unet.io.read_image_file`'s
    pixels with the axes the file declares, which :func:`~napari_unet.io.read_image` would drop
    (a TYX movie read without them passes for a z-stack)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        call = f"napari_unet.io.{reader}(path)"
        if reader == "read_image_file":
            call = f"read = {call}"
        raise SegmentationError(
            f"{what} a file name ({os.fsdecode(value)!r}), not an array: read the file first "
            f"({call} reads TIFF, PNG, JPEG and BMP as the command line does) and give {give}{hint}.")


def check_whole(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or a SegmentationError naming ``name`` when it is not a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SegmentationError(f"{name} must be a whole number >= {minimum}, not {value!r}.")
    return int(value)


def check_real(name: str, value: object, *, positive: bool) -> float:
    """``value`` as a float, or a SegmentationError when it is not a finite number > 0 (``positive``) or >= 0."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        raise SegmentationError(
            f"{name} must be a finite number {'> 0' if positive else '>= 0'}, not {value!r}.")
    return float(value)


def check_fraction(name: str, value: object, *, ends: bool = False) -> float:
    """``value`` as a float, or a SegmentationError when it is not a number between 0 and 1
    (strictly, unless ``ends`` admits 0 and 1 themselves)."""
    real = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if not real or not (0.0 <= value <= 1.0 if ends else 0.0 < value < 1.0):
        span = "from 0 to 1" if ends else "between 0 and 1"
        raise SegmentationError(f"{name} must be a number {span}, not {value!r}.")
    return float(value)
