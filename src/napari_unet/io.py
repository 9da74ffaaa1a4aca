"""Reading and writing image files (TIFF via tifffile; PNG/JPEG via scikit-image)."""

from __future__ import annotations

import errno
import itertools
import json
import numbers
import os
import secrets
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SegmentationError, describe

__all__ = ["IMAGE_SUFFIXES", "RESULT_ROLES", "ImageFile", "TiffPlanes", "check_image_path", "durable_replace", "image_files",
           "is_result_file", "new_temp_file", "read_image", "read_image_axes", "read_image_file", "read_labels",
           "read_tiff_metadata", "result_role", "write_labels"]

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}
_TIFF = (".tif", ".tiff")
RESULT_ROLES = ("semantic", "instances")
"""The results a segmentation writes, as ``<image>_<role>.tif``."""
_RESULT_MARK = "napari_unet_version"  # in every result's metadata (see napari_unet.api)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by suffix), sorted by name.

    Hidden files are left out: the ``._name.tif`` companions macOS writes on
    exFAT drives and network shares are not images, nor are temporary files.
    """
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())


def check_image_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it names an image file this package reads; else a clear error."""
    path = Path(path)
    if path.is_dir():
        raise SegmentationError(
            f"{path} is a folder: give image files, e.g. {path / '*.tif'}.")
    if not path.is_file():
        raise SegmentationError(f"Image file {path} does not exist.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SegmentationError(
            f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; give "
            f"{', '.join(sorted(s.lstrip('.').upper() for s in IMAGE_SUFFIXES))} images.")
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into a numpy array; a clear error if it cannot be read."""
    return read_image_axes(path)[0]


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a mask or label image file: a palette PNG gives its indices, not their colours.

    Annotation tools often save label images as palette ("P" mode) PNGs; read
    as an image, such a file would become RGB colours.
    """
    path = check_image_path(path)
    if path.suffix.lower() not in _TIFF:
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode == "P":
                    return np.asarray(im)
        except Exception:  # noqa: BLE001 - read_image below says what is wrong with the file
            pass
    return read_image(path)


def _tiff_axes(series) -> str | None:
    """The axes a TIFF declares (ImageJ, OME or tifffile metadata) in this package's letters, else None.

    tifffile names RGB samples ``S``; plain TIFFs without such metadata have
    unknown axes (``Q``, ``I``), for which None lets the caller infer them.
    """
    axes = series.axes.upper().replace("S", "C")
    if len(axes) != len(series.shape) or set(axes) - set("TZCYX") or len(set(axes)) != len(axes):
        return None
    return axes


_UM_PER_UNIT = {"micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0,
                "micrometer": 1.0, "micrometre": 1.0,
                "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
                # The other lengths OME-XML's UnitsLength names for a microscope's pixels (lower case)
                "m": 1e6, "meter": 1e6, "metre": 1e6, "cm": 1e4, "dm": 1e5, "pm": 1e-6, "å": 1e-4,
                "angstrom": 1e-4}


def _tiff_pixel_size(tif: Any, axes: str | None) -> dict[str, float] | None:
    """Pixel sizes (micrometres) an ImageJ or OME TIFF declares in a length unit, else None."""
    if not axes:
        return None
    try:
        if tif.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            pixels = next(e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels")
            sizes = {}
            for a in "ZYX":
                value = pixels.get(f"PhysicalSize{a}")
                factor = _UM_PER_UNIT.get(pixels.get(f"PhysicalSize{a}Unit", "µm").lower())
                if value is not None and factor is not None:
                    sizes[a] = float(value) * factor
        elif tif.is_imagej:
            meta = tif.imagej_metadata or {}
            unit = str(meta.get("unit", "")).lower()
            if _UM_PER_UNIT.get(unit) is None:
                return None
            # ImageJ writes yunit= and zunit= only where they differ from unit=
            factors = {"X": _UM_PER_UNIT[unit],
                       "Y": _UM_PER_UNIT.get(str(meta.get("yunit", unit)).lower()),
                       "Z": _UM_PER_UNIT.get(str(meta.get("zunit", unit)).lower())}
            tags = tif.pages[0].tags
            sizes = {}
            for a, tag in (("X", "XResolution"), ("Y", "YResolution")):
                num, den = tags[tag].value
                if factors[a] is not None:
                    sizes[a] = den / num * factors[a]
            if factors["Z"] is not None:
                # ImageJ leaves out spacing= when the voxel depth is 1 (its default), as Fiji saves it
                sizes["Z"] = float(meta.get("spacing", 1.0)) * factors["Z"]
        else:
            return None
    except Exception:  # noqa: BLE001 - unreadable calibration: measure in pixels
        return None
    sizes = {a: v for a, v in sizes.items() if a in axes and np.isfinite(v) and v > 0}
    return sizes if {"Y", "X"} <= set(sizes) else None


_TIME_KEYS = ("finterval", "tunit", "fps")
"""ImageJ's time calibration of a series: the time between frames, its unit, the playback rate."""


def _imagej_time(tif: Any, axes: str | None) -> dict[str, float | str] | None:
    """The time calibration (:data:`_TIME_KEYS`) an ImageJ series declares, else None."""
    if not axes or "T" not in axes or not tif.is_imagej:
        return None
    meta = tif.imagej_metadata or {}
    found: dict[str, float | str] = {}
    for key in ("finterval", "fps"):
        try:
            value = float(meta[key])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            found[key] = value
    if found and str(meta.get("tunit", "")).strip():
        found["tunit"] = str(meta["tunit"]).strip()
    return found or None


def _imagej_result_axes(tif: Any, series: Any) -> tuple[str, tuple[int, ...]] | None:
    """The axes and shape of a result :func:`write_labels` wrote as an ImageJ hyperstack, else None.

    ImageJ keeps no axis of length 1 apart (a one-plane z-stack of a time
    series, a one-frame series): tifffile reads such a file without it. The
    axes stored in the Info property put it back, when they still describe
    the file: in ImageJ's order, and every axis they leave out of length 1.
    """
    try:
        info = json.loads((tif.imagej_metadata or {}).get("Info", ""))
    except (TypeError, ValueError):  # no Info, or one that is not this package's JSON
        return None
    axes = info.get("axes") if isinstance(info, dict) else None
    # ImageJ's full shape: T, Z, C, Y, X and S (colour samples), 1 where the file has no such axis
    full = dict(zip(series.get_axes(False), series.get_shape(False)))
    if not isinstance(axes, str) or not axes or len(set(axes)) != len(axes) or set(axes) - set("TZYX"):
        return None
    if axes != "".join(a for a in full if a in axes) or any(n != 1 for a, n in full.items() if a not in axes):
        return None
    return axes, tuple(full[a] for a in axes)


class TiffPlanes:
    """A TIFF's image of many pages, read a page at a time as it is indexed.

    Array-like enough for the engine (``shape``, ``dtype``, ``ndim``,
    indexing with integers and slices, :func:`numpy.asarray`): each index
    reads and decompresses only the pages it covers, one at a time, so that
    a compressed stack is segmented a plane at a time as a mapped one is.
    The file stays open until the object is closed or garbage-collected.

    Parameters
    ----------
    pages : sequence of tifffile pages
        One page per index of the leading axes of ``shape``, in C order.
    shape : tuple of int
        The leading axes, then the shape of one page (e.g. (Y, X), or (Y, X, 3) for RGB).
    dtype : numpy dtype
    close : callable
        Closes the file the pages are in.
    """

    def __init__(self, pages: Sequence[Any], shape: tuple[int, ...], dtype: np.dtype, *,
                 close: Callable[[], object]) -> None:
        self._pages = pages
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._page_shape = tuple(pages[0].shape)
        self._lead = self.shape[:self.ndim - len(self._page_shape)]
        self._close = weakref.finalize(self, close)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        """Close the file; the pages cannot be read any more."""
        self._close()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """All the pages as one new array (NumPy's protocol).

        ``copy=False`` asks for the data without a copy, which pages read from a file
        cannot give: it raises ValueError, as NumPy 2 expects.
        """
        if copy is False:
            raise ValueError("A TIFF read page by page cannot be an array without a copy: read its "
                             "pages into one (numpy.asarray without copy=False).")
        whole = self[()]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not self._close.alive:
            raise ValueError("The TIFF file of these pages is closed: read it again.")
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > self.ndim or not all(isinstance(k, (slice, numbers.Integral)) for k in key):
            raise IndexError(f"A TIFF read page by page is indexed with at most {self.ndim} integers "
                             f"and slices, not {key!r}.")
        key = key + (slice(None),) * (self.ndim - len(key))
        lead_key, page_key = key[:len(self._lead)], key[len(self._lead):]
        picked = [range(n)[k] if isinstance(k, slice) else [range(n)[k]] for k, n in zip(lead_key, self._lead)]
        kept = [len(r) for r, k in zip(picked, lead_key) if isinstance(k, slice)]
        # the shape of page_key's part of a page, without reading one
        inner = np.broadcast_to(np.zeros((), self.dtype), self._page_shape)[page_key].shape
        out = np.empty((int(np.prod([len(r) for r in picked])), *inner), self.dtype)
        for i, index in enumerate(itertools.product(*picked)):
            out[i] = self._pages[int(np.ravel_multi_index(index, self._lead))].asarray()[page_key]
        return out.reshape(*kept, *inner)


def _pages_are_planes(series: Any) -> bool:
    """Whether a tifffile series is many pages, each one whole plane of it (as :class:`TiffPlanes` reads)."""
    pages, page_shape = series.pages, tuple(series.keyframe.shape)
    lead = series.shape[:len(series.shape) - len(page_shape)]
    return (len(pages) > 1 and tuple(series.shape[len(lead):]) == page_shape
            and int(np.prod(lead)) == len(pages) and all(p is not None for p in pages))


@dataclass(frozen=True)
class ImageFile:
    """An image read from a file, with what the file says about it.

    Attributes
    ----------
    image : ndarray, or read-only array-like
        A :func:`numpy.memmap` or :class:`TiffPlanes` when read with ``memmap``.
    axes : str or None
        Letters from T, Z, C, Y, X, one per axis of ``image``, when the file
        says them (ImageJ hyperstacks, OME-TIFF, tifffile's own with axes); None when it does not (plain
        TIFF, PNG, JPEG), so that the axes are inferred from the shape. A
        result of :func:`write_labels` has all its axes, those of length 1 too.
    channels_declared : bool
        True when ``axes`` holds C because the file declares separate channels
        (e.g. the stains of a fluorescence composite), not colour samples (RGB).
    pixel_size_um : dict or None
        Axis letter (``Z``, ``Y``, ``X``) -> pixel size in micrometres, as an
        ImageJ or OME TIFF declares it in a length unit; None when it does not.
    time_calibration : dict or None
        The time calibration an ImageJ series (axes with T) declares, under
        ImageJ's names: ``finterval`` (the time between frames, in ``tunit``,
        ImageJ's ``sec`` when absent), ``tunit`` and ``fps`` (the playback
        rate), those the file gives; None when it gives no interval nor rate.
    """

    image: np.ndarray | TiffPlanes
    axes: str | None
    channels_declared: bool = False
    pixel_size_um: dict[str, float] | None = None
    time_calibration: dict[str, float | str] | None = None


def read_image_axes(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Read an image file and the axes its metadata declares (see :class:`ImageFile`)."""
    read = read_image_file(path)
    return read.image, read.axes


def read_image_file(path: str | os.PathLike, *, memmap: bool = False) -> ImageFile:
    """Read an image file, its declared axes and whether its channels are stains or colours.

    With ``memmap``, a TIFF whose pixels lie uncompressed and in one block
    (ImageJ's stacks and hyperstacks, tifffile's own, most uncompressed
    OME-TIFFs) is mapped from the file, read-only, instead of read: a long
    series or a deep stack then takes no memory until a plane is used.
    Another TIFF of many pages (compressed, tiled), one plane or colour
    plane each, becomes a :class:`TiffPlanes`, whose pages are read (and
    decompressed) as they are indexed. Single pages, and other formats, are
    read as before.
    """
    path = check_image_path(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with ExitStack() as opened:
                tif = opened.enter_context(tifffile.TiffFile(path))
                if not tif.series:
                    raise SegmentationError(
                        f"{path.name} is a TIFF file without any image in it (no pages): save the "
                        "image again, or check that the file was copied whole.")
                if tif.pages[0].photometric == tifffile.PHOTOMETRIC.SEPARATED:
                    raise SegmentationError(
                        f"{path.name} is a CMYK (print colour) TIFF, whose channels are not red, green "
                        "and blue: save it as RGB or greyscale first.")
                if len(tif.series) > 1:
                    shapes = ", ".join(str(tuple(x.shape)) for x in tif.series[:4])
                    raise SegmentationError(
                        f"{path.name} holds {len(tif.series)} separate images (shapes {shapes}"
                        f"{', ...' if len(tif.series) > 4 else ''}), e.g. stage positions or pages "
                        "of different sizes: save each as its own file (in Fiji, open the file "
                        "and save each series) and give those.")
                series = tif.series[0]
                # tifffile's own files declare axes when written with them (as this package's results are)
                shaped = tif.is_shaped and "axes" in ((tif.shaped_metadata or [{}])[0] or {})
                axes = _tiff_axes(series) if (tif.is_imagej or tif.is_ome or shaped) else None
                shape = tuple(series.shape)
                restored = _imagej_result_axes(tif, series) if tif.is_imagej else None
                if restored is not None:  # one of this package's results, with its length-1 T or Z
                    axes, shape = restored
                if memmap and series.dataoffset is not None:
                    image = tifffile.memmap(path, series=0, mode="r").reshape(shape)
                elif memmap and _pages_are_planes(series):
                    # the file stays open, for the pages to be read as they are used
                    image = TiffPlanes(series.pages, shape, series.dtype, close=opened.pop_all().close)
                else:
                    image = series.asarray().reshape(shape)
                if axes is None and "S" in series.axes and not series.axes.endswith("S"):
                    # RGB stored planar (SYX): its colour axis is first, where the shape
                    # alone would read a 3-plane z-stack
                    axes = _tiff_axes(series)
                sizes = _tiff_pixel_size(tif, axes)
                timing = _imagej_time(tif, axes)
            return ImageFile(image, axes, bool(axes) and "C" in series.axes.upper(), sizes, timing)
        from PIL import Image
        from skimage import io

        with Image.open(path) as im:
            # CMYK (print colour, e.g. JPEG): read as it is, its 4 channels would pass for RGBA
            cmyk = np.asarray(im.convert("RGB")) if im.mode == "CMYK" else None
        image = io.imread(path) if cmyk is None else cmyk
        if image.ndim == 3 and image.shape[-1] == 2:  # grey + alpha (PNG "LA"): the grey is the image
            image = image[..., 0]
        return ImageFile(image, None)
    except SegmentationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same for a user
        raise SegmentationError(
            f"Could not read {path}: {describe(exc)}") from None


def new_temp_file(folder: str | os.PathLike, *, prefix: str = ".", suffix: str = ".tmp") -> str:
    """Create an empty, uniquely named file in ``folder`` and return its path.

    Unlike :func:`tempfile.mkstemp` (owner-only files), the file gets the
    permissions of any new file (0o666 less the umask), so results renamed
    from it can be shared; the umask itself is never changed.
    """
    for _ in range(100):
        path = os.path.join(os.fspath(folder), f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"No free temporary file name in {folder}.")


_CANNOT_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
"""What fsync answers on a filesystem that does not sync (not a failed write)."""


def durable_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the file ``tmp``, written in full, to ``path``, and make both last through a power cut.

    The rename alone makes the new file appear whole or not at all to other
    programs, but a crash soon after can leave ``path`` empty on some
    filesystems: the file's bytes are sent to the disk (fsync) before the
    rename, and the folder's new entry after it.

    Parameters
    ----------
    tmp : path
        The new file, closed, in the folder of ``path``.
    path : path
        Its final name; a file there is replaced.

    Raises
    ------
    OSError
        When the bytes cannot be written to the disk or the rename fails
        (``path`` is then as it was). A file or folder on a filesystem that
        cannot sync at all (some network shares, FUSE mounts: EINVAL, ENOTSUP)
        is let be: the rename still replaces ``path`` whole.
    """
    fd = os.open(tmp, os.O_RDWR)  # Windows flushes only a file opened for writing
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _CANNOT_SYNC:  # EIO, ENOSPC: the bytes did not reach the disk
            raise
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if os.name == "nt":  # a folder cannot be opened there (nor needs syncing)
        return
    with suppress(OSError):
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: str | os.PathLike, array: Any, **options: Any) -> Path:
    """``tifffile.imwrite(path, array, **options)`` through a temporary file renamed over ``path``
    (see :func:`durable_replace`); ``array`` may be an iterator of planes, with ``shape`` and ``dtype``."""
    import tifffile

    path = Path(path)
    tmp = None
    try:
        tmp = new_temp_file(path.parent, prefix=f".{path.stem}.", suffix=".tif.tmp")
        tifffile.imwrite(tmp, array, **options)
        durable_replace(tmp, path)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


_IMAGEJ_ORDER = "TZYX"  # ImageJ hyperstacks are TZCYX; labels have no C


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, axes: str,
                 pixel_size_um: Mapping[str, float] | None = None,
                 time_calibration: Mapping[str, float | str] | None = None,
                 metadata: dict | None = None) -> str | None:
    """Write a label image (semantic mask or instance ids) atomically, as an ImageJ hyperstack.

    Fiji opens such a file with its axes (a z-stack stays slices, a time
    series frames, never channels) and, when ``pixel_size_um`` gives every
    Z/Y/X axis of ``axes``, its calibration in micrometres; a series' frames
    with the time between them that ``time_calibration`` gives. ImageJ stores
    8- and 16-bit integers only (and 32-bit floats): ids are written as
    uint8 when they are, else uint16; a stack uncompressed (ImageJ reads
    a stack's planes as one block after the first), a single plane
    compressed. A label image ImageJ cannot hold (ids above 65535
    or negative, or axes out of its T, Z, Y, X order) is written as a plain
    compressed TIFF with its own dtype, its axes in tifffile's metadata and
    its X/Y pixel size in the resolution tags (centimetres, the unit plain
    TIFF has); the return value says why.

    Parameters
    ----------
    path : str or PathLike
        The ``.tif`` file to write (replaced whole: temporary file, then rename).
    labels : ndarray of integers or bools, shape (one size per letter of ``axes``)
    axes : str
        One letter per axis of ``labels``, from T, Z, Y, X.
    pixel_size_um : mapping, optional
        Axis letter (``Z``, ``Y``, ``X``) -> pixel size in micrometres.
    time_calibration : mapping, optional
        ImageJ's ``finterval``, ``tunit`` and ``fps`` of a series (as
        :attr:`ImageFile.time_calibration`), written when ``axes`` hold T and
        the file is an ImageJ hyperstack (a plain TIFF has no place for them).
    metadata : dict, optional
        JSON-serialisable provenance (model, thresholds, ...), stored as
        JSON in ImageJ's Info property (Fiji: Image > Show Info), with
        ``axes`` and ``pixel_size_um`` added; :func:`read_tiff_metadata`
        reads it back (in a plain TIFF, ``shape`` is the labels' own).
        ImageJ keeps no axis of length 1 (a one-frame series, a one-plane
        z-stack of a series): :func:`read_image_file` puts it back from
        these ``axes``.

    Returns
    -------
    str or None
        None for an ImageJ hyperstack; else why the file is a plain TIFF.
    """
    axes = axes.upper()
    if len(axes) != labels.ndim or set(axes) - set(_IMAGEJ_ORDER) or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} do not name the {labels.ndim} axes of the labels with T, Z, Y, X.")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"Label images hold integers, not {labels.dtype}.")
    spatial = [a for a in axes if a in "ZYX"]
    sizes = ({a: float(pixel_size_um[a]) for a in spatial}
             if pixel_size_um and all(a in pixel_size_um for a in spatial) else None)
    info = {**(metadata or {}), "axes": axes, **({"pixel_size_um": sizes} if sizes else {})}
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if axes != "".join(a for a in _IMAGEJ_ORDER if a in axes):
        reason = f"its axes {axes} are not in ImageJ's order (TZYX)"
    elif low < 0:
        reason = f"it holds negative ids (down to {low}), which ImageJ's 16-bit images cannot"
    elif high > np.iinfo(np.uint16).max:
        reason = f"its ids go up to {high}, more than ImageJ's 16-bit images hold (65535)"
    else:
        dtype = np.uint8 if labels.dtype.kind == "b" or labels.dtype == np.uint8 else np.uint16
        ij: dict[str, Any] = {"axes": axes, "Info": json.dumps(info, indent=1)}
        resolution = None
        if sizes:
            ij["unit"] = "um"
            resolution = (1 / sizes["X"], 1 / sizes["Y"])
            if "Z" in sizes:
                ij["spacing"] = sizes["Z"]
        if "T" in axes and time_calibration:
            ij.update((k, time_calibration[k]) for k in _TIME_KEYS if k in time_calibration)
        data: Any = labels
        if labels.dtype != dtype:  # converted a plane at a time: no second copy of a long series
            data = (plane.astype(dtype) for plane in labels.reshape(-1, *labels.shape[-2:]))
        _write_atomic(path, data, shape=labels.shape, dtype=dtype, imagej=True, photometric="minisblack",
                      compression="zlib" if labels.ndim == 2 else None, resolution=resolution, metadata=ij)
        return None
    plain: dict[str, Any] = {}
    if sizes:
        plain = {"resolution": (1e4 / sizes["X"], 1e4 / sizes["Y"]), "resolutionunit": "CENTIMETER"}
    # tifffile's description holds the shape it reads the axes with: a "shape" of the caller's would replace it
    described = {k: v for k, v in info.items() if k != "shape"}
    _write_atomic(path, labels, compression="zlib", photometric="minisblack", metadata=described, **plain)
    return reason


def read_tiff_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance this package stored in a result TIFF (see :func:`write_labels`), else {}.

    Read from the JSON of an ImageJ file's Info property, or from tifffile's
    JSON description of a plain TIFF (whose ``shape`` it includes).
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_imagej:
                found = json.loads((tif.imagej_metadata or {}).get("Info", "{}"))
            elif tif.is_shaped:
                found = (tif.shaped_metadata or [{}])[0]
            else:
                found = {}
    except (OSError, ValueError, TypeError, tifffile.TiffFileError):
        return {}  # not a TIFF, or an Info that is not this package's JSON
    return dict(found) if isinstance(found, dict) else {}


def result_role(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(image name, role)`` of a file named as a result, ``<image>_<role>.tif``, else None.

    By its name only (any case of the suffix); see :func:`is_result_file`.
    """
    path = Path(path)
    if path.suffix.lower() not in _TIFF:
        return None
    for role in RESULT_ROLES:
        suffix = f"_{role}"
        if path.stem.endswith(suffix) and len(path.stem) > len(suffix):
            return path.stem[: -len(suffix)], role
    return None


def is_result_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a result this package wrote (see :func:`write_labels`), not an image.

    True when it is named ``<image>_semantic.tif`` or ``<image>_instances.tif``
    and holds this package's metadata (with the result's axes); only the
    file's tags are read, not its pixels. A missing or unreadable file is not
    a result.
    """
    if result_role(path) is None:
        return False
    meta = read_tiff_metadata(path)
    return _RESULT_MARK in meta and isinstance(meta.get("axes"), str)
