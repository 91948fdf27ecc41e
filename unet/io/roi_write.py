"""Writing ImageJ / Fiji ROI sets (``.zip``): instance labels as outlines traced along pixel edges, which
ImageJ rasterises back to exactly the labels, and points as multi-point ROIs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import roifile
from scipy import ndimage

from unet.io.common import PathLike, atomic_write
from unet.io.labels import validate_labels

# directions in image coordinates (x right, y down), clockwise on screen: E, S, W, N
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)


def _trace_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Outline a 2D pixel set by closed loops along pixel edges.

    Every boundary edge between a pixel of the set and a pixel outside is used exactly once, oriented
    with the set on the right-hand side (clockwise on screen for outer outlines, anticlockwise for
    holes), so the loops fill exactly the set under both the even-odd and the non-zero winding rule with
    ImageJ's pixel-centre rule. At vertices where two pixels touch only diagonally the outline turns so
    that the diagonal pixels stay connected (8-connectivity, like ImageJ's traced ROIs); an 8-connected
    set without holes therefore gives exactly one loop. Only corner vertices are kept.

    Args:
        mask: 2D boolean array.

    Returns:
        Loops as ``(n, 2)`` int64 arrays of ``(x, y)`` corner coordinates in the mask's pixel-corner frame.
    """
    m = np.pad(mask.astype(bool), 1)
    stride = m.shape[1] + 1  # vertex grid width (padded X + 1)
    inner = m[1:-1, 1:-1]
    rr, cc = np.nonzero(inner)
    rr, cc = rr + 1, cc + 1  # padded pixel coordinates
    starts: list[np.ndarray] = []
    dirs: list[np.ndarray] = []
    # top edges (pixel above is outside): (c, r) -> E
    sel = ~m[rr - 1, cc]
    starts.append(rr[sel] * stride + cc[sel])
    dirs.append(np.full(int(sel.sum()), 0))
    # right edges: (c+1, r) -> S
    sel = ~m[rr, cc + 1]
    starts.append(rr[sel] * stride + cc[sel] + 1)
    dirs.append(np.full(int(sel.sum()), 1))
    # bottom edges: (c+1, r+1) -> W
    sel = ~m[rr + 1, cc]
    starts.append((rr[sel] + 1) * stride + cc[sel] + 1)
    dirs.append(np.full(int(sel.sum()), 2))
    # left edges: (c, r+1) -> N
    sel = ~m[rr, cc - 1]
    starts.append((rr[sel] + 1) * stride + cc[sel])
    dirs.append(np.full(int(sel.sum()), 3))
    keys = np.concatenate(starts).tolist()
    dlist = np.concatenate(dirs).tolist()
    out: dict[int, list[int]] = {}
    for k, d in zip(keys, dlist, strict=True):
        out.setdefault(k, []).append(d)
    step = tuple(_DX[d] + _DY[d] * stride for d in range(4))

    loops: list[np.ndarray] = []
    candidates = sorted(out)  # row-major vertex order: each loop starts at its top-left corner
    next_candidate = 0
    while out:
        while candidates[next_candidate] not in out:
            next_candidate += 1
        start = candidates[next_candidate]
        sdirs = out[start]
        sdir = sdirs.pop(0)
        if not sdirs:
            del out[start]
        corners = [start]
        cur, d = start + step[sdir], sdir
        while True:
            if cur == start and sdir in ((d + 3) % 4, d, (d + 1) % 4):
                # closing: prefer the start edge in the same order as any other choice
                cand = next(c for c in ((d + 3) % 4, d, (d + 1) % 4) if c == sdir or c in out.get(cur, ()))
                if cand == sdir:
                    if sdir == d:
                        corners.pop(0)  # start vertex is not a corner
                    break
            options = out.get(cur)
            nd = next(c for c in ((d + 3) % 4, d, (d + 1) % 4) if options is not None and c in options)
            options.remove(nd)
            if not options:
                del out[cur]
            if nd != d:
                corners.append(cur)
            cur, d = cur + step[nd], nd
        arr = np.array(corners, dtype=np.int64)
        loops.append(np.stack([arr % stride - 1, arr // stride - 1], axis=1))
    return loops


def _loops_to_roi(loops: list[np.ndarray], name: str, z: int | None) -> Any:
    """ImageJ ROI from traced loops: TRACED polygon for one loop, composite (shape) ROI otherwise."""
    allpts = np.concatenate(loops)
    left, top = (int(v) for v in allpts.min(axis=0))
    right, bottom = (int(v) for v in allpts.max(axis=0))
    roi = roifile.ImagejRoi()
    roi.name = name
    roi.left, roi.top, roi.right, roi.bottom = left, top, right, bottom
    if z is not None:
        roi.position = z + 1
    if len(loops) == 1:
        roi.roitype = roifile.ROI_TYPE.TRACED
        roi.integer_coordinates = (loops[0] - [left, top]).astype(np.int32)
        roi.n_coordinates = len(loops[0])
    else:
        path: list[float] = []
        for loop in loops:
            path += [0.0, float(loop[0, 0]), float(loop[0, 1])]  # MOVETO
            for x, y in loop[1:].tolist():
                path += [1.0, float(x), float(y)]  # LINETO
            path.append(4.0)  # CLOSE
        roi.roitype = roifile.ROI_TYPE.RECT
        roi.multi_coordinates = np.asarray(path, dtype=np.float32)
        roi.shape_roi_size = len(path)
    return roi


def write_rois(labels: np.ndarray, path: PathLike) -> int:
    """Write instance labels as an ImageJ/Fiji ROI set (``.zip``) that rasterises back exactly.

    One ROI per object (2D) or per object and z slice (3D), in increasing label order, named
    ``label<id>`` (2D) / ``label<id>-z<slice>`` (3D, slice 1-based); 3D ROIs also carry the stack
    position (``roi.position = z + 1``). Outlines follow pixel edges (like ImageJ's Wand "traced"
    selections): an object that is one 8-connected component without holes becomes a TRACED polygon
    ROI; an object with holes or several components becomes one composite (shape) ROI whose sub-paths
    are the outer outlines and the hole outlines, filled by ImageJ with the even-odd rule (the outline
    orientation also makes the non-zero rule give the same result). Filling every ROI with ImageJ's
    pixel-centre rule gives back exactly the object's pixels (no "1 pixel smaller" outlines), so
    ``read_rois(path, labels.shape).labels`` equals ``labels`` (as int32), including touching objects,
    objects at the image border, single pixels, diagonal-only connections and holes. The write is atomic.

    Args:
        labels: ``(Y, X)`` or ``(Z, Y, X)`` non-negative integer labels (< 2**31).
        path: Output ``.zip`` file.

    Returns:
        The number of ROIs written.

    Raises:
        ValueError: Bad label array or a path not ending in ``.zip``.
    """
    p = roi_set_path(path)
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"{p}: labels must be (Y, X) or (Z, Y, X), got shape {lab.shape}")
    lab = validate_labels(lab, None)
    if lab.size and lab.max() >= 2**31:
        raise ValueError(f"{p}: label ids must be < 2**31")
    check_roi_plane(lab.shape, p)
    ids, inverse = np.unique(lab, return_inverse=True)
    compact = inverse.reshape(lab.shape)  # values 0..len(ids)-1
    has_background = bool(ids.size) and ids[0] == 0
    shift = 0 if has_background else 1  # find_objects ignores value 0
    objects = ndimage.find_objects(compact + shift) if ids.size else []
    width = label_digits(int(ids[-1]) if ids.size else 0)
    rois = []
    for k in range(1 - shift, len(ids)):
        sl = objects[k + shift - 1]
        lid = int(ids[k])
        obj = compact[sl] == k
        if lab.ndim == 2:
            rois.append(outline_roi(obj, (sl[1].start, sl[0].start), lid, width))
        else:
            for dz in range(obj.shape[0]):
                if obj[dz].any():
                    rois.append(
                        outline_roi(obj[dz], (sl[2].start, sl[1].start), lid, width, sl[0].start + dz)
                    )
    return write_roi_set(rois, p)


def roi_set_path(path: PathLike) -> Path:
    """``path`` as a Path, refused unless it ends in ``.zip`` (checked before any work)."""
    p = Path(path)
    if p.suffix.lower() != ".zip":
        raise ValueError(f"{p}: ROI sets must be written as .zip")
    return p


def check_roi_plane(shape: Sequence[int], path: Path) -> None:
    """Refuse planes an ImageJ ROI cannot address (coordinates are 16-bit)."""
    if max(shape[-2:]) > 60000:
        raise ValueError(f"{path}: images wider/taller than 60000 pixels cannot be stored as ImageJ ROIs")


def label_digits(max_id: int) -> int:
    """Digits of the label ids in ROI names (at least 5, so that names sort as numbers)."""
    return max(5, len(str(int(max_id))))


def outline_roi(
    mask: np.ndarray, offset: Sequence[int], label: int, digits: int, z: int | None = None
) -> Any:
    """The ROI of one object (in one z slice): ``mask`` (2D bool, its top-left pixel at image ``offset``
    ``(x, y)``) outlined along pixel edges, named ``label<id>`` (2D) or ``label<id>-z<slice>`` (3D, slice
    1-based) with the stack position ``z + 1``."""
    loops = [lp + np.asarray(offset) for lp in _trace_loops(mask)]
    name = f"label{label:0{digits}d}" if z is None else f"label{label:0{digits}d}-z{z + 1:04d}"
    return _loops_to_roi(loops, name, z)


def write_roi_set(rois: Sequence[Any], path: PathLike) -> int:
    """Write ImageJ ROIs as a ``.zip`` ROI set (atomic). Returns the number written."""
    with atomic_write(path) as tmp:
        roifile.roiwrite(tmp, list(rois), mode="w")
    return len(rois)


def write_point_rois(
    points: np.ndarray, path: PathLike, classes: np.ndarray | Sequence[int] | None = None
) -> int:
    """Write points as an ImageJ/Fiji ROI set (``.zip``) of multi-point ROIs, one per class (atomic).

    ROIs are named ``class<c>`` (so :func:`read_rois` gives the classes back) and use sub-pixel
    coordinates (ImageJ pixel ``i`` spans ``[i, i + 1)``, so a pixel-centre point ``y`` is stored as
    ``y + 0.5``). 3D points carry their slice (``z`` rounded to the nearest slice) as per-point stack
    positions. ``read_rois(path, shape).points`` gives the points back (``z`` rounded, float32 precision).
    No points: an empty ROI set.

    Args:
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` coordinates in pixels.
        path: Output ``.zip`` file.
        classes: ``(N,)`` integer classes (>= 1), default all 1.

    Returns:
        The number of ROIs written.
    """
    p = roi_set_path(path)
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"{p}: points must be (N, 2) or (N, 3), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{p}: points must be finite")
    cls = np.ones(len(pts), dtype=np.int64) if classes is None else np.asarray(classes).astype(np.int64)
    if cls.shape != (len(pts),):
        raise ValueError(f"{p}: classes must have shape ({len(pts)},), got {cls.shape}")
    rois = []
    for c in np.unique(cls):
        sel = pts[cls == c]
        xy = sel[:, [-1, -2]] + 0.5
        roi = roifile.ImagejRoi.frompoints(xy, name=f"class{int(c)}")
        roi.roitype = roifile.ROI_TYPE.POINT
        roi.options = roifile.ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        if pts.shape[1] == 3:
            z = np.maximum(np.floor(sel[:, 0] + 0.5), 0).astype(np.uint32)
            roi.counters = np.zeros(len(sel), dtype=np.uint8)
            roi.counter_positions = z + 1
        rois.append(roi)
    return write_roi_set(rois, p)
