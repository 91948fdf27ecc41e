"""GPU check (issue 15): training speed per precision, data-loading wait, inference against MONAI, memory.

    python -m benchmarks.gpu_check [--out benchmarks/results/gpu_check.json] [--budget-s 420]
        [--num-workers 4] [--sections train,inference,memory,data_wait]
    python -m benchmarks.gpu_check --dry        # tiny nets on the CPU (CI): exercises every code path

On a CUDA machine it measures, within a global time budget (default 420 s, so the whole run stays under
8 minutes on one H200-class GPU):

1. training steps/s in ``32-true`` / ``bf16-mixed`` / ``16-mixed`` (``torch.autocast``; ``GradScaler`` for
   fp16; Adam; gradient-norm clipping 1.0 as ``conf/trainer/default.yaml``) of the paper's 2D net
   (``UNet(spatial_dims=2, depth=4, base_features=64)``, 572² tiles) and Falk 2019's 3D net
   (``UNet(spatial_dims=3, depth=4, base_features=32, last_up_features=32, element_size=(1, 0.25, 0.25))``,
   the tile :func:`unet.memory.tile_shape_for_budget` picks for an 8 GiB float32 training step);
2. the share of step time spent waiting for data with ``data.augment_on=worker`` vs ``device``, through the
   real data path (:class:`unet.data.datamodule.UNetDataModule` over a
   :class:`unet.data.sources.SyntheticSource` with the network, ``train_dataloader`` and, for
   ``device``, ``on_after_batch_transfer``), with 0 and ``--num-workers`` DataLoader workers. "data" is
   the time from asking the loader for a batch until it is on the GPU and warped (``torch.cuda.synchronize``),
   "compute" the training step after it;
3. seconds per 512² and per 2048² image: ours (:func:`unet.tiling.predict_tiled`, tile from the predict
   default budget) against MONAI (``BasicUNet`` at the same widths + ``sliding_window_inference``, roi 512,
   overlap 0.25, gaussian), both from a numpy image to numpy probabilities, float32 and bf16 autocast;
4. measured vs estimated peak memory of the tiles :func:`unet.memory.tile_shape_for_budget` picks
   (:func:`unet.memory.estimate_memory` against :func:`unet.memory.measure_memory`), inference and training.

It prints markdown tables and writes JSON with the machine, every figure and the ratios (bf16/fp32 and
fp16/fp32 steps/s, MONAI/ours seconds per image). Without CUDA, or with ``--dry``, the same functions run on
the CPU with tiny nets, tiles and images in a few seconds; the JSON then says ``"dry": true`` and the figures
mean nothing. Exit status 1 if any case failed (its error is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import best_of
from unet.data.augment import AugmentParams
from unet.data.datamodule import UNetDataModule
from unet.data.sources import SyntheticSource
from unet.hardware import default_tile_budget_mib
from unet.losses import weighted_cross_entropy
from unet.memory import estimate_memory, measure_memory, tile_shape_for_budget
from unet.models import shapes
from unet.models.unet import UNet
from unet.report import json_safe
from unet.tasks import SegmentationTask
from unet.tiling import memory_format, plan_tiles, predict_tiled, use_channels_last

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
AUTOCAST_DTYPE = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
GIB, MIB = 2**30, 2**20
ANISOTROPIC = (1.0, 0.25, 0.25)  # z, y, x (µm): 2D convolutions at the two finest levels (Falk M1.1)


def settings(dry: bool) -> dict[str, Any]:
    """Sizes of everything measured: the paper's on a GPU, tiny ones for the dry run."""
    if not dry:
        return {
            "nets": {
                "unet2d": {
                    "net": {"spatial_dims": 2, "depth": 4, "base_features": 64},
                    "element_size": None,
                    "tile": (572, 572),
                },
                "unet3d": {
                    "net": {
                        "spatial_dims": 3,
                        "depth": 4,
                        "base_features": 32,
                        "last_up_features": 32,
                        "element_size": ANISOTROPIC,
                    },
                    "element_size": ANISOTROPIC,
                    "tile_budget_mib": 8192,  # float32 training step estimate -> (76, 316, 316)
                },
            },
            "warmup": 3,
            "steps": 20,
            "case_max_s": 12.0,
            "data": {
                "unet2d": {"shape": (1024, 1024), "n_cells": 80},
                "unet3d": {"shape": (48, 256, 256), "n_cells": 30},
            },
            "data_warmup": 3,
            "data_steps": 12,
            "infer_sizes": (512, 2048),
            "monai_roi": 512,
            "monai_sw_batch": 4,
            "repeats": 3,
            "memory_budgets_mib": {"unet2d": (1024, 4096, 16384), "unet3d": (4096, 16384)},
        }
    return {
        "nets": {
            "unet2d": {
                "net": {"spatial_dims": 2, "depth": 2, "base_features": 4},
                "element_size": None,
                "tile": (92, 92),
            },
            "unet3d": {
                "net": {
                    "spatial_dims": 3,
                    "depth": 2,
                    "base_features": 4,
                    "last_up_features": 4,
                    "element_size": ANISOTROPIC,
                },
                "element_size": ANISOTROPIC,
                "tile_budget_mib": 3,
            },
        },
        "warmup": 1,
        "steps": 2,
        "case_max_s": 2.0,
        "data": {
            "unet2d": {"shape": (128, 128), "n_cells": 8},
            "unet3d": {"shape": (12, 64, 64), "n_cells": 6},
        },
        "data_warmup": 1,
        "data_steps": 2,
        "infer_sizes": (64, 160),
        "monai_roi": 64,
        "monai_sw_batch": 2,
        "repeats": 1,
        "memory_budgets_mib": {"unet2d": (1, 4), "unet3d": (2, 8)},
    }


class Clock:
    """The global time budget: every case asks how long it may run, and is skipped when time is up."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = float(budget_s)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def allow(self, case_max_s: float) -> float:
        """Seconds a case may run (0: skip it)."""
        left = self.left()
        return 0.0 if left <= 1.0 else min(case_max_s, left)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def autocast(device: torch.device, precision: str) -> Any:
    dtype = AUTOCAST_DTYPE.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def precision_supported(device: torch.device, precision: str) -> str | None:
    """None if ``precision`` can run on ``device``, else why not."""
    if device.type == "cuda" and precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        return "no native bf16 on this GPU"
    return None


def build_net(spec: dict[str, Any], device: torch.device, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return use_channels_last(UNet(**spec["net"]).to(device))


def train_tile(net: UNet, spec: dict[str, Any]) -> tuple[int, ...]:
    if "tile" in spec:
        return shapes.valid_input_shape(net.levels, spec["tile"])
    return tile_shape_for_budget(
        net,
        int(spec["tile_budget_mib"] * MIB),
        train=True,
        element_size=spec["element_size"],
        measure=False,
    )


def make_train_step(
    net: torch.nn.Module, precision: str, device: torch.device, clip: float = 1.0
) -> tuple[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], Any]:
    """One optimisation step as Lightning runs it: autocast forward + loss, (scaled) backward, unscale, clip
    the gradient norm, Adam step. Returns (step, scaler)."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def step(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = weighted_cross_entropy(net(x), target, weights)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    return step, scaler


def timed(
    fn: Callable[[], Any], warmup: int, steps: int, max_s: float, sync: Callable[[], None]
) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` calls; stops after ``max_s`` (at least one)."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    t_start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > max_s:
            break
    return times


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None


# 1. training steps/s per precision ------------------------------------------------------------------------
def bench_train(cfg: dict[str, Any], device: torch.device, clock: Clock) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, spec in cfg["nets"].items():
        result[name] = _train_net(spec, cfg, device, clock)
        _free(device)
    return result


def _train_net(
    spec: dict[str, Any], cfg: dict[str, Any], device: torch.device, clock: Clock
) -> dict[str, Any]:
    sync = synchronizer(device)
    net = build_net(spec, device)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    tile = train_tile(net, spec)
    out = net.output_shape(tile)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(1, net.in_channels, *tile, generator=gen).to(device)
    x = x.contiguous(memory_format=memory_format(x.ndim))
    target = torch.randint(0, net.num_classes, (1, *out), generator=gen).to(device)
    weights = torch.rand(1, *out, generator=gen).to(device)
    entry: dict[str, Any] = {
        "net": json_safe(spec["net"]),
        "tile": list(tile),
        "output_tile": list(out),
        "batch_size": 1,
        "params": sum(p.numel() for p in net.parameters()),
    }
    for precision in PRECISIONS:
        why = precision_supported(device, precision)
        max_s = clock.allow(cfg["case_max_s"])
        if why or not max_s:
            entry[precision] = {"skipped": why or "time budget spent"}
            continue
        try:
            net.load_state_dict(initial)
            step, scaler = make_train_step(net, precision, device)
            reset_peak(device)
            scale0 = scaler.get_scale() if scaler.is_enabled() else None
            times = timed(
                lambda step=step: step(x, target, weights), cfg["warmup"], cfg["steps"], max_s, sync
            )
            total = sum(times)
            entry[precision] = {
                "steps_per_s": len(times) / total,
                "median_step_s": statistics.median(times),
                "timed_steps": len(times),
                "voxels_per_s": len(times) * math.prod(out) / total,
                "peak_mib": peak_mib(device),
                # fp16: the loss scale before warm-up and after the timed steps (halved on overflow)
                "fp16_loss_scale": None if scale0 is None else [scale0, scaler.get_scale()],
            }
        except Exception as e:  # one failed case (e.g. out of memory) must not stop the check
            entry[precision] = _error(e)
            _free(device)
    fp32 = entry.get("32-true", {}).get("steps_per_s")
    entry["ratios"] = {
        label: entry[p]["steps_per_s"] / fp32
        for p, label in (("bf16-mixed", "bf16/fp32"), ("16-mixed", "fp16/fp32"))
        if fp32 and "steps_per_s" in entry.get(p, {})
    }
    return entry


# 2. data wait: augment_on=worker vs device, through UNetDataModule ---------------------------------------
def make_datamodule(
    cfg: dict[str, Any], name: str, net: UNet, tile: tuple[int, ...], tiles: int
) -> UNetDataModule:
    spec, data = cfg["nets"][name], cfg["data"][name]
    source = SyntheticSource(
        spatial_dims=net.spatial_dims,
        shape=data["shape"],
        n_train=1,
        n_val=1,
        n_cells=data["n_cells"],
        element_size=spec["element_size"],
    )
    return UNetDataModule(
        source,
        SegmentationTask(),
        net,
        spec["element_size"],
        "minmax",
        validate=True,
        tile_shape=tile,
        batch_size=1,
        tiles_per_epoch=tiles,
        augment=AugmentParams.falk2019(),
    )


def bench_data(cfg: dict[str, Any], device: torch.device, clock: Clock, workers: int) -> dict[str, Any]:
    result: dict[str, Any] = {"precision": _train_precision(device), "worker_counts": sorted({0, workers})}
    for name in cfg["nets"]:
        if not clock.allow(cfg["case_max_s"]):
            result[name] = {"skipped": "time budget spent"}
            continue
        try:
            result[name] = _data_net(name, cfg, device, clock, result["precision"], result["worker_counts"])
        except Exception as e:
            result[name] = _error(e)
        _free(device)
    return result


def _data_net(
    name: str,
    cfg: dict[str, Any],
    device: torch.device,
    clock: Clock,
    precision: str,
    worker_counts: list[int],
) -> dict[str, Any]:
    spec = cfg["nets"][name]
    net = build_net(spec, device)
    tile = train_tile(net, spec)
    t0 = time.perf_counter()
    dm = make_datamodule(cfg, name, net, tile, cfg["data_warmup"] + cfg["data_steps"])
    entry: dict[str, Any] = {
        "tile": list(tile),
        "image_shape": list(cfg["data"][name]["shape"]),
        "setup_s": time.perf_counter() - t0,
    }
    step, _ = make_train_step(net, precision, device)
    sync = synchronizer(device)
    for mode in ("worker", "device"):
        for nw in worker_counts:
            key = f"{mode}/workers={nw}"
            max_s = clock.allow(cfg["case_max_s"])
            if not max_s:
                entry[key] = {"skipped": "time budget spent"}
                continue
            try:
                entry[key] = _data_case(dm, mode, nw, step, device, sync, cfg["data_warmup"], max_s)
            except Exception as e:
                entry[key] = _error(e)
                _free(device)
    return entry


def _data_case(
    dm: UNetDataModule,
    mode: str,
    workers: int,
    step: Callable[..., torch.Tensor],
    device: torch.device,
    sync: Callable[[], None],
    warmup: int,
    max_s: float,
) -> dict[str, Any]:
    dm.augment_on, dm.num_workers = mode, workers  # the prepared images are shared by both modes
    loader = dm.train_dataloader()
    data_s: list[float] = []
    compute_s: list[float] = []
    t_start = time.perf_counter()
    it = iter(loader)  # with workers: they start here and prefetch while the steps run
    try:
        for i in range(len(loader)):
            if i == warmup:
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            batch = next(it)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            batch = dm.on_after_batch_transfer(batch, 0)
            sync()
            t1 = time.perf_counter()
            x = batch["image"].contiguous(memory_format=memory_format(batch["image"].ndim))
            step(x, batch["target"], batch["weights"])
            sync()
            t2 = time.perf_counter()
            if i >= warmup:
                data_s.append(t1 - t0)
                compute_s.append(t2 - t1)
                if t2 - t_start > max_s:
                    break
    finally:
        del it  # shuts the workers down
    total = sum(data_s) + sum(compute_s)
    return {
        "data_share": sum(data_s) / total,
        "data_s_per_step": statistics.mean(data_s),
        "compute_s_per_step": statistics.mean(compute_s),
        "steps_per_s": len(data_s) / total,
        "timed_steps": len(data_s),
    }


def _train_precision(device: torch.device) -> str:
    """What trainer=gpu picks (unet.hardware.auto_precision); bf16 on the CPU dry run too, to exercise it."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "16-mixed"
    return "bf16-mixed"


# 3. inference: ours (predict_tiled) vs MONAI sliding_window_inference ------------------------------------
def bench_inference(cfg: dict[str, Any], device: torch.device, clock: Clock) -> dict[str, Any]:
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    sync = synchronizer(device)
    spec = cfg["nets"]["unet2d"]
    ours = build_net(spec, device).eval()
    f = ours.features
    widths = (*f, *([f[-1]] * (5 - len(f))), f[0])  # BasicUNet always pools 4 times: 6 widths
    torch.manual_seed(0)
    peer = BasicUNet(spatial_dims=2, in_channels=1, out_channels=ours.num_classes, features=widths)
    peer = peer.to(device).eval()
    budget_mib = default_tile_budget_mib(device) if device.type == "cuda" else 16.0
    roi, sw_batch = cfg["monai_roi"], cfg["monai_sw_batch"]
    result: dict[str, Any] = {
        "ours": f"UNet {spec['net']} valid convolutions, predict_tiled, batch 1, tile budget "
        f"{budget_mib:.0f} MiB",
        "monai": f"BasicUNet features {list(widths)}, sliding_window_inference roi {roi}, sw_batch_size "
        f"{sw_batch}, overlap 0.25, gaussian",
        "timing": f"best of {cfg['repeats']} after a warm-up; numpy image in, numpy probabilities out",
    }
    for size in cfg["infer_sizes"]:
        image = np.random.default_rng(size).random((1, size, size), dtype=np.float32)
        tile = tile_shape_for_budget(
            ours,
            int(budget_mib * MIB),
            max_shape=shapes.input_shape_for_output(ours.levels, (size, size)),
            measure=False,
        )
        plan = plan_tiles(ours.levels, (size, size), tile)
        entry: dict[str, Any] = {"tile": list(plan.tile_shape), "tiles": len(plan)}

        def run_ours(image: np.ndarray = image, tile: tuple[int, ...] = tile) -> np.ndarray:
            return predict_tiled(ours, image, tile_shape=tile, batch_size=1, device=device)

        def run_monai(image: np.ndarray = image) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(image)[None].to(device)
                y = sliding_window_inference(x, (roi, roi), sw_batch, peer, overlap=0.25, mode="gaussian")
                return torch.softmax(y.float(), 1)[0].cpu().numpy()

        for precision in ("32-true", "bf16-mixed"):
            why = precision_supported(device, precision)
            if why or not clock.allow(cfg["case_max_s"]):
                entry[precision] = {"skipped": why or "time budget spent"}
                continue
            try:
                row: dict[str, Any] = {}
                for method, fn in (("ours", run_ours), ("monai", run_monai)):
                    with autocast(device, precision):
                        fn()  # warm-up
                        sync()
                        reset_peak(device)
                        row[f"{method}_s"] = best_of(lambda fn=fn: (fn(), sync()), cfg["repeats"])
                    row[f"{method}_peak_mib"] = peak_mib(device)
                row["monai_over_ours"] = row["monai_s"] / row["ours_s"]
                entry[precision] = row
            except Exception as e:
                entry[precision] = _error(e)
                _free(device)
        result[str(size)] = entry
    return result


# 4. memory: tile_shape_for_budget's estimate against a measured step --------------------------------------
def bench_memory(cfg: dict[str, Any], device: torch.device, clock: Clock) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, spec in cfg["nets"].items():
        net = build_net(spec, device)
        for train in (False, True):
            for budget in cfg["memory_budgets_mib"][name]:
                row: dict[str, Any] = {"net": name, "train": train, "budget_mib": budget}
                if not clock.allow(cfg["case_max_s"]):
                    rows.append({**row, "skipped": "time budget spent"})
                    continue
                try:
                    tile = tile_shape_for_budget(
                        net, int(budget * MIB), train=train, element_size=spec["element_size"], measure=False
                    )
                    est = estimate_memory(net, tile, train=train)
                    meas = measure_memory(net, tile, train=train, device=device)
                    row.update(
                        tile=list(tile),
                        estimated_mib=est / MIB,
                        measured_mib=meas / MIB,
                        measured_over_estimated=meas / est,
                        fits_budget=meas <= budget * MIB,
                        fits_headroom=meas <= 0.9 * budget * MIB,
                    )
                except Exception as e:
                    row.update(_error(e))
                    _free(device)
                rows.append(row)
        del net
        _free(device)
    return rows


# driver ----------------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_memory_gib=props.total_memory / GIB,
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return info


SECTIONS = ("train", "inference", "memory", "data_wait")  # the slowest, most variable last


def run(
    dry: bool = False,
    out: str | Path | None = None,
    budget_s: float = 420.0,
    num_workers: int = 4,
    sections: tuple[str, ...] = SECTIONS,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the check; return (and write to ``out``) the results. Dry without CUDA."""
    if not torch.cuda.is_available():
        dry = True
    device = torch.device("cpu" if dry else "cuda")
    cfg = settings(dry)
    clock = Clock(budget_s)
    result: dict[str, Any] = {
        "dry": dry,
        "note": "dry run on the CPU with tiny nets: the figures exercise the code and mean nothing"
        if dry
        else "figures from one run; GPU timings after warm-up, synchronised per step",
        "machine": machine(device),
        "budget_s": budget_s,
        "settings": json_safe(cfg),
    }
    if dry:
        num_workers = 0
    benches: dict[str, Callable[[], Any]] = {
        "train": lambda: bench_train(cfg, device, clock),
        "inference": lambda: bench_inference(cfg, device, clock),
        "data_wait": lambda: bench_data(cfg, device, clock, num_workers),
        "memory": lambda: bench_memory(cfg, device, clock),
    }
    for section in sections:
        t0 = time.perf_counter()
        try:
            result[section] = benches[section]()
        except Exception as e:
            result[section] = _error(e)
        result.setdefault("section_s", {})[section] = time.perf_counter() - t0
    result["ratios"] = ratios(result)
    result["errors"] = errors(result)
    result["elapsed_s"] = clock.elapsed()
    if not quiet:
        print(report(result))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(json_safe(result), indent=1) + "\n")
    return result


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    for name, entry in (result.get("train") or {}).items():
        if isinstance(entry, dict) and entry.get("ratios"):
            r[f"train/{name}"] = entry["ratios"]
    for size, entry in (result.get("inference") or {}).items():
        if isinstance(entry, dict) and "tile" in entry:
            for p in ("32-true", "bf16-mixed"):
                if "monai_over_ours" in entry.get(p, {}):
                    r[f"inference/{size}/{p}/monai_s_over_ours_s"] = entry[p]["monai_over_ours"]
    return r


def errors(obj: Any, path: str = "") -> list[str]:
    """Where the results hold an error (paths into the JSON)."""
    found: list[str] = []
    if isinstance(obj, dict):
        if "error" in obj:
            found.append(f"{path or '/'}: {obj['error']}")
        for k, v in obj.items():
            if k != "errors":
                found += errors(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += errors(v, f"{path}/{i}")
    return found


def _error(e: BaseException) -> dict[str, str]:
    return {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc(limit=-3)}


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _cell(entry: dict[str, Any], key: str, spec: str = ".3g") -> str:
    if "skipped" in entry:
        return f"skipped ({entry['skipped']})"
    if "error" in entry:
        return "error"
    return _fmt(entry.get(key), spec)


def report(result: dict[str, Any]) -> str:
    """The results as markdown tables."""
    m = result["machine"]
    lines = [
        f"# GPU check{' (DRY RUN: figures mean nothing)' if result['dry'] else ''}",
        f"{m.get('gpu', m['device'])}, torch {m['torch']}, monai {m.get('monai', '-')}, "
        f"{result.get('elapsed_s', 0):.0f} s",
    ]
    train = result.get("train") or {}
    if isinstance(train, dict) and "error" not in train:
        lines += ["", "## Training steps/s (Adam, batch 1)", ""]
        lines += [
            "| net | tile | 32-true | bf16-mixed | 16-mixed | bf16/fp32 | fp16/fp32 | peak MiB (32/bf16/16) |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for name, e in train.items():
            if "error" in e:
                lines.append(f"| {name} | error: {e['error']} |")
                continue
            r = e.get("ratios", {})
            peaks = "/".join(_cell(e[p], "peak_mib", ".0f") for p in PRECISIONS)
            lines.append(
                f"| {name} | {'x'.join(map(str, e['tile']))} | "
                + " | ".join(_cell(e[p], "steps_per_s") for p in PRECISIONS)
                + f" | {_fmt(r.get('bf16/fp32'))} | {_fmt(r.get('fp16/fp32'))} | {peaks} |"
            )
    data = result.get("data_wait") or {}
    if isinstance(data, dict) and "error" not in data:
        lines += ["", f"## Data wait ({data.get('precision')} training steps, real UNetDataModule path)", ""]
        lines += ["| net | augment_on / workers | data share | data s/step | compute s/step | steps/s |"]
        lines += ["|---|---|---|---|---|---|"]
        for name in ("unet2d", "unet3d"):
            e = data.get(name)
            if not isinstance(e, dict):
                continue
            if "error" in e or "skipped" in e:
                lines.append(f"| {name} | {_cell(e, '')} | | | | |")
                continue
            for key, c in e.items():
                if isinstance(c, dict):
                    lines.append(
                        f"| {name} | {key} | {_cell(c, 'data_share', '.1%')} | "
                        f"{_cell(c, 'data_s_per_step')} | {_cell(c, 'compute_s_per_step')} | "
                        f"{_cell(c, 'steps_per_s')} |"
                    )
    inf = result.get("inference") or {}
    if isinstance(inf, dict) and "error" not in inf:
        lines += ["", "## Inference, s per image (ours: predict_tiled; MONAI: sliding window)", ""]
        lines += [f"ours: {inf.get('ours')}", f"MONAI: {inf.get('monai')}", ""]
        lines += [
            "| image | precision | our tile (tiles) | ours s | MONAI s | MONAI/ours | peak MiB ours/MONAI |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for size, e in inf.items():
            if not isinstance(e, dict) or "tile" not in e:
                continue
            for p in ("32-true", "bf16-mixed"):
                c = e.get(p, {})
                lines.append(
                    f"| {size}² | {p} | {e['tile'][0]}² ({e['tiles']}) | {_cell(c, 'ours_s')} | "
                    f"{_cell(c, 'monai_s')} | {_cell(c, 'monai_over_ours', '.2f')} | "
                    f"{_cell(c, 'ours_peak_mib', '.0f')}/{_cell(c, 'monai_peak_mib', '.0f')} |"
                )
    mem = result.get("memory") or []
    if isinstance(mem, list):
        lines += ["", "## Memory: tile_shape_for_budget estimate vs measured", ""]
        lines += [
            "| net | step | budget MiB | tile | estimated MiB | measured MiB | measured/est "
            "| fits 0.9 x budget |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for row in mem:
            lines.append(
                f"| {row['net']} | {'train' if row['train'] else 'infer'} | {row['budget_mib']} | "
                f"{'x'.join(map(str, row.get('tile', [])))} | {_cell(row, 'estimated_mib', '.4g')} | "
                f"{_cell(row, 'measured_mib', '.4g')} | {_cell(row, 'measured_over_estimated', '.2f')} | "
                f"{_cell(row, 'fits_headroom')} |"
            )
    if result.get("errors"):
        lines += ["", "## Errors", "", *(f"- {e}" for e in result["errors"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry", action="store_true", help="tiny CPU run (automatic without CUDA)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--budget-s", type=float, default=420.0, help="global time budget (s)")
    parser.add_argument(
        "--num-workers", type=int, default=4, help="DataLoader workers for the data-wait check"
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    result = run(args.dry, args.out, args.budget_s, args.num_workers, sections)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
