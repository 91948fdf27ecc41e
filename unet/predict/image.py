"""Apply a trained model to an image of any size and element size (shared by predict.py and validation).

raw image -> per-channel min-max normalisation (Falk M4) -> rescale to the model's element size (M5) ->
overlap-tile prediction -> class probabilities resampled back to the image's own grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from unet.data.preprocess import normalize, resize, scale_factors, scaled_shape
from unet.loading import load_network
from unet.models.card import ModelCard
from unet.models.unet import UNet
from unet.tasks import task_from_config
from unet.tiling import check_tta, predict_tiled


def load_model(
    ckpt_path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Any, Any, ModelCard]:
    """(net, task, card) of a model file: :func:`unet.loading.load_network` (a checkpoint written by
    training, or an exported TorchScript/ONNX model) and the task of its card; no model flags needed."""
    net, card = load_network(ckpt_path, map_location)
    return net, task_from_config(card.task), card


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
