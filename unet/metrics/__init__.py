"""Segmentation, detection and counting metrics (Falk et al. 2019, M6; Ronneberger et al. 2015, Tab. 1).

Everything here works on label images of any dimensionality (2D ``(Y, X)`` and 3D ``(Z, Y, X)`` alike) and
is built on one sparse *contingency table* (:mod:`unet.metrics.contingency`): the pixel count of every
co-occurring ``(gt label, pred label)``, obtained in ``O(pixels)`` with ``np.bincount`` on combined ids (or
``np.unique`` when the ids are huge). No ``K x M`` stack of full object masks is ever built. Label ids need
not be consecutive; ``0`` is background. One module a family:

Instance segmentation (Falk 2019 M6.1; :mod:`unet.metrics.objects`)
    :func:`object_iou` -- Hungarian matching maximising the summed IoU, zero-IoU pairs are no match, mean IoU
    over *ground-truth* objects (unmatched ground truth counts 0, false positives are ignored).
    :func:`matching_scores` -- tp/fp/fn, precision, recall, F1 and the DSB-2018 / StarDist "average
    precision" ``tp / (tp + fp + fn)`` at a range of IoU thresholds.
    :func:`panoptic_quality` -- PQ = SQ x RQ (Kirillov et al. 2019).

Detection (Falk 2019 M6.2; :mod:`unet.metrics.detection`)
    :func:`detection_f1` -- the F-measure with the ``d_match`` tolerance and Hungarian assignment of points.

EM challenge (Ronneberger 2015, Tab. 1; ISBI 2012, Arganda-Carreras et al. 2015; :mod:`unet.metrics.em`)
    :func:`rand_error` (``1 -`` classic Rand index over all pixel pairs), :func:`v_rand` /
    :func:`adapted_rand_error` and :func:`v_info` (foreground-restricted, with split and merge parts), and
    :func:`em_scores`, which thresholds a membrane (or cell-interior) probability map at several levels.

Pixels (:mod:`unet.metrics.pixels`)
    :func:`pixel_error` (the ISBI 2012 pixel error), :func:`foreground_overlap` (semantic IoU and Dice).

Counting (:mod:`unet.metrics.counting`)
    :func:`count_error`, :func:`relative_count_error`.

Conventions for empty inputs: a ratio whose numerator and denominator are both 0 is 1.0 when nothing was
missed and nothing was wrongly found (e.g. no ground truth and no prediction: F1 = 1), else 0.0
(:func:`ratio`). The mean
IoU over an empty ground-truth set is ``nan`` (an average over nothing).

Example:
    >>> import numpy as np
    >>> from unet.metrics import detection_f1, matching_scores, object_iou
    >>> gt = np.zeros((8, 8), dtype=int)
    >>> gt[1:4, 1:4] = 1
    >>> gt[5:7, 5:7] = 2
    >>> pred = np.zeros_like(gt)
    >>> pred[1:4, 1:3] = 7  # covers 6 of the 9 pixels of object 1, object 2 is missed
    >>> res = object_iou(gt, pred)
    >>> res.matches.tolist(), round(res.mean_iou, 4)  # (6/9 + 0) / 2
    ([[1, 7]], 0.3333)
    >>> s = matching_scores(gt, pred, thresholds=(0.5, 0.7))
    >>> s.tp.tolist(), s.fp.tolist(), s.fn.tolist()
    ([1, 0], [0, 1], [1, 2])
    >>> float(s.f1[0])
    0.6666666666666666
    >>> detection_f1([[0, 0], [10, 10]], [[0.5, 0], [30, 30]], d_match=1.0).f1
    0.5
"""

from unet.metrics.contingency import Contingency, FloatArray, IntArray, contingency, iou_matrix, ratio
from unet.metrics.counting import count_error, relative_count_error
from unet.metrics.detection import DetectionResult, detection_f1
from unet.metrics.em import (
    EM_THRESHOLDS,
    EMScores,
    RandResult,
    VInfoResult,
    adapted_rand_error,
    em_scores,
    rand_error,
    rand_index,
    v_info,
    v_rand,
)
from unet.metrics.objects import (
    DEFAULT_IOU_THRESHOLDS,
    MatchingScores,
    ObjectIoUResult,
    PanopticQuality,
    matching_scores,
    object_iou,
    panoptic_quality,
)
from unet.metrics.pixels import foreground_overlap, pixel_error

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "EM_THRESHOLDS",
    "Contingency",
    "DetectionResult",
    "EMScores",
    "FloatArray",
    "IntArray",
    "MatchingScores",
    "ObjectIoUResult",
    "PanopticQuality",
    "RandResult",
    "VInfoResult",
    "adapted_rand_error",
    "contingency",
    "count_error",
    "detection_f1",
    "em_scores",
    "foreground_overlap",
    "iou_matrix",
    "matching_scores",
    "object_iou",
    "panoptic_quality",
    "pixel_error",
    "rand_error",
    "rand_index",
    "ratio",
    "relative_count_error",
    "v_info",
    "v_rand",
]
