"""Evaluate predictions: `python evaluate.py predictions=<dir> ground_truth=<dir> task=<task> [k=v ...]`.

task: segmentation, detection or em. Configuration: conf/evaluate.yaml (`python evaluate.py --help`);
library: unet.evaluation.evaluate_dirs. Writes metrics.csv, metrics.json and metrics.png into output_dir
(default <predictions>/evaluation) and prints the per-image table.

conf/evaluate.yaml is registered in Hydra's config store rather than found through config_path="conf":
conf/ also holds train.py's config group `task`, which would turn `task=detection` into a group override.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from unet import metrics
from unet.evaluation import EvaluationResult, evaluate_dirs
from unet.report import format_table

ConfigStore.instance().store(
    name="evaluate", node=OmegaConf.load(Path(__file__).resolve().parent / "conf" / "evaluate.yaml")
)


def evaluate(cfg: Mapping[str, Any]) -> EvaluationResult:
    """conf/evaluate.yaml values (resolved) -> evaluate_dirs; prints the table."""
    iou = cfg.get("iou_thresholds")
    em = cfg.get("em_thresholds")
    result = evaluate_dirs(
        cfg["predictions"],
        cfg["ground_truth"],
        str(cfg["task"]),
        output_dir=cfg.get("output_dir"),
        d_match=float(cfg.get("d_match", 6.0)),
        iou_thresholds=metrics.DEFAULT_IOU_THRESHOLDS if iou is None else iou,
        element_size=cfg.get("element_size"),
        em_thresholds=metrics.EM_THRESHOLDS if em is None else em,
        membrane=bool(cfg.get("membrane", False)),
        channel=cfg.get("channel"),
        allow_missing=bool(cfg.get("allow_missing", False)),
        plot=bool(cfg.get("plot", True)),
    )
    print(format_table(result))
    if result.outputs:
        print(f"reports: {Path(next(iter(result.outputs.values()))).parent}")
    return result


@hydra.main(version_base="1.3", config_path=None, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
