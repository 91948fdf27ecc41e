from __future__ import annotations

import math

import pytest
import torch

from unet.models import shapes
from unet.models.unet import UNet


def _pool_inputs(
    net: UNet, input_shape: tuple[int, ...]
) -> tuple[list[tuple[int, ...]], tuple[int, ...] | None]:
    """Run the real layers on the meta device without the shape check; record max-pool input sizes.

    Returns the pool input sizes and the output size, or None as output when the layers fail or a
    skip connection cannot be centre-cropped symmetrically to the up-sampled size.
    """
    try:
        return _run_layers(net, input_shape)
    except (RuntimeError, AssertionError):
        return [], None


def _run_layers(net: UNet, input_shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    hooks = [p.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[2:]))) for p in net.pools]
    x = torch.empty(1, net.in_channels, *input_shape, device="meta")
    skips = []
    for i, block in enumerate(net.encoder):
        x = block(x)
        if i < net.depth:
            skips.append(x)
            x = net.pools[i](x)
    for up, block in zip(net.upconvs, net.decoder):
        x = up(x)
        skip = skips.pop()
        assert all(s >= t and (s - t) % 2 == 0 for s, t in zip(skip.shape[2:], x.shape[2:]))
        x = block(torch.cat([skip[(..., *[slice(0, t) for t in x.shape[2:]])], x], 1))
    for h in hooks:
        h.remove()
    return seen, tuple(net.head(x).shape[2:])


def test_paper_network_572_to_388() -> None:
    net = UNet().to("meta")
    assert net.output_shape((572, 572)) == (388, 388)
    assert net.halo == (92, 92)
    assert net.features == [64, 128, 256, 512, 1024]
    # 2015 paper: 23 convolutional layers (18 3x3 convs, 4 up-convs, 1 head)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 23
    seen, out = _pool_inputs(net, (572, 572))
    assert seen == [(568, 568), (280, 280), (136, 136), (64, 64)]
    assert out == (388, 388)


@pytest.mark.parametrize(
    ("kwargs", "sizes"),
    [
        (dict(spatial_dims=2, depth=2, base_features=2), [(44, 44), (45, 47), (60, 93), (21, 30)]),
        (dict(spatial_dims=3, depth=1, base_features=2), [(20, 20, 20), (21, 22, 23), (33, 34, 35)]),
        (
            dict(spatial_dims=3, depth=2, base_features=2, element_size=(1.0, 0.3, 0.3)),
            [(24, 44, 44), (25, 44, 44), (33, 34, 35), (12, 60, 76)],
        ),
    ],
)
def test_output_shape_matches_real_layers(kwargs: dict, sizes: list) -> None:
    """Shape arithmetic agrees with the layers; validity == even sizes before every pooling (Falk M1)."""
    net = UNet(**kwargs).to("meta")
    for size in sizes:
        seen, out = _pool_inputs(net, size)
        pools = [lvl.pool for lvl in net.levels[:-1]]
        even = (
            out is not None
            and all(s % p == 0 for sz, pl in zip(seen, pools) for s, p in zip(sz, pl))
            and min(out) >= 1
        )
        if even:
            assert net.output_shape(size) == out
        else:
            with pytest.raises(ValueError, match="nearest valid"):
                net.output_shape(size)
        valid = net.valid_input_shape(size)
        assert all(v >= s for v, s in zip(valid, size))
        seen, out = _pool_inputs(net, valid)
        assert net.output_shape(valid) == out


def test_real_forward_2d_and_3d_odd_sizes() -> None:
    for net, shape in [
        (UNet(in_channels=3, num_classes=4, depth=2, base_features=4), (49, 61)),
        (UNet(spatial_dims=3, in_channels=2, num_classes=3, depth=1, base_features=2), (23, 29, 31)),
    ]:
        valid = net.valid_input_shape(shape)
        y = net(torch.randn(2, net.in_channels, *valid))
        assert tuple(y.shape) == (2, net.num_classes, *net.output_shape(valid))
        halo = net.halo
        assert all(v - o == 2 * h for v, o, h in zip(valid, y.shape[2:], halo))


def test_invalid_shape_error_names_nearest() -> None:
    net = UNet()
    with pytest.raises(ValueError, match=r"\(556, 572\).*\(572, 572\)"):
        net.output_shape((571, 572))
    with pytest.raises(ValueError, match="expected 2 spatial"):
        net.output_shape((572, 572, 572))
    with pytest.raises(ValueError, match="channel"):
        UNet(in_channels=2, depth=1, base_features=2)(torch.zeros(1, 1, 20, 20))


def test_anisotropic_levels_falk_m11() -> None:
    # z four times coarser: two in-plane-only levels, then isotropic (Falk 2019, M1.1)
    levels = shapes.anisotropic_levels((1.0, 0.25, 0.25), depth=4)
    assert [lvl.kernel for lvl in levels] == [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)]
    assert [lvl.pool for lvl in levels[:-1]] == [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert shapes.pooling_period(levels) == (4, 16, 16)
    # isotropic voxels give the isotropic network; 1.3x is "roughly isotropic", 2x is not
    assert shapes.anisotropic_levels((0.5, 0.5, 0.5), 3) == shapes.isotropic_levels(3, 3)
    assert shapes.anisotropic_levels((0.65, 0.5, 0.5), 3) == shapes.isotropic_levels(3, 3)
    assert shapes.anisotropic_levels((1.0, 0.5, 0.5), 3)[0].kernel == (1, 3, 3)
    net = UNet(spatial_dims=3, element_size=(1.0, 0.25, 0.25), base_features=2)
    assert net.encoder[0][0].kernel_size == (1, 3, 3)
    assert net.pools[0].kernel_size == (1, 2, 2)
    assert net.upconvs[-1].kernel_size == (1, 2, 2)


def test_paper_3d_variant_options() -> None:
    net = UNet(spatial_dims=3, base_features=32, last_up_features=32, depth=3).to("meta")
    assert net.features == [32, 64, 128, 256]
    assert net.upconvs[-1].out_channels == 32
    assert net.decoder[-1][0].in_channels == 32 + 32


def test_he_initialisation() -> None:
    net = UNet(base_features=32, depth=3)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.numel() > 20000:
            n_in = m.in_channels * math.prod(m.kernel_size)
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / n_in), rel=0.05)
            assert m.bias.abs().max().item() == 0
        if isinstance(m, torch.nn.ConvTranspose2d):
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / m.in_channels), rel=0.05)


def test_activation_dropout_norm_options() -> None:
    relu = UNet(negative_slope=0.0, depth=1, base_features=2)
    assert all(m.negative_slope == 0.0 for m in relu.modules() if isinstance(m, torch.nn.LeakyReLU))
    leaky = UNet(depth=1, base_features=2)
    assert all(m.negative_slope == 0.1 for m in leaky.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout2d)) for m in leaky.modules())
    net = UNet(depth=1, base_features=4, dropout=0.5, norm="batch")
    assert any(isinstance(m, torch.nn.Dropout2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    net(torch.randn(2, 1, 20, 20)).sum().backward()
    with pytest.raises(ValueError, match="unknown norm"):
        UNet(norm="layer")
