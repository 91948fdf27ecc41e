"""benchmarks.bench_inference on a tiny image: ours in float32 and bf16 against MONAI in one run, and the
report of a CPU without native bf16 (says why bf16 was not used instead of timing it)."""

from __future__ import annotations

import pytest

from benchmarks import bench_inference as bi

TINY = dict(size=96, threads=1, repeats=1, budget_mib=64, monai_roi=64, base_features=2, gemm=64)


@pytest.mark.xdist_group("bench_inference")
def test_fp32_bf16_and_monai_in_one_run() -> None:
    r = bi.measure(**TINY, native_bf16=True)
    sec = r["seconds"]
    assert set(sec) == {"ours_fp32", "ours_bf16", "monai_fp32"} and all(t > 0 for t in sec.values())
    assert r["ratios"]["ours_bf16/monai_fp32"] == pytest.approx(sec["monai_fp32"] / sec["ours_bf16"])
    assert r["ratios"]["ours_fp32/monai_fp32"] == pytest.approx(sec["monai_fp32"] / sec["ours_fp32"])
    assert r["ratios"]["ours_bf16/ours_fp32"] == pytest.approx(sec["ours_fp32"] / sec["ours_bf16"])
    assert set(r["gemm_gflops"]) == {"fp32", "bf16"} and min(r["gemm_gflops"].values()) > 0
    # bf16 really ran (outputs differ from float32) and stays close to it
    d = r["bf16_vs_fp32"]
    assert 0 < d["max_abs_prob_diff"] < 0.1 and d["argmax_changed_fraction"] < 0.1
    text = bi.report(r)
    assert "ours-bf16 / MONAI" in text and "ours-fp32 / MONAI" in text and "float32" in text
    assert "bf16 not used" not in text and "gemm 64^3: float32" in text


@pytest.mark.xdist_group("bench_inference")
def test_without_native_bf16_says_why_and_does_not_time_it() -> None:
    r = bi.measure(**TINY, native_bf16=False)
    assert set(r["seconds"]) == {"ours_fp32", "monai_fp32"} and set(r["gemm_gflops"]) == {"fp32"}
    assert "ours_bf16/monai_fp32" not in r["ratios"] and "bf16_vs_fp32" not in r
    text = bi.report(r)
    assert "bf16 not used" in text and "4x slower" in text
    assert "ours-bf16 / MONAI" not in text and "ours-fp32 / MONAI" in text
