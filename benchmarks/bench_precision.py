"""What bf16 does to a model's output on real data: the same checkpoint applied in float32 and under bf16
autocast (``precision=32-true`` vs ``bf16-mixed``, :func:`unet.predict.image.predict_image`) to held-out test
images of real datasets.

Per image: max and mean |p_bf16 - p_fp32| of the class probabilities, the fraction of pixels whose arg-max
class differs, and the agreement of the two label images (the task's objects): mean object IoU (M6.1,
Hungarian) and F1 at IoU 0.5 of the bf16 labels against the float32 ones, each against the ground truth
too, and the seconds of each forward pass (the speed that bf16 buys on this machine).

Usage (from the repository root)::

    python -m benchmarks.bench_precision [--ckpt unet/models/base/nuclei2d.ckpt] \\
        [--datasets ctc-fluo-n2dl-hela,ctc-fluo-n2dh-gowt1,dsb2018-subset] [--out benchmarks/results/...]

On a CPU without native bf16 the bf16 pass runs emulated (slow) and the report says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import BASE_MODEL, DEFAULT_DATA_ROOT, ROOT, compose_config


def test_items(dataset: str, data_root: Path, grayscale: bool) -> list:
    """The held-out test items of the dataset's fixed split (``conf/data/<dataset>.yaml`` as train.py
    composes it)."""
    import tempfile

    from hydra.utils import instantiate

    over = [f"data={dataset}"] + (["data.source.grayscale=true"] if grayscale and "dsb" in dataset else [])
    cfg = compose_config("quickstart", Path(tempfile.mkdtemp()), data_root, None, over)
    return instantiate(cfg.data.source).test_items()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default=str(BASE_MODEL))
    p.add_argument("--datasets", default="ctc-fluo-n2dl-hela,ctc-fluo-n2dh-gowt1,dsb2018-subset")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_precision.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from unet.evaluation import evaluate_pair
    from unet.hardware import cpu_has_native_bf16
    from unet.predict.image import load_model, predict_image

    net, task, card = load_model(args.ckpt)
    gray = int(card.net.get("in_channels", 1)) == 1
    native = cpu_has_native_bf16()
    rows = []
    for dataset in args.datasets.split(","):
        for item in test_items(dataset, Path(args.data_root), gray):
            out, secs = {}, {}
            for precision in ("32-true", "bf16-mixed"):
                t0 = time.perf_counter()
                out[precision] = predict_image(
                    net, item.image, element_size=item.element_size, card=card, precision=precision
                )
                secs[precision] = time.perf_counter() - t0
            a, b = out["32-true"], out["bf16-mixed"]
            diff = np.abs(a - b)
            la = task.objects(a, element_size=item.element_size)
            lb = task.objects(b, element_size=item.element_size)
            agree = evaluate_pair(la, lb, "segmentation")
            gt = task.ground_truth(item.annotation)
            s32 = evaluate_pair(gt, la, "segmentation")
            s16 = evaluate_pair(gt, lb, "segmentation")
            rows.append(
                {
                    "dataset": dataset,
                    "image": item.name,
                    "shape": list(item.image.shape),
                    "max_abs_diff": float(diff.max()),
                    "mean_abs_diff": float(diff.mean()),
                    "argmax_changed": float((a.argmax(0) != b.argmax(0)).mean()),
                    "objects_fp32": int(la.max()),
                    "objects_bf16": int(lb.max()),
                    "iou_bf16_vs_fp32": float(agree["mean_iou"]),
                    "f1_bf16_vs_fp32": float(agree["f1"]),
                    "gt_iou_fp32": float(s32["mean_iou"]),
                    "gt_iou_bf16": float(s16["mean_iou"]),
                    "seconds_fp32": secs["32-true"],
                    "seconds_bf16": secs["bf16-mixed"],
                }
            )
            r = rows[-1]
            print(
                f"{dataset:22s} {item.name[:12]:12s} max|dp| {r['max_abs_diff']:.4f} "
                f"mean {r['mean_abs_diff']:.2e} "
                f"argmax {r['argmax_changed']:.2e} objects {r['objects_fp32']}/{r['objects_bf16']} "
                f"IoU(bf16,fp32) {r['iou_bf16_vs_fp32']:.4f} F1 {r['f1_bf16_vs_fp32']:.4f} "
                f"GT IoU {r['gt_iou_fp32']:.4f}/{r['gt_iou_bf16']:.4f} "
                f"s {r['seconds_fp32']:.2f}/{r['seconds_bf16']:.2f}",
                flush=True,
            )
    report = {
        "machine": f"{platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"native bf16: {native}" + ("" if native else " (bf16 emulated: slow, accuracy still measured)"),
        "checkpoint": str(
            Path(args.ckpt).relative_to(ROOT) if Path(args.ckpt).is_relative_to(ROOT) else args.ckpt
        ),
        "rows": rows,
        "worst": {
            "max_abs_diff": max(r["max_abs_diff"] for r in rows),
            "min_iou_bf16_vs_fp32": min(r["iou_bf16_vs_fp32"] for r in rows),
            "max_argmax_changed": max(r["argmax_changed"] for r in rows),
        },
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["worst"]), report["machine"])


if __name__ == "__main__":
    main()
