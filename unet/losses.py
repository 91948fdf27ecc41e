"""Pixel-weighted soft-max cross-entropy (Falk 2019, M2; Ronneberger 2015, eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """l = -sum_x w(x) log softmax(y_hat(x))_{y(x)}, divided by the number of pixels.

    Falk 2019, M2: l(I) := -sum_{x in Omega} w(x) log(exp(y_hat_{y(x)}(x)) / sum_c exp(y_hat_c(x))).
    We divide by |Omega| (pixels in the batch) so the learning rate does not depend on the tile size;
    pixels with w = 0 (ignored regions) contribute nothing.

    Args:
        logits: (N, K, *S) class scores.
        target: (N, *S) int64 classes in [0, K).
        weights: (N, *S) float, >= 0.
    """
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    if weights.shape != target.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and target {tuple(target.shape)} do not match")
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (weights.float() * ce).sum() / target.numel()
