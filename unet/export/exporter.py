"""``export_model``: checks the options, then writes the chosen format atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unet.checkpoint import CheckpointError, load_project_checkpoint
from unet.export.common import BIOIMAGEIO_WEIGHTS, FORMATS, ONNX_OPSET, ExportError, require_packages
from unet.export.graphs import (
    example_input,
    same_size_example,
    write_onnx,
    write_torchscript,
)
from unet.export.package import write_bioimageio
from unet.io.common import atomic_write
from unet.models.card import network_from_checkpoint
from unet.models.norms import is_tile_dependent, statistics_max_voxels

log = logging.getLogger(__name__)


def check_exportable_norm(norm: str | None, ckpt_path: Path, format: str, whole_voxels: int) -> None:
    """Before any tracing: refuse what cannot give predict.py's results, say what an exported
    instance-norm graph needs.

    Group norm takes its statistics from the tile (in predict.py too). ``predict.py`` gives an
    instance-norm network the statistics of the whole image (:mod:`unet.models.norms`); an exported graph
    takes them from the input it is fed. A bioimage.io package is refused: its consumers (and its parity
    check, bioimageio.core) predict large images block by block, and pad them before the graph. A
    TorchScript or ONNX graph is exported with a warning: fed whole images, it gives predict.py's results.
    """
    kind = str(norm or "none")
    if is_tile_dependent(kind):
        raise ExportError(
            f"{ckpt_path}: the network has {kind} normalisation, whose statistics come from the tile, so its "
            "results change with the tile size (in predict.py too); train with model.net.norm=null (the "
            "papers' network) to export"
        )
    if kind == "instance" and format == "bioimageio":
        raise ExportError(
            f"{ckpt_path}: the network has instance normalisation: predict.py gives it whole-image "
            "statistics, but bioimage.io consumers predict block by block, so the package's results would "
            "change with their block size; export format=onnx or format=torchscript (fed whole images), "
            "or train with model.net.norm=null for a package"
        )
    if kind == "instance":
        log.warning(
            "%s: the network has instance normalisation: predict.py uses whole-image statistics, the "
            "exported graph those of the input it is fed; feed it whole images (up to %d voxels) for "
            "predict.py's results: a consumer that tiles large images gets results that change with its tile",
            ckpt_path,
            whole_voxels,
        )


def export_model(
    ckpt_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str = "bioimageio",
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
        ckpt_path: checkpoint of this project (card under :data:`~unet.models.card.CARD_KEY`, state dict).
        output: file to write (torchscript, onnx); for bioimageio a ``.zip`` file or a folder.
        format: "torchscript", "onnx" or "bioimageio".
        overwrite: replace an existing ``output``.
        trace_shape: spatial input shape the graph is traced with (default: the smallest valid shape grown
            by one pooling period). torchscript/onnx: a valid U-Net input; bioimageio: a same-size input (a
            multiple of the pooling period, at least the declared minimum). The graph accepts every valid
            shape.
        opset: ONNX opset version.
        name, description, authors, license, tags: bioimage.io metadata (defaults are derived from the
            card); ``authors`` is a list of ``{name, affiliation, email, github_user, orcid}`` dicts.
        weight_formats: bioimage.io weight formats, a subset of :data:`BIOIMAGEIO_WEIGHTS`.
        test_shape: spatial shape of the bioimage.io test image (a multiple of the pooling period, at least
            the declared minimum; default: the smallest one covering 16 px per axis inside the declared halo).
        parent_id: bioimage.io id of the model this one was finetuned from (``parent`` in the package).
        training_data_id: bioimage.io id of the training data set (``training_data``).
        validate: run ``bioimageio.core.test_model`` on the package before it is moved to ``output``, then
            compare bioimageio.core's whole-image and blockwise predictions of every weight format with
            predict.py's probabilities (:func:`unet.export.package.check_consumer_parity`, 1e-4).

    Returns:
        The path written.

    Raises:
        ExportError: unknown format, ``output``'s folder missing, ``output`` exists (and not ``overwrite``),
            invalid shapes, a missing optional package, or a package that fails the bioimage.io test or the
            parity check.
        unet.checkpoint.CheckpointError: missing or unreadable checkpoint (the message names it).
    """
    if format not in FORMATS:
        raise ExportError(f"{output}: unknown export format {format!r}; choose one of {FORMATS}")
    if not Path(ckpt_path).is_file():
        raise CheckpointError(f"{ckpt_path}: no such checkpoint file")
    out = Path(output)
    if not out.parent.is_dir():
        what = "is a file, not a folder" if out.parent.exists() else "does not exist"
        raise ExportError(f"{out}: cannot write: its folder {out.parent} {what}; create the folder first")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ExportError(f"{out}: output exists; pass overwrite=true to replace it")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: cannot write into the folder {out.parent}: permission denied")
    if format == "bioimageio":
        bad = [w for w in weight_formats if w not in BIOIMAGEIO_WEIGHTS]
        if bad or not weight_formats:
            raise ExportError(
                f"{out}: weight_formats must be a non-empty subset of {BIOIMAGEIO_WEIGHTS}, got "
                f"{list(weight_formats)}"
            )
    require_packages(format, out, weight_formats)
    ckpt = load_project_checkpoint(ckpt_path)
    try:
        net, card = network_from_checkpoint(ckpt, ckpt_path)
    except ValueError as e:
        raise ExportError(str(e)) from None
    check_exportable_norm(card.net.get("norm"), Path(ckpt_path), format, statistics_max_voxels(net))
    if format == "bioimageio":
        example = same_size_example(net, trace_shape, out)
    else:
        example = example_input(net, trace_shape, out)
    try:
        if format == "torchscript":
            with atomic_write(out, replace_folder=True) as tmp:
                write_torchscript(net, card, example, tmp)
        elif format == "onnx":
            with atomic_write(out, replace_folder=True) as tmp:
                write_onnx(net, card, example, tmp, opset)
        else:
            write_bioimageio(
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
    except PermissionError:  # a folder writable by mode bits but not by this user (ACLs, read-only mounts)
        raise ExportError(f"{out}: cannot write into the folder {out.parent}: permission denied") from None
    log.info("exported %s (%s) to %s", ckpt_path, format, out)
    return out
