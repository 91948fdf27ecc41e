"""The bioimage.io model package (spec 0.5): weight and tensor descriptions, writing, the ``bioimageio.core``
test."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from unet.export.architecture import ARCHITECTURE_SOURCE
from unet.export.common import BIOIMAGEIO_WEIGHTS, ExportError
from unet.export.content import (
    CITATIONS,
    axis_ids,
    class_names,
    cover,
    finetuned_from,
    readme,
    reference_prediction,
    synthetic_image,
)
from unet.export.graphs import (
    SameSizeGeometry,
    onnx_bytes,
    quiet_export,
    same_size_geometry,
    write_torchscript,
)
from unet.io.common import follow_umask, move_into_place
from unet.models.card import ModelCard
from unet.models.unet import UNet

log = logging.getLogger(__name__)


#: largest difference from predict.py's probabilities that :func:`check_consumer_parity` accepts
PARITY_TOLERANCE = 1e-4
#: bioimageio.core blocksize parameters of the parity check (blocks of min + n * period per axis)
PARITY_BLOCKSIZES = (3, 7)


def _default_test_shape(g: SameSizeGeometry) -> tuple[int, ...]:
    """The smallest same-size input whose part inside the declared halo covers 16 px per axis."""
    return tuple(max(m, -(-(2 * d + 16) // p) * p) for m, d, p in zip(g.min_size, g.declared_halo, g.period))


def parity_shape(g: SameSizeGeometry) -> tuple[int, ...]:
    """Image shape of the parity check: ``2 * declared halo + 8 * period`` per axis, so that blocksize 7 is
    one block of the whole image and blocksize 3 splits it into 3 or more blocks per axis."""
    return tuple(2 * d + 8 * p for d, p in zip(g.declared_halo, g.period))


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
        g = same_size_geometry(net.levels)
        kwargs = {**dict(card.net), "before": list(g.before), "after": list(g.after), "crop": list(g.crop)}
        entries["pytorch_state_dict"] = spec.PytorchStateDictWeightsDescr(
            source=files / "weights.pt",
            architecture=spec.ArchitectureFromFileDescr(
                source=files / "unet_arch.py", callable="SameSizeUNet", kwargs=kwargs
            ),
            pytorch_version=torch_version,
            comment=f"{common}; self-contained architecture file (needs only torch), same-size graph",
        )
    if "torchscript" in weight_formats:
        write_torchscript(net, card, example, files / "weights_torchscript.pt", same_size=True)
        entries["torchscript"] = spec.TorchscriptWeightsDescr(
            source=files / "weights_torchscript.pt",
            pytorch_version=torch_version,
            parent=None if root == "torchscript" else root,
            comment=f"{common}; same-size graph, torch.jit.trace on {tuple(example.shape[2:])}, any valid "
            "shape works",
        )
    if "onnx" in weight_formats:
        (files / "weights.onnx").write_bytes(onnx_bytes(net, card, example, opset, same_size=True))
        entries["onnx"] = spec.OnnxWeightsDescr(
            source=files / "weights.onnx",
            opset_version=opset,
            parent=None if root == "onnx" else root,
            comment=f"{common}; same-size graph, torch.onnx.export (dynamo=False), dynamic batch and "
            "spatial axes",
        )
    return entries


def _tensor_descrs(net: UNet, card: ModelCard, files: Path) -> tuple[Any, Any]:
    """Input and output tensor descriptions of the same-size graph (:class:`SameSizeGeometry`): input sizes
    ``min + n * pooling period`` with reflect padding, output the size of the input with the declared halo,
    element size in µm, normalisation, soft-max."""
    from bioimageio.spec.model import v0_5 as spec

    g = same_size_geometry(net.levels)
    axes = axis_ids(net.spatial_dims)
    es = card.element_size
    unit = None if es is None else "micrometer"
    scales = (1.0,) * net.spatial_dims if es is None else tuple(float(v) for v in es)
    in_axes: list[Any] = [
        spec.BatchAxis(),
        spec.ChannelAxis(channel_names=[f"channel{c}" for c in range(net.in_channels)]),
    ]
    out_axes: list[Any] = [spec.BatchAxis(), spec.ChannelAxis(channel_names=class_names(card))]
    for a, m, p, h, hh, s in zip(axes, g.min_size, g.period, g.declared_halo, g.halo, scales):
        axis_id = spec.AxisId(a)
        size = spec.ParameterizedSize(min=m, step=p)
        in_axes.append(spec.SpaceInputAxis(id=axis_id, size=size, scale=s, unit=unit))
        ref = spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=axis_id, offset=0)
        out_axes.append(
            spec.SpaceOutputAxisWithHalo(
                id=axis_id,
                size=ref,
                halo=h,
                scale=s,
                unit=unit,
                description=f"input size; halo: the {hh} px valid-convolution margin rounded up to {p}",
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
        description="raw image; normalised per channel by the preprocessing; mirrored (reflect) at borders",
        axes=in_axes,
        pad=spec.ReflectPadding(mode="reflect"),  # explicit: a default mode is not written out
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


def write_bioimageio(
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
    """Write the bioimage.io package of ``net`` to ``out`` (zip or folder), tested before it is moved in."""
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder
    from bioimageio.spec.model import v0_5 as spec

    nd = net.spatial_dims
    g = same_size_geometry(net.levels)
    shape = _default_test_shape(g) if test_shape is None else tuple(int(s) for s in test_shape)
    try:
        g.check(shape)
    except ValueError as e:
        raise ExportError(f"{out}: test_shape: {e}") from None
    task = card.task.get("name", "segmentation")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    follow_umask(work)  # mkdtemp's folder is 0700; a package folder is shared like any other output
    try:
        files = work / "src"
        files.mkdir()
        image = synthetic_image(shape, net.in_channels)  # raw: the package normalises it itself
        probs = reference_prediction(net, image, card)
        np.save(files / "test_input.npy", image[None])
        np.save(files / "test_output.npy", probs)
        tifffile.imwrite(files / "sample_input.tif", image[None], photometric="minisblack")
        tifffile.imwrite(files / "sample_output.tif", probs, photometric="minisblack")
        cover(image, probs, g.declared_halo, files / "cover.png")
        (files / "README.md").write_text(readme(card, ckpt, ckpt_path, weight_formats), encoding="utf-8")
        weights = _weights_descrs(net, card, example, files, ckpt_path.name, weight_formats, opset)
        inputs, outputs = _tensor_descrs(net, card, files)

        unet_config: dict[str, Any] = {
            "card": card.to_dict(),
            "graph": "same_size: reflect padding inside, output the size of the input",
            "halo": list(net.halo),
            "declared_halo": list(g.declared_halo),
            "pooling_period": list(net.pooling_period),
            "checkpoint": ckpt_path.name,
            **{k: int(ckpt[k]) for k in ("epoch", "global_step") if k in ckpt},
        }
        if finetuned_from(ckpt):  # finetuned (Falk M5) from a local checkpoint: no bioimage.io id to link
            unet_config["init_from"] = finetuned_from(ckpt)
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
        staged = work / ("package.zip" if out.suffix.lower() == ".zip" else "package")
        with _quiet_bioimageio():
            if staged.suffix == ".zip":
                save_bioimageio_package(descr, output_path=staged)
                with open(staged, "rb+") as f:
                    os.fsync(f.fileno())
            else:
                save_bioimageio_package_as_folder(descr, output_path=staged)
        if validate:  # the package as written, read back as a consumer reads it
            with _offline_hint(out, authors):
                written = _load_written(staged, out)
            run_package_test(written, out)
            check_consumer_parity(written, net, card, out)
        move_into_place(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load_written(staged: Path, out: Path) -> Any:
    """The model description of the written package, loaded back (ExportError if it does not load)."""
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5 as spec

    with _quiet_bioimageio():
        descr = load_description(staged)
    if not isinstance(descr, spec.ModelDescr):
        raise ExportError(
            f"{out}: the written package does not load back as a model:\n"
            f"{validation_report(descr.validation_summary)}"
        )
    return descr


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
    log.warning("bioimage.io authors not given; using %r (pass authors=)", user)
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


def run_package_test(descr: Any, out: Path) -> None:
    """``bioimageio.core.test_model``, every weight format, on the CPU; ExportError with the summary."""
    from bioimageio.core import test_model

    with _quiet_bioimageio(), quiet_export():
        summary = test_model(descr, devices=["cpu"])
    log.info("bioimage.io test of %s: %s", out, summary.status)
    if summary.status != "passed":
        raise ExportError(f"{out}: the bioimage.io package failed its test:\n{validation_report(summary)}")


def consumer_predictions(
    descr: Any, image: np.ndarray, weight_format: str, blocksize: int | None = None
) -> np.ndarray:
    """(K, *S) probabilities of ``bioimageio.core.predict`` for a raw (C, *S) image, as a consumer gets them:
    the package's own preprocessing, graph and postprocessing; whole-image (``blocksize`` None) or blockwise
    with ``blocksize_parameter=blocksize`` (blocks padded by the declared halo, which is cropped again)."""
    from bioimageio.core import create_prediction_pipeline, predict

    with _quiet_bioimageio(), quiet_export():
        pipeline = create_prediction_pipeline(descr, devices=["cpu"], weights_format=weight_format)
        sample = predict(model=pipeline, inputs=image[None], blocksize_parameter=blocksize)
    (tensor,) = sample.members.values()
    return np.asarray(tensor.data, dtype=np.float32)[0]


def consumer_parity(
    descr: Any,
    net: UNet,
    card: ModelCard,
    image: np.ndarray,
    blocksizes: Sequence[int] = PARITY_BLOCKSIZES,
    weight_formats: Sequence[str] | None = None,
) -> dict[tuple[str, str], float]:
    """Largest absolute difference between bioimageio.core's prediction and predict.py's probabilities
    (:func:`unet.export.content.reference_prediction`, float32) of a raw (C, *S) image, per (weight format,
    ``"whole"`` or ``"blocksize <n>"``)."""
    ref = reference_prediction(net, image, card)[0]
    formats = list(weight_formats or [w for w in BIOIMAGEIO_WEIGHTS if getattr(descr.weights, w) is not None])
    diffs: dict[tuple[str, str], float] = {}
    for fmt in formats:
        for n in (None, *blocksizes):
            got = consumer_predictions(descr, image, fmt, n)
            what = "whole" if n is None else f"blocksize {n}"
            if got.shape != ref.shape:
                raise ExportError(
                    f"bioimageio.core ({fmt}, {what}) returned shape {got.shape}, predict.py {ref.shape}"
                )
            diffs[fmt, what] = float(np.abs(got.astype(np.float64) - ref).max())
    return diffs


def check_consumer_parity(descr: Any, net: UNet, card: ModelCard, out: Path) -> None:
    """ExportError unless bioimageio.core's whole-image and blockwise predictions of a synthetic image
    (:func:`parity_shape`, blocksizes :data:`PARITY_BLOCKSIZES`) equal predict.py's to
    :data:`PARITY_TOLERANCE` for every weight format of the package.

    Exception, logged as a warning: percentile normalisation in whole-image mode. bioimageio.core pads the
    image by the halo before its preprocessing there, so its percentiles are those of the mirrored image,
    not of the image as in predict.py (blockwise mode measures the image itself and is held to the
    tolerance). Min-max normalisation is unaffected: mirroring adds no new values.
    """
    g = same_size_geometry(net.levels)
    image = synthetic_image(parity_shape(g), net.in_channels, seed=1)
    try:
        diffs = consumer_parity(descr, net, card, image)
    except ExportError as e:
        raise ExportError(f"{out}: {e}") from None
    report = ", ".join(f"{fmt} {what}: {d:.1e}" for (fmt, what), d in diffs.items())
    log.info("bioimage.io consumer parity of %s on %s: %s", out, image.shape[1:], report)
    exempt = {(fmt, what) for fmt, what in diffs if what == "whole" and card.normalization == "percentile"}
    if any(diffs[k] > PARITY_TOLERANCE for k in exempt):
        log.warning(
            "%s: bioimageio.core's whole-image prediction differs from predict.py's by up to %.1e: it "
            "measures the percentiles of the normalisation on the image mirrored by the halo; blockwise "
            "prediction measures them on the image (%s)",
            out,
            max(diffs[k] for k in exempt),
            report,
        )
    bad = {k: d for k, d in diffs.items() if k not in exempt and not d <= PARITY_TOLERANCE}
    if bad:
        raise ExportError(
            f"{out}: bioimageio.core's predictions of a {image.shape[1:]} image differ from predict.py's "
            f"probabilities by more than {PARITY_TOLERANCE:g} (max abs difference per weight format and "
            f"prediction mode: {report}); the package is not written"
        )


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
