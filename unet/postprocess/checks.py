"""Options shared by the post-processing modules (and :mod:`unet.ooc`): element size, neighbourhood, size
threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

ElementSize = Sequence[float] | None


def check_element_size(element_size: ElementSize, ndim: int) -> np.ndarray | None:
    """Validate ``element_size`` (µm per spatial axis) as a float64 ``(ndim,)`` array, or None."""
    if element_size is None:
        return None
    es = np.asarray(element_size, dtype=np.float64).ravel()
    if es.size != ndim:
        raise ValueError(f"element_size {tuple(es.tolist())} has {es.size} entries for a {ndim}D image")
    if not np.all(np.isfinite(es)) or np.any(es <= 0):
        raise ValueError(f"element_size must be finite and positive, got {tuple(es.tolist())}")
    return es


def connectivity_structure(ndim: int, connectivity: int | None) -> np.ndarray:
    conn = ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim} for a {ndim}D image, got {connectivity}")
    return ndi.generate_binary_structure(ndim, conn)


def min_pixels(min_size: float, es: np.ndarray | None) -> float:
    if not (min_size >= 0 and math.isfinite(min_size)):
        raise ValueError(f"min_size must be finite and >= 0, got {min_size}")
    return float(min_size) if es is None else float(min_size) / float(np.prod(es))
