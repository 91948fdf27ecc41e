"""Instance segmentation scores (Falk et al. 2019, M6.1): Hungarian object IoU, matching scores, PQ.

:func:`object_iou` -- Hungarian matching maximising the summed IoU, zero-IoU pairs are no match, mean IoU over
*ground-truth* objects (unmatched ground truth counts 0, false positives are ignored).
:func:`matching_scores` -- tp/fp/fn, precision, recall, F1 and the DSB-2018 / StarDist "average precision"
``tp / (tp + fp + fn)`` at a range of IoU thresholds. :func:`panoptic_quality` -- Kirillov et al. 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from unet.metrics.contingency import FloatArray, IntArray, overlaps, ratio

#: IoU thresholds 0.5, 0.55, ..., 0.9 (the Data Science Bowl 2018 range stops at 0.95).
DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


# ------------------------------------------------------------------------------------------ matching
def max_weight_matching(
    rows: IntArray, cols: IntArray, weights: FloatArray, n_rows: int, n_cols: int
) -> IntArray:
    """Maximum-weight bipartite matching over the given (distinct) edges, weights > 0; returns edge indices.

    Solved exactly as a sparse linear assignment (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``,
    LAPJVsp): every row gets a private dummy column of cost ``c0`` and every real edge costs ``c0 - w`` with
    ``c0 > max w``, so a full row matching of minimum cost maximises the summed weight of the real edges. This
    equals ``linear_sum_assignment(dense, maximize=True)`` without the dense ``n_rows x n_cols`` matrix.
    """
    if rows.size == 0 or n_rows == 0 or n_cols == 0:
        return np.zeros(0, dtype=np.int64)
    c0 = float(weights.max()) + 1.0
    dummy = np.arange(n_rows, dtype=np.int64)
    graph = sparse.csr_matrix(
        (
            np.concatenate([c0 - weights, np.full(n_rows, c0)]),
            (np.concatenate([rows, dummy]), np.concatenate([cols, n_cols + dummy])),
        ),
        shape=(n_rows, n_cols + n_rows),
    )
    r, c = min_weight_full_bipartite_matching(graph)
    real = c < n_cols
    key = rows.astype(np.int64) * n_cols + cols
    order = np.argsort(key)
    pos = np.searchsorted(key, r[real].astype(np.int64) * n_cols + c[real], sorter=order)
    return np.sort(order[pos])


@dataclass(frozen=True)
class ObjectIoUResult:
    """Result of :func:`object_iou` (Falk 2019 M6.1).

    Attributes:
        mean_iou: Mean over ground-truth objects of the IoU with the matched prediction (0 if unmatched);
            ``nan`` if there is no ground-truth object.
        per_gt_iou: That IoU for each ground-truth object, aligned with ``gt_ids``, shape ``(n_gt,)``.
        gt_ids: Ground-truth object labels, shape ``(n_gt,)``.
        pred_ids: Predicted object labels, shape ``(n_pred,)``.
        matches: ``(gt label, pred label)`` of each 1:1 correspondence, shape ``(tp, 2)``.
        matched_iou: IoU of each correspondence, shape ``(tp,)``.
        n_gt: Number of ground-truth objects.
        n_pred: Number of predicted objects.
    """

    mean_iou: float
    per_gt_iou: FloatArray
    gt_ids: IntArray
    pred_ids: IntArray
    matches: IntArray
    matched_iou: FloatArray
    n_gt: int
    n_pred: int

    @property
    def tp(self) -> int:
        """Matched pairs (IoU > 0)."""
        return int(self.matched_iou.size)

    @property
    def fp(self) -> int:
        """Unmatched predicted objects."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """Unmatched ground-truth objects."""
        return self.n_gt - self.tp


def object_iou(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> ObjectIoUResult:
    """Average object IoU with Hungarian 1:1 matching, exactly as Falk et al. 2019, M6.1.

    The predicted objects are the labels of ``pred_labels`` as given: for a binary U-Net output the caller
    labels connected components with 8-neighbourhood first (``scipy.ndimage.label(mask, np.ones((3, 3)))``;
    full connectivity ``np.ones((3,) * ndim)`` in 3D). The IoU of every (prediction, ground truth) pair is
    computed and the Hungarian algorithm yields the 1:1 correspondences maximising the summed (equivalently,
    average) IoU. Unmatched segments and matches with zero IoU are false positives / false negatives. The
    average is taken over ground-truth objects -- false negatives contribute 0 -- and false positives are not
    part of it.

    Args:
        gt_labels: Ground-truth instance labels (0 = background), 2D or 3D.
        pred_labels: Predicted instance labels (0 = background), same shape.

    Returns:
        An :class:`ObjectIoUResult`.
    """
    ov = overlaps(gt_labels, pred_labels)
    n_gt, n_pred = ov.gt_ids.size, ov.pred_ids.size
    pos = np.flatnonzero(ov.iou > 0)  # zero-IoU pairs are never matches
    e = pos[max_weight_matching(ov.rows[pos], ov.cols[pos], ov.iou[pos], n_gt, n_pred)]
    e = e[np.argsort(ov.rows[e], kind="stable")]  # sorted by ground-truth label
    per_gt = np.zeros(n_gt, dtype=np.float64)
    per_gt[ov.rows[e]] = ov.iou[e]
    matches = np.stack([ov.gt_ids[ov.rows[e]], ov.pred_ids[ov.cols[e]]], axis=1).reshape(-1, 2)
    mean = float(per_gt.mean()) if n_gt else float("nan")
    return ObjectIoUResult(mean, per_gt, ov.gt_ids, ov.pred_ids, matches, ov.iou[e], n_gt, n_pred)


@dataclass(frozen=True)
class MatchingScores:
    """Result of :func:`matching_scores`; per-threshold arrays have shape ``(T,)``.

    Attributes:
        thresholds: IoU thresholds ``t``.
        tp: Matched pairs with ``IoU >= t``.
        fp: Predicted objects without such a match.
        fn: Ground-truth objects without such a match.
        precision: ``tp / (tp + fp)``.
        recall: ``tp / (tp + fn)``.
        f1: ``2 tp / (2 tp + fp + fn)``.
        accuracy: ``tp / (tp + fp + fn)`` -- the per-threshold "precision" of the Data Science Bowl 2018 and
            StarDist's ``accuracy``.
        average_precision: Mean of ``accuracy`` over the thresholds (DSB 2018 score for one image).
        mean_f1: Mean of ``f1`` over the thresholds.
        n_gt: Number of ground-truth objects.
        n_pred: Number of predicted objects.
    """

    thresholds: FloatArray
    tp: IntArray
    fp: IntArray
    fn: IntArray
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    accuracy: FloatArray
    average_precision: float
    mean_f1: float
    n_gt: int
    n_pred: int


def accuracy_from_counts(tp: int, fp: int, fn: int) -> float:
    """``tp / (tp + fp + fn)``: the per-threshold "accuracy" of StarDist and the Data Science Bowl 2018
    (at IoU 0.5: AP@0.5). ``0 / 0`` (no objects, no predictions) is 1.0, as :func:`unet.metrics.ratio`.

    From counts, so that it can be computed again from stored tp/fp/fn (e.g. of older records) and from
    counts pooled over images.

    >>> accuracy_from_counts(3, 1, 2)
    0.5
    >>> accuracy_from_counts(0, 0, 0)
    1.0
    """
    tp, fp, fn = int(tp), int(fp), int(fn)
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be >= 0, got tp={tp}, fp={fp}, fn={fn}")
    return ratio(tp, tp + fp + fn, fp + fn)


def matching_scores(
    gt_labels: npt.ArrayLike,
    pred_labels: npt.ArrayLike,
    thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
) -> MatchingScores:
    """Object-level tp/fp/fn, precision, recall, F1 and average precision over IoU thresholds.

    At each threshold ``t`` only pairs with ``IoU >= t`` may match; among those, a 1:1 assignment is chosen
    that maximises the number of matches and, among maximum matchings, the summed IoU (StarDist's
    ``matching``). For ``t > 0.5`` each object has at most one partner with ``IoU >= t``, so the matching is
    unique and identical to the pure IoU-maximising Hungarian matching of :func:`object_iou` restricted to
    ``IoU >= t``. Per threshold: precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)``, F1
    ``2 tp / (2 tp + fp + fn)`` and accuracy ``tp / (tp + fp + fn)``; ``average_precision`` is the mean
    accuracy over the thresholds (Data Science Bowl 2018, Caicedo et al. 2019; StarDist) and ``mean_f1`` the
    mean F1. Empty cases follow the package convention (:func:`unet.metrics.ratio`: ``0 / 0`` is 1 only if
    there is no error).

    Args:
        gt_labels: Ground-truth instance labels (0 = background), 2D or 3D.
        pred_labels: Predicted instance labels (0 = background), same shape.
        thresholds: IoU thresholds in ``(0, 1]``.

    Returns:
        A :class:`MatchingScores`.
    """
    ths = np.asarray(thresholds, dtype=np.float64).ravel()
    if ths.size == 0 or np.any(ths <= 0) or np.any(ths > 1):
        raise ValueError(f"thresholds must be non-empty and in (0, 1], got {thresholds}")
    ov = overlaps(gt_labels, pred_labels)
    n_gt, n_pred = ov.gt_ids.size, ov.pred_ids.size
    tp = np.zeros(ths.size, dtype=np.int64)
    for k, t in enumerate(ths):
        sel = ov.iou >= t
        if not np.any(sel):
            continue
        rows, cols, w = ov.rows[sel], ov.cols[sel], ov.iou[sel]
        if np.unique(rows).size == rows.size and np.unique(cols).size == cols.size:
            tp[k] = rows.size  # already a matching (always the case for t > 0.5)
        else:
            # cardinality first, IoU as tie-breaker: sum of the IoU terms is < 1 <= one extra match
            tp[k] = max_weight_matching(rows, cols, 1.0 + w / (w.size + 1.0), n_gt, n_pred).size
    fp, fn = n_pred - tp, n_gt - tp
    precision = np.array([ratio(a, a + b, c) for a, b, c in zip(tp, fp, fn, strict=True)])
    recall = np.array([ratio(a, a + c, b) for a, b, c in zip(tp, fp, fn, strict=True)])
    f1 = np.array([ratio(2 * a, 2 * a + b + c, b + c) for a, b, c in zip(tp, fp, fn, strict=True)])
    acc = np.array([accuracy_from_counts(a, b, c) for a, b, c in zip(tp, fp, fn, strict=True)])
    return MatchingScores(
        ths, tp, fp, fn, precision, recall, f1, acc, float(acc.mean()), float(f1.mean()), n_gt, n_pred
    )


@dataclass(frozen=True)
class PanopticQuality:
    """Result of :func:`panoptic_quality`: ``pq = sq * rq``.

    Attributes:
        pq: Panoptic quality, ``sum of matched IoUs / (tp + fp / 2 + fn / 2)``.
        sq: Segmentation quality, the mean IoU of the matched pairs (1.0 without matches and errors).
        rq: Recognition quality, the F1 score ``tp / (tp + fp / 2 + fn / 2)``.
        tp, fp, fn: Matched pairs (IoU > 0.5), unmatched predictions, unmatched ground-truth objects.
    """

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int


def panoptic_quality(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> PanopticQuality:
    """Panoptic quality of instance labels (Kirillov et al. 2019, "Panoptic Segmentation", Eq. 1).

    Pairs with ``IoU > 0.5`` match; they are unique (two objects of one image cannot both overlap a third by
    more than half), so no assignment is needed. ``PQ = sum_(p,g) IoU(p, g) / (|TP| + |FP| / 2 + |FN| / 2)``
    = SQ (mean matched IoU) x RQ (F1). Unlike the object IoU of Falk M6.1, which averages over ground-truth
    objects and ignores false positives, every unmatched prediction lowers it; unlike F1 it also rewards
    accurate outlines. Empty cases follow the package convention (:func:`unet.metrics.ratio`; no objects and
    no predictions: 1.0).

    Args:
        gt_labels: Ground-truth instance labels (0 = background), 2D or 3D.
        pred_labels: Predicted instance labels (0 = background), same shape.
    """
    ov = overlaps(gt_labels, pred_labels)
    sel = ov.iou > 0.5
    tp = int(sel.sum())
    fp, fn = int(ov.pred_ids.size) - tp, int(ov.gt_ids.size) - tp
    matched = float(ov.iou[sel].sum())
    den = tp + 0.5 * fp + 0.5 * fn
    rq = ratio(tp, den, fp + fn)
    sq = matched / tp if tp else (1.0 if fp + fn == 0 else 0.0)
    return PanopticQuality(sq * rq, sq, rq, tp, fp, fn)
