"""Reading an exported TorchScript or ONNX file back as a module that predicts like a ``UNet``."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unet.export.common import ExportError, import_onnx
from unet.export.graphs import CARD_FILE, CARD_KEY, GRAPH_FILE, GRAPH_KEY, SAME_SIZE, quiet_export
from unet.models import shapes
from unet.models.card import ModelCard
from unet.models.unet import UNet
from unet.tasks import task_from_config


class ExportedUNet(nn.Module):
    """An exported graph (TorchScript or ONNX) behind the interface of :class:`unet.models.unet.UNet`.

    Exposes what :func:`unet.tiling.predict_tiled` and the predict path use: ``levels``, ``halo``,
    ``pooling_period``, ``spatial_dims``, ``in_channels``, ``num_classes``, ``config``, ``output_shape``,
    ``valid_input_shape``, ``forward(x) -> logits``, ``eval``/``to``/``parameters``. The geometry is
    rebuilt from the card's network config (on the meta device: no weights are allocated).

    TorchScript runs on the device the module is moved to; ONNX runs on the CPU through onnxruntime
    (inputs on another device are copied to the CPU and the logits back).
    """

    def __init__(self, graph: Any, card: ModelCard, kind: str, source: str = "exported model") -> None:
        super().__init__()
        self.source = source
        with torch.device("meta"):
            geometry = UNet(**card.net)
        self.config = dict(card.net)
        self.levels = geometry.levels
        self.in_channels = geometry.in_channels
        self.num_classes = geometry.num_classes
        self.spatial_dims = geometry.spatial_dims
        self.depth = geometry.depth
        self.kind = kind
        self.card = card
        # a parameter for device detection (``next(net.parameters()).device``); the ONNX graph has none
        self.device_probe = nn.Parameter(torch.zeros(1), requires_grad=False)
        if kind == "torchscript":
            self.graph = graph
            self._session = None
        else:
            self._session = graph

    @property
    def halo(self) -> tuple[int, ...]:
        return shapes.halo(self.levels)

    @property
    def pooling_period(self) -> tuple[int, ...]:
        return shapes.pooling_period(self.levels)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return shapes.output_shape(self.levels, input_shape)

    def valid_input_shape(self, min_shape: Sequence[int]) -> tuple[int, ...]:
        return shapes.valid_input_shape(self.levels, min_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *valid spatial) -> (N, K, *output_shape(spatial)) logits."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.source}: the model card expects input (N, C={self.in_channels} channels, "
                f"{self.spatial_dims} spatial dims), got {tuple(x.shape)}"
            )
        self.output_shape(x.shape[2:])  # raises with the nearest valid shapes
        if self.kind == "torchscript":
            return self.graph(x)
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self._session.run(["output"], {"input": array})
        return torch.from_numpy(y).to(x.device)


def _check_onnx_input(model: Any, card: ModelCard, path: Path) -> None:
    """ExportError naming ``path`` when the ONNX graph's input rank or channel count is not the card's."""
    nd, channels = int(card.net.get("spatial_dims", 2)), int(card.net.get("in_channels", 1))
    (inp,) = [i for i in model.graph.input if i.name == "input"] or model.graph.input[:1]
    dims = inp.type.tensor_type.shape.dim
    rank_ok = len(dims) == nd + 2
    channel_ok = rank_ok and (not dims[1].HasField("dim_value") or dims[1].dim_value == channels)
    if not (rank_ok and channel_ok):
        shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
        raise ExportError(
            f"{path}: the ONNX graph's input {shape} does not match its model card ({channels} channel(s), "
            f"{nd} spatial dimensions)"
        )


def load_exported(path: str | os.PathLike) -> tuple[ExportedUNet, ModelCard, Any]:
    """(module, card, task) of a file written by :func:`export_model` (TorchScript or ONNX).

    The format is recognised from the content (a TorchScript file is a zip archive). The module is in eval
    mode on the CPU; see :class:`ExportedUNet`.

    Raises:
        ExportError: missing file, a file that is neither format or carries no model card, the same-size
            graph of a bioimage.io package (it mirrors inside; predict.py tiles the valid graph), or an ONNX
            graph whose input does not match its card (channels, dimensionality).
    """
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"{p}: no such exported model file")
    if zipfile.is_zipfile(p):
        extra = {CARD_FILE: "", GRAPH_FILE: ""}
        try:
            with quiet_export():
                graph = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError) as e:
            raise ExportError(f"{p}: not a TorchScript model ({e})") from None
        if not extra[CARD_FILE]:
            raise ExportError(f"{p}: TorchScript file without a model card ({CARD_FILE}); not exported here")
        card_json, kind, graph_kind = extra[CARD_FILE], "torchscript", extra[GRAPH_FILE]
        if isinstance(graph_kind, bytes):
            graph_kind = graph_kind.decode()
        graph.eval()
    else:
        onnx, ort = import_onnx(p, runtime=True)
        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as e:
            raise ExportError(
                f"{p}: neither a TorchScript nor an ONNX model ({type(e).__name__}: {e})"
            ) from None
        props = {m.key: m.value for m in model.metadata_props}
        if CARD_KEY not in props:
            raise ExportError(
                f"{p}: ONNX file without a model card (metadata '{CARD_KEY}'); not exported here"
            )
        card_json, kind, graph_kind = props[CARD_KEY], "onnx", props.get(GRAPH_KEY, "")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        graph = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    if graph_kind == SAME_SIZE:
        raise ExportError(
            f"{p}: the same-size graph of a bioimage.io package (mirror padding inside); predict.py tiles "
            "the valid-convolution graph: export the checkpoint with format=onnx or format=torchscript"
        )
    card = ModelCard.from_dict(json.loads(card_json))
    if kind == "onnx":
        _check_onnx_input(model, card, p)
    module = ExportedUNet(graph, card, kind, source=str(p)).eval()
    return module, card, task_from_config(card.task)
