"""Object-level matching scores on hand-made label images with known answers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from napari_unet.errors import SegmentationError
from napari_unet.metrics import (
    DEFAULT_THRESHOLDS,
    DatasetScores,
    MatchScores,
    evaluate,
    match_instances,
)


def square(img: np.ndarray, label: int, y: int, x: int, h: int, w: int) -> np.ndarray:
    img[y : y + h, x : x + w] = label
    return img


def blank(shape=(40, 40), dtype=np.uint16) -> np.ndarray:
    return np.zeros(shape, dtype)


def by_threshold(scores: list[MatchScores]) -> dict[float, MatchScores]:
    return {s.threshold: s for s in scores}


def test_default_thresholds():
    assert DEFAULT_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def test_perfect_match():
    true = square(square(blank(), 1, 2, 2, 10, 10), 2, 20, 20, 8, 12)
    scores = match_instances(true, true.copy())
    assert [s.threshold for s in scores] == list(DEFAULT_THRESHOLDS)
    for s in scores:
        assert (s.tp, s.fp, s.fn, s.n_true, s.n_pred) == (2, 0, 0, 2, 2)
        assert s.ap == s.f1 == s.precision == s.recall == s.mean_matched_iou == 1.0


def test_shifted_square_iou_two_thirds():
    # 10x10 square shifted 2 px: overlap 10*8 = 80, union 120, IoU 2/3.
    true = square(blank(), 1, 10, 10, 10, 10)
    pred = square(blank(), 1, 10, 12, 10, 10)
    s = by_threshold(match_instances(true, pred))
    for thr in (0.5, 0.55, 0.6, 0.65):
        assert (s[thr].tp, s[thr].fp, s[thr].fn) == (1, 0, 0)
        assert s[thr].ap == 1.0
        assert s[thr].mean_matched_iou == pytest.approx(2 / 3)
    for thr in (0.7, 0.75, 0.8, 0.85, 0.9):
        assert (s[thr].tp, s[thr].fp, s[thr].fn) == (0, 1, 1)
        assert s[thr].ap == s[thr].f1 == s[thr].precision == s[thr].recall == 0.0
        assert s[thr].mean_matched_iou == 0.0


def test_two_true_merged_into_one_prediction_exact_half():
    # Two adjacent 10x10 squares; the prediction is exactly their union:
    # IoU 100/200 = 0.5 with both. At most one of them may match.
    true = square(square(blank(), 1, 0, 0, 10, 10), 2, 0, 10, 10, 10)
    pred = square(blank(), 5, 0, 0, 10, 20)
    s = by_threshold(match_instances(true, pred, thresholds=(0.3, 0.5, 0.55)))
    for thr in (0.3, 0.5):
        assert (s[thr].tp, s[thr].fp, s[thr].fn) == (1, 0, 1)
        assert s[thr].precision == 1.0
        assert s[thr].recall == 0.5
        assert s[thr].f1 == pytest.approx(2 / 3)
        assert s[thr].ap == 0.5
        assert s[thr].mean_matched_iou == 0.5
    assert (s[0.55].tp, s[0.55].fp, s[0.55].fn) == (0, 1, 2)


def test_two_true_merged_unequal():
    # Objects of 100 and 50 px merged into one 150 px prediction: IoU 2/3 and 1/3.
    true = square(square(blank(), 1, 0, 0, 10, 10), 2, 0, 10, 10, 5)
    pred = square(blank(), 1, 0, 0, 10, 15)
    s = by_threshold(match_instances(true, pred, thresholds=(0.3, 0.65, 0.7)))
    assert (s[0.3].tp, s[0.3].fp, s[0.3].fn) == (1, 0, 1)
    assert s[0.3].mean_matched_iou == pytest.approx(2 / 3)  # the better pair wins
    assert (s[0.65].tp, s[0.65].fp, s[0.65].fn) == (1, 0, 1)
    assert (s[0.7].tp, s[0.7].fp, s[0.7].fn) == (0, 1, 2)


def test_one_true_split_into_two_predictions():
    # A 10x20 object cut into 10x12 and 10x8 pieces: IoU 120/200 = 0.6 and 80/200 = 0.4.
    true = square(blank(), 1, 0, 0, 10, 20)
    pred = square(square(blank(), 1, 0, 0, 10, 12), 2, 0, 12, 10, 8)
    s = by_threshold(match_instances(true, pred, thresholds=(0.3, 0.5, 0.6, 0.65)))
    for thr in (0.3, 0.5, 0.6):
        assert (s[thr].tp, s[thr].fp, s[thr].fn) == (1, 1, 0)
        assert s[thr].precision == 0.5
        assert s[thr].recall == 1.0
        assert s[thr].ap == 0.5
        assert s[thr].f1 == pytest.approx(2 / 3)
        assert s[thr].mean_matched_iou == pytest.approx(0.6)
    assert (s[0.65].tp, s[0.65].fp, s[0.65].fn) == (0, 2, 1)


def test_empty_prediction():
    true = square(square(blank(), 1, 0, 0, 5, 5), 2, 10, 10, 5, 5)
    for s in match_instances(true, blank()):
        assert (s.tp, s.fp, s.fn, s.n_true, s.n_pred) == (0, 0, 2, 2, 0)
        assert s.ap == s.f1 == s.precision == s.recall == 0.0


def test_empty_truth():
    pred = square(square(blank(), 3, 0, 0, 5, 5), 9, 10, 10, 5, 5)
    for s in match_instances(blank(), pred):
        assert (s.tp, s.fp, s.fn, s.n_true, s.n_pred) == (0, 2, 0, 0, 2)
        assert s.ap == s.f1 == s.precision == s.recall == 0.0


def test_both_empty():
    for s in match_instances(blank(), blank()):
        assert (s.tp, s.fp, s.fn, s.n_true, s.n_pred) == (0, 0, 0, 0, 0)
        assert s.ap == s.f1 == s.precision == s.recall == 1.0
        assert s.mean_matched_iou == 0.0


def test_label_ids_do_not_matter():
    true = square(square(blank(), 1, 0, 0, 10, 10), 2, 20, 20, 10, 10)
    pred = square(square(blank(), 1, 0, 2, 10, 10), 2, 20, 20, 10, 10)
    expected = [s.to_dict() for s in match_instances(true, pred)]
    big = 2**40 + 3
    true2 = np.select([true == 1, true == 2], [big, 7], 0).astype(np.int64)
    pred2 = np.select([pred == 1, pred == 2], [13, big], 0).astype(np.int64)
    assert [s.to_dict() for s in match_instances(true2, pred2)] == expected
    mixed = match_instances(true.astype(np.uint8), pred.astype(np.int32))
    assert [s.to_dict() for s in mixed] == expected


def test_3d_labels():
    # 4x4x4 cube shifted 1 voxel in z: overlap 3*16 = 48, union 80, IoU 0.6.
    true = np.zeros((8, 6, 6), np.int32)
    pred = np.zeros((8, 6, 6), np.int32)
    true[1:5, 1:5, 1:5] = 1
    pred[2:6, 1:5, 1:5] = 4
    s = by_threshold(match_instances(true, pred, thresholds=(0.6, 0.65)))
    assert (s[0.6].tp, s[0.6].fp, s[0.6].fn) == (1, 0, 0)
    assert s[0.6].mean_matched_iou == pytest.approx(0.6)
    assert (s[0.65].tp, s[0.65].fp, s[0.65].fn) == (0, 1, 1)


def test_assignment_beats_greedy_below_half():
    # On a line: t2 = [0, 4), t1 = [4, 16); p1 = [0, 11), p2 = [11, 16).
    # IoU(t1, p1) = 7/16, IoU(t1, p2) = 5/12, IoU(t2, p1) = 4/11, IoU(t2, p2) = 0.
    # Greedy by IoU takes (t1, p1) first and ends with 1 match; the best
    # one-to-one matching at 0.3 is (t1, p2) + (t2, p1): 2 matches.
    true = np.zeros((3, 16), np.uint8)
    pred = np.zeros((3, 16), np.uint8)
    true[:, 0:4] = 2
    true[:, 4:16] = 1
    pred[:, 0:11] = 1
    pred[:, 11:16] = 2
    (s,) = match_instances(true, pred, thresholds=(0.3,))
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    assert s.mean_matched_iou == pytest.approx((4 / 11 + 5 / 12) / 2)


def naive_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU matrix (n_true, n_pred) by looping over every pair of masks."""
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [i for i in np.unique(pred) if i]
    iou = np.zeros((len(t_ids), len(p_ids)))
    for r, a in enumerate(t_ids):
        for c, b in enumerate(p_ids):
            iou[r, c] = ((true == a) & (pred == b)).sum() / ((true == a) | (pred == b)).sum()
    return iou


def most_matches(iou: np.ndarray, threshold: float) -> int:
    """Largest one-to-one matching with IoU >= threshold, by trying them all."""
    n_true, n_pred = iou.shape
    for k in range(min(n_true, n_pred), 0, -1):
        for rows in itertools.combinations(range(n_true), k):
            for cols in itertools.permutations(range(n_pred), k):
                if all(iou[r, c] >= threshold for r, c in zip(rows, cols)):
                    return k
    return 0


def test_matches_brute_force_on_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true, pred = blank((12, 12), np.int32), blank((12, 12), np.int32)
        for img in (true, pred):
            for label in range(1, rng.integers(1, 6)):
                y, x = rng.integers(0, 10, 2)
                h, w = rng.integers(2, 6, 2)
                img[y : y + h, x : x + w] = label * 3
        iou = naive_iou(true, pred)
        for s in match_instances(true, pred, thresholds=(0.1, 0.3, 0.5, 0.7)):
            best = most_matches(iou, s.threshold)
            assert (s.tp, s.fp, s.fn) == (best, iou.shape[1] - best, iou.shape[0] - best)


def test_dataset_sums_counts_and_averages_images():
    # Image A: one object found perfectly. Image B: three objects, none predicted.
    true_a = square(blank(), 1, 0, 0, 5, 5)
    true_b = square(square(square(blank(), 1, 0, 0, 5, 5), 2, 10, 10, 5, 5), 3, 20, 20, 5, 5)
    result = evaluate(iter([true_a, true_b]), iter([true_a.copy(), blank()]))
    assert isinstance(result, DatasetScores)
    assert result.n_images == 2
    assert result.thresholds == DEFAULT_THRESHOLDS
    for total in result.totals:
        assert (total.tp, total.fp, total.fn, total.n_true, total.n_pred) == (1, 0, 3, 4, 1)
        assert total.ap == 1 / 4  # 1 / (1 + 0 + 3)
        assert total.f1 == 2 / 5  # 2 / (2 + 0 + 3)
        assert total.precision == 1.0
        assert total.recall == 1 / 4
        assert total.mean_matched_iou == 1.0
    assert result.mean_image_ap == (0.5,) * 9  # (1 + 0) / 2
    assert result.mean_image_f1 == (0.5,) * 9


def test_dataset_with_only_empty_images_is_perfect():
    result = evaluate([blank(), blank((5, 5, 5))], [blank(), blank((5, 5, 5))], thresholds=(0.5,))
    assert (result.totals[0].tp, result.totals[0].fp, result.totals[0].fn) == (0, 0, 0)
    assert result.totals[0].ap == result.totals[0].f1 == 1.0
    assert result.mean_image_ap == (1.0,)


def test_dataset_mean_matched_iou_is_over_all_pairs():
    # Image A: IoU 2/3 pair; image B: two perfect pairs -> (2/3 + 1 + 1) / 3.
    true_a = square(blank(), 1, 10, 10, 10, 10)
    pred_a = square(blank(), 1, 10, 12, 10, 10)
    true_b = square(square(blank(), 1, 0, 0, 5, 5), 2, 10, 10, 5, 5)
    result = evaluate([true_a, true_b], [pred_a, true_b], thresholds=(0.5,))
    assert result.totals[0].mean_matched_iou == pytest.approx((2 / 3 + 2) / 3)


def test_to_dict_is_json_and_table_lists_thresholds():
    true = square(blank(), 1, 10, 10, 10, 10)
    pred = square(blank(), 1, 10, 12, 10, 10)
    result = evaluate([true], [pred])
    data = json.loads(json.dumps(result.to_dict(per_image=True), allow_nan=False))
    assert data["n_images"] == 1
    assert data["thresholds"] == list(DEFAULT_THRESHOLDS)
    assert [row["tp"] for row in data["scores"]] == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert data["scores"][0]["mean_image_ap"] == 1.0
    assert len(data["per_image"]) == 1 and len(data["per_image"][0]) == 9
    assert "per_image" not in result.to_dict()
    table = result.format_table()
    for thr in ("0.50", "0.65", "0.90"):
        assert thr in table
    assert "AP" in table and "FN" in table


def test_shape_mismatch_raises():
    with pytest.raises(SegmentationError, match="shape"):
        match_instances(blank((10, 10)), blank((10, 11)))
    with pytest.raises(ValueError, match="pair 1"):
        evaluate([blank(), blank((10, 10))], [blank(), blank((10, 11))])


@pytest.mark.parametrize("dtype", [np.float32, bool])
def test_non_integer_labels_raise(dtype):
    with pytest.raises(SegmentationError, match="integers"):
        match_instances(blank(dtype=dtype), blank())


def test_negative_labels_raise():
    with pytest.raises(SegmentationError, match="negative"):
        match_instances(np.full((4, 4), -1, np.int32), blank((4, 4)))


def test_bad_thresholds_raise():
    for bad in ((), (0.0,), (1.5,), True, "0.5", None):
        with pytest.raises(SegmentationError, match="threshold"):
            match_instances(blank(), blank(), thresholds=bad)


def test_one_threshold_may_be_given_alone():
    true = blank()
    true[2:6, 2:6] = 1
    (alone,) = match_instances(true, true, thresholds=0.5)
    assert alone == match_instances(true, true, thresholds=(0.5,))[0] and alone.tp == 1


def test_evaluate_refuses_a_single_pair_of_arrays():
    """Walking one 2D array would score each row as an image of its own."""
    true = blank()
    true[2:6, 2:6] = 1
    with pytest.raises(SegmentationError, match=r"give \[true\], \[pred\]"):
        evaluate(true, true)
    assert evaluate([true], [true]).totals[0].ap == 1.0
    stack = np.stack([true, true])  # (N, Y, X): N images
    assert evaluate(stack, stack).n_images == 2
    # The same image as nested lists: refused too, not scored row by row.
    with pytest.raises(SegmentationError, match=r"Image pair 0 is not an image .*give \[true\], \[pred\]"):
        evaluate(true.tolist(), true.tolist())
    assert evaluate([true.tolist()], [true.tolist()]).totals[0].ap == 1.0


def test_evaluate_needs_equal_nonzero_counts():
    with pytest.raises(SegmentationError, match="no label images"):
        evaluate([], [])
    with pytest.raises(SegmentationError, match="fewer predicted"):
        evaluate([blank(), blank()], [blank()])
    with pytest.raises(SegmentationError, match="fewer true"):
        evaluate([blank()], [blank(), blank()])


def test_evaluate_consumes_pairs_lazily():
    seen = []

    def gen(tag):
        for i in range(3):
            seen.append((tag, i))
            yield square(blank(), 1, i, i, 5, 5)

    evaluate(gen("t"), gen("p"), thresholds=(0.5,))
    assert seen == [("t", 0), ("p", 0), ("t", 1), ("p", 1), ("t", 2), ("p", 2)]
