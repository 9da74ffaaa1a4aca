"""Class probabilities -> semantic labels and watershed seeds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.postprocess import (
    foreground_probability,
    seeds_from_probabilities,
    semantic_from_probabilities,
)


def _probs(*maps) -> np.ndarray:
    out = np.stack([np.asarray(m, np.float32) for m in maps])
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-6)
    return out


def test_argmax_for_more_than_one_object_class():
    p0 = [[0.8, 0.1, 0.2, 0.3]]
    p1 = [[0.1, 0.7, 0.3, 0.3]]
    p2 = [[0.1, 0.2, 0.5, 0.4]]
    semantic = semantic_from_probabilities(_probs(p0, p1, p2), target="semantic")
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, [[0, 1, 2, 2]])


def test_argmax_does_not_use_the_threshold():
    # Background 0.4 is not the largest; class 2 wins with 0.35 over class 1's 0.25.
    probs = _probs([[0.4]], [[0.25]], [[0.35]])
    for threshold in (0.1, 0.5, 0.9):
        assert semantic_from_probabilities(probs, threshold=threshold)[0, 0] == 0
    probs = _probs([[0.3]], [[0.25]], [[0.45]])
    assert semantic_from_probabilities(probs, threshold=0.9)[0, 0] == 2


def test_many_classes_fit_uint8(rng):
    k = 12
    probs = rng.random((k, 5, 6)).astype(np.float32)
    probs /= probs.sum(axis=0)
    semantic = semantic_from_probabilities(probs)
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, probs.argmax(axis=0))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_threshold_for_one_foreground_class(threshold):
    fg = np.array([[0.0, 0.29, 0.31, 0.5, 0.51, 0.79, 0.81, 1.0]], np.float32)
    semantic = semantic_from_probabilities(_probs(1 - fg, fg), threshold=threshold)
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, (fg > threshold).astype(np.uint8))
    assert set(np.unique(semantic)) <= {0, 1}


def test_three_class_foreground_is_interior_plus_boundary():
    background = np.array([0.6, 0.4, 0.2, 0.45], np.float32)
    interior = np.array([0.3, 0.1, 0.7, 0.3], np.float32)
    boundary = 1 - background - interior
    probs = _probs(background, interior, boundary)
    np.testing.assert_allclose(foreground_probability(probs, target="three_class"),
                               interior + boundary, atol=1e-6)
    # Pixel 1 has most mass on the boundary, pixel 3 is split: both are objects,
    # though an argmax over three classes would call pixel 3 background.
    semantic = semantic_from_probabilities(probs, target="three_class", threshold=0.5)
    np.testing.assert_array_equal(semantic, [0, 1, 1, 1])
    assert semantic.dtype == np.uint8


def test_seeds_only_for_three_class():
    probs = _probs([0.1, 0.5, 0.9], [0.8, 0.3, 0.05], [0.1, 0.2, 0.05])
    seeds = seeds_from_probabilities(probs, target="three_class", seed_threshold=0.25)
    assert seeds.dtype == bool
    np.testing.assert_array_equal(seeds, [True, True, False])
    assert seeds_from_probabilities(probs, target="semantic") is None
