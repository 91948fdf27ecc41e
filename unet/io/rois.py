"""Reading ImageJ / Fiji ROIs (``.zip`` ROI sets, single ``.roi`` files, TIFF overlays) as instance labels,
an ignore mask and points; masks are ImageJ 1.53t's (:mod:`unet.io.roi_masks`)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import roifile

from unet.io.common import DataFileError, PathLike, check_file
from unet.io.roi_masks import clip_mask, imagej_roi_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RoiAnnotation:
    """Annotations read from an ImageJ ROI file (see :func:`read_rois`).

    Attributes:
        labels: Instance label image ``(Y, X)`` or ``(Z, Y, X)``, int32, 0 = background.
        ignore: Boolean mask of the same shape, True inside ROIs named ``ignore...``.
        points: Point coordinates ``(N, ndim)`` float64 in array order ``(y, x)`` / ``(z, y, x)``,
            pixel units (integer = pixel centre).
        classes: Class index per point ``(N,)`` int64 (>= 1).
        path: The ROI file.
    """

    labels: np.ndarray
    ignore: np.ndarray
    points: np.ndarray
    classes: np.ndarray
    path: Path | None = None


_REGION_TYPES = {
    roifile.ROI_TYPE.POLYGON,
    roifile.ROI_TYPE.FREEHAND,
    roifile.ROI_TYPE.TRACED,
    roifile.ROI_TYPE.RECT,
    roifile.ROI_TYPE.OVAL,
}
_LABEL_NAME_RE = re.compile(r"^label[\s_-]*(\d+)(?:[\s_-].*)?$", re.IGNORECASE)
_CLASS_NAME_RE = re.compile(r"^(?:[a-z][a-z\s_-]*?)?[\s_-]*(\d+)$", re.IGNORECASE)


def _roi_desc(index: int, roi: Any) -> str:
    return f"ROI #{index + 1} {roi.name!r}" if roi.name else f"ROI #{index + 1}"


def _rasterise_roi(roi: Any, shape: tuple[int, int], path: Path, index: int):
    """Pixel mask of an area ROI in image coordinates (ImageJ 1.53t exactly): (row0, col0, mask) or None."""
    try:
        m = imagej_roi_mask(roi)
    except (ValueError, IndexError, KeyError) as exc:
        raise DataFileError(path, f"{_roi_desc(index, roi)}: unsupported or corrupt ROI ({exc})") from exc
    return clip_mask(m, shape)


def _roi_z(roi: Any) -> int | None:
    """0-based z slice of a ROI (hyperstack z position, else stack position), or None."""
    if roi.z_position > 0:
        return int(roi.z_position) - 1
    if roi.position > 0:
        return int(roi.position) - 1
    return None


def read_rois(path: PathLike, shape: Sequence[int]) -> RoiAnnotation:
    """Read ImageJ/Fiji ROIs (``.zip`` ROI set, single ``.roi``, or ImageJ TIFF overlay).

    * Area ROIs (polygon, freehand, traced, rectangle, oval, composite) become instance labels. Label
      ids: if every area ROI is named ``label<id>...`` (as written by :func:`write_rois`) the ids come
      from the names, so ROIs sharing an id form one object (several components, several z slices);
      otherwise each ROI is one object with ids ``1..N`` in ROI order. Overlapping ROIs: later ROIs
      overwrite earlier ones (a warning is logged).
    * ROIs whose name starts with ``ignore`` (case-insensitive) go into the ``ignore`` mask instead
      (area ROIs: their pixels; point ROIs: the pixels under the points). In 3D an ignore ROI without z
      position applies to all slices.
    * Multi-point ROIs become points, one ROI per class: the class is the trailing integer of the ROI
      name if every point ROI's name is like ``class2`` / ``type 3`` / ``2``, else the order of
      appearance (1, 2, ...). ImageJ integer point coordinates are pixel indices; sub-pixel
      coordinates (pixel ``i`` spans ``[i, i+1)``) are shifted by -0.5 to pixel-centre coordinates
      (unless the ROI has ImageJ's draw-offset flag).
    * Line-type ROIs (line, polyline, freeline, angle) and text/image overlays are skipped (warning).

    Rasterisation is ImageJ 1.53t's, pixel for pixel (a port of ``RoiDecoder`` + ``Roi.getMask``; checked
    against masks made by ImageJ 1.53t itself, see ``tests/test_imagej_parity.py``): polygon, freehand,
    traced and composite ROIs with ``PolygonFiller`` (pixel ``(x, y)`` is inside iff its centre ``(x +
    0.5, y + 0.5)`` is inside, even-odd rule; an edge from ``y1`` to ``y2`` covers the rows with ``y1 <
    row + 0.5 <= y2`` and a centre exactly on an edge is inside for a right and outside for a left
    boundary; sub-pixel coordinates in ImageJ's float precision); rectangles and ovals by their integer
    bounds (sub-pixel ones too: ``(int) x``, ``(int) y``, ``ceil(width)``, ``ceil(height)``, at least 1
    pixel), ovals with ``OvalRoi.getMask`` (pixel centre inside the ellipse inscribed in the integer
    bounds); rounded rectangles as the flattened ``java.awt`` round rectangle; spline-fitted ROIs by
    their fitted spline (``PolygonRoi.fitSpline``: ``max(100, length / 2)`` points); ellipse and rotated
    rectangle ROIs from their parameters; curve segments of composite ROIs flattened as by Java
    (``FlatteningPathIterator``, flatness 0.01).
    Everything is clipped to the image.

    3D (``len(shape) == 3``): the slice of each ROI is its hyperstack z position (``roi.z_position``)
    or else its stack position (``roi.position``), 1-based in the file; multi-point ROIs use per-point
    positions when present. An area or point ROI without position raises an error.

    Args:
        path: ROI file.
        shape: Spatial image shape ``(Y, X)`` or ``(Z, Y, X)``.

    Returns:
        :class:`RoiAnnotation` (labels int32, ignore bool, points float64 ``(N, ndim)``, classes int64).

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unreadable file, 3D ROI without / with out-of-range z position, unsupported ROI.
    """
    p = check_file(path)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) <= 0:
        raise ValueError(f"{p}: shape must be (Y, X) or (Z, Y, X) with positive sizes, got {shape}")
    ndim = len(shape)
    rois = _read_roi_file(p)

    labels = np.zeros(shape, dtype=np.int32)
    ignore = np.zeros(shape, dtype=bool)
    plane_shape = shape[-2:]

    area: list[tuple[int, Any]] = []
    point_rois: list[tuple[int, Any]] = []
    for i, roi in enumerate(rois):
        is_ignore = roi.name.strip().lower().startswith("ignore")
        if roi.subtype in (roifile.ROI_SUBTYPE.TEXT, roifile.ROI_SUBTYPE.IMAGE):
            logger.warning("%s: skipping %s (text/image overlay)", p, _roi_desc(i, roi))
        elif roi.roitype == roifile.ROI_TYPE.POINT:
            if is_ignore:
                for z, pts in _roi_points(roi, ndim, shape, p, i, allow_missing_z=True):
                    idx = np.floor(pts + 0.5).astype(np.int64)
                    inside = np.all((idx >= 0) & (idx < np.array(plane_shape)), axis=1)
                    idx = idx[inside]
                    if z is None:
                        ignore[..., idx[:, 0], idx[:, 1]] = True
                    else:
                        ignore[z, idx[:, 0], idx[:, 1]] = True
            else:
                point_rois.append((i, roi))
        elif roi.composite or roi.roitype in _REGION_TYPES:
            if is_ignore:
                _paint(ignore, roi, True, p, i, plane_shape, allow_missing_z=True)
            else:
                area.append((i, roi))
        else:
            logger.warning(
                "%s: skipping %s of type %s (not an area or point ROI)",
                p,
                _roi_desc(i, roi),
                roi.roitype.name,
            )

    named = [(_LABEL_NAME_RE.match(roi.name.strip()), i, roi) for i, roi in area]
    use_names = bool(named) and all(m is not None for m, _, _ in named)
    overlap = False
    for n, (m, i, roi) in enumerate(named):
        lid = int(m.group(1)) if use_names and m is not None else n + 1
        if lid <= 0 or lid >= 2**31:
            raise DataFileError(p, f"{_roi_desc(i, roi)}: label id {lid} out of range")
        overlap |= _paint(labels, roi, lid, p, i, plane_shape, allow_missing_z=False)
    if overlap:
        logger.warning("%s: area ROIs overlap; later ROIs overwrite earlier ones", p)

    class_matches = [_CLASS_NAME_RE.match(roi.name.strip()) for _, roi in point_rois]
    use_class_names = bool(point_rois) and all(m is not None for m in class_matches)
    all_pts: list[np.ndarray] = []
    all_cls: list[np.ndarray] = []
    for k, (i, roi) in enumerate(point_rois):
        m = class_matches[k]
        cls = int(m.group(1)) if use_class_names and m is not None else k + 1
        for z, pts in _roi_points(roi, ndim, shape, p, i, allow_missing_z=False):
            if ndim == 3:
                pts = np.column_stack([np.full(len(pts), float(z)), pts])
            all_pts.append(pts)
            all_cls.append(np.full(len(pts), cls, dtype=np.int64))
    points = np.concatenate(all_pts) if all_pts else np.zeros((0, ndim), dtype=np.float64)
    classes = np.concatenate(all_cls) if all_cls else np.zeros((0,), dtype=np.int64)
    return RoiAnnotation(labels=labels, ignore=ignore, points=points, classes=classes, path=p)


def _paint(
    target: np.ndarray,
    roi: Any,
    value: Any,
    path: Path,
    index: int,
    plane_shape: tuple[int, int],
    *,
    allow_missing_z: bool,
) -> bool:
    """Paint an area ROI into ``target`` (2D or 3D). Returns True if it overwrote other nonzero values."""
    filled = _rasterise_roi(roi, plane_shape, path, index)
    if filled is None:
        logger.warning("%s: %s covers no pixel of the image", path, _roi_desc(index, roi))
        return False
    r0, c0, mask = filled
    sl = (slice(r0, r0 + mask.shape[0]), slice(c0, c0 + mask.shape[1]))
    if target.ndim == 3:
        z = _roi_z(roi)
        if z is None:
            if not allow_missing_z:
                raise DataFileError(
                    path,
                    f"{_roi_desc(index, roi)} has no z position, needed for a 3D "
                    f"image of shape {target.shape}",
                )
            view = target[(slice(None), *sl)]
            view[:, mask] = value
            return False
        if not 0 <= z < target.shape[0]:
            raise DataFileError(
                path,
                f"{_roi_desc(index, roi)} is on slice {z + 1}, outside the image "
                f"with {target.shape[0]} slices",
            )
        view = target[(z, *sl)]
    else:
        view = target[sl]
    overlap = bool(np.any((view[mask] != 0) & (view[mask] != value))) if target.dtype != np.bool_ else False
    view[mask] = value
    return overlap


def _roi_points(
    roi: Any, ndim: int, shape: tuple[int, ...], path: Path, index: int, *, allow_missing_z: bool
) -> list[tuple[int | None, np.ndarray]]:
    """Points of a multi-point ROI grouped by 0-based z: list of (z or None, (n, 2) float (y, x))."""
    if roi.subpixel_coordinates is not None:
        xy = np.asarray(roi.subpixel_coordinates, dtype=np.float64)
        if not roi.drawoffset:
            xy = xy - 0.5
    else:
        xy = np.asarray(roi.coordinates(), dtype=np.float64)
    yx = xy[:, ::-1].reshape(-1, 2)
    if ndim == 2:
        return [(None, yx)]
    per_point = None
    if roi.counter_positions is not None and len(roi.counter_positions) == len(yx):
        cp = np.asarray(roi.counter_positions, dtype=np.int64)
        if np.all(cp > 0):
            per_point = cp - 1
    if per_point is None:
        z = _roi_z(roi)
        if z is None:
            if allow_missing_z:
                return [(None, yx)]
            raise DataFileError(
                path, f"{_roi_desc(index, roi)} has no z position, needed for a 3D image of shape {shape}"
            )
        per_point = np.full(len(yx), z, dtype=np.int64)
    bad = (per_point < 0) | (per_point >= shape[0])
    if np.any(bad):
        raise DataFileError(
            path,
            f"{_roi_desc(index, roi)} has points on slice {int(per_point[bad][0]) + 1}, "
            f"outside the image with {shape[0]} slices",
        )
    return [(int(z), yx[per_point == z]) for z in np.unique(per_point)]


def _read_roi_file(path: Path) -> list[Any]:
    """The ROIs of an ImageJ ROI file, as a list."""
    try:
        rois = roifile.roiread(path)
    except Exception as exc:  # roifile raises many exception types
        raise DataFileError(path, f"cannot read ImageJ ROIs ({type(exc).__name__}: {exc})") from exc
    return [rois] if isinstance(rois, roifile.ImagejRoi) else list(rois)


def roi_extent(path: PathLike) -> tuple[int, int, int]:
    """``(slices, rows, columns)`` enclosing all ROIs of an ImageJ ROI file (slices 0 = no z positions).

    Raises:
        DataFileError: Unreadable file.
    """
    rois = _read_roi_file(Path(path))
    nz = ny = nx = 0
    for roi in rois:
        nz = max(nz, int(roi.z_position), int(roi.position))
        if roi.counter_positions is not None and len(roi.counter_positions):
            nz = max(nz, int(np.max(roi.counter_positions)))
        ny, nx = max(ny, int(roi.bottom) + 1), max(nx, int(roi.right) + 1)
        try:
            xy = np.asarray(roi.coordinates(), dtype=np.float64).reshape(-1, 2)
        except Exception:  # composite ROIs etc.: the bounding rectangle suffices
            continue
        if xy.size:
            nx = max(nx, math.ceil(float(xy[:, 0].max())) + 1)
            ny = max(ny, math.ceil(float(xy[:, 1].max())) + 1)
    return nz, max(ny, 1), max(nx, 1)
