"""Export a trained model: TorchScript, ONNX or a bioimage.io model package (spec 0.5).

``python -m unet.export ckpt_path=<ckpt> format=bioimageio|onnx|torchscript output=<path>`` (config:
``conf/export.yaml``); library: :func:`export_model`, :func:`load_exported`.

* Every exported graph maps a valid ``(N, C, *valid_in)`` input, already normalised as the model card says
  (per-channel min-max to [0, 1], Falk M4), to ``(N, K, *out)`` class scores (LOGITS), exactly as
  :meth:`unet.models.unet.UNet.forward`; ``out = valid_in - 2 * halo`` per axis. Batch and spatial sizes
  are dynamic: any valid shape works, not only the traced one.
* TorchScript: ``torch.jit.trace`` of the eval-mode network on the smallest valid shape grown by one pooling
  period. ONNX: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) with
  dynamic batch and spatial axes: it needs only the ``onnx`` package and works offline; the dynamo exporter
  needs ``onnxscript`` and would have to be told the valid-shape constraints of every axis.
* The model card (:class:`unet.inference.ModelCard` as JSON) travels inside each file: TorchScript
  ``_extra_files["unet_card.json"]``, ONNX ``metadata_props["unet_card"]``. :func:`load_exported` reads it
  back and returns a module that :func:`unet.tiling.predict_tiled` and predict accept like a ``UNet``.
* bioimage.io (``format=bioimageio``; ``output`` ending in ``.zip``: a zip package, otherwise a folder):
  the description is built with ``bioimageio.spec.model.v0_5.ModelDescr``; weights in torchscript, onnx
  and pytorch_state_dict (a self-contained copy of the architecture that needs only torch), test tensors
  made by this project's prediction path, a cover image and a README. The package is tested with
  ``bioimageio.core.test_model`` for every weight format before it is moved into place.

Outputs are written under a temporary name beside ``output`` and renamed: never half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import tifffile
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unet.checkpoint import CheckpointError, load_project_checkpoint
from unet.data.preprocess import normalize
from unet.inference import ModelCard, softmax
from unet.models import shapes
from unet.models.unet import UNet
from unet.tasks import task_from_config

log = logging.getLogger(__name__)

FORMATS = ("bioimageio", "onnx", "torchscript")
BIOIMAGEIO_WEIGHTS = ("pytorch_state_dict", "torchscript", "onnx")
CARD_FILE = "unet_card.json"  # TorchScript extra file
CARD_KEY = "unet_card"  # ONNX metadata_props key
ONNX_OPSET = 17
INSTALL_HINT = "pip install -e '.[export]'"

CITATIONS = (
    (
        "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation. MICCAI 2015, LNCS 9351, 234-241.",
        "10.1007/978-3-319-24574-4_28",
    ),
    (
        "Falk T., Mai D., Bensch R., et al. U-Net: deep learning for cell counting, detection, and "
        "morphometry. Nature Methods 16, 67-70 (2019).",
        "10.1038/s41592-018-0261-2",
    ),
)


class ExportError(ValueError):
    """An export that cannot be done (bad option, existing output, missing package); names the path."""


# ------------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------------


def export_model(
    ckpt_path: str | os.PathLike,
    format: str,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    trace_shape: Sequence[int] | None = None,
    opset: int = ONNX_OPSET,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[dict[str, Any]] | None = None,
    license: str = "MIT",
    tags: Sequence[str] = (),
    weight_formats: Sequence[str] = BIOIMAGEIO_WEIGHTS,
    test_shape: Sequence[int] | None = None,
    parent_id: str | None = None,
    training_data_id: str | None = None,
    validate: bool = True,
) -> Path:
    """Export the network of a checkpoint written by training.

    Args:
        ckpt_path: checkpoint of this project (``unet_card`` + state dict).
        format: "torchscript", "onnx" or "bioimageio".
        output: file to write (torchscript, onnx); for bioimageio a ``.zip`` file or a folder.
        overwrite: replace an existing ``output``.
        trace_shape: spatial input shape the graph is traced with (valid; default: the smallest valid
            shape grown by one pooling period). The exported graph accepts every valid shape.
        opset: ONNX opset version.
        name, description, authors, license, tags: bioimage.io metadata (defaults are derived from the
            card); ``authors`` is a list of ``{name, affiliation, email, github_user, orcid}`` dicts.
        weight_formats: bioimage.io weight formats, a subset of :data:`BIOIMAGEIO_WEIGHTS`.
        test_shape: spatial shape of the bioimage.io test image (valid; default: the smallest valid shape
            whose output covers 16 px per axis).
        parent_id: bioimage.io id of the model this one was finetuned from (``parent`` in the package).
        training_data_id: bioimage.io id of the training data set (``training_data``).
        validate: run ``bioimageio.core.test_model`` on the package before it is moved to ``output``.

    Returns:
        The path written.

    Raises:
        ExportError: unknown format, ``output`` exists (and not ``overwrite``), invalid shapes, a
            missing optional package, or a package that fails the bioimage.io test.
        unet.checkpoint.CheckpointError: missing or unreadable checkpoint (the message names it).
    """
    if format not in FORMATS:
        raise ExportError(f"{output}: unknown export format {format!r}; choose one of {FORMATS}")
    if not Path(ckpt_path).is_file():
        raise CheckpointError(f"{ckpt_path}: no such checkpoint file")
    out = Path(output)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ExportError(f"{out}: output exists; pass overwrite=true to replace it")
    if format == "bioimageio":
        bad = [w for w in weight_formats if w not in BIOIMAGEIO_WEIGHTS]
        if bad or not weight_formats:
            raise ExportError(
                f"{out}: weight_formats must be a non-empty subset of {BIOIMAGEIO_WEIGHTS}, got "
                f"{list(weight_formats)}"
            )
    _require(format, out, weight_formats)
    ckpt = load_project_checkpoint(ckpt_path)
    net, card = _network(ckpt, ckpt_path)
    example = _example_input(net, trace_shape, out)
    if format == "torchscript":
        with _atomic_file(out) as tmp:
            _write_torchscript(net, card, example, tmp)
    elif format == "onnx":
        with _atomic_file(out) as tmp:
            _write_onnx(net, card, example, tmp, opset)
    else:
        _write_bioimageio(
            net,
            card,
            ckpt,
            Path(ckpt_path),
            example,
            out,
            opset=opset,
            name=name,
            description=description,
            authors=authors,
            license=license,
            tags=tags,
            weight_formats=weight_formats,
            test_shape=test_shape,
            parent_id=parent_id,
            training_data_id=training_data_id,
            validate=validate,
        )
    log.info("exported %s (%s) to %s", ckpt_path, format, out)
    return out


class ExportedUNet(nn.Module):
    """An exported graph (TorchScript or ONNX) behind the interface of :class:`unet.models.unet.UNet`.

    Exposes what :func:`unet.tiling.predict_tiled` and the predict path use: ``levels``, ``halo``,
    ``pooling_period``, ``spatial_dims``, ``in_channels``, ``num_classes``, ``config``, ``output_shape``,
    ``valid_input_shape``, ``forward(x) -> logits``, ``eval``/``to``/``parameters``. The geometry is
    rebuilt from the card's network config (on the meta device: no weights are allocated).

    TorchScript runs on the device the module is moved to; ONNX runs on the CPU through onnxruntime
    (inputs on another device are copied to the CPU and the logits back).
    """

    def __init__(self, graph: Any, card: ModelCard, kind: str) -> None:
        super().__init__()
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
                f"expected input (N, C={self.in_channels} channels, {self.spatial_dims} spatial dims), got "
                f"{tuple(x.shape)}"
            )
        self.output_shape(x.shape[2:])  # raises with the nearest valid shapes
        if self.kind == "torchscript":
            return self.graph(x)
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self._session.run(["output"], {"input": array})
        return torch.from_numpy(y).to(x.device)


def load_exported(path: str | os.PathLike) -> tuple[ExportedUNet, ModelCard, Any]:
    """(module, card, task) of a file written by :func:`export_model` (TorchScript or ONNX).

    The format is recognised from the content (a TorchScript file is a zip archive). The module is in eval
    mode on the CPU; see :class:`ExportedUNet`.

    Raises:
        ExportError: missing file, or a file that is neither format or carries no model card.
    """
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"{p}: no such exported model file")
    if zipfile.is_zipfile(p):
        extra = {CARD_FILE: ""}
        try:
            with _quiet_export():
                graph = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError) as e:
            raise ExportError(f"{p}: not a TorchScript model ({e})") from None
        if not extra[CARD_FILE]:
            raise ExportError(f"{p}: TorchScript file without a model card ({CARD_FILE}); not exported here")
        card_json, kind = extra[CARD_FILE], "torchscript"
        graph.eval()
    else:
        onnx, ort = _import_onnx(p, runtime=True)
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
        card_json, kind = props[CARD_KEY], "onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        graph = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    card = ModelCard.from_dict(json.loads(card_json))
    module = ExportedUNet(graph, card, kind).eval()
    return module, card, task_from_config(card.task)


# ------------------------------------------------------------------------------------------------------
# TorchScript / ONNX
# ------------------------------------------------------------------------------------------------------


def _network(ckpt: dict, ckpt_path: Any) -> tuple[UNet, ModelCard]:
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


def _example_input(net: UNet, trace_shape: Sequence[int] | None, out: Path) -> torch.Tensor:
    shape = default_trace_shape(net.levels) if trace_shape is None else tuple(int(s) for s in trace_shape)
    try:
        net.output_shape(shape)
    except ValueError as e:
        raise ExportError(f"{out}: trace_shape: {e}") from None
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, net.in_channels, *shape), generator=generator)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the tracer's shape-check warnings (the checks run at trace time only) and deprecations."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def _trace(net: UNet, example: torch.Tensor) -> torch.jit.ScriptModule:
    with _quiet_export(), torch.no_grad():
        return torch.jit.trace(net, example, check_trace=False)


def _card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), sort_keys=True)


def _write_torchscript(net: UNet, card: ModelCard, example: torch.Tensor, path: Path) -> None:
    traced = _trace(net, example)
    with _quiet_export():
        torch.jit.save(traced, str(path), _extra_files={CARD_FILE: _card_json(card)})


def _onnx_bytes(net: UNet, card: ModelCard, example: torch.Tensor, opset: int) -> bytes:
    onnx, _ = _import_onnx(None)
    names = ("z", "y", "x")[-net.spatial_dims :]
    dynamic = {
        "input": {0: "batch", **{2 + i: f"in_{a}" for i, a in enumerate(names)}},
        "output": {0: "batch", **{2 + i: f"out_{a}" for i, a in enumerate(names)}},
    }
    buffer = io.BytesIO()
    with _quiet_export(), torch.no_grad():
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


def _write_onnx(net: UNet, card: ModelCard, example: torch.Tensor, path: Path, opset: int) -> None:
    data = _onnx_bytes(net, card, example, opset)
    with open(path, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------------------------------
# atomic output
# ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _move_into_place(src: Path, dst: Path) -> None:
    """Rename the finished file or folder ``src`` to ``dst``; an existing ``dst`` is moved aside first and
    removed after the rename (restored if the rename fails)."""
    old = None
    if dst.exists() or dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------
# optional packages
# ------------------------------------------------------------------------------------------------------


def _require(format: str, out: Path, weight_formats: Sequence[str]) -> None:
    if format == "onnx" or (format == "bioimageio" and "onnx" in weight_formats):
        _import_onnx(out)
    if format == "bioimageio":
        try:
            import bioimageio.core
            import bioimageio.spec  # noqa: F401
        except ImportError as e:
            raise ExportError(
                f"{out}: format=bioimageio needs bioimageio.spec and bioimageio.core ({e}); {INSTALL_HINT}"
            ) from None


def _import_onnx(path: Path | None, runtime: bool = False) -> tuple[Any, Any]:
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


# ------------------------------------------------------------------------------------------------------
# bioimage.io package
# ------------------------------------------------------------------------------------------------------

# A self-contained copy of unet.models.unet.UNet (torch only): the architecture of the pytorch_state_dict
# weights, so that the package runs without this project installed. Same module tree and state-dict keys;
# tests/test_export.py loads the real network's weights into it strictly and compares the outputs.
ARCHITECTURE_SOURCE = '''"""Freiburg U-Net (Ronneberger et al. 2015; Falk et al. 2019), needs only torch.

Valid 3x3(x3) convolutions, leaky ReLU, max-pooling, up-convolutions, crop-and-concatenate, 1x1 head.

Self-contained copy of unet.models.unet.UNet of freiburg-unet (same state-dict keys) for the
pytorch_state_dict weights of this bioimage.io package. Input (N, C, *valid) normalised to [0, 1] per
channel; output (N, K, *(valid - 2 * halo)) class scores (logits).
"""

import math

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_UPCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _norm(kind, nd, channels):
    if kind is None or kind == "none":
        return None
    if kind == "batch":
        return _BATCHNORM[nd](channels)
    if kind == "instance":
        return _INSTANCENORM[nd](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}")


def _levels(nd, depth, element_size):
    """(kernel, pool) per level; anisotropic voxels: 2D levels until roughly isotropic (Falk M1.1)."""
    if element_size is None:
        return [((3,) * nd, (2,) * nd)] * (depth + 1)
    size = [float(s) for s in element_size]
    levels = []
    for _ in range(depth + 1):
        finest = min(size)
        active = [s <= math.sqrt(2.0) * finest * (1 + 1e-9) for s in size]
        levels.append((tuple(3 if a else 1 for a in active), tuple(2 if a else 1 for a in active)))
        size = [s * 2 if a else s for s, a in zip(size, active)]
    return levels


def _block(nd, c_in, c_out, kernel, negative_slope, norm):
    layers = []
    for c in (c_in, c_out):
        layers.append(_CONV[nd](c, c_out, tuple(kernel), padding=0))
        n = _norm(norm, nd, c_out)
        if n is not None:
            layers.append(n)
        layers.append(nn.LeakyReLU(negative_slope, inplace=True))
    return nn.Sequential(*layers)


def _center_crop(x, shape):
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], shape):
        lo = (size - target) // 2
        slices.append(slice(lo, lo + target))
    return x[tuple(slices)]


class UNet(nn.Module):
    def __init__(
        self,
        in_channels=1,
        num_classes=2,
        spatial_dims=2,
        depth=4,
        base_features=64,
        max_features=None,
        negative_slope=0.1,
        dropout=0.0,
        norm=None,
        element_size=None,
        last_up_features=None,
    ):
        super().__init__()
        nd = spatial_dims
        self.depth = depth
        levels = _levels(nd, depth, element_size)
        feats = [base_features * 2**i for i in range(depth + 1)]
        if max_features is not None:
            feats = [min(f, max_features) for f in feats]
        self.encoder = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = in_channels
        for i, (kernel, pool) in enumerate(levels):
            self.encoder.append(_block(nd, c, feats[i], kernel, negative_slope, norm))
            c = feats[i]
            if i < depth:
                self.pools.append(_POOL[nd](pool, stride=pool))
        self.dropout = _DROPOUT[nd](dropout) if dropout > 0 else nn.Identity()
        self.upconvs = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            kernel, pool = levels[i]
            up_c = feats[i + 1] // 2
            if i == 0 and last_up_features is not None:
                up_c = last_up_features
            self.upconvs.append(_UPCONV[nd](c, up_c, pool, stride=pool))
            self.decoder.append(_block(nd, up_c + feats[i], feats[i], kernel, negative_slope, norm))
            c = feats[i]
        self.head = _CONV[nd](c, num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = self.pools[i](x)
        x = self.dropout(x)
        for up, block in zip(self.upconvs, self.decoder):
            x = up(x)
            x = torch.cat([_center_crop(skips.pop(), x.shape[2:]), x], dim=1)
            x = block(x)
        return self.head(x)
'''


def synthetic_image(shape: Sequence[int], channels: int, seed: int = 0) -> np.ndarray:
    """A raw (C, *shape) float32 test image in [0, 255]: Gaussian blobs ("cells") on a ramp, plus noise."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    out = np.empty((channels, *shape), dtype=np.float32)
    radius = max(2.0, min(shape[-2:]) / 8)
    n_blobs = max(3, int(np.prod([s / (2 * radius) for s in shape[-2:]])))
    for c in range(channels):
        img = 0.2 * grid[-1] / max(shape[-1] - 1, 1)
        for _ in range(n_blobs):
            centre = [rng.uniform(0, s) for s in shape]
            r2 = sum((g - m) ** 2 for g, m in zip(grid, centre))
            img = img + np.exp(-r2 / (2 * radius**2))
        img = img + 0.05 * rng.standard_normal(shape)
        img = (img - img.min()) / (img.max() - img.min()) * 255.0
        out[c] = img.astype(np.float32)
    return out


def reference_prediction(net: UNet, image: np.ndarray, card: ModelCard) -> np.ndarray:
    """(1, K, *out) class probabilities for a raw (C, *valid) image by this project's prediction path.

    The path of :func:`unet.inference.predict_image` without the overlap-tile mirroring (the bioimage.io
    runtime applies the network to the valid input as a whole): :func:`unet.data.preprocess.normalize`
    (the card's normalisation), the network's logits, :func:`unet.inference.softmax` over the classes.
    """
    x = torch.from_numpy(normalize(image, card.normalization))[None]
    with torch.inference_mode():
        logits = net(x)[0].numpy().astype(np.float64)
    return softmax(logits).astype(np.float32)[None]


def _axis_ids(nd: int) -> tuple[str, ...]:
    return ("z", "y", "x")[-nd:] if nd <= 3 else tuple(f"s{i}" for i in range(nd))


def _class_names(card: ModelCard) -> list[str]:
    k = int(card.net["num_classes"])
    task = card.task.get("name", "segmentation")
    if k == 2:
        return ["background", "cell" if task == "detection" else "foreground"]
    return ["background", *(f"class{i}" for i in range(1, k))]


def _default_test_shape(levels: Sequence[shapes.LevelSpec]) -> tuple[int, ...]:
    return shapes.input_shape_for_output(levels, (16,) * len(levels[0].kernel))


def _cover(image: np.ndarray, probs: np.ndarray, halo: Sequence[int], path: Path) -> None:
    """PNG (2:1): the input beside the foreground probability, drawn where the output lies in the input.

    Volumes show their middle plane. The frame on the input marks the region the (valid) output covers.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    img = image[0]
    fg = 1.0 - probs[0, 0]
    if img.ndim == 3:
        img, fg = img[img.shape[0] // 2], fg[fg.shape[0] // 2]
    hy, hx = halo[-2:]
    h, w = img.shape
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=100)
    axes[0].imshow(img, cmap="gray", interpolation="nearest")
    axes[0].add_patch(Rectangle((hx - 0.5, hy - 0.5), w - 2 * hx, h - 2 * hy, fill=False, ec="yellow", lw=1))
    extent = (hx - 0.5, w - hx - 0.5, h - hy - 0.5, hy - 0.5)
    axes[1].imshow(fg, cmap="magma", interpolation="nearest", vmin=0.0, vmax=1.0, extent=extent)
    for ax, title in zip(axes, ("input", "foreground probability")):
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _readme(card: ModelCard, ckpt: dict, ckpt_path: Path, weight_formats: Sequence[str]) -> str:
    """README.md of the package: architecture, input/output, normalisation, training, validation, citation."""
    net = card.net
    nd = int(net["spatial_dims"])
    levels = _levels_of(card)
    halo, period = shapes.halo(levels), shapes.pooling_period(levels)
    axes = ", ".join(_axis_ids(nd))
    es = card.element_size
    size = "not set (images are used as they are)" if es is None else " x ".join(f"{v:g}" for v in es) + " µm"
    cap = f", at most {net['max_features']}" if net.get("max_features") else ""
    layer_norm = net.get("norm") or "none"
    classes = ", ".join(_class_names(card))
    norm = {
        "minmax": "per-channel min-max to [0, 1] (`scale_range`, percentiles 0 and 100, eps 1e-6; "
        "freiburg-unet divides by max - min exactly: a relative difference of eps / (max - min))",
        "percentile": "per-channel percentiles 1 and 99.8 to [0, 1], clipped (`scale_range` + `clip`)",
        "none": "none (the raw intensities go to the network as float32)",
    }[card.normalization]
    trained = f"- Checkpoint `{ckpt_path.name}`"
    trained += f", epoch {ckpt['epoch']}" if "epoch" in ckpt else ""
    trained += f", step {ckpt['global_step']}" if "global_step" in ckpt else ""
    init_from = _init_from(ckpt)
    lines = [
        f"# Freiburg U-Net ({nd}D, {card.task.get('name', 'segmentation')})",
        "",
        "A U-Net with valid (unpadded) convolutions as in Ronneberger et al. (2015) and Falk et al. "
        "(2019), trained and exported with freiburg-unet (PyTorch Lightning + Hydra).",
        "",
        "## Architecture",
        "",
        f"- {nd}D, depth {net['depth']}, {net['base_features']} features at the finest level (doubling "
        f"per level{cap}), leaky ReLU {net['negative_slope']}, normalisation layers: {layer_norm}.",
        f"- {net['in_channels']} input channel(s); {net['num_classes']} classes: {classes}.",
        f"- Element size ({axes}): {size}. Images of another pixel size must be rescaled to it first "
        "(freiburg-unet does so from the image metadata).",
        "",
        "## Input and output",
        "",
        f"- `input` (batch, channel, {axes}): valid sizes are `min + n * step` per axis, min "
        f"{shapes.min_input_shape(levels)}, step {period} (the pooling period).",
        f"- `output`: class probabilities, {tuple(2 * h for h in halo)} pixels smaller than the input "
        f"(halo {halo} per side: valid convolutions). The network outputs logits; the soft-max over the "
        "channel axis is the `softmax` postprocessing step.",
        f"- Preprocessing: {norm}.",
        "- Images larger than a tile: overlap-tile prediction (Ronneberger 2015, Fig. 2) with mirrored "
        "borders and strides that are multiples of the pooling period (seam-free), as in freiburg-unet.",
        f"- Weight formats: {', '.join(weight_formats)}.",
        "",
        "## Training",
        "",
        trained + ".",
        "- Loss: pixel-weighted soft-max cross-entropy with class-balancing and instance-separation "
        "weights (Falk et al. 2019, M2).",
    ]
    if init_from:
        lines.append(f"- Finetuned (Falk et al. 2019, M5) from the pretrained model `{init_from}`.")
    lines += [
        "",
        "## Validation",
        "",
        "The test tensors were made by freiburg-unet's prediction path (normalisation, network, soft-max) "
        "on a synthetic image; `bioimageio.core` reproduces them from every weight format. Validate the "
        "model on annotated images of your own data: freiburg-unet's `evaluate.py` reports the object IoU "
        "(segmentation, Falk 2019 M6.1) and the detection F1 score (M6.2).",
        "",
        "## Citation",
        "",
        "Please cite:",
        "",
        *(f"- {text} https://doi.org/{doi}" for text, doi in CITATIONS),
        "",
    ]
    return "\n".join(lines)


def _levels_of(card: ModelCard) -> tuple[shapes.LevelSpec, ...]:
    with torch.device("meta"):
        return UNet(**card.net).levels


def _init_from(ckpt: dict) -> str | None:
    """File name of the checkpoint this one was finetuned from (``hyper_parameters.init_from``), if any."""
    init_from = dict(ckpt.get("hyper_parameters") or {}).get("init_from")
    return Path(str(init_from)).name if init_from else None


def _weights_descrs(
    net: UNet,
    card: ModelCard,
    example: torch.Tensor,
    files: Path,
    ckpt_name: str,
    weight_formats: Sequence[str],
    opset: int,
) -> dict[str, Any]:
    """Write the weight files into ``files`` and describe them; the first format listed in
    :data:`BIOIMAGEIO_WEIGHTS` that is exported is the original, the others name it as their ``parent``."""
    from bioimageio.spec._internal.version_type import Version
    from bioimageio.spec.model import v0_5 as spec

    torch_version = Version(torch.__version__.split("+")[0])
    root = next(w for w in BIOIMAGEIO_WEIGHTS if w in weight_formats)
    common = f"exported by freiburg-unet from {ckpt_name}"
    entries: dict[str, Any] = {}
    if "pytorch_state_dict" in weight_formats:
        (files / "unet_arch.py").write_text(ARCHITECTURE_SOURCE, encoding="utf-8")
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, files / "weights.pt")
        entries["pytorch_state_dict"] = spec.PytorchStateDictWeightsDescr(
            source=files / "weights.pt",
            architecture=spec.ArchitectureFromFileDescr(
                source=files / "unet_arch.py", callable="UNet", kwargs=dict(card.net)
            ),
            pytorch_version=torch_version,
            comment=f"{common}; self-contained architecture file (needs only torch)",
        )
    if "torchscript" in weight_formats:
        _write_torchscript(net, card, example, files / "weights_torchscript.pt")
        entries["torchscript"] = spec.TorchscriptWeightsDescr(
            source=files / "weights_torchscript.pt",
            pytorch_version=torch_version,
            parent=None if root == "torchscript" else root,
            comment=f"{common}; torch.jit.trace on {tuple(example.shape[2:])}, any valid shape works",
        )
    if "onnx" in weight_formats:
        (files / "weights.onnx").write_bytes(_onnx_bytes(net, card, example, opset))
        entries["onnx"] = spec.OnnxWeightsDescr(
            source=files / "weights.onnx",
            opset_version=opset,
            parent=None if root == "onnx" else root,
            comment=f"{common}; torch.onnx.export (dynamo=False), dynamic batch and spatial axes",
        )
    return entries


def _tensor_descrs(net: UNet, card: ModelCard, files: Path) -> tuple[Any, Any]:
    """Input and output tensor descriptions: parameterized input sizes (min + n * pooling period), output
    sizes referencing them minus twice the halo, element size in µm, normalisation, soft-max."""
    from bioimageio.spec.model import v0_5 as spec

    levels = net.levels
    axes = _axis_ids(net.spatial_dims)
    es = card.element_size
    unit = None if es is None else "micrometer"
    scales = (1.0,) * net.spatial_dims if es is None else tuple(float(v) for v in es)
    in_axes: list[Any] = [
        spec.BatchAxis(),
        spec.ChannelAxis(channel_names=[f"channel{c}" for c in range(net.in_channels)]),
    ]
    out_axes: list[Any] = [spec.BatchAxis(), spec.ChannelAxis(channel_names=_class_names(card))]
    for a, m, p, h, s in zip(
        axes, shapes.min_input_shape(levels), shapes.pooling_period(levels), shapes.halo(levels), scales
    ):
        axis_id = spec.AxisId(a)
        size = spec.ParameterizedSize(min=m, step=p)
        in_axes.append(spec.SpaceInputAxis(id=axis_id, size=size, scale=s, unit=unit))
        ref = spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=axis_id, offset=-2 * h)
        out_axes.append(
            spec.SpaceOutputAxis(
                id=axis_id,
                size=ref,
                scale=s,
                unit=unit,
                description=f"input - 2 x halo {h} (valid convolutions)",
            )
        )
    spatial = [spec.AxisId(a) for a in axes]
    pre: list[Any] = []
    if card.normalization == "minmax":  # Falk M4: (I - min I) / (max I - min I) per channel
        pre = [
            spec.ScaleRangeDescr(
                kwargs=spec.ScaleRangeKwargs(axes=spatial, min_percentile=0.0, max_percentile=100.0)
            )
        ]
    elif card.normalization == "percentile":
        pre = [
            spec.ScaleRangeDescr(
                kwargs=spec.ScaleRangeKwargs(axes=spatial, min_percentile=1.0, max_percentile=99.8)
            ),
            spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
        ]
    inputs = spec.InputTensorDescr(
        id=spec.TensorId("input"),
        description="raw image; normalised per channel by the preprocessing",
        axes=in_axes,
        test_tensor=spec.FileDescr(source=files / "test_input.npy"),
        sample_tensor=spec.FileDescr(source=files / "sample_input.tif"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=pre,
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("output"),
        description="class probabilities (soft-max of the network's logits over the channel axis)",
        axes=out_axes,
        test_tensor=spec.FileDescr(source=files / "test_output.npy"),
        sample_tensor=spec.FileDescr(source=files / "sample_output.tif"),
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[spec.SoftmaxDescr(kwargs=spec.SoftmaxKwargs(axis=spec.AxisId("channel")))],
    )
    return inputs, outputs


def _write_bioimageio(
    net: UNet,
    card: ModelCard,
    ckpt: dict,
    ckpt_path: Path,
    example: torch.Tensor,
    out: Path,
    *,
    opset: int,
    name: str | None,
    description: str | None,
    authors: Sequence[dict[str, Any]] | None,
    license: str,
    tags: Sequence[str],
    weight_formats: Sequence[str],
    test_shape: Sequence[int] | None,
    parent_id: str | None,
    training_data_id: str | None,
    validate: bool,
) -> None:
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder
    from bioimageio.spec.model import v0_5 as spec

    nd = net.spatial_dims
    shape = _default_test_shape(net.levels) if test_shape is None else tuple(int(s) for s in test_shape)
    try:
        net.output_shape(shape)
    except ValueError as e:
        raise ExportError(f"{out}: test_shape: {e}") from None
    task = card.task.get("name", "segmentation")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        files = work / "src"
        files.mkdir()
        image = synthetic_image(shape, net.in_channels)  # raw: the package normalises it itself
        probs = reference_prediction(net, image, card)
        np.save(files / "test_input.npy", image[None])
        np.save(files / "test_output.npy", probs)
        tifffile.imwrite(files / "sample_input.tif", image[None], photometric="minisblack")
        tifffile.imwrite(files / "sample_output.tif", probs, photometric="minisblack")
        _cover(image, probs, net.halo, files / "cover.png")
        (files / "README.md").write_text(_readme(card, ckpt, ckpt_path, weight_formats), encoding="utf-8")
        weights = _weights_descrs(net, card, example, files, ckpt_path.name, weight_formats, opset)
        inputs, outputs = _tensor_descrs(net, card, files)

        unet_config: dict[str, Any] = {
            "card": card.to_dict(),
            "halo": list(net.halo),
            "pooling_period": list(net.pooling_period),
            "checkpoint": ckpt_path.name,
            **{k: int(ckpt[k]) for k in ("epoch", "global_step") if k in ckpt},
        }
        if _init_from(ckpt):  # finetuned (Falk M5) from a local checkpoint: no bioimage.io id to link
            unet_config["init_from"] = _init_from(ckpt)
        training = spec.TrainingDetails(
            training_preprocessing=f"normalisation {card.normalization} (Falk 2019, M4); rescaling to the "
            "element size (M5); elastic, affine and intensity augmentation of tiles",
            training_epochs=float(ckpt["epoch"]) if "epoch" in ckpt else None,
            loss_function="weighted soft-max cross-entropy (Falk 2019, M2)",
        )
        default_description = (
            f"Freiburg U-Net ({nd}D, depth {net.depth}, {card.net['base_features']} base features, "
            f"{net.num_classes} classes) for cell {task}: valid convolutions, overlap-tile prediction "
            "(Ronneberger 2015; Falk 2019)."
        )
        with _offline_hint(out, authors):
            descr = spec.ModelDescr(
                name=name or f"Freiburg U-Net {nd}D {task}",
                description=description or default_description,
                authors=[spec.Author(**dict(a)) for a in (authors or _default_authors())],
                cite=[spec.CiteEntry(text=text, doi=spec.Doi(doi)) for text, doi in CITATIONS],
                license=license,
                tags=list(dict.fromkeys(["unet", f"unet{nd}d", "pytorch", task, "freiburg-unet", *tags])),
                documentation=spec.FileDescr(source=files / "README.md"),
                covers=[spec.FileDescr(source=files / "cover.png")],
                inputs=[inputs],
                outputs=[outputs],
                weights=spec.WeightsDescr(**weights),
                parent=spec.LinkedModel(id=spec.ModelId(parent_id)) if parent_id else None,
                training_data=_linked_dataset(training_data_id) if training_data_id else None,
                config=spec.Config(
                    bioimageio=spec.BioimageioConfig(
                        architecture_type=f"U-Net {nd}D (valid convolutions)",
                        task=task,
                        model_parameter_count=sum(p.numel() for p in net.parameters()),
                        training=training,
                    ),
                    unet=unet_config,
                ),
            )
            if validate:
                _test_package(descr, out)
        staged = work / ("package.zip" if out.suffix.lower() == ".zip" else "package")
        with _quiet_bioimageio():
            if staged.suffix == ".zip":
                save_bioimageio_package(descr, output_path=staged)
                with open(staged, "rb+") as f:
                    os.fsync(f.fileno())
            else:
                save_bioimageio_package_as_folder(descr, output_path=staged)
        _move_into_place(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _linked_dataset(dataset_id: str) -> Any:
    from bioimageio.spec.dataset.v0_3 import DatasetId, LinkedDataset

    return LinkedDataset(id=DatasetId(dataset_id))


def _default_authors() -> list[dict[str, str]]:
    """The exporting user (login name; pass ``authors=`` for the people who trained the model)."""
    try:
        import getpass

        user = getpass.getuser()
    except Exception:
        user = "unknown"
    log.warning("bioimage.io authors not given; using %r (set bioimageio.authors)", user)
    return [{"name": user}]


@contextlib.contextmanager
def _offline_hint(out: Path, authors: Sequence[dict[str, Any]] | None) -> Iterator[None]:
    """bioimageio.spec looks every author's ``github_user`` up on GitHub: say so when that fails offline."""
    try:
        yield
    except Exception as e:
        if not type(e).__module__.startswith(("httpx", "httpcore")):
            raise
        users = [a.get("github_user") for a in authors or () if a.get("github_user")]
        raise ExportError(
            f"{out}: bioimageio.spec could not reach the network ({type(e).__name__}: {e}); it looks up the "
            f"authors' github_user {users} on GitHub: leave github_user out when offline"
        ) from None


@contextlib.contextmanager
def _quiet_bioimageio() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _test_package(descr: Any, out: Path) -> None:
    """``bioimageio.core.test_model``, every weight format, on the CPU; ExportError with the summary."""
    from bioimageio.core import test_model

    with _quiet_bioimageio(), _quiet_export():
        summary = test_model(descr, devices=["cpu"])
    log.info("bioimage.io test of %s: %s", out, summary.status)
    if summary.status != "passed":
        raise ExportError(f"{out}: the bioimage.io package failed its test:\n{validation_report(summary)}")


def validation_report(summary: Any) -> str:
    """Plain-text lines of a bioimage.io ValidationSummary: status, then one line per check."""
    lines = [f"{summary.name}: {summary.status}"]
    for d in summary.details:
        line = f"  {d.status:7s} {d.name}"
        errors = [e.msg for e in getattr(d, "errors", [])]
        if errors:
            line += ": " + "; ".join(errors)[:500]
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def config_to_kwargs(cfg: dict) -> dict[str, Any]:
    """conf/export.yaml (a plain dict) -> keyword arguments of :func:`export_model`."""
    bio = dict(cfg.get("bioimageio") or {})
    return {
        "ckpt_path": cfg["ckpt_path"],
        "format": cfg["format"],
        "output": cfg["output"],
        "overwrite": bool(cfg.get("overwrite", False)),
        "trace_shape": cfg.get("trace_shape"),
        "opset": int(cfg.get("opset", ONNX_OPSET)),
        "name": bio.get("name"),
        "description": bio.get("description"),
        "authors": bio.get("authors"),
        "license": bio.get("license", "MIT"),
        "tags": tuple(bio.get("tags") or ()),
        "weight_formats": tuple(bio.get("weight_formats") or BIOIMAGEIO_WEIGHTS),
        "test_shape": bio.get("test_shape"),
        "parent_id": bio.get("parent_id"),
        "training_data_id": bio.get("training_data_id"),
        "validate": bool(bio.get("validate", True)),
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    """``python -m unet.export ckpt_path=<ckpt> format=bioimageio|onnx|torchscript output=<path>``."""
    kwargs = config_to_kwargs(OmegaConf.to_container(cfg, resolve=True))
    try:
        path = export_model(**kwargs)
    except (ExportError, CheckpointError) as e:
        log.error("export failed: %s", e)
        sys.exit(1)
    log.info("exported (%s): %s", kwargs["format"], path)


if __name__ == "__main__":
    main()


__all__ = [
    "ARCHITECTURE_SOURCE",
    "BIOIMAGEIO_WEIGHTS",
    "FORMATS",
    "ExportError",
    "ExportedUNet",
    "default_trace_shape",
    "export_model",
    "load_exported",
    "reference_prediction",
    "synthetic_image",
    "validation_report",
]
