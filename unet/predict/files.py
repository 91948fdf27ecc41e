"""Apply a trained model to image files: the library behind ``python predict.py`` (no Hydra here).

``predict_files(ckpt_path, input, output_dir)`` rebuilds model, task, normalisation and element size from
the checkpoint or exported model (:func:`unet.predict.image.load_model`), so no model option is repeated.
``input`` is a file, a directory (its images, not recursive), a glob pattern or a list of these. All inputs
are listed and opened (headers only where the format allows) and checked against the model (channels,
dimensionality) before anything is predicted, so a missing or unreadable file fails at once with an error
naming it.

Outputs per image ``<stem>`` (every file is written atomically, so a file that exists is complete):

* ``<stem>_probabilities.tif``: float32 class probabilities ``(K, Y, X)`` / ``(K, Z, Y, X)`` on the image's
  own grid, ImageJ hyperstack with the element size (µm) when known.
* ``<stem>_labels.tif``: instance labels (connected components of each foreground class, 8-/26-connected,
  Falk 2019 M6.1; components smaller than the task's ``min_size`` removed), uint16 ImageJ TIFF (OME-TIFF
  int32 beyond 65535 objects).
* ``<stem>_rois.zip``: ImageJ/Fiji ROI set: segmentation: one traced polygon (or composite) ROI per object
  and z slice (:func:`unet.io.write_rois`, rasterises back to the labels exactly); detection: one
  multi-point ROI per class (:func:`unet.io.write_point_rois`).
* ``<stem>_points.csv`` (detection only): one point per component, its centroid weighted by the foreground
  probability (:func:`unet.postprocess.detection_points`, as validation scores it), columns
  ``index, axis-0, axis-1[, axis-2]`` (napari opens the file as a Points layer as it is) then
  ``[z,] y, x, class[, z_um], y_um, x_um`` (:func:`unet.io.write_points_csv`).
* ``<stem>_objects.csv``: one row per labelled object (:func:`unet.postprocess.measure_objects` with the
  raw image's intensities and the element size): label, class, centroid, area/volume, equivalent
  diameter, perimeter (2D), mean/max intensity per channel, bounding box (only the header if there are
  no objects).

and ``summary.csv`` (:func:`unet.postprocess.summarize`: per image the object count, count per class and
mean sizes, plus the ``probabilities`` file name), rewritten at the end of every run and printed by
``predict.py``. Re-running skips an image whose outputs are all present (its objects are read back for
the summary); ``overwrite=True`` recomputes it.

Out-of-core prediction: an image whose float32 probabilities (``K * pixels * 4`` bytes) exceed
``out_of_core_mib`` is never loaded; it is predicted tile by tile into ``<stem>_probabilities.zarr`` and its
labels, objects, ROIs and points are made block by block with bounded memory (:mod:`unet.predict.jobs`,
which also runs the in-memory images). ``out_of_core_mib=0`` sends every image down this path.

Tile shape: ``tile_shape`` if given; else the largest valid tile within ``memory_budget_mib``
(:func:`unet.memory.tile_shape_for_budget`, capped at the image plus its halo); else one tile covering
the image for in-memory images and a budget of :data:`unet.predict.jobs.DEFAULT_OUT_OF_CORE_BUDGET_MIB`
for out-of-core ones.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from glob import glob
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from unet import io, postprocess
from unet.data.preprocess import scale_factors
from unet.hardware import (
    check_device,
    default_tile_budget_mib,
    precision_reason,
    resolve_precision,
    slow_precision_note,
)
from unet.loading import EXPORTED_SUFFIXES, is_exported
from unet.memory import tile_shape_for_budget
from unet.models import shapes
from unet.models.card import ModelCard, geometry_of
from unet.models.norms import is_tile_dependent
from unet.predict.image import load_model
from unet.predict.jobs import MIB, Job, predict_in_memory, predict_out_of_core
from unet.tiling import TTA_MODES, check_tta, validate_image
from unet.validation import NonFiniteImage, check_element_size

log = logging.getLogger(__name__)

__all__ = [
    "EXPORTED_SUFFIXES",
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "SUMMARY_NAME",
    "PredictionFailed",
    "list_inputs",
    "predict_files",
]

#: Output file suffixes by role (``<stem><suffix>``).
OUTPUT_SUFFIXES: dict[str, str] = {
    "probabilities": "_probabilities.tif",
    "probabilities_zarr": "_probabilities.zarr",
    "labels": "_labels.tif",
    "labels_zarr": "_labels.zarr",
    "rois": "_rois.zip",
    "points": "_points.csv",
    "objects": "_objects.csv",
}
#: The per-run summary table in the output directory.
SUMMARY_NAME = "summary.csv"
#: Inputs taken from directories and globs: image files and ``.zarr`` array directories.
INPUT_SUFFIXES: tuple[str, ...] = (*io.IMAGE_SUFFIXES, io.ZARR_SUFFIX)
#: Smallest block (bytes) of the streaming min/max pass.
MIN_STREAM_BLOCK_BYTES = 256 * 1024


class PredictionFailed(ValueError):
    """Some images could not be predicted; every other image was. ``failures``: (path, reason) per image;
    ``summary``: the rows of the images that were predicted (as in ``summary.csv``)."""

    def __init__(self, failures: Sequence[tuple[Path, str]], summary: list[dict[str, Any]]) -> None:
        self.failures = list(failures)
        self.summary = summary
        lines = [f"  {p}: {reason}" for p, reason in self.failures]
        super().__init__(
            f"{len(self.failures)} image(s) could not be predicted ({len(summary)} were):\n"
            + "\n".join(lines)
        )


# ----------------------------------------------------------------------------------------------------
# inputs and planning
# ----------------------------------------------------------------------------------------------------


def _is_input(path: Path) -> bool:
    low = path.name.lower()
    if low.endswith(io.ZARR_SUFFIX):
        return path.is_dir()
    return path.is_file() and low.endswith(io.IMAGE_SUFFIXES)


def _is_own_output(path: Path, output_dir: Path | None) -> bool:
    """A probability/label file written by this module into ``output_dir`` (not an input)."""
    if output_dir is None or path.parent.resolve() != output_dir.resolve():
        return False
    low = path.name.lower()
    return low.endswith(
        tuple(OUTPUT_SUFFIXES[k] for k in ("probabilities", "probabilities_zarr", "labels", "labels_zarr"))
    )


def list_inputs(
    inputs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Input images from files, directories (non-hidden images and ``.zarr`` arrays in it, sorted) and globs.

    Files written by :func:`predict_files` into ``output_dir`` (``*_probabilities.*``, ``*_labels.tif``) are
    not taken from a directory or glob, so the output directory may be the input directory.

    Raises:
        FileNotFoundError: A file or directory does not exist, or a glob matches nothing (names it).
        DataFileError: A file is not a supported image, a directory holds no image, or two inputs have the
            same stem (their outputs would collide).
    """
    entries = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not entries:
        raise ValueError("no input given")
    out_dir = None if output_dir is None else Path(output_dir)
    found: list[Path] = []
    for entry in entries:
        text = os.fspath(entry)
        p = Path(text)
        if p.is_dir() and not p.name.lower().endswith(io.ZARR_SUFFIX):
            files = [
                f
                for f in sorted(p.iterdir())
                if not f.name.startswith(".") and _is_input(f) and not _is_own_output(f, out_dir)
            ]
            if not files:
                raise io.DataFileError(p, f"directory has no images ({', '.join(INPUT_SUFFIXES)})")
            found += files
        elif p.exists():
            if not _is_input(p):
                raise io.DataFileError(p, f"not a supported image (supported: {', '.join(INPUT_SUFFIXES)})")
            found.append(p)
        elif any(c in text for c in "*?["):
            matches = [Path(m) for m in sorted(glob(text))]
            matches = [m for m in matches if _is_input(m) and not _is_own_output(m, out_dir)]
            if not matches:
                raise FileNotFoundError(f"{text}: no image matches this pattern")
            found += matches
        else:
            raise FileNotFoundError(f"{p}: file not found")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    by_stem: dict[str, Path] = {}
    for p in unique.values():
        stem = io.file_stem(p, INPUT_SUFFIXES)
        if stem in by_stem:
            raise io.DataFileError(
                p, f"has the same name {stem!r} as {by_stem[stem]}; their outputs would overwrite each other"
            )
        by_stem[stem] = p
    return list(unique.values())


def _plan_job(
    path: Path,
    net: Any,
    card: ModelCard,
    task: Any,
    output_dir: Path,
    element_size: float | Sequence[float] | None,
    out_of_core_bytes: float,
) -> Job:
    data = io.open_image(path, spatial_dims=net.spatial_dims)
    validate_image(data.array, net.in_channels, net.spatial_dims, name=str(path))
    shape = tuple(int(s) for s in data.array.shape[1:])
    es = data.element_size
    if es is None:
        es = check_element_size(element_size, len(shape), name=f"{path}: element_size", broadcast=True)
    elif element_size is not None:
        log.debug("%s: using the element size %s from the file, not element_size=%s", path, es, element_size)
    if es is None and card.element_size is not None:
        log.warning(
            "%s: no element size (metadata or element_size=); predicted at its own grid, although the model "
            "was trained at %s µm",
            path,
            card.element_size,
        )
    prob_bytes = net.num_classes * math.prod(shape) * 4
    out_of_core = prob_bytes > out_of_core_bytes
    if out_of_core:
        what = (
            f"{path}: out-of-core prediction (its {prob_bytes / MIB:.1f} MiB of float32 probabilities "
            f"exceed out_of_core_mib={out_of_core_bytes / MIB:g})"
        )
        if scale_factors(es, card.element_size) is not None:
            raise ValueError(
                f"{what} cannot rescale the image from its element size {es} µm to the model's "
                f"{card.element_size} µm; resample the image to the model's element size first, or raise "
                "out_of_core_mib to predict it in memory"
            )
        if card.normalization not in ("minmax", "none"):
            raise ValueError(
                f"{what} supports minmax or no normalisation, the model uses {card.normalization!r}"
            )
    name = io.file_stem(path, INPUT_SUFFIXES)
    roles = ["probabilities_zarr", "labels_zarr"] if out_of_core else ["probabilities", "labels"]
    roles += ["rois", "objects"] + (["points"] if task.name == "detection" else [])
    outputs = {r: output_dir / f"{name}{OUTPUT_SUFFIXES[r]}" for r in roles}
    return Job(path, name, int(data.array.shape[0]), shape, es, out_of_core, outputs)


# ----------------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------------


class _TileChooser:
    """Tile shape per image (cached per shape): explicit, from a memory budget, or None (one tile)."""

    def __init__(self, net: Any, card: ModelCard, tile_shape, budget_mib, batch_size: int, device) -> None:
        self.net, self.card, self.batch_size, self.device = net, card, batch_size, device
        self.geometry: Any = None  # the UNet the memory estimate runs on (built when a tile is chosen)
        self.tile_shape = None if tile_shape is None else tuple(int(t) for t in tile_shape)
        self.budget_mib = budget_mib
        self._cache: dict[tuple[tuple[int, ...], float | None], tuple[int, ...] | None] = {}

    def __call__(
        self, shape: tuple[int, ...], default_budget_mib: float | None = None
    ) -> tuple[int, ...] | None:
        if self.tile_shape is not None:
            return self.tile_shape
        budget = self.budget_mib if self.budget_mib is not None else default_budget_mib
        if budget is None:
            return None
        key = (shape, budget)
        if key not in self._cache:
            if self.geometry is None:
                self.geometry = geometry_of(self.net, self.card)
            self._cache[key] = tile_shape_for_budget(
                self.geometry,
                int(budget * MIB),
                batch_size=self.batch_size,
                max_shape=shapes.input_shape_for_output(self.net.levels, shape),
                element_size=self.card.element_size,
                device=self.device,
            )
            log.info("tile %s for images of %s within %g MiB", self._cache[key], shape, budget)
        return self._cache[key]


def predict_files(
    ckpt_path: str | os.PathLike,
    input: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    tile_shape: Sequence[int] | None = None,
    memory_budget_mib: float | None = None,
    batch_size: int = 1,
    tta: str = "none",
    device: str | torch.device = "cpu",
    precision: str = "auto",
    element_size: float | Sequence[float] | None = None,
    overwrite: bool = False,
    out_of_core_mib: float = 1024.0,
    progress: bool = True,
    fail_fast: bool = False,
    shard: tuple[int, int] = (0, 1),
    barrier: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict image files with a checkpoint and write labels, ROIs, points, measurements and a summary.

    See the module docstring for the outputs, the skipping of finished images and out-of-core prediction.

    Args:
        ckpt_path: Checkpoint written by training (holds the model card), or a model exported by
            ``python -m unet.export`` (``.pt`` TorchScript or ``.onnx``; the card travels inside).
        input: Image file, directory, glob pattern, or a list of these (``.zarr`` directories are images).
        output_dir: Output directory (created).
        tile_shape: Network input tile (a valid shape); default: from ``memory_budget_mib``.
        memory_budget_mib: Memory for one forward pass of ``batch_size`` tiles; the largest valid tile that
            fits is used. Default (with ``tile_shape`` None): from the machine
            (:func:`unet.hardware.default_tile_budget_mib`: half the free GPU memory, or an eighth of the
            available RAM up to 1 GiB on a CPU), so peak memory does not grow with the tile.
        batch_size: Tiles per forward pass.
        tta: Test-time augmentation, ``"none"``, ``"flips"`` or ``"d4"``.
        device: Where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        precision: ``"auto"``: the rule training uses (bf16 autocast where the CPU or GPU computes bf16
            natively, float32 elsewhere; :func:`unet.hardware.auto_precision`), so a model is applied in the
            precision its checkpoint was validated and selected in; ``"32-true"`` forces float32,
            ``"bf16-mixed"`` forces bf16 (emulated and slow on a CPU without it).
        element_size: µm per pixel (a number or one per spatial axis) of images without element size metadata.
        overwrite: Recompute images whose outputs are all present.
        out_of_core_mib: Images whose float32 probabilities exceed this many MiB are predicted out of core.
        progress: Show tqdm progress bars (images and tiles).
        fail_fast: Stop at the first image that fails; by default every other image is still predicted and
            :class:`PredictionFailed` lists the failures at the end.
        shard: ``(rank, world_size)``: this process predicts inputs ``rank, rank + world_size, ...`` of the
            sorted input list (``predict.py devices=N num_nodes=M`` sets it through Lightning Fabric). With
            more than one process each writes its part of the summary, ``barrier`` (required then) waits for
            all, and rank 0 merges ``summary.csv`` in input order and raises for every failed image.

    Returns:
        The summary rows (as written to ``summary.csv``), one per predicted input in input order.

    Raises:
        FileNotFoundError: Checkpoint or input missing (before anything is predicted).
        DataFileError: A directory without images or an unsupported input file (before anything is
            predicted).
        ValueError: Invalid option or device, or (with ``fail_fast``) an image the model cannot be applied to.
        PredictionFailed: After predicting every good image, when some could not be read or predicted (wrong
            channels or dimensionality, unreadable, disk full...); lists each with its reason.
    """
    for name, value in (("ckpt_path", ckpt_path), ("input", input), ("output_dir", output_dir)):
        if value is None or value == "":
            raise ValueError(f"{name} is required")
    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found")
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if memory_budget_mib is not None and not memory_budget_mib > 0:
        raise ValueError(f"memory_budget_mib must be > 0, got {memory_budget_mib}")
    if not out_of_core_mib >= 0:
        raise ValueError(f"out_of_core_mib must be >= 0, got {out_of_core_mib}")
    out_dir = Path(output_dir)
    paths = list_inputs(input, out_dir)
    dev = check_device(device)
    applied = model_precision(ckpt, precision, dev)
    net, task, card = load_model(ckpt)
    norm = str(card.net.get("norm") or "none")
    if is_tile_dependent(norm):
        log.warning(
            "%s: the network has %s normalisation, whose statistics depend on the tile: its predictions "
            "change with tile_shape / memory_budget_mib (not seam-free); give a tile_shape that covers the "
            "whole image for results that do not depend on the machine",
            ckpt,
            norm,
        )
    net.to(dev)
    if tile_shape is not None:
        shapes.output_shape(net.levels, tuple(int(t) for t in tile_shape))  # ValueError names valid shapes
    elif memory_budget_mib is None:
        memory_budget_mib = default_tile_budget_mib(dev)
        log.info(
            "tile memory budget %.0f MiB (from this machine; memory_budget_mib= overrides)", memory_budget_mib
        )
    ooc_bytes = float(out_of_core_mib) * MIB
    rank, world = (int(shard[0]), int(shard[1]))
    if world > 1 and barrier is None:
        raise ValueError("predicting with several processes needs a barrier to merge the summary")
    order = {io.file_stem(p, INPUT_SUFFIXES): i for i, p in enumerate(paths)}
    paths = paths[rank::world]
    failures: list[tuple[Path, str]] = []
    jobs = []
    for p in paths:  # every input is opened and checked before anything is predicted
        try:
            job = _plan_job(p, net, card, task, out_dir, element_size, ooc_bytes)
            # the grid the network runs on: the model's element size, else the image's
            check_tta(tta, card.element_size or job.element_size, str(job.path))
            jobs.append(job)
        except (ValueError, OSError) as e:
            if fail_fast:
                raise
            log.error("%s: skipped: %s", p, e)
            failures.append((p, _reason(e, p)))
    if not jobs and failures and world == 1:  # nothing to predict: nothing is written
        raise PredictionFailed(failures, [])
    check_writable_folder(out_dir)  # before any image is predicted
    for job in jobs:  # hidden temporaries a killed run left behind
        names = [f"{job.name}{suffix}" for suffix in OUTPUT_SUFFIXES.values()]
        for stale in io.clean_stale_temporaries(out_dir, names):
            log.info("removed %s (left by an interrupted run)", stale)
    log.info(
        "%d image(s), %s model (%d class(es)), %d out of core, precision %s -> %s",
        len(jobs),
        task.name,
        net.num_classes,
        sum(j.out_of_core for j in jobs),
        precision_reason(
            dev.type if dev.type != "cuda" else "gpu", applied, requested=precision, key="precision"
        )
        if not is_exported(ckpt)
        else "32-true (an exported model)",
        out_dir,
    )
    slow = None if is_exported(ckpt) else slow_precision_note(dev.type, applied)
    if slow:
        log.warning("%s", slow)
    choose_tile = _TileChooser(net, card, tile_shape, memory_budget_mib, int(batch_size), dev)
    block_bytes = min(max(ooc_bytes / 8, MIN_STREAM_BLOCK_BYTES), 256 * MIB)
    rows_per_image: dict[str, list[dict[str, Any]]] = {}
    jobs_failed: set[str] = set()
    redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
    with redirect:
        for job in tqdm(jobs, desc="images", unit="image", disable=not progress):
            if job.done and not overwrite:
                log.info("%s: outputs present, skipped (overwrite=true recomputes)", job.path)
                rows_per_image[job.name] = io.read_csv(job.outputs["objects"])
                continue
            opts = {
                "batch_size": int(batch_size),
                "tta": tta,
                "device": dev,
                "progress": progress,
                "precision": applied,
            }
            try:
                if job.out_of_core:
                    rows_per_image[job.name] = predict_out_of_core(
                        job, net, task, card, choose_tile, block_bytes=block_bytes, **opts
                    )
                else:
                    rows_per_image[job.name] = predict_in_memory(job, net, task, card, choose_tile, **opts)
            except (ValueError, OSError, RuntimeError) as e:
                if fail_fast:
                    raise
                # bad values are bad input, found only when the pixels are read: skipped like a bad header
                log.error("%s: %s: %s", job.path, "skipped" if isinstance(e, NonFiniteImage) else "failed", e)
                failures.append((job.path, _reason(e, job.path)))
                jobs_failed.add(job.name)

    in_memory = {row["image"]: row for row in postprocess.summarize(rows_per_image)}
    summary: list[dict[str, Any]] = []
    for job in jobs:
        if job.name in jobs_failed:
            continue
        row = dict(in_memory.get(job.name, {"image": job.name, "count": None}))
        row["probabilities"] = job.probabilities.name
        summary.append(row)
    if world > 1:
        summary, failures = _merge_shards(out_dir, rank, world, summary, failures, order, barrier)
        if rank != 0:
            return summary  # rank 0 writes the merged summary and reports every failure
    fields = ["image", "count"]
    for row in summary:
        fields += [k for k in row if k not in fields and k != "probabilities"]
    io.write_csv(out_dir / SUMMARY_NAME, summary, fieldnames=[*fields, "probabilities"])
    if failures:
        raise PredictionFailed(failures, summary)
    return summary


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove it takes files (a probe file is written and removed), so that a
    read-only or full output folder stops the run before any work instead of failing every write.

    Raises:
        PermissionError / OSError: naming the folder and the problem.
    """
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = e.strerror or str(e)
        raise type(e)(
            e.errno, f"{folder}: output folder is not writable ({why}); choose another output_dir"
        ) from None


def _merge_shards(
    out_dir: Path,
    rank: int,
    world: int,
    summary: list[dict[str, Any]],
    failures: list[tuple[Path, str]],
    order: Mapping[str, int],
    barrier: Callable[[], None],
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Every rank writes its summary rows and failures to a part file; after the barrier rank 0 merges them
    in input order (and removes the parts); other ranks get their own rows back."""
    import json

    part = out_dir / f".summary.part{rank:05d}.json"

    def plain(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    rows = [{k: plain(v) for k, v in r.items()} for r in summary]
    payload = {"rows": rows, "failures": [[str(p), why] for p, why in failures]}
    io.write_text(part, json.dumps(payload, default=str))
    barrier()
    if rank != 0:
        return summary, failures
    merged_rows: list[dict[str, Any]] = []
    merged_failures: list[tuple[Path, str]] = []
    for r in range(world):
        path = out_dir / f".summary.part{r:05d}.json"
        data = json.loads(io.read_text(path))
        merged_rows += data["rows"]
        merged_failures += [(Path(p), why) for p, why in data["failures"]]
        path.unlink()
    merged_rows.sort(key=lambda row: order.get(str(row["image"]), 0))
    merged_failures.sort(key=lambda f: order.get(io.file_stem(f[0], INPUT_SUFFIXES), 0))
    return merged_rows, merged_failures


def model_precision(path: str | os.PathLike, precision: str | None, device: Any) -> str:
    """The precision the model file ``path`` is applied in on ``device``: a checkpoint by
    :func:`unet.hardware.resolve_precision` (``auto``: training's rule), an exported graph (made for consumers
    that run float32) always in float32; asking for bf16 with an exported graph is refused."""
    if is_exported(path):
        if precision not in ("auto", None, "32-true", "32"):
            raise ValueError(
                f"{path}: an exported model runs in float32; precision={precision} needs the checkpoint"
            )
        return "32-true"
    return resolve_precision(precision, device)


def _reason(e: BaseException, path: Path) -> str:
    """The error message without the path it would repeat."""
    text = str(e)
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
