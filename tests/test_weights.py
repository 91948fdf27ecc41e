"""Tests for unet.data.weights: ridges, d1/d2, w_bal, w_sep, targets (Falk 2019 M2-M3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from unet.data.weights import (
    balance_weights,
    detection_targets,
    distance_maps,
    insert_ridges,
    sampling_pdf,
    segmentation_targets,
    semantic_targets,
    separation_weights,
)


# ------------------------------------------------------------------------------------------------ helpers
def ball(shape, centre, radius, scale=None) -> np.ndarray:
    """Bool disk/ball of physical ``radius`` around ``centre``; ``scale`` is the per-axis pixel extent."""
    scale = np.ones(len(shape)) if scale is None else np.asarray(scale)
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, scale, strict=True))
    return d2 <= radius**2


def two_touching(shape, c1, c2, radius, scale=None) -> np.ndarray:
    """Label 1 and 2 balls that overlap; label 2 painted last, so they touch along a shared front."""
    labels = np.zeros(shape, dtype=np.int32)
    labels[ball(shape, c1, radius, scale)] = 1
    labels[ball(shape, c2, radius, scale)] = 2
    return labels


def full_structure(ndim: int) -> np.ndarray:
    return np.ones((3,) * ndim, dtype=bool)


def touching_pairs(labels: np.ndarray) -> int:
    """Brute force: number of (pixel, neighbour) pairs of different instances under full connectivity."""
    count = 0
    padded = np.pad(labels, 1)
    for idx in zip(*np.nonzero(labels), strict=True):
        window = padded[tuple(slice(i, i + 3) for i in idx)]
        count += int(np.sum((window > 0) & (window != labels[idx])))
    return count


def reference_distances(labels: np.ndarray, sampling) -> tuple[np.ndarray, np.ndarray]:
    """Obviously-correct d1/d2: one full EDT per instance, stack, sort."""
    ids = [i for i in np.unique(labels) if i != 0]
    stack = [ndi.distance_transform_edt(labels != i, sampling=sampling) for i in ids]
    stack += [np.full(labels.shape, np.inf)] * 2
    stack = np.sort(np.stack(stack), axis=0)
    return stack[0], stack[1]


def random_labels(rng: np.random.Generator, shape, n: int) -> np.ndarray:
    """Random blobs with sparse ids (incl. a huge one), many touching, some split into pieces."""
    seeds = np.zeros(shape, dtype=np.int64)
    ids = rng.choice(np.arange(1, 40), size=n, replace=False)
    ids[0] = 10**12  # exercises relabelling of sparse ids
    for i in ids:
        seeds[tuple(rng.integers(0, s) for s in shape)] = i
    grown = ndi.grey_dilation(seeds, size=(3,) * len(shape))
    grown[rng.random(shape) < 0.4] = 0
    return grown


def sampling_of(element_size, ndim):
    if element_size is None:
        return (1.0,) * ndim
    es = np.asarray(element_size, dtype=float)
    return tuple(es / es.min())


# ------------------------------------------------------------------------------------------------ ridges
def test_ridge_between_touching_squares_is_one_column():
    labels = np.zeros((12, 20), dtype=np.uint16)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2
    out = insert_ridges(labels)
    assert out.dtype == labels.dtype
    ridge = (labels > 0) & (out == 0)
    assert np.array_equal(np.nonzero(ridge)[1], np.full(8, 10))  # exactly column 10, rows 2..9
    assert np.array_equal(out == 1, labels == 1)  # lower id is kept whole
    assert labels[3, 3] == 1 and labels is not out


def test_ridges_separate_touching_disks_2d():
    labels = two_touching((40, 48), (20, 16), (20, 31), 9.0)
    out = insert_ridges(labels)
    _, n = ndi.label(out > 0, structure=full_structure(2))
    assert n == 2
    ridge = (labels > 0) & (out == 0)
    # only instance 2 loses pixels, exactly those 8-adjacent to instance 1: the ridge is one pixel thick
    near_1 = ndi.binary_dilation(labels == 1, structure=full_structure(2))
    assert np.array_equal(ridge, (labels == 2) & near_1)
    assert (out == 1).sum() == (labels == 1).sum()
    assert (out == 2).sum() == (labels == 2).sum() - ridge.sum()
    assert 0 < ridge.sum() <= 2 * 9 + 1
    # separation weight peaks on the ridge
    w = separation_weights(out)
    assert ridge[np.unravel_index(np.argmax(w), w.shape)]
    assert w[ridge].min() > 0.85  # d1 + d2 <= 3 on the ridge
    away = ~ndi.binary_dilation(ridge, structure=full_structure(2), iterations=2)
    assert w[away].max() < w[ridge].min()


def test_ridges_separate_touching_balls_3d_anisotropic():
    es = (2.0, 1.0, 1.0)  # z pixels twice as long
    labels = two_touching((12, 30, 40), (6, 15, 13), (6, 15, 26), 7.0, scale=es)
    out = insert_ridges(labels)
    _, n = ndi.label(out > 0, structure=full_structure(3))
    assert n == 2
    assert touching_pairs(out) == 0
    ridge = (labels > 0) & (out == 0)
    assert np.array_equal(
        ridge, (labels == 2) & ndi.binary_dilation(labels == 1, structure=full_structure(3))
    )
    w = separation_weights(out, element_size=es)
    assert ridge[np.unravel_index(np.argmax(w), w.shape)]
    assert np.all(w[out > 0] == 0)


@pytest.mark.parametrize("shape", [(17, 19), (7, 9, 8)])
def test_ridges_random_no_touching_and_keep_untouched(shape):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=shape).astype(np.int32)
    out = insert_ridges(labels)
    assert touching_pairs(out) == 0
    # a pixel with no neighbour of a different instance is kept
    padded = np.pad(labels, 1)
    for idx in zip(*np.nonzero(labels), strict=True):
        window = padded[tuple(slice(i, i + 3) for i in idx)]
        if not np.any((window > 0) & (window != labels[idx])):
            assert out[idx] == labels[idx]
    assert np.all((out == 0) | (out == labels))


# --------------------------------------------------------------------------------------------- distances
@pytest.mark.parametrize(
    ("shape", "element_size"),
    [((23, 29), None), ((23, 29), (1.0, 0.4)), ((9, 14, 13), None), ((9, 14, 13), (0.5, 0.2, 0.2))],
)
@pytest.mark.parametrize("max_distance", [None, 4.5])
def test_distance_maps_match_brute_force(shape, element_size, max_distance):
    rng = np.random.default_rng(sum(shape))
    labels = random_labels(rng, shape, 6)
    ref1, ref2 = reference_distances(labels, sampling_of(element_size, len(shape)))
    d1, d2 = distance_maps(labels, element_size, max_distance)
    assert d1.dtype == d2.dtype == np.float32
    limit = np.inf if max_distance is None else max_distance
    for ours, ref in ((d1, ref1), (d2, ref2)):
        near = ref <= limit
        np.testing.assert_allclose(ours[near], ref[near], rtol=1e-6)
        assert np.all(np.isinf(ours[~near]))
    assert np.all(d1[labels > 0] == 0)


def test_distance_maps_few_instances():
    d1, d2 = distance_maps(np.zeros((5, 6), dtype=np.uint8))
    assert np.all(np.isinf(d1)) and np.all(np.isinf(d2))
    labels = np.zeros((5, 6), dtype=np.uint8)
    labels[2, 3] = 4
    d1, d2 = distance_maps(labels)
    assert d1[2, 0] == 3 and np.all(np.isinf(d2))


@pytest.mark.parametrize(
    ("shape", "element_size"), [((31, 27), None), ((31, 27), (2.0, 1.0)), ((10, 16, 15), (3.0, 1.0, 1.0))]
)
def test_separation_weights_match_brute_force(shape, element_size):
    rng = np.random.default_rng(7)
    labels = insert_ridges(random_labels(rng, shape, 7))
    sigma, truncate = 2.5, 1e-3
    ref1, ref2 = reference_distances(labels, sampling_of(element_size, len(shape)))
    ref = np.exp(-((ref1 + ref2) ** 2) / (2 * sigma**2))
    ref[(labels > 0) | (ref < truncate)] = 0
    w = separation_weights(labels, sigma_sep=sigma, element_size=element_size, truncate=truncate)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, ref, atol=1e-6)
    assert np.count_nonzero(w) > 0


# --------------------------------------------------------------------------------------------- balancing
def test_balance_weights_analytic_2d():
    fg = np.zeros((41, 41), dtype=bool)
    fg[20, 20] = True
    v, sigma = 0.1, 5.0
    w = balance_weights(fg, v_bal=v, sigma_bal=sigma)
    assert w.dtype == np.float32 and w[20, 20] == 1
    for r in (1, 3, 7, 20):
        expected = v + (1 - v) * math.exp(-(r**2) / (2 * sigma**2))
        assert w[20, 20 + r] == pytest.approx(expected, rel=1e-6)
    r = math.sqrt(2) * 4
    assert w[24, 24] == pytest.approx(v + (1 - v) * math.exp(-(r**2) / (2 * sigma**2)), rel=1e-6)
    # anisotropic: y pixels 2.5x as long as x pixels -> distances in x-pixel units
    w_aniso = balance_weights(fg, v_bal=v, sigma_bal=sigma, element_size=(0.5, 0.2))
    assert w_aniso[22, 20] == pytest.approx(v + (1 - v) * math.exp(-(5.0**2) / (2 * sigma**2)), rel=1e-6)
    assert w_aniso[20, 25] == pytest.approx(w_aniso[22, 20], rel=1e-6)


def test_balance_weights_3d_ignore_and_step():
    fg = np.zeros((5, 9, 9), dtype=bool)
    fg[2, 4, 4] = True
    ignore = np.zeros_like(fg)
    ignore[:, :, 0] = True
    w = balance_weights(fg, ignore, v_bal=0.2, sigma_bal=2.0, element_size=(2.0, 1.0, 1.0))
    assert np.all(w[ignore] == 0)
    assert w[3, 4, 4] == pytest.approx(0.2 + 0.8 * math.exp(-4 / 8), rel=1e-6)  # one z step = 2 px
    step = balance_weights(fg, ignore, v_bal=0.2, smooth=False)
    assert set(np.unique(step).tolist()) == {0.0, np.float32(0.2), 1.0}
    # no foreground: background weight everywhere
    assert np.all(balance_weights(np.zeros((4, 4), bool), v_bal=0.3) == np.float32(0.3))


def test_pdf_sums_to_one_with_ratio_and_ignore():
    rng = np.random.default_rng(0)
    fg = rng.random((16, 18)) < 0.3
    ignore = rng.random((16, 18)) < 0.1
    pdf = sampling_pdf(fg, ignore, v_bal=0.1)
    assert pdf.dtype == np.float64 and pdf.sum() == pytest.approx(1.0)
    assert np.all(pdf[ignore] == 0)
    f, b = fg & ~ignore, ~fg & ~ignore
    assert np.ptp(pdf[f]) == 0 and np.ptp(pdf[b]) == 0
    assert pdf[f][0] / pdf[b][0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="zero everywhere"):
        sampling_pdf(fg, np.ones_like(fg))


# ----------------------------------------------------------------------------------------------- targets
def test_segmentation_targets_combines_terms():
    labels = two_touching((30, 40), (15, 13), (15, 26), 7.0)
    labels[3:6, 33:37] = 5
    ignore = np.zeros(labels.shape, dtype=bool)
    ignore[25:, :5] = True
    target, weights, pdf = segmentation_targets(labels, ignore=ignore, class_of_instance={1: 1, 2: 2, 5: 1})
    assert target.dtype == np.int64 and weights.dtype == np.float32 and pdf.dtype == np.float64
    ridged = insert_ridges(labels)
    assert np.array_equal(target > 0, ridged > 0)
    assert np.all(target[ridged == 2] == 2) and np.all(target[ridged == 5] == 1)
    expected = balance_weights(ridged > 0) + 50 * separation_weights(ridged)
    expected[ignore] = 0
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights.max() > 40  # ridge pixels: w'_bal + lambda * ~0.95
    assert np.all(weights[ignore] == 0) and np.all(pdf[ignore] == 0) and pdf.sum() == pytest.approx(1)
    # lookup-table classes, no ridges, no separation term
    lut = np.array([0, 1, 1, 0, 0, 3])
    target2, weights2, _ = segmentation_targets(labels, class_of_instance=lut, ridges=False, lambda_sep=0)
    assert np.array_equal(target2[labels == 5], np.full((labels == 5).sum(), 3))
    np.testing.assert_array_equal(weights2, balance_weights(labels > 0))


def test_semantic_targets():
    mask = np.zeros((6, 10, 10), dtype=np.uint8)
    mask[1:3, 2:5, 2:5] = 1
    mask[4, 6:9, 6:9] = 2
    target, weights, pdf = semantic_targets(mask, element_size=(3.0, 1.0, 1.0))
    assert np.array_equal(target, mask) and target.dtype == np.int64
    np.testing.assert_array_equal(weights, balance_weights(mask > 0, element_size=(3.0, 1.0, 1.0)))
    assert pdf.sum() == pytest.approx(1)


# --------------------------------------------------------------------------------------------- detection
def test_detection_disk_and_ring_counts_2d():
    target, weights, pdf = detection_targets(np.array([[10.0, 10.0]]), (21, 21), radius=2.0, r_ign=4.0)
    assert target.sum() == 13  # lattice points with |p| <= 2
    ring = (weights == 0) & (target == 0)
    assert ring.sum() == 49 - 13  # lattice points with 2 < |p| <= 4
    assert np.all(pdf[ring] == 0) and pdf.sum() == pytest.approx(1)
    assert np.all(weights[target == 1] == 1) and weights[0, 0] > 0.1
    # default r_ign = 2 * radius; r_ign <= radius disables the ring
    assert np.array_equal(detection_targets(np.array([[10.0, 10.0]]), (21, 21))[1], weights)
    assert np.all(detection_targets(np.array([[10.0, 10.0]]), (21, 21), r_ign=0)[1] > 0)


def test_detection_3d_classes_nearest_wins_and_anisotropy():
    points = np.array([[4.0, 10.0, 10.0], [4.0, 10.0, 13.0]])
    target, weights, _ = detection_targets(
        points, (9, 21, 21), classes=np.array([1, 2]), radius=2.0, r_ign=4.5, element_size=(2.0, 1.0, 1.0)
    )
    assert target[4, 10, 11] == 1 and target[4, 10, 12] == 2  # split at the midpoint 11.5
    assert target[4, 10, 8] == 1 and target[4, 10, 15] == 2
    assert target[5, 10, 10] == 1 and target[6, 10, 10] == 0  # z step is 2 px: within / outside radius 2
    assert weights[6, 10, 10] == 0  # ... but within r_ign = 4.5 of point 0 -> ignored
    assert weights[7, 10, 10] > 0  # 6 px away: beyond the ring
    assert weights[4, 10, 12] == 1  # inside point 1's disk although within point 0's ring


def test_detection_small_radius_keeps_own_pixel_and_outside_raises():
    target, _, _ = detection_targets(np.array([[3.4, 5.6]]), (8, 8), radius=0.3)
    assert target.sum() == 1 and target[3, 6] == 1
    with pytest.raises(ValueError, match=r"index 1 at \[8\.0, 2\.0\]"):
        detection_targets(np.array([[1.0, 1.0], [8.0, 2.0]]), (8, 8))
    with pytest.raises(ValueError, match="index 0"):
        detection_targets(np.array([[-0.6, 1.0]]), (8, 8))
    target, _, pdf = detection_targets(np.zeros((0, 2)), (4, 5))
    assert target.sum() == 0 and pdf.sum() == pytest.approx(1)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: insert_ridges(np.ones((4, 4), dtype=np.float32)), "integer dtype"),
        (lambda: insert_ridges(-np.ones((4, 4), dtype=np.int16)), "non-negative"),
        (lambda: insert_ridges(np.ones(4, dtype=np.int16)), "2D"),
        (lambda: distance_maps(np.ones((4, 4), int), element_size=(1.0,)), "element_size"),
        (lambda: distance_maps(np.ones((4, 4), int), element_size=(1.0, 0.0)), "positive"),
        (lambda: distance_maps(np.ones((4, 4), int), max_distance=-1), "max_distance"),
        (lambda: separation_weights(np.ones((4, 4), int), truncate=1.0), "truncate"),
        (lambda: balance_weights(np.ones((4, 4), bool), np.zeros((4, 5), bool)), "shape"),
        (lambda: balance_weights(np.ones((4, 4), bool), v_bal=1.5), "v_bal"),
        (lambda: balance_weights(np.full((4, 4), 0.5)), "boolean"),
        (lambda: segmentation_targets(np.ones((4, 4), float)), "integer dtype"),
        (lambda: segmentation_targets(np.ones((4, 4), int), ignore=np.zeros((3, 4), bool)), "shape"),
        (lambda: segmentation_targets(np.ones((4, 4), int), class_of_instance={2: 1}), "no class"),
        (lambda: segmentation_targets(np.ones((4, 4), int), class_of_instance={1: 0}), ">= 1"),
        (lambda: detection_targets(np.zeros((2, 3)), (5, 5)), r"shape \(N, 2\)"),
        (lambda: detection_targets(np.ones((2, 2)), (5, 5), classes=np.array([1, 0])), ">= 1"),
        (lambda: detection_targets(np.array([[np.nan, 1.0]]), (5, 5)), "non-finite"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
