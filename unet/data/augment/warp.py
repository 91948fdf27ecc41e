"""Resampling of image, labels and loss weights of a batch of tiles with one sampling grid (mirror
extrapolation at the image borders)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unet.data.augment.params import ArrayLike


def as_tensor(
    x: ArrayLike, device: torch.device | str | None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    return t.to(
        device=device if device is not None else t.device, dtype=dtype if dtype is not None else t.dtype
    )


# ---------------------------------------------------------------------------------------------- warping


def _central_slices(tile_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[slice, ...]:
    if len(tile_shape) != len(out_shape):
        raise ValueError(f"out_shape {tuple(out_shape)} and tile_shape {tuple(tile_shape)} differ in ndim")
    sl = []
    for i, o in zip(tile_shape, out_shape, strict=True):
        if not 0 < o <= i:
            raise ValueError(
                f"out_shape {tuple(out_shape)} must be positive and <= tile_shape {tuple(tile_shape)}"
            )
        off = (i - o) // 2
        sl.append(slice(off, off + o))
    return tuple(sl)


def _reflect_grid(grid: torch.Tensor) -> torch.Tensor:
    """Mirrors normalised ``align_corners=True`` coordinates into [-1, 1] (= grid_sample 'reflection').

    ``g -> 1 - |((g + 1) mod 4) - 2|``: reflection about the border pixel centres (``np.pad`` 'reflect').
    Returns a new tensor.
    """
    return (grid + 1.0).remainder_(4.0).sub_(2.0).abs_().neg_().add_(1.0)


def _sample(volume: torch.Tensor, grid: torch.Tensor, shared: bool, mode: str, padding: str) -> torch.Tensor:
    """grid_sample of (C, *S) shared by all B tiles, or of (B, C, *S) with one tile each -> (B, C, *n)."""
    b, n = grid.shape[0], tuple(grid.shape[1:-1])
    if not shared:
        return F.grid_sample(volume, grid, mode=mode, padding_mode=padding, align_corners=True)
    # Stack the B tiles along the first spatial axis of ONE grid: no copy of the image per tile.
    g = grid.reshape(1, b * n[0], *n[1:], grid.shape[-1])
    out = F.grid_sample(volume[None], g, mode=mode, padding_mode=padding, align_corners=True)
    out = out.reshape(volume.shape[0], b, *n).transpose(0, 1)
    return out if volume.shape[0] == 1 else out.contiguous()


def warp_tiles(
    image: ArrayLike,
    target: ArrayLike | None,
    weights: ArrayLike | None,
    grid: torch.Tensor,
    out_shape: Sequence[int],
    *,
    interpolation: str = "linear",
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Resamples image, labels and loss weights of a batch of tiles with one sampling grid.

    The target and weight tiles use the central ``out_shape`` part of the same grid (offset
    ``(in - out) // 2`` per axis), so they are aligned pixel-by-pixel with the network output for the input
    tile. Out-of-image positions are mirrored (``padding_mode='reflection'``, ``align_corners=True`` =
    ``np.pad(mode='reflect')``). Runs on the grid's device; numpy inputs are moved there.

    Args:
        image: Image ``(C, *S)`` shared by all tiles or ``(B, C, *S)`` (one tile per image), float
            (converted to the grid dtype), normalised intensities.
        target: Class map ``(*S)`` or ``(B, *S)``, integer (int64); or None. Sampled nearest-neighbour.
        weights: Loss weights ``(*S)`` or ``(B, *S)``, float; or None. Sampled (bi/tri)linearly.
        grid: Sampling grid from :func:`sampling_grid`, shape ``(B, *tile_shape, ndim)``.
        out_shape: Spatial output (label) tile shape, ``<= tile_shape`` per axis.
        interpolation: ``"linear"`` or ``"cubic"`` (2D only) for the image.

    Returns:
        ``(image_tiles (B, C, *tile_shape) float, target_tiles (B, *out_shape) int64 | None,
        weight_tiles (B, *out_shape) float | None)``.
    """
    nd = grid.shape[-1]
    tile_shape = tuple(grid.shape[1:-1])
    if grid.ndim != nd + 2:
        raise ValueError(f"grid must have shape (B, *tile_shape, ndim), got {tuple(grid.shape)}")
    if interpolation == "linear":
        mode = "bilinear"
    elif interpolation == "cubic":
        if nd != 2:
            raise ValueError("cubic image interpolation is only available for 2D tiles")
        mode = "bicubic"
    else:
        raise ValueError(f"interpolation must be 'linear' or 'cubic', got {interpolation!r}")
    dev, dt = grid.device, grid.dtype
    img = as_tensor(image, dev, dt)
    if img.ndim == nd + 1:
        shared = True
    elif img.ndim == nd + 2 and img.shape[0] == grid.shape[0]:
        shared = False
    else:
        raise ValueError(
            f"image must be (C, *S) or (B={grid.shape[0]}, C, *S) with {nd} spatial dims, got "
            f"{tuple(img.shape)}"
        )
    spatial = tuple(img.shape[-nd:])
    out_slices = _central_slices(tile_shape, out_shape)
    padding = "reflection"
    if nd == 3 and dev.type == "cpu":
        # PyTorch's scalar 3D CPU kernel is ~2x slower with in-kernel reflection than with 'border'; mirroring
        # the coordinates beforehand gives the same result (up to float rounding) for a fraction of the cost.
        grid, padding = _reflect_grid(grid), "border"
    img_tiles = _sample(img, grid, shared, mode, padding)

    tgt_tiles = w_tiles = None
    if target is not None or weights is not None:
        out_grid = grid[(slice(None), *out_slices)]
        if not shared:
            out_grid = out_grid.contiguous()

        def prep(x: ArrayLike, name: str) -> torch.Tensor:
            t = as_tensor(x, dev)
            expected = spatial if shared else (grid.shape[0], *spatial)
            if tuple(t.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
            return t.to(dt).unsqueeze(0 if shared else 1)  # (1, *S) or (B, 1, *S)

        if target is not None:
            t = prep(target, "target")
            tgt_tiles = _sample(t, out_grid, shared, "nearest", padding)[:, 0].round_().to(torch.int64)
        if weights is not None:
            w = prep(weights, "weights")
            w_tiles = _sample(w, out_grid, shared, "bilinear", padding)[:, 0]
    return img_tiles, tgt_tiles, w_tiles
