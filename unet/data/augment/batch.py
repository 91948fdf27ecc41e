"""The whole augmentation of a batch of tiles of one image: draw, compose and apply (Falk et al. 2019, M3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unet.data.augment.geometry import sampling_grid
from unet.data.augment.intensity import intensity_curve
from unet.data.augment.params import ArrayLike, AugmentParams, random_transform
from unet.data.augment.warp import as_tensor, warp_tiles


def augment_batch(
    image: ArrayLike,
    target: ArrayLike | None,
    weights: ArrayLike | None,
    centres: ArrayLike,
    tile_shape: Sequence[int],
    out_shape: Sequence[int],
    params: AugmentParams,
    rng: np.random.Generator,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Draws, composes and applies the augmentation of ``B`` tiles of one image (Falk et al. 2019, M3).

    Args:
        image: Normalised image ``(C, *S)`` (float32, values ~[0, 1]) or a batch ``(B, C, *S)``.
        target: Class map ``(*S)`` / ``(B, *S)`` int64, or None.
        weights: Loss weights ``(*S)`` / ``(B, *S)`` float32, or None.
        centres: Tile centres ``(B, ndim)`` (e.g. from :class:`unet.data.sampling.TileSampler`).
        tile_shape: Spatial network input tile shape ``([Z,] Y, X)``.
        out_shape: Spatial network output tile shape (central part of the input tile).
        params: Augmentation hyper-parameters.
        rng: Random generator for all random draws.
        device: Where the dense field, resampling and intensity mapping run (default: the image tensor's
            device, CPU for numpy input). Keep large images resident on the device to avoid re-uploads.

    Returns:
        ``(image_tiles (B, C, *tile_shape) float32, target_tiles (B, *out_shape) int64 | None,
        weight_tiles (B, *out_shape) float32 | None)`` on ``device``.
    """
    tile_shape = tuple(int(s) for s in tile_shape)
    nd = len(tile_shape)
    if device is None:
        device = image.device if isinstance(image, torch.Tensor) else torch.device("cpu")
    img = as_tensor(image, device, torch.float32)
    c = np.asarray(centres.cpu() if isinstance(centres, torch.Tensor) else centres)
    n_channels = img.shape[-nd - 1]
    transform = random_transform(params, c.shape[0], tile_shape, rng, n_channels=n_channels)
    grid = sampling_grid(c, tile_shape, transform, img.shape[-nd:], device=device)
    img_t, tgt_t, w_t = warp_tiles(img, target, weights, grid, out_shape, interpolation=params.interpolation)
    if transform.intensity is not None:
        img_t = intensity_curve(img_t, transform.intensity)
    return img_t, tgt_t, w_t
