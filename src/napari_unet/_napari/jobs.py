"""The work thread workers run, with every error turned into a message for the user.

:func:`segment_job` runs the network; :func:`relabel_job` recomputes instances
from an edited mask.

:func:`segment_job` yields the engine's :class:`~napari_unet.progress.Progress`
records unchanged, so the widget can move a progress bar and stop the work at
any yield (``worker.quit()``). It never raises: a failure comes back as a
:class:`JobFailed` holding a message for the user, so that napari shows a
plain notification instead of a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..api import Segmentation, iter_segment
from ..errors import SegmentationError, describe
from ..instances import (count_objects, hand_edits_kept, label_instances, mask_changed_round_edits, relabel_edited,
                         take_hand_edits)
from ..tracking import join_tracks, link_over_time, tracks_table
from ..predict import AXES_GIVEN, AXES_GUESSED
from ..progress import Progress

__all__ = ["JobDone", "JobFailed", "Measured", "Relabelled", "display_labels", "segment_job", "relabel_job",
           "measure_job", "friendly_message"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobDone:
    """The engine finished; ``segmentation`` holds its result.

    ``digests`` holds the fingerprints of its semantic and instance arrays,
    ``instances_copy`` a private copy of the instances (which "Update
    instances" starts from) and ``tracks``, for instances linked over time, the
    number of tracks (their largest id: linked ids are numbered from 1), all
    made in the worker so that the GUI thread need not hash, copy or scan big stacks.
    """

    segmentation: Segmentation
    digests: dict[str, str] = field(default_factory=dict)
    instances_copy: np.ndarray | None = None
    tracks: int | None = None


@dataclass(frozen=True)
class Relabelled:
    """Instances recomputed from an edited mask, with what the GUI thread needs of them.

    ``count`` (objects, per time point), ``labels_copy`` (a private copy,
    which the next "Update instances" starts from), ``digest`` (the
    labels' fingerprint) and ``mask_digest`` (the mask's, to tell whether it
    was edited) are made in the worker, so that the GUI thread need not
    count, copy or hash big stacks. ``mask_synced`` holds the indices of the
    mask pixels that follow the edits made on the instance labels (see
    :func:`~napari_unet.instances.take_hand_edits`), with their new values; None
    when no edit of the labels was taken. ``edited_digest`` is then the fingerprint
    of those labels as taken (the user's edits included): a layer that still holds
    them holds nothing ``labels`` lack, and may be updated in place. ``tracks``, for
    labels linked over time, is the number of tracks: their distinct ids (after hand
    edits the ids may have gaps, so not the largest id); None when they are not linked.
    ``edits_lost`` says why ``labels`` lack some of the edits taken, as made (see
    :func:`~napari_unet.instances.hand_edits_kept`; ``edited_digest`` is then None): "mask"
    when the mask was also changed round them (and that region split again), "filled" when
    pixels erased by hand were labelled again (a hole inside an object, which labelling fills),
    "relabelled" otherwise; None when they hold them all (or none was taken).
    """

    labels: np.ndarray
    count: int
    labels_copy: np.ndarray
    digest: str | None = None
    mask_digest: str | None = None
    mask_synced: tuple[tuple[np.ndarray, ...], np.ndarray] | None = None
    edited_digest: str | None = None
    tracks: int | None = None
    edits_lost: str | None = None


@dataclass(frozen=True)
class JobFailed:
    """The engine stopped with a problem; ``message`` says what and what to do."""

    message: str


def friendly_message(exc: BaseException) -> str:
    """A message a biologist can act on, for any exception the engine may raise."""
    if isinstance(exc, SegmentationError):
        return str(exc)
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (
            "Segmentation ran out of memory. Try a smaller tile size, the CPU device, "
            "or a smaller image (e.g. a crop or fewer planes)."
        )
    return (
        f"Segmentation failed unexpectedly ({describe(exc)}). "
        "Check the image and the options, and report this if it happens again."
    )


#: The largest id shown as uint16: half its range, so the objects a user paints (each a new id
#: after the largest) still fit.
_SMALL_IDS = 2**15 - 1


def display_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint16 when their ids are at most 32767, else unchanged.

    napari colours int32 labels through a slow path on the GUI thread: adding a
    4096 x 4096 int32 layer took about 1 s, a uint16 one 0.2 s (made in the worker,
    off the GUI thread).
    """
    if labels.dtype.kind in "iu" and labels.dtype.itemsize > 2 and labels.size \
            and 0 <= labels.min() and labels.max() <= _SMALL_IDS:
        return labels.astype(np.uint16)
    return labels


def segment_job(image: Any, options: dict[str, Any], *,
                axes_guessed: bool = False) -> Generator[Progress, None, JobDone | JobFailed]:
    """Run :func:`~napari_unet.api.iter_segment` on ``image`` with ``options``.

    ``axes_guessed``: ``options["axes"]`` are the widget's guess ('auto'), not the user's; a
    message about them says they were guessed, as the engine's do for ``axes=None``.

    Yields
    ------
    Progress
        The engine's records, one per tile (and per plane), then the instance step.

    Returns
    -------
    JobDone or JobFailed
    """
    from .outputs import fingerprint

    try:
        seg = yield from iter_segment(image, **options)
        seg = replace(seg, instances=display_labels(seg.instances))
        # Inside the try too: hashing and copying a big stack can run out of memory.
        return JobDone(seg, {"semantic": fingerprint(seg.semantic), "instances": fingerprint(seg.instances)},
                       np.array(seg.instances, copy=True), seg.tracks)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        if not isinstance(exc, SegmentationError):
            log.exception("napari-unet: segmentation failed")
        message = friendly_message(exc)
        # The engine takes any axes it is given for the user's.
        return JobFailed(message.replace(AXES_GIVEN, AXES_GUESSED) if axes_guessed else message)


def relabel_job(mask: np.ndarray, params: dict[str, Any], *, previous: np.ndarray | None = None,
                order: Sequence[int] | None = None, time_axis: int | None = None,
                edited: np.ndarray | None = None) -> Relabelled | JobFailed:
    """Instance labels from an edited mask (runs in a thread worker; never raises).

    With ``previous`` (the labels the mask was made from), objects the edit
    left alone keep their ids (:func:`~napari_unet.instances.relabel_edited`).
    With ``edited`` too (those labels as the user left them: the layer's own array, copied
    here, off the GUI thread), their hand edits, if any, are taken as they are and the mask
    (a private copy, changed in place) follows them (:func:`~napari_unet.instances.take_hand_edits`).
    ``order`` puts the axes labelled together last (e.g. ZTYX -> TZYX); the
    result comes back in the mask's order. With ``time_axis`` the ids are
    linked over that axis (see :func:`~napari_unet.tracking.link_over_time`).
    ``params["ndim"]`` axes are labelled together, and counted together; tracks
    the edit connected are joined (:func:`~napari_unet.tracking.join_tracks`).
    ``params`` are :func:`~napari_unet.instances.label_instances`' keywords: with
    ``min_size_is_area`` (a 2D model's result), ``min_size`` is the area of a
    cross-section, and a stack labelled in 3D keeps objects as large as a ball that wide.
    """
    from .outputs import fingerprint

    try:
        synced = edited_digest = made = None
        if edited is not None:
            edited = np.array(edited, copy=True)  # the user may paint the layer while this runs
        if previous is not None and edited is not None and not np.array_equal(edited, previous):
            where = take_hand_edits(mask, previous, edited)
            made, previous, synced, edited_digest = previous, edited, (where, mask[where]), fingerprint(edited)
        mask_digest = fingerprint(mask)
        order = list(order) if order is not None else list(range(mask.ndim))
        mask = np.transpose(mask, order)
        linked_up_to = 0
        if previous is not None:
            # Linked ids name one object across time points: new objects get ids above all of them.
            first_new = None
            if time_axis is not None:
                linked_up_to = int(np.max(previous, initial=0))
                first_new = linked_up_to + 1
            labels = relabel_edited(mask, np.transpose(previous, order), first_new_id=first_new, **params)
        else:
            labels = label_instances(mask, **params)
        labels = np.ascontiguousarray(np.transpose(labels, np.argsort(order)))
        if time_axis is not None:
            # A nucleus painted where the network missed it links to the track before it; the
            # track after it is the same nucleus, so it goes on with that id.
            # One painted just before a track starts joins it and takes its id (ids shown stay).
            labels = join_tracks(link_over_time(labels, time_axis=time_axis, linked_up_to=linked_up_to),
                                 time_axis=time_axis, linked_up_to=linked_up_to)
        labels = display_labels(labels)
        edits_lost = None
        if made is not None:
            # Updated in place only when the labels hold every edit as made (see _napari.outputs):
            # an object the mask changed round is split again, and the user's layer is kept.
            ndim = int(params.get("ndim", labels.ndim))
            made, previous, ordered = (np.transpose(a, order) for a in (made, previous, labels))
            if not hand_edits_kept(made, previous, ordered, ndim=ndim):
                edited_digest = None
                if mask_changed_round_edits(mask, made, previous, ndim=ndim):
                    edits_lost = "mask"
                elif np.any((made != 0) & (previous == 0) & (ordered != 0)):
                    edits_lost = "filled"  # pixels erased inside an object: a hole, filled again
                else:
                    edits_lost = "relabelled"
        count = count_objects(np.transpose(labels, order), int(params.get("ndim", labels.ndim)))
        # Linked, an id is one nucleus over the series: its distinct ids over the whole array.
        tracks = count_objects(labels, labels.ndim) if time_axis is not None else None
        return Relabelled(labels, count, np.array(labels, copy=True), fingerprint(labels), mask_digest,
                          synced, edited_digest, tracks, edits_lost)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        return JobFailed(friendly_message(exc))


@dataclass(frozen=True)
class Measured:
    """The measurements of instance labels (:func:`~napari_unet.measure.measure_objects`) and,
    for a series linked over time, its tracks (:func:`~napari_unet.tracking.tracks_table`).
    ``digest`` is the labels' :func:`~.outputs.fingerprint`, to tell later whether the table
    still describes the layer (made in the worker, off the GUI thread)."""

    table: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray] | None = None
    digest: str | None = None


def measure_job(labels: np.ndarray, axes: str, image: Any, image_axes: str, *,
                spacing: Sequence[float] | None = None, unit: str = "um", tracks: bool = False,
                ) -> Measured | JobFailed:
    """Measure ``labels`` in a thread worker, and with ``tracks`` make their tracks, each row with
    its object's numeric measurements (area, intensities...) to colour it by (never raises)."""
    from ..measure import measure_objects
    from .outputs import fingerprint

    try:
        table = measure_objects(labels, axes=axes, image=image, image_axes=image_axes,
                                spacing=spacing, unit=unit)
        features = [name for name, column in table.items() if name not in ("label", "t")
                    and not name.startswith("centroid_") and column.dtype.kind in "iuf"]
        return Measured(table, tracks_table(labels, axes=axes, table=table, features=features)
                        if tracks else None, fingerprint(labels))
    except SegmentationError as exc:
        return JobFailed(str(exc))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        log.exception("napari-unet: measuring failed")
        return JobFailed(f"Measuring failed unexpectedly ({describe(exc)}). "
                         "Check the image and its labels, and report this if it happens again.")
