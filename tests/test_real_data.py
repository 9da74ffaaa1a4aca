"""The bundled model on real microscopy: the shipped 2D sample and a real 3D stack.

The 3D volumes come from the project's shared data (QCANet / BBBC050 mouse
embryos, 8- and 16-cell stages), read from ``../shared/data`` beside the repository, as
CI lays it out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_unet
from napari_unet.metrics import match_instances

DATA = Path(napari_unet.__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei3d" / "qcanet_bbbc050_3d"


def test_bundled_model_segments_the_bundled_sample():
    image = tifffile.imread(DATA / "nuclei.tif")
    truth = tifffile.imread(DATA / "nuclei_labels.tif").astype(np.int32)
    result = napari_unet.segment(image, device="cpu", keep_probabilities=False)
    assert result.semantic.shape == image.shape and result.instances.shape == image.shape
    scores = match_instances(truth, result.instances, thresholds=(0.5, 0.75))
    # 168 touching nuclei: a working model finds nearly all of them.
    assert scores[0].ap >= 0.8, scores[0]
    assert scores[1].ap >= 0.5, scores[1]
    assert result.metadata["model"] == "nuclei"


@pytest.mark.parametrize("stage, nuclei", [("8_cell_stage", 8), ("16_cell_stage", 16)])
def test_bundled_2d_model_on_a_real_z_stack_labels_nuclei_in_3d(stage, nuclei):
    if not SHARED.is_dir():  # pragma: no cover - CI always has ../shared
        pytest.fail(f"shared data not found at {SHARED}")
    image = tifffile.imread(SHARED / "images" / f"{stage}.tif")
    truth = tifffile.imread(SHARED / "masks" / f"{stage}.tif").astype(np.int32)
    assert image.ndim == 3 and image.dtype == np.uint16
    result = napari_unet.segment(image, device="cpu", keep_probabilities=False)
    assert result.axes == "ZYX" and result.metadata["mode"] == "2d"
    # min_size 24 is a cross-section's area: labelled in 3D, objects need the 88 voxels of a ball as wide.
    assert result.metadata["min_size"] == 24 and result.metadata["min_volume"] == 88
    assert result.instances.shape == image.shape
    # Planes are segmented one by one but labelled together: each nucleus is one
    # 3D object spanning many planes, not one label per plane. Nuclei touching in 3D (one
    # pair in the 8-cell stack, two in the 16-cell one) are found only by the neck cut.
    score = match_instances(truth, result.instances, thresholds=(0.5,))[0]
    assert score.tp == int(truth.max()) == nuclei
    assert score.fp <= 2
    planes_per_object = [len(np.unique(np.nonzero(result.instances == i)[0]))
                         for i in range(1, result.instances.max() + 1)]
    assert np.median(planes_per_object) >= 5
