"""What seam-free instance normalisation costs at prediction (issue 26, candidate a).

Instance norm with whole-image statistics (:mod:`unet.models.norms`) runs one calibration pass over the
image (its centred region up to :func:`unet.models.norms.statistics_max_voxels`) before the tiles. For each
network -- the papers' (no normalisation), ``channel`` layer norm and ``instance`` norm, same widths -- a
child process (its own peak memory) predicts a blank image tile by tile with the tile of a fixed memory
budget, float32, and reports the wall time and the peak resident memory (``ru_maxrss``). 2D: a 2048² image,
the default 2D model's widths (32 base features, depth 4); 3D: a 64 x 256 x 256 stack with the default 3D
model (16 base features, depth 2, element size 2 x 1 x 1 µm).

    python -m benchmarks.bench_norms                       # writes benchmarks/results/bench_norms.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, child_env, machine, write_text_atomic

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from unet.memory import tile_shape_for_budget
from unet.models.card import ModelCard, geometry_of
from unet.models.unet import UNet
from unet.models import shapes
from unet.tasks import SegmentationTask
from unet.tiling import predict_tiled
shape, net_kwargs, budget_mib = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(0)
net = UNet(**net_kwargs).eval()
card = ModelCard(net.config, SegmentationTask().config(), net_kwargs.get("element_size"), "minmax")
image = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
tile = tile_shape_for_budget(
    geometry_of(net, card), int(budget_mib * 2**20), batch_size=1,
    max_shape=shapes.input_shape_for_output(net.levels, shape), element_size=card.element_size, device="cpu",
)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
predict_tiled(net, image, tile_shape=tile, precision="32-true")
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "before_mib": base, "tile": list(tile)}))
"""

CASES = {
    "2D 2048²": ([2048, 2048], {"spatial_dims": 2, "depth": 4, "base_features": 32}),
    "3D 64x256x256": (
        [64, 256, 256],
        {
            "spatial_dims": 3,
            "depth": 2,
            "base_features": 16,
            "last_up_features": 16,
            "element_size": [2.0, 1.0, 1.0],
        },
    ),
}
NORMS = ("none", "channel", "instance")


def run_case(shape: list[int], net_kwargs: dict, norm: str, budget_mib: float, threads: int) -> dict:
    kwargs = {**net_kwargs, "norm": None if norm == "none" else norm}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(shape), json.dumps(kwargs), str(budget_mib)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(OMP_NUM_THREADS=str(threads)),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-mib", type=float, default=1024.0, help="tile memory budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_norms.txt"))
    args = p.parse_args(argv)
    lines = [
        f"# seam-free normalisation at prediction: {machine()}, {args.threads} thread(s), float32, "
        f"tile budget {args.budget_mib:g} MiB",
        "| image | norm | tile | seconds | x none | peak MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in args.cases.split(","):
        shape, net_kwargs = CASES[case]
        ref = None
        for norm in NORMS:
            r = run_case(shape, net_kwargs, norm, args.budget_mib, args.threads)
            ref = ref or r["seconds"]
            lines.append(
                f"| {case} | {norm} | {'x'.join(map(str, r['tile']))} | {r['seconds']:.1f} | "
                f"{r['seconds'] / ref:.2f} | {r['peak_mib']:.0f} |"
            )
            print(lines[-1], flush=True)
    write_text_atomic(Path(args.out), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
