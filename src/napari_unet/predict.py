"""Tiled, streamed network inference: image in, class probabilities out.

:func:`iter_predict` is a generator: it yields a :class:`Progress` record after
every batch of tiles and returns the probabilities, so a caller (a script, the
command line, napari's thread worker) can show progress and stop at any
yield. Leading axes (time; planes of a stack for a 2D model) are streamed: only
one plane or volume is read and normalised at a time.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .axes import AxesPlan, plan_axes
from .checkpoint import LoadedModel, load_model, tensor_versions
from .device import resolve_device
from .errors import SegmentationError, check_whole, refuse_file_name
from .io import ImageFile
from .model import DoubleConv, UNet
from .normalize import DEFAULT_HIGH, DEFAULT_LOW, apply_range, check_dtype, luminance, percentile_range
from .progress import Progress, drain
from .tiling import TileGrid, pad_to_multiple, tiling_in_use
from .wording import plural

__all__ = [
    "AXES_GIVEN", "AXES_GUESSED", "MIN_SIZE", "MIN_TILE_MULTIPLES", "NORMALIZE_PER", "Predictor", "Progress",
    "check_scale", "iter_predict", "predict", "prepare_input", "resample", "scaled_shape", "smallest_tile",
    "stream_probabilities",
]

MIN_SIZE = 4
"""Smallest size of each spatial axis the engine accepts."""

NORMALIZE_PER = {"stack": "", "frame": "T", "plane": "TZ"}
"""What shares one percentile range (``normalize_per``), with the axes whose every index gets its own."""

DEFAULT_TILE = {2: 1024, 3: 128}
DEFAULT_OVERLAP = {2: 128, 3: 32}

MIN_TILE_MULTIPLES = 4
"""The smallest tile edge, in multiples of the network's (``2**depth``): 64 px for the bundled model.

Measured on the bundled sample (``data/nuclei.tif``, 161 nuclei at the default tile of 1024),
against the default's instances: tiles of 64 px give 162 objects, F1 0.99 at IoU 0.5 and 0.97
at 0.9, 99.4% of the pixels alike (128 px and more: the same 161, F1 1.00 at both); tiles of
32 px (and anything smaller, which runs as 32: one multiple more than the overlap) give 175,
F1 0.88 and 0.54, 3% of the pixels changed, because a tile that small sees too little around
its pixels. 64 is also the smallest tile the napari widget offers."""


_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Fused copy of each network, with the tensor versions it was made from."""


_FUSED_FILES: dict[str, UNet] = {}
"""Fused copy of the weights of each model file (by sha256) used in this process."""


def _fused(net: UNet, *, weights_sha256: str | None = None) -> UNet:
    """The fused copy of ``net``, made once per network and state.

    Fusing deep-copies the network (about 0.05-0.1 s); the copy is kept until any
    of ``net``'s weights or buffers changes in place (training, loading), as
    the tensors' version counters tell. With ``weights_sha256`` (``net`` holds
    exactly the weights of that file), networks loaded from the same file share
    one copy: ``segment(image)`` loads the bundled model afresh at each call.
    """
    if weights_sha256 is not None:
        hit = _FUSED_FILES.get(weights_sha256)
        if hit is None:
            while len(_FUSED_FILES) >= 4:  # a few models' worth
                _FUSED_FILES.pop(next(iter(_FUSED_FILES)))
            hit = _FUSED_FILES[weights_sha256] = _fuse_for_inference(net)
        return hit
    state = tensor_versions(net)
    hit = _FUSED.get(net)
    if hit is None or hit[0] != state:
        hit = (state, _fuse_for_inference(net))
        _FUSED[net] = hit
    return hit[1]


def _fuse_for_inference(net: UNet) -> UNet:
    """A copy of ``net`` with each conv + batch norm + ReLU fused (eval only)."""
    from torch.ao.quantization import fuse_modules

    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, DoubleConv):
            fuse_modules(module, [["0", "1", "2"], ["3", "4", "5"]], inplace=True)
    return fused


class Predictor:
    """A model placed on a device, ready to turn normalised arrays into probabilities.

    Parameters
    ----------
    model : LoadedModel or str or path
        The model, or a name/path for :func:`~napari_unet.checkpoint.load_model`.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    tile_size : int or None
        Tile edge in pixels (rounded up to the network's multiple); None picks
        1024 for 2D and 128 for 3D models, or :func:`smallest_tile` where that is
        larger. At least :func:`smallest_tile` (64 px for the bundled model):
        smaller tiles change the results.
    overlap : int or None
        Pixels shared by neighbouring tiles; None picks 128 (2D) or 32 (3D),
        at most a quarter of the tile.
    halo : int or None
        Pixels at a shared tile edge given zero weight; None is ``overlap // 2``
        (each pixel then comes from the tile where it lies deepest inside).
    batch_size : int
        Tiles per forward pass.

    Attributes
    ----------
    tile_size, overlap, halo : int
        What the tiles really use: the requests rounded up to the network's multiple (the
        tile at least one multiple longer than the overlap), the halo at most half the
        overlap (see :func:`~napari_unet.tiling.tiling_in_use`).

    Raises
    ------
    SegmentationError
        A tile smaller than :func:`smallest_tile`, or a negative overlap or halo.
    """

    def __init__(
        self,
        model: LoadedModel | str = "default",
        *,
        device: str = "auto",
        tile_size: int | None = None,
        overlap: int | None = None,
        halo: int | None = None,
        batch_size: int = 1,
    ) -> None:
        self.model = load_model(model)
        self.config = self.model.config
        self.device = resolve_device(device)
        dims = self.config.spatial_dims
        smallest = smallest_tile(self.model)
        # A deep network's smallest tile may exceed the default (256 px for a 3D U-Net of depth 6).
        default = max(DEFAULT_TILE[dims], smallest)
        tile = check_whole("tile_size", default if tile_size is None else tile_size, 1)
        # By default a small tile gets a proportionally small overlap, so that
        # neighbouring tiles never advance by only a few pixels.
        overlap = check_whole(
            "overlap", min(DEFAULT_OVERLAP[dims], tile // 4) if overlap is None else overlap, 0)
        # The halo is the context a tile's kept pixels have beyond them: half the overlap
        # (64 px in 2D) keeps what the bundled U-Net sees, so tiles agree with one pass.
        halo = check_whole("halo", overlap // 2 if halo is None else halo, 0)
        # Recorded as the grid uses them (a result's metadata says what ran, not what was asked).
        self.tile_size, self.overlap, self.halo = tiling_in_use(tile, overlap, halo, self.model.net.multiple)
        if tile < smallest:
            raise SegmentationError(
                f"tile_size {tile} is too small for the model {self.model.name}: give at least {smallest} "
                f"(pixels), or None for the default {default}. Smaller tiles see too little "
                "around their pixels, and the results change.")
        self.batch_size = check_whole("batch_size", batch_size, 1)
        net = self.model.net.eval()
        if self.device.type == "cpu":
            as_loaded = self.model.loaded_versions is not None and self.model.loaded_versions == tensor_versions(net)
            net = _fused(net, weights_sha256=self.model.sha256 if as_loaded else None)
        self.memory_format = (
            torch.channels_last if dims == 2 else torch.channels_last_3d
        )
        self.net = net.to(self.device).to(memory_format=self.memory_format)
        self.multiple = self.net.multiple

    def grid(self, spatial: tuple[int, ...]) -> TileGrid:
        padded = [s + sum(p) for s, p in zip(spatial, pad_to_multiple(spatial, self.multiple))]
        return TileGrid.build(padded, tile_size=self.tile_size, overlap=self.overlap,
                              halo=self.halo, multiple=self.multiple)

    def iter_array(self, x: np.ndarray) -> Generator[int, None, np.ndarray]:
        """Probabilities for one normalised array.

        Parameters
        ----------
        x : ndarray (C, *spatial) float32
            Normalised input, C = the model's input channels.

        Yields
        ------
        int
            Tiles finished so far.

        Returns
        -------
        ndarray (K, *spatial) float32
            Softmax probabilities of the K classes; the spatial shape is ``x``'s.
        """
        spatial = x.shape[1:]
        pads = pad_to_multiple(spatial, self.multiple)
        mode = "reflect" if all(s > max(p) for s, p in zip(spatial, pads)) else "symmetric"
        canvas = np.pad(x, [(0, 0), *pads], mode=mode)
        grid = self.grid(spatial)
        k = self.config.out_channels
        acc = np.zeros((k, *canvas.shape[1:]), np.float32)
        weight = np.zeros(canvas.shape[1:], np.float32)
        done = 0
        tiles = iter(grid)
        while True:
            batch = [t for _, t in zip(range(self.batch_size), tiles)]
            if not batch:
                break
            inp = np.stack([canvas[(slice(None), *sl)] for sl, _ in batch])
            probs = self._forward(inp)
            for (sl, w), p in zip(batch, probs):
                acc[(slice(None), *sl)] += p * w
                weight[sl] += w
            done += len(batch)
            yield done
        acc /= np.maximum(weight, 1e-12)
        crop = tuple(slice(p[0], p[0] + s) for p, s in zip(pads, spatial))
        return acc[(slice(None), *crop)]

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        t = t.contiguous(memory_format=self.memory_format)
        logits = self.net(t)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


@dataclass(frozen=True)
class PreparedInput:
    """An input array checked and planned, with its normalisation range.

    ``lo`` and ``hi`` (C,) are the range of the whole array; they are None when
    ``normalize_axes`` names axes (``"T"``, ``"Z"``, ``"TZ"``) whose every index is
    normalised with the ``percentiles`` of its own values, found as it is read.
    """

    image: object
    plan: AxesPlan
    lo: np.ndarray | None
    hi: np.ndarray | None
    channel_index: int | None
    normalize_axes: str = ""
    percentiles: tuple[float, float] = (DEFAULT_LOW, DEFAULT_HIGH)
    _frame_range: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(s for i, s in enumerate(self.image.shape) if i != self.plan.channel_axis)

    @property
    def loop_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[i] for i in self.plan.loop_axes)

    @property
    def net_shape(self) -> tuple[int, ...]:
        shape = [self.image.shape[i] for i in self.plan.net_axes]
        return tuple(shape[i] for i in self._to_canonical)

    def items(self) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """Yield ``(loop_index, x)``: ``x`` is (C, [Z,] Y, X) normalised float32.

        The network axes come in Z, Y, X order whatever the input's order;
        :meth:`from_canonical` puts results back.
        """
        for index in np.ndindex(*self.loop_shape):
            yield index, self.read(index)

    def read(self, index: tuple[int, ...]) -> np.ndarray:
        key: list[object] = [slice(None)] * self.image.ndim
        for axis, i in zip(self.plan.loop_axes, index):
            key[axis] = i
        block = np.asarray(self.image[tuple(key)])
        remaining = [a for a in range(self.image.ndim) if a not in self.plan.loop_axes]
        if self.plan.channel_axis is None:
            block = block[None]
        else:
            block = np.moveaxis(block, remaining.index(self.plan.channel_axis), 0)
        block = _select_channels(block, self.channel_index)
        block = block.transpose(0, *(1 + i for i in self._to_canonical))
        return self._normalised(index, block)

    def _normalised(self, index: tuple[int, ...], block: np.ndarray) -> np.ndarray:
        """``block`` (C, [Z,] Y, X), the item at ``index``, mapped to 0..1 by its range."""
        if not self.normalize_axes:
            return apply_range(block, self.lo, self.hi, channel_axis=0)
        if "Z" in self.normalize_axes and block.ndim == 4:  # a volume: each plane its own range
            out = np.empty(block.shape, np.float32)
            for z in range(block.shape[1]):
                out[:, z] = self._own_range(block[:, z])
            return out
        axes = self.plan.axes
        if all(axes[a] in self.normalize_axes for a in self.plan.loop_axes):
            return self._own_range(block)  # the item is a whole frame (or plane)
        # A plane of a frame (a 2D model in a TZYX stack): the range of the whole frame, found once
        # per frame (kept, a few numbers each: a ZTYX stack visits each frame once per plane).
        fixed = {a: i for a, i in zip(self.plan.loop_axes, index) if axes[a] in self.normalize_axes}
        key = tuple(fixed.values())
        if key not in self._frame_range:
            self._frame_range[key] = _normalisation_range(self.image, self.plan, self.channel_index,
                                                          self.percentiles, fixed=fixed)
        return apply_range(block, *self._frame_range[key], channel_axis=0)

    def _own_range(self, block: np.ndarray) -> np.ndarray:
        """``block`` (C, ...) normalised with its own percentiles."""
        low, high = self.percentiles
        lo, hi = percentile_range(block, low=low, high=high, channel_axis=0)
        return apply_range(block, lo, hi, channel_axis=0)

    @property
    def _to_canonical(self) -> list[int]:
        """Permutation of the network axes (input order) into Z, Y, X order."""
        letters = [self.plan.axes[i] for i in self.plan.net_axes]
        return sorted(range(len(letters)), key=lambda i: "ZYX".index(letters[i]))

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Put the trailing Z/Y/X axes of a result back in the input's order."""
        perm = self._to_canonical
        inverse = [perm.index(i) for i in range(len(perm))]
        lead = array.ndim - len(perm)
        return array.transpose(*range(lead), *(lead + i for i in inverse))


def _select_channels(block: np.ndarray, channel_index: int | None) -> np.ndarray:
    """Pick one channel, turn RGB into grey for 1-channel models, or pass through."""
    if channel_index is None:
        return block
    if channel_index == -1:  # RGB(A) -> luminance
        return luminance(block, channel_axis=0)[None]
    return block[channel_index : channel_index + 1]


_OTHER_AXES = {3: "CYX", 4: "CZYX", 5: "TZCYX"}
"""An example of axes to give, by dimensions, where the guess from the shape failed (ImageJ's order)."""

_CHANNELS_LAST = {3: "YXC", 4: "ZYXC", 5: "TZYXC"}
"""The example where the guess left the last axis too small: few channels stored last."""

AXES_GIVEN = "These are the axes given"
"""How the message of an axis too small says the caller gave the axes (``axes=``, ``--axes``)."""

AXES_GUESSED = "These axes were guessed from the shape"
"""How it says they were guessed (``axes=None``; a caller that guessed them itself, the widget's
'auto', puts this in place of :data:`AXES_GIVEN`)."""


def prepare_input(
    image: object,
    config,
    *,
    axes: str | None = None,
    mode: str = "auto",
    channel: int | None = None,
    normalize_per: str = "stack",
) -> PreparedInput:
    """Validate an array against a model and plan how to stream it.

    Parameters
    ----------
    image : array-like (numpy, dask, zarr)
    config : ModelConfig
    axes, mode : see :func:`~napari_unet.axes.plan_axes`
    channel : int or None
        For a 1-channel model and a multichannel image: which channel to use.
        None converts RGB to grey, and refuses other multichannel images.
    normalize_per : {"stack", "frame", "plane"}
        What one percentile range covers: the whole array, each time point,
        or each 2D plane (see :func:`~napari_unet.api.iter_segment`).
    """
    per = normalize_per.strip().lower() if isinstance(normalize_per, str) else normalize_per
    if per not in NORMALIZE_PER:
        raise SegmentationError(
            f"normalize_per must be one of {', '.join(map(repr, NORMALIZE_PER))}, not {normalize_per!r}: "
            "'stack' normalises the whole image at once, 'frame' each time point, 'plane' each 2D plane.")
    refuse_file_name(image, hint=", or use the command line (napari-unet segment FILE --output FOLDER)")
    if isinstance(image, ImageFile):  # read as an array, it would be one value (the whole repr shown)
        raise SegmentationError(
            "The image is an ImageFile (what napari_unet.io.read_image_file returns), not an array: give "
            "its pixels and the axes its file declares, e.g. segment(read.image, axes=read.axes).")
    if not hasattr(image, "shape") or not isinstance(getattr(image, "dtype", None), np.dtype):
        # Lists, and arrays of other libraries (a torch tensor's dtype is no numpy dtype).
        try:
            image = np.asarray(image)
        except ValueError:  # ragged nested lists
            raise SegmentationError(
                "The image is not a regular array (rows of different lengths?): give a numpy "
                "array, or a list of equal-length rows.") from None
        except (TypeError, RuntimeError) as exc:  # e.g. a tensor on a GPU, or one that needs grad
            raise SegmentationError(
                f"The image ({type(image).__name__}) cannot be read as a numpy array ({exc}): give "
                "a numpy array (for a torch tensor: tensor.detach().cpu().numpy()).") from None
    shape = tuple(int(s) for s in image.shape)
    if image.ndim == 0:  # None (a reader that found nothing), a number
        value = image.item() if isinstance(image, np.ndarray) else image
        raise SegmentationError(
            f"The image is a single value ({value!r}), not an image: give an array of at least 2 "
            "dimensions (Y and X), e.g. a numpy array.")
    if 0 in shape:
        raise SegmentationError(
            f"The image is empty (shape {shape}): every axis needs at least one pixel."
        )
    if image.ndim < 2:
        raise SegmentationError(
            f"The image has shape {shape}: need at least 2 dimensions (Y and X)."
        )
    check_dtype(image.dtype)
    plan = plan_axes(shape, axes, spatial_dims=config.spatial_dims,
                     in_channels=config.in_channels, mode=mode)
    for i in plan.net_axes:
        if shape[i] < MIN_SIZE:
            # A guess from the shape (a TZCYX array read as TZYXC), or the axes given (an RGB image
            # given ZYX), may be the wrong ones: say so.
            # Channels stored last (two stains, Y x X x 2) leave the last axis too small: suggest C last.
            other = (_CHANNELS_LAST if i == len(shape) - 1 else _OTHER_AXES).get(len(shape), "")
            said = AXES_GUESSED if axes is None else AXES_GIVEN
            hint = (f" {said}: if the image's axes are others, give "
                    f"them (axes='{other}', say; --axes on the command line; Axes in the widget)."
                    if len(shape) > 2 and other != plan.axes
                    # (not for a 3D model when the example has no Z: it would refuse it too)
                    and ("Z" in other or config.spatial_dims == 2) else "")
            raise SegmentationError(
                f"The image is too small: axis {plan.axes[i]} has {plural(shape[i], 'pixel')}, "
                f"and segmentation needs at least {MIN_SIZE} (shape {shape}, axes {plan.axes!r}).{hint}"
            )
    n_ch = 1 if plan.channel_axis is None else shape[plan.channel_axis]
    want = config.in_channels
    channel_index: int | None = None
    if channel is not None:
        channel = check_whole("channel", channel, 0)
        if plan.channel_axis is None and channel > 0:  # channel 0 of a grey image is the image
            if len(shape) == 2:  # Y and X only: no axes could name a C, asking for them would fail again
                raise SegmentationError(
                    f"channel={channel} was given, but the image (shape {shape}) is one grey plane, Y and X, "
                    "with no channel axis: leave channel out (or give channel=0).")
            guessed = " (guessed from the shape)" if axes is None else ""
            # The examples have as many letters as the image dimensions: C in place of Z (else T).
            stand_in = "Z" if "Z" in plan.axes else "T"
            first, last = plan.axes.replace(stand_in, "C"), plan.axes.replace(stand_in, "") + "C"
            raise SegmentationError(
                f"channel={channel} was given, but the axes {plan.axes!r}{guessed} of the image (shape "
                f"{shape}) have no channel axis C: give the axes with their C (e.g. axes={first!r} for "
                f"channels first, {last!r} for channels last; --axes on the command line).")
        if not 0 <= channel < n_ch:
            raise SegmentationError(
                f"channel={channel} but the image has {plural(n_ch, 'channel')}: give one from 0 to {n_ch - 1} "
                "(--channel N on the command line), the one that shows the nuclei.")
        if want != 1:
            raise SegmentationError(
                f"This model takes {want} channels; channel= only applies to 1-channel models."
            )
        channel_index = channel
    elif n_ch != want:
        if want == 1 and n_ch in (3, 4):
            channel_index = -1
        elif want == 1:
            raise SegmentationError(
                f"This model takes 1 channel, but the image has {n_ch} (axes {plan.axes!r}). "
                "Pick the one that shows the nuclei with channel=N (--channel N on the command line; Channel in "
                "the widget), or state the axes if C is not a channel axis."
            )
        else:
            raise SegmentationError(
                f"This model takes {want} channels, but the image has {n_ch} "
                f"(axes {plan.axes!r}). Give an image with {want} channels."
            )
    norm = config.normalization
    if norm.get("method", "percentile") != "percentile":
        raise SegmentationError(f"Unknown normalisation {norm.get('method')!r} in the model config.")
    percentiles = (float(norm.get("low", DEFAULT_LOW)), float(norm.get("high", DEFAULT_HIGH)))
    # "frame" without a T axis is one frame, the whole image; "plane" without T or Z one plane.
    separate = "".join(a for a in NORMALIZE_PER[per] if a in plan.axes)
    lo = hi = None
    if not separate:
        lo, hi = _normalisation_range(image, plan, channel_index, percentiles)
    return PreparedInput(image, plan, lo, hi, channel_index, separate, percentiles)


def _normalisation_range(image, plan: AxesPlan, channel_index, percentiles: tuple[float, float], *,
                         fixed: dict[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel percentiles from an even subsample of the whole array.

    Every time point and plane is sampled (strided in Y and X only), so that a
    blank first frame or plane cannot set the range for the others. ``fixed``
    ({axis: index}) restricts the sample to one index of those axes (one time point).
    """
    fixed = fixed or {}
    budget = 4_000_000
    non_channel = [i for i in range(image.ndim) if i != plan.channel_axis and i not in fixed]
    size = int(np.prod([image.shape[i] for i in non_channel]))
    step = max(1, int(np.ceil(np.sqrt(size / budget))))
    plane = (plan.axes.index("Y"), plan.axes.index("X"))
    key = tuple(slice(fixed[i], fixed[i] + 1) if i in fixed else slice(None, None, step) if i in plane
                else slice(None) for i in range(image.ndim))
    sample = np.asarray(image[key])
    if plan.channel_axis is None:
        sample = sample[None]
    else:
        sample = np.moveaxis(sample, plan.channel_axis, 0)
    sample = _select_channels(sample, channel_index)
    # Already a subsample: strided again, its last two axes need not be Y and X (YXT).
    return percentile_range(sample, low=percentiles[0], high=percentiles[1], channel_axis=0,
                            max_samples=max(budget, int(np.prod(sample.shape[1:]))))


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """``shape`` (canonical [Z,] Y, X) with Y and X multiplied by ``scale`` (Z is kept)."""
    lead, yx = tuple(shape[:-2]), shape[-2:]
    return (*lead, *(max(MIN_SIZE, round(s * scale)) for s in yx))


def resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resampling of (K, *spatial) float32 to (K, *shape).

    Shrinking in Y and X averages (antialiased bilinear), so no detail aliases;
    a volume whose Z keeps its size (``scale`` changes Y and X only) is resampled
    plane by plane so, and trilinearly otherwise.
    """
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    if len(shape) == 3 and shape[0] == array.shape[1]:
        planes = resample(array.reshape(-1, *array.shape[2:]), tuple(shape[1:]))
        return planes.reshape(array.shape[0], *shape)
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    if len(shape) == 2:
        shrink = any(n < s for n, s in zip(shape, array.shape[1:]))
        out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear",
                                              align_corners=False, antialias=shrink)
    else:
        out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


def smallest_tile(model: LoadedModel) -> int:
    """The smallest tile edge, in pixels, that :class:`Predictor` accepts for ``model``:
    :data:`MIN_TILE_MULTIPLES` times its network's multiple (64 for the bundled model)."""
    return MIN_TILE_MULTIPLES * model.net.multiple


def check_scale(scale: float) -> float:
    """``scale`` as a float, or a SegmentationError saying what is allowed."""
    if isinstance(scale, (bool, np.bool_)):  # True would pass as 1
        raise SegmentationError(f"scale must be a number, got {scale!r}.")
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise SegmentationError(f"scale must be a number, got {scale!r}.") from None
    if not 0.1 <= value <= 10.0:
        raise SegmentationError(
            f"scale must be between 0.1 and 10, got {scale}: 2 doubles the image for nuclei half "
            "the size the model knows, 0.5 halves it for nuclei twice the size.")
    return value


def stream_probabilities(
    predictor: Predictor,
    prepared: PreparedInput,
    on_item: Callable[[tuple, np.ndarray], None],
    *,
    scale: float = 1.0,
) -> Generator[Progress, None, None]:
    """Run every plane or volume of a prepared input through the network.

    Yields a ``Progress("predict", ...)`` per batch of tiles, and after each
    item calls ``on_item(key, probabilities)``: ``key`` indexes that item in
    an output array of shape ``prepared.out_shape``; ``probabilities`` is
    (K, *item shape) float32, axes in the input's order.

    With ``scale`` other than 1, each item is resampled in Y and X by that
    factor before the network, and its probabilities are resampled back.
    """
    scale = check_scale(scale)
    plan = prepared.plan
    net_shape = scaled_shape(prepared.net_shape, scale)
    per_item = len(predictor.grid(net_shape))
    n_items = int(np.prod(prepared.loop_shape))
    total = per_item * n_items
    loop_out = [i - (plan.channel_axis is not None and i > plan.channel_axis) for i in plan.loop_axes]
    item = "volume" if len(plan.net_axes) == 3 else "plane"  # what the network sees at once
    for n, (index, x) in enumerate(prepared.items()):
        gen = predictor.iter_array(resample(x, net_shape))
        while True:
            try:
                done = next(gen)
            except StopIteration as stop:
                probs = prepared.from_canonical(resample(stop.value, x.shape[1:]))
                break
            note = f"tile {done}/{per_item}" + (f" of {item} {n + 1}/{n_items}" if n_items > 1 else "")
            yield Progress("predict", n * per_item + done, total, note)
        key: list[object] = [slice(None)] * len(prepared.out_shape)
        for axis, i in zip(loop_out, index):
            key[axis] = i
        on_item(tuple(key), probs)


def iter_predict(
    image: object,
    model: LoadedModel | str = "default",
    *,
    axes: str | None = None,
    mode: str = "auto",
    channel: int | None = None,
    device: str = "auto",
    tile_size: int | None = None,
    overlap: int | None = None,
    halo: int | None = None,
    batch_size: int = 1,
    scale: float = 1.0,
) -> Generator[Progress, None, np.ndarray]:
    """Class probabilities of a whole array, tile by tile.

    ``scale`` resamples Y and X by that factor for the network (2 for nuclei
    half the size the model was trained on); the probabilities come back at
    the image's own size.

    Yields
    ------
    Progress
        ``stage="predict"``, after each batch of tiles.

    Returns
    -------
    ndarray (K, *out_shape) float32
        K class probabilities; ``out_shape`` is the image shape without its
        channel axis.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(
        model, device=device, tile_size=tile_size, overlap=overlap, halo=halo,
        batch_size=batch_size)
    prepared = prepare_input(image, predictor.config, axes=axes, mode=mode, channel=channel)
    out = np.zeros((predictor.config.out_channels, *prepared.out_shape), np.float32)

    def store(key: tuple, probs: np.ndarray) -> None:
        out[(slice(None), *key)] = probs

    yield from stream_probabilities(predictor, prepared, store, scale=scale)
    return out


def predict(image: object, model: LoadedModel | str = "default", **kwargs) -> np.ndarray:
    """Drain :func:`iter_predict` and return the probabilities."""
    return drain(iter_predict(image, model, **kwargs))
