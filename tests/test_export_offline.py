"""Offline consumer-parity check at full size (issue #22), marked slow (deselected by default; about 15 min
on one CPU thread): ``python -m pytest tests/test_export_offline.py -m slow -n 0 -s``.

bioimageio.core's whole-image and blockwise predictions of a 2048 x 2048 image (2D, depth 2 and depth 3)
and of a (24, 256, 256) stack (anisotropic 3D) equal predict.py's probabilities to 1e-4 for every weight
format of the package. Tiny untrained nets; the package is the one export_model writes (with its own check).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_network

from unet.export import consumer_predictions, export_model, synthetic_image
from unet.models.unet import UNet
from unet.predict.image import ModelCard, load_model, predict_image
from unet.tasks import SegmentationTask

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
]

CASES = {
    "2d": ({"spatial_dims": 2, "depth": 2, "base_features": 4}, (2048, 2048), (10, 50, 200)),
    "2d-depth3": ({"spatial_dims": 2, "depth": 3, "base_features": 4}, (2048, 2048), (10, 60)),
    "3d-aniso": (
        {"spatial_dims": 3, "depth": 2, "base_features": 4, "element_size": (2.0, 0.5, 0.5)},
        (24, 256, 256),
        (3, 10),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_consumer_parity_at_full_size(tmp_path: Path, name: str) -> None:
    from bioimageio.spec import load_description

    torch.set_num_threads(1)
    kwargs, shape, blocksizes = CASES[name]
    torch.manual_seed(0)
    net = UNet(**kwargs)
    card = ModelCard(
        net.config, SegmentationTask().config(), kwargs.get("element_size", (0.5, 0.5)), "minmax"
    )
    ckpt = tmp_path / "m.ckpt"
    save_network(ckpt, net, card)
    descr = load_description(export_model(ckpt, tmp_path / "pkg.zip", authors=[{"name": "A B"}]))
    net, _, card = load_model(str(ckpt))
    image = synthetic_image(shape, 1, seed=2)
    expect = predict_image(net, image, element_size=card.element_size, card=card, precision="32-true")
    diffs = {}
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        for n in (None, *blocksizes):
            t = time.perf_counter()
            got = consumer_predictions(descr, image, fmt, n)
            what = "whole" if n is None else f"blocksize {n}"
            assert got.shape == expect.shape
            diffs[fmt, what] = float(np.abs(got - expect).max())
            seconds = time.perf_counter() - t
            print(f"{name} {shape} {fmt} {what}: max abs diff {diffs[fmt, what]:.2e} ({seconds:.0f} s)")
    assert max(diffs.values()) < 1e-4, diffs
