"""Parity with ImageJ 1.53t: ROI rasterisation, Analyze > Measure conventions, napari-readable points CSV.

The references in ``tests/data/imagej`` were made by ImageJ 1.53t itself (headless, see the README there):
masks from Edit > Selection > Create Mask of ROIs read from their files, and Analyze > Measure values of
the ROIs that :func:`unet.io.write_rois` writes.
"""

from __future__ import annotations

import csv
import io as stdio
import logging
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from unet import io, postprocess
from unet.io import roi_geometry, roi_masks, roi_write
from unet.io import rois as roi_read
from unet.postprocess.perimeters import imagej_perimeters

REF = Path(__file__).parent / "data" / "imagej"
CASES = list(csv.DictReader((REF / "cases.csv").open()))


def _stack(name: str) -> np.ndarray:
    with zipfile.ZipFile(REF / name) as zf:
        return tifffile.imread(stdio.BytesIO(zf.read(zf.namelist()[0]))) > 0


@pytest.fixture(scope="module")
def case_masks() -> np.ndarray:
    masks = _stack("cases_masks.zip")
    assert masks.shape == (len(CASES), 120, 160)
    return masks


# ---------------------------------------------------------------------------------------------- ROIs
@pytest.mark.parametrize("k", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_roi_masks_equal_imagej(k: int, case_masks: np.ndarray) -> None:
    case = CASES[k]
    ann = io.read_rois(REF / "cases" / f"{case['name']}.roi", (120, 160))
    ours = ann.labels > 0
    assert int(ours.sum()) == int(case["area_px"])
    np.testing.assert_array_equal(ours, case_masks[k])


def test_headline_pixel_counts() -> None:
    """The cases a Fiji user reported (ImageJ's counts; before the port we gave 244, 220, 600 and a 35%
    smaller spline fill)."""
    area = {c["name"]: int(c["area_px"]) for c in CASES}
    got = {
        name: int((io.read_rois(REF / "cases" / f"{name}.roi", (120, 160)).labels > 0).sum())
        for name in ("oval_subpixel", "rect_subpixel", "roundrect_arc10", "spline_polygon")
    }
    assert got == {"oval_subpixel": 264, "rect_subpixel": 231, "roundrect_arc10": 580, "spline_polygon": 1734}
    assert all(area[name] == n for name, n in got.items())


def test_random_rois_of_every_type_equal_imagej() -> None:
    rois = roifile.roiread(REF / "fuzz_rois.zip")
    masks = _stack("fuzz_masks.zip")
    assert len(rois) == len(masks) == 200
    kinds = set()
    for k, roi in enumerate(rois):
        kinds.add("composite" if roi.composite else f"{roi.roitype.name}/{roi.subtype.name}")
        filled = roi_read._rasterise_roi(roi, (60, 80), REF / "fuzz_rois.zip", k)
        ours = np.zeros((60, 80), dtype=bool)
        if filled is not None:
            r0, c0, m = filled
            ours[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]] = m
        assert np.array_equal(ours, masks[k]), f"{roi.name}: {ours.sum()} px, ImageJ {masks[k].sum()}"
    assert len(kinds) >= 8


def test_spline_and_rounded_rois_are_read_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unet.io"):
        for name in ("spline_polygon", "spline_freehand", "roundrect_arc10", "roundrect_subpixel"):
            io.read_rois(REF / "cases" / f"{name}.roi", (120, 160))
    assert not caplog.records


def test_polygon_filler_ties_follow_math_round() -> None:
    """An edge from y1 to y2 covers the rows with y1 < row + 0.5 <= y2 (``Math.round``), a centre on a
    vertical edge is inside on the right boundary only."""
    xs = np.array([1.0, 4.0, 4.0, 1.0], dtype=np.float32)
    ys = np.array([0.5, 0.5, 2.5, 2.5], dtype=np.float32)
    mask = roi_masks._ij_fill(xs, ys, 6, 4)
    want = np.zeros((4, 6), dtype=bool)
    want[1:3, 1:4] = True  # rows 1, 2 (centres 1.5, 2.5); columns 1..3 (centres 1.5..3.5)
    np.testing.assert_array_equal(mask, want)
    assert roi_masks._java_round(np.array([-0.5, 0.5, 1.5, 2.4999999])).tolist() == [0, 1, 2, 2]


# ------------------------------------------------------------------------------------- measurements
@pytest.mark.parametrize("calibrated", [False, True])
def test_measure_objects_matches_imagej_measure(calibrated: bool) -> None:
    labels = np.asarray(Image.open(REF / "objects_labels.png")).astype(np.int32)
    es = (0.6, 0.4) if calibrated else None  # ImageJ: pixel height 0.6, pixel width 0.4
    rows = {r["label"]: r for r in postprocess.measure_objects(labels, element_size=es)}
    table = csv.DictReader((REF / "objects_imagej.csv").open())
    ref = [r for r in table if r["calibrated"] == str(int(calibrated))]
    assert sorted(int(r["name"][5:]) for r in ref) == sorted(rows)
    unit = "um" if calibrated else "px"
    for r in ref:
        row = rows[int(r["name"][5:])]
        assert float(r["Mean"]) == row["label"]  # ImageJ filled exactly this object's pixels
        assert row["area_um2" if calibrated else "area_px"] == pytest.approx(float(r["Area"]), abs=1e-8)
        assert row[f"centroid_x_imagej_{unit}"] == pytest.approx(float(r["X"]), abs=1e-8)
        assert row[f"centroid_y_imagej_{unit}"] == pytest.approx(float(r["Y"]), abs=1e-8)
        assert row[f"perimeter_imagej_{unit}"] == pytest.approx(float(r["Perim."]), abs=1e-8)
        scale = (0.4, 0.6) if calibrated else (1.0, 1.0)
        assert row[f"centroid_x_imagej_{unit}"] == pytest.approx((row["centroid_x_px"] + 0.5) * scale[0])
        assert row[f"centroid_y_imagej_{unit}"] == pytest.approx((row["centroid_y_px"] + 0.5) * scale[1])


def test_imagej_perimeter_equals_traced_written_rois() -> None:
    """The vectorised perimeter equals ImageJ's traced-perimeter formula applied to the loops that
    write_rois writes, for random label images (touching objects, holes, diagonal contacts)."""
    rng = np.random.default_rng(3)
    for trial in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 24, 2))
        lab = rng.integers(0, 5, shape) * (rng.random(shape) < rng.uniform(0.3, 1.0))
        if trial % 2:
            lab = ndi.label(lab > 0)[0]
        _, lab = np.unique(lab, return_inverse=True)
        lab = lab.reshape(shape).astype(np.int32)
        n = int(lab.max())
        pw, ph = (1.0, 1.0) if trial % 3 else (0.4, 0.7)
        got = imagej_perimeters(lab, n, pw, ph)
        for i in range(1, n + 1):
            loops = roi_write._trace_loops(lab == i)
            want = sum(roi_geometry.traced_perimeter(lp[:, 0], lp[:, 1], pw, ph) for lp in loops)
            assert got[i] == pytest.approx(want, abs=1e-9), (trial, i)


def test_traced_perimeter_formula() -> None:
    # 3 x 2 rectangle: 10 edges, 4 corners -> 10 - 4 (2 - sqrt 2); single pixel: 4 - 4 (2 - sqrt 2)
    assert roi_geometry.traced_perimeter(np.array([0, 3, 3, 0]), np.array([0, 0, 2, 2])) == pytest.approx(
        10 - 4 * (2 - math.sqrt(2))
    )
    lab = np.zeros((5, 6), dtype=np.int32)
    lab[1:3, 1:4] = 1
    lab[4, 5] = 2
    (a, b) = postprocess.measure_objects(lab)
    assert a["perimeter_imagej_px"] == pytest.approx(10 - 4 * (2 - math.sqrt(2)))
    assert b["perimeter_imagej_px"] == pytest.approx(4 - 2 * (2 - math.sqrt(2)))  # 2 of 4 corners count
    assert (a["centroid_y_imagej_px"], a["centroid_x_imagej_px"]) == (2.0, 2.5)
    rows3 = postprocess.measure_objects(np.stack([lab, lab]), element_size=(2.0, 0.5, 0.25))
    assert "perimeter_imagej_px" not in rows3[0] and "centroid_z_imagej_px" not in rows3[0]
    assert rows3[0]["centroid_x_imagej_um"] == pytest.approx(2.5 * 0.25)


# ---------------------------------------------------------------------------------------- napari CSV
def _napari_points(path: Path) -> np.ndarray | None:
    """napari's built-in CSV reader (``napari_builtins.io._read``, napari 0.9.2): a points layer iff the
    header contains ``axis-0`` and ``axis-1``; the data are the ``axis-*`` columns, an ``index`` first
    column is dropped, every other column becomes a feature."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh, delimiter=",")
        names = next(reader)
        table = np.array(list(reader))
    if not {"axis-0", "axis-1"}.issubset(names) or names[0] != "index":  # older napari needs index
        return None
    return table[:, [n.startswith("axis-") for n in names]].astype(float)


@pytest.mark.parametrize("ndim", [2, 3])
def test_points_csv_opens_in_napari_and_both_layouts_read_back(tmp_path: Path, ndim: int) -> None:
    pts = np.array([[1.25, 2.0, 3.5], [10.0, 0.0, 4.0], [3.0, 7.123456789, 0.5]])[:, :ndim]
    es = (0.5, 0.25, 0.125)[:ndim]
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    io.write_points_csv(new, pts, [1, 2, 2], element_size=es, napari=True)
    io.write_points_csv(old, pts, [1, 2, 2], element_size=es)
    header = new.read_text().splitlines()[0].split(",")
    assert header[: ndim + 1] == ["index"] + [f"axis-{k}" for k in range(ndim)]
    assert {"y", "x", "class", "y_um", "x_um"} <= set(header)
    np.testing.assert_array_equal(_napari_points(new), pts)
    assert _napari_points(old) is None
    for path in (new, old):
        got, cls = io.read_points_csv(path, ndim)
        np.testing.assert_array_equal(got, pts)
        np.testing.assert_array_equal(cls, [1, 2, 2])
    napari_only = tmp_path / "napari.csv"  # as napari writes it: index, axis-* only
    napari_only.write_text(
        ",".join(["index"] + [f"axis-{k}" for k in range(ndim)])
        + "\n"
        + "".join(f"{i}," + ",".join(repr(float(v)) for v in p) + "\n" for i, p in enumerate(pts))
    )
    np.testing.assert_array_equal(io.read_points_csv(napari_only, ndim)[0], pts)
