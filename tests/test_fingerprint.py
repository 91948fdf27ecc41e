"""The dataset fingerprint: object diameters against analytic discs and balls, sigma_sep from them, and
train.py's ``task.sigma_sep=auto`` resolved before training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from unet import io
from unet.cli.train import build
from unet.constants import SIGMA_SEP
from unet.data.fingerprint import median_object_diameter, object_diameters, sigma_sep_for
from unet.data.synthetic import synthetic_cells
from unet.tasks import SegmentationTask

ROOT = Path(__file__).resolve().parents[1]


def _disc(shape, centre, r):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r


def test_diameters_of_discs_and_balls_are_their_diameters():
    lab = np.zeros((200, 200), np.int32)
    lab[_disc(lab.shape, (50, 50), 20)] = 1
    lab[_disc(lab.shape, (140, 140), 8)] = 2
    np.testing.assert_allclose(object_diameters(lab), [40, 16], rtol=0.03)
    np.testing.assert_allclose(object_diameters(lab, (0.5, 0.5)), [20, 8], rtol=0.03)
    ball = _disc((40, 40, 40), (20, 20, 20), 10).astype(np.int32)
    np.testing.assert_allclose(object_diameters(ball, (2.0, 1.0, 1.0)), [20 * 2 ** (1 / 3)], rtol=0.03)
    d, n = median_object_diameter([(lab, None), (ball, None)])
    assert n == 3 and d == pytest.approx(object_diameters(ball)[0])


def test_sigma_sep_keeps_the_papers_ratio_within_bounds():
    assert sigma_sep_for(48.0) == pytest.approx(SIGMA_SEP)  # the default 6 px for a 48 px cell
    assert sigma_sep_for(16.0) == pytest.approx(2.0)
    assert sigma_sep_for(400.0) == SIGMA_SEP and sigma_sep_for(3.0) == 1.0
    assert sigma_sep_for(None) == SIGMA_SEP
    with pytest.raises(ValueError, match=r"task\.sigma_sep must be a number"):
        SegmentationTask(sigma_sep="wide")


def test_train_resolves_sigma_sep_auto_from_the_training_labels(tmp_path, caplog):
    root = tmp_path / "data"
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            image, labels = synthetic_cells(
                (96, 96), np.random.default_rng([3, i]), n_cells=6, radius=(6.0, 6.0)
            )
            io.write_tiff(root / split / "images" / f"im{i}.tif", image[0], element_size=(0.5, 0.5))
            io.write_tiff(root / split / "labels" / f"im{i}.tif", labels, element_size=(0.5, 0.5))
    over = [
        "data=folder",
        f"data.root={root}",
        "model.net.base_features=4",
        "model.net.depth=2",
        "logger=csv",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}/run", *over, "task.sigma_sep=auto"])
    with caplog.at_level(logging.INFO, logger="unet.cli.train"):
        task, model, _, _ = build(cfg)
    assert 10.0 < task.object_diameter < 14.0  # cells of radius 6 px
    assert task.sigma_sep == pytest.approx(task.object_diameter / 8, rel=1e-3)
    assert model.card.task["sigma_sep"] == task.sigma_sep and model.card.task["object_diameter"]
    assert "fingerprint: median object diameter" in caplog.text and "-> task.sigma_sep" in caplog.text
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        fixed = compose("train", overrides=[f"paths.output_dir={tmp_path}/run2", *over, "task.sigma_sep=3"])
    assert build(fixed)[0].sigma_sep == 3  # a number wins
