"""Command line: ``napari-unet segment | train | tune | evaluate``.

Bad input ends with exit status 2 and one line on stderr that says what to
do; no traceback (set NAPARI_UNET_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .errors import SegmentationError, describe
from .wording import plural

NORMALIZE_PER_CHOICES = ("stack", "frame", "plane")
"""``--normalize-per``'s values: :data:`napari_unet.predict.NORMALIZE_PER`'s keys, spelt out
here so that ``--help`` needs no torch."""

__all__ = ["main"]


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.first: tuple[int, float] | None = None

    def update(self, done: int, total: int, note: str = "", eta: float | None = None) -> None:
        """Show ``done`` of ``total``; ``eta`` (seconds left, when the work knows it) wins over a guess."""
        if not self.enabled:
            return
        frac = done / total if total else 1.0
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        if self.first is None:
            self.first = (done, time.perf_counter())  # a resumed run starts part way
        if eta is None or not math.isfinite(eta):
            first_done, first_time = self.first
            rate = (time.perf_counter() - first_time) / max(done - first_done, 1)
            eta = rate * (total - done) if done > first_done else 0.0
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%} {note[:40]:<40} ETA {eta:5.0f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _drain(gen: Generator[Any, None, Any], bar: ProgressBar,
           on_record: Callable[[Any], object] | None = None) -> Any:
    from .progress import drain

    def record(rec: Any) -> None:
        bar.update(rec.done, rec.total, rec.message, getattr(rec, "eta_s", None))
        if on_record is not None:
            on_record(rec)

    try:
        return drain(gen, record)
    finally:
        bar.close()


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SegmentationError(
            f"Cannot write to output folder {folder} ({exc.strerror or exc}). "
            "Choose a folder you can write to with --output."
        ) from None


def _segment_plan(images: Sequence[str], out: Path, *, overwrite: bool, measure: bool = False,
                  skip_existing: bool = False) -> list[tuple[Path, ...]]:
    """(input, semantic, instances[, objects table]) paths of every image, checked before any work starts.

    Refuses a missing or unsupported input, two inputs whose results would
    share a name, a result that would replace an input image, and (without
    ``overwrite``) a result file that already exists, unless all of that
    image's results exist and ``skip_existing`` (the image will be skipped).
    """
    from .io import RESULT_ROLES, check_image_path

    paths = [check_image_path(p) for p in images]
    seen: dict[Path, Path] = {}
    for path in paths:
        if path.resolve() in seen:
            raise SegmentationError(f"{path} is given twice (also as {seen[path.resolve()]}): give each image once.")
        seen[path.resolve()] = path
    plan, taken = [], {}
    for path in paths:
        # <stem>_semantic.tif, <stem>_instances.tif: the names io.result_role knows results by
        targets = (*(out / f"{path.stem}_{role}.tif" for role in RESULT_ROLES),
                   *([out / f"{path.stem}_objects.csv"] if measure else []))
        complete = skip_existing and all(t.exists() for t in targets)
        for target in targets:
            key = target.name.casefold()  # one file on case-insensitive file systems
            if key in taken:
                raise SegmentationError(
                    f"{taken[key]} and {path} would both write {target.name} in {out}: "
                    "segment them into different --output folders, or rename one.")
            taken[key] = path
            same = [p for p in paths if target.exists() and target.samefile(p)] or [
                p for p in paths if p.resolve() == target.resolve()]
            if same:
                raise SegmentationError(
                    f"The results of {path.name} would replace the input image "
                    f"{same[0]}: choose another --output folder.")
            if target.exists() and not overwrite and not complete:
                raise SegmentationError(
                    f"{target} already exists (an earlier run?): add --overwrite to replace it, "
                    + ("which redoes the images whose results are there only in part, "
                       if skip_existing else "--skip-existing to skip images whose results are all there, ")
                    + "or choose another --output folder.")
        plan.append((path, *targets))
    return plan


def _check_percentiles(percentiles: list[float] | None) -> None:
    """Refuse a bad --percentiles pair before any image is read."""
    from .api import check_percentiles

    if percentiles is not None:
        try:
            check_percentiles(percentiles)
        except SegmentationError:
            raise SegmentationError(
                f"--percentiles {' '.join(f'{v:g}' for v in percentiles)}: give two numbers from 0 to 100, "
                "the lower one first (e.g. --percentiles 1 99.8).") from None


def _image_paths(paths: Sequence[str]) -> list[str]:
    """The paths of ``paths`` that are images, when there are several and some are not.

    ``segment folder/*`` also gets the notes, tables and sub-folders beside the images, and,
    run again with ``-o folder``, the results of the first run: they are skipped with one note
    on stderr (as evaluate and train skip what is not an image) instead of refusing the batch
    or segmenting a result. A result is refused when there is nothing else to segment; a path
    that is no image given alone, or a batch of no images at all, is left for the plan to refuse.
    """
    from .io import IMAGE_SUFFIXES, is_result_file

    def names(group: list[str]) -> str:
        return ", ".join(Path(p).name for p in group[:3]) + (", ..." if len(group) > 3 else "")

    others = [p for p in paths if Path(p).suffix.lower() not in IMAGE_SUFFIXES]
    results = [p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES and is_result_file(p)]
    one = len(results) == 1
    if results and len(results) + len(others) == len(paths):
        raise SegmentationError(
            f"{names(results)} {'is a napari-unet result' if one else 'are napari-unet results'}, not "
            f"{'an image' if one else 'images'}: give the image{'' if one else 's'} "
            f"{'it was' if one else 'they were'} made from.")
    if len(paths) < 2 or not (others or results) or len(others) == len(paths):
        return list(paths)
    kinds = ", ".join(sorted(s.lstrip(".").upper() for s in IMAGE_SUFFIXES))
    what = {"others": f"not {'an image file' if len(others) == 1 else 'image files'} ({kinds})",
            "results": f"{'a napari-unet result' if one else 'napari-unet results'} (of an earlier run)"}
    both = bool(others and results)
    parts = [f"{f'{len(group)} ' if both else ''}{what[kind]}: {names(group)}"
             for kind, group in (("others", others), ("results", results)) if group]
    print(f"napari-unet: note: skipped {plural(len(others) + len(results), 'path')} of the {len(paths)} "
          f"given, {'; '.join(parts)}", file=sys.stderr)
    left_out = {*others, *results}
    return [p for p in paths if p not in left_out]


def _refuse_option(flag: str, value: object, what: str) -> None:
    """The error for a bad option value, in the command line's spelling: ``--flag value: give ...``."""
    shown = f"{value:g}" if isinstance(value, float) else value
    raise SegmentationError(f"{flag} {shown}: give {what}.")


def _check_device(device: str) -> None:
    """Refuse a --device this machine lacks, naming those it has (the engine's words are Python's)."""
    import re

    from .device import available_devices, resolve_device

    try:
        resolve_device(device)
    except SegmentationError:
        here = ", ".join(available_devices())
        if re.fullmatch(r"\s*(auto|cpu|mps|cuda(:\d+)?)\s*", device.lower()):
            raise SegmentationError(
                f"--device {device} is not available on this machine (it has: {here}): give --device auto "
                "for the best one present, or one of those.") from None
        raise SegmentationError(
            f"--device {device} is not a device: give auto, cpu, cuda, cuda:N or mps (this machine has: "
            f"{here}).") from None


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad option values once, before any file is read, in the command line's spelling.

    The engine refuses them too, but in Python's (``threshold must be...``, ``device='cpu'``),
    and in a batch with --keep-going once per image.
    """
    from .predict import check_scale

    _check_percentiles(getattr(args, "percentiles", None))
    _check_device(args.device)

    def given(name: str) -> bool:  # the options differ by command
        return getattr(args, name, None) is not None

    if given("channel") and args.channel < 0:
        _refuse_option("--channel", args.channel, "the index of a channel, 0 or more (0 is the first)")
    if given("threshold") and not 0 < args.threshold < 1:
        _refuse_option("--threshold", args.threshold, "a probability between 0 and 1 (not 0 or 1), e.g. 0.5")
    if given("seed_threshold") and not 0 <= args.seed_threshold <= 1:
        _refuse_option("--seed-threshold", args.seed_threshold, "a probability from 0 to 1, e.g. 0.8")
    if given("min_size") and args.min_size < 0:
        _refuse_option("--min-size", args.min_size, "a number of pixels, 0 or more")
    if given("scale") and args.scale.strip().lower() != "auto":
        try:
            check_scale(args.scale)
        except SegmentationError:
            _refuse_option("--scale", args.scale, "a number from 0.1 to 10 (2 for nuclei half the size the "
                                                  "model knows, 0.5 for twice), or auto")
    for name in ("epochs", "steps_per_epoch", "batch_size", "crop_size"):
        if given(name) and getattr(args, name) < 1:
            _refuse_option(f"--{name.replace('_', '-')}", getattr(args, name), "a whole number, 1 or more")
    if given("seed") and args.seed < 0:
        _refuse_option("--seed", args.seed, "a whole number, 0 or more")
    if given("lr") and not (math.isfinite(args.lr) and args.lr > 0):
        _refuse_option("--lr", args.lr, "a learning rate above 0, e.g. 5e-4")
    if given("core_fraction") and not 0 <= args.core_fraction < 1:
        _refuse_option("--core-fraction", args.core_fraction, "a number from 0 up to 1 (not 1 itself), e.g. 0.3")
    for name in ("images", "masks", "val_images", "val_masks"):  # folders in evaluate, train and tune
        folder = getattr(args, name, None)
        if isinstance(folder, str) and Path(folder).is_file():
            kind = name.split("_")[-1]
            layout = ("their masks lie under the same names in a folder of their own" if kind == "images"
                      else "each under its image's name")
            _refuse_option(f"--{name.replace('_', '-')}", folder,
                           f"a folder, not a file: the folder that holds the {kind} (here "
                           f"{Path(folder).parent}; {layout})")


def _check_tile_size(tile_size: int | None, model: Any) -> None:
    """Refuse a --tile-size below the smallest the model takes (the engine would, once per image)."""
    from .predict import smallest_tile

    smallest = smallest_tile(model)
    if tile_size is not None and tile_size < smallest:
        _refuse_option("--tile-size", tile_size,
                       f"at least {smallest} for the model {model.name} (smaller tiles see too little around "
                       "their pixels, and the results change), or leave it out for the default")


def _cmd_segment(args: argparse.Namespace) -> int:
    from .checkpoint import load_model

    out = Path(args.output)
    _check_options(args)
    plan = _segment_plan(_image_paths(args.images), out, overwrite=args.overwrite, measure=args.measure,
                         skip_existing=args.skip_existing)
    _check_writable(out)
    model = load_model(args.model)
    _check_tile_size(args.tile_size, model)
    failed = []
    for path, *targets in plan:
        if args.skip_existing and all(t.exists() for t in targets):
            print(f"{path.name}: skipped, its results are already in {out}")
            continue
        try:
            _segment_one(args, model, path, *targets)
        except Exception as exc:  # noqa: BLE001 - in a batch, say which file (and go on with --keep-going)
            unforeseen = not isinstance(exc, SegmentationError)
            if unforeseen:
                if os.environ.get("NAPARI_UNET_DEBUG"):
                    raise
                exc = SegmentationError(_unexpected(exc))
            text = str(exc) if path.name in str(exc) else f"{path.name}: {exc}"
            if not args.keep_going:
                raise (_Unforeseen if unforeseen else SegmentationError)(text) from None
            print(f"napari-unet: error: {text}", file=sys.stderr)
            failed.append(path.name)
    if failed:
        print(f"napari-unet: {len(failed)} of {plural(len(plan), 'image')} failed: {', '.join(failed)}",
              file=sys.stderr)
        return 2
    return 0


class _Unforeseen(SegmentationError):
    """A failure the code did not foresee, with its file named: exit status 1, not 2."""


def _unforeseen_text(exc: BaseException) -> str:
    """The one line for a failure the code did not foresee (a bug or an odd file)."""
    return (f"unexpected {describe(exc)}. Check the inputs and options; run again with "
            "NAPARI_UNET_DEBUG=1 for the details, and report it if it persists.")


def _unexpected(exc: BaseException) -> str:
    """The message of an error the engine did not foresee (e.g. running out of memory)."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("ran out of memory: try a smaller --tile-size, --device cpu, or a smaller image "
                "(e.g. a crop or fewer planes).")
    return _unforeseen_text(exc)


def _segment_one(args: argparse.Namespace, model: Any, path: Path, sem: Path, inst: Path, *table: Path) -> None:
    """Segment one image of a ``segment`` batch and write its results (SegmentationError if it cannot)."""
    from .io import TiffPlanes, read_image_file

    read = read_image_file(path, memmap=True)  # a stack is read a plane at a time (mapped, or page by page)
    try:
        _segment_read(args, model, path, read, sem, inst, *table)
    finally:  # a stack read page by page holds its file open: closed now, not when collected
        if isinstance(read.image, TiffPlanes):
            read.image.close()


def _segment_read(args: argparse.Namespace, model: Any, path: Path, read: Any, sem: Path, inst: Path,
                  *table: Path) -> None:
    """:func:`_segment_one` with the image ``read`` (an :class:`~napari_unet.io.ImageFile`) from ``path``."""
    from .api import iter_segment
    from .axes import plan_axes
    from .io import write_labels
    from .measure import measure_objects, write_csv

    out = sem.parent
    image, file_axes = read.image, read.axes
    _check_axes_count(path.name, tuple(image.shape), args.axes, file_axes)
    _check_declared_channels(read, path.name, args.channel, model, args.axes)
    spacing = None
    if args.link_time or args.measure or args.pixel_size:  # known from the axes: say so before the network runs
        axes = plan_axes(tuple(image.shape), args.axes or file_axes, spatial_dims=model.config.spatial_dims,
                         in_channels=model.config.in_channels, mode=args.mode).axes
        if args.link_time and "T" not in axes:
            raise SegmentationError(
                f"--link-time needs a time axis, but {path.name} is read with axes {axes!r}: "
                "give them, e.g. --axes TYX.")
        spacing = _spacing(args.pixel_size, axes, path.name, declared=read.pixel_size_um)
    bar = ProgressBar(path.name)
    result = _drain(iter_segment(
        image, model=model, axes=args.axes or file_axes, mode=args.mode, channel=args.channel,
        device=args.device, tile_size=args.tile_size, scale=args.scale, percentiles=args.percentiles,
        normalize_per=args.normalize_per, threshold=args.threshold,
        seed_threshold=args.seed_threshold, instance_method=args.instance_method, min_size=args.min_size, link_time=args.link_time,
        keep_probabilities=False), bar)
    meta = {k: v for k, v in result.metadata.items() if isinstance(v, (str, int, float, bool, list))}
    # The result's "axes" are the input's (with C); the files hold the output axes.
    meta = {**meta, "input_axes": meta.get("axes"), "axes": result.axes}
    if spacing is None:  # the file's own calibration, when it declares one
        spacing = _spacing(None, result.axes, path.name, declared=read.pixel_size_um)
    sizes = dict(zip([a for a in result.axes if a in "ZYX"], spacing)) if spacing else None
    notes = []
    try:
        # An earlier pair (replaced with --overwrite) goes first: stopped between the two
        # writes, the folder must not hold a new semantic file beside the old instances.
        # An earlier run's table (--measure) goes too: it describes the objects replaced.
        stale = [out / f"{path.stem}_objects.csv"] if args.overwrite and not table else []
        for target in (sem, inst, *table, *stale):
            if target.is_file() or target.is_symlink():
                target.unlink()
        for target, labels in ((sem, result.semantic), (inst, result.instances)):
            plain = write_labels(target, labels, axes=result.axes, pixel_size_um=sizes,
                                 time_calibration=read.time_calibration, metadata=meta)
            if plain:
                notes.append(f"{path.name}: note: {target.name} is a plain TIFF, not an ImageJ hyperstack: {plain}")
        if table:
            measured = measure_objects(result.instances, axes=result.axes, image=image,
                                       image_axes=result.metadata["axes"], spacing=spacing)
            if args.link_time:
                measured["parent_id"] = _parent_ids(result.instances, result.axes, measured)
            write_csv(measured, table[0])
    except OSError as exc:
        raise SegmentationError(
            f"Cannot write the results of {path.name} to {out} ({exc.strerror or exc}: "
            f"{exc.filename2 or exc.filename}).") from None
    if _axes_differ(args.axes, file_axes):
        notes.append(f"{path.name}: note: --axes {args.axes} differs from the axes {file_axes} the file declares: "
                     f"it was segmented as {args.axes.upper()} (leave --axes out to use the file's).")
    if args.axes is None and file_axes is None:
        guess = _guessed_axes_note(path.name, tuple(image.shape), result.metadata["axes"])
        notes += [guess] if guess else []
    n = result.metadata["n_objects"]
    tracks = "" if result.tracks is None else f" in {plural(result.tracks, 'track')}"
    value = _blank_value(image, channel=args.channel, axes=result.metadata["axes"])
    blank = "" if value is None else f" (the image is blank: every pixel is {value})"
    print(f"{path.name}: {plural(n, 'object')}{tracks}{blank} -> {', '.join(p.name for p in (sem, inst, *table))}")
    for note in notes:
        print(note)


def _blank_value(image: Any, *, channel: int | None = None, axes: str | None = None) -> Any:
    """The value of every pixel of ``image`` when they all have one (all 0: an empty acquisition,
    a wrong channel or file), else None. Read a plane (an index of its first axis) at a time,
    stopping at the first that holds another value: an image that is not blank costs one plane.
    With ``channel`` and ``axes`` (the image's, with C), only that channel is looked at: it is
    the one segmented."""
    import numpy as np

    c = axes.upper().index("C") if channel is not None and axes and "C" in axes.upper() else None
    keys = ((channel, i) for i in range(image.shape[1])) if c == 0 else ((i,) for i in range(image.shape[0]))
    value = None
    for key in keys:
        plane = np.asarray(image[key])
        if c:  # the channel axis, after the first
            plane = np.take(plane, channel, axis=c - 1)
        low, high = plane.min(), plane.max()
        if low != high or (value is not None and low != value):
            return None  # (NaN differs from itself: not called blank)
        value = low
    return None if value is None else value.item()


def _parent_ids(instances: Any, axes: str, table: dict[str, Any]) -> Any:
    """The ``parent_id`` of each row of ``table`` (:func:`~napari_unet.measure.measure_objects` of
    linked ``instances``), in its row order: the track that row's track divided from, else 0
    (:func:`~napari_unet.tracking.tracks_table`)."""
    import numpy as np

    from .tracking import tracks_table

    tracks = tracks_table(instances, axes=axes, table=table)
    parents = dict(zip(tracks["track_id"].tolist(), tracks["parent_id"].tolist()))
    labels = np.asarray(table["label"])
    return np.array([parents[i] for i in labels.tolist()], dtype=labels.dtype)


def _check_axes_count(name: str, shape: tuple[int, ...], given: str | None, declared: str | None) -> None:
    """Refuse an --axes of another length than the axes the file declares, naming those.

    The engine's message would suggest axes guessed from the shape ('ZYX' for a TYX series).
    """
    if given is None or declared is None or len(given) == len(shape) or not given.isalpha():
        return  # (letters with commas or spaces: the engine says to write them together)
    raise SegmentationError(
        f"--axes {given} has {plural(len(given), 'letter')}, but {name} has {plural(len(shape), 'dimension')} "
        f"(shape {shape}) and declares the axes {declared}: leave --axes out to use them, or give one letter "
        "per dimension.")


def _axes_differ(given: str | None, declared: str | None) -> bool:
    """Whether --axes ``given`` replaces the axes a file ``declared`` with others of as many letters
    (a TYX movie given --axes YXT is read as 256 frames of 5 x 256, with no error to say so)."""
    return (given is not None and declared is not None and given.isalpha() and len(given) == len(declared)
            and given.upper() != declared.upper())


def _guessed_axes_note(name: str, shape: tuple[int, ...], axes: str, *,
                       then: str = " and run again with --overwrite") -> str | None:
    """A note for a stack whose axes were guessed from its shape with a Z among them, else None.

    A file that declares no axes (tifffile or scikit-image writes of a plain array) is read by
    its shape: a few stains stored first, or a time series, then pass for a z-stack and are
    segmented (and scored) as one, without an error to say so. ``then`` ends the advice: what
    to do after giving --axes.
    """
    if "Z" not in axes:
        return None
    words = {"Z": ("plane in Z", "planes in Z"), "T": ("time point", "time points"), "C": ("channel", "channels")}
    described = ", ".join(f"{n} {words[a][n != 1]}" for n, a in zip(shape, axes) if a in words)
    others = [axes.replace("Z", "T")] if "T" not in axes else []
    others += [axes.replace("Z", "C") + " --channel N"] if "C" not in axes else []
    examples = " or ".join(f"--axes {o}" for o in others)
    return (f"{name}: note: the file declares no axes; they were guessed from its shape {shape} as {axes} "
            f"({described}): if they are others, give them with --axes"
            + (f" (e.g. {examples})" if examples else "") + f"{then}.")


def _pixel_sizes(text: str) -> tuple[float, ...]:
    """``--pixel-size``: one size, or sizes separated by commas, each positive."""
    try:
        sizes = tuple(float(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or len(sizes) > 3 or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pixel size: give micrometres per pixel, e.g. 0.65 (Y and X), "
            "or Z,Y,X for a z-stack, e.g. 2,0.65,0.65")
    return sizes


def _spacing(sizes: tuple[float, ...] | None, axes: str, name: str, *,
             declared: dict[str, float] | None = None) -> tuple[float, ...] | None:
    """The pixel sizes along the Z/Y/X axes of ``axes``, in their order there: from ``--pixel-size``
    (given as Z,Y,X; one size stands for Y and X), else those the file ``declared`` (ImageJ, OME)
    when it gives all of them, else None."""
    spatial = [a for a in axes if a in "ZYX"]
    if sizes is None:
        if declared and all(a in declared for a in spatial):
            return tuple(declared[a] for a in spatial)
        return None
    if len(sizes) == 1 and len(spatial) == 2:
        return sizes * 2
    if len(sizes) != len(spatial):
        raise SegmentationError(
            f"{name} has the spatial axes {''.join(spatial)}: give --pixel-size "
            f"{'Z,Y,X (e.g. 2,0.65,0.65)' if len(spatial) == 3 else 'Y,X or one size for both'}.")
    # Given as Z,Y,X; applied along the image's own axes, which may come in another order (XY).
    by_axis = dict(zip(sorted(spatial, key="ZYX".index), sizes))
    return tuple(by_axis[a] for a in spatial)


def _load_folder_pairs(images: str, masks: str, *, axes: str | None = None,
                       check_channels: Callable[[Any, str], None] | None = None,
                       ) -> tuple[list[str], list[Any], list[Any], list[str | None]]:
    """Names, images, instance masks and axes (``axes``, else the file's, else None) of a folder pair.

    ``check_channels(read, name)``, when given, vets each image file as it is read.
    """
    from .io import read_image_file, read_labels
    from .training.data import check_pair_shapes, pair_files, whole_labels

    names, imgs, msks, all_axes = [], [], [], []
    replaced: dict[str, list[str]] = {}  # axes a file declares that --axes replaces -> those files
    for p, mask_path in pair_files(images, masks):
        read = read_image_file(p)
        _check_axes_count(p.name, tuple(read.image.shape), axes, read.axes)
        if _axes_differ(axes, read.axes):
            replaced.setdefault(read.axes, []).append(p.name)
        # As training reads them: whole-number floats (Fiji's 32-bit labels) are ids; a bad
        # mask is named now, before any image is segmented.
        mask = whole_labels(read_labels(mask_path), str(mask_path))
        if check_channels is not None:
            check_channels(read, p.name)
        image, image_axes = read.image, axes or read.axes
        shape = image.shape
        if image_axes and "C" in image_axes.upper() and len(image_axes) == image.ndim:
            # Channels are not labelled: the mask has the image's other axes.
            shape = tuple(n for n, a in zip(image.shape, image_axes.upper()) if a != "C")
        check_pair_shapes(shape, mask.shape, name=str(mask_path))
        names.append(p.name)
        imgs.append(image)
        msks.append(mask)
        all_axes.append(image_axes)
    for declared, files in replaced.items():
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        print(f"napari-unet: note: --axes {axes} differs from the axes {declared} that "
              f"{plural(len(files), 'image')} declare{'s' if len(files) == 1 else ''} ({shown}): "
              f"{'it is' if len(files) == 1 else 'they are'} read as {axes.upper()} (leave --axes out to use "
              "the files' own).", file=sys.stderr)
    return names, imgs, msks, all_axes


def _check_declared_channels(read: Any, name: str, channel: int | None, model: Any,
                             axes: str | None = None) -> None:
    """Refuse to blend the stains of a multichannel file into grey: a 1-channel model needs --channel.

    ``axes`` (--axes) replaces the file's own; the stains are still never blended while they
    keep a C axis.
    """
    if channel is not None or not read.channels_declared or model.config.in_channels != 1:
        return
    used = (axes or read.axes).upper()
    if "C" not in used or len(used) != read.image.ndim:
        return  # no channel axis any more (the user's choice), or axes the engine will refuse
    n = read.image.shape[used.index("C")]
    if n > 1:
        raise SegmentationError(
            f"{name} has {n} channels (axes {read.axes} in its metadata), and this model sees one: "
            f"choose the one that shows the nuclei with --channel N (0 to {n - 1}).")


def _check_mask_fits(name: str, shape: tuple[int, ...], mask_shape: tuple[int, ...], axes: str | None,
                     model: Any, masks: str) -> None:
    """Refuse, before any image is segmented, a mask that is not the image's shape less its C axis.

    The folder check lets a (Y, X) mask beside a (Z, Y, X) stack pass (it may be a (Y, X, C)
    image); read with its axes, the stack's mask shows its planes are missing.
    """
    from .axes import plan_axes

    try:
        plan = plan_axes(shape, axes, spatial_dims=model.config.spatial_dims, in_channels=model.config.in_channels)
    except SegmentationError:
        return  # segment names what is wrong with the image or its axes
    _check_mask_shape(name, shape, mask_shape, plan.axes, guessed=axes is None, masks=masks)


def _check_mask_shape(name: str, shape: tuple[int, ...], mask_shape: tuple[int, ...], letters: str, *,
                      guessed: bool, masks: str) -> None:
    """Refuse a mask that is not the shape of its image (read with the axes ``letters``,
    ``guessed`` from its shape or not) less its C axis: evaluate's and tune's one message for it."""
    wanted = tuple(n for n, a in zip(shape, letters) if a != "C")
    if mask_shape != wanted:
        raise SegmentationError(
            f"{name}: its mask in {masks} has shape {mask_shape}, but the image (shape {shape}, axes "
            f"{letters}{', guessed from its shape' if guessed else ''}) needs a mask of shape {wanted}, "
            "one label per pixel" + (" of every plane" if "Z" in letters or "T" in letters else "")
            + ": give the mask of the whole image, or the image's axes with --axes if they are others.")


def _time_points(mask: Any, pred: Any, axes: str) -> list[tuple[Any, Any]]:
    """(mask, prediction) per time point when ``axes`` (the prediction's) hold T; else the pair."""
    import numpy as np

    if "T" not in axes or mask.shape != pred.shape:
        return [(mask, pred)]
    t = axes.index("T")
    return [(np.take(mask, i, axis=t), np.take(pred, i, axis=t)) for i in range(pred.shape[t])]


def _truths(mask: Any, name: str, pieces: list[Any]) -> list[Any]:
    """Instance labels of each piece of ``mask`` (its time points); a binary mask's connected regions."""
    from skimage.measure import label

    from .training.data import is_binary_mask

    if not is_binary_mask(mask):
        return pieces
    labelled = [label(piece != 0) for piece in pieces]
    regions = sum(int(piece.max()) for piece in labelled)
    if regions > 1:
        print(f"napari-unet: note: the mask of {name} is a binary mask: each of its {regions} connected "
              "regions counts as one object (touching objects count as one).", file=sys.stderr)
    return labelled


def _check_json_target(path: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, a --json file that exists (without --overwrite) or cannot be written."""
    if path.is_dir():
        raise SegmentationError(f"--json {path} is a folder: give a file name, e.g. {path / 'scores.json'}.")
    if path.exists() and not overwrite:
        raise SegmentationError(f"{path} already exists: add --overwrite to replace it, or give another --json file.")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise SegmentationError(f"Cannot write {path}: its folder {folder} does not exist or is not "
                                "writable. Give a writable path to --json.")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import segment
    from .checkpoint import load_model
    from .metrics import evaluate

    if args.json and args.json != "-":
        _check_json_target(Path(args.json), overwrite=args.overwrite)
    _check_options(args)
    model = load_model(args.model)
    names, imgs, masks, all_axes = _load_folder_pairs(
        args.images, args.masks, axes=args.axes,
        check_channels=lambda read, name: _check_declared_channels(read, name, args.channel, model, args.axes))
    for name, img, mask, axes in zip(names, imgs, masks, all_axes):
        _check_mask_fits(name, tuple(img.shape), tuple(mask.shape), axes, model, args.masks)
    bar = ProgressBar("evaluate")
    truths, preds, scales, notes = [], [], set(), []
    for i, (name, img, mask, axes) in enumerate(zip(names, imgs, masks, all_axes)):
        try:
            result = segment(img, model=model, axes=axes, channel=args.channel, device=args.device,
                             scale=args.scale, percentiles=args.percentiles, normalize_per=args.normalize_per,
                             keep_probabilities=False)
        except SegmentationError as exc:
            raise SegmentationError(f"{name}: {exc}") from None
        scales.add(float(result.metadata["scale"]))
        if axes is None:  # neither --axes nor the file's: a series guessed as a z-stack is one volume
            guess = _guessed_axes_note(name, tuple(img.shape), result.metadata.get("axes", result.axes),
                                       then=" and run again: a z-stack is scored as one volume, each time "
                                            "point of a series on its own")
            notes += [guess] if guess else []
        # Time points are scored as separate images; z-stacks as volumes.
        pairs = _time_points(mask, result.instances, result.axes)
        truths += _truths(mask, name, [truth for truth, _ in pairs])
        preds += [pred for _, pred in pairs]
        bar.update(i + 1, len(imgs), name[:20])
    bar.close()
    for note in notes:  # on stderr, as the other notes: --json - keeps stdout for the JSON
        print(f"napari-unet: {note}", file=sys.stderr)
    try:
        scores = evaluate(truths, preds)
    except SegmentationError as exc:
        raise SegmentationError(f"The masks in {args.masks}: {exc}") from None
    # With --json - the JSON alone goes to stdout, so that it can be piped.
    out = sys.stderr if args.json == "-" else sys.stdout
    extra = f" ({plural(len(truths), 'time point')})" if len(truths) != len(names) else ""
    print(f"model {model.name} ({model.short_hash}) on {plural(len(names), 'image')}{extra} in {args.images}",
          file=out)
    print(scores.format_table(), file=out)
    if args.json:
        payload = {"model": model.name, "model_sha256": model.sha256, "images": args.images,
                   # The scale the images were segmented at (several with --scale auto).
                   "scale": scales.pop() if len(scales) == 1 else sorted(scales),
                   "percentiles": list(args.percentiles or (model.config.normalization["low"],
                                                            model.config.normalization["high"])),
                   "normalize_per": args.normalize_per,
                   **scores.to_dict()}
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            try:
                Path(args.json).write_text(text + "\n")
            except OSError as exc:
                raise SegmentationError(
                    f"Cannot write {args.json} ({exc.strerror or exc}). Give a writable path to --json.") from None
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .training.data import load_pairs
    from .training.loop import (COMPLETE, DEPTH, LR_FINE_TUNE, LR_NEW, REPAIRED, crop_size_misfit, data_digest,
                                iter_train, saved_run_args)
    from .training.tune import TUNED

    if bool(args.val_images) != bool(args.val_masks):
        raise SegmentationError("Give both --val-images and --val-masks, or neither.")
    _check_options(args)
    base = load_model(args.init_model) if args.init_model else None  # loaded once: iter_train takes it
    depth = base.config.depth if base else DEPTH
    misfit = crop_size_misfit(args.crop_size, depth)
    if misfit:
        _refuse_option("--crop-size", args.crop_size,
                       f"{misfit[0]} for {'the model ' + base.name if base else 'a new network'}, of depth "
                       f"{depth} (e.g. {misfit[1]})")
    core = args.core_fraction
    if core is None:
        core = base.config.core_fraction if base else 0.0
    binary: dict[str, list[bool]] = {"train": [], "val": []}  # per mask read: binary, of several regions
    train_s = load_pairs(args.images, args.masks, core_fraction=core,
                         on_mask=lambda _, mask: binary["train"].append(_binary_of_regions(mask)))
    val_s = load_pairs(args.val_images, args.val_masks, core_fraction=core,
                       on_mask=lambda _, mask: binary["val"].append(_binary_of_regions(mask))) if args.val_images else []
    _note_binary_masks(binary["train"], args.masks)
    _note_binary_masks(binary["val"], args.val_masks)
    shared = _shared_samples(train_s, val_s)
    if shared:
        print(f"napari-unet: note: {shared} of the {plural(len(val_s), 'validation image')} (planes of stacks "
              f"count one each) in {args.val_images} "
              f"{'is a training image' if shared == 1 else 'are training images'} too: the best epoch and the "
              "post-processing are then chosen on images the model learns from, and its scores are too "
              "good. Keep annotated images out of --images for --val-images.", file=sys.stderr)
    if Path(args.output).exists():  # else iter_train makes it, once the arguments are checked
        _check_writable(Path(args.output))
    bar = ProgressBar("train")
    complete = []
    gen = iter_train(
        train_s, args.output, val_samples=val_s, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        crop_size=args.crop_size, learning_rate=args.lr if args.lr is not None else (
            LR_FINE_TUNE if base else LR_NEW), init_model=base,
        seed=args.seed, device=args.device, name=Path(os.path.abspath(args.output)).name, core_fraction=core,
        sampling=args.sampling,
    )

    def on_record(rec: Any) -> None:
        if rec.stage == COMPLETE:
            complete.append(rec)
        elif rec.stage == REPAIRED:  # on its own line, under the bar
            print(("\n" if bar.enabled else "") + f"napari-unet: note: {rec.message}", file=sys.stderr)

    model = _drain(gen, bar, on_record)
    if complete:
        print(complete[0].message)
        if not (val_s and args.tune) or TUNED in model.config.provenance:
            return 0
        current = data_digest(val_s)
        if saved_run_args(args.output).get("val_data", current) != current:
            # Not a run stopped while tuning: it was trained with other validation images, or none.
            print("Its post-processing is kept: the run was not validated on these images, so they "
                  "do not choose it.")
            return 0
        print("Its post-processing was never chosen (stopped while tuning?): choosing it now.")
    if val_s and args.tune:
        from .training.tune import matched_any, tune_postprocess

        best, table = tune_postprocess(model, *_tuning_planes(args.val_images, args.val_masks, model)[:2],
                                       device=args.device, save=True)
        if matched_any(table):
            print(f"post-processing chosen on the validation images: {best}")
        else:
            print("post-processing kept: no setting found a single object of the validation masks "
                  "(AP 0); train longer, or check that each mask belongs to its image.")
    print(f"model saved in {args.output}")
    return 0


def _binary_of_regions(mask: Any) -> bool:
    """Whether a training mask is binary (one value, e.g. 0/255) with several connected regions."""
    from skimage.measure import label

    from .training.data import is_binary_mask

    return is_binary_mask(mask) and int(label(mask != 0).max()) > 1


def _note_binary_masks(binary: Sequence[bool], masks: str | None) -> None:
    """Say, on stderr, how many masks of a training folder pair are binary masks of several regions.

    ``binary`` holds :func:`_binary_of_regions` of each mask in ``masks``, as training read them.
    Such a mask (0/1, 0/255) is taught as its connected regions, as documented, but touching
    nuclei are then one region: the model is taught not to split them, which a user who
    exported a mask rather than labels should hear before hours of training.
    """
    count = sum(binary)
    if count:
        print(f"napari-unet: note: {count} of the {plural(len(binary), 'mask')} in {masks} "
              f"{'is' if count == 1 else 'are'} binary (one value, e.g. "
              "0/255): each connected region is taught as one object, so touching nuclei are taught as one. "
              "Give instance labels (one id per nucleus) to teach the model to split them.", file=sys.stderr)


def _shared_samples(train: Sequence[Any], val: Sequence[Any]) -> int:
    """How many of the validation samples are training samples too (the same image pixels).

    Parameters
    ----------
    train, val : sequence of Sample
        From :func:`~napari_unet.training.data.load_pairs`.

    Returns
    -------
    int
        The number of samples of ``val`` whose image is one of ``train`` (the same folder given
        twice, a copy, or a file in both).
    """
    import hashlib

    def key(sample: Any) -> tuple[tuple[int, ...], bytes]:
        return sample.image.shape, hashlib.sha256(sample.image.tobytes()).digest()

    seen = {key(s) for s in train}
    return sum(key(s) in seen for s in val)


TUNE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Foreground thresholds ``tune`` tries: wider than training's, for annotations drawn tighter or looser."""


def _tuning_planes(images: str, masks: str, model: Any, *, axes: str | None = None,
                   channel: int | None = None) -> tuple[list[Any], list[Any], int]:
    """The 2D images and masks a folder pair gives to :func:`tune_postprocess`, and its file count.

    Each image's axes are ``axes``, else the file's, else guessed as ``segment`` guesses them;
    its planes come out as (Y, X) or (Y, X, C), ``channel`` taken alone from C when given.
    """
    import numpy as np

    from .axes import plan_axes
    from .training.data import is_binary_mask, pair_planes

    names, imgs, labels, all_axes = _load_folder_pairs(
        images, masks, axes=axes,
        check_channels=lambda read, name: _check_declared_channels(read, name, channel, model, axes))
    planes = []
    for name, img, mask, img_axes in zip(names, imgs, labels, all_axes):
        try:
            plan = plan_axes(img.shape, img_axes, in_channels=model.config.in_channels)
        except SegmentationError as exc:
            raise SegmentationError(f"{name}: {exc}") from None
        letters = plan.axes
        _check_mask_shape(name, tuple(img.shape), tuple(mask.shape), letters, guessed=img_axes is None,
                          masks=masks)
        lead = [a for a in letters if a not in "YXC"]
        # Planes lie on the last two axes (Y, X), channels after them; the mask has no C.
        img = np.transpose(img, [letters.index(a) for a in [*lead, "Y", "X", *("C" * ("C" in letters))]])
        mask_letters = letters.replace("C", "")
        mask = np.transpose(mask, [mask_letters.index(a) for a in [*lead, "Y", "X"]])
        if channel is not None:
            n = img.shape[-1] if "C" in letters else 0
            if not 0 <= channel < n:
                raise SegmentationError(
                    f"{name}: --channel {channel}, but the image has "
                    + (f"{plural(n, 'channel')} (0 to {n - 1})." if n else
                       f"no channel axis (axes {letters}): leave out --channel, or give --axes."))
            img = img[..., channel]
        planes += [plane for plane in pair_planes(img, mask, name=Path(name).stem, semantic=is_binary_mask(mask))
                   if plane is not None]
    return [p[1] for p in planes], [p[2] for p in planes], len(names)


def _cmd_tune(args: argparse.Namespace) -> int:
    from .checkpoint import CONFIG, WEIGHTS, is_bundled, load_model
    from .training.tune import DEFAULT_GRID, NORMALIZATION_GRID, matched_any, tune_normalization, tune_postprocess

    _check_options(args)
    model = load_model(args.model)
    if model.config.spatial_dims != 2:
        raise SegmentationError(
            f"{model.name} is a 3D model: tune chooses the settings of 2D models, plane by plane. "
            "Set a 3D model's thresholds in its config.json, or with segment's options.")
    out = Path(args.output)
    if out.is_file():
        raise SegmentationError(
            f"--output {out} is a file: give a model folder (for the model's own, {out.parent}).")
    same = model.path is not None and out.resolve() == model.path.resolve()
    if same and is_bundled(out):
        # Refused before any work (tuning would only fail at the end, when saving).
        raise SegmentationError(
            f"{model.name} is a bundled model, which is never changed: give a new folder to --output "
            "for the tuned copy.")
    if not same and (out / CONFIG).exists():
        raise SegmentationError(
            f"{out} already holds a model: give a new folder to --output (or the model's own folder, "
            "to change its settings in place).")
    made: list[Path] = []  # what this command created, removed again if tuning fails
    if not same:
        made = [p for p in (out / WEIGHTS, out / CONFIG) if not p.exists()]
        if not out.exists():
            made.append(out)
        # The copy is written once its settings are chosen (the model given stays as it was): a run
        # stopped (or killed) before leaves no untuned copy that would load, and block a rerun.
        _check_writable(out)
    own = {k: model.config.postprocess.get(k) for k in DEFAULT_GRID}
    # The model's own settings are candidates too, first (ties keep them): the grid may not hold
    # them (min_size 10 by default), and then they would be neither scored nor kept when best.
    full = {**DEFAULT_GRID, "threshold": TUNE_THRESHOLDS}
    if model.config.target != "three_class":  # no interiors: seeds and neck cuts change nothing
        full = {k: full[k] for k in ("threshold", "min_size")}
    grid = {k: tuple(dict.fromkeys([*([own[k]] if own[k] is not None else []), *values]))
            for k, values in full.items()}
    try:
        images, masks, n_files = _tuning_planes(args.images, args.masks, model, axes=args.axes,
                                                channel=args.channel)
        if not any(mask.any() for mask in masks):
            raise SegmentationError(f"The masks in {args.masks} hold no objects: label the objects first.")
        print(f"choosing settings on {plural(len(images), 'image')} ({plural(n_files, 'file')})…", file=sys.stderr)
        if args.choose_percentiles:
            # The model's own pair is a candidate too (ties keep it), as for the post-processing below.
            own_norm = (float(model.config.normalization["low"]), float(model.config.normalization["high"]))
            # Saved with the post-processing, in one write: a run stopped between the two leaves
            # the model (in place) as it was, not with new percentiles and old thresholds.
            norm, norm_table = tune_normalization(
                model, images, masks, device=args.device,
                lows=tuple(dict.fromkeys([own_norm[0], *NORMALIZATION_GRID["low"]])),
                highs=tuple(dict.fromkeys([own_norm[1], *NORMALIZATION_GRID["high"]])))
            if matched_any(norm_table):
                before = next(row for row in norm_table if (row[0]["low"], row[0]["high"]) == own_norm)
                print(f"the model's percentiles {own_norm[0]:g}-{own_norm[1]:g}: AP@0.5 {before[1]:.3f}")
                print(f"chosen percentiles {norm['low']:g}-{norm['high']:g}: AP@0.5 {norm_table[0][1]:.3f}")
            model.config = dataclasses.replace(model.config, normalization=norm)
        best, table = tune_postprocess(model, images, masks, grid=grid, device=args.device, save=True,
                                       output=None if same else out)
    except BaseException:
        # A failed run leaves no untuned copy behind, which would block the same command run again.
        for path in made:
            if path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    pass
            else:
                path.unlink(missing_ok=True)
        raise
    if not matched_any(table):
        print("Settings kept: no setting found a single object of the masks (AP 0); check that each "
              "mask belongs to its image.")
    else:
        before = next((row for row in table if row[0] == {k: own[k] for k in grid}), None)
        if before is not None:
            print(f"the model's settings: AP@0.5 {before[1]:.3f} (mean AP 0.5-0.9 {before[2]:.3f})")
        print(f"chosen: AP@0.5 {table[0][1]:.3f} (mean AP 0.5-0.9 {table[0][2]:.3f}) with "
              + ", ".join(f"{k} {best[k]}" for k in grid))
    print(f"model saved in {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation of microscopy images.")
    p.add_argument("--version", action="version", version=f"napari-unet-seg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment image files; writes <stem>_semantic.tif and <stem>_instances.tif")
    s.add_argument("images", nargs="+", help="image files (TIFF, PNG, JPEG, BMP)")
    s.add_argument("--output", "-o", required=True, help="folder for the results")
    s.add_argument("--model", "-m", default="default", help="bundled model name or model folder (default: the bundled nuclei model)")
    s.add_argument("--axes", help="axes of the images, e.g. YX, YXC, ZYX, TYX, TZYX (default: the axes an ImageJ, "
                        "OME or tifffile TIFF declares, else inferred from the shape)")
    s.add_argument("--mode", choices=["auto", "2d", "3d"], default="auto",
                   help="stacks plane by plane (2d) or as volumes (3d) (default: auto, as the model is made: "
                        "2d for the bundled one)")
    s.add_argument("--channel", type=int, help="channel to use with a 1-channel model")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto, the best present)")
    s.add_argument("--tile-size", type=int,
                   help="tile edge in pixels: a smaller one takes less memory, but below 512 each tile sees less "
                        "around its pixels and the results drift; at least 64 for the bundled model, 4 times "
                        "the network's multiple for others (default: 1024 for a 2D model, 128 for a 3D one)")
    s.add_argument("--scale", default=None,
                   help="resample the images by this factor for the network: 2 for nuclei half the size "
                        "the model knows, 0.5 for twice (outputs keep the image size); 'auto' measures "
                        "the objects first and rescales only when they are small (default: the model's choice, 1 for "
                        "the bundled model)")
    s.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="input percentiles that become black and white for the network (default: the "
                        "model's, 1 99.8 for the bundled one); raise HIGH (99.99) when a few very bright "
                        "spots make the nuclei dim")
    s.add_argument("--normalize-per", choices=NORMALIZE_PER_CHOICES, default="stack",
                   help="what the percentiles are taken over: the whole image (stack, the default), each time "
                        "point on its own (frame: for a series dimmed by photobleaching), or each 2D plane "
                        "(plane: also for deep, dim planes of a z-stack). An image without a time axis is one "
                        "frame. A frame or plane without nuclei may show false objects in its background")
    s.add_argument("--threshold", type=float, help="foreground probability threshold (default: the model's)")
    s.add_argument("--seed-threshold", type=float,
                   help="interior probability above which a region starts an object of its own, for models "
                        "that tell interiors from boundaries (the bundled one): raise it when touching nuclei "
                        "come out as one, lower it when nuclei are cut in pieces (default: the model's)")
    s.add_argument("--instance-method", choices=["components", "watershed"], help="how to split instances (default: the model's)")
    s.add_argument("--min-size", type=int, help="remove objects smaller than this many pixels (default: the "
                        "model's); in a z-stack segmented plane by plane and labelled in 3D, those smaller than "
                        "a ball as wide (88 voxels for 24); a 3D model's counts voxels")
    s.add_argument("--link-time", action="store_true",
                   help="time series: a nucleus keeps its id from one time point to the next "
                        "(else each time point's ids start at 1)")
    s.add_argument("--measure", action="store_true",
                   help="also write <stem>_objects.csv: one row per object (and time point) with its id, "
                        "area in pixels, centroid, whether it touches the image border, and the mean and "
                        "summed intensity of each channel of the image; with --link-time a track table "
                        "(the id is the track's, one row per time point) with parent_id, the track "
                        "each new one divided from (else 0)")
    s.add_argument("--pixel-size", type=_pixel_sizes, metavar="SIZE",
                   help="micrometres per pixel, one size for Y and X (e.g. 0.65), or Z,Y,X for a z-stack "
                        "(e.g. 2,0.65,0.65): the calibration of the result TIFFs (as Fiji shows it) and, "
                        "with --measure, area_um2 (area_um3 in a volume). Default: the pixel size an "
                        "ImageJ or OME TIFF declares, if any")
    s.add_argument("--overwrite", action="store_true",
                   help="replace results already in the output folder (input images are never replaced)")
    s.add_argument("--skip-existing", action="store_true",
                   help="skip images whose results are all in the output folder already (e.g. to finish a "
                        "batch that stopped)")
    s.add_argument("--keep-going", action="store_true",
                   help="when an image cannot be segmented, say why and go on with the others (exit "
                        "status 2 at the end, naming them)")
    s.set_defaults(func=_cmd_segment)

    t = sub.add_parser("train", help="train a model from images and instance masks")
    t.add_argument("--images", required=True, help="folder of training images")
    t.add_argument("--masks", required=True, help="folder of instance masks with the images' file names (or with an ending such as _mask, _labels, _cp_masks)")
    t.add_argument("--val-images", help="folder of validation images")
    t.add_argument("--val-masks", help="folder of validation masks")
    t.add_argument("--output", "-o", required=True, help="model folder to write (resumes if it holds a run)")
    t.add_argument("--init-model", help="fine-tune this model (e.g. 'default') instead of starting fresh")
    t.add_argument("--core-fraction", type=float, default=None,
                   help="teach interiors as each object's core deeper than this fraction of its radius "
                        "(0: all but a one-pixel rim; default: the --init-model's, else 0)")
    t.add_argument("--epochs", type=int, default=50,
                   help="passes of --steps-per-epoch steps; the model is checkpointed after each (default: 50)")
    t.add_argument("--steps-per-epoch", type=int, default=100,
                   help="optimisation steps per epoch (default: 100; the defaults are 25 times the work of the "
                        "Train widget's 10 epochs of 20 steps, hours on a laptop CPU)")
    t.add_argument("--batch-size", type=int, default=8, help="crops per step (default: 8)")
    t.add_argument("--crop-size", type=int, default=256,
                   help="edge of the square crops cut from the images, in pixels (default: 256)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 2e-3 for a new network, 5e-4 with --init-model: higher "
                        "rates can spoil a good starting model)")
    t.add_argument("--seed", type=int, default=0, help="random seed of the crops and augmentation (default: 0)")
    t.add_argument("--sampling", choices=["image", "area"], default="image",
                   help="crops pick each image equally often, or in proportion to its area (for data sets of "
                        "mixed image sizes: large crowded images are then seen as often as their pixels deserve)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    t.add_argument("--no-tune", dest="tune", action="store_false",
                   help="do not choose post-processing parameters on the validation images")
    t.set_defaults(func=_cmd_train)

    u = sub.add_parser("tune", help="choose a model's thresholds and minimum size on your annotated images "
                                    "(no training), and save the model with them")
    u.add_argument("--images", required=True, help="folder of images (2D, or stacks taken plane by plane)")
    u.add_argument("--masks", required=True, help="folder of their instance masks (the images' file names, or with an ending such as _mask, _labels, _cp_masks)")
    u.add_argument("--model", "-m", default="default", help="model to tune (default: the bundled one)")
    u.add_argument("--output", "-o", required=True,
                   help="new model folder for the tuned copy (the model's own folder changes it in place)")
    u.add_argument("--axes", help="axes of the images, as for segment (default: the file's, else guessed "
                                  "from the shape); stacks are tuned plane by plane")
    u.add_argument("--channel", type=int, help="channel to use with a 1-channel model")
    u.add_argument("--choose-percentiles", action="store_true",
                   help="first choose the input percentiles too (lower 0.5-2, upper 99.5-99.99; the network runs "
                        "once per pair and image), for images where a few very bright spots dim the nuclei")
    u.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    u.set_defaults(func=_cmd_tune)

    e = sub.add_parser("evaluate", help="score a model against instance masks (AP and F1 at IoU 0.5-0.9)")
    e.add_argument("--images", required=True, help="folder of images (2D, stacks or time series)")
    e.add_argument("--masks", required=True,
                   help="folder of their instance masks (the images' file names, or with an ending such as _mask, "
                        "_labels, _cp_masks)")
    e.add_argument("--model", "-m", default="default",
                   help="bundled model name or model folder to score (default: the bundled nuclei model)")
    e.add_argument("--axes", help="axes of the images, as for segment (default: the file's, else guessed "
                   "from the shape); the masks have the same axes without C")
    e.add_argument("--channel", type=int, help="channel to use with a 1-channel model")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    e.add_argument("--scale", default=None, help="as for segment: a number, or 'auto' (default: the model's)")
    e.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="input percentiles that become black and white for the network (default: the "
                        "model's, 1 99.8 for the bundled one); raise HIGH (99.99) when a few very bright "
                        "spots make the nuclei dim")
    e.add_argument("--normalize-per", choices=NORMALIZE_PER_CHOICES, default="stack",
                   help="what the percentiles are taken over, as for segment (stack, the default; frame; plane), "
                        "to score a series the way it is segmented")
    e.add_argument("--json", nargs="?", const="-", help="also write the scores as JSON (to a file, or - for stdout)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    e.set_defaults(func=_cmd_evaluate)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit) stops a command as Ctrl+C does."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`_Terminated` instead of ending the
    process at once, so that what a stopped command cleans up (temporary files, a half-made
    model copy) is cleaned up; a scheduler's time limit stops a run as Ctrl+C does."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _how_to_go_on(args: argparse.Namespace) -> str:
    """After a stop: how to finish a batch of images, or to resume a training run ("" otherwise)."""
    if args.command == "segment" and len(args.images) > 1:
        return (": the images finished before it keep their complete results; run the same command "
                "with --skip-existing to finish the batch")
    if args.command == "train":
        return ": run the same command again to resume from the last epoch saved"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script."""
    args = _parser().parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except SegmentationError as exc:
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        print(f"napari-unet: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, _Unforeseen) else 2
    except _Terminated:
        print(f"napari-unet: terminated (SIGTERM){_how_to_go_on(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"napari-unet: interrupted{_how_to_go_on(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. "| head": the reader has what it wanted
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug or an odd file: one line, not a traceback
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        print(f"napari-unet: error: {_unforeseen_text(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
