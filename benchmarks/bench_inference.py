"""Overlap-tile inference speed: ours against MONAI's sliding_window_inference, side by side in one run.

    python -m benchmarks.bench_inference [--size 2048] [--threads 2] [--repeats 2]

A 2048x2048 single-channel image; ours: UNet(base_features=16, depth=4) with the tile chosen from a
memory budget; MONAI: BasicUNet with the same widths (16..256), overlap 0.25, gaussian blending.
Prints seconds per image, the ratio, our achieved GFLOP/s (torch.utils.flop_counter) as a fraction of a
large sgemm measured in the same run, and peak tensor memory.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import best_of
from unet.memory import LiveTensorBytes, tile_shape_for_budget
from unet.models.unet import UNet
from unet.tiling import plan_tiles, predict_tiled


def sgemm_gflops(n: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = best_of(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048, help="image edge length (px)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method (best is kept)")
    parser.add_argument("--budget-mib", type=int, default=512, help="memory budget for our tile (MiB)")
    parser.add_argument("--monai-roi", type=int, default=512, help="MONAI sliding-window roi edge (px)")
    parser.add_argument("--batch", type=int, default=1, help="tiles per forward pass (both methods)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = np.random.default_rng(0).random((1, args.size, args.size), dtype=np.float32)

    ours = UNet(in_channels=1, num_classes=2, base_features=16, depth=4).eval()
    tile = tile_shape_for_budget(
        ours,
        args.budget_mib * 2**20,
        batch_size=args.batch,
        max_shape=tuple(s + 184 for s in image.shape[1:]),
    )
    plan = plan_tiles(ours.levels, image.shape[1:], tile)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ours(torch.zeros(1, 1, *plan.tile_shape))
    flops = counter.get_total_flops() * len(plan)

    def run_ours() -> np.ndarray:
        return predict_tiled(ours, image, tile_shape=tile, batch_size=args.batch)

    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    peer = BasicUNet(
        spatial_dims=2, in_channels=1, out_channels=2, features=(16, 32, 64, 128, 256, 16)
    ).eval()
    x = torch.from_numpy(image)[None]

    def run_monai() -> torch.Tensor:
        with torch.inference_mode():
            y = sliding_window_inference(
                x, (args.monai_roi,) * 2, args.batch, peer, overlap=0.25, mode="gaussian"
            )
            return torch.softmax(y, 1)

    run_ours(), run_monai()  # warm-up
    t_ours = best_of(run_ours, args.repeats)
    t_monai = best_of(run_monai, args.repeats)
    gemm = sgemm_gflops()
    with LiveTensorBytes() as mem_ours:
        run_ours()
    with LiveTensorBytes() as mem_monai:
        run_monai()
    out_bytes = 2 * image.size * 4  # our output is a numpy array the tracker does not see
    gflops = flops / t_ours / 1e9

    print(f"image {args.size}x{args.size}, torch {torch.__version__}, {args.threads} threads")
    print(f"ours: tile {plan.tile_shape} -> {plan.output_tile}, stride {plan.stride}, {len(plan)} tiles")
    print(f"MONAI: roi {args.monai_roi}, overlap 0.25, gaussian\n")
    print("| method | s / image | images / s | peak tensor MiB |")
    print("|---|---|---|---|")
    print(
        f"| ours (UNet 16..256, valid) | {t_ours:.2f} | {1 / t_ours:.3f} | "
        f"{(mem_ours.peak + out_bytes) / 2**20:.0f} |"
    )
    print(
        f"| MONAI BasicUNet + sliding window | {t_monai:.2f} | {1 / t_monai:.3f} | "
        f"{mem_monai.peak / 2**20:.0f} |"
    )
    print(f"\nthroughput ratio ours / MONAI: {t_monai / t_ours:.2f}x (target >= 1.5x)")
    print(
        f"ours: {flops / 1e9:.1f} GFLOP per image, {gflops:.1f} GFLOP/s; sgemm 4096^2: {gemm:.1f} GFLOP/s; "
        f"fraction {gflops / gemm:.2f} (target >= 0.60)"
    )


if __name__ == "__main__":
    main()
