"""ImageJ ROI masks: ImageJ 1.53t's rasterisation of an area ROI, pixel for pixel.

The functions below port the rasterisation of ImageJ 1.53t (``ij.jar`` of the Debian package ``imagej``
1.53t-1) for ROIs read from a file, i.e. ``ij.io.RoiDecoder.getRoi`` followed by ``Roi.getMask`` (what
Edit > Selection > Create Mask, Analyze > Measure and the ROI Manager use). Java float (32-bit)
arithmetic is reproduced with numpy float32 wherever ImageJ stores or computes coordinates as ``float``.
Polygons are filled by ``PolygonFiller`` (pixel ``(x, y)`` is inside iff its centre ``(x + 0.5, y + 0.5)``
is, even-odd rule); rectangles and ovals use their integer bounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import roifile

from unet.io.roi_geometry import fit_spline, general_path, shape_polygon, uncalibrated_length

_JAVA_FLOAT_MIN = np.float32(1.4e-45)  # java.lang.Float.MIN_VALUE (smallest positive float)
# java.awt.geom.RoundRectIterator: Bezier control-point offset of a quarter ellipse (per unit arc size)
_RR_A = 1.0 - math.cos(math.pi / 4.0)
_RR_B = math.tan(math.pi / 4.0)
_RR_CV = 4.0 / 3.0 * _RR_A * _RR_B / (math.sqrt(1.0 + _RR_B * _RR_B) - 1 + _RR_A)
_RR_ACV = (1.0 - _RR_CV) / 2.0  # 0x1.ca75ddd596bbep-3 in Java 17 as in CPython
# (type, [(v0, v1, v2, v3) per point]): point = (x + v0 * w + v1 * aw, y + v2 * h + v3 * ah)
_RR_SEGMENTS: tuple[tuple[int, tuple[tuple[float, float, float, float], ...]], ...] = (
    (0, ((0.0, 0.0, 0.0, 0.5),)),
    (1, ((0.0, 0.0, 1.0, -0.5),)),
    (3, ((0.0, 0.0, 1.0, -_RR_ACV), (0.0, _RR_ACV, 1.0, 0.0), (0.0, 0.5, 1.0, 0.0))),
    (1, ((1.0, -0.5, 1.0, 0.0),)),
    (3, ((1.0, -_RR_ACV, 1.0, 0.0), (1.0, 0.0, 1.0, -_RR_ACV), (1.0, 0.0, 1.0, -0.5))),
    (1, ((1.0, 0.0, 0.0, 0.5),)),
    (3, ((1.0, 0.0, 0.0, _RR_ACV), (1.0, -_RR_ACV, 0.0, 0.0), (1.0, -0.5, 0.0, 0.0))),
    (1, ((0.0, 0.5, 0.0, 0.0),)),
    (3, ((0.0, _RR_ACV, 0.0, 0.0), (0.0, 0.0, 0.0, _RR_ACV), (0.0, 0.0, 0.0, 0.5))),
    (4, ()),
)

# a ROI mask in ImageJ's convention: (x, y, mask) with the (height, width) boolean mask of the ROI's
# integer bounds whose top-left pixel is image pixel (x, y)
_RoiMask = tuple[int, int, np.ndarray]


def _java_round(v: np.ndarray) -> np.ndarray:
    """``Math.round(double)``: nearest integer, halves rounded up (towards +inf), as int64."""
    f = np.floor(v)
    return (f + (v - f >= 0.5)).astype(np.int64)


def _ij_fill(
    xs: np.ndarray, ys: np.ndarray, width: int, height: int, x_offset: float = 0.0, y_offset: float = 0.0
) -> np.ndarray:
    """``ij.process.PolygonFiller.getMask(width, height)`` (ImageJ 1.53t), vectorised.

    Integer mode (``setPolygon(int[], int[], n)``) for integer arrays; float mode
    (``setPolygon(float[], float[], n, xOffset, yOffset)``) for floating arrays, where NaN separates closed
    sub-paths and vertices are ``float + offset`` in double. Each edge from ``(x1, y1)`` to ``(x2, y2)``
    (``y1 < y2`` after swapping; horizontal edges skipped) covers the rows ``round(y1) <= row < round(y2)``
    (``Math.round``; integer mode: ``y1 <= row < y2``) at ``x = x1 + (row - y1 + 0.5) * slope + 1e-8``;
    per row the crossings are sorted and paired (even-odd rule) and a pair ``(xl, xr)`` fills the pixels
    ``(int)(xl + 0.5) <= x < (int)(xr + 0.5)``, clipped to ``[0, width)``. ImageJ advances x row by row by
    adding the slope; here it is evaluated directly (differences below 1e-12 px, far below the 1e-8 tie
    offset).

    Args:
        xs, ys: Vertex coordinates relative to the mask origin (before adding the offsets).
        width, height: Mask size.
        x_offset, y_offset: Offsets added in double (float mode only).

    Returns:
        ``(height, width)`` boolean mask.
    """
    out = np.zeros((max(height, 0), max(width, 0)), dtype=bool)
    n = len(xs)
    if n == 0 or width <= 0 or height <= 0:
        return out
    idx = np.arange(n)
    if np.issubdtype(np.asarray(xs).dtype, np.integer):
        x1 = np.asarray(xs, dtype=np.int64)
        y1 = np.asarray(ys, dtype=np.int64)
        nxt = (idx + 1) % n
        x2, y2 = x1[nxt], y1[nxt]
        keep = y1 != y2
        x1, y1, x2, y2 = x1[keep], y1[keep], x2[keep], y2[keep]
        swap = y1 > y2
        x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
        y1, y2 = np.where(swap, y2, y1), np.where(swap, y1, y2)
        slope = (x2 - x1) / (y2 - y1).astype(np.float64)
        ex = x1 + 0.5 * slope + 1e-8
        ey1, ey2 = y1, y2
    else:
        xf = np.asarray(xs, dtype=np.float32)
        yf = np.asarray(ys, dtype=np.float32)
        nan = np.isnan(xf)
        poly_start = np.maximum.accumulate(np.where(nan, idx + 1, 0))
        nxt = idx + 1
        nxt[-1] = poly_start[-1]
        nxt[:-1] = np.where(nan[1:], poly_start[:-1], nxt[:-1])
        valid = ~nan
        i, j = idx[valid], nxt[valid]
        y1f = yf[i].astype(np.float64) + y_offset
        y2f = yf[j].astype(np.float64) + y_offset
        x1f = xf[i].astype(np.float64) + x_offset
        x2f = xf[j].astype(np.float64) + x_offset
        y3, y4 = _java_round(y1f), _java_round(y2f)
        keep = (y3 != y4) & ~((y3 <= 0) & (y4 <= 0))
        y1f, y2f, x1f, x2f, y3, y4 = y1f[keep], y2f[keep], x1f[keep], x2f[keep], y3[keep], y4[keep]
        swap = y3 > y4
        y3, y4 = np.where(swap, y4, y3), np.where(swap, y3, y4)
        y1f, y2f = np.where(swap, y2f, y1f), np.where(swap, y1f, y2f)
        x1f, x2f = np.where(swap, x2f, x1f), np.where(swap, x1f, x2f)
        slope = (x2f - x1f) / (y2f - y1f)
        ex = x1f + (y3 - y1f + 0.5) * slope + 1e-8
        ey1, ey2 = y3, y4
    if not len(ex):
        return out
    r0 = np.maximum(ey1, 0)
    counts = np.maximum(np.minimum(ey2, height) - r0, 0)
    total = int(counts.sum())
    if total == 0:
        return out
    edge = np.repeat(np.arange(len(ex)), counts)
    starts = np.cumsum(counts) - counts
    rows = r0[edge] + (np.arange(total) - starts[edge])
    xs_row = ex[edge] + (rows - ey1[edge]) * slope[edge]
    order = np.lexsort((xs_row, rows))
    rows, xs_row = rows[order], xs_row[order]
    # pair the sorted crossings of each row: (0, 1), (2, 3), ... (an odd leftover is never filled)
    first = np.r_[True, rows[1:] != rows[:-1]]
    rank = np.arange(total) - np.maximum.accumulate(np.where(first, np.arange(total), 0))
    left = np.flatnonzero((rank % 2 == 0)[:-1] & (rows[1:] == rows[:-1]))
    rr = rows[left]
    c0 = np.clip(np.floor(xs_row[left] + 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.floor(xs_row[left + 1] + 0.5), 0, width).astype(np.int64)
    ok = c1 > c0
    rr, c0, c1 = rr[ok], c0[ok], c1[ok]
    if len(rr):
        diff = np.zeros((height, width + 1), dtype=np.int32)
        np.add.at(diff, (rr, c0), 1)
        np.add.at(diff, (rr, c1), -1)
        out = np.cumsum(diff, axis=1)[:, :width] > 0
    return out


def _float_bounds(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    """``FloatPolygon.getFloatBounds()`` (float min/max, ``maxX`` starts at ``Float.MIN_VALUE``)."""
    min_x, min_y = np.float32(np.min(xs)), np.float32(np.min(ys))
    max_x = max(np.float32(np.max(xs)), _JAVA_FLOAT_MIN)
    max_y = max(np.float32(np.max(ys)), _JAVA_FLOAT_MIN)
    return float(min_x), float(min_y), float(np.float32(max_x - min_x)), float(np.float32(max_y - min_y))


def _int_bounds(bx: float, by: float, bw: float, bh: float) -> tuple[int, int, int, int]:
    """``Roi.setIntBounds`` for area ROIs: floor of the origin, ceil of the far corner."""
    x, y = math.floor(bx), math.floor(by)
    return x, y, math.ceil(bx + bw) - x, math.ceil(by + bh) - y


def _shape_mask(segments: list[tuple[int, np.ndarray]]) -> _RoiMask | None:
    """``new ShapeRoi(shape).getMask()`` of a ``GeneralPath`` with absolute float32 coordinates."""
    allc = np.concatenate([c for _, c in segments if len(c)]) if segments else np.zeros(0, np.float32)
    if not len(allc):
        return None
    xs, ys = allc[0::2], allc[1::2]
    x1, y1 = np.float32(xs.min()), np.float32(ys.min())  # Path2D.Float.getBounds2D (Java 17)
    w, h = float(np.float32(xs.max() - x1)), float(np.float32(ys.max() - y1))
    x, y = math.floor(float(x1)), math.floor(float(y1))  # Rectangle2D.getBounds
    width, height = math.ceil(float(x1) + w) - x, math.ceil(float(y1) + h) - y
    rel = [
        (k, (c.astype(np.float64) - np.tile([float(x), float(y)], len(c) // 2)).astype(np.float32))
        for k, c in segments
    ]
    px, py = shape_polygon(rel)
    return x, y, _ij_fill(px, py, width, height)


def _round_rect_mask(x: int, y: int, w: int, h: int, arc: int) -> _RoiMask | None:
    """``Roi.getMask`` of a rounded rectangle: ``new ShapeRoi(new RoundRectangle2D.Float(x, y, w, h,
    arc, arc)).getMask()`` (path from ``RoundRectIterator``, translated in double, stored as float)."""
    aw, ah = min(float(w), abs(float(arc))), min(float(h), abs(float(arc)))
    segments = []
    for kind, pts in _RR_SEGMENTS:
        coords = []
        for v0, v1, v2, v3 in pts:
            coords += [(x + v0 * w + v1 * aw) + -x, (y + v2 * h + v3 * ah) + -y]
        segments.append((kind, np.array(coords, dtype=np.float32)))
    px, py = shape_polygon(segments)
    return x, y, _ij_fill(px, py, w, h)


def _oval_mask(w: int, h: int) -> np.ndarray:
    """``OvalRoi.getMask`` (ImageJ 1.53t) of the integer bounds ``w x h``."""
    a, b = w / 2.0, h / 2.0
    a2, b2 = a * a, b * b
    xx = (np.arange(w) - (a - 0.5))[None, :]
    yy = (np.arange(h) - (b - 0.5))[:, None]
    return xx * xx / a2 + yy * yy / b2 <= 1.0


def _polygon_roi_mask(
    kind: int,
    xp: np.ndarray,
    yp: np.ndarray,
    base: tuple[float, float],
    bounds: tuple[int, int, int, int],
    spline: bool,
) -> _RoiMask | None:
    """``PolygonRoi.getMask()`` (kind 2 polygon, 3 freehand, 4 traced) from ImageJ's state after
    construction: coordinates relative to ``base`` = ``(getXBase(), getYBase())`` (int ``xp`` or float32
    ``xpf``) and integer ``bounds`` ``(x, y, width, height)``. With ``spline``: ``fitSpline()`` (with
    ``resetSplineFitBoundingRect()``) first, then the spline polygon is filled."""
    if len(xp) == 0:
        return None
    x, y, w, h = bounds
    if not spline:
        if np.issubdtype(xp.dtype, np.floating):
            return x, y, _ij_fill(xp, yp, w, h, base[0] - x, base[1] - y)
        return x, y, _ij_fill(xp, yp, w, h)
    length = uncalibrated_length(kind, xp, yp)
    n_eval = max(int(length / 2.0) if math.isfinite(length) else 0, 100)
    xs, ys = fit_spline(xp.astype(np.float32), yp.astype(np.float32), n_eval)
    # resetSplineFitBoundingRect: absolute (float), new bounds, coordinates relative to them (float)
    xs = xs + np.float32(base[0])
    ys = ys + np.float32(base[1])
    bx, by, bw, bh = _float_bounds(xs, ys)
    x, y, w, h = _int_bounds(bx, by, bw, bh)
    xs = xs - np.float32(bx)
    ys = ys - np.float32(by)
    return x, y, _ij_fill(xs, ys, w, h, bx - x, by - y)


def _param_float(roi: Any) -> float:
    """The float stored at header offset 52 (ellipse aspect ratio, rotated-rectangle width)."""
    raw = np.array(
        [int(roi.arrow_style_or_aspect_ratio) & 0xFF, int(roi.arrow_head_size) & 0xFF], dtype=np.uint8
    ).tobytes() + int(roi.rounded_rect_arc_size & 0xFFFF).to_bytes(2, "big")
    return float(np.frombuffer(raw, dtype=">f4")[0])


def _make_relative(xpf: np.ndarray, ypf: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``EllipseRoi/RotatedRectRoi.makePolygonRelative``: integer origin ``FloatPolygon.getBounds()``."""
    x = math.floor(float(np.min(xpf)))
    y = math.floor(float(np.min(ypf)))
    return (xpf - np.float32(x)).astype(np.float32), (ypf - np.float32(y)).astype(np.float32), x, y


def _ellipse_polygon(roi: Any) -> tuple[np.ndarray, np.ndarray]:
    """``EllipseRoi.makeEllipse`` (72 vertices, float32) from the stored end points and aspect ratio."""
    x1, y1, x2, y2 = (float(np.float32(v)) for v in (roi.x1, roi.y1, roi.x2, roi.y2))
    ratio = min(max(_param_float(roi), 0.0), 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    dx, dy = x2 - x1, y2 - y1
    major = math.sqrt(dx * dx + dy * dy)
    minor = major * ratio
    alpha = math.atan2(dy, dx) * 180.0 / math.pi
    xs, ys = [], []
    for i in range(72):
        beta1 = (i * 360.0 / 72.0) / 180.0 * math.pi
        dx = math.cos(beta1) * major / 2.0
        dy = math.sin(beta1) * minor / 2.0
        beta2 = math.atan2(dy, dx)
        rad = math.sqrt(dx * dx + dy * dy)
        beta3 = beta2 + alpha / 180.0 * math.pi
        xs.append(cx + math.cos(beta3) * rad)
        ys.append(cy + math.sin(beta3) * rad)
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def _rotated_rect_polygon(roi: Any) -> tuple[np.ndarray, np.ndarray]:
    """``RotatedRectRoi.makeRectangle`` (5 vertices, float32) from the stored end points and width."""
    x1, y1, x2, y2 = (float(np.float32(v)) for v in (roi.x1, roi.y1, roi.x2, roi.y2))
    width = _param_float(roi)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = float(np.arctan(np.float64(x2 - x1) / np.float64(y2 - y1)))
    wsa = width / 2.0 * math.sin(1.5707963267948966 + angle)
    wca = width / 2.0 * math.cos(1.5707963267948966 + angle)
    xs = [x1 + wsa, x2 + wsa, x2 - wsa, x1 - wsa, x1 + wsa]
    ys = [y1 + wca, y2 + wca, y2 - wca, y1 - wca, y1 + wca]
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def imagej_roi_mask(roi: Any) -> _RoiMask | None:
    """``RoiDecoder`` + ``Roi.getMask()`` of ImageJ 1.53t for an area ROI read by :mod:`roifile`.

    Returns ``(x, y, mask)``: the boolean mask of the ROI's integer bounds with top-left image pixel
    ``(x, y)`` (may lie partly outside the image), or None for an empty ROI.
    """
    rtype = roi.roitype
    if roi.composite:  # RoiDecoder.getShapeRoi -> new ShapeRoi(float[]) -> getMask
        return _shape_mask(general_path(roi.multi_coordinates))
    if rtype in (roifile.ROI_TYPE.RECT, roifile.ROI_TYPE.OVAL):
        if roi.subpixelrect:  # new Roi(double x, y, w, h): (int) x, (int) y, (int) ceil(w), (int) ceil(h)
            x, y = int(float(roi.xd)), int(float(roi.yd))
            w, h = math.ceil(float(roi.widthd)), math.ceil(float(roi.heightd))
        else:
            x, y, w, h = int(roi.left), int(roi.top), int(roi.right - roi.left), int(roi.bottom - roi.top)
        w, h = max(w, 1), max(h, 1)  # Roi(int, int, int, int): width < 1 -> 1
        if rtype == roifile.ROI_TYPE.OVAL:
            return x, y, _oval_mask(w, h)
        if roi.rounded_rect_arc_size > 0:
            return _round_rect_mask(x, y, w, h, int(roi.rounded_rect_arc_size))
        return x, y, np.ones((h, w), dtype=bool)
    spline = roi.version >= 218 and bool(roi.options & roifile.ROI_OPTIONS.SPLINE_FIT)
    if rtype == roifile.ROI_TYPE.FREEHAND and roi.subtype in (
        roifile.ROI_SUBTYPE.ELLIPSE,
        roifile.ROI_SUBTYPE.ROTATED_RECT,
    ):
        if roi.subtype == roifile.ROI_SUBTYPE.ELLIPSE:
            xpf, ypf = _ellipse_polygon(roi)
        else:
            xpf, ypf = _rotated_rect_polygon(roi)
        if not (np.all(np.isfinite(xpf)) and np.all(np.isfinite(ypf))):
            return None  # degenerate parameters (e.g. a rotated rectangle of length 0)
        xr, yr, x, y = _make_relative(xpf, ypf)
        # FloatPolygon.getBounds(): (int) (maxX - iMinX + 0.5), maxX - iMinX in float
        w = int(float(np.float32(max(np.float32(np.max(xpf)), _JAVA_FLOAT_MIN) - np.float32(x))) + 0.5)
        h = int(float(np.float32(max(np.float32(np.max(ypf)), _JAVA_FLOAT_MIN) - np.float32(y))) + 0.5)
        return _polygon_roi_mask(3, xr, yr, (float(x), float(y)), (x, y, w, h), spline)
    kind = {roifile.ROI_TYPE.POLYGON: 2, roifile.ROI_TYPE.FREEHAND: 3, roifile.ROI_TYPE.TRACED: 4}[rtype]
    if roi.subpixel_coordinates is not None:  # PolygonRoi(float[], float[], n, type)
        xy = np.asarray(roi.subpixel_coordinates, dtype=np.float32).reshape(-1, 2)
        if len(xy) == 0:
            return None
        bx, by, bw, bh = _float_bounds(xy[:, 0], xy[:, 1])  # finishPolygon
        xr = (xy[:, 0] - np.float32(bx)).astype(np.float32)
        yr = (xy[:, 1] - np.float32(by)).astype(np.float32)
        return _polygon_roi_mask(kind, xr, yr, (bx, by), _int_bounds(bx, by, bw, bh), spline)
    if roi.integer_coordinates is None or len(roi.integer_coordinates) == 0:
        return None
    xy = np.asarray(roi.integer_coordinates, dtype=np.int64).reshape(-1, 2) + np.array([roi.left, roi.top])
    x, y = int(xy[:, 0].min()), int(xy[:, 1].min())  # java.awt.Polygon.getBounds()
    w, h = int(xy[:, 0].max()) - x, int(xy[:, 1].max()) - y
    return _polygon_roi_mask(kind, xy[:, 0] - x, xy[:, 1] - y, (float(x), float(y)), (x, y, w, h), spline)


def clip_mask(m: _RoiMask | None, shape: tuple[int, int]) -> tuple[int, int, np.ndarray] | None:
    """Part of a ROI mask inside the image: ``(row0, col0, mask)`` or None if it covers no pixel."""
    if m is None:
        return None
    x, y, mask = m
    height, width = shape
    r0, c0 = max(y, 0), max(x, 0)
    r1, c1 = min(y + mask.shape[0], height), min(x + mask.shape[1], width)
    if r1 <= r0 or c1 <= c0:
        return None
    sub = mask[r0 - y : r1 - y, c0 - x : c1 - x]
    if not sub.any():
        return None
    return r0, c0, sub
