"""``python -m unet.export``: :func:`export`; its config is the arguments of
:func:`unet.export.export_model`."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from unet.cli import arguments, store_command
from unet.export.exporter import export_model


def export(cfg: DictConfig) -> Path:
    """:func:`unet.export.export_model` with the config's keys as its arguments; -> the path written.

    Raises:
        unet.export.ExportError: The export cannot be done (bad option, existing output, missing package).
        unet.checkpoint.CheckpointError: Missing or unreadable checkpoint.
    """
    return export_model(**arguments(cfg))


USAGE = """
Usage:
  python -m unet.export ckpt_path=<checkpoint> output=<path> [format=bioimageio|onnx|torchscript] [k=v ...]

Examples:
  python -m unet.export ckpt_path=logs/runs/2024-01-01_12-00-00/checkpoints/best.ckpt output=unet.zip
  python -m unet.export ckpt_path=model.ckpt format=onnx output=unet.onnx
  python -m unet.export ckpt_path=model.ckpt format=torchscript output=unet.pt overwrite=true
  python -m unet.export ckpt_path=model.ckpt output=unet.zip 'authors=[{name: Jane Doe, github_user: jdoe}]'

ckpt_path: a checkpoint of train.py; network, task, normalisation and element size come from its model card,
which every exported file carries. format: torchscript (a .pt file) | onnx (a .onnx file) | bioimageio (a
bioimage.io model package: output <name>.zip, or a folder for any other name). output is written under a
temporary name and renamed, never half-written; overwrite=true replaces an existing one. trace_shape: the
input shape the graph is traced with, a valid U-Net input shape such as [220,220] (null: the smallest valid
shape grown by one pooling period); the graph accepts every valid shape. opset: the ONNX opset (onnx and
bioimageio).

bioimageio only: name (letters, digits, spaces, _+-(); null: "Freiburg U-Net <N>D <task>"), description
(null: derived from the architecture and task), authors (a list of {name, affiliation, email, github_user,
orcid}; null: the login name of the exporting user, with a warning), license (SPDX identifier of the
weights), tags (unet, unet2d/unet3d, pytorch, the task and freiburg-unet are always added), weight_formats
(a subset of pytorch_state_dict, torchscript, onnx), test_shape (spatial shape of the synthetic test image,
a multiple of the pooling period at least the declared minimum; null: the smallest one covering 16 px inside
the declared halo), parent_id (bioimage.io id of the model
this one was finetuned from; a local init_from checkpoint is recorded in the package's config and README),
training_data_id (bioimage.io id of the training data set), validate (run bioimageio.core's test of every
weight format and check its whole-image and blockwise predictions against predict.py's to 1e-4, on the CPU,
before the package is moved into place; a package that fails is not written).

format=onnx and format=torchscript map a valid (N, C, *input) tile, normalised per channel to [0, 1], to
(N, K, *output) logits (output = input - 2 * halo per axis), for any valid input shape: predict.py tiles and
mirrors the image itself. The bioimage.io package holds same-size graphs for consumers: they mirror-pad by
the halo inside and return an output the size of the input (a multiple of the pooling period), on
predict.py's pooling grid, and declare the halo consumers need to tile seam-free; it adds the normalisation
(scale_range), a soft-max, test tensors, a cover and a README.
Needs the export extra: pip install -e '.[export]'. Then: python predict.py ckpt_path=unet.onnx input=...
"""

store_command(
    "export",
    export_model,
    header="python -m unet.export: export a trained U-Net as TorchScript, ONNX or a bioimage.io model "
    "package.",
    usage=USAGE,
    command="python -m unet.export",
)
