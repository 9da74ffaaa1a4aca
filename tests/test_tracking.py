"""Linking instance labels over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scenes import disc

from napari_unet.errors import SegmentationError
from napari_unet.tracking import join_tracks, link_over_time, tracks_table


def _square(frame: np.ndarray, y: int, x: int, label: int, size: int = 6) -> None:
    frame[y:y + size, x:x + size] = label


def test_objects_keep_their_id_as_they_move():
    """Frame ids are arbitrary (labelled per frame); linking follows the overlaps."""
    frames = np.zeros((4, 40, 40), np.int32)
    _square(frames[0], 2, 2, 1)
    _square(frames[0], 20, 20, 2)
    _square(frames[1], 3, 3, 2)      # the first object, now labelled 2
    _square(frames[1], 21, 21, 1)    # the second, now labelled 1
    _square(frames[2], 4, 4, 7)
    _square(frames[2], 30, 2, 3)     # a new object
    _square(frames[3], 30, 3, 1)     # the new one; the first has gone
    out = link_over_time(frames)
    assert out.dtype == np.int32 and out.shape == frames.shape
    assert out[0, 2, 2] == out[1, 3, 3] == out[2, 4, 4] == 1
    assert out[0, 20, 20] == out[1, 21, 21] == 2
    assert out[2, 30, 2] == out[3, 30, 3] == 3, "a newcomer gets an id never used before"
    assert set(np.unique(out[3])) == {0, 3}
    np.testing.assert_array_equal(out > 0, frames > 0)


def test_a_jump_or_a_split_starts_new_ids():
    frames = np.zeros((3, 40, 40), np.int32)
    _square(frames[0], 2, 2, 1)
    _square(frames[1], 20, 20, 1)              # moved far: no overlap
    frames[2, 20:26, 18:24] = 1                # two thirds of the frame-1 object (IoU 0.5) ...
    frames[2, 20:26, 24:30] = 2                # ... and a piece beside it (IoU 0.2)
    out = link_over_time(frames)
    assert out[1, 20, 20] == 2
    assert out[2, 22, 20] == 2, "the larger share continues the object"
    assert out[2, 22, 27] == 3, "the other piece is new"


def test_time_axis_and_3d_time_points():
    """(Z, T, Y, X): the time axis is named; each time point is a 3D block."""
    frames = np.zeros((2, 3, 16, 16), np.int32)  # Z, T, Y, X
    frames[:, 0, 2:8, 2:8] = 5
    frames[:, 1, 3:9, 3:9] = 9
    frames[:, 2, 10:14, 10:14] = 4
    out = link_over_time(frames, time_axis=1)
    assert out.shape == frames.shape
    assert np.unique(out[:, 0][frames[:, 0] > 0]).tolist() == [1]
    assert np.unique(out[:, 1][frames[:, 1] > 0]).tolist() == [1]
    assert np.unique(out[:, 2][frames[:, 2] > 0]).tolist() == [2]


@pytest.mark.parametrize("time_axis", [0, 1])
def test_linking_in_place_gives_the_same_ids(time_axis):
    """out=labels relabels a long series without a second copy, and gives what a copy gets."""
    rng = np.random.default_rng(3)
    frames = np.zeros((5, 32, 32), np.int32)
    for t in range(5):
        for k, (y, x) in enumerate(rng.integers(0, 26, (4, 2)), start=1):
            _square(frames[t], y, x, (k * 7 + t) % 5 + 1)
    frames = np.ascontiguousarray(np.moveaxis(frames, 0, time_axis))
    expected = link_over_time(frames, time_axis=time_axis, linked_up_to=1)
    labels = frames.copy()
    assert link_over_time(labels, time_axis=time_axis, linked_up_to=1, out=labels) is labels
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(SegmentationError, match="out must be an int32 array"):
        link_over_time(frames, time_axis=time_axis, out=frames.astype(np.int64))
    with pytest.raises(SegmentationError, match="out must be an int32 array"):
        link_over_time(frames, time_axis=time_axis, out=frames[:1])


def test_min_iou_decides_and_bad_values_are_refused():
    frames = np.zeros((2, 20, 20), np.int32)
    _square(frames[0], 2, 2, 1, size=10)
    _square(frames[1], 6, 6, 1, size=10)   # IoU 36 / 164 = 0.22
    assert link_over_time(frames, min_iou=0.2)[1].max() == 1
    assert link_over_time(frames, min_iou=0.3)[1].max() == 2
    for bad in (0.0, 1.5):
        with pytest.raises(SegmentationError, match="min_iou"):
            link_over_time(frames, min_iou=bad)
    empty = link_over_time(np.zeros((3, 8, 8), np.int32))
    assert empty.max() == 0


def test_any_integer_ids_and_bad_labels():
    frames = np.zeros((2, 20, 20), np.int64)
    _square(frames[0], 2, 2, 2**40)
    _square(frames[0], 12, 12, 7)
    _square(frames[1], 3, 3, 5)
    _square(frames[1], 12, 13, 2**40)
    out = link_over_time(frames)
    assert out[0, 2, 2] == out[1, 3, 3] and out[0, 12, 12] == out[1, 12, 13]
    assert out[0, 2, 2] != out[0, 12, 12] and out.max() == 2
    for bad, fragment in ((frames.astype(float), "integers"), (frames > 0, "integers"),
                          (frames - 3, ">= 0")):
        with pytest.raises(SegmentationError, match=fragment):
            link_over_time(bad)
    with pytest.raises(SegmentationError, match="no axis 5"):
        link_over_time(frames, time_axis=5)


def test_ids_already_linked_stay_and_only_new_objects_are_linked():
    """After an edit, kept objects keep their linked ids; a new object is linked to its predecessor."""
    frames = np.zeros((3, 20, 30), np.int32)
    for t in range(3):
        frames[t, 2:8, 2:8] = 4  # kept, linked id 4 in every frame
        frames[t, 12:18, 2:8] = 7  # kept, linked id 7
    frames[1, 2:8, 20:26] = 9  # new in frame 1 (ids above 7 are new)
    frames[2, 3:9, 20:26] = 12  # the same nucleus in frame 2, labelled anew
    out = link_over_time(frames, time_axis=0, linked_up_to=7)
    assert np.all(out[:, 2:8, 2:8] == 4) and np.all(out[:, 12:18, 2:8] == 7)
    new = out[1, 4, 22]
    assert new > 7 and out[2, 5, 22] == new
    # Without it, every id is renumbered from 1.
    assert link_over_time(frames, time_axis=0)[0, 4, 4] == 1


def test_only_time_points_with_ids_to_link_are_matched(monkeypatch):
    """Time points an edit left alone (every id already linked) are kept as they are, unmatched:
    Update instances after one brush stroke in a long series links that time point alone."""
    from napari_unet import tracking

    frames = np.zeros((5, 20, 30), np.int32)
    frames[:, 2:8, 2:8] = 4
    frames[3, 2:8, 20:26] = 9  # new in frame 3
    matched = []
    real = tracking._match
    monkeypatch.setattr(tracking, "_match", lambda prev, cur, iou: matched.append(cur.max()) or real(prev, cur, iou))
    out = link_over_time(frames, time_axis=0, linked_up_to=7)
    assert matched == [9]
    np.testing.assert_array_equal(out[[0, 1, 2, 4]], frames[[0, 1, 2, 4]])
    assert out[3, 4, 22] == 8 and np.all(out[3, 2:8, 2:8] == 4)


def test_join_tracks_continues_a_track_an_edit_filled_in():
    """A nucleus missed in frame 1 (ids 1, -, 2); the user paints it in and it links back to 1.
    The track after it (2) is the same nucleus: it continues as 1, also in frames after."""
    from napari_unet.tracking import join_tracks

    frames = np.zeros((4, 30, 30), np.int32)
    for t in range(4):
        _square(frames[t], 2 + t, 2, 1 if t < 2 else 2)
        _square(frames[t], 20, 20, 3)  # a nucleus present throughout, untouched
    out = join_tracks(frames)
    assert [out[t, 3 + t, 3] for t in range(4)] == [1, 1, 1, 1]
    assert np.all(out[:, 22, 22] == 3)
    # Along another axis, the same answer.
    np.testing.assert_array_equal(join_tracks(np.moveaxis(frames, 0, 2), time_axis=2), np.moveaxis(out, 0, 2))
    # Linking leaves nothing to join: the labels come back as they are.
    linked = link_over_time(frames)
    assert join_tracks(linked) is linked


def test_join_tracks_keeps_the_id_of_a_track_already_linked():
    """A nucleus missed in frames 0-1 starts its track (id 2) at frame 2; the user paints it into
    frame 1, where it gets a new id (4). Joined, the track keeps the id it had (2), in the frames
    the user did not touch too; without linked_up_to the earlier id is kept, as before."""
    frames = np.zeros((4, 30, 30), np.int32)
    for t in range(4):
        _square(frames[t], 20, 20, 1)  # present throughout, untouched
        if t >= 2:
            _square(frames[t], 2 + t, 2, 2)
        if t == 3:
            _square(frames[t], 2, 14, 3)
    frames[1, 3:9, 2:8] = 4  # painted in
    out = join_tracks(frames, linked_up_to=3)
    assert [out[t, 4 + t, 3] for t in range(1, 4)] == [2, 2, 2]
    assert np.all(out[:, 22, 22] == 1) and out[3, 4, 16] == 3
    np.testing.assert_array_equal(join_tracks(np.moveaxis(frames, 0, 1), time_axis=1, linked_up_to=3),
                                  np.moveaxis(out, 0, 1))
    assert [join_tracks(frames)[t, 4 + t, 3] for t in range(1, 4)] == [4, 4, 4]
    # Both ids linked before: the earlier one is kept.
    frames[1, 3:9, 2:8] = 3
    frames[3, 2:8, 14:20] = 0
    assert [join_tracks(frames, linked_up_to=3)[t, 4 + t, 3] for t in range(1, 4)] == [3, 3, 3]


def test_join_tracks_never_gives_one_id_to_two_objects():
    """An id that comes back later is not free: a track starting where it paused is not joined to it.
    A track that starts where nothing ended, or far from it, stays its own."""
    from napari_unet.tracking import join_tracks

    frames = np.zeros((3, 30, 30), np.int32)
    _square(frames[0], 2, 2, 1)
    _square(frames[1], 2, 2, 2)  # starts where 1 paused ...
    _square(frames[2], 2, 2, 2)
    _square(frames[2], 12, 12, 1)  # ... but 1 comes back at frame 2
    _square(frames[1], 20, 20, 4)  # starts, overlapping nothing that ended
    out = join_tracks(frames)
    np.testing.assert_array_equal(out, frames)
    with pytest.raises(SegmentationError, match="min_iou"):
        join_tracks(frames, min_iou=0)
    # Labels that cannot be linked are refused as link_over_time refuses them.
    for bad, kwargs, words in ((frames, {"time_axis": 3}, "no axis 3"), (frames > 0, {}, "integers"),
                               (frames - 1, {}, ">= 0")):
        with pytest.raises(SegmentationError, match=words):
            join_tracks(bad, **kwargs)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"time_axis": "T"}, "time_axis"),
    ({"time_axis": 1.0}, "time_axis"),
    ({"min_iou": "0.3"}, "min_iou"),
    ({"min_iou": None}, "min_iou"),
    ({"linked_up_to": "3"}, "linked_up_to"),
    ({"linked_up_to": -1}, "linked_up_to"),
])
def test_bad_parameters_are_a_clear_error(kwargs, fragment):
    """An axis letter for time_axis, or a setting given as text, is named, not a TypeError
    from deep inside numpy."""
    frames = np.zeros((2, 8, 8), np.int32)
    _square(frames[0], 1, 1, 1)
    _square(frames[1], 2, 2, 1)
    with pytest.raises(SegmentationError, match=fragment):
        link_over_time(frames, **kwargs)
    with pytest.raises(SegmentationError, match=fragment):
        join_tracks(frames, **kwargs)


def _movie(frames: list[list[tuple[int, float, float, float]]], shape=(64, 64)) -> np.ndarray:
    """Linked labels (T, Y, X): each frame a list of discs (id, centre y, centre x, radius)."""
    out = np.zeros((len(frames), *shape), np.int32)
    for t, discs in enumerate(frames):
        for label, cy, cx, r in discs:
            out[t][disc(shape, (cy, cx), r)] = label
    return out


def _rows(table) -> dict[tuple[int, int], tuple]:
    return {(int(i), int(t)): (float(y), float(x), int(p)) for i, t, y, x, p in
            zip(table["track_id"], table["t"], table["centroid_y"], table["centroid_x"], table["parent_id"])}


def test_tracks_table_rows_paths_and_divisions():
    """A disc moving, one disappearing, one appearing alone, and one dividing: one row per track and
    time point at the disc's centre; only the daughter that took a new id has a parent."""
    movie = _movie([
        [(1, 12, 10, 5), (2, 50, 50, 5), (3, 32, 40, 6)],
        [(1, 12, 13, 5), (2, 50, 50, 5), (3, 32, 40, 6)],
        [(1, 12, 16, 5), (3, 32, 38, 4), (4, 32, 47, 4), (5, 52, 10, 4)],   # 2 gone, 3 divided, 5 appears
        [(1, 12, 19, 5), (3, 32, 37, 4), (4, 32, 48, 4), (5, 52, 11, 4)],
    ])
    table = tracks_table(movie, axes="TYX")
    assert list(table) == ["track_id", "t", "centroid_y", "centroid_x", "parent_id"]
    assert [(int(i), int(t)) for i, t in zip(table["track_id"], table["t"])] == [
        (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3),
        (4, 2), (4, 3), (5, 2), (5, 3)]
    rows = _rows(table)
    for (label, t), (y, x, _) in rows.items():
        yy, xx = np.nonzero(movie[t] == label)
        assert (y, x) == pytest.approx((yy.mean(), xx.mean()))
    assert rows[(1, 3)][:2] == pytest.approx((12, 19))
    assert {label: p for (label, _), (_, _, p) in rows.items()} == {1: 0, 2: 0, 3: 0, 4: 3, 5: 0}


def test_tracks_table_of_a_linked_division_and_a_split_into_two_new_tracks():
    """Linking keeps the mother's id for the daughter that overlaps it most: the other is its child.
    When both daughters take new ids, the mother ends there and both are its children; a nucleus that
    jumps further than linking follows (one new track beside a track that ends) has no parent."""
    frames = [[(1, 20, 30, 7), (2, 50, 12, 4)], [(1, 20, 27, 5), (2, 50, 12, 4), (3, 20, 38, 4)]]
    linked = link_over_time(_movie(frames))
    assert linked[1, 20, 27] == 1 and linked[1, 20, 38] == 3
    assert {i: p for i, p in zip(tracks_table(linked, axes="TYX")["track_id"].tolist(),
                                  tracks_table(linked, axes="TYX")["parent_id"].tolist())} == {1: 0, 2: 0, 3: 1}
    both_new = _movie([[(1, 20, 30, 7), (2, 50, 12, 4)],
                       [(3, 20, 25, 4), (4, 20, 35, 4), (5, 50, 17, 4)]])  # 2 moved, lost its link
    table = tracks_table(both_new, axes="TYX")
    assert dict(zip(table["track_id"].tolist(), table["parent_id"].tolist())) == {1: 0, 2: 0, 3: 1, 4: 1, 5: 0}


def test_tracks_table_finds_divisions_of_uint64_ids_above_2_63():
    """Ids above 2**63 (uint64) are compared as themselves: read as int64 they turned negative, no
    longer the ids present, and a division among them had no parent."""
    base = 2**63 + 5
    frames = [[(1, 20, 30, 7), (2, 50, 12, 4)], [(1, 20, 30, 7), (2, 50, 12, 4)],
              [(3, 20, 25, 4), (4, 20, 35, 4), (2, 50, 12, 4)]]
    small = _movie(frames)
    huge = np.where(small > 0, small.astype(np.uint64) + np.uint64(base - 1), np.uint64(0))
    parents = {1: 0, 2: 0, 3: 1, 4: 1}
    table = tracks_table(small, axes="TYX")
    assert dict(zip(table["track_id"].tolist(), table["parent_id"].tolist())) == parents
    table = tracks_table(huge, axes="TYX")
    assert dict(zip(table["track_id"].tolist(), table["parent_id"].tolist())) == {
        base - 1 + i: (base - 1 + p if p else 0) for i, p in parents.items()}


def test_tracks_table_a_nucleus_appearing_beside_another_is_no_daughter():
    """A nucleus that comes into view touching one that goes on (sharing no pixels with it) has no
    parent; one that shares a fifth of its pixels with it, while its mother's own object stays in
    its footprint, is a daughter. A mother that goes on elsewhere (no longer in its footprint) did
    not divide."""
    movie = _movie([[(1, 20, 20, 6)], [(1, 20, 20, 6), (2, 20, 31, 4)]])
    assert movie[0, 20, 26] == 1 and movie[1, 20, 27] == 2, "2 touches 1's footprint"
    assert not np.any((movie[0] == 1) & (movie[1] == 2))
    assert tracks_table(movie, axes="TYX")["parent_id"].tolist() == [0, 0, 0]
    divided = _movie([[(1, 20, 20, 6)], [(1, 20, 18, 4), (2, 20, 27, 4)]])
    assert tracks_table(divided, axes="TYX")["parent_id"].tolist() == [0, 0, 1]
    moved_on = _movie([[(1, 20, 20, 6)], [(1, 20, 40, 6), (2, 20, 27, 4)]])
    with pytest.warns(UserWarning, match="one time point at a time"):  # as such labels would read
        assert tracks_table(moved_on, axes="TYX")["parent_id"].tolist() == [0, 0, 0]


def _parents_of(frames) -> dict[int, int]:
    """{track id: parent id} of ``frames`` (as for :func:`_movie`, each labelled on its own) linked."""
    table = tracks_table(link_over_time(_movie(frames)), axes="TYX")
    return dict(zip(table["track_id"].tolist(), table["parent_id"].tolist()))


def test_tracks_table_a_nucleus_back_over_a_neighbour_that_keeps_its_size_is_no_daughter():
    """A nucleus missed in a time point comes back as a new track with a fifth or more of it over its
    neighbour's object the time point before; the neighbour goes on at its own size, so it did not
    divide (the rule that read a fifth of overlap alone took it for the mother). A division halves
    the mother: each daughter is smaller."""
    # 1 missed at time point 1, where its neighbour 2 moves into its place, back at 2 as track 3.
    missed = [[(1, 20, 20, 6), (2, 20, 33, 6)], [(1, 20, 30, 6)], [(1, 20, 33, 6), (2, 20, 22, 6)]]
    linked = link_over_time(_movie(missed))
    assert linked[1, 20, 30] == 2 and linked[2, 20, 33] == 2 and linked[2, 20, 22] == 3
    assert np.sum((linked[2] == 3) & (linked[1] == 2)) >= 0.2 * np.sum(linked[2] == 3)
    assert _parents_of(missed) == {1: 0, 2: 0, 3: 0}
    # The neighbour divides instead, in 1's place: two nuclei of half its size (both new tracks).
    divided = [[(1, 20, 20, 6), (2, 20, 33, 6)], [(1, 20, 30, 6)], [(1, 20, 34, 4), (2, 20, 26, 4)]]
    assert _parents_of(divided) == {1: 0, 2: 0, 3: 2, 4: 2}


def test_tracks_table_nuclei_merged_for_a_time_point_did_not_divide():
    """Two touching nuclei labelled as one in a time point (a missed boundary) and apart again the next
    look like one object dividing in two halves; but the merged one is as big as the two, and the
    mother's size is the fewer pixels of her last two time points, there one nucleus'."""
    merged = [[(1, 20, 20, 6), (2, 20, 32, 6)], [(1, 20, 20, 6), (1, 20, 32, 6)],
              [(1, 20, 20, 6), (2, 20, 32, 6)]]
    linked = link_over_time(_movie(merged))
    assert len(np.unique(linked[1])) == 2 and len(np.unique(linked)) == 4, "one id ends, one starts"
    assert _parents_of(merged) == {1: 0, 2: 0, 3: 0}
    # One nucleus of the size of the merged two, dividing: a division.
    big = [[(1, 20, 26, 8.5)], [(1, 20, 26, 8.5)], [(1, 20, 20, 6), (2, 20, 32, 6)]]
    assert list(_parents_of(big).values()).count(0) == 1, "both halves are daughters of the big one"


def test_tracks_table_jittering_touching_discs_have_almost_no_parents():
    """Touching discs that jitter by about a pixel, and that segmentation misses in some time points,
    over a linked series: no nucleus divides. A disc back after a miss starts a new track touching
    its neighbours; it takes none of them for its mother (the rule that took a touching neighbour
    for one gave 24 of these 57 tracks a parent)."""
    rng = np.random.default_rng(0)
    centres = [(cy, cx) for cy in range(10, 60, 11) for cx in range(10, 60, 11)]  # 25 touching discs
    frames = [[(k, cy + dy, cx + dx, 5.5 + dr) for k, (cy, cx) in enumerate(centres, start=1)
               for dy, dx, dr, seen in [(*rng.normal(0, (1, 1, 0.3)), rng.random())] if seen > 0.15]
              for _ in range(12)]
    table = tracks_table(link_over_time(_movie(frames)), axes="TYX")
    tracks = dict(zip(table["track_id"].tolist(), table["parent_id"].tolist()))
    assert len(tracks) > 50, "the misses start new tracks beside neighbours"
    assert sum(p != 0 for p in tracks.values()) <= 0.05 * len(tracks)


def test_tracks_table_warns_of_labels_not_linked_over_time():
    """Each time point labelled on its own (ids from 1 in raster order): a disc that comes into view
    above the others takes id 1, and each id then names another nucleus in the next time point. The
    tracks would join unrelated nuclei: a warning says to link the labels first. Linked, the same
    labels (or steady ones, numbered 1 to n at every time point) give no warning."""
    import warnings

    from skimage.measure import label

    discs = [[(1, 30, 12, 5), (2, 45, 40, 5)], [(1, 8, 50, 5), (2, 31, 13, 5), (3, 45, 41, 5)]]
    unlinked = np.stack([label(frame > 0) for frame in _movie(discs)]).astype(np.int32)
    assert unlinked[1, 8, 50] == 1 and unlinked[1, 31, 13] == 2, "ids restart at 1 in raster order"
    with pytest.warns(UserWarning, match=r"one time point at a time.*id 1 at time point 0 shares no pixel "
                                         r"with id 1 at time point 1.*link_over_time\(labels, time_axis=1\)"):
        tracks_table(np.moveaxis(unlinked, 0, 1), axes="YTX")
    steady = _movie([[(1, 12, 10, 5), (2, 40, 40, 6)], [(1, 12, 12, 5), (2, 40, 41, 6)]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        linked = tracks_table(link_over_time(unlinked), axes="TYX")
        assert linked["track_id"].tolist() == [1, 1, 2, 2, 3]
        tracks_table(steady, axes="TYX")


def test_tracks_table_takes_the_measure_table_and_any_axis_order(monkeypatch):
    """The centroids come from a measure table given (not measured again); T need not be first,
    and time points may be 3D."""
    from napari_unet import measure, tracking

    movie = _movie([[(1, 12, 10, 5), (2, 40, 40, 6)], [(1, 12, 13, 5), (2, 40, 38, 4), (3, 40, 47, 4)]])
    volume = np.stack([movie, movie, np.zeros_like(movie)], axis=1)  # T, Z, Y, X
    zt = np.moveaxis(volume, 1, 0)  # Z, T, Y, X
    expected = tracks_table(volume, axes="TZYX")
    assert list(expected) == ["track_id", "t", "centroid_z", "centroid_y", "centroid_x", "parent_id"]
    assert expected["centroid_z"].tolist() == [0.5] * 5
    assert expected["parent_id"].tolist() == [0, 0, 0, 0, 2]
    table = measure.measure_objects(zt, axes="ZTYX")
    monkeypatch.setattr(tracking, "measure_objects", lambda *a, **k: pytest.fail("measured again"))
    got = tracks_table(zt, axes="ZTYX", table=table)
    for name, column in expected.items():
        np.testing.assert_allclose(got[name], column, err_msg=name)


def test_tracks_table_carries_measurements_as_features_in_its_row_order():
    """``features`` names measure-table columns given for each row too, reordered like the rows
    (the measure table is sorted by time, the tracks by track): each value is its own object's."""
    from napari_unet.measure import measure_objects

    movie = _movie([[(1, 12, 10, 5), (2, 40, 40, 7)], [(1, 12, 13, 5), (2, 40, 40, 6)]])
    image = movie.astype(np.float32) * 10  # track 1 reads 10, track 2 reads 20
    table = measure_objects(movie, axes="TYX", image=image, image_axes="TYX")
    got = tracks_table(movie, axes="TYX", table=table, features=["area", "mean_intensity"])
    assert list(got)[-3:] == ["parent_id", "area", "mean_intensity"]
    for i, t, area, mean in zip(got["track_id"], got["t"], got["area"], got["mean_intensity"]):
        assert area == np.count_nonzero(movie[t] == i) and mean == pytest.approx(10 * i)
    assert got["track_id"].tolist() == [1, 1, 2, 2] and got["area"][2] > got["area"][3]
    with pytest.raises(SegmentationError, match="lacks the columns mean_intensity.*image="):
        tracks_table(movie, axes="TYX", features=["mean_intensity"])


@pytest.mark.parametrize("labels, axes, table, words", [
    (np.zeros((2, 8, 8), np.int32), "ZYX", None, "need a time axis"),
    (np.zeros((2, 8, 8), np.int32), "TY", None, "one axis per letter"),
    (np.zeros((2, 8, 8), np.float32), "TYX", None, "integer instance labels"),
    (np.ones((2, 8, 8), np.int32), "TYX", {"label": np.array([1, 1]), "t": np.array([0, 1])},
     "lacks the columns centroid_y, centroid_x"),
])
def test_tracks_table_bad_input_is_a_clear_error(labels, axes, table, words):
    with pytest.raises(SegmentationError, match=words):
        tracks_table(labels, axes=axes, table=table)


def test_labels_given_as_a_file_name_are_named_as_such():
    """A file name (the CLI's instances file, say) is named as one to read first, as
    measure_objects does, not refused as text labels of shape ()."""
    for call in (lambda: tracks_table("movie_instances.tif", axes="TYX"),
                 lambda: link_over_time("movie_instances.tif"),
                 lambda: join_tracks(Path("movie_instances.tif"), time_axis=0)):
        with pytest.raises(SegmentationError, match="labels are a file name") as info:
            call()
        assert "'movie_instances.tif'" in str(info.value) and "shape ()" not in str(info.value)
        assert "napari_unet.io.read_labels(path)" in str(info.value)


def test_tracks_table_is_public():
    import napari_unet

    assert napari_unet.tracks_table is tracks_table and "tracks_table" in dir(napari_unet)
