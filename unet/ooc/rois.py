"""Out-of-core ImageJ ROI set: :func:`unet.io.write_rois` of a stored label volume, reading objects in
groups."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unet import io
from unet.ooc.blocks import (
    DEFAULT_BLOCK_VOXELS,
    block_shape,
    label_block,
    object_groups,
    one_chunk_at_a_time,
    open_array,
    stored_chunks,
)
from unet.ooc.measure import measure_pass


@one_chunk_at_a_time
def write_rois_out_of_core(
    labels_zarr: str | os.PathLike | Any,
    path: str | os.PathLike,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    chunks: Sequence[int] | None = None,
) -> int:
    """:func:`unet.io.write_rois` of a stored label volume: the same ROI set (one traced polygon or
    composite ROI per object (2D) / per object and z slice (3D), in label order, same names and
    positions), reading objects in groups (see :mod:`unet.ooc`).

    Args:
        labels_zarr: ``(Y, X)`` / ``(Z, Y, X)`` labels (< 2**31): a ``.zarr`` path or an array-like.
        path: Output ``.zip``.
        rows: The objects' rows from :func:`measure_out_of_core` (``label`` and ``bbox`` are used), to
            spare a pass over the labels; default: computed.
        chunks: Processing block.

    Returns:
        The number of ROIs written.
    """
    p = io.roi_set_path(path)
    lab_arr = open_array(labels_zarr)
    shape = tuple(int(s) for s in lab_arr.shape)
    nd = len(shape)
    if nd not in (2, 3):
        raise ValueError(f"{p}: labels must be (Y, X) or (Z, Y, X), got shape {shape}")
    io.check_roi_plane(shape, p)
    block = block_shape(shape, stored_chunks(lab_arr), chunks, DEFAULT_BLOCK_VOXELS)
    if rows is None:
        ids, st = measure_pass(lab_arr, block)
        bbox = st[:, 1 + nd : 1 + 3 * nd].astype(np.int64)
    else:
        ids = np.array([int(r["label"]) for r in rows], np.int64)
        bbox = np.array([tuple(r["bbox"]) for r in rows], np.int64).reshape(-1, 2 * nd)
    if ids.size and ids.max() >= 2**31:
        raise ValueError(f"{p}: label ids must be < 2**31")
    width = io.label_digits(int(ids.max()) if ids.size else 0)
    per_object: dict[int, list] = {}
    max_voxels = 4 * math.prod(block)
    for group, region in object_groups(bbox, block, max_voxels) if ids.size else ():
        lo = np.array([s.start for s in region])
        if nd == 3 and group.size == 1 and math.prod(s.stop - s.start for s in region) > max_voxels:
            plane = (region[1].stop - region[1].start) * (region[2].stop - region[2].start)
            step = max(1, max_voxels // plane)  # a large object: read in z slabs
            slabs = [(z, min(z + step, region[0].stop)) for z in range(region[0].start, region[0].stop, step)]
        else:
            slabs = [(region[0].start, region[0].stop)] if nd == 3 else [None]
        for slab in slabs:
            reg = region if slab is None else (slice(*slab), *region[1:])
            z0 = reg[0].start if nd == 3 else 0
            lab = label_block(lab_arr, reg, "labels")
            for k in group:
                lid = int(ids[k])
                b0, b1 = bbox[k, :nd] - lo, bbox[k, nd:] - lo
                if nd == 2:
                    obj = lab[b0[0] : b1[0], b0[1] : b1[1]] == lid
                    roi = io.outline_roi(obj, (bbox[k, 1], bbox[k, 0]), lid, width)
                    per_object.setdefault(lid, []).append(roi)
                    continue
                za, zb = max(bbox[k, 0], reg[0].start), min(bbox[k, nd], reg[0].stop)
                for z in range(za, zb):
                    plane = lab[z - z0, b0[1] : b1[1], b0[2] : b1[2]] == lid
                    if plane.any():
                        roi = io.outline_roi(plane, (bbox[k, 2], bbox[k, 1]), lid, width, int(z))
                        per_object.setdefault(lid, []).append(roi)
            del lab
    return io.write_roi_set([roi for lid in sorted(per_object) for roi in per_object[lid]], p)
