"""Geometry of ImageJ 1.53t and ``java.awt.geom`` that ImageJ's ROI masks need: path flattening
(``FlatteningPathIterator``, flatness 0.01) and ``PolygonRoi``'s lengths and spline fit, ported operation
for operation (Java float arithmetic as numpy float32). Used by :mod:`unet.io.roi_masks`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_SPLINE_EXTEND = 7  # ij.measure.SplineFitter.EXTEND_BY
_FLATNESS = 0.01  # ij.gui.ShapeRoi.getMask: getFloatPolygon(0.01, ...)
_FLATTEN_LIMIT = 10  # java.awt.geom.FlatteningPathIterator default recursion limit
_PATH_NCOORDS = {0: 2, 1: 2, 2: 4, 3: 6, 4: 0}  # ShapeRoi.nCoords: moveTo, lineTo, quadTo, cubicTo, close


# --- java.awt.geom: path flattening (FlatteningPathIterator, CubicCurve2D, QuadCurve2D, Line2D) ------


def _pt_seg_dist_sq(x1: float, y1: float, x2: float, y2: float, px: float, py: float) -> float:
    """``Line2D.ptSegDistSq`` (same operation order)."""
    x2 -= x1
    y2 -= y1
    px -= x1
    py -= y1
    dot = px * x2 + py * y2
    if dot <= 0.0:
        proj = 0.0
    else:
        px = x2 - px
        py = y2 - py
        dot = px * x2 + py * y2
        proj = 0.0 if dot <= 0.0 else dot * dot / (x2 * x2 + y2 * y2)
    return max(px * px + py * py - proj, 0.0)


def _flatten_curve(c: tuple[float, ...], level: int, emit: list[tuple[float, float]]) -> None:
    """Recursive subdivision of ``FlatteningPathIterator`` (flatness 0.01, limit 10) of a quadratic (6
    values) or cubic (8 values) curve; appends the end points of the flat pieces."""
    if len(c) == 8:
        x1, y1, cx1, cy1, cx2, cy2, x2, y2 = c
        flat = max(_pt_seg_dist_sq(x1, y1, x2, y2, cx1, cy1), _pt_seg_dist_sq(x1, y1, x2, y2, cx2, cy2))
        if level < _FLATTEN_LIMIT and not flat < _FLATNESS * _FLATNESS:
            ax, ay = (x1 + cx1) / 2.0, (y1 + cy1) / 2.0  # CubicCurve2D.subdivide
            bx, by = (x2 + cx2) / 2.0, (y2 + cy2) / 2.0
            mx, my = (cx1 + cx2) / 2.0, (cy1 + cy2) / 2.0
            lx, ly = (ax + mx) / 2.0, (ay + my) / 2.0
            rx, ry = (bx + mx) / 2.0, (by + my) / 2.0
            cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0
            _flatten_curve((x1, y1, ax, ay, lx, ly, cx, cy), level + 1, emit)
            _flatten_curve((cx, cy, rx, ry, bx, by, x2, y2), level + 1, emit)
            return
    else:
        x1, y1, qx, qy, x2, y2 = c
        if level < _FLATTEN_LIMIT and not _pt_seg_dist_sq(x1, y1, x2, y2, qx, qy) < _FLATNESS * _FLATNESS:
            ax, ay = (x1 + qx) / 2.0, (y1 + qy) / 2.0  # QuadCurve2D.subdivide
            bx, by = (x2 + qx) / 2.0, (y2 + qy) / 2.0
            cx, cy = (ax + bx) / 2.0, (ay + by) / 2.0
            _flatten_curve((x1, y1, ax, ay, cx, cy), level + 1, emit)
            _flatten_curve((cx, cy, bx, by, x2, y2), level + 1, emit)
            return
    emit.append((c[-2], c[-1]))


def shape_polygon(segments: Sequence[tuple[int, Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """``ShapeRoi.getFloatPolygon(0.01, separateSubpaths=true, addPointForClose=false, relative)``.

    Args:
        segments: The path (``java.awt.geom.PathIterator`` segment types 0 moveTo, 1 lineTo, 2 quadTo,
            3 cubicTo, 4 close, with float32 coordinates), as stored in a ``GeneralPath``.

    Returns:
        float32 ``(xs, ys)`` of the flattened path with NaN between sub-paths.
    """
    xp: list[float] = []
    yp: list[float] = []
    start = 0
    cur = mov = (0.0, 0.0)

    def add_nan() -> None:
        if xp and not math.isnan(xp[-1]):
            xp.append(math.nan)
            yp.append(math.nan)

    for kind, coords in segments:
        c = [float(v) for v in coords]
        if kind == 0:
            add_nan()
            start = len(xp)
            cur = mov = (c[0], c[1])
            pts = [cur]
        elif kind == 1:
            cur = (c[0], c[1])
            pts = [cur]
        elif kind in (2, 3):
            pts = []
            _flatten_curve((*cur, *c), 0, pts)
            cur = (c[-2], c[-1])
        else:
            cur = mov
            if xp and start < len(xp) and xp[-1] == xp[start] and yp[-1] == yp[start]:
                xp.pop()
                yp.pop()
            add_nan()
            continue
        for px, py in pts:  # FlatteningPathIterator.currentSegment(float[]) casts to float
            xp.append(float(np.float32(px)))
            yp.append(float(np.float32(py)))
    if xp and math.isnan(xp[-1]):
        xp.pop()
        yp.pop()
    return np.array(xp, dtype=np.float32), np.array(yp, dtype=np.float32)


def general_path(array: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``ShapeRoi.makeShapeFromArray``: segments of a composite ROI's path array as in a ``GeneralPath``
    (float32; a moveTo right after a moveTo replaces it, repeated closes collapse)."""
    arr = np.asarray(array, dtype=np.float32).ravel()
    segs: list[tuple[int, np.ndarray]] = []
    i = 0
    while i < len(arr):
        kind = int(arr[i])
        nc = _PATH_NCOORDS.get(kind, 0)
        if i + 1 + nc > len(arr):
            break
        coords = arr[i + 1 : i + 1 + nc]
        i += 1 + nc
        if kind not in _PATH_NCOORDS:
            continue
        if kind == 0 and segs and segs[-1][0] == 0:
            segs[-1] = (0, coords)
        elif not segs and kind != 0:  # Path2D.needRoom: IllegalPathStateException
            raise ValueError("missing initial moveto in path definition")
        elif not (kind == 4 and segs[-1][0] == 4):
            segs.append((kind, coords))
    return segs


# --- ij.gui.PolygonRoi: lengths, spline fit -------------------------------------------------------


def traced_perimeter(xp: np.ndarray, yp: np.ndarray, pw: float = 1.0, ph: float = 1.0) -> float:
    """``PolygonRoi.getTracedPerimeter`` (ImageJ 1.53t) of an integer polygon along pixel edges.

    ``sumdx * pw + sumdy * ph - nCorners * (pw + ph - sqrt(pw^2 + ph^2))`` where a vertex counts as a
    corner if the side ending there is longer than 1 or the previous vertex was not counted.
    """
    n = len(xp)
    if n < 4:
        return 0.0
    xp = np.asarray(xp, dtype=np.int64)
    yp = np.asarray(yp, dtype=np.int64)
    dx = xp - np.roll(xp, 1)
    dy = yp - np.roll(yp, 1)
    sides = (np.abs(dx) + np.abs(dy)).tolist()
    corner, n_corners = False, 0
    for side in sides:
        if side > 1 or not corner:
            corner = True
            n_corners += 1
        else:
            corner = False
    sumdx, sumdy = int(np.abs(dx).sum()), int(np.abs(dy).sum())
    return sumdx * pw + sumdy * ph - n_corners * (pw + ph - math.sqrt(pw * pw + ph * ph))


def _polygon_length(xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getLength(int[] or float[], ..., closeShape=true, null)`` (sequential double sum)."""
    if len(xp) < 2:
        return 0.0
    dx = (np.roll(xp, -1) - xp).astype(np.float64)  # int or float subtraction, then double
    dy = (np.roll(yp, -1) - yp).astype(np.float64)
    seg = np.sqrt(dx * dx + dy * dy)
    length = 0.0
    for v in seg.tolist():
        length += v
    return length


def _smoothed_perimeter(xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getSmoothedPerimeter`` / ``getFloatSmoothedPerimeter`` (freehand ROIs)."""
    n = len(xp)
    f = np.issubdtype(xp.dtype, np.floating)

    def d3(a: np.ndarray, i: int, j: int, k: int) -> float:
        if f:  # (xpf[i] + xpf[j] + xpf[k]) in float, / 3.0 in double
            return float(np.float32(np.float32(a[i] + a[j]) + a[k])) / 3.0
        return float(int(a[i]) + int(a[j]) + int(a[k])) / 3.0

    length = 0.0
    dx = d3(xp, 0, 1, 2) - float(xp[0])
    dy = d3(yp, 0, 1, 2) - float(yp[0])
    length += math.sqrt(dx * dx + dy * dy)
    for i in range(1, n - 2):
        if f:
            dx = float(np.float32(xp[i + 2] - xp[i - 1])) / 3.0
            dy = float(np.float32(yp[i + 2] - yp[i - 1])) / 3.0
        else:
            dx = float(int(xp[i + 2]) - int(xp[i - 1])) / 3.0
            dy = float(int(yp[i + 2]) - int(yp[i - 1])) / 3.0
        length += math.sqrt(dx * dx + dy * dy)
    dx = float(xp[n - 1]) - d3(xp, n - 3, n - 2, n - 1)
    dy = float(yp[n - 1]) - d3(yp, n - 3, n - 2, n - 1)
    length += math.sqrt(dx * dx + dy * dy)
    if f:
        dx = float(np.float32(xp[n - 1] - xp[0]))
        dy = float(np.float32(yp[n - 1] - yp[0]))
    else:
        dx = float(int(xp[n - 1]) - int(xp[0]))
        dy = float(int(yp[n - 1]) - int(yp[0]))
    return length + math.sqrt(dx * dx + dy * dy)


def uncalibrated_length(kind: int, xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getUncalibratedLength`` of an area polygon (kind 2 polygon, 3 freehand, 4 traced)
    with integer (``xp``) or float (``xpf``) relative coordinates, before spline fitting."""
    n = len(xp)
    floating = np.issubdtype(xp.dtype, np.floating)
    if kind == 4:  # isTraced(); a float traced ROI has no int coordinates: getTracedPerimeter is NaN
        return math.nan if floating else traced_perimeter(xp, yp)
    if kind == 2:
        axis = np.all(((np.roll(xp, -1) - xp) == 0) | ((np.roll(yp, -1) - yp) == 0))
        if axis and (not floating or (np.all(xp == np.trunc(xp)) and np.all(yp == np.trunc(yp)))):
            return traced_perimeter(xp.astype(np.int64), yp.astype(np.int64))
    if n > 2 and kind == 3:
        return _smoothed_perimeter(xp, yp)
    return _polygon_length(xp, yp)


def _spline_second_derivatives(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SplineFitter.initSpline(float[] x, float[] y, n, closed=true)``: extended knots ``xx``, values
    ``yy`` (float32) and second derivatives ``y2`` (double)."""
    n = len(x)
    e = min(_SPLINE_EXTEND, n - 1)
    head = [np.float32(x[n - (e - i + 1)] - x[n - 1]) for i in range(e)]
    tail = [np.float32(np.float32(x[i + 1 - (e + n)] - x[0]) + x[n - 1]) for i in range(e + n, n + 2 * e)]
    xx = np.array([*head, *x, *tail], dtype=np.float32)
    yy = np.concatenate(
        [y[[n - (e - i + 1) for i in range(e)]], y, y[[i + 1 - (e + n) for i in range(e + n, n + 2 * e)]]]
    ).astype(np.float32)
    m = len(xx)
    xd = xx.astype(np.float64)
    yd = yy.astype(np.float64)
    dxf = np.diff(xx).astype(np.float64)  # x[j+1] - x[j] in float
    dx2f = (xx[2:] - xx[:-2]).astype(np.float64)  # x[j+1] - x[j-1] in float
    y2 = [0.0] * m
    u = [0.0] * m
    for j in range(1, m - 1):
        sig = (xd[j] - xd[j - 1]) / (xd[j + 1] - xd[j - 1])
        p = sig * y2[j - 1] + 2.0
        y2[j] = (sig - 1.0) / p
        uj = (yd[j + 1] - yd[j]) / dxf[j] - (yd[j] - yd[j - 1]) / dxf[j - 1]
        u[j] = (6.0 * uj / dx2f[j - 1] - sig * u[j - 1]) / p
    y2[m - 1] = 0.0
    for k in range(m - 2, -1, -1):
        y2[k] = y2[k] * y2[k + 1] + u[k]
    return xx, yy, np.array(y2)


def _eval_spline(xx: np.ndarray, yy: np.ndarray, y2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``SplineFitter.evalSpline(float[] x, float[] y, n, xp)`` for all ``t`` (bisection = searchsorted
    on the strictly increasing knots)."""
    n = len(xx)
    klo = np.clip(np.searchsorted(xx.astype(np.float64), t, side="right") - 1, 0, n - 2)
    khi = klo + 1
    h = (xx[khi] - xx[klo]).astype(np.float64)
    a = (xx[khi].astype(np.float64) - t) / h
    b = (t - xx[klo].astype(np.float64)) / h
    ylo, yhi = yy[klo].astype(np.float64), yy[khi].astype(np.float64)
    val = a * ylo + b * yhi + ((a * a * a - a) * y2[klo] + (b * b * b - b) * y2[khi]) * (h * h) / 6.0
    return np.where(h == 0.0, 0.0, val)


def fit_spline(xpf: np.ndarray, ypf: np.ndarray, n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """``PolygonRoi.getSpline(n_eval)`` of a closed polygon (float32 relative coordinates): cubic splines
    of x and y over the node positions ``sum sqrt(segment length)`` (float), evaluated at ``n_eval``
    equidistant positions; returns float32 ``(xSpline, ySpline)``."""
    n = len(xpf)
    nodes = np.zeros(n + 1, dtype=np.float32)
    last = np.float32(0.0)
    for i in range(1, n + 1):  # the last node closes the polygon (xpf[n - 1] - xpf[0])
        dx = np.float32(xpf[i] - xpf[i - 1]) if i < n else np.float32(xpf[n - 1] - xpf[0])
        dy = np.float32(ypf[i] - ypf[i - 1]) if i < n else np.float32(ypf[n - 1] - ypf[0])
        d = np.float32(math.sqrt(math.sqrt(float(np.float32(np.float32(dx * dx) + np.float32(dy * dy))))))
        d = max(d, np.float32(0.001))
        last = np.float32(last + d)
        nodes[i] = last
    xs = np.append(xpf[:n], xpf[0]).astype(np.float32)
    ys = np.append(ypf[:n], ypf[0]).astype(np.float32)
    scale = float(last) / float(n_eval - 1)
    t = np.arange(n_eval) * scale
    out = []
    for v in (xs, ys):
        kx, kv, y2 = _spline_second_derivatives(nodes, v)
        out.append(_eval_spline(kx, kv, y2, t).astype(np.float32))
    return out[0], out[1]
