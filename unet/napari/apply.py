"""Applying a model to an image layer's data: what the dock widget runs off the GUI thread (no Qt here).

The path is the library's, as ``predict.py`` takes it for an image in memory
(:func:`unet.predict.jobs.predict_in_memory`): :func:`unet.predict.load_model` (a training
checkpoint ``.ckpt`` or an exported ``.onnx`` / ``.pt`` TorchScript model, whose card travels inside), a
tile within the default memory budget (:func:`unet.memory.tile_shape_for_budget`),
:func:`unet.predict.predict_image` with ``precision="auto"`` (rescaled to the model's element size and
back), then the task's instance labels and, for detection, :func:`unet.postprocess.detection_points`.

Before anything is predicted the model's card is checked against the image: dimensionality (2D / 3D) and
number of channels; a mismatch raises :class:`ModelMismatch` whose message the widget shows as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet import postprocess
from unet.data.preprocess import scale_factors, scaled_shape
from unet.hardware import default_tile_budget_mib
from unet.memory import tile_shape_for_budget
from unet.models import shapes
from unet.models.card import ModelCard, geometry_of
from unet.predict.files import EXPORTED_SUFFIXES, model_precision
from unet.predict.image import load_model, predict_image
from unet.tiling import plan_tiles

MIB = 2**20
#: model files the widget opens
MODEL_SUFFIXES = (".ckpt", *EXPORTED_SUFFIXES)


class ModelMismatch(ValueError):
    """The model's card does not fit the image (channels or dimensionality); the message says how."""


@dataclass
class Prediction:
    """What :func:`run_prediction` returns: the arrays of the layers the widget adds."""

    probabilities: np.ndarray  #: float32 (K, *S) on the image's own grid
    labels: np.ndarray  #: instance labels (*S), as ``predict.py`` writes them
    class_of: np.ndarray  #: class of each instance id
    points: np.ndarray | None  #: detection only: (N, ndim) pixel coordinates, array order
    classes: np.ndarray | None  #: detection only: (N,) class of each point
    task: str  #: "segmentation" or "detection"
    card: ModelCard
    element_size: tuple[float, ...] | None  #: of the image (µm), None when unknown
    precision: str  #: what ``precision="auto"`` resolved to on ``device``
    device: str
    tiles: int  #: overlap tiles predicted


def describe_model(net: Any, card: ModelCard) -> str:
    """``"1-channel 2D, 2 classes (segmentation)"``."""
    return (
        f"{net.in_channels}-channel {net.spatial_dims}D, {net.num_classes} classes "
        f"({card.task.get('name', 'segmentation')})"
    )


def image_for_model(
    data: Any, *, rgb: bool, in_channels: int, spatial_dims: int, name: str = "image", model: str = "model"
) -> np.ndarray:
    """A layer's data as the channel-first ``(C, *S)`` image the model takes, or :class:`ModelMismatch`.

    A layer of ``spatial_dims`` dimensions is one channel; one more dimension is channel-first ``(C, *S)``
    (the layout ``unet.io`` reads); an RGB(A) layer has its colours as channels.
    """
    arr = np.asarray(data)
    axes = "Z, Y, X" if spatial_dims == 3 else "Y, X"
    wants = (
        f"{model} takes {in_channels}-channel {spatial_dims}D images "
        f"({axes}{'' if in_channels == 1 else f', channel axis first: ({in_channels}, {axes})'})"
    )
    if rgb:
        if arr.ndim - 1 != spatial_dims or arr.shape[-1] != in_channels:
            raise ModelMismatch(
                f"{wants}; layer '{name}' is a {arr.ndim - 1}D RGB{'A' if arr.shape[-1] == 4 else ''} image "
                f"({arr.shape[-1]} channels, shape {arr.shape})"
            )
        image = np.moveaxis(arr, -1, 0)
    elif arr.ndim == spatial_dims:
        image = arr[None]
    elif arr.ndim == spatial_dims + 1:
        image = arr
    else:
        raise ModelMismatch(
            f"{wants}; layer '{name}' has {arr.ndim} dimensions, shape {arr.shape} "
            f"({'a 2D image' if arr.ndim == 2 else 'not a ' + str(spatial_dims) + 'D image'})"
        )
    if image.shape[0] != in_channels:
        if in_channels == 1 and not rgb:
            got = f"{arr.ndim} dimensions, shape {arr.shape}: a {arr.ndim}D image or {arr.shape[0]} channels"
        else:
            got = f"{image.shape[0]} channel(s) (shape {arr.shape})"
        raise ModelMismatch(f"{wants}; layer '{name}' has {got}")
    if any(s == 0 for s in image.shape):
        raise ModelMismatch(f"layer '{name}' is empty (shape {arr.shape})")
    if not np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_:
        raise ModelMismatch(f"layer '{name}': numeric pixels needed, got dtype {image.dtype}")
    return image


def layer_element_size(
    metadata: dict | None, scale: Sequence[float], spatial_dims: int
) -> tuple[float, ...] | None:
    """The image's element size (µm): ``metadata["element_size"]`` (set by this plugin's readers), else the
    layer's scale over the spatial axes unless that is napari's default of 1 per axis (= uncalibrated)."""
    es = (metadata or {}).get("element_size")
    if es is not None and len(es) == spatial_dims:
        return tuple(float(s) for s in es)
    sc = tuple(float(s) for s in scale)[-spatial_dims:]
    if len(sc) == spatial_dims and all(s > 0 for s in sc) and any(abs(s - 1.0) > 1e-12 for s in sc):
        return sc
    return None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(model_path: str | os.PathLike) -> tuple[Any, Any, ModelCard]:
    """(net, task, card) of a checkpoint or exported model; clear errors for a missing or foreign file."""
    p = Path(model_path).expanduser()
    if not str(model_path).strip():
        raise ValueError("choose a model file (.ckpt, .onnx or .pt) first")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model file")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"{p}: not a model file (expected {', '.join(MODEL_SUFFIXES)})")
    return load_model(p)


def run_prediction(
    model_path: str | os.PathLike,
    data: Any,
    *,
    rgb: bool = False,
    element_size: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
    metadata: dict | None = None,
    name: str = "image",
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 1,
) -> Prediction:
    """Apply a model file to a layer's data (see the module doc); ``progress(done, total)`` counts tiles.

    The image's element size is ``element_size``, else (once the model says how many spatial axes there
    are) :func:`layer_element_size` of the layer's ``metadata`` and ``scale``.

    Raises:
        ModelMismatch: The model's card does not fit the image (nothing is predicted).
        FileNotFoundError, ValueError, :class:`unet.checkpoint.CheckpointError`: bad model file.
    """
    net, task, card = load(model_path)
    model = f"model '{Path(model_path).name}' ({describe_model(net, card)})"
    image = image_for_model(
        data, rgb=rgb, in_channels=net.in_channels, spatial_dims=net.spatial_dims, name=name, model=model
    )
    if element_size is not None:
        es: tuple[float, ...] | None = tuple(float(s) for s in element_size)
    elif scale is not None or metadata is not None:
        es = layer_element_size(metadata, scale or (), net.spatial_dims)
    else:
        es = None
    if es is not None and len(es) != net.spatial_dims:
        raise ModelMismatch(f"layer '{name}': element size {es} does not have {net.spatial_dims} values")
    dev = device or default_device()
    shape = tuple(int(s) for s in image.shape[1:])
    model_shape = scaled_shape(shape, scale_factors(es, card.element_size))
    tile = tile_shape_for_budget(
        geometry_of(net, card),
        int(default_tile_budget_mib(dev) * MIB),
        batch_size=batch_size,
        max_shape=shapes.input_shape_for_output(net.levels, model_shape),
        element_size=card.element_size,
        device=dev,
    )
    total = len(plan_tiles(net.levels, model_shape, tile))
    applied = model_precision(model_path, "auto", dev)  # predict.py's rule (exported graphs: float32)
    if progress is not None:
        progress(0, total)
    probs = predict_image(
        net.to(dev),
        image,
        element_size=es,
        card=card,
        tile_shape=tile,
        batch_size=batch_size,
        device=dev,
        progress=None if progress is None else (lambda done: progress(done, total)),
        name=name,
        precision=applied,
    ).astype(np.float32, copy=False)
    labels, class_of = task.instance_labels(probs, element_size=es)
    points = classes = None
    if task.name == "detection":
        points, classes = postprocess.detection_points(probs, min_size=task.min_size)
        points = points.reshape(-1, len(shape))
    return Prediction(
        probabilities=probs,
        labels=labels,
        class_of=np.asarray(class_of),
        points=points,
        classes=classes,
        task=task.name,
        card=card,
        element_size=es,
        precision=applied,
        device=str(dev),
        tiles=total,
    )
