"""Training data: image/instance-mask pairs, targets and random crops.

Images are normalised exactly as inference normalises them (per-image
percentiles; RGB to grey for 1-channel models). Instance masks become
three-class targets: 0 background, 1 interior, 2 boundary (the inner rim of
each object), so touching nuclei stay apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_components
from skimage.segmentation import find_boundaries

from ..errors import SegmentationError
from ..io import IMAGE_SUFFIXES, image_files, read_image_file, read_labels
from ..normalize import DEFAULT_HIGH, DEFAULT_LOW, luminance, normalize
from ..predict import MIN_SIZE
from ..wording import plural

__all__ = [
    "MASK_SUFFIXES",
    "SAMPLINGS",
    "Sample",
    "check_pair_folders",
    "check_pair_shapes",
    "check_unique_stems",
    "file_stem",
    "is_binary_mask",
    "load_pairs",
    "mask_files_by_stem",
    "mask_for",
    "no_images_message",
    "pair_files",
    "pair_planes",
    "plane_name",
    "plane_samples",
    "prepare_sample",
    "random_crops",
    "sampling_weights",
    "three_class_targets",
    "whole_labels",
]

SAMPLINGS = ("image", "area")
"""How crops pick their image: each image equally often, or in proportion to its area."""


def three_class_targets(labels: np.ndarray, *, core_fraction: float = 0.0) -> np.ndarray:
    """Background / interior / boundary classes from instance labels.

    Parameters
    ----------
    labels : ndarray (Y, X) or (Z, Y, X) int
        0 background, each object its own id.
    core_fraction : float in [0, 1)
        0 makes the boundary the one-pixel inner rim of each object. Above 0,
        the interior shrinks to each object's core: the pixels deeper than
        ``core_fraction`` times the object's largest depth (its inscribed
        radius) are interior, the rest of the object is boundary. Touching
        nuclei then have interiors a band apart, not a pixel apart, so the
        seeds of the watershed separate much more often; the semantic mask
        (interior + boundary) is the same.

    Returns
    -------
    ndarray (same shape) uint8
        0 background, 1 interior, 2 boundary (object pixels next to another
        label or to background, and with ``core_fraction`` the outer band).
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)  # every True pixel is object 1 (ids index arrays below)
    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    target = (labels > 0).astype(np.uint8)
    target[boundary] = 2
    if core_fraction > 0 and labels.any():
        # Depth inside each object: rims between touching objects are zero, so
        # one transform of the whole mask measures every object on its own.
        depth = ndi.distance_transform_edt(target == 1) + (target == 1)
        lab = np.where(target == 1, labels, 0)
        ids = np.unique(lab[lab > 0])
        deepest = np.zeros(int(labels.max()) + 1)
        deepest[ids] = ndi.maximum(depth, lab, ids)
        target[(target == 1) & (depth <= core_fraction * deepest[labels])] = 2
    return target


CONTACT = 3
"""Target value of boundary pixels where two objects touch (trained as boundary, weighted up)."""


def mark_contacts(target: np.ndarray, labels: np.ndarray, *, radius: int = 1) -> np.ndarray:
    """Mark boundary pixels that lie within ``radius`` of another object as ``CONTACT``.

    Touching nuclei merge when the network misses the thin line between them;
    the loss weights these pixels up (see ``segmentation_loss``).
    """
    labels = np.asarray(labels)
    size = 2 * radius + 1
    lab = labels.astype(np.int64)
    # Above every id, but not int64's maximum: SciPy's minimum filter wraps that to its minimum.
    big = int(lab.max(initial=0)) + 1
    hi = ndi.maximum_filter(lab, size=size)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, big), size=size)
    other = ((hi != lab) & (hi > 0)) | ((lo != lab) & (lo < big))
    out = target.copy()
    out[(target == 2) & other] = CONTACT
    return out


def whole_labels(labels: Any, name: str) -> np.ndarray:
    """A mask file's values as instance ids: whole-number floats accepted, huge ids renumbered.

    Parameters
    ----------
    labels : array-like (...) of integers, bools or whole-number floats
    name : str
        Named in the error for a fractional or non-numeric mask.

    Returns
    -------
    ndarray (...) integer
        A mask of one negative value (0/-1: an int8 mask whose 255 wrapped)
        becomes 0/1; negative ids below -1 of a signed 8- or 16-bit mask are
        read as the unsigned ids they wrapped from; other negative values
        become background (0); ids far above the pixel count are numbered 1..n.
    """
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise SegmentationError(
                f"{name}: the mask holds fractional values; save instance labels as whole numbers "
                "(0 background, 1, 2, ... one per object).")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iub":
        raise SegmentationError(f"{name}: the mask must hold whole numbers, not {labels.dtype}.")
    if labels.size and labels.min() < 0:
        if is_binary_mask(labels):
            labels = (labels != 0).astype(np.uint8)  # a 0/-1 mask (an int8 255 wrapped): its objects stay
        elif labels.dtype.itemsize <= 2 and labels.min() < -1:
            # 8- or 16-bit ids past 127 / 32767 stored signed (a cast): id 200 reads as -56. (-1 alone
            # beside ids is taken as "unlabelled", background, as other negative values of wide masks.)
            labels = labels.view(labels.dtype.str.replace("i", "u"))
    labels = np.where(labels > 0, labels, 0)
    if labels.size and labels.max() > labels.size:  # ids far above the count: number them 1..n
        labels = relabel_sequential(labels)[0]
    return labels


@dataclass
class Sample:
    """One training pair: normalised image (C, *spatial) float32 and target (*spatial) uint8.

    ``core_fraction`` is the one the target was made with (see
    :func:`three_class_targets`); training checks it matches the model's.
    """

    image: np.ndarray
    target: np.ndarray
    name: str
    core_fraction: float = 0.0


def prepare_sample(image: np.ndarray, labels: np.ndarray, *, name: str = "",
                   in_channels: int = 1, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH,
                   contacts: bool = False, core_fraction: float = 0.0) -> Sample:
    """Normalise an image and make its targets.

    ``image`` is (Y, X), (Y, X, C) with C 3/4 (RGB, turned grey for
    1-channel models) or (Y, X, C) with C == in_channels. With ``contacts``
    the boundary pixels where objects touch get the value ``CONTACT``;
    ``core_fraction`` is passed to :func:`three_class_targets`.
    """
    image = np.asarray(image)
    labels = whole_labels(labels, name)
    check_pair_shapes(image.shape, labels.shape, name=name)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and in_channels == 1:
        image = luminance(image, channel_axis=-1)
    if image.ndim == labels.ndim:
        x = normalize(image, low=low, high=high)[None]
    else:
        x = np.moveaxis(normalize(image, low=low, high=high, channel_axis=-1), -1, 0)
    if x.shape[0] != in_channels:
        raise SegmentationError(
            f"{name}: the image has {plural(x.shape[0], 'channel')} and the model takes {in_channels}: "
            + ("save the channel that shows the nuclei on its own and train on that."
               if in_channels == 1 else f"give images with {in_channels} channels."))
    if min(labels.shape[-2:]) < MIN_SIZE:
        # Training would pad it, but tuning and segmenting refuse it (after hours of training).
        raise SegmentationError(
            f"{name}: {' x '.join(map(str, labels.shape[-2:]))} pixels is too small to learn from: "
            f"give images of at least {MIN_SIZE} x {MIN_SIZE} pixels, or leave this one out.")
    target = three_class_targets(labels, core_fraction=core_fraction)
    if contacts:
        target = mark_contacts(target, labels)
    return Sample(np.ascontiguousarray(x, dtype=np.float32), target, name, float(core_fraction))


def plane_name(name: str, index: tuple[int, ...]) -> str:
    """Name of one plane of a stack: ``cells_z012`` (``cells_003_z012`` in a 4D stack)."""
    if not index:
        return name
    *outer, z = index
    return name + "".join(f"_{i:03d}" for i in outer) + f"_z{z:03d}"


def is_binary_mask(labels: Any) -> bool:
    """True when ``labels`` holds a single nonzero value (a 0/1 or 0/255 mask, not instances).

    Such a mask marks where objects are, not which is which: its connected
    regions are the objects. Instance labels with one object count too (their
    one region is that object).
    """
    values = np.asarray(labels)
    if values.size == 0:
        return False
    low, high = values.min(), values.max()
    if low == high:
        return bool(low != 0)
    if low != 0 and high != 0:  # two nonzero values (or NaN)
        return False
    value = high if low == 0 else low
    if values.flags.c_contiguous and values.size > 1 << 20:
        # Instance labels show a second id in an even sample of their pixels: no full pass.
        sample = values.reshape(-1)[:: values.size >> 16]
        if not np.all((sample == 0) | (sample == value)):
            return False
    return bool(np.all((values == 0) | (values == value)))


def check_pair_shapes(image_shape: Sequence[int], labels_shape: Sequence[int], *, name: str = "") -> None:
    """Refuse a mask that does not label ``image`` plane for plane (or has colour channels).

    The image is (*lead, Y, X) or (*lead, Y, X, C); the labels are (*lead, Y, X).
    """
    image_shape, shape = tuple(image_shape), tuple(labels_shape)
    colour = shape[-1:] in ((3,), (4,)) and len(shape) >= 3 and (
        shape == image_shape or shape[:-1] == image_shape)  # beside an RGB image, or a grey one
    if colour:
        raise SegmentationError(
            f"{name}: the mask has colour channels (shape {shape}): save it as a single-channel "
            "label image (0 background, 1, 2, ... one value per object).")
    if len(shape) < 2 or image_shape[:len(shape)] != shape or len(image_shape) > len(shape) + 1:
        raise SegmentationError(
            f"{name}: image shape {image_shape} does not match mask shape {shape}. "
            "Give each image a mask of the same height and width, and a stack (e.g. Z, Y, X) a mask "
            "with one label plane per image plane.")


def pair_planes(image: Any, labels: Any, *, name: str = "", semantic: bool = False
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray] | None]:
    """The 2D planes of an image/labels pair, read one at a time.

    Parameters
    ----------
    image : array-like (*lead, Y, X) or (*lead, Y, X, C)
    labels : array-like (*lead, Y, X) int
    name : str
        The pair's name; each plane of a stack is named by :func:`plane_name`.
    semantic : bool
        ``labels`` is a mask (one nonzero value, see :func:`is_binary_mask`):
        the connected regions of each plane become the objects (touching
        nuclei count as one).

    Yields
    ------
    (name, image plane (Y, X[, C]), labels plane (Y, X)) or None
        One per plane, in order; None for a plane of a stack whose labels are
        all 0. A 2D pair always gives its plane.
    """
    check_pair_shapes(image.shape, labels.shape, name=name)
    lead = tuple(labels.shape[:-2])
    for index in np.ndindex(*lead) if lead else [()]:
        plane = np.asarray(labels[index])
        if lead and not plane.any():
            yield None
            continue
        if semantic:
            plane = connected_components(plane != 0)  # whichever value marks the nuclei, -1 too
        yield plane_name(name, index), np.asarray(image[index]), plane


def plane_samples(image: Any, labels: Any, *, name: str = "", in_channels: int = 1, contacts: bool = False,
                  core_fraction: float = 0.0, semantic: bool = False) -> Iterator[Sample | None]:
    """The 2D training samples of an image/labels pair: one per plane of a stack.

    Parameters
    ----------
    image : array-like (*lead, Y, X) or (*lead, Y, X, C)
        A 2D image (``lead`` empty), RGB or multichannel as
        :func:`prepare_sample` takes it, or a stack of them (e.g. Z planes).
        Numpy, dask or zarr: planes are read one at a time.
    labels : array-like (*lead, Y, X) int
        Instance labels of the same planes; 0 is background.
    name, semantic
        See :func:`pair_planes`.
    in_channels, contacts, core_fraction
        Passed to :func:`prepare_sample`.

    Yields
    ------
    Sample or None
        One per plane, in order. None for a plane of a stack whose labels are
        all 0 (nothing to learn from; skipped). A 2D pair always gives a Sample.

    Raises
    ------
    SegmentationError
        When the image's planes are not the labels' planes.
    """
    for plane in pair_planes(image, labels, name=name, semantic=semantic):
        if plane is None:
            yield None
            continue
        plane_id, image_plane, labels_plane = plane
        yield prepare_sample(image_plane, labels_plane, name=plane_id, in_channels=in_channels,
                             contacts=contacts, core_fraction=core_fraction)


def _channels_last(read: Any, path: Path, in_channels: int) -> np.ndarray:
    """A file's image with the channel axis its metadata declares (ImageJ: before Y, X) moved last.

    Stains are never blended into grey: a 1-channel model needs a file of one channel.
    """
    image, axes = read.image, (read.axes or "").upper()
    if not read.channels_declared or "C" not in axes or len(axes) != image.ndim:
        return image
    c = axes.index("C")
    if image.shape[c] == 1:
        return np.take(image, 0, axis=c)
    if in_channels == 1:
        raise SegmentationError(
            f"{path.name} has {image.shape[c]} channels (axes {read.axes} in its metadata), and the model "
            "learns from one: save the channel that shows the nuclei as an image of its own (in Fiji: "
            "Image > Color > Split Channels) and train on those files.")
    return np.moveaxis(image, c, -1)


def no_images_message(folder: Path) -> str:
    """What to say of a folder without images: which files are read, and that sub-folders are not.

    Parameters
    ----------
    folder : Path

    Returns
    -------
    str
    """
    kinds = ", ".join(sorted(s.lstrip(".").upper() for s in IMAGE_SUFFIXES))
    subfolders = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    hint = (f" It holds folders ({', '.join(subfolders[:3])}{' ...' if len(subfolders) > 3 else ''}), which "
            "are not searched: give the folder that holds the images, or put them in one."
            if subfolders else "")
    return f"No images found in {folder} (looked for {kinds} files).{hint}"


def pair_files(images: str | os.PathLike, masks: str | os.PathLike, *,
               names: Sequence[str] | None = None) -> list[tuple[Path, Path]]:
    """The image files of a folder pair, each with its mask file, in the images' name order.

    Parameters
    ----------
    images, masks : path
        Folders of images and of their masks (see :func:`mask_for`).
    names : sequence of str, optional
        File stems to take (default: every image).

    Returns
    -------
    list of (Path, Path)
        (image, mask) per image.

    Raises
    ------
    SegmentationError
        A folder missing or given twice (:func:`check_pair_folders`), two images of one name
        (:func:`check_unique_stems`), a name asked for that is not there, no images at all,
        an image without its one mask (:func:`mask_for`), or two images that find one mask.
    """
    img_dir, mask_dir = Path(images), Path(masks)
    check_pair_folders(img_dir, mask_dir)
    masks_by_stem = mask_files_by_stem(mask_dir)
    files = image_files(img_dir)
    check_unique_stems(files, img_dir)
    if names is not None:
        wanted = set(names)
        missing = sorted(wanted - {p.stem for p in files})
        if missing:
            raise SegmentationError(
                f"{len(missing)} of the images asked for are not in {img_dir}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.")
        files = [p for p in files if p.stem in wanted]
    if not files:
        raise SegmentationError(no_images_message(img_dir))
    lacking = [p for p in files if not _masks_named_for(p, masks_by_stem)]
    if lacking:
        # The masks no image takes by name (of all the folder's images, asked for or not) are
        # most likely the missing ones under another name: say which they are.
        taken = {m for p in image_files(img_dir) for m in _masks_named_for(p, masks_by_stem)}
        spare = sorted(m.name for found in masks_by_stem.values() for m in found if m not in taken)
        mask_for(lacking[0], masks_by_stem, mask_dir, others_lacking=len(lacking) - 1, spare=spare)
    pairs = [(p, mask_for(p, masks_by_stem, mask_dir)) for p in files]
    owner: dict[Path, Path] = {}
    for image, mask in pairs:
        if mask in owner:  # a.tif took a_labels.tif, the mask of the image a_labels.tif, by its ending
            raise SegmentationError(
                f"{owner[mask].name} and {image.name} in {img_dir} would share the mask {mask.name} in "
                f"{mask_dir}: give each image its own mask, under the image's own name.")
        owner[mask] = image
    return pairs


def check_pair_folders(images: Path, masks: Path) -> None:
    """Refuse missing folders, and one folder given as both the images and the masks."""
    for d in (images, masks):
        if not d.is_dir():
            raise SegmentationError(f"Folder {d} does not exist.")
    if images.resolve() == masks.resolve():
        raise SegmentationError(
            f"The images and the masks are the same folder ({images}): each image would be read as "
            "its own mask. Put the masks in a folder of their own, under the images' file names.")


def load_pairs(images: str | os.PathLike, masks: str | os.PathLike, *,
               names: Sequence[str] | None = None, in_channels: int = 1,
               contacts: bool = False, core_fraction: float = 0.0,
               on_mask: Callable[[Path, np.ndarray], object] | None = None) -> list[Sample]:
    """Read image/mask pairs with the same file stem from two folders.

    Parameters
    ----------
    images, masks : path
        Folders of images and of their instance masks (same file names, or with an ending of
        :data:`MASK_SUFFIXES`: see :func:`mask_for`).
    names : sequence of str, optional
        File stems to read (default: every image).
    in_channels, contacts, core_fraction
        Passed to :func:`prepare_sample`.
    on_mask : callable, optional
        Called with each mask file and its labels (shape of its image, less any channel axis)
        as read, to look at them (e.g. for a note) without reading the files again.

    Returns
    -------
    list of Sample
        One per 2D image. A stack (e.g. a Z, Y, X volume with a mask of the
        same shape) gives one sample per plane, named ``<stem>_z012``; planes
        whose mask is all 0 are skipped, as in the napari Train widget (see
        :func:`plane_samples`). A mask holding a single value (0/1 or 0/255)
        is binary: its connected regions are the objects.
    """
    mask_dir = Path(masks)
    samples = []
    for path, mask in pair_files(images, masks, names=names):
        labels = read_labels(mask)
        if on_mask is not None:
            on_mask(mask, labels)
        image = _channels_last(read_image_file(path), path, in_channels)
        planes = plane_samples(image, labels, name=path.stem, in_channels=in_channels,
                               contacts=contacts, core_fraction=core_fraction,
                               semantic=is_binary_mask(labels))
        try:
            samples.extend(s for s in planes if s is not None)
        except SegmentationError as exc:  # e.g. NaN pixels, a colour mask: say which files, among many
            # (and in which folders: training and validation images may share names)
            text = str(exc).removeprefix(f"{path.stem}: ")  # a stack's plane names stay
            raise SegmentationError(f"{path}, mask {mask}: {text}") from None
    if not any(s.target.any() for s in samples):
        raise SegmentationError(
            f"Every mask in {mask_dir} is empty (no label above 0; 0 and negative values are "
            "background): nothing to learn from. Label the objects in the masks first (1, 2, ...).")
    return samples


MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "-mask", "-masks", "-label", "-labels", "_seg",
                 "_cp_masks", "_instances")
"""Endings a mask's name may add to its image's (``cells_mask.tif``, Cellpose's ``cells_cp_masks.png``,
this package's ``cells_instances.tif``), when no mask has the image's own name."""


def file_stem(path: Path) -> str:
    """A file's name without its extension, ``.ome.tif`` counted as one (``cells.ome.tif``: ``cells``)."""
    stem = path.stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def mask_files_by_stem(mask_dir: Path) -> dict[str, list[Path]]:
    """The image files in ``mask_dir`` by :func:`file_stem` (several when only their extensions differ)."""
    found: dict[str, list[Path]] = {}
    for path in image_files(mask_dir):
        found.setdefault(file_stem(path), []).append(path)
    return found


def check_unique_stems(files: Sequence[Path], folder: Path) -> None:
    """Refuse two images of ``folder`` that differ only in extension (``a.tif`` and ``a.png``).

    Parameters
    ----------
    files : sequence of Path
        The images of ``folder`` (from :func:`~napari_unet.io.image_files`).
    folder : Path
        Named in the error.

    Raises
    ------
    SegmentationError
        Such images would share one mask, and be scored or learnt twice.
    """
    seen: dict[str, Path] = {}
    for path in files:
        other = seen.setdefault(file_stem(path), path)
        if other is not path:
            raise SegmentationError(
                f"{other.name} and {path.name} in {folder} have one name, so one mask: keep one of "
                "them, or rename the other (and give it its own mask).")


def _masks_named_for(image: Path, masks_by_stem: dict[str, list[Path]]) -> list[Path]:
    """The masks whose names fit ``image``'s: its own name, else its name with a :data:`MASK_SUFFIXES` ending."""
    stem = file_stem(image)
    return masks_by_stem.get(stem) or [p for end in MASK_SUFFIXES for p in masks_by_stem.get(stem + end, [])]


def mask_for(image: Path, masks_by_stem: dict[str, list[Path]], mask_dir: Path, *,
             others_lacking: int = 0, spare: Sequence[str] = ()) -> Path:
    """The one mask of ``image``; a clear error when there is none, or more than one.

    Parameters
    ----------
    image : Path
        The image file.
    masks_by_stem : dict
        From :func:`mask_files_by_stem`.
    mask_dir : Path
        The masks' folder, named in the errors.
    others_lacking : int
        How many other images have no mask either, said in the error when there is none.
    spare : sequence of str
        The names of the masks in ``mask_dir`` that fit no image's name, said in the error when
        there is none (they are likely the missing masks, named otherwise).

    Returns
    -------
    Path
        The mask with the image's name (any image extension, ``.ome`` or not), else the one whose
        name adds one of :data:`MASK_SUFFIXES` to it.
    """
    stem = file_stem(image)
    found = _masks_named_for(image, masks_by_stem)
    if not found:
        also = (f" ({plural(others_lacking, 'other image')} {'has' if others_lacking == 1 else 'have'} "
                "none either)" if others_lacking else "")
        if spare:
            hint = (f" The masks there that fit no image's name: {', '.join(spare[:3])}"
                    f"{f' and {len(spare) - 3} more' if len(spare) > 3 else ''}: rename each as its image.")
        elif not masks_by_stem:
            hint = f" {mask_dir} holds no image files at all: is it the masks' folder?"
        else:
            hint = ""
        raise SegmentationError(
            f"No mask for {image.name} in {mask_dir}{also}: give it a mask of the same name ({stem}.tif or "
            f"{stem}.png; {stem}_mask, {stem}_labels, {stem}_cp_masks and the like are found too), or move "
            f"{image.name} out of its folder.{hint}")
    if len(found) > 1:
        raise SegmentationError(
            f"{image.name} has {len(found)} masks in {mask_dir} ({', '.join(p.name for p in found)}): "
            "keep one, or move the others away.")
    return found[0]


def sampling_weights(samples: Sequence[Sample], sampling: str = "image") -> np.ndarray | None:
    """Probability of each sample being picked for a crop.

    Parameters
    ----------
    samples : sequence of Sample
    sampling : {"image", "area"}
        ``"image"`` picks every image equally often (returns None: uniform);
        ``"area"`` in proportion to its pixel count, so that every pixel (and
        roughly every object) of the data set is seen equally often. With
        ``"image"`` a 256x256 image gets as many crops as one five times larger,
        and the nuclei of large, crowded images are under-taught.

    Returns
    -------
    ndarray of shape (len(samples),) summing to 1, or None for uniform.
    """
    if sampling not in SAMPLINGS:
        raise SegmentationError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}.")
    if sampling == "image":
        return None
    area = np.array([float(np.prod(s.target.shape)) for s in samples])
    return area / area.sum()


def random_crops(samples: Sequence[Sample], rng: np.random.Generator, *, count: int,
                 size: int, scale_range: tuple[float, float] = (0.7, 1.4),
                 weights: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Random crops for one batch, before resizing.

    Each crop covers ``size / scale`` pixels of the source (so resizing it to
    ``size`` zooms by ``scale``); images smaller than that are reflect-padded.
    ``weights`` (from :func:`sampling_weights`) are the chances of each sample
    being picked; None picks uniformly.

    Returns
    -------
    list of (image (C, h, w) float32, target (h, w) uint8, size)
    """
    crops = []
    for _ in range(count):
        k = rng.integers(len(samples)) if weights is None else rng.choice(len(samples), p=weights)
        s = samples[k]
        scale = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
        src = max(8, int(round(size / scale)))
        img, tgt = s.image, s.target
        pad = [max(0, src - d) for d in tgt.shape]
        if any(pad):
            widths = [(p // 2, p - p // 2) for p in pad]
            img = np.pad(img, [(0, 0), *widths], mode="reflect")
            tgt = np.pad(tgt, widths, mode="reflect")
        y = rng.integers(tgt.shape[0] - src + 1)
        x = rng.integers(tgt.shape[1] - src + 1)
        crops.append((img[:, y:y + src, x:x + src], tgt[y:y + src, x:x + src], size))
    return crops
