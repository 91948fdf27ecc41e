"""Finetuning from the viewer (Falk 2019, M5; the Fiji plugin's "finetune" in napari): no Qt here.

What the "Train / finetune" dock widget runs, as plain functions:

1. :func:`check_pairs`: the (image, annotation) pairs taken from the viewer's layers, checked before any
   training, each refusal a :class:`FinetuneInputError` whose message the widget shows as it is: empty
   annotation, image/annotation shape mismatch, a labels layer with one object only, a point outside the
   image, an image too small for the network, a starting model whose channels or dimensionality do not fit.
2. :func:`write_dataset`: the pairs written as the folder layout ``data=folder`` reads (``train/`` and
   ``val/``, each ``images/`` + ``labels/`` or ``points/``), the layer's scale as the element size; one pair
   validates on itself (the score then shows the fit to the painted cells), with two or more the chosen
   pairs validate.
3. :func:`finetune_overrides`: the ``train.py`` command line of that run, ``experiment=finetune`` (the
   project's finetune recipe) on that folder: the widget shows it, and running it in a shell gives the same
   config (:func:`compose`) and so the same model for the same seed.
4. :func:`run_finetune`: :func:`unet.cli.train.train` of that config (the one training loop) in the calling
   thread, with a callback that reports progress and each validation (the score and the validation image's
   probabilities) and stops cleanly when asked; the best checkpoint is then copied to the chosen path.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet import io
from unet.io.common import atomic_write
from unet.models import shapes
from unet.models.card import CARD_KEY, ModelCard

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
#: the starting models the widget offers besides a checkpoint file
BASE = "base"
SCRATCH = "scratch"

log = logging.getLogger(__name__)


class FinetuneInputError(ValueError):
    """A pair or setting that cannot be trained on; the message names the layer and says what to do."""


class TargetExists(FinetuneInputError):
    """The chosen checkpoint path holds a file already (the widget asks before replacing it)."""


@dataclass
class Pair:
    """One training image and its annotation, as layer data.

    Attributes:
        image: the image layer's data (``(*S)``, channel-first ``(C, *S)`` or RGB ``(*S, 3)``).
        annotation: a Labels layer's data (instance labels, ``*S``) or a Points layer's data (``(N, nd)``
            in the image's pixel coordinates, :func:`points_in_image` converts them).
        kind: ``"labels"`` or ``"points"`` (a Shapes layer arrives rasterised as labels).
        name: the image layer's name (file names in the run's folder).
        annotation_name: the annotation layer's name, for messages.
        rgb: the image layer is RGB(A).
        element_size: µm per spatial axis (the image layer's scale), None when unknown.
    """

    image: Any
    annotation: Any
    kind: str
    name: str
    annotation_name: str = "annotation"
    rgb: bool = False
    element_size: tuple[float, ...] | None = None


def points_in_image(
    points: np.ndarray, points_scale, points_translate, image_scale, image_translate
) -> np.ndarray:
    """A Points layer's data in the pixel coordinates of an image layer (both through world coordinates)."""
    pts = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    nd = pts.shape[1]
    world = pts * np.asarray(points_scale, float)[-nd:] + np.asarray(points_translate, float)[-nd:]
    return (world - np.asarray(image_translate, float)[-nd:]) / np.asarray(image_scale, float)[-nd:]


def channel_first(image: Any, rgb: bool, spatial_dims: int) -> np.ndarray:
    """The image as ``(C, *S)``; one more axis than ``spatial_dims`` is taken as channels first."""
    arr = np.asarray(image)
    if rgb:
        return np.moveaxis(arr, -1, 0)
    return arr[None] if arr.ndim == spatial_dims else arr


def spatial_dims_of(pair: Pair) -> int:
    """2 or 3: the annotation's dimensionality (labels: its axes; points: its columns)."""
    ann = np.asarray(pair.annotation)
    return int(ann.shape[1]) if pair.kind == "points" else int(ann.ndim)


def starting_card(model: str) -> tuple[str | None, ModelCard | None]:
    """(checkpoint path, card) of the starting model: ``"base"`` (the shipped nuclei model), a checkpoint
    path, or ``"scratch"`` (None, None)."""
    if model == SCRATCH:
        return None, None
    from unet.checkpoint import load_project_checkpoint
    from unet.models.base import base_model

    path = base_model("nuclei2d") if model == BASE else str(Path(model).expanduser())
    if model != BASE and not Path(path).is_file():
        raise FinetuneInputError(
            f"{path}: no such checkpoint (choose a .ckpt file, the base model or scratch)"
        )
    try:
        ckpt = load_project_checkpoint(path)
    except ValueError as e:
        raise FinetuneInputError(str(e)) from None
    return path, ModelCard.from_dict(ckpt[CARD_KEY])


def check_pairs(
    pairs: Sequence[Pair], model: str, task: str = "segmentation", depth: int = 4
) -> tuple[int, int, ModelCard | None]:
    """Check the pairs against each other and the starting model before anything is written or trained.

    Returns:
        (spatial dims, channels, starting card or None).

    Raises:
        FinetuneInputError: naming the layer and the problem.
    """
    if not pairs:
        raise FinetuneInputError("add at least one (image, annotation) pair")
    _, card = starting_card(model)
    dims = {spatial_dims_of(p) for p in pairs}
    if len(dims) != 1:
        raise FinetuneInputError("all pairs must be 2D or all 3D, got both")
    nd = dims.pop()
    if nd not in (2, 3):
        raise FinetuneInputError(f"'{pairs[0].annotation_name}': {nd}D annotation; 2D or 3D needed")
    if card is not None:
        if int(card.net["spatial_dims"]) != nd:
            raise FinetuneInputError(
                f"the starting model is {card.net['spatial_dims']}D but the annotations are {nd}D: choose a "
                f"{nd}D checkpoint or 'from scratch'"
            )
        depth = int(card.net.get("depth", depth))
    levels = shapes.isotropic_levels(nd, depth)
    need = 2 * max(shapes.pooling_period(levels))
    channels = set()
    for p in pairs:
        image = channel_first(p.image, p.rgb, nd)
        if image.ndim != nd + 1:
            raise FinetuneInputError(
                f"'{p.name}': a {image.ndim - 1}D image for {nd}D annotations ('{p.annotation_name}')"
            )
        shape = tuple(int(s) for s in image.shape[1:])
        channels.add(int(image.shape[0]))
        if not np.issubdtype(image.dtype, np.number) or not np.isfinite(image).all():
            raise FinetuneInputError(f"'{p.name}': numeric, finite pixels needed (NaN or infinity found)")
        small = [s for s in shape[-2:] if s < need]
        if small:
            raise FinetuneInputError(
                f"'{p.name}': {shape} pixels is too small for the network (depth {depth} pools by "
                f"{need // 2}): at least {need} pixels per axis are needed"
            )
        ann = np.asarray(p.annotation)
        if p.kind == "labels":
            if tuple(ann.shape) != shape:
                raise FinetuneInputError(
                    f"'{p.annotation_name}' has shape {tuple(ann.shape)} but the image '{p.name}' has {shape}"
                )
            ids = np.unique(ann[ann > 0])
            if len(ids) == 0:
                raise FinetuneInputError(f"'{p.annotation_name}' is empty: paint the cells of '{p.name}'")
            if len(ids) == 1 and task == "segmentation":
                raise FinetuneInputError(
                    f"'{p.annotation_name}' has one object only: paint at least two cells (each its own "
                    "label) so that the network learns what separates them"
                )
        elif p.kind == "points":
            if len(ann) == 0:
                raise FinetuneInputError(f"'{p.annotation_name}' is empty: click the cells of '{p.name}'")
            outside = [i for i, q in enumerate(ann) if any(c < -0.5 or c > s - 0.5 for c, s in zip(q, shape))]
            if outside:
                q = ann[outside[0]]
                raise FinetuneInputError(
                    f"'{p.annotation_name}': point {outside[0]} at {tuple(round(float(c), 1) for c in q)} "
                    f"is outside the image '{p.name}' {shape}"
                )
        else:
            raise FinetuneInputError(f"'{p.annotation_name}': a Labels, Points or Shapes layer is needed")
    if len(channels) != 1:
        raise FinetuneInputError(f"the images have different numbers of channels: {sorted(channels)}")
    c = channels.pop()
    if card is not None and int(card.net["in_channels"]) != c:
        raise FinetuneInputError(
            f"the starting model takes {card.net['in_channels']} channel(s), the images have {c}: choose "
            "another checkpoint or 'from scratch'"
        )
    return nd, c, card


def _file_name(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return keep or "image"


def write_dataset(pairs: Sequence[Pair], folder: Path, validate: Sequence[int] = ()) -> Path:
    """Write the pairs as ``folder/train`` and ``folder/val`` (``images/`` + ``labels/`` or ``points/``).

    ``validate``: indices of the pairs that validate (not trained on); default the last of two or more;
    a single pair trains and validates (the validation score then measures the fit).
    """
    folder = Path(folder)
    n = len(pairs)
    val = sorted(set(int(i) for i in validate)) if validate else ([n - 1] if n > 1 else [0])
    if any(not 0 <= i < n for i in val):
        raise FinetuneInputError(f"validation pair(s) {val} out of range: {n} pair(s)")
    train = [i for i in range(n) if i not in val] or val  # one pair: trains and validates
    kind = "points" if pairs[0].kind == "points" else "labels"
    names: dict[int, str] = {}
    for i, p in enumerate(pairs):
        stem = _file_name(p.name)
        names[i] = stem if stem not in names.values() else f"{stem}_{i}"
    nd = spatial_dims_of(pairs[0])
    for split, idx in (("train", train), ("val", val)):
        for i in idx:
            p = pairs[i]
            image = channel_first(p.image, p.rgb, nd)
            base = folder / split
            img = image[0] if image.shape[0] == 1 else image
            io.write_tiff(base / "images" / f"{names[i]}.tif", img, element_size=p.element_size)
            if kind == "labels":
                ann = np.asarray(p.annotation).astype(np.int32)
                io.write_tiff(base / "labels" / f"{names[i]}.tif", ann, element_size=p.element_size)
            else:
                io.write_points_csv(base / "points" / f"{names[i]}.csv", np.asarray(p.annotation, float))
    return folder


def finetune_overrides(
    data_root: Path,
    model: str,
    *,
    spatial_dims: int,
    channels: int,
    task: str = "segmentation",
    minutes: float = 5.0,
    seed: int = 0,
) -> list[str]:
    """The ``train.py`` overrides of a finetuning run on ``data_root`` (see the module doc)."""
    out = ["experiment=finetune", "data=folder", f"data.root={data_root}", f"seed={seed}"]
    if spatial_dims == 3:
        out.insert(0, "model=unet3d")
    if task != "segmentation":
        out.append(f"task={task}")
    if model == SCRATCH:
        out.append("model.init_from=null")
    elif model != BASE:
        out.append(f"model.init_from={Path(model).expanduser()}")
    out.append(f"model.net.in_channels={channels}")
    total = max(1, round(minutes * 60))
    out.append(f"trainer.max_time=00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}")
    return out


def command_line(overrides: Sequence[str], output_dir: Path) -> str:
    """The shell command that runs the same training (``hydra.run.dir`` = the run's folder)."""
    quoted = [o if " " not in o else f"'{o}'" for o in overrides]
    return " ".join(["python train.py", *quoted, f"hydra.run.dir={output_dir}"])


def compose(overrides: Sequence[str], output_dir: Path) -> Any:
    """The config ``python train.py <overrides>`` composes when run from the project's folder, with
    ``output_dir`` as the run's folder (outside a Hydra app the two ``paths`` that Hydra's runtime fills in
    are set here to what they resolve to there)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import unet.cli.train  # noqa: F401  (stores the generated options and registers the resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        paths = [f"paths.output_dir={output_dir}", f"paths.data_root={ROOT}/../shared/data"]
        return hydra_compose("train", overrides=[*overrides, *paths])


@dataclass
class Validation:
    """What one validation reports: the epoch, the score, the best so far and the validation image's
    class probabilities (on its own grid) with its instance labels."""

    epoch: int
    step: int
    score: float
    best: float
    metric: str
    image: str
    probabilities: np.ndarray | None
    labels: np.ndarray | None


@dataclass
class Progress:
    """Elapsed training time against the budget, the epoch and the optimiser step."""

    seconds: float
    budget: float
    epoch: int
    step: int


@dataclass
class Result:
    """A finished finetuning: where the checkpoint went, its best score, the run's folder and TensorBoard."""

    checkpoint: Path | None
    best: float | None
    metric: str
    run_dir: Path
    tensorboard: Path
    stopped: bool
    command: str
    validations: list[Validation] = field(default_factory=list)


def _reporter(
    budget_s: float,
    on_progress: Callable[[Progress], None] | None,
    on_validation: Callable[[Validation], None] | None,
    stop: threading.Event,
) -> Any:
    from lightning.pytorch.callbacks import Callback

    class Reporter(Callback):
        """Progress after each batch, each validation with its probabilities, Stop as a clean end."""

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.validations: list[Validation] = []
            self.stopped = False

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if stop.is_set():
                self.stopped = True
                trainer.should_stop = True
            if on_progress is not None:
                on_progress(
                    Progress(
                        time.monotonic() - self.start, budget_s, trainer.current_epoch, trainer.global_step
                    )
                )

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            metric = str(pl_module.task.monitor)
            value = trainer.callback_metrics.get(metric)
            if value is None:
                return
            ckpt = trainer.checkpoint_callback
            best = ckpt.best_model_score if ckpt is not None and ckpt.best_model_score is not None else value
            best = max(float(best), float(value)) if getattr(ckpt, "mode", "max") == "max" else float(best)
            name, probs = getattr(pl_module, "last_validation", (None, None))
            labels = None
            if probs is not None:
                labels = pl_module.task.instance_labels(probs)[0]
            v = Validation(
                trainer.current_epoch,
                trainer.global_step,
                float(value),
                best,
                metric,
                str(name),
                probs,
                labels,
            )
            self.validations.append(v)
            if on_validation is not None:
                on_validation(v)

    return Reporter()


def run_finetune(
    overrides: Sequence[str],
    run_dir: Path,
    target: Path,
    *,
    minutes: float,
    overwrite: bool = False,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_validation: Callable[[Validation], None] | None = None,
) -> Result:
    """Train the composed config in this thread; copy the best checkpoint (else the last) to ``target``.

    Raises:
        TargetExists: ``target`` exists and ``overwrite`` is False (checked before training).
    """
    from unet.cli.train import train

    target, run_dir = Path(target).expanduser(), Path(run_dir)
    if target.exists() and not overwrite:
        raise TargetExists(f"{target}: a checkpoint is there already; replace it or choose another name")
    if target.suffix != ".ckpt":
        raise FinetuneInputError(f"{target}: the checkpoint's name must end in .ckpt")
    cfg = compose(overrides, run_dir)
    stop = stop or threading.Event()
    reporter = _reporter(minutes * 60.0, on_progress, on_validation, stop)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger("unet").addHandler(handler)
    try:
        best = train(cfg, callbacks=[reporter])
    finally:
        logging.getLogger("unet").removeHandler(handler)
        handler.close()
    chosen = run_dir / "checkpoints" / "best.ckpt"
    if not chosen.is_file():
        chosen = run_dir / "checkpoints" / "last.ckpt"
    written = None
    if chosen.is_file():
        with atomic_write(target) as tmp:  # the project's atomic writer: modes of the umask, fsync, rename
            shutil.copyfile(chosen, tmp)
        written = target
    best_value = None if best is None or (isinstance(best, float) and math.isnan(best)) else float(best)
    return Result(
        checkpoint=written,
        best=best_value,
        metric=str(cfg.get("optimized_metric")),
        run_dir=run_dir,
        tensorboard=run_dir / "tensorboard",
        stopped=reporter.stopped,
        command=command_line(overrides, run_dir),
        validations=reporter.validations,
    )
