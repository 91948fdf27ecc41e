"""Synthetic cells made in code: the embedded default data sets (no download).

Cells are random ellipses (2D) or ellipsoids (3D), often touching, so that separating touching instances
is actually needed; :func:`synthetic_cells` renders them as fluorescence (textured, blurred, uneven
background, noise), :func:`synthetic_brightfield` as a widefield brightfield stack of phase objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def place_cells(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n_cells: int = 30,
    radius: tuple[float, float] = (6.0, 12.0),
    element_size: Sequence[float] | None = None,
    min_visible: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Random, often touching ellipses (2D) or ellipsoids (3D), round in physical space.

    A later cell only claims background pixels; a cell left with less than ``min_visible`` of its volume
    (hidden behind earlier cells or cut by the border) is dropped.

    Returns:
        labels (*shape) int32 (0 background, 1..N in placement order), r2 (*shape) float32 (squared
        normalised radius inside each cell: 0 at its centre, 1 on its surface; 0 outside) and the cell
        centres in pixels (one array of ``len(shape)`` per label, in label order).
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    es = np.ones(nd) if element_size is None else np.asarray(element_size, float) / min(element_size)
    labels = np.zeros(shape, np.int32)
    r2_all = np.zeros(shape, np.float32)
    centres = []
    for _ in range(n_cells):
        centre = np.array([rng.uniform(0, s * e) for s, e in zip(shape, es)])
        axes = rng.uniform(*radius, size=nd)
        rot = _random_rotation(nd, rng)
        # only the cell's bounding box (in pixels) is computed
        lo = [max(0, int(np.floor((c - axes.max()) / e))) for c, e in zip(centre, es)]
        hi = [min(s, int(np.ceil((c + axes.max()) / e)) + 1) for c, e, s in zip(centre, es, shape)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grids = np.meshgrid(*[np.arange(a, b) * e for a, b, e in zip(lo, hi, es)], indexing="ij")
        d = np.stack([g - c for g, c in zip(grids, centre)], axis=-1) @ rot
        r2 = ((d / axes) ** 2).sum(-1)
        inside = (r2 <= 1.0) & (labels[box] == 0)
        full_size = (np.pi if nd == 2 else 4 / 3 * np.pi) * np.prod(axes) / np.prod(es)
        if inside.sum() < min_visible * full_size:
            continue  # mostly hidden behind other cells or cut by the border
        labels[box][inside] = len(centres) + 1
        r2_all[box][inside] = r2[inside]
        centres.append(centre / es)
    return labels, r2_all, centres


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
    """One synthetic fluorescence-like image with instance labels.

    Args:
        shape: spatial shape, 2D (Y, X) or 3D (Z, Y, X).
        rng: random generator.
        n_cells: cells to place (see :func:`place_cells`).
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
    labels, r2, _ = place_cells(shape, rng, n_cells=n_cells, radius=radius, element_size=element_size)
    intensity = np.zeros(shape, np.float32)
    inside = labels > 0
    brightness = rng.uniform(0.5, 1.0, size=int(labels.max()) + 1)
    texture = 1 - 0.3 * r2[inside] + 0.1 * rng.standard_normal(int(inside.sum()))
    intensity[inside] = brightness[labels[inside]] * texture
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


def synthetic_brightfield(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n_cells: int = 60,
    radius: tuple[float, float] = (4.0, 7.0),
    element_size: Sequence[float] = (1.0, 0.5, 0.5),
    min_visible: float = 0.8,
    absorption: float = 0.12,
    phase: float = 1.0,
    noise: float = 0.01,
    psf_sigma: tuple[float, float] = (1.2, 0.8),
    channels: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic widefield brightfield stack of touching, weakly absorbing phase objects.

    Cells are placed as in :func:`place_cells` (semi-axes in µm when ``element_size`` is in µm; a cell is kept
    when at least ``min_visible`` of it is free, so neighbours touch without hiding each other). The image
    formation is a caricature of transmitted-light microscopy of thick, nearly transparent specimens:

    * absorption: a small intensity dip ``absorption`` x local density (cells are weakly absorbing);
    * phase: by the transport-of-intensity equation, defocus ``dz`` turns a phase object into intensity
      contrast ``-dz * laplacian(phase)`` (Teague 1983): the in-focus section of a cell shows a rim whose sign
      flips between the planes above and below the cell's centre (bright halo on one side of focus, dark on
      the other) and vanishes at its centre plane. Here the phase of each cell is weighted by its signed,
      normalised defocus ``(z - z_c) / r_z`` and the lateral Laplacian of that field gives the rims;
    * a widefield PSF, elongated along z (``psf_sigma`` = (z, yx) in µm), uneven illumination (a smooth
      multiplicative field, about +-20 %) and Gaussian noise.

    The contrast is low (about a tenth of the background) and not monotone in the labels, which is what
    makes brightfield segmentation harder than fluorescence.

    Returns:
        image (C, Z, Y, X) float32 (background about 1), labels (Z, Y, X) int32 (0 background, 1..N).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"synthetic brightfield stacks are 3D (Z, Y, X), got shape {shape}")
    es = np.asarray(element_size, float)
    px = (radius[0] / es.min(), radius[1] / es.min())  # semi-axes in pixels of the finest axis
    labels, r2, centres = place_cells(
        shape, rng, n_cells=n_cells, radius=px, element_size=es, min_visible=min_visible
    )
    n = len(centres)
    inside = labels > 0
    # density: each cell its own refractive contrast, a nucleus-like denser core, a denser cortex under the
    # membrane (what makes touching cells' borders visible in transmitted light), some texture
    strength = np.concatenate([[0.0], rng.uniform(0.6, 1.0, n)]).astype(np.float32)
    density = np.zeros(shape, np.float32)
    r2i = r2[inside]
    density[inside] = strength[labels[inside]] * (
        1.0
        + 0.5 * np.exp(-4.0 * r2i)
        + 0.8 * np.exp(-(((1.0 - r2i) / 0.2) ** 2))
        + 0.15 * rng.standard_normal(int(inside.sum()))
    )
    # signed defocus of every voxel relative to its cell's centre plane, in units of the cell's z extent
    z = np.arange(shape[0], dtype=np.float32)[:, None, None]
    cz = np.concatenate([[0.0], [c[0] for c in centres]]).astype(np.float32)
    rz = radius[1] / es[0]  # the largest z semi-axis in planes
    defocus = np.where(inside, np.clip((z - cz[labels]) / max(rz, 1.0), -1.5, 1.5), 0.0).astype(np.float32)
    sigma = (psf_sigma[0] / es[0], psf_sigma[1] / es[1], psf_sigma[1] / es[2])
    dens_b = ndi.gaussian_filter(density, sigma)
    phase_b = ndi.gaussian_filter(density * defocus, sigma)
    lap = ndi.laplace(phase_b, mode="nearest") - ndi.correlate1d(
        phase_b, [1.0, -2.0, 1.0], axis=0, mode="nearest"
    )  # lateral (y, x) Laplacian only
    contrast = -absorption * dens_b - phase * lap
    illumination = _smooth_field(shape, rng, scale=max(shape[1:]) / 3, amplitude=0.2)
    image = illumination * (1.0 + contrast) + noise * rng.standard_normal(shape)
    chans = [image] * channels
    return np.stack(chans).astype(np.float32), _relabel(labels)


def _smooth_field(
    shape: Sequence[int], rng: np.random.Generator, scale: float, amplitude: float
) -> np.ndarray:
    """1 + a smooth random field with values in about [-amplitude, amplitude]."""
    f = ndi.gaussian_filter(rng.standard_normal(tuple(shape)), scale, mode="wrap")
    f /= max(float(np.abs(f).max()), 1e-12)
    return (1.0 + amplitude * f).astype(np.float32)


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

    from unet import io

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
