"""Peak memory of `predict.py` with its defaults: the tile comes from the machine's budget, not the image.

For each image size a child process runs :func:`unet.predict.predict_files` with no ``tile_shape`` and no
``memory_budget_mib`` (the defaults a user gets) on a synthetic float32 image, with a narrow untrained 2D
U-Net (memory, not accuracy, is measured: the activations scale with its width like a trained one's), and
reports its peak resident memory (``ru_maxrss``) against the image's size (a blank image: the net, not the
object count, is what is measured). The same images with one tile
covering the whole image (the old default) are measured beside it with ``--compare-one-tile``.

    python benchmarks/bench_predict_memory.py                       # 1024², 4096², 8192² and a 3D stack
    python benchmarks/bench_predict_memory.py --sizes 1024,4096 --compare-one-tile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from unet import io
from unet.inference import ModelCard
from unet.models.unet import UNet
from unet.predict import predict_files
from unet.tasks import SegmentationTask
shape, work, features, one_tile = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
nd = len(shape)
net = UNet(spatial_dims=nd, depth=4 if nd == 2 else 2, base_features=features)
card = ModelCard(net.config, SegmentationTask(instances="components").config(), None, "minmax")
ckpt = f"{work}/m.ckpt"
state = {"net." + k: v for k, v in net.state_dict().items()}
torch.save({"state_dict": state, "unet_card": card.to_dict()}, ckpt)
image = f"{work}/img.npy"
np.save(image, np.zeros(shape, np.float32))  # memory is measured, not objects
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
whole = net.valid_input_shape([s + 2 * h for s, h in zip(shape, net.halo)])
kwargs = {"tile_shape": whole} if one_tile else {}
t = time.perf_counter()
predict_files(ckpt, image, f"{work}/out", progress=False, out_of_core_mib=1e9, **kwargs)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mib": peak, "before_mib": base / 1024}))
"""


def measure(shape: list[int], features: int, one_tile: bool) -> dict:
    with tempfile.TemporaryDirectory() as work:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(shape), work, str(features), "1" if one_tile else "0"],
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
    parser.add_argument("--stack", default="64,1024,1024", help="a 3D stack (z,y,x); empty: none")
    parser.add_argument("--features", type=int, default=8, help="base features of the untrained net")
    parser.add_argument("--compare-one-tile", action="store_true", help="also one tile over the whole image")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_predict_memory.txt"
    )
    args = parser.parse_args()
    shapes = [[int(s), int(s)] for s in args.sizes.split(",") if s]
    if args.stack:
        shapes.append([int(s) for s in args.stack.split(",")])
    lines = [
        f"predict_files defaults (tile from the machine's budget), untrained U-Net with {args.features} base "
        f"features; {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs",
        "",
        "| image | image MiB | tiling | peak RSS MiB | peak / image | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for shape in shapes:
        mib = 4 * __import__("math").prod(shape) / 2**20
        for one_tile in [False, True] if args.compare_one_tile else [False]:
            r = measure(shape, args.features, one_tile)
            how = "one tile" if one_tile else "default budget"
            if "error" in r:
                lines.append(f"| {'x'.join(map(str, shape))} | {mib:.0f} | {how} | failed | | |")
                print(r["error"], file=sys.stderr)
                continue
            lines.append(
                f"| {'x'.join(map(str, shape))} | {mib:.0f} | {how} | {r['peak_mib']:.0f} | "
                f"{r['peak_mib'] / mib:.1f} | {r['seconds']:.1f} |"
            )
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
