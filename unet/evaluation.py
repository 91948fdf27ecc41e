"""Evaluation of predictions against ground truth: file loading, pairing, per-image metrics, reports.

The library behind ``python evaluate.py predictions=<dir> ground_truth=<dir> task=...``. Three tasks:

``segmentation`` (Falk et al. 2019, M6.1)
    Instance label images are compared with :func:`unet.metrics.object_iou` (Hungarian matching, mean IoU
    over ground-truth objects) and :func:`unet.metrics.matching_scores` (tp/fp/fn, precision, recall, F1 at
    IoU 0.5, F1 per IoU threshold, DSB-2018 average precision over the thresholds).
``detection`` (Falk et al. 2019, M6.2)
    Point sets are compared with :func:`unet.metrics.detection_f1` (tolerance ``d_match``, Hungarian
    assignment), plus the absolute counting error.
``em`` (Ronneberger et al. 2015, Tab. 1; ISBI 2012)
    A cell-interior (or membrane) probability map is scored against a binary ground truth with
    :func:`unet.metrics.em_scores` (pixel, Rand, adapted Rand and V^Info errors at threshold 0.5 and the
    best over the thresholds).

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

Outputs of :func:`evaluate_dirs` (all written atomically into ``output_dir``):

* ``metrics.csv``: one row per image (column ``image`` = key, then the metrics of :func:`evaluate_pair`),
  then a row with ``image = mean`` (mean over images; for ``count_error`` this is the mean absolute
  counting error). Undefined values (mean IoU of an image without ground-truth objects) are ``nan``.
* ``metrics.json``: ``{"task", "settings", "metrics", "images": [{"image", "prediction",
  "ground_truth", <metrics>..., ["curves"]}], "mean", "pooled"}`` with ``null`` for undefined values;
  ``pooled`` holds tp/fp/fn summed over all images and the precision/recall/F1 computed from the sums
  (segmentation at IoU 0.5, detection; empty for em); em images carry per-threshold ``curves``.
* ``metrics.png``: segmentation: F1 against IoU threshold (per image and mean) and predicted against true
  object counts with the identity line; detection: the count scatter; em: mean errors against threshold.

Example:
    >>> from unet.evaluation import evaluate_dirs  # doctest: +SKIP
    >>> from unet.report import format_table  # doctest: +SKIP
    >>> result = evaluate_dirs("pred/", "gt/", "segmentation", output_dir="eval/")  # doctest: +SKIP
    >>> print(format_table(result))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from skimage.measure import label as label_regions

from unet import io, metrics
from unet.io import DataFileError
from unet.postprocess import label_centroids, mask_to_instances
from unet.report import column_means, headline, pooled, write_reports

logger = logging.getLogger(__name__)

__all__ = [
    "ROLE_SUFFIXES",
    "TASKS",
    "EvaluationResult",
    "evaluate_dirs",
    "evaluate_pair",
    "load_ground_truth",
    "load_prediction",
    "match_files",
]

PathLike = str | os.PathLike
Task = Literal["segmentation", "detection", "em"]
Value = float | int | str

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


def _check_task(task: str) -> str:
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


def _threshold_key(prefix: str, t: float) -> str:
    text = f"{t:.2f}" if abs(round(t, 2) - t) < 1e-12 else f"{t:g}"
    return f"{prefix}@{text}"


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
    _check_task(task)
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
    _check_task(task)
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


def _load_pair(
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


# ----------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------


def _segmentation_labels(x: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    return mask_to_instances(arr) if arr.dtype == bool else arr


def _evaluate_pair(
    gt: npt.ArrayLike,
    pred: npt.ArrayLike,
    task: str,
    *,
    d_match: float,
    iou_thresholds: Sequence[float],
    element_size: float | Sequence[float] | None,
    em_thresholds: Sequence[float],
    membrane: bool,
) -> tuple[dict[str, Value], dict[str, list[float]]]:
    """Flat metrics and per-threshold curves of one image."""
    _check_task(task)
    row: dict[str, Value] = {}
    curves: dict[str, list[float]] = {}
    if task == "segmentation":
        g, p = _segmentation_labels(gt), _segmentation_labels(pred)
        if g.shape != p.shape:
            raise ValueError(f"shape mismatch: prediction {p.shape} vs ground truth {g.shape}")
        ths = [float(t) for t in iou_thresholds]
        iou = metrics.object_iou(g, p)
        ms = metrics.matching_scores(g, p, thresholds=ths)
        at05 = ms if ths[0] == 0.5 else metrics.matching_scores(g, p, thresholds=(0.5,))
        row.update(
            n_gt=iou.n_gt,
            n_pred=iou.n_pred,
            count_error=abs(iou.n_pred - iou.n_gt),
            mean_iou=iou.mean_iou,
            tp=int(at05.tp[0]),
            fp=int(at05.fp[0]),
            fn=int(at05.fn[0]),
            precision=float(at05.precision[0]),
            recall=float(at05.recall[0]),
            f1=float(at05.f1[0]),
            ap=ms.average_precision,
            pq=metrics.panoptic_quality(g, p).pq,
        )
        row["foreground_iou"], row["foreground_dice"] = metrics.foreground_overlap(g, p)
        for t, f in zip(ths, ms.f1.tolist(), strict=True):
            row[_threshold_key("f1", t)] = float(f)
    elif task == "detection":
        g = np.asarray(gt, dtype=np.float64)
        p = np.asarray(pred, dtype=np.float64)
        det = metrics.detection_f1(g, p, d_match=d_match, element_size=element_size)
        n_gt, n_pred = len(g), len(p)
        row.update(
            n_gt=n_gt,
            n_pred=n_pred,
            count_error=abs(n_pred - n_gt),
            tp=det.tp,
            fp=det.fp,
            fn=det.fn,
            precision=det.precision,
            recall=det.recall,
            f1=det.f1,
        )
    else:
        em = metrics.em_scores(gt, pred, thresholds=em_thresholds, membrane=membrane)
        row.update(
            pixel_error=em.pixel_error_at_05,
            rand_error=em.rand_error_at_05,
            adapted_rand_error=em.adapted_rand_error_at_05,
            v_info_error=em.v_info_error_at_05,
            v_rand=1.0 - em.adapted_rand_error_at_05,
            v_info=1.0 - em.v_info_error_at_05,
            best_pixel_error=em.best_pixel_error,
            best_rand_error=em.best_rand_error,
            best_adapted_rand_error=em.best_adapted_rand_error,
            best_v_info_error=em.best_v_info_error,
        )
        curves = {
            "thresholds": em.thresholds.tolist(),
            "pixel_error": em.pixel_error.tolist(),
            "rand_error": em.rand_error.tolist(),
            "adapted_rand_error": em.adapted_rand_error.tolist(),
            "v_info_error": em.v_info_error.tolist(),
        }
    return row, curves


def evaluate_pair(
    gt: npt.ArrayLike,
    pred: npt.ArrayLike,
    task: str,
    *,
    d_match: float = 6.0,
    iou_thresholds: Sequence[float] = metrics.DEFAULT_IOU_THRESHOLDS,
    element_size: float | Sequence[float] | None = None,
    em_thresholds: Sequence[float] = metrics.EM_THRESHOLDS,
    membrane: bool = False,
) -> dict[str, Value]:
    """Metrics of one image as a flat ``{name: value}`` dict.

    * segmentation (``pred``, ``gt``: instance labels of equal shape; bool masks are split into connected
      components with full connectivity): ``n_gt``, ``n_pred``, ``count_error`` (``|n_pred - n_gt|``),
      ``mean_iou`` (M6.1, ``nan`` without ground-truth objects), ``tp``/``fp``/``fn``/``precision``/
      ``recall``/``f1`` with matches at ``IoU >= 0.5``, ``ap`` (mean of ``tp / (tp + fp + fn)`` over
      ``iou_thresholds``, DSB 2018), ``pq`` (panoptic quality: matched IoU x F1, false positives
      count), ``f1@<t>`` for each threshold (``f1@0.50``, ``f1@0.55``, ...) and
      the semantic ``foreground_iou`` / ``foreground_dice`` of the two foregrounds.
    * detection (``pred``, ``gt``: points ``(N, ndim)``): ``n_gt``, ``n_pred``, ``count_error``, ``tp``,
      ``fp``, ``fn``, ``precision``, ``recall``, ``f1`` (M6.2 with tolerance ``d_match``; in pixels, or in
      the unit of ``element_size`` if given).
    * em (``pred``: probability map, ``gt``: binary, non-zero = cell interior): at threshold 0.5
      ``pixel_error``, ``rand_error``, ``adapted_rand_error`` (``1 - V^Rand``), ``v_info_error``,
      ``v_rand``, ``v_info``, and the minima over ``em_thresholds`` ``best_pixel_error``,
      ``best_rand_error``, ``best_adapted_rand_error``, ``best_v_info_error`` (see
      :func:`unet.metrics.em_scores`).

    Args:
        gt: Ground truth (labels, points or binary mask).
        pred: Prediction (labels, points or probabilities).
        task: ``"segmentation"``, ``"detection"`` or ``"em"``.
        d_match: Detection matching tolerance.
        iou_thresholds: IoU thresholds for ``ap`` and ``f1@<t>``, in ``(0, 1]``.
        element_size: Detection: physical pixel size per axis (or one scalar); ``None`` = pixel units.
        em_thresholds: Thresholds on the interior probability for the ``best_*`` em scores.
        membrane: em: ``pred`` is a membrane probability (True) rather than a cell-interior probability.

    Returns:
        The metrics (ints for counts, floats otherwise).
    """
    return _evaluate_pair(
        gt,
        pred,
        task,
        d_match=d_match,
        iou_thresholds=iou_thresholds,
        element_size=element_size,
        em_thresholds=em_thresholds,
        membrane=membrane,
    )[0]


# ----------------------------------------------------------------------------------------------------
# directories and reports
# ----------------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Result of :func:`evaluate_dirs`.

    Attributes:
        task: The task.
        rows: One dict per image: ``image`` (the key) and the metrics of :func:`evaluate_pair`.
        mean: ``image = "mean"`` and the mean of every metric over the images (``nan`` values skipped;
            ``count_error``: mean absolute counting error).
        pooled: tp/fp/fn/n_gt/n_pred summed over images and precision/recall/f1 from the sums
            (segmentation at IoU 0.5, detection); empty for em.
        settings: The evaluation settings (directories and the task's parameters).
        files: ``(key, prediction path, ground-truth path)`` per image, aligned with ``rows``.
        curves: em: per image key, the per-threshold error curves; empty otherwise.
        outputs: Written files by name (``csv``, ``json``, ``png``); empty if nothing was written.
    """

    task: str
    rows: list[dict[str, Value]]
    mean: dict[str, Value]
    pooled: dict[str, Value]
    settings: dict[str, Any]
    files: list[tuple[str, Path, Path]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        """Metric columns in order (without ``image``)."""
        return [k for k in self.rows[0] if k != "image"] if self.rows else []


def evaluate_dirs(
    predictions: PathLike,
    ground_truth: PathLike,
    task: str,
    *,
    output_dir: PathLike | None,
    d_match: float = 6.0,
    iou_thresholds: Sequence[float] = metrics.DEFAULT_IOU_THRESHOLDS,
    element_size: float | Sequence[float] | None = None,
    em_thresholds: Sequence[float] = metrics.EM_THRESHOLDS,
    membrane: bool = False,
    channel: int | None = None,
    allow_missing: bool = False,
    plot: bool = True,
) -> EvaluationResult:
    """Evaluate a directory of predictions against a directory of ground truth.

    All pairs are matched (:func:`match_files`) and loaded (:func:`load_prediction`,
    :func:`load_ground_truth`; CSV/ROI files take the shape of their partner image) and their shapes
    checked before any metric is computed, so a missing partner or a shape mismatch fails fast with a
    :class:`~unet.io.DataFileError` naming the file. All pairs are held in memory. Then
    :func:`evaluate_pair` runs per image, and ``metrics.csv``, ``metrics.json`` and (if ``plot``)
    ``metrics.png`` are written atomically into ``output_dir`` (see the module docstring for the formats).

    Args:
        predictions: Prediction directory (e.g. written by ``predict.py``).
        ground_truth: Ground-truth directory.
        task: ``"segmentation"``, ``"detection"`` or ``"em"``.
        output_dir: Directory for the reports (created); ``None`` writes nothing.
        d_match: Detection matching tolerance (pixels, or the unit of ``element_size``).
        iou_thresholds: Segmentation IoU thresholds for ``ap`` and ``f1@<t>``.
        element_size: Detection: pixel size per axis (or one scalar) to measure ``d_match`` physically.
        em_thresholds: em: thresholds for the ``best_*`` scores.
        membrane: em: predictions are membrane probabilities instead of cell-interior probabilities.
        channel: em: channel of multi-channel probability images (default: see :func:`load_prediction`).
        allow_missing: Skip files without partner (warning) instead of raising.
        plot: Write ``metrics.png``.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        FileNotFoundError: A directory or file does not exist.
        DataFileError: Missing partner, ambiguous or invalid file, shape mismatch (names the file).
        ValueError: Unknown task or invalid thresholds.
    """
    _check_task(task)
    ths = [float(t) for t in iou_thresholds]
    if not ths or any(not 0 < t <= 1 for t in ths):
        raise ValueError(f"iou_thresholds must be non-empty and in (0, 1], got {list(iou_thresholds)}")
    if d_match < 0:
        raise ValueError(f"d_match must be >= 0, got {d_match}")
    files = match_files(predictions, ground_truth, task, allow_missing=allow_missing)
    logger.info("evaluating %d image(s) for task %s", len(files), task)
    loaded = [_load_pair(pred, gt, task, channel) for _, pred, gt in files]

    rows: list[dict[str, Value]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    for (key, pred_path, _), (pred, gt) in zip(files, loaded, strict=True):
        row, curve = _evaluate_pair(
            gt,
            pred,
            task,
            d_match=d_match,
            iou_thresholds=ths,
            element_size=element_size,
            em_thresholds=em_thresholds,
            membrane=membrane,
        )
        rows.append({"image": key, **row})
        if curve:
            curves[key] = curve
        logger.debug("%s: %s", pred_path, row)

    settings: dict[str, Any] = {
        "task": task,
        "predictions": str(Path(predictions)),
        "ground_truth": str(Path(ground_truth)),
    }
    if task == "segmentation":
        settings["iou_thresholds"] = ths
    elif task == "detection":
        settings["d_match"] = float(d_match)
        settings["element_size"] = (
            None if element_size is None else np.atleast_1d(np.asarray(element_size, float)).tolist()
        )
        settings["d_match_unit"] = "pixel" if element_size is None else "element_size unit"
    else:
        settings["em_thresholds"] = [float(t) for t in em_thresholds]
        settings["membrane"] = bool(membrane)
        settings["channel"] = channel
    result = EvaluationResult(
        task=task,
        rows=rows,
        mean={"image": "mean", **column_means(rows, [k for k in rows[0] if k != "image"])},
        pooled={} if task == "em" else pooled(rows),
        settings=settings,
        files=files,
        curves=curves,
    )
    if output_dir is not None:
        write_reports(result, Path(output_dir), plot=plot)
    logger.info("mean over %d image(s): %s", len(rows), headline(result))
    return result
