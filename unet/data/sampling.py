"""Tile-centre sampling from a probability density and reproducible worker seeding.

Falk et al. 2019, M3 ("Tile sampling and augmentation"): the spatial locations of the training tiles are
drawn from a user-defined probability density function (pdf). The paper uses the normalised class-balancing
weight map ``w_bal`` (M2.1: 1 on foreground, ``v_bal`` on background, 0 in ignored regions), so foreground
pixels become tile centres ``1 / v_bal`` times more often than background pixels (10x for ``v_bal = 0.1``)
and tiles centred in an ignored region are never selected.

The sampler factorises the pdf over the last axis ("rows"): a row is drawn from the row marginal, then a
column from that row's conditional distribution. This needs ``O(pdf.size / X)`` extra memory (one float64
per row) instead of a full float64 cumulative sum of the image (``8 * pdf.size`` bytes, e.g. 268 MB for a
128x512x512 stack), and samples exactly the same distribution.

Seeding: :func:`worker_seed` / :func:`worker_generator` derive independent streams for every
``(epoch, rank, worker)`` from one base seed using :class:`numpy.random.SeedSequence` spawn keys.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TileSampler", "sample_centres", "worker_generator", "worker_seed", "worker_seed_sequence"]


def _validate_pdf(pdf: np.ndarray) -> np.ndarray:
    """Checks a pdf and returns it as a float array (no copy when already floating point).

    Args:
        pdf: Unnormalised density, shape ``([Z,] Y, X)`` (any ``ndim >= 1``), non-negative and finite.

    Returns:
        The same array viewed as a floating point ndarray.

    Raises:
        ValueError: If the pdf is empty, 0-dimensional, has negative or non-finite entries, or sums to 0.
    """
    arr = np.asarray(pdf)
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"pdf must be a non-empty array with ndim >= 1, got shape {arr.shape}")
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"pdf must be real-valued, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError("pdf contains non-finite values (nan/inf)")
    if (arr < 0).any():
        raise ValueError("pdf contains negative values")
    if not (arr > 0).any():
        raise ValueError("pdf is zero everywhere; no tile centre can be drawn")
    return arr


class TileSampler:
    """Draws tile centres from a fixed (unnormalised) pdf, Falk et al. 2019, M3.

    The row marginal ``P(row) = sum_x pdf[row, x] / sum(pdf)`` is cached as a float64 cumulative sum; for
    every drawn row the conditional ``P(x | row)`` is obtained from that row's cumulative sum. Pixels with
    ``pdf == 0`` (e.g. ignored regions where ``w_bal == 0``) are never drawn.

    Args:
        pdf: Unnormalised density over pixel positions, shape ``([Z,] Y, X)`` (any ``ndim >= 1``),
            non-negative, finite, not all zero. Typically ``w_bal`` (M2.1). Integer/bool arrays are accepted.
            The array is referenced, not copied (float inputs); do not mutate it while the sampler lives.

    Raises:
        ValueError: If the pdf is invalid (see :func:`sample_centres`).
    """

    def __init__(self, pdf: np.ndarray) -> None:
        arr = _validate_pdf(pdf)
        self.shape: tuple[int, ...] = tuple(int(s) for s in arr.shape)
        self._rows = arr.reshape(-1, self.shape[-1])
        row_sums = self._rows.sum(axis=1, dtype=np.float64)
        self._row_cdf = np.cumsum(row_sums)
        self._row_nonzero = np.flatnonzero(row_sums > 0)
        self.total: float = float(self._row_cdf[-1])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of the pdf (2 for ``(Y, X)``, 3 for ``(Z, Y, X)``)."""
        return len(self.shape)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draws ``n`` tile centres i.i.d. from the normalised pdf.

        Args:
            n: Number of centres, ``n >= 0``.
            rng: Random generator (the only source of randomness).

        Returns:
            Integer pixel indices, shape ``(n, ndim)``, dtype int64, axis order as the pdf (``[z,] y, x``).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return np.zeros((0, self.ndim), dtype=np.int64)
        u_row = rng.random(n) * self.total
        rows = np.searchsorted(self._row_cdf, u_row, side="right")
        # u * total can round up to total; clamp onto the last row with mass (never onto an empty row).
        rows = np.minimum(rows, self._row_nonzero[-1])
        u_col = rng.random(n)
        cols = np.empty(n, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        uniq, starts = np.unique(rows[order], return_index=True)
        ends = np.append(starts[1:], n)
        for r, a, b in zip(uniq, starts, ends, strict=True):
            sel = order[a:b]
            row = self._rows[r]
            cdf = np.cumsum(row, dtype=np.float64)
            c = np.searchsorted(cdf, u_col[sel] * cdf[-1], side="right")
            cols[sel] = np.minimum(c, np.flatnonzero(row > 0)[-1])
        flat = rows.astype(np.int64) * self.shape[-1] + cols
        return np.stack(np.unravel_index(flat, self.shape), axis=1).astype(np.int64)

    def probabilities(self) -> np.ndarray:
        """Returns the normalised pdf (float64, same shape as the input, sums to 1)."""
        return (self._rows.astype(np.float64) / self.total).reshape(self.shape)


def sample_centres(pdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``n`` tile centres from a pdf over pixel positions (Falk et al. 2019, M3).

    Equivalent to ``TileSampler(pdf).sample(n, rng)``; construct a :class:`TileSampler` once when drawing
    repeatedly from the same (large) pdf.

    Args:
        pdf: Unnormalised density, shape ``([Z,] Y, X)``, non-negative, finite, not all zero; e.g. the class
            balancing weights ``w_bal`` (foreground 1, background ``v_bal``, ignored 0).
        n: Number of centres to draw.
        rng: Random generator.

    Returns:
        Pixel indices of the centres, shape ``(n, pdf.ndim)``, dtype int64.

    Raises:
        ValueError: If ``pdf`` has negative or non-finite values or sums to zero.
    """
    return TileSampler(pdf).sample(n, rng)


def worker_seed_sequence(
    base_seed: int, epoch: int = 0, worker_id: int = 0, rank: int = 0
) -> np.random.SeedSequence:
    """Seed sequence of one data-loading stream, identified by ``(epoch, rank, worker_id)``.

    Uses SeedSequence spawn semantics: the result equals
    ``SeedSequence(base_seed).spawn(epoch + 1)[epoch].spawn(rank + 1)[rank].spawn(worker_id + 1)[worker_id]``,
    so streams of different epochs, DDP ranks and DataLoader workers are statistically independent and
    reproducible from ``base_seed`` alone.

    Args:
        base_seed: Non-negative experiment seed.
        epoch: Training epoch (non-negative).
        worker_id: DataLoader worker index (``torch.utils.data.get_worker_info().id``; 0 in the main process).
        rank: Distributed (DDP) global rank.

    Returns:
        The :class:`numpy.random.SeedSequence` of that stream.
    """
    for name, value in (("base_seed", base_seed), ("epoch", epoch), ("worker_id", worker_id), ("rank", rank)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    return np.random.SeedSequence(int(base_seed), spawn_key=(int(epoch), int(rank), int(worker_id)))


def worker_seed(base_seed: int, epoch: int = 0, worker_id: int = 0, rank: int = 0) -> int:
    """Integer seed of one data-loading stream (see :func:`worker_seed_sequence`).

    Args:
        base_seed: Non-negative experiment seed.
        epoch: Training epoch.
        worker_id: DataLoader worker index.
        rank: DDP global rank.

    Returns:
        A seed in ``[0, 2**63)``, valid for ``torch.Generator.manual_seed`` and ``np.random.default_rng``.
    """
    state = worker_seed_sequence(base_seed, epoch, worker_id, rank).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def worker_generator(
    base_seed: int, epoch: int = 0, worker_id: int = 0, rank: int = 0
) -> np.random.Generator:
    """NumPy generator of one data-loading stream (see :func:`worker_seed_sequence`).

    Args:
        base_seed: Non-negative experiment seed.
        epoch: Training epoch.
        worker_id: DataLoader worker index.
        rank: DDP global rank.

    Returns:
        ``np.random.Generator(PCG64(seed_sequence))``.
    """
    return np.random.default_rng(worker_seed_sequence(base_seed, epoch, worker_id, rank))
