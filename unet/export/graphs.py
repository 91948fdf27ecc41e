"""TorchScript and ONNX graphs of a checkpoint's network, with the model card inside each file."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from unet.export.common import ExportError, import_onnx
from unet.models import shapes
from unet.models.unet import UNet
from unet.predict.image import ModelCard

CARD_FILE = "unet_card.json"  # TorchScript extra file
CARD_KEY = "unet_card"  # ONNX metadata_props key


def checkpoint_network(ckpt: dict, ckpt_path: Any) -> tuple[UNet, ModelCard]:
    """The eval-mode float32 network of a loaded checkpoint and its card."""
    card = ModelCard.from_dict(ckpt["unet_card"])
    net = UNet(**card.net)
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ExportError(f"{ckpt_path}: weights do not fit the network of its model card ({e})") from None
    return net.eval().float(), card


def default_trace_shape(levels: Sequence[shapes.LevelSpec]) -> tuple[int, ...]:
    """The smallest valid input shape grown by one pooling period per axis (valid by construction)."""
    return tuple(m + p for m, p in zip(shapes.min_input_shape(levels), shapes.pooling_period(levels)))


def example_input(net: UNet, trace_shape: Sequence[int] | None, out: Path) -> torch.Tensor:
    """The (seeded, random) input the graphs are traced with; ExportError for an invalid ``trace_shape``."""
    shape = default_trace_shape(net.levels) if trace_shape is None else tuple(int(s) for s in trace_shape)
    try:
        net.output_shape(shape)
    except ValueError as e:
        raise ExportError(f"{out}: trace_shape: {e}") from None
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, net.in_channels, *shape), generator=generator)


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the tracer's shape-check warnings (the checks run at trace time only) and deprecations."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def _trace(net: UNet, example: torch.Tensor) -> torch.jit.ScriptModule:
    with quiet_export(), torch.no_grad():
        return torch.jit.trace(net, example, check_trace=False)


def _card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), sort_keys=True)


def write_torchscript(net: UNet, card: ModelCard, example: torch.Tensor, path: Path) -> None:
    traced = _trace(net, example)
    with quiet_export():
        torch.jit.save(traced, str(path), _extra_files={CARD_FILE: _card_json(card)})


def onnx_bytes(net: UNet, card: ModelCard, example: torch.Tensor, opset: int) -> bytes:
    onnx, _ = import_onnx(None)
    names = ("z", "y", "x")[-net.spatial_dims :]
    dynamic = {
        "input": {0: "batch", **{2 + i: f"in_{a}" for i, a in enumerate(names)}},
        "output": {0: "batch", **{2 + i: f"out_{a}" for i, a in enumerate(names)}},
    }
    buffer = io.BytesIO()
    with quiet_export(), torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=dynamic,
            opset_version=opset,
        )
    model = onnx.load_from_string(buffer.getvalue())
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, _card_json(card)
    model.doc_string = (
        "Freiburg U-Net (freiburg-unet): normalised (N, C, *valid) input -> (N, K, *out) logits"
    )
    return model.SerializeToString()


def write_onnx(net: UNet, card: ModelCard, example: torch.Tensor, path: Path, opset: int) -> None:
    data = onnx_bytes(net, card, example, opset)
    with open(path, "wb") as f:
        f.write(data)
