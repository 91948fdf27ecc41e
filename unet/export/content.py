"""The files of a bioimage.io package besides the weights: test image and tensors, cover, README, citation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from unet.export.graphs import same_size_geometry
from unet.models import shapes
from unet.models.card import ModelCard
from unet.models.unet import UNet
from unet.predict.image import predict_image

CITATIONS = (
    (
        "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation. MICCAI 2015, LNCS 9351, 234-241.",
        "10.1007/978-3-319-24574-4_28",
    ),
    (
        "Falk T., Mai D., Bensch R., et al. U-Net: deep learning for cell counting, detection, and "
        "morphometry. Nature Methods 16, 67-70 (2019).",
        "10.1038/s41592-018-0261-2",
    ),
)


def synthetic_image(shape: Sequence[int], channels: int, seed: int = 0) -> np.ndarray:
    """A raw (C, *shape) float32 test image in [0, 255]: Gaussian blobs ("cells") on a ramp, plus noise."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    out = np.empty((channels, *shape), dtype=np.float32)
    radius = max(2.0, min(shape[-2:]) / 8)
    n_blobs = max(3, int(np.prod([s / (2 * radius) for s in shape[-2:]])))
    for c in range(channels):
        img = 0.2 * grid[-1] / max(shape[-1] - 1, 1)
        for _ in range(n_blobs):
            centre = [rng.uniform(0, s) for s in shape]
            r2 = sum((g - m) ** 2 for g, m in zip(grid, centre))
            img = img + np.exp(-r2 / (2 * radius**2))
        img = img + 0.05 * rng.standard_normal(shape)
        img = (img - img.min()) / (img.max() - img.min()) * 255.0
        out[c] = img.astype(np.float32)
    return out


def reference_prediction(net: UNet, image: np.ndarray, card: ModelCard) -> np.ndarray:
    """(1, K, *S) class probabilities for a raw (C, *S) image by predict.py's path, in float32.

    :func:`unet.predict.image.predict_image` at the model's own element size (no rescaling) with
    ``precision="32-true"``: the card's normalisation, overlap-tile prediction with mirrored borders (one
    tile covering the image), soft-max over the classes. The package's same-size graph reproduces it.
    """
    probs = predict_image(
        net, image, element_size=card.element_size, card=card, precision="32-true", name="test image"
    )
    return probs.astype(np.float32)[None]


def axis_ids(nd: int) -> tuple[str, ...]:
    """bioimage.io ids of the spatial axes: ``z``, ``y``, ``x`` (the last ``nd``)."""
    return ("z", "y", "x")[-nd:] if nd <= 3 else tuple(f"s{i}" for i in range(nd))


def class_names(card: ModelCard) -> list[str]:
    """Names of the output channels: background, then the foreground class(es) of the card's task."""
    k = int(card.net["num_classes"])
    task = card.task.get("name", "segmentation")
    if k == 2:
        return ["background", "cell" if task == "detection" else "foreground"]
    return ["background", *(f"class{i}" for i in range(1, k))]


def cover(image: np.ndarray, probs: np.ndarray, halo: Sequence[int], path: Path) -> None:
    """PNG (2:1): the input beside the foreground probability, drawn where the output lies in the input.

    Volumes show their middle plane. The frame on the input marks the region the (valid) output covers.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    img = image[0]
    fg = 1.0 - probs[0, 0]
    if img.ndim == 3:
        img, fg = img[img.shape[0] // 2], fg[fg.shape[0] // 2]
    hy, hx = halo[-2:]
    h, w = img.shape
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=100)
    axes[0].imshow(img, cmap="gray", interpolation="nearest")
    axes[0].add_patch(Rectangle((hx - 0.5, hy - 0.5), w - 2 * hx, h - 2 * hy, fill=False, ec="yellow", lw=1))
    extent = (hx - 0.5, w - hx - 0.5, h - hy - 0.5, hy - 0.5)
    axes[1].imshow(fg, cmap="magma", interpolation="nearest", vmin=0.0, vmax=1.0, extent=extent)
    for ax, title in zip(axes, ("input", "foreground probability")):
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def readme(card: ModelCard, ckpt: dict, ckpt_path: Path, weight_formats: Sequence[str]) -> str:
    """README.md of the package: architecture, input/output, normalisation, training, validation, citation."""
    net = card.net
    nd = int(net["spatial_dims"])
    levels = _levels_of(card)
    halo, period = shapes.halo(levels), shapes.pooling_period(levels)
    g = same_size_geometry(levels)
    axes = ", ".join(axis_ids(nd))
    es = card.element_size
    size = "not set (images are used as they are)" if es is None else " x ".join(f"{v:g}" for v in es) + " µm"
    cap = f", at most {net['max_features']}" if net.get("max_features") else ""
    layer_norm = net.get("norm") or "none"
    classes = ", ".join(class_names(card))
    norm = {
        "minmax": "per-channel min-max to [0, 1] (`scale_range`, percentiles 0 and 100, eps 1e-6; "
        "freiburg-unet divides by max - min exactly: a relative difference of eps / (max - min))",
        "percentile": "per-channel percentiles 1 and 99.8 to [0, 1], clipped (`scale_range` + `clip`)",
        "none": "none (the raw intensities go to the network as float32)",
    }[card.normalization]
    trained = f"- Checkpoint `{ckpt_path.name}`"
    trained += f", epoch {ckpt['epoch']}" if "epoch" in ckpt else ""
    trained += f", step {ckpt['global_step']}" if "global_step" in ckpt else ""
    init_from = finetuned_from(ckpt)
    lines = [
        f"# Freiburg U-Net ({nd}D, {card.task.get('name', 'segmentation')})",
        "",
        "A U-Net with valid (unpadded) convolutions as in Ronneberger et al. (2015) and Falk et al. "
        "(2019), trained and exported with freiburg-unet (PyTorch Lightning + Hydra).",
        "",
        "## Architecture",
        "",
        f"- {nd}D, depth {net['depth']}, {net['base_features']} features at the finest level (doubling "
        f"per level{cap}), leaky ReLU {net['negative_slope']}, normalisation layers: {layer_norm}.",
        f"- {net['in_channels']} input channel(s); {net['num_classes']} classes: {classes}.",
        f"- Element size ({axes}): {size}. Images of another pixel size must be rescaled to it first "
        "(freiburg-unet does so from the image metadata).",
        "",
        "## Input and output",
        "",
        f"- `input` (batch, channel, {axes}): sizes `min + n * step` per axis, min {g.min_size}, step "
        f"{period} (the pooling period: sizes must be multiples of it; mirror-pad other images to the next "
        "valid size).",
        f"- `output`: class probabilities, the size of the input. The graph mirrors (reflect) its input by "
        f"the network's halo {halo} inside itself, as freiburg-unet's overlap-tile prediction does, so its "
        "output equals freiburg-unet's prediction of the same image. The network outputs logits; the "
        "soft-max over the channel axis is the `softmax` postprocessing step.",
        f"- Tiling: the output axes declare a halo of {g.declared_halo} (the valid-convolution margin "
        "rounded up to the pooling period) and the input reflect padding: blocks padded by that halo and "
        "cropped again (bioimageio.core's blockwise prediction) give the whole-image result, seam-free.",
        f"- Preprocessing: {norm}.",
        f"- Weight formats: {', '.join(weight_formats)}.",
        "",
        "## Training",
        "",
        trained + ".",
        "- Loss: pixel-weighted soft-max cross-entropy with class-balancing and instance-separation "
        "weights (Falk et al. 2019, M2).",
    ]
    if init_from:
        lines.append(f"- Finetuned (Falk et al. 2019, M5) from the pretrained model `{init_from}`.")
    lines += [
        "",
        "## Validation",
        "",
        "The test tensors were made by freiburg-unet's prediction path (normalisation, overlap-tile "
        "prediction, soft-max) on a synthetic image; `bioimageio.core` reproduces them from every weight "
        "format. Unless exported with validate=false, its whole-image and blockwise predictions of another "
        "image were checked against freiburg-unet's to 1e-4 before the package was written (whole-image "
        "with percentile normalisation excepted: bioimageio.core measures the percentiles on the image "
        "mirrored by the halo). Validate the "
        "model on annotated images of your own data: freiburg-unet's `evaluate.py` reports the object IoU "
        "(segmentation, Falk 2019 M6.1) and the detection F1 score (M6.2).",
        "",
        "## Citation",
        "",
        "Please cite:",
        "",
        *(f"- {text} https://doi.org/{doi}" for text, doi in CITATIONS),
        "",
    ]
    return "\n".join(lines)


def _levels_of(card: ModelCard) -> tuple[shapes.LevelSpec, ...]:
    with torch.device("meta"):
        return UNet(**card.net).levels


def finetuned_from(ckpt: dict) -> str | None:
    """File name of the checkpoint this one was finetuned from (``hyper_parameters.init_from``), if any."""
    init_from = dict(ckpt.get("hyper_parameters") or {}).get("init_from")
    return Path(str(init_from)).name if init_from else None
