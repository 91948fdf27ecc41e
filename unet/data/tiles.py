"""Training tiles (Falk 2019, M3) and whole validation images.

Every training tile is a pure function of ``(seed, key)``: the sampler hands out keys
``epoch * tiles_per_epoch + i``, and the tile's image, centre (drawn from the image's pdf) and
augmentation are drawn from ``np.random.default_rng([seed, key])``. Tiles therefore do not depend on
the number of DataLoader workers or DDP ranks, and a resumed run sees exactly the tiles the
uninterrupted run would have seen.

The warp is one ``grid_sample`` for image, target and weights with a mirrored (reflection) look-up. In
the DataLoader worker (``augment_on="worker"``) it samples the whole prepared image directly, so its cost
is that of the tile, not of the region the tile may reach. For ``augment_on="device"`` the worker cuts a
mirrored *crop* around the centre, large enough for any rotation and elastic displacement, and the warp
runs batched on the training device; both give the same tiles (reflection about pixel centres commutes
with the interpolation, tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from unet.data.augment import (
    AugmentParams,
    TileTransform,
    elastic_bound,
    intensity_curve,
    random_transform,
    sampling_grid,
    warp_tiles,
)
from unet.data.items import Item
from unet.data.sampling import TileSampler
from unet.tiling import read_mirrored


@dataclass
class PreparedImage:
    """An image on the model's grid with its training targets.

    Attributes:
        item: the original item (raw image and annotation on the image's own grid).
        image: (C, *S) float32, normalised, rescaled to the model's element size.
        target: (*S) int64 class map; weights: (*S) float32 loss weights; sampler: tile-centre pdf.
        mass: sum of the unnormalised w_bal over the image (foreground pixels + v_bal x background):
            images are drawn in proportion to it, as if one pdf covered the whole training set (M3).
    """

    item: Item
    image: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    sampler: TileSampler
    mass: float = 1.0


def crop_margin(tile_shape: Sequence[int], params: AugmentParams) -> tuple[int, ...]:
    """Half size (px) of a crop that contains every pixel an augmented input tile can look up."""
    nd = len(tile_shape)
    std = params.per_axis(params.elastic_std, nd, "elastic_std")
    half = [(s - 1) / 2 for s in tile_shape]
    if params.rotation_range != (0.0, 0.0) or params.flips:
        r = math.hypot(half[-2], half[-1])
        half[-2] = half[-1] = r
    return tuple(math.ceil(h + elastic_bound(sd, nd) + 2) for h, sd in zip(half, std))


class TileDataset(Dataset):
    """Random augmented training tiles, indexed by key (see the module docstring).

    Args:
        images: prepared training images.
        tile_shape: network input tile shape; out_shape: its output shape.
        augment: augmentation parameters.
        seed: base seed.
        warp: warp here (True, in the worker) or return crops + transforms for the device (False).
    """

    def __init__(
        self,
        images: Sequence[PreparedImage],
        tile_shape: Sequence[int],
        out_shape: Sequence[int],
        augment: AugmentParams,
        seed: int = 0,
        warp: bool = True,
    ) -> None:
        if not images:
            raise ValueError("no training images")
        self.images = list(images)
        self.tile_shape = tuple(tile_shape)
        self.out_shape = tuple(out_shape)
        self.augment = augment
        self.seed = seed
        self.warp = warp
        self.margin = crop_margin(self.tile_shape, augment)
        # images are drawn in proportion to their annotated area (pdf mass), so each pixel of the
        # training set is as likely as in one big pdf over all images
        mass = np.array([p.mass for p in self.images], dtype=np.float64)
        self.image_p = mass / mass.sum()
        # the worker warps straight from the whole images: tensors made once (targets as float32 for the
        # nearest-neighbour grid_sample, so no full-size conversion per tile)
        self._tensors: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:  # keys are unbounded; the sampler decides how many
        return 2**62

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(key)])
        index = int(rng.choice(len(self.images), p=self.image_p))
        prepared = self.images[index]
        centre = prepared.sampler.sample(1, rng)[0]
        n_channels = prepared.image.shape[0]
        transform = random_transform(self.augment, 1, self.tile_shape, rng, n_channels=n_channels)
        if self.warp:
            return self._warp_from_image(index, centre, transform)
        starts = [int(c) - m for c, m in zip(centre, self.margin)]
        lengths = [2 * m + 1 for m in self.margin]
        crop = {
            "image": torch.from_numpy(read_mirrored(prepared.image, starts, lengths)),
            "target": torch.from_numpy(read_mirrored(prepared.target[None], starts, lengths)[0]),
            "weights": torch.from_numpy(read_mirrored(prepared.weights[None], starts, lengths)[0]),
            "angles": torch.from_numpy(transform.angles),
            "flips": torch.from_numpy(transform.flips),
        }
        if transform.displacement is not None:
            crop["displacement"] = torch.from_numpy(transform.displacement)
        if transform.intensity is not None:
            crop["intensity"] = torch.from_numpy(transform.intensity)
        return {k: v[0] if k in _TRANSFORM_KEYS else v for k, v in crop.items()}

    def _warp_from_image(
        self, index: int, centre: Sequence[int], transform: TileTransform
    ) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            self._tensors = [
                (
                    torch.from_numpy(np.ascontiguousarray(p.image, np.float32)),
                    torch.from_numpy(p.target.astype(np.float32)),
                    torch.from_numpy(np.ascontiguousarray(p.weights, np.float32)),
                )
                for p in self.images
            ]
        image, target, weights = self._tensors[index]
        grid = sampling_grid(np.asarray([centre]), self.tile_shape, transform, tuple(image.shape[1:]))
        img, tgt, w = warp_tiles(
            image, target, weights, grid, self.out_shape, interpolation=self.augment.interpolation
        )
        if transform.intensity is not None:
            img = intensity_curve(img, transform.intensity)
        return {"image": img[0], "target": tgt[0], "weights": w[0]}


_TRANSFORM_KEYS = ("angles", "flips", "displacement", "intensity")


def warp_batch(
    batch: dict[str, torch.Tensor],
    tile_shape: Sequence[int],
    out_shape: Sequence[int],
    interpolation: str = "linear",
) -> dict[str, torch.Tensor]:
    """Crops + transforms (B, ...) -> network tiles, on the crops' device.

    Returns dict with image (B, C, *tile_shape), target (B, *out_shape) int64, weights (B, *out_shape).
    """
    image = batch["image"]
    nd = image.ndim - 2
    crop_shape = tuple(image.shape[2:])
    b = image.shape[0]
    centres = np.tile(np.array([(s - 1) // 2 for s in crop_shape]), (b, 1))
    transform = TileTransform(
        tile_shape=tuple(tile_shape),
        angles=batch["angles"].detach().cpu().numpy().reshape(b),
        flips=batch["flips"].detach().cpu().numpy().reshape(b, 2),
        displacement=batch["displacement"].detach().cpu().numpy() if "displacement" in batch else None,
        intensity=batch["intensity"].detach().cpu().numpy() if "intensity" in batch else None,
    )
    grid = sampling_grid(centres, tile_shape, transform, crop_shape, device=image.device)
    img, tgt, w = warp_tiles(
        image.float(), batch["target"].float(), batch["weights"], grid, out_shape, interpolation=interpolation
    )
    if transform.intensity is not None:
        img = intensity_curve(img, transform.intensity)
    assert img.shape[2:] == tuple(tile_shape) and tgt.shape[1:] == tuple(out_shape), (img.shape, nd)
    return {"image": img, "target": tgt, "weights": w}


class TileKeySampler(Sampler[int]):
    """Yields this rank's keys ``epoch * tiles_per_epoch + i`` (i = rank, rank + world, ...).

    Every rank gets ``ceil(tiles_per_epoch / world_size)`` keys (the last ones wrap around), so all ranks
    run the same number of steps and DDP's gradient synchronisation never waits for a missing rank.

    Lightning calls :meth:`set_epoch` before each epoch (run it with ``use_distributed_sampler=False``).
    ``skip`` drops the first keys of the next epoch iterated: a run resumed from a mid-epoch checkpoint
    continues with exactly the tiles the uninterrupted run would have drawn.
    """

    def __init__(self, tiles_per_epoch: int, rank: int = 0, world_size: int = 1, skip: int = 0) -> None:
        self.tiles_per_epoch = int(tiles_per_epoch)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = int(
            skip
        )  # keys of the first epoch iterated that were already trained on (mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        base, n = self.epoch * self.tiles_per_epoch, self.tiles_per_epoch
        skip, self.skip = self.skip, 0
        # __len__ stays the full epoch: Lightning counts the resumed epoch's batches from where it stopped
        return iter(base + (i * self.world_size + self.rank) % n for i in range(skip, len(self)))

    def __len__(self) -> int:
        return -(-self.tiles_per_epoch // self.world_size)


class ValidationImages(Dataset):
    """Whole prepared validation images, as ``(PreparedImage, counted)`` pairs from the data module (the
    LightningModule predicts each through the prediction path; ``counted=False`` marks repeats that pad
    DDP ranks)."""

    def __init__(self, images: Sequence[tuple[PreparedImage, bool]]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[PreparedImage, bool]:
        return self.images[i]
