"""Choices and help texts of the Segment widget's options (no Qt here)."""

from __future__ import annotations

from typing import Any

from napari.layers import Image

__all__ = [
    "ALL_CHANNELS",
    "AXES_HELP",
    "MODE_CHOICES",
    "METHOD_CHOICES",
    "NORMALIZE_CHOICES",
    "NO_CHANNEL",
    "TILE_CHOICES",
    "TOOLTIPS",
    "axes_choices",
    "channel_choices",
    "layer_array",
    "link_time_tooltip",
    "one_channel_axis",
    "resolve_axes",
]

AXES_HELP = {
    "YX": "2D image",
    "YXC": "2D, channels last (RGB)",
    "CYX": "2D, channels first",
    "ZYX": "z-stack",
    "TYX": "time series of 2D images",
    "TZYX": "time series of z-stacks",
    "ZYXC": "z-stack, channels last",
    "TYXC": "time series, channels last",
    "CZYX": "z-stack, channels first",
    "TCYX": "time series, channels first",
    "ZCYX": "z-stack, channels second (ImageJ/Fiji hyperstack order)",
    "TZYXC": "time series of z-stacks, channels last",
    "TZCYX": "time series of z-stacks, channels second to last",
}
"""Axes strings the widget offers, with what they mean."""

_BY_NDIM = {
    2: ("YX",),
    3: ("ZYX", "TYX", "CYX", "YXC"),
    4: ("TZYX", "CZYX", "ZCYX", "TCYX", "ZYXC", "TYXC"),
    5: ("TZYXC", "TZCYX"),
}
_RGB = {3: "YXC", 4: "ZYXC", 5: "TZYXC"}
_PLAIN = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}  # 5D: ImageJ's hyperstack order

NO_CHANNEL = "none (no C in the axes)"
"""The Channel box's one entry for images without a channel axis."""
ALL_CHANNELS = "all (the model takes them all)"
"""The Channel box's one entry for a multichannel model."""

MODE_CHOICES = [
    ("auto (follow the model)", "auto"),
    ("2D, plane by plane", "2d"),
    ("3D volumes", "3d"),
]
TILE_CHOICES = [("auto (1024 px in 2D, 128 in 3D)", 0)] + [
    (f"{size} px", size) for size in (64, 128, 256, 512, 1024, 2048)
]
METHOD_CHOICES = [
    ("split touching (watershed)", "watershed"),
    ("connected components", "components"),
]
NORMALIZE_CHOICES = [
    ("per stack", "stack"),
    ("per frame", "frame"),
    ("per plane", "plane"),
]

TOOLTIPS = {
    "image": "The image layer to segment. Labels, points and other layers are not listed.",
    "model": (
        "The network: the bundled default model, models trained in this napari session, "
        "a model folder opened with 'Browse…', or models saved by the Train widget in earlier "
        "sessions (in ~/.napari-unet/models), listed as '<name> (saved)', the latest first."
    ),
    "browse": "Open a model from disk: choose its config.json or weights file (.safetensors, .pt).",
    "axes": (
        "What each dimension of the image is: T time, Z depth, Y/X the plane, C channels.\n"
        "'auto' reads RGB layers as YXC and other 3D/4D layers as z-stacks (ZYX/TZYX), 5D ones\n"
        "as TZCYX (ImageJ's order); choose TYX for a time series of 2D images (TYXC for RGB\n"
        "frames), CYX for channels stored first."
    ),
    "channel": (
        "Which channel the network sees, for images with a channel axis: 'all' turns RGB into\n"
        "grey; a number segments that channel alone (e.g. the nuclear stain of a composite)."
    ),
    "mode": (
        "How stacks are segmented: 'auto' follows the model (a 2D model goes plane by plane,\n"
        "a 3D model sees whole volumes). Objects in a z-stack get one id across planes."
    ),
    "device": "Where the network runs: 'auto' uses a GPU when there is one, else the CPU.",
    "scale": (
        "Resample the image by this factor before the network: 2 when the nuclei are about\n"
        "half the size the model was trained on (for the bundled model, under ~10 px across),\n"
        "0.5 when they are twice the size. The layers keep the image's size; 2 takes about 4x longer."
    ),
    "auto_scale": (
        "Measure the objects first: when they are much smaller than the model knows (median area\n"
        "under the model's reference), segment again at its scale (2 for the bundled model).\n"
        "Only models that record a reference object size offer this."
    ),
    "tile_size": (
        "Edge of the square tiles the image is cut into, in pixels. Smaller tiles use less\n"
        "memory (choose one if the GPU runs out of memory) and let Cancel act sooner;\n"
        "neighbouring tiles overlap by 128 px in 2D (32 in 3D), or a quarter of a smaller tile;\n"
        "tiles under 512 px see less context at their edges, so results there can differ slightly."
    ),
    "percentiles": (
        "The image's intensity percentiles that become black and white for the network, low and\n"
        "high (default: the model's, 1 and 99.8 for the bundled one). Raise the high one (99.99)\n"
        "when a few very bright spots or saturated cells make the other nuclei look dim."
    ),
    "normalize_per": (
        "What the percentiles are taken over: 'per stack' the whole image at once; 'per frame'\n"
        "each time point on its own, so frames dimmed by photobleaching keep their nuclei;\n"
        "'per plane' each 2D plane, also for the deep, dim planes of a z-stack. An image without\n"
        "a time axis is one frame. A frame or plane without nuclei may show false objects."
    ),
    "threshold": (
        "Probability above which a pixel counts as an object (default: the model's tuned\n"
        "value). Lower it to catch dim nuclei, raise it to shrink objects and drop faint ones."
    ),
    "seed_threshold": (
        "How sure the network must be that a pixel is deep inside a nucleus for it to start an\n"
        "object of its own (default: the model's tuned value). Raise it when touching nuclei\n"
        "come out as one object; lower it when single nuclei are cut in pieces. Used by\n"
        "'split touching' with models that tell interiors from boundaries (the bundled one does)."
    ),
    "instance_method": (
        "How the mask becomes separate objects: 'split touching' separates nuclei that touch\n"
        "(watershed from each nucleus' centre); 'connected components' keeps touching nuclei as one."
    ),
    "min_size": (
        "Objects smaller than this many pixels are removed.\n"
        "A z-stack segmented plane by plane is labelled in 3D: there an object is kept when its\n"
        "volume reaches that of a ball as wide (88 voxels for 24 px). A 3D model's counts voxels."
    ),
    "link_time": (
        "Time series: give each nucleus the id of the one it overlaps most in the time point\n"
        "before, so it keeps its id (and colour) over time. Off: each time point counts from 1."
    ),
    "run": "Segment the chosen image. Adds '<image> semantic' and '<image> instances' Labels layers.",
    "cancel": "Stop the running segmentation; nothing is added.",
    "measure": (
        "Measure each object of '<image> instances' as it is now, your edits included: area\n"
        "(pixels, and in the layer's units, e.g. area_um2, when it has a scale), centroid,\n"
        "whether it touches the image border, its length, width and eccentricity (2D), and the\n"
        "image's mean and summed intensity in it (each channel). Hover a nucleus to see its\n"
        "values (images without a time axis); 'Save table…' then writes the table (CSV).\n"
        "A time series linked over time also shows each nucleus' path in '<image> tracks'\n"
        "(updated when you measure again).\n"
        "With several result pairs, the selected layer's pair is measured (else the newest).\n"
        "Painting drops the hover values (they describe the objects as they were); after an\n"
        "undo, measure again."
    ),
    "save_table": (
        "Save the table of the last 'Measure objects' as CSV (one row per object, the columns\n"
        "the command line's --measure writes). Greyed out until objects are measured. If the\n"
        "labels changed since (painted, updated, run again), measure again first: the table\n"
        "would describe objects that are no longer there, so it is not saved."
    ),
    "update": (
        "Recompute '<image> instances' from '<image> semantic' after you corrected the mask\n"
        "with the brush or eraser (uses the object options above; does not run the network).\n"
        "Regions you did not touch keep their objects and ids; edited ones are split again.\n"
        "Ids you paint, fill or erase on '<image> instances' are kept as they are (fill one\n"
        "piece of a nucleus cut in two with the other's id to join them); the mask follows.\n"
        "With several result pairs, the selected layer's pair is updated (else the newest)."
    ),
}


def link_time_tooltip(axes: str | None) -> str:
    """The tooltip of 'Link time points' for an image read with ``axes`` (None: no image).

    Without a time axis the box is disabled, and its tooltip says why and what to choose.
    """
    if axes is not None and "T" in axes:
        return TOOLTIPS["link_time"]
    read = f"the chosen image is read as {axes}" if axes else "there is no image to segment"
    return (f"{TOOLTIPS['link_time']}\n\nNeeds a time axis (T): {read}. For a time series, choose\n"
            "axes that start with T (e.g. TYX, TZYX) under 'Axes'. 'Update instances' of a time\n"
            "series' result keeps the link setting that result was made with.")


def layer_array(layer: Image) -> Any:
    """The full-resolution array of an image layer (level 0 when multiscale), never copied."""
    return layer.data[0] if layer.multiscale else layer.data


def axes_choices(layer: Image | None) -> list[tuple[str, str | None]]:
    """``(label, axes)`` pairs for ``layer``; ``None`` stands for "auto"."""
    if layer is None:
        return [("auto", None)]
    ndim = layer_array(layer).ndim
    auto = resolve_axes(layer, None)
    options = list(_BY_NDIM.get(ndim, ()))
    if layer.rgb:  # the colour axis is last: a movie of RGB frames (TYXC) as well as a stack
        options = [axes for axes in options if axes.endswith("C")]
    choices: list[tuple[str, str | None]] = [(f"auto ({auto or 'guess from the shape'})", None)]
    choices += [(f"{axes}: {AXES_HELP[axes]}", axes) for axes in options]
    return choices


def resolve_axes(layer: Image, choice: str | None) -> str | None:
    """The axes string passed to the engine (None lets the engine guess).

    An explicit choice wins. Otherwise an RGB layer is channels-last (``YXC``,
    ``ZYXC``, ``TZYXC``), and napari's other image layers hold no channel axis,
    so a 3D layer is a z-stack and a 4D one a time series of z-stacks; a 5D
    one must hold channels, read in ImageJ's hyperstack order (``TZCYX``).
    A last axis of size 1 is a single channel (``YXC``, ``ZYXC``), as the
    engine reads it: an image is never one pixel wide (an HxWx1 TIFF opens so).
    """
    if choice:
        return choice
    ndim = layer_array(layer).ndim
    if layer.rgb or one_channel_axis(layer) is not None:
        return _RGB.get(ndim)
    return _PLAIN.get(ndim)


def one_channel_axis(layer: Image) -> int | None:
    """The last axis of a non-RGB 3D/4D layer when its size is 1: one channel (YXC, ZYXC), as
    the engine reads such an array (an image is never one pixel wide); else None."""
    shape = layer_array(layer).shape
    return len(shape) - 1 if not layer.rgb and len(shape) in (3, 4) and shape[-1] == 1 else None


def channel_choices(layer: Image | None, axes_choice: str | None) -> list[tuple[str, int | None]]:
    """``(label, channel)`` pairs for ``layer`` read with ``axes_choice``.

    Only images with a channel axis get more than one entry: then each channel
    can be segmented alone (say the DAPI channel of a colour composite). "all"
    turns RGB into grey, and asks for a choice when a 1-channel model meets
    other multichannel images. Without a channel axis the one entry says so
    (the widget shows it greyed out).
    """
    if layer is None:
        return [(NO_CHANNEL, None)]
    axes = resolve_axes(layer, axes_choice)
    shape = layer_array(layer).shape
    if not axes or "C" not in axes or len(axes) != len(shape):
        return [(NO_CHANNEL, None)]
    n = int(shape[axes.index("C")])
    first = "all (RGB as grey)" if layer.rgb and n in (3, 4) else "all"
    return [(first, None)] + [(f"{i}", i) for i in range(n)]
