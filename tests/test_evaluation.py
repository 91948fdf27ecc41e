"""Tests for unet.evaluation (synthetic data written to tmp_path)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import roifile

from unet import evaluation as ev
from unet import evaluation_files as ef
from unet import io
from unet.io import DataFileError
from unet.report import format_table, headline


def _squares(shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint16)
    lab[2:12, 3:13] = 1
    lab[15:25, 20:30] = 2
    lab[28:36, 5:11] = 3
    return lab


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    pred, gt, out = tmp_path / "pred", tmp_path / "gt", tmp_path / "out"
    pred.mkdir()
    gt.mkdir()
    return pred, gt, out


def test_identical_segmentation_writes_reports(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    lab = _squares()
    for stem, a in (("img1", lab), ("img2", lab[::-1].copy())):
        io.write_tiff(gt / f"{stem}.tif", a)
        io.write_tiff(pred / f"{stem}_labels.tif", a.astype(np.int32) * 5)  # other ids, OME-TIFF
        io.write_tiff(pred / f"{stem}_probabilities.tif", np.ones((2, *a.shape), np.float32), axes="CYX")
    res = ev.evaluate_dirs(pred, gt, "segmentation", output_dir=out)
    assert [r["image"] for r in res.rows] == ["img1", "img2"]
    assert [f[1].name for f in res.files] == ["img1_labels.tif", "img2_labels.tif"]
    for r in res.rows:
        assert r["mean_iou"] == 1.0 and r["f1"] == 1.0 and r["ap"] == 1.0 and r["f1@0.90"] == 1.0
        assert r["n_gt"] == r["n_pred"] == 3 and r["count_error"] == 0
    assert res.pooled["f1"] == 1.0 and res.pooled["tp"] == 6

    with open(out / "metrics.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["image"] for t in table] == ["img1", "img2", "mean"]
    assert float(table[-1]["mean_iou"]) == 1.0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["task"] == "segmentation" and doc["settings"]["iou_thresholds"][0] == 0.5
    for key in doc["metrics"]:
        assert doc["mean"][key] == pytest.approx(np.mean([im[key] for im in doc["images"]]))
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left
    table_text = format_table(res)
    assert "img2" in table_text and table_text.splitlines()[-1].startswith("mean")


def test_shifted_squares_known_iou() -> None:
    gt = np.zeros((30, 30), dtype=np.int32)
    gt[5:15, 5:15] = 1
    gt[20:25, 20:25] = 2
    pred = np.zeros_like(gt)
    pred[5:15, 7:17] = 4  # shifted by 2: intersection 80, union 120
    pred[20:25, 20:25] = 9
    row = ev.evaluate_pair(gt, pred, "segmentation", iou_thresholds=(0.5, 0.7))
    assert row["mean_iou"] == pytest.approx((80 / 120 + 1.0) / 2)
    assert (row["tp"], row["fp"], row["fn"], row["f1"]) == (2, 0, 0, 1.0)
    assert row["f1@0.50"] == 1.0 and row["f1@0.70"] == pytest.approx(0.5)
    assert row["ap"] == pytest.approx((1.0 + 1 / 3) / 2)
    # thresholds without 0.5: tp/fp/fn are still reported at IoU 0.5
    row = ev.evaluate_pair(gt, pred, "segmentation", iou_thresholds=(0.7,))
    assert row["tp"] == 2 and row["f1@0.70"] == pytest.approx(0.5)


def test_binary_mask_ground_truth_becomes_components(tmp_path: Path) -> None:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[1:4, 1:4] = 255
    mask[4, 4] = 255  # diagonal contact: same object with 8-connectivity
    mask[10:14, 10:14] = 255
    mask[17:19, 2:5] = 255
    io.write_tiff(tmp_path / "m.tif", mask)
    lab = ef.load_ground_truth(tmp_path / "m.tif", "segmentation")
    assert lab.max() == 3 and lab[1, 1] == lab[4, 4]
    np.save(tmp_path / "b.npy", mask > 0)  # bool 0/1 mask
    assert ef.load_prediction(tmp_path / "b.npy", "segmentation").max() == 3
    # instance labels are kept as they are
    inst = _squares()
    np.save(tmp_path / "i.npy", inst)
    np.testing.assert_array_equal(ef.load_prediction(tmp_path / "i.npy", "segmentation"), inst)


def test_roi_zip_ground_truth_and_prediction(tmp_path: Path) -> None:
    pred, gt, _ = _dirs(tmp_path)
    lab = _squares()
    io.write_rois(lab, gt / "a.zip")
    io.write_tiff(pred / "a_labels.tif", lab)
    io.write_rois(lab, gt / "b.zip")
    shifted = np.zeros_like(lab)
    shifted[2:12, 5:15] = 1  # IoU 80 / 120 with object 1, objects 2 and 3 missed
    io.write_rois(shifted, pred / "b_rois.zip")  # both ROI sets: raster from the ROI extents
    res = ev.evaluate_dirs(pred, gt, "segmentation", output_dir=None)
    a, b = res.rows
    assert a["mean_iou"] == 1.0 and a["n_gt"] == 3
    assert b["mean_iou"] == pytest.approx((80 / 120) / 3) and (b["n_pred"], b["tp"], b["fn"]) == (1, 1, 2)
    assert b["count_error"] == 2 and res.mean["count_error"] == 1.0 and res.outputs == {}


def _write_points(path: Path, points: list[tuple[float, float]]) -> None:
    io.write_points_csv(path, np.array(points, dtype=np.float64).reshape(-1, 2))


def test_detection_d_match(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    _write_points(gt / "a.csv", [(10, 10), (30, 30), (50, 50)])
    # 3 px: match; 6.5 px: just outside d_match = 6; (70, 70): far away
    _write_points(pred / "a_points.csv", [(10, 13), (30, 36.5), (70, 70)])
    _write_points(gt / "b.csv", [(5, 5), (20, 20)])
    _write_points(pred / "b_points.csv", [(5, 11), (20, 20)])  # exactly d_match away: a match
    res = ev.evaluate_dirs(pred, gt, "detection", output_dir=out, d_match=6.0)
    a, b = res.rows
    assert (a["tp"], a["fp"], a["fn"]) == (1, 2, 2)
    assert a["precision"] == pytest.approx(1 / 3) and a["f1"] == pytest.approx(1 / 3)
    assert a["count_error"] == 0 and a["n_gt"] == a["n_pred"] == 3
    assert (b["tp"], b["fp"], b["fn"], b["f1"]) == (2, 0, 0, 1.0)
    assert res.pooled["tp"] == 3 and res.pooled["f1"] == pytest.approx(6 / 10)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["d_match"] == 6.0 and doc["mean"]["f1"] == pytest.approx((1 / 3 + 1) / 2)
    assert (out / "metrics.png").stat().st_size > 0
    # physical units: with 0.5 um pixels the 6.5 px offset is 3.25 um < 6 um
    row = ev.evaluate_pair(
        ef.load_ground_truth(gt / "a.csv", "detection"),
        ef.load_prediction(pred / "a_points.csv", "detection"),
        "detection",
        d_match=6.0,
        element_size=(0.5, 0.5),
    )
    assert row["tp"] == 2


def test_detection_roi_points_vs_dot_image(tmp_path: Path) -> None:
    pred, gt, _ = _dirs(tmp_path)
    pts = roifile.ImagejRoi.frompoints(np.array([[4, 3], [20, 10], [12, 25]]), name="cells")  # (x, y)
    pts.roitype = roifile.ROI_TYPE.POINT
    roifile.roiwrite(gt / "a.zip", [pts])
    dots = np.zeros((30, 30), dtype=np.uint8)
    dots[2:5, 3:6] = 255  # disk-like dot, centroid (3, 4)
    dots[10, 20] = 1  # single-pixel dots with class values
    dots[25, 12] = 2
    dots[26, 13] = 2  # diagonal neighbour of equal value: the same dot, centroid (25.5, 12.5)
    io.write_tiff(pred / "a.tif", dots)
    points = ef.load_prediction(pred / "a.tif", "detection")
    assert points.shape == (3, 2)
    res = ev.evaluate_dirs(pred, gt, "detection", output_dir=None, d_match=1.0)
    assert (res.rows[0]["tp"], res.rows[0]["fp"], res.rows[0]["fn"]) == (3, 0, 0)


def test_missing_partner_names_file(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    lab = _squares()
    io.write_tiff(gt / "a.tif", lab)
    io.write_tiff(gt / "b.tif", lab)
    io.write_tiff(pred / "a_labels.tif", lab)
    with pytest.raises(DataFileError, match=r"b\.tif.*without prediction"):
        ev.evaluate_dirs(pred, gt, "segmentation", output_dir=out)
    io.write_tiff(pred / "c_labels.tif", lab)
    with pytest.raises(DataFileError, match=r"b\.tif"):
        ef.match_files(pred, gt, "segmentation")
    (gt / "b.tif").unlink()
    with pytest.raises(DataFileError, match=r"c_labels\.tif.*without ground truth"):
        ef.match_files(pred, gt, "segmentation")
    pairs = ef.match_files(pred, gt, "segmentation", allow_missing=True)
    assert [(k, p.name, g.name) for k, p, g in pairs] == [("a", "a_labels.tif", "a.tif")]
    assert not out.exists()


def test_shape_mismatch_fails_before_computing(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    lab = _squares()
    io.write_tiff(gt / "a.tif", lab)
    io.write_tiff(pred / "a_labels.tif", lab)
    io.write_tiff(gt / "b.tif", lab)
    io.write_tiff(pred / "b_labels.tif", lab[:, :-1])
    with pytest.raises(DataFileError, match=r"b_labels\.tif.*does not match.*b\.tif"):
        ev.evaluate_dirs(pred, gt, "segmentation", output_dir=out)
    assert not out.exists()


def test_task_specific_file_choice_and_ambiguity(tmp_path: Path) -> None:
    pred, gt, _ = _dirs(tmp_path)
    lab = _squares()
    io.write_tiff(pred / "x_labels.tif", lab)
    _write_points(pred / "x_points.csv", [(5, 5)])
    io.write_tiff(pred / "x_probabilities.tif", np.zeros(lab.shape, np.float32))
    io.write_tiff(gt / "x.tif", lab)
    _write_points(gt / "x.csv", [(5, 5)])
    chosen = {t: ef.match_files(pred, gt, t)[0] for t in ef.TASKS}
    assert chosen["segmentation"][1:] == (pred / "x_labels.tif", gt / "x.tif")
    assert chosen["detection"][1:] == (pred / "x_points.csv", gt / "x.csv")
    assert chosen["em"][1:] == (pred / "x_probabilities.tif", gt / "x.tif")
    np.save(gt / "x.npy", lab)  # same key and preference as x.tif
    with pytest.raises(DataFileError, match="cannot pair unambiguously"):
        ef.match_files(pred, gt, "segmentation")
    with pytest.raises(ValueError, match="task must be one of"):
        ef.match_files(pred, gt, "tracking")


def test_em_task(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    interior = np.ones((32, 32), dtype=np.uint8)
    interior[:, 15:17] = 0  # membrane between two cells
    interior[15:17, :] = 0
    io.write_tiff(gt / "s1.tif", interior * 255)
    prob = np.stack([1.0 - interior, interior]).astype(np.float32)  # 2-class soft-max, channel 1 interior
    io.write_tiff(pred / "s1_probabilities.tif", prob, axes="CYX")
    noisy = interior.astype(np.float32) * 0.8 + 0.1
    noisy[3, 3] = 0.2  # one wrong pixel at threshold 0.5
    io.write_tiff(gt / "s2.tif", interior * 255)
    io.write_tiff(pred / "s2_probabilities.tif", noisy)
    res = ev.evaluate_dirs(pred, gt, "em", output_dir=out)
    s1, s2 = res.rows
    assert s1["pixel_error"] == 0.0 and s1["adapted_rand_error"] == pytest.approx(0.0)
    assert s1["v_rand"] == pytest.approx(1.0) and s1["best_rand_error"] == pytest.approx(0.0)
    assert s2["pixel_error"] == pytest.approx(1 / 32**2)
    assert res.mean["pixel_error"] == pytest.approx(0.5 / 32**2)
    doc = json.loads((out / "metrics.json").read_text())
    assert len(doc["images"][0]["curves"]["thresholds"]) == 10 and doc["pooled"] == {}
    assert (out / "metrics.png").exists()
    assert "best_adapted_rand_error" in format_table(res)


def _ap50_case() -> tuple[np.ndarray, np.ndarray]:
    """Hand-computed: one exact match, one poor overlap (IoU 40/160 = 0.25: a false positive and a false
    negative), one missed object, one spurious prediction -> at IoU 0.5: tp 1, fp 2, fn 2."""
    gt = np.zeros((32, 32), dtype=np.int32)
    gt[0:10, 0:10] = 1
    gt[20:30, 0:10] = 2
    gt[0:10, 20:30] = 3
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 5
    pred[20:30, 6:16] = 6
    pred[20:25, 20:25] = 7
    return gt, pred


def test_ap50_is_tp_over_tp_fp_fn_at_iou_half() -> None:
    gt, pred = _ap50_case()
    row = ev.evaluate_pair(gt, pred, "segmentation")
    assert (row["tp"], row["fp"], row["fn"]) == (1, 2, 2)
    assert row["ap50"] == pytest.approx(1 / 5)  # tp / (tp + fp + fn)
    assert row["f1"] == pytest.approx(2 / 6)  # next to F1 and PQ, which differ from it
    assert row["pq"] == pytest.approx(1.0 / (1 + 1 + 1))
    # IoU thresholds that leave out 0.5: still at IoU 0.5
    assert ev.evaluate_pair(gt, pred, "segmentation", iou_thresholds=(0.7,))["ap50"] == pytest.approx(0.2)


def test_ap50_pooled_from_summed_counts_and_in_the_table(tmp_path: Path) -> None:
    pred, gt, out = _dirs(tmp_path)
    g1, p1 = _ap50_case()
    g2 = _squares()  # predicted exactly: tp 3, ap50 1
    io.write_tiff(gt / "a.tif", g1)
    io.write_tiff(pred / "a.tif", p1)
    io.write_tiff(gt / "b.tif", g2)
    io.write_tiff(pred / "b.tif", g2)
    res = ev.evaluate_dirs(pred, gt, "segmentation", output_dir=out, plot=False)
    assert [r["ap50"] for r in res.rows] == pytest.approx([0.2, 1.0])
    assert res.mean["ap50"] == pytest.approx(0.6)  # mean over images
    assert (res.pooled["tp"], res.pooled["fp"], res.pooled["fn"]) == (4, 2, 2)
    assert res.pooled["ap50"] == pytest.approx(4 / 8)  # of the sums, not the mean of the ratios
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["pooled"]["ap50"] == pytest.approx(0.5) and doc["images"][0]["ap50"] == pytest.approx(0.2)
    header, _, *rows = format_table(res).splitlines()
    cols = header.split()
    assert {"f1", "ap50", "pq"} <= set(cols)
    assert rows[0].split()[cols.index("ap50")] == "0.2000"
    assert rows[-1].split()[cols.index("ap50")] == "0.6000"
    assert "ap50=0.6000" in headline(res)
