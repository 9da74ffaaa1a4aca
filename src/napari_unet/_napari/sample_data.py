"""Sample data: a real fluorescence image of nuclei and its ground-truth labels.

The files are one image of the 2018 Data Science Bowl (BBBC038v1, CC0); see
``napari_unet/data/README.md`` for the source, licence and citation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = ["nuclei_sample", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_ATTRIBUTION = {
    "source": "2018 Data Science Bowl stage 1 train (BBBC038v1), community-fixed version",
    "image_id": "9620c33d8ef2772dbc5bd152429f507bd7fafb27e12109003292b671e556b089",
    "license": "CC0 1.0",
    "citation": "Caicedo et al., Nature Methods 16:1247-1253 (2019)",
}


def nuclei_sample() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """U2OS nuclei (Hoechst), 520 x 696, with 168 ground-truth nuclei.

    Returns
    -------
    list of layer data tuples
        The image (``"nuclei"``) and its labels (``"nuclei ground truth"``, at
        low opacity so the image shows through).
    """
    image = tifffile.imread(DATA_DIR / "nuclei.tif")
    labels = tifffile.imread(DATA_DIR / "nuclei_labels.tif")
    meta = dict(_ATTRIBUTION)
    return [
        (image, {"name": "nuclei", "metadata": meta, "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "metadata": meta, "opacity": 0.4}, "labels"),
    ]
