"""One point per object: centroids of labels and detection points (Falk 2019: "detection = one point per
cell"), all from one vectorised centroid routine (``numpy.bincount`` over the foreground pixels)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from unet.postprocess.checks import ElementSize
from unet.postprocess.instances import instance_labels, split_input


# ---------------------------------------------------------------------------------------------- centroids
def foreground_pixels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the nonzero pixels and their labels."""
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    return idx, flat[idx]


def compact_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique ids, index of each pixel's id)`` (a bincount when the id range is small, else a sort)."""
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo <= 4 * ids.size + 1024:
        present = np.bincount(ids - lo, minlength=hi - lo + 1) > 0
        uids = np.flatnonzero(present)
        lut = np.zeros(hi - lo + 1, np.intp)
        lut[uids] = np.arange(uids.size)
        return uids + lo, lut[ids - lo]
    uids, inv = np.unique(ids, return_inverse=True)
    return uids, inv.reshape(-1)


def weighted_centroids(
    shape: tuple[int, ...], idx: np.ndarray, lab: np.ndarray, n: int, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts ``(n + 1,)`` and (weighted) centroids ``(n + 1, ndim)`` of labels ``0..n``.

    Row 0 (background) is unused.
    """
    counts = np.bincount(lab, minlength=n + 1).astype(np.float64)
    coords = np.unravel_index(idx, shape)
    plain = np.stack([np.bincount(lab, weights=c, minlength=n + 1) for c in coords], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = plain / counts[:, None]
    if weights is not None:
        wsum = np.bincount(lab, weights=weights, minlength=n + 1)
        wc = np.stack([np.bincount(lab, weights=c * weights, minlength=n + 1) for c in coords], axis=1)
        ok = wsum > 0
        cent[ok] = wc[ok] / wsum[ok, None]
    return counts, cent


def label_centroids(labels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(N, ndim)`` centroids in pixels (array order) of the non-zero label ids present, in id order.

    One point per id (an id split into several pieces still gives one point); ids missing from the image
    (gaps, e.g. after cropping) give none. Turns instance annotations into detection points (one point per
    cell, Falk M2.1).
    """
    labels = np.asarray(labels)
    idx, vals = foreground_pixels(labels)
    if idx.size == 0:
        return np.zeros((0, labels.ndim), dtype=np.float64)
    ids, inv = compact_ids(vals)
    _, cent = weighted_centroids(labels.shape, idx, inv + 1, ids.size, None)
    return cent[1:]


def detection_points(
    classes_or_probs: npt.ArrayLike,
    *,
    min_size: float = 0,
    element_size: ElementSize = None,
    connectivity: int | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """One detection point per connected component (Falk 2019: detection = one point per cell).

    Components are those of :func:`instance_labels` (per class, full connectivity by default). The point
    is the component centroid; with probabilities it is the centroid weighted by the foreground
    probability ``1 - p_background`` over the component's pixels (falling back to the plain centroid if
    those weights sum to 0).

    Args:
        classes_or_probs: ``(K, *S)`` float probabilities, an integer class map ``(*S)`` or a boolean mask
            (see :func:`instance_labels`).
        min_size: Smallest kept component, in pixels, or in µm² / µm³ when ``element_size`` is given.
        element_size: Pixel/voxel size in µm per spatial axis; only changes the unit of ``min_size``
            (points are always returned in pixels).
        connectivity: See :func:`instance_labels`.

    Returns:
        ``points``: ``(N, ndim)`` float64 coordinates in pixels, array order (``(y, x)`` / ``(z, y, x)``),
        ordered by instance id; ``classes``: ``(N,)`` int64 class of each point.
    """
    classes, probs = split_input(classes_or_probs)
    labels, class_of = instance_labels(
        classes, min_size=min_size, connectivity=connectivity, element_size=element_size
    )
    n = len(class_of) - 1
    if n == 0:
        return np.zeros((0, labels.ndim), dtype=np.float64), np.zeros(0, dtype=np.int64)
    idx, lab = foreground_pixels(labels)
    weights = None
    if probs is not None:
        weights = 1.0 - probs[0].ravel()[idx].astype(np.float64)
    _, cent = weighted_centroids(labels.shape, idx, lab, n, weights)
    return cent[1:], class_of[1:].copy()
