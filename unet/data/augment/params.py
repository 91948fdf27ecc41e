"""Augmentation parameters (Falk et al. 2019, M3): the hyper-parameters, the random parameters of a batch
of tiles, and their draw (rotation angles, flips, coarse elastic displacements, intensity control points)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation hyper-parameters (Falk et al. 2019, M3). The defaults are the identity.

    Attributes:
        rotation_range: ``(min, max)`` rotation angle in degrees about the optical axis (in-plane Y-X
            rotation; in 3D the Z axis is not rotated); drawn uniformly. ``(0, 0)`` disables rotation,
            ``(-180, 180)`` draws all orientations.
        flips: If True, the tile's y and x axes are each mirrored with probability 1/2 (in 3D the optical
            Z axis is never flipped, like it is never rotated).
        elastic_std: Standard deviation (px) of each component of the random displacement vectors at the
            coarse control points; a float for all axes or one value per spatial axis ``([z,] y, x)``.
            Falk Fig. 5: 10 px. 0 disables the elastic deformation.
        elastic_grid_spacing: Approximate distance (px, in tile coordinates) between coarse control points,
            float or per axis. The control grid spans the input tile from corner to corner with
            ``k = ceil((n - 1) / spacing) + 1`` (at least 2) points per axis, i.e. the actual spacing is
            ``(n - 1) / (k - 1) <= spacing``. Ronneberger's 3x3 grid over a 572 tile: spacing 285.5.
        intensity_points: Number of equidistant control points of the intensity curve in [0, 1] (>= 2).
        intensity_range: Maximal deviation of the target intensity at each control point from the identity
            (targets ~ U[s_k - r, s_k + r], forced increasing). 0 disables the intensity augmentation.
        interpolation: Image interpolation, ``"linear"`` (bilinear / trilinear) or ``"cubic"`` (bicubic,
            2D only). Labels always use nearest neighbour, weights (bi/tri)linear.
    """

    rotation_range: tuple[float, float] = (0.0, 0.0)
    flips: bool = False
    elastic_std: float | tuple[float, ...] = 0.0
    elastic_grid_spacing: float | tuple[float, ...] = 150.0
    intensity_points: int = 5
    intensity_range: float = 0.0
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        lo, hi = self.rotation_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(
                f"rotation_range must be finite (min, max) with min <= max, got {self.rotation_range}"
            )
        stds = np.atleast_1d(np.asarray(self.elastic_std, dtype=np.float64))
        if not (np.isfinite(stds).all() and (stds >= 0).all()):
            raise ValueError(f"elastic_std must be finite and >= 0, got {self.elastic_std}")
        spacing = np.atleast_1d(np.asarray(self.elastic_grid_spacing, dtype=np.float64))
        if not (spacing > 0).all():
            raise ValueError(f"elastic_grid_spacing must be > 0, got {self.elastic_grid_spacing}")
        if int(self.intensity_points) < 2:
            raise ValueError(f"intensity_points must be >= 2, got {self.intensity_points}")
        if not (math.isfinite(self.intensity_range) and self.intensity_range >= 0):
            raise ValueError(f"intensity_range must be finite and >= 0, got {self.intensity_range}")
        if self.interpolation not in ("linear", "cubic"):
            raise ValueError(f"interpolation must be 'linear' or 'cubic', got {self.interpolation!r}")

    @classmethod
    def falk2019(cls) -> AugmentParams:
        """Paper-like settings: full rotations, flips, sigma = 10 px on a coarse grid, mild intensity curve.

        Only sigma = 10 px (Falk Fig. 5) and the full in-plane rotation range come from the papers; the
        150 px grid spacing and the intensity settings (5 points, +-0.1) are this package's choices.
        """
        return cls(
            rotation_range=(-180.0, 180.0),
            flips=True,
            elastic_std=10.0,
            elastic_grid_spacing=150.0,
            intensity_points=5,
            intensity_range=0.1,
        )

    def per_axis(self, value: float | tuple[float, ...], ndim: int, name: str) -> tuple[float, ...]:
        """Broadcasts a scalar or per-axis parameter to ``ndim`` values (axis order ``[z,] y, x``)."""
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if arr.size == 1:
            arr = np.repeat(arr, ndim)
        if arr.size != ndim:
            raise ValueError(f"{name} has {arr.size} values but the tile has {ndim} spatial dims")
        return tuple(float(v) for v in arr)


@dataclass
class TileTransform:
    """Random parameters of a batch of ``B`` augmented tiles (drawn by :func:`random_transform`).

    Attributes:
        tile_shape: Spatial input tile shape ``([Z,] Y, X)`` the transform was drawn for.
        angles: In-plane rotation angles, shape ``(B,)``, float64, radians.
        flips: Mirroring of the tile's (y, x) axes, shape ``(B, 2)``, bool.
        displacement: Coarse control-point displacements, shape ``(B, ndim, *coarse_shape)``, float32,
            pixels, component order ``([z,] y, x)``; None if there is no elastic deformation.
        intensity: Target intensities at the equidistant control points ``k / (K - 1)``, shape
            ``(B, C, K)``, float64, strictly increasing along K; None if there is no intensity curve.
    """

    tile_shape: tuple[int, ...]
    angles: np.ndarray
    flips: np.ndarray
    displacement: np.ndarray | None = None
    intensity: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        """Number of tiles ``B``."""
        return int(self.angles.shape[0])

    @classmethod
    def identity(cls, batch_size: int, tile_shape: Sequence[int]) -> TileTransform:
        """Transform of ``batch_size`` un-augmented tiles (plain crops)."""
        return cls(
            tile_shape=tuple(int(s) for s in tile_shape),
            angles=np.zeros(batch_size, dtype=np.float64),
            flips=np.zeros((batch_size, 2), dtype=bool),
        )


# --------------------------------------------------------------------------------------------- random draws


def coarse_grid_shape(tile_shape: Sequence[int], spacing: float | Sequence[float]) -> tuple[int, ...]:
    """Number of elastic control points per axis for a tile.

    Args:
        tile_shape: Spatial tile shape ``([Z,] Y, X)``.
        spacing: Desired control-point spacing in pixels, scalar or per axis.

    Returns:
        ``k_a = ceil((n_a - 1) / spacing_a) + 1`` (at least 2; 1 for an axis of length 1) per axis. The
        points span the tile corner to corner (``align_corners=True``), actual spacing ``(n-1)/(k-1)``.
    """
    sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (len(tile_shape),))
    return tuple(
        1 if n <= 1 else max(2, math.ceil((n - 1) / s - 1e-9) + 1)
        for n, s in zip(tile_shape, sp, strict=True)
    )


def intensity_control_points(
    n_points: int, intensity_range: float, shape: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Draws strictly increasing target intensities of random intensity curves (Falk et al. 2019, M3).

    Source control points are ``s_k = k / (K - 1)``. Targets are drawn sequentially,
    ``t_0 ~ U(s_0 - r, s_0 + r]`` and ``t_k ~ U(max(s_k - r, t_{k-1}), s_k + r]``, i.e. from the uniform range
    ``[s_k - r, s_k + r]`` truncated so that the curve increases ("the sampling process enforces intensities
    at subsequent control points to increase"). For ``r <= 1 / (2 (K - 1))`` the ranges do not overlap and the
    draws are independent uniforms. All targets lie in ``[-r, 1 + r]``; ``r = 0`` gives ``t_k = s_k``.

    Args:
        n_points: Number of control points ``K >= 2``.
        intensity_range: ``r >= 0``.
        shape: Leading shape of the batch of curves, e.g. ``(B, C)`` for one curve per tile and channel.
        rng: Random generator.

    Returns:
        Targets, shape ``(*shape, K)``, float64, strictly increasing along the last axis. ``r = 0`` consumes
        no random numbers.
    """
    k = int(n_points)
    if k < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    r = float(intensity_range)
    s = np.linspace(0.0, 1.0, k)
    shape = tuple(int(v) for v in shape)
    out = np.empty((*shape, k), dtype=np.float64)
    if r == 0:
        out[...] = s
        return out
    prev = np.full(shape, -np.inf)
    for i in range(k):
        lower = np.maximum(s[i] - r, prev)
        upper = s[i] + r  # > prev always, since prev <= s[i-1] + r
        u = 1.0 - rng.random(shape)  # in (0, 1]: t > lower >= previous target -> strictly increasing
        out[..., i] = lower + u * (upper - lower)
        prev = out[..., i]
    return out


# Control-point displacements are truncated at this many standard deviations.
ELASTIC_TRUNCATION = 4.0
# Lebesgue constant of Keys' cubic convolution with a = -0.75 (torch's bicubic): the largest sum of absolute
# kernel weights, max_t sum_i |k(t - i)| = 1.375 (at t = 1/2). A separable n-D cubic interpolation of
# control values bounded by c is bounded by c * 1.375 ** n.
CUBIC_LEBESGUE = 1.375


def elastic_bound(std: float, ndim: int) -> float:
    """Strict bound (px) on one component of the dense elastic displacement with control-point std ``std``."""
    return ELASTIC_TRUNCATION * float(std) * CUBIC_LEBESGUE**ndim


def random_transform(
    params: AugmentParams,
    batch_size: int,
    tile_shape: Sequence[int],
    rng: np.random.Generator,
    n_channels: int = 1,
) -> TileTransform:
    """Draws the random augmentation parameters of ``batch_size`` tiles (Falk et al. 2019, M3).

    Draw order (fixed for reproducibility; disabled components draw nothing): angles, flips, coarse
    displacements, intensity control points.

    Args:
        params: Augmentation hyper-parameters.
        batch_size: Number of tiles ``B``.
        tile_shape: Spatial input tile shape ``([Z,] Y, X)`` (2 or 3 dims).
        rng: Random generator (the only source of randomness).
        n_channels: Image channels ``C``; every tile and channel gets its own intensity curve.

    Returns:
        The drawn :class:`TileTransform`.
    """
    tile_shape = tuple(int(s) for s in tile_shape)
    ndim = len(tile_shape)
    if ndim not in (2, 3):
        raise ValueError(f"tiles must be 2D or 3D, got tile_shape {tile_shape}")
    b = int(batch_size)
    lo, hi = params.rotation_range
    if lo == hi:
        angles = np.full(b, math.radians(lo), dtype=np.float64)
    else:
        angles = np.deg2rad(rng.uniform(lo, hi, size=b))
    flips = rng.random((b, 2)) < 0.5 if params.flips else np.zeros((b, 2), dtype=bool)
    stds = params.per_axis(params.elastic_std, ndim, "elastic_std")
    displacement = None
    if any(s > 0 for s in stds):
        cshape = coarse_grid_shape(tile_shape, params.per_axis(params.elastic_grid_spacing, ndim, "spacing"))
        # control points ~ N(0, std^2) per axis, truncated at ELASTIC_TRUNCATION std (6e-5 of the draws), so
        # that the cubic field is bounded and every looked-up pixel lies in the crop (see elastic_bound)
        displacement = np.clip(
            rng.standard_normal((b, ndim, *cshape)), -ELASTIC_TRUNCATION, ELASTIC_TRUNCATION
        )
        displacement = displacement.astype(np.float32)
        displacement *= np.asarray(stds, dtype=np.float32).reshape(1, ndim, *([1] * ndim))
    intensity = None
    if params.intensity_range > 0:
        intensity = intensity_control_points(
            params.intensity_points, params.intensity_range, (b, n_channels), rng
        )
    return TileTransform(
        tile_shape=tile_shape, angles=angles, flips=flips, displacement=displacement, intensity=intensity
    )
