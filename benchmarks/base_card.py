"""Write the card of the shipped base model (``unet/models/base/nuclei2d.md``): what it is, how it was made,
and its scores on the held-out test splits of its training sets.

Usage (after ``python train.py experiment=nuclei-base paths.output_dir=logs/base`` and slimming its best
checkpoint with :func:`unet.checkpoint.slim_checkpoint` into ``unet/models/base/nuclei2d.ckpt``)::

    python -m benchmarks.base_card [--run logs/base] [--minutes 14]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import BASE_MODEL, DEFAULT_DATA_ROOT, ROOT, compose_config, evaluate_test


def main(argv: list[str] | None = None) -> Path:
    import csv

    from hydra.utils import instantiate

    from unet.checkpoint import load_project_checkpoint
    from unet.io import write_text
    from unet.models.card import CARD_KEY

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=str(ROOT / "logs" / "base"), help="the training run (its CSV log)")
    p.add_argument("--minutes", type=float, default=None, help="the training budget, for the card")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    args = p.parse_args(argv)
    model = BASE_MODEL
    ckpt = load_project_checkpoint(model)
    cfg = compose_config("nuclei-base", Path(args.run), Path(args.data_root), None)
    source = instantiate(cfg.data.source)
    result = evaluate_test(model, source)
    val = [
        float(r["val/iou"])
        for r in csv.DictReader(open(next(Path(args.run).rglob("metrics.csv")), encoding="utf-8"))
        if r.get("val/iou")
    ]
    card = ckpt[CARD_KEY]
    net = card["net"]
    rows = "\n".join(
        "| {} | {} | {:.3f} | {:.3f} |".format(*r["image"].split(":", 1), r["mean_iou"], r["f1"])
        for r in result["images"]
    )
    n_params = sum(v.numel() for v in ckpt["state_dict"].values())
    instances = card["task"].get("selected") or card["task"].get("instances")
    m = result["mean"]
    text = f"""# nuclei2d: the shipped 2D nuclei base model

A U-Net of this package (`unet/models/unet.py`: {net["spatial_dims"]}D, depth {net["depth"]},
{net["base_features"]} base features, valid convolutions, {n_params:,} parameters stored as float16)
for **nuclei in one grayscale channel** (foreground / background with 1-px ridges between touching
nuclei, separation weights; Falk 2019 M2), normalised per image by min-max (M4), no element size (it
works on the pixel grid of the data it is given; instances by `{instances}`).

**Use**: `python train.py experiment=finetune data=folder data.train_dir=<two annotated images>` starts
from it (Falk M5); `python predict.py ckpt_path=unet/models/base/nuclei2d.ckpt input=<images>` applies
it as is.

**Made by** `python train.py experiment=nuclei-base paths.output_dir=logs/base trainer.max_time=...`
({args.minutes or "?"} min on a 2-core CPU, {ckpt.get("epoch", "?")} epochs of 50 tiles, best val object
IoU {max(val) if val else float("nan"):.3f}), then `unet.checkpoint.slim_checkpoint` (weights only).
**Data**: the train splits of Fluo-N2DL-HeLa (Cell Tracking Challenge) and the DSB 2018 subset (stage-1
training images, channels averaged to gray), selected on their val splits; see
`../shared/data/*/README.md` for provenance and licences. GOWT1 is left out: it is the target of the
transfer table (README).

**Held-out test splits** (never read for training or selection): mean object IoU {m["mean_iou"]:.3f},
F1 at IoU 0.5 {m["f1"]:.3f}, AP@0.5:0.9 {m["ap"]:.3f}.

| dataset | image | object IoU | F1 |
| --- | --- | --- | --- |
{rows}
"""
    out = model.with_suffix(".md")
    write_text(out, text)
    print(text)
    return out


if __name__ == "__main__":
    main()
