"""LightningModule: the U-Net, the pixel-weighted loss, whole-image validation through the predict path."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from unet.checkpoint import load_project_checkpoint
from unet.inference import ModelCard, predict_model_grid
from unet.losses import weighted_cross_entropy
from unet.memory import tile_shape_for_budget
from unet.models.unet import UNet
from unet.tiling import check_tta, memory_format, use_channels_last

log = logging.getLogger(__name__)


class LitUNet(L.LightningModule):
    """Training system around :class:`unet.UNet`.

    Args:
        net: the network.
        task: :class:`unet.tasks.SegmentationTask` or ``DetectionTask``.
        optimizer: partial optimizer (``_partial_: true`` in Hydra), completed with the parameters.
        scheduler: optional partial LR scheduler, stepped per epoch (``ReduceLROnPlateau`` on the task's
            monitor).
        element_size: the model's element size (µm; images are rescaled to it), None = as they are.
        normalization: intensity normalisation stored with the model.
        val_tile_shape: tile shape for whole-image validation (None: the largest that fits val_memory_mib).
        val_memory_mib: memory budget for validation tiles (activations of one forward pass).
        val_tta: test-time augmentation for validation ("none", "flips", "d4").
        init_from: checkpoint to initialise the weights from (finetuning, Falk M5); the head (and the
            first layer) are re-initialised when the number of classes (channels) differs.
        log_images: log input/target/weights/prediction panels of the first validation image.
    """

    def __init__(
        self,
        net: UNet,
        task: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        element_size: Sequence[float] | None = None,
        normalization: str = "minmax",
        val_tile_shape: Sequence[int] | None = None,
        val_tta: str = "none",
        val_memory_mib: int = 2048,
        init_from: str | None = None,
        log_images: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "task", "optimizer", "scheduler"])
        self.net = use_channels_last(net)
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.element_size = tuple(element_size) if element_size is not None else None
        self.normalization = normalization
        self.val_tile_shape = tuple(val_tile_shape) if val_tile_shape is not None else None
        check_tta(val_tta, self.element_size, "model.val_tta")
        self.val_tta = val_tta
        self.val_memory_mib = val_memory_mib
        self.log_images = log_images
        if init_from:
            self.init_weights_from(init_from)

    @property
    def card(self) -> ModelCard:
        return ModelCard(self.net.config, self.task.config(), self.element_size, self.normalization)

    def init_weights_from(self, path: str) -> None:
        """Load network weights; skip tensors whose shape differs (new head / new input channels)."""
        state = load_project_checkpoint(path)["state_dict"]
        own = self.state_dict()
        loaded, skipped = {}, []
        for k, v in state.items():
            if k in own and own[k].shape == v.shape:
                loaded[k] = v
            elif k in own:
                skipped.append(k)
        first = "net.encoder.0.0."
        unexpected = [k for k in skipped if not k.startswith(("net.head.", first))]
        missing = [k for k in own if k not in state]
        if unexpected or missing:
            raise ValueError(
                f"{path}: the network differs from the pretrained one beyond the first layer and the head "
                f"(mismatched {unexpected or missing}); finetuning keeps the pretrained architecture"
            )
        self.load_state_dict(loaded, strict=False)
        log.info("initialised %d tensors from %s; re-initialised %s", len(loaded), path, skipped or "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"].contiguous(memory_format=memory_format(batch["image"].ndim))
        loss = weighted_cross_entropy(self.net(x), batch["target"], batch["weights"])
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.task.monitor  # a plateau of the task's validation metric
            config["strict"] = False  # epochs without validation (check_val_every_n_epoch) skip the step
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_fit_start(self) -> None:
        self._fit_start = time.monotonic()

    # validation on whole images, through the prediction path ---------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums: dict[str, float] = {}
        self._val_counts: dict[str, int] = {}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        prepared, counted = batch  # (image, counted): repeats that pad DDP ranks are not counted
        item = prepared.item
        # the prediction path itself (predict.py): TTA members averaged as probabilities, then the task's
        # objects on the image's own grid
        probs, probs_own = predict_model_grid(
            self.net,
            prepared.image,
            item.image.shape[1:],
            tile_shape=self.val_tile_shape or self._val_tile(prepared.image.shape[1:]),
            tta=self.val_tta,
            device=self.device,
            name=str(item.meta.get("path", item.name)),
        )
        # the weighted loss on the model's grid; log(probabilities) are logits of the same soft-max
        log_probs = torch.from_numpy(np.log(np.maximum(probs, 1e-12)))[None]
        loss = weighted_cross_entropy(
            log_probs, torch.from_numpy(prepared.target)[None], torch.from_numpy(prepared.weights)[None]
        )
        scores = {"loss": float(loss), **self.task.score(probs_own, item.annotation, item.element_size)}
        # every rank scores the same number of images (repeats included), so the keys agree across ranks
        # NaN scores (e.g. IoU of an image without annotated objects) are left out of that key's mean
        for k, v in scores.items():
            use = bool(counted) and math.isfinite(float(v))
            self._val_sums[k] = self._val_sums.get(k, 0.0) + (float(v) if use else 0.0)
            self._val_counts[k] = self._val_counts.get(k, 0) + int(use)
        if batch_idx == 0 and self.log_images and not self.trainer.sanity_checking:
            self._log_panels(prepared, probs)

    def on_validation_epoch_end(self) -> None:
        """Exact means over the validation images: sums and counts reduced over ranks, repeats left out;
        per key, NaN scores are left out (a key with no finite score logs NaN)."""
        if not self._val_sums:
            return
        keys = list(self._val_sums)
        totals = torch.tensor(
            [*(self._val_counts[k] for k in keys), *(self._val_sums[k] for k in keys)], dtype=torch.float64
        )
        if self.trainer.world_size > 1:
            # reduced where the process group lives (NCCL: GPU); MPS has no float64
            dtype = torch.float32 if self.device.type == "mps" else torch.float64
            totals = (
                self.trainer.strategy.reduce(totals.to(self.device, dtype), reduce_op="sum").cpu().double()
            )
        counts, sums = totals[: len(keys)].tolist(), totals[len(keys) :].tolist()
        if hasattr(self, "_fit_start"):  # wall time to this validation: quality against time in TensorBoard
            self.log("time/minutes", (time.monotonic() - self._fit_start) / 60, sync_dist=False)
        means = {k: (total / count if count else float("nan")) for k, count, total in zip(keys, counts, sums)}
        if hasattr(self.task, "finish_validation"):  # e.g. the instance method chosen on validation
            means = self.task.finish_validation(means)
        for k, value in means.items():
            self.log(f"val/{k}", value, prog_bar=k in ("iou", "f1"), sync_dist=False)

    def _val_tile(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Largest validation tile that fits ``val_memory_mib`` (never larger than the image needs)."""
        halo = self.net.halo
        return tile_shape_for_budget(
            self.net,
            self.val_memory_mib * 2**20,
            max_shape=tuple(s + 2 * h for s, h in zip(shape, halo)),
            element_size=self.element_size,
            device=self.device,
            measure=False,
        )

    def _log_panels(self, prepared: Any, probs: np.ndarray) -> None:
        logger = self.logger
        if logger is None or not hasattr(logger.experiment, "add_image"):
            return

        def plane(a: np.ndarray) -> np.ndarray:  # middle z-slice in 3D
            return a[a.shape[0] // 2] if a.ndim == 3 else a

        def scaled(a: np.ndarray) -> np.ndarray:
            a = a.astype(np.float32)
            lo, hi = float(a.min()), float(a.max())
            return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)

        k = max(1, probs.shape[0] - 1)
        panels = {
            "input": plane(prepared.image[0]),
            "target": plane(prepared.target) / k,
            "weights": scaled(plane(prepared.weights)),
            "prediction": plane(probs.argmax(0)) / k,
            "foreground_probability": plane(1 - probs[0]),
        }
        # the step Lightning logs the val/* scalars at, so panels and scalars line up in TensorBoard
        step = getattr(getattr(self.trainer.fit_loop, "epoch_loop", None), "_batches_that_stepped", None)
        step = self.global_step if step is None else step
        for name, img in panels.items():
            logger.experiment.add_image(f"val/{name}", np.clip(img, 0, 1)[None], step)

    # checkpoints carry the model card and the RNG states (exact resume) ----------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["unet_card"] = self.card.to_dict()
        # tiles are keyed by (seed, step), so only torch's generator (dropout) and Python's carry state
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # a checkpoint written in the middle of an epoch: the data module skips the batches already trained
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        done = 0 if progress.get("is_last_batch", True) else int(progress["current"]["processed"])
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if done and hasattr(datamodule, "resume_mid_epoch"):
            datamodule.resume_mid_epoch(done)
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
