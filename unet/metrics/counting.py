"""Counting errors (Falk et al. 2019 counting experiments)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def count_error(n_true: npt.ArrayLike, n_pred: npt.ArrayLike) -> npt.NDArray[np.float64] | float:
    """Absolute counting error ``|n_pred - n_true|`` (Falk 2019 counting experiments); vectorised.

    Args:
        n_true: True object count(s).
        n_pred: Predicted object count(s), broadcastable to ``n_true``.

    Returns:
        A float for scalar inputs, else an array.
    """
    err = np.abs(np.asarray(n_pred, dtype=np.float64) - np.asarray(n_true, dtype=np.float64))
    return float(err) if err.ndim == 0 else err


def relative_count_error(n_true: npt.ArrayLike, n_pred: npt.ArrayLike) -> npt.NDArray[np.float64] | float:
    """Relative counting error ``|n_pred - n_true| / n_true`` (``0 / 0 = 0``, ``x / 0 = inf``); vectorised.

    Args:
        n_true: True object count(s).
        n_pred: Predicted object count(s), broadcastable to ``n_true``.

    Returns:
        A float for scalar inputs, else an array.
    """
    t = np.asarray(n_true, dtype=np.float64)
    err = np.abs(np.asarray(n_pred, dtype=np.float64) - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(err == 0, 0.0, err / t)
    return float(rel) if rel.ndim == 0 else rel
