"""The self-contained architecture file of the bioimage.io package's pytorch_state_dict weights."""

from __future__ import annotations

# A self-contained copy of unet.models.unet.UNet (torch only): the architecture of the pytorch_state_dict
# weights, so that the package runs without this project installed. Same module tree and state-dict keys;
# tests/test_export.py loads the real network's weights into it strictly and compares the outputs.
ARCHITECTURE_SOURCE = '''"""Freiburg U-Net (Ronneberger et al. 2015; Falk et al. 2019), needs only torch.

Valid 3x3(x3) convolutions, leaky ReLU, max-pooling, up-convolutions, crop-and-concatenate, 1x1 head.

Self-contained copy of unet.models.unet.UNet of freiburg-unet (same state-dict keys) for the
pytorch_state_dict weights of this bioimage.io package. UNet: input (N, C, *valid) normalised to [0, 1] per
channel; output (N, K, *(valid - 2 * halo)) class scores (logits). SameSizeUNet (the package's
architecture): the same network behind mirror padding, (N, C, *S) -> (N, K, *S) logits.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_UPCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


class ChannelNorm(nn.Module):
    """Layer norm over the channel axis at each voxel, per-channel affine (ConvNeXt's channels_first)."""

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def _norm(kind, nd, channels):
    if kind is None or kind == "none":
        return None
    if kind == "batch":
        return _BATCHNORM[nd](channels)
    if kind == "instance":
        return _INSTANCENORM[nd](channels, affine=True)
    if kind == "channel":
        return ChannelNorm(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}")


def _levels(nd, depth, element_size):
    """(kernel, pool) per level; anisotropic voxels: 2D levels until roughly isotropic (Falk M1.1)."""
    if element_size is None:
        return [((3,) * nd, (2,) * nd)] * (depth + 1)
    size = [float(s) for s in element_size]
    levels = []
    for _ in range(depth + 1):
        finest = min(size)
        active = [s <= math.sqrt(2.0) * finest * (1 + 1e-9) for s in size]
        levels.append((tuple(3 if a else 1 for a in active), tuple(2 if a else 1 for a in active)))
        size = [s * 2 if a else s for s, a in zip(size, active)]
    return levels


def _block(nd, c_in, c_out, kernel, negative_slope, norm):
    layers = []
    for c in (c_in, c_out):
        layers.append(_CONV[nd](c, c_out, tuple(kernel), padding=0))
        n = _norm(norm, nd, c_out)
        if n is not None:
            layers.append(n)
        layers.append(nn.LeakyReLU(negative_slope, inplace=True))
    return nn.Sequential(*layers)


def _center_crop(x, shape):
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], shape):
        lo = (size - target) // 2
        slices.append(slice(lo, lo + target))
    return x[tuple(slices)]


class UNet(nn.Module):
    def __init__(
        self,
        in_channels=1,
        num_classes=2,
        spatial_dims=2,
        depth=4,
        base_features=64,
        max_features=None,
        negative_slope=0.1,
        dropout=0.0,
        norm=None,
        element_size=None,
        last_up_features=None,
    ):
        super().__init__()
        nd = spatial_dims
        self.depth = depth
        levels = _levels(nd, depth, element_size)
        feats = [base_features * 2**i for i in range(depth + 1)]
        if max_features is not None:
            feats = [min(f, max_features) for f in feats]
        self.encoder = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = in_channels
        for i, (kernel, pool) in enumerate(levels):
            self.encoder.append(_block(nd, c, feats[i], kernel, negative_slope, norm))
            c = feats[i]
            if i < depth:
                self.pools.append(_POOL[nd](pool, stride=pool))
        self.dropout = _DROPOUT[nd](dropout) if dropout > 0 else nn.Identity()
        self.upconvs = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            kernel, pool = levels[i]
            up_c = feats[i + 1] // 2
            if i == 0 and last_up_features is not None:
                up_c = last_up_features
            self.upconvs.append(_UPCONV[nd](c, up_c, pool, stride=pool))
            self.decoder.append(_block(nd, up_c + feats[i], feats[i], kernel, negative_slope, norm))
            c = feats[i]
        self.head = _CONV[nd](c, num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = self.pools[i](x)
        x = self.dropout(x)
        for up, block in zip(self.upconvs, self.decoder):
            x = up(x)
            x = torch.cat([_center_crop(skips.pop(), x.shape[2:]), x], dim=1)
            x = block(x)
        return self.head(x)


class SameSizeUNet(UNet):
    """UNet behind reflect padding: ``net(reflect_pad(x, before, after))[..., :-crop]`` per axis.

    ``before`` is the halo (the pooling grid starts one halo before the input, as in freiburg-unet's
    overlap-tile prediction), ``after`` the halo plus ``crop``; input sizes must be multiples of the pooling
    period. Same state-dict keys as UNet.
    """

    def __init__(self, before, after, crop, **kwargs):
        super().__init__(**kwargs)
        self.pad = tuple(int(v) for b, a in zip(reversed(before), reversed(after)) for v in (b, a))
        self.crop = tuple(int(c) for c in crop)

    def forward(self, x):
        y = super().forward(F.pad(x, self.pad, mode="reflect"))
        return y[(slice(None), slice(None), *(slice(0, -c) if c else slice(None) for c in self.crop))]
'''
