"""EM challenge scores (Ronneberger 2015, Tab. 1; ISBI 2012, Arganda-Carreras et al. 2015).

:func:`rand_error` (``1 -`` classic Rand index over all pixel pairs), :func:`v_rand` /
:func:`adapted_rand_error` and :func:`v_info` (foreground-restricted, with split and merge parts), and
:func:`em_scores`, which thresholds a membrane (or cell-interior) probability map at several levels and adds
the :func:`~unet.metrics.pixels.pixel_error`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from unet.metrics.contingency import FloatArray, contingency
from unet.metrics.pixels import pixel_error

#: The 10 binarisation levels of the ISBI 2012 challenge scripts (0.0, 0.1, ..., 0.9; ``interior > t``).
EM_THRESHOLDS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _pairs(x: FloatArray | float) -> FloatArray | float:
    return x * (x - 1.0) / 2.0


def rand_index(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> float:
    """Classic Rand index (Rand 1971) over all unordered pixel pairs; label 0 is an ordinary segment.

    ``RI = 1 - (sum_i C(a_i, 2) + sum_j C(b_j, 2) - 2 sum_ij C(n_ij, 2)) / C(N, 2)`` with ``n_ij`` the
    contingency table, ``a_i``/``b_j`` its marginals and ``C(x, 2) = x (x - 1) / 2``: the fraction of pixel
    pairs on whose togetherness both labelings agree. ``O(pixels)``. 1.0 for fewer than two pixels.

    Args:
        gt_labels: Ground-truth labels.
        pred_labels: Predicted labels, same shape.

    Returns:
        The Rand index in ``[0, 1]``.
    """
    c = contingency(gt_labels, pred_labels)
    n = float(c.n_pixels)
    if n < 2:
        return 1.0
    a = _pairs(c.gt_sizes.astype(np.float64)).sum()
    b = _pairs(c.pred_sizes.astype(np.float64)).sum()
    both = _pairs(c.counts.astype(np.float64)).sum()
    return float(1.0 - (a + b - 2.0 * both) / _pairs(n))


def rand_error(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> float:
    """Classic Rand error ``1 - RI`` over all pixel pairs (see :func:`rand_index`; Ronneberger 2015 Tab. 1).

    Args:
        gt_labels: Ground-truth labels (every id, including 0, is a segment).
        pred_labels: Predicted labels, same shape.

    Returns:
        ``1 -`` Rand index.
    """
    return 1.0 - rand_index(gt_labels, pred_labels)


@dataclass(frozen=True)
class _Foreground:
    """Foreground-restricted joint counts: gt label 0 dropped, pred label 0 split into singletons."""

    n: float  # ground-truth foreground pixels
    joint: FloatArray  # n_ij, gt != 0 and pred != 0
    gt_marg: FloatArray  # a_i over gt != 0
    pred_marg: FloatArray  # b_j over pred != 0 (restricted to gt foreground)
    singletons: float  # gt-foreground pixels predicted as 0


def _foreground(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> _Foreground:
    c = contingency(gt_labels, pred_labels)
    g_fg = c.gt_ids[c.rows] != 0
    p_fg = c.pred_ids[c.cols] != 0
    fg = g_fg & p_fg
    joint = c.counts[fg].astype(np.float64)
    pred_marg = np.bincount(c.cols[fg], weights=joint, minlength=c.pred_ids.size)
    return _Foreground(
        n=float(c.counts[g_fg].sum()),
        joint=joint,
        gt_marg=c.gt_sizes[c.gt_ids != 0].astype(np.float64),
        pred_marg=pred_marg[pred_marg > 0],
        singletons=float(c.counts[g_fg & ~p_fg].sum()),
    )


@dataclass(frozen=True)
class RandResult:
    """Foreground-restricted Rand scores (Arganda-Carreras et al. 2015); all 1.0 when perfect.

    Attributes:
        v_rand: ``sum p_ij^2 / (alpha sum_i s_i^2 + (1 - alpha) sum_j t_j^2)``.
        split: ``sum p_ij^2 / sum_j t_j^2`` (ground-truth marginal; drops when a true segment is split).
        merge: ``sum p_ij^2 / sum_i s_i^2`` (predicted marginal; drops when true segments are merged).
    """

    v_rand: float
    split: float
    merge: float


@dataclass(frozen=True)
class VInfoResult:
    """Foreground-restricted information-theoretic scores (Arganda-Carreras et al. 2015); 1.0 when perfect.

    Attributes:
        v_info: ``I(S; T) / ((1 - alpha) H(S) + alpha H(T))``.
        split: ``I(S; T) / H(S)`` (predicted entropy; drops when a true segment is split).
        merge: ``I(S; T) / H(T)`` (ground-truth entropy; drops when true segments are merged).
    """

    v_info: float
    split: float
    merge: float


def v_rand(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike, alpha: float = 0.5) -> RandResult:
    """Foreground-restricted Rand score ``V^Rand`` of the ISBI 2012 challenge (Arganda-Carreras et al. 2015).

    With ``S`` the predicted and ``T`` the true segmentation, ``p_ij`` the probability that a random pixel of
    the ground-truth foreground lies in predicted segment ``i`` and true segment ``j``, and ``s_i``, ``t_j``
    the marginals: ``V^Rand_split = sum p_ij^2 / sum t_j^2``, ``V^Rand_merge = sum p_ij^2 / sum s_i^2`` and
    ``V^Rand = sum p_ij^2 / (alpha sum s_i^2 + (1 - alpha) sum t_j^2)``; ``alpha = 0.5`` gives the harmonic
    mean (F-score) of split and merge. ``sum p^2`` counts *ordered* pixel pairs, self-pairs included
    (``N^2`` normalisation, as in the challenge's Fiji/SNEMI3D code).

    Foreground restriction: pixels with ground-truth label 0 (membranes / boundaries / unlabelled) are
    dropped. Remaining pixels with predicted label 0 are treated as singletons (each its own segment), as the
    challenge scripts do, so predicted boundary pixels are neither merged with nor split from anything.
    ``O(pixels)``; all scores are 1.0 if the ground-truth foreground is empty.

    Args:
        gt_labels: Ground-truth labels, 0 = excluded.
        pred_labels: Predicted labels, 0 = unassigned (singletons), same shape.
        alpha: Weight of the merge term, in ``[0, 1]``.

    Returns:
        A :class:`RandResult`.
    """
    f = _foreground(gt_labels, pred_labels)
    if f.n == 0:
        return RandResult(1.0, 1.0, 1.0)
    sum_p2 = float(f.joint @ f.joint) + f.singletons
    sum_t2 = float(f.gt_marg @ f.gt_marg)
    sum_s2 = float(f.pred_marg @ f.pred_marg) + f.singletons
    return RandResult(
        v_rand=sum_p2 / (alpha * sum_s2 + (1.0 - alpha) * sum_t2),
        split=sum_p2 / sum_t2,
        merge=sum_p2 / sum_s2,
    )


def adapted_rand_error(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> float:
    """Adapted Rand error ``1 - V^Rand`` (alpha 0.5; ISBI 2012 / SNEMI3D), see :func:`v_rand`.

    Args:
        gt_labels: Ground-truth labels, 0 = excluded.
        pred_labels: Predicted labels, 0 = unassigned (singletons), same shape.

    Returns:
        ``1 - V^Rand`` in ``[0, 1]``.
    """
    return 1.0 - v_rand(gt_labels, pred_labels).v_rand


def _plogp(counts: FloatArray, n: float) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def v_info(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike, alpha: float = 0.5) -> VInfoResult:
    """Foreground-restricted information-theoretic score ``V^Info`` (Arganda-Carreras et al. 2015).

    ``I(S; T) = H(S) + H(T) - H(S, T)`` from the foreground-restricted joint distribution of :func:`v_rand`
    (same restriction and singleton convention). ``V^Info_split = I / H(S) = 1 - H(S|T) / H(S)``,
    ``V^Info_merge = I / H(T) = 1 - H(T|S) / H(T)`` and ``V^Info = I / ((1 - alpha) H(S) + alpha H(T))``,
    the harmonic mean for ``alpha = 0.5``. A zero entropy makes the corresponding ratio 1.0 (a single
    predicted segment cannot split, a single true segment cannot be merged). Natural logarithms (the base
    cancels).

    Args:
        gt_labels: Ground-truth labels, 0 = excluded.
        pred_labels: Predicted labels, 0 = unassigned (singletons), same shape.
        alpha: Weight of the merge term, in ``[0, 1]``.

    Returns:
        A :class:`VInfoResult`.
    """
    f = _foreground(gt_labels, pred_labels)
    if f.n == 0:
        return VInfoResult(1.0, 1.0, 1.0)
    single = f.singletons * np.log(f.n) / f.n  # each singleton: -(1/n) log(1/n)
    h_t = _plogp(f.gt_marg, f.n)
    h_s = _plogp(f.pred_marg, f.n) + single
    h_st = _plogp(f.joint, f.n) + single
    mi = max(h_s + h_t - h_st, 0.0)
    den = (1.0 - alpha) * h_s + alpha * h_t
    return VInfoResult(
        v_info=mi / den if den > 0 else 1.0,
        split=mi / h_s if h_s > 0 else 1.0,
        merge=mi / h_t if h_t > 0 else 1.0,
    )


# ------------------------------------------------------------------------------------------ EM challenge
@dataclass(frozen=True)
class EMScores:
    """Result of :func:`em_scores`; per-threshold arrays have shape ``(T,)``, lower is better everywhere.

    Attributes:
        thresholds: Thresholds applied to the cell-interior probability (``interior > t``).
        pixel_error: :func:`pixel_error` per threshold.
        rand_error: Classic :func:`rand_error` per threshold (membrane pixels form one segment).
        adapted_rand_error: ``1 - V^Rand`` per threshold (foreground-restricted).
        v_info_error: ``1 - V^Info`` per threshold (foreground-restricted).
        pixel_error_at_05: Pixel error at threshold 0.5.
        rand_error_at_05: Classic Rand error at 0.5.
        adapted_rand_error_at_05: ``1 - V^Rand`` at 0.5.
        v_info_error_at_05: ``1 - V^Info`` at 0.5.
    """

    thresholds: FloatArray
    pixel_error: FloatArray
    rand_error: FloatArray
    adapted_rand_error: FloatArray
    v_info_error: FloatArray
    pixel_error_at_05: float
    rand_error_at_05: float
    adapted_rand_error_at_05: float
    v_info_error_at_05: float

    @property
    def best_pixel_error(self) -> float:
        """Minimum pixel error over the thresholds."""
        return float(self.pixel_error.min())

    @property
    def best_rand_error(self) -> float:
        """Minimum classic Rand error over the thresholds."""
        return float(self.rand_error.min())

    @property
    def best_adapted_rand_error(self) -> float:
        """Minimum ``1 - V^Rand`` (= ``1 -`` maximal Rand F-score) over the thresholds."""
        return float(self.adapted_rand_error.min())

    @property
    def best_v_info_error(self) -> float:
        """Minimum ``1 - V^Info`` over the thresholds."""
        return float(self.v_info_error.min())


def _em_slice(interior: FloatArray, gt_lab: np.ndarray, structure: np.ndarray, t: float) -> FloatArray:
    binary = interior > t
    pred_lab, _ = ndi.label(binary, structure=structure)
    return np.array(
        [
            pixel_error(gt_lab, binary),
            rand_error(gt_lab, pred_lab),
            adapted_rand_error(gt_lab, pred_lab),
            1.0 - v_info(gt_lab, pred_lab).v_info,
        ]
    )


def em_scores(
    gt_interior_binary: npt.ArrayLike,
    membrane_prob_or_interior_prob: npt.ArrayLike,
    thresholds: Sequence[float] | npt.NDArray[np.floating] = EM_THRESHOLDS,
    *,
    membrane: bool = True,
    connectivity: int = 1,
) -> EMScores:
    """ISBI 2012 EM-segmentation-challenge style scores of a probability map (Ronneberger 2015, Tab. 1).

    The challenge thresholds the submitted map at 10 levels and scores each binarisation. Conversion to a
    labelling (as in the challenge's Fiji scripts, ``trainableSegmentation.metrics``):

    1. ``interior = 1 - prob`` if ``membrane`` (the map is a membrane probability), else ``interior = prob``;
    2. binarise ``interior > t`` (1 = cell interior, 0 = membrane);
    3. cells = connected components of the interior with ``connectivity`` (default 1: 4-connected in 2D,
       as the challenge scripts; ``2`` gives 8-connectivity). The ground truth (1 = cell, 0 = membrane) is
       labelled the same way.

    Per threshold: :func:`pixel_error` of the binary maps, the classic :func:`rand_error` (membranes form one
    segment), the adapted Rand error ``1 - V^Rand`` and ``1 - V^Info`` (foreground-restricted: ground-truth
    membrane pixels excluded, predicted membrane pixels singletons). ``best_*`` take the minimum over the
    thresholds, as the leaderboard did ("1 - maximal F-score"); ``best_adapted_rand_error`` is the closest
    match to the Rand error column of Ronneberger 2015 Tab. 1 (the leaderboard's exact pre-processing is not
    reproduced; no border thinning is applied, unlike the later ``V^Rand_thinned`` ranking). A 3D input is a
    stack of 2D sections ``(Z, Y, X)``: every section is scored separately and the scores are averaged, as
    the challenge scripts do.

    Args:
        gt_interior_binary: Ground truth of the same shape, non-zero = cell interior, 0 = membrane.
        membrane_prob_or_interior_prob: Probability map, 2D or a stack of 2D sections.
        thresholds: Thresholds on the interior probability (default 0.0, 0.1, ..., 0.9).
        membrane: Whether the map is a membrane probability (True) or a cell-interior probability.
        connectivity: ``scipy.ndimage.generate_binary_structure`` connectivity for labelling cells.

    Returns:
        An :class:`EMScores`.
    """
    prob = np.asarray(membrane_prob_or_interior_prob, dtype=np.float64)
    gt = np.asarray(gt_interior_binary) != 0
    if prob.shape != gt.shape:
        raise ValueError(f"shape mismatch: prob {prob.shape} vs gt {gt.shape}")
    if prob.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or a (Z, Y, X) stack of sections, got shape {prob.shape}")
    ths = np.asarray(thresholds, dtype=np.float64).ravel()
    interior = 1.0 - prob if membrane else prob
    if interior.ndim == 2:
        interior, gt = interior[None], gt[None]
    structure = ndi.generate_binary_structure(2, connectivity)
    gt_labs = [ndi.label(g, structure=structure)[0] for g in gt]
    per_t = np.zeros((ths.size + 1, 4))
    for k, t in enumerate([*ths.tolist(), 0.5]):
        per_t[k] = np.mean([_em_slice(i, g, structure, t) for i, g in zip(interior, gt_labs, strict=True)], 0)
    at05 = per_t[-1]
    return EMScores(
        thresholds=ths,
        pixel_error=per_t[:-1, 0].copy(),
        rand_error=per_t[:-1, 1].copy(),
        adapted_rand_error=per_t[:-1, 2].copy(),
        v_info_error=per_t[:-1, 3].copy(),
        pixel_error_at_05=float(at05[0]),
        rand_error_at_05=float(at05[1]),
        adapted_rand_error_at_05=float(at05[2]),
        v_info_error_at_05=float(at05[3]),
    )
