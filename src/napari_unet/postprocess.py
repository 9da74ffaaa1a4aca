"""Class probabilities -> semantic mask (and seeds for splitting instances)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "semantic_from_probabilities",
    "seeds_from_probabilities",
    "foreground_probability",
    "watershed_elevation",
]


def foreground_probability(probabilities: np.ndarray, *, target: str) -> np.ndarray:
    """Probability of "any object", shape ``probabilities.shape[1:]``.

    For ``three_class`` models it is interior + boundary; for ``semantic``
    models it is one minus the background.
    """
    return 1.0 - probabilities[0]


def semantic_from_probabilities(
    probabilities: np.ndarray, *, target: str = "semantic", threshold: float = 0.5
) -> np.ndarray:
    """Semantic labels from class probabilities.

    Parameters
    ----------
    probabilities : ndarray (K, ...) float
        Class probabilities, class 0 is background.
    target : {"semantic", "three_class"}
        What the classes mean (see :class:`~napari_unet.checkpoint.ModelConfig`).
    threshold : float
        With one foreground class (K == 2, or three_class), a pixel is
        foreground when its foreground probability exceeds this.

    Returns
    -------
    ndarray (...) uint8
        0 for background; 1 for nucleus (three_class, or K == 2); the argmax
        class for K > 2 semantic models.
    """
    if target == "three_class" or probabilities.shape[0] == 2:
        fg = foreground_probability(probabilities, target=target)
        return (fg > threshold).astype(np.uint8)
    return np.argmax(probabilities, axis=0).astype(np.uint8)


def seeds_from_probabilities(
    probabilities: np.ndarray, *, target: str, seed_threshold: float = 0.5
) -> np.ndarray | None:
    """Object interiors that seed a watershed, or None for plain semantic models.

    Returns
    -------
    ndarray (...) bool or None
        Where the interior class probability exceeds ``seed_threshold``.
    """
    if target != "three_class":
        return None
    return probabilities[1] > seed_threshold


def watershed_elevation(probabilities: np.ndarray) -> np.ndarray:
    """The landscape a watershed floods: low inside objects, high at their rims.

    One minus the interior probability, quantised to uint8 (256 levels are
    plenty for ordering the flood, take a quarter of float32's memory for a
    stack, and flood faster).

    Parameters
    ----------
    probabilities : ndarray (3, ...) float, background / interior / boundary

    Returns
    -------
    ndarray (...) uint8
    """
    return np.round((1.0 - probabilities[1]) * 255.0).astype(np.uint8)
