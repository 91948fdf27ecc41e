"""What the benchmark scripts share: paths, the machine line, JSON and atomic writes, a timing helper, and
training and scoring one experiment (what ``quality``, ``arms``, ``peer_monai`` and ``base_card`` all do).

Nothing here imports another benchmark script (only :mod:`benchmarks.cpu_budget`, the callback of the
budget), so the scripts import this module and never each other in a circle: ``quality`` -> ``arms`` ->
``peer_monai`` -> ``common`` (the peer takes the config, the scoring and the machine line from here, not
from ``quality``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from unet.report import ap50_of_rows, json_safe

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data"
BASE_MODEL = ROOT / "unet" / "models" / "base" / "nuclei2d.ckpt"

#: mean metrics logged when a run ends
HEADLINE = ("mean_iou", "f1", "ap50", "ap", "det_f1", "count_error", "pixel_error", "rand_error")

FALK_NO_NUMBERS = (
    "anchor not in our papers folder: Falk 2019 gives per-dataset IoUs only in its supplementary note 3; "
    "the main text says IoU ~0.7 is good, ~0.9 close to human annotation (M6.1)"
)

# experiment -> metric -> (anchor value or None, source)
ANCHORS: dict[str, dict[str, tuple[float | None, str]]] = {
    "isbi2012-em": {
        "pixel_error": (0.0611, "u-net, Ronneberger 2015 Table 1 (challenge test set)"),
        "rand_error": (0.0382, "u-net, Ronneberger 2015 Table 1 (challenge test set)"),
    },
    "ctc-fluo-n2dh-gowt1": {"mean_iou": (None, FALK_NO_NUMBERS)},
    "ctc-fluo-n2dl-hela": {"mean_iou": (None, FALK_NO_NUMBERS)},
    "mbm-bonemarrow-dots": {
        "count_error": (
            8.8,
            "Count-ception, Cohen 2017: MAE 8.8 ± 2.3 on MBM (number from the issue, paper not in our "
            "papers folder; their 44-tile split, not ours)",
        )
    },
}

# test-time augmentation of the test predictions unless --tta says otherwise: R15 averages the ISBI 2012
# predictions over rotated versions (Sec. 3.1: "averaged over 7 rotated versions of the input data"); d4 =
# the input and its 7 rotations/flips
TEST_TTA = {"isbi2012-em": "d4"}


# ------------------------------------------------------------------------------------------ small helpers
def code_commit() -> str:
    """The commit of the code a run ran (``git rev-parse HEAD`` of this checkout; ``+dirty`` when tracked
    files differ from it, ``unknown`` outside git): records say which code made them."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> str:
    """Where a run ran, for the reports: host (architecture, torch threads, device)."""
    return f"{platform.node()} ({platform.machine()}, torch threads {torch_threads()}, {device_name()})"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def device_name() -> str:
    import torch

    return f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"


def write_text_atomic(path: Path, text: str) -> None:
    """Write through :func:`unet.io.write_text` (atomic), so a report is never half written."""
    from unet.io import write_text

    write_text(path, text)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (through :func:`unet.report.json_safe`: numpy values, paths; non-finite
    floats become ``null``), written atomically."""
    write_text_atomic(path, json.dumps(json_safe(obj), indent=2) + "\n")


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """The shortest wall-clock time of ``repeats`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def child_env(env: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child process run as ``python -m benchmarks.<script>``: the repository root
    first on ``PYTHONPATH`` (so ``benchmarks`` and ``unet`` of this checkout import from any working
    directory), plus ``extra``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def record_mean(record: dict[str, Any], key: str) -> float | None:
    """A record's mean of ``key`` over its test images; ``ap50`` of a record written before it was
    reported is the mean of AP@0.5 computed from the per-image ``tp``/``fp``/``fn`` (matches at IoU 0.5),
    so that old and new records mix in one table (:func:`unet.report.ap50_of_rows`)."""
    value = record.get("mean", {}).get(key)
    if value is not None or key != "ap50" or record.get("task") != "segmentation":
        return value
    values = [v for v in ap50_of_rows(record.get("images", [])) if v is not None]
    return float(np.mean(values)) if values else None


# ------------------------------------------------------------------------------------------ config
def max_time(minutes: float) -> str:
    """Lightning's ``trainer.max_time`` string ``DD:HH:MM:SS`` for a budget in minutes (at least 1 s)."""
    total = max(1, round(minutes * 60))
    d, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d:02d}:{h:02d}:{m:02d}:{s:02d}"


def compose_config(
    experiment: str,
    output_dir: Path,
    data_root: Path,
    minutes: float | None,
    overrides: Sequence[str] = (),
) -> Any:
    """The training config of an experiment with a budget of ``minutes``: CPU time without a GPU
    (:class:`benchmarks.cpu_budget.CpuBudget`; ``trainer.max_time`` at 8x as a safety net), wall-clock
    time with one."""
    from hydra import compose, initialize_config_dir

    from benchmarks.cpu_budget import budget_clock
    from unet.config import register

    register()  # the generated groups (task, data/augment, ...) and resolvers
    args = [
        f"experiment={experiment}",
        f"paths.output_dir={output_dir}",
        f"paths.data_root={data_root}",
        "logger=csv",
    ]
    if minutes is not None and budget_clock() == "cpu":  # CPU time; the wall clock only as a safety net
        args += [
            "+callbacks.cpu_budget._target_=benchmarks.cpu_budget.CpuBudget",
            f"+callbacks.cpu_budget.minutes={minutes}",
            f"++trainer.max_time='{max_time(8 * minutes)}'",
        ]
    elif minutes is not None:
        args.append(f"++trainer.max_time='{max_time(minutes)}'")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*args, *overrides])


def checkpoint_of(run_dir: Path, prefer_best: bool = True) -> Path:
    names = ("best.ckpt", "last.ckpt") if prefer_best else ("last.ckpt", "best.ckpt")
    for name in names:
        p = run_dir / "checkpoints" / name
        if p.exists():
            return p
    raise FileNotFoundError(f"{run_dir}/checkpoints: no best.ckpt or last.ckpt (did training run?)")


# ------------------------------------------------------------------------------------------ scoring
def evaluate_test(ckpt: Path, source: Any, *, em: bool = False, tta: str = "none") -> dict[str, Any]:
    """Predict the source's test items with a checkpoint and score them (per image, mean, pooled).

    ``tta``: test-time augmentation of the prediction (``none``, ``flips``, ``d4``; R15 averages 8
    rotated/flipped versions for ISBI 2012). On a machine with CUDA the prediction runs there."""
    import torch

    from unet.predict.image import load_model, predict_image

    net, task, card = load_model(str(ckpt))
    device = "cuda" if torch.cuda.is_available() else None
    if device:
        net = net.to(device)

    def probabilities(item: Any) -> np.ndarray:
        with torch.no_grad():
            return predict_image(
                net,
                item.image,
                element_size=item.element_size,
                card=card,
                name=item.name,
                tta=tta,
                device=device,
            )

    return score_items(task, source, probabilities, em=em)


def score_items(task: Any, source: Any, probabilities: Any, *, em: bool = False) -> dict[str, Any]:
    """Score class probabilities (``probabilities(item) -> (K, *S)``) of the source's test items.

    Segmentation: objects by the task's instance method (the one validation chose under ``instances=auto``)
    and, beside it, the scores of both methods (``mean_iou_components``, ``f1_...``, ``ap_...``):
    mean object IoU (M6.1), F1 and ``ap50`` (``tp / (tp + fp + fn)``) at IoU 0.5, ``ap`` (DSB 2018: mean
    over IoU 0.5:0.9); ``pooled`` has ``ap50`` of the summed counts. Detection: F1 within
    ``d_match`` (M6.2) and the count error. ``em``: also the EM scores of the cell-interior probability."""
    from unet.evaluation import evaluate_pair
    from unet.report import column_means, pooled

    items = source.test_items()
    if not items:
        raise ValueError(f"{source.root}: the test split is empty")
    rows = []
    for item in items:
        probs = probabilities(item)
        ann = item.annotation
        row: dict[str, Any] = {"image": item.name}
        if task.name == "segmentation":
            gt = task.ground_truth(ann)
            if ann.ignore is not None:
                gt = np.where(ann.ignore, 0, gt)
            for method in task.METHODS:
                pred = task.objects(probs, method, element_size=item.element_size)
                if ann.ignore is not None:
                    pred = np.where(ann.ignore, 0, pred)
                r = evaluate_pair(gt, pred, "segmentation")
                row.update({f"{k}_{method}": r[k] for k in ("mean_iou", "f1", "ap50", "ap")})
                if method == task.method:
                    row.update(r)
            row["instances"] = task.method
        else:
            pred = task.objects(probs)
            gt = task.ground_truth(ann)
            r = evaluate_pair(gt, pred, "detection", d_match=task.d_match)
            row.update(r)
            row["det_f1"] = r["f1"]
        if em:
            interior = probs[1:].sum(axis=0)  # foreground (= cell interior) probability
            gt_bin = (task.ground_truth(ann) > 0).astype(np.uint8)
            scores = evaluate_pair(gt_bin, interior, "em")
            row.update({f"em_{k}": v for k, v in scores.items()})
            row["pixel_error"] = scores["best_pixel_error"]
            row["rand_error"] = scores["best_adapted_rand_error"]
        rows.append(row)
    mean = column_means(rows, [k for k in rows[0] if k not in ("image", "instances")], missing=None)
    counts = ("tp", "fp", "fn")
    seg = task.name == "segmentation"
    pool = pooled(rows, counts, ap50=seg) if all(k in rows[0] for k in counts) else {}
    return {"task": task.name, "images": rows, "mean": mean, "pooled": pool, "n_test": len(rows)}


# ------------------------------------------------------------------------------------------ runs
def run_experiment(
    experiment: str,
    *,
    minutes: float | None,
    runs: Path,
    data_root: Path,
    overrides: Sequence[str] = (),
    prefer_best: bool = True,
    score_only: dict[str, Any] | None = None,
    tta: str = "none",
) -> dict[str, Any]:
    """Train one experiment within the budget and score its test split; returns the result record.

    A previous run of the experiment in ``runs`` is deleted first (its checkpoints must never be mistaken
    for the new run's). ``score_only``: train nothing, score the checkpoint already in ``runs`` and keep
    the training facts (minutes, budget, val metric) of this earlier record of it.
    """
    from hydra.utils import instantiate

    from benchmarks.cpu_budget import budget_clock
    from unet.cli.train import train

    run_dir = runs / experiment
    cfg = compose_config(experiment, run_dir, data_root, minutes, overrides)
    if score_only is not None:
        log.info("%s: scoring the existing run in %s (no training)", experiment, run_dir)
        value = next(iter(score_only.get("val_metric", {}).values()), None)
        train_min = score_only.get("train_minutes", float("nan"))
        minutes = score_only.get("budget_minutes", minutes)
    else:
        fresh_run_dir(run_dir)
        log.info("%s: training (budget %s min) -> %s", experiment, minutes, run_dir)
        t0 = time.perf_counter()
        value = train(cfg)
        train_min = (time.perf_counter() - t0) / 60
    ckpt = checkpoint_of(run_dir, prefer_best)
    source = instantiate(cfg.data.source)
    t1 = time.perf_counter()
    result = evaluate_test(ckpt, source, em=experiment.startswith("isbi2012"), tta=tta)
    result.update(
        experiment=experiment,
        val_metric={str(cfg.optimized_metric): value},
        checkpoint=str(ckpt),
        train_minutes=train_min,
        eval_seconds=time.perf_counter() - t1,
        budget_minutes=minutes,
        budget_clock=budget_clock(),
        overrides=list(overrides),
        tta=tta,
        anchors={k: {"value": v, "source": s} for k, (v, s) in ANCHORS.get(experiment, {}).items()},
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=machine(),
        commit=code_commit(),
    )
    log.info("%s: %s", experiment, {k: v for k, v in result["mean"].items() if k in HEADLINE})
    return result


def fresh_run_dir(run_dir: Path) -> None:
    """Delete an earlier run in ``run_dir``: its checkpoints must never be taken for the new run's."""
    if run_dir.exists():
        log.info("removing the previous run %s", run_dir)
        shutil.rmtree(run_dir)
