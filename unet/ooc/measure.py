"""Out-of-core measurements and detection points: :func:`unet.postprocess.measure_objects` and
:func:`unet.postprocess.detection_points` of a stored label volume, accumulated block by block."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from unet import io
from unet.ooc.blocks import (
    DEFAULT_BLOCK_VOXELS,
    PerObject,
    block_shape,
    block_slices,
    label_block,
    object_groups,
    one_chunk_at_a_time,
    open_array,
    stored_chunks,
)
from unet.postprocess.checks import check_element_size
from unet.postprocess.measure import class_lookup, object_rows
from unet.postprocess.perimeters import imagej_perimeters, pixel_perimeters
from unet.postprocess.points import compact_ids


def _image_view(image: Any, shape: tuple[int, ...]) -> tuple[Any, int, bool]:
    """``(array-like, channels, has channel axis)`` of an intensity image matching ``shape``."""
    if isinstance(image, str | os.PathLike):
        image = io.open_image(image, spatial_dims=len(shape)).array
    ishape = tuple(int(s) for s in image.shape)
    if ishape == shape:
        return image, 1, False
    if len(ishape) == len(shape) + 1 and ishape[1:] == shape:
        return image, ishape[0], True
    raise ValueError(f"image of shape {ishape} does not match labels of shape {shape}")


def measure_pass(
    labels: Any, block: tuple[int, ...], image: Any = None, channels: int = 0, has_channel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per object (ids sorted): ``[count, coordinate sums (nd), bbox min (nd), bbox max (nd),
    intensity sums (C), intensity maxima (C)]`` accumulated block by block."""
    shape = tuple(int(s) for s in labels.shape)
    nd = len(shape)
    acc = PerObject(
        ["sum"] * (1 + nd) + ["min"] * nd + ["max"] * nd + ["sum"] * channels + ["max"] * channels
    )
    for _, sl in block_slices(shape, block):
        lab = label_block(labels, sl, "labels")
        idx = np.flatnonzero(lab)
        if idx.size == 0:
            continue
        uids, inv = compact_ids(lab.reshape(-1)[idx].astype(np.int64))
        m = uids.size
        vals = np.empty((m, 1 + 3 * nd + 2 * channels))
        count = np.bincount(inv, minlength=m)
        vals[:, 0] = count
        coords = np.unravel_index(idx, lab.shape)
        for a, (c, s) in enumerate(zip(coords, sl)):
            vals[:, 1 + a] = np.bincount(inv, weights=c, minlength=m) + count * float(s.start)
            mn = np.full(m, np.iinfo(np.int64).max)
            mx = np.full(m, -1)
            np.minimum.at(mn, inv, c)
            np.maximum.at(mx, inv, c)
            vals[:, 1 + nd + a] = mn + s.start
            vals[:, 1 + 2 * nd + a] = mx + s.start + 1
        del coords
        if image is not None:
            blk = np.asarray(image[(slice(None), *sl)] if has_channel else image[sl])
            blk = blk.reshape(channels, -1)
            for c in range(channels):
                v = blk[c][idx].astype(np.float64)
                vals[:, 1 + 3 * nd + c] = np.bincount(inv, weights=v, minlength=m)
                mx = np.full(m, -np.inf)
                np.maximum.at(mx, inv, v)
                vals[:, 1 + 3 * nd + channels + c] = mx
        acc.add(uids, vals)
    return acc.reduce()


def _compact_region(region: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``region`` with ``ids`` (sorted) renumbered ``1..len(ids)`` and every other label set to 0."""
    flat = region.reshape(-1).astype(np.int64)
    pos = np.minimum(np.searchsorted(ids, flat), ids.size - 1)
    hit = ids[pos] == flat
    out = np.zeros(region.shape, np.int32)
    out.reshape(-1)[hit] = pos[hit] + 1
    return out


def _perimeters_2d(
    labels: Any, ids: np.ndarray, bbox: np.ndarray, block: Sequence[int], es: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``perimeter_px``, ``perimeter_imagej_px`` and (with ``es``) ``perimeter_imagej_um`` per object,
    the in-core estimators evaluated on regions holding whole objects (other labels act as background,
    exactly as they do in-core)."""
    n = ids.size
    perim, perim_ij = np.zeros(n), np.zeros(n)
    perim_ij_um = np.zeros(n) if es is not None else None
    for rows, region in object_groups(bbox, block, 4 * math.prod(block)):
        sel = np.sort(rows)
        compact = _compact_region(label_block(labels, region, "labels"), ids[sel])
        m = sel.size
        perim[sel] = pixel_perimeters(compact, m)[1:]
        perim_ij[sel] = imagej_perimeters(compact, m)[1:]
        if perim_ij_um is not None:
            perim_ij_um[sel] = imagej_perimeters(compact, m, pw=float(es[1]), ph=float(es[0]))[1:]
    return perim, perim_ij, perim_ij_um


@one_chunk_at_a_time
def measure_out_of_core(
    labels_zarr: str | os.PathLike | Any,
    image: Any = None,
    *,
    element_size: Sequence[float] | None = None,
    class_of: Mapping[int, int] | npt.ArrayLike | None = None,
    chunks: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """:func:`unet.postprocess.measure_objects` of a stored label volume, block by block.

    Same rows (one per label id present, in id order) with the same columns in the same order: label,
    class, centroids (px, µm, ImageJ), area/volume, equivalent diameters, 2D perimeters (``perimeter_px``,
    ``perimeter_um``, ``perimeter_imagej_px``, ``perimeter_imagej_um``), mean/max intensity per channel and
    ``bbox``. Ints are identical; floats equal up to the order of summation.

    Args:
        labels_zarr: ``(Y, X)`` / ``(Z, Y, X)`` non-negative integer labels: a ``.zarr`` path or an array-like
            (ids need not be consecutive).
        image: Optional intensities ``(C, *S)`` or ``(*S)``: array-like (zarr, memmap,
            :class:`unet.io.ChannelFirstView`) or an image path (opened lazily with
            :func:`unet.io.open_image`).
        element_size: µm per spatial axis (array order), or None.
        class_of: Class per label id (array indexed by id, or mapping), None: all 1.
        chunks: Processing block; default: the stored chunks grown to about :data:`DEFAULT_BLOCK_VOXELS`.
    """
    lab_arr = open_array(labels_zarr)
    shape = tuple(int(s) for s in lab_arr.shape)
    nd = len(shape)
    if nd not in (2, 3):
        raise ValueError(f"labels must be 2D or 3D, got shape {shape}")
    es = check_element_size(element_size, nd)
    img, channels, has_channel = (None, 0, True) if image is None else _image_view(image, shape)
    block = block_shape(shape, stored_chunks(lab_arr), chunks, DEFAULT_BLOCK_VOXELS)
    ids, st = measure_pass(lab_arr, block, img, channels, has_channel)
    n = ids.size
    if n == 0:
        return []
    counts = st[:, 0]
    cent = st[:, 1 : 1 + nd] / counts[:, None]
    bbox = st[:, 1 + nd : 1 + 3 * nd].astype(np.int64)
    perim = perim_ij = perim_ij_um = None
    if nd == 2:
        perim, perim_ij, perim_ij_um = _perimeters_2d(lab_arr, ids, bbox, block, es)
    intensity: dict[str, np.ndarray] = {}
    for c in range(channels):
        intensity[f"mean_intensity_c{c}"] = st[:, 1 + 3 * nd + c] / counts
        intensity[f"max_intensity_c{c}"] = st[:, 1 + 3 * nd + channels + c]
    return object_rows(
        ids,
        class_lookup(class_of, ids),
        counts,
        cent,
        es,
        (perim, perim_ij, perim_ij_um),
        intensity,
        [tuple(int(v) for v in b) for b in bbox],
    )


@one_chunk_at_a_time
def detection_points_out_of_core(
    labels_zarr: str | os.PathLike | Any,
    probabilities_zarr: str | os.PathLike | Any | None = None,
    class_of: Mapping[int, int] | npt.ArrayLike | None = None,
    *,
    chunks: Sequence[int] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """:func:`unet.postprocess.detection_points` from stored labels (of :func:`label_out_of_core`) and
    probabilities, block by block: one point per label id present, in id order, the centroid weighted by
    ``1 - p_background`` (the plain centroid where those weights sum to 0, or without probabilities).

    Returns:
        ``points`` ``(N, ndim)`` float64 in pixels (array order) and ``classes`` ``(N,)`` int64 (from
        ``class_of``; 1 when not given).
    """
    lab_arr = open_array(labels_zarr)
    shape = tuple(int(s) for s in lab_arr.shape)
    nd = len(shape)
    p = None if probabilities_zarr is None else open_array(probabilities_zarr)
    if p is not None and tuple(p.shape[1:]) != shape:
        raise ValueError(f"probabilities of shape {tuple(p.shape)} do not match labels of shape {shape}")
    block = block_shape(shape, stored_chunks(lab_arr), chunks, DEFAULT_BLOCK_VOXELS)
    acc = PerObject(["sum"] * (2 + 2 * nd))
    for _, sl in block_slices(shape, block):
        lab = label_block(lab_arr, sl, "labels")
        idx = np.flatnonzero(lab)
        if idx.size == 0:
            continue
        uids, inv = compact_ids(lab.reshape(-1)[idx].astype(np.int64))
        m = uids.size
        vals = np.zeros((m, 2 + 2 * nd))
        vals[:, 0] = np.bincount(inv, minlength=m)
        w = None
        if p is not None:
            w = 1.0 - np.asarray(p[(slice(0, 1), *sl)]).reshape(-1)[idx].astype(np.float64)
            vals[:, 1] = np.bincount(inv, weights=w, minlength=m)
        for a, (c, s) in enumerate(zip(np.unravel_index(idx, lab.shape), sl)):
            g = c + s.start
            vals[:, 2 + a] = np.bincount(inv, weights=g, minlength=m)
            if w is not None:
                vals[:, 2 + nd + a] = np.bincount(inv, weights=g * w, minlength=m)
        acc.add(uids, vals)
    ids, st = acc.reduce()
    if ids.size == 0:
        return np.zeros((0, nd)), np.zeros(0, np.int64)
    cent = st[:, 2 : 2 + nd] / st[:, :1]
    ok = st[:, 1] > 0
    cent[ok] = st[ok, 2 + nd :] / st[ok, 1:2]
    return cent, class_lookup(class_of, ids)
