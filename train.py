"""Train a U-Net: `python train.py [model=unet3d] [data=...] [task=detection] [key=value ...]`.

Configuration: conf/ (the recipe) and the options unet.config generates from the classes; `python train.py
--help` lists the groups and options, `python train.py --cfg job` prints the composed config; unet.cli.train.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unet.cli.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
