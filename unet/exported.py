"""Exported model files (TorchScript, ONNX): the format that ``python -m unet.export`` writes and
:func:`unet.loading.load_network` reads back, in one place below both.

``export`` writes a graph with the model card inside (TorchScript: the extra file :data:`CARD_FILE`; ONNX:
the metadata key :data:`unet.models.card.CARD_KEY`) and which graph it is (:data:`GRAPH_FILE` /
:data:`GRAPH_KEY`: :data:`SAME_SIZE` for a bioimage.io package's mirror-padding graph);
:func:`load_exported` reads one back as an :class:`ExportedUNet` that predicts like a ``UNet``. Here, not in
``unet.export``, so that reading a model (predict, napari, the benchmarks) never imports the exporter, which
itself predicts through ``unet.predict`` (its reference prediction): no import circle.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unet.models import shapes
from unet.models.card import CARD_KEY, ModelCard
from unet.models.unet import UNet
from unet.tasks import task_from_config

CARD_FILE = f"{CARD_KEY}.json"  # TorchScript extra file; CARD_KEY is the ONNX metadata_props key
GRAPH_FILE = "unet_graph.txt"  # TorchScript extra file: "same_size" for a bioimage.io package's graph
GRAPH_KEY = "unet_graph"  # ONNX metadata_props key, the same
SAME_SIZE = "same_size"
INSTALL_HINT = "pip install -e '.[export]'"


class ExportError(ValueError):
    """An export that cannot be done (bad option, existing output, missing package), or an exported file
    that cannot be read; names the path."""


def import_onnx(path: Path | None, runtime: bool = False) -> tuple[Any, Any]:
    """``(onnx, onnxruntime or None)``; ExportError naming ``path`` with the install hint when missing."""
    try:
        import onnx

        ort = None
        if runtime:
            import onnxruntime as ort
    except ImportError as e:
        raise ExportError(
            f"{path}: ONNX needs the onnx and onnxruntime packages ({e}); {INSTALL_HINT}"
        ) from None
    return onnx, ort


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the tracer's shape-check warnings (the checks run at trace time only) and deprecations."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


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
