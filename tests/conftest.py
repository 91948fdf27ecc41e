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
