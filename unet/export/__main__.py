"""Export a trained model: `python -m unet.export ckpt_path=<ckpt> output=<path> [format=<format>] [k=v ...]`.

format: bioimageio (default), onnx or torchscript. Options: the arguments of unet.export.export_model
(`python -m unet.export --help`); unet.cli.export. Writes output atomically and logs it (this shell lives in
the package, which logs instead of printing); exit code 1, the reason logged, if the export cannot be done.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from unet.checkpoint import CheckpointError
from unet.cli.export import export
from unet.export.common import ExportError

log = logging.getLogger("unet.export")


@hydra.main(version_base="1.3", config_path=None, config_name="export")
def main(cfg: DictConfig) -> None:
    try:
        path = export(cfg)
    except (ExportError, CheckpointError) as e:
        log.error("export failed: %s", e)
        sys.exit(1)
    log.info("exported (%s): %s", cfg.format, path)


if __name__ == "__main__":
    main()
