"""Overlap-tile inference speed: ours in float32 and bf16 against MONAI's sliding_window_inference, one run.

    python -m benchmarks.bench_inference [--size 2048] [--threads 2] [--repeats 2] [--out FILE]

A 2048x2048 single-channel image; ours: UNet(base_features=16, depth=4) with the tile chosen from a
memory budget (the same tile in both precisions), applied by :func:`unet.tiling.predict_tiled` with
``precision="32-true"`` and ``precision="bf16-mixed"`` (the network under bf16 autocast, soft-max and
blending in float32); MONAI: BasicUNet with the same widths (16..256), overlap 0.25, gaussian blending,
in float32 (what a MONAI user runs on a CPU). The three are timed in interleaved rounds (best of
``--repeats`` each), so that a change of machine load hits all of them alike.

Prints seconds per image, the ratios ours-fp32/MONAI and ours-bf16/MONAI, the fp32 and bf16 gemm rates
(``--gemm`` cubed matmul) of the same run and our achieved GFLOP/s (torch.utils.flop_counter) as a fraction
of them, how far the bf16 probabilities are from the float32 ones, and peak tensor memory.

bf16 is measured only where the CPU runs it natively (:func:`unet.hardware.cpu_has_native_bf16`:
AVX512-BF16 or AMX); elsewhere oneDNN emulates it, about 4x slower than float32, so the report says that
bf16 was not used and why instead of timing it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from unet.hardware import cpu_has_native_bf16
from unet.memory import LiveTensorBytes, tile_shape_for_budget
from unet.models.unet import UNet
from unet.tiling import plan_tiles, predict_tiled

NO_NATIVE_BF16 = (
    "bf16 not used: this CPU has no native bf16 (no AVX512-BF16 or AMX; unet.hardware.cpu_has_native_bf16() "
    "is False), and oneDNN's emulated bf16 runs about 4x slower than float32, so ours runs in float32 "
    "(precision='auto' picks 32-true here)"
)
TARGET_FP32, TARGET_BF16 = 1.5, 4.0  # ours / MONAI throughput (issue #20)


def gemm_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """GFLOP/s of an ``n``-cubed matmul in ``dtype`` (best of ``repeats`` after a warm-up)."""
    from benchmarks.common import best_of

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(
    *,
    size: int = 2048,
    threads: int = 2,
    repeats: int = 2,
    budget_mib: int = 512,
    monai_roi: int = 512,
    batch: int = 1,
    base_features: int = 16,
    gemm: int = 2048,
    native_bf16: bool | None = None,
) -> dict[str, Any]:
    """Time ours (float32, bf16 where native) and MONAI on one image; returns every number of the report."""
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    load_before = os.getloadavg()
    image = np.random.default_rng(0).random((1, size, size), dtype=np.float32)

    ours = UNet(in_channels=1, num_classes=2, base_features=base_features, depth=4).eval()
    tile = tile_shape_for_budget(
        ours, budget_mib * 2**20, batch_size=batch, max_shape=tuple(s + 184 for s in image.shape[1:])
    )
    plan = plan_tiles(ours.levels, image.shape[1:], tile)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ours(torch.zeros(1, 1, *plan.tile_shape))
    flops = counter.get_total_flops() * len(plan)

    widths = tuple(base_features * 2**i for i in range(5))
    peer = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(*widths, base_features)).eval()
    x = torch.from_numpy(image)[None]

    def run_ours(precision: str) -> Callable[[], np.ndarray]:
        return lambda: predict_tiled(ours, image, tile_shape=tile, batch_size=batch, precision=precision)

    def run_monai() -> np.ndarray:
        with torch.inference_mode():  # float32: no autocast
            y = sliding_window_inference(x, (monai_roi,) * 2, batch, peer, overlap=0.25, mode="gaussian")
            return torch.softmax(y, 1)[0].numpy()

    methods: dict[str, Callable[[], np.ndarray]] = {"ours_fp32": run_ours("32-true")}
    if native:
        methods["ours_bf16"] = run_ours("bf16-mixed")
    methods["monai_fp32"] = run_monai

    outputs = {name: fn() for name, fn in methods.items()}  # warm-up, and the outputs compared below
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):  # interleaved: load changes during the run hit every method alike
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {name: min(ts) for name, ts in times.items()}

    peaks = {}
    for name, fn in methods.items():
        with LiveTensorBytes() as mem:
            fn()
        extra = 2 * image.size * 4 if name.startswith("ours") else 0  # our numpy output, unseen by it
        peaks[name] = (mem.peak + extra) / 2**20

    rates = {"fp32": gemm_gflops(gemm, torch.float32)}
    if native:
        rates["bf16"] = gemm_gflops(gemm, torch.bfloat16)
    result: dict[str, Any] = {
        "size": size,
        "threads": threads,
        "repeats": repeats,
        "batch": batch,
        "base_features": base_features,
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average": (load_before[0], os.getloadavg()[0]),
        "native_bf16": native,
        "bf16_note": None if native else NO_NATIVE_BF16,
        "tile": tuple(plan.tile_shape),
        "output_tile": tuple(plan.output_tile),
        "stride": tuple(plan.stride),
        "tiles": len(plan),
        "monai_roi": monai_roi,
        "gflop_per_image": flops / 1e9,
        "seconds": best,
        "all_seconds": times,
        "peak_mib": peaks,
        "gemm_n": gemm,
        "gemm_gflops": rates,
        "ratios": {
            f"{name}/monai_fp32": best["monai_fp32"] / best[name] for name in methods if name != "monai_fp32"
        },
    }
    if native:
        result["ratios"]["ours_bf16/ours_fp32"] = best["ours_fp32"] / best["ours_bf16"]
        diff = np.abs(outputs["ours_bf16"] - outputs["ours_fp32"])
        argmax_changed = outputs["ours_bf16"].argmax(0) != outputs["ours_fp32"].argmax(0)
        result["bf16_vs_fp32"] = {
            "max_abs_prob_diff": float(diff.max()),
            "mean_abs_prob_diff": float(diff.mean()),
            "argmax_changed_fraction": float(argmax_changed.mean()),
        }
    return result


def report(r: dict[str, Any]) -> str:
    """The text of ``benchmarks/results/bench_inference.txt``."""
    s, sec, ratios, rates = r["size"], r["seconds"], r["ratios"], r["gemm_gflops"]
    lines = [
        f"image {s}x{s}, torch {r['torch']}, {r['threads']} threads, {r['cpu']} ({r['cores']} cores), "
        f"native bf16: {'yes' if r['native_bf16'] else 'no'}",
        f"load average {r['load_average'][0]:.1f} at the start, {r['load_average'][1]:.1f} at the end "
        "(other work on the machine slows every method; they are timed in interleaved rounds)",
        f"ours: tile {r['tile']} -> {r['output_tile']}, stride {r['stride']}, {r['tiles']} tiles, "
        "the same tile in float32 and bf16",
        f"MONAI: roi {r['monai_roi']}, overlap 0.25, gaussian, float32",
        "",
        "| method | s / image | images / s | GFLOP/s | peak tensor MiB |",
        "|---|---|---|---|---|",
    ]
    b = r["base_features"]
    labels = {
        "ours_fp32": f"ours, float32 (UNet {b}..{16 * b}, valid)",
        "ours_bf16": "ours, bf16-mixed (same net and tiles)",
        "monai_fp32": f"MONAI BasicUNet {b}..{16 * b} + sliding window, float32",
    }
    for name, t in sec.items():
        gflops = f"{r['gflop_per_image'] / t:.1f}" if name.startswith("ours") else "-"
        lines.append(f"| {labels[name]} | {t:.2f} | {1 / t:.3f} | {gflops} | {r['peak_mib'][name]:.0f} |")
    lines.append("")
    fp32 = ratios["ours_fp32/monai_fp32"]
    lines.append(
        f"throughput ratio ours-fp32 / MONAI: {fp32:.2f}x "
        f"(target >= {TARGET_FP32:g}x: {'met' if fp32 >= TARGET_FP32 else 'missed'})"
    )
    if "ours_bf16/monai_fp32" in ratios:
        bf16 = ratios["ours_bf16/monai_fp32"]
        lines.append(
            f"throughput ratio ours-bf16 / MONAI: {bf16:.2f}x "
            f"(target >= {TARGET_BF16:g}x: {'met' if bf16 >= TARGET_BF16 else 'missed'}); "
            f"bf16 over float32: {ratios['ours_bf16/ours_fp32']:.2f}x"
        )
    else:
        lines.append(f"ours-bf16: {r['bf16_note']}")
    n = r["gemm_n"]
    gemm = f"gemm {n}^3: float32 {rates['fp32']:.1f} GFLOP/s"
    if "bf16" in rates:
        gemm += f", bf16 {rates['bf16']:.1f} GFLOP/s ({rates['bf16'] / rates['fp32']:.2f}x)"
    lines.append(gemm)
    g = r["gflop_per_image"]
    frac = f"ours: {g:.1f} GFLOP per image; float32 {g / sec['ours_fp32']:.1f} GFLOP/s = "
    frac += f"{g / sec['ours_fp32'] / rates['fp32']:.2f} of the float32 gemm"
    if "ours_bf16" in sec:
        frac += f"; bf16 {g / sec['ours_bf16']:.1f} GFLOP/s = {g / sec['ours_bf16'] / rates['bf16']:.2f}"
        frac += " of the bf16 gemm"
    lines.append(frac)
    if "bf16_vs_fp32" in r:
        d = r["bf16_vs_fp32"]
        lines.append(
            f"bf16 against float32 probabilities: max |diff| {d['max_abs_prob_diff']:.4f}, mean "
            f"{d['mean_abs_prob_diff']:.5f}, arg-max class changed at "
            f"{100 * d['argmax_changed_fraction']:.3f}% of the pixels (random weights: most pixels sit near "
            "p = 0.5)"
        )
    runs = ", ".join(f"{k} {' / '.join(f'{t:.2f}' for t in v)}" for k, v in r["all_seconds"].items())
    lines.append(f"all timed runs (s): {runs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048, help="image edge length (px)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds (best of each kept)")
    parser.add_argument("--budget-mib", type=int, default=512, help="memory budget for our tile (MiB)")
    parser.add_argument("--monai-roi", type=int, default=512, help="MONAI sliding-window roi edge (px)")
    parser.add_argument("--batch", type=int, default=1, help="tiles per forward pass (both methods)")
    parser.add_argument("--base-features", type=int, default=16, help="widths base..16*base (both nets)")
    parser.add_argument("--gemm", type=int, default=2048, help="edge of the timed square matmul")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    result = measure(
        size=args.size,
        threads=args.threads,
        repeats=args.repeats,
        budget_mib=args.budget_mib,
        monai_roi=args.monai_roi,
        batch=args.batch,
        base_features=args.base_features,
        gemm=args.gemm,
    )
    text = report(result)
    print(text)
    if args.out is not None:
        from benchmarks.common import write_text_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, text + "\n")
    return result


if __name__ == "__main__":
    main()
