"""Reports of per-image results: console tables, the mean and pooled rows, and evaluation's report files.

One home for what ``predict.py``, ``evaluate.py`` and ``benchmarks/quality.py`` show of their rows:

* :func:`text_table` (fixed-width, first column left-aligned), used by :func:`format_summary` (the
  ``summary.csv`` rows of :func:`unet.predict.predict_files`) and :func:`format_table` (an
  :class:`unet.evaluation.EvaluationResult`);
* :func:`column_means` and :func:`pooled`: the mean row over images and the tp/fp/fn pooled over images with
  precision/recall/F1 (and AP@0.5) computed from the sums (the ratio convention of :mod:`unet.metrics`);
  :func:`ap50_of_rows`: AP@0.5 per row, from its tp/fp/fn where an older record lacks it;
* :func:`write_reports`: ``metrics.csv``, ``metrics.json`` and ``metrics.png`` of
  :func:`unet.evaluation.evaluate_dirs` (formats in the :mod:`unet.evaluation` docstring), and
  :func:`json_safe` for every JSON file written from results.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet import io
from unet.metrics import ratio
from unet.metrics.objects import accuracy_from_counts

logger = logging.getLogger(__name__)

#: a metric's value in a row
Value = float | int | str


@dataclass
class EvaluationResult:
    """Result of :func:`unet.evaluation.evaluate_dirs` (here, beside the tables and reports made of it).

    Attributes:
        task: The task.
        rows: One dict per image: ``image`` (the key) and the metrics of :func:`evaluate_pair`.
        mean: ``image = "mean"`` and the mean of every metric over the images (``nan`` values skipped;
            ``count_error``: mean absolute counting error).
        pooled: tp/fp/fn/n_gt/n_pred summed over images and precision/recall/f1 from the sums
            (segmentation at IoU 0.5, also ``ap50`` of the sums; detection); empty for em.
        settings: The evaluation settings (directories and the task's parameters).
        files: ``(key, prediction path, ground-truth path)`` per image, aligned with ``rows``.
        curves: em: per image key, the per-threshold error curves; empty otherwise.
        outputs: Written files by name (``csv``, ``json``, ``png``); empty if nothing was written.
    """

    task: str
    rows: list[dict[str, Value]]
    mean: dict[str, Value]
    pooled: dict[str, Value]
    settings: dict[str, Any]
    files: list[tuple[str, Path, Path]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        """Metric columns in order (without ``image``)."""
        return [k for k in self.rows[0] if k != "image"] if self.rows else []


#: counts summed by :func:`pooled` (segmentation at IoU 0.5 and detection rows have them all)
POOLED_COUNTS: tuple[str, ...] = ("n_gt", "n_pred", "tp", "fp", "fn")
#: metrics shown as integers (or with two decimals when they are means)
_COUNT_KEYS = (*POOLED_COUNTS, "count_error")
#: columns of :func:`format_table` per task (all ``f1@<t>`` columns are left out for segmentation)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "segmentation": (
        "n_gt",
        "n_pred",
        "mean_iou",
        "precision",
        "recall",
        "f1",
        "ap50",
        "pq",
        "ap",
        "count_error",
    ),
    "detection": ("n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "count_error"),
    "em": (
        "pixel_error",
        "rand_error",
        "adapted_rand_error",
        "v_info_error",
        "best_adapted_rand_error",
        "best_v_info_error",
    ),
}
#: the metrics of the one-line summary in the log, per task
_HEADLINE: dict[str, tuple[str, ...]] = {
    "segmentation": ("mean_iou", "f1", "ap50", "pq", "ap", "count_error"),
    "detection": ("precision", "recall", "f1", "count_error"),
    "em": ("pixel_error", "rand_error", "best_adapted_rand_error", "best_v_info_error"),
}


def json_safe(obj: Any) -> Any:
    """Recursively convert numpy values and paths to JSON types; non-finite floats become ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------------------
# aggregation
# ----------------------------------------------------------------------------------------------------


def column_means(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], missing: float | None = float("nan")
) -> dict[str, float | None]:
    """Per key, the mean of the rows' finite numbers (other values and missing keys are skipped);
    ``missing`` where there is none."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [
            float(v)
            for v in (r.get(key) for r in rows)
            if isinstance(v, int | float) and math.isfinite(float(v))
        ]
        out[key] = float(np.mean(values)) if values else missing
    return out


def pooled(
    rows: Sequence[Mapping[str, Any]], counts: Sequence[str] = POOLED_COUNTS, *, ap50: bool = False
) -> dict[str, Any]:
    """``counts`` summed over the rows, and precision, recall and F1 of the summed tp/fp/fn (``0 / 0`` is 1
    when nothing else went wrong, as in :mod:`unet.metrics`); with ``ap50`` (segmentation rows, whose counts
    are matches at IoU 0.5) also ``ap50 = tp / (tp + fp + fn)`` of the sums."""
    s = {k: int(sum(int(r[k]) for r in rows)) for k in counts}
    tp, fp, fn = s["tp"], s["fp"], s["fn"]
    out = {
        **s,
        "precision": ratio(tp, tp + fp, fn),
        "recall": ratio(tp, tp + fn, fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn, fp + fn),
    }
    if ap50:
        out["ap50"] = accuracy_from_counts(tp, fp, fn)
    return out


def ap50_of_rows(rows: Sequence[Mapping[str, Any]]) -> list[float | None]:
    """Per row, its ``ap50``, or where a row lacks it (records written before it was reported) AP@0.5
    computed again from the row's ``tp``/``fp``/``fn`` (matches at IoU 0.5); ``None`` where neither is
    there."""
    out: list[float | None] = []
    for r in rows:
        if r.get("ap50") is not None:
            out.append(float(r["ap50"]))
        elif all(isinstance(r.get(k), int | float) for k in ("tp", "fp", "fn")):
            out.append(accuracy_from_counts(r["tp"], r["fp"], r["fn"]))
        else:
            out.append(None)
    return out


# ----------------------------------------------------------------------------------------------------
# console tables
# ----------------------------------------------------------------------------------------------------


def text_table(
    header: Sequence[str], body: Sequence[Sequence[str]], footer: Sequence[Sequence[str]] = ()
) -> str:
    """Fixed-width table: the first column left-aligned, the others right-aligned, two spaces apart; a rule
    under the header (and above the footer rows, if any); no trailing spaces or newline."""
    table = [list(header), *map(list, body), *map(list, footer)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    lines = [line(header), rule, *(line(b) for b in body)]
    if footer:
        lines += [rule, *(line(f) for f in footer)]
    return "\n".join(lines)


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary rows of :func:`unet.predict.predict_files` as a table (without the ``probabilities``
    column; one ``count_class<k>`` column is left out as it equals ``count``)."""
    if not rows:
        return "(no images)"
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols and k != "probabilities"]
    class_cols = [c for c in cols if c.startswith("count_class")]
    if len(class_cols) <= 1:
        cols = [c for c in cols if c not in class_cols]

    def fmt(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, float):
            return "nan" if not math.isfinite(value) else f"{value:.4g}"
        return str(value)

    return text_table(cols, [[fmt(row.get(c)) for c in cols] for row in rows])


def format_table(result: EvaluationResult, columns: Sequence[str] | None = None) -> str:
    """The per-image rows and the mean row of an :class:`~unet.evaluation.EvaluationResult` as a table.

    Args:
        result: The evaluation.
        columns: Metric columns to show; default: :data:`TABLE_COLUMNS` of the task.
    """
    cols = [c for c in (TABLE_COLUMNS[result.task] if columns is None else columns) if c in result.mean]

    def fmt(col: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        v = float(value)
        if not math.isfinite(v):
            return "nan"
        if col in _COUNT_KEYS:
            return str(int(v)) if v.is_integer() else f"{v:.2f}"
        return f"{v:.4f}"

    body = [[str(r["image"]), *(fmt(c, r[c]) for c in cols)] for r in result.rows]
    mean = ["mean", *(fmt(c, result.mean[c]) for c in cols)]
    return text_table(["image", *cols], body, [mean])


def headline(result: EvaluationResult) -> str:
    """The task's main mean metrics on one line (``mean_iou=0.8123, f1=...``), for the log."""
    return ", ".join(f"{k}={float(result.mean[k]):.4f}" for k in _HEADLINE[result.task])


# ----------------------------------------------------------------------------------------------------
# evaluation report files
# ----------------------------------------------------------------------------------------------------


def write_reports(result: EvaluationResult, out: Path, *, plot: bool) -> None:
    """Write ``metrics.csv``, ``metrics.json`` and (if ``plot``) ``metrics.png`` atomically into ``out``
    and record them in ``result.outputs``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, png_path = out / "metrics.csv", out / "metrics.json", out / "metrics.png"
    io.write_csv(csv_path, [*result.rows, result.mean], fieldnames=["image", *result.metric_names])
    images = []
    for row, (_, pred, gt) in zip(result.rows, result.files, strict=True):
        entry: dict[str, Any] = {"image": row["image"], "prediction": str(pred), "ground_truth": str(gt)}
        entry.update({k: v for k, v in row.items() if k != "image"})
        if str(row["image"]) in result.curves:
            entry["curves"] = result.curves[str(row["image"])]
        images.append(entry)
    doc = {
        "task": result.task,
        "settings": result.settings,
        "metrics": result.metric_names,
        "images": images,
        "mean": {k: v for k, v in result.mean.items() if k != "image"},
        "pooled": result.pooled,
    }
    io.write_text(json_path, json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")
    result.outputs.update(csv=csv_path, json=json_path)
    if plot:
        _plot(result, png_path)
        result.outputs["png"] = png_path
    logger.info("wrote %s", ", ".join(str(p) for p in result.outputs.values()))


def _plot(result: EvaluationResult, path: Path) -> None:
    """Write the summary figure with matplotlib's Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result.rows
    panels = {"segmentation": 2, "detection": 1, "em": 1}[result.task]
    fig = Figure(figsize=(4.5 * panels, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if result.task == "segmentation":
        ax = axes[0]
        keys = [k for k in result.metric_names if k.startswith("f1@")]
        ths = [float(k[3:]) for k in keys]
        for row in rows:
            ax.plot(ths, [float(row[k]) for k in keys], color="0.6", lw=0.8, alpha=0.6)
        ax.plot(ths, [float(result.mean[k]) for k in keys], color="C0", lw=2, marker="o", label="mean")
        ax.plot([], [], color="0.6", lw=0.8, label="per image")
        ax.set(xlabel="IoU threshold", ylabel="F1", ylim=(-0.02, 1.02), title="F1 against IoU threshold")
        ax.legend(loc="lower left")
    if result.task in ("segmentation", "detection"):
        ax = axes[-1]
        n_gt = np.array([float(r["n_gt"]) for r in rows])
        n_pred = np.array([float(r["n_pred"]) for r in rows])
        top = max(float(n_gt.max(initial=0)), float(n_pred.max(initial=0)), 1.0) * 1.05
        ax.plot([0, top], [0, top], color="0.5", ls="--", lw=1, label="identity")
        ax.scatter(n_gt, n_pred, s=18, color="C1", zorder=3, label="images")
        ax.set(
            xlabel="true count",
            ylabel="predicted count",
            xlim=(0, top),
            ylim=(0, top),
            title=f"counts (mean abs. error {float(result.mean['count_error']):.2f})",
        )
        ax.set_aspect("equal")
        ax.legend(loc="upper left")
    if result.task == "em":
        ax = axes[0]
        names = ("pixel_error", "rand_error", "adapted_rand_error", "v_info_error")
        curves = list(result.curves.values())
        ths = curves[0]["thresholds"]
        for name in names:
            ax.plot(ths, np.mean([c[name] for c in curves], axis=0), marker="o", ms=3, label=name)
        ax.set(xlabel="threshold on interior probability", ylabel="error (mean over images)", title="EM")
        ax.legend()
    with io.atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
