"""Pure shape arithmetic of a valid-convolution U-Net, derived from its level specification.

Nothing here is a table: every number follows from :class:`LevelSpec` (per-axis kernel and pooling
factors of each resolution level), the same objects :class:`unet.models.unet.UNet` builds its layers
from. For the paper's 2D network (depth 4, 3x3 convolutions, 2x2 pooling)::

    >>> levels = isotropic_levels(spatial_dims=2, depth=4)
    >>> output_shape(levels, (572, 572))
    (388, 388)
    >>> halo(levels)
    (92, 92)
    >>> valid_input_shape(levels, (500, 500))
    (508, 508)
    >>> pooling_period(levels)
    (16, 16)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from unet.validation import check_element_size

#: An axis takes part in convolution/pooling of a level once its element size is within this factor of
#: the finest axis: pooling only the fine axes of an anisotropic volume moves log(anisotropy) by log 2,
#: which brings it closer to 1 exactly when the anisotropy exceeds sqrt(2) (Falk 2019, M1.1).
ISOTROPY_RATIO = math.sqrt(2.0)


@dataclass(frozen=True)
class LevelSpec:
    """Per-axis geometry of one resolution level.

    Attributes:
        kernel: convolution edge length per spatial axis (3, or 1 for an axis left 2D at this level).
        pool: pooling (and up-convolution) factor per axis towards the next coarser level (2 or 1);
            ignored for the bottom level.
    """

    kernel: tuple[int, ...]
    pool: tuple[int, ...]

    @property
    def shrink(self) -> tuple[int, ...]:
        """Pixels lost per axis by the level's two valid convolutions."""
        return tuple(2 * (k - 1) for k in self.kernel)


def isotropic_levels(spatial_dims: int, depth: int, kernel: int = 3, pool: int = 2) -> tuple[LevelSpec, ...]:
    """Levels of an isotropic U-Net (``depth`` poolings, ``depth + 1`` levels)."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    spec = LevelSpec(kernel=(kernel,) * spatial_dims, pool=(pool,) * spatial_dims)
    return (spec,) * (depth + 1)


def anisotropic_levels(
    element_size: Sequence[float], depth: int, kernel: int = 3, pool: int = 2
) -> tuple[LevelSpec, ...]:
    """Levels for anisotropic voxels (Falk 2019, M1.1).

    At each level, axes whose current element size exceeds ``ISOTROPY_RATIO`` times the finest one
    get kernel 1 and are not pooled ("convolutions and pooling at the finest resolution levels are 2D
    until voxel extents are roughly isotropic"); the element size of pooled axes doubles per level.

    Args:
        element_size: physical voxel size per spatial axis, e.g. ``(1.0, 0.25, 0.25)`` µm for ZYX.
        depth: number of pooling steps.

    Returns:
        ``depth + 1`` level specs, finest first.
    """
    size = list(check_element_size(element_size) or ())
    if not size:
        raise ValueError("element_size is needed for anisotropic levels, got None")
    levels = []
    for _ in range(depth + 1):
        finest = min(size)
        active = [s <= ISOTROPY_RATIO * finest * (1 + 1e-9) for s in size]
        levels.append(
            LevelSpec(
                kernel=tuple(kernel if a else 1 for a in active), pool=tuple(pool if a else 1 for a in active)
            )
        )
        size = [s * pool if a else s for s, a in zip(size, active)]
    return tuple(levels)


def _check(levels: Sequence[LevelSpec], shape: Sequence[int]) -> tuple[int, ...]:
    if not levels:
        raise ValueError("a U-Net needs at least one level")
    nd = len(levels[0].kernel)
    shape = tuple(int(s) for s in shape)
    if len(shape) != nd:
        raise ValueError(f"expected {nd} spatial dimensions, got shape {shape}")
    return shape


def _axis_output(levels: Sequence[LevelSpec], axis: int, n: int) -> int | None:
    """Output length along one axis, or None if ``n`` is not a valid input length."""
    skips = []
    for level in levels[:-1]:
        n -= level.shrink[axis]
        p = level.pool[axis]
        if n < 1 or n % p:
            return None
        skips.append(n)
        n //= p
    n -= levels[-1].shrink[axis]
    if n < 1:
        return None
    for level, skip in zip(reversed(levels[:-1]), reversed(skips)):
        n = n * level.pool[axis] - level.shrink[axis]
        if n < 1 or n > skip:
            return None
    return n


def output_shape(levels: Sequence[LevelSpec], input_shape: Sequence[int]) -> tuple[int, ...]:
    """Spatial output shape for a valid input shape.

    Raises:
        ValueError: if ``input_shape`` is not valid; the message names the nearest valid shapes.
    """
    shape = _check(levels, input_shape)
    out = tuple(_axis_output(levels, a, n) for a, n in enumerate(shape))
    if any(o is None for o in out):
        lo = tuple(_nearest_axis(levels, a, n, "down") for a, n in enumerate(shape))
        hi = valid_input_shape(levels, shape)
        below = "none" if any(v is None for v in lo) else str(lo)
        raise ValueError(
            f"input shape {shape} is not valid for this U-Net (valid convolutions need even sizes before "
            f"every pooling); nearest valid shapes: {below} (below) and {hi} (above)"
        )
    return tuple(int(o) for o in out)  # type: ignore[arg-type]


def _nearest_axis(levels: Sequence[LevelSpec], axis: int, n: int, direction: str) -> int | None:
    step = -1 if direction == "down" else 1
    m = max(int(n), 1)
    while m >= 1:
        if _axis_output(levels, axis, m) is not None:
            return m
        m += step
        if m > 4 * max(n, 1) + 4096:  # cannot happen for a well-formed net; guard against loops
            raise ValueError(f"no valid size found along axis {axis} near {n}")
    return None


def valid_input_shape(levels: Sequence[LevelSpec], min_shape: Sequence[int]) -> tuple[int, ...]:
    """Smallest valid input shape that is at least ``min_shape`` on every axis."""
    shape = _check(levels, min_shape)
    return tuple(int(_nearest_axis(levels, a, n, "up")) for a, n in enumerate(shape))  # type: ignore[arg-type]


def min_input_shape(levels: Sequence[LevelSpec]) -> tuple[int, ...]:
    """Smallest valid input shape (output at least one pixel per axis)."""
    return valid_input_shape(levels, (1,) * len(levels[0].kernel))


def input_shape_for_output(levels: Sequence[LevelSpec], min_output: Sequence[int]) -> tuple[int, ...]:
    """Smallest valid input shape whose output covers at least ``min_output`` per axis."""
    h = halo(levels)
    return valid_input_shape(levels, tuple(int(o) + 2 * hh for o, hh in zip(min_output, h)))


def halo(levels: Sequence[LevelSpec]) -> tuple[int, ...]:
    """Context pixels per side that an output pixel sees beyond itself: (input - output) / 2 per axis.

    The shrink is the same for every valid input, so it is read off the smallest valid one.
    """
    smallest = min_input_shape(levels)
    out = output_shape(levels, smallest)
    return tuple((i - o) // 2 for i, o in zip(smallest, out))


def pooling_period(levels: Sequence[LevelSpec]) -> tuple[int, ...]:
    """Total pooling factor per axis.

    The network is translation-equivariant only for shifts that are multiples of this period (max-pool
    windows of a shifted tile must land on the same pixels), so overlap-tile strides are multiples of it.
    """
    nd = len(levels[0].kernel)
    return tuple(math.prod(level.pool[a] for level in levels[:-1]) for a in range(nd))


def valid_input_shapes(levels: Sequence[LevelSpec], axis: int, max_size: int) -> list[int]:
    """All valid input lengths along ``axis`` up to ``max_size`` (ascending)."""
    start = min_input_shape(levels)[axis]
    period = pooling_period(levels)[axis]
    return list(range(start, int(max_size) + 1, period))
