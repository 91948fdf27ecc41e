"""Apply a trained model to image files: the library behind ``python predict.py`` (no Hydra here).

``predict_files(ckpt_path, inputs, output_dir)`` rebuilds model, task, normalisation and element size from
the checkpoint (:func:`unet.inference.load_model`), so no model option is repeated. ``inputs`` are files,
directories (their images, not recursive) or glob patterns. All inputs are listed and opened (headers only
where the format allows) and checked against the model (channels, dimensionality) before anything is
predicted, so a missing or unreadable file fails at once with an error naming it.

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
``out_of_core_mib`` is never loaded. It is opened lazily (:func:`unet.io.open_image`: a memmap for an
uncompressed contiguous TIFF or ``.npy``, a zarr view for a compressed TIFF or a ``.zarr`` directory), its
per-channel minimum and maximum (Falk M4 normalisation) are computed in a streaming pass over blocks of at
most ``out_of_core_mib / 8`` MiB, tiles are read, normalised and predicted one batch at a time
(:func:`unet.tiling.predict_tiled`) and written into ``<stem>_probabilities.zarr`` (chunks = the tile
stride, so each tile fills whole chunks; written under a hidden temporary name and renamed when complete).
Peak memory is thus bounded by the tile batch, not by the image. Limits: the image must already be at the
model's element size (rescaling needs the whole image; a clear error is raised while checking the inputs,
before anything is predicted) and the normalisation must be ``minmax`` or ``none``. Instance labels
(``<stem>_labels.zarr``, uint32, the same ids as in core), the objects table, ROIs and points are then made
block by block with bounded memory (:mod:`unet.ooc`; connected components, the watershed needs the whole
mask). ``out_of_core_mib=0`` sends every image down this path.

Tile shape: ``tile_shape`` if given; else the largest valid tile within ``memory_budget_mib``
(:func:`unet.memory.tile_shape_for_budget`, capped at the image plus its halo); else one tile covering
the image for in-memory images and a budget of :data:`DEFAULT_OUT_OF_CORE_BUDGET_MIB` for out-of-core ones.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from unet import io, postprocess
from unet.data.preprocess import scale_factors, scaled_shape
from unet.hardware import check_device, default_tile_budget_mib
from unet.inference import ModelCard, load_model, predict_image
from unet.memory import tile_shape_for_budget
from unet.models import shapes
from unet.models.unet import UNet
from unet.tiling import TTA_MODES, check_tta, plan_tiles, predict_tiled, validate_image

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUT_OF_CORE_BUDGET_MIB",
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "SUMMARY_NAME",
    "NormalizedView",
    "channel_min_max",
    "config_to_kwargs",
    "list_inputs",
    "predict_files",
    "run",
]

_MIB = 2**20
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
#: Tile memory budget (MiB) of out-of-core images when neither ``tile_shape`` nor a budget is given.
DEFAULT_OUT_OF_CORE_BUDGET_MIB = 1024.0
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
# inputs
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


def _element_size(value: float | Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        es = (float(value),) * ndim
    else:
        es = tuple(float(v) for v in value)
        if len(es) == 1:
            es = es * ndim
    if len(es) != ndim or not all(math.isfinite(v) and v > 0 for v in es):
        raise ValueError(f"element_size {value!r} is not {ndim} positive values (µm) for a {ndim}D image")
    return es


@dataclass
class _Job:
    """One input image and its planned outputs."""

    path: Path
    name: str
    channels: int
    shape: tuple[int, ...]
    element_size: tuple[float, ...] | None
    out_of_core: bool
    outputs: dict[str, Path]

    @property
    def done(self) -> bool:
        return all(p.exists() for p in self.outputs.values())

    @property
    def probabilities(self) -> Path:
        return self.outputs["probabilities_zarr" if self.out_of_core else "probabilities"]


def _plan_job(
    path: Path,
    net: Any,
    card: ModelCard,
    task: Any,
    output_dir: Path,
    element_size: float | Sequence[float] | None,
    out_of_core_bytes: float,
) -> _Job:
    data = io.open_image(path, spatial_dims=net.spatial_dims)
    validate_image(data.array, net.in_channels, net.spatial_dims, name=str(path))
    shape = tuple(int(s) for s in data.array.shape[1:])
    es = data.element_size
    if es is None:
        es = _element_size(element_size, len(shape))
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
            f"{path}: out-of-core prediction (its {prob_bytes / _MIB:.1f} MiB of float32 probabilities "
            f"exceed out_of_core_mib={out_of_core_bytes / _MIB:g})"
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
    return _Job(path, name, int(data.array.shape[0]), shape, es, out_of_core, outputs)


# ----------------------------------------------------------------------------------------------------
# streaming normalisation (out-of-core)
# ----------------------------------------------------------------------------------------------------


def _blocks(
    shape: Sequence[int], channels: int, itemsize: int, block_bytes: float
) -> Iterator[tuple[slice, ...]]:
    """Spatial windows tiling ``shape``, each of at most ``block_bytes`` (at least one pixel row)."""
    shape = tuple(int(s) for s in shape)
    per_pixel = channels * itemsize
    block = list(shape)
    for axis in range(len(shape)):
        inner = math.prod(shape[axis + 1 :]) * per_pixel
        n = int(block_bytes // inner)
        if n >= 1 or axis == len(shape) - 1:
            block[axis] = max(1, min(n, shape[axis]))
            break
        block[axis] = 1
    ranges = [range(0, s, b) for s, b in zip(shape, block)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(a, min(a + b, s)) for a, b, s in zip(starts, block, shape))


def channel_min_max(
    image: Any, block_bytes: float = 64 * _MIB, name: str = "image"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel minimum and maximum of a ``(C, *S)`` array-like, read block by block.

    Equals ``image.min(axis=spatial)``/``max`` but holds at most one block of ``block_bytes`` in memory.

    Raises:
        ValueError: The image contains NaN or infinite values.
    """
    c = int(image.shape[0])
    lo = np.full(c, np.inf)
    hi = np.full(c, -np.inf)
    itemsize = np.dtype(image.dtype).itemsize
    for window in _blocks(image.shape[1:], c, itemsize, block_bytes):
        block = np.asarray(image[(slice(None), *window)])
        axes = tuple(range(1, block.ndim))
        lo = np.minimum(lo, block.min(axis=axes).astype(np.float64))
        hi = np.maximum(hi, block.max(axis=axes).astype(np.float64))
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"{name}: contains NaN or infinite values")
    return lo, hi


class NormalizedView:
    """Lazily normalised float32 ``(C, *S)`` view of an array-like: each read window is normalised.

    ``minmax``: ``(x - lo) / (hi - lo)`` per channel with the float32 arithmetic of
    :func:`unet.data.preprocess.normalize` (a constant channel maps to 0), so tiles read from this view equal
    tiles of the normalised whole image. ``none``: the values as float32.
    """

    def __init__(self, image: Any, lo: np.ndarray, hi: np.ndarray, mode: str = "minmax") -> None:
        if mode not in ("minmax", "none"):
            raise ValueError(f"NormalizedView supports minmax or none, got {mode!r}")
        self.image = image
        self.mode = mode
        self.shape = tuple(int(s) for s in image.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)
        self.lo = np.asarray(lo, dtype=np.float32)
        hi32 = np.asarray(hi, dtype=np.float32)
        self.scale = np.where(hi32 > self.lo, hi32 - self.lo, 1.0).astype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        block = np.array(self.image[key], dtype=np.float32)  # a copy: normalised in place below
        if self.mode == "none":
            return block
        ch = key[0] if isinstance(key, tuple) else key
        bshape = (-1,) + (1,) * (block.ndim - 1)
        block -= self.lo[ch].reshape(bshape)
        block /= self.scale[ch].reshape(bshape)
        return block


# ----------------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tile_progress(total: int, desc: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    with tqdm(total=total, desc=desc, unit="tile", leave=False, disable=not enabled) as bar:

        def update(done: int) -> None:
            bar.update(done - bar.n)

        yield update


class _TileChooser:
    """Tile shape per image (cached per shape): explicit, from a memory budget, or None (one tile)."""

    def __init__(self, net: Any, card: ModelCard, tile_shape, budget_mib, batch_size: int, device) -> None:
        self.net, self.card, self.batch_size, self.device = net, card, batch_size, device
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
            self._cache[key] = tile_shape_for_budget(
                getattr(self.net, "geometry", self.net),
                int(budget * _MIB),
                batch_size=self.batch_size,
                max_shape=shapes.input_shape_for_output(self.net.levels, shape),
                element_size=self.card.element_size,
                device=self.device,
            )
            log.info("tile %s for images of %s within %g MiB", self._cache[key], shape, budget)
        return self._cache[key]


def _object_columns(rows: list[dict[str, Any]], ndim: int, channels: int, es: Any) -> list[str]:
    """Column names of :func:`postprocess.measure_objects` rows (also when there are no objects)."""
    if rows:
        return list(rows[0])
    probe = postprocess.measure_objects(
        np.ones((1,) * ndim, np.int32), image=np.zeros((channels,) + (1,) * ndim, np.float32), element_size=es
    )
    return list(probe[0])


def _read_whole(job: _Job, spatial_dims: int) -> np.ndarray:
    if job.path.is_dir():  # .zarr
        image = np.asarray(io.open_image(job.path, spatial_dims=spatial_dims).array)
    else:
        image = io.read_image(job.path, spatial_dims=spatial_dims).array
    if tuple(image.shape) != (job.channels, *job.shape):
        raise io.DataFileError(job.path, f"read as {image.shape}, opened as {(job.channels, *job.shape)}")
    return image


def _predict_in_memory(job: _Job, net, task, card, choose_tile, *, batch_size, tta, device, progress) -> list:
    image = _read_whole(job, net.spatial_dims)
    es = job.element_size
    model_shape = scaled_shape(job.shape, scale_factors(es, card.element_size))
    tile = choose_tile(model_shape)
    n_tiles = len(plan_tiles(net.levels, model_shape, tile))
    with _tile_progress(n_tiles, job.name, progress) as update:
        probs = predict_image(
            net,
            image,
            element_size=es,
            card=card,
            tile_shape=tile,
            batch_size=batch_size,
            tta=tta,
            device=device,
            progress=update,
            name=str(job.path),
        )
    probs = probs.astype(np.float32, copy=False)
    nd = len(job.shape)
    labels, class_of = task.instance_labels(probs, element_size=es)  # the card's instance method
    rows = postprocess.measure_objects(labels, image=image, element_size=es, class_of=class_of)
    out = job.outputs
    io.write_tiff(out["probabilities"], probs, element_size=es, axes="CYX" if nd == 2 else "CZYX")
    stored = labels.astype(np.uint16) if labels.max(initial=0) < 2**16 else labels
    io.write_tiff(out["labels"], stored, element_size=es, axes="YX" if nd == 2 else "ZYX")
    if task.name == "detection":
        points, classes = postprocess.detection_points(probs, min_size=task.min_size)
        io.write_points_csv(out["points"], points.reshape(-1, nd), classes, element_size=es, napari=True)
        io.write_point_rois(points.reshape(-1, nd), out["rois"], classes)
    else:
        io.write_rois(labels, out["rois"])
    io.write_csv(out["objects"], rows, fieldnames=_object_columns(rows, nd, image.shape[0], es))
    log.info("%s: %d object(s) -> %s", job.path, len(rows), out["labels"].parent)
    return rows


def _predict_out_of_core(
    job: _Job, net, task, card, choose_tile, *, batch_size, tta, device, progress, block_bytes: float
) -> list[dict[str, Any]]:
    view = io.open_image(job.path, spatial_dims=net.spatial_dims).array
    lo, hi = channel_min_max(view, block_bytes, name=str(job.path))
    x = NormalizedView(view, lo, hi, card.normalization)
    tile = choose_tile(job.shape, DEFAULT_OUT_OF_CORE_BUDGET_MIB)
    plan = plan_tiles(net.levels, job.shape, tile)
    k = net.num_classes
    chunks = (k, *(min(st, s) for st, s in zip(plan.stride, job.shape)))
    nd = len(job.shape)
    attrs = {
        "axes": "CYX" if nd == 2 else "CZYX",
        "element_size": None if job.element_size is None else list(job.element_size),
        "source": job.path.name,
        "content": "class probabilities (soft-max), class 0 = background",
    }
    with (
        io.atomic_zarr(job.probabilities, (k, *job.shape), chunks=chunks, dtype=np.float32, attrs=attrs) as z,
        _tile_progress(len(plan), job.name, progress) as update,
    ):
        predict_tiled(
            net,
            x,
            tile_shape=plan.input_tile,
            batch_size=batch_size,
            device=device,
            tta=tta,
            out=z,
            progress=update,
            name=str(job.path),
        )
    # instances, measurements, points and ROIs block by block (unet.ooc: equal to the in-core results)
    from unet import ooc

    out, es = job.outputs, job.element_size
    if getattr(task, "method", "components") == "watershed":
        log.warning("%s: the watershed is not available out of core; connected components are used", job.path)
    _, class_of = ooc.label_out_of_core(job.probabilities, out["labels_zarr"], min_size=task.min_size)
    rows = ooc.measure_out_of_core(out["labels_zarr"], view, element_size=es, class_of=class_of)
    if task.name == "detection":
        points, classes = ooc.detection_points_out_of_core(out["labels_zarr"], job.probabilities, class_of)
        io.write_points_csv(out["points"], points.reshape(-1, nd), classes, element_size=es, napari=True)
        io.write_point_rois(points.reshape(-1, nd), out["rois"], classes)
    else:
        ooc.write_rois_out_of_core(out["labels_zarr"], out["rois"], rows=rows)
    io.write_csv(out["objects"], rows, fieldnames=_object_columns(rows, nd, int(view.shape[0]), es))
    log.info("%s: %d object(s), out of core -> %s", job.path, len(rows), out["labels_zarr"].parent)
    return rows


def predict_files(
    ckpt_path: str | os.PathLike,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    tile_shape: Sequence[int] | None = None,
    memory_budget_mib: float | None = None,
    batch_size: int = 1,
    tta: str = "none",
    device: str | torch.device = "cpu",
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
        inputs: Image file, directory, glob pattern, or a list of these (``.zarr`` directories are images).
        output_dir: Output directory (created).
        tile_shape: Network input tile (a valid shape); default: from ``memory_budget_mib``.
        memory_budget_mib: Memory for one forward pass of ``batch_size`` tiles; the largest valid tile that
            fits is used. Default (with ``tile_shape`` None): from the machine
            (:func:`unet.hardware.default_tile_budget_mib`: half the free GPU memory, or an eighth of the
            available RAM up to 1 GiB on a CPU), so peak memory does not grow with the tile.
        batch_size: Tiles per forward pass.
        tta: Test-time augmentation, ``"none"``, ``"flips"`` or ``"d4"``.
        device: Where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
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
    paths = list_inputs(inputs, out_dir)
    dev = check_device(device)
    net, task, card = load_any_model(ckpt)
    net.to(dev)
    if tile_shape is not None:
        shapes.output_shape(net.levels, tuple(int(t) for t in tile_shape))  # ValueError names valid shapes
    elif memory_budget_mib is None:
        memory_budget_mib = default_tile_budget_mib(dev)
        log.info(
            "tile memory budget %.0f MiB (from this machine; memory_budget_mib= overrides)", memory_budget_mib
        )
    ooc_bytes = float(out_of_core_mib) * _MIB
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
    out_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:  # hidden temporaries a killed run left behind
        names = [f"{job.name}{suffix}" for suffix in OUTPUT_SUFFIXES.values()]
        for stale in io.clean_stale_temporaries(out_dir, names):
            log.info("removed %s (left by an interrupted run)", stale)
    log.info(
        "%d image(s), %s model (%d class(es)), %d out of core -> %s",
        len(jobs),
        task.name,
        net.num_classes,
        sum(j.out_of_core for j in jobs),
        out_dir,
    )
    choose_tile = _TileChooser(net, card, tile_shape, memory_budget_mib, int(batch_size), dev)
    block_bytes = min(max(ooc_bytes / 8, MIN_STREAM_BLOCK_BYTES), 256 * _MIB)
    rows_per_image: dict[str, list[dict[str, Any]]] = {}
    jobs_failed: set[str] = set()
    redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
    with redirect:
        for job in tqdm(jobs, desc="images", unit="image", disable=not progress):
            if job.done and not overwrite:
                log.info("%s: outputs present, skipped (overwrite=true recomputes)", job.path)
                rows_per_image[job.name] = io.read_csv(job.outputs["objects"])
                continue
            opts = {"batch_size": int(batch_size), "tta": tta, "device": dev, "progress": progress}
            try:
                if job.out_of_core:
                    rows_per_image[job.name] = _predict_out_of_core(
                        job, net, task, card, choose_tile, block_bytes=block_bytes, **opts
                    )
                else:
                    rows_per_image[job.name] = _predict_in_memory(job, net, task, card, choose_tile, **opts)
            except (ValueError, OSError, RuntimeError) as e:
                if fail_fast:
                    raise
                log.error("%s: failed: %s", job.path, e)
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


#: file endings of exported models (``python -m unet.export``) that predict accepts instead of a checkpoint
EXPORTED_SUFFIXES = (".onnx", ".pt", ".ts", ".torchscript", ".jit")


def load_any_model(path: str | os.PathLike) -> tuple[Any, Any, ModelCard]:
    """(net, task, card) from a training checkpoint (``.ckpt``) or an exported TorchScript/ONNX model (the
    card travels inside the file), so a model can be shipped without the training stack."""
    p = Path(path)
    if p.suffix.lower() in EXPORTED_SUFFIXES:
        from unet.export import load_exported

        net, card, task = load_exported(p)
        # a real UNet of the same architecture, for the memory estimate of the tile (not registered as a
        # submodule: it never runs)
        net.__dict__["geometry"] = UNet(**card.net)
        return net, task, card
    return load_model(str(p), map_location="cpu")


def _reason(e: BaseException, path: Path) -> str:
    """The error message without the path it would repeat."""
    text = str(e)
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


# ----------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------


#: ``conf/predict.yaml`` key -> :func:`predict_files` argument.
_CONFIG_KEYS = {
    "ckpt_path": "ckpt_path",
    "input": "inputs",
    "output_dir": "output_dir",
    "tile_shape": "tile_shape",
    "memory_budget_mib": "memory_budget_mib",
    "batch_size": "batch_size",
    "tta": "tta",
    "device": "device",
    "element_size": "element_size",
    "overwrite": "overwrite",
    "out_of_core_mib": "out_of_core_mib",
    "progress": "progress",
    "fail_fast": "fail_fast",
}
#: ``conf/predict.yaml`` keys for the processes (``predict.py`` launches them with Lightning Fabric)
_LAUNCH_KEYS = ("devices", "num_nodes")


def config_to_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``conf/predict.yaml`` values (plain mapping, resolved) -> :func:`predict_files` keyword arguments."""
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS) - set(_LAUNCH_KEYS) - {"hydra"})
    if unknown:
        raise ValueError(f"unknown predict option(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    for key in ("ckpt_path", "input", "output_dir"):
        if cfg.get(key) in (None, ""):
            raise ValueError(f"{key} is required")
    return {_CONFIG_KEYS[k]: v for k, v in cfg.items() if k in _CONFIG_KEYS}


def run(cfg: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Path]:
    """``predict.py``: predict with the options of ``conf/predict.yaml``; -> (summary rows, output dir).

    ``devices``/``num_nodes`` above 1 (or a launch by torchrun/SLURM with several tasks) shard the inputs over
    processes with Lightning Fabric (DDP strategy; gloo on CPUs, NCCL on GPUs): each process predicts its
    share on its own device, every output is written once and atomically, and rank 0 merges the summary.
    """
    kwargs = config_to_kwargs(cfg)
    devices, num_nodes = int(cfg.get("devices", 1) or 1), int(cfg.get("num_nodes", 1) or 1)
    if devices * num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from lightning.fabric import Fabric

        cuda = str(kwargs.get("device", "cpu")).startswith("cuda")
        fabric = Fabric(
            accelerator="cuda" if cuda else "cpu", devices=devices, num_nodes=num_nodes, strategy="ddp"
        )
        fabric.launch()
        kwargs.update(
            device=fabric.device,
            shard=(fabric.global_rank, fabric.world_size),
            barrier=fabric.barrier,
            progress=bool(kwargs.get("progress", True)) and fabric.global_rank == 0,
        )
    return predict_files(**kwargs), Path(kwargs["output_dir"])
