"""Options shared by the post-processing modules (and :mod:`unet.ooc`): element size, neighbourhood, size
threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from unet import validation

ElementSize = Sequence[float] | None


def check_element_size(element_size: ElementSize, ndim: int) -> np.ndarray | None:
    """``element_size`` (µm per spatial axis) as a float64 ``(ndim,)`` array, or None
    (:func:`unet.validation.check_element_size`)."""
    es = validation.check_element_size(element_size, ndim)
    return None if es is None else np.asarray(es, dtype=np.float64)


def connectivity_structure(ndim: int, connectivity: int | None) -> np.ndarray:
    conn = ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim} for a {ndim}D image, got {connectivity}")
    return ndi.generate_binary_structure(ndim, conn)


def min_pixels(min_size: float, es: np.ndarray | None) -> float:
    if not (min_size >= 0 and math.isfinite(min_size)):
        raise ValueError(f"min_size must be finite and >= 0, got {min_size}")
    return float(min_size) if es is None else float(min_size) / float(np.prod(es))
