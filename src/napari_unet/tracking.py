"""Linking instance labels over time: one id per object across time points.

Each time point is segmented on its own, so its ids start at 1 and say nothing
about the previous frame. :func:`link_over_time` gives every object the id of
the object it overlaps best in the time point before (one to one, IoU at least
``min_iou``); an object with no such partner starts a new id, and an id that
disappears is never reused. Works on 2D and 3D time points alike.
:func:`join_tracks` joins a track that ends with one that starts where they
overlap: after an edit that fills in a missed detection, the track continues.
:func:`tracks_table` turns linked labels into tracks: each nucleus' path, and
the track a new one divided from (two or more smaller objects over one), as
napari's Tracks layer shows them.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from .errors import SegmentationError, check_whole, refuse_file_name
from .instances import ids_and_ranks
from .measure import measure_objects
from .metrics import overlaps

__all__ = ["join_tracks", "link_over_time", "tracks_table"]

#: The share of a new track's first object that must lie in its mother's object of the time point
#: before for :func:`tracks_table` to take it for a daughter.
MIN_DAUGHTER_SHARE = 0.2

#: The most pixels a daughter may hold, as a share of her mother's (the fewer of the mother's last two
#: time points), for :func:`tracks_table` to take her for one: a division halves a nucleus, while a
#: neighbour that a lost nucleus comes back over keeps its size.
MAX_DAUGHTER_SIZE = 0.8


def _match(prev: np.ndarray, cur: np.ndarray, min_iou: float) -> dict[int, int]:
    """Greedy one-to-one matches {current id: previous id}, best IoU first."""
    prev_ids, cur_ids, pi, ci, iou = overlaps(prev, cur)
    order = np.argsort(-iou, kind="stable")
    matched: dict[int, int] = {}
    taken: set[int] = set()
    for k in order:
        if iou[k] < min_iou:
            break
        c, p = int(cur_ids[ci[k]]), int(prev_ids[pi[k]])
        if c not in matched and p not in taken:
            matched[c] = p
            taken.add(p)
    return matched


def _checked(labels: np.ndarray, time_axis: int, min_iou: float) -> tuple[np.ndarray, int, float]:
    """``labels`` as an array with ``time_axis`` and ``min_iou`` as numbers, or a
    SegmentationError saying why they cannot be linked."""
    if (isinstance(min_iou, bool) or not isinstance(min_iou, numbers.Real)
            or not 0.0 < float(min_iou) <= 1.0):
        raise SegmentationError(f"min_iou must be a number in (0, 1], got {min_iou!r}.")
    if isinstance(time_axis, bool) or not isinstance(time_axis, numbers.Integral):
        raise SegmentationError(
            f"time_axis must be the index of the time axis (e.g. 0 for TYX, axes.index('T')), "
            f"not {time_axis!r}.")
    refuse_file_name(labels, "The labels are", reader="read_labels", give="its ids")
    labels = np.asarray(labels)
    if labels.ndim < 2 or not -labels.ndim <= time_axis < labels.ndim:
        raise SegmentationError(
            f"Cannot link over time: labels of shape {labels.shape} have no axis {time_axis}.")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise SegmentationError(f"Instance labels must be integers, not {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise SegmentationError("Instance labels must be >= 0 (0 is background).")
    return labels, int(time_axis), float(min_iou)


def link_over_time(labels: np.ndarray, *, time_axis: int = 0, min_iou: float = 0.3,
                   linked_up_to: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """Relabel each time point so that an object keeps its id from one time point to the next.

    Parameters
    ----------
    labels : ndarray (..., T, ...) int
        Instance labels, each time point labelled on its own (0 is background).
    time_axis : int
        The axis of time.
    min_iou : float in (0, 1]
        Least intersection over union with an object of the previous time
        point for an object to take its id. Nuclei that move more than about
        half their diameter between frames start new ids.
    linked_up_to : int
        Ids from 1 to this are already linked (kept from an earlier linking,
        e.g. objects an edit left alone) and stay as they are; only the other
        objects are linked, to ids not taken in their own time point. A time
        point holding no other object is kept as it is, unmatched.
    out : ndarray (same shape) int32, optional
        Where to write the result; it may be ``labels`` itself (linked in place,
        a time point at a time: a long series then needs no second copy).

    Returns
    -------
    ndarray, same shape, int32
        The first time point's ids made sequential from 1; later objects carry
        their partner's id, or a new one above every id used before.
    """
    labels, time_axis, min_iou = _checked(labels, time_axis, min_iou)
    fixed_top = check_whole("linked_up_to", linked_up_to, 0)
    frames = np.moveaxis(labels, time_axis, 0)
    if out is None:
        out = np.zeros(labels.shape, np.int32)
    elif not isinstance(out, np.ndarray) or out.shape != labels.shape or out.dtype != np.int32:
        raise SegmentationError(
            f"out must be an int32 array of the labels' shape {labels.shape}, not "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")
    result = out
    out = np.moveaxis(out, time_axis, 0)
    next_id = fixed_top + 1
    for t, cur in enumerate(frames):
        if int(cur.max(initial=0)) <= fixed_top:
            out[t] = cur  # every object keeps its id (a time point an edit left alone): nothing to link
            continue
        ids, index = ids_and_ranks(cur)  # any ids, however large
        fixed = {i for i in ids.tolist() if 0 < i <= fixed_top}
        free = np.where(cur > fixed_top, cur, 0) if fixed else cur
        matched = _match(out[t - 1], free, min_iou) if t else {}
        new_ids = np.zeros(ids.size, np.int32)
        for k, i in enumerate(ids.tolist()):
            if i == 0:
                continue
            if i in fixed:
                new_ids[k] = i
            elif i in matched and matched[i] not in fixed:
                new_ids[k] = matched[i]
            else:
                new_ids[k] = next_id
                next_id += 1
        out[t] = new_ids[index].reshape(cur.shape)  # cur (may be out[t]) is read no more
        next_id = max(next_id, int(out[t].max(initial=0)) + 1)
    return result


def join_tracks(labels: np.ndarray, *, time_axis: int = 0, min_iou: float = 0.3,
                linked_up_to: int = 0) -> np.ndarray:
    """Join each track that ends at a time point to one that starts at the next, where they overlap.

    A track that ends at ``t - 1`` and one that starts at ``t`` whose objects
    overlap one to one with IoU at least ``min_iou`` (best first) are one
    object, and the joined track takes one id: the earlier track's, unless
    only the later one's id is among those already linked (``linked_up_to``).
    Linking (:func:`link_over_time`) leaves no such pair; an edit can, for
    instance a nucleus painted into the one time point where the network
    missed it, which links to the track before but not to the one after, or
    one painted just before a track starts, which keeps that track's id.

    Parameters
    ----------
    labels : ndarray (..., T, ...) int
        Linked instance labels.
    time_axis : int
        The axis of time.
    min_iou : float in (0, 1]
        As for :func:`link_over_time`.
    linked_up_to : int
        Ids from 1 to this were linked before (an edit left their objects
        alone, and they are the ids shown): where a joined track holds one,
        it keeps the first of them, so that an untouched track's id never
        changes for a new one. 0 keeps the earliest id of each track.

    Returns
    -------
    ndarray, same shape and dtype (``labels`` itself when nothing joins)
    """
    labels, time_axis, min_iou = _checked(labels, time_axis, min_iou)
    fixed_top = check_whole("linked_up_to", linked_up_to, 0)
    frames = np.moveaxis(labels, time_axis, 0)
    present = [set(ids_and_ranks(frame)[0].tolist()) - {0} for frame in frames]
    later = [set() for _ in frames]  # ids at t or after
    for t in range(len(frames) - 1, -1, -1):
        later[t] = present[t] | (later[t + 1] if t + 1 < len(frames) else set())
    chains: dict[int, list[int]] = {}  # first id of a joined track -> its ids, in time order
    first: dict[int, int] = {}  # id -> the first id of its joined track
    seen: set[int] = set()  # ids before t
    for t in range(1, len(frames)):
        seen |= present[t - 1]
        ended = present[t - 1] - later[t]  # never seen again: its id is free from t on
        began = present[t] - seen
        if ended and began:
            prev = np.where(np.isin(frames[t - 1], list(ended)), frames[t - 1], 0)
            cur = np.where(np.isin(frames[t], list(began)), frames[t], 0)
            for c, p in _match(prev, cur, min_iou).items():
                root = first.get(p, p)
                chains.setdefault(root, [root]).append(c)
                first[c] = root
    if not chains:
        return labels
    # The ids of one chain hold disjoint time ranges (each ends before the next starts), so
    # the whole chain can take any one of them.
    renames: dict[int, int] = {}
    for ids in chains.values():
        target = next((i for i in ids if i <= fixed_top), ids[0])
        renames.update((i, target) for i in ids if i != target)
    out = np.array(frames, copy=True)
    for i, target in renames.items():
        out[frames == i] = target
    return np.moveaxis(out, 0, time_axis)


def tracks_table(instances: np.ndarray, *, axes: str,
                 table: dict[str, np.ndarray] | None = None,
                 features: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The tracks of linked instance labels: one row per track and time point, with its parent.

    Parameters
    ----------
    instances : ndarray (T, [Z,] Y, X) int, axes in any order
        Instance labels linked over time (:func:`link_over_time`, or a result
        made with ``link_time=True``): an id is one nucleus at every time point.
        Labels that look labelled one time point at a time get a UserWarning,
        for their tracks would join unrelated nuclei: those whose every time
        point numbers its objects from 1 to its count, where an id of one time
        point shares no pixel with the same id in the next (linking gives an
        id only to an object that overlaps it).
    axes : str
        One letter of ``TZYX`` per dimension of ``instances``, T included.
    table : dict of str -> ndarray (N,), optional
        :func:`~napari_unet.measure.measure_objects` of ``instances`` when it
        is already made: its ``label``, ``t`` and centroid columns are taken
        as they are. None measures them.
    features : sequence of str
        Other columns of ``table`` to give for each row too (e.g. ``"area"``,
        ``"mean_intensity"``), after ``parent_id``, so that tracks can be
        coloured by them.

    Returns
    -------
    dict of str -> ndarray (N,)
        ``track_id`` (the objects' id), ``t``, ``centroid_z`` (with Z),
        ``centroid_y``, ``centroid_x`` (pixel coordinates) and ``parent_id``:
        for a track that begins after the first time point, the track it
        divided from, else 0. A new track's parent is the object of the time
        point before that its first object overlaps most, when they share at
        least a fifth of that first object (``MIN_DAUGHTER_SHARE``), and that
        object either goes on with an object that overlaps its own footprint
        (one daughter kept the mother's id; a new track that shares as much
        with a track that ended is that track found again, not a daughter)
        or ends there with two or more such new tracks in it (both daughters
        took new ids), and each daughter, the mother's own object going on
        among them, holds at most 0.8 of the mother's pixels
        (``MAX_DAUGHTER_SIZE``; hers are the fewer of her last two time
        points). A division halves a nucleus, while a neighbour that a nucleus
        comes back over (missed in a time point, moved further than linking
        follows, or merged with that neighbour there) keeps its size. Linking
        does not record divisions, so this is read from the labels: a nucleus
        that comes into view merely touching another is no daughter, nor is
        one partly over another that goes on at its size; a division in which
        a daughter is more than 0.8 of its mother is not found. Rows
        are sorted by ``track_id``, then ``t``, as napari's Tracks layer takes
        them. Then the ``features`` columns, in the same row order.
    """
    refuse_file_name(instances, "The instance labels are", reader="read_labels", give="its ids")
    axes = str(axes).upper()
    if "T" not in axes:
        raise SegmentationError(
            f"Tracks need a time axis (T), but the labels' axes are {axes!r}: give the axes of a "
            "time series, e.g. 'TYX'.")
    labels = np.asarray(instances)
    if labels.ndim != len(axes) or labels.dtype.kind not in "iu":
        raise SegmentationError(
            f"Give integer instance labels with one axis per letter of {axes!r}, not "
            f"{labels.dtype} labels of shape {labels.shape}.")
    if table is None:
        table = measure_objects(labels, axes=axes)
    centroids = [f"centroid_{a.lower()}" for a in axes if a != "T"]
    missing = [name for name in ("label", "t", *centroids, *features) if name not in table]
    if missing:
        raise SegmentationError(
            f"The table lacks the columns {', '.join(missing)}: give measure_objects(instances, "
            f"axes={axes!r}) of these labels" + (" (with image= for intensities)." if features
                                                 else ", or no table."))
    ids, times = np.asarray(table["label"]), np.asarray(table["t"])
    order = np.lexsort((times, ids))
    frames = np.moveaxis(labels, axes.index("T"), 0)
    present = [set(ids_and_ranks(frame)[0].tolist()) - {0} for frame in frames]
    unlinked = _unlinked_id(frames, present)
    if unlinked is not None:
        label, t = unlinked
        warnings.warn(
            f"These labels look labelled one time point at a time, not linked over time: each time point "
            f"numbers its objects from 1, and id {label} at time point {t} shares no pixel with id {label} at "
            f"time point {t + 1}, so their tracks would join unrelated nuclei. Link them first: "
            f"napari_unet.tracking.link_over_time(labels, time_axis={axes.index('T')}), or segment with "
            "link_time=True.", UserWarning, stacklevel=2)
    parents = _parents(frames, present)
    track_ids = ids[order]
    out: dict[str, np.ndarray] = {"track_id": track_ids, "t": times[order]}
    out.update((name, np.asarray(table[name])[order]) for name in centroids)
    out["parent_id"] = np.array([parents.get(int(i), 0) for i in track_ids], dtype=ids.dtype)
    out.update((name, np.asarray(table[name])[order]) for name in features)
    return out


def _overlaps(prev: np.ndarray, cur: np.ndarray, new: list[int]
              ) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Pairs (id in ``new``, id in ``prev``) of the objects of ``cur`` with those ids and the objects
    of ``prev`` they share pixels with, as an array (2, pairs), the pixels each pair shares, and
    {id in ``new``: its pixels}."""
    inside = np.isin(cur, new)
    ids, other = cur[inside], prev[inside]  # in their own dtype: uint64 ids above 2**63 stay themselves
    labels, areas = np.unique(ids, return_counts=True)
    both = other != 0
    found = np.stack([ids[both], other[both]])
    if not found.size:
        return found, np.zeros(0, np.int64), dict(zip(labels.tolist(), areas.tolist()))
    pairs, counts = np.unique(found, axis=1, return_counts=True)
    return pairs, counts, dict(zip(labels.tolist(), areas.tolist()))


def _unlinked_id(frames: np.ndarray, present: list[set[int]]) -> tuple[int, int] | None:
    """(id, t) of an id at time points t and t + 1 whose objects there share no pixel, in labels
    (T, ...) whose every time point numbers its objects 1 to n (``present``: its ids), as labelling
    each time point on its own does; None for any other labels (linked ones among them)."""
    if len(frames) < 2 or any(ids and max(ids) != len(ids) for ids in present):
        return None
    for t in range(len(frames) - 1):
        both = present[t] & present[t + 1]
        if both:
            kept = _kept_footprint(frames[t], frames[t + 1])
            if both - kept:
                return min(both - kept), t
    return None


def _kept_footprint(prev: np.ndarray, cur: np.ndarray) -> set[int]:
    """The ids of ``prev`` that ``cur`` holds again on a pixel of their own: objects that overlap
    themselves from one time point to the next."""
    return set(np.unique(prev[(prev == cur) & (prev != 0)]).tolist())


def _sizes(frame: np.ndarray, ids: Sequence[int]) -> dict[int, int]:
    """{id: its pixels in ``frame``} of ``ids`` (0 for one not there)."""
    found, counts = np.unique(frame[np.isin(frame, ids)], return_counts=True)
    return {i: 0 for i in ids} | dict(zip(found.tolist(), counts.tolist()))


def _parents(frames: np.ndarray, present: list[set[int]], min_share: float = MIN_DAUGHTER_SHARE,
             max_size: float = MAX_DAUGHTER_SIZE) -> dict[int, int]:
    """{track id: the id it divided from} of linked labels (T, ...) whose time points hold the ids
    ``present`` (see :func:`tracks_table`): a daughter shares at least ``min_share`` of its first
    object with its mother's object the time point before, and it and the mother's other daughters
    (her own object going on among them) are two or more, each of at most ``max_size`` of the
    mother's pixels (the fewer of her last two time points)."""
    seen = set(present[0]) if len(frames) else set()
    parents: dict[int, int] = {}
    for t in range(1, len(frames)):
        new = present[t] - seen
        seen |= present[t]
        if not new:
            continue
        prev, cur = frames[t - 1], frames[t]
        (children, mothers), counts, areas = _overlaps(prev, cur, sorted(new))
        best: dict[int, tuple[int, int]] = {}  # new id -> (pixels, the object it overlaps most)
        lost: set[int] = set()  # new ids in the footprint of an object that ended
        for c, p, n in zip(children.tolist(), mothers.tolist(), counts.tolist()):
            if n > best.get(c, (0, 0))[0]:
                best[c] = (n, p)
            if p not in present[t] and n >= min_share * areas[c]:
                lost.add(c)
        best = {c: (n, p) for c, (n, p) in best.items() if n >= min_share * areas[c]}
        stayed = _kept_footprint(prev, cur)
        daughters: dict[int, list[int]] = {}  # mother -> her new daughters
        for c, (_, p) in best.items():
            # A mother that goes on divided only if its own object is still in its footprint, and
            # into a track that is not an ended one found again. A mother that ends here with one
            # new object in it was not divided but lost (it moved more than linking follows):
            # that object is the same nucleus.
            if (p in stayed and c not in lost) or p not in present[t]:
                daughters.setdefault(p, []).append(c)
        if not daughters:
            continue
        # A division halves the mother: each daughter is smaller. A nucleus that comes back (missed
        # for a time point, or merged with this one) over a neighbour leaves the neighbour its size.
        # The mother's size is the fewer pixels of her last two time points, so that two nuclei
        # merged for a time point make no big mother.
        mother_size = _sizes(prev, list(daughters))
        if t >= 2:
            before = _sizes(frames[t - 2], list(daughters))
            mother_size = {p: min(n, before[p]) if before[p] else n for p, n in mother_size.items()}
        went_on = _sizes(cur, [p for p in daughters if p in present[t]])
        for p, cs in daughters.items():
            sizes = [areas[c] for c in cs] + ([went_on[p]] if p in went_on else [])
            if len(sizes) >= 2 and max(sizes) <= max_size * mother_size[p]:
                parents.update((c, p) for c in cs)
    return parents
