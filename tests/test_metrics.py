"""Tests for unet.metrics (Falk 2019 M6.1/M6.2; ISBI 2012 EM challenge metrics of Ronneberger 2015 Tab. 1)."""

from __future__ import annotations

import doctest
import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from unet import metrics
from unet.metrics import (
    adapted_rand_error,
    contingency,
    count_error,
    detection_f1,
    em_scores,
    iou_matrix,
    matching_scores,
    object_iou,
    panoptic_quality,
    pixel_error,
    rand_error,
    rand_index,
    relative_count_error,
    v_info,
    v_rand,
)
from unet.metrics.objects import max_weight_matching


# ------------------------------------------------------------------------------------------ fixtures
def squares(shape: tuple[int, ...], side: int, spacing: int, ids: list[int] | None = None) -> np.ndarray:
    """Grid of ``s // spacing`` squares/cubes per axis, edge ``side``, centred in ``spacing``-sized cells."""
    lab = np.zeros(shape, dtype=np.int32)
    starts = [[(spacing - side) // 2 + k * spacing for k in range(s // spacing)] for s in shape]
    for k, corner in enumerate(itertools.product(*starts)):
        lab[tuple(slice(c, c + side) for c in corner)] = ids[k] if ids else k + 1
    return lab


def random_labels(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    return rng.integers(0, n, size=shape)


def brute_contingency(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    g_ids, p_ids = np.unique(gt), np.unique(pred)
    return np.array([[np.sum((gt == i) & (pred == j)) for j in p_ids] for i in g_ids])


def brute_rand_index(gt: np.ndarray, pred: np.ndarray) -> float:
    g, p = gt.ravel(), pred.ravel()
    same_g = g[:, None] == g[None, :]
    same_p = p[:, None] == p[None, :]
    iu = np.triu_indices(g.size, k=1)  # unordered pairs
    return float(np.mean(same_g[iu] == same_p[iu]))


def _foreground_pixels(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gt foreground pixels; predicted 0 replaced by unique negative ids (singletons)."""
    fg = gt.ravel() != 0
    g = gt.ravel()[fg]
    p = pred.ravel()[fg].astype(np.int64)
    zeros = p == 0
    p[zeros] = -1 - np.arange(zeros.sum())
    return g, p


def brute_v_rand(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    g, p = _foreground_pixels(gt, pred)
    same_g = g[:, None] == g[None, :]  # ordered pairs incl. self-pairs (N^2 normalisation)
    same_p = p[:, None] == p[None, :]
    both = np.sum(same_g & same_p)
    return both / (0.5 * same_p.sum() + 0.5 * same_g.sum()), both / same_g.sum(), both / same_p.sum()


def brute_v_info(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    g, p = _foreground_pixels(gt, pred)
    n = g.size

    def h(values: list) -> float:
        return -sum(c / n * math.log(c / n) for c in Counter(values).values())

    h_t, h_s = h(g.tolist()), h(p.tolist())
    h_st = h(list(zip(g.tolist(), p.tolist(), strict=True)))
    mi = h_s + h_t - h_st
    return mi / (0.5 * h_s + 0.5 * h_t), mi / h_s, mi / h_t


# ------------------------------------------------------------------------------------------ module
def test_module_doctest() -> None:
    result = doctest.testmod(metrics)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------------------------------ contingency
@pytest.mark.parametrize(
    ("pool_g", "pool_p"),
    [
        ([0, 3, 17, 1000], [0, 5, 6, 99, 250]),  # small ids: used directly as bincount slots
        ([0, 3, 17, 1000, 2**40], [0, 5, 6, 99, 250]),  # huge id: np.unique renumbering
        ([0, 1, 4000, 4999], [2, 3001, 4998]),  # slot space 5000 x 4999 too large: bincount renumbering
        ([-5, 0, 7], [-(2**50), 1]),  # negative ids
    ],
)
def test_contingency_equals_brute_force(pool_g: list[int], pool_p: list[int]) -> None:
    rng = np.random.default_rng(0)
    id_pool_g, id_pool_p = np.array(pool_g), np.array(pool_p)
    gt = id_pool_g[rng.integers(0, id_pool_g.size, (12, 12))]
    pred = id_pool_p[rng.integers(0, id_pool_p.size, (12, 12))]
    c = contingency(gt, pred)
    np.testing.assert_array_equal(c.gt_ids, np.unique(gt))
    np.testing.assert_array_equal(c.pred_ids, np.unique(pred))
    np.testing.assert_array_equal(c.to_dense(), brute_contingency(gt, pred))
    np.testing.assert_array_equal(c.to_sparse().toarray(), brute_contingency(gt, pred))
    np.testing.assert_array_equal(c.gt_sizes, [np.sum(gt == i) for i in c.gt_ids])
    np.testing.assert_array_equal(c.pred_sizes, [np.sum(pred == j) for j in c.pred_ids])
    assert c.n_pixels == gt.size
    assert np.all(c.counts > 0)


def test_contingency_3d_and_bool() -> None:
    rng = np.random.default_rng(1)
    gt = random_labels(rng, (4, 5, 6), 4).astype(np.uint16)
    pred = rng.random((4, 5, 6)) > 0.5
    np.testing.assert_array_equal(contingency(gt, pred).to_dense(), brute_contingency(gt, pred.astype(int)))


def test_input_validation() -> None:
    with pytest.raises(TypeError):
        contingency(np.zeros((3, 3)), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="shape"):
        contingency(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError):
        matching_scores(np.zeros((3, 3), int), np.zeros((3, 3), int), thresholds=(0.0,))


def test_iou_matrix_against_full_masks() -> None:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:40, :40]
    gt, pred = np.zeros((40, 40), int), np.zeros((40, 40), int)
    for k in range(6):  # overlapping random disks, later ones paint over earlier ones
        (cy, cx), r = rng.integers(5, 35, 2).tolist(), int(rng.integers(3, 8))
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 10 * (k + 1)
        pred[(yy - cy - 2) ** 2 + (xx - cx + 1) ** 2 <= r * r] = 7 + k
    ious, g_ids, p_ids = iou_matrix(gt, pred)
    for i, g in enumerate(g_ids):
        for j, p in enumerate(p_ids):
            a, b = gt == g, pred == p
            assert ious[i, j] == pytest.approx(np.sum(a & b) / np.sum(a | b))
    assert 0 not in g_ids and 0 not in p_ids


# ------------------------------------------------------------------------------------------ M6.1 object IoU
def test_identical_masks_perfect() -> None:
    gt = squares((64, 64), 8, 16, ids=[5, 9, 200, 3, 77, 12, 41, 8, 1, 2, 4, 6, 7, 10, 11, 13])
    res = object_iou(gt, gt)
    assert res.mean_iou == 1.0 and res.tp == 16 and res.fp == 0 and res.fn == 0
    np.testing.assert_array_equal(res.matches[:, 0], res.matches[:, 1])
    s = matching_scores(gt, gt)
    assert np.all(s.f1 == 1.0) and s.average_precision == 1.0 and s.mean_f1 == 1.0
    assert np.all(s.tp == 16)


@pytest.mark.parametrize("shift", [1, 2, 3, 5])
def test_shifted_squares_analytic(shift: int) -> None:
    side = 10
    gt = squares((96, 96), side, 24)
    pred = np.roll(gt, shift, axis=1)  # margin keeps objects inside; relabel to non-consecutive ids
    pred = np.where(pred > 0, pred * 3 + 100, 0)
    n = int(gt.max())
    expected = (side - shift) / (side + shift)
    res = object_iou(gt, pred)
    assert res.mean_iou == pytest.approx(expected)
    np.testing.assert_allclose(res.per_gt_iou, expected)
    ths = (0.3, 0.5, 0.6, 0.7, 0.9)
    s = matching_scores(gt, pred, thresholds=ths)
    tp = np.where(np.array(ths) <= expected, n, 0)
    np.testing.assert_array_equal(s.tp, tp)
    np.testing.assert_array_equal(s.fp, n - tp)
    np.testing.assert_array_equal(s.fn, n - tp)
    np.testing.assert_allclose(s.f1, tp / n)
    np.testing.assert_allclose(s.accuracy, tp / (2 * n - tp))
    assert s.average_precision == pytest.approx(np.mean(tp / (2 * n - tp)))


def test_m61_unmatched_gt_counts_zero_and_fp_ignored() -> None:
    gt = np.zeros((20, 20), int)
    gt[2:6, 2:6] = 1
    gt[10:14, 10:14] = 2
    pred = np.zeros_like(gt)
    pred[2:6, 2:5] = 4  # IoU 12/16 with gt 1, gt 2 missed
    res = object_iou(gt, pred)
    assert res.mean_iou == pytest.approx(0.75 / 2)
    np.testing.assert_allclose(res.per_gt_iou, [0.75, 0.0])
    pred2 = pred.copy()
    pred2[16:19, 16:19] = 9  # extra false positive far away
    res2 = object_iou(gt, pred2)
    assert res2.mean_iou == res.mean_iou
    assert (res2.tp, res2.fp, res2.fn) == (1, 1, 1)


def test_zero_iou_pair_is_not_a_match() -> None:
    gt = np.zeros((20, 20), int)
    gt[2:6, 2:6] = 1
    gt[10:14, 10:14] = 2
    pred = np.zeros_like(gt)
    pred[2:6, 2:6] = 5  # perfect for gt 1
    pred[16:19, 0:3] = 6  # overlaps nothing: a full assignment would pair it with gt 2 at IoU 0
    res = object_iou(gt, pred)
    assert res.matches.tolist() == [[1, 5]]
    assert (res.tp, res.fp, res.fn) == (1, 1, 1)
    assert res.mean_iou == pytest.approx(0.5)


def _row(*segments: tuple[int, int, int]) -> np.ndarray:
    lab = np.zeros((1, 24), int)
    for label, a, b in segments:
        lab[0, a:b] = label
    return lab


def test_hungarian_beats_greedy_object_iou() -> None:
    gt = _row((1, 0, 10), (2, 10, 20))
    pred = _row((8, 0, 4), (7, 4, 14))  # pred 7: IoU 6/14 with gt 1 (the single best pair), 4/16 with gt 2
    # greedy (best pair first): gt1-pred7 = 0.43, then nothing left for gt 2 -> mean 0.214
    # optimal: gt1-pred8 (0.4) + gt2-pred7 (0.25) -> mean 0.325
    res = object_iou(gt, pred)
    assert sorted(res.matches.tolist()) == [[1, 8], [2, 7]]
    assert res.mean_iou == pytest.approx((0.4 + 0.25) / 2)
    # matching_scores maximises the number of matches first at low thresholds
    s = matching_scores(gt, pred, thresholds=(0.2, 0.42, 0.5))
    assert s.tp.tolist() == [2, 1, 0]


def test_sparse_matching_equals_dense_hungarian() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        k, m = rng.integers(1, 9, 2)
        w = rng.random((k, m)) * (rng.random((k, m)) < 0.4)
        rows, cols = np.nonzero(w)
        e = max_weight_matching(rows, cols, w[rows, cols], k, m)
        assert np.unique(rows[e]).size == e.size and np.unique(cols[e]).size == e.size
        r, c = linear_sum_assignment(w, maximize=True)
        assert w[rows[e], cols[e]].sum() == pytest.approx(w[r, c].sum())


def test_object_iou_3d() -> None:
    gt = squares((24, 24, 24), 6, 12)  # 2x2x2 cubes
    pred = np.roll(gt, 1, axis=0)
    res = object_iou(gt, pred)
    assert res.n_gt == 8 and res.tp == 8
    assert res.mean_iou == pytest.approx(5 / 7)
    assert matching_scores(gt, pred, thresholds=(0.7, 0.75)).tp.tolist() == [8, 0]


def test_empty_label_images() -> None:
    z = np.zeros((8, 8), int)
    res = object_iou(z, z)
    assert res.n_gt == 0 and res.n_pred == 0 and math.isnan(res.mean_iou)
    s = matching_scores(z, z)
    assert np.all(s.f1 == 1) and s.average_precision == 1.0 and np.all(s.precision == 1)
    one = z.copy()
    one[2:4, 2:4] = 1
    s_fp = matching_scores(z, one)  # only false positives
    assert np.all(s_fp.precision == 0) and np.all(s_fp.f1 == 0) and np.all(s_fp.fp == 1)
    s_fn = matching_scores(one, z)  # only false negatives
    assert np.all(s_fn.recall == 0) and np.all(s_fn.f1 == 0)
    assert object_iou(one, z).mean_iou == 0.0
    ious, g, p = iou_matrix(one, z)
    assert ious.shape == (1, 0) and g.tolist() == [1] and p.size == 0
    c = contingency(np.zeros((0, 3), int), np.zeros((0, 3), int))
    assert c.n_pixels == 0 and c.counts.size == 0


# ------------------------------------------------------------------------------------------ M6.2 detection
def test_detection_identical_points() -> None:
    pts = np.array([[1.0, 2.0], [10.0, 5.0], [7.0, 7.0]])
    r = detection_f1(pts, pts[::-1], d_match=0.5)
    assert (r.tp, r.fp, r.fn, r.f1) == (3, 0, 0, 1.0)
    assert sorted(r.matches.tolist()) == [[0, 2], [1, 1], [2, 0]]


@pytest.mark.parametrize(("offset", "matched"), [(2.999, True), (3.0, True), (3.001, False)])
def test_detection_d_match_boundary(offset: float, matched: bool) -> None:
    r = detection_f1([[5.0, 5.0]], [[5.0, 5.0 + offset]], d_match=3.0)
    assert r.tp == int(matched) and r.fp == int(not matched) and r.fn == int(not matched)


def test_detection_element_size() -> None:
    # 4 px apart along x; with 0.5 um pixels in x that is 2 um <= d_match
    r = detection_f1([[0, 0]], [[0, 4]], d_match=2.0, element_size=(1.0, 0.5))
    assert r.tp == 1
    assert detection_f1([[0, 0]], [[0, 4]], d_match=2.0).tp == 0


def test_detection_hungarian_beats_greedy() -> None:
    gt = [[0.0], [2.0]]
    pred = [[0.9], [-1.2]]
    # greedy nearest pair first: g0-p0 (0.9), then p1 only reaches g0 -> tp 1
    # Hungarian: g0-p1 (1.2) + g1-p0 (1.1) = 2.3 < 0.9 + 3.2 -> tp 2
    r = detection_f1(gt, pred, d_match=1.5)
    assert (r.tp, r.fp, r.fn) == (2, 0, 0)
    assert sorted(r.matches.tolist()) == [[0, 1], [1, 0]]


def test_detection_m62_far_assignment_counts_fp_and_fn() -> None:
    # Minimising the total distance over the remaining points pairs g0 with p1 at 2.19 > d_match:
    # Falk M6.2 counts that pair as one FN + one FP (a max-cardinality matching would find 2 matches).
    gt = [[0.0, 0.0], [1.5, 0.1]]
    pred = [[1.5, 0.0], [1.5, 1.6]]
    r = detection_f1(gt, pred, d_match=1.5)
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)
    assert r.matches.tolist() == [[1, 0]]
    assert r.distances == pytest.approx([0.1])


def test_detection_prefilter_fp_fn() -> None:
    r = detection_f1([[0, 0], [50, 50]], [[0.5, 0.5], [-0.5, 0.2], [90, 90]], d_match=2.0)
    assert (r.tp, r.fp, r.fn) == (1, 2, 1)
    assert r.precision == pytest.approx(1 / 3) and r.recall == pytest.approx(0.5)
    assert r.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_detection_empty_sets() -> None:
    both = detection_f1([], [], d_match=1.0)
    assert (both.tp, both.fp, both.fn, both.precision, both.recall, both.f1) == (0, 0, 0, 1.0, 1.0, 1.0)
    no_gt = detection_f1(np.zeros((0, 2)), [[1, 1]], d_match=1.0)
    assert (no_gt.fp, no_gt.precision, no_gt.f1) == (1, 0.0, 0.0)
    no_pred = detection_f1([[1, 1], [3, 3]], [], d_match=1.0)
    assert (no_pred.fn, no_pred.recall, no_pred.f1) == (2, 0.0, 0.0)


def test_detection_3d() -> None:
    gt = [[0, 0, 0], [10, 10, 10]]
    pred = [[0, 1, 1], [10, 10, 13]]
    r = detection_f1(gt, pred, d_match=2.0)
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)


# ------------------------------------------------------------------------------------------ pixel / Rand
def test_pixel_error() -> None:
    gt = np.array([[1, 1, 0, 0]])
    assert pixel_error(gt, np.array([[0.9, 0.5, 0.1, 0.6]])) == pytest.approx(0.5)  # 0.5 is not > 0.5
    assert pixel_error(gt * 255, np.array([[True, True, False, False]])) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_rand_scores_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = random_labels(rng, (12, 12), 4) * 7  # non-consecutive ids, 0 = excluded
    pred = random_labels(rng, (12, 12), 5)
    if seed == 3:  # structured case: blocks with a few label swaps
        gt = np.repeat(np.repeat(rng.integers(0, 4, (3, 3)), 4, 0), 4, 1)
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.1] = 0
    assert rand_index(gt, pred) == pytest.approx(brute_rand_index(gt, pred))
    assert rand_error(gt, pred) == pytest.approx(1 - brute_rand_index(gt, pred))
    vr = v_rand(gt, pred)
    np.testing.assert_allclose([vr.v_rand, vr.split, vr.merge], brute_v_rand(gt, pred))
    assert adapted_rand_error(gt, pred) == pytest.approx(1 - brute_v_rand(gt, pred)[0])
    vi = v_info(gt, pred)
    np.testing.assert_allclose([vi.v_info, vi.split, vi.merge], brute_v_info(gt, pred))


def test_rand_scores_3d_against_brute_force() -> None:
    rng = np.random.default_rng(7)
    gt, pred = random_labels(rng, (4, 5, 5), 3), random_labels(rng, (4, 5, 5), 4)
    assert rand_index(gt, pred) == pytest.approx(brute_rand_index(gt, pred))
    vr = v_rand(gt, pred)
    np.testing.assert_allclose([vr.v_rand, vr.split, vr.merge], brute_v_rand(gt, pred))


def test_split_and_merge_semantics() -> None:
    gt = np.zeros((10, 21), int)
    gt[:, :10] = 1
    gt[:, 11:] = 2  # column 10 is boundary (excluded)
    assert rand_error(gt, gt) == 0.0
    assert v_rand(gt, gt).v_rand == 1.0 and v_info(gt, gt).v_info == pytest.approx(1.0)
    split = gt.copy()
    split[:5, :10] = 3  # object 1 split in two
    assert v_rand(gt, split).merge == 1.0 and v_rand(gt, split).split < 1.0
    assert v_info(gt, split).merge == pytest.approx(1.0) and v_info(gt, split).split < 1.0
    merged = np.where(gt > 0, 1, 0)  # both objects merged
    assert v_rand(gt, merged).split == 1.0 and v_rand(gt, merged).merge < 1.0
    assert v_info(gt, merged).split == pytest.approx(1.0) and v_info(gt, merged).merge < 1.0
    # predicted boundary pixels inside gt foreground are singletons: no merge, only split
    holes = gt.copy()
    holes[:, 4] = 0
    assert v_rand(gt, holes).merge == 1.0 and v_rand(gt, holes).split < 1.0


def test_rand_empty_foreground() -> None:
    z = np.zeros((5, 5), int)
    assert v_rand(z, z).v_rand == 1.0 and v_info(z, z).v_info == 1.0
    assert rand_error(z, z) == 0.0


# ------------------------------------------------------------------------------------------ EM challenge
def _membrane_gt() -> np.ndarray:
    gt = np.ones((32, 32), np.uint8)
    gt[[0, 10, 21, 31], :] = 0
    gt[:, [0, 15, 31]] = 0  # 6 cells separated by 1-pixel membranes
    return gt


def test_em_scores_perfect_and_merged() -> None:
    gt = _membrane_gt()
    perfect = em_scores(gt, 1.0 - gt)
    assert perfect.thresholds.size == 10
    for arr in (perfect.pixel_error, perfect.rand_error, perfect.adapted_rand_error, perfect.v_info_error):
        np.testing.assert_allclose(arr, 0.0, atol=1e-12)
    assert perfect.pixel_error_at_05 == 0.0 and perfect.best_adapted_rand_error == pytest.approx(0.0)
    # a weak membrane (probability 0.6) disappears for thresholds < 0.4: two cells merge there
    prob = 1.0 - gt.astype(float)
    prob[10, 1:15] = 0.6
    s = em_scores(gt, prob)
    low = s.thresholds < 0.4 - 1e-9
    assert np.all(s.adapted_rand_error[low] > 0) and np.all(s.adapted_rand_error[~low] < 1e-12)
    assert s.pixel_error[0] == pytest.approx(14 / gt.size)
    assert s.best_adapted_rand_error == pytest.approx(0.0, abs=1e-12)
    assert s.adapted_rand_error_at_05 == pytest.approx(0.0, abs=1e-12)
    interior = em_scores(gt, 1.0 - prob, membrane=False)
    np.testing.assert_allclose(interior.adapted_rand_error, s.adapted_rand_error)


def test_em_scores_stack_is_mean_of_sections() -> None:
    gt = _membrane_gt()
    rng = np.random.default_rng(4)
    p1 = np.clip(1.0 - gt + rng.normal(0, 0.3, gt.shape), 0, 1)
    p2 = np.clip(1.0 - gt + rng.normal(0, 0.3, gt.shape), 0, 1)
    ths = (0.3, 0.5)
    a, b = em_scores(gt, p1, ths), em_scores(gt, p2, ths)
    st = em_scores(np.stack([gt, gt]), np.stack([p1, p2]), ths)
    np.testing.assert_allclose(st.rand_error, (a.rand_error + b.rand_error) / 2)
    np.testing.assert_allclose(st.v_info_error, (a.v_info_error + b.v_info_error) / 2)
    assert st.pixel_error_at_05 == pytest.approx(st.pixel_error[1])
    # 4-connected labelling of the thresholded interior, as the challenge scripts
    lab = ndi.label((1 - p1) > 0.5)[0]
    assert a.adapted_rand_error[1] == pytest.approx(adapted_rand_error(ndi.label(gt)[0], lab))


# ------------------------------------------------------------------------------------------ counting
def test_count_errors() -> None:
    assert count_error(10, 7) == 3.0
    np.testing.assert_array_equal(count_error([10, 5], [12, 5]), [2.0, 0.0])
    assert relative_count_error(10, 7) == pytest.approx(0.3)
    assert relative_count_error(0, 0) == 0.0 and relative_count_error(0, 2) == math.inf


def test_foreground_overlap_against_pixel_sets() -> None:
    from unet.metrics import foreground_overlap

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 4, (20, 30)) * (rng.random((20, 30)) < 0.5)
    pred = rng.integers(0, 3, (20, 30))
    g = {tuple(i) for i in np.argwhere(gt)}
    p = {tuple(i) for i in np.argwhere(pred)}
    iou, dice = foreground_overlap(gt, pred)
    assert iou == pytest.approx(len(g & p) / len(g | p))
    assert dice == pytest.approx(2 * len(g & p) / (len(g) + len(p)))
    assert foreground_overlap(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    assert foreground_overlap(np.ones((3, 3)), np.zeros((3, 3))) == (0.0, 0.0)


# ------------------------------------------------------------------------------------------ panoptic quality
def test_panoptic_quality_analytic() -> None:
    """One object matched at IoU 2/3, one false positive: PQ = (2/3) / (1 + 1/2), SQ = 2/3, RQ = 2/3."""
    gt = np.zeros((20, 20), np.int32)
    gt[0:6, 0:6] = 1
    pred = np.zeros_like(gt)
    pred[0:6, 0:4] = 5  # 24 of gt's 36 pixels, nothing outside: IoU 24/36
    pred[15:18, 15:18] = 6  # a false positive
    r = panoptic_quality(gt, pred)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    assert r.sq == pytest.approx(2 / 3) and r.rq == pytest.approx(2 / 3) and r.pq == pytest.approx(4 / 9)
    # object IoU (M6.1) ignores the false positive; PQ does not
    assert object_iou(gt, pred).mean_iou == pytest.approx(2 / 3)
    assert panoptic_quality(gt, np.where(pred == 6, 0, pred)).pq == pytest.approx(2 / 3)
    assert panoptic_quality(np.zeros_like(gt), np.zeros_like(gt)).pq == 1.0
    assert panoptic_quality(gt, np.zeros_like(gt)).pq == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_panoptic_quality_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = ndi.label(rng.random((40, 40)) > 0.6)[0]
    pred = ndi.label(ndi.binary_dilation(gt > 0) & (rng.random((40, 40)) > 0.15))[0]
    ious = {}
    for g in range(1, gt.max() + 1):
        for q in range(1, pred.max() + 1):
            inter = np.sum((gt == g) & (pred == q))
            union = np.sum((gt == g) | (pred == q))
            ious[g, q] = inter / union
    matched = [v for v in ious.values() if v > 0.5]
    tp = len(matched)
    fp, fn = pred.max() - tp, gt.max() - tp
    r = panoptic_quality(gt, pred)
    assert (r.tp, r.fp, r.fn) == (tp, fp, fn)
    assert r.pq == pytest.approx(sum(matched) / (tp + fp / 2 + fn / 2))


def test_accuracy_from_counts_is_ap50_and_matches_matching_scores() -> None:
    from unet.metrics import matching_scores
    from unet.metrics.objects import accuracy_from_counts

    assert accuracy_from_counts(1, 2, 2) == 1 / 5
    assert accuracy_from_counts(0, 0, 0) == 1.0  # nothing to find, nothing found
    assert accuracy_from_counts(0, 1, 0) == 0.0
    with pytest.raises(ValueError):
        accuracy_from_counts(1, -1, 0)
    gt = np.zeros((20, 20), dtype=int)
    gt[0:10, 0:10], gt[12:18, 12:18] = 1, 2
    pred = np.zeros_like(gt)
    pred[0:10, 0:8] = 3  # IoU 0.8 with object 1; object 2 missed
    pred[12:14, 0:4] = 4  # spurious
    s = matching_scores(gt, pred, thresholds=(0.5, 0.9))
    assert s.accuracy.tolist() == [1 / 3, 0.0]
    assert [accuracy_from_counts(*c) for c in zip(s.tp, s.fp, s.fn)] == s.accuracy.tolist()
