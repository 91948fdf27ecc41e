"""Pixel-wise comparisons of two binary maps: the pixel error and the foreground IoU / Dice."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def pixel_error(gt_binary: npt.ArrayLike, prob_or_binary: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of misclassified pixels (ISBI 2012 "pixel error", Ronneberger 2015 Tab. 1).

    The prediction is binarised as ``prob > threshold`` unless it is already bool (as in the challenge's
    Fiji scripts, which threshold with ``>``); the ground truth is ``gt_binary != 0``. The error is the
    squared Euclidean distance of the two binary maps divided by the pixel count. Both maps must encode the
    same class as 1 (the EM challenge: 1 = cell interior, 0 = membrane; see :func:`em_scores`).

    Args:
        gt_binary: Binary (or 0/255) ground truth of the same shape.
        prob_or_binary: Foreground probabilities or a bool mask.
        threshold: Binarisation threshold for non-bool predictions.

    Returns:
        The pixel error in ``[0, 1]`` (0.0 for empty images).
    """
    pred = np.asarray(prob_or_binary)
    gt = np.asarray(gt_binary) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs gt {gt.shape}")
    binary = pred if pred.dtype == bool else pred > threshold
    return float(np.count_nonzero(binary != gt) / gt.size) if gt.size else 0.0


def foreground_overlap(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> tuple[float, float]:
    """Semantic (pixel) overlap of the foregrounds ``gt != 0`` and ``pred != 0``: ``(IoU, Dice)``.

    ``IoU = |G & P| / |G | P|`` (Jaccard), ``Dice = 2 |G & P| / (|G| + |P|)``; both 1.0 when both
    foregrounds are empty. For semantic ground truth, where touching objects merge (e.g. NIH3T3).
    """
    g = np.asarray(gt_labels) != 0
    p = np.asarray(pred_labels) != 0
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs gt {g.shape}")
    inter = float(np.count_nonzero(g & p))
    union = float(np.count_nonzero(g | p))
    total = float(np.count_nonzero(g) + np.count_nonzero(p))
    return (inter / union if union else 1.0), (2 * inter / total if total else 1.0)
