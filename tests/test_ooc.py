"""unet.ooc: out-of-core labels, measurements, points and ROIs equal the in-core ones, in bounded memory."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import roifile
from conftest import save_network
from scipy import ndimage as ndi

from unet import io, ooc, postprocess
from unet.ooc import labels as ooc_labels
from unet.ooc.blocks import PerObject


def _probabilities(shape: tuple[int, ...], k: int, seed: int, sigma: float = 0.8) -> np.ndarray:
    """Smooth random soft-max maps: many touching objects of several classes, of all sizes."""
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.standard_normal((k, *shape)), (0,) + (sigma,) * len(shape))
    f[0] += 0.2  # some background
    e = np.exp(4 * f)
    return (e / e.sum(0)).astype(np.float32)


def _store(path: Path, array: np.ndarray, chunks: tuple[int, ...]) -> Path:
    with io.atomic_zarr(path, array.shape, chunks=chunks, dtype=array.dtype) as z:
        z[...] = array
    return path


def _read(path: Path) -> np.ndarray:
    return np.asarray(io.open_zarr(path)[...])


def _assert_rows_equal(rows: list[dict], expect: list[dict]) -> None:
    assert len(rows) == len(expect)
    for got, want in zip(rows, expect):
        assert list(got) == list(want)  # same columns, same order
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
            else:
                assert got[key] == value and type(got[key]) is type(value), key


CASES = [
    # shape, stored chunks, block, classes, min_size, connectivity
    ((61, 70), (16, 16), (16, 20), 3, 0, None),
    ((61, 70), (8, 8), (13, 9), 4, 4, 1),
    ((19, 33, 41), (8, 8, 8), (8, 10, 9), 3, 0, None),
    ((19, 33, 41), (8, 8, 8), (5, 12, 16), 2, 6, 2),
]


@pytest.mark.parametrize(("shape", "stored", "block", "k", "min_size", "conn"), CASES)
def test_labels_equal_in_core_ids(tmp_path: Path, shape, stored, block, k, min_size, conn) -> None:
    probs = _probabilities(shape, k, seed=len(shape) * 10 + k)
    src = _store(tmp_path / "p.zarr", probs, (k, *stored))
    n, class_of = ooc.label_out_of_core(
        src, tmp_path / "labels.zarr", min_size=min_size, connectivity=conn, chunks=block
    )
    expect, expect_class = postprocess.instance_labels(probs, min_size=min_size, connectivity=conn)
    labels = _read(tmp_path / "labels.zarr")
    assert n == len(expect_class) - 1 > 20
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, expect)  # the very same ids, not a permutation
    np.testing.assert_array_equal(class_of, expect_class)
    assert len(np.unique(class_of[1:])) == k - 1
    z = io.open_zarr(tmp_path / "labels.zarr")
    assert dict(z.attrs)["n_objects"] == n and tuple(z.chunks) == block
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left
    # objects do cross the block borders (else the merge would not be tested)
    starts = [np.arange(b, s, b) for s, b in zip(shape, block)]
    crossing = [
        np.any((labels.take(st - 1, axis=a) == labels.take(st, axis=a)) & (labels.take(st, axis=a) > 0))
        for a, st in enumerate(starts)
    ]
    assert all(crossing)


def test_diagonal_contacts_across_block_corners(tmp_path: Path) -> None:
    mask = np.zeros((8, 8, 8), bool)
    mask[3, 3, 3] = mask[4, 4, 4] = True  # touch at the corner shared by 8 blocks of 4^3
    mask[3, 3, 6] = mask[4, 4, 6] = True  # an edge-diagonal contact (across the edge of 4 blocks)
    for conn, n_expect in ((3, 2), (2, 3), (1, 4)):
        n, _ = ooc.label_out_of_core(mask, tmp_path / "l.zarr", connectivity=conn, chunks=(4, 4, 4))
        expect, _ = postprocess.instance_labels(mask, connectivity=conn)
        assert n == n_expect
        np.testing.assert_array_equal(_read(tmp_path / "l.zarr"), expect)


def test_class_maps_masks_and_empty_volumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    classes = rng.integers(0, 4, (40, 50)).astype(np.int16)
    n, class_of = ooc.label_out_of_core(classes, tmp_path / "l.zarr", chunks=(7, 11))
    expect, expect_class = postprocess.instance_labels(classes)
    np.testing.assert_array_equal(_read(tmp_path / "l.zarr"), expect)
    np.testing.assert_array_equal(class_of, expect_class)
    # physical min_size, as in-core
    n, class_of = ooc.label_out_of_core(
        classes > 2, tmp_path / "l.zarr", chunks=(9, 9), min_size=1.0, element_size=(0.5, 0.5)
    )
    expect, expect_class = postprocess.instance_labels(classes > 2, min_size=1.0, element_size=(0.5, 0.5))
    np.testing.assert_array_equal(_read(tmp_path / "l.zarr"), expect)
    # nothing in the volume: empty outputs of the in-core shape
    empty = np.zeros((2, 6, 20, 30), np.float32)
    empty[0] = 1
    n, class_of = ooc.label_out_of_core(empty, tmp_path / "e.zarr", chunks=(4, 8, 8))
    assert n == 0 and class_of.tolist() == [0]
    assert not _read(tmp_path / "e.zarr").any()
    assert ooc.measure_out_of_core(tmp_path / "e.zarr", element_size=(1, 1, 1)) == []
    points, cls = ooc.detection_points_out_of_core(tmp_path / "e.zarr", empty, class_of)
    assert points.shape == (0, 3) and cls.shape == (0,)
    assert ooc.write_rois_out_of_core(tmp_path / "e.zarr", tmp_path / "e.zip") == 0
    with pytest.raises(ValueError, match="K >= 2"):
        ooc.label_out_of_core(empty[:1], tmp_path / "x.zarr")


@pytest.mark.parametrize("nd", [2, 3])
def test_measurements_points_and_rois_equal_in_core(tmp_path: Path, nd: int) -> None:
    shape, block = ((83, 77), (20, 16)) if nd == 2 else ((17, 36, 40), (6, 16, 12))
    probs = _probabilities(shape, 3, seed=nd)
    src = _store(tmp_path / "p.zarr", probs, (3, *block))
    n, class_of = ooc.label_out_of_core(src, tmp_path / "labels.zarr", min_size=2)
    expect, expect_class = postprocess.instance_labels(probs, min_size=2)
    np.testing.assert_array_equal(_read(tmp_path / "labels.zarr"), expect)
    rng = np.random.default_rng(nd)
    image = np.stack([rng.random(shape, dtype=np.float32), rng.integers(0, 4000, shape).astype(np.float32)])
    image_zarr = _store(tmp_path / "img.zarr", image.astype(np.uint16), (2, *block))
    view = io.open_image(image_zarr, spatial_dims=nd).array  # lazy ChannelFirstView
    for es in (None, (0.5,) * nd, (2.0, 0.25, 0.5)[3 - nd :]):
        rows = ooc.measure_out_of_core(
            tmp_path / "labels.zarr", view, element_size=es, class_of=class_of, chunks=block
        )
        want = postprocess.measure_objects(
            expect, image=np.asarray(view), element_size=es, class_of=expect_class
        )
        _assert_rows_equal(rows, want)
    assert ("perimeter_imagej_px" in rows[0]) == (nd == 2)
    with pytest.MonkeyPatch.context() as mp:  # partial sums reduced by id after every few blocks
        mp.setattr(PerObject, "LIMIT", 50)
        again = ooc.measure_out_of_core(
            tmp_path / "labels.zarr", view, element_size=es, class_of=class_of, chunks=(8,) * nd
        )
    _assert_rows_equal(again, rows)
    single = ooc.measure_out_of_core(tmp_path / "labels.zarr", image[1], element_size=None)  # (*S) image
    _assert_rows_equal(single, postprocess.measure_objects(expect, image=image[1]))

    points, classes = ooc.detection_points_out_of_core(tmp_path / "labels.zarr", src, class_of, chunks=block)
    want_points, want_classes = postprocess.detection_points(probs, min_size=2)
    np.testing.assert_allclose(points, want_points, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(classes, want_classes)

    io.write_rois(expect, tmp_path / "in_core.zip")
    for given in (None, rows):
        count = ooc.write_rois_out_of_core(
            tmp_path / "labels.zarr", tmp_path / "ooc.zip", rows=given, chunks=block
        )
        a, b = roifile.roiread(tmp_path / "in_core.zip"), roifile.roiread(tmp_path / "ooc.zip")
        assert count == len(a) == len(b) >= n
        assert [r.tobytes() for r in a] == [r.tobytes() for r in b]


def test_rois_and_perimeters_of_objects_larger_than_a_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vol = ndi.gaussian_filter(rng.standard_normal((21, 40, 44)), 1.5) > 0  # a few big tangled objects
    ooc.label_out_of_core(vol, tmp_path / "v.zarr", chunks=(8, 16, 16))
    expect, _ = postprocess.instance_labels(vol)
    io.write_rois(expect, tmp_path / "a.zip")
    ooc.write_rois_out_of_core(tmp_path / "v.zarr", tmp_path / "b.zip", chunks=(8, 16, 16))  # z slabs
    a, b = roifile.roiread(tmp_path / "a.zip"), roifile.roiread(tmp_path / "b.zip")
    assert [r.tobytes() for r in a] == [r.tobytes() for r in b]
    img = ndi.gaussian_filter(rng.standard_normal((90, 80)), 2) > 0
    _, class_of = ooc.label_out_of_core(img, tmp_path / "i.zarr", chunks=(16, 20))
    expect, expect_class = postprocess.instance_labels(img)
    rows = ooc.measure_out_of_core(
        tmp_path / "i.zarr", element_size=(0.3, 0.4), class_of=class_of, chunks=(8, 9)
    )
    _assert_rows_equal(
        rows, postprocess.measure_objects(expect, element_size=(0.3, 0.4), class_of=expect_class)
    )


def test_output_is_atomic(tmp_path: Path, monkeypatch) -> None:
    probs = _probabilities((30, 30), 2, seed=1)
    out = tmp_path / "l.zarr"
    ooc.label_out_of_core(probs, out, chunks=(10, 10))
    before = _read(out)

    calls = []
    real = ooc_labels.block_slices

    def killed_in_pass_3(*args):  # pass 1 runs, the output is being written when the error comes
        calls.append(1)
        for i, item in enumerate(real(*args)):
            if len(calls) == 2 and i == 3:
                raise RuntimeError("killed")
            yield item

    monkeypatch.setattr(ooc_labels, "block_slices", killed_in_pass_3)
    with pytest.raises(RuntimeError, match="killed"):
        ooc.label_out_of_core(probs, out, chunks=(10, 10))
    np.testing.assert_array_equal(_read(out), before)  # the old output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.zarr"]  # and no temporaries are left


def _write_volume(path: Path, shape: tuple[int, int, int], stored: tuple[int, int, int]) -> None:
    """(2, *shape) float32 probabilities of blocky objects (cubes of 8^3 on a random coarse grid, joined
    across chunk borders), written slab by slab."""
    rng = np.random.default_rng(0)
    coarse = rng.random(tuple(s // 8 for s in shape)) < 0.12
    with io.atomic_zarr(path, (2, *shape), chunks=(2, *stored)) as z:
        for z0 in range(0, shape[0], stored[0]):
            m = coarse[z0 // 8 : (z0 + stored[0]) // 8].repeat(8, 0).repeat(8, 1).repeat(8, 2)
            p1 = np.where(m, np.float32(0.8), np.float32(0.2)) + rng.random(m.shape, dtype=np.float32) * 0.05
            z[:, z0 : z0 + stored[0]] = np.stack([1 - p1, p1])


def test_memory_is_bounded_by_the_block(tmp_path: Path) -> None:
    shape, stored, block = (64, 512, 768), (32, 128, 128), (32, 128, 256)
    src = tmp_path / "p.zarr"
    _write_volume(src, shape, stored)
    size = 2 * int(np.prod(shape)) * 4  # 192 MiB of probabilities
    with io.atomic_zarr(tmp_path / "warm.zarr", (4,), chunks=(2,)) as z:  # zarr's one-time set-up
        z[...] = 1
    shutil.rmtree(tmp_path / "warm.zarr")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        n, class_of = ooc.label_out_of_core(src, tmp_path / "l.zarr", chunks=block)
        label_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        rows = ooc.measure_out_of_core(
            tmp_path / "l.zarr", element_size=(1, 1, 1), class_of=class_of, chunks=block
        )
        measure_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert n == len(rows) > 300
    assert sum(r["volume_px"] for r in rows) == int(np.count_nonzero(_read(tmp_path / "l.zarr")))
    block_bytes = int(np.prod(block)) * 2 * 4  # one block of probabilities: 8 MiB
    # measured: 23 MiB labelling, 17 MiB measuring (0.12 and 0.09 of the probabilities, < 3 blocks)
    assert label_peak < size / 4, (label_peak, size)
    assert measure_peak < size / 4, (measure_peak, size)
    assert max(label_peak, measure_peak) < 6 * block_bytes, (label_peak, measure_peak, block_bytes)


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_predict_out_of_core_gives_the_in_core_objects(tmp_path: Path, task: str) -> None:
    """predict_files with out_of_core_mib=0 writes labels (zarr), objects, ROIs and points equal to the
    in-memory run's."""
    import torch

    from unet.models.unet import UNet
    from unet.predict import predict_files
    from unet.predict.image import ModelCard
    from unet.tasks import DetectionTask, SegmentationTask

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, depth=2, base_features=4)
    t = SegmentationTask(instances="components") if task == "segmentation" else DetectionTask()
    card = ModelCard(net.config, t.config(), (1.0, 1.0), "minmax")
    ckpt = tmp_path / "m.ckpt"
    save_network(ckpt, net, card)
    image = tmp_path / "img.tif"
    rng = np.random.default_rng(0)
    io.write_tiff(
        image, ndi.gaussian_filter(rng.random((96, 120)), 3).astype(np.float32), element_size=(1.0, 1.0)
    )
    a = predict_files(ckpt, image, tmp_path / "mem", progress=False, tile_shape=(92, 92))
    b = predict_files(ckpt, image, tmp_path / "ooc", progress=False, tile_shape=(92, 92), out_of_core_mib=0)
    assert a[0]["count"] == b[0]["count"] and a[0]["count"] > 0
    in_core = io.read_labels(tmp_path / "mem" / "img_labels.tif")
    assert np.array_equal(np.asarray(_read(tmp_path / "ooc" / "img_labels.zarr")), in_core)
    assert io.read_csv(tmp_path / "mem" / "img_objects.csv") == io.read_csv(
        tmp_path / "ooc" / "img_objects.csv"
    )
    rois = [r.name for r in roifile.roiread(tmp_path / "ooc" / "img_rois.zip")]
    assert rois == [r.name for r in roifile.roiread(tmp_path / "mem" / "img_rois.zip")]
    if task == "detection":
        assert (tmp_path / "mem" / "img_points.csv").read_text() == (
            tmp_path / "ooc" / "img_points.csv"
        ).read_text()
