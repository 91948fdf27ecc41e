"""The recipe table: our U-Net, a MONAI peer and ablations, same splits, same budget, several seeds.

For every experiment and arm (and seed), one run trains within the budget and scores the experiment's held-out
test split, exactly as ``python -m benchmarks.quality`` does for one experiment
(:func:`benchmarks.common.run_experiment`):

* ``ours``: the default recipe (Falk 2019: w_bal, w_sep, ridges, w_bal-pdf tiles, elastic deformation);
* ``peer``: MONAI ``BasicUNet`` + ``DiceCELoss``, random crops, sliding-window inference, components
  (:mod:`benchmarks.peer_monai`);
* ablations, one change each: ``no_sep`` (``task.lambda_sep=0``), ``no_ridges`` (``task.ridges=false``),
  ``uniform`` (``data.sampling=uniform``: random crops instead of the w_bal pdf), ``no_elastic``
  (``data.augment.elastic_std=0``), and one of model selection: ``select_pq`` (``task.monitor=val/pq``: the
  checkpoint and the instance method chosen by panoptic quality instead of mean object IoU, which ignores
  false positives). ``no_sep`` / ``no_ridges`` / ``select_pq`` do not apply to detection.

Runs are independent processes, ``--jobs`` at a time (a GPU shares well between a few small runs), each
writing ``<out>/arms/<experiment>__<arm>__s<seed>.json`` as it ends; ``<out>/arms.md`` (mean ± standard
deviation over seeds, and what each component of the recipe pays: ours minus the ablation) is rewritten after
every run, so a stopped table keeps what finished.

Usage::

    python -m benchmarks.arms --experiments ctc-fluo-n2dh-gowt1,mbm-bonemarrow-dots \\
        --seeds ours=3,peer=3,1 --minutes 10 --jobs 1
    python -m benchmarks.arms --report                  # rewrite arms.md from the records
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_DATA_ROOT,
    ROOT,
    TEST_TTA,
    child_env,
    record_mean,
    run_experiment,
    write_json,
    write_text_atomic,
)

log = logging.getLogger("arms")

# arm -> Hydra overrides of the default recipe (None: not our pipeline)
ARMS: dict[str, list[str] | None] = {
    "ours": [],
    "peer": None,
    "no_sep": ["task.lambda_sep=0"],
    "no_ridges": ["task.ridges=false"],
    "uniform": ["data.sampling=uniform"],
    "no_elastic": ["data.augment.elastic_std=0"],
    "norm_instance": ["model.net.norm=instance"],
    "select_pq": ["task.monitor=val/pq"],
    "norm_instance_pq": ["model.net.norm=instance", "task.monitor=val/pq"],
    "percentile": ["model.normalization=percentile"],
    # seam-free candidates of 2026-12-07 (unet/models/norms.py): instance norm whose statistics at
    # prediction are the whole image's (training as norm_instance), layer norm over channels at each voxel;
    # each alone and with percentile input normalisation
    "instance_image": ["model.net.norm=instance"],
    "instance_image_pct": ["model.net.norm=instance", "model.normalization=percentile"],
    "channel_norm": ["model.net.norm=channel"],
    "channel_norm_pct": ["model.net.norm=channel", "model.normalization=percentile"],
    # separation weights sized to the objects (unet/data/fingerprint.py), alone and with the seam-free norm
    "sep_auto": ["task.sigma_sep=auto"],
    "instance_image_sep": ["model.net.norm=instance", "task.sigma_sep=auto"],
}
ARM_LABELS = {
    "ours": "ours",
    "peer": "peer (MONAI BasicUNet, DiceCE)",
    "no_sep": "λ_sep = 0",
    "no_ridges": "no ridges",
    "uniform": "uniform tiles",
    "no_elastic": "no elastic",
    "norm_instance": "+ instance norm (tile statistics)",
    "select_pq": "selected by val PQ",
    "norm_instance_pq": "+ instance norm, selected by val PQ",
    "percentile": "percentile input normalisation",
    "instance_image": "+ instance norm, whole-image statistics",
    "instance_image_pct": "+ instance norm (whole image) + percentile",
    "channel_norm": "+ channel layer norm",
    "channel_norm_pct": "+ channel layer norm + percentile",
    "sep_auto": "σ_sep from object size",
    "instance_image_sep": "+ instance norm (whole image) + σ_sep from object size",
}
SEGMENTATION_ONLY = ("no_sep", "no_ridges", "select_pq", "norm_instance_pq", "sep_auto", "instance_image_sep")
DETECTION = ("mbm-bonemarrow-dots",)
DEFAULT_EXPERIMENTS = (
    "ctc-fluo-n2dh-gowt1",
    "ctc-fluo-n2dl-hela",
    "dsb2018-subset",
    "mbm-bonemarrow-dots",
    "plantseg-nuclei-3d-crops",
)
# segmentation: mean object IoU (M6.1), F1 and AP@0.5 = tp / (tp + fp + fn) at IoU 0.5 (StarDist's / DSB
# 2018's accuracy; from the per-image tp/fp/fn in records without it), AP over IoU 0.5:0.9 (DSB 2018);
# detection: F1 (M6.2)
SEG_METRICS = (("mean_iou", "object IoU"), ("f1", "F1@0.5"), ("ap50", "AP@0.5"), ("ap", "AP@0.5:0.9"))
DET_METRICS = (("det_f1", "F1 (d_match)"), ("count_error", "count error"))


def parse_seeds(text: str) -> dict[str, int]:
    """``'ours=3,peer=3,1'`` -> ``{'ours': 3, 'peer': 3, '*': 1}``."""
    seeds: dict[str, int] = {"*": 1}
    for part in str(text).split(","):
        name, _, value = part.strip().rpartition("=")
        if value:
            seeds[name.strip() or "*"] = int(value)
    return seeds


def jobs_for(
    experiments: Sequence[str], arms: Sequence[str], seeds: dict[str, int]
) -> list[tuple[str, str, int]]:
    """(experiment, arm, seed) runs; seed-major so that a stopped table has every arm once first."""
    out = []
    for seed in range(max(seeds.get(a, seeds["*"]) for a in arms)):
        for exp in experiments:
            for arm in arms:
                if arm in SEGMENTATION_ONLY and exp in DETECTION:
                    continue
                if seed < seeds.get(arm, seeds["*"]):
                    out.append((exp, arm, seed))
    return out


def record_path(out: Path, exp: str, arm: str, seed: int) -> Path:
    return out / "arms" / f"{exp}__{arm}__s{seed}.json"


def run_one(
    exp: str, arm: str, seed: int, *, minutes: float, runs: Path, data_root: Path, sets: Sequence[str]
):
    """One run of one arm (in this process); returns its quality record with ``arm`` and ``seed``."""
    if arm == "peer":
        from benchmarks import peer_monai

        return peer_monai.run(exp, minutes=minutes, seed=seed, data_root=data_root, overrides=sets)
    result = run_experiment(
        exp,
        minutes=minutes,
        runs=runs / f"{arm}-s{seed}",
        data_root=data_root,
        overrides=[*ARMS[arm], f"seed={seed}", *sets],
        tta=TEST_TTA.get(exp, "none"),
    )
    result.update(arm=arm, seed=seed)
    return result


def run_jobs(args: argparse.Namespace) -> None:
    """Run every (experiment, arm, seed) as a child process, ``--jobs`` at a time; report as they end."""
    out, runs = Path(args.out), Path(args.runs)
    (out / "arms").mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    todo = [
        j
        for j in jobs_for(args.experiments.split(","), args.arms.split(","), parse_seeds(args.seeds))
        if args.again or not record_path(out, *j).exists()
    ]
    log.info("%d run(s), %d at a time, %.2f min each", len(todo), args.jobs, args.minutes)
    # children: ``python -m benchmarks.arms`` with this checkout first on PYTHONPATH, in our working
    # directory (relative --out / --data-root paths mean the same there)
    env = child_env(OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    running: list[tuple[subprocess.Popen, tuple[str, str, int], Any, float]] = []
    deadline = time.time() + args.stop_after * 60 if args.stop_after else math.inf
    while todo or running:
        while todo and len(running) < args.jobs and time.time() < deadline:
            exp, arm, seed = todo.pop(0)
            if not args.again and record_path(out, exp, arm, seed).exists():
                continue  # another invocation finished it meanwhile
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.arms",
                "--one",
                exp,
                arm,
                str(seed),
                "--minutes",
                str(args.minutes),
                "--out",
                str(out),
                "--runs",
                str(runs),
                "--data-root",
                str(args.data_root),
            ]
            for s in args.set or []:
                cmd += ["--set", s]
            logf = open(runs / f"{exp}__{arm}__s{seed}.log", "w")
            running.append(
                (
                    subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env),
                    (exp, arm, seed),
                    logf,
                    time.time(),
                )
            )
        if time.time() >= deadline:
            todo.clear()
        time.sleep(1.0)
        for entry in list(running):
            proc, job, logf, t0 = entry
            if proc.poll() is None and time.time() - t0 > args.minutes * 60 * 8 + 300:
                log.warning("%s %s seed %d: no end after %.1f min, killed", *job, (time.time() - t0) / 60)
                proc.kill()
                proc.wait()
            if proc.poll() is None:
                continue
            running.remove(entry)
            logf.close()
            status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {logf.name})"
            log.info("%s %s seed %d: %s in %.1f min", *job, status, (time.time() - t0) / 60)
            write_report(out)


def load_records(out: Path) -> list[dict[str, Any]]:
    recs = []
    for p in sorted((out / "arms").glob("*.json")):
        try:
            recs.append(json.loads(p.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            log.warning("%s: not valid JSON, skipped", p)
    return recs


def _stats(values: Sequence[float]) -> tuple[float, float, int] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def _cell(stat: tuple[float, float, int] | None, digits: int = 3) -> str:
    if stat is None:
        return "–"
    m, sd, n = stat
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown: a row per dataset and metric, a column per arm (mean ± sd over seeds), our two instance
    methods beside, and per dataset what each component pays (ours minus the ablation, main metric)."""
    arms = [a for a in ARMS if any(r.get("arm") == a for r in records)]
    exps = [e for e in DEFAULT_EXPERIMENTS if any(r["experiment"] == e for r in records)]
    exps += sorted({r["experiment"] for r in records} - set(exps))
    head = ["dataset", "metric", *[ARM_LABELS[a] for a in arms], "ours: components", "ours: watershed"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    pays = []
    for exp in exps:
        recs = [r for r in records if r["experiment"] == exp]
        det = recs[0]["task"] == "detection"
        for key, label in DET_METRICS if det else SEG_METRICS:
            row = [exp, label]
            for a in arms:
                row.append(
                    _cell(
                        _stats([record_mean(r, key) for r in recs if r.get("arm") == a]),
                        1 if key == "count_error" else 3,
                    )
                )
            ours = [r for r in recs if r.get("arm") == "ours"]
            for method in ("components", "watershed"):
                k = f"{key}_{method}"
                row.append("–" if det else _cell(_stats([r["mean"].get(k) for r in ours])))
            lines.append("| " + " | ".join(row) + " |")
        main = DET_METRICS[0][0] if det else SEG_METRICS[0][0]
        ref = _stats([r["mean"].get(main) for r in recs if r.get("arm") == "ours"])
        if ref is None:
            continue
        deltas = []
        for a in arms:
            if a == "ours":
                continue
            s = _stats([r["mean"].get(main) for r in recs if r.get("arm") == a])
            if s is not None:
                deltas.append(f"{ARM_LABELS[a]} {ref[0] - s[0]:+.3f}")
        pays.append(
            f"- `{exp}` ({dict(SEG_METRICS + DET_METRICS)[main]}, ours minus arm): " + ", ".join(deltas)
        )
    return [
        *lines,
        "",
        "What each part of the recipe pays (positive: ours is better by that much):",
        "",
        *pays,
    ]


def write_report(out: Path) -> Path | None:
    records = load_records(out)
    if not records:
        return None
    budget = sorted({r.get("budget_minutes") for r in records if r.get("budget_minutes") is not None})
    machines = sorted({str(r.get("machine", "?")).split("(", 1)[-1].rstrip(")") for r in records})
    seeds = {}
    for r in records:
        seeds.setdefault(r.get("arm"), set()).add(r.get("seed"))
    lines = [
        "# Recipe table: ours, a MONAI peer and ablations (same splits, same budget)",
        "",
        "Written by `python -m benchmarks.arms` (or `python -m benchmarks.quality --arms ...`). Every run "
        "trains within the same budget of CPU time (the training process, data loading included, one thread "
        "per run unless the machine line says otherwise; `benchmarks/cpu_budget.py`) on the experiment's "
        "train split, keeps the best checkpoint "
        "on its val split and is scored on its held-out test split. Cells: mean ± standard deviation over "
        "seeds (seeds per arm: "
        + ", ".join(f"{a} {len(s)}" for a, s in seeds.items())
        + f"). Budget per run: {', '.join(f'{b:g}' for b in budget)} min; machine: {'; '.join(machines)}.",
        "",
        *table(records),
        "",
    ]
    path = out / "arms.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(DEFAULT_EXPERIMENTS))
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--seeds", default="ours=3,peer=3,1", help="seeds per arm, e.g. 'ours=3,peer=3,1'")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=2, help="OMP threads per run")
    p.add_argument("--stop-after", type=float, default=None, help="start no run after this many minutes")
    p.add_argument("--again", action="store_true", help="rerun runs that already have a record")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--runs", default=str(ROOT / "logs" / "arms"))
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra Hydra override for every run")
    p.add_argument("--report", action="store_true", help="rewrite arms.md from the records, run nothing")
    p.add_argument("--one", nargs=3, metavar=("EXPERIMENT", "ARM", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import lightning.pytorch  # noqa: F401  (first: it installs its own log handler only on a bare root)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    out = Path(args.out)
    if args.report:
        write_report(out)
        return
    if args.one:
        exp, arm, seed = args.one[0], args.one[1], int(args.one[2])
        result = run_one(
            exp,
            arm,
            seed,
            minutes=args.minutes,
            runs=Path(args.runs),
            data_root=Path(args.data_root),
            sets=args.set or [],
        )
        path = record_path(out, exp, arm, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
        return
    run_jobs(args)
    write_report(out)


if __name__ == "__main__":
    main()
