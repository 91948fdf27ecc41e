"""Tile shape from a memory budget (as the Fiji plugin chooses its tiling from GPU memory, Falk 2019 M1).

Two ways to know the peak memory of one forward pass (inference) or one training step:

* :func:`estimate_memory`: an analytic count of the tensors alive at each step of ``UNet.forward``
  (and, for training, of everything autograd saves plus the step's gradient and optimiser buffers).
  Pure arithmetic, so the largest fitting tile is found instantly on any device.
* :func:`measure_memory`: a real run. On CUDA it reads ``torch.cuda.max_memory_allocated``; on CPU it
  counts the bytes of live tensor storages through a ``TorchDispatchMode``
  (:class:`LiveTensorBytes`), which is what the estimate is validated against in the tests.

Neither counts library workspaces (cuDNN/oneDNN scratch buffers), hence ``headroom`` in
:func:`tile_shape_for_budget`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from unet.models import shapes


def _conv_out(shape: Sequence[int], kernel: Sequence[int]) -> tuple[int, ...]:
    return tuple(s - k + 1 for s, k in zip(shape, kernel))


def estimate_memory(
    net: torch.nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    train: bool = False,
    bytes_per_element: int = 4,
    optimizer_states: int = 1,
) -> int:
    """Peak bytes of tensors alive for one forward pass (``train=False``) or one training step.

    Follows ``UNet.forward`` step by step. Inference: the input, the skip connections held for the
    decoder and the producer/consumer pair of the current layer. Training: every tensor autograd saves
    (convolution inputs, in-place leaky-ReLU outputs, pooling inputs and int64 indices, concatenations),
    plus the gradient being propagated, parameters, their gradients and ``optimizer_states`` buffers per
    parameter (1 for SGD with momentum, 2 for Adam).

    Args:
        net: a :class:`unet.UNet`.
        input_shape: spatial input tile shape (valid).
        batch_size: tiles per step.
        train: estimate a training step instead of inference.
        bytes_per_element: 4 for float32 activations.
        optimizer_states: per-parameter optimiser buffers (training only).
    """
    shape = tuple(int(s) for s in input_shape)
    shapes.output_shape(net.levels, shape)
    e = bytes_per_element * batch_size

    def size(c: int, s: Sequence[int]) -> int:
        return c * math.prod(s) * e

    feats, levels, depth = net.features, net.levels, net.depth
    net_input = cur_input = size(net.in_channels, shape)
    skips: list[int] = []
    saved = 0  # training: tensors autograd keeps until backward
    peak = live = 0  # live: skips held for the decoder (the net input is held by the caller throughout)
    largest = cur_input
    s = shape
    for i, level in enumerate(levels):
        a_shape = _conv_out(s, level.kernel)
        b_shape = _conv_out(a_shape, level.kernel)
        a, b = size(feats[i], a_shape), size(feats[i], b_shape)
        block_input = cur_input if i else 0  # the block's argument stays alive during the block
        peak = max(peak, live + block_input + a + b)
        saved += cur_input + a  # conv1 saves its input, conv2 its input (= relu1 output, in place)
        largest = max(largest, a, b)
        if i < depth:
            skips.append(b)
            live += b
            s = tuple(x // p for x, p in zip(b_shape, level.pool))
            pooled = size(feats[i], s)
            peak = max(peak, live + pooled)
            saved += b + 2 * pooled  # pool saves its input and int64 indices
            cur_input = pooled
        else:
            s, cur_input = b_shape, b
    for i in reversed(range(depth)):
        level = levels[i]
        up_c = net.upconvs[depth - 1 - i].out_channels
        s = tuple(x * p for x, p in zip(s, level.pool))
        u, cat = size(up_c, s), size(up_c + feats[i], s)
        peak = max(peak, live + cur_input + u, live + u + cat)
        saved += cur_input  # the up-convolution saves its input
        live -= skips.pop()
        a_shape = _conv_out(s, level.kernel)
        b_shape = _conv_out(a_shape, level.kernel)
        a, b = size(feats[i], a_shape), size(feats[i], b_shape)
        peak = max(peak, live + cat + a + b)
        saved += cat + a
        largest = max(largest, u, cat, a, b)
        s, cur_input = b_shape, b
    logits = size(net.num_classes, s)
    peak = net_input + max(peak, cur_input + logits)
    if not train:
        return int(peak)
    saved += cur_input + logits
    n_params = sum(p.numel() for p in net.parameters()) * bytes_per_element
    # backward: the gradient arriving at a layer and the one leaving it are alive together
    return int(saved + 2 * largest + n_params * (2 + optimizer_states))


class LiveTensorBytes(TorchDispatchMode):
    """Count bytes of tensor storages created inside the mode and still alive; keep the peak.

    Storages are keyed by data pointer with a count of the tensors that reference them, so views and
    in-place results are not counted twice. Tensors created outside the mode (parameters, the input)
    are not counted: add them yourself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in tree_flatten(result)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr == 0:
                    continue
                entry = self.live.setdefault(ptr, [storage.nbytes(), 0])
                if entry[1] == 0:
                    self.current += entry[0]
                    self.peak = max(self.peak, self.current)
                entry[1] += 1
                weakref.finalize(t, self._release, ptr)
        return result


def measure_memory(
    net: torch.nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    train: bool = False,
    device: torch.device | str | None = None,
) -> int:
    """Measured peak bytes of one forward pass or one training step (forward + backward + SGD update).

    CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before (parameters included in
    training). CPU: :class:`LiveTensorBytes` plus the input (plus parameters, gradients and the momentum
    buffer in training), comparable with :func:`estimate_memory`.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    x = torch.randn(batch_size, net.in_channels, *input_shape, device=device)
    was_training = net.training
    net.train(train)
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device) - x.numel() * x.element_size()
            _step(net, x, train)
            torch.cuda.synchronize(device)
            return int(torch.cuda.max_memory_allocated(device) - base)
        with LiveTensorBytes() as tracker:
            _step(net, x, train)
        extra = x.numel() * x.element_size()
        if train:
            extra += 3 * sum(p.numel() * p.element_size() for p in net.parameters())
        return int(tracker.peak + extra)
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)


def _step(net: torch.nn.Module, x: torch.Tensor, train: bool) -> None:
    if not train:
        with torch.inference_mode():
            net(x)
        return
    opt = torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.99)
    y = net(x)
    y.float().logsumexp(1).mean().backward()
    opt.step()
    del y, opt


def tile_shape_for_budget(
    net: torch.nn.Module,
    budget_bytes: int,
    *,
    batch_size: int = 1,
    train: bool = False,
    max_shape: Sequence[int] | None = None,
    element_size: Sequence[float] | None = None,
    device: torch.device | str | None = None,
    measure: bool | None = None,
    headroom: float = 0.9,
) -> tuple[int, ...]:
    """Largest valid input tile whose peak memory fits ``headroom * budget_bytes``.

    Grows the tile one pooling period at a time along the axis with the smallest physical extent (so
    tiles stay roughly cubic in micrometres), never beyond ``max_shape`` (e.g. the image plus halo).
    With ``measure`` (default: on CUDA) each candidate the estimate accepts is checked by a real run.

    Raises:
        ValueError: if even the smallest valid tile does not fit.
    """
    levels = net.levels
    nd = len(levels[0].kernel)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    if measure is None:
        measure = device.type == "cuda"
    limit = headroom * budget_bytes
    period = shapes.pooling_period(levels)
    spacing = tuple(element_size) if element_size is not None else (1.0,) * nd
    tile = list(shapes.min_input_shape(levels))
    cap = tuple(max_shape) if max_shape is not None else (10**9,) * nd
    cap = tuple(max(c, t) for c, t in zip(shapes.valid_input_shape(levels, cap), tile))

    def fits(shape: Sequence[int]) -> bool:
        if estimate_memory(net, shape, batch_size, train) > limit:
            return False
        return not measure or measure_memory(net, shape, batch_size, train, device) <= limit

    if not fits(tile):
        need = estimate_memory(net, tile, batch_size, train)
        raise ValueError(
            f"even the smallest valid tile {tuple(tile)} needs about {need / 2**20:.0f} MiB, more than "
            f"the budget of {budget_bytes / 2**20:.0f} MiB"
        )
    frozen = [t >= c for t, c in zip(tile, cap)]
    while not all(frozen):
        axis = min((a for a in range(nd) if not frozen[a]), key=lambda a: tile[a] * spacing[a])
        trial = list(tile)
        trial[axis] += period[axis]
        if trial[axis] > cap[axis] or not fits(trial):
            frozen[axis] = True
        else:
            tile = trial
    return tuple(tile)
