"""Reading a model file: :func:`load_network` returns the network and its :class:`~unet.models.card.ModelCard`
of a training checkpoint (``.ckpt``, read by :mod:`unet.checkpoint`) or of an exported TorchScript / ONNX
model (:func:`unet.export.load_exported`; the card travels inside the file), so predict, the napari plugin
and the benchmarks open every model the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from unet.checkpoint import CheckpointError, load_project_checkpoint
from unet.models.card import ModelCard, network_from_checkpoint

#: file endings of exported models (``python -m unet.export``) that are read as such instead of a checkpoint
EXPORTED_SUFFIXES = (".onnx", ".pt", ".ts", ".torchscript", ".jit")


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported model (by its ending, :data:`EXPORTED_SUFFIXES`)."""
    return Path(path).suffix.lower() in EXPORTED_SUFFIXES


def load_network(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, ModelCard]:
    """``(net, card)`` of a model file, the network in eval mode on the CPU.

    A file ending in one of :data:`EXPORTED_SUFFIXES` is an exported graph
    (:class:`unet.export.ExportedUNet`, which predicts like a ``UNet``); any other file a checkpoint of this
    project, read safely with its tensors on ``map_location``
    (:func:`unet.checkpoint.load_project_checkpoint`), whose weights are loaded into the ``UNet`` of its card
    (:func:`unet.models.card.network_from_checkpoint`).

    Raises:
        unet.checkpoint.CheckpointError: a missing, unreadable or foreign checkpoint, or weights that do not
            fit the network of its card (the message names the file).
        unet.export.ExportError: a bad exported file (:func:`unet.export.load_exported`).
    """
    if is_exported(path):
        from unet.exported import load_exported  # onnx/onnxruntime only for an ONNX file

        net, card, _ = load_exported(path)
        return net, card
    ckpt = load_project_checkpoint(path, map_location)
    try:
        return network_from_checkpoint(ckpt, path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
