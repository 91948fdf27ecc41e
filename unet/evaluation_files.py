"""Prediction and ground-truth files of :mod:`unet.evaluation`: loading them and pairing them by key.

File formats accepted (both for predictions and ground truth; see :func:`load_prediction`):

* segmentation: instance label image (TIFF, PNG, BMP, ``.npy``; a binary 0/255 or 0/1 mask is split
  into connected components with full connectivity -- 8-neighbourhood in 2D, 26 in 3D, as M6.1), or an
  ImageJ ROI set (``.zip`` / ``.roi``).
* detection: point CSV (:func:`unet.io.read_points_csv`), ImageJ ROI set with multi-point ROIs (area
  ROIs only: their centroids), or a dot / label image (each connected region of equal non-zero value is one
  point at its centroid: single-pixel dots, small drawn disks, class-coded dot images and instance label
  images all work). Point classes are ignored (class-agnostic evaluation).
* em: probability image (float in ``[0, 1]``; integer images are scaled, see :func:`load_prediction`) for
  the prediction, binary image (non-zero = cell interior) for the ground truth.

Pairing (:func:`match_files`): files are matched by *key*, the file name without its extension
(``.ome.tif`` counts as one extension) and without one trailing role suffix ``_labels``, ``_points``,
``_probabilities`` or ``_rois`` (case-insensitive). So ``img1.tif``, ``img1_labels.tif`` and
``img1_points.csv`` all have the key ``img1``; a directory written by ``predict.py`` (``<stem>_labels.tif``,
``<stem>_points.csv``, ``<stem>_probabilities.tif`` per image) pairs with a ground-truth directory of plain
``<stem>.<ext>`` files. If several files in one directory have the same key, the one preferred for the
task is used (segmentation: ``_labels`` image, plain image, ``_rois``/plain ROI set; detection: ``_points``
CSV, plain CSV, ROI set, image; em: ``_probabilities`` image, plain image, ``_labels`` image); two files of
equal preference (e.g. ``a.tif`` and ``a.png``) are an error. A stem that itself ends in a role suffix loses
it too (``cell_labels.tif`` has key ``cell``), so name such ground truth consistently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.measure import label as label_regions

from unet import io
from unet.io import DataFileError
from unet.postprocess import label_centroids, mask_to_instances

logger = logging.getLogger(__name__)

__all__ = [
    "ROLE_SUFFIXES",
    "TASKS",
    "check_task",
    "load_ground_truth",
    "load_pair",
    "load_prediction",
    "match_files",
]

PathLike = str | os.PathLike

#: The evaluation tasks.
TASKS: tuple[str, ...] = ("segmentation", "detection", "em")
#: Role suffixes stripped from file stems when pairing (``predict.py`` writes ``<stem><suffix>.<ext>``).
ROLE_SUFFIXES: tuple[str, ...] = ("_labels", "_points", "_probabilities", "_rois")

_IMAGE = "image"
_CSV = "csv"
_ROI = "roi"
_KINDS: dict[str, tuple[str, ...]] = {
    _IMAGE: io.IMAGE_SUFFIXES,
    _CSV: (".csv",),
    _ROI: (".zip", ".roi"),
}
_ALL_SUFFIXES: tuple[str, ...] = tuple(s for v in _KINDS.values() for s in v)
# per task: accepted role suffixes (most preferred first) and accepted file kinds (most preferred first)
_PREFERENCE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "segmentation": (("_labels", "", "_rois"), (_IMAGE, _ROI)),
    "detection": (("_points", "", "_rois", "_labels"), (_CSV, _ROI, _IMAGE)),
    "em": (("_probabilities", "", "_labels"), (_IMAGE,)),
}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def _kind(path: Path) -> str | None:
    low = path.name.lower()
    for kind, suffixes in _KINDS.items():
        if low.endswith(suffixes):
            return kind
    return None


def _split_name(path: Path) -> tuple[str, str]:
    """``(key, role)`` of a file: name without extension and without one trailing role suffix."""
    stem = io.file_stem(path, _ALL_SUFFIXES)
    for role in ROLE_SUFFIXES:
        if stem.lower().endswith(role) and len(stem) > len(role):
            return stem[: -len(role)], role
    return stem, ""


# ----------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------


def _roi_shape(paths: Sequence[Path], ndim: int | None) -> tuple[int, ...]:
    """An image shape enclosing the ROIs of all ``paths`` (3D if ``ndim == 3`` or a ROI is on slice > 1)."""
    ext = np.max([io.roi_extent(p) for p in paths], axis=0)
    if ndim is None:
        ndim = 3 if ext[0] > 1 else 2
    return (max(int(ext[0]), 1), int(ext[1]), int(ext[2])) if ndim == 3 else (int(ext[1]), int(ext[2]))


def _is_binary(labels: np.ndarray) -> bool:
    """True if the non-zero values of ``labels`` are all equal (a 0/1 or 0/255 mask)."""
    if labels.size == 0:
        return True
    top = labels.max()
    return top == 0 or not np.any((labels != 0) & (labels != top))


def _centroids(labels: np.ndarray) -> np.ndarray:
    """Centroid of every connected region of equal non-zero value (full connectivity), ``(N, ndim)``."""
    return label_centroids(label_regions(labels, background=0, connectivity=labels.ndim))


def _check_shape(path: Path, shape: tuple[int, ...] | None, got: tuple[int, ...]) -> None:
    if shape is not None and tuple(shape) != tuple(got):
        raise DataFileError(path, f"has spatial shape {tuple(got)}, expected {tuple(shape)}")


def _scale_probabilities(prob: np.ndarray, path: Path) -> np.ndarray:
    if prob.dtype.kind == "b":
        return prob.astype(np.float64)
    if prob.dtype.kind in "iu":
        top = int(prob.max()) if prob.size else 0
        if prob.size and int(prob.min()) < 0:
            raise DataFileError(path, "probability image has negative values")
        scale = 1.0 if top <= 1 else 255.0 if top <= 255 else 65535.0 if top <= 65535 else None
        if scale is None:
            raise DataFileError(path, f"integer probability image with values up to {top}; expected <= 65535")
        return prob.astype(np.float64) / scale
    if prob.dtype.kind != "f":
        raise DataFileError(path, f"unsupported probability dtype {prob.dtype}")
    out = prob.astype(np.float64)
    if not np.all(np.isfinite(out)) or (out.size and (out.min() < -1e-6 or out.max() > 1 + 1e-6)):
        raise DataFileError(path, "probabilities must be finite and in [0, 1]")
    return np.clip(out, 0.0, 1.0)


def _load(
    path: PathLike,
    task: str,
    shape: Sequence[int] | None,
    *,
    prediction: bool,
    channel: int | None,
    ndim: int | None = None,
) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Load one file; returns the data and its raster's spatial shape (``None`` for a CSV without shape).

    ``ndim`` is a hint for the spatial dimensionality (used for probability images and CSVs without shape).
    """
    p = Path(path)
    check_task(task)
    shp = None if shape is None else tuple(int(s) for s in shape)
    if shp is not None:
        ndim = len(shp)
    kind = _kind(p)
    allowed = _PREFERENCE[task][1]
    if kind not in allowed:
        raise DataFileError(
            p, f"unsupported file type for task {task!r} (accepted: {', '.join(allowed)} files)"
        )
    if task == "em":
        if not prediction:
            lab = io.read_labels(p)
            _check_shape(p, shp, lab.shape)
            return (lab != 0).astype(np.uint8), tuple(lab.shape)
        arr = io.read_image(p, spatial_dims=ndim).array
        c = arr.shape[0]
        if channel is None:
            if c > 2:
                raise DataFileError(p, f"probability image has {c} channels; choose one with channel=")
            channel = c - 1  # one channel: the map itself; two: the foreground class of the soft-max
        if not -c <= channel < c:
            raise DataFileError(p, f"channel {channel} out of range for {c} channel(s)")
        _check_shape(p, shp, arr.shape[1:])
        return _scale_probabilities(arr[channel], p), tuple(arr.shape[1:])
    if kind == _IMAGE:
        lab = io.read_labels(p)
        _check_shape(p, shp, lab.shape)
        if task == "detection":
            return _centroids(lab), tuple(lab.shape)
        return (mask_to_instances(lab) if _is_binary(lab) else lab), tuple(lab.shape)
    if kind == _CSV:  # detection only
        points, _ = io.read_points_csv(p, ndim or io.csv_spatial_dims(p) or 2, shape=shp)
        return points, shp
    # ImageJ ROIs
    if shp is None:
        shp = _roi_shape([p], ndim)
    ann = io.read_rois(p, shp)
    if ann.ignore.any():
        logger.warning("%s: 'ignore' ROIs are not used by the evaluation (evaluated like background)", p)
    if task == "segmentation":
        if not ann.labels.any() and len(ann.points):
            logger.warning("%s: contains only point ROIs, no objects for segmentation", p)
        return ann.labels, shp
    if len(ann.points) == 0 and ann.labels.any():
        return _centroids(ann.labels), shp
    return ann.points, shp


def load_prediction(
    path: PathLike, task: str, shape: Sequence[int] | None = None, *, channel: int | None = None
) -> np.ndarray:
    """Load one prediction file for ``task``.

    * segmentation: instance labels ``(Y, X)`` / ``(Z, Y, X)`` from a label image (binary masks -- all
      non-zero values equal -- become connected components with full connectivity; note that this also
      applies to a label image with a single object) or from an ImageJ ROI set.
    * detection: float points ``(N, ndim)`` in array order and pixel units, from a point CSV, the multi-point
      ROIs of a ROI set (or the centroids of its area ROIs if it has no point ROIs), or a dot / label image
      (one point per connected region of equal non-zero value, at its centroid).
    * em: float64 probability map in ``[0, 1]``: channel ``channel`` of the image; by default the only
      channel, or channel 1 (the foreground class) of a two-channel soft-max output. Integer images are
      scaled: values ``<= 1`` as they are, else divided by 255 (max ``<= 255``) or 65535.

    Args:
        path: The file.
        task: ``"segmentation"``, ``"detection"`` or ``"em"``.
        shape: Spatial image shape ``(Y, X)`` / ``(Z, Y, X)``: checked against images, bounds for CSV points,
            required raster for ROI sets. Without it a ROI set is rasterised on the smallest image holding
            all its ROIs (3D if a ROI lies on slice > 1), and a CSV's dimensionality comes from its header.
        channel: em only: channel of a multi-channel probability image.

    Returns:
        Labels, points or probabilities as described above.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unsupported or invalid file, or a shape different from ``shape`` (message names it).
        ValueError: Unknown task.
    """
    return _load(path, task, shape, prediction=True, channel=channel)[0]


def load_ground_truth(path: PathLike, task: str, shape: Sequence[int] | None = None) -> np.ndarray:
    """Load one ground-truth file for ``task``.

    Same formats and results as :func:`load_prediction` for segmentation and detection; for em the ground
    truth is a binary image (non-zero = cell interior, 0 = membrane), returned as uint8 0/1. ROIs named
    ``ignore...`` are not used (a warning is logged).

    Args:
        path: The file.
        task: ``"segmentation"``, ``"detection"`` or ``"em"``.
        shape: Spatial image shape, see :func:`load_prediction`.

    Returns:
        Labels, points or a binary mask.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unsupported or invalid file, or a shape different from ``shape``.
        ValueError: Unknown task.
    """
    return _load(path, task, shape, prediction=False, channel=None)[0]


# ----------------------------------------------------------------------------------------------------
# pairing
# ----------------------------------------------------------------------------------------------------


#: files predict.py writes beside the predictions that are not predictions themselves
_NOT_PREDICTIONS = ("summary.csv",)
_NOT_PREDICTION_SUFFIXES = ("_objects.csv",)


def _files_by_key(directory: Path, task: str) -> dict[str, Path]:
    roles, kinds = _PREFERENCE[task]
    best: dict[str, tuple[tuple[int, int], Path]] = {}
    for f in sorted(directory.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        if f.name in _NOT_PREDICTIONS or f.name.endswith(_NOT_PREDICTION_SUFFIXES):
            continue
        kind = _kind(f)
        key, role = _split_name(f)
        if kind not in kinds or role not in roles or not key:
            continue
        rank = (roles.index(role), kinds.index(kind))
        if key in best:
            old_rank, old = best[key]
            if rank == old_rank:
                raise DataFileError(f, f"has the same key {key!r} as {old}; cannot pair unambiguously")
            if rank > old_rank:
                logger.debug("%s: using %s for key %r", f, old.name, key)
                continue
            logger.debug("%s: using %s for key %r", old, f.name, key)
        best[key] = (rank, f)
    return {k: v[1] for k, v in best.items()}


def _some(files: dict[str, Path], n: int = 3) -> str:
    names = [files[k].name for k in sorted(files)[:n]]
    return ", ".join(names) + (f", ... ({len(files) - n} more)" if len(files) > n else "")


def match_files(
    predictions: PathLike, ground_truth: PathLike, task: str, *, allow_missing: bool = False
) -> list[tuple[str, Path, Path]]:
    """Pair prediction and ground-truth files by key (see the module docstring for keys and preferences).

    Args:
        predictions: Directory of predictions.
        ground_truth: Directory of ground truth.
        task: ``"segmentation"``, ``"detection"`` or ``"em"``.
        allow_missing: Skip (with a warning) files without partner instead of raising.

    Returns:
        ``(key, prediction_path, ground_truth_path)`` sorted by key.

    Raises:
        FileNotFoundError: A directory does not exist.
        DataFileError: No usable file, ambiguous files, or a file without partner (the message names it).
    """
    check_task(task)
    pdir, gdir = Path(predictions), Path(ground_truth)
    for d in (pdir, gdir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: directory not found")
    roles, kinds = _PREFERENCE[task]
    wanted = f"{', '.join(repr(r) if r else 'no' for r in roles)} role suffix; {', '.join(kinds)} files"
    preds, gts = _files_by_key(pdir, task), _files_by_key(gdir, task)
    for d, found, what in ((pdir, preds, "predictions"), (gdir, gts, "ground truth")):
        if not found:
            raise DataFileError(d, f"no {what} usable for task {task!r} ({wanted})")
    if not set(preds) & set(gts):  # nothing pairs: one message with a few names of each side
        raise DataFileError(
            pdir,
            f"none of its {len(preds)} prediction(s) matches any of the {len(gts)} ground-truth file(s) in "
            f"{gdir} by key (the file name without role suffix and extension); predictions: "
            f"{_some(preds)}; ground truth: {_some(gts)}",
        )
    pairs: list[tuple[str, Path, Path]] = []
    for key in sorted(set(preds) | set(gts)):
        pred, gt = preds.get(key), gts.get(key)
        if pred is not None and gt is not None:
            pairs.append((key, pred, gt))
            continue
        if gt is not None:
            msg = f"ground truth without prediction: no file with key {key!r} in {pdir} ({wanted})"
            culprit = gt
        else:
            assert pred is not None
            msg = f"prediction without ground truth: no file with key {key!r} in {gdir} ({wanted})"
            culprit = pred
        if not allow_missing:
            raise DataFileError(culprit, msg)
        logger.warning("%s: %s; skipped", culprit, msg)
    if not pairs:
        raise DataFileError(pdir, f"no prediction matches a ground-truth file in {gdir}")
    return pairs


def load_pair(
    pred_path: Path, gt_path: Path, task: str, channel: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a pair on a common raster: images first, then CSV/ROI files with the image's shape.

    Without any image, ROI sets are rasterised on the smallest shape holding the ROIs of both files, and
    the dimensionality comes from a CSV header (``z`` column) or the ROIs' slice positions.
    """
    dims = [io.csv_spatial_dims(p) for p in (pred_path, gt_path) if _kind(p) == _CSV]
    ndim = 3 if 3 in dims else None
    gt = pred = None
    gt_shape = pred_shape = None
    if _kind(gt_path) == _IMAGE:
        gt, gt_shape = _load(gt_path, task, None, prediction=False, channel=None)
        ndim = len(gt_shape) if gt_shape is not None else ndim
    if _kind(pred_path) == _IMAGE:
        pred, pred_shape = _load(pred_path, task, None, prediction=True, channel=channel, ndim=ndim)
    if gt_shape is not None and pred_shape is not None and gt_shape != pred_shape:
        raise DataFileError(
            pred_path,
            f"prediction of spatial shape {pred_shape} does not match the ground truth {gt_path} "
            f"of spatial shape {gt_shape}",
        )
    shape = gt_shape or pred_shape
    if shape is None:
        rois = [p for p in (pred_path, gt_path) if _kind(p) == _ROI]
        if rois:
            shape = _roi_shape(rois, ndim)
    if gt is None:
        gt = _load(gt_path, task, shape, prediction=False, channel=None, ndim=ndim)[0]
    if pred is None:
        pred = _load(pred_path, task, shape, prediction=True, channel=channel, ndim=ndim)[0]
    return pred, gt
