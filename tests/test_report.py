"""Tests for unet.report: the tables and aggregates shared by predict.py, evaluate.py and the benchmarks."""

from __future__ import annotations

import math

from unet.report import column_means, pooled, text_table


def test_column_means_skip_what_is_not_a_finite_number() -> None:
    rows = [{"a": 1, "b": float("nan"), "c": "x"}, {"a": 2.0, "b": None}, {"a": True}]
    means = column_means(rows, ["a", "b", "c", "d"])
    assert means["a"] == 4 / 3 and all(math.isnan(means[k]) for k in "bcd")
    assert column_means(rows, ["b"], missing=None) == {"b": None}


def test_pooled_sums_counts_and_scores_the_sums() -> None:
    rows = [
        {"tp": 2, "fp": 1, "fn": 0, "n_gt": 2, "n_pred": 3},
        {"tp": 1, "fp": 0, "fn": 2, "n_gt": 3, "n_pred": 1},
    ]
    p = pooled(rows)
    assert list(p) == ["n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1"]
    assert (p["tp"], p["fp"], p["fn"]) == (3, 1, 2)
    assert (p["precision"], p["recall"], p["f1"]) == (3 / 4, 3 / 5, 6 / 9)
    # nothing to find and nothing found is perfect; only misses score 0
    assert pooled([{"tp": 0, "fp": 0, "fn": 0}], ("tp", "fp", "fn"))["f1"] == 1.0
    assert pooled([{"tp": 0, "fp": 0, "fn": 1}], ("tp", "fp", "fn"))["precision"] == 0.0


def test_text_table_aligns_and_rules() -> None:
    text = text_table(["image", "n"], [["a", "10"], ["long", "2"]], [["mean", "6"]])
    assert text.splitlines() == ["image   n", "---------", "a      10", "long    2", "---------", "mean    6"]


def test_ap50_pooled_and_recomputed_for_rows_without_it() -> None:
    from unet.report import ap50_of_rows

    rows = [{"tp": 1, "fp": 2, "fn": 2}, {"tp": 3, "fp": 0, "fn": 0}]
    assert "ap50" not in pooled(rows, ("tp", "fp", "fn"))
    assert pooled(rows, ("tp", "fp", "fn"), ap50=True)["ap50"] == 4 / 8  # of the sums
    # rows of old records: from tp/fp/fn; a stored value wins; nothing to compute from: None
    mixed = [*rows, {"ap50": 0.25, "tp": 9, "fp": 9, "fn": 9}, {"f1": 1.0}, {"tp": 0, "fp": 0, "fn": 0}]
    assert ap50_of_rows(mixed) == [1 / 5, 1.0, 0.25, None, 1.0]
