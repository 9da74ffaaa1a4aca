"""The one exception type the engine raises for problems a user can fix."""

from __future__ import annotations


class SegmentationError(ValueError):
    """Bad input, a missing or broken model file, or an unavailable device.

    The message says what went wrong and what to do next; the command line and
    the napari widget show it as it is, without a traceback.
    """
