from __future__ import annotations

import pytest

from unet.memory import estimate_memory, measure_memory, tile_shape_for_budget
from unet.models.unet import UNet

CASES = [
    (dict(depth=3, base_features=4), (124, 140)),
    (dict(depth=2, base_features=4, in_channels=3, num_classes=4), (92, 92)),
    (dict(spatial_dims=3, depth=2, base_features=2, element_size=(1.0, 0.5, 0.5)), (24, 44, 44)),
]


@pytest.mark.parametrize(("kwargs", "shape"), CASES)
def test_inference_estimate_equals_measurement(kwargs: dict, shape: tuple) -> None:
    net = UNet(**kwargs)
    est = estimate_memory(net, shape, batch_size=2)
    assert est == pytest.approx(measure_memory(net, shape, batch_size=2), rel=0.02)


@pytest.mark.parametrize(("kwargs", "shape"), CASES)
def test_training_estimate_close_to_measurement(kwargs: dict, shape: tuple) -> None:
    net = UNet(**kwargs)
    est = estimate_memory(net, shape, batch_size=2, train=True)
    assert est == pytest.approx(measure_memory(net, shape, batch_size=2, train=True), rel=0.25)


def test_tile_from_budget_is_largest_that_fits() -> None:
    net = UNet(depth=2, base_features=4)
    budget = 8 * 2**20
    tile = tile_shape_for_budget(net, budget, headroom=1.0)
    assert net.output_shape(tile)  # valid
    assert estimate_memory(net, tile) <= budget
    period = net.pooling_period
    assert estimate_memory(net, (tile[0] + period[0], tile[1])) > budget or tile[0] < tile[1]
    assert estimate_memory(net, (tile[0], tile[1] + period[1])) > budget
    assert abs(tile[0] - tile[1]) <= period[0]
    # the measurement agrees that it fits (CPU, live tensor bytes)
    assert measure_memory(net, tile) <= budget
    train_tile = tile_shape_for_budget(net, budget, train=True, headroom=1.0)
    assert train_tile[0] < tile[0]
    capped = tile_shape_for_budget(net, budget, max_shape=(60, 2000))
    assert capped[0] <= net.valid_input_shape((60, 60))[0]
    assert capped[1] > tile[1]
    with pytest.raises(ValueError, match="smallest valid tile"):
        tile_shape_for_budget(net, 1000)
