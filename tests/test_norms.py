"""Normalisation layers: seam-free candidates against brute-force references and tile invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet.data.preprocess import normalize
from unet.models import norms
from unet.models.unet import UNet
from unet.tiling import predict_tiled


def _ramp_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, size=shape).astype(np.float32)
    # a slow gradient: tiles of different places then have different statistics
    ramp = np.linspace(0, 150, shape[-1], dtype=np.float32)
    return normalize((img + ramp)[None])


def test_channel_norm_is_layer_norm_over_channels_at_each_voxel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    m = norms.ChannelNorm(6)
    with torch.no_grad():
        m.weight.uniform_(0.5, 2)
        m.bias.uniform_(-1, 1)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), m.weight, m.bias, eps=m.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_instance_norm_trains_per_sample_and_keeps_torch_state_dict() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 9) * 2 + 5
    ours, ref = norms.InstanceNorm(4), torch.nn.InstanceNorm2d(4, affine=True)
    ref.load_state_dict(ours.state_dict())  # same keys: old checkpoints load
    torch.testing.assert_close(ours(x), ref(x))


def test_instance_norm_with_fixed_statistics_is_the_whole_pass() -> None:
    """Inside ``image_statistics``, a crop of the input is normalised with the whole input's mean and
    variance (brute force: numpy over the whole tensor)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(norms.InstanceNorm(3))
    x = torch.randn(1, 3, 10, 12) * 4 + 2
    with norms.image_statistics(net, x):
        y = net(x[..., 2:6, 3:9])
    xn = x.numpy()[0]
    mean = xn.mean(axis=(1, 2))[:, None, None]
    std = np.sqrt(xn.var(axis=(1, 2))[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.detach().numpy()[0], ((xn - mean) / std)[:, 2:6, 3:9], atol=1e-5)
    assert net[0].fixed is None  # statistics do not outlive the block


@pytest.mark.parametrize("norm", ["instance", "channel"])
def test_seam_free_norms_give_the_same_probabilities_for_every_tiling_2d(norm: str) -> None:
    """One network, two different tile shapes and one whole-image pass: the same probabilities (1e-5)."""
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4, norm=norm).eval()
    image = _ramp_image((130, 150))
    whole = predict_tiled(net, image)
    for tile in ((60, 60), (76, 92)):
        np.testing.assert_allclose(predict_tiled(net, image, tile_shape=tile, batch_size=2), whole, atol=1e-5)


@pytest.mark.parametrize("norm", ["instance", "channel"])
def test_seam_free_norms_give_the_same_probabilities_for_every_tiling_3d(norm: str) -> None:
    torch.manual_seed(0)
    net = UNet(
        in_channels=1, spatial_dims=3, depth=2, base_features=2, norm=norm, element_size=(2.0, 1.0, 1.0)
    ).eval()
    image = _ramp_image((30, 60, 56))
    whole = predict_tiled(net, image)
    tiled = predict_tiled(net, image, tile_shape=(18, 44, 44))
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_group_norm_is_not_seam_free_and_is_named_so() -> None:
    """The control: group norm takes the tile's statistics, so two tilings differ (the test above could
    fail)."""
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=8, norm="group").eval()
    image = _ramp_image((130, 150))
    assert np.abs(predict_tiled(net, image) - predict_tiled(net, image, tile_shape=(60, 60))).max() > 1e-3
    assert norms.is_tile_dependent("group") and not norms.is_tile_dependent("instance")


def test_instance_statistics_of_a_large_image_come_from_a_fixed_centred_region() -> None:
    start, shape = norms.statistics_region((30, 5000, 300), max_voxels=1_000_000)
    assert np.prod(shape) <= 1_000_000
    assert start == tuple((s - r) // 2 for s, r in zip((30, 5000, 300), shape))
    assert norms.statistics_region((100, 120)) == ((0, 0), (100, 120))
    # the region depends on the image alone: a budget-sized tiling of a large image still matches
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4, norm="instance").eval()
    image = _ramp_image((90, 200))
    old = norms.STATS_MAX_VOXELS
    try:
        norms.STATS_MAX_VOXELS = 90 * 60
        whole = predict_tiled(net, image)
        np.testing.assert_allclose(predict_tiled(net, image, tile_shape=(60, 60)), whole, atol=1e-5)
    finally:
        norms.STATS_MAX_VOXELS = old


def test_one_tile_covering_the_image_is_its_own_calibration_pass() -> None:
    """When the plan is a single tile covering the image, that tile is the whole-image pass: the network
    runs once (not a calibration pass and then the same tile again), with the same probabilities."""
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4, norm="instance").eval()
    image = _ramp_image((100, 120))
    calls = []
    hook = net.register_forward_pre_hook(lambda m, a: calls.append(tuple(a[0].shape)))
    try:
        whole = predict_tiled(net, image)
        assert len(calls) == 1
        calls.clear()
        tiled = predict_tiled(net, image, tile_shape=(60, 60))
        assert len(calls) > 2 and calls[0][2:] != (60, 60)  # a separate calibration pass first
    finally:
        hook.remove()
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
