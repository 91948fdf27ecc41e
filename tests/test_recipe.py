"""The recipe's switches used by the ablations (tile sampling), the base model's pieces (several sources as
one, a slim model file) and the recipe table's arithmetic (benchmarks.arms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unet.checkpoint import load_project_checkpoint, slim_checkpoint
from unet.data.datamodule import UNetDataModule, to_model_grid
from unet.data.datasets import ConcatSource
from unet.data.items import Annotation, Item
from unet.models import shapes
from unet.models.card import CARD_KEY
from unet.models.unet import UNet
from unet.predict.image import ModelCard, load_model
from unet.tasks import SegmentationTask


def _item(name: str = "a", ignore: bool = True) -> Item:
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:15] = 1
    labels[20:30, 30:45] = 2
    ign = np.zeros((40, 50), bool)
    if ignore:
        ign[:, :4] = True
    image = np.random.default_rng(0).random((1, 40, 50)).astype(np.float32)
    return Item(name, image, Annotation(labels=labels, ignore=ign if ignore else None))


def test_w_bal_sampling_favours_foreground_by_one_over_v_bal() -> None:
    task = SegmentationTask(v_bal=0.1)
    p = to_model_grid(_item(), task, None, "minmax", sampling="w_bal").sampler.probabilities()
    fg = p[10, 10]
    far_bg = p[38, 20]  # background beyond the sigma_bal fall-off
    assert far_bg > 0
    assert fg / far_bg == pytest.approx(10.0, rel=0.05)
    assert (p[:, :4] == 0).all()


def test_uniform_sampling_draws_every_pixel_alike_outside_ignored_regions() -> None:
    task = SegmentationTask(v_bal=0.1)
    prep = to_model_grid(_item(), task, None, "minmax", sampling="uniform")
    p = prep.sampler.probabilities()
    assert (p[:, :4] == 0).all()
    valid = p[:, 4:]
    np.testing.assert_allclose(valid, 1.0 / valid.size)
    assert prep.mass == valid.size  # images drawn in proportion to their valid pixels
    # the loss weights are untouched: only where tiles come from changes
    ref = to_model_grid(_item(), task, None, "minmax", sampling="w_bal")
    np.testing.assert_array_equal(prep.weights, ref.weights)


def test_unknown_sampling_is_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.sampling"):
        UNetDataModule(None, None, None, None, "minmax", validate=True, sampling="pdf")


class _Source:
    def __init__(self, root: str, names: dict[str, list[str]]) -> None:
        self.root, self.names = root, names

    def _items(self, split: str) -> list[Item]:
        return [_item(n, ignore=False) for n in self.names[split]]

    def train_items(self):
        return self._items("train")

    def val_items(self):
        return self._items("val")

    def test_items(self):
        return self._items("test")


def test_concat_source_unites_splits_and_keeps_equal_stems_apart() -> None:
    a = _Source("/data/set-a", {"train": ["t01", "t02"], "val": ["t03"], "test": ["t04"]})
    b = _Source("/data/set-b", {"train": ["t01"], "val": [], "test": ["t09"]})
    src = ConcatSource([a, b])
    assert [i.name for i in src.train_items()] == ["set-a:t01", "set-a:t02", "set-b:t01"]
    assert [i.name for i in src.val_items()] == ["set-a:t03"]
    assert [i.name for i in src.test_items()] == ["set-a:t04", "set-b:t09"]
    with pytest.raises(ValueError, match="empty"):
        ConcatSource([])


def test_slim_checkpoint_is_smaller_and_predicts_like_the_full_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4)
    card = ModelCard(net.config, SegmentationTask().config(), None, "minmax")
    state = {"net." + k: v for k, v in net.state_dict().items()}
    opt = {"state": {i: {"exp_avg": torch.randn(1000)} for i in range(5)}}
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": state, CARD_KEY: card.to_dict(), "optimizer_states": [opt]}, full)
    slim_checkpoint(full, tmp_path / "slim.ckpt")
    assert (tmp_path / "slim.ckpt").stat().st_size < full.stat().st_size / 2
    ck = load_project_checkpoint(tmp_path / "slim.ckpt")
    assert "optimizer_states" not in ck
    assert all(v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())
    a, _, _ = load_model(str(full))
    b, _, _ = load_model(str(tmp_path / "slim.ckpt"))
    x = torch.rand(1, 1, *shapes.valid_input_shape(net.levels, (40, 40)))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert next(b.parameters()).dtype == torch.float32
    torch.testing.assert_close(ya, yb, atol=2e-2, rtol=0)
    assert not torch.equal(ya, yb)  # the weights really went through float16


def test_recipe_table_means_spreads_and_what_each_part_pays() -> None:
    from benchmarks import arms

    def rec(arm: str, seed: int, iou: float) -> dict:
        mean = {
            "mean_iou": iou,
            "f1": iou,
            "ap": iou / 2,
            "mean_iou_components": iou,
            "mean_iou_watershed": 0.5,
        }
        return {
            "experiment": "ctc-fluo-n2dh-gowt1",
            "task": "segmentation",
            "arm": arm,
            "seed": seed,
            "mean": mean,
        }

    records = [rec("ours", 0, 0.8), rec("ours", 1, 0.9), rec("ours", 2, 0.7), rec("no_sep", 0, 0.6)]
    lines = arms.table(records)
    iou_row = next(line for line in lines if "object IoU" in line)
    assert "0.800 ± 0.100" in iou_row  # mean and sample standard deviation over the three seeds
    assert "| 0.600 |" in iou_row  # one seed: no spread shown
    pays = next(line for line in lines if line.startswith("- `ctc-fluo-n2dh-gowt1`"))
    assert "λ_sep = 0 +0.200" in pays


def test_recipe_jobs_skip_separation_ablations_for_detection() -> None:
    from benchmarks import arms

    jobs = arms.jobs_for(
        ["mbm-bonemarrow-dots", "ctc-fluo-n2dh-gowt1"], ["ours", "no_sep", "uniform"], {"ours": 2, "*": 1}
    )
    assert ("mbm-bonemarrow-dots", "no_sep", 0) not in jobs
    assert ("ctc-fluo-n2dh-gowt1", "no_sep", 0) in jobs
    assert ("ctc-fluo-n2dh-gowt1", "ours", 1) in jobs
    assert ("ctc-fluo-n2dh-gowt1", "uniform", 1) not in jobs
    assert jobs.index(("mbm-bonemarrow-dots", "uniform", 0)) < jobs.index(("mbm-bonemarrow-dots", "ours", 1))


def test_peer_widths_and_crop_follow_ours() -> None:
    from benchmarks import peer_monai

    class Net(dict):
        __getattr__ = dict.get

    assert peer_monai.peer_features(Net(base_features=32, depth=4)) == (32, 64, 128, 256, 512, 32)
    assert peer_monai.peer_features(Net(base_features=16, depth=2)) == (16, 32, 64, 64, 64, 16)
    capped = Net(base_features=16, depth=4, max_features=64)
    assert peer_monai.peer_features(capped) == (16, 32, 64, 64, 64, 16)
    assert peer_monai.crop_size((212, 100), [(1024, 1024), (90, 96)]) == (208, 96)
    assert peer_monai.crop_size((40, 300, 300), [(30, 100, 100)]) == (16, 96, 96)


def test_cpu_budget_counts_process_time_not_the_wall_clock(tmp_path: Path) -> None:
    """The recipe table's budget: a run that sleeps spends none of it; computing does."""
    import time
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from benchmarks.common import compose_config
    from benchmarks.cpu_budget import CpuBudget

    cfg = compose_config("ctc-fluo-n2dh-gowt1", tmp_path, tmp_path, 0.5 / 60, [])
    budget = instantiate(cfg.callbacks.cpu_budget)
    assert isinstance(budget, CpuBudget) and budget.seconds == pytest.approx(0.5)
    trainer = SimpleNamespace(should_stop=False)
    budget.on_train_start(trainer, None)
    time.sleep(0.6)  # wall time passes, CPU time does not
    budget.on_train_batch_end(trainer)
    assert not trainer.should_stop
    t0 = time.process_time()
    while time.process_time() - t0 < 0.6:
        sum(range(1000))
    budget.on_train_batch_end(trainer)
    assert trainer.should_stop


def test_recipe_table_ap50_mixes_old_and_new_records() -> None:
    """AP@0.5 = tp / (tp + fp + fn) at IoU 0.5: from a record's ``ap50`` where it has one, else from the
    per-image tp/fp/fn of records written before it was reported."""
    from benchmarks import arms, quality

    def rec(seed: int, images: list[dict], mean: dict) -> dict:
        return {
            "experiment": "dsb2018-subset",
            "task": "segmentation",
            "arm": "ours",
            "seed": seed,
            "mean": {"mean_iou": 0.7, "f1": 0.8, "ap": 0.5, **mean},
            "images": images,
            "train_minutes": 4.0,
            "n_test": len(images),
        }

    old = rec(0, [{"tp": 1, "fp": 2, "fn": 2}, {"tp": 3, "fp": 0, "fn": 1}], {})  # 0.2 and 0.75
    new = rec(1, [{"tp": 1, "fp": 0, "fn": 0, "ap50": 1.0}], {"ap50": 0.5})  # the stored mean wins
    assert quality.record_mean(old, "ap50") == pytest.approx(0.475)
    assert quality.record_mean(new, "ap50") == 0.5
    row = next(line for line in arms.table([old, new]) if "| AP@0.5 |" in line)
    mean, sd = np.mean([0.475, 0.5]), np.std([0.475, 0.5], ddof=1)
    assert f"| {mean:.3f} ± {sd:.3f} |" in row and sd > 0.01
    assert next(line for line in quality.table_rows(old) if "AP@0.5" in line[2])[3] == "0.4750"
    detection = {**old, "task": "detection", "experiment": "mbm-bonemarrow-dots"}
    assert quality.record_mean(detection, "ap50") is None
