"""Detection F-measure of point positions with a matching tolerance (Falk et al. 2019, M6.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from unet.metrics.contingency import FloatArray, IntArray, ratio


@dataclass(frozen=True)
class DetectionResult:
    """Result of :func:`detection_f1` (Falk 2019 M6.2).

    Attributes:
        tp: Matched (gt, prediction) pairs with distance ``<= d_match``.
        fp: Predictions without such a match.
        fn: Ground-truth positions without such a match.
        precision: ``tp / n_pred``.
        recall: ``tp / n_gt``.
        f1: ``2 precision recall / (precision + recall) = 2 tp / (2 tp + fp + fn)``.
        matches: ``(gt index, pred index)`` of each true positive, shape ``(tp, 2)``.
        distances: Distance of each true-positive pair, shape ``(tp,)``.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    matches: IntArray
    distances: FloatArray


def _as_points(points: npt.ArrayLike, ndim: int | None) -> FloatArray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, ndim or (arr.shape[-1] if arr.ndim == 2 else 0)), dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"points must have shape (n, ndim), got {arr.shape}")
    return arr


def detection_f1(
    gt_points: npt.ArrayLike,
    pred_points: npt.ArrayLike,
    d_match: float,
    element_size: float | Sequence[float] | None = None,
) -> DetectionResult:
    """Detection F-measure with matching tolerance ``d_match``, exactly as Falk et al. 2019, M6.2.

    1. Pairwise Euclidean distances between ground-truth positions and detections (coordinates multiplied
       by ``element_size`` first, so ``d_match`` is in physical units if it is given).
    2. Predictions farther than ``d_match`` from every ground-truth position are false positives;
       ground-truth positions with no prediction within ``d_match`` are false negatives.
    3. The Hungarian algorithm (``linear_sum_assignment``) assigns the remaining points minimising the total
       distance of the matched pairs (all pairwise distances of the remaining points take part).
    4. Assigned pairs with distance ``> d_match`` count as one false negative and one false positive, as do
       remaining points left unassigned. A pair at distance exactly ``d_match`` is a match.

    Precision ``tp / |P|``, recall ``tp / |G|``, ``F1 = 2 tp / (2 tp + fp + fn)``; with no ground truth and
    no prediction all three are 1.0. Memory is ``O(|G| |P|)`` (dense distance matrix).

    Args:
        gt_points: Ground-truth positions, shape ``(n_gt, ndim)`` (pixel coordinates, any axis order that
            matches ``pred_points``).
        pred_points: Detected positions, shape ``(n_pred, ndim)``.
        d_match: Matching tolerance (same unit as the scaled coordinates), ``>= 0``.
        element_size: Physical size of a pixel per axis (or one scalar), ``None`` for pixel units.

    Returns:
        A :class:`DetectionResult`.
    """
    if d_match < 0:
        raise ValueError(f"d_match must be >= 0, got {d_match}")
    g = _as_points(gt_points, None)
    p = _as_points(pred_points, g.shape[1] if g.shape[0] else None)
    if g.shape[0] == 0 and p.shape[0]:
        g = np.zeros((0, p.shape[1]))
    if g.shape[0] and p.shape[0] and g.shape[1] != p.shape[1]:
        raise ValueError(f"dimension mismatch: gt {g.shape} vs pred {p.shape}")
    if element_size is not None and g.shape[0] and p.shape[0]:
        scale = np.broadcast_to(np.asarray(element_size, dtype=np.float64), (g.shape[1],))
        g, p = g * scale, p * scale
    n_gt, n_pred = g.shape[0], p.shape[0]
    matches = np.zeros((0, 2), dtype=np.int64)
    dists = np.zeros(0, dtype=np.float64)
    if n_gt and n_pred:
        d = cdist(g, p)
        within = d <= d_match
        g_rem = np.flatnonzero(within.any(axis=1))
        p_rem = np.flatnonzero(within.any(axis=0))
        if g_rem.size and p_rem.size:
            sub = d[np.ix_(g_rem, p_rem)]
            r, c = linear_sum_assignment(sub)
            ok = sub[r, c] <= d_match
            matches = np.stack([g_rem[r[ok]], p_rem[c[ok]]], axis=1).astype(np.int64).reshape(-1, 2)
            dists = sub[r[ok], c[ok]]
    tp = int(matches.shape[0])
    fp, fn = n_pred - tp, n_gt - tp
    return DetectionResult(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=ratio(tp, n_pred, fn),
        recall=ratio(tp, n_gt, fp),
        f1=ratio(2 * tp, 2 * tp + fp + fn, fp + fn),
        matches=matches,
        distances=dists,
    )
