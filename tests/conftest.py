from __future__ import annotations

import os

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
