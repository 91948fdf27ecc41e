"""Write the inputs that ``make_refs.ijm`` hands to ImageJ (see README.md in this folder).

* ``fuzz_rois.zip``: 200 random area ROIs of every type :func:`unet.io.read_rois` reads (integer and
  sub-pixel rectangles, ovals and rounded rectangles, polygon / freehand / traced ROIs with integer or
  sub-pixel coordinates, with and without the spline-fit flag, ellipses, rotated rectangles, composite
  ROIs with line, quadratic and cubic segments), many with coordinates on the half-pixel grid (ties),
  partly outside the 80 x 60 image.
* ``objects_labels.png`` (8-bit instance labels, 64 x 48) and ``objects_rois.zip`` (written by
  :func:`unet.io.write_rois`), for the measurements.

Run from the repository root: ``OMP_NUM_THREADS=1 python tests/data/imagej/make_inputs.py``.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from roifile import ROI_OPTIONS, ROI_SUBTYPE, ROI_TYPE, ImagejRoi
from scipy import ndimage as ndi

from unet import io
from unet.io import roi_masks

HERE = Path(__file__).resolve().parent
FUZZ_SHAPE = (60, 80)  # (height, width) of the image the fuzz ROIs are rasterised on


def _coord(rng: np.random.Generator, v: float, grid: int) -> float:
    """``v`` as float32 (grid 0), on the half / quarter pixel grid (2 / 4) or integer (1)."""
    return float(np.float32(v)) if grid == 0 else round(v * grid) / grid


def _box(roi: ImagejRoi, xy: np.ndarray) -> None:
    ip = np.floor(xy).astype(np.int32)
    roi.left, roi.top = int(ip[:, 0].min()), int(ip[:, 1].min())
    roi.right, roi.bottom = int(ip[:, 0].max()) + 1, int(ip[:, 1].max()) + 1
    roi.integer_coordinates = ip - [roi.left, roi.top]
    roi.n_coordinates = len(xy)


def _polygon(rng: np.random.Generator, kind: ROI_TYPE, subpixel: bool, spline: bool) -> ImagejRoi:
    h, w = FUZZ_SHAPE
    n = int(rng.integers(3, 12))
    grid = int(rng.choice([0, 2, 4])) if subpixel else 1
    cx, cy, r = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5), rng.uniform(2, 30)
    if rng.random() < 0.6:  # star-shaped
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.3, 1.0, n)
        xy = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    else:  # arbitrary, usually self-intersecting
        xy = np.stack([cx + rng.uniform(-r, r, n), cy + rng.uniform(-r, r, n)], 1)
    xy = np.array([[_coord(rng, x, grid), _coord(rng, y, grid)] for x, y in xy])
    roi = ImagejRoi(roitype=kind, version=228)
    _box(roi, xy)
    options = ROI_OPTIONS(0)
    if subpixel:
        roi.subpixel_coordinates = xy.astype(np.float32)
        options |= ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    if spline:
        options |= ROI_OPTIONS.SPLINE_FIT
    roi.options = options
    return roi


def _rect(rng: np.random.Generator, kind: ROI_TYPE, subpixel: bool, arc: bool) -> ImagejRoi:
    h, w = FUZZ_SHAPE
    grid = int(rng.choice([0, 2, 4])) if subpixel else 1
    x, y = _coord(rng, rng.uniform(-10, w), grid), _coord(rng, rng.uniform(-10, h), grid)
    rw, rh = _coord(rng, rng.uniform(1, 35), grid), _coord(rng, rng.uniform(1, 35), grid)
    roi = ImagejRoi(roitype=kind, version=228)
    if subpixel:
        roi.options = ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        roi.xd, roi.yd, roi.widthd, roi.heightd = x, y, rw, rh
    roi.left, roi.top = int(np.floor(x)), int(np.floor(y))
    roi.right, roi.bottom = roi.left + int(np.ceil(rw)), roi.top + int(np.ceil(rh))
    if arc:
        roi.rounded_rect_arc_size = int(rng.integers(1, 40))
    return roi


def _parametric(rng: np.random.Generator, subtype: ROI_SUBTYPE) -> ImagejRoi:
    h, w = FUZZ_SHAPE
    grid = int(rng.choice([0, 1, 2]))
    roi = ImagejRoi(roitype=ROI_TYPE.FREEHAND, subtype=subtype, version=228)
    roi.options = ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    roi.x1, roi.y1 = _coord(rng, rng.uniform(-5, w + 5), grid), _coord(rng, rng.uniform(-5, h + 5), grid)
    roi.x2 = roi.x1 + _coord(rng, rng.uniform(-30, 30), grid)
    roi.y2 = roi.y1 + _coord(rng, rng.uniform(-30, 30), grid)
    if subtype == ROI_SUBTYPE.ELLIPSE:
        param = rng.uniform(0.05, 1.0)
    else:
        param = _coord(rng, rng.uniform(1, 20), grid)
    raw = struct.pack(">f", param)  # aspect ratio / width: the float at header offset 52
    roi.arrow_style_or_aspect_ratio, roi.arrow_head_size = raw[0], raw[1]
    roi.rounded_rect_arc_size = struct.unpack(">h", raw[2:])[0]
    xy = np.array([[roi.x1, roi.y1], [roi.x2, roi.y1], [roi.x2, roi.y2]], dtype=np.float32)
    _box(roi, xy)  # ImageJ recomputes the polygon from the parameters
    roi.subpixel_coordinates = xy
    return roi


def _composite(rng: np.random.Generator) -> ImagejRoi:
    h, w = FUZZ_SHAPE
    grid = int(rng.choice([0, 1, 2]))
    path: list[float] = []
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 25)

        def pt(cx: float = cx, cy: float = cy, r: float = r) -> list[float]:
            x = _coord(rng, rng.uniform(cx - r, cx + r), grid)
            return [x, _coord(rng, rng.uniform(cy - r, cy + r), grid)]

        path += [0, *pt()]
        for _ in range(int(rng.integers(2, 6))):
            kind = int(rng.choice([1, 2, 3]))
            path += [kind, *(v for _ in range(kind if kind > 1 else 1) for v in pt())]
        if rng.random() < 0.8:
            path.append(4)
    arr = np.array(path, dtype=np.float32)
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, version=228, multi_coordinates=arr, shape_roi_size=len(arr))
    roi.left, roi.top, roi.right, roi.bottom = 0, 0, w, h
    return roi


def _outside(roi: ImagejRoi) -> bool:
    """True if the ROI's integer bounds lie entirely outside the image: ImageJ's ROI Manager would move
    such a ROI to the image centre when selecting it (``RoiManager.restore``), so none are generated."""
    m = roi_masks.imagej_roi_mask(roi)
    if m is None:
        return True
    x, y, mask = m
    h, w = FUZZ_SHAPE
    return x >= w or y >= h or x + mask.shape[1] < 0 or y + mask.shape[0] < 0


def fuzz_rois(n: int = 200, seed: int = 20240531) -> list[ImagejRoi]:
    rng = np.random.default_rng(seed)
    rois: list[ImagejRoi] = []
    i = 0
    while len(rois) < n:
        k = i % 10
        i += 1
        if k == 0:
            roi = _rect(rng, ROI_TYPE.RECT, bool(rng.integers(2)), False)
        elif k == 1:
            roi = _rect(rng, ROI_TYPE.OVAL, bool(rng.integers(2)), False)
        elif k == 2:
            roi = _rect(rng, ROI_TYPE.RECT, bool(rng.integers(2)), True)
        elif k in (3, 4, 5, 6):
            kind = (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED)[int(rng.integers(3))]
            roi = _polygon(rng, kind, bool(rng.integers(2)), k != 6)
        elif k == 7:
            roi = _parametric(rng, ROI_SUBTYPE.ELLIPSE)
        elif k == 8:
            roi = _parametric(rng, ROI_SUBTYPE.ROTATED_RECT)
        else:
            roi = _composite(rng)
        if not _outside(roi):
            roi.name = f"fuzz{len(rois):03d}"
            rois.append(roi)
    return rois


def object_labels() -> np.ndarray:
    """64 x 48 instance labels with the outline configurations that matter for ImageJ's traced perimeter."""
    lab = np.zeros((48, 64), dtype=np.uint8)
    lab[2:6, 2:8] = 1  # rectangle
    lab[2, 10] = 2  # single pixel
    lab[2, 13] = lab[3, 14] = 3  # two pixels touching diagonally: one 8-connected outline
    for k in range(7):  # diagonal staircase
        lab[2 + k, 17 + k] = lab[2 + k, 18 + k] = 4
    lab[10:17, 2:9] = 5  # ring (hole)
    lab[12:15, 4:7] = 0
    lab[10:13, 11:14] = 6  # two components
    lab[15:18, 12:16] = 6
    lab[20:27, 2:10] = 7  # hole touching the outline diagonally
    lab[22:24, 4:6] = 0
    lab[24, 6] = 0
    lab[20:30, 12] = 8  # L shape
    lab[29, 12:18] = 8
    lab[20:28, 20:28] = 9  # U shape
    lab[20:26, 23:25] = 0
    lab[40:48, 0:5] = 10  # at the image border
    lab[0:3, 60:64] = 11  # corner of the image
    rng = np.random.default_rng(7)
    blobs = ndi.gaussian_filter(rng.random((48, 32)), 2.0) > 0.52
    blobs[:, :2] = False
    comp, _ = ndi.label(blobs)
    view = lab[:, 32:]
    free = view == 0
    view[free & (comp > 0)] = (comp[free & (comp > 0)] + 11).astype(np.uint8)
    touching = np.zeros_like(lab)  # two objects touching along an edge
    touching[32:38, 4:9] = 40
    touching[32:38, 9:14] = 41
    lab[touching > 0] = touching[touching > 0]
    return lab


def main() -> None:
    with zipfile.ZipFile(HERE / "fuzz_rois.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for roi in fuzz_rois():
            zf.writestr(zipfile.ZipInfo(roi.name + ".roi", (2024, 1, 1, 0, 0, 0)), roi.tobytes())
    lab = object_labels()
    Image.fromarray(lab).save(HERE / "objects_labels.png")
    io.write_rois(lab, HERE / "objects_rois.zip")


if __name__ == "__main__":
    main()
