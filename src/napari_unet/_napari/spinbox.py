"""A spin box for decimal numbers that shows the digits its value has, not a fixed count.

Qt's spin box pads every value to its precision: a threshold that a model may tune to
0.375 showed 0.500, a percentile that may be 99.9995 showed 99.8000. :class:`DecimalSpinBox`
keeps the precision (what can be typed, and what is used) but drops the trailing zeros
beyond a least number of decimals: 0.50 and 0.375 (least 2), 1 and 99.9995 (least 0).
"""

from __future__ import annotations

import functools
from typing import Any

from magicgui.widgets.bases import RangedWidget
from qtpy.QtWidgets import QDoubleSpinBox

__all__ = ["DecimalSpinBox"]


class _TrimmedSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox that shows its value without trailing zeros past ``least_decimals``."""

    least_decimals = 0

    def textFromValue(self, value: float) -> str:
        locale = self.locale()
        text = locale.toString(float(value), "f", self.decimals())
        if not self.isGroupSeparatorShown():
            text = text.replace(locale.groupSeparator(), "")
        whole, point, fraction = text.partition(locale.decimalPoint())
        fraction = fraction.rstrip("0").ljust(self.least_decimals, "0")
        return f"{whole}{point}{fraction}" if fraction else whole


@functools.cache
def _backend() -> type:
    """magicgui's Qt float spin box built on :class:`_TrimmedSpinBox`; its plain one (padded
    decimals) should a later magicgui move the private module the first comes from."""
    try:
        from magicgui.backends._qtpy import widgets as qt_backend

        class _QtDecimalSpinBox(qt_backend.FloatSpinBox):
            def __init__(self, **kwargs: Any) -> None:
                qt_backend.QBaseRangedWidget.__init__(self, _TrimmedSpinBox, **kwargs)

    except (ImportError, AttributeError):
        from magicgui.application import use_app

        return use_app().get_obj("FloatSpinBox")
    return _QtDecimalSpinBox


class DecimalSpinBox(RangedWidget[float]):
    """magicgui's ``FloatSpinBox``, showing its value with the decimals it needs.

    Parameters
    ----------
    value : float
        The starting value.
    min, max, step : float
        The range, and the step of the arrows and the mouse wheel.
    decimals : int
        The precision: values are rounded to this many decimals, and as many can be typed.
    least : int
        The fewest decimals shown (trailing zeros fill up to it): 2 shows 0.5 as 0.50.
    **kwargs
        Passed to magicgui's widget (``label``, ``tooltip``…).
    """

    def __init__(self, value: float, *, min: float, max: float, step: float,
                 decimals: int, least: int = 0, **kwargs: Any) -> None:
        super().__init__(widget_type=_backend(), **kwargs)
        self.native.setDecimals(decimals)  # first: Qt rounds the range to the decimals it has
        self.native.least_decimals = least  # read by _TrimmedSpinBox alone
        self.min, self.max, self.step = min, max, step
        self.value = value
