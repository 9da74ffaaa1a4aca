"""Everything a user can get wrong is a SegmentationError that says what went wrong."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

import napari_unet
from napari_unet.errors import SegmentationError
from napari_unet.io import read_image_file


def _with(value, shape=(16, 16), at=(3, 4)):
    image = np.ones(shape, np.float32)
    image[at] = value
    return image


# (case id, image, model: a key of the ``models`` fixture or "missing"/"garbage",
#  keyword arguments, a fragment of the message)
CASES = [
    ("empty array", np.array([]), "2d", {}, "empty"),
    ("zero-size axis", np.zeros((0, 16)), "2d", {}, "empty"),
    ("zero-size axis 3d", np.zeros((4, 16, 0)), "2d", {}, "empty"),
    ("one pixel", np.zeros((1, 1)), "2d", {}, "too small"),
    ("axis below minimum", np.zeros((3, 40)), "2d", {}, "too small"),
    # ImageJ's TZCYX order, guessed as TZYXC: the message says the axes were a guess, and how to give them.
    ("guessed axes too small", np.zeros((1, 2, 1, 32, 32)), "2d", {}, "axes='TZCYX', say"),
    # An RGB image given the axes of a stack: its 3 colours are X; the message says the axes were given.
    ("given axes too small", np.zeros((32, 32, 3)), "2d", {"axes": "ZYX"},
     "axis X has 3 pixels.*These are the axes given: if the image's axes are others, give them \\(axes='YXC'"),
    ("1d array", np.zeros(16), "2d", {}, "at least 2 dimensions"),
    ("six dimensions", np.zeros((2, 2, 2, 2, 8, 8)), "2d", {}, "at most 5 dimensions"),
    ("nan", _with(np.nan), "2d", {}, "NaN or infinite"),
    ("inf", _with(np.inf), "2d", {}, "NaN or infinite"),
    ("-inf in a stack", _with(-np.inf, (3, 16, 16), (2, 5, 5)), "2d", {}, "NaN or infinite"),
    ("bool", np.ones((16, 16), bool), "2d", {}, "boolean, black and white only"),
    ("bool: what a command-line user can do", np.ones((16, 16), bool), "2d", {}, "save it as 8-bit"),
    ("complex", np.ones((16, 16), np.complex64), "2d", {}, "complex"),
    ("object dtype", np.ones((16, 16), object), "2d", {}, "Unsupported image dtype"),
    ("2-channel model, 1-channel image", np.ones((16, 16)), "2d_in2", {},
     "takes 2 channels, but the image has 1"),
    ("1-channel model, 2-channel image", np.ones((16, 16, 2)), "2d", {"axes": "YXC"},
     "takes 1 channel, but the image has 2"),
    ("channel out of range", np.ones((16, 16, 3)), "2d", {"channel": 3},
     "channel=3 but the image has 3"),
    # A stack of two stains stored first reads as ZYX: the message names the missing C, not "1 channel".
    ("channel of a guess without C", np.ones((2, 16, 16)), "2d", {"channel": 1}, "axes='CYX' for channels first"),
    # Two stains of a series saved without axes read as TZYX: the examples have four letters too.
    ("channel of a 4D guess without C", np.ones((3, 2, 16, 16)), "2d", {"channel": 1},
     "axes='TCYX' for channels first, 'TYXC' for channels last"),
    ("channel of a series given without C", np.ones((3, 16, 16)), "2d", {"channel": 1, "axes": "TYX"},
     "axes='CYX' for channels first, 'YXC' for channels last"),
    # A 2D grey image cannot be given a C axis: the message must not ask for one.
    ("channel of a 2D grey image", np.ones((16, 16)), "2d", {"channel": 1}, "grey plane.*leave channel out"),
    ("channel of a 2D grey image, axes given", np.ones((16, 16)), "2d", {"channel": 1, "axes": "YX"},
     "grey plane.*leave channel out"),
    ("channel= with a 2-channel model", np.ones((16, 16, 2)), "2d_in2", {"channel": 0},
     "channel= only applies to 1-channel models"),
    ("axes too long", np.ones((16, 16)), "2d", {"axes": "ZYX"}, "has 3 letters"),
    ("axes too short", np.ones((4, 16, 16)), "2d", {"axes": "YX"}, "has 2 letters"),
    ("unknown axis letter", np.ones((16, 16)), "2d", {"axes": "QX"}, "Invalid axes"),
    ("duplicate axis letter", np.ones((16, 16)), "2d", {"axes": "YY"}, "Invalid axes"),
    ("no X axis", np.ones((4, 16, 16)), "2d", {"axes": "TZY"}, "Invalid axes"),
    ("model path missing", np.ones((16, 16)), "missing", {}, "not found"),
    ("model path unreadable", np.ones((16, 16)), "garbage", {}, "unreadable or not JSON"),
    ("3d mode, 2d model", np.ones((8, 16, 16)), "2d", {"mode": "3d"},
     "3D mode needs a 3D model"),
    ("2d mode, 3d model", np.ones((8, 16, 16)), "3d", {"mode": "2d"}, "plane by plane"),
    ("3d model, 2d image", np.ones((16, 16)), "3d", {}, "no Z axis"),
    # The test networks take multiples of 4, and tiles of 4 multiples at least.
    ("tile too small", np.ones((32, 32)), "2d", {"tile_size": 8}, ("tile_size 8 is too small for the model 2d: "
                                                                  "give at least 16")),
    ("scale zero", np.ones((16, 16)), "2d", {"scale": 0}, "between 0.1 and 10"),
    ("scale huge", np.ones((16, 16)), "2d", {"scale": 50}, "between 0.1 and 10"),
    ("scale not a number", np.ones((16, 16)), "2d", {"scale": "big"}, "must be a number or 'auto'"),
    ("auto scale, no reference size", np.ones((16, 16)), "2d", {"scale": "auto"},
     "no reference object size"),
]


@pytest.mark.parametrize(("image", "model", "kwargs", "fragment"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(models, tmp_path, image, model, kwargs, fragment):
    if model == "missing":
        path = tmp_path / "no-such-model"
    elif model == "garbage":
        path = tmp_path / "garbage-model"
        path.mkdir()
        (path / "config.json").write_text("{this is not json")
        (path / "weights.safetensors").write_bytes(b"\x00" * 64)
    else:
        path = models[model]
    with pytest.raises(SegmentationError, match=fragment) as info:
        napari_unet.segment(image, model=str(path), device="cpu", **kwargs)
    # A message a user can act on: a sentence, not a bare code.
    assert len(str(info.value)) > 30


def test_a_file_as_read_is_refused_saying_to_give_its_pixels_and_axes(models, tmp_path):
    """read_image_file's result given as the image: one short line (not the pixels' repr) that
    says to give its pixels with the file's axes."""
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, np.ones((3, 16, 16), np.uint8), imagej=True, metadata={"axes": "TYX"})
    read = read_image_file(path)
    with pytest.raises(SegmentationError, match=re.escape("segment(read.image, axes=read.axes)")) as info:
        napari_unet.segment(read, model=str(models["2d"]), device="cpu")
    assert "array([" not in str(info.value)


def test_a_stack_too_thin_for_a_3d_model_gets_no_hint_to_read_it_without_z(models):
    """One plane (or three) for a 3D model: too few planes, said plainly; axes='CYX' would
    have no Z axis, which a 3D model refuses too, so it is not suggested."""
    for planes in (1, 3):
        with pytest.raises(SegmentationError, match="axis Z has") as info:
            napari_unet.segment(np.ones((planes, 32, 32), np.float32), model=str(models["3d"]), device="cpu")
        assert "CYX" not in str(info.value)
