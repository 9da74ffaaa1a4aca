"""Object-level scores for instance segmentations (label images).

Two integer label images of the same shape (2D, 3D or any other number of
dimensions; 0 is background) are compared object by object. The overlap of
every pair of objects comes from one joint histogram of (true id, predicted id)
over the pixels both label, never from a loop over pairs of masks. At each IoU
threshold, objects are matched one-to-one so that the number of matched pairs
with IoU >= threshold is as large as possible (ties broken by the larger total
IoU), which stays correct below a threshold of 0.5, where one object may pass
the threshold with several others.

Per threshold the scores are the usual counts and ratios::

    precision = TP / (TP + FP)      recall = TP / (TP + FN)
    F1        = 2 TP / (2 TP + FP + FN)
    AP        = TP / (TP + FP + FN)   (the "accuracy" of the StarDist papers)

A ratio whose denominator is zero is 1.0 when there was nothing to find and
nothing was found, and 0.0 otherwise. Over a data set, the headline AP and F1
come from counts summed over all images (the StarDist convention); the mean of
the per-image values is reported as well. In that mean, an image with no true
and no predicted objects counts 1.0 (StarDist's per-image scores give it 0.0);
such images add nothing to the summed counts.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import SegmentationError
from .wording import plural

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MatchScores",
    "DatasetScores",
    "match_instances",
    "evaluate",
    "overlaps",
]

#: IoU thresholds 0.5, 0.55, ..., 0.9.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))


def _ratio(num: float, den: float, *, nothing_to_do: bool) -> float:
    """``num / den``, or 1.0 / 0.0 when ``den`` is zero (see the module doc)."""
    if den == 0:
        return 1.0 if nothing_to_do else 0.0
    return float(num) / float(den)


@dataclass(frozen=True)
class MatchScores:
    """Matching counts at one IoU threshold, for one image or summed over many.

    Attributes
    ----------
    threshold : float
        Smallest IoU for a pair of objects to count as a match.
    tp, fp, fn : int
        Matched pairs, unmatched predicted objects, unmatched true objects.
    n_true, n_pred : int
        Objects in the ground truth and in the prediction
        (``n_true = tp + fn``, ``n_pred = tp + fp``).
    mean_matched_iou : float
        Mean IoU of the matched pairs; 0.0 when there are none.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    n_true: int
    n_pred: int
    mean_matched_iou: float

    @property
    def _empty(self) -> bool:
        return self.tp + self.fp + self.fn == 0

    @property
    def precision(self) -> float:
        """TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp, nothing_to_do=self._empty)

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn, nothing_to_do=self._empty)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, nothing_to_do=self._empty)

    @property
    def ap(self) -> float:
        """TP / (TP + FP + FN), the StarDist "accuracy" (average precision)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, nothing_to_do=self._empty)

    def to_dict(self) -> dict[str, Any]:
        """Counts and ratios as plain Python numbers, ready for :func:`json.dumps`."""
        return {
            "threshold": float(self.threshold),
            "ap": self.ap,
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "tp": int(self.tp),
            "fp": int(self.fp),
            "fn": int(self.fn),
            "n_true": int(self.n_true),
            "n_pred": int(self.n_pred),
            "mean_matched_iou": float(self.mean_matched_iou),
        }


@dataclass(frozen=True)
class DatasetScores:
    """Scores of a data set: per threshold, summed counts and per-image means.

    Attributes
    ----------
    totals : tuple of MatchScores, one per threshold
        Counts summed over all images; their ``ap`` and ``f1`` are the
        data-set scores. ``mean_matched_iou`` is the mean over all matched
        pairs of all images.
    per_image : tuple of tuple of MatchScores, shape (n_images, n_thresholds)
        The scores of each image, in the order the images came.
    """

    totals: tuple[MatchScores, ...]
    per_image: tuple[tuple[MatchScores, ...], ...]

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The IoU thresholds, in the order they were given."""
        return tuple(s.threshold for s in self.totals)

    @property
    def n_images(self) -> int:
        """Number of image pairs evaluated."""
        return len(self.per_image)

    @property
    def mean_image_ap(self) -> tuple[float, ...]:
        """Mean over images of the per-image AP, one value per threshold.

        An image with no true and no predicted objects counts 1.0.
        """
        return tuple(
            float(np.mean([img[k].ap for img in self.per_image])) for k in range(len(self.totals))
        )

    @property
    def mean_image_f1(self) -> tuple[float, ...]:
        """Mean over images of the per-image F1, one value per threshold.

        An image with no true and no predicted objects counts 1.0.
        """
        return tuple(
            float(np.mean([img[k].f1 for img in self.per_image])) for k in range(len(self.totals))
        )

    def to_dict(self, *, per_image: bool = False) -> dict[str, Any]:
        """Plain-Python summary for :func:`json.dumps`.

        Parameters
        ----------
        per_image : bool
            Also list the scores of every image (``n_images`` x thresholds).
        """
        rows = []
        for total, m_ap, m_f1 in zip(self.totals, self.mean_image_ap, self.mean_image_f1):
            row = total.to_dict()
            row["mean_image_ap"] = m_ap
            row["mean_image_f1"] = m_f1
            rows.append(row)
        out: dict[str, Any] = {
            "n_images": self.n_images,
            "thresholds": [float(t) for t in self.thresholds],
            "scores": rows,
        }
        if per_image:
            out["per_image"] = [[s.to_dict() for s in img] for img in self.per_image]
        return out

    def format_table(self) -> str:
        """A plain-text table: one row per threshold, summed-count scores first."""
        n_true = self.totals[0].n_true if self.totals else 0
        n_pred = self.totals[0].n_pred if self.totals else 0
        lines = [
            (f"{plural(self.n_images, 'image')}, {plural(n_true, 'true object')}, "
             f"{plural(n_pred, 'predicted object')}"),
            (f"{'IoU':>5} {'AP':>6} {'F1':>6} {'prec':>6} {'recall':>6} "
             f"{'TP':>7} {'FP':>7} {'FN':>7} {'img AP':>7}"),
        ]
        for s, m_ap in zip(self.totals, self.mean_image_ap):
            lines.append(
                f"{s.threshold:>5.2f} {s.ap:>6.3f} {s.f1:>6.3f} {s.precision:>6.3f} "
                f"{s.recall:>6.3f} {s.tp:>7d} {s.fp:>7d} {s.fn:>7d} {m_ap:>7.3f}"
            )
        lines.append(
            "AP, F1, prec, recall: from counts summed over images; img AP: mean per-image AP."
        )
        return "\n".join(lines)


def _check_thresholds(thresholds: Sequence[float] | float) -> tuple[float, ...]:
    if isinstance(thresholds, numbers.Real) and not isinstance(thresholds, bool):  # one given alone
        thresholds = (thresholds,)
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise SegmentationError(f"IoU thresholds must be numbers in (0, 1], got {thresholds!r}.") from None
    if not values:
        raise SegmentationError("Give at least one IoU threshold.")
    bad = [t for t in values if not 0.0 < t <= 1.0]
    if bad:
        raise SegmentationError(f"IoU thresholds must lie in (0, 1], got {bad}.")
    return values


def _check_labels(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise SegmentationError(
            f"The true and predicted label images differ in shape: {true.shape} vs {pred.shape}."
        )
    for name, lab in (("true", true), ("predicted", pred)):
        if not np.issubdtype(lab.dtype, np.integer):
            raise SegmentationError(
                f"The {name} label image has dtype {lab.dtype}; label images must hold integers "
                "(0 = background). Convert with .astype(int) if the values are whole numbers."
            )
        if np.issubdtype(lab.dtype, np.signedinteger) and lab.size and lab.min() < 0:
            raise SegmentationError(f"The {name} label image holds negative labels.")
    return true, pred


def overlaps(
    true: np.ndarray, pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every pair of overlapping objects, from a joint histogram.

    Returns
    -------
    true_ids, pred_ids : ndarray
        The nonzero ids of each image, sorted (their sizes are the object counts).
    ti, pi : ndarray (K,) int64
        Indices into ``true_ids`` and ``pred_ids`` of the K overlapping pairs.
    iou : ndarray (K,) float64
    """
    t = true.ravel()
    p = pred.ravel()
    t_ids, t_area = np.unique(t[t != 0], return_counts=True)
    p_ids, p_area = np.unique(p[p != 0], return_counts=True)
    both = (t != 0) & (p != 0)
    # Rank ids first, so the combined key fits int64 whatever the label values.
    t_rank = np.searchsorted(t_ids, t[both]).astype(np.int64)
    p_rank = np.searchsorted(p_ids, p[both]).astype(np.int64)
    keys, inter = np.unique(t_rank * max(p_ids.size, 1) + p_rank, return_counts=True)
    ti, pi = np.divmod(keys, max(p_ids.size, 1))
    iou = inter / (t_area[ti] + p_area[pi] - inter)
    return t_ids, p_ids, ti, pi, iou


def _match(ti: np.ndarray, pi: np.ndarray, iou: np.ndarray, threshold: float) -> np.ndarray:
    """IoUs of a maximum one-to-one matching among pairs with IoU >= threshold.

    Pairs whose two objects pass the threshold with no other object are
    matched directly (always the case above 0.5). Only the remaining, ambiguous
    objects go to :func:`scipy.optimize.linear_sum_assignment`, with a cost
    that counts matches first and uses IoU to break ties.
    """
    ok = iou >= threshold
    ti, pi, iou = ti[ok], pi[ok], iou[ok]
    if iou.size == 0:
        return iou
    _, t_inv, t_deg = np.unique(ti, return_inverse=True, return_counts=True)
    _, p_inv, p_deg = np.unique(pi, return_inverse=True, return_counts=True)
    alone = (t_deg[t_inv] == 1) & (p_deg[p_inv] == 1)
    matched = [iou[alone]]
    if not alone.all():
        _, rows = np.unique(ti[~alone], return_inverse=True)
        _, cols = np.unique(pi[~alone], return_inverse=True)
        scores = np.zeros((rows.max() + 1, cols.max() + 1))
        scores[rows, cols] = iou[~alone]
        # Each match is worth 1; the IoU bonus sums to < 0.5, so never beats a match.
        cost = -(scores > 0).astype(float) - scores / (2 * min(scores.shape))
        r, c = linear_sum_assignment(cost)
        good = scores[r, c] > 0
        matched.append(scores[r[good], c[good]])
    return np.concatenate(matched)


def match_instances(
    true: np.ndarray,
    pred: np.ndarray,
    *,
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
) -> list[MatchScores]:
    """Match the objects of two label images one-to-one and count the outcome.

    Parameters
    ----------
    true, pred : ndarray (...) of integers, same shape
        Instance label images, 2D (Y, X) or 3D (Z, Y, X); 0 is background,
        other values are object ids (they need not be consecutive).
    thresholds : sequence of float in (0, 1], or one float
        IoU thresholds; a pair matches when its IoU >= threshold.

    Returns
    -------
    list of MatchScores
        One per threshold, in the given order.

    Raises
    ------
    SegmentationError
        Shapes differ, a label image is not integer or holds negative values,
        or a threshold lies outside (0, 1].
    """
    thresholds = _check_thresholds(thresholds)
    true, pred = _check_labels(true, pred)
    true_ids, pred_ids, ti, pi, iou = overlaps(true, pred)
    n_true, n_pred = true_ids.size, pred_ids.size
    out = []
    for thr in thresholds:
        matched = _match(ti, pi, iou, thr)
        tp = int(matched.size)
        out.append(
            MatchScores(
                threshold=thr,
                tp=tp,
                fp=n_pred - tp,
                fn=n_true - tp,
                n_true=n_true,
                n_pred=n_pred,
                mean_matched_iou=float(matched.mean()) if tp else 0.0,
            )
        )
    return out


def _sum_scores(scores: Sequence[MatchScores]) -> MatchScores:
    """Add up the counts of one threshold over several images."""
    tp = sum(s.tp for s in scores)
    iou_sum = sum(s.mean_matched_iou * s.tp for s in scores)
    return MatchScores(
        threshold=scores[0].threshold,
        tp=tp,
        fp=sum(s.fp for s in scores),
        fn=sum(s.fn for s in scores),
        n_true=sum(s.n_true for s in scores),
        n_pred=sum(s.n_pred for s in scores),
        mean_matched_iou=iou_sum / tp if tp else 0.0,
    )


def evaluate(
    true_labels: Iterable[np.ndarray],
    pred_labels: Iterable[np.ndarray],
    *,
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
) -> DatasetScores:
    """Score predicted label images against ground truth over a data set.

    The two iterables are walked together, one pair at a time, so they may be
    generators that load each image on demand.

    Parameters
    ----------
    true_labels, pred_labels : iterables of ndarray (...) of integers
        Ground-truth and predicted label images, paired in order; each pair
        has one shape, which may differ from pair to pair. An array is walked
        along its first axis: a (Z, Y, X) array is Z images of one plane each,
        so give a volume as ``[volume]`` to score it as one 3D image.
    thresholds : sequence of float in (0, 1], or one float
        IoU thresholds.

    Returns
    -------
    DatasetScores
        ``totals[k].ap`` / ``.f1`` are the scores from counts summed over all
        images at ``thresholds[k]``; ``mean_image_ap[k]`` / ``mean_image_f1[k]``
        the means of the per-image scores.

    Raises
    ------
    SegmentationError
        No images, unequal numbers of true and predicted images, or any
        problem :func:`match_instances` reports (with the pair's index).
    """
    thresholds = _check_thresholds(thresholds)
    if any(isinstance(a, np.ndarray) and a.ndim < 3 for a in (true_labels, pred_labels)):
        # Walking one 2D image would score each of its rows as an image of its own. (A stack
        # (N, Y, X) is a sequence of N images, as before.)
        raise SegmentationError(
            "evaluate takes sequences of label images (one per image): for a single pair give "
            "[true], [pred], or use match_instances(true, pred).")
    missing = object()
    per_image: list[tuple[MatchScores, ...]] = []
    pairs = itertools.zip_longest(true_labels, pred_labels, fillvalue=missing)
    for index, (true, pred) in enumerate(pairs):
        if true is missing or pred is missing:
            fewer, more = ("true", "predicted") if true is missing else ("predicted", "true")
            raise SegmentationError(
                f"There are fewer {fewer} label images ({index}) than {more} ones; "
                "give one prediction per ground-truth image."
            )
        if np.ndim(true) < 2 or np.ndim(pred) < 2:
            # Rows of one image given as nested lists: each row would be scored as an image.
            raise SegmentationError(
                f"Image pair {index} is not an image ({np.ndim(true)} and {np.ndim(pred)} dimensions): "
                "evaluate takes sequences of 2D or 3D label images; for a single pair give "
                "[true], [pred], or use match_instances(true, pred).")
        try:
            per_image.append(tuple(match_instances(true, pred, thresholds=thresholds)))
        except SegmentationError as exc:
            raise SegmentationError(f"Image pair {index}: {exc}") from exc
    if not per_image:
        raise SegmentationError("There are no label images to evaluate.")
    totals = tuple(_sum_scores([img[k] for img in per_image]) for k in range(len(thresholds)))
    return DatasetScores(totals=totals, per_image=tuple(per_image))
