"""Config composition, fast training runs (2D/3D, segmentation/detection), exact resume, DDP, bf16, sweeps."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import train_config
from hydra import compose, initialize_config_dir

from unet.cli.train import build, train

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
    "data.tile_shape=[18,52,52]",
]


def _folders(root: Path, dims: int) -> Path:
    """root/train and root/val with 2D images (or 3D stacks with an element size) and instance labels."""
    import numpy as np

    from unet import io
    from unet.data.synthetic import synthetic_brightfield, synthetic_cells

    es = (1.5, 0.5, 0.5) if dims == 3 else None
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            rng = np.random.default_rng([dims, len(split), i])
            if dims == 2:
                image, labels = synthetic_cells((64, 64), rng, n_cells=8)
            else:
                image, labels = synthetic_brightfield((10, 40, 40), rng, element_size=es)
            io.write_tiff(root / split / "images" / f"im{i}.tif", image[0], element_size=es)
            io.write_tiff(root / split / "labels" / f"im{i}.tif", labels.astype(np.uint16), element_size=es)
    return root


SMALL_DATA = {
    "synthetic2d": ["data.source.n_train=1", "data.source.n_val=1", "data.source.shape=[64,64]"],
    "synthetic3d": ["data.source.n_train=1", "data.source.n_val=1", "data.source.shape=[12,40,40]"],
    "brightfield": ["data.embedded.n_train=1", "data.embedded.n_val=1", "data.embedded.shape=[10,40,40]"],
}


@pytest.mark.parametrize("model", ["unet2d", "unet3d"])
@pytest.mark.parametrize("data", ["synthetic2d", "synthetic3d", "folder", "brightfield"])
@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_every_combination_builds_with_no_tile_given(tmp_path, model, data, task) -> None:
    """model x data x task through the CLI's build(): the tile follows from the network and the budget;
    2D data for a 3D model (and the reverse) is refused with a message naming a file or the data."""
    dims = 2 if model == "unet2d" else 3
    data_dims = {"synthetic2d": 2, "synthetic3d": 3, "brightfield": 3, "folder": dims}[data]
    over = [f"model={model}", f"data={data}", f"task={task}", "model.net.base_features=4", "logger=csv"]
    over += SMALL_DATA.get(data, [])
    if data == "folder":
        over.append(f"data.root={_folders(tmp_path / 'user', dims)}")
    cfg = train_config(tmp_path, over)
    if data_dims != dims:
        with pytest.raises(ValueError, match=rf"{data_dims}D|{data_dims} spatial axes|unet{data_dims}d"):
            build(cfg)
        return
    t, lit, dm, trainer = build(cfg)
    assert t.name == task and cfg.optimized_metric == t.monitor
    assert lit.net.spatial_dims == dims and len(dm.tile_shape) == dims
    assert lit.net.output_shape(dm.tile_shape) == dm.out_shape  # a valid tile, chosen by the data module
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["target"].shape[1:]) == dm.out_shape
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_a_folder_of_the_other_dimensionality_is_named(tmp_path) -> None:
    root3 = _folders(tmp_path / "stacks", 3)
    with pytest.raises(ValueError, match=r"im0\.tif.*(3D|spatial axes).*2D|im0\.tif.*unet3d"):
        build(train_config(tmp_path, ["data=folder", f"data.root={root3}", "model.net.base_features=4"]))
    root2 = _folders(tmp_path / "flat", 2)
    with pytest.raises(ValueError, match=r"im0\.tif.*2D.*3D|im0\.tif.*unet2d|im0\.tif.*spatial axes"):
        build(
            train_config(
                tmp_path, ["model=unet3d", "data=folder", f"data.root={root2}", "model.net.base_features=4"]
            )
        )


def test_folder_keys_and_roots(tmp_path) -> None:
    """data.train_dir/val_dir, data.root with train/ and val/, a root of images/ with folds; clear errors."""
    root = _folders(tmp_path / "user", 2)
    small = ["data=folder", "model.net.base_features=4", "logger=csv"]
    _, _, dm, _ = build(train_config(tmp_path, [*small, f"data.root={root}"]))
    assert (len(dm.train_images), len(dm.val_images)) == (2, 1)
    _, _, dm, _ = build(
        train_config(tmp_path, [*small, f"data.train_dir={root}/train", f"data.val_dir={root}/val"])
    )
    assert (len(dm.train_images), len(dm.val_images)) == (2, 1)
    _, _, dm, _ = build(train_config(tmp_path, [*small, f"data.root={root}/train", "data.num_folds=2"]))
    assert (len(dm.train_images), len(dm.val_images)) == (1, 1)
    with pytest.raises(ValueError, match=r"data\.train_dir=.*data\.root="):
        build(train_config(tmp_path, small))
    with pytest.raises(ValueError, match=r"no validation images: pass data\.val_dir.*num_folds"):
        build(train_config(tmp_path, [*small, f"data.train_dir={root}/train"]))
    # validation off on purpose (the transfer benchmark's 1-4 image runs): no val images needed, last.ckpt
    off = [*FAST, *FAST_2D, "data.source.n_val=0", "logger=csv", "trainer.max_epochs=1"]
    with pytest.raises(ValueError, match=r"no validation images.*limit_val_batches=0"):
        build(train_config(tmp_path / "off", off))
    off += ["++trainer.limit_val_batches=0"]
    train(train_config(tmp_path / "off", off))
    assert (tmp_path / "off" / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(ValueError, match=r"data\.root=.*expected train/ and val/"):
        build(train_config(tmp_path, [*small, f"data.root={tmp_path}"]))
    with pytest.raises(ValueError, match=r"data\.root=.*no such folder"):
        build(train_config(tmp_path, [*small, f"data.root={tmp_path}/nowhere"]))


def test_brightfield_without_root_says_it_uses_the_embedded_default(tmp_path, caplog) -> None:
    over = ["model=unet3d", "data=brightfield", "model.net.base_features=4", *SMALL_DATA["brightfield"]]
    with caplog.at_level("WARNING"):
        _, lit, dm, _ = build(train_config(tmp_path, over))
    assert "embedded default" in caplog.text and "data.root=" in caplog.text
    assert lit.element_size == (1.0, 0.5, 0.5)  # the model takes the stacks' anisotropic voxels
    assert dm.train_images[0].item.name.startswith("synthetic_train_brightfield")


def test_an_explicit_tile_wins_and_an_invalid_one_names_valid_shapes(tmp_path) -> None:
    _, _, dm, _ = build(train_config(tmp_path, [*FAST, *FAST_2D]))
    assert dm.tile_shape == (76, 76)
    with pytest.raises(ValueError, match="nearest valid"):
        build(train_config(tmp_path, [*FAST, *FAST_2D, "data.tile_shape=[77,77]"]))


def test_auto_tile_fits_the_budget_and_the_images(tmp_path) -> None:
    from unet.memory import estimate_memory
    from unet.models import shapes

    over = [*FAST, *FAST_2D[:-1], "model.net.base_features=8"]
    _, lit, dm, _ = build(train_config(tmp_path, [*over, "data.tile_memory_mib=4"]))
    assert estimate_memory(lit.net, dm.tile_shape, 1, train=True) <= 4 * 2**20
    assert all(o < 96 for o in dm.out_shape)  # the budget, not the image, limits this tile
    for axis, p in enumerate(shapes.pooling_period(lit.net.levels)):  # and it is the largest that fits
        grown = list(dm.tile_shape)
        grown[axis] += p
        assert estimate_memory(lit.net, grown, 1, train=True) > 0.9 * 4 * 2**20
    # images are 96x96: a large budget gives a tile whose output just covers the image
    _, lit, dm, _ = build(train_config(tmp_path, [*over, "data.tile_memory_mib=4096"]))
    assert all(96 <= o < 96 + p for o, p in zip(dm.out_shape, lit.net.pooling_period))


def test_debug_and_search_groups_compose(tmp_path) -> None:
    cfg = train_config(tmp_path, ["debug=default"])
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
    cfg = train_config(tmp_path, [*FAST, *extra, f"task={task}", "debug=default"])
    value = train(cfg)
    assert value is not None and 0.0 <= value <= 1.0  # the task's validation metric was computed
    assert not (tmp_path / "checkpoints").exists()  # debug writes nothing


def test_bf16_mixed_on_cpu(tmp_path) -> None:
    cfg = train_config(tmp_path, [*FAST, *FAST_2D, "debug=default", "trainer.precision=bf16-mixed"])
    _, model, dm, trainer = build(cfg)
    assert trainer.precision == "bf16-mixed"
    batch = next(iter(dm.train_dataloader()))
    with trainer.precision_plugin.forward_context():
        out = model(batch["image"])
    assert out.dtype == torch.bfloat16  # convolutions really ran in bf16


def test_precision_is_chosen_from_the_hardware(monkeypatch) -> None:
    from unet import hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.auto_precision("cpu") == hardware.auto_precision("auto") == "bf16-mixed"
    assert "native bf16" in hardware.precision_reason("cpu", "bf16-mixed")
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.auto_precision("auto") == "32-true"
    assert "no native bf16" in hardware.precision_reason("auto", "32-true")
    assert hardware.precision_reason("cpu", "bf16-mixed") == "bf16-mixed (as configured)"
    monkeypatch.setattr(hardware.torch.cuda, "is_bf16_supported", lambda: False)
    assert hardware.auto_precision("gpu") == "16-mixed"


def test_device_augmentation_equals_worker_augmentation(tmp_path) -> None:
    """Warping crops on the device in a batch gives the tiles the worker would have made."""
    cfg = train_config(tmp_path, [*FAST, *FAST_2D, "logger=csv"])
    _, _model, dm, _trainer = build(cfg)
    worker = next(iter(dm.train_dataloader()))
    dm.augment_on = "device"
    raw = next(iter(dm.train_dataloader()))
    from unet.data.tiles import warp_batch

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
        "~model.scheduler",
        "+model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}",
    ]
    full = tmp_path / "full"
    train(train_config(full, [*common, "trainer.max_epochs=2"]))
    part = tmp_path / "part"
    train(train_config(part, [*common, "trainer.max_epochs=1"]))
    resumed = tmp_path / "resumed"
    train(train_config(resumed, [*common, "trainer.max_epochs=2", f"ckpt_path={part}/checkpoints/last.ckpt"]))
    a = _losses(full)
    b = _losses(part) + _losses(resumed)
    assert len(a) == 6 and [s for s, _ in a] == [s for s, _ in b]
    assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-6, abs=1e-7)


def test_finetune_reinitialises_head(tmp_path) -> None:
    cfg = train_config(tmp_path / "pre", [*FAST, *FAST_2D, "logger=csv", "trainer.max_epochs=1"])
    train(cfg)
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    cfg = train_config(
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
        build(train_config(tmp_path, [*FAST, *FAST_2D, "data.tile_shape=[77,77]"]))
    with pytest.raises(ValueError, match="nearest valid shapes: none"):
        build(train_config(tmp_path, [*FAST, *FAST_2D, "data.tile_shape=[20,20]"]))
    with pytest.raises(ValueError, match=r"3 spatial axes .* but the model is 2D"):
        build(train_config(tmp_path, [*FAST, *FAST_3D, "data=synthetic3d"]))
    with pytest.raises(ValueError, match="channel"):
        build(train_config(tmp_path, [*FAST, *FAST_2D, "data.source.channels=2"]))
    with pytest.raises(ValueError, match="train_dir"):
        build(train_config(tmp_path, [*FAST, "data=folder"]))
    with pytest.raises(ValueError, match="no images"):
        build(
            train_config(
                tmp_path, [*FAST, "data=folder", f"data.train_dir={tmp_path}/nowhere", "data.num_folds=2"]
            )
        )


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


def test_the_data_module_is_built_whole_and_resumes_by_its_own_state(tmp_path) -> None:
    """build() makes the data module in one call: the model's facts are there from the start; its
    load_state_dict (what Lightning calls with a checkpoint) makes the loader skip the batches done."""
    cfg = train_config(
        tmp_path, [*FAST, *FAST_2D, "logger=csv", "data.tiles_per_epoch=4", "data.batch_size=1"]
    )
    _, model, dm, _ = build(cfg)
    assert dm.net is model.net and dm.task is model.task and dm.validate
    assert (dm.model_element_size, dm.normalization) == (model.element_size, model.normalization)
    assert dm.state_dict() == {}  # outside a fit: nothing to record
    full = list(dm.train_dataloader())
    dm.load_state_dict({"batches_done": 3})
    rest = list(dm.train_dataloader())
    assert len(full) == 4 and len(rest) == 1
    assert all(torch.equal(full[3][k], rest[0][k]) for k in ("image", "target", "weights"))


def test_tiles_do_not_depend_on_workers(tmp_path) -> None:
    """Keyed tiles: two DataLoader worker processes give exactly the batches of the main process."""
    cfg = train_config(
        tmp_path, [*FAST, *FAST_2D, "logger=csv", "data.tiles_per_epoch=4", "data.batch_size=2"]
    )
    _, _, dm, _ = build(cfg)
    single = list(dm.train_dataloader())
    dm.num_workers = 2
    multi = list(dm.train_dataloader())
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi):
        assert all(torch.equal(a[k], b[k]) for k in ("image", "target", "weights"))


@pytest.mark.parametrize(
    ("tta", "precision"), [("none", "32-true"), ("flips", "32-true"), ("none", "bf16-mixed")]
)
def test_val_iou_is_predict_then_evaluate(tmp_path, tta, precision) -> None:
    """val/iou is what a user gets from predict.py + evaluate.py on the same images: the mean over the val
    images of the object IoU of predict_image's probabilities (TTA members averaged as probabilities), in
    either precision (bf16 is forced here: on a CPU without native bf16 it runs emulated)."""
    import numpy as np

    from unet.evaluation import evaluate_pair
    from unet.predict.image import predict_image

    cfg = train_config(
        tmp_path,
        [
            *FAST,
            *FAST_2D,
            "data.source.n_val=3",
            "logger=csv",
            "trainer.max_epochs=1",
            f"model.val_tta={tta}",
            f"trainer.precision={precision}",
        ],
    )
    task, model, dm, trainer = build(cfg)
    with torch.no_grad():  # an untrained net that predicts some foreground, so that IoUs are not all 0
        model.net.head.bias.copy_(torch.tensor([0.0, 0.3]))
    trainer.validate(model, datamodule=dm, verbose=False)
    assert model.apply_precision == precision
    ious = []
    for item in [p.item for p in dm.val_images]:  # the raw images and annotations, as on disk
        probs = predict_image(
            model.net,
            item.image,
            element_size=item.element_size,
            card=model.card,
            tta=tta,
            precision=precision,
        )
        pred = task.objects(probs, element_size=item.element_size)
        ious.append(evaluate_pair(task.ground_truth(item.annotation), pred, "segmentation")["mean_iou"])
    assert len(ious) == 3 and max(ious) > 0
    assert float(trainer.callback_metrics["val/iou"]) == pytest.approx(np.mean(ious), abs=1e-6)


def test_prediction_and_training_choose_the_same_precision(tmp_path) -> None:
    """precision=auto in predict (and validation) follows the rule training uses on this machine."""
    from unet.hardware import auto_precision, resolve_precision

    cfg = train_config(tmp_path, [*FAST, *FAST_2D, "logger=csv"])
    _, model, _, trainer = build(cfg)
    model.trainer = trainer
    assert str(trainer.precision) == auto_precision("cpu")
    assert model.apply_precision == resolve_precision("auto", "cpu")


def test_validation_images_pad_ranks_with_flagged_repeats(tmp_path, monkeypatch) -> None:
    """Two ranks, three images: rank 1 gets image 1 and a flagged repeat of image 0 (not counted)."""
    cfg = train_config(tmp_path, [*FAST, *FAST_2D, "data.source.n_val=3", "logger=csv"])
    _, _, dm, _ = build(cfg)
    images = dm.val_images
    monkeypatch.setattr(type(dm), "_rank", lambda self: (1, 2))
    assert [(p is images[i], c) for (p, c), i in zip(dm.val_dataloader(), (1, 0))] == [
        (True, True),
        (True, False),
    ]
    monkeypatch.setattr(type(dm), "_rank", lambda self: (0, 2))
    assert [(p is images[i], c) for (p, c), i in zip(dm.val_dataloader(), (0, 2))] == [
        (True, True),
        (True, True),
    ]


def test_a_second_run_into_the_same_dir_overwrites_best_and_last(tmp_path) -> None:
    """No best-v1.ckpt beside a stale best.ckpt: whoever reads best.ckpt gets the newest run's model."""
    args = [*FAST, *FAST_2D, "logger=csv", "trainer.max_epochs=1", "model.net.base_features=2"]
    train(train_config(tmp_path, args))
    first = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    train(train_config(tmp_path, [*args, "seed=7"]))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    second = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_validation_epoch_end_reduces_sums_and_counts_over_ranks(tmp_path, monkeypatch) -> None:
    """Rank 0 holds 2 counted images, the other rank 1 (and a repeat): means are over the 3 images."""
    from types import SimpleNamespace

    _, model, _, _ = build(train_config(tmp_path, [*FAST, *FAST_2D, "logger=csv"]))
    other_rank = torch.tensor([1.0, 1.0, 0.9, 0.2], dtype=torch.float64)  # counts (loss, iou), sums

    def reduce(t, reduce_op):
        assert reduce_op == "sum"
        return t + other_rank

    fake = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce=reduce))
    monkeypatch.setattr(type(model), "trainer", property(lambda self: fake))
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    model._val_sums, model._val_counts = {"loss": 0.5, "iou": 1.3}, {"loss": 2, "iou": 2}
    model.on_validation_epoch_end()
    assert logged == {"val/loss": pytest.approx(1.4 / 3), "val/iou": pytest.approx(1.5 / 3)}


def test_exact_resume_from_a_mid_epoch_checkpoint(tmp_path) -> None:
    """Stopped after an arbitrary step (a checkpoint in the middle of epoch 1), resumed == uninterrupted."""
    common = [*FAST, *FAST_2D, "logger=csv", "trainer.log_every_n_steps=1", "data.tiles_per_epoch=3"]
    common += [
        "model.net.dropout=0.2",
        "model/optimizer=sgd",
        "model.optimizer.lr=0.001",
        "model.scheduler=null",
    ]
    every_step = [
        "+callbacks.every_step._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        "+callbacks.every_step.every_n_train_steps=1",
        "+callbacks.every_step.save_top_k=-1",
        f"+callbacks.every_step.dirpath={tmp_path}/part/steps",
    ]
    full = tmp_path / "full"
    train(train_config(full, [*common, "trainer.max_epochs=2"]))
    part = tmp_path / "part"
    train(train_config(part, [*common, *every_step, "trainer.max_epochs=2"]))
    ckpt = part / "steps" / "epoch=1-step=4.ckpt"  # epoch 1 (0-based), 1 of its 3 batches done
    assert ckpt.exists(), sorted(p.name for p in (part / "steps").iterdir())
    # the data module's own state (Lightning's datamodule state_dict hook), not the LightningModule's
    assert torch.load(ckpt, weights_only=False)["UNetDataModule"] == {"batches_done": 1}
    assert torch.load(part / "checkpoints" / "last.ckpt", weights_only=False)["UNetDataModule"] == {
        "batches_done": 0
    }
    resumed = tmp_path / "resumed"
    train(
        train_config(resumed, [*common, "trainer.max_epochs=2", f"ckpt_path='{ckpt}'"])
    )  # quoted: '=' in the name
    a = dict(_losses(full))
    b = dict(_losses(resumed))
    assert sorted(b) == [4, 5]  # only the steps after the checkpoint were run again
    assert [b[s] for s in (4, 5)] == pytest.approx([a[s] for s in (4, 5)], rel=1e-6, abs=1e-7)


def test_tensorboard_hparams_dashboard_and_panel_steps(tmp_path) -> None:
    """HPARAMS lists the run with its metrics; image panels share the step of the val scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = train_config(tmp_path, [*FAST, *FAST_2D, "trainer.max_epochs=2", "model.log_images=true"])
    train(cfg)
    acc = EventAccumulator(
        str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "images": 0, "scalars": 0}
    )
    acc.Reload()
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugin and b"hp/best_iou" in plugin["_hparams_/experiment"]
    best = acc.Scalars("hp/best_iou")
    assert 0.0 <= best[-1].value <= 1.0 and best[-1].step > 0  # the placeholder at step 0, then the best
    scalar_steps = [e.step for e in acc.Scalars("val/iou")]
    image_steps = [e.step for e in acc.Images("val/input")]
    assert scalar_steps == image_steps and len(scalar_steps) == 2
