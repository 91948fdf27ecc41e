"""Normalisation (Falk 2019, M4) and rescaling to the model's element size (M5), and back.

A model carries its element size (physical voxel size); every image is resampled to it before training
and prediction, and predictions are resampled back to the image's own grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

NORMALIZATIONS = ("minmax", "percentile", "none")


def normalize(
    image: np.ndarray, mode: str = "minmax", percentiles: tuple[float, float] = (1.0, 99.8)
) -> np.ndarray:
    """Per-channel intensity normalisation to [0, 1] (Falk 2019, M4: I' = (I - min I) / (max I - min I)).

    Args:
        image: (C, *S) any numeric dtype.
        mode: "minmax" (the paper), "percentile" (robust to a few hot pixels; clipped to [0, 1]) or "none".
        percentiles: low/high percentiles for "percentile".

    Returns:
        (C, *S) float32. A constant channel maps to 0.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; choose one of {NORMALIZATIONS}")
    x = np.asarray(image, dtype=np.float32)
    if mode == "none":
        return x.copy()
    axes = tuple(range(1, x.ndim))
    if mode == "minmax":
        lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    else:
        lo = np.percentile(x, percentiles[0], axis=axes, keepdims=True).astype(np.float32)
        hi = np.percentile(x, percentiles[1], axis=axes, keepdims=True).astype(np.float32)
    scale = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    out = (x - lo) / scale
    return np.clip(out, 0.0, 1.0) if mode == "percentile" else out


def scale_factors(
    element_size: Sequence[float] | None, model_element_size: Sequence[float] | None
) -> tuple[float, ...] | None:
    """Per-axis zoom from the image grid to the model grid (image size / model size); None = no rescale."""
    if element_size is None or model_element_size is None:
        return None
    if len(element_size) != len(model_element_size):
        raise ValueError(
            f"element size {tuple(element_size)} and model element size {tuple(model_element_size)} differ "
            "in the number of axes"
        )
    f = tuple(float(a) / float(b) for a, b in zip(element_size, model_element_size))
    return None if all(abs(v - 1) < 1e-6 for v in f) else f


def scaled_shape(shape: Sequence[int], factors: Sequence[float] | None) -> tuple[int, ...]:
    if factors is None:
        return tuple(int(s) for s in shape)
    return tuple(max(1, round(s * f)) for s, f in zip(shape, factors))


def resize(
    array: np.ndarray, shape: Sequence[int], *, labels: bool = False, antialias: bool = True
) -> np.ndarray:
    """Resample (C, *S) to (C, *shape): linear for images and probabilities, nearest for labels.

    Along axes that shrink by a factor ``d = in / out > 1`` images are first low-pass filtered with a
    Gaussian of ``sigma = (d - 1) / 2`` pixels (mirror boundary; the anti-aliasing of
    ``skimage.transform.resize``), so that detail finer than the new grid averages out instead of
    aliasing into spurious texture. Labels are never filtered; ``antialias=False`` skips the filter (class
    probabilities brought back to the image grid keep thin ridges sharp).
    """
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[1:]) == shape:
        return array
    nd = array.ndim - 1
    if labels:
        t = torch.from_numpy(np.ascontiguousarray(array).astype(np.float64))[None]
        out = F.interpolate(t, size=shape, mode="nearest-exact")[0].numpy()
        return out.astype(array.dtype)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[nd]
    sigma = [max(0.0, (a / b - 1) / 2) for a, b in zip(array.shape[1:], shape, strict=True)]
    if antialias and any(sg > 0 for sg in sigma):
        array = ndi.gaussian_filter(np.asarray(array, dtype=np.float32), [0.0, *sigma], mode="mirror")
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return F.interpolate(t, size=shape, mode=mode, align_corners=False)[0].numpy()


def scale_points(points: np.ndarray, factors: Sequence[float] | None) -> np.ndarray:
    """Pixel-centre coordinates (N, ndim) on the image grid -> the rescaled grid."""
    if factors is None:
        return np.asarray(points, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) + 0.5) * f - 0.5
