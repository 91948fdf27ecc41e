"""Evaluation of predictions against ground truth: per-image metrics, and whole directories scored.

The library behind ``python evaluate.py predictions=<dir> ground_truth=<dir> task=...``. Three tasks:

``segmentation`` (Falk et al. 2019, M6.1)
    Instance label images are compared with :func:`unet.metrics.object_iou` (Hungarian matching, mean IoU
    over ground-truth objects) and :func:`unet.metrics.matching_scores` (tp/fp/fn, precision, recall, F1 at
    IoU 0.5, AP@0.5 = ``tp / (tp + fp + fn)`` at IoU 0.5, F1 per IoU threshold, DSB-2018 average precision
    over the thresholds) and panoptic quality.
``detection`` (Falk et al. 2019, M6.2)
    Point sets are compared with :func:`unet.metrics.detection_f1` (tolerance ``d_match``, Hungarian
    assignment), plus the absolute counting error.
``em`` (Ronneberger et al. 2015, Tab. 1; ISBI 2012)
    A cell-interior (or membrane) probability map is scored against a binary ground truth with
    :func:`unet.metrics.em_scores` (pixel, Rand, adapted Rand and V^Info errors at threshold 0.5 and the
    best over the thresholds).

Prediction and ground-truth files, their formats and how they pair: :mod:`unet.evaluation_files`.

Outputs of :func:`evaluate_dirs` (all written atomically into ``output_dir``):

* ``metrics.csv``: one row per image (column ``image`` = key, then the metrics of :func:`evaluate_pair`),
  then a row with ``image = mean`` (mean over images; for ``count_error`` this is the mean absolute
  counting error). Undefined values (mean IoU of an image without ground-truth objects) are ``nan``.
* ``metrics.json``: ``{"task", "settings", "metrics", "images": [{"image", "prediction",
  "ground_truth", <metrics>..., ["curves"]}], "mean", "pooled"}`` with ``null`` for undefined values;
  ``pooled`` holds tp/fp/fn summed over all images and the precision/recall/F1 computed from the sums
  (segmentation at IoU 0.5, with ``ap50`` of the sums; detection; empty for em); em images carry
  per-threshold ``curves``.
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
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from unet import metrics
from unet.evaluation_files import PathLike, check_task, load_pair, match_files
from unet.postprocess import mask_to_instances
from unet.report import EvaluationResult, Value, column_means, headline, pooled, write_reports
from unet.tasks import DetectionTask

logger = logging.getLogger(__name__)

__all__ = ["D_MATCH", "EvaluationResult", "evaluate_dirs", "evaluate_pair"]


#: Detection matching tolerance in pixels (Falk 2019 M6.2): the default of :class:`unet.tasks.DetectionTask`,
#: so evaluate.py scores as validation does
D_MATCH: float = next(f.default for f in fields(DetectionTask) if f.name == "d_match")


def _threshold_key(prefix: str, t: float) -> str:
    text = f"{t:.2f}" if abs(round(t, 2) - t) < 1e-12 else f"{t:g}"
    return f"{prefix}@{text}"


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
    check_task(task)
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
            ap50=float(at05.accuracy[0]),
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
    d_match: float = D_MATCH,
    iou_thresholds: Sequence[float] = metrics.DEFAULT_IOU_THRESHOLDS,
    element_size: float | Sequence[float] | None = None,
    em_thresholds: Sequence[float] = metrics.EM_THRESHOLDS,
    membrane: bool = False,
) -> dict[str, Value]:
    """Metrics of one image as a flat ``{name: value}`` dict.

    * segmentation (``pred``, ``gt``: instance labels of equal shape; bool masks are split into connected
      components with full connectivity): ``n_gt``, ``n_pred``, ``count_error`` (``|n_pred - n_gt|``),
      ``mean_iou`` (M6.1, ``nan`` without ground-truth objects), ``tp``/``fp``/``fn``/``precision``/
      ``recall``/``f1`` with matches at ``IoU >= 0.5``, ``ap50`` (``tp / (tp + fp + fn)`` at IoU 0.5:
      StarDist's / DSB 2018's per-threshold accuracy, AP@0.5), ``ap`` (mean of ``tp / (tp + fp + fn)`` over
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


def evaluate_dirs(
    predictions: PathLike,
    ground_truth: PathLike,
    task: str,
    *,
    output_dir: PathLike | None,
    d_match: float = D_MATCH,
    iou_thresholds: Sequence[float] = metrics.DEFAULT_IOU_THRESHOLDS,
    element_size: float | Sequence[float] | None = None,
    em_thresholds: Sequence[float] = metrics.EM_THRESHOLDS,
    membrane: bool = False,
    channel: int | None = None,
    allow_missing: bool = False,
    plot: bool = True,
) -> EvaluationResult:
    """Evaluate a directory of predictions against a directory of ground truth.

    All pairs are matched and loaded (:mod:`unet.evaluation_files`; CSV/ROI files take the shape of their
    partner image) and their shapes checked before any metric is computed, so a missing partner or a shape
    mismatch fails fast with a :class:`~unet.io.DataFileError` naming the file. All pairs are held in
    memory. Then :func:`evaluate_pair` runs per image, and ``metrics.csv``, ``metrics.json`` and (if ``plot``)
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
        channel: em: channel of multi-channel probability images (default: see
            :func:`unet.evaluation_files.load_prediction`).
        allow_missing: Skip files without partner (warning) instead of raising.
        plot: Write ``metrics.png``.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        FileNotFoundError: A directory or file does not exist.
        DataFileError: Missing partner, ambiguous or invalid file, shape mismatch (names the file).
        ValueError: Unknown task or invalid thresholds.
    """
    check_task(task)
    ths = [float(t) for t in iou_thresholds]
    if not ths or any(not 0 < t <= 1 for t in ths):
        raise ValueError(f"iou_thresholds must be non-empty and in (0, 1], got {list(iou_thresholds)}")
    if d_match < 0:
        raise ValueError(f"d_match must be >= 0, got {d_match}")
    files = match_files(predictions, ground_truth, task, allow_missing=allow_missing)
    logger.info("evaluating %d image(s) for task %s", len(files), task)
    loaded = [load_pair(pred, gt, task, channel) for _, pred, gt in files]

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
        pooled={} if task == "em" else pooled(rows, ap50=task == "segmentation"),
        settings=settings,
        files=files,
        curves=curves,
    )
    if output_dir is not None:
        write_reports(result, Path(output_dir), plot=plot)
    logger.info("mean over %d image(s): %s", len(rows), headline(result))
    return result
