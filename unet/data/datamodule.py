"""LightningDataModule: sources -> prepared images (targets, weights, pdf) -> tiles and validation images."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from unet.data.augment import AugmentParams
from unet.data.items import Annotation, Item
from unet.data.preprocess import normalize, resize, scale_factors, scale_points, scaled_shape
from unet.data.sampling import TileSampler, worker_seed
from unet.data.sources import FolderSource, split_items
from unet.data.tiles import PreparedImage, TileDataset, TileKeySampler, ValidationImages, warp_batch
from unet.memory import tile_shape_for_budget
from unet.models import shapes

log = logging.getLogger(__name__)


def to_model_grid(
    item: Item,
    task: Any,
    model_element_size: Sequence[float] | None,
    normalization: str,
    max_rescale: float = 8.0,
    sampling: str = "w_bal",
) -> PreparedImage:
    """Normalise (M4), rescale to the model's element size (M5) and compute targets/weights/pdf (M2, M3).

    ``sampling``: the pdf of the tile centres: ``"w_bal"`` (Falk M3: the class-balancing weights, foreground
    ``1 / v_bal`` times as likely as background) or ``"uniform"`` (every pixel outside ignored regions alike:
    the plain random crop, an ablation of M3).

    Raises ValueError naming the image if it holds NaN/inf, or if the rescaling factor on some axis is beyond
    ``max_rescale`` either way (an element size that is probably wrong: 16x coarser data takes 256x the
    memory in 2D, 1/1000 shrinks an image to a pixel).
    """
    name = item.meta.get("path", item.name)
    if not np.isfinite(item.image).all():
        bad = int(np.size(item.image) - np.isfinite(item.image).sum())
        raise ValueError(f"{name}: {bad} NaN or infinite pixel value(s); fix or mask them before training")
    _refuse_blank_image(item, name)
    factors = scale_factors(item.element_size, model_element_size)
    if factors is not None and any(f > max_rescale or f < 1 / max_rescale for f in factors):
        raise ValueError(
            f"{name}: element size {tuple(item.element_size)} µm against the model's "
            f"{tuple(model_element_size)}"
            f" means rescaling by {tuple(round(f, 4) for f in factors)}, beyond {max_rescale:g}x either way; "
            "check data.element_size / model.element_size, or allow it with data.max_rescale=<factor>"
        )
    image = normalize(item.image, normalization)
    shape = image.shape[1:]
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
    ann_name = item.meta.get("annotation", f"{name} (its annotation)")  # what is wrong is the annotation file
    try:
        target, weights, pdf = task.targets(ann, new_shape, es)
    except ValueError as e:
        raise ValueError(f"{ann_name}: {e}") from e
    if target.max(initial=0) >= task.num_classes:
        raise ValueError(
            f"{ann_name}: annotation has class {int(target.max())} but task.num_classes={task.num_classes}"
        )
    if sampling == "uniform":
        pdf = (pdf > 0).astype(np.float64)
    v_bal = 1.0 if sampling == "uniform" else getattr(task, "v_bal", 1.0)
    mass = float((target > 0).sum() + v_bal * ((target == 0) & (pdf > 0)).sum())
    image = np.ascontiguousarray(image, np.float32)
    return PreparedImage(item, image, target, weights, TileSampler(pdf), mass)


def _refuse_blank_image(item: Any, name: str) -> None:
    """Refuse a constant image (every pixel of every channel equal) whose annotation holds objects: nothing
    can be learnt from it, and it is nearly always the wrong file (a blank export, a failed acquisition)."""
    image = np.asarray(item.image)
    if image.size == 0 or image.min() != image.max():
        return
    ann = item.annotation
    n = 0
    if ann.labels is not None:
        n = len(np.unique(ann.labels[ann.labels > 0]))
    elif ann.points is not None:
        n = len(ann.points)
    elif ann.mask is not None and (ann.mask > 0).any():
        n = 1
    if n:
        raise ValueError(
            f"{name}: the image is constant (every pixel is {image.flat[0]:g}) but its annotation has "
            f"{n} object(s): probably a blank or wrong image file; replace it or remove it from the folder"
        )


class UNetDataModule(L.LightningDataModule):
    """Training tiles sampled from the w_bal pdf with on-the-fly augmentation; whole validation images.

    Constructed whole, in one call, from the data config and the model's facts (:func:`unet.cli.train.build`:
    ``instantiate(cfg.data, _partial_=True)`` and :func:`with_items`, then the model's facts): the images are
    read, checked against the model and prepared (targets, weights, pdf) here, so a bad input is refused
    before training and every attribute is set from the start.

    Args:
        source: where items come from (:class:`unet.data.sources.SyntheticSource`, ``FolderSource``...).
        task: :class:`unet.tasks.SegmentationTask` or ``DetectionTask`` (targets, weights, pdf).
        net: the :class:`unet.models.unet.UNet`: its levels (tile arithmetic), input channels (checked
            against the images) and, for ``tile_shape=None``, the memory estimate that chooses the tile.
        model_element_size: the model's element size (µm): images are rescaled to it (Falk M5); None: as
            they are.
        normalization: the model's intensity normalisation (:func:`unet.data.preprocess.normalize`).
        validate: False only when training runs without validation on purpose
            (``trainer.limit_val_batches=0``): then no validation images are required.
        tile_shape: network input tile shape for training (must be valid for the model); None: the largest
            valid tile whose training step fits ``tile_memory_mib`` (never larger than the largest training
            image needs).
        tile_memory_mib: memory budget of one training step for the automatic tile (the estimate of
            :func:`unet.memory.estimate_memory`); on a CPU it also sets the time per step. The default is
            CPU-sized (about 0.5 s per step on 2 cores); raise it on a GPU (e.g. 4096).
        batch_size: tiles per training step (the paper: 1 large tile).
        tiles_per_epoch: training tiles per epoch (over all ranks).
        augment: :class:`AugmentParams` fields (rotation_range, flips, elastic_std, ...).
        augment_on: "worker" (CPU, in the DataLoader) or "device" (tiles warped in batches on the
            training GPU).
        num_workers: DataLoader worker processes.
        num_folds / fold: cross-validation over the source's training items (None = use its val items),
            e.g. ``data.num_folds=5 data.fold=0``.
        max_rescale: largest zoom (either way) from an image's element size to the model's (Falk M5);
            rescaling beyond it is refused.
        sampling: pdf of the training tile centres, "w_bal" (Falk M3) or "uniform" (plain random crops).
        seed: tiles, folds and augmentation derive from it.
        items: the (train, val) items of ``source``, folds applied, when already read (:func:`with_items`,
            so that the pipeline reads them once); None: read here.

    The defaults here are the config's (``data/base``, generated by :mod:`unet.config`); the
    augmentation's are :class:`AugmentParams`' (``data/augment``). Mid-epoch resume is the data module's
    own: :meth:`state_dict` records the batches of the epoch already trained, :meth:`load_state_dict` makes
    the next training loader start after them (Lightning calls both with its checkpoints).
    """

    def __init__(
        self,
        source: Any,
        task: Any,
        net: Any,
        model_element_size: Sequence[float] | None,
        normalization: str,
        validate: bool,
        tile_shape: Sequence[int] | None = None,
        tile_memory_mib: float = 256,
        batch_size: int = 1,
        tiles_per_epoch: int = 50,
        augment: dict | AugmentParams | None = None,
        augment_on: str = "worker",
        num_workers: int = 0,
        num_folds: int | None = None,
        fold: int = 0,
        max_rescale: float = 8.0,
        sampling: str = "w_bal",
        seed: int = 0,
        items: tuple[list[Item], list[Item]] | None = None,
    ) -> None:
        super().__init__()
        _check_number("data.tile_memory_mib", tile_memory_mib, float, minimum=1)
        _check_number("data.batch_size", batch_size, int, minimum=1)
        _check_number("data.tiles_per_epoch", tiles_per_epoch, int, minimum=1)
        _check_number("data.num_workers", num_workers, int, minimum=0)
        _check_number("data.max_rescale", max_rescale, float, minimum=1)
        _check_folds(num_folds, fold)
        self.max_rescale = float(max_rescale)
        if sampling not in ("w_bal", "uniform"):
            raise ValueError(f"data.sampling must be 'w_bal' or 'uniform', got {sampling!r}")
        self.sampling = sampling
        self.validate = bool(validate)
        if augment_on not in ("worker", "device"):
            raise ValueError(f"augment_on must be 'worker' or 'device', got {augment_on!r}")
        self.source = source
        self.tile_memory_mib = float(tile_memory_mib)
        self.batch_size = batch_size
        self.tiles_per_epoch = tiles_per_epoch
        if augment is None:
            augment = AugmentParams()
        elif not isinstance(augment, AugmentParams):
            augment = AugmentParams(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in dict(augment).items()}
            )
        self.augment_on = augment_on
        self.num_workers = num_workers
        self.num_folds, self.fold, self.seed = num_folds, fold, seed
        self._resume_batches = 0  # batches of the current epoch already trained (mid-epoch resume)
        # the model's facts
        self.task, self.net, self.levels, self.in_channels = task, net, net.levels, net.in_channels
        self.model_element_size = tuple(model_element_size) if model_element_size is not None else None
        self.normalization = normalization
        tile = None if tile_shape is None else tuple(int(t) for t in tile_shape)
        if tile is not None:
            _check_tile(tile, self.levels)
        if normalization == "none" and augment.intensity_range > 0:
            raise ValueError(
                "the intensity augmentation maps normalised [0, 1] intensities: use "
                "model.normalization=minmax or data.augment.intensity_range=0"
            )
        self.augment = _physical(augment, self.model_element_size)
        # the images, read, checked against the model and prepared
        self.items = read_items(source, num_folds, fold, seed) if items is None else items
        self.train_images, self.val_images = self._prepare()
        self.tile_shape = tile if tile is not None else self.auto_tile_shape()
        self.out_shape = shapes.output_shape(self.levels, self.tile_shape)
        log.info(
            "data: %d training / %d validation images; tile %s -> %s; %d tiles per epoch",
            len(self.train_images),
            len(self.val_images),
            self.tile_shape,
            self.out_shape,
            self.tiles_per_epoch,
        )

    @classmethod
    def from_folders(
        cls,
        root: str | None = None,
        train_dir: str | None = None,
        val_dir: str | None = None,
        spatial_dims: int = 2,
        element_size: Sequence[float] | None = None,
        channel_axis: int | None = None,
        embedded: Any = None,
        **kwargs: Any,
    ) -> UNetDataModule:
        """The data module over the user's folders (``data=folder``, ``data=brightfield``).

        Args:
            root: a folder with ``train/`` and ``val/`` (each as ``train_dir``), or with ``images/`` itself
                (cross-validation: ``num_folds``).
            train_dir / val_dir: folders with ``images/`` and ``labels/`` (or ``masks/``, ``points/``,
                ``rois/``).
            spatial_dims, element_size, channel_axis: see :class:`unet.data.sources.FolderSource`.
            embedded: the source used when no folder is given (the setup's embedded default); None: a folder
                is required.
            **kwargs: :class:`UNetDataModule` arguments.
        """
        source = folder_source(
            root,
            train_dir,
            val_dir,
            spatial_dims,
            element_size,
            channel_axis,
            embedded,
            kwargs.get("num_folds"),
        )
        return cls(source, **kwargs)

    def _prepare(self) -> tuple[list[PreparedImage], list[PreparedImage]]:
        """The training and validation images on the model's grid, each checked against the model."""
        train, val = self.items
        if not train:
            raise ValueError("the data source has no training images")
        if not val and self.validate:
            raise ValueError(
                "no validation images: pass data.val_dir=<dir> (or a source with validation images), or use "
                "cross-validation: data.num_folds=5 data.fold=0 (or turn validation off on purpose: "
                "trainer.limit_val_batches=0, the last checkpoint is then the model)"
            )
        args = (self.task, self.model_element_size, self.normalization, self.max_rescale, self.sampling)
        train_images = [to_model_grid(it, *args) for it in train]
        val_images = [to_model_grid(it, *args) for it in val]
        if val_images and not any((p.target > 0).any() for p in val_images):
            raise ValueError(
                f"no validation image has an annotated object ({_names(val)}): the validation "
                "metrics would be undefined; check the annotation files"
            )
        nd = len(self.levels[0].kernel)
        for p in train_images + val_images:
            name = p.item.meta.get("path", p.item.name)
            if p.image.ndim - 1 != nd:
                raise ValueError(
                    f"{name}: {p.image.ndim - 1}D image but the model is {nd}D "
                    f"(model=unet{p.image.ndim - 1}d?)"
                )
            if self.in_channels is not None and p.image.shape[0] != self.in_channels:
                hint = ""
                if nd == 2 and p.image.shape[0] > self.in_channels:
                    hint = (
                        " (a 3D stack? A 2D model reads its z-slices as channels: use model=unet3d for 3D "
                        "data, or model.net.in_channels for multi-channel 2D images)"
                    )
                raise ValueError(
                    f"{name}: {p.image.shape[0]} channel(s) but model.net.in_channels="
                    f"{self.in_channels}{hint}"
                )
        return train_images, val_images

    def auto_tile_shape(self) -> tuple[int, ...]:
        """The largest valid training tile within ``tile_memory_mib``, no larger than the largest training
        image (on the model's grid) plus the network's halo needs: every output pixel of a tile then lies
        on an image (smaller images are mirrored, as in prediction)."""
        halo = shapes.halo(self.levels)
        largest = np.max([p.image.shape[1:] for p in self.train_images], axis=0)
        try:
            return tile_shape_for_budget(
                self.net,
                int(self.tile_memory_mib * 2**20),
                batch_size=self.batch_size,
                train=True,
                max_shape=tuple(int(s) + 2 * h for s, h in zip(largest, halo)),
                element_size=self.model_element_size,
                measure=False,
            )
        except ValueError as e:
            raise ValueError(f"data.tile_memory_mib={self.tile_memory_mib:g}: {e}") from e

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
            sampler=TileKeySampler(
                self.tiles_per_epoch, rank, world, skip=self._resume_batches * self.batch_size
            ),
            num_workers=self.num_workers,
            worker_init_fn=_seed_worker,
            persistent_workers=False,
            # the loader's own generator: creating its iterator must not draw from the global torch RNG,
            # whose state (dropout masks) a checkpoint restores exactly, also in the middle of an epoch
            generator=torch.Generator().manual_seed(int(self.seed)),
        )

    def state_dict(self) -> dict[str, Any]:
        """Written into every checkpoint (Lightning's hook): the batches of the current epoch already trained,
        0 at the end of an epoch (the fit loop's own count, as the checkpoint's loops record it)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress
        return {"batches_done": 0 if progress.is_last_batch else int(progress.current.processed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resuming from a checkpoint written ``batches_done`` batches into an epoch: the next epoch's loader
        starts after them (keys are a pure function of (seed, epoch, index), so nothing else is needed)."""
        self._resume_batches = int(state_dict.get("batches_done", 0))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """augment_on="device": warp the batch of crops on the training device (one grid_sample)."""
        if isinstance(batch, dict) and "angles" in batch:
            return warp_batch(batch, self.tile_shape, self.out_shape, self.augment.interpolation)
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Validation batches are whole prepared images (numpy, on the host): the LightningModule predicts
        them tile by tile on the device, so they are never copied there whole."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and not trainer.training:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        # every rank gets the same number of images (padded by repetition, as DistributedSampler does), so
        # all ranks make the same collective calls; the repeats are flagged (counted=False) and left out of
        # the validation means (LitUNet sums and counts over ranks), so every image counts exactly once
        n = len(self.val_images)
        padded = [(self.val_images[i % n], i < n) for i in range(-(-n // world) * world)] if n else []
        return DataLoader(ValidationImages(padded[rank::world]), batch_size=None, collate_fn=_as_is)


def read_items(
    source: Any, num_folds: int | None = None, fold: int = 0, seed: int = 0
) -> tuple[list[Item], list[Item]]:
    """(train, val) items from the source, cross-validation folds applied (``num_folds``: the folds are
    drawn from the training items with ``seed``; None: the source's own validation items)."""
    _check_folds(num_folds, fold)
    train = source.train_items()
    if num_folds:
        return split_items(train, num_folds, fold, seed)
    return train, source.val_items()


def folder_source(
    root: str | None,
    train_dir: str | None,
    val_dir: str | None,
    spatial_dims: int,
    element_size: Sequence[float] | None,
    channel_axis: int | None,
    embedded: Any,
    num_folds: int | None,
) -> Any:
    """The source of :meth:`UNetDataModule.from_folders`: the user's folders, or ``embedded`` (with a
    warning) when none is given and there is one."""
    if root is None and train_dir is None and embedded is not None:
        log.warning(
            "no data.root or data.train_dir given: training on the embedded default, %s. "
            "Train on your own data with data.root=<dir with train/ and val/> or "
            "data.train_dir=<dir> data.val_dir=<dir> (each with images/ and labels/)",
            embedded.describe(),
        )
        return embedded
    return FolderSource.from_root(
        root,
        train_dir,
        val_dir,
        folds=bool(num_folds),
        spatial_dims=spatial_dims,
        element_size=element_size,
        channel_axis=channel_axis,
    )


def with_items(make: functools.partial) -> functools.partial:
    """A data config instantiated with ``_partial_=True`` (everything but the model's facts), with its items
    read: a partial of :class:`UNetDataModule` whose ``source`` is made (``from_folders``' keys become the
    folder source) and whose ``items`` are read (folds applied), so that the pipeline can take the model's
    element size from the data (:func:`data_element_size`) before the network exists, and the data module
    reads nothing twice."""
    kwargs = dict(make.keywords)
    if make.func == UNetDataModule.from_folders:
        keys = ("root", "train_dir", "val_dir", "spatial_dims", "element_size", "channel_axis", "embedded")
        defaults = inspect.signature(UNetDataModule.from_folders).parameters
        folder = {k: kwargs.pop(k, defaults[k].default) for k in keys}
        kwargs["source"] = folder_source(**folder, num_folds=kwargs.get("num_folds"))
    elif make.func is not UNetDataModule:
        raise TypeError(f"not a data module config: {make.func!r}")
    defaults = inspect.signature(UNetDataModule).parameters
    fold_keys = {k: kwargs.get(k, defaults[k].default) for k in ("num_folds", "fold", "seed")}
    kwargs["items"] = read_items(kwargs["source"], **fold_keys)
    return functools.partial(UNetDataModule, *make.args, **kwargs)


def data_element_size(make: functools.partial) -> tuple[float, ...] | None:
    """Element size of the first training image of :func:`with_items`' partial (None if unknown): the
    default model element size."""
    train, _ = make.keywords["items"]
    return train[0].element_size if train else None


def _check_tile(tile: tuple[int, ...], levels: Sequence[shapes.LevelSpec]) -> tuple[int, ...]:
    """The output shape of a configured training tile, or a ValueError naming ``data.tile_shape``."""
    nd = len(levels[0].kernel)
    if len(tile) != nd:
        raise ValueError(
            f"data.tile_shape {list(tile)} has {len(tile)} axes but the model is "
            f"{nd}D (model=unet{len(tile)}d? or data.tile_shape=null to choose one)"
        )
    try:
        return shapes.output_shape(levels, tile)
    except ValueError as e:
        raise ValueError(f"data.tile_shape: {e}") from e


def _physical(augment: AugmentParams, element_size: tuple[float, ...] | None) -> AugmentParams:
    """The elastic std and grid spacing, given in pixels of the finest axis, on every axis: the same
    physical deformation on coarse (e.g. z) axes is fewer voxels."""
    es = element_size
    if es is None or all(e == min(es) for e in es):
        return augment
    a, nd = augment, len(es)
    scale = [min(es) / e for e in es]
    std = [v * f for v, f in zip(a.per_axis(a.elastic_std, nd, "elastic_std"), scale)]
    spacing = [v * f for v, f in zip(a.per_axis(a.elastic_grid_spacing, nd, "elastic_grid_spacing"), scale)]
    return dataclasses.replace(a, elastic_std=tuple(std), elastic_grid_spacing=tuple(spacing))


def _check_folds(num_folds: int | None, fold: int) -> None:
    if num_folds is not None:
        _check_number("data.num_folds", num_folds, int, minimum=2)
        _check_number("data.fold", fold, int, minimum=0)


def _names(items: Sequence[Item], n: int = 3) -> str:
    names = [str(it.meta.get("path", it.name)) for it in items[:n]]
    return ", ".join(names) + (f" and {len(items) - n} more" if len(items) > n else "")


def _check_number(key: str, value: Any, kind: type, minimum: float) -> None:
    """A config number of the right type and range, or a ValueError naming the key (before any work)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok or value < minimum:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{key}={value!r}: expected {what} >= {minimum:g}")


def _as_is(batch: Any) -> Any:
    return batch


def _seed_worker(worker_id: int) -> None:
    """Tiles are keyed, so workers need no RNG of their own; seed torch anyway for any library use."""
    import torch

    torch.manual_seed(worker_seed(torch.initial_seed() % 2**31, worker_id=worker_id))
