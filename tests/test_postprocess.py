from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import regionprops

from unet.postprocess import (
    class_map,
    detection_points,
    instance_labels,
    label_centroids,
    mask_to_instances,
    measure_objects,
    summarize,
)

DISKS = [((10, 12), 4), ((30, 40), 6), ((50, 15), 3), ((12, 50), 5)]  # ((cy, cx), radius)


def _disk_image(shape=(64, 64), disks=DISKS):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    masks = [(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r for (cy, cx), r in disks]
    return masks


def _probs_from_classes(classes: np.ndarray, k: int) -> np.ndarray:
    p = np.full((k, *classes.shape), 0.1 / (k - 1), dtype=np.float32)
    for c in range(k):
        p[c][classes == c] = 0.9
    return p


def test_class_map_argmax_ties_to_background():
    p = np.zeros((3, 2, 2), dtype=np.float32)
    p[0] = 0.5
    p[1, 0, 0] = 0.5  # tie with background -> background
    p[2, 1, 1] = 0.7
    np.testing.assert_array_equal(class_map(p), [[0, 0], [0, 2]])
    with pytest.raises(ValueError):
        class_map(np.zeros((1, 4, 4), dtype=np.float32))


def test_disks_count_area_centroid_diameter_perimeter():
    masks = _disk_image()
    fg = np.any(masks, axis=0)
    labels, class_of = instance_labels(fg)
    assert labels.dtype == np.int32 and labels.max() == len(DISKS)
    np.testing.assert_array_equal(class_of, [0, 1, 1, 1, 1])
    rows = measure_objects(labels, class_of=class_of)
    assert len(rows) == len(DISKS)
    got = {(round(r["centroid_y_px"]), round(r["centroid_x_px"])): r for r in rows}
    for ((cy, cx), _), mask in zip(DISKS, masks):
        row = got[(cy, cx)]
        assert row["area_px"] == int(mask.sum())
        assert row["centroid_y_px"] == pytest.approx(cy, abs=1e-6)
        assert row["centroid_x_px"] == pytest.approx(cx, abs=1e-6)
        assert row["equivalent_diameter_px"] == pytest.approx(2 * math.sqrt(mask.sum() / math.pi))
        assert row["class"] == 1
        assert "area_um2" not in row and "perimeter_um" not in row
    # perimeter and bbox are those of skimage regionprops
    for row, prop in zip(rows, regionprops(labels)):
        assert row["label"] == prop.label
        assert row["perimeter_px"] == pytest.approx(prop.perimeter, abs=1e-9)
        assert row["bbox"] == tuple(prop.bbox)


def test_perimeter_touching_objects_matches_regionprops(rng):
    labels = rng.integers(0, 4, size=(40, 40)).astype(np.int32)  # many touching, fragmented objects
    rows = measure_objects(labels)
    for row, prop in zip(rows, regionprops(labels)):
        assert row["area_px"] == prop.area
        assert row["perimeter_px"] == pytest.approx(prop.perimeter, abs=1e-9)


def test_square_equivalent_diameter_and_physical_units():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:12, 5:15] = 3
    (row,) = measure_objects(labels, element_size=(0.5, 0.5))
    assert row["label"] == 3 and row["area_px"] == 100
    assert row["area_um2"] == pytest.approx(25.0)
    assert row["equivalent_diameter_px"] == pytest.approx(2 * math.sqrt(100 / math.pi))
    assert row["equivalent_diameter_um"] == pytest.approx(2 * math.sqrt(25 / math.pi))
    assert row["centroid_y_px"] == pytest.approx(6.5) and row["centroid_x_px"] == pytest.approx(9.5)
    assert row["centroid_y_um"] == pytest.approx(3.25) and row["centroid_x_um"] == pytest.approx(4.75)
    assert row["perimeter_um"] == pytest.approx(0.5 * row["perimeter_px"])
    assert row["bbox"] == (2, 5, 12, 15)
    (aniso,) = measure_objects(labels, element_size=(1.0, 0.5))
    assert "perimeter_um" not in aniso and aniso["area_um2"] == pytest.approx(50.0)
    assert aniso["equivalent_diameter_um"] == pytest.approx(2 * math.sqrt(50 / math.pi))


def test_diagonal_touching_merges_with_8_not_4_connectivity():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:3, 1:3] = True
    mask[3:5, 3:5] = True  # touches the first square only at a corner
    labels, class_of = instance_labels(mask)
    assert labels.max() == 1 and len(class_of) == 2
    labels4, class_of4 = instance_labels(mask, connectivity=1)
    assert labels4.max() == 2 and len(class_of4) == 3
    assert len(detection_points(mask)[0]) == 1
    assert len(detection_points(mask, connectivity=1)[0]) == 2


def test_3d_balls_volume_and_anisotropic_physical_volume():
    shape = (20, 24, 24)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    balls = [((5, 6, 6), 3), ((13, 16, 15), 4)]
    masks = [(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r for c, r in balls]
    labels, class_of = instance_labels(np.any(masks, axis=0))
    assert labels.max() == 2
    es = (2.0, 0.5, 0.25)
    rows = measure_objects(labels, element_size=es, class_of=class_of)
    for row, (centre, _), mask in zip(rows, balls, masks):
        n = int(mask.sum())
        assert row["volume_px"] == n
        assert row["volume_um3"] == pytest.approx(n * 2.0 * 0.5 * 0.25)
        assert row["equivalent_diameter_px"] == pytest.approx((6 * n / math.pi) ** (1 / 3))
        assert row["equivalent_diameter_um"] == pytest.approx((6 * n * 0.25 / math.pi) ** (1 / 3))
        for ax, c, s in zip("zyx", centre, es):
            assert row[f"centroid_{ax}_px"] == pytest.approx(c, abs=1e-6)
            assert row[f"centroid_{ax}_um"] == pytest.approx(c * s, abs=1e-6)
        assert "perimeter_px" not in row and "area_px" not in row
        assert len(row["bbox"]) == 6
    # 26-connectivity in 3D: corner-touching voxels merge, 6-connectivity keeps them apart
    m = np.zeros((3, 3, 3), dtype=bool)
    m[0, 0, 0] = m[1, 1, 1] = True
    assert instance_labels(m)[0].max() == 1
    assert instance_labels(m, connectivity=1)[0].max() == 2


def test_components_per_class():
    classes = np.zeros((10, 12), dtype=np.int64)
    classes[2:6, 2:5] = 1
    classes[2:6, 5:8] = 2  # touches the class-1 square: still two objects
    classes[8:10, 0:2] = 1
    labels, class_of = instance_labels(classes)
    np.testing.assert_array_equal(class_of, [0, 1, 1, 2])  # class by class, raster order within a class
    assert set(np.unique(labels[classes == 2])) == {3}
    assert len(np.unique(labels[classes == 1])) == 2
    # the same from probabilities
    labels_p, class_of_p = instance_labels(_probs_from_classes(classes, 3))
    np.testing.assert_array_equal(labels_p, labels)
    np.testing.assert_array_equal(class_of_p, class_of)
    rows = measure_objects(labels, class_of=class_of)
    assert [r["class"] for r in rows] == [1, 1, 2]
    assert [r["class"] for r in measure_objects(labels, class_of={1: 5, 2: 5, 3: 7})] == [5, 5, 7]


def test_min_size_removal_pixels_and_physical():
    mask = np.zeros((20, 20), dtype=bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[5:8, 5:8] = True  # 9 px
    mask[12:17, 12:17] = True  # 25 px
    labels, class_of = instance_labels(mask, min_size=9)
    assert labels.max() == 2 and len(class_of) == 3  # consecutive ids
    assert sorted(np.bincount(labels.ravel())[1:].tolist()) == [9, 25]
    labels_um, _ = instance_labels(mask, min_size=10.0, element_size=(2.0, 2.0))  # 4 um^2 per pixel
    assert sorted(np.bincount(labels_um.ravel())[1:].tolist()) == [4, 9, 25]
    labels_um, _ = instance_labels(mask, min_size=37.0, element_size=(2.0, 2.0))
    assert sorted(np.bincount(labels_um.ravel())[1:].tolist()) == [25]
    points, classes = detection_points(mask, min_size=9)
    np.testing.assert_allclose(points, [[6, 6], [14, 14]])
    np.testing.assert_array_equal(classes, [1, 1])


def test_intensity_per_channel_against_brute_force(rng):
    labels = np.zeros((30, 30), dtype=np.int64)
    labels[1:9, 2:7] = 4
    labels[12:20, 10:25] = 9  # non-consecutive ids
    labels[22:29, 3:6] = 2
    labels[25:28, 20:28] = 9  # one id, two pieces
    image = rng.normal(size=(2, 30, 30)).astype(np.float32)
    rows = measure_objects(labels, image=image)
    assert [r["label"] for r in rows] == [2, 4, 9]
    for row in rows:
        sel = labels == row["label"]
        assert row["area_px"] == int(sel.sum())
        ys, xs = np.nonzero(sel)
        assert row["centroid_y_px"] == pytest.approx(ys.mean()) and row["centroid_x_px"] == pytest.approx(
            xs.mean()
        )
        for c in range(2):
            vals = [float(image[c, y, x]) for y, x in zip(ys, xs)]
            assert row[f"mean_intensity_c{c}"] == pytest.approx(sum(vals) / len(vals), rel=1e-6)
            assert row[f"max_intensity_c{c}"] == pytest.approx(max(vals))
    single = measure_objects(labels, image=image[0])  # a (*S) image is one channel
    assert [r["max_intensity_c0"] for r in single] == [r["max_intensity_c0"] for r in rows]
    with pytest.raises(ValueError):
        measure_objects(labels, image=image[:, :20])


def test_detection_points_probability_weighted():
    classes = np.zeros((12, 12), dtype=np.int64)
    classes[2:5, 2:5] = 1
    classes[7:10, 6:11] = 2
    p = _probs_from_classes(classes, 3)
    # skew the foreground probability inside the first object towards its bottom-right corner
    p[0, 2:5, 2:5] = [[0.4, 0.3, 0.2], [0.3, 0.2, 0.1], [0.2, 0.1, 0.0]]
    p[1, 2:5, 2:5] = 1.0 - p[0, 2:5, 2:5]
    p[2, 2:5, 2:5] = 0.0
    points, cls = detection_points(p)
    w = 1.0 - p[0, 2:5, 2:5].astype(np.float64)
    yy, xx = np.mgrid[2:5, 2:5]
    expected0 = [(w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()]
    np.testing.assert_allclose(points[0], expected0, atol=1e-6)
    np.testing.assert_allclose(points[1], [8.0, 8.0], atol=1e-6)  # uniform weights: plain centroid
    np.testing.assert_array_equal(cls, [1, 2])
    points_c, cls_c = detection_points(classes)  # from the class map: plain centroids
    np.testing.assert_allclose(points_c, [[3.0, 3.0], [8.0, 8.0]])
    np.testing.assert_array_equal(cls_c, cls)
    assert points.dtype == np.float64 and points.shape == (2, 2)


def test_empty_prediction():
    p = np.zeros((2, 16, 16), dtype=np.float32)
    p[0] = 1.0
    labels, class_of = instance_labels(p)
    assert labels.shape == (16, 16) and labels.max() == 0
    np.testing.assert_array_equal(class_of, [0])
    points, classes = detection_points(p)
    assert points.shape == (0, 2) and classes.shape == (0,)
    assert detection_points(np.zeros((4, 5, 6), dtype=bool))[0].shape == (0, 3)
    assert measure_objects(labels, image=np.ones((1, 16, 16)), element_size=(1.0, 1.0)) == []
    (summary,) = summarize({"empty": []})
    assert summary["image"] == "empty" and summary["count"] == 0


def test_summarize_counts_and_means():
    classes = np.zeros((20, 20), dtype=np.int64)
    classes[0:2, 0:2] = 1  # 4 px
    classes[5:9, 5:9] = 2  # 16 px
    classes[12:15, 12:15] = 1  # 9 px
    labels, class_of = instance_labels(classes)
    rows_a = measure_objects(labels, class_of=class_of, element_size=(0.5, 0.5))
    summary = summarize({"a.tif": rows_a, "b.tif": []})
    assert [s["image"] for s in summary] == ["a.tif", "b.tif"]
    a, b = summary
    assert a["count"] == 3 and a["count_class1"] == 2 and a["count_class2"] == 1
    assert a["mean_area_px"] == pytest.approx(29 / 3)
    assert a["mean_area_um2"] == pytest.approx(29 / 3 * 0.25)
    assert b["count"] == 0 and b["count_class1"] == 0 and b["count_class2"] == 0
    assert math.isnan(b["mean_area_px"])
    assert set(a) == set(b)


def test_label_centroids_one_point_per_id_against_mean_coordinates(rng):
    labels = rng.integers(0, 5, size=(6, 9, 7))
    labels[labels == 3] = 0  # a gap in the ids (as after cropping) gives no point
    got = label_centroids(labels)
    assert got.shape == (3, 3)
    for row, i in enumerate((1, 2, 4)):
        np.testing.assert_allclose(got[row], np.argwhere(labels == i).mean(axis=0))
    assert label_centroids(np.zeros((4, 4), int)).shape == (0, 2)


def test_watershed_splits_touching_objects_that_components_merge() -> None:
    """Two overlapping disks (a neck between them) and one separate disk: components give 2 objects,
    the watershed 3; ids consecutive, classes kept; a thin object without a seed stays whole."""
    from unet.postprocess import watershed_instances

    yy, xx = np.mgrid[:60, :90]
    a = (yy - 30) ** 2 + (xx - 20) ** 2 <= 12**2
    b = (yy - 30) ** 2 + (xx - 40) ** 2 <= 12**2
    c = (yy - 30) ** 2 + (xx - 75) ** 2 <= 8**2
    mask = a | b | c
    comp, _ = instance_labels(mask)
    ws, class_of = watershed_instances(mask, h=1.0)
    assert comp.max() == 2 and ws.max() == 3 and list(class_of) == [0, 1, 1, 1]
    assert set(np.unique(ws[a & ~b])) == {ws[30, 15]} and ws[30, 15] != ws[30, 45]
    assert (ws > 0).sum() == mask.sum()  # every mask pixel belongs to an object
    line = np.zeros((20, 20), bool)
    line[10, 2:18] = True  # one pixel wide: its distance maximum is below h
    lab, _ = watershed_instances(line, h=5.0)
    assert lab.max() == 1 and (lab > 0).sum() == line.sum()


def test_watershed_in_3d_with_anisotropic_voxels() -> None:
    from unet.postprocess import watershed_instances

    zz, yy, xx = np.mgrid[:20, :40, :60]
    es = (2.0, 0.5, 0.5)  # z voxels 4x longer: balls of radius 5 µm
    ball = lambda cz, cy, cx: ((zz - cz) * 2.0) ** 2 + ((yy - cy) * 0.5) ** 2 + ((xx - cx) * 0.5) ** 2 <= 25  # noqa: E731
    mask = ball(10, 20, 18) | ball(10, 20, 36)
    assert instance_labels(mask)[0].max() == 1
    assert watershed_instances(mask, element_size=es)[0].max() == 2


def test_auto_instances_are_chosen_on_validation_and_travel_in_the_card() -> None:
    from unet.data.items import Annotation
    from unet.tasks import SegmentationTask, task_from_config

    yy, xx = np.mgrid[:60, :90]
    gt = np.zeros((60, 90), np.int32)
    gt[(yy - 30) ** 2 + (xx - 20) ** 2 <= 12**2] = 1
    gt[((yy - 30) ** 2 + (xx - 40) ** 2 <= 12**2) & (gt == 0)] = 2
    probs = np.stack([gt == 0, gt > 0]).astype(np.float32)  # foreground right, no ridge between the two
    task = SegmentationTask()
    assert task.method == "components"  # before any validation: the papers' method
    scores = task.score(probs, Annotation(labels=gt))
    assert scores["iou_components"] < 0.7 < scores["iou_watershed"]
    means = task.finish_validation(dict(scores))
    assert task.selected == "watershed" and means["iou"] == scores["iou_watershed"]
    again = task_from_config(task.config())  # what predict rebuilds from the checkpoint
    assert again.method == "watershed" and again.objects(probs).max() == 2
    fixed = SegmentationTask(instances="components")
    assert fixed.finish_validation(dict(fixed.score(probs, Annotation(labels=gt))))["iou"] < 0.7
    with pytest.raises(ValueError, match=r"task\.instances"):
        SegmentationTask(instances="magic")


def test_mask_to_instances_connectivity() -> None:
    mask = np.zeros((5, 5), np.uint8)
    mask[0, 0] = mask[1, 1] = 255
    mask[3:5, 3:5] = 255
    full = mask_to_instances(mask)
    assert full.max() == 2 and full[0, 0] == full[1, 1]
    assert mask_to_instances(mask, connectivity=1).max() == 3


def test_auto_instances_follow_the_metric_the_checkpoint_monitor_maximises() -> None:
    from unet.tasks import SegmentationTask

    means = {
        f"{k}_{m}": v
        for m, vals in {"components": (0.8, 0.5, 0.6), "watershed": (0.7, 0.6, 0.9)}.items()
        for k, v in zip(("iou", "pq", "f1"), vals)
    }
    means.update({f"{k}_{m}": 1.0 for m in ("components", "watershed") for k in ("precision", "recall")})
    picked = {}
    for monitor in ("val/iou", "val/pq", "val/f1"):
        task = SegmentationTask(monitor=monitor)
        out = task.finish_validation(dict(means))
        picked[monitor] = task.selected
        assert out[monitor.split("/")[1]] == means[f"{monitor.split('/')[1]}_{task.selected}"]
    assert picked == {"val/iou": "components", "val/pq": "watershed", "val/f1": "watershed"}
