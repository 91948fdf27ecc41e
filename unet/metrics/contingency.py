"""The sparse contingency (overlap) table every label metric is built on, and the empty-ratio convention.

The pixel count of every co-occurring ``(gt label, pred label)`` is obtained in ``O(pixels)`` with
``np.bincount`` on combined ids (or ``np.unique`` when the ids are huge). No ``K x M`` stack of full object
masks is ever built. Label ids need not be consecutive; ``0`` is background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ------------------------------------------------------------------------------------------ helpers
def ratio(num: float, den: float, other_errors: float) -> float:
    """``num / den``; ``0 / 0`` is 1.0 if ``other_errors == 0`` (nothing to find, nothing wrong), else 0.0."""
    if den > 0:
        return float(num) / float(den)
    return 1.0 if other_errors == 0 else 0.0


def _as_labels(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer (or bool) label image, got dtype {arr.dtype}")
    return arr


def _slots(flat: np.ndarray, limit: int) -> tuple[np.ndarray, int, IntArray | None]:
    """Per-pixel slot index, number of slots and slot -> label map (``None``: the label is its own slot).

    Small non-negative integer labels are used as slots directly (no renumbering pass); anything else
    (negative or huge ids) is compacted with ``np.unique``.
    """
    if flat.size and flat.dtype.kind in "iu":
        lo, hi = int(flat.min()), int(flat.max())
        if lo >= 0 and hi < limit:
            return (flat.astype(np.intp) if flat.dtype == np.uint64 else flat), hi + 1, None
    ids, inverse = np.unique(flat, return_inverse=True)
    return inverse.ravel(), int(ids.size), ids.astype(np.int64)


def _compact_slots(idx: np.ndarray, n_slots: int) -> tuple[np.ndarray, int, IntArray]:
    """Renumber the occupied slots of an identity-mapped label image to ``0..K-1`` (``O(n)`` bincount)."""
    ids = np.flatnonzero(np.bincount(idx, minlength=n_slots))
    lut = np.zeros(n_slots, dtype=np.int64)
    lut[ids] = np.arange(ids.size, dtype=np.int64)
    return lut[idx], int(ids.size), ids.astype(np.int64)


# ------------------------------------------------------------------------------------------ contingency
@dataclass(frozen=True)
class Contingency:
    """Sparse contingency (overlap) table of two label images.

    Entry ``(rows[k], cols[k])`` holds ``counts[k] > 0`` pixels labelled ``gt_ids[rows[k]]`` in the ground
    truth and ``pred_ids[cols[k]]`` in the prediction; absent pairs have count 0. Label 0 is included like
    any other id (functions that treat it as background drop it themselves).

    Attributes:
        gt_ids: Sorted distinct ground-truth labels, shape ``(K,)``.
        pred_ids: Sorted distinct predicted labels, shape ``(M,)``.
        gt_sizes: Pixel count of each ground-truth label, shape ``(K,)``.
        pred_sizes: Pixel count of each predicted label, shape ``(M,)``.
        rows: Index into ``gt_ids`` of each non-zero entry, shape ``(nnz,)``.
        cols: Index into ``pred_ids`` of each non-zero entry, shape ``(nnz,)``.
        counts: Overlap pixel count of each non-zero entry, shape ``(nnz,)``.
    """

    gt_ids: IntArray
    pred_ids: IntArray
    gt_sizes: IntArray
    pred_sizes: IntArray
    rows: IntArray
    cols: IntArray
    counts: IntArray

    @property
    def n_pixels(self) -> int:
        """Total number of pixels (voxels) counted."""
        return int(self.counts.sum())

    def to_sparse(self) -> sparse.coo_matrix:
        """The table as a ``(K, M)`` ``scipy.sparse.coo_matrix`` of int64 counts."""
        shape = (self.gt_ids.size, self.pred_ids.size)
        return sparse.coo_matrix((self.counts, (self.rows, self.cols)), shape=shape)

    def to_dense(self) -> IntArray:
        """The table as a dense ``(K, M)`` int64 array (only for small label counts)."""
        out = np.zeros((self.gt_ids.size, self.pred_ids.size), dtype=np.int64)
        out[self.rows, self.cols] = self.counts
        return out


def contingency(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> Contingency:
    """Sparse contingency table ``n_ij = |{x : gt(x) = i, pred(x) = j}|`` of two label images.

    Computed in ``O(pixels)``: both label images are combined into one key per pixel (small non-negative ids
    directly, others after renumbering) and counted with ``np.bincount`` (``np.unique`` when the key space is
    too large for a dense count vector).

    Args:
        gt_labels: Integer (or bool) ground-truth label image, any dimensionality.
        pred_labels: Integer (or bool) predicted label image of the same shape.

    Returns:
        The non-zero entries, label ids and label sizes as a :class:`Contingency`.

    Raises:
        ValueError: If the shapes differ.
        TypeError: If an input is not an integer/bool array.
    """
    gt = _as_labels(gt_labels, "gt_labels")
    pred = _as_labels(pred_labels, "pred_labels")
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs pred {pred.shape}")
    empty = np.zeros(0, dtype=np.int64)
    if gt.size == 0:
        return Contingency(empty, empty, empty, empty, empty, empty, empty)
    limit = max(2 * gt.size, 1 << 20)  # largest dense count vector (int64 entries) we accept
    g_idx, n_g, g_map = _slots(gt.ravel(), limit)
    p_idx, n_p, p_map = _slots(pred.ravel(), limit)
    # shrink the slot spaces of identity-mapped sides until the dense key space fits
    if n_g * n_p > limit and g_map is None and n_g >= n_p:
        g_idx, n_g, g_map = _compact_slots(g_idx, n_g)
    if n_g * n_p > limit and p_map is None:
        p_idx, n_p, p_map = _compact_slots(p_idx, n_p)
    if n_g * n_p > limit and g_map is None:
        g_idx, n_g, g_map = _compact_slots(g_idx, n_g)
    key = g_idx.astype(np.int64) * n_p + p_idx
    if n_g * n_p <= limit:
        cnt = np.bincount(key, minlength=n_g * n_p)
        nz = np.flatnonzero(cnt)
        counts = cnt[nz]
    else:
        nz, counts = np.unique(key, return_counts=True)
    counts = counts.astype(np.int64)
    # everything below is O(nnz): occupied slots -> sorted label ids, marginals, compact indices
    g_slot, rows = np.unique(nz // n_p, return_inverse=True)
    p_slot, cols = np.unique(nz % n_p, return_inverse=True)
    g_ids = g_slot.astype(np.int64) if g_map is None else g_map[g_slot]
    p_ids = p_slot.astype(np.int64) if p_map is None else p_map[p_slot]
    g_sizes = np.bincount(rows, weights=counts, minlength=g_ids.size).astype(np.int64)
    p_sizes = np.bincount(cols, weights=counts, minlength=p_ids.size).astype(np.int64)
    return Contingency(g_ids, p_ids, g_sizes, p_sizes, rows.astype(np.int64), cols.astype(np.int64), counts)


@dataclass(frozen=True)
class Overlaps:
    """IoU of every overlapping (gt object, pred object) pair, background (label 0) excluded."""

    gt_ids: IntArray
    pred_ids: IntArray
    rows: IntArray  # index into gt_ids
    cols: IntArray  # index into pred_ids
    iou: FloatArray


def overlaps(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> Overlaps:
    c = contingency(gt_labels, pred_labels)
    g_fg = c.gt_ids != 0
    p_fg = c.pred_ids != 0
    # position of each label among the foreground labels (-1 for background)
    g_pos = np.cumsum(g_fg) - 1
    p_pos = np.cumsum(p_fg) - 1
    keep = g_fg[c.rows] & p_fg[c.cols]
    r, k, inter = c.rows[keep], c.cols[keep], c.counts[keep].astype(np.float64)
    union = c.gt_sizes[r] + c.pred_sizes[k] - inter
    return Overlaps(c.gt_ids[g_fg], c.pred_ids[p_fg], g_pos[r], p_pos[k], inter / union)


def iou_matrix(gt_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> tuple[FloatArray, IntArray, IntArray]:
    """Dense IoU matrix of all ground-truth vs predicted objects (Falk 2019 M6.1, ``M_IoU``).

    ``M_IoU(G, P) = |G ∩ P| / |G ∪ P|``; intersections come from the sparse :func:`contingency`, so the cost
    is ``O(pixels + K * M)`` (the dense output), never ``O(K * M * pixels)``.

    Args:
        gt_labels: Ground-truth instance labels (0 = background).
        pred_labels: Predicted instance labels (0 = background), same shape.

    Returns:
        ``(ious, gt_ids, pred_ids)``: ``ious[i, j]`` is the IoU of ground-truth object ``gt_ids[i]`` and
        predicted object ``pred_ids[j]``; only labels present in the images (background excluded) appear.
    """
    ov = overlaps(gt_labels, pred_labels)
    ious = np.zeros((ov.gt_ids.size, ov.pred_ids.size), dtype=np.float64)
    ious[ov.rows, ov.cols] = ov.iou
    return ious, ov.gt_ids, ov.pred_ids
