"""Tests of the one-resampling tile augmentation (Falk et al. 2019, M3; Ronneberger et al. 2015, Sec. 3.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from unet.data.augment import (
    AugmentParams,
    TileTransform,
    augment_batch,
    coarse_grid_shape,
    cubic_interpolation_matrix,
    dense_displacement,
    intensity_control_points,
    intensity_curve,
    random_transform,
    sampling_grid,
    warp_tiles,
)

# ------------------------------------------------------------------------------------------------ helpers


def _crop(arr: np.ndarray, centre: np.ndarray, shape: tuple[int, ...], mode: str = "reflect") -> np.ndarray:
    """Plain crop of the trailing len(shape) axes, tile pixel i <-> c - n//2 + i, mirrored outside."""
    nd = len(shape)
    pad = max(shape)
    padded = np.pad(arr, [(0, 0)] * (arr.ndim - nd) + [(pad, pad)] * nd, mode=mode)
    sl = tuple(slice(c - n // 2 + pad, c - n // 2 + pad + n) for c, n in zip(centre, shape, strict=True))
    return padded[(..., *sl)]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6, rtol: float = 1e-6) -> None:
    """np.testing on tensors (torch.testing's first call costs ~1 s of lazy imports)."""
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=atol, rtol=rtol)


def _centre(arr: np.ndarray, tile_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    sl = tuple(slice((i - o) // 2, (i - o) // 2 + o) for i, o in zip(tile_shape, out_shape, strict=True))
    return arr[(..., *sl)]


def _regions(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Label map of n large Voronoi regions (labels 1..n), int64."""
    seeds = np.stack([rng.integers(0, s, n) for s in shape], axis=1)
    pts = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    d = ((pts[..., None, :] - seeds) ** 2).sum(-1)
    return (d.argmin(-1) + 1).astype(np.int64)


def _interior(labels: np.ndarray) -> np.ndarray:
    """1 where the full 3^d neighbourhood has the same label (no boundary within 1 px)."""
    same = ndimage.maximum_filter(labels, size=3, mode="mirror") == ndimage.minimum_filter(
        labels, 3, mode="mirror"
    )
    return same.astype(np.float32)


# ------------------------------------------------------------------------------------ identity == crop


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_zero_params_is_exact_crop_2d(interpolation: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((2, 64, 64), dtype=np.float32)
    target = rng.integers(0, 7, (64, 64))
    weights = rng.random((64, 64), dtype=np.float32)
    tile_shape, out_shape = (40, 41), (20, 19)
    centres = np.array([[32, 31], [0, 0], [63, 63], [2, 60], [50, 1]])
    img_t, tgt_t, w_t = augment_batch(
        image,
        target,
        weights,
        centres,
        tile_shape,
        out_shape,
        AugmentParams(interpolation=interpolation),
        rng,
    )
    assert img_t.shape == (5, 2, *tile_shape) and img_t.dtype == torch.float32
    assert tgt_t is not None and tgt_t.shape == (5, *out_shape) and tgt_t.dtype == torch.int64
    assert w_t is not None and w_t.shape == (5, *out_shape) and w_t.dtype == torch.float32
    for b, c in enumerate(centres):
        crop = _crop(image, c, tile_shape)
        np.testing.assert_allclose(img_t[b].numpy(), crop, atol=2e-5, rtol=0)
        np.testing.assert_array_equal(
            tgt_t[b].numpy(), _centre(_crop(target, c, tile_shape), tile_shape, out_shape)
        )
        np.testing.assert_allclose(
            w_t[b].numpy(), _centre(_crop(weights, c, tile_shape), tile_shape, out_shape), atol=2e-5, rtol=0
        )


def test_reflection_convention_is_numpy_reflect_not_symmetric() -> None:
    """grid_sample(padding_mode='reflection', align_corners=True) mirrors about the border pixel centres."""
    image = np.arange(10, dtype=np.float32)[None, None, :].repeat(4, axis=1)  # (1, 4, 10), x ramp
    grid = sampling_grid(np.array([[2, 0]]), (4, 7), None, (4, 10))
    tile = warp_tiles(image, None, None, grid, (4, 7))[0][0, 0, 0].numpy()
    np.testing.assert_allclose(tile, [3, 2, 1, 0, 1, 2, 3], atol=1e-5)  # np.pad 'reflect'
    assert not np.allclose(tile, _crop(image, np.array([2, 0]), (4, 7), mode="symmetric")[0, 0])


def test_tile_larger_than_image_mirrors_repeatedly() -> None:
    rng = np.random.default_rng(12)
    image = rng.random((1, 9, 12), dtype=np.float32)
    for dims in [(2,), (3,)]:
        img = image if dims == (2,) else image[:, None].repeat(3, axis=1)  # 2D and 3D
        c = np.array([[4, 6]] if dims == (2,) else [[1, 4, 6]])
        tile_shape = (30, 41) if dims == (2,) else (5, 30, 41)
        tile = warp_tiles(img, None, None, sampling_grid(c, tile_shape, None, img.shape[1:]), tile_shape)[0]
        np.testing.assert_allclose(tile[0].numpy(), _crop(img, c[0], tile_shape), atol=2e-5, rtol=0)


def test_zero_params_is_exact_crop_3d() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((1, 16, 32, 32), dtype=np.float32)
    target = rng.integers(0, 5, (16, 32, 32))
    weights = rng.random((16, 32, 32), dtype=np.float32)
    tile_shape, out_shape = (10, 20, 21), (4, 10, 11)
    centres = np.array([[8, 16, 16], [0, 31, 3], [15, 0, 31]])
    img_t, tgt_t, w_t = augment_batch(
        image, target, weights, centres, tile_shape, out_shape, AugmentParams(), rng
    )
    assert tgt_t is not None and w_t is not None
    for b, c in enumerate(centres):
        np.testing.assert_allclose(img_t[b].numpy(), _crop(image, c, tile_shape), atol=2e-5, rtol=0)
        np.testing.assert_array_equal(
            tgt_t[b].numpy(), _centre(_crop(target, c, tile_shape), tile_shape, out_shape)
        )
        np.testing.assert_allclose(
            w_t[b].numpy(), _centre(_crop(weights, c, tile_shape), tile_shape, out_shape), atol=2e-5, rtol=0
        )


def test_batched_images_one_tile_each() -> None:
    rng = np.random.default_rng(2)
    images = rng.random((3, 2, 30, 40), dtype=np.float32)
    targets = rng.integers(0, 4, (3, 30, 40))
    centres = np.array([[5, 5], [15, 20], [29, 0]])
    img_t, tgt_t, w_t = augment_batch(images, targets, None, centres, (16, 16), (8, 8), AugmentParams(), rng)
    assert w_t is None and tgt_t is not None
    for b, c in enumerate(centres):
        np.testing.assert_allclose(img_t[b].numpy(), _crop(images[b], c, (16, 16)), atol=2e-5, rtol=0)
        np.testing.assert_array_equal(
            tgt_t[b].numpy(), _centre(_crop(targets[b], c, (16, 16)), (16, 16), (8, 8))
        )


# -------------------------------------------------------------------------------------- rigid transforms


def test_rotation_90_equals_rot90_of_crop() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((1, 48, 48), dtype=np.float32)
    target = rng.integers(0, 9, (48, 48))
    centres = np.array([[24, 24], [3, 40]])
    params = AugmentParams(rotation_range=(90.0, 90.0))
    img_t, tgt_t, _ = augment_batch(image, target, None, centres, (20, 20), (10, 10), params, rng)
    assert tgt_t is not None
    for b, c in enumerate(centres):
        crop = _crop(image, c, (20, 20))
        np.testing.assert_allclose(img_t[b].numpy(), np.rot90(crop, axes=(1, 2)), atol=2e-5)
        ref = _centre(np.rot90(_crop(target, c, (20, 20))), (20, 20), (10, 10))
        np.testing.assert_array_equal(tgt_t[b].numpy(), ref)


def test_flips_and_3d_in_plane_rotation() -> None:
    rng = np.random.default_rng(4)
    image = rng.random((1, 8, 24, 24), dtype=np.float32)
    c = np.array([[4, 12, 12]])
    crop = _crop(image, c[0], (6, 12, 12))
    # y-flip + x-flip == 180 degree rotation; x-flip alone mirrors the last axis; z is never rotated.
    for angle, flips, expected in [
        (math.pi, [False, False], np.rot90(crop, 2, axes=(2, 3))),
        (0.0, [True, True], np.rot90(crop, 2, axes=(2, 3))),
        (0.0, [False, True], crop[..., ::-1]),
        (math.pi / 2, [False, False], np.rot90(crop, 1, axes=(2, 3))),
    ]:
        tr = TileTransform((6, 12, 12), np.array([angle]), np.array([flips]))
        grid = sampling_grid(c, (6, 12, 12), tr, image.shape[1:])
        tile = warp_tiles(image, None, None, grid, (6, 12, 12))[0][0].numpy()
        np.testing.assert_allclose(tile, expected, atol=2e-5)


# ------------------------------------------------------------------------------------------- alignment


@pytest.mark.parametrize(
    ("shape", "tile_shape", "out_shape", "std", "spacing"),
    [
        ((64, 64), (48, 48), (32, 32), 4.0, 12.0),
        ((12, 32, 32), (10, 24, 24), (6, 16, 16), (1.0, 3.0, 3.0), 8.0),
    ],
)
def test_labels_weights_stay_aligned_with_image(
    shape: tuple[int, ...],
    tile_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    std: object,
    spacing: float,
) -> None:
    rng = np.random.default_rng(5)
    labels = _regions(shape, 6, rng)
    weights = (1.0 + 0.5 * labels).astype(np.float32)
    image = np.stack([labels.astype(np.float32), _interior(labels)])  # ch0 = label id, ch1 = interior mask
    params = AugmentParams(
        rotation_range=(-180, 180), flips=True, elastic_std=std, elastic_grid_spacing=spacing
    )
    centres = np.stack([rng.integers(0, s, 6) for s in shape], axis=1)
    img_t, tgt_t, w_t = augment_batch(image, labels, weights, centres, tile_shape, out_shape, params, rng)
    assert tgt_t is not None and w_t is not None
    img_c = _centre(img_t.numpy(), tile_shape, out_shape)
    inside = img_c[:, 1] > 1 - 1e-5  # all interpolation neighbours are interior pixels of ONE region
    assert inside.mean() > 0.5
    tgt, w = tgt_t.numpy(), w_t.numpy()
    np.testing.assert_array_equal(tgt[inside], np.round(img_c[:, 0][inside]).astype(np.int64))
    np.testing.assert_allclose(w[inside], 1.0 + 0.5 * tgt[inside], atol=1e-4)
    assert (tgt == np.round(img_c[:, 0])).mean() > 0.95  # boundaries are thin
    assert np.isin(tgt, np.unique(labels)).all()  # nearest never invents labels


# ------------------------------------------------------------------------------------------ elastic field


def test_zero_std_gives_zero_displacement() -> None:
    rng = np.random.default_rng(6)
    tr = random_transform(AugmentParams(elastic_std=0.0), 3, (20, 30), rng)
    assert tr.displacement is None
    ident = sampling_grid(np.array([[5, 6]] * 3), (20, 30), None, (40, 50))
    _close(sampling_grid(np.array([[5, 6]] * 3), (20, 30), tr, (40, 50)), ident)
    tr3 = random_transform(AugmentParams(elastic_std=(0.0, 2.0, 2.0)), 2, (4, 20, 30), rng)
    assert tr3.displacement is not None and (tr3.displacement[:, 0] == 0).all()


def test_dense_field_is_torch_bicubic_in_2d_and_interpolates_control_points() -> None:
    coarse = torch.randn(2, 2, 4, 5, generator=torch.Generator().manual_seed(0))
    dense = dense_displacement(coarse, (31, 41))
    ref = F.interpolate(coarse, size=(31, 41), mode="bicubic", align_corners=True)
    _close(dense, ref, atol=1e-5, rtol=1e-5)
    _close(dense[..., ::10, ::10], coarse, atol=1e-5, rtol=1e-5)  # (n-1)/(k-1) = 10
    coarse3 = torch.randn(1, 3, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    dense3 = dense_displacement(coarse3, (9, 13, 21))
    _close(dense3[..., ::4, ::4, ::5], coarse3, atol=1e-5, rtol=1e-5)
    m = cubic_interpolation_matrix(4, 31)
    _close(m.sum(1), torch.ones(31))


def test_elastic_field_smooth_and_std_matches() -> None:
    rng = np.random.default_rng(7)
    tile_shape = (61, 61)
    params = AugmentParams(elastic_std=5.0, elastic_grid_spacing=20.0)
    assert coarse_grid_shape(tile_shape, 20.0) == (4, 4)
    tr = random_transform(params, 400, tile_shape, rng)
    assert tr.displacement is not None and tr.displacement.shape == (400, 2, 4, 4)
    assert tr.displacement.std() == pytest.approx(5.0, rel=0.03)
    assert abs(tr.displacement.mean()) < 0.1
    dense = dense_displacement(torch.from_numpy(tr.displacement[:20]), tile_shape)
    _close(dense[..., ::20, ::20], torch.from_numpy(tr.displacement[:20]), atol=1e-4, rtol=0)
    d2y = (dense[..., 2:, :] - 2 * dense[..., 1:-1, :] + dense[..., :-2, :]).abs().max()
    d2x = (dense[..., 2:] - 2 * dense[..., 1:-1] + dense[..., :-2]).abs().max()
    assert max(d2y, d2x) < 0.05 * 5.0  # smooth on the pixel scale (spacing 20 px)


def test_grid_composes_elastic_displacement() -> None:
    rng = np.random.default_rng(8)
    tile_shape, image_shape = (8, 20, 30), (16, 40, 50)
    tr = random_transform(
        AugmentParams(elastic_std=(1.0, 3.0, 3.0), elastic_grid_spacing=10.0), 2, tile_shape, rng
    )
    centres = np.array([[5, 6, 7], [10, 30, 40]])
    diff = sampling_grid(centres, tile_shape, tr, image_shape) - sampling_grid(
        centres, tile_shape, None, image_shape
    )
    assert tr.displacement is not None
    dense = dense_displacement(torch.from_numpy(tr.displacement), tile_shape)  # px, components (z, y, x)
    scale = torch.tensor([2.0 / (s - 1) for s in image_shape])
    expected = (dense * scale.view(1, 3, 1, 1, 1)).flip(1).movedim(1, -1)  # grid order (x, y, z)
    _close(diff, expected, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------- intensities


def test_intensity_control_points_increasing_bounded_deterministic() -> None:
    for r in (0.05, 0.3, 1.0):
        t = intensity_control_points(5, r, (200, 2), np.random.default_rng(9))
        assert t.shape == (200, 2, 5)
        assert (np.diff(t, axis=-1) > 0).all()
        s = np.linspace(0, 1, 5)
        assert (t >= s - r - 1e-12).all() and (t <= s + r + 1e-12).all()
        np.testing.assert_array_equal(t, intensity_control_points(5, r, (200, 2), np.random.default_rng(9)))
    np.testing.assert_array_equal(
        intensity_control_points(4, 0.0, (3,), np.random.default_rng(0)),
        np.tile(np.linspace(0, 1, 4), (3, 1)),
    )


@pytest.mark.parametrize("lut_size", [None, 2048])
def test_intensity_curve_is_pchip_strictly_increasing(lut_size: int | None) -> None:
    rng = np.random.default_rng(10)
    targets = intensity_control_points(6, 0.15, (3, 2), rng)
    x = torch.linspace(0, 1, 2001, dtype=torch.float64).expand(3, 2, 2001).contiguous()
    y = intensity_curve(x, targets, lut_size=lut_size).numpy()
    ref = np.stack(
        [
            [PchipInterpolator(np.linspace(0, 1, 6), targets[i, j])(x[0, 0].numpy()) for j in range(2)]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(y, ref, atol=1e-12 if lut_size is None else 1e-5)
    assert (np.diff(y, axis=-1) > 0).all()
    assert (y >= targets[..., :1] - 1e-9).all() and (y <= targets[..., -1:] + 1e-9).all()
    np.testing.assert_allclose(y[..., 0], targets[..., 0], atol=1e-12)  # 0 -> t_0 in [-r, r]
    # Outside [0, 1]: tangent continuation, still non-decreasing.
    xo = torch.tensor([[[-0.2, -0.1, 0.0, 1.0, 1.1, 1.2]]], dtype=torch.float64).expand(3, 2, 6).contiguous()
    assert (np.diff(intensity_curve(xo, targets, lut_size=lut_size).numpy(), axis=-1) >= -1e-12).all()


@pytest.mark.parametrize("lut_size", [None, 2048])
def test_intensity_identity_for_zero_range(lut_size: int | None) -> None:
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ident = intensity_control_points(5, 0.0, (2, 1), np.random.default_rng(0))
    _close(intensity_curve(x, ident, lut_size=lut_size), x, atol=1e-6, rtol=0)
    assert (
        random_transform(AugmentParams(intensity_range=0.0), 2, (8, 8), np.random.default_rng(0)).intensity
        is None
    )


def test_intensity_augmentation_in_batch() -> None:
    rng = np.random.default_rng(11)
    image = rng.random((2, 32, 32), dtype=np.float32)
    centres = np.array([[16, 16], [10, 20]])
    params = AugmentParams(intensity_points=4, intensity_range=0.2)
    out, _, _ = augment_batch(image, None, None, centres, (16, 16), (8, 8), params, np.random.default_rng(1))
    again, _, _ = augment_batch(
        image, None, None, centres, (16, 16), (8, 8), params, np.random.default_rng(1)
    )
    _close(out, again)  # deterministic for the same seed
    for b, c in enumerate(centres):
        crop = torch.from_numpy(_crop(image, c, (16, 16))).flatten(1)
        o = out[b].flatten(1)
        assert not torch.allclose(o, crop, atol=1e-3)
        for ch in range(2):  # per tile and channel a strictly increasing map: the ordering is preserved
            order = crop[ch].argsort()
            assert (o[ch][order].diff() >= 0).all()


# -------------------------------------------------------------------------------------- API / validation


def test_random_transform_reproducible_and_shapes() -> None:
    params = AugmentParams.falk2019()
    a = random_transform(params, 4, (44, 132, 132), np.random.default_rng(12), n_channels=3)
    b = random_transform(params, 4, (44, 132, 132), np.random.default_rng(12), n_channels=3)
    assert a.displacement is not None and b.displacement is not None and a.intensity is not None
    np.testing.assert_array_equal(a.angles, b.angles)
    np.testing.assert_array_equal(a.displacement, b.displacement)
    assert a.flips.shape == (4, 2) and a.intensity.shape == (4, 3, 5)
    assert a.displacement.shape == (4, 3, 2, 2, 2)
    assert (np.abs(a.angles) <= math.pi).all()


def test_validation_errors() -> None:
    with pytest.raises(ValueError):
        AugmentParams(rotation_range=(10.0, -10.0))
    with pytest.raises(ValueError):
        AugmentParams(elastic_std=-1.0)
    with pytest.raises(ValueError):
        AugmentParams(intensity_points=1)
    with pytest.raises(ValueError):
        AugmentParams(interpolation="nearest")
    image = np.zeros((1, 8, 16, 16), dtype=np.float32)
    grid = sampling_grid(np.array([[4, 8, 8]]), (4, 8, 8), None, (8, 16, 16))
    with pytest.raises(ValueError):
        warp_tiles(image, None, None, grid, (4, 8, 8), interpolation="cubic")
    with pytest.raises(ValueError):
        warp_tiles(image, np.zeros((8, 16, 16), dtype=np.int64), None, grid, (5, 8, 8))
    with pytest.raises(ValueError):
        warp_tiles(image, np.zeros((8, 16, 15), dtype=np.int64), None, grid, (2, 4, 4))


@pytest.mark.parametrize("ndim", [2, 3])
def test_elastic_field_never_exceeds_its_bound_and_the_bound_is_tight(ndim, rng) -> None:
    """Worst case for Keys' kernel: control signs - + + - (period 4) give 1.375 c per axis between the + +."""
    from unet.data.augment import AugmentParams, dense_displacement, elastic_bound, random_transform

    pattern = np.array([-1.0, 1.0, 1.0, -1.0] * 3)
    grid = pattern
    for _ in range(ndim - 1):
        grid = np.multiply.outer(grid, pattern)
    c = 4.0 * 2.5  # controls at the truncation: 4 std, std 2.5 px
    coarse = torch.from_numpy(c * grid)[None, None]
    dense = dense_displacement(coarse, (12 * 8 + 1,) * ndim)  # control points every 8 px
    bound = elastic_bound(2.5, ndim)
    assert float(dense.abs().max()) <= bound + 1e-9
    assert float(dense.abs().max()) >= 0.98 * bound
    t = random_transform(AugmentParams(elastic_std=2.5), 64, (40,) * ndim, rng, n_channels=1)
    assert np.abs(t.displacement).max() <= 4.0 * 2.5 + 1e-5
