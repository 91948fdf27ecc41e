"""``train.py``: :func:`train` (and :func:`build`): a composed config -> objects -> checks -> Lightning fit.

Importing this module registers the resolvers and the options :mod:`unet.config` generates from the classes
(``task/*``, ``data/augment/*``, ``data/base``, ``model/base``); ``conf/train.yaml`` holds the recipe.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as _instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from unet.checkpoint import load_checkpoint, load_project_checkpoint
from unet.config import register
from unet.constants import SIGMA_SEP
from unet.data.datamodule import data_element_size, with_items
from unet.data.fingerprint import MIN_SIGMA_SEP, SEP_DIAMETER_RATIO, median_object_diameter, sigma_sep_for
from unet.data.preprocess import scale_factors
from unet.hardware import precision_reason, slow_precision_note
from unet.models.card import CARD_KEY, ModelCard
from unet.models.unet import UNet

log = logging.getLogger(__name__)
register()  # the resolvers (${unet.precision:...} in conf/trainer) and the generated options


def instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate; a ValueError from a constructor (bad input) reaches the user as is."""
    try:
        return _instantiate(node, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ValueError):
            raise ValueError(str(cause)) from None
        raise


def build(cfg: DictConfig, callbacks: Sequence[Any] = ()) -> tuple[Any, Any, Any, Any]:
    """Instantiate (task, model, datamodule, trainer) and check that they fit together; ``callbacks`` are
    added to the config's (the napari finetune widget's progress and Stop).

    Raises ValueError before any training for: a tile too small or invalid for the network, 3D data
    for a 2D model, a channel mismatch, a missing dataset path.
    """
    task = instantiate(cfg.task)
    # the data config, bound (everything but the model's facts) and its images read: the model's element size
    # may be the data's, so the data module itself is made below, in one call, once the network exists
    make_data = with_items(instantiate(cfg.data, _partial_=True))
    card = _pretrained_card(cfg.model.get("init_from"))
    # the model's element size: as configured, else the pretrained model's (finetuning rescales the new
    # data to it, Falk M5), else that of the training data (images keep their size)
    element_size = cfg.model.get("element_size")
    if element_size is None and card is not None:
        element_size = card.element_size
    if element_size is None:
        element_size = data_element_size(make_data)
    element_size = None if element_size is None else [float(e) for e in element_size]
    fingerprint(task, make_data, element_size)
    dims = cfg.model.net.spatial_dims
    if element_size is not None and len(element_size) != dims:
        raise ValueError(
            f"the data has {len(element_size)} spatial axes (element size {element_size}) but the model is "
            f"{dims}D (model=unet{len(element_size)}d?)"
        )
    if card is None:
        net = instantiate(cfg.model.net, element_size=element_size)
    else:  # finetuning keeps the pretrained architecture; only channels and classes may change
        overrides = {k: cfg.model.net[k] for k in ("in_channels", "num_classes")}
        net = UNet(**{**card.net, **overrides, "element_size": element_size})
    model_kwargs = {
        k: v
        for k, v in cfg.model.items()
        if k not in ("_target_", "net", "optimizer", "scheduler", "element_size", "normalization")
    }
    model_kwargs["normalization"] = card.normalization if card is not None else cfg.model.normalization
    model = _get_class(cfg.model._target_)(
        net=net,
        task=task,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        element_size=element_size,
        **OmegaConf.to_container(OmegaConf.create(dict(model_kwargs)), resolve=True),
    )
    validate = cfg.trainer.get("limit_val_batches", 1.0) != 0  # off on purpose: no val images needed
    datamodule = make_data(
        task=task,
        net=net,
        model_element_size=model.element_size,
        normalization=model.normalization,
        validate=validate,
    )
    # every image's dimensionality and channels were checked by the data module, naming the file
    callbacks = [*(instantiate(c) for c in (cfg.get("callbacks") or {}).values()), *callbacks]
    if not validate:  # no validation metric: no early stopping, the last checkpoint is the model
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        callbacks = [c for c in callbacks if not isinstance(c, EarlyStopping)]
        for c in callbacks:
            if isinstance(c, ModelCheckpoint):
                c.monitor = None
        log.info("validation off (trainer.limit_val_batches=0): no early stopping; use last.ckpt")
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    return task, model, datamodule, trainer


def fingerprint(task: Any, make_data: Any, element_size: Sequence[float] | None) -> None:
    """Data-derived defaults (:mod:`unet.data.fingerprint`): ``task.sigma_sep="auto"`` becomes ``d / 8``
    (within [1, 6] px) of the training labels' median object diameter ``d`` in px of the model's finest
    axis, which ``task.object_diameter`` records (and so the model card); logged for the run summary."""
    if getattr(task, "sigma_sep", None) != "auto":
        return
    train_items, _ = make_data.keywords["items"]
    labelled = [it for it in train_items if it.annotation.labels is not None]
    physical = element_size is not None and all(it.element_size is not None for it in labelled)
    d, n = median_object_diameter(
        (it.annotation.labels, it.element_size if physical else None) for it in labelled
    )
    d_px = None if d is None else (d / min(element_size) if physical else d)
    task.sigma_sep = sigma_sep_for(d_px)
    task.object_diameter = None if d_px is None else round(float(d_px), 3)
    size = "unknown (no labelled objects)" if d is None else f"{d:.3g} {'µm' if physical else 'px'}"
    log.info(
        "fingerprint: median object diameter %s%s over %d object(s) -> task.sigma_sep %.3g px (d / %g within "
        "[%g, %g] px; task.sigma_sep=<px> overrides)",
        size,
        f" = {d_px:.3g} px" if physical and d_px is not None else "",
        n,
        task.sigma_sep,
        SEP_DIAMETER_RATIO,
        MIN_SIGMA_SEP,
        SIGMA_SEP,
    )


def _pretrained_card(path: str | None) -> ModelCard | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise ValueError(f"model.init_from: no checkpoint at {path}")
    ckpt = load_project_checkpoint(path)
    return ModelCard.from_dict(ckpt[CARD_KEY])


def _get_class(path: str) -> type:
    from hydra.utils import get_class

    return get_class(path)


def summary(
    model: Any, datamodule: Any, trainer: Any, accelerator: str = "auto", max_time: Any = None
) -> str:
    net = model.net
    n_params = sum(p.numel() for p in net.parameters())
    lines = [
        f"task        {model.task.name} ({net.num_classes} classes), best checkpoint by {model.task.monitor}",
        f"model       {net.spatial_dims}D U-Net, depth {net.depth}, features {net.features}, "
        f"{n_params / 1e6:.2f} M parameters, element size {model.element_size}",
        f"data        {len(datamodule.train_images)} train / {len(datamodule.val_images)} val images, "
        f"tile {list(datamodule.tile_shape)} -> {list(datamodule.out_shape)}, batch {datamodule.batch_size}, "
        f"{datamodule.tiles_per_epoch} tiles/epoch",
        f"rescale     {_rescaling(datamodule, model.element_size)}",
        f"trainer     up to {trainer.max_epochs} epochs"
        + (f" or {max_time}" if max_time else "")
        + f", precision {precision_reason(accelerator, str(trainer.precision))}, "
        f"{trainer.world_size} process(es) on {type(trainer.accelerator).__name__}",
        f"output      {trainer.default_root_dir}",
    ]
    return "\n".join(lines)


def _rescaling(datamodule: Any, model_element_size: Any) -> str:
    """How images are rescaled to the model's element size (Falk M5), for the run summary."""
    factors = {}
    for p in datamodule.train_images + datamodule.val_images:
        f = scale_factors(p.item.element_size, model_element_size)
        key = "none" if f is None else "x".join(f"{v:.3g}" for v in f)
        factors[key] = factors.get(key, 0) + 1
    if set(factors) == {"none"}:
        return "none (images are at the model's element size)"
    return ", ".join(f"{k} ({n} images)" if k != "none" else f"none ({n} images)" for k, n in factors.items())


def train(cfg: DictConfig, callbacks: Sequence[Any] = ()) -> float | None:
    """Train a model from a composed config; returns ``cfg.optimized_metric`` (best value) for sweeps.
    ``callbacks``: added to the config's (:func:`build`)."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    ckpt_path = cfg.get("ckpt_path")
    resumed = None
    if ckpt_path:  # missing, truncated or unsafe: a clear error before anything is prepared
        resumed = load_checkpoint(ckpt_path)
    _task, model, datamodule, trainer = build(cfg, callbacks)
    if resumed is not None:
        check_resume_matches(ckpt_path, resumed, model)
    if trainer.is_global_zero:
        log.info(
            "run summary\n%s",
            summary(
                model,
                datamodule,
                trainer,
                str(cfg.trainer.get("accelerator")),
                cfg.trainer.get("max_time"),
            ),
        )
        slow = slow_precision_note(str(cfg.trainer.get("accelerator")), str(trainer.precision))
        if slow:
            log.warning("%s", slow)
    hp_metrics = {f"hp/best_{m.split('/')[-1]}": float("nan") for m in _hp_metrics(model.task)}
    if trainer.logger is not None:
        # with metrics, TensorBoard's HPARAMS dashboard lists the run; their values come at the end of fit
        params = OmegaConf.to_container(cfg, resolve=True)
        if hp_metrics and isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.log_hyperparams(params, metrics=hp_metrics)
        else:
            trainer.logger.log_hyperparams(params)
    with warnings.catch_warnings():
        silence_false_warnings()
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    value = _best_metric(trainer, cfg.get("optimized_metric"))
    best_path = getattr(trainer.checkpoint_callback, "best_model_path", None)
    if value is None and resumed is not None:  # a finished run resumed: fit ran nothing, its record has it
        value, best_path = _recorded_best(resumed, cfg.get("optimized_metric"))
    if trainer.logger is not None and trainer.is_global_zero:
        best = _best_scores(trainer, model.task)
        if best:
            trainer.logger.log_metrics(best, step=trainer.global_step)
            trainer.logger.save()
    if trainer.is_global_zero:
        log.info("done: %s = %s; best checkpoint %s", cfg.get("optimized_metric"), value, best_path or "-")
    return value


def check_resume_matches(ckpt_path: Any, ckpt: dict[str, Any], model: Any) -> None:
    """Resuming needs the network the checkpoint was trained with: name the checkpoint and every setting of
    the network that differs (instead of Lightning's list of tensor size mismatches)."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    saved = (ckpt.get(CARD_KEY) or {}).get("net")
    if saved is None:
        raise ValueError(
            f"{ckpt_path}: not a checkpoint of this project (no '{CARD_KEY}'); cannot resume from it"
        )
    ours = model.card.to_dict()["net"]
    diffs = [
        f"model.net.{k}: checkpoint {plain(saved.get(k))!r}, this run {plain(ours.get(k))!r}"
        for k in sorted(set(saved) | set(ours))
        if plain(saved.get(k)) != plain(ours.get(k))
    ]
    if diffs:
        raise ValueError(
            f"{ckpt_path}: cannot resume: the checkpoint's network differs from this run's config:\n  "
            + "\n  ".join(diffs)
            + "\nresume with the run's own settings (its .hydra/config.yaml), or start a new run from its "
            "weights with model.init_from=<checkpoint>"
        )


def _hp_metrics(task: Any) -> list[str]:
    """The validation metrics shown in TensorBoard's HPARAMS table: the task's monitor first."""
    names = [task.monitor] + [m for m in ("val/iou", "val/f1", "val/loss") if m != task.monitor]
    return names if task.name == "segmentation" else [task.monitor, "val/count_error", "val/loss"]


def _best_scores(trainer: Any, task: Any) -> dict[str, float]:
    """``hp/best_<metric>``: the monitor's best value (the best checkpoint's), the others as of the last
    validation."""
    out = {}
    ckpt = trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_score", None)
    if best is not None:
        out[f"hp/best_{task.monitor.split('/')[-1]}"] = float(best)
    for name in _hp_metrics(task):
        key = f"hp/best_{name.split('/')[-1]}"
        value = trainer.callback_metrics.get(name)
        if key not in out and value is not None:
            out[key] = float(value)
    return out


def silence_false_warnings() -> None:
    """Ignore exactly the two warnings every run printed that are noise or false here, nothing broader:

    * torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised inside Lightning's
      own ``_pytree`` (twice a run; nothing of ours to change);
    * Lightning's "... your dataloader is not resumable" on a mid-epoch resume: false for our data module,
      which restores its own position (``UNetDataModule.state_dict`` / ``load_state_dict``, tested by
      ``tests/test_bad_inputs.py::test_kill_during_training_then_resume``).
    """
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings(
        "ignore",
        message=r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader",
    )


def _recorded_best(ckpt: dict[str, Any], name: str | None) -> tuple[float | None, str | None]:
    """The best ``name`` and its checkpoint as the run's ModelCheckpoint recorded them in ``ckpt``."""
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(state, dict) and state.get("monitor") == name:
            score = state.get("best_model_score")
            if score is not None:
                return float(score), state.get("best_model_path")
    return None, None


def _best_metric(trainer: Any, name: str | None) -> float | None:
    if not name:
        return None
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "monitor", None) == name and ckpt.best_model_score is not None:
        return float(ckpt.best_model_score)
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)
