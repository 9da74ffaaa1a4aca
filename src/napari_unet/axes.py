"""Axes of an input array: parsing, defaults and the plan for streaming it.

Axis letters: ``T`` (time), ``Z`` (depth), ``Y``, ``X`` and ``C`` (channels,
including RGB). Every array needs ``Y`` and ``X``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SegmentationError
from .wording import plural

__all__ = ["AxesPlan", "infer_axes", "labelled_last", "plan_axes", "LETTERS"]

LETTERS = "TZYXC"
MODES = ("auto", "2d", "3d")


def infer_axes(shape: tuple[int, ...], *, in_channels: int = 1, spatial_dims: int = 2) -> str:
    """Guess axes from a shape, the way napari and most readers lay data out.

    - 2D: ``YX``
    - 3D: ``YXC`` when the last size is 1 (a single channel: X is never one
      pixel wide), 3 or 4 (RGB/RGBA) or equals a multichannel model's channel
      count; else ``ZYX``. For a 1-channel 3D
      model (``spatial_dims=3``) a 3D array is always a volume, ``ZYX``.
    - 4D: ``ZYXC`` by the same rule on the last size; else ``TZYX``
    - 5D: ``TZYXC``
    """
    ndim = len(shape)
    last = shape[-1] if shape else 0
    channel_last = last in (1, 3, 4) or (in_channels > 1 and last == in_channels)
    if spatial_dims == 3 and in_channels == 1 and ndim == 3:
        channel_last = False
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "YXC" if channel_last else "ZYX"
    if ndim == 4:
        return "ZYXC" if channel_last else "TZYX"
    if ndim == 5:
        return "TZYXC"
    raise SegmentationError(
        f"Cannot segment an array with {plural(ndim, 'dimension')} (shape {shape}): "
        "give a 2D image (YX), RGB/multichannel (YXC), a z-stack (ZYX), a time series "
        "(TYX) or TZYX, with at most 5 dimensions."
    )


def labelled_last(axes: str, labelled: str) -> list[int]:
    """Permutation of ``axes`` that puts the letters in ``labelled`` last, each group in order
    (but Z first among the labelled: labelling fills holes plane by plane along the first).

    Labelling works on trailing dimensions, so e.g. a ZTYX stack labelled in
    3D (``labelled="ZYX"``) is read as TZYX: ``labelled_last("ZTYX", "ZYX") == [1, 0, 2, 3]``,
    and a YXZ stack as ZYX: ``labelled_last("YXZ", "ZYX") == [2, 0, 1]``.
    """
    return ([i for i, a in enumerate(axes) if a not in labelled]
            + sorted((i for i, a in enumerate(axes) if a in labelled), key=lambda i: axes[i] != "Z"))


@dataclass(frozen=True)
class AxesPlan:
    """How an array is streamed through the network.

    Attributes
    ----------
    axes : str
        One letter per input dimension.
    channel_axis : int or None
        Position of ``C`` in the input.
    loop_axes : tuple of int
        Input dimensions iterated one index at a time (``T``; and ``Z`` when a
        2D model segments a stack plane by plane).
    net_axes : tuple of int
        Input dimensions the network sees at once (``YX`` or ``ZYX``).
    label_axes : str
        Output axes labelled together into instances (``ZYX`` in stacks).
    out_axes : str
        Axes of the outputs: the input's, less ``C``.
    """

    axes: str
    channel_axis: int | None
    loop_axes: tuple[int, ...]
    net_axes: tuple[int, ...]
    label_axes: str
    out_axes: str


def plan_axes(
    shape: tuple[int, ...],
    axes: str | None = None,
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    mode: str = "auto",
) -> AxesPlan:
    """Check ``axes`` against ``shape`` (or infer them) and plan the streaming.

    Parameters
    ----------
    shape : tuple of int
        Input array shape.
    axes : str or None
        Letters from ``TZYXC``, one per dimension, or None to infer.
    spatial_dims : {2, 3}
        Dimensions of the model.
    in_channels : int
        Channels the model expects (used to infer a channel axis).
    mode : {"auto", "2d", "3d"}
        ``"2d"`` segments stacks plane by plane (needs a 2D model); ``"3d"``
        whole volumes (needs a 3D model); ``"auto"`` follows the model.
    """
    if isinstance(mode, str):
        mode = mode.lower()
    if mode not in MODES:
        raise SegmentationError(f"mode must be one of {MODES}, got {mode!r}.")
    if len(shape) > 5:
        infer_axes(shape)  # raises with the standard message
    if axes is None:
        axes = infer_axes(tuple(shape), in_channels=in_channels, spatial_dims=spatial_dims)
    if not isinstance(axes, str):
        raise SegmentationError(f"axes must be a string of letters such as 'ZYX', not {axes!r}.")
    axes = axes.upper()
    letters = "".join(a for a in axes if a not in " ,;")
    if letters != axes:
        raise SegmentationError(
            f"Invalid axes {axes!r}: write their letters together, without commas or spaces, e.g. {letters!r}.")
    if len(axes) != len(shape):
        raise SegmentationError(
            f"axes {axes!r} has {plural(len(axes), 'letter')} but the image has "
            f"{plural(len(shape), 'dimension')} (shape {tuple(shape)}): give one letter per dimension, e.g. "
            f"{infer_axes(tuple(shape), in_channels=in_channels, spatial_dims=spatial_dims)!r}."
        )
    bad = sorted(set(axes) - set(LETTERS))
    if bad or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise SegmentationError(
            f"Invalid axes {axes!r}: use each of the letters T, Z, Y, X, C at most once, "
            "and always Y and X."
        )
    if mode == "3d" and spatial_dims != 3:
        raise SegmentationError(
            "3D mode needs a 3D model; this model is 2D. Choose '2d' (plane by plane)."
        )
    if mode == "2d" and spatial_dims != 2:
        raise SegmentationError("This model is 3D; it cannot segment plane by plane.")
    if spatial_dims == 3 and "Z" not in axes:
        raise SegmentationError(
            f"This is a 3D model, but the image (axes {axes!r}) has no Z axis. "
            "Use a 2D model, or state the axes if one dimension is Z."
        )
    net_letters = "ZYX" if spatial_dims == 3 else "YX"
    net_axes = tuple(i for i, a in enumerate(axes) if a in net_letters)
    channel_axis = axes.index("C") if "C" in axes else None
    loop_axes = tuple(i for i, a in enumerate(axes) if a not in net_letters and a != "C")
    out_axes = axes.replace("C", "")
    label_axes = "".join(a for a in out_axes if a in "ZYX")
    return AxesPlan(axes, channel_axis, loop_axes, net_axes, label_axes, out_axes)
