"""Pairing image files with annotation files of the same stem (a folder dataset)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from unet.io.common import DataFileError, PathLike
from unet.io.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

#: File suffixes accepted as annotations by :func:`find_pairs` (label images, ImageJ ROIs, point CSVs).
ANNOTATION_SUFFIXES: tuple[str, ...] = (*IMAGE_SUFFIXES, ".zip", ".roi", ".csv")

#: Multi-part suffixes counted as one (``a.ome.tif`` has the stem ``a``).
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff")


def find_pairs(
    images_dir: PathLike,
    annotations_dir: PathLike,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
    annotation_suffixes: Sequence[str] = ANNOTATION_SUFFIXES,
    *,
    allow_missing: bool = False,
) -> list[tuple[Path, Path | None]]:
    """Pair image files with annotation files of the same stem.

    The stem is the file name without its suffix (``a.ome.tif`` -> ``a``); suffix matching is
    case-insensitive. Hidden files (``.name``) are ignored.

    Args:
        images_dir: Directory with images.
        annotations_dir: Directory with annotations (label images, ROI sets, point CSVs).
        suffixes: Image suffixes to consider.
        annotation_suffixes: Annotation suffixes to consider.
        allow_missing: If True, images without annotation are returned as ``(image, None)`` (e.g. for
            prediction on unlabelled data) instead of raising.

    Returns:
        ``(image_path, annotation_path)`` tuples sorted by image file name.

    Raises:
        FileNotFoundError: A directory does not exist.
        DataFileError: No images found, two images or two annotations with the same stem, or an image
            without annotation (unless ``allow_missing``); the message names the file(s).
    """
    idir, adir = Path(images_dir), Path(annotations_dir)
    for d in (idir, adir):
        if not d.is_dir():
            if allow_missing and d is adir and not d.exists():
                continue
            raise FileNotFoundError(f"{d}: directory not found")
    images = _files_by_stem(idir, suffixes)
    if not images:
        raise DataFileError(idir, f"no images with suffix {', '.join(suffixes)}")
    annotations = _files_by_stem(adir, annotation_suffixes) if adir.is_dir() else {}
    pairs: list[tuple[Path, Path | None]] = []
    for stem in sorted(images, key=lambda s: images[s].name):
        image = images[stem]
        ann = annotations.get(stem)
        if ann is None and not allow_missing:
            raise DataFileError(image, f"no annotation with the same stem {stem!r} in {adir}")
        pairs.append((image, ann))
    unused = sorted(set(annotations) - set(images))
    if unused:
        logger.warning(
            "%s: %d annotation(s) without image, e.g. %s", adir, len(unused), annotations[unused[0]]
        )
    return pairs


def _files_by_stem(directory: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    sufs = tuple(s.lower() for s in suffixes)
    found: dict[str, Path] = {}
    for f in sorted(directory.iterdir()):
        if f.name.startswith(".") or not f.is_file() or not f.name.lower().endswith(sufs):
            continue
        stem = file_stem(f, sufs)
        if stem in found:
            raise DataFileError(f, f"has the same stem {stem!r} as {found[stem]}; cannot pair unambiguously")
        found[stem] = f
    return found


def file_stem(path: Path, suffixes: Iterable[str]) -> str:
    """File name without its (longest matching, case-insensitive) known suffix; ``.ome.tif`` and
    ``.ome.tiff`` always count as one suffix (``a.ome.tif`` -> ``a``). A name that is only a suffix keeps
    it (``.tif`` -> ``.tif``, as :attr:`pathlib.Path.stem`)."""
    name = path.name
    low = name.lower()
    for suf in sorted({*suffixes, *_MULTI_SUFFIXES}, key=len, reverse=True):
        if low.endswith(suf.lower()) and len(name) > len(suf):
            return name[: len(name) - len(suf)]
    return path.stem
