"""Per-object measurements: hand-made labels whose sizes, centres and intensities are known."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from napari_unet.errors import SegmentationError
from napari_unet.measure import measure_objects, write_csv


def _two_objects() -> tuple[np.ndarray, np.ndarray]:
    """Labels 7 (a 2x3 block in the top-left corner) and 2 (a 2x2 block inside), and an image."""
    labels = np.zeros((6, 8), np.int32)
    labels[0:2, 0:3] = 7
    labels[3:5, 4:6] = 2
    image = np.arange(48, dtype=np.uint16).reshape(6, 8)
    return labels, image


def test_2d_rows_sizes_centres_border_and_intensities():
    labels, image = _two_objects()
    table = measure_objects(labels, axes="YX", image=image)
    assert list(table) == ["label", "area", "centroid_y", "centroid_x", "touches_border",
                           "axis_major_length", "axis_minor_length", "eccentricity",
                           "mean_intensity", "sum_intensity"]
    assert table["label"].tolist() == [2, 7]  # sorted by id
    assert table["area"].tolist() == [4, 6]
    np.testing.assert_allclose(table["centroid_y"], [3.5, 0.5])
    np.testing.assert_allclose(table["centroid_x"], [4.5, 1.0])
    assert table["touches_border"].tolist() == [False, True]
    inner = image[3:5, 4:6].astype(float)
    corner = image[0:2, 0:3].astype(float)
    np.testing.assert_allclose(table["mean_intensity"], [inner.mean(), corner.mean()])
    np.testing.assert_allclose(table["sum_intensity"], [inner.sum(), corner.sum()])
    # Without an image: no intensity columns.
    assert "mean_intensity" not in measure_objects(labels, axes="YX")


def test_time_series_rows_per_time_point_and_channels_in_any_position():
    labels, image = _two_objects()
    movie = np.stack([labels, np.where(labels == 7, 1, 0)])  # t=1 holds one object, id 1
    # The image has its channels first (CTYX): channel c is the image times (c + 1).
    channels = np.stack([np.stack([image, image]) * (c + 1) for c in range(3)])
    table = measure_objects(movie, axes="TYX", image=channels, image_axes="CTYX")
    assert table["t"].tolist() == [0, 0, 1]
    assert table["label"].tolist() == [2, 7, 1]
    assert table["area"].tolist() == [4, 6, 6]
    corner = image[0:2, 0:3].astype(float).sum()
    for c in range(3):
        np.testing.assert_allclose(table[f"sum_intensity_c{c}"][1:], [corner * (c + 1)] * 2)
    assert "mean_intensity" not in table


class _Recorded:
    """A lazy array (as napari's dask layers, zarr): shape, dtype, indexing; records its reads."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._data[key]

    def __array__(self, dtype=None, copy=None):
        self.reads.append("all")
        return np.asarray(self._data, dtype=dtype)


def test_a_lazy_time_series_is_read_a_time_point_at_a_time():
    """Measuring a long series (the widget's Measure on a dask layer) reads one time point of
    the image at a time, never the whole of it at once."""
    labels, image = _two_objects()
    movie = np.stack([labels, np.where(labels == 7, 1, 0), labels])
    channels = np.stack([np.stack([image, image + 1, image + 2]) * (c + 1) for c in range(2)])  # CTYX
    lazy = _Recorded(channels)
    table = measure_objects(movie, axes="TYX", image=lazy, image_axes="CTYX")
    expected = measure_objects(movie, axes="TYX", image=channels, image_axes="CTYX")
    assert list(table) == list(expected)
    for name in table:
        np.testing.assert_array_equal(table[name], expected[name])
    assert lazy.reads == [(slice(None), t, slice(None), slice(None)) for t in range(3)]


def test_2d_shape_matches_scikit_image():
    """Axis lengths and eccentricity of discs, ellipses at angles, lines and single pixels, as
    regionprops gives them; with a pixel size, the calibrated lengths of anisotropic pixels."""
    from skimage.draw import ellipse
    from skimage.measure import regionprops

    labels = np.zeros((120, 140), np.int32)
    shapes = [(20, 20, 9, 9, 0.0), (20, 70, 14, 5, 0.6), (70, 30, 20, 8, -1.1), (80, 100, 6, 3, 2.0)]
    for i, (cy, cx, ry, rx, angle) in enumerate(shapes, start=1):
        labels[ellipse(cy, cx, ry, rx, shape=labels.shape, rotation=angle)] = i
    labels[110, 5:25] = 5  # a line
    labels[2, 130] = 6  # one pixel
    table = measure_objects(labels, axes="YX")
    props = regionprops(labels)
    for key in ("axis_major_length", "axis_minor_length", "eccentricity"):
        np.testing.assert_allclose(table[key], [getattr(p, key) for p in props], atol=1e-6, err_msg=key)
    assert table["eccentricity"][0] < 0.2 and table["eccentricity"][4] == pytest.approx(1.0)
    sized = measure_objects(labels, axes="YX", spacing=(0.5, 0.25))
    scaled = regionprops(labels, spacing=(0.5, 0.25))
    np.testing.assert_allclose(sized["axis_major_length_um"], [p.axis_major_length for p in scaled], atol=1e-6)
    np.testing.assert_allclose(sized["axis_minor_length_um"], [p.axis_minor_length for p in scaled], atol=1e-6)
    # Volumes have no such 2D columns.
    assert "eccentricity" not in measure_objects(np.ones((2, 3, 3), np.int32), axes="ZYX")


def test_volume_counts_voxels_and_z_borders():
    labels = np.zeros((5, 6, 6), np.int32)
    labels[1:3, 2:4, 2:4] = 1  # inside
    labels[3:5, 2:3, 2:3] = 2  # reaches the last plane: cut by the stack's end
    table = measure_objects(labels, axes="ZYX")
    assert table["area"].tolist() == [8, 2]
    np.testing.assert_allclose(table["centroid_z"], [1.5, 3.5])
    assert table["touches_border"].tolist() == [False, True]
    # A stack of one plane: its objects are no more cut along Z than those of a 2D image.
    flat = measure_objects(_two_objects()[0][None], axes="ZYX")
    assert flat["touches_border"].tolist() == [False, True]


def test_empty_labels_give_an_empty_table():
    table = measure_objects(np.zeros((4, 4), np.int32), axes="YX", image=np.ones((4, 4)))
    assert all(len(column) == 0 for column in table.values())
    assert "mean_intensity" in table


@pytest.mark.parametrize("call, words", [
    (lambda lab, img: measure_objects(lab.astype(float), axes="YX"), "integers"),
    (lambda lab, img: measure_objects(lab, axes="ZYX"), "Axes 'ZYX'"),
    (lambda lab, img: measure_objects(lab, axes="YY"), "distinct"),
    (lambda lab, img: measure_objects(lab, axes="YX", image=img[:5]), "differ in shape"),
    (lambda lab, img: measure_objects(lab, axes="YX", image=np.stack([img, img])), "image_axes"),
    (lambda lab, img: measure_objects(lab, axes="YX", image=np.stack([img, img]), image_axes="ZYX"),
     "not the labels' axes"),
    (lambda lab, img: measure_objects(np.zeros((0, 4), np.int32), axes="YX"), "empty"),
])
def test_bad_input_is_a_clear_error(call, words):
    labels, image = _two_objects()
    with pytest.raises(SegmentationError, match=words):
        call(labels, image)


def test_write_csv_round_trips(tmp_path):
    labels, image = _two_objects()
    table = measure_objects(labels, axes="YX", image=image)
    path = write_csv(table, tmp_path / "objects.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == [2, 7]
    assert [r["touches_border"] for r in rows] == ["0", "1"]
    assert float(rows[1]["mean_intensity"]) == pytest.approx(table["mean_intensity"][1], rel=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.csv"]  # no temporary file left


def test_write_csv_sends_the_file_and_its_folder_to_the_disk(tmp_path, disk_syncs, helpers):
    path = write_csv({"label": np.array([1, 2])}, tmp_path / "objects.csv")
    helpers.assert_durable(disk_syncs, path)


def test_spacing_adds_the_calibrated_size():
    labels, _ = _two_objects()
    table = measure_objects(labels, axes="YX", spacing=(0.5, 0.25), unit="um")
    assert list(table)[:3] == ["label", "area", "area_um2"]
    np.testing.assert_allclose(table["area_um2"], table["area"] * 0.125)
    volume = measure_objects(np.ones((2, 3, 3), np.int32), axes="ZYX", spacing=(2.0, 0.5, 0.5))
    assert volume["area_um3"].tolist() == [18 * 0.5]
    movie = measure_objects(np.stack([labels, labels]), axes="TYX", spacing=(1.0, 2.0), unit="nm")
    np.testing.assert_allclose(movie["area_nm2"], movie["area"] * 2.0)
    for bad in ((0.5,), (0.5, -1.0), (0.5, float("nan")), "ab"):
        with pytest.raises(SegmentationError, match="spacing must give 2 positive pixel sizes"):
            measure_objects(labels, axes="YX", spacing=bad)


def test_spacing_of_one_number_is_the_size_along_y_and_x():
    """spacing=0.65, as the command line's --pixel-size 0.65: the same size along Y and X, the same
    table as given per axis; a bad single number is refused as a bad pair is, naming what was given.
    Labels with Z need their three sizes, as --pixel-size does (a z-step is seldom the pixel size:
    one number would give a volume off by their ratio, silently)."""
    labels, _ = _two_objects()
    one = measure_objects(labels, axes="YX", spacing=0.65)
    both = measure_objects(labels, axes="YX", spacing=(0.65, 0.65))
    assert list(one) == list(both)
    for name in both:
        np.testing.assert_allclose(one[name], both[name], err_msg=name)
    assert measure_objects(labels[None], axes="TYX", spacing=np.float32(0.5))["area_um2"].tolist() == \
        (measure_objects(labels, axes="YX")["area"] * 0.25).tolist()
    for bad in (0, -0.5, float("nan"), True):
        with pytest.raises(SegmentationError, match=re.escape(
                f"spacing must give 2 positive pixel sizes (one per Y and X axis), or one for both, not {bad!r}.")):
            measure_objects(labels, axes="YX", spacing=bad)
    volume = np.ones((2, 3, 3), np.int32)
    with pytest.raises(SegmentationError, match=re.escape(
            "spacing=2 is one size, but the labels have a Z axis, whose step is seldom the pixel size: "
            "give the sizes along Z, Y and X, e.g. spacing=(2.0, 0.65, 0.65).")):
        measure_objects(volume, axes="ZYX", spacing=np.float32(2.0))
    assert measure_objects(volume, axes="ZYX", spacing=(2.0, 0.5, 0.5))["area_um3"].tolist() == [18 * 0.5]


def test_huge_uint64_ids_keep_their_value(tmp_path):
    """Ids above 2**63 in uint64 labels stay themselves (not negative), in the table and the CSV."""
    from napari_unet.measure import write_csv

    labels = np.zeros((6, 6), np.uint64)
    labels[1:3, 1:3] = 2**63 + 5
    labels[4:6, 4:6] = 2**64 - 1
    table = measure_objects(labels, axes="YX")
    assert [int(v) for v in table["label"]] == [2**63 + 5, 2**64 - 1]
    write_csv(table, tmp_path / "t.csv")
    rows = (tmp_path / "t.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [2**63 + 5, 2**64 - 1]


def test_negative_labels_are_refused_not_measured_as_an_object():
    """Labels with -1 as background (as some tools write them) would make the background one
    object of the table, with the area of the whole image."""
    labels, image = _two_objects()
    with pytest.raises(SegmentationError, match="negative"):
        measure_objects(labels.astype(np.int32) - 1, axes="YX", image=image)


def test_an_image_given_as_a_file_name_is_named_as_such():
    """Named as a file to read first (not as an image of the wrong shape), with the reader that keeps
    its axes and how to give them."""
    labels, _ = _two_objects()
    with pytest.raises(SegmentationError, match="file name") as info:
        measure_objects(labels, axes="YX", image="cells.tif")
    assert "does not fit" not in str(info.value)
    assert "read = napari_unet.io.read_image_file(path)" in str(info.value)
    assert "image=read.image, image_axes=read.axes" in str(info.value)


def test_instance_labels_given_as_a_file_name_are_named_as_such():
    """The labels as a path (the CLI's output file, say) are named as a file name to read first,
    as the image is (one check for both, and for segment's image)."""
    _, image = _two_objects()
    with pytest.raises(SegmentationError, match="instance labels are a file name") as info:
        measure_objects("cells_instances.tif", axes="YX", image=image)
    assert "integers" not in str(info.value)
    assert "napari_unet.io.read_labels(path)" in str(info.value)  # a palette PNG's ids, not its colours


def test_ids_are_ranked_without_np_unique(unique_inverse_calls):
    """np.unique(return_inverse=True) holds the GIL throughout its ranking (a cumulative sum over
    booleans): napari froze while its worker measured a 40 x 1024 x 1024 stack."""
    inverse = unique_inverse_calls
    labels, image = _two_objects()
    table = measure_objects(labels, axes="YX", image=image, image_axes="YX")
    assert table["label"].tolist() == [2, 7] and table["area"].tolist() == [4, 6]
    assert not any(inverse)
