"""Where training and validation images come from: synthetic cells, or folders of files.

A source yields :class:`Item` objects (raw image, annotation, element size); the data module turns them
into targets and weights for the task. Every source validates its files before training starts, so a
bad file stops the run at once with a message naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet import io
from unet.data.items import Annotation, Item
from unet.data.synthetic import synthetic_brightfield, synthetic_cells
from unet.postprocess import label_centroids, mask_to_instances

log = logging.getLogger(__name__)


def check_same_shape(
    image: np.ndarray, labels: np.ndarray, image_path: io.PathLike | None, label_path: io.PathLike | None
) -> None:
    """Check that a channel-first image and a label image cover the same pixels.

    Args:
        image: ``(C, Y, X)`` or ``(C, Z, Y, X)`` image (channel axis required).
        labels: ``(Y, X)`` or ``(Z, Y, X)`` labels (or any annotation array with spatial shape).
        image_path: Image file for the error message.
        label_path: Label file for the error message.

    Raises:
        DataFileError: Spatial shapes differ (message names both files and both shapes).
    """
    img_shape = tuple(np.shape(image))
    lab_shape = tuple(np.shape(labels))
    if len(img_shape) != len(lab_shape) + 1 or img_shape[1:] != lab_shape:
        raise io.DataFileError(
            label_path if label_path is not None else Path("<labels>"),
            f"labels of shape {lab_shape} do not match image {image_path} of shape {img_shape} "
            f"(spatial shape {img_shape[1:]}, channel axis first)",
        )


def split_items(items: Sequence[Item], num_folds: int, fold: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Cross-validation: allocate items to ``num_folds`` folds at random (seeded); fold ``fold`` validates."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 for cross-validation, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    if len(items) < num_folds:
        raise ValueError(f"{len(items)} images cannot be split into {num_folds} folds")
    order = np.random.default_rng(seed).permutation(len(items))
    assignment = np.empty(len(items), int)
    assignment[order] = np.arange(len(items)) % num_folds
    train = [it for it, a in zip(items, assignment) if a != fold]
    val = [it for it, a in zip(items, assignment) if a == fold]
    return train, val


class SyntheticSource:
    """Synthetic cells made in code (:func:`unet.data.synthetic.synthetic_cells` or
    :func:`unet.data.synthetic.synthetic_brightfield`).

    Args:
        modality: "fluorescence" (2D or 3D) or "brightfield" (3D widefield stacks of phase objects).
        spatial_dims: 2 or 3.
        shape: spatial image shape.
        n_train / n_val: number of images.
        n_cells: cells per image.
        radius: cell semi-axes range (fluorescence: px of the finest axis; brightfield: µm).
        element_size: voxel size written into the items (µm); None = unknown (brightfield needs one).
        channels: image channels.
        annotation: "labels" (instances), "mask" (binary class mask) or "points" (cell centres).
        seed: generator seed (the images are the same for the same seed).
    """

    def __init__(
        self,
        modality: str = "fluorescence",
        spatial_dims: int = 2,
        shape: Sequence[int] = (256, 256),
        n_train: int = 4,
        n_val: int = 2,
        n_cells: int = 40,
        radius: Sequence[float] = (6.0, 12.0),
        element_size: Sequence[float] | None = None,
        channels: int = 1,
        annotation: str = "labels",
        seed: int = 0,
    ) -> None:
        if len(shape) != spatial_dims:
            raise ValueError(f"synthetic data: shape {tuple(shape)} does not have {spatial_dims} axes")
        if annotation not in ("labels", "mask", "points"):
            raise ValueError(f"synthetic data: annotation must be labels, mask or points, got {annotation!r}")
        if modality not in ("fluorescence", "brightfield"):
            raise ValueError(
                f"synthetic data: modality must be fluorescence or brightfield, got {modality!r}"
            )
        if modality == "brightfield" and (spatial_dims != 3 or element_size is None):
            raise ValueError("synthetic brightfield data are 3D stacks with an element size (µm)")
        self.modality = modality
        self.spatial_dims = spatial_dims
        self.shape = tuple(shape)
        self.n_train, self.n_val = n_train, n_val
        self.n_cells = n_cells
        self.radius = (float(radius[0]), float(radius[1]))
        self.element_size = tuple(element_size) if element_size is not None else None
        self.channels = channels
        self.annotation = annotation
        self.seed = seed

    def _make(self, n: int, stream: int, prefix: str) -> list[Item]:
        items = []
        for i in range(n):
            rng = np.random.default_rng([self.seed, stream, i])
            make = synthetic_cells if self.modality == "fluorescence" else synthetic_brightfield
            image, labels = make(
                self.shape,
                rng,
                n_cells=self.n_cells,
                radius=self.radius,
                element_size=self.element_size,
                channels=self.channels,
            )
            if self.annotation == "labels":
                ann = Annotation(labels=labels)
            elif self.annotation == "mask":
                ann = Annotation(mask=(labels > 0).astype(np.int32))
            else:
                pts = label_centroids(labels)
                ann = Annotation(points=pts, classes=np.ones(len(pts), np.int64))
            items.append(Item(f"{prefix}{self.modality}_{i:03d}", image, ann, self.element_size))
        return items

    def train_items(self) -> list[Item]:
        return self._make(self.n_train, 0, "synthetic_train_")

    def val_items(self) -> list[Item]:
        return self._make(self.n_val, 1, "synthetic_val_")

    def describe(self) -> str:
        return (
            f"synthetic {self.spatial_dims}D {self.modality} data made in code ({self.n_train} train / "
            f"{self.n_val} val images of {list(self.shape)} px)"
        )


ANNOTATION_DIRS = ("labels", "masks", "points", "rois")


class FolderSource:
    """Images and annotations in folders.

    Each directory holds ``images/`` and, with matching file stems, one of ``labels/`` (instance label
    images; binary masks of any foreground value become connected components), ``masks/`` (class masks
    0..K-1; binary 0/255 masks become 0/1), ``points/`` (CSV, columns y,x[,z][,class]) or ``rois/``
    (ImageJ ROI zip: region ROIs -> instances, multi-point ROIs -> points, ROIs named "ignore*" -> ignore),
    and optionally ``ignore/`` (nonzero = ignore).

    Args:
        train_dir: training directory.
        val_dir: validation directory (optional when cross-validation splits train_dir).
        spatial_dims: 2 or 3 (resolves ambiguous file layouts).
        element_size: voxel size (µm) for images without metadata; None = read from the files.
        channel_axis: channel axis in the files, if not inferable.
    """

    def __init__(
        self,
        train_dir: str | Path,
        val_dir: str | Path | None = None,
        spatial_dims: int = 2,
        element_size: Sequence[float] | None = None,
        channel_axis: int | None = None,
    ) -> None:
        self.train_dir = Path(train_dir)
        self.val_dir = Path(val_dir) if val_dir else None
        self.spatial_dims = spatial_dims
        self.element_size = tuple(element_size) if element_size is not None else None
        self.channel_axis = channel_axis
        for key, d in (("data.train_dir", self.train_dir), ("data.val_dir", self.val_dir)):
            if d is not None and not (d / "images").is_dir():
                raise ValueError(
                    f"{key}={d}: no images/ folder (expected {d}/images and {d}/labels, masks/, points/ "
                    "or rois/)"
                )

    @classmethod
    def from_root(
        cls,
        root: str | Path | None = None,
        train_dir: str | Path | None = None,
        val_dir: str | Path | None = None,
        *,
        folds: bool = False,
        **kwargs,
    ) -> FolderSource:
        """The user's folders: ``train_dir`` [+ ``val_dir``], or a ``root`` holding ``train/`` and ``val/``
        (or, with cross-validation, holding ``images/`` itself or ``train/`` alone).

        Raises ValueError naming what to pass when the folders do not say where training and validation
        images are.
        """
        if root is not None and train_dir is None:
            r = Path(root)
            if not r.is_dir():
                raise ValueError(f"data.root={r}: no such folder")
            if (r / "train" / "images").is_dir():
                train_dir = r / "train"
                if val_dir is None and (r / "val" / "images").is_dir():
                    val_dir = r / "val"
            elif (r / "images").is_dir():
                train_dir = r
            else:
                raise ValueError(
                    f"data.root={r}: expected train/ and val/ (each with images/ and labels/, masks/, "
                    "points/ "
                    f"or rois/), or images/ itself with cross-validation (data.num_folds=5 data.fold=0); "
                    f"found {sorted(p.name for p in r.iterdir())[:8]}"
                )
        if train_dir is None:
            raise ValueError(
                "no training data given: pass data.train_dir=<dir with images/ and labels/> "
                "[data.val_dir=<dir>], or data.root=<dir with train/ and val/>"
            )
        if val_dir is None and not folds:
            raise ValueError(
                f"{train_dir}: no validation images: pass data.val_dir=<dir> (or data.root=<dir with train/ "
                "and val/>), or split the training images with cross-validation: data.num_folds=5 data.fold=0"
            )
        return cls(train_dir, val_dir, **kwargs)

    def describe(self) -> str:
        return f"folders {self.train_dir} (train), {self.val_dir or 'cross-validation folds'} (val)"

    def _items(self, root: Path) -> list[Item]:
        kinds = [k for k in ANNOTATION_DIRS if (root / k).is_dir()]
        if len(kinds) != 1:
            raise ValueError(
                f"{root}: expected exactly one of {ANNOTATION_DIRS} next to images/, found {kinds}"
            )
        kind = kinds[0]
        pairs = io.find_pairs(root / "images", root / kind)
        ignore_dir = root / "ignore"
        items = []
        for image_path, ann_path in pairs:
            try:
                data = io.read_image(
                    image_path, spatial_dims=self.spatial_dims, channel_axis=self.channel_axis
                )
            except io.DataFileError as e:
                if f"but spatial_dims={self.spatial_dims}" not in str(e):
                    raise
                other = 5 - self.spatial_dims
                raise io.DataFileError(
                    image_path,
                    f"{str(e).split(': ', 1)[1]}: {other}D data for a {self.spatial_dims}D model "
                    f"(use model=unet{other}d)",
                ) from None
            shape = data.array.shape[1:]
            if len(shape) != self.spatial_dims:
                raise ValueError(
                    f"{image_path}: has {len(shape)} spatial axes, the model expects {self.spatial_dims}"
                )
            ann = read_annotation(ann_path, kind, shape, self.spatial_dims)
            if ignore_dir.is_dir():
                matches = sorted(ignore_dir.glob(image_path.stem + ".*"))
                if matches:
                    ign = io.read_labels(matches[0]) > 0
                    check_same_shape(data.array, ign, image_path, matches[0])
                    ann.ignore = ign if ann.ignore is None else (ann.ignore | ign)
            es = data.element_size if data.element_size is not None else self.element_size
            meta = {"path": str(image_path), "annotation": str(ann_path)}
            items.append(Item(image_path.stem, data.array, ann, es, meta))
        log.info("%s: %d images with %s", root, len(items), kind)
        return items

    def train_items(self) -> list[Item]:
        return self._items(self.train_dir)

    def val_items(self) -> list[Item]:
        return self._items(self.val_dir) if self.val_dir is not None else []


def read_annotation(path: Path, kind: str, shape: Sequence[int], spatial_dims: int) -> Annotation:
    """Read one annotation file of the given kind (labels, masks, points, rois) for an image of ``shape``."""
    shape = tuple(shape)
    if kind in ("labels", "masks"):
        arr = io.read_labels(path)
        if arr.ndim == len(shape) + 1 and spatial_dims == 2 and tuple(arr.shape[1:]) == shape:
            raise ValueError(
                f"{path}: 3D annotation {tuple(arr.shape)} for an image read as 2D with {arr.shape[0]} "
                "channels: the data are 3D stacks but the model is 2D (use model=unet3d)"
            )
        if tuple(arr.shape) != shape:
            raise ValueError(f"{path}: annotation shape {tuple(arr.shape)} differs from the image's {shape}")
        if kind == "labels":
            values = np.unique(arr)
            if len(values) == 2 and values[0] == 0:
                # a binary mask (0/1, 0/255, 0/65535...): instances = its connected components (a label image
                # with a single object is the same thing)
                arr = mask_to_instances(arr > 0)
            return Annotation(labels=arr.astype(np.int32))
        if arr.max(initial=0) == 255 and len(np.unique(arr)) <= 2:
            arr = (arr > 0).astype(np.int32)
        return Annotation(mask=arr.astype(np.int32))
    if kind == "points":
        pts, cls = io.read_points_csv(path, spatial_dims, shape=shape)
        return Annotation(points=pts, classes=cls)
    rois = io.read_rois(path, shape)
    ignore = rois.ignore if rois.ignore is not None and rois.ignore.any() else None
    if rois.points is not None and len(rois.points) and not rois.labels.any():
        return Annotation(points=rois.points, classes=rois.classes, ignore=ignore)
    return Annotation(labels=rois.labels, ignore=ignore)
