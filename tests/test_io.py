"""Reading image files (and the axes they declare) and writing results."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_unet.errors import SegmentationError
from napari_unet.io import (
    TiffPlanes,
    check_image_path,
    is_result_file,
    read_image,
    read_image_axes,
    read_image_file,
    read_labels,
    read_tiff_metadata,
    result_role,
    write_labels,
)


@pytest.mark.parametrize(("axes", "shape"), [("ZCYX", (3, 2, 16, 16)), ("TZCYX", (2, 3, 2, 16, 16)),
                                             ("CYX", (2, 16, 16)), ("ZYX", (4, 16, 16))])
def test_imagej_axes_are_read(tmp_path, axes, shape):
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": axes})
    image, found = read_image_axes(tmp_path / "h.tif")
    assert found == axes
    np.testing.assert_array_equal(image, data)


def test_plain_files_declare_no_axes(tmp_path):
    stack = np.zeros((3, 16, 16), np.uint8)
    rgb = np.zeros((16, 16, 3), np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    skio.imsave(tmp_path / "rgb.png", rgb, check_contrast=False)
    for name, shape in (("stack.tif", stack.shape), ("rgb.tif", rgb.shape), ("rgb.png", rgb.shape)):
        image, axes = read_image_axes(tmp_path / name)
        assert axes is None and image.shape == shape
        assert read_image(tmp_path / name).shape == shape


def test_axes_tifffile_wrote_are_read(tmp_path):
    """A time series saved from Python with its axes (as this package saves results) stays one."""
    series = np.zeros((3, 16, 16), np.uint8)
    assert read_image_axes(_written(tmp_path / "t.tif", series, {"axes": "TYX"}))[1] == "TYX"
    write_labels(tmp_path / "labels.tif", series.astype(np.int32), axes="TYX")
    assert read_image_axes(tmp_path / "labels.tif")[1] == "TYX"
    stains = read_image_file(_written(tmp_path / "c.tif", series, {"axes": "CYX"}))
    assert stains.axes == "CYX" and stains.channels_declared
    # Letters this package does not know, or none at all: inferred from the shape.
    assert read_image_axes(_written(tmp_path / "q.tif", series, {"axes": "QYX"}))[1] is None
    assert read_image_axes(_written(tmp_path / "none.tif", series, None))[1] is None


def _written(path, data, metadata):
    tifffile.imwrite(path, data, metadata=metadata, photometric="minisblack")
    return path


def test_palette_png_labels_read_as_their_indices(tmp_path):
    from PIL import Image

    labels = np.zeros((16, 20), np.uint8)
    labels[2:6, 3:9], labels[9:14, 10:18] = 1, 4
    im = Image.fromarray(labels, "L").convert("P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * 750)
    im.save(tmp_path / "mask.png")
    assert read_image(tmp_path / "mask.png").shape == (16, 20, 3)  # as an image: its colours
    np.testing.assert_array_equal(read_labels(tmp_path / "mask.png"), labels)
    with pytest.raises(SegmentationError, match="does not exist"):
        read_labels(tmp_path / "missing.png")


def test_a_tiff_of_several_images_is_refused_not_cut_to_the_first(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((16, 16), np.uint8))
        tif.write(np.zeros((32, 24), np.uint8))
    with pytest.raises(SegmentationError, match=r"mixed.tif holds 2 separate images \(shapes \(16, 16\), \(32, 24\)\)"):
        read_image(tmp_path / "mixed.tif")
    # Pages of one size written as one stack are one image.
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    assert read_image(tmp_path / "stack.tif").shape == (3, 16, 16)


def test_grey_with_alpha_png_reads_as_grey(tmp_path):
    grey = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    skio.imsave(tmp_path / "la.png", np.stack([grey, np.full_like(grey, 255)], axis=-1),
                check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), grey)


def test_tiff_without_pages_is_named_not_an_index_error(tmp_path):
    (tmp_path / "blank.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")  # a header, no IFD
    with pytest.raises(SegmentationError, match="blank.tif is a TIFF file without any image"):
        read_image(tmp_path / "blank.tif")


def test_cmyk_images_are_not_read_as_rgba(tmp_path):
    from PIL import Image

    grey = np.zeros((16, 20), np.uint8)
    grey[4:12, 5:15] = 200
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "print.jpg", quality=100)
    image = read_image(tmp_path / "print.jpg")
    assert image.shape == (16, 20, 3)  # RGB: the ink (K) no longer passes for alpha
    assert image[8, 10].mean() > 150 and image[0, 0].mean() < 50
    tifffile.imwrite(tmp_path / "print.tif", np.zeros((16, 20, 4), np.uint8), photometric="separated")
    with pytest.raises(SegmentationError, match="print.tif is a CMYK"):
        read_image(tmp_path / "print.tif")


def test_bad_paths_get_one_clear_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 30)
    cases = {tmp_path: "is a folder", tmp_path / "nope.tif": "does not exist",
             tmp_path / "notes.txt": "unsupported file type '.txt'",
             tmp_path / "bad.png": "Could not read"}
    for path, fragment in cases.items():
        with pytest.raises(SegmentationError, match=fragment) as info:
            read_image(path)
        assert "\n" not in str(info.value)
    assert check_image_path(tmp_path / "bad.png") == tmp_path / "bad.png"


def test_write_labels_is_atomic_and_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "r.tif"
        write_labels(path, np.arange(12, dtype=np.int32).reshape(3, 4), axes="YX")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    np.testing.assert_array_equal(tifffile.imread(path), np.arange(12).reshape(3, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tif"]


def test_write_labels_sends_the_file_and_its_folder_to_the_disk(tmp_path, disk_syncs, helpers):
    """Renamed before its bytes reach the disk, a file can be empty after a power cut."""
    path = tmp_path / "r.tif"
    write_labels(path, np.ones((3, 4), np.uint8), axes="YX")
    helpers.assert_durable(disk_syncs, path)


def test_a_folder_that_cannot_be_synced_still_gets_the_file(tmp_path, monkeypatch):
    """Some filesystems (network shares) refuse to sync a folder: the file is written all the same.
    A file that cannot reach the disk is an error, and the old file stays."""
    import errno

    fsync = os.fsync

    def folders_refused(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        return fsync(fd)

    path = tmp_path / "r.tif"
    monkeypatch.setattr(os, "fsync", folders_refused)
    write_labels(path, np.ones((3, 4), np.uint8), axes="YX")
    np.testing.assert_array_equal(tifffile.imread(path), np.ones((3, 4)))

    def broken_disk(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(OSError, match="Input/output"):
        write_labels(path, np.zeros((3, 4), np.uint8), axes="YX")
    np.testing.assert_array_equal(tifffile.imread(path), np.ones((3, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tif"]


@pytest.mark.parametrize("code", ["EINVAL", "ENOTSUP", "ENOSYS"])
def test_a_filesystem_that_cannot_sync_files_still_gets_them(tmp_path, monkeypatch, code):
    """Some network shares and FUSE mounts answer every fsync with EINVAL or ENOTSUP: that says
    the filesystem does not sync, not that a write failed, so the file is written (and replaces
    the old one whole) as it was before saves were synced."""
    import errno

    def not_supported(fd):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "fsync", not_supported)
    path = tmp_path / "r.tif"
    path.write_bytes(b"old")
    write_labels(path, np.ones((3, 4), np.uint8), axes="YX")
    np.testing.assert_array_equal(tifffile.imread(path), np.ones((3, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tif"]


@pytest.mark.parametrize(("axes", "shape", "sizes"), [
    ("YX", (16, 24), {"Y": 0.5, "X": 0.25}),
    ("TYX", (3, 16, 24), {"Y": 0.5, "X": 0.25}),
    ("ZYX", (4, 16, 24), {"Z": 2.0, "Y": 0.5, "X": 0.25}),
    ("TZYX", (2, 4, 16, 24), {"Z": 2.0, "Y": 0.5, "X": 0.25}),
])
def test_labels_are_calibrated_imagej_hyperstacks(tmp_path, axes, shape, sizes):
    """Fiji reads the axes (a z-stack as slices, a series as frames, never channels) and the
    calibration in micrometres; int32 ids come back unchanged as uint16, the provenance as it was."""
    labels = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) % 700
    meta = {"model": "default", "percentiles": [1.0, 99.8], "n_objects": 699}
    assert write_labels(tmp_path / "l.tif", labels, axes=axes, pixel_size_um=sizes, metadata=meta) is None
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == axes
        ij, tags = tif.imagej_metadata, tif.pages[0].tags
        assert ij["unit"] == "um"
        assert ("spacing" in ij) == ("Z" in axes) and ij.get("spacing", 2.0) == 2.0
        assert ij.get("frames", 1) == (shape[0] if "T" in axes else 1)
        assert "channels" not in ij
        for tag, axis in (("XResolution", "X"), ("YResolution", "Y")):
            num, den = tags[tag].value
            assert den / num == pytest.approx(sizes[axis])
        # ImageJ reads a stack's planes as one block after the first: compressed, only a single plane
        assert (tif.pages[0].compression == tifffile.COMPRESSION.NONE) == (len(axes) > 2)
    assert read_tiff_metadata(tmp_path / "l.tif") == {**meta, "axes": axes, "pixel_size_um": sizes}
    read = read_image_file(tmp_path / "l.tif")
    assert read.axes == axes and read.pixel_size_um == pytest.approx(sizes)
    assert read.image.dtype == np.uint16
    np.testing.assert_array_equal(read_labels(tmp_path / "l.tif"), labels)
    # A mask stays 8-bit; without (all of) the pixel sizes the file has axes but no calibration.
    write_labels(tmp_path / "m.tif", (labels > 5).astype(np.uint8), axes=axes, pixel_size_um={"X": 0.25})
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == axes and tif.series[0].dtype == np.uint8
        assert "unit" not in tif.imagej_metadata
    assert read_image_file(tmp_path / "m.tif").pixel_size_um is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tif", "m.tif"]  # no temporary file left


def test_a_series_time_calibration_is_read_and_written_for_fiji(tmp_path):
    """An ImageJ series' frame interval (finterval, in tunit) and playback rate (fps) are read,
    written into labels with a T axis (so Fiji shows their frames in time, not as frame numbers),
    and read back; a z-stack has none, and a file without them gives None."""
    path = tmp_path / "movie.tif"
    timing = {"finterval": 2.5, "tunit": "min", "fps": 4.0}
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, metadata={"axes": "TYX", **timing})
    assert read_image_file(path).time_calibration == timing
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, metadata={"axes": "TYX", "finterval": 0.5})
    assert read_image_file(path).time_calibration == {"finterval": 0.5}  # in ImageJ's default unit, sec
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, metadata={"axes": "TYX"})
    assert read_image_file(path).time_calibration is None
    labels = np.zeros((2, 3, 8, 8), np.int32)
    assert write_labels(tmp_path / "l.tif", labels, axes="TZYX", time_calibration=timing) is None
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert {k: tif.imagej_metadata.get(k) for k in timing} == timing
    assert read_image_file(tmp_path / "l.tif").time_calibration == timing
    write_labels(tmp_path / "z.tif", labels[0], axes="ZYX", time_calibration=timing)
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        assert "finterval" not in tif.imagej_metadata
    assert read_image_file(tmp_path / "z.tif").time_calibration is None


@pytest.mark.parametrize(("axes", "shape"), [("TYX", (1, 16, 24)), ("ZYX", (1, 16, 24)), ("TZYX", (3, 1, 16, 24)),
                                             ("TZYX", (1, 4, 16, 24)), ("TZYX", (1, 1, 16, 24))])
@pytest.mark.parametrize("memmap", [False, True])
def test_labels_keep_their_axes_of_length_one(tmp_path, axes, shape, memmap):
    """A one-frame series or a one-plane z-stack reads back with its T or Z (ImageJ keeps no axis of
    length 1 apart: the axes come from the file's Info), so the result's axes are still the input's
    less C; Fiji still opens it as an ImageJ file, with the frames and slices it has."""
    labels = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) % 700
    sizes = {"Z": 2.0, "Y": 0.5, "X": 0.25}
    assert write_labels(tmp_path / "l.tif", labels, axes=axes, pixel_size_um=sizes) is None
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata.get("frames", 1) == (shape[0] if "T" in axes else 1)
        assert tif.imagej_metadata.get("slices", 1) == (shape[axes.index("Z")] if "Z" in axes else 1)
    read = read_image_file(tmp_path / "l.tif", memmap=memmap)
    assert read.axes == axes and read.image.shape == shape
    assert read.pixel_size_um == pytest.approx({a: sizes[a] for a in axes if a in sizes})
    np.testing.assert_array_equal(read.image, labels)
    np.testing.assert_array_equal(read_labels(tmp_path / "l.tif"), labels)
    # Ids ImageJ cannot hold: a plain TIFF keeps its shape too.
    assert write_labels(tmp_path / "p.tif", labels - 1, axes=axes) is not None
    plain = read_image_file(tmp_path / "p.tif", memmap=memmap)
    assert plain.axes == axes and plain.image.shape == shape


def test_imagej_info_axes_that_no_longer_fit_are_not_used(tmp_path):
    """Axes in an ImageJ file's Info that no longer describe it (a series that Fiji turned into a
    z-stack, keeping the Info) give way to the file's own."""
    info = json.dumps({"axes": "TYX"})
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((3, 16, 16), np.uint16), imagej=True,
                     metadata={"axes": "ZYX", "Info": info})
    read = read_image_file(tmp_path / "z.tif")
    assert read.axes == "ZYX" and read.image.shape == (3, 16, 16)
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((16, 16), np.uint16), imagej=True,
                     metadata={"Info": json.dumps({"axes": "CYX"})})  # not a result's: C
    assert read_image_file(tmp_path / "one.tif").axes == "YX"


@pytest.mark.parametrize(("labels", "axes", "why"), [
    (np.array([[[0, 70000]]], np.uint32).repeat(3, 0), "ZYX", "65535"),
    (np.array([[[0, -1]]], np.int32).repeat(3, 0), "ZYX", "negative"),
    (np.array([[[0, 7]]], np.int32).repeat(3, 0), "YXZ", "order"),
])
def test_labels_imagej_cannot_hold_are_plain_tiffs_that_say_why(tmp_path, labels, axes, why):
    """Ids ImageJ's 16 bits cannot hold, or axes out of its order: a plain TIFF with its own dtype,
    its axes and provenance for tifffile and this package, and the X/Y pixel size in centimetres."""
    sizes = {"Z": 2.0, "Y": 0.5, "X": 0.25}
    reason = write_labels(tmp_path / "l.tif", labels, axes=axes, pixel_size_um=sizes, metadata={"scale": 1.0})
    assert why in reason
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert not tif.is_imagej
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = tags["XResolution"].value
        assert den / num * 1e4 == pytest.approx(0.25)
    assert read_tiff_metadata(tmp_path / "l.tif") == {"shape": list(labels.shape), "scale": 1.0, "axes": axes,
                                                      "pixel_size_um": sizes}
    read = read_image_file(tmp_path / "l.tif")
    assert read.axes == axes and read.image.dtype == labels.dtype
    np.testing.assert_array_equal(read_labels(tmp_path / "l.tif"), labels)


def test_a_plain_tiff_keeps_its_axes_whatever_the_metadata(tmp_path):
    """A "shape" among the provenance (e.g. a layer's metadata) does not replace the shape
    tifffile reads a plain TIFF's axes with: they came back as none, and the metadata empty."""
    labels = np.array([[[0, -1]]], np.int32).repeat(3, 0)
    assert write_labels(tmp_path / "l.tif", labels, axes="TYX", metadata={"shape": [5], "scale": 1.0})
    read = read_image_file(tmp_path / "l.tif")
    assert read.axes == "TYX" and read.image.shape == labels.shape
    assert read_tiff_metadata(tmp_path / "l.tif") == {"shape": [3, 1, 2], "scale": 1.0, "axes": "TYX"}


def test_write_labels_refuses_axes_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match="T, Z, Y, X"):
        write_labels(tmp_path / "l.tif", np.zeros((2, 4, 4), np.int32), axes="CYX")
    with pytest.raises(ValueError, match="T, Z, Y, X"):
        write_labels(tmp_path / "l.tif", np.zeros((2, 4, 4), np.int32), axes="YX")
    assert not list(tmp_path.iterdir())


def test_read_tiff_metadata_of_other_files_is_empty(tmp_path):
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((4, 4), np.uint8), imagej=True,
                     metadata={"Info": "written by a microscope"})
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 4), np.uint8), metadata=None)
    (tmp_path / "text.tif").write_text("not a TIFF")
    for name in ("ij.tif", "plain.tif", "text.tif", "missing.tif"):
        assert read_tiff_metadata(tmp_path / name) == {}


def test_pixel_size_from_imagej_and_ome_tiffs(tmp_path):
    """ImageJ (resolution tags, unit, Z spacing) and OME (PhysicalSize*, with units) calibrations
    come back in micrometres; a file without a length unit, or a plain TIFF, has none."""
    from napari_unet.io import read_image_file

    stack = np.zeros((3, 20, 30), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 2.0})
    sizes = read_image_file(tmp_path / "ij.tif").pixel_size_um
    assert sizes == pytest.approx({"Z": 2.0, "Y": 0.65, "X": 0.65})
    tifffile.imwrite(tmp_path / "ij_nm.tif", stack[0], imagej=True, resolution=(1 / 300, 1 / 300),
                     metadata={"unit": "nm"})
    assert read_image_file(tmp_path / "ij_nm.tif").pixel_size_um == pytest.approx({"Y": 0.3, "X": 0.3})
    tifffile.imwrite(tmp_path / "ij_none.tif", stack[0], imagej=True, resolution=(2.0, 2.0))
    assert read_image_file(tmp_path / "ij_none.tif").pixel_size_um is None  # no unit: pixels
    tifffile.imwrite(tmp_path / "a.ome.tif", stack, metadata={
        "axes": "ZYX", "PhysicalSizeX": 300, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.3,
        "PhysicalSizeZ": 1.5})
    assert read_image_file(tmp_path / "a.ome.tif").pixel_size_um == pytest.approx(
        {"Z": 1.5, "Y": 0.3, "X": 0.3})
    tifffile.imwrite(tmp_path / "plain.tif", stack[0], resolution=(100, 100))
    assert read_image_file(tmp_path / "plain.tif").pixel_size_um is None


def test_pixel_size_in_other_ome_length_units(tmp_path):
    """OME-XML may give a pixel size in any of its length units (metres, centimetres, angstroms):
    each is converted, not dropped (which would leave the table in pixels without a word)."""
    from napari_unet.io import read_image_file

    plane = np.zeros((20, 30), np.uint16)
    for unit, size in (("m", 6.5e-7), ("cm", 6.5e-5), ("\u00c5", 6500.0), ("\u212b", 6500.0), ("pm", 6.5e5)):
        tifffile.imwrite(tmp_path / "a.ome.tif", plane, metadata={
            "axes": "YX", "PhysicalSizeX": size, "PhysicalSizeXUnit": unit,
            "PhysicalSizeY": size, "PhysicalSizeYUnit": unit})
        assert read_image_file(tmp_path / "a.ome.tif").pixel_size_um == pytest.approx(
            {"Y": 0.65, "X": 0.65}), unit
    tifffile.imwrite(tmp_path / "ij.tif", plane, imagej=True, resolution=(1 / 650, 1 / 650),
                     metadata={"unit": "nanometre"})
    assert read_image_file(tmp_path / "ij.tif").pixel_size_um == pytest.approx({"Y": 0.65, "X": 0.65})


def test_imagej_stack_of_voxel_depth_one_is_calibrated(tmp_path):
    """ImageJ writes no spacing= for a voxel depth of 1 (its default): the stack is still
    calibrated, Z at 1 unit; zunit= and yunit= (written where they differ from unit=) are used."""
    from napari_unet.io import read_image_file

    stack = np.zeros((3, 20, 30), np.uint16)
    tifffile.imwrite(tmp_path / "d1.tif", stack, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "unit": "micron"})
    assert read_image_file(tmp_path / "d1.tif").pixel_size_um == pytest.approx({"Z": 1.0, "Y": 0.2, "X": 0.2})
    tifffile.imwrite(tmp_path / "zu.tif", stack, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 300.0, "zunit": "nm"})
    assert read_image_file(tmp_path / "zu.tif").pixel_size_um == pytest.approx({"Z": 0.3, "Y": 0.2, "X": 0.2})
    tifffile.imwrite(tmp_path / "plane.tif", stack[0], imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"unit": "micron"})
    assert read_image_file(tmp_path / "plane.tif").pixel_size_um == pytest.approx({"Y": 0.2, "X": 0.2})


def test_planar_rgb_tiff_is_colour_not_a_z_stack(tmp_path):
    """Photometric RGB stored plane after plane (SYX) has its colour axis first."""
    rgb = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", planarconfig="separate", metadata=None)
    read = read_image_file(path)
    assert read.axes == "CYX"
    assert not read.channels_declared  # colour samples: RGB becomes grey, as documented


def test_uncompressed_tiff_is_mapped_from_the_file_when_asked(tmp_path):
    """A long uncompressed series is mapped, not read (memmap=True); other TIFFs are read."""
    series = np.arange(3 * 16 * 20, dtype=np.uint16).reshape(3, 16, 20)
    tifffile.imwrite(tmp_path / "raw.tif", series, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "big_endian.tif", series, byteorder=">", photometric="minisblack")
    tifffile.imwrite(tmp_path / "zlib.tif", series, compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "tiled.tif", series, tile=(16, 16), photometric="minisblack")
    mapped = read_image_file(tmp_path / "raw.tif", memmap=True)
    assert isinstance(mapped.image, np.memmap) and not mapped.image.flags.writeable
    assert mapped.axes == "TYX"
    np.testing.assert_array_equal(mapped.image, series)
    swapped = read_image_file(tmp_path / "big_endian.tif", memmap=True).image
    assert isinstance(swapped, np.memmap)
    np.testing.assert_array_equal(swapped, series)
    for name in ("zlib.tif", "tiled.tif"):  # not one uncompressed block: read page by page
        read = read_image_file(tmp_path / name, memmap=True).image
        assert isinstance(read, TiffPlanes), name
        np.testing.assert_array_equal(read, series)
    assert not isinstance(read_image_file(tmp_path / "raw.tif").image, np.memmap)
    assert isinstance(read_image_file(tmp_path / "zlib.tif").image, np.ndarray)  # without memmap: read


@pytest.mark.parametrize("kind", ["imagej", "tifffile", "rgb", "one page"])
def test_compressed_stack_is_read_a_page_at_a_time_when_asked(tmp_path, monkeypatch, kind):
    """With memmap=True, a compressed stack reads (and decompresses) only the pages an index
    covers, and gives what numpy would give for that index; a single page is read whole."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 60000, (3, 4, 24, 20), dtype=np.uint16)
    options = {"compression": "zlib", "photometric": "minisblack"}
    if kind == "imagej":
        options = {"compression": "zlib", "imagej": True, "metadata": {"axes": "TZYX"}}
    elif kind == "tifffile":
        data, options["metadata"] = data[0], {"axes": "ZYX"}
    elif kind == "rgb":
        data, options["photometric"] = rng.integers(0, 255, (5, 24, 20, 3), dtype=np.uint8), "rgb"
    else:
        data = data[0, 0]
    tifffile.imwrite(tmp_path / "c.tif", data, **options)
    reads = []  # every page read (a TiffFrame reads itself through TiffPage.asarray)
    real = tifffile.TiffPage.asarray
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda self, **k: reads.append(self.index) or real(self, **k))
    read = read_image_file(tmp_path / "c.tif", memmap=True)
    if kind == "one page":
        assert isinstance(read.image, np.ndarray)
        np.testing.assert_array_equal(read.image, data)
        return
    image = read.image
    assert isinstance(image, TiffPlanes)
    assert (image.shape, image.ndim, image.dtype, len(image)) == (data.shape, data.ndim, data.dtype, len(data))
    assert reads == []  # nothing read yet
    for key in [0, -1, (1, slice(None), slice(2, None, 3)), (slice(None, None, 2),), (slice(1, 3), 0),
                (np.int64(1),), (slice(None),) * data.ndim, (slice(5, 9),), ()]:
        reads.clear()
        np.testing.assert_array_equal(image[key], data[key], err_msg=str(key))
        lead = data.shape[:data.ndim - (3 if kind == "rgb" else 2)]  # one page per index of these
        covered = np.arange(np.prod(lead)).reshape(lead)[(key if isinstance(key, tuple) else (key,))[:len(lead)]]
        assert reads == list(np.ravel(covered)), key  # each page it covers, once
    np.testing.assert_array_equal(np.asarray(image, dtype=np.float32), data.astype(np.float32))
    np.testing.assert_array_equal(np.array(image, copy=True), data)
    with pytest.raises(ValueError, match="without a copy"):  # NumPy 2's protocol: pages are read, never viewed
        np.asarray(image, copy=False)
    with pytest.raises(IndexError):
        image[len(data)]
    with pytest.raises(IndexError, match="integers and slices"):
        image[..., 0]
    image.close()
    with pytest.raises(ValueError, match="closed"):
        image[0]


def test_label_ids_are_converted_for_imagej_a_plane_at_a_time(tmp_path):
    """The int32 ids of a long series are written as 16-bit without a 16-bit copy of the whole
    series (2 bytes per pixel more at the peak of every `segment` run before)."""
    import tracemalloc

    ids = np.random.default_rng(1).integers(0, 700, (60, 64, 64)).astype(np.int32)
    tracemalloc.start()
    try:
        assert write_labels(tmp_path / "ids.tif", ids, axes="TYX") is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * ids.size, f"{peak / ids.size:.2f} bytes per pixel"
    with tifffile.TiffFile(tmp_path / "ids.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.series[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), ids)
    one = ids[0] + 1  # a single plane: compressed, converted too
    write_labels(tmp_path / "one.tif", one, axes="YX")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "one.tif"), one)


def test_a_result_is_told_by_its_name_and_metadata(tmp_path):
    """A result is named ``<image>_semantic|instances.tif`` (any case) and holds this package's
    metadata; a file with only one of the two, or none, or no file, is not one."""
    labels = np.zeros((8, 8), np.uint8)
    ours = {"napari_unet_version": "0.1.0"}
    write_labels(tmp_path / "cells_semantic.TIF", labels, axes="YX", metadata=ours)
    write_labels(tmp_path / "cells_instances.tiff", labels, axes="YX", metadata=ours)
    write_labels(tmp_path / "cells.tif", labels, axes="YX", metadata=ours)
    tifffile.imwrite(tmp_path / "plain_semantic.tif", labels)
    (tmp_path / "broken_instances.tif").write_bytes(b"not a tiff")
    assert result_role(tmp_path / "cells_semantic.TIF") == ("cells", "semantic")
    assert result_role(tmp_path / "_semantic.tif") is None and result_role(tmp_path / "a_semantic.png") is None
    assert is_result_file(tmp_path / "cells_semantic.TIF") and is_result_file(str(tmp_path / "cells_instances.tiff"))
    for name in ("cells.tif", "plain_semantic.tif", "broken_instances.tif", "missing_semantic.tif"):
        assert not is_result_file(tmp_path / name), name
