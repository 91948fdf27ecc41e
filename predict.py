"""Predict images with a trained model: `python predict.py ckpt_path=<ckpt> input=<file|dir|glob> [k=v ...]`.

Configuration: conf/predict.yaml (`python predict.py --help`); library: unet.predict.predict_files.
Writes per image <stem>_probabilities.tif, _labels.tif, _rois.zip, _objects.csv (+ _points.csv for detection)
and summary.csv into output_dir, and prints the summary table.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from unet.predict import PredictionFailed, run
from unet.report import format_summary


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        rows, output_dir = run(OmegaConf.to_container(cfg, resolve=True))
    except PredictionFailed as e:
        print(format_summary(e.summary))
        print(e, file=sys.stderr)
        sys.exit(1)
    print(format_summary(rows))
    print(f"outputs: {output_dir}")


if __name__ == "__main__":
    main()
