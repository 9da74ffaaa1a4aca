"""Reading and writing image files (TIFF via tifffile; PNG/JPEG via scikit-image)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import SegmentationError

__all__ = ["IMAGE_SUFFIXES", "read_image", "write_tiff"]

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into a numpy array; a clear error if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise SegmentationError(f"Image file {path} does not exist.")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from skimage import io

        return io.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same for a user
        raise SegmentationError(f"Could not read {path}: {type(exc).__name__}: {exc}") from None


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, metadata: dict | None = None) -> Path:
    """Write ``array`` to a compressed TIFF atomically (temporary file, then rename)."""
    import tifffile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tif.tmp")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, array, compression="zlib", photometric="minisblack", metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
