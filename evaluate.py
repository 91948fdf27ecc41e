"""Evaluate predictions: `python evaluate.py predictions=<dir> ground_truth=<dir> task=<task> [k=v ...]`.

task: segmentation, detection or em. Options: the arguments of unet.evaluation.evaluate_dirs
(`python evaluate.py --help`); unet.cli.evaluate. Writes metrics.csv, metrics.json and metrics.png into
output_dir (default <predictions>/evaluation) and prints the per-image table.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unet.cli.evaluate import evaluate
from unet.report import format_table


@hydra.main(version_base="1.3", config_path=None, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    result = evaluate(cfg)
    print(format_table(result))
    if result.outputs:
        print(f"reports: {next(iter(result.outputs.values())).parent}")


if __name__ == "__main__":
    main()
