"""Config composition, fast training runs (2D/3D, segmentation/detection), exact resume, DDP, bf16, sweeps."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from unet.pipeline import build, train

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")

# small and fast: a narrow net and small synthetic images
FAST = [
    "model.net.base_features=4",
    "model.net.depth=2",
    "data.tiles_per_epoch=2",
    "data.batch_size=1",
    "model.log_images=false",
]
FAST_2D = [
    "data.source.n_train=2",
    "data.source.n_val=1",
    "data.source.shape=[96,96]",
    "data.source.n_cells=12",
    "data.tile_shape=[76,76]",
]
FAST_3D = [
    "data.source.n_train=2",
    "data.source.n_val=1",
    "data.source.shape=[16,48,48]",
    "data.source.n_cells=8",
    "data.source.radius=[4,7]",
    "data.tile_shape=[16,52,52]",
]


def _cfg(tmp_path: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.output_dir={tmp_path}", f"paths.data_root={tmp_path}/data", *overrides],
        )


@pytest.mark.parametrize("model", ["unet2d", "unet3d"])
@pytest.mark.parametrize("task", ["segmentation", "detection"])
@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
@pytest.mark.parametrize("logger", ["tensorboard", "csv"])
def test_every_combination_composes_and_instantiates(tmp_path, model, task, trainer, logger) -> None:
    data = "synthetic2d" if model == "unet2d" else "synthetic3d"
    cfg = _cfg(
        tmp_path, [f"model={model}", f"data={data}", f"task={task}", f"trainer={trainer}", f"logger={logger}"]
    )
    t = instantiate(cfg.task)
    assert t.name == task and cfg.optimized_metric == t.monitor
    net = instantiate(cfg.model.net, element_size=cfg.data.source.get("element_size"))  # as build() does
    assert net.spatial_dims == (2 if model == "unet2d" else 3)
    net.output_shape(cfg.data.tile_shape)  # the data's tile is valid for the model
    dm = instantiate(cfg.data)
    assert dm.tile_shape == tuple(cfg.data.tile_shape)
    assert instantiate(cfg.logger) is not None
    assert len([instantiate(c) for c in cfg.callbacks.values()]) == 2
    trainer_cfg = instantiate(cfg.trainer, _partial_=True)
    assert callable(trainer_cfg)


@pytest.mark.parametrize("experiment", ["experiment=quickstart", "experiment=finetune", "~experiment"])
@pytest.mark.parametrize("data", ["synthetic2d", "folder", "brightfield"])
def test_experiments_and_data_groups_compose(tmp_path, experiment, data) -> None:
    overrides = [experiment, f"data={data}"]
    if data == "brightfield":
        overrides += ["model=unet3d", f"data.root={tmp_path}"]
    cfg = _cfg(tmp_path, overrides)
    assert cfg.data._target_.endswith("UNetDataModule")


def test_debug_and_search_groups_compose(tmp_path) -> None:
    cfg = _cfg(tmp_path, ["debug=default"])
    assert cfg.trainer.fast_dev_run is True and cfg.logger is None
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "train", overrides=["hparams_search=optuna", "+cluster=slurm"], return_hydra_config=True
        )
    assert "lr" in str(cfg.hydra.sweeper.params)
    assert cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices


@pytest.mark.parametrize(
    ("dims", "task"), [(2, "segmentation"), (2, "detection"), (3, "segmentation"), (3, "detection")]
)
def test_fast_dev_run(tmp_path, dims: int, task: str) -> None:
    extra = FAST_2D if dims == 2 else [*FAST_3D, "model=unet3d", "data=synthetic3d"]
    cfg = _cfg(tmp_path, [*FAST, *extra, f"task={task}", "debug=default"])
    train(cfg)


def test_bf16_mixed_on_cpu(tmp_path) -> None:
    cfg = _cfg(tmp_path, [*FAST, *FAST_2D, "debug=default", "trainer.precision=bf16-mixed"])
    train(cfg)


def test_device_augmentation_equals_worker_augmentation(tmp_path) -> None:
    """Warping crops on the device in a batch gives the tiles the worker would have made."""
    cfg = _cfg(tmp_path, [*FAST, *FAST_2D, "logger=csv"])
    _, _model, dm, _trainer = build(cfg)
    worker = next(iter(dm.train_dataloader()))
    dm.augment_on = "device"
    raw = next(iter(dm.train_dataloader()))
    from unet.data.dataset import warp_batch

    device = warp_batch(raw, dm.tile_shape, dm.out_shape)
    assert torch.allclose(worker["image"], device["image"], atol=1e-5)
    assert torch.equal(worker["target"], device["target"])
    assert torch.allclose(worker["weights"], device["weights"], atol=1e-4)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    return [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]


def test_exact_resume(tmp_path) -> None:
    """1 epoch + resume for 1 more == 2 epochs uninterrupted (same train/loss at every step)."""
    common = [*FAST, *FAST_2D, "logger=csv", "trainer.log_every_n_steps=1", "data.tiles_per_epoch=3"]
    common += ["model.net.dropout=0.2", "model/optimizer=sgd", "model.optimizer.lr=0.001"]
    common += [
        "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
    ]
    full = tmp_path / "full"
    train(_cfg(full, [*common, "trainer.max_epochs=2"]))
    part = tmp_path / "part"
    train(_cfg(part, [*common, "trainer.max_epochs=1"]))
    resumed = tmp_path / "resumed"
    train(_cfg(resumed, [*common, "trainer.max_epochs=2", f"ckpt_path={part}/checkpoints/last.ckpt"]))
    a = _losses(full)
    b = _losses(part) + _losses(resumed)
    assert len(a) == 6 and [s for s, _ in a] == [s for s, _ in b]
    assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-6, abs=1e-7)


def test_finetune_reinitialises_head(tmp_path) -> None:
    cfg = _cfg(tmp_path / "pre", [*FAST, *FAST_2D, "logger=csv", "trainer.max_epochs=1"])
    train(cfg)
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    cfg = _cfg(
        tmp_path / "ft",
        [*FAST, *FAST_2D, "experiment=finetune", f"model.init_from={ckpt}", "task.num_classes=3"],
    )
    _, model, _, _ = build(cfg)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    enc = "net.encoder.0.0.weight"
    assert torch.equal(model.state_dict()[enc], state[enc])
    assert model.net.head.out_channels == 3 and state["net.head.weight"].shape[0] == 2


def test_bad_config_errors_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="nearest valid"):
        build(_cfg(tmp_path, [*FAST, *FAST_2D, "data.tile_shape=[77,77]"]))
    with pytest.raises(ValueError, match="too small"):
        build(_cfg(tmp_path, [*FAST, *FAST_2D, "data.tile_shape=[20,20]"]))
    with pytest.raises(ValueError, match=r"3 spatial axes .* but the model is 2D"):
        build(_cfg(tmp_path, [*FAST, *FAST_3D, "data=synthetic3d"]))
    with pytest.raises(ValueError, match="channel"):
        build(_cfg(tmp_path, [*FAST, *FAST_2D, "data.source.channels=2"]))
    with pytest.raises(ValueError, match="train_dir"):
        build(_cfg(tmp_path, [*FAST, "data=folder"]))
    with pytest.raises(ValueError, match="no images"):
        build(_cfg(tmp_path, [*FAST, "data=folder", f"data.source.train_dir={tmp_path}/nowhere"]))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ddp_two_cpu_processes_one_run_dir(tmp_path) -> None:
    run = tmp_path / "run"
    args = [
        *FAST,
        *FAST_2D,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "data.tiles_per_epoch=4",
        "logger=csv",
        "trainer.sync_batchnorm=false",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run}",
    ]
    r = _run(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    steps = [s for s, _ in _losses(run)]
    assert steps and max(steps) <= 1  # 4 tiles over 2 ranks with batch 1: 2 steps per rank


def test_multirun_two_points(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, *FAST_2D, "debug=default", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    r = _run(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


def test_tiles_do_not_depend_on_workers(tmp_path) -> None:
    """Keyed tiles: two DataLoader worker processes give exactly the batches of the main process."""
    cfg = _cfg(tmp_path, [*FAST, *FAST_2D, "logger=csv", "data.tiles_per_epoch=4", "data.batch_size=2"])
    _, _, dm, _ = build(cfg)
    single = list(dm.train_dataloader())
    dm.num_workers = 2
    multi = list(dm.train_dataloader())
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi):
        assert all(torch.equal(a[k], b[k]) for k in ("image", "target", "weights"))


def test_validation_means_count_every_image_once(tmp_path, monkeypatch) -> None:
    """val/* are plain means over the val images; repeats that pad ranks to equal length are not counted."""
    import numpy as np

    from unet.data.preprocess import resize
    from unet.inference import softmax
    from unet.tiling import predict_tiled

    cfg = _cfg(tmp_path, [*FAST, *FAST_2D, "data.source.n_val=3", "logger=csv", "trainer.max_epochs=1"])
    task, model, dm, trainer = build(cfg)
    trainer.validate(model, datamodule=dm, verbose=False)
    per_image = []
    for prepared in dm.val_images:
        logits = predict_tiled(model.net, prepared.image, activation="none")
        probs = resize(softmax(logits), prepared.item.image.shape[1:])
        per_image.append(task.score(probs, prepared.item.annotation)["iou"])
    assert len(per_image) == 3
    assert float(trainer.callback_metrics["val/iou"]) == pytest.approx(np.mean(per_image), abs=1e-5)
    # two ranks, three images: rank 1 gets image 1 and a flagged repeat of image 0
    monkeypatch.setattr(type(dm), "_rank", lambda self: (1, 2))
    assert [tuple(b) for b in dm.val_dataloader()] == [(1, True), (0, False)]
    monkeypatch.setattr(type(dm), "_rank", lambda self: (0, 2))
    assert [tuple(b) for b in dm.val_dataloader()] == [(0, True), (2, True)]


def test_a_second_run_into_the_same_dir_overwrites_best_and_last(tmp_path) -> None:
    """No best-v1.ckpt beside a stale best.ckpt: whoever reads best.ckpt gets the newest run's model."""
    args = [*FAST, *FAST_2D, "logger=csv", "trainer.max_epochs=1", "model.net.base_features=2"]
    train(_cfg(tmp_path, args))
    first = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    train(_cfg(tmp_path, [*args, "seed=7"]))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    second = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_validation_epoch_end_reduces_sums_and_counts_over_ranks(tmp_path, monkeypatch) -> None:
    """Rank 0 holds 2 counted images, the other rank 1 (and a repeat): means are over the 3 images."""
    from types import SimpleNamespace

    _, model, _, _ = build(_cfg(tmp_path, [*FAST, *FAST_2D, "logger=csv"]))
    other_rank = torch.tensor([1.0, 0.9, 0.2], dtype=torch.float64)  # count, sum of loss, sum of iou

    def reduce(t, reduce_op):
        assert reduce_op == "sum"
        return t + other_rank

    fake = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce=reduce))
    monkeypatch.setattr(type(model), "trainer", property(lambda self: fake))
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    model._val_sums, model._val_count = {"loss": 0.5, "iou": 1.3}, 2
    model.on_validation_epoch_end()
    assert logged == {"val/loss": pytest.approx(1.4 / 3), "val/iou": pytest.approx(1.5 / 3)}
