"""``predict.py``: :func:`predict`; its config is the arguments of :func:`unet.predict.predict_files` and the
processes to run (``devices``, ``num_nodes``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from unet.cli import arguments, store_command
from unet.predict import predict_files


def predict(cfg: DictConfig) -> tuple[list[dict[str, Any]], Path]:
    """:func:`unet.predict.predict_files` with the config's keys; -> (summary rows, output directory).

    ``devices``/``num_nodes`` above 1 (or a launch by torchrun/SLURM with several tasks) shard the inputs over
    processes with Lightning Fabric (DDP strategy; gloo on CPUs, NCCL on GPUs): each process predicts its
    share on its own device, every output is written once and atomically, and rank 0 merges the summary.

    Raises:
        unet.predict.PredictionFailed: Some images could not be predicted (every other one was).
    """
    kwargs = arguments(cfg)
    devices, num_nodes = int(kwargs.pop("devices") or 1), int(kwargs.pop("num_nodes") or 1)
    if devices * num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from lightning.fabric import Fabric

        cuda = str(kwargs["device"]).startswith("cuda")
        fabric = Fabric(
            accelerator="cuda" if cuda else "cpu", devices=devices, num_nodes=num_nodes, strategy="ddp"
        )
        fabric.launch()
        kwargs.update(
            device=fabric.device,
            shard=(fabric.global_rank, fabric.world_size),
            barrier=fabric.barrier,
            progress=bool(kwargs["progress"]) and fabric.global_rank == 0,
        )
    return predict_files(**kwargs), Path(kwargs["output_dir"])


USAGE = """
Usage:
  python predict.py ckpt_path=<checkpoint> input=<file|directory|glob> [key=value ...]

Examples:
  python predict.py ckpt_path=logs/runs/2024-01-01_12-00-00/checkpoints/last.ckpt input=data/images
  python predict.py ckpt_path=model.ckpt 'input=data/*.tif' memory_budget_mib=4096 device=cuda
  python predict.py ckpt_path=model.ckpt input=volume.zarr output_dir=predictions out_of_core_mib=0

input: an image file, a directory (its .tif/.tiff/.png/.jpg/.jpeg/.bmp/.npy files and .zarr arrays), a glob
(quote it for the shell) or a list: 'input=[a.tif,b.tif]'. output_dir: default this run's directory; give a
fixed one to resume an interrupted run. Model, task, normalisation and element size come from the checkpoint
(a .ckpt of train.py, or a .pt/.onnx of python -m unet.export). devices/num_nodes: processes to shard the
inputs over (Lightning Fabric, DDP), as for training under SLURM/torchrun.

Outputs per image <stem> in output_dir (all written atomically):
  <stem>_probabilities.tif   float32 class probabilities (K, [Z,] Y, X), element size in the metadata
  <stem>_labels.tif          instance labels: connected components of the foreground (8-/26-connected)
  <stem>_rois.zip            ImageJ/Fiji ROIs: object outlines (segmentation) or multi-point ROIs (detection)
  <stem>_points.csv          detection only: one point per object, pixels and µm
  <stem>_objects.csv         per-object measurements: centroid, area/volume, diameter, perimeter, intensities
and summary.csv (objects per image), printed at the end. Images whose outputs all exist are skipped
unless overwrite=true. Images whose probabilities exceed out_of_core_mib are predicted tile by tile into
<stem>_probabilities.zarr and <stem>_labels.zarr instead, objects/ROIs/points made block by block (the
image must be at the model's element size).
Then: python evaluate.py predictions=<output_dir> ground_truth=<dir> task=segmentation|detection
"""

store_command(
    "predict",
    predict_files,
    header="predict.py: apply a trained U-Net to images "
    "(overlap-tile prediction at the model's element size).",
    usage=USAGE,
    exclude=("shard", "barrier"),  # set by predict() for several processes
    keys={"output_dir": "${hydra:runtime.output_dir}", "devices": 1, "num_nodes": 1},
)
