"""Out-of-core instance labels: connected components of each foreground class of a stored probability (or
class) map, block by block, with exactly the in-core ids (three passes, see :mod:`unet.ooc`)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from unet import io
from unet.ooc.blocks import (
    DEFAULT_BLOCK_VOXELS,
    block_grid,
    block_shape,
    block_slices,
    label_block,
    one_chunk_at_a_time,
    open_array,
    stored_chunks,
)
from unet.postprocess.checks import check_element_size, connectivity_structure, min_pixels

_U32_MAX = 2**32 - 1


# ------------------------------------------------------------------------------------------- labelling
def _argmax(p: np.ndarray) -> np.ndarray:
    """``np.argmax(p, axis=0)`` (ties and NaN included) as the smallest unsigned dtype, without the
    8-byte index array."""
    k = p.shape[0]
    if k > 255 or np.isnan(p).any():
        return np.argmax(p, axis=0)
    if k == 2:
        return np.greater(p[1], p[0]).view(np.uint8)
    best = p[0].copy()
    out = np.zeros(p.shape[1:], np.uint8)
    for c in range(1, k):
        upd = p[c] > best
        out[upd] = c
        np.maximum(best, p[c], out=best)
    return out


def _first_positions(vals: np.ndarray, n: int) -> np.ndarray:
    """Position in ``vals`` (labels of the foreground pixels in raster order) of each label's first pixel.

    ``scipy.ndimage.label`` numbers components in raster order of their first pixel, so label ``k`` first
    appears where the running maximum reaches ``k`` (O(n)); a sort is the fallback if that ever changes.
    """
    want = np.arange(1, n + 1, dtype=vals.dtype)
    pos = np.searchsorted(np.maximum.accumulate(vals), want)
    if pos.size and (pos[-1] >= vals.size or not np.array_equal(vals[np.minimum(pos, vals.size - 1)], want)):
        _, pos = np.unique(vals, return_index=True)
    return pos


def _face_pairs(a: np.ndarray, bpad: np.ndarray, offsets: list[tuple[int, ...]], cls: np.ndarray) -> list:
    """Edges (as uint64 ``low << 32 | high``) between provisional ids of the same class that touch across
    a block boundary: ``a`` the last layer before it, ``bpad`` the first layer after it padded by one
    pixel on every side, ``offsets`` the in-plane offsets of the structuring element's neighbours."""
    out = []
    nz = a != 0
    if not nz.any():
        return out
    for off in offsets:
        b = bpad[tuple(slice(1 + o, 1 + o + n) for o, n in zip(off, a.shape))]
        m = nz & (b != 0)
        if not m.any():
            continue
        x, y = a[m], b[m]
        same = cls[x] == cls[y]
        if same.any():
            key = (x[same].astype(np.uint64) << np.uint64(32)) | y[same].astype(np.uint64)
            out.append(np.unique(key))
    return out


@one_chunk_at_a_time
def label_out_of_core(
    probabilities_zarr: str | os.PathLike | Any,
    labels_zarr_out: str | os.PathLike,
    *,
    min_size: float = 0,
    connectivity: int | None = None,
    chunks: Sequence[int] | None = None,
    element_size: Sequence[float] | None = None,
) -> tuple[int, npt.NDArray[np.int64]]:
    """Instance labels of a stored probability (or class) map, block by block, into a zarr array.

    Equals ``postprocess.instance_labels(probabilities, min_size=..., connectivity=..., element_size=...)``
    exactly (same ids, same ``class_of``), without loading the volume; see :mod:`unet.ooc`.

    Args:
        probabilities_zarr: ``(K, Y, X)`` / ``(K, Z, Y, X)`` float probabilities (arg-max per pixel, ties to
            the lower class), or an integer class map ``(*S)`` (0 = background) / boolean mask: a ``.zarr``
            path or any array-like with ``shape``, ``dtype`` and slicing (zarr, numpy memmap).
        labels_zarr_out: Output ``.zarr`` directory: uint32 labels ``(*S)``, chunks = the processing block,
            attributes ``axes``, ``n_objects`` (and ``element_size`` from the input's attributes). Written
            under a hidden temporary name and renamed when complete; temporaries go next to it.
        min_size: Components with fewer pixels are removed (µm² / µm³ with ``element_size``, as in-core).
        connectivity: 1 .. ndim (faces only .. full, the default), as in-core.
        chunks: Spatial processing block (= output chunks); default: the stored chunks grown to about
            :data:`DEFAULT_BLOCK_VOXELS` voxels.
        element_size: Only changes the unit of ``min_size``.

    Returns:
        ``(n_objects, class_of)``: ``class_of`` ``(n_objects + 1,)`` int64, ``class_of[0] == 0``.
    """
    src = open_array(probabilities_zarr)
    dtype = np.dtype(src.dtype)
    shape_all = tuple(int(s) for s in src.shape)
    if np.issubdtype(dtype, np.floating):
        if len(shape_all) not in (3, 4) or shape_all[0] < 2:
            raise ValueError(f"probabilities must be (K, Y, X) or (K, Z, Y, X) with K >= 2, got {shape_all}")
        probs, shape = True, shape_all[1:]
    elif dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        if len(shape_all) not in (2, 3):
            raise ValueError(f"a class map must be (Y, X) or (Z, Y, X), got shape {shape_all}")
        probs, shape = False, shape_all
    else:
        raise ValueError(f"expected float probabilities or an integer class map, got dtype {dtype}")
    nd = len(shape)
    structure = connectivity_structure(nd, connectivity)
    min_px = min_pixels(min_size, check_element_size(element_size, nd))
    stored = stored_chunks(src)
    block = block_shape(shape, None if stored is None else stored[-nd:], chunks, DEFAULT_BLOCK_VOXELS)
    grid = block_grid(shape, block)
    out = Path(labels_zarr_out)
    work = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.work.tmp"
    work.mkdir(parents=True)
    try:
        # ---- pass 1: block-local components -> provisional ids, tables, faces
        prov = io.create_zarr(work / "provisional.zarr", shape, chunks=block, dtype=np.uint32)
        faces = {
            ax: io.create_zarr(
                work / f"faces{ax}.zarr",
                (2 * (grid[ax] - 1), *shape[:ax], *shape[ax + 1 :]),
                chunks=(1, *block[:ax], *block[ax + 1 :]),
                dtype=np.uint32,
            )
            for ax in range(nd)
            if grid[ax] > 1
        }
        cls_parts = [np.zeros(1, np.int64)]
        size_parts = [np.zeros(1, np.int64)]
        first_parts = [np.full(1, np.iinfo(np.int64).max)]
        total = 0
        for g, sl in block_slices(shape, block):
            if probs:
                cmap = _argmax(np.asarray(src[(slice(None), *sl)]))
            else:
                cmap = label_block(src, sl, "class map")
            bshape = cmap.shape
            bprov = np.zeros(bshape, np.uint32)
            present = np.flatnonzero(np.bincount(cmap.reshape(-1))) if cmap.size else []
            for c in present:
                if c == 0:
                    continue
                lab, n = ndi.label(cmap == c, structure=structure)
                idx = np.flatnonzero(lab)
                vals = lab.reshape(-1)[idx]
                if total + n > _U32_MAX:
                    raise ValueError(f"more than {_U32_MAX} block-local components; use larger chunks")
                pos = _first_positions(vals, n)
                coords = np.unravel_index(idx[pos], bshape)
                cls_parts.append(np.full(n, int(c), np.int64))
                size_parts.append(np.bincount(vals, minlength=n + 1)[1:].astype(np.int64))
                first_parts.append(
                    np.ravel_multi_index(tuple(x + s.start for x, s in zip(coords, sl)), shape)
                )
                bprov.reshape(-1)[idx] = vals.astype(np.uint32) + np.uint32(total)
                total += n
                del lab, idx, vals
            prov[sl] = bprov
            for ax, face in faces.items():
                rest = (*sl[:ax], *sl[ax + 1 :])
                if g[ax] > 0:
                    face[(2 * g[ax] - 1, *rest)] = np.take(bprov, 0, axis=ax)
                if g[ax] < grid[ax] - 1:
                    face[(2 * g[ax], *rest)] = np.take(bprov, -1, axis=ax)
            del cmap, bprov
        cls_tab = np.concatenate(cls_parts)
        size_tab = np.concatenate(size_parts)
        first_tab = np.concatenate(first_parts)
        del cls_parts, size_parts, first_parts

        # ---- pass 2: provisional ids touching across block boundaries
        edges: list[np.ndarray] = []
        for ax, face in faces.items():
            offsets = [
                tuple(int(o[i]) - 1 for i in range(nd) if i != ax)
                for o in zip(*np.nonzero(structure))
                if o[ax] == 2
            ]
            plane = face.shape[1:]
            band = ([b for i, b in enumerate(block) if i != ax] or [1])[0]
            for j in range(grid[ax] - 1):
                for r0 in range(0, plane[0], band):
                    r1 = min(r0 + band, plane[0])
                    a = np.asarray(face[(2 * j, slice(r0, r1))])
                    lo, hi = max(r0 - 1, 0), min(r1 + 1, plane[0])
                    bpad = np.zeros((r1 - r0 + 2, *(p + 2 for p in plane[1:])), np.uint32)
                    inner = tuple(slice(1, -1) for _ in plane[1:])
                    bpad[(slice(lo - r0 + 1, hi - r0 + 1), *inner)] = face[(2 * j + 1, slice(lo, hi))]
                    edges += _face_pairs(a, bpad, offsets, cls_tab)
                    if len(edges) > 64:
                        edges = [np.unique(np.concatenate(edges))]

        # ---- global components, min_size, in-core order
        n_prov = total
        if edges:
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            keys = np.unique(np.concatenate(edges))
            i = (keys >> np.uint64(32)).astype(np.int64)
            j = (keys & np.uint64(_U32_MAX)).astype(np.int64)
            del keys, edges
            graph = coo_matrix((np.ones(i.size, np.int8), (i, j)), shape=(n_prov + 1, n_prov + 1)).tocsr()
            del i, j
            n_comp, comp = connected_components(graph, directed=False)
            del graph
        else:
            n_comp, comp = n_prov + 1, np.arange(n_prov + 1)
        comp_size = np.bincount(comp, weights=size_tab, minlength=n_comp)
        comp_first = np.full(n_comp, np.iinfo(np.int64).max)
        np.minimum.at(comp_first, comp, first_tab)
        comp_class = np.zeros(n_comp, np.int64)
        comp_class[comp] = cls_tab
        keep = np.flatnonzero((comp_class > 0) & (comp_size >= min_px))
        order = keep[np.lexsort((comp_first[keep], comp_class[keep]))]
        n_objects = int(order.size)
        final = np.zeros(n_comp, np.uint32)
        final[order] = np.arange(1, n_objects + 1, dtype=np.uint32)
        lut = final[comp]
        class_of = np.concatenate([np.zeros(1, np.int64), comp_class[order]])
        del comp, comp_size, comp_first, comp_class, final, cls_tab, size_tab, first_tab

        # ---- pass 3: provisional -> final ids
        src_attrs = dict(getattr(src, "attrs", {}) or {})
        attrs = {
            "axes": "YX" if nd == 2 else "ZYX",
            "content": "instance labels (connected components per class), 0 = background",
            "n_objects": n_objects,
        }
        if src_attrs.get("element_size") is not None:
            attrs["element_size"] = src_attrs["element_size"]
        with io.atomic_zarr(out, shape, chunks=block, dtype=np.uint32, attrs=attrs) as z:
            for _, sl in block_slices(shape, block):
                z[sl] = lut[np.asarray(prov[sl])]
        return n_objects, class_of
    finally:
        shutil.rmtree(work, ignore_errors=True)
