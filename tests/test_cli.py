"""The ``napari-unet`` command line: segment, evaluate and train, and its errors.

Commands run in-process through :func:`napari_unet.cli.main` (output captured
with ``capsys``); one test runs the installed console script in a subprocess.
Bad input must end with exit status 2 and exactly one ``napari-unet: error:``
line on stderr, never a traceback, and must leave no half-written files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_unet.checkpoint import load_model
from napari_unet.cli import main
from napari_unet.io import TiffPlanes, read_image_file, read_tiff_metadata
from napari_unet.metrics import DEFAULT_THRESHOLDS
from scenes import DISCS as ALL_DISCS
from scenes import disc_scene, peak_numpy_bytes, sliver_and_ball

DISCS = ALL_DISCS[:3]  # non-touching discs on a 64 x 64 canvas


def _write_set(root: Path, scenes, *, noise: float = 0.0, prefix: str = "img"):
    """Write images and masks (same file names) into root/images and root/masks."""
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for k, discs in enumerate(scenes):
        image, labels = disc_scene(discs, noise=noise, seed=k)
        tifffile.imwrite(img_dir / f"{prefix}{k}.tif", image)
        tifffile.imwrite(mask_dir / f"{prefix}{k}.tif", labels)
    return img_dir, mask_dir


def _assert_one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-unet: error:"), err
    assert "Traceback" not in err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial files in ``folder`` (hidden write tests, *.tmp)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(".tmp") or p.name.startswith(".") or "tmp" in p.name)


# --- segment ---------------------------------------------------------------------------

def test_segment_writes_semantic_and_instances_per_image(models, tmp_path, capsys):
    grey, _ = disc_scene(DISCS[0], noise=5)
    grey2 = disc_scene(DISCS[1], noise=5)[0][:50, :61]  # a second, differently shaped image
    tifffile.imwrite(tmp_path / "first.tif", grey)
    skio.imsave(tmp_path / "second.png", grey2, check_contrast=False)
    out = tmp_path / "results"

    code = main(["segment", str(tmp_path / "first.tif"), str(tmp_path / "second.png"),
                 "--output", str(out), "--model", str(models["2d"]), "--device", "cpu"])
    captured = capsys.readouterr()

    assert code == 0
    assert "Traceback" not in captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("first.tif: ") and "first_semantic.tif" in lines[0]
    assert lines[1].startswith("second.png: ") and "second_instances.tif" in lines[1]
    for stem, shape, line in (("first", grey.shape, lines[0]), ("second", grey2.shape, lines[1])):
        sem = tifffile.imread(out / f"{stem}_semantic.tif")
        inst = tifffile.imread(out / f"{stem}_instances.tif")
        assert sem.shape == shape and inst.shape == shape
        assert sem.dtype == np.uint8 and inst.dtype == np.uint16  # ImageJ's 16 bits hold the ids
        # The printed count is the number of objects in the file.
        assert f": {int(inst.max())} objects" in line
        assert set(np.unique(sem)) <= {0, 1}
    assert sorted(p.name for p in out.iterdir()) == [
        "first_instances.tif", "first_semantic.tif", "second_instances.tif", "second_semantic.tif"]


def test_segment_outputs_match_the_api(models, tmp_path, capsys):
    """The CLI writes exactly what ``napari_unet.segment`` returns."""
    import napari_unet

    image, _ = disc_scene(DISCS[2], noise=5)
    tifffile.imwrite(tmp_path / "x.tif", image)
    assert main(["segment", str(tmp_path / "x.tif"), "-o", str(tmp_path / "o"),
                 "-m", str(models["three_class"]), "--device", "cpu"]) == 0
    capsys.readouterr()
    expected = napari_unet.segment(image, model=str(models["three_class"]), device="cpu")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "x_semantic.tif"), expected.semantic)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "x_instances.tif"), expected.instances)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_segment_rgb_image_gives_2d_outputs(models, tmp_path, capsys, suffix):
    grey, _ = disc_scene(DISCS[0], noise=5)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)  # (Y, X, 3)
    path = tmp_path / f"colour{suffix}"
    if suffix == ".png":
        skio.imsave(path, rgb, check_contrast=False)
    else:
        tifffile.imwrite(path, rgb, photometric="rgb")
    out = tmp_path / "out"
    assert main(["segment", str(path), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu",
                 "--scale", "1.5"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    for kind, dtype in (("semantic", np.uint8), ("instances", np.uint16)):
        with tifffile.TiffFile(out / f"colour_{kind}.tif") as tif:
            data = tif.asarray()
            axes = tif.series[0].axes
        assert data.shape == grey.shape and data.dtype == dtype
        # The axes stored in the file describe the output (C is gone), so readers
        # such as tifffile, Fiji and napari interpret the file correctly.
        meta = read_tiff_metadata(out / f"colour_{kind}.tif")
        assert axes == meta["axes"] == "YX" and meta["input_axes"] == "YXC"
        assert meta["scale"] == 1.5


def test_segment_seed_threshold_splits_and_is_recorded(models, tmp_path, capsys, fake_net):
    """--seed-threshold reaches the watershed's seeds: the one knob between merging and splitting.
    Two overlapping bright spots (the fake network's interior probability is the intensity) are
    one object seeded at 0.5 and two at 0.9."""
    yy, xx = np.mgrid[:48, :64]
    spots = sum(np.exp(-((yy - 24) ** 2 + (xx - x) ** 2) / 72) for x in (24, 40))
    tifffile.imwrite(tmp_path / "x.tif", (spots * 200).astype(np.uint8))
    counts = {}
    for value in ("0.5", "0.9"):
        out = tmp_path / f"out{value}"
        assert main(["segment", str(tmp_path / "x.tif"), "-o", str(out), "-m", str(models["three_class"]),
                     "--device", "cpu", "--seed-threshold", value, "--threshold", "0.2", "--min-size", "0",
                     "--instance-method", "watershed"]) == 0
        meta, labels = read_tiff_metadata(out / "x_instances.tif"), tifffile.imread(out / "x_instances.tif")
        assert meta["seed_threshold"] == float(value)
        counts[value] = len(np.unique(labels)) - 1
    assert counts == {"0.5": 1, "0.9": 2}
    assert main(["segment", str(tmp_path / "x.tif"), "-o", str(tmp_path / "bad"), "-m", str(models["three_class"]),
                 "--device", "cpu", "--seed-threshold", "1.5"]) != 0
    assert "--seed-threshold 1.5: give a probability from 0 to 1" in _assert_one_error_line(capsys.readouterr().err)


def test_segment_scale_auto_records_the_scale_used(helpers, tmp_path, capsys, fake_net):
    model = helpers.build_model(tmp_path / "auto", postprocess={"scale": "auto", "auto_scale_area": 1e6})
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "x.tif", image)
    for flag, mode in ((["--scale", "auto"], "auto"), ([], "auto"), (["--scale", "1"], "fixed")):
        out = tmp_path / f"out{len(flag)}{mode}"
        assert main(["segment", str(tmp_path / "x.tif"), "-o", str(out), "-m", str(model),
                     "--device", "cpu", *flag]) == 0
        meta = read_tiff_metadata(out / "x_instances.tif")
        # Any object is "small" under a reference of a million pixels: auto goes to scale 2.
        assert meta["scale_mode"] == mode
        assert meta["scale"] == (2.0 if mode == "auto" else 1.0)
    capsys.readouterr()


def test_segment_min_size_in_a_z_stack_is_a_cross_sections_area(models, tmp_path, capsys, fake_net):
    """--min-size 24 with a 2D model on a z-stack: the sliver two planes deep (58 voxels) goes, the
    small nucleus (a ball of radius 4) stays, and the files' Info says the volume used (88 voxels)."""
    mask, nucleus, sliver = sliver_and_ball()
    tifffile.imwrite(tmp_path / "stack.tif", mask.astype(np.uint16) * 1000, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "stack.tif"), "-o", str(out), "-m", str(models["2d"]),
                 "--device", "cpu", "--min-size", "24"]) == 0
    inst = tifffile.imread(out / "stack_instances.tif")
    assert inst[nucleus] > 0 and inst[sliver] == 0
    meta = read_tiff_metadata(out / "stack_instances.tif")
    assert meta["mode"] == "2d" and meta["min_size"] == 24 and meta["min_volume"] == 88
    capsys.readouterr()


def test_segment_time_series_with_axes(models, tmp_path, capsys):
    stack = np.stack([disc_scene(d, noise=5, seed=i)[0] for i, d in enumerate(DISCS)])  # (3, 64, 64)
    tifffile.imwrite(tmp_path / "movie.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "-o", str(out),
                 "-m", str(models["2d"]), "--device", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.count("\n") == 1
    sem = tifffile.imread(out / "movie_semantic.tif")
    inst = tifffile.imread(out / "movie_instances.tif")
    assert sem.shape == stack.shape and inst.shape == stack.shape
    assert sem.dtype == np.uint8 and inst.dtype == np.uint16
    with tifffile.TiffFile(out / "movie_instances.tif") as tif:  # frames for Fiji, not slices or channels
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
    assert read_tiff_metadata(out / "movie_instances.tif")["axes"] == "TYX"


def test_segment_says_when_a_stacks_axes_were_guessed(models, tmp_path, capsys, fake_net):
    """A plain array saved without axes (two stains stored first, or frames stacked into one file)
    is read as a z-stack from its shape: the run says so, and how to give the axes, beside its
    result line. Axes given, declared by the file, or an RGB guess (no Z) need no note."""
    frames = np.stack([disc_scene(d)[0] for d in DISCS[:2]])  # (2, 64, 64)
    tifffile.imwrite(tmp_path / "plain.tif", frames)
    tifffile.imwrite(tmp_path / "declared.tif", frames, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "rgb.tif", np.repeat(frames[0][..., None], 3, axis=-1), photometric="rgb")
    out = tmp_path / "out"
    model = ["-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(["segment", str(tmp_path / "plain.tif"), *model]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("plain.tif: ")
    assert lines[1].startswith("plain.tif: note:")
    assert "guessed from its shape (2, 64, 64) as ZYX (2 planes in Z)" in lines[1]
    assert "--axes TYX" in lines[1] and "--axes CYX --channel N" in lines[1]
    assert main(["segment", str(tmp_path / "plain.tif"), "--axes", "TYX", "--overwrite", *model]) == 0
    assert main(["segment", str(tmp_path / "declared.tif"), str(tmp_path / "rgb.tif"), *model]) == 0
    assert "note" not in capsys.readouterr().out


def _images_segmented(monkeypatch) -> list:
    """The image each call of the engine (napari_unet.api.iter_segment) is given from now on, as
    the command line reads it (an array, a memmap or a TiffPlanes): a list the calls fill."""
    import napari_unet.api

    seen = []
    real = napari_unet.api.iter_segment

    def spy(image, **kwargs):
        seen.append(image)
        return (yield from real(image, **kwargs))

    monkeypatch.setattr(napari_unet.api, "iter_segment", spy)
    return seen


def test_segment_maps_an_uncompressed_series_instead_of_reading_it(models, tmp_path, capsys, monkeypatch):
    """A big uncompressed TIFF reaches the engine mapped from the file (read a plane at a
    time), and gives the results a compressed copy, read whole, gives."""
    seen = _images_segmented(monkeypatch)
    stack = np.stack([disc_scene(d, noise=5, seed=i)[0] for i, d in enumerate(DISCS)])  # (3, 64, 64)
    tifffile.imwrite(tmp_path / "raw.tif", stack, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "packed.tif", stack, imagej=True, metadata={"axes": "TYX"},
                     compression="zlib")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "raw.tif"), str(tmp_path / "packed.tif"), "-o", str(out),
                 "-m", str(models["2d"]), "--device", "cpu", "--measure"]) == 0
    capsys.readouterr()
    assert [type(image) for image in seen] == [np.memmap, TiffPlanes]  # the compressed one page by page
    with pytest.raises(ValueError, match="closed"):  # its file closed once segmented, not when collected
        seen[1][0]
    for kind in ("semantic", "instances"):
        np.testing.assert_array_equal(tifffile.imread(out / f"raw_{kind}.tif"),
                                      tifffile.imread(out / f"packed_{kind}.tif"))
    assert (out / "raw_objects.csv").read_text() == (out / "packed_objects.csv").read_text()


def test_segment_closes_a_stack_read_page_by_page_when_it_fails(models, tmp_path, capsys, monkeypatch):
    """An image that fails (NaN pixels here) has its file closed too, before the batch goes on."""
    seen = _images_segmented(monkeypatch)
    stack = np.stack([disc_scene(d, noise=5, seed=i)[0] for i, d in enumerate(DISCS)]).astype(np.float32)
    stack[1, 3, 3] = np.nan
    tifffile.imwrite(tmp_path / "bad.tif", stack, imagej=True, metadata={"axes": "TYX"}, compression="zlib")
    assert main(["segment", str(tmp_path / "bad.tif"), "-o", str(tmp_path / "out"), "-m", str(models["2d"]),
                 "--device", "cpu"]) == 2
    assert "NaN" in _assert_one_error_line(capsys.readouterr().err)
    assert [type(image) for image in seen] == [TiffPlanes]
    with pytest.raises(ValueError, match="closed"):
        seen[0][0]


def test_segment_reads_a_compressed_series_a_page_at_a_time(models, tmp_path, capsys, fake_net):
    """A compressed series (zlib, which tifffile reads on its own) costs no more memory than the
    same series uncompressed, which is mapped from the file: its pages are read as the engine
    uses them, not all at once first (the whole series, 2 bytes per pixel more, before). Each
    frame normalised on its own: the range of a whole series comes from a sample of up to 4
    million pixels, which in a series this short is all of it (read page by page, but kept)."""
    frame, _ = disc_scene(DISCS[0], noise=5, seed=0)
    series = np.stack([np.roll(np.tile(frame, (2, 2)), t, axis=1) for t in range(40)]).astype(np.uint16) * 100
    tifffile.imwrite(tmp_path / "raw.tif", series, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "packed.tif", series, imagej=True, metadata={"axes": "TYX"}, compression="zlib")
    peaks = {}
    for name in ("raw", "raw", "packed"):  # the first run's one-off costs (imports, caches) are not counted
        args = ["segment", str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / "out"), "-m", str(models["2d"]),
                "--device", "cpu", "--normalize-per", "frame", "--overwrite"]
        peaks[name] = peak_numpy_bytes(lambda args=args: main(args))
    capsys.readouterr()
    assert peaks["packed"] - peaks["raw"] < series.nbytes / 4, \
        f"{(peaks['packed'] - peaks['raw']) / series.nbytes:.2f} of the series more"
    for kind in ("semantic", "instances"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / f"raw_{kind}.tif"),
                                      tifffile.imread(tmp_path / "out" / f"packed_{kind}.tif"))


def test_segment_normalize_per_frame_keeps_a_bleached_frame(models, tmp_path, capsys, fake_net):
    """--normalize-per frame: the second time point, bleached to a tenth, keeps its discs (over
    the whole series they are lost); the choice is in the results' metadata."""
    image, labels = disc_scene(DISCS[0])
    tifffile.imwrite(tmp_path / "movie.tif", np.stack([image, image // 10]), photometric="minisblack")
    cmd = ["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "-m", str(models["2d"]), "--device", "cpu"]
    for per, second in ((None, False), ("frame", True)):
        out = tmp_path / str(per)
        assert main([*cmd, "-o", str(out), *(["--normalize-per", per] if per else [])]) == 0
        sem, meta = tifffile.imread(out / "movie_semantic.tif"), read_tiff_metadata(out / "movie_semantic.tif")
        np.testing.assert_array_equal(sem[0], labels > 0)
        assert np.array_equal(sem[1], labels > 0) if second else not sem[1].any()
        assert (meta["normalize_per"], meta["normalize_per_axes"]) == (per or "stack", "T" if per else "")
    with pytest.raises(SystemExit) as stop:  # argparse's usage and message
        main([*cmd, "-o", str(tmp_path / "bad"), "--normalize-per", "time"])
    assert stop.value.code == 2 and "invalid choice: 'time'" in capsys.readouterr().err


def test_segment_measure_writes_one_row_per_object(models, tmp_path, capsys, fake_net):
    """--measure adds <stem>_objects.csv whose rows are the instances file's objects, per time
    point; an existing table is replaced only with --overwrite, refused before any work."""
    import csv

    frames = [disc_scene(DISCS[t % 2])[0] for t in range(2)]
    tifffile.imwrite(tmp_path / "movie.tif", np.stack(frames), photometric="minisblack")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "-o", str(out),
            "-m", str(models["2d"]), "--device", "cpu", "--measure"]
    assert main(args) == 0
    assert "movie_objects.csv" in capsys.readouterr().out
    inst = tifffile.imread(out / "movie_instances.tif")
    with open(out / "movie_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = [(t, i) for t in range(2) for i in np.unique(inst[t]) if i]
    assert [(int(r["t"]), int(r["label"])) for r in rows] == expected
    for r in rows:
        mask = inst[int(r["t"])] == int(r["label"])
        assert int(r["area"]) == mask.sum()
        assert float(r["mean_intensity"]) == pytest.approx(frames[int(r["t"])][mask].mean(), rel=1e-5)
    ran = len(fake_net)
    assert main(args) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "movie_semantic.tif already exists" in line
    (out / "movie_semantic.tif").unlink()
    (out / "movie_instances.tif").unlink()
    assert main(args) == 2  # the table alone blocks too
    assert "movie_objects.csv already exists" in _assert_one_error_line(capsys.readouterr().err)
    assert len(fake_net) == ran
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert not _leftovers(out)
    # --pixel-size adds the calibrated area; sizes that do not fit the axes are refused
    # before the network runs, with or without --measure (the result files are calibrated too).
    assert main([*args, "--overwrite", "--pixel-size", "0.5"]) == 0
    capsys.readouterr()
    with open(out / "movie_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["area_um2"]) == pytest.approx(int(r["area"]) * 0.25) for r in rows)
    ran = len(fake_net)
    assert main([*args, "--overwrite", "--pixel-size", "2,0.5,0.5"]) == 2
    assert "give --pixel-size Y,X" in _assert_one_error_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as stop:  # not a size: argparse's usage and message
        main([*args, "--overwrite", "--pixel-size", "0"])
    assert stop.value.code == 2 and "'0' is not a pixel size" in capsys.readouterr().err
    args.remove("--measure")  # --pixel-size calibrates the result files too: checked as early without a table
    assert main([*args, "--overwrite", "--pixel-size", "2,0.5,0.5"]) == 2
    # Nothing is measured now: the message says what the sizes must fit, not what is measured.
    assert "movie.tif has the spatial axes YX: give --pixel-size Y,X" in _assert_one_error_line(
        capsys.readouterr().err)
    assert len(fake_net) == ran
    # An ImageJ file's own calibration is used; --pixel-size overrides it.
    tifffile.imwrite(tmp_path / "cal.tif", frames[0], imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"unit": "micron"})
    for extra, size in (([], 0.2), (["--pixel-size", "0.5"], 0.5)):
        assert main(["segment", str(tmp_path / "cal.tif"), "-o", str(out), "-m", str(models["2d"]),
                     "--device", "cpu", "--measure", "--overwrite", *extra]) == 0
        capsys.readouterr()
        with open(out / "cal_objects.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(float(r["area_um2"]) == pytest.approx(int(r["area"]) * size**2) for r in rows)
    # --pixel-size is Z,Y,X (here Y,X) whatever order the image's axes come in: a bar 30 px long in X
    # and 6 px in Y, stored XY, with pixels of 0.5 um in Y and 0.25 um in X.
    bar = np.zeros((64, 48), np.uint16)
    bar[10:40, 20:26] = 1000
    tifffile.imwrite(tmp_path / "xy.tif", bar)
    assert main(["segment", str(tmp_path / "xy.tif"), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu",
                 "--axes", "XY", "--measure", "--pixel-size", "0.5,0.25"]) == 0
    capsys.readouterr()
    with open(out / "xy_objects.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["axis_major_length_um"]) == pytest.approx(float(row["axis_major_length"]) * 0.25, rel=1e-4)
    assert float(row["axis_minor_length_um"]) == pytest.approx(float(row["axis_minor_length"]) * 0.5, rel=1e-4)


def _calibration(path: Path) -> tuple[str, dict, float, float]:
    """Axes, ImageJ metadata and X/Y pixel sizes (from the resolution tags) of a result file."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej, path
        tags = tif.pages[0].tags
        x, y = (den / num for num, den in (tags["XResolution"].value, tags["YResolution"].value))
        return tif.series[0].axes, tif.imagej_metadata, x, y


def test_segment_results_carry_the_input_pixel_size_for_fiji(models, tmp_path, capsys, fake_net):
    """Both result files are ImageJ hyperstacks with the input's axes (slices of a z-stack,
    frames of a time series, no channels) and calibration: the pixel size an ImageJ file declares,
    or --pixel-size (no --measure needed). Axes ImageJ cannot store give a plain TIFF, with a note."""
    frames = np.stack([disc_scene(DISCS[t % 2])[0] for t in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", frames, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 1.5})
    tifffile.imwrite(tmp_path / "movie.tif", frames, photometric="minisblack")
    out = tmp_path / "out"
    model = ["-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(["segment", str(tmp_path / "stack.tif"), *model]) == 0
    assert main(["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "--pixel-size", "0.5", *model]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    for kind in ("semantic", "instances"):
        axes, ij, x, y = _calibration(out / f"stack_{kind}.tif")
        assert axes == "ZYX" and ij["slices"] == 3 and "frames" not in ij and "channels" not in ij
        assert ij["unit"] == "um" and ij["spacing"] == 1.5
        assert x == pytest.approx(0.2) and y == pytest.approx(0.2)
        read = read_image_file(out / f"stack_{kind}.tif")
        assert read.axes == "ZYX" and read.pixel_size_um == pytest.approx({"Z": 1.5, "Y": 0.2, "X": 0.2})
        assert read_tiff_metadata(out / f"stack_{kind}.tif")["pixel_size_um"] == pytest.approx(read.pixel_size_um)
        axes, ij, x, y = _calibration(out / f"movie_{kind}.tif")
        assert axes == "TYX" and ij["frames"] == 3 and "slices" not in ij and "spacing" not in ij
        assert ij["unit"] == "um" and x == pytest.approx(0.5) and y == pytest.approx(0.5)
    np.testing.assert_array_equal(tifffile.imread(out / "stack_instances.tif") > 0,
                                  tifffile.imread(out / "stack_semantic.tif") == 1)
    # A transposed image (XY) keeps its layout, beside its input: plain TIFFs, and the run says so.
    tifffile.imwrite(tmp_path / "xy.tif", frames[0])
    assert main(["segment", str(tmp_path / "xy.tif"), "--axes", "XY", "--pixel-size", "0.5", *model]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("not in ImageJ's order" in line for line in lines[1:])
    assert read_image_file(out / "xy_instances.tif").axes == "XY"
    assert read_tiff_metadata(out / "xy_instances.tif")["pixel_size_um"] == {"Y": 0.5, "X": 0.5}
    assert not _leftovers(out)


def test_segment_results_keep_the_frame_interval_of_a_series(models, tmp_path, capsys):
    """An ImageJ series' frame interval (and its unit, and playback rate) goes into both results,
    so Fiji shows their frames in time as it shows the input's, not as frame numbers."""
    frames = np.stack([disc_scene(DISCS[t % 2])[0] for t in range(3)])
    timing = {"finterval": 30.0, "tunit": "sec", "fps": 5.0}
    tifffile.imwrite(tmp_path / "movie.tif", frames, imagej=True, metadata={"axes": "TYX", **timing})
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "movie.tif"), "-o", str(out), "-m", str(models["2d"]),
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    for kind in ("semantic", "instances"):
        _, ij, _, _ = _calibration(out / f"movie_{kind}.tif")
        assert {k: ij.get(k) for k in timing} == timing
        assert read_image_file(out / f"movie_{kind}.tif").time_calibration == timing


@pytest.mark.parametrize(("option", "said"), [
    (["--threshold", "2"], "--threshold 2: give a probability between 0 and 1"),
    (["--min-size", "-1"], "--min-size -1: give a number of pixels, 0 or more"),
    (["--channel", "-1"], "--channel -1: give the index of a channel"),
    (["--scale", "50"], "--scale 50: give a number from 0.1 to 10"),
    (["--device", "cuda:99"], "--device cuda:99 is not available on this machine (it has: "),
    (["--device", "gpu"], "--device gpu is not a device: give auto, cpu, cuda, cuda:N or mps"),
    # The test networks take multiples of 4: 16 px is their smallest tile.
    (["--tile-size", "8"], "--tile-size 8: give at least 16 for the model 2d"),
])
def test_segment_refuses_a_bad_option_once_in_the_command_lines_words(models, tmp_path, capsys, option, said):
    """A bad option is named as the command line spells it (not threshold=, device='cpu'), once
    for the batch, before any image is read: --keep-going does not repeat it for every image."""
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, disc_scene(DISCS[0])[0])
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out),
                 "-m", str(models["2d"]), "--keep-going", *option])
    line = _assert_one_error_line(capsys.readouterr().err)
    assert code == 2
    assert said in line
    assert "=" not in line and "must be" not in line
    assert not list(out.glob("*.tif"))


@pytest.mark.parametrize(("command", "option", "said"), [
    ("evaluate", ["--scale", "0"], "--scale 0: give a number from 0.1 to 10"),
    ("evaluate", ["--device", "cuda:99"], "--device cuda:99 is not available"),
    ("tune", ["--channel", "-2"], "--channel -2: give the index of a channel"),
    ("train", ["--epochs", "0"], "--epochs 0: give a whole number, 1 or more"),
    ("train", ["--lr", "0"], "--lr 0: give a learning rate above 0"),
    ("train", ["--core-fraction", "1"], "--core-fraction 1: give a number from 0 up to 1"),
])
def test_evaluate_tune_and_train_name_a_bad_option_as_the_command_line_spells_it(
        models, tmp_path, capsys, command, option, said):
    images, masks = _write_set(tmp_path, [DISCS[0]])
    out = [] if command == "evaluate" else ["-o", str(tmp_path / "model")]
    model = [] if command == "train" else ["-m", str(models["2d"])]
    assert main([command, "--images", str(images), "--masks", str(masks), *model, *out, *option]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert said in line
    assert "=" not in line and "must be" not in line


@pytest.mark.parametrize(("command", "option"), [("evaluate", "--images"), ("evaluate", "--masks"),
                                               ("tune", "--images"), ("train", "--val-masks")])
def test_evaluate_tune_and_train_ask_for_a_folder_when_given_a_file(models, tmp_path, capsys, command, option):
    """An image (or mask) file given where its folder belongs is named as a file, with its folder."""
    images, masks = _write_set(tmp_path, [DISCS[0]])
    out = [] if command == "evaluate" else ["-o", str(tmp_path / "model")]
    model = [] if command == "train" else ["-m", str(models["2d"])]
    val = ["--val-images", str(images), "--val-masks", str(masks)] if command == "train" else []
    folder = masks if "masks" in option else images
    args = [command, "--images", str(images), "--masks", str(masks), *val, *model, *out]
    args[args.index(option) + 1] = str(folder / "img0.tif")
    assert main(args) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert f"{option} {folder / 'img0.tif'}: give a folder, not a file" in line
    assert f"(here {folder}; " in line
    # Each says how that folder is laid out (the masks' did not: 'with the masks' in the masks' folder).
    assert ("their masks lie under the same names in a folder of their own)" if "images" in option
            else "each under its image's name)") in line
    assert not (tmp_path / "model").exists()


def test_segment_skips_what_is_not_an_image_among_several(models, tmp_path, capsys, fake_net):
    """segment folder/* gets the notes, tables and sub-folders beside the images: they are skipped
    with one note saying how many, as evaluate and train skip them. One given alone is refused, and
    an unreadable file with an image's suffix is still an image that failed."""
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    tifffile.imwrite(folder / "a.tif", disc_scene(DISCS[0])[0])
    skio.imsave(folder / "b.png", disc_scene(DISCS[1])[0], check_contrast=False)
    (folder / "notes.txt").write_text("stained on Monday")
    (folder / "table.csv").write_text("id,area\n")
    out = tmp_path / "out"
    model = ["-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(["segment", *sorted(map(str, folder.iterdir())), *model]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        ("napari-unet: note: skipped 3 paths of the 5 given, not image files (BMP, JPEG, JPG, PNG, TIF, TIFF): "
         "notes.txt, sub, table.csv")]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["a.tif", "b.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif",
                                                     "b_instances.tif", "b_semantic.tif"]
    assert main(["segment", str(folder / "notes.txt"), *model]) == 2
    assert "notes.txt: unsupported file type '.txt'" in _assert_one_error_line(capsys.readouterr().err)
    (folder / "broken.tif").write_text("not a TIFF")
    assert main(["segment", *sorted(map(str, folder.iterdir())), *model, "--overwrite", "--keep-going"]) == 2
    err = capsys.readouterr().err
    assert "skipped 3 paths of the 6 given" in err
    assert ["broken.tif" in line for line in err.splitlines() if line.startswith("napari-unet: error:")] == [True]
    assert "1 of 3 images failed: broken.tif" in err


def test_segment_skips_its_own_results_among_several_and_refuses_one_given_alone(models, tmp_path, capsys,
                                                                                 fake_net):
    """``segment folder/* -o folder`` run again gets the first run's results among the images:
    they are skipped with one note (with the paths that are no image), not segmented as images;
    a file only named like a result is still an image. A result given alone is refused."""
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", disc_scene(DISCS[0])[0])
    tifffile.imwrite(folder / "b_semantic.tif", disc_scene(DISCS[1])[0])  # a user's image, so named
    model = ["-o", str(folder), "-m", str(models["2d"]), "--device", "cpu", "--measure"]
    assert main(["segment", *sorted(map(str, folder.iterdir())), *model]) == 0
    capsys.readouterr()
    given = sorted(map(str, folder.iterdir()))
    assert len(given) == 8  # a, b_semantic, and the two results and the table of each
    assert main(["segment", *given, *model, "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [(
        "napari-unet: note: skipped 6 paths of the 8 given, 2 not image files (BMP, JPEG, JPG, PNG, TIF, TIFF): "
        "a_objects.csv, b_semantic_objects.csv; 4 napari-unet results (of an earlier run): a_instances.tif, "
        "a_semantic.tif, b_semantic_instances.tif, ...")]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["a.tif", "b_semantic.tif"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(p).name for p in given)
    without_tables = [p for p in given if not p.endswith(".csv")]
    assert main(["segment", *without_tables, *model[:-1], "--overwrite"]) == 0
    assert capsys.readouterr().err.strip() == (
        "napari-unet: note: skipped 4 paths of the 6 given, napari-unet results (of an earlier run): "
        "a_instances.tif, a_semantic.tif, b_semantic_instances.tif, ...")
    assert main(["segment", str(folder / "a_semantic.tif"), *model]) == 2
    assert _assert_one_error_line(capsys.readouterr().err) == (
        "napari-unet: error: a_semantic.tif is a napari-unet result, not an image: give the image it was made from.")
    assert main(["segment", str(folder / "a_instances.tif"), str(folder / "a_semantic.tif"), *model]) == 2
    assert _assert_one_error_line(capsys.readouterr().err).endswith(
        "a_instances.tif, a_semantic.tif are napari-unet results, not images: give the images they were made from.")


def test_segment_says_when_an_image_is_blank(models, tmp_path, capsys):
    """An image whose every pixel has one value (all 0: an empty acquisition, the wrong file) is said
    to be blank on its result line, so '0 objects' is not read as no nuclei found in a real image;
    a series blank but for its last frame, or an image of nuclei, is not."""
    blank = np.zeros((3, 32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "zeros.tif", blank, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "grey.tif", np.full((32, 32), 7.5, np.float32))
    late = blank.copy()
    late[2, 5, 5] = 1
    tifffile.imwrite(tmp_path / "late.tif", late, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "discs.tif", disc_scene(DISCS[0])[0])
    assert main(["segment", *(str(tmp_path / f"{n}.tif") for n in ("zeros", "grey", "late", "discs")),
                 "-o", str(tmp_path / "out"), "-m", str(models["2d"]), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "zeros.tif: " in lines[0] and "(the image is blank: every pixel is 0) -> zeros_semantic.tif" in lines[0]
    assert "(the image is blank: every pixel is 7.5) -> " in lines[1]
    assert [("blank" in line) for line in lines] == [True, True, False, False]


def test_segment_says_when_the_channel_it_segments_is_blank(models, tmp_path, capsys):
    """--channel picks an empty channel of a composite (the wrong channel): its result line says the
    channel segmented is blank, though the other channel holds nuclei; the channel of the nuclei is
    not called blank. The channel axis first (CYX) and after another (ZCYX) alike."""
    discs = disc_scene(DISCS[0])[0]
    empty = np.zeros_like(discs)
    tifffile.imwrite(tmp_path / "cyx.tif", np.stack([discs, empty]), imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "zcyx.tif", np.stack([np.stack([discs, empty])] * 2), imagej=True,
                     metadata={"axes": "ZCYX"})
    for channel, blank in (("1", True), ("0", False)):
        assert main(["segment", str(tmp_path / "cyx.tif"), str(tmp_path / "zcyx.tif"), "-o", str(tmp_path / "out"),
                     "--overwrite", "-m", str(models["2d"]), "--device", "cpu", "--channel", channel]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]
        assert len(lines) == 2 and all(("(the image is blank: every pixel is 0)" in line) == blank
                                       for line in lines), lines


def test_segment_and_evaluate_count_one_thing_in_the_singular(models, tmp_path, capsys, fake_net):
    """One object, one image, one failure: "1 object", not "1 objects"."""
    images, masks = _write_set(tmp_path, [DISCS[0][:1]])  # one image of one disc
    out = tmp_path / "out"
    assert main(["segment", str(images / "img0.tif"), "-o", str(out), "-m", str(models["2d"]),
                 "--min-size", "0"]) == 0
    assert capsys.readouterr().out.startswith("img0.tif: 1 object -> ")
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "-m", str(models["2d"])]) == 0
    printed = capsys.readouterr().out
    assert " on 1 image in " in printed and "1 image, 1 true object, 1 predicted object" in printed
    (images / "img1.tif").write_text("not a TIFF")
    assert main(["segment", str(images / "img1.tif"), "-o", str(out), "-m", str(models["2d"]), "--keep-going"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "napari-unet: 1 of 1 image failed: img1.tif"


def test_segment_keep_going_and_skip_existing_finish_a_batch(models, tmp_path, capsys, fake_net):
    """A bad image stops a batch (the earlier results stay); rerun with --skip-existing
    --keep-going, the finished image is skipped, the bad one named, the rest segmented."""
    good, _ = disc_scene(DISCS[0], noise=5)
    bad = good.astype(np.float32)
    bad[3, 3] = np.nan
    for name, image in (("a", good), ("b", bad), ("c", good)):
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
    out = tmp_path / "out"
    args = ["segment", *(str(tmp_path / f"{n}.tif") for n in "abc"), "-o", str(out),
            "-m", str(models["2d"]), "--device", "cpu"]
    assert main(args) == 2
    assert _assert_one_error_line(capsys.readouterr().err).startswith("napari-unet: error: b.tif: ")
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif"]
    assert main(args) == 2  # a plain rerun is refused: a's results exist
    assert "--skip-existing" in _assert_one_error_line(capsys.readouterr().err)
    ran = len(fake_net)
    before = (out / "a_instances.tif").stat().st_mtime_ns
    assert main([*args, "--skip-existing", "--keep-going"]) == 2
    captured = capsys.readouterr()
    assert "a.tif: skipped" in captured.out and "c.tif: 3 objects" in captured.out
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith("napari-unet: error: b.tif: ") and "NaN" in errors[0]
    assert errors[-1] == "napari-unet: 1 of 3 images failed: b.tif"
    assert "Traceback" not in captured.err
    assert (out / "a_instances.tif").stat().st_mtime_ns == before
    assert len(fake_net) == ran + 1  # c only
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif",
                                                     "c_instances.tif", "c_semantic.tif"]
    # An image with part of its results (stopped between two writes): --skip-existing alone
    # says that --overwrite redoes it, not to add the option already given.
    (out / "c_instances.tif").unlink()
    assert main([*args, "--skip-existing"]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "c_semantic.tif already exists" in line and "--overwrite" in line and "only in part" in line


def test_segment_overwrite_without_measure_removes_the_earlier_table(models, tmp_path, capsys, fake_net):
    """Re-segmented with --overwrite but no --measure, an image's earlier <stem>_objects.csv
    would describe objects that are no longer in its instances file: it goes with them."""
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.tif"), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main([*args, "--measure"]) == 0
    assert (out / "a_objects.csv").is_file()
    assert main([*args, "--overwrite", "--threshold", "0.9"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif"]


def test_segment_keep_going_goes_on_after_an_unforeseen_error(models, tmp_path, capsys, fake_net,
                                                            monkeypatch):
    """An error the engine does not turn into a SegmentationError (running out of memory on
    one big image) is named with its file, and --keep-going still goes on with the others."""
    from napari_unet import api

    real = api.iter_segment

    def flaky(image, **kw):
        if image.shape[0] == 80:  # the "big" image
            raise MemoryError()
        return (yield from real(image, **kw))

    monkeypatch.setattr(api, "iter_segment", flaky)
    good, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", good)
    tifffile.imwrite(tmp_path / "b.tif", np.pad(good, ((8, 8), (0, 0))))
    tifffile.imwrite(tmp_path / "c.tif", good)
    out = tmp_path / "out"
    args = ["segment", *(str(tmp_path / f"{n}.tif") for n in "abc"), "-o", str(out),
            "-m", str(models["2d"]), "--device", "cpu"]
    assert main([*args, "--keep-going"]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith("napari-unet: error: b.tif: ran out of memory"), captured.err
    assert errors[-1] == "napari-unet: 1 of 3 images failed: b.tif"
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif",
                                                     "c_instances.tif", "c_semantic.tif"]
    # Without --keep-going the batch stops, naming the file (status 1: a failure not foreseen).
    shutil.rmtree(out)
    assert main(args) == 1
    assert _assert_one_error_line(capsys.readouterr().err).startswith("napari-unet: error: b.tif: ")


def test_segment_link_time_keeps_ids_over_time(models, tmp_path, capsys, fake_net):
    """A disc drifting by a pixel per frame keeps its id with --link-time; each frame
    restarts at 1 without it. Without a time axis --link-time is refused."""
    frames = [disc_scene([(16, 16 + t, 6), (44, 40 - t, 7)])[0] for t in range(3)]
    # A small disc above the others in frame 1 only: that frame's own ids shift by one.
    frames[1] = disc_scene([(4, 50, 3), (16, 17, 6), (44, 39, 7)])[0]
    tifffile.imwrite(tmp_path / "movie.tif", np.stack(frames), photometric="minisblack")
    runs = {}
    for flag in ([], ["--link-time"]):
        out = tmp_path / f"out{len(flag)}"
        assert main(["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "-o", str(out),
                     "-m", str(models["2d"]), "--device", "cpu", *flag]) == 0
        said = capsys.readouterr().out
        runs[bool(flag)] = tifffile.imread(out / "movie_instances.tif")
    # 7 objects over the 3 frames are 3 nuclei followed: 3 tracks, not 3 objects "linked".
    assert said.startswith("movie.tif: 7 objects in 3 tracks -> ")
    linked = runs[True]
    top = [linked[t, 16, 16 + t] for t in range(3)]
    bottom = [linked[t, 44, 40 - t] for t in range(3)]
    assert len(set(top)) == 1 and len(set(bottom)) == 1 and top[0] != bottom[0]
    assert linked.max() == 3 and linked[1, 4, 50] == 3, "the newcomer gets a new id"
    np.testing.assert_array_equal(linked > 0, runs[False] > 0)
    unlinked_top = [runs[False][t, 16, 16 + t] for t in range(3)]
    assert unlinked_top == [1, 2, 1], "without linking each frame counts from 1"
    # Read as a z-stack (no T axis), there is nothing to link: refused before the network
    # runs, nothing written.
    out = tmp_path / "zstack"
    ran = len(fake_net)
    assert main(["segment", str(tmp_path / "movie.tif"), "-o", str(out), "-m", str(models["2d"]),
                 "--device", "cpu", "--link-time"]) == 2
    assert "--axes TYX" in _assert_one_error_line(capsys.readouterr().err)
    assert len(fake_net) == ran
    assert not out.exists() or list(out.iterdir()) == []


def test_segment_link_time_measure_gives_each_row_its_parent(models, tmp_path, capsys, fake_net):
    """With --link-time, <stem>_objects.csv gains parent_id (tracks_table's): the daughter that took
    a new id has its mother's track, every other row 0; the other columns and the row order (time
    point, then id) stay as they are. Without --link-time there is no parent_id column."""
    import csv

    # A disc dividing in two (the left daughter keeps its id), and one that stays as it is.
    frames = [disc_scene([(20, 30, 7), (50, 12, 4)])[0],
              disc_scene([(20, 27, 5), (50, 12, 4), (20, 38, 4)])[0]]
    tifffile.imwrite(tmp_path / "movie.tif", np.stack(frames), photometric="minisblack")
    tables = {}
    for flag in ([], ["--link-time"]):
        out = tmp_path / f"out{len(flag)}"
        assert main(["segment", str(tmp_path / "movie.tif"), "--axes", "TYX", "-o", str(out),
                     "-m", str(models["2d"]), "--device", "cpu", "--measure", *flag]) == 0
        capsys.readouterr()
        with open(out / "movie_objects.csv", newline="") as f:
            tables[bool(flag)] = list(csv.DictReader(f))
    assert "parent_id" not in tables[False][0]
    linked = tables[True]
    inst = tifffile.imread(tmp_path / "out1" / "movie_instances.tif")
    mother, other, daughter = inst[1, 20, 27], inst[1, 50, 12], inst[1, 20, 38]
    assert inst[0, 20, 30] == mother and len({mother, other, daughter}) == 3
    assert [(int(r["t"]), int(r["label"])) for r in linked] == [
        (t, i) for t in range(2) for i in np.unique(inst[t]) if i]
    parents = {(int(r["t"]), int(r["label"])): int(r["parent_id"]) for r in linked}
    assert parents == {(0, mother): 0, (0, other): 0, (1, mother): 0, (1, other): 0, (1, daughter): mother}
    assert list(linked[0]) == [*tables[False][0], "parent_id"]
    assert all(int(r["area"]) == (inst[int(r["t"])] == int(r["label"])).sum() for r in linked)


# --- segment: bad input ------------------------------------------------------------------

def _bad_cases(tmp_path: Path, model: Path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, disc_scene(DISCS[0])[0])
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a TIFF file at all" * 20)
    a_file = tmp_path / "afile"
    a_file.write_text("I am a file, not a folder")
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 30)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "good.tif"
    tifffile.imwrite(twin, disc_scene(DISCS[1])[0])
    two_stains = tmp_path / "two_stains.tif"  # stains stored last, no metadata to say so
    tifffile.imwrite(two_stains, np.stack([disc_scene(DISCS[0])[0]] * 2, axis=-1), photometric="minisblack")
    colour = tmp_path / "colour.png"
    skio.imsave(colour, np.repeat(disc_scene(DISCS[0])[0][..., None], 3, axis=-1), check_contrast=False)
    with_nan = tmp_path / "with_nan.tif"  # Fiji's 32-bit images hold NaN where a division had no value
    background = disc_scene(DISCS[0])[1] == 0
    tifffile.imwrite(with_nan, np.where(background, np.float32(np.nan), np.float32(1)))
    upper = tmp_path / "other" / "GOOD.png"
    skio.imsave(upper, disc_scene(DISCS[2])[0], check_contrast=False)
    out = tmp_path / "out"
    return {
        "missing image": ([str(tmp_path / "nope.tif")], ["-m", str(model)], out, "does not exist"),
        "unreadable image": ([str(garbage)], ["-m", str(model)], out, "Could not read"),
        "unreadable png": ([str(bad_png)], ["-m", str(model)], out, "Could not read"),
        "a folder": ([str(tmp_path)], ["-m", str(model)], out, "is a folder"),
        "unsupported file type": ([str(notes)], ["-m", str(model)], out, "unsupported file type"),
        "missing later image": ([str(good), str(tmp_path / "nope.tif")], ["-m", str(model)], out,
                                "does not exist"),
        "same name twice": ([str(good), str(twin)], ["-m", str(model)], out, "would both write"),
        "names differing in case": ([str(good), str(upper)], ["-m", str(model)], out, "would both write"),
        "same file twice": ([str(good), str(tmp_path / "." / "good.tif")], ["-m", str(model)], out,
                            "given twice"),
        "missing model": ([str(good)], ["-m", str(tmp_path / "no-model")], out, "not found"),
        "channel out of range": ([str(colour)], ["-m", str(model), "--channel", "3"], out,
                                 "3 channels: give one from 0 to 2 (--channel N"),
        "NaN in a float image": ([str(with_nan)], ["-m", str(model)], out, "Process > Math > Remove NaNs"),
        "two stains without --channel": ([str(two_stains)], ["-m", str(model), "--axes", "YXC"], out,
                                         "--channel N"),
        "bad axes": ([str(good)], ["-m", str(model), "--axes", "QX"], out, "Invalid axes"),
        "wrong number of axes": ([str(good)], ["-m", str(model), "--axes", "ZYX"], out, "letters"),
        "output not a folder": ([str(good)], ["-m", str(model)], a_file / "out", "Cannot write"),
        "scale not a number": ([str(good)], ["-m", str(model), "--scale", "big"], out,
                               "--scale big: give a number from 0.1 to 10"),
        "auto scale without a reference": ([str(good)], ["-m", str(model), "--scale", "auto"], out,
                                           "no reference object size"),
    }


@pytest.mark.parametrize("case", ["missing image", "unreadable image", "unreadable png", "a folder",
                                  "unsupported file type", "missing later image", "same name twice",
                                  "names differing in case", "same file twice",
                                  "missing model", "two stains without --channel", "NaN in a float image",
                                  "channel out of range",
                                  "bad axes", "wrong number of axes", "output not a folder",
                                  "scale not a number", "auto scale without a reference"])
def test_segment_bad_input_is_one_error_line(models, tmp_path, capsys, case):
    images, extra, out, fragment = _bad_cases(tmp_path, models["2d"])[case]
    code = main(["segment", *images, "--output", str(out), "--device", "cpu", *extra])
    captured = capsys.readouterr()
    assert code == 2
    line = _assert_one_error_line(captured.err)
    assert fragment in line
    assert captured.out == ""
    if out.is_dir():
        assert list(out.iterdir()) == [], "nothing may be left in the output folder"
    assert (tmp_path / "afile").read_text() == "I am a file, not a folder"


def test_segment_bad_second_image_keeps_first_results_complete(models, tmp_path, capsys):
    image, _ = disc_scene(DISCS[1], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    (tmp_path / "b.tif").write_bytes(b"\x00garbage" * 50)
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out),
                 "-m", str(models["2d"]), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    assert "b.tif" in _assert_one_error_line(captured.err)
    assert captured.out.startswith("a.tif: ") and captured.out.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif"]
    assert tifffile.imread(out / "a_semantic.tif").shape == image.shape
    assert tifffile.imread(out / "a_instances.tif").shape == image.shape
    assert _leftovers(out) == []


def test_segment_output_file_blocked_is_one_error_line(models, tmp_path, capsys):
    """A result name taken by a folder: a clear error, no temporary files left."""
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    (out / "a_semantic.tif").mkdir(parents=True)
    code = main(["segment", str(tmp_path / "a.tif"), "-o", str(out), "-m", str(models["2d"]),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    assert "a_semantic.tif" in _assert_one_error_line(captured.err)
    assert sorted(p.name for p in out.iterdir()) == ["a_semantic.tif"]
    assert (out / "a_semantic.tif").is_dir()


def test_segment_never_replaces_files_silently(models, tmp_path, capsys, fake_net):
    """Existing results need --overwrite; an input image is never replaced, even with it."""
    import os

    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_instances.tif").write_text("my hand-made labels")
    args = ["segment", str(tmp_path / "a.tif"), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]

    assert main(args) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "already exists" in line and "--overwrite" in line
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif"]
    assert (out / "a_instances.tif").read_text() == "my hand-made labels"

    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert tifffile.imread(out / "a_instances.tif").max() == 3

    # An image named like a result of another image in the same folder: refused,
    # with or without --overwrite, before anything is written.
    folder = tmp_path / "inputs"
    folder.mkdir()
    tifffile.imwrite(folder / "x.tif", image)
    other = disc_scene(DISCS[1], noise=5)[0]
    tifffile.imwrite(folder / "x_semantic.tif", other)
    for extra in ([], ["--overwrite"]):
        code = main(["segment", str(folder / "x.tif"), str(folder / "x_semantic.tif"), "-o", str(folder),
                     "-m", str(models["2d"]), "--device", "cpu", *extra])
        assert code == 2
        assert "would replace the input image" in _assert_one_error_line(capsys.readouterr().err)
        assert sorted(p.name for p in folder.iterdir()) == ["x.tif", "x_semantic.tif"]
        np.testing.assert_array_equal(tifffile.imread(folder / "x_semantic.tif"), other)

    # A result name that is a hard link to the input is the input too.
    linked = tmp_path / "linked"
    linked.mkdir()
    os.link(tmp_path / "a.tif", linked / "a_semantic.tif")
    code = main(["segment", str(tmp_path / "a.tif"), "-o", str(linked), "-m", str(models["2d"]),
                 "--device", "cpu", "--overwrite"])
    assert code == 2
    assert "would replace the input image" in _assert_one_error_line(capsys.readouterr().err)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), image)


def test_segment_results_follow_the_umask(models, tmp_path, capsys):
    import os
    import stat

    image, _ = disc_scene(DISCS[0])
    tifffile.imwrite(tmp_path / "a.tif", image)
    old = os.umask(0o022)
    try:
        assert main(["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"),
                     "-m", str(models["2d"]), "--device", "cpu"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for name in ("a_semantic.tif", "a_instances.tif"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644


def test_segment_reads_the_axes_an_imagej_file_declares(models, tmp_path, capsys, fake_net):
    """A ZCYX hyperstack is not mistaken for a time series of z-stacks: the channels are
    channels (so a 1-channel model asks which one), and --channel picks one."""
    stack = np.stack([np.stack([disc_scene(DISCS[z])[0], np.full((64, 64), 7, np.uint8)])
                      for z in range(3)])
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX"})
    out = tmp_path / "out"
    args = ["segment", str(path), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(args) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "ZCYX" in line and "channel" in line
    assert main([*args, "--channel", "0"]) == 0
    assert "hyper.tif: " in capsys.readouterr().out
    semantic = tifffile.imread(out / "hyper_semantic.tif")
    assert semantic.shape == (3, 64, 64)
    for z in range(3):
        _, labels = disc_scene(DISCS[z])
        assert ((semantic[z] > 0) == (labels > 0)).mean() > 0.97
    # --axes still wins over the file.
    assert main([*args, "--overwrite", "--axes", "TCYX", "--channel", "1"]) == 0
    capsys.readouterr()
    assert tifffile.imread(out / "hyper_semantic.tif").max() == 0, "channel 1 is flat"


@pytest.mark.parametrize("command", ["segment", "evaluate"])
def test_axes_of_another_length_than_the_files_name_them(models, tmp_path, capsys, command):
    """--axes TZYX for a file that declares TYX: the line names the file's axes, not an example
    guessed from the shape ('ZYX', which would label the frames together as one volume)."""
    images, masks = _write_set(tmp_path, [DISCS[0]])
    movie = np.stack([tifffile.imread(images / "img0.tif")] * 3)
    tifffile.imwrite(images / "img0.tif", movie, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(masks / "img0.tif", np.stack([tifffile.imread(masks / "img0.tif")] * 3), photometric="minisblack")
    where = [str(images / "img0.tif"), "-o", str(tmp_path / "out")] if command == "segment" else \
        ["--images", str(images), "--masks", str(masks)]
    assert main([command, *where, "-m", str(models["2d"]), "--device", "cpu", "--axes", "TZYX"]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "--axes TZYX has 4 letters, but img0.tif has 3 dimensions (shape (3, 64, 64)) and declares the " \
           "axes TYX: leave --axes out to use them" in line
    assert "ZYX'" not in line


@pytest.mark.parametrize("command", ["segment", "evaluate"])
def test_axes_other_than_the_files_are_used_with_a_note_naming_both(models, tmp_path, capsys, command):
    """--axes of as many letters as the file declares, but others (ZYX for a TYX movie; YXT would read
    its 3 frames of 64 x 64 as 64 frames of 3 x 64): the user's axes are used, and a note names both.
    --axes the same as the file's gives none."""
    images, masks = _write_set(tmp_path, [DISCS[0]])
    movie = np.stack([tifffile.imread(images / "img0.tif")] * 3)
    tifffile.imwrite(images / "img0.tif", movie, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(masks / "img0.tif", np.stack([tifffile.imread(masks / "img0.tif")] * 3), photometric="minisblack")
    out = tmp_path / "out"
    where = [str(images / "img0.tif"), "-o", str(out), "--overwrite"] if command == "segment" else \
        ["--images", str(images), "--masks", str(masks)]
    assert main([command, *where, "-m", str(models["2d"]), "--device", "cpu", "--axes", "zyx"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in (captured.out + captured.err).splitlines() if "note" in line]
    assert len(notes) == 1, notes
    assert "--axes zyx differs from the axes TYX" in notes[0] and "as ZYX" in notes[0]
    if command == "segment":
        assert read_image_file(out / "img0_instances.tif").axes == "ZYX"
    assert main([command, *where, "-m", str(models["2d"]), "--device", "cpu", "--axes", "TYX"]) == 0
    captured = capsys.readouterr()
    assert "differs" not in captured.out + captured.err


def test_debug_environment_variable_shows_the_traceback(models, tmp_path, monkeypatch):
    from napari_unet.errors import SegmentationError

    monkeypatch.setenv("NAPARI_UNET_DEBUG", "1")
    with pytest.raises(SegmentationError, match="does not exist"):
        main(["segment", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o"), "-m", str(models["2d"])])


def test_an_unexpected_failure_is_one_line_not_a_traceback(models, tmp_path, capsys, monkeypatch):
    import napari_unet.api

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nwith a second line")

    monkeypatch.setattr(napari_unet.api, "iter_segment", broken)
    img_dir, _ = _write_set(tmp_path / "data", DISCS[:1])
    args = ["segment", str(img_dir / "img0.tif"), "-o", str(tmp_path / "o"), "-m", str(models["2d"])]
    assert main(args) == 1
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "RuntimeError: something inside broke. " in line and "NAPARI_UNET_DEBUG=1" in line
    assert line.startswith("napari-unet: error: img0.tif: ")  # in a batch, the file is named
    monkeypatch.setenv("NAPARI_UNET_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(args)


# --- evaluate ------------------------------------------------------------------------------

def _table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:4] == ["IoU", "AP", "F1", "prec"])
    return [line.split() for line in lines[header + 1:header + 10]]


def test_evaluate_prints_table_and_writes_json(models, tmp_path, capsys):
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2], noise=5)
    out_json = tmp_path / "scores.json"
    code = main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir),
                 "--model", str(models["2d"]), "--json", str(out_json), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0
    assert "2 images" in captured.out
    rows = _table_rows(captured.out)
    assert [float(r[0]) for r in rows] == list(DEFAULT_THRESHOLDS)
    for row in rows:
        ap, f1 = float(row[1]), float(row[2])
        assert 0.0 <= ap <= 1.0 and 0.0 <= f1 <= 1.0
        assert int(row[5]) + int(row[7]) == 6  # TP + FN = true objects

    payload = json.loads(out_json.read_text())
    assert payload["n_images"] == 2
    assert payload["thresholds"] == pytest.approx([0.5 + 0.05 * i for i in range(9)])
    assert len(payload["scores"]) == 9
    assert payload["model_sha256"] == load_model(models["2d"]).sha256
    for row, printed in zip(payload["scores"], rows):
        assert 0.0 <= row["ap"] <= 1.0
        assert row["n_true"] == 6
        assert f"{row['ap']:.3f}" == printed[1]


def test_evaluate_passes_the_scale_on(models, tmp_path, capsys, fake_net):
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:1])
    out_json = tmp_path / "scores.json"
    assert main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "--model",
                 str(models["2d"]), "--device", "cpu", "--scale", "2", "--json", str(out_json)]) == 0
    assert fake_net and all(b[-2:] == (128, 128) for b in fake_net), "the network saw 64 px images at 2x"
    assert json.loads(out_json.read_text())["scale"] == 2.0
    # Without --scale, the scale the model chose (1 here), not null.
    assert main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "--model",
                 str(models["2d"]), "--device", "cpu", "--json", str(out_json), "--overwrite"]) == 0
    assert json.loads(out_json.read_text())["scale"] == 1.0
    capsys.readouterr()


def test_percentiles_reach_segment_and_evaluate(models, tmp_path, capsys, fake_net):
    """--percentiles replaces the model's for the run: a few very bright pixels with 100 as the upper
    one leave the discs dim (nothing found, AP 0); the pair is in the results' metadata and the JSON.
    A bad pair is refused before any image is read."""
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:1])
    for p in img_dir.iterdir():
        image = tifffile.imread(p).astype(np.uint16)
        image[0, :3] = 10_000
        tifffile.imwrite(p, image)
    model = ["--model", str(models["2d"]), "--device", "cpu"]
    scores = tmp_path / "scores.json"
    ev = ["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), *model, "--json", str(scores)]
    assert main(ev) == 0
    assert json.loads(scores.read_text())["percentiles"] == [1.0, 99.8]
    assert json.loads(scores.read_text())["scores"][0]["ap"] > 0.9
    assert main([*ev, "--overwrite", "--percentiles", "1", "100"]) == 0
    saved = json.loads(scores.read_text())
    assert saved["percentiles"] == [1.0, 100.0] and saved["scores"][0]["ap"] == 0
    image = next(img_dir.iterdir())
    out = tmp_path / "out"
    assert main(["segment", str(image), "-o", str(out), *model, "--percentiles", "0.5", "99.99"]) == 0
    assert read_tiff_metadata(out / f"{image.stem}_instances.tif")["percentiles"] == [0.5, 99.99]
    capsys.readouterr()
    fake_net.clear()
    for cmd in (["segment", str(image), "-o", str(tmp_path / "out2"), *model], ev):
        assert main([*cmd, "--overwrite", "--percentiles", "99.8", "1"]) == 2
        assert "--percentiles 99.8 1: give two numbers from 0 to 100, the lower one first" in \
            _assert_one_error_line(capsys.readouterr().err)
    assert not fake_net and not (tmp_path / "out2").exists()


def test_evaluate_known_answer(models, tmp_path, capsys, fake_net):
    """With a network whose foreground is the image itself, the answer is known.

    Image 0 is segmented perfectly (AP 1 at every IoU). The mask of image 1
    holds one object more than its image shows, so over both images TP = 6,
    FP = 0, FN = 1 and AP = 6/7 at every threshold.
    """
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    _, extra = disc_scene(DISCS[1] + [(30, 30, 5)])
    tifffile.imwrite(mask_dir / "img1.tif", extra)
    code = main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir),
                 "--model", str(models["2d"]), "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0
    assert fake_net, "the fake network ran"
    rows = _table_rows(captured.err)
    assert len(rows) == 9
    for row in rows:
        assert float(row[1]) == pytest.approx(6 / 7, abs=1e-3)
        assert (int(row[5]), int(row[6]), int(row[7])) == (6, 0, 1)
        assert float(row[8]) == pytest.approx((1.0 + 3 / 4) / 2, abs=1e-3)  # mean per-image AP
    # --json without a file name prints the JSON alone on stdout (the table goes to stderr).
    payload = json.loads(captured.out)
    assert [s["ap"] for s in payload["scores"]] == pytest.approx([6 / 7] * 9)
    assert [s["tp"] for s in payload["scores"]] == [6] * 9


def test_evaluate_perfect_prediction_scores_one(models, tmp_path, capsys, monkeypatch):
    """``evaluate`` scores what ``segment`` returns: the truth itself gives AP 1."""
    import napari_unet.api
    from napari_unet.api import Segmentation

    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS)
    truth = {tifffile.imread(p).tobytes(): tifffile.imread(mask_dir / p.name)
             for p in img_dir.iterdir()}

    def fake_segment(image, **kwargs):
        labels = truth[np.asarray(image).tobytes()].astype(np.int32)
        return Segmentation((labels > 0).astype(np.uint8), labels, None, "YX", {"scale": 1.0})

    monkeypatch.setattr(napari_unet.api, "segment", fake_segment)
    out_json = tmp_path / "s.json"
    assert main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir),
                 "-m", str(models["2d"]), "--json", str(out_json)]) == 0
    capsys.readouterr()
    scores = json.loads(out_json.read_text())["scores"]
    assert [s["ap"] for s in scores] == [1.0] * 9
    assert [s["f1"] for s in scores] == [1.0] * 9
    assert all(s["tp"] == 9 and s["fp"] == 0 and s["fn"] == 0 for s in scores)


def test_evaluate_reads_binary_masks_as_connected_regions(models, tmp_path, capsys, fake_net):
    """A 0/255 mask is not one object: its separate regions are scored one by one."""
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    for p in mask_dir.iterdir():
        tifffile.imwrite(p, ((tifffile.imread(p) > 0) * 255).astype(np.uint8))
    json_path = tmp_path / "s.json"
    assert main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "-m", str(models["2d"]),
                 "--device", "cpu", "--json", str(json_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("binary mask") == 2 and "3 connected regions" in captured.err
    scores = json.loads(json_path.read_text())["scores"][0]
    assert scores["tp"] + scores["fn"] == 6
    assert scores["ap"] == 1.0


def test_evaluate_reads_a_minus_one_mask_as_connected_regions(models, tmp_path, capsys, fake_net):
    """An int8 mask whose 255 wrapped to -1 is a mask (as in training), not an empty one scoring AP 0."""
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    for p in mask_dir.iterdir():
        tifffile.imwrite(p, -(tifffile.imread(p) > 0).astype(np.int8))
    json_path = tmp_path / "s.json"
    assert main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "-m", str(models["2d"]),
                 "--device", "cpu", "--json", str(json_path)]) == 0
    capsys.readouterr()
    scores = json.loads(json_path.read_text())["scores"][0]
    assert scores["tp"] + scores["fn"] == 6
    assert scores["ap"] == 1.0


def test_evaluate_reads_float_and_palette_masks_as_ids(models, tmp_path, capsys, fake_net):
    """Fiji's 32-bit label images and palette PNGs score as the integer masks they hold."""
    from PIL import Image

    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    args = ["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "-m", str(models["2d"]),
            "--device", "cpu", "--json", "--overwrite"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["scores"]
    labels = [tifffile.imread(mask_dir / f"img{i}.tif") for i in range(2)]
    tifffile.imwrite(mask_dir / "img0.tif", labels[0].astype(np.float32))
    (mask_dir / "img1.tif").unlink()
    Image.fromarray(labels[1].astype(np.uint8), "L").convert("P").save(mask_dir / "img1.png")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["scores"] == plain
    assert plain[0]["tp"] + plain[0]["fn"] == sum(int(m.max()) for m in labels)


@pytest.mark.parametrize("case", ["missing masks folder", "mask missing", "json not writable",
                                  "mask of another shape", "colour mask", "fractional mask",
                                  "one-plane mask of a z-stack"])
def test_evaluate_bad_input(models, tmp_path, capsys, case):
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    args = ["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "-m", str(models["2d"]),
            "--device", "cpu"]
    if case == "missing masks folder":
        args[4] = str(tmp_path / "nothing")
    elif case == "mask missing":
        (mask_dir / "img1.tif").unlink()
    elif case == "mask of another shape":
        tifffile.imwrite(mask_dir / "img1.tif", np.zeros((60, 64), np.uint16))
    elif case == "fractional mask":
        tifffile.imwrite(mask_dir / "img1.tif", tifffile.imread(mask_dir / "img1.tif") * np.float32(0.5))
    elif case == "one-plane mask of a z-stack":  # the stack's first two sizes are the mask's: no C to blame
        tifffile.imwrite(img_dir / "img1.tif", np.repeat(tifffile.imread(img_dir / "img1.tif")[None], 64, axis=0))
    elif case == "colour mask":
        rgb = np.repeat(tifffile.imread(img_dir / "img1.tif")[..., None], 3, axis=-1)
        tifffile.imwrite(img_dir / "img1.tif", rgb, photometric="rgb")
        tifffile.imwrite(mask_dir / "img1.tif", (rgb > 100).astype(np.uint8) * 255, photometric="rgb")
    else:
        (tmp_path / "afile").write_text("x")
        args += ["--json", str(tmp_path / "afile" / "scores.json")]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    line = _assert_one_error_line(captured.err)
    assert captured.out == "", "refused before any image is segmented"
    if case == "mask of another shape":
        assert "img1.tif" in line and "(60, 64)" in line
    if case == "colour mask":
        assert "colour channels" in line
    if case == "fractional mask":
        assert "img1.tif: the mask holds fractional values" in line
    if case == "one-plane mask of a z-stack":
        assert line.startswith("napari-unet: error: img1.tif: its mask") and "(64, 64)" in line
        assert "axes ZYX, guessed from its shape) needs a mask of shape (64, 64, 64)" in line


# --- train ----------------------------------------------------------------------------------

@pytest.fixture
def train_data(tmp_path):
    train_dir = tmp_path / "train"
    val_dir = tmp_path / "val"
    ti, tm = _write_set(train_dir, DISCS, noise=6)
    vi, vm = _write_set(val_dir, [DISCS[0][::-1], DISCS[2][:2]], noise=6, prefix="val")
    return ti, tm, vi, vm


def test_train_writes_a_loadable_model(tmp_path, capsys, train_data, monkeypatch, fake_net):
    """(The fake network makes the tuning after training find the discs: a net trained for six
    steps finds none, and then keeps its settings.)"""
    from napari_unet.training import tune

    # A small grid keeps the post-processing search after training quick.
    monkeypatch.setattr(tune, "DEFAULT_GRID", {"threshold": (0.5,), "seed_threshold": (0.6, 0.8),
                                               "min_size": (0, 5)})
    ti, tm, vi, vm = train_data
    for p in vm.iterdir():  # Fiji's 32-bit label images: ids, for training and for the tuning after it
        tifffile.imwrite(p, tifffile.imread(p).astype(np.float32))
    out = tmp_path / "my-model"
    code = main(["train", "--images", str(ti), "--masks", str(tm), "--val-images", str(vi),
                 "--val-masks", str(vm), "--output", str(out), "--epochs", "2",
                 "--steps-per-epoch", "3", "--batch-size", "2", "--crop-size", "32",
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"model saved in {out}" in captured.out
    assert "post-processing chosen" in captured.out
    assert (out / "config.json").is_file() and (out / "weights.safetensors").is_file()

    model = load_model(out)
    assert model.name == "my-model"
    assert model.config.target == "three_class" and model.config.out_channels == 3
    assert model.config.provenance["epochs"] == 2
    assert model.config.provenance["sampling"] == "image", "each image equally often by default"
    assert model.config.provenance["trained_on"] == ["img0", "img1", "img2"]
    # The tuned post-processing went into the saved config.
    post = model.config.postprocess
    assert post["seed_threshold"] in (0.6, 0.8) and post["min_size"] in (0, 5)
    assert post["instance_method"] == "watershed"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert _leftovers(out) == []

    # The trained model segments through the CLI.
    assert main(["segment", str(ti / "img0.tif"), "-o", str(tmp_path / "seg"), "-m", str(out),
                 "--device", "cpu"]) == 0
    assert tifffile.imread(tmp_path / "seg" / "img0_instances.tif").shape == (64, 64)


def test_a_complete_run_whose_tuning_was_stopped_is_tuned_when_run_again(tmp_path, capsys, train_data,
                                                                          monkeypatch, fake_net):
    from napari_unet.training import tune

    monkeypatch.setattr(tune, "DEFAULT_GRID", {"threshold": (0.5,), "seed_threshold": (0.6,),
                                               "min_size": (0, 5)})
    ti, tm, vi, vm = train_data
    out = tmp_path / "m"
    args = ["train", "--images", str(ti), "--masks", str(tm), "--val-images", str(vi), "--val-masks",
            str(vm), "-o", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
            "--crop-size", "32", "--device", "cpu"]
    assert main([*args, "--no-tune"]) == 0  # as if stopped (Ctrl-C) while tuning
    assert tune.TUNED not in load_model(out).config.provenance
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr().out
    assert "already complete" in captured and "choosing it now" in captured
    assert "post-processing chosen" in captured
    assert tune.TUNED in load_model(out).config.provenance
    # Tuned once: a third run has nothing left to do.
    assert main(args) == 0
    assert "choosing it now" not in capsys.readouterr().out


def test_progress_bar_eta_comes_from_the_work_or_from_this_run_alone(monkeypatch):
    import io

    from napari_unet import cli

    clock = iter([100.0, 100.0, 102.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = cli.ProgressBar("train", stream, enabled=True)
    bar.update(31, 40, "resumed", eta=14.5)  # the work's own estimate wins
    assert stream.getvalue().endswith("ETA    14s")
    bar.update(31, 40, "resumed")  # a resumed run: 31 steps were done before this process
    bar.update(32, 40, "no estimate")  # 2 s for one step here: 8 steps left take 16 s
    assert stream.getvalue().endswith("ETA    16s")


def test_train_without_validation_or_tuning(tmp_path, capsys, train_data):
    ti, tm, _, _ = train_data
    out = tmp_path / "m"
    code = main(["train", "--images", str(ti), "--masks", str(tm), "-o", str(out), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32", "--device", "cpu",
                 "--sampling", "area"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "post-processing chosen" not in captured.out
    assert "model saved" in captured.out
    assert load_model(out).config.core_fraction == 0.0
    assert load_model(out).config.provenance["sampling"] == "area"


def test_train_keeps_the_settings_when_tuning_finds_nothing(tmp_path, capsys, train_data, fake_net):
    """Validation masks that match nothing (AP 0 for every setting): the run says so, keeps the
    model's post-processing, and does not tune again when rerun."""
    ti, tm, vi, vm = train_data
    for p in vm.iterdir():  # one tiny object in a corner the images leave dark
        wrong = np.zeros_like(tifffile.imread(p))
        wrong[:3, :3] = 1
        tifffile.imwrite(p, wrong)
    args = ["train", "--images", str(ti), "--masks", str(tm), "--val-images", str(vi), "--val-masks", str(vm),
            "-o", str(tmp_path / "m"), "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
            "--crop-size", "32", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "post-processing kept: no setting found a single object" in out and "chosen" not in out
    assert main(args) == 0
    assert "choosing it now" not in capsys.readouterr().out


def test_train_core_fraction_fresh_and_inherited(tmp_path, capsys, train_data, monkeypatch):
    """(And the model given with --init-model is read from its folder once.)"""
    import napari_unet.checkpoint
    import napari_unet.training.loop

    read: list[str] = []

    def counted(model):
        if not isinstance(model, napari_unet.checkpoint.LoadedModel):
            read.append(Path(model).name)
        return load_model(model)

    for module in (napari_unet.checkpoint, napari_unet.training.loop):
        monkeypatch.setattr(module, "load_model", counted)
    ti, tm, _, _ = train_data
    common = ["--images", str(ti), "--masks", str(tm), "--epochs", "1", "--steps-per-epoch", "1",
              "--batch-size", "2", "--crop-size", "32", "--device", "cpu"]
    cores = tmp_path / "cores"
    assert main(["train", *common, "-o", str(cores), "--core-fraction", "0.3"]) == 0
    assert load_model(cores).config.core_fraction == pytest.approx(0.3)
    assert load_model(cores).config.provenance["learning_rate"] == pytest.approx(2e-3)  # a new network's
    # Fine-tuning without --core-fraction teaches the starting model's targets, at a gentler rate.
    tuned = tmp_path / "tuned"
    read.clear()
    assert main(["train", *common, "-o", str(tuned), "--init-model", str(cores)]) == 0
    assert read.count("cores") == 1, read
    assert load_model(tuned).config.core_fraction == pytest.approx(0.3)
    assert load_model(tuned).config.provenance["learning_rate"] == pytest.approx(5e-4)
    capsys.readouterr()


def test_train_says_when_masks_are_binary(tmp_path, capsys, train_data, monkeypatch):
    """0/255 masks (a mask exported rather than labels) train, as documented, but the run says how
    many there are and that touching nuclei are then taught as one; instance labels get no note.
    The note is made from the masks as training read them: each mask file is read once."""
    import napari_unet.io
    import napari_unet.training.data

    read: list[str] = []

    def counted(path):
        read.append(Path(path).name)
        return napari_unet.io.read_image(path)

    for module in (napari_unet.io, napari_unet.training.data):
        monkeypatch.setattr(module, "read_labels", counted)
    ti, tm, vi, vm = train_data
    args = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--crop-size", "32",
            "--device", "cpu", "--no-tune"]
    assert main(["train", "--images", str(ti), "--masks", str(tm), "-o", str(tmp_path / "labels"), *args]) == 0
    assert "binary" not in capsys.readouterr().err
    first = min(tm.iterdir())
    tifffile.imwrite(first, (tifffile.imread(first) > 0).astype(np.uint8) * 255)
    assert main(["train", "--images", str(ti), "--masks", str(tm), "--val-images", str(vi), "--val-masks", str(vm),
                 "-o", str(tmp_path / "binary"), *args]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "binary" in line]
    assert sorted(read) == sorted(p.name for p in [*tm.iterdir(), *tm.iterdir(), *vm.iterdir()])  # both runs
    assert len(notes) == 1, notes
    assert notes[0].startswith(f"napari-unet: note: 1 of the 3 masks in {tm} is binary")
    assert "touching nuclei are taught as one" in notes[0]


@pytest.mark.parametrize("case", ["val images without masks", "val masks without images",
                                  "missing mask", "missing folder", "output not a folder"])
def test_train_bad_input(tmp_path, capsys, train_data, case):
    ti, tm, vi, vm = train_data
    out = tmp_path / "m"
    args = ["train", "--images", str(ti), "--masks", str(tm), "-o", str(out), "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "1", "--crop-size", "32", "--device", "cpu"]
    if case == "val images without masks":
        args += ["--val-images", str(vi)]
    elif case == "val masks without images":
        args += ["--val-masks", str(vm)]
    elif case == "missing mask":
        (tm / "img2.tif").unlink()
    elif case == "missing folder":
        args[2] = str(tmp_path / "nowhere")
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "m"
        args[6] = str(out)
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    line = _assert_one_error_line(captured.err)
    if case.startswith("val"):
        assert "--val-images" in line and "--val-masks" in line
    assert not out.exists() or not (out / "config.json").exists()


@pytest.mark.parametrize("case", ["crop too small", "negative learning rate"])
def test_train_bad_numbers_leave_no_folder(tmp_path, capsys, train_data, case):
    ti, tm, _, _ = train_data
    out = tmp_path / "m"
    extra = ["--crop-size", "5"] if case == "crop too small" else ["--lr", "-1", "--crop-size", "32"]
    code = main(["train", "--images", str(ti), "--masks", str(tm), "-o", str(out), "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "1", "--device", "cpu", *extra])
    captured = capsys.readouterr()
    assert code == 2
    line = _assert_one_error_line(captured.err)
    assert line.endswith("--crop-size 5: give a multiple of 16 of at least 32 for a new network, of depth 4 "
                         "(e.g. 32).") if case == "crop too small" else ("--lr -1: give a learning rate above 0" in line)
    assert not out.exists()


def test_train_output_safety_and_a_complete_run(tmp_path, capsys, train_data):
    """A folder of someone's files is refused; a finished run says it trained nothing."""
    ti, tm, _, _ = train_data
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("notes")
    base = ["train", "--images", str(ti), "--masks", str(tm), "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "1", "--crop-size", "32", "--device", "cpu"]
    assert main([*base, "-o", str(mine)]) == 2
    assert "Choose an empty or new folder" in _assert_one_error_line(capsys.readouterr().err)
    assert (mine / "config.json").read_text() == "notes"

    run = tmp_path / "run"
    assert main([*base, "-o", str(run)]) == 0
    assert "model saved in" in capsys.readouterr().out
    weights = (run / "weights.safetensors").read_bytes()
    assert main([*base[:-4], "--crop-size", "48", "--device", "cpu", "-o", str(run)]) == 0
    out = capsys.readouterr().out
    assert "already complete (1 epoch):" in out and "model saved in" not in out
    assert (run / "weights.safetensors").read_bytes() == weights


def test_train_run_again_over_a_broken_model_file(tmp_path, capsys, train_data):
    """A config.json broken since (a disk problem) is written again, and a note says so; lost best
    weights are one line saying which file and what to do. (With validation: without it, every
    epoch is the best, and the state gives its weights back.)"""
    import json

    ti, tm, vi, vm = train_data
    run = tmp_path / "run"
    args = ["train", "--images", str(ti), "--masks", str(tm), "--val-images", str(vi), "--val-masks", str(vm),
            "--no-tune", "--epochs", "2", "--steps-per-epoch", "1",
            "--batch-size", "1", "--crop-size", "32", "--device", "cpu", "-o", str(run)]
    assert main(args) == 0
    capsys.readouterr()
    (run / "config.json").write_text('{"format_vers')
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"napari-unet: note: {run / 'config.json'} was missing or could not be read" in captured.err
    assert "already complete" in captured.out and load_model(run).config.name == "run"
    (run / "weights.safetensors").write_bytes(b"")
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    log[-1]["best"] = False  # as if epoch 1 had been the best
    (run / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    assert main(args) == 2
    # (A note says that a validation image is a training image too: this data set's own.)
    line = _assert_one_error_line("\n".join(s for s in capsys.readouterr().err.splitlines() if ": note: " not in s))
    assert f"{run / 'weights.safetensors'} cannot be read" in line and "delete config.json and" in line


def test_train_on_volumes_goes_plane_by_plane(tmp_path, capsys, fake_net):
    """Z-stacks with 3D instance masks train a 2D model on their planes."""
    img_dir, mask_dir = tmp_path / "im", tmp_path / "ma"
    img_dir.mkdir()
    mask_dir.mkdir()
    scenes = [disc_scene(DISCS[k], noise=5, seed=k) for k in range(3)]
    tifffile.imwrite(img_dir / "vol.tif", np.stack([im for im, _ in scenes]), photometric="minisblack")
    tifffile.imwrite(mask_dir / "vol.tif", np.stack([lab for _, lab in scenes]).astype(np.uint16),
                     photometric="minisblack")
    out = tmp_path / "m"
    # The same volume validates too, and the post-processing is chosen on its planes.
    assert main(["train", "--images", str(img_dir), "--masks", str(mask_dir), "-o", str(out), "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "2", "--crop-size", "32", "--device", "cpu",
                 "--val-images", str(img_dir), "--val-masks", str(mask_dir)]) == 0
    assert "post-processing chosen on the validation images" in capsys.readouterr().out
    model = load_model(out)
    assert model.config.spatial_dims == 2
    assert model.config.provenance["trained_on"] == ["vol_z000", "vol_z001", "vol_z002"]


def test_every_option_of_every_command_says_what_it_does(capsys):
    """``--help`` is a new user's manual: no option is listed bare, and train's sizes say their
    defaults (a run of them is hours on a CPU, 25 times the Train widget's)."""
    import argparse

    from napari_unet.cli import _parser

    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert sorted(commands) == ["evaluate", "segment", "train", "tune"]
    for name, command in commands.items():
        bare = [a.option_strings[0] for a in command._actions if a.option_strings and not a.help]
        assert bare == [], f"{name}: options without help: {bare}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 50)", "(default: 100;", "(default: 8)", "(default: 256)"):
        assert default in printed


# --- the installed entry point -----------------------------------------------------------

def test_console_script():
    """The installed ``napari-unet`` script runs ``napari_unet.cli:main``."""
    script = Path(sys.executable).parent / "napari-unet"
    if not script.exists():
        script = Path(shutil.which("napari-unet") or "napari-unet")
    assert script.exists(), "the napari-unet console script is installed"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: napari-unet")
    for command in ("segment", "train", "evaluate"):
        assert command in done.stdout


def test_python_dash_m_runs_the_same_command_line(tmp_path):
    from napari_unet import __version__

    done = subprocess.run([sys.executable, "-m", "napari_unet", "--version"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"napari-unet-seg {__version__}"
    bad = subprocess.run([sys.executable, "-m", "napari_unet", "segment", str(tmp_path / "nope.tif"),
                          "-o", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "does not exist" in _assert_one_error_line(bad.stderr)


def test_evaluate_reads_imagej_axes_and_scores_time_points_apart(models, tmp_path, capsys, fake_net):
    """A TYX movie saved by ImageJ is scored frame by frame, not as one volume of joined discs."""
    frames = [disc_scene([(20, 20 + 4 * t, 8), (44, 44 - 4 * t, 7)]) for t in range(3)]
    movie = np.stack([f[0] for f in frames])
    truth = np.stack([np.where(f[1] > 0, f[1] + 2 * t, 0) for t, f in enumerate(frames)])  # ids per frame
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    tifffile.imwrite(tmp_path / "im" / "movie.tif", movie, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "ma" / "movie.tif", truth, photometric="minisblack")
    args = ["evaluate", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"),
            "--model", str(models["2d"]), "--device", "cpu", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "(3 time points)" in captured.err
    payload = json.loads(captured.out)
    assert payload["scores"][0]["tp"] == 6 and payload["scores"][0]["ap"] == pytest.approx(1.0)
    # Told the axes are ZYX, the discs join through the planes into 3D objects, which the
    # six one-frame objects of the truth do not match.
    assert main([*args, "--axes", "ZYX"]) == 0
    assert json.loads(capsys.readouterr().out)["scores"][0]["ap"] < 0.5


def test_evaluate_says_when_a_stacks_axes_were_guessed(models, tmp_path, capsys, fake_net):
    """Frames stacked into a plain TIFF (no axes in the file) are read as a z-stack and scored as
    one volume: evaluate says so, as segment does, with the --axes that scores each time point."""
    frames = [disc_scene([(20, 20 + 4 * t, 8), (44, 44 - 4 * t, 7)]) for t in range(3)]
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    plain = {"photometric": "minisblack"}  # as tifffile will store 3 planes by default (not as RGB)
    tifffile.imwrite(tmp_path / "im" / "movie.tif", np.stack([f[0] for f in frames]), **plain)
    tifffile.imwrite(tmp_path / "ma" / "movie.tif", np.stack([f[1] for f in frames]), **plain)
    args = ["evaluate", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"),
            "--model", str(models["2d"]), "--device", "cpu"]
    assert main(args) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "note" in line]
    assert len(notes) == 1 and notes[0].startswith("napari-unet: movie.tif: note: the file declares no axes")
    assert "guessed from its shape (3, 64, 64) as ZYX (3 planes in Z)" in notes[0]
    assert "--axes TYX" in notes[0] and "each time point of a series on its own" in notes[0]
    assert "on 1 image" in captured.out and "time points" not in captured.out
    assert main([*args, "--axes", "TYX"]) == 0
    captured = capsys.readouterr()
    assert "note" not in captured.err and "(3 time points)" in captured.out


def test_evaluate_labels_a_binary_movie_mask_per_time_point(models, tmp_path, capsys, fake_net):
    """A nucleus at t0 whose two daughters at t1 overlap its place: three objects, not two."""
    t0, _ = disc_scene([(32, 32, 12)])
    t1, _ = disc_scene([(32, 24, 6), (32, 42, 6)])
    movie = np.stack([t0, t1])
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    tifffile.imwrite(tmp_path / "im" / "m.tif", movie, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "ma" / "m.tif", (movie > 100).astype(np.uint8), photometric="minisblack")
    assert main(["evaluate", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"),
                 "--model", str(models["2d"]), "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    assert "3 connected regions" in captured.err
    score = json.loads(captured.out)["scores"][0]
    assert (score["tp"], score["fp"], score["fn"]) == (3, 0, 0)


def test_evaluate_names_the_file_that_fails(models, tmp_path, capsys):
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:2])
    tifffile.imwrite(img_dir / "img1.tif", np.full((64, 64), np.nan, np.float32))
    code = main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir),
                 "--model", str(models["2d"]), "--device", "cpu"])
    assert code == 2
    assert _assert_one_error_line(capsys.readouterr().err).startswith("napari-unet: error: img1.tif: ")


def test_stains_of_a_composite_are_not_blended_like_rgb(models, tmp_path, capsys):
    """Three declared channels (nuclei, cytoplasm, empty) need --channel; an RGB file does not."""
    image, _ = disc_scene(DISCS[0])
    composite = np.stack([image, np.full_like(image, 90), np.zeros_like(image)])
    tifffile.imwrite(tmp_path / "comp.tif", composite, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([image] * 3, axis=-1), photometric="rgb")
    base = ["segment", "-o", str(tmp_path / "out"), "-m", str(models["2d"]), "--device", "cpu"]
    assert main([*base, str(tmp_path / "comp.tif")]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "comp.tif has 3 channels (axes CYX" in line and "--channel N (0 to 2)" in line
    # Naming the axes does not switch the guard off while they keep the channels.
    assert main([*base, str(tmp_path / "comp.tif"), "--axes", "CYX"]) == 2
    assert "--channel N" in _assert_one_error_line(capsys.readouterr().err)
    assert main([*base, str(tmp_path / "comp.tif"), "--channel", "0"]) == 0
    assert main([*base, str(tmp_path / "rgb.tif")]) == 0
    capsys.readouterr()
    # evaluate applies the same rule, with or without --axes.
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    (tmp_path / "comp.tif").rename(tmp_path / "im" / "comp.tif")
    tifffile.imwrite(tmp_path / "ma" / "comp.tif", disc_scene(DISCS[0])[1])
    ev = ["evaluate", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"),
          "-m", str(models["2d"]), "--device", "cpu"]
    for extra in ([], ["--axes", "CYX"]):
        assert main([*ev, *extra]) == 2, extra
        assert "--channel N" in _assert_one_error_line(capsys.readouterr().err)
    assert main([*ev, "--axes", "CYX", "--channel", "0"]) == 0


def test_segment_names_the_file_that_fails(models, tmp_path, capsys):
    """In a batch, an error from the engine says which image it is about."""
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "b.tif", np.full((64, 64), np.nan, np.float32))
    code = main(["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(tmp_path / "out"),
                 "-m", str(models["2d"]), "--device", "cpu"])
    assert code == 2
    assert _assert_one_error_line(capsys.readouterr().err).startswith("napari-unet: error: b.tif: ")


def _ctrl_c_at_write(monkeypatch, n: int) -> None:
    """Ctrl-C (KeyboardInterrupt) when the command writes its n-th result file, before writing it."""
    from napari_unet import io as nio

    real, calls = nio.write_labels, []

    def write_or_stop(path, array, **kwargs):
        calls.append(path)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(path, array, **kwargs)

    monkeypatch.setattr(nio, "write_labels", write_or_stop)


def test_segment_stopped_between_writes_never_pairs_new_and_old_results(models, tmp_path, capsys,
                                                                        monkeypatch):
    """Ctrl-C after the semantic file of an --overwrite run: no old instances file beside it."""
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.tif"), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(args) == 0
    capsys.readouterr()
    _ctrl_c_at_write(monkeypatch, 2)  # after the semantic file
    assert main([*args, "--overwrite", "--min-size", "5"]) == 130
    capsys.readouterr()
    left = sorted(p.name for p in out.iterdir())
    assert "a_instances.tif" not in left, left


def test_a_batch_stopped_says_how_to_finish_it(models, tmp_path, capsys, monkeypatch, fake_net):
    """Ctrl-C in the second image of a batch: the line says the first keeps its results and how to
    finish the rest; that command then does the second image only."""
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", disc_scene(DISCS[0], noise=5)[0])
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out),
            "-m", str(models["2d"]), "--device", "cpu"]
    _ctrl_c_at_write(monkeypatch, 3)  # after the first image (two files)
    assert main(args) == 130
    line = capsys.readouterr().err.strip()
    assert line.startswith("napari-unet: interrupted: ") and "--skip-existing" in line
    assert sorted(p.name for p in out.iterdir()) == ["a_instances.tif", "a_semantic.tif"]
    assert main([*args, "--skip-existing"]) == 0
    printed = capsys.readouterr().out
    assert "a.tif: skipped" in printed and "b.tif: " in printed
    assert len(list(out.iterdir())) == 4


def test_a_training_stopped_says_how_to_resume(tmp_path, capsys, train_data, monkeypatch):
    from napari_unet.training import loop

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(loop, "iter_train", stopped)
    ti, tm, _, _ = train_data
    assert main(["train", "--images", str(ti), "--masks", str(tm), "-o", str(tmp_path / "m"),
                 "--device", "cpu"]) == 130
    assert capsys.readouterr().err.strip() == (
        "napari-unet: interrupted: run the same command again to resume from the last epoch saved")


def test_sigterm_stops_a_command_as_ctrl_c_does(models, tmp_path):
    """SIGTERM (kill, a batch system's time limit) between the two result files of an
    --overwrite run: exit status 143, one line, and no old instances file beside the new mask
    (the clean-up Ctrl+C gets runs too). Run in a subprocess: the signal must not reach pytest."""
    image, _ = disc_scene(DISCS[0], noise=5)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.tif"), "-o", str(out), "-m", str(models["2d"]), "--device", "cpu"]
    assert main(args) == 0
    script = (
        "import os, signal, sys\n"
        "from napari_unet import io as nio\n"
        "from napari_unet.cli import main\n"
        "real, calls = nio.write_labels, []\n"
        "def write_then_term(path, array, **kwargs):\n"
        "    calls.append(path)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(path, array, **kwargs)\n"
        "nio.write_labels = write_then_term\n"
        f"sys.exit(main({[*args, '--overwrite', '--min-size', '5']!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "napari-unet: terminated (SIGTERM)"
    assert "Traceback" not in done.stderr
    left = sorted(p.name for p in out.iterdir())
    assert "a_semantic.tif" in left and "a_instances.tif" not in left, left


def test_evaluate_refuses_two_masks_for_one_image(models, tmp_path, capsys):
    """im0.tif and im0.png in the masks folder: which is the mask? Never one picked silently."""
    img_dir, mask_dir = _write_set(tmp_path / "data", DISCS[:1])
    skio.imsave(mask_dir / "img0.png", np.zeros((64, 64), np.uint8), check_contrast=False)
    code = main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir),
                 "--model", str(models["2d"]), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    line = _assert_one_error_line(captured.err)
    assert "img0.png" in line and "img0.tif" in line


def test_a_complete_run_without_validation_is_not_tuned_on_new_validation_images(tmp_path, capsys,
                                                                                train_data, fake_net):
    """Only a run stopped while tuning is tuned when run again: not one trained without (these)
    validation images, whose config.json would be rewritten by them."""
    ti, tm, vi, vm = train_data
    out = tmp_path / "m"
    args = ["train", "--images", str(ti), "--masks", str(tm), "-o", str(out), "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "2", "--crop-size", "32", "--device", "cpu"]
    assert main(args) == 0
    before = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert main([*args, "--val-images", str(vi), "--val-masks", str(vm)]) == 0
    printed = capsys.readouterr().out
    assert "already complete" in printed and "choosing it now" not in printed
    assert (out / "config.json").read_bytes() == before


def test_train_output_dot_names_the_model_after_its_folder(tmp_path, capsys, train_data, monkeypatch):
    ti, tm, _, _ = train_data
    out = tmp_path / "dot-model"
    out.mkdir()
    monkeypatch.chdir(out)
    assert main(["train", "--images", str(ti), "--masks", str(tm), "-o", ".", "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "2", "--crop-size", "32", "--device", "cpu"]) == 0
    assert load_model(out).name == "dot-model"


def test_train_and_evaluate_refuse_one_folder_for_images_and_masks(tmp_path, capsys, train_data):
    ti, _, _, _ = train_data
    tiny = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--crop-size", "32", "--device", "cpu"]
    for cmd in (["train", "-o", str(tmp_path / "m"), *tiny], ["evaluate", "--device", "cpu"]):
        assert main([*cmd, "--images", str(ti), "--masks", str(ti)]) == 2
        assert "same folder" in _assert_one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "m").exists()


def test_tune_chooses_settings_on_annotated_images_and_saves_a_copy(models, tmp_path, capsys, fake_net):
    """``tune``: the masks are drawn tighter than the discs (their cores), so a higher threshold
    than the model's matches them better; the tuned copy keeps it, the model given is untouched."""
    from napari_unet.cli import TUNE_THRESHOLDS
    from napari_unet.training.tune import TUNED

    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    yy, xx = np.mgrid[:64, :64]
    for i, (cy, cx) in enumerate(((20, 20), (40, 44))):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        image = np.exp(-r2 / 60) * 200  # bright centres fading out: the fake network's probability
        tifffile.imwrite(tmp_path / "im" / f"n{i}.tif", image.astype(np.uint8))
        tifffile.imwrite(tmp_path / "ma" / f"n{i}.tif", (r2 < 16).astype(np.uint16))
    src = tmp_path / "model"
    shutil.copytree(models["three_class"], src)
    before = (src / "config.json").read_bytes()
    out = tmp_path / "tuned"
    args = ["tune", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"), "-m", str(src),
            "--device", "cpu"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chosen: AP@0.5 1.000" in printed and f"model saved in {out}" in printed
    tuned = load_model(out)
    assert tuned.config.postprocess["threshold"] in TUNE_THRESHOLDS
    assert tuned.config.postprocess["threshold"] > 0.5 and TUNED in tuned.config.provenance
    assert (src / "config.json").read_bytes() == before and tuned.sha256 == load_model(src).sha256
    # A folder that holds a model is not written over; the model's own folder is tuned in place.
    assert main([*args, "-o", str(out)]) != 0
    assert "already holds a model" in _assert_one_error_line(capsys.readouterr().err)
    assert main([*args, "-o", str(src)]) == 0
    assert load_model(src).config.postprocess == tuned.config.postprocess
    capsys.readouterr()
    assert main([*args, "-o", str(src / "config.json")]) == 2
    assert "is a file: give a model folder" in _assert_one_error_line(capsys.readouterr().err)


def _tune_spots(root: Path) -> tuple[Path, Path]:
    """Images of two bright spots (the fake network's probability) with masks of their cores."""
    (root / "im").mkdir(parents=True)
    (root / "ma").mkdir()
    yy, xx = np.mgrid[:64, :64]
    for i, (cy, cx) in enumerate(((20, 20), (40, 44))):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        tifffile.imwrite(root / "im" / f"n{i}.tif", (np.exp(-r2 / 60) * 200).astype(np.uint8))
        tifffile.imwrite(root / "ma" / f"n{i}.tif", (r2 < 16).astype(np.uint16))
    return root / "im", root / "ma"


def test_tune_that_fails_leaves_no_copy_behind(models, tmp_path, capsys, fake_net):
    """A tune that stops (masks that do not fit their images) leaves no untuned copy in --output,
    which would make the same command, run again with the right masks, refuse the folder."""
    images, masks = _tune_spots(tmp_path / "data")
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in masks.iterdir():
        tifffile.imwrite(bad / p.name, np.zeros((32, 32), np.uint16))
    out = tmp_path / "tuned"
    args = ["tune", "--images", str(images), "-m", str(models["three_class"]), "--device", "cpu", "-o", str(out)]
    assert main([*args, "--masks", str(bad)]) == 2
    assert "does not match" in _assert_one_error_line(capsys.readouterr().err)
    assert not out.exists()
    assert main([*args, "--masks", str(masks)]) == 0
    assert f"model saved in {out}" in capsys.readouterr().out
    # An output folder that was there stays, without the files of the failed run.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main([*args[:-1], str(kept), "--masks", str(bad)]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_tune_killed_while_choosing_leaves_no_untuned_copy(models, tmp_path, capsys, fake_net, monkeypatch):
    """A kill (SIGKILL, or SIGTERM: no cleanup runs) while tune chooses the settings leaves what is
    on disk then: no model in --output, which would load with the untuned settings and make the
    same command, run again, refuse the folder."""
    from napari_unet.training import tune

    images, masks = _tune_spots(tmp_path / "data")
    out = tmp_path / "tuned"
    seen = []
    real = tune.tune_postprocess

    def watched(*args, **kwargs):
        seen.append(sorted(p.name for p in out.iterdir()))  # what a kill now would leave
        return real(*args, **kwargs)

    monkeypatch.setattr(tune, "tune_postprocess", watched)
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["three_class"]),
                 "--device", "cpu", "-o", str(out)]) == 0
    assert f"model saved in {out}" in capsys.readouterr().out
    assert seen == [[]]
    assert load_model(out).config.provenance.get(tune.TUNED)


def test_tune_refuses_a_bundled_model_in_place_before_any_work(tmp_path, capsys, fake_net):
    from napari_unet.checkpoint import bundled_models

    images, masks = _tune_spots(tmp_path / "data")
    folder = bundled_models()["nuclei"]
    assert main(["tune", "--images", str(images), "--masks", str(masks), "--device", "cpu",
                 "-o", str(folder)]) == 2
    assert "--output" in _assert_one_error_line(capsys.readouterr().err)
    assert not fake_net  # refused before the network ran


def test_tune_scores_and_keeps_the_models_own_settings_off_the_grid(helpers, tmp_path, capsys, fake_net):
    """A model's own settings need not be on tune's grid (threshold 0.65, min_size 10 here): they are
    scored all the same (the "before" line the README promises), and kept where nothing beats them."""
    from napari_unet import segment

    model = helpers.build_model(tmp_path / "model", out_channels=3, target="three_class", seed=4,
                                postprocess={"threshold": 0.65, "instance_method": "watershed"})
    images, masks = _tune_spots(tmp_path / "data")
    for p in images.iterdir():  # masks that the model's own settings draw exactly
        tifffile.imwrite(masks / p.name, segment(tifffile.imread(p), model=str(model), device="cpu",
                                                 keep_probabilities=False).instances.astype(np.uint16))
    out = tmp_path / "tuned"
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(model),
                 "--device", "cpu", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the model's settings: AP@0.5 1.000 (mean AP 0.5-0.9 1.000)" in printed
    post = load_model(out).config.postprocess
    assert (post["threshold"], post["min_size"]) == (0.65, 10)


def test_tune_a_semantic_model_tries_only_what_it_uses_and_refuses_empty_masks(models, tmp_path, capsys,
                                                                            fake_net):
    images, masks = _tune_spots(tmp_path / "data")
    args = ["tune", "--images", str(images), "-m", str(models["2d"]), "--device", "cpu"]
    assert main([*args, "--masks", str(masks), "-o", str(tmp_path / "t")]) == 0
    chosen = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen"))
    assert "threshold" in chosen and "min_size" in chosen and "seed_threshold" not in chosen
    for p in masks.iterdir():
        tifffile.imwrite(p, np.zeros((64, 64), np.uint16))
    assert main([*args, "--masks", str(masks), "-o", str(tmp_path / "t2")]) == 2
    assert "hold no objects: label the objects first" in _assert_one_error_line(capsys.readouterr().err)


def test_tune_reads_the_channels_a_composite_declares(models, tmp_path, capsys, fake_net):
    """An ImageJ composite stores C before Y, X: tuning (as after train --val-images) moves it last."""
    images, masks = _tune_spots(tmp_path / "data")
    for p in images.iterdir():
        grey = tifffile.imread(p)
        tifffile.imwrite(p, np.stack([grey, grey // 2]), imagej=True, metadata={"axes": "CYX"})
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["2d_in2"]),
                 "--device", "cpu", "-o", str(tmp_path / "t")]) == 0
    assert "chosen: AP@0.5" in capsys.readouterr().out


def test_tune_takes_the_channel_asked_for_and_refuses_to_blend_stains(models, tmp_path, capsys, fake_net):
    """A 1-channel model on a 2-channel composite: without --channel tune says to choose one (as
    segment does) before the network runs; --channel 1, the stain that shows the spots, is the one
    scored; a channel the images lack is named."""
    images, masks = _tune_spots(tmp_path / "data")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    for p in images.iterdir():
        tifffile.imwrite(p, np.stack([noise, tifffile.imread(p)]), imagej=True, metadata={"axes": "CYX"})
    args = ["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["three_class"]),
            "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "t0")]) == 2
    assert "choose the one that shows the nuclei with --channel N (0 to 1)" in \
        _assert_one_error_line(capsys.readouterr().err)
    assert not fake_net and not (tmp_path / "t0").exists()
    assert main([*args, "-o", str(tmp_path / "t1"), "--channel", "1"]) == 0
    assert "chosen: AP@0.5 1.000" in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "t2"), "--channel", "2"]) == 2
    assert "--channel 2, but the image has 2 channels (0 to 1)" in _assert_one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "t2").exists()


def test_tune_reads_axes_given_and_refuses_a_channel_of_a_grey_image(models, tmp_path, capsys, fake_net):
    """--axes CYX names the channel axis of a plain TIFF (whose shape alone reads as a z-stack)."""
    images, masks = _tune_spots(tmp_path / "data")
    args = ["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["three_class"]),
            "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "t0"), "--channel", "0"]) == 2
    assert "no channel axis (axes YX): leave out --channel" in _assert_one_error_line(capsys.readouterr().err)
    for p in images.iterdir():
        spots = tifffile.imread(p)
        tifffile.imwrite(p, np.stack([spots // 4, spots, spots]), photometric="minisblack")  # no axes in it
    assert main([*args, "-o", str(tmp_path / "t1"), "--axes", "CYX", "--channel", "1"]) == 0
    assert "chosen: AP@0.5 1.000" in capsys.readouterr().out


def test_tune_refuses_a_3d_model(models, tmp_path, capsys, fake_net):
    images, masks = _tune_spots(tmp_path / "data")
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["3d"]),
                 "--device", "cpu", "-o", str(tmp_path / "t")]) == 2
    assert "is a 3D model: tune chooses the settings of 2D models" in _assert_one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "t").exists()


def _bright_spots(root: Path) -> tuple[Path, Path]:
    """``_tune_spots`` with 12 pixels at 10,000 in each image (0.3 % of them, above the 99.8th
    percentile's place), and masks as the model's own threshold (0.5) draws the spots."""
    images, masks = _tune_spots(root)
    for p in images.iterdir():
        image = tifffile.imread(p).astype(np.uint16)
        image[0, :12] = 10_000
        tifffile.imwrite(p, image)
        tifffile.imwrite(masks / p.name, ((image > 95) & (image < 1000)).astype(np.uint16))
    return images, masks


def test_tune_chooses_percentiles_when_asked(models, tmp_path, capsys, fake_net):
    """12 very bright pixels of 4,096 lie above the 99.8th percentile's place: under the model's
    pair (1, 99.8) the spots turn dim and nothing is found; --choose-percentiles finds an upper
    percentile under them (99.5) and keeps it in the tuned copy, the model given unchanged."""
    images, masks = _bright_spots(tmp_path / "data")
    args = ["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["three_class"]),
            "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "plain")]) == 0
    assert "chosen: AP@0.5 1.000" not in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "t"), "--choose-percentiles"]) == 0
    printed = capsys.readouterr().out
    assert "the model's percentiles 1-99.8: AP@0.5 0.000" in printed
    assert "chosen percentiles" in printed and "chosen: AP@0.5 1.000" in printed
    norm = load_model(tmp_path / "t").config.normalization
    assert norm["high"] < 99.8 and load_model(models["three_class"]).config.normalization["high"] == 99.8


def test_tune_names_images_whose_guessed_axes_their_masks_do_not_fit(models, tmp_path, capsys, fake_net):
    """A two-channel image saved channels last without axes reads (from its shape) as a z-stack of
    2-pixel-wide planes, and an HxWx1 mask beside an HxWx1 image has an axis the image reads as its
    channel: the mask does not fit the axes the image is read with, and tune says so (with --axes as
    the way out) instead of failing with an unexpected error."""
    images, masks = _tune_spots(tmp_path / "data")
    args = ["tune", "--images", str(images), "--masks", str(masks), "-m", str(models["three_class"]),
            "--device", "cpu"]
    for p in images.iterdir():
        tifffile.imwrite(p, np.stack([tifffile.imread(p)] * 2, -1), photometric="minisblack")
    assert main([*args, "-o", str(tmp_path / "t0")]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    # evaluate's message for the same mistake: the image, both shapes, the axes, what to do.
    assert f"its mask in {masks} has shape (64, 64), but the image (shape (64, 64, 2), axes ZYX, guessed from " \
           "its shape) needs a mask of shape (64, 64, 2), one label per pixel of every plane: give the mask " \
           "of the whole image, or the image's axes with --axes if they are others." in line
    for p in images.iterdir():
        tifffile.imwrite(p, tifffile.imread(p)[..., :1], photometric="minisblack")
        tifffile.imwrite(masks / p.name, tifffile.imread(masks / p.name)[..., None], photometric="minisblack")
    assert main([*args, "-o", str(tmp_path / "t1")]) == 2
    line = _assert_one_error_line(capsys.readouterr().err)
    assert "has shape (64, 64, 1), but the image (shape (64, 64, 1), axes YXC, guessed from its shape) " \
           "needs a mask of shape (64, 64), one label per pixel:" in line
    assert not fake_net and not (tmp_path / "t0").exists() and not (tmp_path / "t1").exists()


def test_tune_in_place_stopped_after_choosing_percentiles_leaves_the_model_as_it_was(
        models, tmp_path, capsys, fake_net, monkeypatch):
    """The percentiles and the post-processing are written together: a run stopped while choosing the
    latter leaves the model's own folder untouched, not with new percentiles and old thresholds."""
    from napari_unet.training import tune

    images, masks = _bright_spots(tmp_path / "data")
    own = tmp_path / "model"
    shutil.copytree(models["three_class"], own)
    before = (own / "config.json").read_bytes()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    real = tune.tune_postprocess
    monkeypatch.setattr(tune, "tune_postprocess", stopped)
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(own), "--device", "cpu",
                 "-o", str(own), "--choose-percentiles"]) == 130  # Ctrl+C
    assert "chosen percentiles" in capsys.readouterr().out
    assert (own / "config.json").read_bytes() == before
    monkeypatch.setattr(tune, "tune_postprocess", real)  # run again, to the end
    assert main(["tune", "--images", str(images), "--masks", str(masks), "-m", str(own), "--device", "cpu",
                 "-o", str(own), "--choose-percentiles"]) == 0
    assert load_model(own).config.normalization["high"] < 99.8


def test_train_says_when_the_validation_images_are_training_images(tmp_path, capsys, train_data):
    """--val-images the training folder (or a copy of some of its files) chooses the best epoch and
    the post-processing on images the model learned: said, not silent."""
    ti, tm, _, _ = train_data
    vi, vm = _write_set(tmp_path / "held_out", [DISCS[0], DISCS[2]], noise=5, prefix="val")
    shutil.copy(ti / "img1.tif", vi / "copy.tif")
    shutil.copy(tm / "img1.tif", vm / "copy.tif")
    common = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--crop-size", "32",
              "--device", "cpu", "--no-tune"]
    for val, out, shared in (((ti, tm), "same", "3 of the 3"), ((vi, vm), "copy", "1 of the 3"),
                             (None, "none", None)):
        args = ["train", "--images", str(ti), "--masks", str(tm), "-o", str(tmp_path / out), *common]
        if val:
            args += ["--val-images", str(val[0]), "--val-masks", str(val[1])]
        assert main(args) == 0
        err = capsys.readouterr().err
        if shared:
            assert f"note: {shared} validation images" in err
            assert ("is a training image too" if shared.startswith("1 ") else "are training images too") in err
        else:
            assert "training images too" not in err


def test_evaluate_refuses_two_images_of_one_name(models, tmp_path, capsys):
    """a.tif and a.png (an export beside its original) would share a.tif's mask and be scored twice."""
    img_dir, mask_dir = _write_set(tmp_path, [DISCS[0]])
    skio.imsave(img_dir / "img0.png", tifffile.imread(img_dir / "img0.tif").astype(np.uint8), check_contrast=False)
    code = main(["evaluate", "--images", str(img_dir), "--masks", str(mask_dir), "-m", str(models["2d"]),
                 "--device", "cpu"])
    line = _assert_one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "img0.png and img0.tif in" in line and "one mask" in line


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_images_in_sub_folders_are_said_not_to_be_searched(models, tmp_path, capsys, command):
    img_dir, mask_dir = _write_set(tmp_path, [DISCS[0]])
    (img_dir / "day1").mkdir()
    (img_dir / "img0.tif").rename(img_dir / "day1" / "img0.tif")
    args = ["--images", str(img_dir), "--masks", str(mask_dir), "--device", "cpu"]
    args += ["-m", str(models["2d"])] if command == "evaluate" else ["-o", str(tmp_path / "model")]
    code = main([command, *args])
    line = _assert_one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "(looked for BMP, JPEG, JPG, PNG, TIF, TIFF files)" in line
    assert "It holds folders (day1), which are not searched" in line


def test_evaluate_normalize_per_frame_scores_a_bleached_frame(models, tmp_path, capsys, fake_net):
    """--normalize-per frame scores a series the way segment --normalize-per frame segments it: the
    second time point, bleached to a tenth, loses its discs over the whole series but not alone."""
    image, labels = disc_scene(DISCS[0])
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    tifffile.imwrite(tmp_path / "im" / "movie.tif", np.stack([image, image // 10]), imagej=True,
                     metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "ma" / "movie.tif", np.stack([labels, labels]), photometric="minisblack")
    args = ["evaluate", "--images", str(tmp_path / "im"), "--masks", str(tmp_path / "ma"),
            "--model", str(models["2d"]), "--device", "cpu", "--json"]
    n = int(labels.max())
    for extra, tp in (([], n), (["--normalize-per", "frame"], 2 * n)):
        assert main([*args, *extra]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["scores"][0]["tp"] == tp
        assert payload["normalize_per"] == (extra[-1] if extra else "stack")


def test_normalize_per_choices_are_the_engines():
    """--normalize-per spells its values out (--help imports no torch): they are the engine's."""
    from napari_unet.cli import NORMALIZE_PER_CHOICES
    from napari_unet.predict import NORMALIZE_PER

    assert NORMALIZE_PER_CHOICES == tuple(NORMALIZE_PER)
