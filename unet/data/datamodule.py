"""LightningDataModule: sources -> prepared images (targets, weights, pdf) -> tiles and validation images."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from unet.data.augment import AugmentParams
from unet.data.dataset import IndexDataset, PreparedImage, TileDataset, TileKeySampler, warp_batch
from unet.data.preprocess import normalize, resize, scale_factors, scale_points, scaled_shape
from unet.data.sampling import TileSampler, worker_seed
from unet.data.sources import Annotation, Item, split_items
from unet.models import shapes

log = logging.getLogger(__name__)


def to_model_grid(
    item: Item, task: Any, model_element_size: Sequence[float] | None, normalization: str
) -> PreparedImage:
    """Normalise (M4), rescale to the model's element size (M5) and compute targets/weights/pdf (M2, M3)."""
    image = normalize(item.image, normalization)
    shape = image.shape[1:]
    factors = scale_factors(item.element_size, model_element_size)
    new_shape = scaled_shape(shape, factors)
    ann = item.annotation
    if new_shape != tuple(shape):
        exact = tuple(n / s for n, s in zip(new_shape, shape))
        image = resize(image, new_shape)
        ann = Annotation(
            labels=None if ann.labels is None else resize(ann.labels[None], new_shape, labels=True)[0],
            mask=None if ann.mask is None else resize(ann.mask[None], new_shape, labels=True)[0],
            points=None if ann.points is None else scale_points(ann.points, exact),
            classes=ann.classes,
            ignore=None if ann.ignore is None else resize(ann.ignore[None], new_shape, labels=True)[0],
            class_of_instance=ann.class_of_instance,
        )
    es = model_element_size if model_element_size is not None else item.element_size
    name = item.meta.get("path", item.name)
    try:
        target, weights, pdf = task.targets(ann, new_shape, es)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e
    if target.max(initial=0) >= task.num_classes:
        raise ValueError(
            f"{name}: annotation has class {int(target.max())} but task.num_classes={task.num_classes}"
        )
    v_bal = getattr(task, "v_bal", 1.0)
    mass = float((target > 0).sum() + v_bal * ((target == 0) & (pdf > 0)).sum())
    image = np.ascontiguousarray(image, np.float32)
    return PreparedImage(item, image, target, weights, TileSampler(pdf), mass)


class UNetDataModule(L.LightningDataModule):
    """Training tiles sampled from the w_bal pdf with on-the-fly augmentation; whole validation images.

    Args:
        source: where items come from (:class:`unet.data.sources.SyntheticSource`, ``FolderSource``...).
        tile_shape: network input tile shape for training (must be valid for the model).
        batch_size: tiles per training step (the paper: 1 large tile).
        tiles_per_epoch: training tiles per epoch (over all ranks).
        augment: :class:`AugmentParams` fields (rotation_range, flips, elastic_std, ...).
        augment_on: "worker" (CPU, in the DataLoader) or "device" (batched on the training device).
        num_workers: DataLoader worker processes.
        num_folds / fold: cross-validation over the source's training items (None = use its val items).
        seed: tiles, folds and augmentation derive from it.
    """

    def __init__(
        self,
        source: Any,
        tile_shape: Sequence[int],
        batch_size: int = 1,
        tiles_per_epoch: int = 100,
        augment: dict | AugmentParams | None = None,
        augment_on: str = "worker",
        num_workers: int = 0,
        num_folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if augment_on not in ("worker", "device"):
            raise ValueError(f"augment_on must be 'worker' or 'device', got {augment_on!r}")
        self.source = source
        self.tile_shape = tuple(int(t) for t in tile_shape)
        self.batch_size = batch_size
        self.tiles_per_epoch = tiles_per_epoch
        if augment is None:
            augment = AugmentParams()
        elif not isinstance(augment, AugmentParams):
            augment = AugmentParams(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in dict(augment).items()}
            )
        self.augment = augment
        self.augment_on = augment_on
        self.num_workers = num_workers
        self.num_folds, self.fold, self.seed = num_folds, fold, seed
        self._items: tuple[list[Item], list[Item]] | None = None
        self.train_images: list[PreparedImage] = []
        self.val_images: list[PreparedImage] = []
        self.task: Any = None
        self.in_channels: int | None = None
        self.levels: Sequence[shapes.LevelSpec] | None = None
        self.model_element_size: tuple[float, ...] | None = None
        self.normalization = "minmax"

    def attach(
        self,
        task: Any,
        levels: Sequence[shapes.LevelSpec],
        model_element_size: Sequence[float] | None,
        normalization: str,
        in_channels: int | None = None,
    ) -> None:
        """What the data module needs to know about the model (called by the pipeline before fit)."""
        self.task, self.levels, self.in_channels = task, levels, in_channels
        self.model_element_size = tuple(model_element_size) if model_element_size is not None else None
        self.normalization = normalization
        try:
            self.out_shape = shapes.output_shape(levels, self.tile_shape)
        except ValueError as e:
            raise ValueError(f"data.tile_shape: {e}") from e
        if normalization == "none" and self.augment.intensity_range > 0:
            raise ValueError(
                "the intensity augmentation maps normalised [0, 1] intensities: use "
                "model.normalization=minmax or data.augment.intensity_range=0"
            )
        es = self.model_element_size
        if es is not None and any(e != min(es) for e in es):
            # elastic std and grid spacing are given in pixels of the finest axis: the same physical
            # deformation on coarse (e.g. z) axes is fewer voxels
            a = self.augment
            nd = len(es)
            scale = [min(es) / e for e in es]
            std = [v * f for v, f in zip(a.per_axis(a.elastic_std, nd, "elastic_std"), scale)]
            spacing = [
                v * f for v, f in zip(a.per_axis(a.elastic_grid_spacing, nd, "elastic_grid_spacing"), scale)
            ]
            self.augment = dataclasses.replace(a, elastic_std=tuple(std), elastic_grid_spacing=tuple(spacing))

    def items(self) -> tuple[list[Item], list[Item]]:
        """(train, val) items from the source (read once; cross-validation folds applied)."""
        if self._items is None:
            train = self.source.train_items()
            if self.num_folds:
                self._items = split_items(train, self.num_folds, self.fold, self.seed)
            else:
                self._items = (train, self.source.val_items())
        return self._items

    def data_element_size(self) -> tuple[float, ...] | None:
        """Element size of the first training image (None if unknown): the default model element size."""
        train, _ = self.items()
        return train[0].element_size if train else None

    def setup(self, stage: str | None = None) -> None:
        if self.task is None:
            raise RuntimeError("UNetDataModule.attach(task, levels, ...) must be called before setup")
        if self.train_images:
            return
        train, val = self.items()
        if not train:
            raise ValueError("the data source has no training images")
        self.train_images = [
            to_model_grid(it, self.task, self.model_element_size, self.normalization) for it in train
        ]
        self.val_images = [
            to_model_grid(it, self.task, self.model_element_size, self.normalization) for it in val
        ]
        for p in self.train_images + self.val_images:
            name = p.item.meta.get("path", p.item.name)
            if p.image.ndim - 1 != len(self.tile_shape):
                raise ValueError(
                    f"{name}: {p.image.ndim - 1}D image but the model is {len(self.tile_shape)}D"
                )
            if self.in_channels is not None and p.image.shape[0] != self.in_channels:
                raise ValueError(
                    f"{name}: {p.image.shape[0]} channel(s) but model.net.in_channels={self.in_channels}"
                )
        log.info(
            "data: %d training / %d validation images; tile %s -> %s; %d tiles per epoch",
            len(self.train_images),
            len(self.val_images),
            self.tile_shape,
            self.out_shape,
            self.tiles_per_epoch,
        )

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        dataset = TileDataset(
            self.train_images,
            self.tile_shape,
            self.out_shape,
            self.augment,
            self.seed,
            self.augment_on == "worker",
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=TileKeySampler(self.tiles_per_epoch, rank, world),
            num_workers=self.num_workers,
            worker_init_fn=_seed_worker,
            persistent_workers=False,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """augment_on="device": warp the batch of crops on the training device (one grid_sample)."""
        if isinstance(batch, dict) and "angles" in batch:
            return warp_batch(batch, self.tile_shape, self.out_shape, self.augment.interpolation)
        return batch

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        # every rank gets the same number of images (padded by repetition, as DistributedSampler does), so
        # all ranks make the same collective calls; the repeats are flagged (counted=False) and left out of
        # the validation means (LitUNet sums and counts over ranks), so every image counts exactly once
        n = len(self.val_images)
        padded = [(i % n, i < n) for i in range(-(-n // world) * world)] if n else []
        return DataLoader(IndexDataset(padded[rank::world]), batch_size=None)


def _seed_worker(worker_id: int) -> None:
    """Tiles are keyed, so workers need no RNG of their own; seed torch anyway for any library use."""
    import torch

    torch.manual_seed(worker_seed(torch.initial_seed() % 2**31, worker_id=worker_id))
