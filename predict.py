"""Overlap-tile prediction demo on a synthetic image (until training lands)."""

from __future__ import annotations

import logging
import time

import numpy as np

from unet.memory import tile_shape_for_budget
from unet.models.unet import UNet
from unet.tiling import plan_tiles, predict_tiled

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    image = rng.random((1, 1000, 1300), dtype=np.float32)
    net = UNet(base_features=16)
    tile = tile_shape_for_budget(net, 256 * 2**20, max_shape=tuple(s + 184 for s in image.shape[1:]))
    plan = plan_tiles(net.levels, image.shape[1:], tile)
    t0 = time.perf_counter()
    probs = predict_tiled(net, image, tile_shape=tile)
    logging.info(
        "overlap-tile prediction of a %s image: tile %s -> %s, %d tiles, %.1f s; probabilities %s sum to 1: %s",
        image.shape[1:], plan.input_tile, plan.output_tile, len(plan), time.perf_counter() - t0,
        probs.shape, bool(np.allclose(probs.sum(0), 1, atol=1e-5)),
    )
