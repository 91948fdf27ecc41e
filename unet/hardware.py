"""What the hardware offers, chosen explicitly and logged: mixed precision (the Hydra resolver
``unet.precision``, registered by :mod:`unet.config`), prediction memory budgets, device checks.

``trainer.precision: ${unet.precision:${trainer.accelerator}}`` (the default) resolves to

* CUDA: ``bf16-mixed`` where the GPU computes bf16 natively (Ampere and later), else ``16-mixed``;
* CPU: ``bf16-mixed`` where the CPU has native bf16 instructions (AVX512-BF16 or AMX), which doubles the
  matrix-multiply rate and trains our nets 1.5-1.85x faster; ``32-true`` elsewhere, because without them
  oneDNN emulates bf16 and runs about 4x *slower* than float32 (measured on an AVX-512 CPU without BF16:
  184 vs 50 GFLOP/s for a 2048² gemm).

Any explicit ``trainer.precision=...`` wins. :func:`precision_reason` says in the run summary why.
"""

from __future__ import annotations

import torch

#: environment variable that overrides the CPU's bf16 detection (``0`` or ``1``): runs the automatic rule as
#: on the other kind of CPU, e.g. the test suite (``UNET_NATIVE_BF16=0 python -m pytest``)
NATIVE_BF16_ENV = "UNET_NATIVE_BF16"


def cpu_has_native_bf16() -> bool:
    """True if the CPU has AVX512-BF16 or AMX (oneDNN then runs bf16 convolutions natively), unless
    ``UNET_NATIVE_BF16`` says otherwise (``0``/``1``)."""
    import os

    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{NATIVE_BF16_ENV}={forced!r}: use 0 or 1 (or leave it unset to detect the CPU)")
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def _cuda_target(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def auto_precision(accelerator: str = "auto") -> str:
    """The Lightning precision for ``accelerator`` (auto, cpu, gpu/cuda, mps) on this machine."""
    if _cuda_target(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("cpu", "auto"):
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "32-true"


def precision_reason(
    accelerator: str, precision: str, requested: str | None = "auto", key: str = "trainer.precision"
) -> str:
    """One line for the run summary: the precision and why it was chosen (``requested``: what the user
    asked for, ``auto`` or None for the automatic rule; ``key``: the option that overrides it)."""
    if (requested not in (None, "auto")) or precision != auto_precision(accelerator):
        return f"{precision} (as configured)"
    if _cuda_target(accelerator):
        return f"{precision} (automatic: CUDA {'with' if 'bf16' in precision else 'without'} native bf16)"
    if accelerator in ("cpu", "auto"):
        why = "native bf16 (AVX512-BF16/AMX)" if "bf16" in precision else "no native bf16 on this CPU"
        return f"{precision} (automatic: {why}; {key}=... overrides)"
    return f"{precision} (automatic)"


def slow_precision_note(accelerator: str, precision: str) -> str | None:
    """A warning when the precision asked for is emulated on this machine: bf16 on a CPU without native
    bf16 runs about 2.5x slower than float32 (measured here, ``benchmarks/bench_inference.py``); None
    otherwise."""
    on_cpu = accelerator in ("cpu", "auto") and not _cuda_target(accelerator)
    if on_cpu and "bf16" in str(precision) and not cpu_has_native_bf16():
        return (
            f"precision {precision} was asked for, but this CPU has no native bf16 (no AVX512-BF16/AMX): "
            "it is emulated, about 2.5x slower than 32-true; leave precision at auto for float32 here"
        )
    return None


#: the precisions a model can be applied in (Lightning's names; ``auto``: :func:`auto_precision`)
APPLY_PRECISIONS = ("auto", "bf16-mixed", "16-mixed", "32-true", "32", "bf16", "16")


def resolve_precision(precision: str | int | None, device: str | torch.device = "cpu") -> str:
    """The precision a model is applied in on ``device``: ``auto`` (or None) follows the training rule
    (:func:`auto_precision`), so validation and prediction run in the precision training chose;
    ``32-true`` forces float32. Returns one of ``bf16-mixed``, ``16-mixed``, ``32-true``."""
    text = "auto" if precision is None else str(precision)
    if text not in APPLY_PRECISIONS:
        raise ValueError(f"precision={text!r}: use one of {', '.join(APPLY_PRECISIONS)}")
    dev = torch.device(device)
    if text == "auto":
        return auto_precision("gpu" if dev.type == "cuda" else dev.type if dev.type == "cpu" else "other")
    return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(text, text)


def autocast(precision: str, device: str | torch.device = "cpu"):
    """The autocast context of a resolved precision on ``device`` (a no-op for ``32-true``): the same
    region Lightning's mixed-precision plugin opens around a training or validation step."""
    import contextlib

    dev = torch.device(device)
    if precision == "bf16-mixed":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        if dev.type != "cuda":
            raise ValueError("precision=16-mixed needs a CUDA device; use bf16-mixed or 32-true")
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def available_memory_bytes(device: str | torch.device = "cpu") -> int:
    """Memory free for new work: CUDA ``mem_get_info`` free bytes, else the OS's MemAvailable (Linux), else
    physical memory (``os.sysconf``), else 4 GiB."""
    import os

    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


#: CPU prediction gains nothing from tiles whose forward pass needs more than this (measured: a 4096² image
#: predicts at the same speed with 512 MiB tiles as in one tile, with 1/4 of the peak memory)
CPU_TILE_BUDGET_CAP_MIB = 1024.0


def default_tile_budget_mib(device: str | torch.device = "cpu") -> float:
    """Memory budget of one prediction forward pass when none is given: half the free GPU memory; on a CPU
    an eighth of the available RAM, at most :data:`CPU_TILE_BUDGET_CAP_MIB` (the image and its probabilities
    need the rest)."""
    free = available_memory_bytes(device) / 2**20
    if torch.device(device).type == "cuda":
        return max(64.0, 0.5 * free)
    return max(64.0, min(CPU_TILE_BUDGET_CAP_MIB, free / 8))


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a ValueError saying why it cannot be used here (before any work)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r}: not a device ({e}); use cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device}: no CUDA GPU is available to this PyTorch build "
                f"({torch.__version__}); use device=cpu or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device}: MPS is not available here; use device=cpu")
    return dev
