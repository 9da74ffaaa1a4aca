"""``napari_unet.wording``: counts with their nouns."""

from __future__ import annotations

import pytest

from napari_unet.wording import plural


@pytest.mark.parametrize(("count", "expected"), [(0, "0 objects"), (1, "1 object"), (2, "2 objects")])
def test_plural_adds_an_s_to_any_count_but_one(count, expected):
    assert plural(count, "object") == expected


def test_plural_takes_an_irregular_form():
    assert plural(1, "was", "were") == "1 was"
    assert plural(3, "was", "were") == "3 were"
