"""Where each tile pixel reads the image: the dense elastic field (cubic interpolation of the coarse
control grid, Falk et al. 2019, Fig. 5) composed with translation, flips and rotation into one
``grid_sample`` look-up grid (coordinate conventions: :mod:`unet.data.augment`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unet.data.augment.params import ArrayLike, TileTransform

# ------------------------------------------------------------------------------------ dense elastic field


@functools.lru_cache(maxsize=64)
def _cubic_matrix_cached(
    n_coarse: int, n_dense: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    eye = torch.eye(n_coarse, dtype=torch.float64).reshape(n_coarse, 1, n_coarse, 1)
    cols = F.interpolate(eye, size=(n_dense, 1), mode="bicubic", align_corners=True)
    return cols[:, 0, :, 0].T.contiguous().to(device=device, dtype=dtype)


def cubic_interpolation_matrix(
    n_coarse: int, n_dense: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """1D cubic-convolution upsampling as a matrix: ``dense = M @ coarse``.

    The weights are those of ``F.interpolate(mode='bicubic', align_corners=True)`` along one axis (Keys'
    cubic convolution, a = -0.75, border-clamped), obtained by interpolating the identity, so the separable
    product ``M_y @ G @ M_x.T`` equals torch's bicubic interpolation of ``G`` exactly.

    Args:
        n_coarse: Number of control points ``k``.
        n_dense: Number of output pixels ``n``.
        device: Device of the result.
        dtype: Dtype of the result.

    Returns:
        Matrix of shape ``(n_dense, n_coarse)``; rows sum to 1; control point ``j`` sits at pixel
        ``j (n - 1) / (k - 1)``.
    """
    return _cubic_matrix_cached(int(n_coarse), int(n_dense), torch.device(device or "cpu"), dtype)


def dense_displacement(coarse: torch.Tensor, tile_shape: Sequence[int]) -> torch.Tensor:
    """Dense displacement field by cubic interpolation of the coarse control grid (Falk et al. 2019, Fig. 5).

    2D: exactly bicubic ``F.interpolate(coarse, size=tile_shape, mode='bicubic', align_corners=True)``,
    computed as two small matrix products. 3D: the same 1D cubic kernel applied separably along z, y and x
    (tricubic; ``F.interpolate`` has no 3D cubic mode and trilinear would give a field with kinks at the
    control points).

    Args:
        coarse: Control-point displacements, shape ``(B, D, *coarse_shape)`` with 2 or 3 spatial dims (any
            number ``D`` of components), floating point, any device.
        tile_shape: Dense spatial shape ``([Z,] Y, X)``.

    Returns:
        Dense field, shape ``(B, D, *tile_shape)``, same dtype/device as ``coarse``.
    """
    nd = coarse.ndim - 2
    if nd not in (2, 3) or len(tile_shape) != nd:
        raise ValueError(f"coarse shape {tuple(coarse.shape)} does not match tile_shape {tuple(tile_shape)}")
    mats = [
        cubic_interpolation_matrix(k, n, coarse.device, coarse.dtype)
        for k, n in zip(coarse.shape[2:], tile_shape, strict=True)
    ]
    # Cheap axes first (the coarse grid is tiny); the last contraction produces the full-size field.
    out = torch.matmul(coarse, mats[-1].T)  # (..., k_y, n_x)
    if nd == 3:
        out = torch.einsum("zi,bdiyx->bdzyx", mats[0], out)  # (B, D, n_z, k_y, n_x)
    return torch.einsum("yj,b...jx->b...yx", mats[-2], out)


# ---------------------------------------------------------------------------------------- sampling grid


def sampling_grid(
    centres: ArrayLike,
    tile_shape: Sequence[int],
    transform: TileTransform | None,
    image_shape: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Builds the ``grid_sample`` look-up grid of a batch of augmented input tiles.

    Composes, per tile, translation to the tile centre, in-plane flip + rotation and the dense elastic
    displacement into one coordinate map ``x(p) = centre + R F q + d(p)`` (see :mod:`unet.data.augment`),
    expressed in ``align_corners=True`` normalised coordinates of the full image.

    Args:
        centres: Integer tile centres in image pixel indices, shape ``(B, ndim)`` (``[z,] y, x``).
        tile_shape: Spatial input tile shape ``([Z,] Y, X)``.
        transform: Random parameters (``transform.batch_size == B``) or None for plain crops.
        image_shape: Spatial shape of the image sampled from ``([Z,] Y, X)``.
        device: Device of the grid (default: CPU).
        dtype: Floating dtype of the grid.

    Returns:
        Grid, shape ``(B, *tile_shape, ndim)``, last axis ordered ``(x, y[, z])`` as ``grid_sample`` expects.
    """
    tile_shape = tuple(int(s) for s in tile_shape)
    image_shape = tuple(int(s) for s in image_shape)
    nd = len(tile_shape)
    if nd not in (2, 3) or len(image_shape) != nd:
        raise ValueError(f"tile_shape {tile_shape} / image_shape {image_shape} must both be 2D or 3D")
    c = np.asarray(centres.cpu() if isinstance(centres, torch.Tensor) else centres, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != nd:
        raise ValueError(f"centres must have shape (B, {nd}), got {c.shape}")
    b = c.shape[0]
    if transform is None:
        transform = TileTransform.identity(b, tile_shape)
    if transform.batch_size != b:
        raise ValueError(f"transform has {transform.batch_size} tiles but {b} centres were given")
    if transform.displacement is not None and tuple(transform.tile_shape) != tile_shape:
        raise ValueError(f"transform was drawn for tiles {transform.tile_shape}, not {tile_shape}")
    device = torch.device(device) if device is not None else torch.device("cpu")

    n = np.asarray(tile_shape, dtype=np.float64)
    geo_centre = c - np.floor(n / 2) + (n - 1) / 2  # (B, nd): image coordinate of the tile's geometric centre
    scale = 2.0 / np.maximum(np.asarray(image_shape, dtype=np.float64) - 1, 1)  # px -> normalised
    cos, sin = np.cos(transform.angles), np.sin(transform.angles)
    fy = np.where(transform.flips[:, 0], -1.0, 1.0)
    fx = np.where(transform.flips[:, 1], -1.0, 1.0)
    # A = R(theta) @ diag(fy, fx) on (dy, dx) offsets; R = [[cos, sin], [-sin, cos]].
    a = np.stack([np.stack([cos * fy, sin * fx], -1), np.stack([-sin * fy, cos * fx], -1)], -2)  # (B, 2, 2)

    offs = [np.arange(s, dtype=np.float64) - (s - 1) / 2 for s in tile_shape]
    disp = transform.displacement
    k = tuple(disp.shape[2:]) if disp is not None else (0,) * nd

    # Every grid component is a separable sum  sum_{i,j,l} M[b, c, i, j, l] Bz[z, i] By[y, j] Bx[x, l]
    # with per-axis bases B_a = [cubic interpolation matrix (n_a, k_a) | ones | offsets q_a]: the cubic part
    # carries the elastic field (Falk Fig. 5), the ones/offsets columns the translation + flip + rotation.
    bases = []
    for ax in range(nd):
        cols = [torch.ones(tile_shape[ax], 1, dtype=torch.float64), torch.from_numpy(offs[ax])[:, None]]
        if disp is not None:
            cols.insert(0, cubic_interpolation_matrix(k[ax], tile_shape[ax], "cpu", torch.float64))
        bases.append(torch.cat(cols, dim=1))
    m = np.zeros((b, nd, *(ka + 2 for ka in k)), dtype=np.float64)  # components in grid order (x, y[, z])
    one = [ka for ka in k]  # index of the 'ones' column per axis
    off = [ka + 1 for ka in k]  # index of the 'offsets' column per axis
    zpre = (one[0],) if nd == 3 else ()
    yx = (nd - 2, nd - 1)
    for gi, row in ((1, 0), (0, 1)):  # grid component 1 = y, 0 = x
        s_ax = scale[yx[row]]
        m[(slice(None), gi, *zpre, one[yx[0]], one[yx[1]])] = s_ax * geo_centre[:, yx[row]] - 1.0
        m[(slice(None), gi, *zpre, off[yx[0]], one[yx[1]])] = s_ax * a[:, row, 0]
        m[(slice(None), gi, *zpre, one[yx[0]], off[yx[1]])] = s_ax * a[:, row, 1]
    if nd == 3:
        m[:, 2, one[0], one[1], one[2]] = scale[0] * geo_centre[:, 0] - 1.0
        m[:, 2, off[0], one[1], one[2]] = scale[0]
    if disp is not None:
        coarse = disp.astype(np.float64) * scale.reshape(1, nd, *([1] * nd))  # px -> normalised
        for comp in range(nd):  # coarse components are ([z,] y, x)
            m[(slice(None), nd - 1 - comp, *(slice(0, ka) for ka in k))] = coarse[:, comp]
    mt = torch.from_numpy(m)
    # Contract all axes but x on the CPU in float64 (small: B * [n_z *] n_y * L_x * nd values) ...
    if nd == 2:
        t = torch.einsum("yj,bcjl->bylc", bases[0], mt)
    else:
        t = torch.einsum("zi,yj,bcijl->bzylc", bases[0], bases[1], mt)
    lx = bases[-1].shape[1]
    # ... and the x axis as ONE GEMM on the device, output already in grid_sample's (..., x, c) layout:
    # out[(r), (x, c)] = sum_{(l, c')} t[(r), (l, c')] * Bx[x, l] * delta(c, c').
    kron = torch.kron(bases[-1].T.contiguous(), torch.eye(nd, dtype=torch.float64))  # (L_x nd, n_x nd)
    t_dev = t.reshape(-1, lx * nd).to(device=device, dtype=dtype)
    grid = torch.matmul(t_dev, kron.to(device=device, dtype=dtype))
    return grid.reshape(b, *tile_shape, nd)
