"""Bad inputs and faults: each is stopped before work with a message naming the file or key and the problem,
or handled correctly; nothing half-written is left.

The catalogue (``CASES``) builds the run as ``train.py`` does (:func:`unet.cli.train.build`, which reads and
prepares every image before training) on small folders made here, each with one defect.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_config

from unet import io
from unet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from unet.cli.train import build, train
from unet.data.synthetic import synthetic_cells
from unet.models.card import CARD_KEY

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.net.base_features=4", "model.net.depth=2", "logger=csv", "data.tiles_per_epoch=2"]


def _folder(root: Path, n_train: int = 2, n_val: int = 1, es=None) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            image, labels = synthetic_cells((64, 64), np.random.default_rng([len(split), i]), n_cells=8)
            io.write_tiff(root / split / "images" / f"im{i}.tif", image[0], element_size=es)
            io.write_tiff(root / split / "labels" / f"im{i}.tif", labels.astype(np.uint16), element_size=es)
    return root


def _nan_image(root: Path) -> Path:
    image = io.read_image(root / "train" / "images" / "im1.tif").array[0]
    image[3, 4] = np.nan
    io.write_tiff(root / "train" / "images" / "im1.tif", image.astype(np.float32))
    return root / "train" / "images" / "im1.tif"


def _constant_image(root: Path) -> Path:
    """A blank training image (all zeros) beside its label file with cells."""
    path = root / "train" / "images" / "im1.tif"
    io.write_tiff(path, np.zeros((64, 64), np.uint8))
    return path


def _inf_image(root: Path) -> Path:
    image = io.read_image(root / "train" / "images" / "im0.tif").array[0]
    image[0, 0] = np.inf
    io.write_tiff(root / "train" / "images" / "im0.tif", image.astype(np.float32))
    return root / "train" / "images" / "im0.tif"


def _empty_val_labels(root: Path) -> Path:
    path = root / "val" / "labels" / "im0.tif"
    io.write_tiff(path, np.zeros((64, 64), np.uint16))
    return path


def _coarse(root: Path, factor: float) -> Callable[[Path], Path]:
    def make(r: Path) -> Path:
        for p in sorted((r / "train" / "images").glob("*.tif")):
            io.write_tiff(p, io.read_image(p).array[0], element_size=(factor, factor))
        return r / "train" / "images" / "im0.tif"

    return make


def _three_d_in_2d(root: Path) -> Path:
    path = root / "train" / "images" / "im0.tif"
    io.write_tiff(
        path, np.random.default_rng(0).random((5, 64, 64)).astype(np.float32), element_size=(2, 1, 1)
    )
    return path


def _shape_mismatch(root: Path) -> Path:
    path = root / "train" / "labels" / "im0.tif"
    io.write_tiff(path, np.ones((32, 64), np.uint16))
    return path


def _missing_label(root: Path) -> Path:
    path = root / "train" / "labels" / "im1.tif"
    path.unlink()
    return root / "train" / "images" / "im1.tif"


def _garbage_image(root: Path) -> Path:
    path = root / "train" / "images" / "im0.tif"
    path.write_bytes(b"this is not a tiff")
    return path


def _empty_image(root: Path) -> Path:
    path = root / "train" / "images" / "im0.tif"
    path.write_bytes(b"")
    return path


def _too_many_classes(root: Path) -> Path:
    (root / "train" / "labels").rename(root / "train" / "masks")
    (root / "val" / "labels").rename(root / "val" / "masks")
    path = root / "train" / "masks" / "im0.tif"
    mask = np.zeros((64, 64), np.uint16)
    mask[10:20, 10:20] = 1
    mask[30:40, 30:40] = 5
    io.write_tiff(path, mask)
    return path


def _two_annotation_kinds(root: Path) -> Path:
    (root / "train" / "masks").mkdir()
    return root / "train"


def _no_images_dir(root: Path) -> Path:
    (root / "val" / "images").rename(root / "val" / "pictures")
    return root / "val"


#: (id, defect maker (returns the path the message must name), extra overrides, message pattern)
CASES: list[tuple[str, Callable[[Path], Path] | None, list[str], str]] = [
    ("nan-in-training-image", _nan_image, [], r"NaN or infinite"),
    ("inf-in-training-image", _inf_image, [], r"NaN or infinite"),
    ("constant-training-image-with-cells", _constant_image, [], r"im1\.tif: the image is constant .* object"),
    ("all-zero-validation-labels", _empty_val_labels, [], r"no validation image has an annotated object"),
    ("data-16x-coarser-than-model", _coarse(Path(), 16.0), ["model.element_size=[1.0,1.0]"], r"beyond 8x"),
    ("data-1000x-finer-than-model", _coarse(Path(), 0.001), ["model.element_size=[1.0,1.0]"], r"beyond 8x"),
    ("3d-stack-for-2d-model", _three_d_in_2d, [], r"3 spatial axes|3D"),
    ("label-shape-differs", _shape_mismatch, [], r"shape"),
    ("missing-label-file", _missing_label, [], r"im1"),
    ("garbage-image-file", _garbage_image, [], r"im0\.tif"),
    ("empty-image-file", _empty_image, [], r"im0\.tif"),
    ("class-beyond-num-classes", _too_many_classes, [], r"class 5 but task\.num_classes=2"),
    ("two-annotation-folders", _two_annotation_kinds, [], r"exactly one of"),
    ("val-without-images-dir", _no_images_dir, [], r"no images/ folder"),
    ("tiles-per-epoch-not-a-number", None, ["data.tiles_per_epoch=abc"], r"data\.tiles_per_epoch='abc'"),
    ("tiles-per-epoch-zero", None, ["data.tiles_per_epoch=0"], r"data\.tiles_per_epoch=0"),
    ("batch-size-fraction", None, ["data.batch_size=1.5"], r"data\.batch_size=1\.5"),
    ("tile-memory-negative", None, ["data.tile_memory_mib=-5"], r"data\.tile_memory_mib"),
    (
        "tile-memory-too-small",
        None,
        ["data.tile_memory_mib=1", "model.net.base_features=64", "model.net.depth=4"],
        r"data\.tile_memory_mib=1.*smallest valid tile",
    ),
    ("invalid-tile", None, ["data.tile_shape=[77,77]"], r"nearest valid shapes"),
    ("tile-with-3-axes-for-2d", None, ["data.tile_shape=[16,60,60]"], r"has 3 axes but the model is 2D"),
    ("one-fold", None, ["data.num_folds=1"], r"data\.num_folds=1"),
    ("no-validation-and-no-folds", None, ["~data.val_dir"], r"no validation images"),
    ("root-without-train-and-val", None, ["data.root=ROOT/train/images"], r"expected train/ and val/"),
    ("root-does-not-exist", None, ["data.root=ROOT/nowhere"], r"no such folder"),
    ("init-from-missing-file", None, ["model.init_from=ROOT/none.ckpt"], r"none\.ckpt"),
    ("init-from-garbage", None, ["model.init_from=ROOT/garbage.ckpt"], r"garbage\.ckpt: truncated or not"),
]


@pytest.mark.parametrize(("case", "defect", "extra", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_training_input_is_named_before_training(tmp_path, case, defect, extra, message) -> None:
    root = _folder(tmp_path / "data")
    (root / "garbage.ckpt").write_bytes(b"\x80\x04garbage")
    named = defect(root) if defect is not None else None
    extra = [e.replace("ROOT", str(root)) for e in extra]
    dirs = [f"data.train_dir={root}/train", f"data.val_dir={root}/val"]
    if "~data.val_dir" in extra:
        dirs, extra = [f"data.train_dir={root}/train"], [e for e in extra if e != "~data.val_dir"]
    if any(e.startswith("data.root=") for e in extra):
        dirs = []
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as info:
        build(train_config(out, ["data=folder", *dirs, *SMALL, *extra]))
    if named is not None:
        assert named.name in str(info.value)
    if case == "class-beyond-num-classes":  # the mask file is wrong, not the image of the same name
        assert str(named) in str(info.value)
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("foreground", [1, 255, 65535])
def test_binary_masks_in_labels_become_instances_whatever_the_value(tmp_path, foreground) -> None:
    from unet.data.sources import read_annotation

    mask = np.zeros((32, 32), np.uint16)
    mask[2:8, 2:8] = foreground
    mask[20:30, 20:30] = foreground
    io.write_tiff(tmp_path / "m.tif", mask)
    ann = read_annotation(tmp_path / "m.tif", "labels", (32, 32), 2)
    assert sorted(np.unique(ann.labels)) == [0, 1, 2]


def test_an_image_without_objects_gets_no_perfect_score() -> None:
    from unet.data.items import Annotation
    from unet.tasks import DetectionTask, SegmentationTask

    empty = Annotation(labels=np.zeros((16, 16), np.int32))
    nothing = np.zeros((2, 16, 16), np.float32)
    nothing[0] = 1
    something = nothing.copy()
    something[:, 4:8, 4:8] = [[[0.0]], [[1.0]]]
    s = SegmentationTask().score(nothing, empty)
    assert np.isnan(s["iou"]) and np.isnan(s["f1"])  # left out of the means, not a 1.0
    s = SegmentationTask().score(something, empty)
    assert np.isnan(s["iou"]) and s["f1"] == 0.0 and s["precision"] == 0.0  # false positives count
    d = DetectionTask().score(something, empty)
    assert d["f1"] == 0.0 and d["count_error"] == 1.0


def test_element_size_rescaling_is_in_the_run_summary(tmp_path) -> None:
    from unet.cli.train import summary

    root = _folder(tmp_path / "data", es=(0.5, 0.5))
    cfg = train_config(
        tmp_path / "run", ["data=folder", f"data.root={root}", *SMALL, "model.element_size=[1.0,1.0]"]
    )
    _, model, dm, trainer = build(cfg)
    assert "rescale     0.5x0.5 (3 images)" in summary(model, dm, trainer)


# checkpoints ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real checkpoint of a tiny run (one epoch, two tiles)."""
    out = tmp_path_factory.mktemp("trained")
    root = _folder(out / "data")
    train(train_config(out / "run", ["data=folder", f"data.root={root}", *SMALL, "trainer.max_epochs=1"]))
    return out / "run" / "checkpoints" / "last.ckpt"


class _Evil:
    """Unpickling this runs a shell command that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(trained: Path, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    ckpt = torch.load(trained, weights_only=True)
    ckpt[CARD_KEY]["normalization"] = _Evil(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    return evil, marker


def test_a_malicious_checkpoint_runs_nothing(trained, tmp_path) -> None:
    """predict, finetune (init_from) and resume (ckpt_path) all refuse it; the payload never runs."""
    from unet.predict import predict_files

    evil, marker = _malicious(trained, tmp_path)
    image = tmp_path / "in.tif"
    io.write_tiff(image, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused"):
        predict_files(evil, image, tmp_path / "pred")
    root = _folder(tmp_path / "data")
    base = ["data=folder", f"data.root={root}", *SMALL]
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused"):
        build(train_config(tmp_path / "ft", [*base, f"model.init_from={evil}"]))
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused"):
        train(train_config(tmp_path / "resume", [*base, f"ckpt_path={evil}"]))
    assert not marker.exists()
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").iterdir())


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "a-tensor", "text", "pickle"])
def test_damaged_checkpoints_are_named(trained, tmp_path, damage) -> None:
    """Every unreadable model file gets the project's message with its path, and never torch's advice to
    retry with weights_only=False (the one thing not to do with a file of unknown origin)."""
    path = tmp_path / f"{damage}.ckpt"
    data = trained.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(pickle.dumps([1, 2, 3])[:5] + b"\x00" * 100)
    elif damage == "text":  # arbitrary bytes (torch itself ends in "KeyError: 101")
        path.write_bytes(b"hello checkpoint " * 500)
    elif damage == "pickle":  # a plain pickle, not a torch file
        path.write_bytes(pickle.dumps({"weights": [1.5] * 10}))
    else:
        torch.save(torch.zeros(3), path)
    with pytest.raises(
        CheckpointError, match=rf"{damage}\.ckpt: .*(truncated or )?not a checkpoint|empty"
    ) as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value) and "Traceback" not in str(e.value)


def test_an_unreadable_checkpoint_says_permission_denied(trained, tmp_path, monkeypatch) -> None:
    """(Root reads any file, so the refusal of the file system is simulated.)"""
    import builtins

    import unet.checkpoint

    path = tmp_path / "locked.ckpt"
    path.write_bytes(trained.read_bytes())

    def refuse(file, *a, **k):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *a, **k)

    monkeypatch.setattr(unet.checkpoint, "open", refuse, raising=False)
    with pytest.raises(CheckpointError, match=r"locked\.ckpt: permission denied"):
        load_checkpoint(path)


def test_a_failed_checkpoint_write_keeps_the_previous_file(trained, tmp_path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(trained.read_bytes())
    before = target.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"last\.ckpt: disk full"):
        save_checkpoint({"x": 1}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left


def test_resume_from_a_truncated_last_ckpt_names_it(trained, tmp_path) -> None:
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(trained.read_bytes()[:1000])
    root = _folder(tmp_path / "data")
    cfg = train_config(tmp_path / "run", ["data=folder", f"data.root={root}", *SMALL, f"ckpt_path={bad}"])
    with pytest.raises(CheckpointError, match=r"last\.ckpt: truncated or not a checkpoint"):
        train(cfg)


def test_resume_with_another_network_names_the_checkpoint_and_the_settings(trained, tmp_path) -> None:
    root = _folder(tmp_path / "data")
    over = ["data=folder", f"data.root={root}", *SMALL, f"ckpt_path={trained}", "model.net.base_features=8"]
    with pytest.raises(ValueError, match=r"last\.ckpt: cannot resume") as info:
        train(train_config(tmp_path / "run", over))
    assert "model.net.base_features: checkpoint 4, this run 8" in str(info.value)
    assert "size mismatch" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_kill_during_training_then_resume(tmp_path) -> None:
    """kill -9 in the middle of a run: last.ckpt is a complete checkpoint and the run resumes from it."""
    root = _folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["data=folder", f"data.root={root}", *SMALL, "trainer.max_epochs=50", f"hydra.run.dir={run}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run / "checkpoints" / "last.ckpt"
    try:
        import time

        deadline = time.time() + 120
        while time.time() < deadline and not (last.exists() and load_checkpoint(last)["epoch"] >= 1):
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    epoch = load_checkpoint(last)["epoch"]  # complete and loadable whatever the moment of the kill
    assert epoch >= 1
    resumed = tmp_path / "resumed"
    over = [
        "data=folder",
        f"data.root={root}",
        *SMALL,
        f"trainer.max_epochs={epoch + 2}",
        f"ckpt_path={last}",
    ]
    train(train_config(resumed, over))
    assert load_checkpoint(resumed / "checkpoints" / "last.ckpt")["epoch"] == epoch + 1


# prediction ---------------------------------------------------------------------------------------------
def _images(folder: Path, n: int = 2) -> list[Path]:
    paths = []
    for i in range(n):
        image, _ = synthetic_cells((64, 64), np.random.default_rng([9, i]), n_cells=6)
        paths.append(folder / f"good{i}.tif")
        io.write_tiff(paths[-1], image[0])
    return paths


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("unreadable.tif", lambda p: p.write_bytes(b"not a tiff at all"), r"unreadable\.tif"),
        ("empty.tif", lambda p: p.write_bytes(b""), r"empty\.tif"),
        (
            "stack.tif",
            lambda p: io.write_tiff(p, np.zeros((4, 64, 64), np.float32), element_size=(1, 1, 1)),
            r"stack\.tif: .*(3D|spatial|channel)",
        ),
        ("nan.tif", lambda p: io.write_tiff(p, np.full((64, 64), np.nan, np.float32)), r"nan\.tif: .*NaN"),
    ],
)
def test_predict_goes_past_a_bad_file_and_lists_it(trained, tmp_path, name, make, reason) -> None:
    from unet.predict import PredictionFailed, predict_files

    good = _images(tmp_path / "in")
    make(tmp_path / "in" / name)
    out = tmp_path / "out"
    with pytest.raises(PredictionFailed, match=reason) as info:
        predict_files(trained, tmp_path / "in", out, progress=False)
    assert [p.name for p, _ in info.value.failures] == [name]
    assert [r["image"] for r in info.value.summary] == [p.stem for p in good]
    for p in good:  # every good image was predicted completely
        assert (out / f"{p.stem}_labels.tif").exists() and (out / f"{p.stem}_objects.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        predict_files(trained, tmp_path / "in", tmp_path / "out2", progress=False, fail_fast=True)


def test_predict_cli_exits_non_zero_and_names_the_bad_file(trained, tmp_path) -> None:
    _images(tmp_path / "in")
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00garbage")
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            f"ckpt_path={trained}",
            f"input={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'out'}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 1
    assert "broken.tif" in r.stderr and "1 image(s) could not be predicted (2 were)" in r.stderr
    assert "good0" in r.stdout


def test_predict_on_a_missing_gpu_says_so(trained, tmp_path) -> None:
    from unet.predict import predict_files

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _images(tmp_path / "in", 1)
    with pytest.raises(ValueError, match=r"device=cuda: no CUDA GPU"):
        predict_files(trained, tmp_path / "in", tmp_path / "out", device="cuda")
    with pytest.raises(ValueError, match=r"device='banana'"):
        predict_files(trained, tmp_path / "in", tmp_path / "out", device="banana")
    assert not (tmp_path / "out").exists()


def test_predict_removes_temporaries_of_a_killed_run(trained, tmp_path) -> None:
    from unet.predict import predict_files

    (p,) = _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    stale_dir = out / f".{p.stem}_probabilities.zarr.0123456789ab.tmp"
    stale_dir.mkdir(parents=True)
    (stale_dir / "0.0").write_bytes(b"x")
    stale_file = out / f".{p.stem}_labels.tif.0123456789ab.tmp.tif"
    stale_file.write_bytes(b"half")
    other = out / ".someone_else.tif.0123456789ab.tmp.tif"
    other.write_bytes(b"not ours")
    predict_files(trained, p, out, progress=False)
    assert not stale_dir.exists() and not stale_file.exists() and other.exists()


def test_predict_tile_comes_from_a_machine_budget(trained, tmp_path, monkeypatch) -> None:
    """With no tile or budget given, a large image is cut into tiles from the machine's budget."""
    from unet import hardware
    from unet.memory import estimate_memory
    from unet.predict import files as predict

    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device="cpu": 8 * 64 * 2**20)
    assert hardware.default_tile_budget_mib("cpu") == 64.0
    seen = {}
    real = predict.tile_shape_for_budget

    def spy(net, budget, **kw):
        seen["budget"] = budget
        seen["tile"] = real(net, budget, **kw)
        seen["net"] = net
        return seen["tile"]

    monkeypatch.setattr(predict, "tile_shape_for_budget", spy)
    monkeypatch.setattr(predict, "default_tile_budget_mib", hardware.default_tile_budget_mib)
    image = tmp_path / "big.tif"
    io.write_tiff(image, np.random.default_rng(0).random((1024, 1024)).astype(np.float32))
    predict.predict_files(trained, image, tmp_path / "out", progress=False)
    assert seen["budget"] == 64 * 2**20
    assert estimate_memory(seen["net"], seen["tile"]) <= 64 * 2**20
    assert max(seen["tile"]) < 1024


def test_predict_into_a_read_only_folder_stops_before_any_work(trained, tmp_path, monkeypatch) -> None:
    """A folder that refuses files is reported with its name before any image is predicted. (Root ignores
    permission bits, so the refusal of the file system is simulated for that folder.)"""
    import tempfile

    from unet.predict import files as predict

    _images(tmp_path / "in", 2)
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir) == out:
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    predicted = []
    monkeypatch.setattr(predict, "predict_in_memory", lambda *a, **k: predicted.append(a) or [])
    try:
        with pytest.raises(
            PermissionError, match=r"readonly: output folder is not writable \(Permission denied"
        ):
            predict.predict_files(trained, tmp_path / "in", out, progress=False)
    finally:
        out.chmod(0o755)
    assert predicted == [] and list(out.iterdir()) == []


def test_a_truncated_tiff_is_refused_before_anything_is_predicted_and_nan_is_skipped(
    trained, tmp_path, caplog
) -> None:
    """The header of every input is checked first: a TIFF cut short (an interrupted copy) is refused before
    the first image is predicted. Values are known only when the pixels are read: a NaN image is skipped
    then, said as "skipped" (bad input) and not as "failed"."""
    import logging

    from unet.predict import PredictionFailed, predict_files

    good = _images(tmp_path / "in")
    cut = tmp_path / "in" / "cut.tif"
    io.write_tiff(cut, np.random.default_rng(0).random((64, 64), dtype=np.float32))
    cut.write_bytes(cut.read_bytes()[:4000])
    io.write_tiff(tmp_path / "in" / "nan.tif", np.full((64, 64), np.nan, np.float32))
    with caplog.at_level(logging.INFO, logger="unet.predict"), pytest.raises(PredictionFailed) as info:
        predict_files(trained, tmp_path / "in", tmp_path / "out", progress=False)
    assert sorted(p.name for p, _ in info.value.failures) == ["cut.tif", "nan.tif"]
    assert [r["image"] for r in info.value.summary] == [p.stem for p in good]
    lines = caplog.text.splitlines()
    refused = next(i for i, ln in enumerate(lines) if "cut.tif: skipped" in ln and "truncated" in ln)
    first_work = next(i for i, ln in enumerate(lines) if "image(s)" in ln and "model" in ln)
    assert refused < first_work  # refused in the pre-check, before the run started
    assert any("nan.tif: skipped" in ln and "NaN" in ln for ln in lines)
    assert not any("nan.tif: failed" in ln for ln in lines)


def test_resuming_a_finished_run_reports_its_best_value_and_runs_print_no_false_warnings(
    tmp_path, caplog
) -> None:
    """Resuming a run that has finished trains nothing and reports the best value it recorded (not None);
    the two warnings every run printed (torch's LeafSpec deprecation inside Lightning, Lightning's
    "dataloader is not resumable") are not shown."""
    import logging
    import warnings

    root = _folder(tmp_path / "data")
    run = tmp_path / "run"
    overrides = ["data=folder", f"data.root={root}", *SMALL, "trainer.max_epochs=1"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        first = train(train_config(run, overrides))
    texts = [str(w.message) for w in seen]
    assert not [t for t in texts if "LeafSpec" in t or "dataloader is not resumable" in t], texts
    cfg = train_config(run, overrides)
    cfg.ckpt_path = str(run / "checkpoints" / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="unet.cli.train"):
        value = train(cfg)
    assert value is not None and value == pytest.approx(first)
    assert f"done: val/iou = {value}" in caplog.text
