"""Validation curves of the default recipe on the embedded data sets: what `python train.py ...` gives.

Runs each command as a user types it (``train.py`` in a subprocess, plus a time budget and the CSV logger),
then reads ``val/iou`` (object IoU, Falk 2019 M6.1), ``val/f1`` and ``time/minutes`` (wall time at each
validation) from the run's ``csv/metrics.csv`` and writes ``<out>/curves.md``, ``curves.json`` and
``curves.png``.

    python -m benchmarks.curves                     # both 3D commands, 10 minutes each
    python -m benchmarks.curves --minutes 10 --runs "model=unet3d data=brightfield" "experiment=quickstart"

The issue's target: validation object IoU >= 0.70 within 10 CPU minutes for ``model=unet3d data=brightfield``
and ``model=unet3d data=synthetic3d``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = ("model=unet3d data=brightfield", "model=unet3d data=synthetic3d")
TARGET_IOU = 0.70


def read_curve(metrics_csv: Path) -> list[dict[str, float]]:
    """(epoch, minutes, iou, f1) at every validation of a run's CSV log."""
    points = []
    for row in csv.DictReader(open(metrics_csv)):
        if row.get("val/iou") not in (None, ""):
            points.append(
                {
                    "epoch": int(row["epoch"]),
                    "minutes": float(row.get("time/minutes") or "nan"),
                    "iou": float(row["val/iou"]),
                    "f1": float(row.get("val/f1") or "nan"),
                }
            )
    return points


def run(command: str, minutes: float, runs_dir: Path) -> dict:
    name = command.replace(" ", "_").replace("=", "-").replace("/", "-")
    run_dir = runs_dir / name
    args = [
        *command.split(),
        f"trainer.max_time=00:00:{int(minutes):02d}:{round(60 * (minutes % 1)):02d}",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
    )
    wall = (time.monotonic() - start) / 60
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{proc.stderr[-3000:]}")
    curve = read_curve(run_dir / "csv" / "metrics.csv")
    reached = next((p["minutes"] for p in curve if p["iou"] >= TARGET_IOU), None)
    summary = [
        ln
        for ln in proc.stderr.splitlines() + proc.stdout.splitlines()
        if ln.startswith(("model ", "data ", "trainer "))
    ]
    return {
        "command": f"python train.py {command}",
        "budget_minutes": minutes,
        "wall_minutes": wall,
        "best_iou": max((p["iou"] for p in curve), default=float("nan")),
        "minutes_to_target": reached,
        "curve": curve,
        "summary": summary,
    }


def report(results: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps(results, indent=1))
    lines = [
        f"Validation object IoU (M6.1) of the default recipe; machine {platform.node()} "
        f"({os.cpu_count()} CPUs).",
        "",
        f"| command | best val IoU | minutes to IoU >= {TARGET_IOU} | budget (min) |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        reach = "not reached" if r["minutes_to_target"] is None else f"{r['minutes_to_target']:.1f}"
        lines.append(f"| `{r['command']}` | {r['best_iou']:.3f} | {reach} | {r['budget_minutes']:g} |")
    for r in results:
        lines += ["", f"`{r['command']}` (minutes: IoU / F1):", ""]
        lines.append(", ".join(f"{p['minutes']:.1f}: {p['iou']:.2f}/{p['f1']:.2f}" for p in r["curve"]))
    (out / "curves.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot([p["minutes"] for p in r["curve"]], [p["iou"] for p in r["curve"]], "o-", label=r["command"])
    ax.axhline(TARGET_IOU, color="grey", ls="--", lw=1)
    ax.set_xlabel("training minutes (wall, this CPU)")
    ax.set_ylabel("validation object IoU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", nargs="+", default=list(DEFAULT_RUNS), help="train.py arguments, one per run"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="trainer.max_time per run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "logs" / "curves")
    args = parser.parse_args()
    results = [run(c, args.minutes, args.runs_dir) for c in args.runs]
    report(results, args.out)
    print((args.out / "curves.md").read_text())


if __name__ == "__main__":
    main()
