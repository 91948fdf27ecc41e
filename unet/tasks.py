"""The one place that knows the task: segmentation or detection.

A task turns an annotation into the class target, loss weights and sampling pdf (Falk 2019, M2-M3),
turns predicted class probabilities into objects, and scores them against the annotation with the
papers' metrics (M6.1 object IoU, M6.2 detection F1). Training, validation, prediction and evaluation
all go through these methods, so what `val/*` reports is what `predict.py` + `evaluate.py` give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from unet import metrics, postprocess
from unet.data import weights as W
from unet.data.sources import Annotation


@dataclass
class SegmentationTask:
    """Instance (or semantic) segmentation with the weighted loss of Falk 2019, M2.1-M2.2.

    Args:
        num_classes: K, background included (2 = background / cell).
        v_bal: background weight (M2.1); foreground is sampled 1/v_bal times more often (M3).
        sigma_bal: Gaussian fall-off of the class-balancing weight (px).
        sigma_sep: width of the instance separation weight (px).
        lambda_sep: importance of instance separation (M2).
        ridges: insert 1-pixel background ridges between touching instances (M2.2).
        min_size: predicted components smaller than this (px) are dropped.
        monitor: the validation metric that selects the best checkpoint (and that sweeps maximise).
    """

    num_classes: int = 2
    v_bal: float = 0.1
    sigma_bal: float = 10.0
    sigma_sep: float = 6.0
    lambda_sep: float = 50.0
    ridges: bool = True
    min_size: int = 0
    monitor: str = "val/iou"

    name = "segmentation"

    def targets(
        self, ann: Annotation, shape: Sequence[int], element_size: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target int64, weights float32, pdf float64) for an annotation on a grid of ``shape``."""
        if ann.labels is not None:
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

    def objects(self, probabilities: np.ndarray) -> np.ndarray:
        """Class probabilities (K, *S) -> instance labels (*S) (components, 8/26-connected, M6.1)."""
        labels, _ = postprocess.instance_labels(probabilities, min_size=self.min_size)
        return labels

    def ground_truth(self, ann: Annotation) -> np.ndarray:
        if ann.labels is not None:
            return ann.labels
        return postprocess.instance_labels(ann.mask)[0]

    def score(self, probabilities: np.ndarray, ann: Annotation) -> dict[str, float]:
        """val metrics: object IoU (M6.1) and F1 at IoU 0.5 against the annotation."""
        pred = self.objects(probabilities)
        gt = self.ground_truth(ann)
        if ann.ignore is not None:
            pred = np.where(ann.ignore, 0, pred)
        iou = metrics.object_iou(gt, pred)
        if not iou.n_gt:
            return empty_image_scores(iou.n_pred)
        m = metrics.matching_scores(gt, pred, thresholds=(0.5,))
        return {
            "iou": float(iou.mean_iou),
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
    radius: float = 2.0
    r_ign: float | None = None
    v_bal: float = 0.1
    sigma_bal: float = 10.0
    d_match: float = 6.0
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

    def score(self, probabilities: np.ndarray, ann: Annotation) -> dict[str, float]:
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
    all is refused before training (:meth:`unet.data.datamodule.UNetDataModule.setup`).
    """
    nan = float("nan")
    hit = 0.0 if n_pred else nan
    return {"iou": nan, "f1": hit, "precision": hit, "recall": nan}


TASKS = {"segmentation": SegmentationTask, "detection": DetectionTask}


def task_from_config(config: dict) -> SegmentationTask | DetectionTask:
    """Rebuild a task from :meth:`config` (as stored in a checkpoint)."""
    config = dict(config)
    name = config.pop("name")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**config)
