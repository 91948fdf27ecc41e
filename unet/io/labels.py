"""Label images: instance labels or class / binary masks, ``(Y, X)`` or ``(Z, Y, X)``, 0 = background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet.io.common import DataFileError, PathLike, check_file, lower_suffix
from unet.io.images import IMAGE_SUFFIXES, PIL_SUFFIXES, TIFF_SUFFIXES, read_npy, read_pil, read_tiff
from unet.io.layout import drop_alpha_if_constant


def read_labels(path: PathLike) -> np.ndarray:
    """Read an instance label image or a class/binary mask.

    Accepts TIFF (single channel, ``(Y, X)`` or ``(Z, Y, X)``; multi-page TIFFs are z-stacks),
    PNG/BMP (grey or palette: palette indices are returned), and ``.npy``. Singleton axes are dropped.
    Values are returned as stored: a binary mask stays 0/255 (use :func:`unet.postprocess.mask_to_instances`
    for instances); bool becomes uint8 0/1; float arrays holding only integer values are converted to
    int32 (int64 if needed). Colour images whose channels are all identical (grey saved as RGB) are
    accepted as grey.

    Args:
        path: Label file.

    Returns:
        Non-negative integer array ``(Y, X)`` or ``(Z, Y, X)``.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Empty/corrupt file, colour or multi-channel data, non-integer or non-finite
            float values, negative values, or more than 3 axes.
    """
    p = check_file(path)
    suffix = lower_suffix(p)
    if suffix in TIFF_SUFFIXES:
        tiff = read_tiff(p)
        arr, axes = tiff.array, tiff.axes.upper()
        for ch in "SC":
            if ch in axes and arr.shape[axes.index(ch)] > 1:
                arr = _collapse_identical_channels(arr, axes.index(ch), p)
                axes = axes.replace(ch, "")
    elif suffix in PIL_SUFFIXES:
        arr = read_pil(p, labels=True)
        if arr.ndim == 3:
            arr = _collapse_identical_channels(arr, 2, p)
    elif suffix == ".npy":
        arr = read_npy(p)
    else:
        raise DataFileError(
            p, f"unsupported label format {suffix!r} (supported: {', '.join(IMAGE_SUFFIXES)})"
        )
    if arr.ndim > 2:
        arr = np.squeeze(arr, axis=tuple(i for i in range(arr.ndim - 2) if arr.shape[i] == 1))
    if arr.ndim not in (2, 3):
        raise DataFileError(
            p,
            f"label image must be (Y, X) or (Z, Y, X), got shape {arr.shape} "
            "(multi-channel label images are not supported)",
        )
    return validate_labels(arr, p)


def _collapse_identical_channels(arr: np.ndarray, axis: int, path: Path) -> np.ndarray:
    """Colour/multi-channel labels: accept only if all channels (ignoring constant alpha) are equal."""
    n = arr.shape[axis]
    if n in (2, 4):
        arr = drop_alpha_if_constant(arr, axis, path)
        n = arr.shape[axis]
    first = np.take(arr, 0, axis=axis)
    if n == 1 or all(np.array_equal(first, np.take(arr, i, axis=axis)) for i in range(1, n)):
        return first
    raise DataFileError(
        path,
        f"label image has {n} different channels (colour/RGB, shape {arr.shape}); "
        "labels must be a single-channel integer image",
    )


def validate_labels(arr: np.ndarray, path: Path | None) -> np.ndarray:
    """Check label values; returns the array (bool -> uint8, integral floats -> int32/int64)."""

    def fail(message: str) -> None:
        if path is None:
            raise ValueError(message)
        raise DataFileError(path, message)

    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8)
    if kind not in "fiu":
        fail(f"unsupported label dtype {arr.dtype}; expected integer labels")
    if kind == "f":
        if not np.all(np.isfinite(arr)):
            fail("label image contains NaN or infinite values")
        if not np.array_equal(arr, np.round(arr)):
            fail(f"label image has non-integer values (dtype {arr.dtype}); expected integer labels")
    if kind in "fi" and arr.size and arr.min() < 0:
        fail(f"label image has negative values (min {arr.min()}); labels must be >= 0")
    if kind == "f":
        return arr.astype(np.int64 if arr.size and arr.max() >= 2**31 else np.int32)
    return arr
