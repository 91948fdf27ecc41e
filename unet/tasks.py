"""The one place that knows the task: segmentation or detection.

A task turns an annotation into the class target, loss weights and sampling pdf (Falk 2019, M2-M3),
turns predicted class probabilities into objects, and scores them against the annotation with the
papers' metrics (M6.1 object IoU, M6.2 detection F1). Training, validation, prediction and evaluation
all go through these methods, so what `val/*` reports is what `predict.py` + `evaluate.py` give.
The defaults of the papers' constants (``v_bal``, ``sigma_bal``, ``sigma_sep``, ``lambda_sep``, ``radius``,
``d_match``) live in :mod:`unet.constants`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from unet import metrics, postprocess
from unet.constants import D_MATCH, DETECTION_RADIUS, LAMBDA_SEP, SIGMA_BAL, SIGMA_SEP, V_BAL
from unet.data import weights as W
from unet.data.items import Annotation


@dataclass
class SegmentationTask:
    """Instance (or semantic) segmentation with the weighted loss of Falk 2019, M2.1-M2.2.

    Args:
        num_classes: K, background included (2 = background / cell).
        v_bal: background weight (M2.1); foreground is sampled 1/v_bal times more often (M3).
        sigma_bal: Gaussian fall-off of the class-balancing weight (px).
        sigma_sep: width of the instance separation weight (px of the finest axis), or ``"auto"``: from the
            median object diameter of the training labels (:func:`unet.data.fingerprint.sigma_sep_for`,
            d / 8 within [1, 6] px), measured by ``train.py`` before training; a number wins.
        lambda_sep: importance of instance separation (M2).
        ridges: insert 1-pixel background ridges between touching instances (M2.2).
        min_size: predicted components smaller than this (px) are dropped.
        monitor: the validation metric that selects the best checkpoint (and that sweeps maximise).
        instances: how objects are made from the class map: "components" (connected components, the
            papers' method, M6.1), "watershed" (touching objects split by a seeded watershed on the distance
            transform, :func:`unet.postprocess.watershed_instances`) or "auto": validation scores both and
            keeps the better one by the ``monitor`` metric (``val/iou``, ``val/pq`` or ``val/f1``) on the
            validation images (never test data); the choice (``selected``) travels in the model card, so
            prediction uses it.
        watershed_h: seed dynamic of the watershed (px of the finest axis).
        selected: the method "auto" chose (set by validation; None before).
        object_diameter: the median object diameter of the training labels (px of the model's finest axis),
            measured when ``sigma_sep="auto"`` (recorded in the model card; None otherwise).
    """

    num_classes: int = 2
    v_bal: float = V_BAL
    sigma_bal: float = SIGMA_BAL
    sigma_sep: float | str = SIGMA_SEP
    lambda_sep: float = LAMBDA_SEP
    ridges: bool = True
    min_size: int = 0
    monitor: str = "val/iou"
    instances: str = "auto"
    watershed_h: float = 1.0
    selected: str | None = None
    object_diameter: float | None = None

    name = "segmentation"
    METHODS = ("components", "watershed")

    def __post_init__(self) -> None:
        if self.instances not in (*self.METHODS, "auto"):
            raise ValueError(f"task.instances must be components, watershed or auto, got {self.instances!r}")
        if isinstance(self.sigma_sep, str) and self.sigma_sep != "auto":
            raise ValueError(f"task.sigma_sep must be a number (px) or auto, got {self.sigma_sep!r}")

    @property
    def method(self) -> str:
        """The instance method in use: the configured one, or the one validation selected under "auto"."""
        if self.instances != "auto":
            return self.instances
        return self.selected or "components"

    def targets(
        self, ann: Annotation, shape: Sequence[int], element_size: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target int64, weights float32, pdf float64) for an annotation on a grid of ``shape``."""
        if ann.labels is not None:
            if isinstance(self.sigma_sep, str):
                raise ValueError(
                    "task.sigma_sep=auto is measured from the training labels before training (train.py "
                    "does it: unet.cli.train.build); give a number to use this task on its own"
                )
            return W.segmentation_targets(
                ann.labels,
                ignore=ann.ignore,
                element_size=element_size,
                v_bal=self.v_bal,
                sigma_bal=self.sigma_bal,
                sigma_sep=self.sigma_sep,
                lambda_sep=self.lambda_sep,
                ridges=self.ridges,
                class_of_instance=ann.class_of_instance,
            )
        if ann.mask is not None:
            if ann.mask.max(initial=0) >= self.num_classes:
                raise ValueError(
                    f"mask has class {int(ann.mask.max())} but task.num_classes={self.num_classes}"
                )
            return W.semantic_targets(
                ann.mask,
                ignore=ann.ignore,
                element_size=element_size,
                v_bal=self.v_bal,
                sigma_bal=self.sigma_bal,
            )
        raise ValueError("segmentation needs instance labels or a class mask, got point annotations")

    def instance_labels(
        self, probabilities: np.ndarray, method: str | None = None, element_size=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (K, *S) -> (instance labels (*S), class of each id) by ``method``."""
        method = method or self.method
        if method == "watershed":
            # element_size weights the distance transform; min_size stays in pixels as for components
            result = postprocess.watershed_instances(
                probabilities, h=self.watershed_h, element_size=element_size
            )
            return _min_size_px(result, self.min_size) if self.min_size else result
        return postprocess.instance_labels(probabilities, min_size=self.min_size)

    def objects(self, probabilities: np.ndarray, method: str | None = None, element_size=None) -> np.ndarray:
        """Class probabilities (K, *S) -> instance labels (*S) (components, 8/26-connected, M6.1, or the
        watershed, see ``instances``)."""
        return self.instance_labels(probabilities, method, element_size)[0]

    def ground_truth(self, ann: Annotation) -> np.ndarray:
        if ann.labels is not None:
            return ann.labels
        return postprocess.instance_labels(ann.mask)[0]

    def score(self, probabilities: np.ndarray, ann: Annotation, element_size=None) -> dict[str, float]:
        """val metrics: object IoU (M6.1) and F1 at IoU 0.5 against the annotation; under "auto" also
        ``iou_<method>`` / ``f1_<method>`` for both instance methods (see :meth:`finish_validation`)."""
        if self.instances != "auto":
            return self._score(self.objects(probabilities, element_size=element_size), ann)
        out = {}
        for m in self.METHODS:
            s = self._score(self.objects(probabilities, m, element_size), ann)
            out.update({f"{k}_{m}": v for k, v in s.items()})
            if m == self.method:
                out.update(s)
        return out

    def finish_validation(self, means: dict[str, float]) -> dict[str, float]:
        """Under "auto": select the instance method with the better mean validation score of the metric the
        checkpoint monitor maximises (``iou``, ``pq`` or ``f1``) and report its ``iou``/``pq``/``f1``/
        ``precision``/``recall`` (so the checkpoint monitor, the selection and the card agree)."""
        key = self.monitor.rpartition("/")[2]
        key = key if key in ("iou", "pq", "f1") else "iou"
        if self.instances != "auto" or not all(f"{key}_{m}" in means for m in self.METHODS):
            return means
        scored = {m: means[f"{key}_{m}"] for m in self.METHODS if np.isfinite(means[f"{key}_{m}"])}
        if not scored:
            return means
        best = max(scored, key=lambda m: (scored[m], m == "components"))  # ties: the papers' method
        self.selected = best
        return {**means, **{k: means[f"{k}_{best}"] for k in ("iou", "pq", "f1", "precision", "recall")}}

    def _score(self, pred: np.ndarray, ann: Annotation) -> dict[str, float]:
        gt = self.ground_truth(ann)
        if ann.ignore is not None:
            pred = np.where(ann.ignore, 0, pred)
        iou = metrics.object_iou(gt, pred)
        if not iou.n_gt:
            return empty_image_scores(iou.n_pred)
        m = metrics.matching_scores(gt, pred, thresholds=(0.5,))
        return {
            "iou": float(iou.mean_iou),
            "pq": float(metrics.panoptic_quality(gt, pred).pq),
            "f1": float(m.f1[0]),
            "precision": float(m.precision[0]),
            "recall": float(m.recall[0]),
        }

    def config(self) -> dict:
        return {"name": self.name, **asdict(self)}


@dataclass
class DetectionTask:
    """Detection: one point per cell (Falk 2019, M2.1 detection, M6.2).

    Args:
        num_classes: K, background included.
        radius: disk/sphere of foreground around each annotated point (px).
        r_ign: outer radius of the ignored ring/shell around each point (px); None = 2 * radius.
        v_bal: background weight.
        sigma_bal: Gaussian fall-off of the class-balancing weight (px).
        d_match: matching tolerance for the F1 score (px, M6.2).
        min_size: predicted components smaller than this (px) are dropped.
        monitor: the validation metric that selects the best checkpoint (and that sweeps maximise).
    """

    num_classes: int = 2
    radius: float = DETECTION_RADIUS
    r_ign: float | None = None
    v_bal: float = V_BAL
    sigma_bal: float = SIGMA_BAL
    d_match: float = D_MATCH
    min_size: int = 0
    monitor: str = "val/f1"

    name = "detection"

    def targets(
        self, ann: Annotation, shape: Sequence[int], element_size: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        classes = ann.classes if ann.points is not None else None
        return W.detection_targets(
            self.ground_truth(ann),
            shape,
            classes=classes,
            radius=self.radius,
            r_ign=self.r_ign,
            element_size=element_size,
            v_bal=self.v_bal,
            sigma_bal=self.sigma_bal,
            ignore=ann.ignore,
        )

    def ground_truth(self, ann: Annotation) -> np.ndarray:
        """The annotated points ``(N, ndim)``: the point annotation, else one centroid per labelled cell."""
        if ann.points is not None:
            return ann.points
        if ann.labels is None:
            raise ValueError("detection needs point annotations (or instance labels to take centroids of)")
        return postprocess.label_centroids(ann.labels)

    def objects(self, probabilities: np.ndarray) -> np.ndarray:
        """Class probabilities -> (N, ndim) detected points (component centroids)."""
        points, _ = postprocess.detection_points(probabilities, min_size=self.min_size)
        return points

    def instance_labels(
        self, probabilities: np.ndarray, method: str | None = None, element_size=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Components of the class map (each becomes one detected point)."""
        return postprocess.instance_labels(probabilities, min_size=self.min_size)

    def score(self, probabilities: np.ndarray, ann: Annotation, element_size=None) -> dict[str, float]:
        pred = self.objects(probabilities)
        gt = self.ground_truth(ann)
        r = metrics.detection_f1(gt, pred, self.d_match)
        if not len(gt):
            return {**empty_image_scores(len(pred)), "count_error": float(len(pred))}
        return {
            "f1": float(r.f1),
            "precision": float(r.precision),
            "recall": float(r.recall),
            "count_error": float(abs(len(pred) - len(gt))),
        }

    def config(self) -> dict:
        return {"name": self.name, **asdict(self)}


def empty_image_scores(n_pred: int) -> dict[str, float]:
    """Validation scores of an image without annotated objects.

    Object IoU (M6.1, a mean over annotated objects) and recall have no terms: NaN, left out of the
    validation means. Predicting nothing there is not rewarded (F1/precision NaN, not 1), but every
    predicted object is a false positive (F1 and precision 0). A validation set with no annotated object at
    all is refused before training (by :class:`unet.data.datamodule.UNetDataModule` as it is built).
    """
    nan = float("nan")
    hit = 0.0 if n_pred else nan
    return {"iou": nan, "pq": hit, "f1": hit, "precision": hit, "recall": nan}


def _min_size_px(result: tuple[np.ndarray, np.ndarray], min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop objects smaller than ``min_size`` pixels and renumber (ids and classes stay in order)."""
    labels, class_of = result
    sizes = np.bincount(labels.ravel())
    keep = np.flatnonzero(sizes >= min_size)
    keep = keep[keep > 0]
    lut = np.zeros(len(sizes), np.int32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lut[labels], np.concatenate([[0], class_of[keep]]).astype(np.int64)


TASKS = {"segmentation": SegmentationTask, "detection": DetectionTask}


def task_from_config(config: dict) -> SegmentationTask | DetectionTask:
    """Rebuild a task from :meth:`config` (as stored in a checkpoint)."""
    config = dict(config)
    name = config.pop("name")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**config)
