"""The real datasets of ``${paths.data_root}`` (``../shared/data``) with a fixed, documented split.

:class:`DatasetSource` reads one dataset folder (``<root>/images`` + ``<root>/<annotations>`` with
matching file stems) and splits it by file stem into ``train`` (training), ``val`` (model selection:
the best checkpoint) and ``test`` (held out: only :meth:`DatasetSource.test_items` ever reads it, for
``benchmarks/quality.py``). The split is part of the data config (``conf/data/<name>.yaml``), so every
run and every benchmark uses the same images.

A dataset with a single volume (``plantseg-ovule-cells-3d``) is split into disjoint *regions*: ``crops``
maps a stem to one region per split, written as a numpy slice over the spatial axes, e.g.::

    train: [sample_ovule]
    val: [sample_ovule]
    test: [sample_ovule]
    crops:
      sample_ovule: {train: "[:, :64, :]", val: "[:, 64:, :64]", test: "[:, 64:, 64:]"}

The lists say *which* files a split uses, ``crops`` *where*: a stem may be listed in several splits only
if it has a region for each of them, and the regions of one file must not overlap (checked when the
source is built). Annotation kinds (``kind``):

``labels``
    instance label images (0 = background); binary 0/255 images become connected components.
``masks``
    class masks 0..K-1 (semantic segmentation; binary 0/255 -> 0/1).
``binary_instances``
    binary masks (any nonzero = foreground) whose connected components (8-/26-connected, as Falk 2019
    M6.1 labels predictions) are the instances, e.g. NIH3T3 (touching nuclei stay merged, as annotated).
``interior_instances``
    ISBI 2012: nonzero = cell interior, 0 = membrane; instances = 4-connected (2D) / 6-connected (3D)
    components of the interior (as the challenge scripts label cells), membranes are background.
``dots``
    dot images: every nonzero pixel is one annotated point (e.g. MBM bone marrow nuclei centres).
``points`` / ``rois``
    point CSVs / ImageJ ROI sets, as :class:`unet.data.sources.FolderSource` reads them.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet import io
from unet.data.items import Annotation, Item
from unet.data.sources import check_same_shape, read_annotation
from unet.postprocess import mask_to_instances

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
KINDS = ("labels", "masks", "binary_instances", "interior_instances", "dots", "points", "rois")

Region = tuple[slice, ...]

_INT = r"\s*(-?\d+)?\s*"
_SLICE = re.compile(rf"^{_INT}(?::{_INT})?$")


def parse_region(text: str, spatial_dims: int) -> Region:
    """Parse a region written as a numpy slice over the spatial axes, e.g. ``"[:, :64, 10:-10]"``.

    Only ``start:stop`` slices (step 1) and ``:`` are allowed; missing trailing axes are whole. Single
    indices are not allowed (a region keeps all axes).
    """
    body = str(text).strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")] if body.strip() else []
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if len(parts) > spatial_dims:
        raise ValueError(f"region {text!r} has {len(parts)} axes but the data has {spatial_dims}")
    region = []
    for p in parts:
        m = _SLICE.match(p)
        if m is None or ":" not in p:
            raise ValueError(
                f"region {text!r}: {p!r} is not a slice 'start:stop' (e.g. \"[:, :64, 64:]\"; no steps)"
            )
        start, stop = m.group(1), m.group(2)
        region.append(slice(None if start is None else int(start), None if stop is None else int(stop)))
    region += [slice(None)] * (spatial_dims - len(region))
    return tuple(region)


def region_bounds(region: Region, shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` per axis of a region on an array of ``shape`` (clipped as numpy does)."""
    out = []
    for s, n in zip(region, shape, strict=True):
        start, stop, _ = s.indices(int(n))
        out.append((start, max(start, stop)))
    return tuple(out)


def regions_overlap(a: Region, b: Region, shape: Sequence[int]) -> bool:
    """Whether two regions of an array of ``shape`` share a pixel."""
    ba, bb = region_bounds(a, shape), region_bounds(b, shape)
    return all(max(x0, y0) < min(x1, y1) for (x0, x1), (y0, y1) in zip(ba, bb))


def _names(value: Iterable[Any] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        raise ValueError(f"data.source.{what} must be a list of file stems, got the string {value!r}")
    names = [str(v) for v in value]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"data.source.{what} lists {dup} more than once")
    return names


class _Splits(abc.ABC):
    """train / val / test items of a source that reads a split by name (``_items(split)``)."""

    @abc.abstractmethod
    def _items(self, split: str) -> list[Item]:
        """The items of one split ("train", "val" or "test")."""

    def train_items(self) -> list[Item]:
        return self._items("train")

    def val_items(self) -> list[Item]:
        return self._items("val")

    def test_items(self) -> list[Item]:
        """The held-out items: for the final evaluation only (never for training or model selection)."""
        return self._items("test")


class DatasetSource(_Splits):
    """One dataset folder with a fixed train / val / test split by file stem.

    Args:
        root: the dataset folder (``${paths.data_root}/<folder>``).
        images: folder of images under ``root``.
        annotations: folder of annotations under ``root`` (same stems as the images).
        kind: how to read the annotations (see the module docstring): ``labels``, ``masks``,
            ``binary_instances``, ``interior_instances``, ``dots``, ``points`` or ``rois``.
        train / val / test: file stems of each split (``test`` is held out: never read by
            :meth:`train_items` or :meth:`val_items`).
        crops: optional ``{stem: {split: region}}``: the region (numpy slice over the spatial axes, e.g.
            ``"[:, :64, :]"``) of the file that each split uses, to split one volume into disjoint parts.
        spatial_dims: 2 or 3.
        element_size: voxel size (µm, per spatial axis) for files without metadata; the file's wins.
        channel_axis: channel axis of the stored images, if their layout is ambiguous.
        ignore: optional folder under ``root`` of ignore masks (nonzero = no ground truth).
        grayscale: average the channels into one (e.g. an RGB dataset for a 1-channel model).

    Raises:
        ValueError: missing folder (the message says to set ``paths.data_root``), a listed stem without
            image or annotation, overlapping splits, bad regions.
    """

    def __init__(
        self,
        root: str | Path,
        images: str = "images",
        annotations: str = "labels",
        kind: str = "labels",
        train: Sequence[str] | None = None,
        val: Sequence[str] | None = None,
        test: Sequence[str] | None = None,
        crops: Mapping[str, Mapping[str, str]] | None = None,
        spatial_dims: int = 2,
        element_size: Sequence[float] | None = None,
        channel_axis: int | None = None,
        ignore: str | None = None,
        grayscale: bool = False,
    ) -> None:
        self.root = Path(root)
        if kind not in KINDS:
            raise ValueError(f"data.source.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"data.source.spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not self.root.is_dir():
            raise ValueError(
                f"{self.root}: dataset folder not found. The real datasets are read from "
                f"paths.data_root (default <cwd>/../shared/data); set paths.data_root=<dir that holds "
                f"{self.root.name}/>"
            )
        self.images_dir = self.root / images
        self.annotations_dir = self.root / annotations
        for d, what in ((self.images_dir, "images"), (self.annotations_dir, "annotations")):
            if not d.is_dir():
                raise ValueError(f"{d}: folder not found (data.source.{what}={d.name!r} under {self.root})")
        self.ignore_dir = self.root / ignore if ignore else None
        if self.ignore_dir is not None and not self.ignore_dir.is_dir():
            raise ValueError(f"{self.ignore_dir}: ignore folder not found")
        self.kind = kind
        self.spatial_dims = spatial_dims
        self.element_size = tuple(float(e) for e in element_size) if element_size is not None else None
        if self.element_size is not None and len(self.element_size) != spatial_dims:
            raise ValueError(
                f"data.source.element_size {list(self.element_size)} does not have {spatial_dims} axes"
            )
        self.channel_axis = channel_axis
        self.grayscale = bool(grayscale)
        self.splits = {
            "train": _names(train, "train"),
            "val": _names(val, "val"),
            "test": _names(test, "test"),
        }
        self.crops: dict[str, dict[str, Region]] = {}
        self._crop_text: dict[str, dict[str, str]] = {}
        for stem, per_split in (crops or {}).items():
            stem = str(stem)
            self._crop_text[stem] = {}
            self.crops[stem] = {}
            for split, text in per_split.items():
                if split not in SPLITS:
                    raise ValueError(f"data.source.crops.{stem}: unknown split {split!r} (train, val, test)")
                try:
                    self.crops[stem][split] = parse_region(str(text), spatial_dims)
                except ValueError as e:
                    raise ValueError(f"data.source.crops.{stem}.{split}: {e}") from None
                self._crop_text[stem][split] = str(text)
        # pair the files (listing only) and check the split against them
        try:
            pairs = io.find_pairs(self.images_dir, self.annotations_dir)
        except (FileNotFoundError, io.DataFileError) as e:
            raise ValueError(str(e)) from None
        self.files = {io.file_stem(image, ()): (image, ann) for image, ann in pairs}
        self._check_split()

    # ------------------------------------------------------------------------------------------- split
    def _check_split(self) -> None:
        for split, stems in self.splits.items():
            for stem in stems:
                if stem not in self.files:
                    raise ValueError(
                        f"data.source.{split}: {stem!r} has no image in {self.images_dir} "
                        f"(stems there: {', '.join(sorted(self.files)[:5])}...)"
                    )
                if stem in self.crops and split not in self.crops[stem]:
                    raise ValueError(
                        f"data.source.crops.{stem} has no region for split {split!r} but data.source.{split} "
                        f"lists {stem!r}"
                    )
        for stem, per_split in self.crops.items():
            for split in per_split:
                if stem not in self.splits[split]:
                    raise ValueError(
                        f"data.source.crops.{stem} gives a {split!r} region but data.source.{split} does not "
                        f"list {stem!r}"
                    )
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1 :]:
                for stem in sorted(set(self.splits[a]) & set(self.splits[b])):
                    if stem not in self.crops:
                        raise ValueError(
                            f"{stem!r} is in both data.source.{a} and data.source.{b}; splits must be "
                            f"disjoint (or give disjoint regions in data.source.crops.{stem})"
                        )
                    shape = self._shape(stem)
                    if regions_overlap(self.crops[stem][a], self.crops[stem][b], shape):
                        raise ValueError(
                            f"data.source.crops.{stem}: the {a} region {self._crop_text[stem][a]} and the "
                            f"{b} region {self._crop_text[stem][b]} overlap (image shape {list(shape)})"
                        )
        for stem, per_split in self.crops.items():
            shape = self._shape(stem)
            for split, region in per_split.items():
                if any(b - a <= 0 for a, b in region_bounds(region, shape)):
                    raise ValueError(
                        f"data.source.crops.{stem}.{split}: region {self._crop_text[stem][split]} is empty "
                        f"for an image of shape {list(shape)}"
                    )
        unused = sorted(set(self.files) - {s for stems in self.splits.values() for s in stems})
        if unused:
            log.info("%s: %d file(s) in no split, e.g. %s", self.root, len(unused), unused[0])

    def _shape(self, stem: str) -> tuple[int, ...]:
        """Spatial shape of a file (headers only where the format allows)."""
        image, _ = self.files[stem]
        if self.channel_axis is None:
            data = io.open_image(image, spatial_dims=self.spatial_dims)
        else:
            data = io.read_image(image, spatial_dims=self.spatial_dims, channel_axis=self.channel_axis)
        return tuple(int(s) for s in data.array.shape[1:])

    def regions(self, split: str) -> list[tuple[str, Region | None]]:
        """``(stem, region or None)`` of every entry of a split, without reading pixels."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return [(stem, self.crops.get(stem, {}).get(split)) for stem in self.splits[split]]

    # ------------------------------------------------------------------------------------------- items
    def _annotation(self, path: Path, shape: tuple[int, ...]) -> Annotation:
        kind = self.kind
        if kind in ("labels", "masks", "points", "rois"):
            return read_annotation(path, kind, shape, self.spatial_dims)
        arr = io.read_labels(path)
        if tuple(arr.shape) != shape:
            raise ValueError(f"{path}: annotation shape {tuple(arr.shape)} differs from the image's {shape}")
        if kind == "binary_instances":
            return Annotation(labels=mask_to_instances(arr != 0))
        if kind == "interior_instances":
            return Annotation(labels=mask_to_instances(arr != 0, connectivity=1))
        points = np.argwhere(arr != 0).astype(np.float64)  # dots
        return Annotation(points=points, classes=np.ones(len(points), np.int64))

    def _item(self, stem: str, split: str) -> Item:
        image_path, ann_path = self.files[stem]
        data = io.read_image(image_path, spatial_dims=self.spatial_dims, channel_axis=self.channel_axis)
        image = np.asarray(data.array)
        shape = tuple(int(s) for s in image.shape[1:])
        if len(shape) != self.spatial_dims:
            raise ValueError(
                f"{image_path}: has {len(shape)} spatial axes, data.source.spatial_dims={self.spatial_dims}"
            )
        assert ann_path is not None
        ann = self._annotation(ann_path, shape)
        if self.ignore_dir is not None:
            matches = sorted(self.ignore_dir.glob(stem + ".*"))
            if matches:
                ign = io.read_labels(matches[0]) != 0
                check_same_shape(image, ign, image_path, matches[0])
                ann.ignore = ign if ann.ignore is None else (ann.ignore | ign)
        if self.grayscale and image.shape[0] > 1:
            image = image.astype(np.float32).mean(axis=0, keepdims=True)
        region = self.crops.get(stem, {}).get(split)
        name = stem
        meta: dict[str, Any] = {
            "path": str(image_path),
            "annotation": str(ann_path),
            "stem": stem,
            "split": split,
        }
        if region is not None:
            image, ann = _crop(image, ann, region)
            name = f"{stem}_{split}"
            meta["region"] = self._crop_text[stem][split]
            meta["path"] = f"{image_path}{self._crop_text[stem][split]}"
        es = data.element_size if data.element_size is not None else self.element_size
        return Item(name, image, ann, es, meta)

    def _items(self, split: str) -> list[Item]:
        items = [self._item(stem, split) for stem in self.splits[split]]
        log.info("%s: %d %s item(s) (%s)", self.root, len(items), split, self.kind)
        return items


def _crop(image: np.ndarray, ann: Annotation, region: Region) -> tuple[np.ndarray, Annotation]:
    """Cut a region out of an image (C, *S) and its annotation (points are kept inside and shifted)."""
    shape = image.shape[1:]
    bounds = region_bounds(region, shape)
    sl = tuple(slice(a, b) for a, b in bounds)

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a[sl])

    points, classes = ann.points, ann.classes
    if points is not None:
        lo = np.array([a for a, _ in bounds], np.float64)
        hi = np.array([b for _, b in bounds], np.float64)
        # a point belongs to the pixel it rounds to
        inside = np.all((np.floor(points + 0.5) >= lo) & (np.floor(points + 0.5) < hi), axis=1)
        points = points[inside] - lo
        classes = None if classes is None else classes[inside]
    out = Annotation(
        labels=cut(ann.labels),
        mask=cut(ann.mask),
        points=points,
        classes=classes,
        ignore=cut(ann.ignore),
        class_of_instance=ann.class_of_instance,
    )
    return np.ascontiguousarray(image[(slice(None), *sl)]), out


class ConcatSource(_Splits):
    """Several sources as one: each split is the union of theirs (e.g. a base model trained on the train
    splits of several datasets, validated on their val splits). Item names get their source's folder name in
    front (``ctc-fluo-n2dh-gowt1:t01``), so equal stems of different datasets stay apart.

    Args:
        sources: the sources (each with ``train_items``, ``val_items``, ``test_items``).
    """

    def __init__(self, sources: Sequence[Any]) -> None:
        if not sources:
            raise ValueError("data.source.sources is empty: list at least one source")
        self.sources = list(sources)
        self.root = ", ".join(str(getattr(s, "root", s)) for s in self.sources)

    def _items(self, split: str) -> list[Item]:
        out = []
        for s in self.sources:
            prefix = Path(str(getattr(s, "root", ""))).name
            out += [
                dataclasses.replace(it, name=f"{prefix}:{it.name}" if prefix else it.name)
                for it in getattr(s, f"{split}_items")()
            ]
        return out
