"""Synthetic fluorescence-like cells made in code: the embedded default data set (no download).

Cells are random ellipses (2D) or ellipsoids (3D), often touching, with textured intensity, blur,
uneven background and noise, so that separating touching instances is actually needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def synthetic_cells(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n_cells: int = 30,
    radius: tuple[float, float] = (6.0, 12.0),
    element_size: Sequence[float] | None = None,
    noise: float = 0.08,
    blur: float = 1.0,
    channels: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image with instance labels.

    Args:
        shape: spatial shape, 2D (Y, X) or 3D (Z, Y, X).
        rng: random generator.
        n_cells: cells to place (overlaps are resolved: a later cell only claims background pixels).
        radius: range of cell semi-axes in physical units of the finest axis (pixels if isotropic).
        element_size: voxel size per axis; cells are round in physical space.
        noise: standard deviation of additive Gaussian noise (signal in [0, 1]).
        blur: Gaussian blur sigma (px) of the optical system.
        channels: image channels; extra channels are a membrane-like rim channel.

    Returns:
        image (C, *shape) float32 in about [0, 1], labels (*shape) int32 (0 background, 1..N).
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    es = np.ones(nd) if element_size is None else np.asarray(element_size, float) / min(element_size)
    grids = np.meshgrid(*[np.arange(s) * e for s, e in zip(shape, es)], indexing="ij")
    labels = np.zeros(shape, np.int32)
    intensity = np.zeros(shape, np.float32)
    n = 0
    for _ in range(n_cells):
        centre = np.array([rng.uniform(0, s * e) for s, e in zip(shape, es)])
        axes = rng.uniform(*radius, size=nd)
        rot = _random_rotation(nd, rng)
        d = np.stack([g - c for g, c in zip(grids, centre)], axis=-1) @ rot
        r2 = ((d / axes) ** 2).sum(-1)
        inside = (r2 <= 1.0) & (labels == 0)
        full_size = (np.pi if nd == 2 else 4 / 3 * np.pi) * np.prod(axes) / np.prod(es)
        if inside.sum() < 0.5 * full_size:
            continue  # mostly hidden behind other cells or cut by the border
        n += 1
        labels[inside] = n
        brightness = rng.uniform(0.5, 1.0)
        texture = 1 - 0.3 * r2[inside] + 0.1 * rng.standard_normal(inside.sum())
        intensity[inside] = brightness * texture
    intensity = ndi.gaussian_filter(intensity, blur)
    background = 0.1 * ndi.gaussian_filter(rng.standard_normal(shape), max(shape) / 6) * max(shape) / 6
    image = intensity + 0.05 + 0.3 * np.abs(background).astype(np.float32)
    image = image + noise * rng.standard_normal(shape)
    chans = [image]
    if channels > 1:
        rim = ndi.morphological_gradient(labels, size=(3,) * nd) > 0
        rim_img = ndi.gaussian_filter(rim.astype(np.float32), blur) + noise * rng.standard_normal(shape)
        chans += [rim_img] * (channels - 1)
    return np.stack(chans).astype(np.float32), _relabel(labels)


def _random_rotation(nd: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((nd, nd)))
    return q * np.sign(np.diag(r))


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[labels]


def write_demo(out: str, n: int = 3, shape: Sequence[int] = (256, 256), seed: int = 1) -> None:
    """Write synthetic images and instance labels as TIFFs to ``out/images`` and ``out/labels``."""
    from pathlib import Path

    from unet.data import io

    root = Path(out)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, labels = synthetic_cells(shape, np.random.default_rng([seed, i]), n_cells=40)
        io.write_tiff(root / "images" / f"cells{i:02d}.tif", image[0])
        io.write_tiff(root / "labels" / f"cells{i:02d}.tif", labels.astype(np.uint16))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Write synthetic cell images and labels (for trying predict/evaluate)."
    )
    parser.add_argument("out", help="output folder; gets images/ and labels/")
    parser.add_argument("-n", type=int, default=3, help="number of images")
    parser.add_argument("--seed", type=int, default=1, help="seed (the training default uses 0)")
    args = parser.parse_args()
    write_demo(args.out, args.n, seed=args.seed)
