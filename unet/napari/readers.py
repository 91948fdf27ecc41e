"""napari readers for the files ``predict.py`` writes, through :mod:`unet.io` (no format is re-implemented).

* ``<stem>_probabilities.tif``: :func:`unet.io.read_image` (channel-first ``(K, *S)``, element size from the
  ImageJ / OME metadata) -> one image layer per class (:func:`unet.napari.layers.probability_layer`).
* ``<stem>_labels.tif``: :func:`unet.io.read_labels`, element size from the TIFF metadata -> labels layer.
* ``<stem>_points.csv``: :func:`unet.io.read_points_csv` -> points layer with a ``class`` feature.
* ``<stem>_rois.zip``: :func:`unet.io.read_rois` (ImageJ ROIs rasterised as ImageJ does) -> a labels layer
  for area ROIs, a points layer for multi-point ROIs (and a labels layer ``ignore`` for ROIs so named).

Points and ROIs carry no element size and ROIs no image shape: both come from the sibling
``<stem>_labels.tif`` (or ``<stem>_probabilities.tif``) when it is there, as ``predict.py`` writes them
side by side. Without one, a points CSV's scale comes from its ``y_um`` / ``x_um`` columns (when written
with an element size) and a ROI set's shape from :func:`unet.io.roi_extent`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from unet import io
from unet.io.images import read_tiff, tiff_element_size
from unet.napari.layers import LayerData, labels_layer, points_layer, probability_layer

#: file-name endings read here, by kind (``unet.predict.OUTPUT_SUFFIXES`` and ``.tiff`` twins)
SUFFIXES: dict[str, tuple[str, ...]] = {
    "probabilities": ("_probabilities.tif", "_probabilities.tiff"),
    "labels": ("_labels.tif", "_labels.tiff"),
    "points": ("_points.csv",),
    "rois": ("_rois.zip",),
}


def output_kind(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(kind, stem)`` of a prediction output file name, or None for any other file."""
    name = Path(path).name
    lower = name.lower()
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            if lower.endswith(suffix) and len(name) > len(suffix):
                return kind, name[: -len(suffix)]
    return None


def get_reader(
    path: str | os.PathLike | Sequence[str | os.PathLike],
) -> Callable[..., list[LayerData]] | None:
    """napari reader hook: :func:`read_outputs` if every path is a prediction output, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(output_kind(p) is None or not Path(p).is_file() for p in paths):
        return None
    return read_outputs


def read_outputs(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[LayerData]:
    """Layer data for one or several prediction output files (see the module doc)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        layers += read_output(p)
    return layers


def read_output(path: str | os.PathLike) -> list[LayerData]:
    """Layer data for one prediction output file.

    Raises:
        ValueError: Not a prediction output name; :class:`unet.io.DataFileError` for a bad file.
    """
    p = Path(path)
    found = output_kind(p)
    if found is None:
        endings = ", ".join(s for group in SUFFIXES.values() for s in group)
        raise ValueError(f"{p}: not a prediction output (file names end with {endings})")
    kind, stem = found
    meta = {"path": str(p)}
    if kind == "probabilities":
        image = io.read_image(p)
        return [probability_layer(image.array, image.element_size, f"{stem} probabilities", metadata=meta)]
    if kind == "labels":
        labels = io.read_labels(p)
        es = tiff_element_size(read_tiff(p, pixels=False).meta, labels.ndim, p)
        return [labels_layer(labels, es, f"{stem} labels", metadata=meta)]
    if kind == "points":
        return [_read_points(p, stem, meta)]
    return _read_rois(p, stem, meta)


def sibling_geometry(path: Path, stem: str) -> tuple[tuple[int, ...], tuple[float, ...] | None] | None:
    """Spatial shape and element size of the labels (else probabilities) TIFF beside ``path``, or None."""
    for kind in ("labels", "probabilities"):
        for suffix in SUFFIXES[kind]:
            tif = path.with_name(stem + suffix)
            if not tif.is_file():
                continue
            try:
                t = read_tiff(tif, pixels=False)
            except io.DataFileError:
                continue
            shape = tuple(s for a, s in zip(t.axes.upper(), t.shape) if a in "ZYX")
            if len(shape) in (2, 3):
                return shape, tiff_element_size(t.meta, len(shape), tif)
    return None


def _element_size_from_um_columns(path: Path, ndim: int) -> tuple[float, ...] | None:
    """Element size from a points CSV's ``<axis>_um`` columns (``pixel * element_size``), or None."""
    axes = ("z", "y", "x")[3 - ndim :]
    rows = io.read_csv(path)
    if not rows or any(f"{a}_um" not in rows[0] for a in axes):
        return None
    sizes = []
    for a in axes:
        ratios = [
            float(r[f"{a}_um"]) / float(r[a]) for r in rows if r.get(a) and float(r[a]) != 0 and r[f"{a}_um"]
        ]
        if not ratios or not all(math.isfinite(v) and v > 0 for v in ratios):
            return None
        sizes.append(float(np.median(ratios)))
    return tuple(sizes)


def _read_points(path: Path, stem: str, meta: dict) -> LayerData:
    sibling = sibling_geometry(path, stem)
    ndim = io.csv_spatial_dims(path) or (len(sibling[0]) if sibling else 2)
    shape, es = sibling if sibling and len(sibling[0]) == ndim else (None, None)
    points, classes = io.read_points_csv(path, ndim, shape=shape)
    if es is None:
        es = _element_size_from_um_columns(path, ndim)
    return points_layer(points, classes, es, f"{stem} points", ndim=ndim, metadata=meta)


def _read_rois(path: Path, stem: str, meta: dict) -> list[LayerData]:
    sibling = sibling_geometry(path, stem)
    if sibling is not None:
        shape, es = sibling
    else:
        nz, ny, nx = io.roi_extent(path)
        shape, es = ((nz, ny, nx) if nz else (ny, nx)), None
    ann = io.read_rois(path, shape)
    ndim = len(shape)
    layers: list[LayerData] = []
    if ann.labels.any() or not len(ann.points):
        layers.append(labels_layer(ann.labels, es, f"{stem} ROIs", metadata=meta))
    if len(ann.points):
        layers.append(
            points_layer(ann.points, ann.classes, es, f"{stem} ROI points", ndim=ndim, metadata=meta)
        )
    if ann.ignore.any():
        layers.append(labels_layer(ann.ignore.astype(np.uint8), es, f"{stem} ROIs ignore", metadata=meta))
    return layers
