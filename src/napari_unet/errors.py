"""The one exception type the engine raises for problems a user can fix."""

from __future__ import annotations


class SegmentationError(ValueError):
    """Bad input, a missing or broken model file, or an unavailable device.

    The message says what went wrong and what to do next; the command line and
    the napari widget show it as it is, without a traceback.
    """


def describe(exc: BaseException) -> str:
    """``"TypeName: first line of its message"`` (the type alone when it has none), for one-line reports."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
