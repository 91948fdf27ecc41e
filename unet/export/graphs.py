"""TorchScript and ONNX graphs of a checkpoint's network, with the model card inside each file."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unet.exported import CARD_FILE, GRAPH_FILE, GRAPH_KEY, SAME_SIZE, ExportError, import_onnx, quiet_export
from unet.models import shapes
from unet.models.card import CARD_KEY, ModelCard
from unet.models.unet import UNet


@dataclass(frozen=True)
class SameSizeGeometry:
    """How the same-size graph of a bioimage.io package wraps the valid-convolution network, per axis.

    ``graph(x) = net(reflect_pad(x, before, after))[..., :-crop]``: the input is mirrored by the network's
    halo before it (so the pooling grid starts one halo before the image, as in predict.py's overlap-tile,
    :func:`unet.tiling.plan_tiles`) and by ``halo + crop`` after it, which makes every input size that is a
    multiple of the pooling period a valid network input; the ``crop`` extra output pixels are cut off.
    The output has the size of the input and equals predict.py's probabilities (as logits) for that input.

    Attributes:
        halo: the network's halo (valid-convolution margin per side).
        period: the pooling period; the graph accepts sizes ``min_size + n * period``.
        before, after, crop: the mirror padding and the output crop of the graph.
        declared_halo: the halo the package declares on its output axes: ``halo`` rounded up to the pooling
            period, so that blocks whose inner parts start at multiples of the period keep predict.py's
            pooling phase when a consumer pads a block by the declared halo (bioimageio.core does).
        min_size: the smallest input size declared: ``2 * declared_halo + period`` (bioimage.io needs an
            output larger than twice the halo).
    """

    halo: tuple[int, ...]
    period: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    crop: tuple[int, ...]
    declared_halo: tuple[int, ...]
    min_size: tuple[int, ...]

    def check(self, shape: Sequence[int]) -> None:
        """ValueError unless ``shape`` is ``min_size + n * period`` on every axis."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != len(self.period) or any(
            s < m or s % p for s, m, p in zip(shape, self.min_size, self.period)
        ):
            raise ValueError(
                f"input shape {shape} is not valid for the same-size graph: sizes min {self.min_size} + "
                f"n * {self.period} (multiples of the pooling period) per axis"
            )


def same_size_geometry(levels: Sequence[shapes.LevelSpec]) -> SameSizeGeometry:
    """The :class:`SameSizeGeometry` of a network's levels."""
    halo, period = shapes.halo(levels), shapes.pooling_period(levels)
    out_min = shapes.output_shape(levels, shapes.min_input_shape(levels))
    crop = tuple(o % p for o, p in zip(out_min, period))
    declared = tuple(-(-h // p) * p for h, p in zip(halo, period))
    min_size = tuple(
        max(2 * d + p, -(-(o - c) // p) * p) for d, p, o, c in zip(declared, period, out_min, crop)
    )
    after = tuple(h + c for h, c in zip(halo, crop))
    return SameSizeGeometry(halo, period, halo, after, crop, declared, min_size)


class SameSizeUNet(nn.Module):
    """A valid-convolution network as a same-size model (:class:`SameSizeGeometry`): (N, C, *S) ->
    (N, K, *S) logits for ``S`` a multiple of the pooling period, equal to predict.py's overlap-tile result
    on the whole input (mirrored borders, the same pooling phase)."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net
        g = same_size_geometry(net.levels)
        self.pad = tuple(v for b, a in zip(reversed(g.before), reversed(g.after)) for v in (b, a))
        self.crop = g.crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(F.pad(x, self.pad, mode="reflect"))
        return y[(slice(None), slice(None), *(slice(0, -c) if c else slice(None) for c in self.crop))]


def default_trace_shape(levels: Sequence[shapes.LevelSpec]) -> tuple[int, ...]:
    """The smallest valid input shape grown by one pooling period per axis (valid by construction)."""
    return tuple(m + p for m, p in zip(shapes.min_input_shape(levels), shapes.pooling_period(levels)))


def example_input(net: UNet, trace_shape: Sequence[int] | None, out: Path) -> torch.Tensor:
    """The (seeded, random) input the graphs are traced with; ExportError for an invalid ``trace_shape``."""
    shape = default_trace_shape(net.levels) if trace_shape is None else tuple(int(s) for s in trace_shape)
    return _seeded_input(net, shape, net.output_shape, out)


def same_size_example(net: UNet, trace_shape: Sequence[int] | None, out: Path) -> torch.Tensor:
    """The (seeded, random) input the same-size graphs of a bioimage.io package are traced with: the smallest
    same-size input grown by one pooling period, or ``trace_shape`` (ExportError unless a multiple of the
    pooling period of at least the minimum, :meth:`SameSizeGeometry.check`)."""
    g = same_size_geometry(net.levels)
    if trace_shape is None:
        shape = tuple(m + p for m, p in zip(g.min_size, g.period))
    else:
        shape = tuple(int(s) for s in trace_shape)
    return _seeded_input(net, shape, g.check, out)


def _seeded_input(net: UNet, shape: tuple[int, ...], check: Any, out: Path) -> torch.Tensor:
    """A seeded random (1, C, *shape) input after ``check(shape)``; its ValueError becomes an ExportError."""
    try:
        check(shape)
    except ValueError as e:
        raise ExportError(f"{out}: trace_shape: {e}") from None
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, net.in_channels, *shape), generator=generator)


def _trace(net: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with quiet_export(), torch.no_grad():
        return torch.jit.trace(net, example, check_trace=False)


def _card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), sort_keys=True)


def _graph(net: UNet, same_size: bool) -> nn.Module:
    return SameSizeUNet(net).eval() if same_size else net


def write_torchscript(
    net: UNet, card: ModelCard, example: torch.Tensor, path: Path, same_size: bool = False
) -> None:
    """TorchScript of ``net`` (valid graph) or of :class:`SameSizeUNet` (``same_size``; the example input
    must then be a valid same-size shape), the card and the graph kind inside."""
    traced = _trace(_graph(net, same_size), example)
    extra = {CARD_FILE: _card_json(card)}
    if same_size:
        extra[GRAPH_FILE] = SAME_SIZE
    with quiet_export():
        torch.jit.save(traced, str(path), _extra_files=extra)


def onnx_bytes(
    net: UNet, card: ModelCard, example: torch.Tensor, opset: int, same_size: bool = False
) -> bytes:
    """ONNX of ``net`` (valid graph) or of :class:`SameSizeUNet` (``same_size``), card and graph kind in its
    metadata."""
    onnx, _ = import_onnx(None)
    names = ("z", "y", "x")[-net.spatial_dims :]
    dynamic = {
        "input": {0: "batch", **{2 + i: f"in_{a}" for i, a in enumerate(names)}},
        "output": {0: "batch", **{2 + i: f"{'in' if same_size else 'out'}_{a}" for i, a in enumerate(names)}},
    }
    buffer = io.BytesIO()
    with quiet_export(), torch.no_grad():
        torch.onnx.export(
            _graph(net, same_size),
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
    if same_size:
        entry = model.metadata_props.add()
        entry.key, entry.value = GRAPH_KEY, SAME_SIZE
        model.doc_string = (
            "Freiburg U-Net (freiburg-unet), same-size graph: normalised (N, C, *S) input, S a multiple of "
            "the pooling period -> (N, K, *S) logits (mirror padding inside)"
        )
    else:
        model.doc_string = (
            "Freiburg U-Net (freiburg-unet): normalised (N, C, *valid) input -> (N, K, *out) logits"
        )
    return model.SerializeToString()


def write_onnx(net: UNet, card: ModelCard, example: torch.Tensor, path: Path, opset: int) -> None:
    data = onnx_bytes(net, card, example, opset)
    with open(path, "wb") as f:
        f.write(data)
