"""Axis layout: which stored axis holds the channels, Z, Y and X, for a channel-first ``(C, *S)`` result.

The declared axes (tifffile / ImageJ / OME / zarr ``axes``) are resolved by one routine,
:func:`declared_axes` followed by :func:`spatial_axes`; :func:`layout_from_axes` applies the result to a
loaded or memory-mapped array, :func:`lazy_order` to a lazy :class:`unet.io.lazy.ChannelFirstView`.
Without axes the shape decides (:func:`layout_from_shape`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet.io.common import DataFileError

logger = logging.getLogger(__name__)


def drop_alpha_if_constant(arr: np.ndarray, axis: int, path: Path) -> np.ndarray:
    """Drop the last entry along ``axis`` (alpha) if it is constant."""
    n = arr.shape[axis]
    alpha = np.take(arr, n - 1, axis=axis)
    if alpha.size and np.all(alpha == alpha.flat[0]):
        logger.debug("%s: dropping constant alpha channel", path)
        return np.take(arr, np.arange(n - 1), axis=axis)
    return arr


def layout_with_channel_axis(
    arr: np.ndarray, channel_axis: int, spatial_dims: int | None, path: Path
) -> np.ndarray:
    if not -arr.ndim <= channel_axis < arr.ndim:
        raise DataFileError(path, f"channel_axis={channel_axis} out of range for array of shape {arr.shape}")
    out = np.moveaxis(arr, channel_axis, 0)
    nsp = out.ndim - 1
    if nsp not in (2, 3):
        raise DataFileError(
            path,
            f"array of shape {arr.shape} with channel_axis={channel_axis} "
            f"has {nsp} spatial axes, expected 2 or 3",
        )
    if spatial_dims is not None and nsp != spatial_dims:
        raise DataFileError(
            path,
            f"array of shape {arr.shape} with channel_axis={channel_axis} has {nsp} "
            f"spatial axes but spatial_dims={spatial_dims}",
        )
    return out


def declared_axes(
    axes: str, shape: Sequence[int], *, imagej: bool, path: Path
) -> tuple[list[int], str] | None:
    """The stored axes that are kept and their letters (C/S channels, Z, Y, X), or None if the declared
    ``axes`` do not say enough (wrong length, repeated or unknown ``Q``/``I`` axes, no Y or X).

    An ImageJ stack without hyperstack information (one ``I`` axis, no ``Z``) is a z-stack; singleton
    axes other than Y and X are dropped.

    Raises:
        DataFileError: An axis other than C, S, Z, Y, X of length > 1 (e.g. time).
    """
    axes = axes.upper()
    if len(axes) != len(shape):
        return None
    if imagej and axes.count("I") == 1 and "Z" not in axes:
        axes = axes.replace("I", "Z")  # an ImageJ stack without hyperstack info is a z-stack
    if "Q" in axes or "I" in axes or len(set(axes)) != len(axes):
        return None
    if "Y" not in axes or "X" not in axes:
        return None
    keep = [i for i, a in enumerate(axes) if a in "YX" or shape[i] != 1]
    kept = "".join(axes[i] for i in keep)
    unsupported = [a for a in kept if a not in "CSZYX"]
    if unsupported:
        kept_shape = tuple(shape[i] for i in keep)
        dims = ", ".join(f"{a}={kept_shape[kept.index(a)]}" for a in unsupported)
        raise DataFileError(
            path,
            f"unsupported axes {dims} in image with axes {kept!r} and shape {kept_shape} "
            "(only channels C/S, Z, Y, X are supported; split time series first)",
        )
    return keep, kept


def spatial_axes(axes: str, shape: Sequence[int], spatial_dims: int | None, path: Path) -> str:
    """``axes`` as ``spatial_dims`` reads them where it contradicts the metadata in a simple way:
    ``spatial_dims=2`` turns a ``Z`` axis into channels, ``spatial_dims=3`` a ``C`` axis into depth.

    Raises:
        DataFileError: The contradiction cannot be resolved (Z and channels with ``spatial_dims=2``, no Z
            and no plain ``C`` axis with ``spatial_dims=3``).
    """
    shape = tuple(shape)
    has_z = "Z" in axes
    if spatial_dims == 2 and has_z:
        if "C" in axes or "S" in axes:
            raise DataFileError(
                path,
                f"image has axes {axes!r} (shape {shape}) with a Z axis and channels, but spatial_dims=2",
            )
        logger.info("%s: treating axis Z of axes %r as channels because spatial_dims=2", path, axes)
        return axes.replace("Z", "C")
    if spatial_dims == 3 and not has_z:
        if "C" in axes and "S" not in axes:
            logger.info("%s: treating axis C of axes %r as Z because spatial_dims=3", path, axes)
            return axes.replace("C", "Z")
        raise DataFileError(path, f"image with axes {axes!r} and shape {shape} is 2D, but spatial_dims=3")
    return axes


def _channel_first_order(axes: str) -> list[int]:
    """Positions in ``axes`` of the channel axes (C, then S) followed by Z, Y, X."""
    chan = [a for a in "CS" if a in axes]
    return [axes.index(a) for a in (*chan, *[a for a in "ZYX" if a in axes])]


def layout_from_axes(
    arr: np.ndarray,
    axes: str,
    *,
    imagej: bool,
    spatial_dims: int | None,
    path: Path,
    drop_constant_alpha: bool,
) -> np.ndarray | None:
    """Channel-first array from declared axes (C and S merged into one channel axis), or None if the axes
    do not say enough. ``drop_constant_alpha``: an RGBA / grey+alpha samples axis loses a constant alpha."""
    declared = declared_axes(axes, arr.shape, imagej=imagej, path=path)
    if declared is None:
        return None
    keep, axes = declared
    arr = arr.reshape([arr.shape[i] for i in keep])
    if drop_constant_alpha and "S" in axes and arr.shape[axes.index("S")] in (2, 4):
        arr = drop_alpha_if_constant(arr, axes.index("S"), path)
    axes = spatial_axes(axes, arr.shape, spatial_dims, path)
    n_chan_axes = sum(a in axes for a in "CS")
    arr = np.transpose(arr, _channel_first_order(axes))
    nchan = int(np.prod(arr.shape[:n_chan_axes])) if n_chan_axes else 1
    return arr.reshape((nchan, *arr.shape[n_chan_axes:]))


def lazy_order(
    axes: str, shape: Sequence[int], *, imagej: bool, spatial_dims: int | None, path: Path
) -> tuple[list[int], bool] | None:
    """``(stored axis per view axis, add a channel axis)`` for a lazy channel-first view with the layout of
    :func:`layout_from_axes` (a constant alpha is kept), or None where that layout cannot be had lazily:
    the axes do not say enough, hold two channel axes (C and S, which a view cannot merge), or cannot be
    resolved (:func:`layout_from_axes` of the loaded array then says why)."""
    try:
        declared = declared_axes(axes, shape, imagej=imagej, path=path)
        if declared is None:
            return None
        keep, kept = declared
        if "C" in kept and "S" in kept:
            return None
        kept = spatial_axes(kept, [shape[i] for i in keep], spatial_dims, path)
    except DataFileError:
        return None
    return [keep[i] for i in _channel_first_order(kept)], not ("C" in kept or "S" in kept)


def layout_from_shape(arr: np.ndarray, spatial_dims: int | None, path: Path) -> np.ndarray:
    """Channel-first array inferred from the shape alone (no axes metadata)."""
    shape = arr.shape
    hint = "; pass spatial_dims=2 or 3 and/or channel_axis to read_image"
    if arr.ndim > 4:  # drop leading singleton axes, e.g. (1, 1, Z, Y, X)
        lead = 0
        while arr.ndim - lead > 4 and arr.shape[lead] == 1:
            lead += 1
        arr = arr.reshape(arr.shape[lead:])
    ndim = arr.ndim
    rgb_last = arr.shape[-1] in (3, 4)
    if ndim == 2:
        if spatial_dims == 3:
            raise DataFileError(path, f"image of shape {shape} is 2D but spatial_dims=3")
        return arr[np.newaxis]
    if ndim == 3:
        if spatial_dims == 3:
            return arr[np.newaxis]
        if rgb_last and arr.shape[0] > 4:
            return np.moveaxis(arr, -1, 0)
        if spatial_dims == 2:
            if rgb_last:
                raise DataFileError(
                    path, f"cannot tell whether the channel axis of shape {shape} is first or last{hint}"
                )
            return arr
        raise DataFileError(path, f"ambiguous 3D array of shape {shape}: (C, Y, X) or (Z, Y, X)?{hint}")
    if ndim == 4:
        if spatial_dims == 2:
            raise DataFileError(path, f"image of shape {shape} has 4 axes but spatial_dims=2{hint}")
        if rgb_last and arr.shape[0] > 4:
            return np.moveaxis(arr, -1, 0)
        if rgb_last:
            raise DataFileError(
                path, f"ambiguous 4D array of shape {shape}: (C, Z, Y, X) or (Z, Y, X, C)?{hint}"
            )
        return arr
    raise DataFileError(path, f"unsupported image shape {shape}: expected 2 to 4 axes{hint}")
