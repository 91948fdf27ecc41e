"""One N-D valid-convolution U-Net (Ronneberger et al. 2015, section 2; Falk et al. 2019, M1 and M1.1).

Default arguments give the exact 2D network of the papers: 3x3 unpadded convolutions, leaky ReLU 0.1
(Falk 2019; the 2015 paper used a plain ReLU: ``negative_slope=0``), 2x2 max-pooling, 2x2
up-convolutions halving the channels, crop-and-concatenate, 64 features at the finest level doubling
per level, depth 4, a 1x1 head, He initialisation. A 572x572 tile gives a 388x388 output.

Deviations a user can switch on (all off by default): normalisation layers, dropout at the end of the
contracting path (the 2015 paper used it), anisotropic 3D levels (Falk M1.1) and the 3D paper variant
(``base_features=32, last_up_features=32``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from unet.models import shapes
from unet.models.norms import make_norm
from unet.models.shapes import LevelSpec

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_UPCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}


class ConvBlock(nn.Sequential):
    """Two valid convolutions, each followed by [norm and] a leaky ReLU."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int],
        negative_slope: float,
        norm: str | None,
    ) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(_CONV[spatial_dims](c_in, out_channels, tuple(kernel), padding=0))
            n = make_norm(norm, spatial_dims, out_channels)
            if n is not None:
                layers.append(n)
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the spatial centre of ``x`` (N, C, *spatial) to ``shape``; differences must be even."""
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], shape):
        lo = (size - target) // 2
        slices.append(slice(lo, lo + target))
    return x[tuple(slices)]


class UNet(nn.Module):
    """N-D U-Net with valid convolutions.

    Args:
        in_channels: image channels C.
        num_classes: output classes K (background included); the head gives K scores per pixel.
        spatial_dims: 2 or 3 (1 works too).
        depth: number of pooling steps (the papers: 4).
        base_features: feature channels at the finest level; doubled after each pooling.
        max_features: optional cap on the features of a level.
        negative_slope: leak of the ReLU (Falk 2019: 0.1; Ronneberger 2015: 0).
        dropout: drop-out probability at the end of the contracting path (Ronneberger 2015); 0 = off.
        norm: None (paper), "batch", "instance" (whole-image statistics at prediction), "channel" (layer
            norm over channels at each voxel) or "group" (not seam-free); see :mod:`unet.models.norms`.
        element_size: physical voxel size per spatial axis; when anisotropic, the finest levels use
            kernel 1 / no pooling along coarse axes until voxels are roughly isotropic (Falk M1.1).
        last_up_features: channels of the last up-convolution (Falk's 3D variant: 32); default half of
            the level above, as every other up-convolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        depth: int = 4,
        base_features: int = 64,
        max_features: int | None = None,
        negative_slope: float = 0.1,
        dropout: float = 0.0,
        norm: str | None = None,
        element_size: Sequence[float] | None = None,
        last_up_features: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        if element_size is not None and len(element_size) != spatial_dims:
            raise ValueError(f"element_size {tuple(element_size)} has not {spatial_dims} entries")
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "spatial_dims": spatial_dims,
            "depth": depth,
            "base_features": base_features,
            "max_features": max_features,
            "negative_slope": negative_slope,
            "dropout": dropout,
            "norm": norm,
            "element_size": None if element_size is None else [float(e) for e in element_size],
            "last_up_features": last_up_features,
        }  # constructor arguments: stored in checkpoints to rebuild the network
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.depth = depth
        if element_size is None:
            self.levels: tuple[LevelSpec, ...] = shapes.isotropic_levels(spatial_dims, depth)
        else:
            self.levels = shapes.anisotropic_levels(element_size, depth)

        feats = [base_features * 2**i for i in range(depth + 1)]
        if max_features is not None:
            feats = [min(f, max_features) for f in feats]
        self.features = feats

        self.encoder = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = in_channels
        for i, level in enumerate(self.levels):
            self.encoder.append(ConvBlock(spatial_dims, c, feats[i], level.kernel, negative_slope, norm))
            c = feats[i]
            if i < depth:
                self.pools.append(_POOL[spatial_dims](level.pool, stride=level.pool))
        self.dropout = _DROPOUT[spatial_dims](dropout) if dropout > 0 else nn.Identity()

        self.upconvs = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            level = self.levels[i]
            up_c = feats[i + 1] // 2
            if i == 0 and last_up_features is not None:
                up_c = last_up_features
            self.upconvs.append(_UPCONV[spatial_dims](c, up_c, level.pool, stride=level.pool))
            self.decoder.append(
                ConvBlock(spatial_dims, up_c + feats[i], feats[i], level.kernel, negative_slope, norm)
            )
            c = feats[i]
        self.head = _CONV[spatial_dims](c, num_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation: N(0, sqrt(2 / n_in)), n_in = inputs of one neuron; zero biases (Falk M4).

        For a convolution n_in = C_in * kernel volume. For an up-convolution with kernel = stride every
        output pixel sees exactly one kernel tap per input channel, so n_in = C_in.
        """
        for m in self.modules():
            if isinstance(m, tuple(_CONV.values())):
                n_in = m.in_channels * math.prod(m.kernel_size)
            elif isinstance(m, tuple(_UPCONV.values())):
                n_in = m.in_channels
            else:
                continue
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # Shape arithmetic (pure, from the level specification) -------------------------------------------
    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return shapes.output_shape(self.levels, input_shape)

    def valid_input_shape(self, min_shape: Sequence[int]) -> tuple[int, ...]:
        return shapes.valid_input_shape(self.levels, min_shape)

    @property
    def halo(self) -> tuple[int, ...]:
        return shapes.halo(self.levels)

    @property
    def pooling_period(self) -> tuple[int, ...]:
        return shapes.pooling_period(self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) valid input -> (N, K, *output_shape(spatial)) class scores (logits)."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (N, C={self.in_channels} channels, {self.spatial_dims} spatial dims), got "
                f"{tuple(x.shape)}"
            )
        self.output_shape(x.shape[2:])  # raises with the nearest valid shapes
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = self.pools[i](x)
        x = self.dropout(x)
        for up, block in zip(self.upconvs, self.decoder):
            x = up(x)
            # rebinding x frees the up-convolution output and the skip as soon as they are concatenated
            x = torch.cat([center_crop(skips.pop(), x.shape[2:]), x], dim=1)
            x = block(x)
        return self.head(x)
