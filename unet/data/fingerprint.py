"""What the training data say about themselves, for defaults that adapt to the data (a first piece of a
dataset fingerprint, as nnU-Net plans from data properties): the median object diameter, and the instance
separation width derived from it.

Falk et al. 2019 (M2.2) and Ronneberger et al. 2015 (eq. 2) separate touching instances with
``w_sep = exp(-(d1 + d2)^2 / (2 sigma_sep^2))``, ``sigma_sep`` about 5 px in the 2015 paper and 6 px in the
Fiji plugin (our default, :data:`unet.constants.SIGMA_SEP`), for cells some 40-50 px across. A width fixed
in pixels is heavy on small, dense nuclei (DSB 2018: about 15 px across, where a 6 px Gaussian covers whole
nuclei). :func:`sigma_sep_for` keeps a ratio to the object size instead: ``sigma_sep = d / 8`` (our
choice, the papers give no size: the default 6 px then belongs to a 48 px cell), never wider than the
default nor narrower than 1 px.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from unet.constants import SIGMA_SEP

#: object diameter (px) per px of sigma_sep: the default 6 px for a 48 px cell (our choice)
SEP_DIAMETER_RATIO = 8.0
#: the narrowest separation width (px)
MIN_SIGMA_SEP = 1.0


def object_diameters(labels: np.ndarray, element_size: Sequence[float] | None = None) -> np.ndarray:
    """Equivalent diameters of the objects of an instance label image, in the units of ``element_size``
    (pixels when None): the diameter of the disc (2D) or ball (3D) of the object's area or volume."""
    lab = np.asarray(labels)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    if not len(ids):
        return np.zeros(0)
    voxel = math.prod(element_size) if element_size is not None else 1.0
    size = counts.astype(np.float64) * voxel
    if lab.ndim == 2:
        return 2.0 * np.sqrt(size / math.pi)
    return np.cbrt(6.0 * size / math.pi)


def median_object_diameter(
    label_images: Iterable[tuple[np.ndarray, Sequence[float] | None]],
) -> tuple[float | None, int]:
    """(median equivalent diameter over every object of every image, number of objects): physical units
    where every image has an element size, else pixels; (None, 0) without objects."""
    found = [object_diameters(lab, es) for lab, es in label_images]
    d = np.concatenate(found) if found else np.zeros(0)
    return (float(np.median(d)) if len(d) else None), len(d)


def sigma_sep_for(diameter_px: float | None) -> float:
    """``sigma_sep`` (px of the finest axis) for objects of median diameter ``diameter_px``: ``d / 8``
    within [1, SIGMA_SEP] px; SIGMA_SEP when the size is unknown."""
    if diameter_px is None or not diameter_px > 0:
        return float(SIGMA_SEP)
    return float(min(SIGMA_SEP, max(MIN_SIGMA_SEP, diameter_px / SEP_DIAMETER_RATIO)))
