"""The real-data experiments: DatasetSource, the fixed splits, a tiny smoke run of every experiment.

The smoke runs read ``../shared/data`` (beside the checkout; CI has it) and are skipped with a reason when
it is missing. The full quality run of ``python -m benchmarks.quality`` is marked ``slow`` (deselected by
default: ``pytest -m slow tests/test_experiments.py`` runs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from conftest import train_config
from hydra.utils import instantiate
from PIL import Image

import unet.cli.train as cli_train
from unet.cli.train import train
from unet.data import datasets as D
from unet.data.datasets import DatasetSource, parse_region, regions_overlap

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
DATA_ROOT = ROOT.parent / "shared" / "data"
#: one experiment per dataset folder: its data config reads one DatasetSource (selects the generated option
#: ``data/source/dataset``; nuclei-base unites several)
EXPERIMENTS = sorted(
    p.stem
    for p in (ROOT / "conf" / "experiment").glob("*.yaml")
    if (ROOT / "conf" / "data" / p.name).exists()
    and "source/dataset@source" in yaml.safe_load((ROOT / "conf" / "data" / p.name).read_text())["defaults"]
)

#: the validation scores of a segmentation task (and ``iou_<method>`` etc. under instances="auto")
SEGMENTATION_SCORES = ("iou", "pq", "f1", "precision", "recall")

needs_data = pytest.mark.skipif(
    not DATA_ROOT.is_dir(),
    reason=f"real datasets not found at {DATA_ROOT} (../shared/data beside the checkout)",
)


def test_every_dataset_has_an_experiment() -> None:
    names = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")} - {
        "quickstart",
        "finetune",
        "paper",
        "nuclei-base",
    }
    assert set(EXPERIMENTS) == names
    assert len(EXPERIMENTS) == 8


def test_the_base_model_data_is_the_dataset_configs_themselves(tmp_path) -> None:
    """experiment=nuclei-base reads the HeLa and DSB sources exactly as their own experiments do (their
    splits live in one place), DSB as grayscale; the model it ships is what experiment=finetune starts
    from."""
    from omegaconf import OmegaConf

    from unet.config import register

    register()  # ${unet.base_model:nuclei2d}
    base = train_config(tmp_path, ["experiment=nuclei-base"], DATA_ROOT)
    parts = OmegaConf.to_container(base.data.source, resolve=True)
    assert parts["_target_"] == "unet.data.datasets.ConcatSource"
    hela = OmegaConf.to_container(
        train_config(tmp_path, ["experiment=ctc-fluo-n2dl-hela"], DATA_ROOT).data.source, resolve=True
    )
    dsb = OmegaConf.to_container(
        train_config(tmp_path, ["experiment=dsb2018-subset"], DATA_ROOT).data.source, resolve=True
    )
    assert parts["sources"] == [hela, {**dsb, "grayscale": True}]
    assert base.model.net.in_channels == 1
    finetune = train_config(tmp_path, ["experiment=finetune"], DATA_ROOT)
    assert Path(finetune.model.init_from) == ROOT / "unet" / "models" / "base" / "nuclei2d.ckpt"
    assert Path(finetune.model.init_from).is_file()


# ------------------------------------------------------------------------------------------ real data
@needs_data
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_split_is_disjoint_and_test_never_loaded(tmp_path, monkeypatch, experiment) -> None:
    cfg = train_config(tmp_path, [f"experiment={experiment}"], DATA_ROOT)
    assert cfg.data.source._target_ == "unet.data.datasets.DatasetSource"
    assert Path(cfg.data.source.root) == DATA_ROOT / experiment
    source = instantiate(cfg.data.source)
    splits = {s: list(cfg.data.source[s]) for s in D.SPLITS}
    assert splits["train"] and splits["val"] and splits["test"]
    crops = cfg.data.source.get("crops") or {}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        for stem in set(splits[a]) & set(splits[b]):  # only single volumes split into regions
            shape = source._shape(stem)
            ra, rb = (parse_region(crops[stem][s], cfg.data.source.spatial_dims) for s in (a, b))
            assert not regions_overlap(ra, rb, shape), (experiment, stem, a, b)

    read: list[str] = []
    real_read_image, real_read_labels = D.io.read_image, D.io.read_labels
    monkeypatch.setattr(
        D.io, "read_image", lambda p, **kw: read.append(Path(p).name) or real_read_image(p, **kw)
    )
    monkeypatch.setattr(D.io, "read_labels", lambda p: read.append(Path(p).name) or real_read_labels(p))
    items = source.train_items() + source.val_items()
    test_only = set(splits["test"]) - set(splits["train"]) - set(splits["val"])
    assert not {D.io.file_stem(Path(n), ()) for n in read} & test_only
    assert {it.meta["stem"] for it in items} <= set(splits["train"]) | set(splits["val"])
    test_items = source.test_items()
    assert len(test_items) == len(splits["test"])
    for it in items:  # a region of a shared volume never overlaps that volume's test region
        if it.meta["stem"] in crops and "test" in crops[it.meta["stem"]]:
            shape = source._shape(it.meta["stem"])
            dims = cfg.data.source.spatial_dims
            test_region = parse_region(crops[it.meta["stem"]]["test"], dims)
            assert not regions_overlap(parse_region(it.meta["region"], dims), test_region, shape)
    # annotations are what the task needs, channels what the model expects
    for it in items[:2] + test_items[:1]:
        assert it.image.shape[0] == cfg.model.net.in_channels, it.name
        assert it.image.ndim - 1 == cfg.model.net.spatial_dims
        ann = it.annotation
        if cfg.task._target_.endswith("DetectionTask"):
            assert ann.points is not None and len(ann.points) > 10
        else:
            assert ann.labels is not None and ann.labels.max() > 0
        if cfg.data.source.element_size is not None:
            assert it.element_size == tuple(cfg.data.source.element_size)


def _tiny(experiment: str, dims: int) -> list[str]:
    tile = "[6,20,20]" if dims == 3 else "[24,24]"
    over = [
        f"experiment={experiment}",
        "debug=default",
        "model.net.base_features=2",
        "model.net.depth=1",
        "model.log_images=false",
        "data.tiles_per_epoch=1",
        f"data.tile_shape={tile}",
    ]
    if dims == 3:
        over.append("model.net.last_up_features=2")
    return over


@needs_data
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_smoke_run(tmp_path, monkeypatch, experiment) -> None:
    """One tile through training and one validation image, on the real data, with a tiny network: one
    optimiser step, a finite loss, every validation score of the task logged, the monitored one returned
    (in [0, 1]), the instance method chosen where the task leaves it to validation, and no files (debug)."""
    cfg = train_config(tmp_path, [f"experiment={experiment}"], DATA_ROOT)
    dims = cfg.model.net.spatial_dims
    # fewer images (the split lists themselves are checked above) keep target computation fast
    over = _tiny(experiment, dims)
    for split in ("train", "val"):
        stems = list(cfg.data.source[split])[:1]
        over.append(f"data.source.{split}=[" + ",".join(f"'{s}'" for s in stems) + "]")
    cfg = train_config(tmp_path, over, DATA_ROOT)
    built, real_build = [], cli_train.build

    def build(c, *args):  # the objects train() makes, to look at after the run
        built.append(real_build(c, *args))
        return built[-1]

    monkeypatch.setattr(cli_train, "build", build)
    value = train(cfg)
    task, model, _datamodule, trainer = built[0]
    assert trainer.state.finished and trainer.global_step == 1
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert np.isfinite(logged["train/loss"]) and logged["train/loss"] > 0
    assert np.isfinite(logged["val/loss"]) and logged["val/loss"] > 0
    scores = ("f1", "precision", "recall", "count_error") if task.name == "detection" else SEGMENTATION_SCORES
    assert {f"val/{k}" for k in scores} <= set(logged)
    assert value == logged[task.monitor] and 0.0 <= value <= 1.0, (task.monitor, value)
    if getattr(task, "instances", None) == "auto":
        assert model.task.selected in task.METHODS
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("events.out.*"))


@needs_data
def test_dsb_rgba_loads_as_three_channels_and_grayscale_as_one() -> None:
    root = DATA_ROOT / "dsb2018-subset"
    stem = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"  # fluo: R=G=B, alpha 255
    rgb = DatasetSource(root, train=[stem]).train_items()[0]
    assert rgb.image.shape[0] == 3
    assert np.array_equal(rgb.image[0], rgb.image[1])
    gray = DatasetSource(root, train=[stem], grayscale=True).train_items()[0]
    assert gray.image.shape[0] == 1
    np.testing.assert_allclose(gray.image[0], rgb.image[0])


# ------------------------------------------------------------------------------------------ synthetic
def _folder(tmp_path: Path, n: int = 3, ann: str = "labels") -> Path:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / ann).mkdir()
    for i in range(n):
        img = (np.arange(32 * 40).reshape(32, 40) % 251).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        lab = np.zeros((32, 40), np.uint8)
        lab[2:10, 2:10] = 255
        lab[10:20, 10:20] = 255  # touches the first square at a corner only
        lab[25, 30] = 255
        Image.fromarray(lab).save(root / ann / f"im{i}.png")
    return root


def test_missing_root_says_to_set_data_root(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"nowhere.*paths\.data_root"):
        DatasetSource(tmp_path / "nowhere", train=["a"])


def test_split_errors_name_the_problem(tmp_path) -> None:
    root = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"both data\.source\.train and data\.source\.test"):
        DatasetSource(root, train=["im0", "im1"], test=["im1"])
    with pytest.raises(ValueError, match=r"'im9' has no image in .*images"):
        DatasetSource(root, train=["im9"])
    with pytest.raises(ValueError, match="overlap"):
        DatasetSource(root, train=["im0"], test=["im0"], crops={"im0": {"train": "[:20]", "test": "[10:]"}})
    with pytest.raises(ValueError, match="no region for split 'test'"):
        DatasetSource(root, train=["im0"], test=["im0"], crops={"im0": {"train": "[:20]"}})
    with pytest.raises(ValueError, match="not a slice"):
        DatasetSource(root, train=["im0"], crops={"im0": {"train": "[3]"}})
    with pytest.raises(ValueError, match="kind"):
        DatasetSource(root, train=["im0"], kind="nonsense")


def test_kinds_and_crops(tmp_path) -> None:
    root = _folder(tmp_path)
    corner = DatasetSource(root, train=["im0"], kind="interior_instances").train_items()[0]
    assert corner.annotation.labels.max() == 3  # 4-connected: the corner-touching squares stay apart
    full = DatasetSource(root, train=["im0"], kind="binary_instances").train_items()[0]
    assert full.annotation.labels.max() == 2  # 8-connected: they merge
    src = DatasetSource(
        root,
        train=["im0", "im1"],
        val=["im2"],
        test=["im0"],
        kind="masks",
        crops={"im0": {"train": "[:, :20]", "test": "[:, 20:]"}},
        element_size=[0.5, 0.5],
    )
    train = src.train_items()
    assert [it.name for it in train] == ["im0_train", "im1"]
    assert train[0].image.shape == (1, 32, 20) and train[0].annotation.mask.shape == (32, 20)
    assert train[0].element_size == (0.5, 0.5) and set(np.unique(train[1].annotation.mask)) == {0, 1}
    test = src.test_items()
    assert test[0].image.shape == (1, 32, 20) and test[0].meta["region"] == "[:, 20:]"


def test_dots_become_points_and_crops_shift_them(tmp_path) -> None:
    root = tmp_path / "dots"
    (root / "images").mkdir(parents=True)
    (root / "dots").mkdir()
    tifffile.imwrite(root / "images" / "a.tif", np.zeros((3, 16, 16, 3), np.uint8), photometric="minisblack")
    dots = np.zeros((3, 16, 16), np.uint8)
    dots[1, 2, 3] = dots[2, 12, 13] = dots[2, 12, 14] = 1
    tifffile.imwrite(root / "dots" / "a.tif", dots, photometric="minisblack")
    src = DatasetSource(
        root,
        annotations="dots",
        kind="dots",
        spatial_dims=3,
        channel_axis=-1,
        train=["a"],
        val=["a"],
        crops={"a": {"train": "[:, :8]", "val": "[:, 8:]"}},
    )
    tr, va = src.train_items()[0], src.val_items()[0]
    assert tr.image.shape == (3, 3, 8, 16)
    np.testing.assert_array_equal(tr.annotation.points, [[1, 2, 3]])
    np.testing.assert_array_equal(va.annotation.points, [[2, 4, 13], [2, 4, 14]])
    assert list(va.annotation.classes) == [1, 1]


# ------------------------------------------------------------------------------------------ quality.py
def _quality():
    from benchmarks import quality

    return quality


def test_quality_helpers(tmp_path) -> None:
    from benchmarks.common import max_time

    q = _quality()
    assert max_time(20) == "00:00:20:00" and max_time(90.5) == "00:01:30:30"
    minutes = q.parse_minutes("9, isbi2012-em=12.5")
    assert q.budget(minutes, "isbi2012-em") == 12.5 and q.budget(minutes, "dsb2018-subset") == 9
    assert q.budget(q.parse_minutes("isbi2012-em=3"), "dsb2018-subset") == 20  # unnamed: the default
    with pytest.raises(Exception, match="EXPERIMENT=MINUTES"):
        q.parse_minutes("isbi2012-em=soon")
    assert q.target_cell("isbi2012-em", "pixel_error", 0.05) == "<= 0.07: met"
    assert q.target_cell("ctc-fluo-n2dl-hela", "mean_iou", 0.79) == ">= 0.8: missed"
    assert q.target_cell("dsb2018-subset", "mean_iou", 0.9) == ""
    assert set(q.EXPERIMENTS) == set(EXPERIMENTS)
    result = {
        "target": "ctc-fluo-n2dh-gowt1",
        "pretrain": {"experiment": "dsb2018-subset (grayscale)", "checkpoint": "x", "minutes": 1.0},
        "budget_minutes": 1.0,
        "overrides": [],
        "machine": "test",
        "rows": [
            {"images": n, "arm": arm, "mean_iou": 0.5 + 0.1 * (arm == "pretrained"), "f1": 0.4, "n_test": 2}
            for n in (1, 2, 4)
            for arm in ("scratch", "pretrained")
        ],
    }
    q.write_transfer_reports(result, tmp_path)
    assert "| 4 | 0.5000 | 0.6000 |" in (tmp_path / "transfer.md").read_text()
    assert (tmp_path / "transfer.png").stat().st_size > 1000
    assert json.loads((tmp_path / "transfer.json").read_text())["rows"][0]["images"] == 1


@needs_data
def test_quality_script_end_to_end_tiny(tmp_path) -> None:
    """quality.py trains, loads the best checkpoint, scores the test split and writes the reports."""
    q = _quality()
    tiny = [
        "model.net.base_features=2",
        "model.net.depth=1",
        "data.tiles_per_epoch=1",
        "trainer.max_epochs=1",
    ]
    tiny += [
        "model.log_images=false",
        "data.tile_shape=[24,24]",
        "data.source.train=['00']",
        "data.source.val=['20']",
    ]
    args = ["--experiments", "isbi2012-em", "--minutes", "1", "--out", str(tmp_path / "res")]
    args += ["--runs", str(tmp_path / "runs"), "--data-root", str(DATA_ROOT)]
    out = q.main([*args, *(a for s in tiny for a in ("--set", s))])
    r = out["isbi2012-em"]
    assert r["n_test"] == 5 and r["task"] == "segmentation"
    assert 0 <= r["mean"]["pixel_error"] <= 1 and 0 <= r["mean"]["rand_error"] <= 1
    md = (tmp_path / "res" / "quality.md").read_text()
    assert "0.0611" in md and "Ronneberger 2015" in md and "<= 0.07: m" in md
    assert json.loads((tmp_path / "res" / "quality.json").read_text())["isbi2012-em"]["n_test"] == 5
    # --report --readme rewrites only what is between the markers, from the JSON, training nothing
    readme = tmp_path / "README.md"
    begin, end = q.README_MARKERS["quality"]
    t_begin, t_end = q.README_MARKERS["transfer"]
    readme.write_text(f"intro\n{begin}\nold table\n{end}\nmiddle\n{t_begin}\n{t_end}\noutro\n")
    q.main(
        ["--report", "--out", str(tmp_path / "res"), "--readme", str(readme), "--data-root", str(DATA_ROOT)]
    )
    text = readme.read_text()
    assert "old table" not in text and "| isbi2012-em | segmentation | pixel error" in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith(f"{t_end}\noutro\n")
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match=r"README\.md: marker"):
        q.update_readme(readme, tmp_path / "res")


@needs_data
@pytest.mark.slow
def test_quality_full_run_gowt1(tmp_path) -> None:
    """The real quality run for one experiment (about 20 min on 2 CPU cores): pytest -m slow."""
    q = _quality()
    out = q.main(
        [
            "--experiments",
            "ctc-fluo-n2dh-gowt1",
            "--minutes",
            "20",
            "--out",
            str(tmp_path / "res"),
            "--runs",
            str(tmp_path / "runs"),
            "--data-root",
            str(DATA_ROOT),
        ]
    )
    r = out["ctc-fluo-n2dh-gowt1"]
    assert r["n_test"] == 2
    assert r["mean"]["mean_iou"] > 0.5, r["mean"]
