"""Class maps and instances of U-Net outputs (Falk 2019, M6.1): arg-max class map, connected components
per class, connected components of a mask, seeded watershed of touching objects.

Inputs (``classes_or_probs``) are interpreted by dtype: a *floating* array is a probability map ``(K, *S)``
with ``K >= 2``; an *integer* array is a class map ``(*S)`` (``0`` = background); a *boolean* array is a
binary foreground mask (class 1).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from unet.postprocess.checks import ElementSize, check_element_size, connectivity_structure, min_pixels
from unet.validation import check_labels


# --------------------------------------------------------------------------------------------- validation
def _check_probabilities(probabilities: npt.ArrayLike) -> np.ndarray:
    p = np.asarray(probabilities)
    if p.ndim not in (3, 4):
        raise ValueError(f"probabilities must be (K, Y, X) or (K, Z, Y, X), got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"probabilities must have a floating dtype, got {p.dtype}")
    if p.shape[0] < 2:
        raise ValueError(f"probabilities need K >= 2 classes (background + foreground), got K = {p.shape[0]}")
    return p


def split_input(classes_or_probs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(class map (*S) int, probabilities (K, *S) or None)`` from a class map, mask or probs."""
    arr = np.asarray(classes_or_probs)
    if np.issubdtype(arr.dtype, np.floating):
        probs = _check_probabilities(arr)
        return class_map(probs), probs
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected a float probability map or an integer class map, got dtype {arr.dtype}")
    return check_labels(arr, "class map"), None


# ----------------------------------------------------------------------------------------------- classes
def class_map(probabilities: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Arg-max class map of a probability (or score) map.

    Args:
        probabilities: ``(K, Y, X)`` or ``(K, Z, Y, X)`` float class probabilities (softmax output or any
            monotone score), ``K >= 2``, class 0 = background.

    Returns:
        ``(Y, X)`` or ``(Z, Y, X)`` int64 class map in ``0..K-1``; ties resolve to the lowest class, so a
        pixel with equal background and foreground probability is background.
    """
    p = _check_probabilities(probabilities)
    return np.argmax(p, axis=0).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------- instances
def instance_labels(
    classes_or_probs: npt.ArrayLike,
    *,
    min_size: float = 0,
    connectivity: int | None = None,
    element_size: ElementSize = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Connected components of every foreground class (Falk 2019 M6.1).

    Components are computed separately for each class ``1..K-1`` (two touching objects of different
    classes stay two objects). Ids are consecutive ``1..N``: class by class in increasing class order and,
    within a class, in raster order of their first pixel.

    Args:
        classes_or_probs: ``(K, *S)`` float probabilities (arg-max is taken, see :func:`class_map`), an
            integer class map ``(*S)`` (0 = background) or a boolean foreground mask ``(*S)`` (class 1),
            with ``S`` = ``(Y, X)`` or ``(Z, Y, X)``.
        min_size: Components with fewer than ``min_size`` pixels are removed (set to background). When
            ``element_size`` is given, ``min_size`` is a physical area in µm² (2D) or volume in µm³ (3D)
            instead, compared with ``pixel count * prod(element_size)``.
        connectivity: Neighbourhood as in :func:`scipy.ndimage.generate_binary_structure`: 1 = faces only
            (4-/6-neighbourhood) ... ``ndim`` = full (8-/26-neighbourhood, the default).
        element_size: Pixel/voxel size in µm per spatial axis; only changes the unit of ``min_size``.

    Returns:
        ``labels``: ``(*S)`` int32 instance labels, 0 = background, objects ``1..N``;
        ``class_of``: ``(N + 1,)`` int64 class of each id, ``class_of[0] == 0``.
    """
    classes, _ = split_input(classes_or_probs)
    es = check_element_size(element_size, classes.ndim)
    min_px = min_pixels(min_size, es)
    structure = connectivity_structure(classes.ndim, connectivity)

    labels = np.zeros(classes.shape, dtype=np.int32)
    class_list: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    flat = classes.ravel().astype(np.intp, copy=False)
    present = np.flatnonzero(np.bincount(flat)) if flat.size else np.zeros(0, dtype=np.intp)
    offset = 0
    for c in present[present > 0]:
        mask = classes == c
        lab, n = ndi.label(mask, structure=structure, output=np.int32)
        if n == 0:
            continue
        if min_px > 0:
            sizes = np.bincount(lab[mask], minlength=n + 1)
            keep = sizes >= min_px
            keep[0] = False
            lut = np.zeros(n + 1, dtype=np.int32)
            n = int(keep.sum())
            lut[keep] = np.arange(1, n + 1, dtype=np.int32)
            lab = lut[lab]
            mask = lab > 0
        if n == 0:
            continue
        labels[mask] = lab[mask] + offset
        class_list.append(np.full(n, int(c), dtype=np.int64))
        offset += n
    return labels, np.concatenate(class_list)


def mask_to_instances(mask: npt.ArrayLike, connectivity: int | None = None) -> npt.NDArray[np.int32]:
    """Connected components of a binary mask as instance labels.

    Args:
        mask: ``(Y, X)`` or ``(Z, Y, X)`` array; nonzero = foreground (e.g. 0/255 masks).
        connectivity: Neighbourhood as in :func:`scipy.ndimage.generate_binary_structure`: 1 = faces
            only (4/6-neighbourhood) ... ``ndim`` = full (8/26-neighbourhood, the default).

    Returns:
        int32 labels, 0 = background, objects numbered 1..N in raster order.
    """
    mask = np.asarray(mask)
    labels, _ = ndi.label(
        mask != 0, structure=connectivity_structure(mask.ndim, connectivity), output=np.int32
    )
    return labels


def watershed_instances(
    classes_or_probs: npt.ArrayLike,
    *,
    h: float = 1.0,
    element_size: ElementSize = None,
    min_size: float = 0,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Touching objects split by a seeded watershed on the distance transform of each foreground class.

    Connected components (:func:`instance_labels`, the papers' method, M6.1) merge two touching objects as
    soon as one pixel of the background ridge between them is missed, which in 3D is the rule. Here each
    class's mask is split instead: ``d`` = its Euclidean distance to the background (in pixels of the finest
    axis, anisotropic voxels weighted by their size), smoothed with a Gaussian of one such pixel; seeds =
    the regional maxima of ``d`` with a dynamic of at least ``h`` (``skimage.morphology.h_maxima``: a neck
    narrower than its two bodies by ``h`` separates them); the watershed of ``-d`` from the seeds within the
    mask (``skimage.segmentation.watershed``) gives the objects. Mask components without a seed (thinner
    than ``h``) stay whole. Ids and ``class_of`` as in :func:`instance_labels`; ``min_size`` likewise.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    classes, _ = split_input(classes_or_probs)
    es = check_element_size(element_size, classes.ndim)
    min_px = min_pixels(min_size, es)
    rel = np.ones(classes.ndim) if es is None else np.asarray(es, float) / float(np.min(es))
    structure = connectivity_structure(classes.ndim, None)
    labels = np.zeros(classes.shape, dtype=np.int32)
    class_list: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for c in [int(v) for v in np.unique(classes) if v > 0]:
        mask = classes == c
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask, sampling=rel), 1.0 / rel)
        seeds, _ = ndi.label(h_maxima(dist, h) & mask, structure=structure)
        lab = watershed(-dist, seeds, mask=mask, connectivity=classes.ndim).astype(np.int32)
        rest, _ = ndi.label(mask & (lab == 0), structure=structure)  # components without a seed
        lab[rest > 0] = rest[rest > 0] + lab.max()
        if min_px > 0 and lab.max():
            sizes = np.bincount(lab.ravel())
            lab[(sizes < min_px)[lab] & (lab > 0)] = 0
        ids = np.unique(lab)
        ids = ids[ids > 0]
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[ids] = np.arange(offset + 1, offset + len(ids) + 1, dtype=np.int32)
        labels[lab > 0] = lut[lab[lab > 0]]
        class_list.append(np.full(len(ids), c, dtype=np.int64))
        offset += len(ids)
    return labels, np.concatenate(class_list)
