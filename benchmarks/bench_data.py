"""Throughput of the tile augmentation (Falk et al. 2019, M3): ours vs MONAI, 2D and 3D, on the CPU.

Run from the repository root::

    python -m benchmarks.bench_data [--seconds 3] [--threads 2] [--batch 4]

Measures augmented training tiles per second (image + labels + loss weights; random tile position, rotation,
elastic deformation, intensity curve) for

* 2D: 572x572 input / 388x388 output tiles (Ronneberger 2015) from a 1024x1024 image;
* 3D: 44x132x132 input / 24x88x88 output tiles from a 64x256x256 stack,

with ours (:func:`unet.data.augment.augment_batch`, batched, one resampling per tile) and MONAI's
``Rand2DElasticd`` / ``Rand3DElasticd`` (prob 1, rotation, random translation = random crop position,
reflection padding, bilinear / nearest / bilinear) + ``RandHistogramShiftd`` (intensity) + a central crop of
labels / weights to the output size. Prints a markdown table. Timings depend on machine load.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from unet.data.augment import AugmentParams, augment_batch
from unet.data.sampling import TileSampler


def _rate(step: Callable[[], int], seconds: float) -> float:
    """Tiles per second of ``step`` (returns the number of tiles it produced), after one warm-up call."""
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n / (time.perf_counter() - t0)


def _data(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic normalised image (1, *shape) float32, labels (*shape) int64 (blobs), weights (*shape)."""
    image = rng.random((1, *shape), dtype=np.float32)
    labels = (image[0] > 0.7).astype(np.int64)
    weights = np.where(labels > 0, 1.0, 0.1).astype(np.float32)
    return image, labels, weights


def bench_ours(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    tile_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    params: AugmentParams,
    batch: int,
    seconds: float,
    seed: int,
) -> float:
    """Tiles/s of :func:`augment_batch` (tile centres from the ``w_bal``-like pdf ``weights``)."""
    rng = np.random.default_rng(seed)
    sampler = TileSampler(weights)
    img_t, lab_t, w_t = (torch.from_numpy(a) for a in (image, labels, weights))

    def step() -> int:
        centres = sampler.sample(batch, rng)
        augment_batch(img_t, lab_t, w_t, centres, tile_shape, out_shape, params, rng)
        return batch

    return _rate(step, seconds)


def bench_monai(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    tile_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    seconds: float,
    seed: int,
) -> float:
    """Tiles/s of MONAI Rand{2,3}DElasticd + RandHistogramShiftd + centre crop of labels/weights."""
    from monai.transforms import (
        CenterSpatialCropd,
        Compose,
        Rand2DElasticd,
        Rand3DElasticd,
        RandHistogramShiftd,
    )

    nd = len(tile_shape)
    keys = ("image", "label", "weight")
    translate = [(s - t) / 2 for s, t in zip(image.shape[1:], tile_shape, strict=True)]
    common = {
        "keys": keys,
        "prob": 1.0,
        "spatial_size": tile_shape,
        "translate_range": translate,
        "mode": ("bilinear", "nearest", "bilinear"),
        "padding_mode": "reflection",
    }
    if nd == 2:
        elastic = Rand2DElasticd(
            spacing=(100, 100), magnitude_range=(10, 10), rotate_range=(math.pi,), **common
        )
    else:
        # Dense random field smoothed by a Gaussian (MONAI's 3D model); rotation about the first (Z) axis.
        elastic = Rand3DElasticd(
            sigma_range=(9, 9), magnitude_range=(100, 100), rotate_range=((-math.pi, math.pi), 0, 0), **common
        )
    tf = Compose(
        [
            elastic,
            RandHistogramShiftd(keys="image", num_control_points=5, prob=1.0),
            CenterSpatialCropd(keys=("label", "weight"), roi_size=out_shape),
        ]
    )
    tf.set_random_state(seed=seed)
    data = {
        "image": torch.from_numpy(image),
        "label": torch.from_numpy(labels[None].astype(np.float32)),
        "weight": torch.from_numpy(weights[None]),
    }

    def step() -> int:
        tf(dict(data))
        return 1

    return _rate(step, seconds)


def main() -> None:
    """Runs both cases and prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per entry")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=4, help="tiles per augment_batch call (ours)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    params = AugmentParams(
        rotation_range=(-180.0, 180.0),
        flips=True,
        elastic_std=10.0,
        elastic_grid_spacing=100.0,
        intensity_points=5,
        intensity_range=0.1,
    )
    cases = [
        ("2D 572² → 388² from 1024²", (1024, 1024), (572, 572), (388, 388), params),
        (
            "3D 44×132² → 24×88² from 64×256²",
            (64, 256, 256),
            (44, 132, 132),
            (24, 88, 88),
            AugmentParams(
                **{**params.__dict__, "elastic_std": (2.0, 10.0, 10.0), "elastic_grid_spacing": 50.0}
            ),
        ),
    ]
    rows = []
    for name, shape, tile_shape, out_shape, p in cases:
        image, labels, weights = _data(shape, rng)
        ours = bench_ours(
            image, labels, weights, tile_shape, out_shape, p, args.batch, args.seconds, args.seed
        )
        monai = bench_monai(image, labels, weights, tile_shape, out_shape, args.seconds, args.seed)
        rows.append(f"| {name} | {ours:.1f} | {monai:.1f} | {ours / monai:.1f}x |")
    lines = [
        f"torch {torch.__version__}, {args.threads} threads, ours batch {args.batch}, "
        f"load average {os.getloadavg()[0]:.2f} (timings under shared-machine load are noisy)",
        "",
        "| case | ours tiles/s | MONAI tiles/s | ratio |",
        "|---|---|---|---|",
        *rows,
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
