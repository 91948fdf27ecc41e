"""Tests of tile-centre sampling (Falk et al. 2019, M3) and worker seeding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from unet.data.sampling import (
    TileSampler,
    sample_centres,
    worker_generator,
    worker_seed,
    worker_seed_sequence,
)


def _w_bal(shape: tuple[int, ...], v_bal: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class-balancing weights (fg 1, bg v_bal, ignored 0) of a random label map; returns (w_bal, labels)."""
    labels = rng.integers(0, 3, size=shape)  # 0 background, 1 foreground, 2 ignored
    w = np.where(labels == 1, 1.0, v_bal)
    w[labels == 2] = 0.0
    return w.astype(np.float32), labels


def test_same_seed_same_centres() -> None:
    pdf = np.random.default_rng(0).random((20, 30))
    a = sample_centres(pdf, 50, np.random.default_rng(5))
    b = sample_centres(pdf, 50, np.random.default_rng(5))
    c = sample_centres(pdf, 50, np.random.default_rng(6))
    assert a.shape == (50, 2) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(TileSampler(pdf).sample(50, np.random.default_rng(5)), a)


def test_fg_bg_ratio_follows_v_bal_and_ignore_never_drawn() -> None:
    rng = np.random.default_rng(1)
    v_bal = 0.1
    w, labels = _w_bal((40, 50), v_bal, rng)
    n = 200_000
    c = TileSampler(w).sample(n, rng)
    lab = labels[c[:, 0], c[:, 1]]
    assert not (lab == 2).any()  # tiles centred in ignored regions are never selected
    n_fg, n_bg = (labels == 1).sum(), (labels == 0).sum()
    # Per-pixel frequency ratio fg/bg must be 1 / v_bal = 10 (Falk M3).
    ratio = ((lab == 1).sum() / n_fg) / ((lab == 0).sum() / n_bg)
    assert ratio == pytest.approx(1 / v_bal, rel=0.03)


def test_empirical_frequencies_chi_square() -> None:
    rng = np.random.default_rng(2)
    pdf = rng.random((6, 7)) ** 2
    pdf[1, 2] = 0.0
    n = 100_000
    c = sample_centres(pdf, n, rng)
    counts = np.zeros(pdf.shape)
    np.add.at(counts, (c[:, 0], c[:, 1]), 1)
    assert counts[1, 2] == 0
    expected = n * pdf / pdf.sum()
    mask = expected > 0
    chi2 = ((counts[mask] - expected[mask]) ** 2 / expected[mask]).sum()
    dof = mask.sum() - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof)


@pytest.mark.parametrize("shape", [(17, 23), (5, 9, 11)])
def test_one_hot_pdf_always_gives_that_pixel(shape: tuple[int, ...]) -> None:
    pdf = np.zeros(shape)
    idx = tuple(s // 3 for s in shape)
    pdf[idx] = 0.5
    c = sample_centres(pdf, 100, np.random.default_rng(3))
    assert c.shape == (100, len(shape))
    assert (c == np.asarray(idx)).all()


def test_3d_zero_region_never_drawn_and_bounds() -> None:
    rng = np.random.default_rng(4)
    pdf = rng.random((4, 8, 16))
    pdf[:, :, :5] = 0  # e.g. ignore region
    pdf[2] = 0
    c = sample_centres(pdf, 5000, rng)
    assert (c[:, 2] >= 5).all() and not (c[:, 0] == 2).any()
    assert (c >= 0).all() and (c < np.asarray(pdf.shape)).all()


def test_integer_and_bool_pdfs_are_accepted() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[3, 4] = True
    assert (sample_centres(mask, 5, np.random.default_rng(0)) == [3, 4]).all()
    assert (sample_centres(mask.astype(np.uint8), 5, np.random.default_rng(0)) == [3, 4]).all()


class _AlmostOneRng:
    """Duck-typed generator returning the largest double below 1 (worst case for u * total rounding)."""

    def random(self, n: int) -> np.ndarray:
        return np.full(n, np.nextafter(1.0, 0.0))


def test_top_of_unit_interval_never_lands_on_trailing_zeros() -> None:
    pdf = np.zeros((3, 5))
    pdf[0, 0] = 1e-300
    pdf[1, 1] = 1.0
    c = TileSampler(pdf).sample(4, _AlmostOneRng())  # type: ignore[arg-type]
    assert (c == [1, 1]).all()


@pytest.mark.parametrize(
    "pdf",
    [
        np.array([[1.0, -0.1]]),
        np.array([[1.0, np.nan]]),
        np.array([[np.inf, 1.0]]),
        np.zeros((4, 4)),
        np.zeros((0, 3)),
        np.array(1.0),
    ],
)
def test_invalid_pdf_raises(pdf: np.ndarray) -> None:
    with pytest.raises(ValueError):
        TileSampler(pdf)


def test_zero_and_negative_n() -> None:
    s = TileSampler(np.ones((3, 3)))
    assert s.sample(0, np.random.default_rng(0)).shape == (0, 2)
    with pytest.raises(ValueError):
        s.sample(-1, np.random.default_rng(0))
    np.testing.assert_allclose(s.probabilities().sum(), 1.0)


def test_worker_seeds_distinct_and_reproducible() -> None:
    grid = list(itertools.product(range(3), range(4), range(2)))  # epoch, worker, rank
    seeds = [worker_seed(123, e, w, r) for e, w, r in grid]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [worker_seed(123, e, w, r) for e, w, r in grid]
    assert worker_seed(123, 0, 0, 0) != worker_seed(124, 0, 0, 0)
    assert all(0 <= s < 2**63 for s in seeds)
    a = worker_generator(7, 1, 2, 3).random(4)
    np.testing.assert_array_equal(a, worker_generator(7, 1, 2, 3).random(4))
    assert not np.array_equal(a, worker_generator(7, 1, 3, 2).random(4))


def test_worker_seed_sequence_matches_spawn_semantics() -> None:
    nested = np.random.SeedSequence(11).spawn(3)[2].spawn(2)[1].spawn(5)[4]  # epoch 2, rank 1, worker 4
    direct = worker_seed_sequence(11, epoch=2, worker_id=4, rank=1)
    np.testing.assert_array_equal(nested.generate_state(4), direct.generate_state(4))
    with pytest.raises(ValueError):
        worker_seed(-1)
