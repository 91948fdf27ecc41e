"""Export a trained model: TorchScript, ONNX or a bioimage.io model package (spec 0.5).

``python -m unet.export ckpt_path=<ckpt> output=<path> [format=bioimageio|onnx|torchscript]`` (options: the
arguments of :func:`export_model`, :mod:`unet.cli.export`); library: :func:`export_model`,
:func:`load_exported`.

* ``format=onnx`` / ``format=torchscript``: the graph maps a valid ``(N, C, *valid_in)`` input, already
  normalised as the model card says (per-channel min-max to [0, 1], Falk M4), to ``(N, K, *out)`` class
  scores (LOGITS), exactly as :meth:`unet.models.unet.UNet.forward`; ``out = valid_in - 2 * halo`` per axis.
  Batch and spatial sizes are dynamic: any valid shape works, not only the traced one. predict.py tiles
  these itself (:func:`load_exported`).
* The bioimage.io package's graphs are same-size (:class:`~unet.export.graphs.SameSizeUNet`,
  :func:`~unet.export.graphs.same_size_geometry`): they mirror (reflect) the input by the halo inside, as
  predict.py's overlap-tile does, and return logits the size of the input (sizes: multiples of the pooling
  period); the package declares the halo rounded up to the pooling period and reflect padding, so
  consumers' blockwise prediction equals predict.py's (checked at export, :func:`check_consumer_parity`).
* TorchScript: ``torch.jit.trace`` of the eval-mode network on the smallest valid shape grown by one pooling
  period. ONNX: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) with
  dynamic batch and spatial axes: it needs only the ``onnx`` package and works offline; the dynamo exporter
  needs ``onnxscript`` and would have to be told the valid-shape constraints of every axis.
* The model card (:class:`unet.models.card.ModelCard` as JSON) travels inside each file: TorchScript
  ``_extra_files[CARD_FILE]`` (``"unet_card.json"``), ONNX ``metadata_props[CARD_KEY]`` (``"unet_card"``,
  :data:`unet.models.card.CARD_KEY`, the checkpoints' entry). :func:`load_exported` reads it back and
  returns a module that :func:`unet.tiling.predict_tiled` and predict accept like a ``UNet``.
* bioimage.io (``format=bioimageio``; ``output`` ending in ``.zip``: a zip package, otherwise a folder):
  the description is built with ``bioimageio.spec.model.v0_5.ModelDescr``; weights in torchscript, onnx
  and pytorch_state_dict (a self-contained copy of the architecture that needs only torch), test tensors
  made by this project's prediction path, a cover image and a README. The package as written is read back,
  tested with ``bioimageio.core.test_model`` for every weight format and checked for parity with predict.py
  (``bioimageio.core.predict`` whole-image and blockwise, 1e-4) before it is moved into place.

Outputs are written under a temporary name beside ``output`` and renamed: never half-written.

Modules: :mod:`~unet.export.exporter` (:func:`export_model`), :mod:`~unet.export.graphs` (TorchScript,
ONNX), :mod:`unet.exported` (:func:`load_exported`, re-exported), :mod:`~unet.export.package` (bioimage.io),
:mod:`~unet.export.content` (its test data, cover and README), :mod:`~unet.export.architecture` (its
architecture file), :mod:`~unet.export.common` (formats, error, optional packages); ``__main__`` is
``python -m unet.export`` (its command: :mod:`unet.cli.export`). Atomic output: :mod:`unet.io.common`.
"""

from unet.export.architecture import ARCHITECTURE_SOURCE
from unet.export.common import BIOIMAGEIO_WEIGHTS, FORMATS, INSTALL_HINT, ONNX_OPSET, ExportError
from unet.export.content import CITATIONS, reference_prediction, synthetic_image
from unet.export.exporter import export_model
from unet.export.graphs import (
    CARD_FILE,
    CARD_KEY,
    SameSizeGeometry,
    SameSizeUNet,
    default_trace_shape,
    same_size_geometry,
)
from unet.export.package import (
    check_consumer_parity,
    consumer_parity,
    consumer_predictions,
    validation_report,
)
from unet.exported import ExportedUNet, load_exported

__all__ = [
    "ARCHITECTURE_SOURCE",
    "BIOIMAGEIO_WEIGHTS",
    "CARD_FILE",
    "CARD_KEY",
    "CITATIONS",
    "FORMATS",
    "INSTALL_HINT",
    "ONNX_OPSET",
    "ExportError",
    "ExportedUNet",
    "SameSizeGeometry",
    "SameSizeUNet",
    "check_consumer_parity",
    "consumer_parity",
    "consumer_predictions",
    "default_trace_shape",
    "export_model",
    "load_exported",
    "reference_prediction",
    "same_size_geometry",
    "synthetic_image",
    "validation_report",
]
