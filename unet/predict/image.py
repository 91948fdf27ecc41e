"""Apply a trained model to an image of any size and element size (shared by predict.py and validation).

raw image -> per-channel min-max normalisation (Falk M4) -> rescale to the model's element size (M5) ->
overlap-tile prediction -> class probabilities resampled back to the image's own grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unet.checkpoint import load_project_checkpoint
from unet.data.preprocess import normalize, resize, scale_factors, scaled_shape
from unet.models.unet import UNet
from unet.tasks import task_from_config
from unet.tiling import check_tta, predict_tiled


@dataclass
class ModelCard:
    """Everything needed to apply a model: stored in every checkpoint under ``"unet_card"``.

    Attributes:
        net: UNet constructor arguments (channels, classes, depth, widths, element size...).
        task: task config (:meth:`unet.tasks.SegmentationTask.config`).
        element_size: the model's physical voxel size (µm) or None (images are used as they are).
        normalization: intensity normalisation ("minmax" per channel, Falk M4).
    """

    net: dict
    task: dict
    element_size: tuple[float, ...] | None
    normalization: str = "minmax"

    def to_dict(self) -> dict:
        return {
            "net": dict(self.net),
            "task": dict(self.task),
            "element_size": None if self.element_size is None else list(self.element_size),
            "normalization": self.normalization,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        es = d.get("element_size")
        return cls(
            dict(d["net"]),
            dict(d["task"]),
            None if es is None else tuple(es),
            d.get("normalization", "minmax"),
        )


def load_model(ckpt_path: str, map_location: str | torch.device = "cpu") -> tuple[UNet, Any, ModelCard]:
    """Rebuild (net, task, card) from a checkpoint written by training; no model flags needed."""
    ckpt = load_project_checkpoint(ckpt_path, map_location)
    card = ModelCard.from_dict(ckpt["unet_card"])
    net = UNet(**card.net)
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), task_from_config(card.task), card


def predict_image(
    net: UNet,
    image: Any,
    *,
    element_size: Sequence[float] | None,
    card: ModelCard,
    tile_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    tta: str = "none",
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
    name: str = "image",
    precision: str = "auto",
) -> np.ndarray:
    """Class probabilities (K, *S) on the image's own grid for a raw (C, *S) image, computed in
    ``precision`` (``auto``: bf16 where the device has it natively, as training chooses; ``32-true``)."""
    check_tta(tta, card.element_size or element_size, name)
    x = normalize(np.asarray(image), card.normalization)
    shape = x.shape[1:]
    model_shape = scaled_shape(shape, scale_factors(element_size, card.element_size))
    if model_shape != tuple(shape):
        x = resize(x, model_shape)
    return predict_model_grid(
        net,
        x,
        shape,
        tile_shape=tile_shape,
        batch_size=batch_size,
        tta=tta,
        device=device,
        progress=progress,
        name=name,
        precision=precision,
    )[1]


def predict_model_grid(
    net: UNet,
    x: np.ndarray,
    image_shape: Sequence[int],
    *,
    tile_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    tta: str = "none",
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
    name: str = "image",
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The prediction step shared by :func:`predict_image` and validation: a normalised image already on
    the model's grid -> class probabilities (K, *S') on that grid (overlap-tile, TTA members averaged as
    probabilities) and resampled to the image's own grid ``image_shape`` (the same array when equal).
    ``precision``: :func:`unet.hardware.resolve_precision` (validation passes the trainer's)."""
    probs = predict_tiled(
        net,
        x,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        tta=tta,
        activation="softmax",
        progress=progress,
        name=name,
        precision=precision,
    )
    own = resize(probs, image_shape, antialias=False) if probs.shape[1:] != tuple(image_shape) else probs
    return probs, own


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable soft-max over axis 0 of (K, *S)."""
    z = logits - logits.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    return z
