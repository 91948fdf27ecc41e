"""``evaluate.py``: :func:`evaluate`; its config is the arguments of :func:`unet.evaluation.evaluate_dirs`."""

from __future__ import annotations

from omegaconf import DictConfig

from unet.cli import arguments, store_command
from unet.evaluation import EvaluationResult, evaluate_dirs


def evaluate(cfg: DictConfig) -> EvaluationResult:
    """:func:`unet.evaluation.evaluate_dirs` with the config's keys as its arguments."""
    return evaluate_dirs(**arguments(cfg))


USAGE = """
Usage:
  python evaluate.py predictions=<dir> ground_truth=<dir> task=segmentation|detection|em [key=value ...]

Examples:
  python evaluate.py predictions=predictions ground_truth=data/labels task=segmentation
  python evaluate.py predictions=predictions ground_truth=data/points task=detection d_match=6

task: segmentation (object IoU, F1, AP; Falk 2019 M6.1) | detection (F1 within d_match pixels, or in the
unit of element_size; M6.2) | em (ISBI 2012 errors; membrane=true for membrane probabilities, channel= of
multi-channel images). allow_missing=true skips files without partner (needed for detection on a predict.py
output directory, whose <stem>_objects.csv are CSV files without ground truth).

Files pair by stem: <stem>_labels.tif / <stem>_points.csv / <stem>_rois.zip with <stem>.<ext>.
Writes metrics.csv (per image and mean), metrics.json and metrics.png into output_dir and prints the table.
"""

store_command(
    "evaluate",
    evaluate_dirs,
    header="evaluate.py: score predictions against ground truth "
    "(Falk 2019 M6; Ronneberger 2015 ISBI metrics).",
    usage=USAGE,
    keys={"output_dir": "${predictions}/evaluation"},  # the reports go next to the predictions
)
