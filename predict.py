"""Predict images with a trained model: `python predict.py ckpt_path=<ckpt> input=<file|dir|glob> [k=v ...]`.

Options: the arguments of unet.predict.predict_files (`python predict.py --help`); unet.cli.predict.
Writes per image <stem>_probabilities.tif, _labels.tif, _rois.zip, _objects.csv (+ _points.csv for detection)
and summary.csv into output_dir, and prints the summary table; exit code 1 if an image could not be predicted.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from unet.cli.predict import predict
from unet.predict import PredictionFailed
from unet.report import format_summary


@hydra.main(version_base="1.3", config_path=None, config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        rows, output_dir = predict(cfg)
    except PredictionFailed as e:
        print(format_summary(e.summary))
        sys.exit(str(e))  # to stderr, exit code 1
    print(format_summary(rows))
    print(f"outputs: {output_dir}")


if __name__ == "__main__":
    main()
