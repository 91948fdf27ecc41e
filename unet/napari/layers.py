"""napari layer data, ``(data, kwargs, layer_type)``, for the outputs of a prediction at the image's scale.

Shared by the readers and the widget, so a file opened in napari and a prediction made in napari look
alike. ``scale`` is the element size in µm per spatial axis (``(y, x)`` or ``(z, y, x)``), 1 per axis when
unknown; the element size itself (or None) is kept in the layer's ``metadata["element_size"]``, which the
widget reads back before it falls back to the layer's scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]

#: colours of the foreground classes' probabilities (class 0, the background, is hidden)
_CLASS_COLORMAPS = ("green", "magenta", "cyan", "yellow", "red", "blue")


def layer_scale(element_size: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """napari ``scale`` for ``ndim`` spatial axes: the element size (µm), or 1 per axis when unknown."""
    if element_size is None:
        return (1.0,) * ndim
    es = tuple(float(s) for s in element_size)
    if len(es) != ndim:
        raise ValueError(f"element size {es} does not have one value per spatial axis ({ndim})")
    return es


def _common(
    name: str,
    element_size: Sequence[float] | None,
    spatial_dims: int,
    translate: Sequence[float] | None,
    **extra: Any,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": layer_scale(element_size, spatial_dims),
        "metadata": {"element_size": None if element_size is None else tuple(float(s) for s in element_size)},
    }
    if translate is not None:
        kwargs["translate"] = tuple(float(t) for t in translate)
    kwargs["metadata"].update(extra.pop("metadata", {}))
    kwargs.update(extra)
    return kwargs


def probability_layer(
    probabilities: np.ndarray,
    element_size: Sequence[float] | None,
    name: str,
    *,
    translate: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """Class probabilities ``(K, *S)`` as one image layer per class (``channel_axis=0``): class 0 (background)
    hidden, the foreground classes shown additively in their own colours, contrast 0..1."""
    probs = np.asarray(probabilities)
    if probs.ndim not in (3, 4) or probs.shape[0] < 1:
        raise ValueError(f"probabilities must be (K, Y, X) or (K, Z, Y, X), got shape {probs.shape}")
    k = int(probs.shape[0])
    names = [f"{name} background" if c == 0 else f"{name} class {c}" for c in range(k)]
    colormaps = ["gray"] + [_CLASS_COLORMAPS[(c - 1) % len(_CLASS_COLORMAPS)] for c in range(1, k)]
    kwargs = _common(
        name,
        element_size,
        probs.ndim - 1,
        translate,
        metadata=metadata or {},
        channel_axis=0,
        contrast_limits=[(0.0, 1.0)] * k,
        colormap=colormaps[:k],
        blending="additive",
        visible=[c > 0 or k == 1 for c in range(k)],
    )
    kwargs["name"] = names
    return probs, kwargs, "image"


def labels_layer(
    labels: np.ndarray,
    element_size: Sequence[float] | None,
    name: str,
    *,
    translate: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """Instance labels ``(*S)`` (0 = background) as a labels layer."""
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"labels must be (Y, X) or (Z, Y, X), got shape {lab.shape}")
    return lab, _common(name, element_size, lab.ndim, translate, metadata=metadata or {}), "labels"


def points_layer(
    points: np.ndarray,
    classes: np.ndarray,
    element_size: Sequence[float] | None,
    name: str,
    *,
    ndim: int,
    translate: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """Points ``(N, ndim)`` in pixels, array order, with their class as the feature ``class`` (colour)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, ndim)
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(cls) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(cls)} classes")
    kwargs = _common(
        name,
        element_size,
        ndim,
        translate,
        metadata=metadata or {},
        features={"class": cls},
        face_color="yellow",
        border_color="black",
        size=5,
        ndim=ndim,
    )
    return pts, kwargs, "points"
