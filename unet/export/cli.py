"""``python -m unet.export``: the Hydra entry point (config ``conf/export.yaml``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from unet.checkpoint import CheckpointError
from unet.export.common import BIOIMAGEIO_WEIGHTS, ONNX_OPSET, ExportError
from unet.export.exporter import export_model

log = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def config_to_kwargs(cfg: dict) -> dict[str, Any]:
    """conf/export.yaml (a plain dict) -> keyword arguments of :func:`export_model`."""
    bio = dict(cfg.get("bioimageio") or {})
    return {
        "ckpt_path": cfg["ckpt_path"],
        "format": cfg["format"],
        "output": cfg["output"],
        "overwrite": bool(cfg.get("overwrite", False)),
        "trace_shape": cfg.get("trace_shape"),
        "opset": int(cfg.get("opset", ONNX_OPSET)),
        "name": bio.get("name"),
        "description": bio.get("description"),
        "authors": bio.get("authors"),
        "license": bio.get("license", "MIT"),
        "tags": tuple(bio.get("tags") or ()),
        "weight_formats": tuple(bio.get("weight_formats") or BIOIMAGEIO_WEIGHTS),
        "test_shape": bio.get("test_shape"),
        "parent_id": bio.get("parent_id"),
        "training_data_id": bio.get("training_data_id"),
        "validate": bool(bio.get("validate", True)),
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    """``python -m unet.export ckpt_path=<ckpt> format=bioimageio|onnx|torchscript output=<path>``."""
    kwargs = config_to_kwargs(OmegaConf.to_container(cfg, resolve=True))
    try:
        path = export_model(**kwargs)
    except (ExportError, CheckpointError) as e:
        log.error("export failed: %s", e)
        sys.exit(1)
    log.info("exported (%s): %s", kwargs["format"], path)
