from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    # one thread per pytest-xdist worker (two workers share the two cores), two when run serially
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_report_header(config) -> list[str]:
    """Which precision the tests ran in: ``precision=auto`` (training, validation, predict) on this machine,
    and whether bf16 is native here (``UNET_NATIVE_BF16=0|1`` runs the suite as on the other kind of CPU).
    Tests that compare numbers pin their precision (float32, or bf16 forced), so both kinds of CPU pass."""
    from unet.hardware import NATIVE_BF16_ENV, auto_precision, cpu_has_native_bf16

    forced = os.environ.get(NATIVE_BF16_ENV)
    return [
        f"unet: precision=auto -> {auto_precision('cpu')} on this CPU (native bf16: {cpu_has_native_bf16()}"
        + (f", forced by {NATIVE_BF16_ENV}={forced}" if forced else "")
        + ")"
    ]


CONF = Path(__file__).resolve().parents[1] / "conf"


def train_config(output_dir: Path | str, overrides: Sequence[str], data_root: Path | str | None = None):
    """The config ``python train.py <overrides>`` composes, with ``paths.output_dir=output_dir`` and
    ``paths.data_root`` (default ``<output_dir>/data``), the two paths Hydra's runtime fills in. The one
    helper every test file composes train.py's config with (``from conftest import train_config``)."""
    from hydra import compose, initialize_config_dir

    from unet import config

    config.register()
    root = data_root if data_root is not None else f"{output_dir}/data"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "train", overrides=[f"paths.output_dir={output_dir}", f"paths.data_root={root}", *overrides]
        )


def save_network(path: Path | str, net, card, **extra) -> Path:
    """Write a checkpoint of this project for ``net`` with its model card (``card``: a ``ModelCard`` or its
    dict), as training writes them (``net.``-prefixed state dict under ``state_dict``) plus ``extra`` entries;
    returns the path. The one helper the test files make model files with (``from conftest import ...``)."""
    import torch

    from unet.models.card import CARD_KEY

    state = {"net." + k: v for k, v in net.state_dict().items()}
    card = card if isinstance(card, dict) else card.to_dict()
    torch.save({"state_dict": state, CARD_KEY: card, **extra}, path)
    return Path(path)
