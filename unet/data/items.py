"""What one image is: its annotation and the item a source yields. Plain data, no I/O.

The core (``unet.tasks``) and the sources (``unet.data.sources``, ``datasets``) both use these types; they
live here so that the core never imports the I/O rooms (``tests/test_architecture.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Annotation:
    """What is known about one image. Exactly one of labels / mask / points is set.

    Attributes:
        labels: instance labels (*S) int, 0 = background (segmentation with instance separation).
        mask: class map (*S) int, 0 = background, 1..K-1 classes (semantic segmentation).
        points: (N, ndim) float pixel coordinates (detection), with ``classes`` (N,) in 1..K-1.
        ignore: (*S) bool, regions without ground truth (weight 0, never a tile centre).
        class_of_instance: optional class (1..K-1) per instance id (index = id) for multi-class labels.
    """

    labels: np.ndarray | None = None
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    classes: np.ndarray | None = None
    ignore: np.ndarray | None = None
    class_of_instance: np.ndarray | None = None


@dataclass
class Item:
    """One image with its annotation. ``image`` is (C, *S) raw (not normalised)."""

    name: str
    image: np.ndarray
    annotation: Annotation
    element_size: tuple[float, ...] | None = None
    meta: dict = field(default_factory=dict)
