"""Tests for unet.predict, predict.py and evaluate.py (tiny untrained models, files in tmp_path)."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import roifile
import torch
import zarr
from conftest import save_network

from unet import io, postprocess
from unet.data.preprocess import normalize
from unet.evaluation import evaluate_dirs
from unet.models.unet import UNet
from unet.predict import list_inputs, predict_files
from unet.predict.image import ModelCard, load_model, predict_image
from unet.predict.jobs import NormalizedView, channel_min_max
from unet.report import format_summary
from unet.tasks import DetectionTask, SegmentationTask
from unet.tiling import predict_tiled

ROOT = Path(__file__).resolve().parents[1]
FAST = {"progress": False}


def _checkpoint(
    path: Path,
    nd: int,
    task: str = "segmentation",
    element_size=None,
    in_channels: int = 1,
    empty: bool = False,
) -> Path:
    torch.manual_seed(0)
    net = UNet(in_channels=in_channels, spatial_dims=nd, depth=1, base_features=2)
    if empty:  # predicts background everywhere
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.copy_(torch.tensor([5.0, -5.0]))
    t = SegmentationTask() if task == "segmentation" else DetectionTask()
    card = ModelCard(net.config, t.config(), element_size, "minmax")
    save_network(path, net, card)
    return path


def _image(shape: tuple[int, ...], seed: int = 0, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, size=shape).astype(dtype)


def _inputs(tmp_path: Path, nd: int) -> tuple[Path, dict[str, np.ndarray], dict[str, tuple]]:
    """Two images: a.tif with element size metadata and b.npy without."""
    src = tmp_path / "in"
    src.mkdir()
    shape_a, shape_b = ((40, 48), (36, 30)) if nd == 2 else ((8, 24, 28), (6, 20, 18))
    es_a = (0.5, 0.5) if nd == 2 else (2.0, 0.5, 0.5)
    a, b = _image(shape_a, 1), _image(shape_b, 2)
    io.write_tiff(src / "a.tif", a, element_size=es_a)
    np.save(src / "b.npy", b)
    return src, {"a": a[None], "b": b[None]}, {"a": es_a, "b": (0.25,) * nd}


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.iterdir() if p.is_file()}


# ----------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_outputs_exist_and_are_consistent(tmp_path: Path, nd: int, task: str) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", nd, task)
    src, images, sizes = _inputs(tmp_path, nd)
    out = tmp_path / "out"
    summary = predict_files(ckpt, src, out, element_size=0.25, **FAST)
    assert [r["image"] for r in summary] == ["a", "b"]
    names = {"_probabilities.tif", "_labels.tif", "_rois.zip", "_objects.csv"}
    if task == "detection":
        names.add("_points.csv")
    expected = {f"{s}{n}" for s in "ab" for n in names} | {"summary.csv"}
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left
    table = io.read_csv(out / "summary.csv")
    net, _, card = load_model(str(ckpt))
    for row, saved in zip(summary, table):
        stem = row["image"]
        image, es = images[stem], sizes[stem]
        shape = image.shape[1:]
        probs = io.read_image(out / f"{stem}_probabilities.tif", spatial_dims=nd)
        assert probs.array.shape == (2, *shape) and probs.array.dtype == np.float32
        assert probs.element_size == pytest.approx(es)
        np.testing.assert_allclose(probs.array.sum(0), 1, atol=1e-5)
        expect = predict_image(net, image, element_size=es, card=card)
        np.testing.assert_allclose(probs.array, expect, atol=1e-6)

        labels = io.read_labels(out / f"{stem}_labels.tif")
        np.testing.assert_array_equal(labels, postprocess.instance_labels(probs.array)[0])
        n = int(labels.max())
        assert n > 0 and len(np.unique(labels)) == n + 1
        objects = io.read_csv(out / f"{stem}_objects.csv")
        assert row["count"] == int(saved["count"]) == len(objects) == n
        assert [int(o["label"]) for o in objects] == list(range(1, n + 1))
        size_key = "area_um2" if nd == 2 else "volume_um3"
        assert float(objects[0][size_key]) == pytest.approx(
            float(objects[0][size_key[:-4] + "_px"]) * np.prod(es)
        )
        assert saved["probabilities"] == f"{stem}_probabilities.tif"

        rois = roifile.roiread(out / f"{stem}_rois.zip")
        ann = io.read_rois(out / f"{stem}_rois.zip", shape)
        if task == "segmentation":
            np.testing.assert_array_equal(ann.labels, labels)
        else:
            assert len(rois) == 1 and rois[0].roitype == roifile.ROI_TYPE.POINT
            points, classes = io.read_points_csv(out / f"{stem}_points.csv", nd, shape=shape)
            assert len(points) == n and set(classes) == {1}
            expect_pts, _ = postprocess.detection_points(probs.array)
            np.testing.assert_allclose(points, expect_pts, atol=1e-9)
            got = ann.points[np.lexsort(ann.points.T[::-1])]
            want = points.copy()
            if nd == 3:
                want[:, 0] = np.floor(want[:, 0] + 0.5)  # ImageJ points lie on a slice
            want = want[np.lexsort(want.T[::-1])]
            np.testing.assert_allclose(got, want, atol=1e-4)
            pts_table = io.read_csv(out / f"{stem}_points.csv")
            assert float(pts_table[0]["x_um"]) == pytest.approx(float(pts_table[0]["x"]) * es[-1])


def test_rerun_skips_and_overwrite_recomputes(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    src, _, _ = _inputs(tmp_path, 2)
    out = tmp_path / "out"
    first = predict_files(ckpt, src, out, **FAST)
    before = _stats(out)
    (out / "summary.csv").unlink()
    second = predict_files(ckpt, src, out, **FAST)
    after = _stats(out)
    assert second == first
    assert {k: v for k, v in after.items() if k != "summary.csv"} == {
        k: v for k, v in before.items() if k != "summary.csv"
    }
    # an image with a missing output is recomputed, the other one is not
    (out / "b_rois.zip").unlink()
    predict_files(ckpt, src, out, **FAST)
    again = _stats(out)
    assert all(again[k] == before[k] for k in before if k.startswith("a_"))
    assert again["b_labels.tif"][1] != before["b_labels.tif"][1]
    assert (out / "b_rois.zip").exists()
    # overwrite recomputes everything
    third = predict_files(ckpt, src, out, overwrite=True, **FAST)
    final = _stats(out)
    assert third == first
    assert all(final[k][1] != again[k][1] for k in again)


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_no_objects(tmp_path: Path, task: str) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2, task, empty=True)
    src, _, _ = _inputs(tmp_path, 2)
    out = tmp_path / "out"
    summary = predict_files(ckpt, src / "a.tif", out, **FAST)
    assert summary[0]["count"] == 0
    assert io.read_labels(out / "a_labels.tif").max() == 0
    header = (out / "a_objects.csv").read_text().splitlines()
    assert header[0].startswith("label,class,centroid_y_px") and len(header) == 1
    assert roifile.roiread(out / "a_rois.zip") == []
    before = _stats(out)
    assert predict_files(ckpt, src / "a.tif", out, **FAST) == summary  # skipped, summary from the CSV
    assert {k: v for k, v in _stats(out).items() if k != "summary.csv"} == {
        k: v for k, v in before.items() if k != "summary.csv"
    }


def test_input_errors_name_the_file_before_predicting(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    src, _, _ = _inputs(tmp_path, 2)
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"missing\.tif"):
        predict_files(ckpt, [src / "a.tif", tmp_path / "missing.tif"], out, **FAST)
    (tmp_path / "bad.tif").write_bytes(b"this is not a TIFF file")
    # fail_fast: the first bad input stops everything before any prediction (the default goes on past
    # it: tests/test_bad_inputs.py)
    with pytest.raises(io.DataFileError, match=r"bad\.tif"):
        predict_files(ckpt, [src / "a.tif", tmp_path / "bad.tif"], out, fail_fast=True, **FAST)
    io.write_tiff(tmp_path / "rgb.tif", _image((2, 30, 30)), axes="CYX")
    with pytest.raises(ValueError, match=r"rgb.tif: the model expects 1 channel\(s\), the image has 2"):
        predict_files(ckpt, [src / "a.tif", tmp_path / "rgb.tif"], out, fail_fast=True, **FAST)
    with pytest.raises(FileNotFoundError, match=r"nothing\*.tif: no image matches"):
        predict_files(ckpt, str(tmp_path / "nothing*.tif"), out, **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(io.DataFileError, match="empty: directory has no images"):
        predict_files(ckpt, tmp_path / "empty", out, **FAST)
    np.save(src / "a.npy", _image((10, 10)))
    with pytest.raises(io.DataFileError, match="same name 'a'"):
        predict_files(ckpt, src, out, **FAST)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        predict_files(tmp_path / "nope.ckpt", src / "a.tif", out, **FAST)
    assert not out.exists()  # nothing was predicted


def test_list_inputs_skips_own_outputs(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    src, _, _ = _inputs(tmp_path, 2)
    predict_files(ckpt, src, src, **FAST)  # outputs next to the inputs
    assert [p.name for p in list_inputs(src, src)] == ["a.tif", "b.npy"]
    assert [p.name for p in list_inputs(str(src / "*"), src)] == ["a.tif", "b.npy"]


# ----------------------------------------------------------------------------------------------------
# out of core
# ----------------------------------------------------------------------------------------------------


def _warm_up_zarr(tmp_path: Path) -> None:
    """Create and delete a zarr array, so that zarr's one-time set-up is not counted in the peak."""
    import shutil

    with io.atomic_zarr(tmp_path / "warm.zarr", (4,), chunks=(2,)) as z:
        z[...] = 1
    shutil.rmtree(tmp_path / "warm.zarr")


def _traced_peak(fn) -> tuple[object, int]:
    """(fn(), peak bytes of numpy/Python allocations above the start while it ran)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_out_of_core_memory_is_bounded_by_the_tiles(tmp_path: Path, caplog, monkeypatch) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    image = _image((768, 768), dtype=np.uint16) * 20
    io.write_tiff(tmp_path / "big.tif", image, element_size=(0.5, 0.5))  # uncompressed: read as a memmap
    assert isinstance(io.open_image(tmp_path / "big.tif").array, np.memmap)
    full = 2 * image.size * 4  # float32 probabilities of the whole image: 4.5 MiB
    tile = (164, 164)  # 36 tiles
    tile_bytes = int(np.prod(tile)) * 4
    out = tmp_path / "out"
    _warm_up_zarr(tmp_path)
    # the prediction stage only: the block-wise objects stage (unet.ooc) has its own memory bound
    # (tests/test_ooc.py), so it is replaced by a no-op here
    import unet.ooc

    monkeypatch.setattr(unet.ooc, "label_out_of_core", lambda *a, **k: (0, np.zeros(1, np.int64)))
    monkeypatch.setattr(unet.ooc, "measure_out_of_core", lambda *a, **k: [])
    monkeypatch.setattr(unet.ooc, "write_rois_out_of_core", lambda *a, **k: 0)
    with caplog.at_level(logging.INFO, logger="unet.predict"):
        summary, peak = _traced_peak(
            lambda: predict_files(
                ckpt,
                tmp_path / "big.tif",
                out,
                tile_shape=tile,
                out_of_core_mib=2,
                precision="32-true",
                **FAST,
            )
        )
    # measured ~0.18 of the image's probabilities and ~8 input tiles (about 6 tiles of reading,
    # normalising, batching and zarr chunk encoding plus ~0.2 MiB of fixed overhead): never the image
    assert peak < full / 4, (peak, full)
    assert peak < 10 * tile_bytes, (peak, tile_bytes)
    assert "out of core" in caplog.text
    names = ["big_objects.csv", "big_probabilities.zarr", "summary.csv"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert summary[0]["image"] == "big" and summary[0]["probabilities"] == "big_probabilities.zarr"
    z = io.open_zarr(out / "big_probabilities.zarr")
    assert z.shape == (2, *image.shape) and z.dtype == np.float32
    assert dict(z.attrs)["element_size"] == [0.5, 0.5] and dict(z.attrs)["axes"] == "CYX"
    net, _, _ = load_model(str(ckpt))
    expect = predict_tiled(net, normalize(image[None]))  # the whole image in memory, one tile
    np.testing.assert_allclose(z[...], expect, atol=1e-5)


@pytest.mark.parametrize("storage", ["memmap-tiff-3d", "compressed-tiff-3d", "zarr-2d"])
def test_out_of_core_volumes_and_lazy_inputs(tmp_path: Path, storage: str) -> None:
    nd = 2 if storage.endswith("2d") else 3
    ckpt = _checkpoint(tmp_path / "m.ckpt", nd)
    image = _image((50, 44) if nd == 2 else (6, 32, 36), 3, np.uint16)
    es = None if nd == 2 else (2.0, 0.5, 0.5)
    if storage == "zarr-2d":
        path = tmp_path / "img.zarr"
        with io.atomic_zarr(path, image.shape, chunks=(16, 16), dtype=image.dtype) as z:
            z[...] = image
    else:
        path = tmp_path / "img.tif"
        io.write_tiff(path, image, element_size=es, compression="zlib" if "compressed" in storage else None)
    view = io.open_image(path, spatial_dims=nd).array
    assert isinstance(view, np.memmap if "memmap" in storage else io.ChannelFirstView)
    tile = (44, 44) if nd == 2 else (22, 32, 36)  # 4 tiles
    out = tmp_path / "out"
    summary = predict_files(ckpt, path, out, out_of_core_mib=0, tile_shape=tile, **FAST)
    assert summary[0]["count"] is not None  # objects are made block by block too (unet.ooc)
    z = io.open_zarr(out / "img_probabilities.zarr")
    assert dict(z.attrs)["element_size"] == (None if es is None else list(es))
    net, _, card = load_model(str(ckpt))
    expect = predict_image(net, image[None], element_size=es, card=card)
    np.testing.assert_allclose(z[...], expect, atol=1e-5)


def test_out_of_core_needs_the_model_element_size(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2, element_size=(1.0, 1.0))
    image = _image((40, 40))
    io.write_tiff(tmp_path / "fine.tif", image, element_size=(0.5, 0.5))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"fine.tif: out-of-core .* cannot rescale .*\(0.5, 0.5\)"):
        predict_files(ckpt, tmp_path / "fine.tif", out, out_of_core_mib=0, **FAST)
    assert not out.exists()
    # in memory the image is rescaled to the model grid and the results come back on the image grid
    predict_files(ckpt, tmp_path / "fine.tif", out, **FAST)
    assert io.read_labels(out / "fine_labels.tif").shape == image.shape


def test_streaming_statistics_and_normalized_view(rng) -> None:
    image = rng.normal(size=(2, 5, 7, 9)).astype(np.float32) * 100
    for block_bytes in (1, 100, 2000, 10**9):
        lo, hi = channel_min_max(image, block_bytes)
        np.testing.assert_array_equal(lo, image.min(axis=(1, 2, 3)))
        np.testing.assert_array_equal(hi, image.max(axis=(1, 2, 3)))
    image[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        channel_min_max(image, 1000, name="x.tif")
    ints = rng.integers(0, 60000, size=(2, 6, 10, 12)).astype(np.uint16)
    ints[1] = 7  # constant channel -> 0
    view = NormalizedView(ints, *channel_min_max(ints))
    np.testing.assert_array_equal(view[:, 1:4, 2:9, :], normalize(ints)[:, 1:4, 2:9, :])
    assert view.dtype == np.float32 and view.shape == ints.shape


# ----------------------------------------------------------------------------------------------------
# io additions
# ----------------------------------------------------------------------------------------------------


def test_point_rois_roundtrip(tmp_path: Path) -> None:
    pts = np.array([[3.25, 4.75], [10.0, 20.0], [0.0, 0.0]])
    assert io.write_point_rois(pts, tmp_path / "p.zip", classes=[2, 1, 2]) == 2
    ann = io.read_rois(tmp_path / "p.zip", (30, 30))
    order = np.argsort(ann.points[:, 0])
    np.testing.assert_allclose(ann.points[order], pts[[2, 0, 1]], atol=1e-5)
    np.testing.assert_array_equal(ann.classes[order], [2, 2, 1])
    pts3 = np.array([[1.2, 3.0, 4.0], [2.0, 10.5, 20.0]])
    io.write_point_rois(pts3, tmp_path / "p3.zip")
    ann = io.read_rois(tmp_path / "p3.zip", (4, 30, 30))
    np.testing.assert_allclose(ann.points, [[1.0, 3.0, 4.0], [2.0, 10.5, 20.0]], atol=1e-5)
    assert io.write_point_rois(np.zeros((0, 2)), tmp_path / "e.zip") == 0
    assert io.read_rois(tmp_path / "e.zip", (5, 5)).points.shape == (0, 2)


def test_open_image_is_lazy_and_equals_read_image(tmp_path: Path) -> None:
    vol = _image((2, 4, 20, 24))
    io.write_tiff(tmp_path / "u.tif", vol, element_size=(2.0, 0.5, 0.5))
    io.write_tiff(tmp_path / "c.tif", vol, element_size=(2.0, 0.5, 0.5), compression="zlib")
    np.save(tmp_path / "n.npy", vol)
    with io.atomic_zarr(tmp_path / "z.zarr", vol.shape, chunks=(1, 2, 8, 8), dtype=vol.dtype) as z:
        z[...] = vol
    kinds = {
        "u.tif": np.memmap,
        "c.tif": io.ChannelFirstView,
        "n.npy": np.memmap,
        "z.zarr": io.ChannelFirstView,
    }
    for name, kind in kinds.items():
        data = io.open_image(tmp_path / name)
        assert isinstance(data.array, kind), name
        np.testing.assert_array_equal(np.asarray(data.array), vol)
        np.testing.assert_array_equal(data.array[:, 1:3, 5:9, 2:20], vol[:, 1:3, 5:9, 2:20])
    assert io.open_image(tmp_path / "c.tif").element_size == io.read_image(tmp_path / "c.tif").element_size
    # replacing an existing zarr directory; a failed write leaves the old one and no temporary files
    with io.atomic_zarr(tmp_path / "z.zarr", (3, 3), chunks=(3, 3)) as z:
        z[...] = 1
    with pytest.raises(RuntimeError), io.atomic_zarr(tmp_path / "z.zarr", (3, 3), chunks=(3, 3)) as z:
        raise RuntimeError("interrupted")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "z.zarr"), mode="r")[...], np.ones((3, 3)))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------------
# predict -> evaluate, configuration, command lines
# ----------------------------------------------------------------------------------------------------


def test_predict_then_evaluate(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "seg.ckpt", 2)
    src, _, _ = _inputs(tmp_path, 2)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    summary = predict_files(ckpt, src, pred, **FAST)
    gt.mkdir()
    labels_a = io.read_labels(pred / "a_labels.tif")
    io.write_tiff(gt / "a.tif", np.where(labels_a == 1, 0, labels_a).astype(np.uint16))  # one object missed
    io.write_tiff(gt / "b.tif", io.read_labels(pred / "b_labels.tif"))
    result = evaluate_dirs(pred, gt, "segmentation", output_dir=None)
    rows = {r["image"]: r for r in result.rows}
    count = {r["image"]: r["count"] for r in summary}
    assert rows["a"]["n_pred"] == count["a"] and rows["a"]["n_gt"] == count["a"] - 1
    assert rows["a"]["fp"] == 1 and rows["a"]["fn"] == 0
    assert rows["b"]["n_pred"] == count["b"] and rows["b"]["f1"] == 1.0

    ckpt = _checkpoint(tmp_path / "det.ckpt", 2, "detection")
    pred_det, gt_det = tmp_path / "pred_det", tmp_path / "gt_det"
    predict_files(ckpt, src, pred_det, **FAST)
    gt_det.mkdir()
    for stem in "ab":
        (gt_det / f"{stem}.csv").write_bytes((pred_det / f"{stem}_points.csv").read_bytes())
    # <stem>_objects.csv and summary.csv beside the predictions are not taken for predictions
    result = evaluate_dirs(pred_det, gt_det, "detection", output_dir=None)
    assert [r["image"] for r in result.rows] == ["a", "b"]
    assert all(r["f1"] == 1.0 and r["n_pred"] > 0 for r in result.rows)


def test_command_configs_are_the_library_arguments_and_summary_table() -> None:
    """predict.py's and evaluate.py's keys are the arguments of predict_files / evaluate_dirs, defaults
    included; a key that is none is refused."""
    from hydra import compose, initialize
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    import unet.cli.evaluate
    import unet.cli.predict  # noqa: F401 (the imports store the configs)

    params = inspect.signature(predict_files).parameters
    with initialize(version_base="1.3", config_path=None):
        cfg = compose("predict", overrides=["ckpt_path=m.ckpt", "input=in", "tta=d4"])
        assert list(cfg) == [*(k for k in params if k not in ("shard", "barrier")), "devices", "num_nodes"]
        assert cfg.tta == "d4" and cfg.out_of_core_mib == params["out_of_core_mib"].default
        with pytest.raises(ConfigCompositionException, match="tile"):
            compose("predict", overrides=["tile=3"])
        cfg = compose("evaluate", overrides=["predictions=p", "ground_truth=g"])
        assert list(cfg) == list(inspect.signature(evaluate_dirs).parameters)
        assert cfg.d_match == DetectionTask().d_match
        assert OmegaConf.to_container(cfg, resolve=True)["output_dir"] == "p/evaluation"
    text = format_summary(
        [
            {"image": "a", "count": 3, "count_class1": 3, "mean_area_px": 12.5, "probabilities": "a.tif"},
            {"image": "big", "count": None, "probabilities": "big.zarr"},
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["image", "count", "mean_area_px"]
    assert lines[2].split() == ["a", "3", "12.5"] and lines[3].split() == ["big", "-", "-"]


def test_evaluate_stores_no_train_option_and_loads_no_torch() -> None:
    """Where train's options are stored, ``task`` is a config group and evaluate.py's ``task=detection``
    would select it; evaluate's command stores its own config only (and starts without torch)."""
    code = (
        "import sys, unet.cli.evaluate; from hydra.core.config_store import ConfigStore; "
        "print(sorted(ConfigStore.instance().repo), 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-1] == "False" and "'task'" not in r.stdout, r.stdout


def _cli(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_lines(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    src, _, _ = _inputs(tmp_path, 2)
    pred = tmp_path / "pred"
    r = _cli(
        "predict.py",
        [f"ckpt_path={ckpt}", f"input={src}", f"output_dir={pred}", "progress=false", "hydra.run.dir=hp"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if not line.startswith("[")]  # Hydra logs to stdout
    assert lines[0].split()[:2] == ["image", "count"] and lines[2].split()[0] == "a"
    assert (pred / "summary.csv").exists() and (pred / "b_rois.zip").exists()
    assert (tmp_path / "hp" / ".hydra" / "config.yaml").exists()
    gt = tmp_path / "gt"
    gt.mkdir()
    for stem in "ab":
        io.write_tiff(gt / f"{stem}.tif", io.read_labels(pred / f"{stem}_labels.tif"))
    r = _cli(
        "evaluate.py",
        [f"predictions={pred}", f"ground_truth={gt}", "task=segmentation", "plot=false", "hydra.run.dir=he"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if not line.startswith("[")]
    assert lines[0].split()[:3] == ["image", "n_gt", "n_pred"]
    mean = next(line for line in lines if line.startswith("mean")).split()
    assert mean[3:] == ["1.0000"] * 7 + ["0"]  # mean_iou, precision, recall, f1, ap50, pq, ap, count_error
    assert (pred / "evaluation" / "metrics.csv").exists()


def test_two_processes_give_the_outputs_of_one(tmp_path: Path) -> None:
    """predict.py devices=2 (Lightning Fabric, DDP over gloo on the CPU) shards the inputs: every output is
    that of the single-process run and summary.csv is merged in input order."""
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    src = tmp_path / "in"
    for i in range(3):
        io.write_tiff(src / f"img{i}.tif", _image((40 + 8 * i, 36)), element_size=(1.0, 1.0))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        r = subprocess.run(
            [
                sys.executable,
                str(ROOT / "predict.py"),
                f"ckpt_path={ckpt}",
                f"input={src}",
                f"output_dir={out}",
                f"devices={n}",
                "progress=false",
                f"hydra.run.dir={tmp_path}/run{n}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        outs[n] = out
    names = sorted(p.name for p in outs[1].iterdir())
    assert names == sorted(p.name for p in outs[2].iterdir())  # no part files or temporaries left
    for name in names:
        if name.endswith("_probabilities.tif"):
            a, b = (io.read_image(outs[n] / name).array for n in (1, 2))
            assert np.array_equal(a, b)
        elif name.endswith((".csv", "_labels.tif")):
            assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name
    assert [ln.split(",")[0] for ln in (outs[2] / "summary.csv").read_text().splitlines()[1:]] == [
        "img0",
        "img1",
        "img2",
    ]


def test_precision_is_chosen_by_the_training_rule_logged_and_forced(tmp_path: Path, caplog) -> None:
    """precision=auto follows training's rule (bf16 only where the machine has it natively) and says so;
    precision=32-true gives predict_tiled's float32 probabilities; bf16 can be forced (emulated where the
    CPU lacks it) and differs from float32 only by bf16 rounding; an unknown value is refused up front."""
    import tifffile

    from unet.hardware import auto_precision

    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    image = _image((40, 44), 3)
    io.write_tiff(tmp_path / "img.tif", image)
    net, _, _ = load_model(str(ckpt))
    with caplog.at_level(logging.INFO, logger="unet.predict"):
        predict_files(ckpt, tmp_path / "img.tif", tmp_path / "auto", **FAST)
    assert f"precision {auto_precision('cpu')} (automatic" in caplog.text
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unet.predict"):
            predict_files(ckpt, tmp_path / "img.tif", tmp_path / precision, precision=precision, **FAST)
        assert f"precision {precision} (as configured)" in caplog.text
        results[precision] = tifffile.imread(tmp_path / precision / "img_probabilities.tif")
    np.testing.assert_allclose(results["32-true"], predict_tiled(net, normalize(image[None])), atol=1e-5)
    diff = np.abs(results["32-true"] - results["bf16-mixed"]).max()
    assert 0 < diff < 0.05, diff
    with pytest.raises(ValueError, match="precision='fp8'"):
        predict_files(ckpt, tmp_path / "img.tif", tmp_path / "bad", precision="fp8", **FAST)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("native", ["0", "1"])
def test_the_automatic_precision_on_both_kinds_of_cpu(tmp_path: Path, caplog, monkeypatch, native) -> None:
    """With and without native bf16 (UNET_NATIVE_BF16 stands in for the other kind of CPU), training's rule,
    validation's and predict's choice agree, and predict says which it took and why."""
    from unet.hardware import auto_precision, resolve_precision

    monkeypatch.setenv("UNET_NATIVE_BF16", native)
    expect = "bf16-mixed" if native == "1" else "32-true"
    assert auto_precision("cpu") == resolve_precision("auto", "cpu") == expect
    ckpt = _checkpoint(tmp_path / "m.ckpt", 2)
    io.write_tiff(tmp_path / "img.tif", _image((40, 44), 4))
    with caplog.at_level(logging.INFO, logger="unet.predict"):
        predict_files(ckpt, tmp_path / "img.tif", tmp_path / "out", **FAST)
    why = "native bf16 (AVX512-BF16/AMX)" if native == "1" else "no native bf16 on this CPU"
    assert f"precision {expect} (automatic: {why}; precision=... overrides)" in caplog.text


def test_a_network_with_group_norm_is_not_seam_free_and_predict_says_so(tmp_path: Path, caplog) -> None:
    """Group normalisation takes its statistics from the tile, so two tilings of one image differ (the
    papers' network gives the same probabilities for every tiling); predict warns, naming the model."""
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=8, norm="group").eval()
    card = ModelCard(net.config, SegmentationTask().config(), None, "minmax")
    path = tmp_path / "inorm.ckpt"
    save_network(path, net, card)
    image = normalize(_image((120, 120), 5)[None].astype(np.float32))
    whole = predict_tiled(net, image)
    tiled = predict_tiled(net, image, tile_shape=(76, 76))
    assert np.abs(whole - tiled).max() > 1e-3
    plain = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4).eval()
    assert np.abs(predict_tiled(plain, image) - predict_tiled(plain, image, tile_shape=(76, 76))).max() < 1e-5
    io.write_tiff(tmp_path / "img.tif", _image((60, 60), 5))
    with caplog.at_level(logging.WARNING, logger="unet.predict"):
        predict_files(path, tmp_path / "img.tif", tmp_path / "out", **FAST)
    assert "inorm.ckpt: the network has group normalisation" in caplog.text
