"""The model card: everything needed to apply a network, stored with it (checkpoint entry :data:`CARD_KEY`,
and inside every exported TorchScript/ONNX file); the network a card and a state dict make, and the
``UNet`` geometry of any network that applies a card (a ``UNet`` or an exported graph)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unet.models.unet import UNet

#: the checkpoint entry (and the exported files' metadata key) that holds :meth:`ModelCard.to_dict`
CARD_KEY = "unet_card"


@dataclass
class ModelCard:
    """Everything needed to apply a model: stored in every checkpoint under :data:`CARD_KEY`.

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


def network_from_checkpoint(ckpt: Mapping[str, Any], source: Any = "checkpoint") -> tuple[UNet, ModelCard]:
    """The eval-mode float32 network of a loaded checkpoint of this project (its card under
    :data:`CARD_KEY`, the network's weights under ``state_dict["net.*"]``) and its card.

    Raises:
        ValueError: naming ``source`` when the weights do not fit the network of the card.
    """
    card = ModelCard.from_dict(ckpt[CARD_KEY])
    net = UNet(**card.net)
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit the network of its model card ({e})") from None
    return net.eval().float(), card


def geometry_of(net: Any, card: ModelCard) -> UNet:
    """A ``UNet`` with the architecture of ``net`` (for the memory estimate of a tile,
    :func:`unet.memory.tile_shape_for_budget`): ``net`` itself when it is one, else (an exported graph,
    :class:`unet.export.ExportedUNet`) a new CPU ``UNet`` built from the card, whose weights never run in a
    prediction (a measured estimate on CUDA runs it once per candidate tile)."""
    return net if isinstance(net, UNet) else UNet(**card.net)
