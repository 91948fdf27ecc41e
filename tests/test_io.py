"""Tests for unet.io (all data synthetic, written to tmp_path)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from PIL import Image
from scipy import ndimage

from unet import io
from unet.data.sources import check_same_shape
from unet.io import DataFileError

# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _random_labels(rng: np.random.Generator, shape: tuple[int, ...], n_seeds: int) -> np.ndarray:
    """Random touching blobs with holes, border contact, isolated pixels and diagonal-only contacts."""
    seeds = np.zeros(shape, dtype=np.int32)
    idx = tuple(rng.integers(0, s, n_seeds) for s in shape)
    seeds[idx] = np.arange(1, n_seeds + 1)
    _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[tuple(nearest)]  # Voronoi cells: touching objects, many touch the border
    lab[ndimage.gaussian_filter(rng.random(shape), 1.5) < 0.45] = 0  # ragged gaps, holes
    lab[rng.random(shape) < 0.03] = 0  # pinholes
    speckle = rng.random(shape) < 0.01
    lab[speckle] = rng.integers(1, n_seeds + 5, int(speckle.sum()))  # 1-pixel pieces, split objects
    return lab


def _special_labels_2d() -> np.ndarray:
    lab = np.zeros((12, 14), dtype=np.uint16)
    lab[0:3, 0:3] = 1  # touches two borders
    lab[1, 1] = 0  # ... with a 1-pixel hole
    lab[0:3, 3:6] = 2  # touches object 1
    lab[5, 5] = 3  # single pixel
    lab[6, 6] = 3  # diagonal-only neighbour of the same object
    lab[7, 5] = 3  # ... and another one (pinched at two vertices)
    lab[5, 7] = 4  # another object diagonal to object 3
    lab[8:12, 10:14] = 5  # bottom-right corner
    lab[9:11, 11:13] = 0  # 2x2 hole
    lab[10, 11] = 6  # object inside the hole of object 5
    lab[4, 12] = 5  # second component of object 5
    lab[9, 0:4] = 7
    lab[10, 0] = 7
    lab[8, 3] = 7  # L/T shapes
    return lab


def _pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(mask), strict=True)}


# ----------------------------------------------------------------------------------------------------
# TIFF
# ----------------------------------------------------------------------------------------------------


def test_tiff_roundtrip_2d_imagej(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60000, size=(2, 20, 30), dtype=np.uint16)
    path = tmp_path / "img.tif"
    io.write_tiff(path, img, element_size=(0.5, 0.25), axes="CYX")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
    data = io.read_image(path)
    assert data.array.dtype == np.uint16
    np.testing.assert_array_equal(data.array, img)
    assert data.element_size == pytest.approx((0.5, 0.25))
    assert data.path == path and data.spatial_dims == 2 and data.n_channels == 2


def test_tiff_roundtrip_3d_imagej(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(2, 5, 16, 20), dtype=np.uint8)
    path = tmp_path / "vol.tif"
    io.write_tiff(path, img, element_size=(2.0, 0.3, 0.3))
    data = io.read_image(path)
    np.testing.assert_array_equal(data.array, img)
    assert data.element_size == pytest.approx((2.0, 0.3, 0.3))

    single = rng.random((4, 8, 9)).astype(np.float32)
    io.write_tiff(tmp_path / "zyx.tif", single, element_size=(1.5, 0.2, 0.1))
    data = io.read_image(tmp_path / "zyx.tif")
    np.testing.assert_array_equal(data.array, single[None])
    assert data.element_size == pytest.approx((1.5, 0.2, 0.1))


def test_tiff_roundtrip_ome_for_non_imagej_dtypes(tmp_path: Path) -> None:
    labels = np.zeros((3, 10, 12), dtype=np.int32)
    labels[1, 2:5, 3:7] = 70000
    path = tmp_path / "labels.tif"
    io.write_tiff(path, labels, element_size=(1.0, 0.2, 0.2), axes="ZYX")
    out = io.read_labels(path)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, labels)
    assert io.read_image(path).element_size == pytest.approx((1.0, 0.2, 0.2))


def test_tiff_write_requires_axes_for_ambiguous_3d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="axes"):
        io.write_tiff(tmp_path / "a.tif", np.zeros((3, 4, 5), np.uint8))
    assert not (tmp_path / "a.tif").exists()


@pytest.mark.parametrize(
    ("unit", "factor"), [("micron", 1.0), ("\\u00B5m", 1.0), ("um", 1.0), ("nm", 1e-3), ("mm", 1e3)]
)
def test_imagej_units_and_spacing(tmp_path: Path, unit: str, factor: float) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 4, 5), np.uint8),
        imagej=True,
        resolution=(4.0, 2.0),
        metadata={"axes": "ZYX", "unit": unit, "spacing": 3.0},
    )
    data = io.read_image(path)
    assert data.array.shape == (1, 3, 4, 5)
    assert data.element_size == pytest.approx((3.0 * factor, 0.5 * factor, 0.25 * factor))


def test_uncalibrated_and_missing_spacing_give_none(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 5), np.uint8), imagej=True, resolution=(2.0, 2.0))
    assert io.read_image(tmp_path / "a.tif").element_size is None  # no unit
    tifffile.imwrite(
        tmp_path / "b.tif",
        np.zeros((2, 4, 5), np.uint8),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "unit": "um"},
    )
    assert io.read_image(tmp_path / "b.tif").element_size is None  # 3D without spacing
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 5), np.uint8), resolution=(300, 300))
    assert io.read_image(tmp_path / "c.tif").element_size is None  # plain TIFF DPI


def test_ome_element_size_units(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((2, 6, 7), np.uint16),
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 650.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.7,
            "PhysicalSizeYUnit": "\u00b5m",
        },
    )
    data = io.read_image(path)
    assert data.array.shape == (2, 6, 7)
    assert data.element_size == pytest.approx((0.7, 0.65))


def test_lzw_compressed_tiff(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 4000, size=(33, 47), dtype=np.uint16)
    lab = (rng.random((33, 47)) < 0.3).astype(np.uint16) * 7
    tifffile.imwrite(tmp_path / "img.tif", img, compression="lzw")
    tifffile.imwrite(tmp_path / "lab.tif", lab, compression="lzw")
    with tifffile.TiffFile(tmp_path / "img.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    np.testing.assert_array_equal(io.read_image(tmp_path / "img.tif").array, img[None])
    np.testing.assert_array_equal(io.read_labels(tmp_path / "lab.tif"), lab)


@pytest.mark.parametrize(
    ("kwargs", "spatial_dims"),
    [
        ({"imagej": True, "metadata": {"axes": "ZCYX"}}, None),  # hyperstack: C first, then Z
        ({"imagej": True, "metadata": {"axes": "ZYX"}}, 2),  # slices read as channels
        ({"imagej": True}, 3),  # tifffile's default channels read as Z
        ({"photometric": "rgb"}, None),  # samples axis
        ({"photometric": "minisblack", "metadata": {"axes": "TZYX"}}, None),  # singleton T dropped
    ],
)
def test_open_image_of_a_compressed_tiff_has_the_layout_of_read_image(
    tmp_path: Path, kwargs: dict, spatial_dims: int | None
) -> None:
    """The lazy view of a compressed TIFF and the loaded image come from one axis-layout routine."""
    shapes = {"ZCYX": (3, 2, 9, 10), "ZYX": (3, 9, 10), "TZYX": (1, 3, 9, 10)}
    axes = kwargs.get("metadata", {}).get("axes")
    shape = (9, 10, 3) if kwargs.get("photometric") == "rgb" else shapes.get(axes, (3, 9, 10))
    arr = np.arange(math.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "c.tif", arr, compression="zlib", **kwargs)
    lazy = io.open_image(tmp_path / "c.tif", spatial_dims=spatial_dims).array
    assert isinstance(lazy, io.ChannelFirstView)
    loaded = io.read_image(tmp_path / "c.tif", spatial_dims=spatial_dims).array
    np.testing.assert_array_equal(np.asarray(lazy), loaded)
    np.testing.assert_array_equal(lazy[:, 1:3, 2:7], loaded[:, 1:3, 2:7])


def test_open_image_refuses_what_read_image_refuses(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "rgb.tif", np.zeros((6, 7, 3), np.uint8), photometric="rgb", compression="zlib"
    )
    for read in (io.read_image, io.open_image):
        with pytest.raises(DataFileError, match="is 2D, but spatial_dims=3"):
            read(tmp_path / "rgb.tif", spatial_dims=3)


# ----------------------------------------------------------------------------------------------------
# PNG / layouts
# ----------------------------------------------------------------------------------------------------


def test_png_rgba_grey_16bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    data = io.read_image(tmp_path / "rgba.png")
    assert data.array.shape == (3, 10, 12) and data.element_size is None
    np.testing.assert_array_equal(data.array, np.moveaxis(rgb, -1, 0))

    rgba[0, 0, 3] = 7  # real transparency is kept
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert io.read_image(tmp_path / "alpha.png").array.shape == (4, 10, 12)

    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "grey.png")
    assert io.read_image(tmp_path / "grey.png").array.shape == (1, 10, 12)

    grey16 = rng.integers(0, 65535, size=(10, 12)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    data = io.read_image(tmp_path / "grey16.png")
    assert data.array.dtype == np.uint16
    np.testing.assert_array_equal(data.array[0], grey16)


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((8, 9), {}, (1, 8, 9)),
        ((8, 9, 3), {}, (3, 8, 9)),
        ((8, 9, 4), {}, (4, 8, 9)),
        ((3, 8, 9), {"spatial_dims": 2}, (3, 8, 9)),
        ((3, 8, 9), {"spatial_dims": 3}, (1, 3, 8, 9)),
        ((8, 9, 2), {"channel_axis": -1}, (2, 8, 9)),
        ((2, 5, 8, 9), {}, (2, 5, 8, 9)),
        ((5, 8, 9, 3), {}, (3, 5, 8, 9)),
        ((5, 8, 2, 9), {"channel_axis": 2}, (2, 5, 8, 9)),
    ],
)
def test_npy_layouts(tmp_path: Path, shape, kwargs, expected) -> None:
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    np.save(tmp_path / "a.npy", arr)
    data = io.read_image(tmp_path / "a.npy", **kwargs)
    assert data.array.shape == expected
    assert data.array.dtype == np.int16
    assert np.array_equal(np.sort(data.array.ravel()), np.sort(arr.ravel()))


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((3, 8, 9), {}),
        ((4, 8, 3), {"spatial_dims": 2}),
        ((2, 5, 8, 9), {"spatial_dims": 2}),
        ((8, 9), {"spatial_dims": 3}),
    ],
)
def test_ambiguous_layouts_raise(tmp_path: Path, shape, kwargs) -> None:
    np.save(tmp_path / "amb.npy", np.zeros(shape, np.uint8))
    with pytest.raises(DataFileError, match=r"amb\.npy"):
        io.read_image(tmp_path / "amb.npy", **kwargs)


def test_tiff_axes_metadata_and_overrides(tmp_path: Path) -> None:
    vol = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    # ImageJ stack without hyperstack info -> z-stack
    desc = "ImageJ=1.54f\nimages=3\nloop=false\n"
    tifffile.imwrite(tmp_path / "stack.tif", vol, description=desc, metadata=None, photometric="minisblack")
    assert io.read_image(tmp_path / "stack.tif").array.shape == (1, 3, 4, 5)
    # ImageJ slices, read as channels because spatial_dims=2
    tifffile.imwrite(tmp_path / "z.tif", vol, imagej=True, metadata={"axes": "ZYX"})
    assert io.read_image(tmp_path / "z.tif").array.shape == (1, 3, 4, 5)
    assert io.read_image(tmp_path / "z.tif", spatial_dims=2).array.shape == (3, 4, 5)
    # tifffile's imagej default for 3D arrays declares channels; spatial_dims=3 makes them Z
    tifffile.imwrite(tmp_path / "c.tif", vol, imagej=True)
    assert io.read_image(tmp_path / "c.tif").array.shape == (3, 4, 5)
    assert io.read_image(tmp_path / "c.tif", spatial_dims=3).array.shape == (1, 3, 4, 5)
    # RGB TIFF (samples axis)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((6, 7, 3), np.uint8), photometric="rgb")
    assert io.read_image(tmp_path / "rgb.tif").array.shape == (3, 6, 7)
    # plain multi-page TIFF without metadata is ambiguous
    tifffile.imwrite(tmp_path / "plain.tif", vol, metadata=None, photometric="minisblack")
    with pytest.raises(DataFileError, match="spatial_dims"):
        io.read_image(tmp_path / "plain.tif")
    assert io.read_image(tmp_path / "plain.tif", spatial_dims=3).array.shape == (1, 3, 4, 5)
    # time series are rejected
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((2, 4, 5), np.uint8), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(DataFileError, match="T=2"):
        io.read_image(tmp_path / "t.tif")


# ----------------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------------


def test_read_labels_values_and_errors(tmp_path: Path) -> None:
    mask = np.zeros((6, 7), np.uint8)
    mask[1:3, 1:3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = io.read_labels(tmp_path / "mask.png")
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}  # returned as is

    np.save(tmp_path / "f.npy", mask.astype(np.float32))
    assert io.read_labels(tmp_path / "f.npy").dtype == np.int32

    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    with pytest.raises(DataFileError, match=r"rgb\.png.*channels"):
        io.read_labels(tmp_path / "rgb.png")
    Image.fromarray(np.repeat(mask[..., None], 3, axis=2), "RGB").save(tmp_path / "greyrgb.png")
    np.testing.assert_array_equal(io.read_labels(tmp_path / "greyrgb.png"), mask)

    np.save(tmp_path / "frac.npy", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(DataFileError, match=r"frac\.npy.*non-integer"):
        io.read_labels(tmp_path / "frac.npy")
    np.save(tmp_path / "neg.npy", np.full((4, 4), -1, np.int16))
    with pytest.raises(DataFileError, match=r"neg\.npy.*negative"):
        io.read_labels(tmp_path / "neg.npy")
    two = np.zeros((2, 4, 4), np.uint16)
    two[1, 0, 0] = 3
    tifffile.imwrite(tmp_path / "multi.tif", two, imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(DataFileError, match=r"multi\.tif.*2 different channels"):
        io.read_labels(tmp_path / "multi.tif")
    np.save(tmp_path / "ch.npy", np.zeros((2, 3, 4, 4), np.uint16))
    with pytest.raises(DataFileError, match=r"ch\.npy"):
        io.read_labels(tmp_path / "ch.npy")

    pal = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(io.read_labels(tmp_path / "pal.png"), [[0, 1], [2, 3]])


def test_check_same_shape_names_files() -> None:
    check_same_shape(np.zeros((2, 4, 5)), np.zeros((4, 5)), "img.tif", "lab.tif")
    with pytest.raises(DataFileError, match=r"lab\.tif.*img\.tif"):
        check_same_shape(np.zeros((1, 4, 5)), np.zeros((4, 6)), "img.tif", "lab.tif")
    with pytest.raises(DataFileError, match=r"lab\.tif"):
        check_same_shape(np.zeros((4, 5)), np.zeros((4, 5)), "img.tif", "lab.tif")  # no channel axis


# ----------------------------------------------------------------------------------------------------
# ImageJ ROIs
# ----------------------------------------------------------------------------------------------------


def test_roi_roundtrip_special_cases(tmp_path: Path) -> None:
    lab = _special_labels_2d()
    path = tmp_path / "rois.zip"
    n = io.write_rois(lab, path)
    assert n == len(np.unique(lab)) - 1
    rois = roifile.roiread(path)
    by_name = {r.name: r for r in rois}
    assert by_name["label00002"].roitype == roifile.ROI_TYPE.TRACED  # simple object: one traced outline
    assert by_name["label00002"].coordinates().shape == (4, 2)  # only corners
    assert by_name["label00001"].composite  # hole
    assert by_name["label00005"].composite  # hole + second component
    assert not by_name["label00003"].composite  # diagonal-only pieces: one 8-connected outline
    ann = io.read_rois(path, lab.shape)
    np.testing.assert_array_equal(ann.labels, lab)
    assert not ann.ignore.any() and ann.points.shape == (0, 2)


def test_roi_roundtrip_random_2d(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for k in range(4):
        lab = _random_labels(rng, (40, 52), 15)
        lab[lab > 0] += 1000 * k  # non-consecutive, large ids survive
        path = tmp_path / f"r{k}.zip"
        io.write_rois(lab, path)
        np.testing.assert_array_equal(io.read_rois(path, lab.shape).labels, lab)


def test_roi_roundtrip_3d(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    lab = np.stack([_random_labels(rng, (24, 30), 6) for _ in range(4)])
    lab[1] = 0  # empty slice
    lab[2, 5:9, 5:9] = 99  # object present on one slice only
    path = tmp_path / "vol.zip"
    io.write_rois(lab, path)
    rois = roifile.roiread(path)
    assert all(r.position >= 1 for r in rois)
    ann = io.read_rois(path, lab.shape)
    np.testing.assert_array_equal(ann.labels, lab)
    assert ann.points.shape == (0, 3)


def test_roi_empty_labels(tmp_path: Path) -> None:
    assert io.write_rois(np.zeros((5, 6), np.uint8), tmp_path / "e.zip") == 0
    assert not io.read_rois(tmp_path / "e.zip", (5, 6)).labels.any()


def test_imagej_rasterisation_hand_computed(tmp_path: Path) -> None:
    """Polygon, rectangle, oval and sub-pixel polygon filled like ImageJ (pixel centre rule)."""
    # right triangle (0,0)-(4,0)-(0,4): centres on the hypotenuse x+y=4 are on a *right* boundary -> in
    tri = roifile.ImagejRoi.frompoints(np.array([[0, 0], [4, 0], [0, 4]]))
    tri.roitype = roifile.ROI_TYPE.POLYGON
    # complementary triangle (4,0)-(4,4)-(0,4), shifted by x+10: same hypotenuse is a *left* boundary -> out
    tri2 = roifile.ImagejRoi.frompoints(np.array([[14, 0], [14, 4], [10, 4]]))
    tri2.roitype = roifile.ROI_TYPE.POLYGON
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=2, top=6, right=5, bottom=8)
    oval = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, left=10, top=6, right=14, bottom=10)
    sub = roifile.ImagejRoi.frompoints(np.array([[0.4, 10.4], [2.6, 10.4], [2.6, 11.6], [0.4, 11.6]]))
    sub.roitype = roifile.ROI_TYPE.POLYGON
    path = tmp_path / "shapes.zip"
    roifile.roiwrite(path, [tri, tri2, rect, oval, sub], name=["a", "b", "c", "d", "e"])
    lab = io.read_rois(path, (14, 16)).labels

    assert _pixels(lab == 1) == {(y, x) for y in range(4) for x in range(4) if x + y <= 3}
    assert _pixels(lab == 2) == {(y, x + 10) for y in range(4) for x in range(4) if x + y >= 4}
    assert len(_pixels(lab == 1)) + len(_pixels(lab == 2)) == 16  # no gap, no overlap
    assert _pixels(lab == 3) == {(y, x) for y in (6, 7) for x in (2, 3, 4)}
    corners = {(6, 10), (6, 13), (9, 10), (9, 13)}
    assert _pixels(lab == 4) == {(y, x) for y in range(6, 10) for x in range(10, 14)} - corners
    assert _pixels(lab == 5) == {(y, x) for y in (10, 11) for x in (0, 1, 2)}
    assert lab.max() == 5


def test_multipoint_and_ignore_rois(tmp_path: Path) -> None:
    p1 = roifile.ImagejRoi.frompoints(np.array([[3, 4], [10, 2]]), name="class2")
    p1.roitype = roifile.ROI_TYPE.POINT
    p2 = roifile.ImagejRoi.frompoints(np.array([[7, 7]]), name="class 5")
    p2.roitype = roifile.ROI_TYPE.POINT
    region = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=0, top=0, right=2, bottom=2, name="cell")
    ign = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=5, top=5, right=8, bottom=6, name="Ignore-1")
    path = tmp_path / "mixed.zip"
    roifile.roiwrite(path, [p1, region, ign, p2])
    ann = io.read_rois(path, (12, 12))
    np.testing.assert_array_equal(ann.points, [[4, 3], [2, 10], [7, 7]])  # (y, x)
    np.testing.assert_array_equal(ann.classes, [2, 2, 5])
    assert _pixels(ann.labels == 1) == {(0, 0), (0, 1), (1, 0), (1, 1)} and ann.labels.max() == 1
    assert _pixels(ann.ignore) == {(5, 5), (5, 6), (5, 7)}

    # names without class numbers: classes by order of appearance
    p1.name, p2.name = "tumour", "stroma"
    roifile.roiwrite(tmp_path / "order.zip", [p1, p2])
    np.testing.assert_array_equal(io.read_rois(tmp_path / "order.zip", (12, 12)).classes, [1, 1, 2])


def test_rois_3d_positions(tmp_path: Path) -> None:
    pts = roifile.ImagejRoi.frompoints(np.array([[1, 2]]), name="a", z=3)
    pts.roitype = roifile.ROI_TYPE.POINT
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=0, top=0, right=2, bottom=1, position=2)
    path = tmp_path / "z.zip"
    roifile.roiwrite(path, [pts, rect], name=["p", "r"])
    ann = io.read_rois(path, (5, 6, 6))
    np.testing.assert_array_equal(ann.points, [[3, 2, 1]])
    assert _pixels(ann.labels[1] == 1) == {(0, 0), (0, 1)} and ann.labels.sum() == 2

    flat = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=0, top=0, right=2, bottom=1)
    roifile.roiwrite(tmp_path / "noz.zip", [flat], name=["r"])
    with pytest.raises(DataFileError, match=r"noz\.zip.*z position"):
        io.read_rois(tmp_path / "noz.zip", (5, 6, 6))


# ----------------------------------------------------------------------------------------------------
# points CSV / tables
# ----------------------------------------------------------------------------------------------------


def test_points_csv_roundtrip(tmp_path: Path) -> None:
    pts = np.array([[1.25, 2.0], [10.0, 0.0], [3.0, 7.123456789]])
    io.write_points_csv(tmp_path / "p.csv", pts, [1, 2, 2], element_size=(0.5, 0.25))
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "y,x,class,y_um,x_um"
    got, cls = io.read_points_csv(tmp_path / "p.csv", 2, shape=(12, 8))
    np.testing.assert_array_equal(got, pts)
    np.testing.assert_array_equal(cls, [1, 2, 2])

    pts3 = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    io.write_points_csv(tmp_path / "p3.csv", pts3)
    got, cls = io.read_points_csv(tmp_path / "p3.csv", 3)
    np.testing.assert_array_equal(got, pts3)
    np.testing.assert_array_equal(cls, [1, 1])


def test_points_csv_formats_and_errors(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("X, Y ,Class\n4,3,2\n")
    got, cls = io.read_points_csv(tmp_path / "h.csv", 2)
    np.testing.assert_array_equal(got, [[3, 4]])
    np.testing.assert_array_equal(cls, [2])
    (tmp_path / "n.csv").write_text("5,6,7\n1,2,3\n")  # headerless 3D: z, y, x
    np.testing.assert_array_equal(io.read_points_csv(tmp_path / "n.csv", 3)[0], [[5, 6, 7], [1, 2, 3]])
    (tmp_path / "napari.csv").write_text("index,axis-0,axis-1\n0,3.5,4.5\n")
    np.testing.assert_array_equal(io.read_points_csv(tmp_path / "napari.csv", 2)[0], [[3.5, 4.5]])

    (tmp_path / "out.csv").write_text("y,x\n1,1\n2,9\n")
    with pytest.raises(DataFileError, match=r"out\.csv: line 3.*outside"):
        io.read_points_csv(tmp_path / "out.csv", 2, shape=(5, 5))
    (tmp_path / "bad.csv").write_text("y,x\n1,abc\n")
    with pytest.raises(DataFileError, match=r"bad\.csv: line 2"):
        io.read_points_csv(tmp_path / "bad.csv", 2)
    (tmp_path / "nox.csv").write_text("y,q\n1,2\n")
    with pytest.raises(DataFileError, match=r"nox\.csv.*'x'"):
        io.read_points_csv(tmp_path / "nox.csv", 2)


def test_write_csv(tmp_path: Path) -> None:
    io.write_csv(tmp_path / "t.csv", [{"a": 1, "b": 2.5}, {"a": 3, "c": "x"}])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b,c", "1,2.5,", "3,,x"]


# ----------------------------------------------------------------------------------------------------
# atomic writes and error messages
# ----------------------------------------------------------------------------------------------------


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="midway"), io.atomic_write(target) as tmp:
        tmp.write_text("half a ")
        raise RuntimeError("killed midway")
    assert list(tmp_path.iterdir()) == []

    target.write_text("old content")
    with pytest.raises(RuntimeError), io.atomic_write(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError
    assert target.read_text() == "old content"
    assert sorted(os.listdir(tmp_path)) == ["out.csv"]


def test_atomic_tiff_writer_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_imwrite(path, data, **kwargs):
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(io.images.tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        io.write_tiff(tmp_path / "x.tif", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.tif"):
        io.read_image(tmp_path / "missing.tif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataFileError, match=r"empty\.png: file is empty"):
        io.read_image(tmp_path / "empty.png")
    (tmp_path / "corrupt.tif").write_bytes(b"this is not a tiff file")
    with pytest.raises(DataFileError, match=r"corrupt\.tif: cannot read TIFF"):
        io.read_image(tmp_path / "corrupt.tif")
    with pytest.raises(DataFileError, match=r"corrupt\.tif"):
        io.read_labels(tmp_path / "corrupt.tif")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(DataFileError, match=r"corrupt\.png"):
        io.read_image(tmp_path / "corrupt.png")
    (tmp_path / "corrupt.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(DataFileError, match=r"corrupt\.zip"):
        io.read_rois(tmp_path / "corrupt.zip", (4, 4))
    (tmp_path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(DataFileError, match=r"x\.npy"):
        io.read_image(tmp_path / "x.npy")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataFileError, match=r"a\.gif.*unsupported"):
        io.read_image(tmp_path / "a.gif")


# ----------------------------------------------------------------------------------------------------
# pairing
# ----------------------------------------------------------------------------------------------------


def test_find_pairs(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for name in ("a.png", "b.ome.tif", "c.tif", ".hidden.png", "notes.txt"):
        (images / name).write_bytes(b"x")
    for name in ("a.tif", "b.zip", "orphan.png"):
        (labels / name).write_bytes(b"x")
    with pytest.raises(DataFileError, match=r"c\.tif.*no annotation"):
        io.find_pairs(images, labels)
    pairs = io.find_pairs(images, labels, allow_missing=True)
    assert pairs == [
        (images / "a.png", labels / "a.tif"),
        (images / "b.ome.tif", labels / "b.zip"),
        (images / "c.tif", None),
    ]
    (labels / "c.csv").write_bytes(b"x")
    assert len(io.find_pairs(images, labels)) == 3
    (labels / "c.png").write_bytes(b"x")
    with pytest.raises(DataFileError, match="same stem"):
        io.find_pairs(images, labels)


def test_move_into_place_replaces_files_and_folders(tmp_path) -> None:
    """A file over a file is one rename; a folder at either end is renamed aside and removed; atomic_write
    replaces a folder only when asked (export's overwrite), otherwise it fails and keeps the folder."""
    from unet import io
    from unet.io.common import move_into_place

    final = tmp_path / "out.pt"
    (final / "inner").mkdir(parents=True)
    with pytest.raises(IsADirectoryError), io.atomic_write(final) as tmp:
        tmp.write_bytes(b"file")
    assert (final / "inner").is_dir()
    with io.atomic_write(final, replace_folder=True) as tmp:
        tmp.write_bytes(b"file")
    assert final.read_bytes() == b"file"
    folder = tmp_path / ".new"
    (folder / "inner").mkdir(parents=True)
    move_into_place(folder, final)  # a folder over a file
    assert (final / "inner").is_dir()
    other = tmp_path / ".other"
    other.mkdir()
    move_into_place(other, final)  # a folder over a folder
    assert final.is_dir() and not any(final.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]


def test_a_store_replaced_in_place_never_leaves_an_uncleanable_leftover(tmp_path, monkeypatch) -> None:
    """atomic_zarr over an existing store moves the old one aside under a temporary name: killed between
    the two renames, the next run's clean-up removes it (and the final name is never half-written)."""
    from types import SimpleNamespace

    from unet import io

    final = tmp_path / "a_probabilities.zarr"
    with io.atomic_zarr(final, (4, 4), chunks=(4, 4), dtype="float32") as arr:
        arr[:] = 1.0
    real_replace = os.replace
    calls = []

    def killed_after_first_rename(src, dst):
        calls.append((src, dst))
        real_replace(src, dst)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the process dies between moving the old store aside and the new in

    # only unet.io.common's renames are intercepted (zarr's own file writes keep the real os)
    monkeypatch.setattr(io.common, "os", SimpleNamespace(replace=killed_after_first_rename))
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_zarr(final, (4, 4), chunks=(4, 4), dtype="float32") as arr:
            arr[:] = 2.0
    monkeypatch.undo()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers and not final.exists()
    removed = io.clean_stale_temporaries(tmp_path, [final.name])
    assert sorted(p.name for p in removed) == leftovers
    assert list(tmp_path.iterdir()) == []
