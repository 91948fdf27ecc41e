"""Rescaling to the model's element size (Falk M5): anti-aliasing on the way down, nothing else changes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unet.data.preprocess import resize


def test_downscaling_a_checkerboard_averages_it_out_instead_of_aliasing() -> None:
    yy, xx = np.mgrid[:250, :250]
    board = ((yy + xx) % 2).astype(np.float32)[None]
    out = resize(board, (50, 50))
    assert out.shape == (1, 50, 50)
    assert np.abs(out - 0.5).max() < 0.02  # the plain bilinear resample of this board is all 0s or 1s
    plain = F.interpolate(torch.from_numpy(board)[None], size=(50, 50), mode="bilinear")[0].numpy()
    assert np.abs(plain - 0.5).max() > 0.4


def test_smooth_images_keep_their_values_and_upscaling_is_plain_linear(rng) -> None:
    yy, xx = np.mgrid[:120, :90] / 40.0
    smooth = np.stack([np.sin(yy) * np.cos(xx), yy * 0.1]).astype(np.float32)
    down = resize(smooth, (60, 45))
    ref = np.stack(
        [np.sin(yy[::2, ::2] + 0.5 / 40) * np.cos(xx[::2, ::2] + 0.5 / 40), (yy[::2, ::2] + 0.5 / 40) * 0.1]
    )
    np.testing.assert_allclose(down[:, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=0.01)
    small = rng.random((2, 7, 5, 6)).astype(np.float32)
    up = resize(small, (14, 10, 12))
    plain = F.interpolate(torch.from_numpy(small)[None], size=(14, 10, 12), mode="trilinear")[0].numpy()
    np.testing.assert_array_equal(up, plain)


def test_labels_are_never_blurred() -> None:
    labels = np.zeros((1, 40, 40), np.int32)
    labels[0, ::2, ::2] = 7
    out = resize(labels, (20, 20), labels=True)
    assert set(np.unique(out)) <= {0, 7} and out.dtype == np.int32
