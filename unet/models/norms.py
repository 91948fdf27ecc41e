"""Normalisation layers of the U-Net, and which of them keep overlap-tile prediction seam-free.

The papers' network has none (Ronneberger 2015, Falk 2019): every output pixel then depends only on its
receptive field, so any tiling gives the same probabilities. A layer whose statistics come from the tensor
it sees breaks that: instance or group norm over a tile changes with the tile, that is with the machine's
memory. The kinds here:

* ``batch``: running statistics at inference (frozen; seam-free, but they do not adapt to the image).
* ``instance``: per-sample statistics in training (``torch.nn.InstanceNorm``); at prediction the statistics
  of **the whole image** (:func:`image_statistics`: one pass over the image, then every tile uses them), so
  the result no longer depends on the tile. Images larger than :func:`statistics_max_voxels` (2048² for 16
  features) take their statistics from a fixed centred region of that size (:func:`statistics_region`),
  which depends on the image and the network alone.
* ``channel``: layer norm over the channel axis at every voxel (ConvNeXt's ``channels_first`` LayerNorm): no
  spatial statistics at all, seam-free by construction.
* ``group``: group norm over the tile: **not** seam-free (kept for comparison; predict warns).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batch", "instance", "channel", "group")
#: kinds whose statistics come from the tile at inference (predict warns, export refuses)
TILE_DEPENDENT = ("group",)
#: largest calibration pass for whole-image instance statistics (voxels of the network's output) for a network
#: of 16 features at its finest level (2048 x 2048 in 2D); wider networks get proportionally fewer
#: (:func:`statistics_max_voxels`), so that the pass's memory is bounded whatever the width. An image larger
#: than this takes its statistics from its centred region of this size.
STATS_MAX_VOXELS = 2048 * 2048

_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class ChannelNorm(nn.Module):
    """Layer norm over the channel axis at each voxel of a (N, C, *spatial) tensor, with a per-channel
    affine transform (ConvNeXt, Liu et al. 2022): ``(x - mean_c) / sqrt(var_c + eps) * weight + bias``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


class InstanceNorm(nn.Module):
    """Instance normalisation (per sample and channel over all voxels, affine), whose statistics can be
    fixed from outside: :func:`image_statistics` sets the whole image's, so that tiles use them. Same state
    dict as ``torch.nn.InstanceNorm{1,2,3}d(affine=True)``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None  # (mean, var), each (1, C, 1, ...)
        self.recording = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed is None and not self.recording:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        if self.fixed is None:
            dims = tuple(range(2, x.ndim))
            var, mean = torch.var_mean(x.float(), dim=dims, keepdim=True, unbiased=False)
            self.fixed = (mean.mean(0, keepdim=True), var.mean(0, keepdim=True))
        mean, var = self.fixed
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x.float() - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def make_norm(kind: str | None, spatial_dims: int, channels: int) -> nn.Module | None:
    """The normalisation layer ``kind`` (one of :data:`NORMS`, or None) for ``channels`` channels."""
    if kind is None or kind == "none":
        return None
    if kind == "batch":
        return _BATCHNORM[spatial_dims](channels)
    if kind == "instance":
        return InstanceNorm(channels)
    if kind == "channel":
        return ChannelNorm(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def is_tile_dependent(kind: str | None) -> bool:
    """Whether a network with normalisation ``kind`` gives predictions that change with the tile."""
    return str(kind or "none") in TILE_DEPENDENT


def statistics_max_voxels(net: nn.Module) -> int:
    """The calibration pass's size for ``net``: :data:`STATS_MAX_VOXELS` scaled by 16 / (features of the
    finest level): a fact of the network, never of the machine, so that the statistics stay tile- and
    machine-independent while the pass's memory stays bounded (about 1.5 GiB in float32 for 2D)."""
    width = int(getattr(net, "features", [16])[0])
    return STATS_MAX_VOXELS * 16 // max(width, 16)


def statistics_layers(net: nn.Module) -> list[InstanceNorm]:
    """The layers of ``net`` that take whole-image statistics at prediction."""
    return [m for m in net.modules() if isinstance(m, InstanceNorm)]


def statistics_region(
    image_shape: Sequence[int], max_voxels: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The image region whose statistics a whole-image pass takes: (start, shape) in image coordinates.

    The whole image when it fits ``max_voxels`` (default :data:`STATS_MAX_VOXELS`); else its centred
    region, its longest axis halved in turn until it fits. It depends on the image's shape alone, never on
    the tile or the machine; callers pad it with the network's halo (mirrored beyond the image's borders).
    """
    max_voxels = STATS_MAX_VOXELS if max_voxels is None else int(max_voxels)
    shape = [int(s) for s in image_shape]
    while math.prod(shape) > max_voxels:
        axis = max(range(len(shape)), key=lambda a: shape[a])
        if shape[axis] <= 1:
            break
        shape[axis] = (shape[axis] + 1) // 2
    start = tuple((int(s) - r) // 2 for s, r in zip(image_shape, shape))
    return start, tuple(shape)


@contextlib.contextmanager
def image_statistics(
    net: nn.Module, x: torch.Tensor | None, forward: Callable[[torch.Tensor], object] | None = None
) -> Iterator[None]:
    """Within the block, every :class:`InstanceNorm` of ``net`` uses the statistics of one forward pass of
    ``x`` (1, C, *valid): the whole image with its halo. Each layer's statistics are taken over its whole
    input in that pass, with the layers before it already normalised by theirs (as in the pass itself), so
    that any tiling afterwards reproduces that pass exactly. ``forward`` runs the pass (default ``net``;
    the tiler passes its autocast). ``x`` None: the first forward inside the block is that pass (the caller
    guarantees it is the whole image: a single tile covering it), so it is not run twice. Without such
    layers, a no-op."""
    layers = statistics_layers(net)
    if not layers:
        yield
        return
    try:
        for m in layers:
            m.fixed, m.recording = None, True
        if x is not None:
            with torch.inference_mode():
                (forward or net)(x)
            for m in layers:
                m.recording = False
        yield
    finally:
        for m in layers:
            m.fixed, m.recording = None, False
