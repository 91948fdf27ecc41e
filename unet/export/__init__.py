"""Export a trained model: TorchScript, ONNX or a bioimage.io model package (spec 0.5).

``python -m unet.export ckpt_path=<ckpt> output=<path> [format=bioimageio|onnx|torchscript]`` (options: the
arguments of :func:`export_model`, :mod:`unet.cli.export`); library: :func:`export_model`,
:func:`load_exported`.

* Every exported graph maps a valid ``(N, C, *valid_in)`` input, already normalised as the model card says
  (per-channel min-max to [0, 1], Falk M4), to ``(N, K, *out)`` class scores (LOGITS), exactly as
  :meth:`unet.models.unet.UNet.forward`; ``out = valid_in - 2 * halo`` per axis. Batch and spatial sizes
  are dynamic: any valid shape works, not only the traced one.
* TorchScript: ``torch.jit.trace`` of the eval-mode network on the smallest valid shape grown by one pooling
  period. ONNX: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) with
  dynamic batch and spatial axes: it needs only the ``onnx`` package and works offline; the dynamo exporter
  needs ``onnxscript`` and would have to be told the valid-shape constraints of every axis.
* The model card (:class:`unet.predict.image.ModelCard` as JSON) travels inside each file: TorchScript
  ``_extra_files["unet_card.json"]``, ONNX ``metadata_props["unet_card"]``. :func:`load_exported` reads it
  back and returns a module that :func:`unet.tiling.predict_tiled` and predict accept like a ``UNet``.
* bioimage.io (``format=bioimageio``; ``output`` ending in ``.zip``: a zip package, otherwise a folder):
  the description is built with ``bioimageio.spec.model.v0_5.ModelDescr``; weights in torchscript, onnx
  and pytorch_state_dict (a self-contained copy of the architecture that needs only torch), test tensors
  made by this project's prediction path, a cover image and a README. The package is tested with
  ``bioimageio.core.test_model`` for every weight format before it is moved into place.

Outputs are written under a temporary name beside ``output`` and renamed: never half-written.

Modules: :mod:`~unet.export.exporter` (:func:`export_model`), :mod:`~unet.export.graphs` (TorchScript,
ONNX), :mod:`~unet.export.loading` (:func:`load_exported`), :mod:`~unet.export.package` (bioimage.io),
:mod:`~unet.export.content` (its test data, cover and README), :mod:`~unet.export.architecture` (its
architecture file), :mod:`~unet.export.common` (formats, error, optional packages); ``__main__`` is
``python -m unet.export`` (its command: :mod:`unet.cli.export`). Atomic output: :mod:`unet.io.common`.
"""

from unet.export.architecture import ARCHITECTURE_SOURCE
from unet.export.common import BIOIMAGEIO_WEIGHTS, FORMATS, INSTALL_HINT, ONNX_OPSET, ExportError
from unet.export.content import CITATIONS, reference_prediction, synthetic_image
from unet.export.exporter import export_model
from unet.export.graphs import CARD_FILE, CARD_KEY, default_trace_shape
from unet.export.loading import ExportedUNet, load_exported
from unet.export.package import validation_report

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
    "default_trace_shape",
    "export_model",
    "load_exported",
    "reference_prediction",
    "synthetic_image",
    "validation_report",
]
