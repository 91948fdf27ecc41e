from __future__ import annotations

import numpy as np
import pytest
import torch

from unet.models import shapes
from unet.models.unet import UNet, center_crop
from unet.tiling import plan_tiles, predict_tiled, read_mirrored, reflect_indices


class CropTimesTwo(torch.nn.Module):
    """Analytic predictor with a U-Net's geometry: output = 2 * centre crop of the input (K = C)."""

    def __init__(self, levels, channels: int) -> None:
        super().__init__()
        self.levels = levels
        self.spatial_dims = len(levels[0].kernel)
        self.in_channels = self.num_classes = channels
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * center_crop(x, shapes.output_shape(self.levels, x.shape[2:]))


def _whole(net: UNet, image: np.ndarray) -> np.ndarray:
    """Reference: the network applied once to the whole mirror-padded image."""
    size = image.shape[1:]
    padded_in = shapes.input_shape_for_output(net.levels, size)
    pad = [(0, 0)] + [(h, p - s - h) for h, p, s in zip(net.halo, padded_in, size)]
    x = torch.from_numpy(np.pad(image, pad, mode="reflect")).double()[None]
    with torch.no_grad():
        y = torch.softmax(net.double()(x), 1)[0].numpy()
    net.float()
    return y[(slice(None), *[slice(0, s) for s in size])]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_reflect_indices_equal_numpy_reflect(n: int) -> None:
    for pad in (0, 1, n, 3 * n + 2):
        ref = np.pad(np.arange(n), (pad, pad + 1), mode="reflect")
        assert np.array_equal(reflect_indices(-pad, n + 2 * pad + 1, n), ref)


@pytest.mark.parametrize(
    ("spatial_dims", "image_shape", "tile"),
    [
        (2, (1, 37, 53), (60, 60)),
        (2, (1, 37, 53), (92, 76)),
        (2, (3, 5, 9), (44, 44)),
        (3, (2, 9, 13, 11), None),
    ],
)
def test_analytic_predictor_is_exact(spatial_dims: int, image_shape: tuple, tile: tuple | None, rng) -> None:
    depth = 2 if spatial_dims == 2 else 1
    net = CropTimesTwo(shapes.isotropic_levels(spatial_dims, depth), image_shape[0])
    if tile is None:
        tile = shapes.input_shape_for_output(net.levels, (4,) * spatial_dims)
    image = rng.random(image_shape).astype(np.float32)
    out = predict_tiled(net, image, tile_shape=tile, batch_size=3, activation="none")
    assert np.array_equal(out, 2 * image)


@pytest.mark.parametrize(
    ("kwargs", "image_shape", "tile"),
    [
        (dict(spatial_dims=2, in_channels=1, num_classes=2, depth=2, base_features=4), (1, 45, 61), (60, 60)),
        (dict(spatial_dims=2, in_channels=3, num_classes=3, depth=2, base_features=4), (3, 33, 70), (60, 76)),
        (dict(spatial_dims=2, in_channels=1, num_classes=2, depth=2, base_features=4), (1, 7, 5), (60, 60)),
        (
            dict(spatial_dims=3, in_channels=2, num_classes=2, depth=1, base_features=2),
            (2, 11, 15, 13),
            (20, 22, 24),
        ),
        (
            dict(
                spatial_dims=3, in_channels=1, num_classes=2, depth=1, base_features=2, element_size=(2, 1, 1)
            ),
            (1, 9, 23, 19),
            (8, 22, 24),
        ),
    ],
)
def test_tiled_equals_whole_image(kwargs: dict, image_shape: tuple, tile: tuple, rng) -> None:
    """Stitched tiles == one pass over the whole mirror-padded image (seam-free by construction)."""
    net = UNet(**kwargs)
    image = rng.random(image_shape).astype(np.float32)
    plan = plan_tiles(net.levels, image_shape[1:], tile)
    assert len(plan) > 1 or max(image_shape[1:]) < 8
    assert all(st % p == 0 for st, p in zip(plan.stride, net.pooling_period) if st < plan.image_shape[0])
    tiled = predict_tiled(net, image, tile_shape=tile, batch_size=2)
    whole = _whole(net, image.astype(np.float64))
    assert tiled.shape == (net.num_classes, *image_shape[1:])
    assert np.abs(tiled - whole).max() <= 1e-5


def test_paper_stride_would_break_equivariance(rng) -> None:
    """Why the stride is a multiple of the pooling period: a tile shifted by its output size (not a
    multiple of the period for depth >= 3, e.g. 388 vs 16 in the paper) sees another max-pool grid."""
    net = UNet(depth=3, base_features=2)
    tile = net.valid_input_shape((100, 100))
    out = net.output_shape(tile)[0]
    period = net.pooling_period[0]
    assert out % period != 0
    long = net.valid_input_shape((tile[0] + out, tile[1]))
    image = torch.from_numpy(rng.random((1, 1, *long)).astype(np.float32))
    with torch.no_grad():
        whole = net(image)
        for shift, equal in [(out, False), ((out // period) * period, True)]:
            part = net(image[:, :, shift : shift + tile[0], : tile[1]])
            ref = whole[:, :, shift : shift + out, : part.shape[3]]
            assert torch.allclose(part, ref, atol=1e-5) == equal


def test_tta_flips_average_of_flipped_predictions(rng) -> None:
    net = UNet(depth=1, base_features=4)
    image = rng.random((1, 24, 24)).astype(np.float32)
    tile = net.valid_input_shape((64, 64))
    tta = predict_tiled(net, image, tile_shape=tile, tta="flips")
    ref = np.zeros_like(tta)
    for axes in [(), (1,), (2,), (1, 2)]:
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        pred = predict_tiled(net, flipped, tile_shape=tile)
        ref += np.flip(pred, axes) if axes else pred
    assert np.abs(tta - ref / 4).max() < 1e-5
    d4 = predict_tiled(net, image, tile_shape=tile, tta="d4")
    assert np.allclose(d4.sum(0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="square"):
        predict_tiled(net, np.zeros((1, 60, 60), np.float32), tile_shape=(36, 52), tta="d4")


def test_out_of_core_reading_and_writing(tmp_path, rng) -> None:
    """Tiles are read from a memmap and written into a preallocated memmap."""
    net = UNet(depth=1, base_features=2)
    data = rng.random((1, 50, 41)).astype(np.float32)
    src = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=data.shape)
    src[:] = data
    dst = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(2, 50, 41))
    done = []
    predict_tiled(net, src, tile_shape=(28, 28), out=dst, progress=done.append)
    assert done[-1] == len(plan_tiles(net.levels, (50, 41), (28, 28)))
    assert np.abs(np.asarray(dst) - predict_tiled(net, data)).max() < 1e-5
    window = read_mirrored(src, (-3, 38), (10, 8))
    assert np.array_equal(window, np.pad(data, ((0, 0), (3, 3), (0, 5)), mode="reflect")[:, :10, 38:46])


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((2, 30, 30), np.float32), "expects 1 channel"),
        (np.zeros((30, 30), np.float32), "spatial dimensions"),
        (np.zeros((1, 0, 30), np.float32), "empty"),
        (np.full((1, 30, 30), np.nan, np.float32), "NaN"),
        (np.zeros((1, 30, 30), bool), "numeric"),
    ],
)
def test_bad_input_raises_before_compute(image: np.ndarray, match: str) -> None:
    net = UNet(depth=1, base_features=2)
    with pytest.raises(ValueError, match=match):
        predict_tiled(net, image, name="cells.tif")


def test_invalid_tile_names_nearest() -> None:
    net = UNet(depth=2, base_features=2)
    with pytest.raises(ValueError, match="nearest valid"):
        predict_tiled(net, np.zeros((1, 100, 100), np.float32), tile_shape=(61, 61))


def test_d4_refuses_anisotropic_pixels_but_flips_are_fine() -> None:
    from unet.tiling import check_tta

    check_tta("d4", None)
    check_tta("d4", (2.0, 0.5, 0.5))  # 3D: z may differ, y/x rotate
    check_tta("flips", (1.0, 0.5))
    with pytest.raises(ValueError, match=r"img\.tif.*pixel sizes differ.*flips"):
        check_tta("d4", (1.0, 0.5), "img.tif")
