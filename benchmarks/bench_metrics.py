"""Benchmark unet.metrics object matching (Falk 2019 M6.1) against a brute-force per-pair implementation.

A 2048 x 2048 ground truth of ~2000 touching Voronoi cells (1-pixel background borders, fixed seed) is
compared with a perturbed prediction (seeds jittered, ~3 % of cells deleted, ~2 % split in two, ids
shuffled to non-consecutive values). Timed (best of ``--repeats``):

* fast: ``object_iou`` + ``matching_scores`` (sparse contingency table, sparse Hungarian);
* brute force: for each (gt object, pred object) pair, full boolean masks ``&`` / ``|`` and two sums, then a
  dense ``linear_sum_assignment``. Only a ``--subset`` x ``--subset`` block of pairs is run; its per-pair time
  is extrapolated to all ``n_gt x n_pred`` pairs (the dense Hungarian is timed in full).

Both must agree: the brute-force IoUs of the subset equal the fast ``iou_matrix`` entries, and the dense
Hungarian on the full IoU matrix gives the same mean IoU as ``object_iou``.

Usage::

    python -m benchmarks.bench_metrics [--size 2048] [--n-objects 2000] [--subset 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment


def voronoi_labels(seeds: np.ndarray, size: int) -> np.ndarray:
    """Voronoi cells of ``seeds`` (labels 1..n) with 1-pixel zero borders between touching cells."""
    marker = np.zeros((size, size), dtype=np.int32)
    marker[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1)
    _, (iy, ix) = ndi.distance_transform_edt(marker == 0, return_indices=True)
    lab = marker[iy, ix]
    border = (ndi.grey_dilation(lab, size=(3, 3)) != ndi.grey_erosion(lab, size=(3, 3))) & (
        lab != ndi.grey_erosion(lab, size=(3, 3))
    )
    lab[border] = 0
    return lab


def make_pair(size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flat = rng.choice(size * size, size=n, replace=False)
    seeds = np.stack(np.unravel_index(flat, (size, size)), axis=1)
    gt = voronoi_labels(seeds, size)
    jitter = np.clip(seeds + rng.normal(0, 3, seeds.shape).round().astype(int), 0, size - 1)
    pred = voronoi_labels(np.unique(jitter, axis=0), size)
    n_pred = int(pred.max())
    ids = np.arange(n_pred + 1)
    ids[rng.random(n_pred + 1) < 0.03] = 0  # deleted cells -> false negatives
    pred = ids[pred]
    split = np.isin(pred, rng.choice(np.unique(pred[pred > 0]), size=n // 50, replace=False))
    yy = np.indices(pred.shape)[0]
    pred = np.where(split & (yy % 40 < 20), pred + n_pred + 1, pred)  # split cells -> extra objects
    perm = np.zeros(pred.max() + 1, dtype=np.int64)
    used = np.unique(pred[pred > 0])
    perm[used] = rng.choice(10**6, size=used.size, replace=False) + 7  # non-consecutive ids
    return gt, perm[pred]


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    from unet.metrics import iou_matrix, matching_scores, object_iou

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--n-objects", type=int, default=2000)
    ap.add_argument("--subset", type=int, default=20, help="gt x pred objects run by the brute force")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    gt, pred = make_pair(args.size, args.n_objects)
    t_obj, res = best_of(lambda: object_iou(gt, pred), args.repeats)
    t_match, scores = best_of(lambda: matching_scores(gt, pred), args.repeats)
    n_gt, n_pred = res.n_gt, res.n_pred

    # ---- brute force on a subset: every gt object with (mostly) overlapping pred objects plus random ones
    rng = np.random.default_rng(1)
    g_sub = rng.choice(res.gt_ids, size=args.subset, replace=False)
    partners = dict(zip(res.matches[:, 0].tolist(), res.matches[:, 1].tolist(), strict=True))
    p_sub = [partners[g] for g in g_sub.tolist() if g in partners][: args.subset // 2]
    others = rng.choice(np.setdiff1d(res.pred_ids, p_sub), size=args.subset - len(p_sub), replace=False)
    p_sub = np.concatenate([np.array(p_sub, dtype=np.int64), others])

    def brute_subset() -> np.ndarray:
        out = np.zeros((g_sub.size, p_sub.size))
        for i, g in enumerate(g_sub):
            a = gt == g
            for j, p in enumerate(p_sub):
                b = pred == p
                out[i, j] = np.count_nonzero(a & b) / np.count_nonzero(a | b)
        return out

    t_sub, brute = best_of(brute_subset, 1)
    t_pair = t_sub / brute.size
    ious, g_ids, p_ids = iou_matrix(gt, pred)
    fast_sub = ious[np.ix_(np.searchsorted(g_ids, g_sub), np.searchsorted(p_ids, p_sub))]
    subset_ok = bool(np.allclose(fast_sub, brute, rtol=0, atol=1e-12))

    def dense_hungarian() -> float:
        r, c = linear_sum_assignment(ious, maximize=True)
        return float(ious[r, c][ious[r, c] > 0].sum() / n_gt)

    t_lsa, mean_dense = best_of(dense_hungarian, 1)
    mean_ok = abs(mean_dense - res.mean_iou) < 1e-9
    t_brute = t_pair * n_gt * n_pred + t_lsa
    t_fast = t_obj + t_match

    print(f"image {gt.shape}, n_gt={n_gt}, n_pred={n_pred}, best of {args.repeats}; machine may be shared\n")
    print("| method | seconds | ratio (brute / fast) |")
    print("|---|---:|---:|")
    print(f"| object_iou (M6.1) | {t_obj:.3f} | |")
    print(f"| matching_scores (9 thresholds) | {t_match:.3f} | |")
    print(f"| **fast total** | **{t_fast:.3f}** | 1 |")
    print(
        f"| brute force, extrapolated ({brute.size} pairs measured, {t_pair * 1e3:.2f} ms/pair "
        f"x {n_gt * n_pred} pairs + dense Hungarian {t_lsa:.2f} s) | {t_brute:.0f} | {t_brute / t_fast:.0f} |"
    )
    print()
    diff = np.abs(fast_sub - brute).max()
    print(f"subset IoUs agree with brute force: {subset_ok} (max |diff| {diff:.1e})")
    print(f"mean IoU: sparse Hungarian {res.mean_iou:.6f}, dense LSA {mean_dense:.6f}: {mean_ok}")
    print(
        f"tp/fp/fn={res.tp}/{res.fp}/{res.fn}; AP(0.5:0.9)={scores.average_precision:.4f}, "
        f"F1@0.5={scores.f1[0]:.4f}, mean F1={scores.mean_f1:.4f}"
    )
    if not (subset_ok and mean_ok):
        raise SystemExit("MISMATCH between fast and brute-force results")


if __name__ == "__main__":
    main()
