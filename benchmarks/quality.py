"""Quality on the real datasets: train each experiment within a time budget, score its held-out test split.

For every experiment (``conf/experiment/<name>.yaml``, one per folder of ``../shared/data``):

1. compose the config (``experiment=<name>`` plus the budget: CPU minutes of the training process,
   ``benchmarks/cpu_budget.py``, so that runs sharing the machine get the same compute) and train
   (:func:`unet.cli.train.train`; the best checkpoint is chosen on the ``val`` split);
2. load the best checkpoint (:func:`unet.predict.image.load_model`) and predict the ``test`` split, which no
   training run ever reads (:meth:`unet.data.datasets.DatasetSource.test_items`), through
   :func:`unet.predict.image.predict_image` at the item's element size, objects from the task;
3. score with :func:`unet.evaluation.evaluate_pair`: segmentation: mean object IoU (Falk 2019 M6.1), F1
   and AP@0.5 (``tp / (tp + fp + fn)``, StarDist / DSB 2018) at IoU 0.5; detection: F1 within ``d_match``
   (M6.2) and the absolute count error; ISBI 2012 also the EM scores of the cell-interior probability
   (:func:`unet.metrics.em_scores`: pixel error, Rand error);
4. merge the numbers into ``<out>/quality.json`` and rewrite the table ``<out>/quality.md`` (dataset, task,
   metric, ours, anchor with its source, training minutes, test images).

``--transfer`` instead runs the transfer-learning comparison (Falk 2019, M5: adaptation with one or two
annotated images): pretrain on ``dsb2018-subset`` (grayscale, 1 channel), then train on 1, 2 and 4
annotated frames of the target (default ``ctc-fluo-n2dh-gowt1``; the frames are taken in order from its
``train`` + ``val`` lists, never from ``test``) from scratch and from the pretrained weights
(``model.init_from``), same budget and settings for both; no validation-based selection (there is no
spare frame at 4), the last checkpoint is scored on the target's test split. Writes ``transfer.md``,
``transfer.json`` and ``transfer.png`` (IoU against the number of annotated images).

Usage::

    python -m benchmarks.quality [--experiments a,b,...] [--minutes 20[,NAME=M,...]] [--out DIR]
    python -m benchmarks.quality --transfer [--pretrain-minutes 20] [--minutes 5] [--transfer-images 1,2,4]
    python -m benchmarks.quality --report            # rewrite the reports from <out>/*.json, train nothing

``--readme README.md`` also puts the tables into the README between its ``<!-- quality-table:begin -->`` /
``<!-- transfer-table:begin -->`` markers (and the matching ``:end`` ones).

``--set KEY=VALUE`` (repeatable) adds a Hydra override to every run (e.g. smaller networks for a smoke
test); ``--data-root`` is where the dataset folders are (default ``<repo>/../shared/data``); runs
(checkpoints, CSV logs) go to ``--runs`` (default ``logs/quality``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    ANCHORS,
    BASE_MODEL,
    CONF,
    DEFAULT_DATA_ROOT,
    ROOT,
    TEST_TTA,
    checkpoint_of,
    compose_config,
    device_name,
    evaluate_test,
    fresh_run_dir,
    record_mean,
    run_experiment,
    torch_threads,
    write_json,
    write_text_atomic,
)

log = logging.getLogger("quality")

EXPERIMENTS = (
    "isbi2012-em",
    "ctc-fluo-n2dh-gowt1",
    "ctc-fluo-n2dl-hela",
    "dsb2018-subset",
    "nih3t3-coelho2009",
    "mbm-bonemarrow-dots",
    "plantseg-ovule-cells-3d",
    "plantseg-nuclei-3d-crops",
)

# metric key in our results -> label in the table
METRIC_LABELS = {
    "mean_iou": "mean object IoU (M6.1)",
    "f1": "F1 @ IoU 0.5",
    "ap50": "AP@0.5 = TP / (TP + FP + FN) at IoU 0.5",
    "det_f1": "F1 (d_match 6 px, M6.2)",
    "count_error": "count error (MAE per image)",
    "foreground_iou": "foreground IoU (semantic, pixels)",
    "foreground_dice": "foreground Dice (semantic, pixels)",
    "pixel_error": "pixel error (best over thresholds)",
    "rand_error": "Rand error (1 - V^Rand, best over thresholds)",
}

NOT_IN_FOLDER = "anchor not in our papers folder"

# semantic ground truth (touching nuclei merged into one component): scored by pixel overlap first
SEMANTIC = ("nih3t3-coelho2009",)

# the targets of issue #6 on the held-out images: experiment -> metric -> (">=" | "<=", value)
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "isbi2012-em": {"pixel_error": ("<=", 0.07), "rand_error": ("<=", 0.06)},
    "ctc-fluo-n2dh-gowt1": {"mean_iou": (">=", 0.80), "f1": (">=", 0.90)},
    "ctc-fluo-n2dl-hela": {"mean_iou": (">=", 0.80), "f1": (">=", 0.90)},
    "mbm-bonemarrow-dots": {"det_f1": (">=", 0.85), "count_error": ("<=", 10.0)},
    "plantseg-nuclei-3d-crops": {"mean_iou": (">=", 0.70)},
}

README_MARKERS = {
    "quality": ("<!-- quality-table:begin -->", "<!-- quality-table:end -->"),
    "transfer": ("<!-- transfer-table:begin -->", "<!-- transfer-table:end -->"),
    "arms": ("<!-- arms-table:begin -->", "<!-- arms-table:end -->"),
}


def target_cell(experiment: str, metric: str, value: float | None) -> str:
    """``'>= 0.8: met'`` / ``'<= 10: missed'`` for a metric with an issue target, else ``''``."""
    if metric not in TARGETS.get(experiment, {}):
        return ""
    op, goal = TARGETS[experiment][metric]
    if value is None:
        return f"{op} {goal:g}: n/a"
    met = value >= goal if op == ">=" else value <= goal
    return f"{op} {goal:g}: {'met' if met else 'missed'}"


# ------------------------------------------------------------------------------------------ reports


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Markdown rows of one experiment's result."""
    exp = result["experiment"]
    metrics = ["det_f1", "count_error"] if result["task"] == "detection" else ["mean_iou", "f1", "ap50"]
    if exp in SEMANTIC:  # merged touching objects in the ground truth: pixel overlap is the measure
        metrics = ["foreground_iou", "foreground_dice", *metrics]
    if exp.startswith("isbi2012"):
        metrics += ["pixel_error", "rand_error"]
    anchors = ANCHORS.get(exp, {})
    rows = []
    for m in metrics:
        value = record_mean(result, m)
        if m in anchors:
            a, source = anchors[m]
            anchor = f"{a:g} — {source}" if a is not None else source
        elif m == metrics[0]:
            anchor = NOT_IN_FOLDER
        else:
            anchor = ""
        rows.append(
            [
                exp,
                result["task"],
                METRIC_LABELS[m],
                f"{value:.1f}" if m == "count_error" and value is not None else _fmt(value),
                target_cell(exp, m, value),
                anchor,
                f"{result['train_minutes']:.1f}",
                str(result["n_test"]),
            ]
        )
    return rows


def write_reports(results: dict[str, dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """Write ``quality.json`` (all numbers) and ``quality.md`` (the table) from all results so far."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "quality.json", out / "quality.md"
    write_json(json_path, results)
    lines = [
        "# Quality on the real datasets",
        "",
        "Written by `python -m benchmarks.quality` (see its docstring). Each experiment is trained "
        "within its time budget (CPU minutes of the training process since 2026-11-29, wall-clock minutes "
        "before; each record says which), the best checkpoint on the `val` split is applied "
        "to the held-out `test` split of its data config (`conf/data/<name>.yaml`), which training never "
        "reads. Means are over test images; anchors are the papers' numbers on *their* test sets, so "
        "they are a reference, not a like-for-like comparison.",
        "",
        *quality_table(results),
        "",
        "Machine / budget per run:",
        "",
    ]
    for exp, r in results.items():
        extra = f", overrides {' '.join(r['overrides'])}" if r.get("overrides") else ""
        extra += f", test-time augmentation {r['tta']}" if r.get("tta", "none") != "none" else ""
        lines.append(
            f"- `{exp}`: {r.get('machine', '?')}, budget {r.get('budget_minutes')} min "
            f"({r.get('budget_clock', 'wall clock')}), finished "
            f"{r.get('finished', '?')}{extra}"
        )
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


def quality_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The markdown table (header and rows) of all results, in the order of ``EXPERIMENTS``."""
    lines = [
        "| dataset | task | metric | ours | target (issue #6) | anchor (source) | training minutes "
        "| test images |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for exp in [e for e in EXPERIMENTS if e in results] + sorted(set(results) - set(EXPERIMENTS)):
        for row in table_rows(results[exp]):
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return lines


def update_readme(readme: Path, out: Path) -> bool:
    """Replace the tables between the README's markers with those of ``out`` (quality, transfer, arms).

    Returns whether the README changed. A report without its markers is an error (naming the file and the
    marker)."""
    text = readme.read_text(encoding="utf-8")
    new = text
    for key, (begin, end) in README_MARKERS.items():
        report = out / f"{key}.md"
        if not report.exists():
            continue
        if begin not in new or end not in new:
            raise ValueError(f"{readme}: marker {begin} ... {end} not found")
        body = report.read_text(encoding="utf-8").strip()
        body = body.split("\n", 1)[1].strip() if body.startswith("# ") else body  # drop the title
        head, rest = new.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = f"{head}{begin}\n{body}\n{end}{tail}"
    if new != text:
        write_text_atomic(readme, new)
    return new != text


def _load_json(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            log.warning("%s: not valid JSON, starting a new one", path)
    return {}


# ------------------------------------------------------------------------------------------ transfer
def run_transfer(args: argparse.Namespace) -> dict[str, Any]:
    """Train on 1, 2, 4 target frames from scratch and from the pretrained base model, several seeds.

    The pretrained model is ``--pretrained`` (default: the base model shipped in the package,
    ``unet/models/base/nuclei2d.ckpt``, trained by ``experiment=nuclei-base`` without the target); with
    ``--pretrained=dsb`` a model is first pretrained here on DSB 2018 (grayscale). Both arms train the same
    architecture (the pretrained one), with the same settings and budget; only the initialisation differs."""
    from hydra.utils import instantiate

    from benchmarks.cpu_budget import budget_clock
    from unet.checkpoint import load_project_checkpoint
    from unet.cli.train import train
    from unet.models.card import CARD_KEY

    runs = Path(args.runs) / "transfer"
    target = args.transfer_target
    sets = list(args.set or [])
    pre_minutes = None
    if args.pretrained == "dsb":
        pre_dir = runs / "pretrain-dsb2018"
        pre_cfg = compose_config(
            "dsb2018-subset",
            pre_dir,
            Path(args.data_root),
            args.pretrain_minutes,
            ["data.source.grayscale=true", "model.net.in_channels=1", *sets],
        )
        fresh_run_dir(pre_dir)
        t0 = time.perf_counter()
        train(pre_cfg)
        pre_minutes = (time.perf_counter() - t0) / 60
        pre_ckpt = checkpoint_of(pre_dir)
        pre_name = "dsb2018-subset (grayscale), pretrained in this run"
    else:
        pre_ckpt = Path(args.pretrained)
        pre_name = f"`{pre_ckpt.relative_to(ROOT) if pre_ckpt.is_relative_to(ROOT) else pre_ckpt}`"
    card_net = load_project_checkpoint(pre_ckpt)[CARD_KEY]["net"]
    arch = [f"model.net.{k}={card_net[k]}" for k in ("base_features", "depth") if k in card_net]
    base = compose_config(target, runs / "probe", Path(args.data_root), None, sets)
    pool = [*base.data.source.train, *base.data.source.val]
    if base.data.source.get("crops"):
        raise ValueError(f"{target}: transfer needs whole annotated images (no data.source.crops)")
    counts = [int(n) for n in str(args.transfer_images).split(",") if n.strip()]
    if max(counts) > len(pool):
        raise ValueError(f"{target}: only {len(pool)} non-test images ({pool}); asked for {max(counts)}")
    source = instantiate(base.data.source)
    rows = []
    for seed in range(args.transfer_seeds):
        for n in counts:
            stems = pool[:n]
            for arm, init in (("scratch", None), ("pretrained", pre_ckpt)):
                run_dir = runs / f"{target}-{n}-{arm}-s{seed}"
                overrides = [
                    "data.source.train=[" + ",".join(f"'{s}'" for s in stems) + "]",
                    "data.source.val=[]",
                    "++trainer.limit_val_batches=0",
                    "callbacks.model_checkpoint.monitor=null",
                    f"model.init_from={init}" if init is not None else "model.init_from=null",
                    f"seed={seed}",
                    *arch,
                    *sets,
                ]
                cfg = compose_config(
                    target, run_dir, Path(args.data_root), budget(args.minutes, target), overrides
                )
                fresh_run_dir(run_dir)
                t1 = time.perf_counter()
                train(cfg)
                minutes = (time.perf_counter() - t1) / 60
                res = evaluate_test(checkpoint_of(run_dir, prefer_best=False), source)
                rows.append(
                    {
                        "images": n,
                        "train_stems": stems,
                        "arm": arm,
                        "seed": seed,
                        "mean_iou": res["mean"].get("mean_iou"),
                        "f1": res["mean"].get("f1"),
                        "train_minutes": minutes,
                        "n_test": res["n_test"],
                        "per_image": res["images"],
                    }
                )
                log.info("transfer %s n=%d %s seed %d: IoU %s", target, n, arm, seed, rows[-1]["mean_iou"])
                result = {
                    "target": target,
                    "pretrain": {"experiment": pre_name, "checkpoint": str(pre_ckpt), "minutes": pre_minutes},
                    "architecture": arch,
                    "budget_minutes": budget(args.minutes, target),
                    "budget_clock": budget_clock(),
                    "pretrain_budget_minutes": args.pretrain_minutes if pre_minutes is not None else None,
                    "overrides": sets,
                    "rows": rows,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} ({device_name()}, torch threads {torch_threads()})",
                }
                write_transfer_reports(result, Path(args.out))  # after every run: partial results survive
    return result


def write_transfer_reports(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "transfer.json", result)
    counts = sorted({r["images"] for r in result["rows"]})

    def values(n: int, arm: str, key: str) -> list[float]:
        return [
            float(r[key])
            for r in result["rows"]
            if r["images"] == n
            and r["arm"] == arm
            and r.get(key) is not None
            and math.isfinite(float(r[key]))
        ]

    def get(n: int, arm: str, key: str) -> float | None:
        v = values(n, arm, key)
        return float(np.mean(v)) if v else None

    def cell(n: int, arm: str, key: str) -> str:
        v = values(n, arm, key)
        if len(v) < 2:
            return _fmt(v[0]) if v else "–"
        return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"

    seeds = len({r.get("seed", 0) for r in result["rows"]})
    pre = result["pretrain"]
    pre_text = pre["experiment"] + (f", {pre['minutes']:.1f} min" if pre.get("minutes") is not None else "")
    lines = [
        f"# Transfer learning: {result['target']} from few annotated images (Falk 2019, M5)",
        "",
        f"Pretrained model: {pre_text}. Each run trains on the first n non-test frames for "
        f"{result['budget_minutes']} min (same architecture {' '.join(result.get('architecture', []))}, "
        "settings and budget for both arms; only the initialisation differs: `model.init_from`), last "
        "checkpoint, scored on the target's held-out test split. Cells: mean ± standard deviation over "
        f"{seeds} seed(s).",
        "",
        "| annotated images | IoU from scratch | IoU pretrained | F1 from scratch | F1 pretrained "
        "| test images |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in counts:
        n_test = next(r["n_test"] for r in result["rows"] if r["images"] == n)
        lines.append(
            f"| {n} | {cell(n, 'scratch', 'mean_iou')} | {cell(n, 'pretrained', 'mean_iou')} | "
            f"{cell(n, 'scratch', 'f1')} | {cell(n, 'pretrained', 'f1')} | {n_test} |"
        )
    lines += ["", f"Machine: {result['machine']}; overrides: {' '.join(result['overrides']) or 'none'}", ""]
    write_text_atomic(out / "transfer.md", "\n".join(lines))

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for arm, style in (("scratch", "o--"), ("pretrained", "s-")):
        ys = [get(n, arm, "mean_iou") for n in counts]
        ax.plot(counts, [np.nan if y is None else y for y in ys], style, label=arm)
    ax.set(
        xlabel="annotated training images",
        ylabel="mean object IoU (test)",
        xticks=counts,
        ylim=(0, 1),
        title=f"{result['target']}",
    )
    ax.legend()
    from unet.io import atomic_write

    with atomic_write(out / "transfer.png") as tmp:
        fig.savefig(tmp, format="png")


# ------------------------------------------------------------------------------------------ main
def parse_minutes(text: str) -> dict[str, float]:
    """``'10,isbi2012-em=12'`` -> ``{'*': 10.0, 'isbi2012-em': 12.0}`` (``'*'``: every other experiment)."""
    budgets: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.rpartition("=")
        try:
            budgets[name.strip() or "*"] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--minutes: {part!r} is not MINUTES or EXPERIMENT=MINUTES"
            ) from None
    if "*" not in budgets:
        budgets["*"] = 20.0
    return budgets


def budget(minutes: dict[str, float], experiment: str) -> float:
    return minutes.get(experiment, minutes["*"])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma-separated experiment names")
    p.add_argument(
        "--minutes",
        type=parse_minutes,
        default=parse_minutes("20"),
        help="training budget per run (CPU minutes of the training process): minutes for all, optionally "
        "followed by "
        "per-experiment budgets, e.g. '10,isbi2012-em=12,ctc-fluo-n2dl-hela=12'",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where the reports go")
    p.add_argument("--runs", default=str(ROOT / "logs" / "quality"), help="where runs (checkpoints) go")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding the datasets")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra Hydra override (repeatable)")
    p.add_argument("--transfer", action="store_true", help="run the transfer-learning comparison instead")
    p.add_argument(
        "--arms",
        default=None,
        help="run the recipe table instead (python -m benchmarks.arms): comma-separated arms of ours, peer, "
        "no_sep, no_ridges, uniform, no_elastic, over --experiments (default there: the five issue-#14 "
        "datasets)",
    )
    p.add_argument("--seeds", default="ours=3,peer=3,1", help="--arms: seeds per arm")
    p.add_argument("--jobs", type=int, default=1, help="--arms: runs at a time")
    p.add_argument(
        "--tta",
        default=None,
        choices=("none", "flips", "d4"),
        help="test-time augmentation when predicting the test split (default: d4 for ISBI 2012, as R15, "
        "none for the others)",
    )
    p.add_argument(
        "--score-only",
        action="store_true",
        help="train nothing: score the checkpoints already in --runs (keeps the recorded training facts)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="train nothing: rewrite the reports (and --readme) from <out>/*.json",
    )
    p.add_argument(
        "--readme",
        default=None,
        help="also put the tables into this README between its <!-- quality-table:begin/end --> and "
        "<!-- transfer-table:begin/end --> markers",
    )
    p.add_argument("--transfer-target", default="ctc-fluo-n2dh-gowt1", help="experiment to transfer to")
    p.add_argument("--transfer-images", default="1,2,4", help="numbers of annotated target images")
    p.add_argument(
        "--pretrained",
        default=str(BASE_MODEL),
        help="--transfer: the pretrained model (default: the shipped base model); 'dsb' pretrains one here",
    )
    p.add_argument("--transfer-seeds", type=int, default=3, help="--transfer: seeds per arm and count")
    p.add_argument("--pretrain-minutes", type=float, default=20.0, help="budget of --pretrained dsb")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import lightning.pytorch  # noqa: F401  (first: it installs its own log handler only on a bare root)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if logging.getLogger("lightning.pytorch").handlers:
        logging.getLogger("lightning.pytorch").propagate = False  # it has its own handler: no double lines
    args = parse_args(argv)
    data_root = Path(args.data_root)
    out = Path(args.out)
    if not data_root.is_dir() and not args.report:
        raise SystemExit(f"{data_root}: dataset folder not found (--data-root=<dir holding the datasets>)")
    if args.report:
        results = _load_json(out / "quality.json")
        if results:
            write_reports(results, out)
        transfer = _load_json(out / "transfer.json")
        if transfer:
            write_transfer_reports(transfer, out)
        from benchmarks import arms

        arms.write_report(out)
        if args.readme:
            update_readme(Path(args.readme), out)
        return results
    if args.arms:
        from benchmarks import arms

        every = ",".join(EXPERIMENTS)
        chosen = ",".join(arms.DEFAULT_EXPERIMENTS) if args.experiments == every else args.experiments
        arms.main(
            [
                "--experiments",
                chosen,
                "--arms",
                args.arms,
                "--seeds",
                args.seeds,
                "--minutes",
                str(budget(args.minutes, "*")),
                "--jobs",
                str(args.jobs),
                "--out",
                str(out),
                "--data-root",
                str(data_root),
                *(f"--set={s}" for s in args.set or []),
            ]
        )
        if args.readme:
            update_readme(Path(args.readme), out)
        return {}
    if args.transfer:
        result = run_transfer(args)
        if args.readme:
            update_readme(Path(args.readme), out)
        return result
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    unknown = [e for e in experiments if not (CONF / "experiment" / f"{e}.yaml").exists()]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; see conf/experiment/")
    results = _load_json(out / "quality.json")
    for exp in experiments:
        if args.score_only and exp not in results:
            raise SystemExit(f"--score-only: no earlier record of {exp} in {out / 'quality.json'}")
        results[exp] = run_experiment(
            exp,
            score_only=results[exp] if args.score_only else None,
            tta=args.tta or TEST_TTA.get(exp, "none"),
            minutes=budget(args.minutes, exp),
            runs=Path(args.runs),
            data_root=data_root,
            # scoring an earlier run: the data source as it was trained, unless overridden
            overrides=args.set or (results[exp].get("overrides", []) if args.score_only else []),
        )
        json_path, md_path = write_reports(results, out)  # after every experiment: partial results survive
        if args.readme:
            update_readme(Path(args.readme), out)
        log.info("wrote %s and %s", json_path, md_path)
    return {e: results[e] for e in experiments}


if __name__ == "__main__":
    main()
