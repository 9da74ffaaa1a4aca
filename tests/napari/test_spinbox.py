"""DecimalSpinBox: a value shows the decimals it has, from a least number up to the precision."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QLocale

from napari_unet._napari.spinbox import DecimalSpinBox

pytestmark = pytest.mark.gui


def shown(box: DecimalSpinBox) -> str:
    return box.native.lineEdit().text()


def test_values_show_their_own_decimals(qapp):
    box = DecimalSpinBox(0.5, min=0.001, max=0.999, step=0.05, decimals=3, least=2, label="Threshold")
    assert (shown(box), box.value, box.step, box.label) == ("0.50", 0.5, 0.05, "Threshold")
    for value, text in ((0.7, "0.70"), (0.375, "0.375"), (0.001, "0.001"), (0.12345, "0.123")):
        box.value = value
        assert shown(box) == text
    assert box.value == pytest.approx(0.123)  # rounded to the precision, as it shows
    percentile = DecimalSpinBox(99.8, min=0.0, max=100.0, step=0.05, decimals=4)
    assert shown(percentile) == "99.8" and (percentile.min, percentile.max) == (0.0, 100.0)
    percentile.value = 99.9995
    assert shown(percentile) == "99.9995" and percentile.value == 99.9995
    percentile.value = 1.0
    assert shown(percentile) == "1"


def test_typed_values_keep_the_precision(qapp):
    box = DecimalSpinBox(0.5, min=0.001, max=0.999, step=0.05, decimals=3, least=2)
    box.native.lineEdit().setText("0.425")  # finer than the two decimals shown
    box.native.interpretText()
    assert box.value == pytest.approx(0.425) and shown(box) == "0.425"
    box.native.stepBy(1)  # the arrows move by the step
    assert box.value == pytest.approx(0.475)


def test_the_locale_decimal_mark_is_kept(qapp):
    box = DecimalSpinBox(1.0, min=0.0, max=2000.0, step=0.5, decimals=3)
    box.native.setLocale(QLocale(QLocale.Language.German, QLocale.Country.Germany))
    box.value = 1234.5
    assert shown(box) == "1234,5"  # no thousands separator, as Qt's own box
    box.native.lineEdit().setText("0,25")
    box.native.interpretText()
    assert box.value == pytest.approx(0.25)


def test_a_magicgui_without_its_private_spin_box_gives_a_plain_one(qapp, monkeypatch):
    """The trimmed box builds on a private magicgui module: should a later magicgui move it, the
    widgets still open, with magicgui's own spin box (decimals padded) doing the same job."""
    from magicgui.backends._qtpy import widgets

    from napari_unet._napari import spinbox

    monkeypatch.delattr(widgets, "FloatSpinBox")  # moved elsewhere
    spinbox._backend.cache_clear()
    try:
        box = DecimalSpinBox(0.5, min=0.001, max=0.999, step=0.05, decimals=3, least=2)
        assert shown(box) == "0.500" and box.value == 0.5
        box.value = 0.375
        assert shown(box) == "0.375"
    finally:
        spinbox._backend.cache_clear()
