"""Peak memory of `predict.py` with its defaults: the tile comes from the machine's budget, not the image.

For each image size a child process runs :func:`unet.predict.predict_files` with no ``tile_shape`` and no
``memory_budget_mib`` (the defaults a user gets) on a synthetic float32 image, in memory, with an untrained
U-Net (memory, not accuracy, is measured: the activations scale with its width like a trained one's), and
reports its peak resident memory (``ru_maxrss``) against the image's size (a blank image: the net, not the
object count, is what is measured). 2D images use a narrow 2D U-Net (depth 4, ``--features`` base
features); the 3D stack (only with ``--stack``: minutes on a CPU) the project's default 3D model
(``conf/model/unet3d.yaml``). The same images with one tile covering the whole image (the old default) are
measured beside it with ``--compare-one-tile``.

The results table is updated row by row: a row measured now replaces the row of the same image, net and
tiling; the other rows (measured earlier, their date beside them) are kept.

    python -m benchmarks.bench_predict_memory                            # 1024², 4096², 8192²
    python -m benchmarks.bench_predict_memory --sizes '' --stack 64,1024,1024   # only the 3D stack row
    python -m benchmarks.bench_predict_memory --sizes 1024,4096 --compare-one-tile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from unet import io
from unet.models.card import CARD_KEY, ModelCard
from unet.models.unet import UNet
from unet.predict import predict_files
from unet.tasks import SegmentationTask
shape, work, net_kwargs = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
one_tile = sys.argv[4] == "1"
net = UNet(**net_kwargs)
card = ModelCard(net.config, SegmentationTask(instances="components").config(), None, "minmax")
ckpt = f"{work}/m.ckpt"
state = {"net." + k: v for k, v in net.state_dict().items()}
torch.save({"state_dict": state, CARD_KEY: card.to_dict()}, ckpt)
image = f"{work}/img.npy"
np.save(image, np.zeros(shape, np.float32))  # memory is measured, not objects
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
whole = net.valid_input_shape([s + 2 * h for s, h in zip(shape, net.halo)])
kwargs = {"tile_shape": whole} if one_tile else {}
t = time.perf_counter()
predict_files(ckpt, image, f"{work}/out", progress=False, out_of_core_mib=1e9, **kwargs)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
seconds = time.perf_counter() - t
threads = torch.get_num_threads()
print(json.dumps({"seconds": seconds, "peak_mib": peak, "before_mib": base / 1024, "threads": threads}))
"""
COLUMNS = ["image", "net", "image MiB", "tiling", "peak RSS MiB", "peak / image", "seconds", "measured"]


def net_kwargs(spatial_dims: int, features: int) -> tuple[dict, str]:
    """(UNet keyword arguments, table label): 2D: a narrow U-Net; 3D: conf/model/unet3d.yaml's net."""
    if spatial_dims == 2:
        return {"spatial_dims": 2, "depth": 4, "base_features": features}, f"2D depth 4, {features} features"
    net = {}
    for name in ("unet2d", "unet3d"):  # unet3d.yaml overrides unet2d.yaml
        net.update(yaml.safe_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text())["net"])
    kwargs = {k: v for k, v in net.items() if k not in ("_target_", "num_classes")}
    return kwargs, f"3D depth {kwargs['depth']}, {kwargs['base_features']} features (unet3d.yaml)"


def measure(shape: list[int], net: dict, one_tile: bool) -> dict:
    with tempfile.TemporaryDirectory() as work:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(shape), work, json.dumps(net), "1" if one_tile else "0"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1024,4096,8192", help="2D image edges")
    parser.add_argument("--stack", default="", help="also a 3D stack z,y,x (e.g. 64,1024,1024); default none")
    parser.add_argument("--features", type=int, default=8, help="base features of the untrained 2D net")
    parser.add_argument("--compare-one-tile", action="store_true", help="also one tile over the whole image")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_predict_memory.txt"
    )
    args = parser.parse_args()
    shapes = [[int(s), int(s)] for s in args.sizes.split(",") if s]
    if args.stack:
        shapes.append([int(s) for s in args.stack.split(",")])
    rows = read_rows(args.out)
    for shape in shapes:
        mib = 4 * math.prod(shape) / 2**20
        net, label = net_kwargs(len(shape), args.features)
        for one_tile in [False, True] if args.compare_one_tile else [False]:
            r = measure(shape, net, one_tile)
            how = "one tile" if one_tile else "default budget"
            row = {"image": "x".join(map(str, shape)), "net": label, "image MiB": f"{mib:.0f}", "tiling": how}
            if "error" in r:
                row.update({"peak RSS MiB": "failed"})
                print(r["error"], file=sys.stderr)
            else:
                row.update(
                    {
                        "peak RSS MiB": f"{r['peak_mib']:.0f}",
                        "peak / image": f"{r['peak_mib'] / mib:.1f}",
                        "seconds": f"{r['seconds']:.1f}",
                    }
                )
            row["measured"] = (
                f"{time.strftime('%Y-%m-%d %H:%M')}, {r.get('threads', '?')} threads, {os.cpu_count()} CPUs"
            )
            rows[(row["image"], row["net"], row["tiling"])] = row
            print(row, flush=True)
    ordered = sorted(
        rows.values(), key=lambda row: ("3D" in row["net"], float(row["image MiB"]), row["tiling"])
    )
    lines = [
        "predict_files with its defaults (in memory, tile from the machine's budget), untrained U-Nets, "
        "blank float32 images; peak RSS of the process (ru_maxrss); benchmarks/bench_predict_memory.py",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
        *("| " + " | ".join(row.get(c, "") for c in COLUMNS) + " |" for row in ordered),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def read_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The rows of an earlier results table (this format), keyed by (image, net, tiling)."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) == len(COLUMNS) and cells[0] not in ("image", "---"):
                row = dict(zip(COLUMNS, cells))
                rows[(row["image"], row["net"], row["tiling"])] = row
    return rows


if __name__ == "__main__":
    main()
