"""Tables: point annotations as CSV (our columns and napari's), and plain CSV tables of dicts.

Points are float arrays ``(N, ndim)`` in array index order (``(y, x)`` or ``(z, y, x)``) and pixel units,
where integer values are pixel centres (pixel ``i`` covers ``[i - 0.5, i + 0.5)``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from unet.io.common import DataFileError, PathLike, atomic_write, check_file

_CLASS_COLUMNS = ("class", "label")


def read_points_csv(
    path: PathLike, spatial_dims: int, *, shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read point annotations from a CSV file.

    With a header (recommended; names case-insensitive, surrounding spaces ignored): columns ``y``,
    ``x`` (and ``z`` in 3D) hold pixel coordinates, an optional ``class`` (or ``label``) column the class
    (default 1); napari's ``axis-0``, ``axis-1``[, ``axis-2``] columns (napari's points CSV, also
    written by :func:`write_points_csv` with ``napari=True``) are accepted as array-order coordinates
    where ``y`` / ``x`` / ``z`` are missing. Other columns (e.g. ``index``, ``y_um``) are ignored.
    Without a header (first row all numeric) the columns are, in order, ``y, x[, class]`` in 2D and
    ``z, y, x[, class]`` in 3D.
    Empty lines and lines starting with ``#`` are skipped.

    Coordinates are in pixels, array order, integer values at pixel centres (a point at ``y = 10``
    lies in row 10; pixel ``i`` spans ``[i - 0.5, i + 0.5)``).

    Args:
        path: CSV file.
        spatial_dims: 2 or 3.
        shape: Optional spatial image shape; points outside ``[-0.5, size - 0.5)`` raise an error.

    Returns:
        ``(points, classes)``: float64 ``(N, spatial_dims)`` array in ``(y, x)`` / ``(z, y, x)`` order and
        int64 ``(N,)`` class indices (non-negative).

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Empty file, missing columns, non-numeric or non-finite values, non-integer or
            negative classes, or a point outside the image (message names file, line and point).
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    p = check_file(path)
    axes = ("z", "y", "x")[3 - spatial_dims :]
    rows = _parse_csv(p, lambda fh: [(i + 1, row) for i, row in enumerate(csv.reader(fh))])
    rows = [(n, [c.strip() for c in r]) for n, r in rows if r and any(c.strip() for c in r)]
    rows = [(n, r) for n, r in rows if not r[0].startswith("#")]
    if not rows:
        raise DataFileError(p, "CSV file has no header and no rows")

    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    header_line, first = rows[0]
    if all(is_number(c) for c in first if c != ""):
        ncol = len(first)
        if ncol not in (spatial_dims, spatial_dims + 1):
            raise DataFileError(
                p,
                f"headerless CSV must have {spatial_dims} or {spatial_dims + 1} columns "
                f"({', '.join(axes)}[, class]), found {ncol} on line {header_line}",
            )
        coord_cols = list(range(spatial_dims))
        class_col = spatial_dims if ncol == spatial_dims + 1 else None
        data = rows
    else:
        names = [c.lower() for c in first]
        coord_cols = []
        for k, ax in enumerate(axes):
            if ax in names:
                coord_cols.append(names.index(ax))
            elif f"axis-{k}" in names:
                coord_cols.append(names.index(f"axis-{k}"))
            else:
                raise DataFileError(p, f"CSV header {first} has no column {ax!r} (need {', '.join(axes)})")
        class_col = next((names.index(c) for c in _CLASS_COLUMNS if c in names), None)
        data = rows[1:]

    points = np.zeros((len(data), spatial_dims), dtype=np.float64)
    classes = np.ones(len(data), dtype=np.int64)
    for k, (line, row) in enumerate(data):
        try:
            vals = [float(row[c]) for c in coord_cols]
            cls = float(row[class_col]) if class_col is not None and row[class_col] != "" else 1.0
        except (ValueError, IndexError) as exc:
            raise DataFileError(p, f"line {line}: invalid or missing value in row {row} ({exc})") from exc
        if not all(math.isfinite(v) for v in vals):
            raise DataFileError(p, f"line {line}: non-finite coordinate in row {row}")
        if not math.isfinite(cls) or cls != int(cls) or cls < 0:
            raise DataFileError(
                p, f"line {line}: class must be a non-negative integer, got {row[class_col]!r}"
            )
        points[k] = vals
        classes[k] = int(cls)
        if shape is not None:
            _check_point_inside(points[k], shape, p, f"line {line}")
    return points, classes


def _check_point_inside(point: np.ndarray, shape: Sequence[int], path: Path, where: str) -> None:
    shp = tuple(int(s) for s in shape)
    if len(shp) != len(point):
        raise ValueError(f"{path}: shape {shp} does not match {len(point)}-dimensional points")
    for v, s in zip(point.tolist(), shp, strict=True):
        if not -0.5 <= v < s - 0.5:
            raise DataFileError(
                path, f"{where}: point {tuple(point.tolist())} is outside the image of shape {shp}"
            )


def write_points_csv(
    path: PathLike,
    points: np.ndarray,
    classes: np.ndarray | Sequence[int] | None = None,
    element_size: Sequence[float] | None = None,
    *,
    napari: bool = False,
) -> None:
    """Write points as CSV readable by :func:`read_points_csv` (atomic).

    Columns: ``z`` (3D), ``y``, ``x`` (pixels, array order), ``class``, and with ``element_size`` also
    ``z_um`` (3D), ``y_um``, ``x_um`` (micrometres, ``pixel * element_size``). Values are written with
    full float precision.

    With ``napari=True`` the table starts with the columns of napari's points CSV format, ``index``
    (0, 1, ...), ``axis-0``, ``axis-1`` (and ``axis-2`` in 3D), the same coordinates in array order, so
    that napari's built-in reader (``napari_builtins`` ``csv_to_layer_data``: a header containing
    ``axis-0`` and ``axis-1``, ``index`` first) opens the file as a Points layer as it is; the other
    columns (``y``, ``x``, ``class``, ...) become point features. :func:`read_points_csv` reads both
    layouts (and files written by napari).

    Args:
        path: Output ``.csv`` file.
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` coordinates in pixels.
        classes: ``(N,)`` integer classes, default all 1.
        element_size: Voxel size in µm per spatial axis, or None.
        napari: Also write napari's ``index, axis-0, axis-1[, axis-2]`` columns (first).
    """
    p = Path(path)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        if pts.size == 0:
            pts = pts.reshape(0, 2 if element_size is None else len(element_size))
        else:
            raise ValueError(f"{p}: points must be (N, 2) or (N, 3), got shape {pts.shape}")
    ndim = pts.shape[1]
    cls = np.ones(len(pts), dtype=np.int64) if classes is None else np.asarray(classes).astype(np.int64)
    if cls.shape != (len(pts),):
        raise ValueError(f"{p}: classes must have shape ({len(pts)},), got {cls.shape}")
    axes = ("z", "y", "x")[3 - ndim :]
    napari_axes = [f"axis-{k}" for k in range(ndim)] if napari else []
    fields = (["index", *napari_axes] if napari else []) + [*axes, "class"]
    if element_size is not None:
        es = tuple(float(s) for s in element_size)
        if len(es) != ndim:
            raise ValueError(f"{p}: element_size {es} does not match {ndim}-dimensional points")
        fields += [f"{a}_um" for a in axes]
    rows = []
    for k in range(len(pts)):
        row: dict[str, Any] = {}
        if napari:
            row["index"] = k
            row.update({a: repr(float(v)) for a, v in zip(napari_axes, pts[k], strict=True)})
        row.update({a: repr(float(v)) for a, v in zip(axes, pts[k], strict=True)})
        row["class"] = int(cls[k])
        if element_size is not None:
            row.update({f"{a}_um": repr(float(v) * s) for a, v, s in zip(axes, pts[k], es, strict=True)})
        rows.append(row)
    write_csv(p, rows, fieldnames=fields)


def write_csv(
    path: PathLike, rows: Sequence[Mapping[str, Any]], *, fieldnames: Sequence[str] | None = None
) -> None:
    """Write a list of dicts as CSV with a header row (atomic).

    Args:
        path: Output file.
        rows: One mapping per row. Missing keys are written as empty cells.
        fieldnames: Column order; default: keys in order of first appearance over all rows. With no rows
            and no field names an empty file is written.
    """
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(str(key), None)
        fieldnames = list(seen)
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        if fieldnames:
            writer = csv.DictWriter(fh, fieldnames=list(fieldnames), restval="", extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow({str(k): v for k, v in row.items()})


def read_csv(path: PathLike) -> list[dict[str, str]]:
    """Read a CSV file with a header row (as written by :func:`write_csv`) as a list of dicts of strings.

    An empty file gives an empty list.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unreadable file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found")
    return _parse_csv(p, lambda fh: [dict(row) for row in csv.DictReader(fh)])


def _parse_csv(path: Path, parse: Callable[[TextIO], list]) -> list:
    """``parse`` of the open CSV file (UTF-8, a byte-order mark skipped); read errors name the file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return parse(fh)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(path, f"cannot read CSV ({type(exc).__name__}: {exc})") from exc


def csv_spatial_dims(path: PathLike) -> int | None:
    """Spatial dims from a point CSV's header (``z`` / ``axis-2`` column -> 3, else 2); headerless: 3 for
    four columns (``z, y, x, class``), else None (three columns are ambiguous); None if unreadable
    (:func:`read_points_csv` reports the problem)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for line in fh:
                cells = [c.strip().lower() for c in line.strip().split(",")]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                try:
                    [float(c) for c in cells if c]
                except ValueError:
                    return 3 if ("z" in cells or "axis-2" in cells) else 2
                return 3 if len(cells) == 4 else None  # z, y, x, class; 3 columns are ambiguous
    except (OSError, UnicodeDecodeError):
        return None  # read_points_csv reports the problem
    return None
