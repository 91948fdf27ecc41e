"""Predicting one planned image of :func:`unet.predict.predict_files`: in memory or out of core.

In memory (:func:`predict_in_memory`): the image is read whole, predicted
(:func:`unet.predict.image.predict_image`, rescaled to the model's element size and back) and its labels,
ROIs, points and measurements are written.

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
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from unet import io, postprocess
from unet.data.preprocess import scale_factors, scaled_shape
from unet.predict.image import predict_image
from unet.tiling import plan_tiles, predict_tiled
from unet.validation import NonFiniteImage

log = logging.getLogger(__name__)

MIB = 2**20
#: Tile memory budget (MiB) of out-of-core images when neither ``tile_shape`` nor a budget is given.
DEFAULT_OUT_OF_CORE_BUDGET_MIB = 1024.0


@dataclass
class Job:
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
    image: Any, block_bytes: float = 64 * MIB, name: str = "image"
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
            raise NonFiniteImage(f"{name}: contains NaN or infinite values")
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


def _object_columns(rows: list[dict[str, Any]], ndim: int, channels: int, es: Any) -> list[str]:
    """Column names of :func:`postprocess.measure_objects` rows (also when there are no objects)."""
    if rows:
        return list(rows[0])
    probe = postprocess.measure_objects(
        np.ones((1,) * ndim, np.int32), image=np.zeros((channels,) + (1,) * ndim, np.float32), element_size=es
    )
    return list(probe[0])


def _read_whole(job: Job, spatial_dims: int) -> np.ndarray:
    if job.path.is_dir():  # .zarr
        image = np.asarray(io.open_image(job.path, spatial_dims=spatial_dims).array)
    else:
        image = io.read_image(job.path, spatial_dims=spatial_dims).array
    if tuple(image.shape) != (job.channels, *job.shape):
        raise io.DataFileError(job.path, f"read as {image.shape}, opened as {(job.channels, *job.shape)}")
    return image


def predict_in_memory(
    job: Job, net, task, card, choose_tile, *, batch_size, tta, device, progress, precision="32-true"
) -> list:
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
            precision=precision,
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


def predict_out_of_core(
    job: Job,
    net,
    task,
    card,
    choose_tile,
    *,
    batch_size,
    tta,
    device,
    progress,
    block_bytes: float,
    precision: str = "32-true",
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
            tile_shape=plan.tile_shape,
            batch_size=batch_size,
            device=device,
            tta=tta,
            out=z,
            progress=update,
            name=str(job.path),
            precision=precision,
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
