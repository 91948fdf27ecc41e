"""The peer baseline of the quality table: what a MONAI user would write for the same data and budget.

A same-padded MONAI :class:`~monai.networks.nets.BasicUNet` (widths matched to our network: base features,
doubling per level, as many as the config's ``model.net``), trained with :class:`~monai.losses.DiceCELoss`
(soft-max, one-hot labels) on uniformly random crops with MONAI's own augmentation (rotation about the
optical axis, flips, a smooth elastic deformation in 2D, a random gamma as the monotone intensity curve: the
same kinds and ranges as ours, in MONAI's parametrisation), Adam at our learning rate, within the same
budget: CPU time (``time.process_time``, data loading in the process as ours), wall-clock time on a GPU.
Validation every ``data.tiles_per_epoch`` steps scores the task's metric on the ``val``
images (same selection rule as ours: the best checkpoint by ``val/iou`` or ``val/f1``); the test images are
predicted with :func:`~monai.inferers.sliding_window_inference` (Gaussian blending, overlap 0.25) and the
objects are connected components of the arg-max class map (segmentation) or the components' centres
(detection), through the same task post-processing (``min_size``) and scoring as our runs.

What is shared with our arm, so that the table compares recipes, not plumbing: the data source and split,
the min-max normalisation (Falk M4, MONAI's ``ScaleIntensity`` does the same), the training targets'
classes (segmentation: foreground / background; detection: our disks around the points), the batch size,
the optimiser, the budget and the metrics. What differs is exactly what the issue names: the network
(padded, instance-normalised), the loss (Dice + CE, no w_bal / w_sep / ridges), uniform crops instead of
the w_bal pdf, MONAI's augmentation, sliding-window inference and components.

Usage (one run; ``python -m benchmarks.arms`` runs the table)::

    python -m benchmarks.peer_monai --experiment ctc-fluo-n2dh-gowt1 --minutes 5 --seed 0 --out run.json
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_DATA_ROOT, compose_config, machine, score_items, write_json

log = logging.getLogger("peer")


def peer_features(net_cfg: Any) -> tuple[int, ...]:
    """BasicUNet's six widths (four downsamplings fixed) matched to our net's: ``base_features`` doubling
    per level up to our deepest width (``base * 2**depth``, or ``max_features``), the last up-convolution at
    the base width."""
    base = int(net_cfg.base_features)
    cap = min(net_cfg.get("max_features") or math.inf, base * 2 ** int(net_cfg.depth))
    widths = [int(min(base * 2**i, cap)) for i in range(5)]
    return (*widths, base)


def crop_size(our_output: Sequence[int], image_shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Random-crop size: our training tile's output (the labelled area one step of ours sees), rounded
    down to a multiple of 16 (BasicUNet pools four times), at least 16, at most the largest image."""
    largest = np.max(np.asarray(image_shapes), axis=0)
    out = []
    for o, m in zip(our_output, largest):
        s = max(16, (int(min(o, max(m, 16))) // 16) * 16)
        out.append(s)
    return tuple(out)


def our_output_tile(cfg: Any, train_shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The output shape of the tile our data module picks for this config (same memory budget)."""
    from hydra.utils import instantiate

    from unet.memory import tile_shape_for_budget
    from unet.models import shapes

    net = instantiate(cfg.model.net)
    halo = shapes.halo(net.levels)
    largest = np.max(np.asarray(train_shapes), axis=0)
    tile = tile_shape_for_budget(
        net,
        int(float(cfg.data.tile_memory_mib) * 2**20),
        batch_size=int(cfg.data.batch_size),
        train=True,
        max_shape=tuple(int(s) + 2 * h for s, h in zip(largest, halo)),
        element_size=None,
        measure=False,
    )
    return tuple(shapes.output_shape(net.levels, tile))


def training_arrays(task: Any, items: Sequence[Any]) -> list[dict[str, np.ndarray]]:
    """Normalised images and class targets (segmentation: foreground; detection: our disks)."""
    from unet.data.preprocess import normalize

    out = []
    for it in items:
        image = normalize(np.asarray(it.image, np.float32), "minmax").astype(np.float32)
        if task.name == "segmentation":
            label = (task.ground_truth(it.annotation) > 0).astype(np.int64)
        else:
            label = task.targets(it.annotation, image.shape[1:], it.element_size)[0].astype(np.int64)
        out.append({"image": image, "label": label[None]})
    return out


def transforms(roi: Sequence[int], augment: Any) -> Any:
    """MONAI dictionary transforms: pad to the crop, uniform random crop, rotation about the optical axis,
    flips, 2D elastic deformation (our grid spacing and displacement std), random gamma."""
    from monai import transforms as T

    keys = ("image", "label")
    nd = len(roi)
    rot = math.radians(max(abs(a) for a in augment.rotation_range))
    elastic = float(augment.elastic_std)
    steps = [
        T.SpatialPadd(keys, spatial_size=roi, mode="reflect"),
        T.RandSpatialCropd(keys, roi_size=roi, random_size=False),
    ]
    if rot > 0:
        rotate = (rot,) if nd == 2 else (rot, 0.0, 0.0)  # 3D: about the first (z, optical) axis
        steps.append(
            T.RandAffined(
                keys, prob=1.0, rotate_range=rotate, mode=("bilinear", "nearest"), padding_mode="reflection"
            )
        )
    if augment.flips:
        steps += [T.RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(nd - 2, nd)]
    if elastic > 0 and nd == 2:
        spacing = float(augment.elastic_grid_spacing)
        steps.append(
            T.Rand2DElasticd(
                keys,
                spacing=(spacing, spacing),
                magnitude_range=(elastic, elastic),
                prob=1.0,
                mode=("bilinear", "nearest"),
                padding_mode="reflection",
            )
        )
    if augment.intensity_range > 0:
        steps.append(T.RandAdjustContrastd("image", prob=1.0, gamma=(0.7, 1.5)))
    steps.append(T.EnsureTyped(keys, track_meta=False))
    return T.Compose(steps)


def run(
    experiment: str,
    *,
    minutes: float,
    seed: int,
    data_root: Path,
    overrides: Sequence[str] = (),
    workers: int = 0,
) -> dict[str, Any]:
    """Train the peer within ``minutes`` and score it on the experiment's test split (the record of
    :func:`benchmarks.common.run_experiment`)."""
    import torch
    from hydra.utils import instantiate
    from monai.data import DataLoader, Dataset
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet
    from monai.utils import set_determinism

    from benchmarks.cpu_budget import budget_clock, clock_now
    from unet.data.augment import AugmentParams
    from unet.data.preprocess import normalize

    cfg = compose_config(experiment, Path("unused"), data_root, None, [f"seed={seed}", *overrides])
    set_determinism(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = instantiate(cfg.task)
    if task.name == "segmentation":
        task.instances = "components"  # what a MONAI user does: connected components of the class map
    source = instantiate(cfg.data.source)
    train_items, val_items = source.train_items(), source.val_items()
    train = training_arrays(task, train_items)
    shapes_ = [d["image"].shape[1:] for d in train]
    roi = crop_size(our_output_tile(cfg, shapes_), shapes_)
    augment = AugmentParams(
        **{k: v for k, v in cfg.data.augment.items() if k in AugmentParams.__annotations__}
    )
    steps_per_epoch = int(cfg.data.tiles_per_epoch) // int(cfg.data.batch_size)
    nd = len(roi)
    feats = peer_features(cfg.model.net)
    net = BasicUNet(
        spatial_dims=nd,
        in_channels=int(cfg.model.net.in_channels),
        out_channels=task.num_classes,
        features=feats,
    ).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg.model.optimizer.lr))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    data = Dataset(
        train * max(1, steps_per_epoch * int(cfg.data.batch_size) // len(train)), transforms(roi, augment)
    )
    loader = DataLoader(
        data,
        batch_size=int(cfg.data.batch_size),
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    monitor = str(task.monitor).split("/")[-1]

    def probabilities(image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(normalize(np.asarray(image, np.float32), "minmax")[None].astype(np.float32))
        net.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = sliding_window_inference(
                x.to(device), roi, sw_batch_size=4, predictor=net, overlap=0.25, mode="gaussian"
            )
        net.train()
        return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()

    def validate() -> float:
        scores = [task.score(probabilities(it.image), it.annotation, it.element_size) for it in val_items]
        vals = [s[monitor] for s in scores if math.isfinite(s.get(monitor, math.nan))]
        return float(np.mean(vals)) if vals else math.nan

    clock = budget_clock()  # CPU time of this process without a GPU, as ours (benchmarks/cpu_budget.py)
    t0 = time.perf_counter()
    deadline = clock_now(clock) + minutes * 60
    step, best, best_state, history = 0, -math.inf, None, []
    net.train()
    done = False
    while not done:
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = net(x)
            loss = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            over = clock_now(clock) >= deadline
            if step % steps_per_epoch == 0 or over:
                score = validate() if val_items else math.nan
                history.append({"step": step, "loss": loss.item(), monitor: score})
                if not val_items or (math.isfinite(score) and score > best):
                    best, best_state = score, copy.deepcopy(net.state_dict())
            if over:
                done = True
                break
    train_minutes = (time.perf_counter() - t0) / 60
    if best_state is not None:
        net.load_state_dict(best_state)
    t1 = time.perf_counter()
    result = score_items(task, source, lambda item: probabilities(item.image))
    result.update(
        experiment=experiment,
        arm="peer",
        seed=seed,
        steps=step,
        crop=list(roi),
        features=list(feats),
        val_metric={f"val/{monitor}": best},
        val_history=history,
        train_minutes=train_minutes,
        eval_seconds=time.perf_counter() - t1,
        budget_minutes=minutes,
        budget_clock=clock,
        overrides=list(overrides),
        machine=machine(),
    )
    log.info("peer %s seed %d: %d steps, %s", experiment, seed, step, result["mean"])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", required=True)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--out", default=None, help="write the record here (JSON)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    result = run(
        args.experiment,
        minutes=args.minutes,
        seed=args.seed,
        data_root=Path(args.data_root),
        overrides=args.set,
        workers=args.workers,
    )
    if args.out:
        write_json(Path(args.out), result)
    return result


if __name__ == "__main__":
    main()
