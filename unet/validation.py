"""One validator per fact: element sizes and label images, refused with one exception type (``ValueError``)
and a message that names the thing checked (``name``: a parameter, a config key or a file)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["NonFiniteImage", "check_element_size", "check_finite", "check_labels"]

_AXES = {2: "2D (Y, X)", 3: "3D (Z, Y, X)"}


class NonFiniteImage(ValueError):
    """An image with NaN or infinite values: bad input (predict skips it and says so), found when its
    pixels are read (a file's header cannot tell)."""


def check_finite(array: np.ndarray, name: str = "image", where: str = "") -> None:
    """Refuse an array holding NaN or infinite values (:class:`NonFiniteImage`, naming ``name`` and,
    for a window of a larger image, ``where`` it is)."""
    if not np.isfinite(array).all():
        raise NonFiniteImage(f"{name}: contains NaN or infinite values{where}")


def check_element_size(
    element_size: float | Sequence[float] | None,
    ndim: int | None = None,
    *,
    name: str = "element_size",
    broadcast: bool = False,
) -> tuple[float, ...] | None:
    """``element_size`` (physical extent of a pixel per spatial axis, e.g. µm) as a tuple of floats, or None.

    Args:
        element_size: one value per spatial axis, or None (no physical size).
        ndim: the number of spatial axes it must have; None accepts any number but zero.
        name: what the message calls it (``element_size``, ``model.element_size``, a file...).
        broadcast: a single number (or a one-element sequence) stands for every one of the ``ndim`` axes.

    Raises:
        ValueError: when it is not ``ndim`` finite positive numbers.
    """
    if element_size is None:
        return None
    if isinstance(element_size, str):
        raise ValueError(f"{name} {element_size!r} is not a sequence of numbers")
    scalar = np.ndim(element_size) == 0
    try:
        values = tuple(float(v) for v in np.asarray(element_size, dtype=np.float64).ravel())
    except (TypeError, ValueError):
        raise ValueError(f"{name} {element_size!r} is not a sequence of numbers") from None
    if scalar and not broadcast:
        raise ValueError(f"{name} {values[0]!r} is one number; give one per spatial axis")
    if broadcast and ndim is not None and len(values) == 1:
        values = values * ndim
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} {values} must be finite and positive")
    if ndim is not None and len(values) != ndim:
        raise ValueError(f"{name} {values} has {len(values)} entries for a {ndim}D image")
    if not values:
        raise ValueError(f"{name} is empty; give one value per spatial axis")
    return values


def check_labels(labels: np.ndarray, name: str = "labels", ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """A label image (instance ids or classes, 0 = background) as an integer array; bool becomes uint8.

    Args:
        labels: a numpy array of ``([Z,] Y, X)`` labels.
        name: what the message calls it (``labels``, ``mask``, a file...).
        ndims: the numbers of dimensions accepted.

    Raises:
        ValueError: when it is not a numpy array of ``ndims`` dimensions, not integer (or bool) or has a
            negative value.
    """
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(labels).__name__}")
    if labels.ndim not in tuple(ndims):
        axes = " or ".join(_AXES.get(n, f"{n}D") for n in ndims)
        raise ValueError(f"{name} must be {axes}, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype (0 = background), got {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError(f"{name} must be non-negative, found minimum {labels.min()}")
    return labels
