"""python -m benchmarks.gpu_check: the dry (CPU) run exercises every section and writes complete JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> Any:
    from benchmarks import gpu_check

    return gpu_check


@pytest.fixture(scope="module")
def dry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    gpu_check = _load()
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    result = gpu_check.run(dry=True, out=out, budget_s=300, quiet=True)
    return gpu_check, result, json.loads(out.read_text())


def _positive(entry: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = entry[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def test_dry_run_writes_every_section(dry) -> None:
    _, result, data = dry
    assert data["dry"] is True and "mean nothing" in data["note"]
    assert data["errors"] == [], data["errors"]
    for section in ("machine", "train", "inference", "data_wait", "memory", "ratios"):
        assert section in data, section
    assert data["machine"]["torch"] and data["machine"]["device"] == "cpu"
    assert all(math.isfinite(v) for v in _numbers(data))
    assert result["errors"] == []


def test_train_steps_per_precision(dry) -> None:
    gpu_check, _, data = dry
    for name in ("unet2d", "unet3d"):
        entry = data["train"][name]
        for precision in gpu_check.PRECISIONS:
            _positive(entry[precision], "steps_per_s", "median_step_s", "timed_steps", "voxels_per_s")
        _positive(entry["ratios"], "bf16/fp32", "fp16/fp32")
        assert data["ratios"][f"train/{name}"] == entry["ratios"]
    assert data["train"]["unet3d"]["net"]["spatial_dims"] == 3


def test_data_wait_worker_and_device(dry) -> None:
    _, _, data = dry
    for name in ("unet2d", "unet3d"):
        entry = data["data_wait"][name]
        for mode in ("worker", "device"):
            case = entry[f"{mode}/workers=0"]
            _positive(case, "data_share", "data_s_per_step", "compute_s_per_step", "steps_per_s")
            assert 0 < case["data_share"] < 1


def test_inference_against_monai(dry) -> None:
    _, _, data = dry
    sizes = [k for k, v in data["inference"].items() if isinstance(v, dict)]
    assert len(sizes) == 2
    for size in sizes:
        entry = data["inference"][size]
        _positive(entry, "tiles")
        for precision in ("32-true", "bf16-mixed"):
            _positive(entry[precision], "ours_s", "monai_s", "monai_over_ours")
            assert f"inference/{size}/{precision}/monai_s_over_ours_s" in data["ratios"]


def test_memory_estimate_against_measured(dry) -> None:
    _, _, data = dry
    rows = data["memory"]
    assert {(r["net"], r["train"]) for r in rows} == {
        (n, t) for n in ("unet2d", "unet3d") for t in (False, True)
    }
    for row in rows:
        _positive(row, "estimated_mib", "measured_mib", "measured_over_estimated")
        # the CPU measurement (LiveTensorBytes) is what the estimate is built to match
        assert 0.5 < row["measured_over_estimated"] < 1.5, row
        assert row["estimated_mib"] <= 0.9 * row["budget_mib"]


def test_report_and_cli_arguments(dry) -> None:
    gpu_check, result, _ = dry
    text = gpu_check.report(result)
    for header in ("DRY RUN", "Training steps/s", "Data wait", "Inference", "Memory"):
        assert header in text
    with pytest.raises(SystemExit):
        gpu_check.main(["--sections", "bogus"])
