"""Training targets, pixel-wise loss weights and tile-sampling pdfs (Falk et al. 2019, M2-M3).

Instance labels (or class masks, or point annotations) become the three maps the training loop needs:

* ``target``: int64 class map, ``0`` background, ``1..K-1`` foreground classes;
* ``weights``: float32 loss weights ``w = w'_bal + lambda * w_sep`` (Falk 2019 M2; Ronneberger 2015 eq. 2),
  zero in ignored regions;
* ``pdf``: float64 map summing to 1 from which tile centres are drawn (Falk 2019 M3: normalised ``w_bal``).

All arrays are spatial, ``(Y, X)`` or ``(Z, Y, X)``. ``element_size`` is the physical extent of a pixel
per spatial axis (e.g. ``(0.5, 0.2, 0.2)`` µm for ZYX) or ``None`` for isotropic pixels. Distances are
Euclidean in physical space and expressed in units of the *smallest* element size, so every sigma and
radius here is measured in pixels of the finest axis.

The defaults ``v_bal``, ``sigma_bal``, ``sigma_sep``, ``lambda_sep`` and the detection ``radius`` are the
papers' constants of :mod:`unet.constants` (their one home, cited there to the equation and its source).
A parameter documented with "default V_BAL" etc. takes that constant.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from unet.constants import DETECTION_RADIUS, LAMBDA_SEP, SIGMA_BAL, SIGMA_SEP, V_BAL
from unet.validation import check_element_size, check_labels

log = logging.getLogger(__name__)

__all__ = [
    "balance_weights",
    "detection_targets",
    "distance_maps",
    "insert_ridges",
    "sampling_pdf",
    "segmentation_targets",
    "semantic_targets",
    "separation_weights",
]

ElementSize = Sequence[float] | None


# --------------------------------------------------------------------------------------------- validation
def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """Validate an optional boolean mask of the given spatial shape."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}, expected {tuple(shape)}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean mask (or 0/1 integers), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    return mask


def _sampling(element_size: ElementSize, ndim: int) -> tuple[float, ...]:
    """Per-axis pixel extent in units of the smallest element size (all 1 for ``None``)."""
    es = check_element_size(element_size, ndim)
    if es is None:
        return (1.0,) * ndim
    return tuple(v / min(es) for v in es)


def _check_unit(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def _check_positive(value: float, name: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


# ------------------------------------------------------------------------------------------------ ridges
def _half_neighbourhood(ndim: int) -> list[tuple[int, ...]]:
    """Offsets of the full (8/26) neighbourhood up to sign: each unordered neighbour pair occurs once."""
    return [o for o in itertools.product((-1, 0, 1), repeat=ndim) if o > (0,) * ndim]


def _shift_slices(offset: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``(src, dst)`` such that ``a[dst]`` is ``a[src]`` shifted by ``offset`` (no wrap-around)."""
    table = {
        -1: (slice(1, None), slice(None, -1)),
        0: (slice(None), slice(None)),
        1: (slice(None, -1), slice(1, None)),
    }
    src, dst = zip(*(table[o] for o in offset), strict=True)
    return src, dst


def insert_ridges(labels: np.ndarray) -> np.ndarray:
    """Insert one-pixel background ridges between touching instances (Falk 2019 M2.2, Fig. 4a).

    Two pixels of different instances that are neighbours under full connectivity (8 in 2D, 26 in 3D) are a
    conflict; of each such pair the pixel with the *larger* label id becomes background. Afterwards no two
    different instances are adjacent, so 8/26-connected components recover the instances, and the ridge
    between two touching instances is the thinnest that separates them under that connectivity: the pixels
    of the higher-id instance that touch the lower-id one. Pixels not touching another instance are kept.
    One vectorised shift-compare per neighbour offset (4 in 2D, 13 in 3D).

    Args:
        labels: ``([Z,] Y, X)`` integer instance labels, 0 = background.

    Returns:
        A copy of ``labels`` (same dtype) with ridge pixels set to 0.

    Raises:
        ValueError: if ``labels`` is not a 2D/3D non-negative integer array.
    """
    labels = check_labels(labels)
    remove = np.zeros(labels.shape, dtype=bool)
    for offset in _half_neighbourhood(labels.ndim):
        src, dst = _shift_slices(offset)
        a, b = labels[src], labels[dst]
        conflict = (a != b) & (a > 0) & (b > 0)
        remove[src] |= conflict & (a > b)
        remove[dst] |= conflict & (b > a)
    out = labels.copy()
    out[remove] = 0
    return out


# --------------------------------------------------------------------------------------------- distances
def _compact(labels: np.ndarray) -> np.ndarray:
    """Relabel sparse ids to ``1..N`` when the largest id would make ``find_objects`` wasteful."""
    if labels.size and int(labels.max()) > labels.size:
        _, inverse = np.unique(labels, return_inverse=True)
        return inverse.reshape(labels.shape) + (0 if labels.min() == 0 else 1)
    return labels


def distance_maps(
    labels: np.ndarray,
    element_size: ElementSize = None,
    max_distance: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1``, ``d2`` of every pixel to its nearest and second-nearest instance (Falk 2019 M2.2).

    The distance of a pixel to an instance is the Euclidean distance to the closest pixel *of* that instance
    (so 1 for a 4-neighbour), hence ``d1 = 0`` inside an instance and ``d2`` there is the distance to the
    nearest *other* instance. Each instance gets one exact EDT restricted to its bounding box grown by
    ``max_distance`` (all pixels within ``max_distance`` of the instance lie in that box) while a running
    minimum and second minimum are kept, so the cost is ``O(sum of box sizes)`` instead of one full-image
    transform per instance.

    Args:
        labels: ``([Z,] Y, X)`` integer instance labels, 0 = background.
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        max_distance: distances larger than this (in pixels of the finest axis) are not needed and returned
            as ``+inf``. ``None`` computes exact distances everywhere (boxes become the whole image: slow).

    Returns:
        ``(d1, d2)``, float32 arrays of ``labels.shape`` in pixels of the finest axis. Exact wherever the
        true value is ``<= max_distance``, ``+inf`` elsewhere (and where fewer than 1/2 instances exist).

    Raises:
        ValueError: on invalid labels, element size or a negative ``max_distance``.
    """
    labels = check_labels(labels)
    sampling = _sampling(element_size, labels.ndim)
    if max_distance is not None and not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0 or None, got {max_distance}")
    shape = labels.shape
    d1 = np.full(shape, np.inf)
    d2 = np.full(shape, np.inf)
    lab = _compact(labels)
    if max_distance is None or not math.isfinite(max_distance):
        margins = shape
    else:
        margins = tuple(math.ceil(max_distance / s) for s in sampling)
    for idx, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(sl.start - m, 0), min(sl.stop + m, n))
            for sl, m, n in zip(box, margins, shape, strict=True)
        )
        d = ndi.distance_transform_edt(lab[grown] != idx, sampling=sampling)
        v1, v2 = d1[grown], d2[grown]  # views
        np.minimum(v2, np.maximum(v1, d), out=v2)
        np.minimum(v1, d, out=v1)
    if max_distance is not None:
        d1[d1 > max_distance] = np.inf
        d2[d2 > max_distance] = np.inf
    return d1.astype(np.float32), d2.astype(np.float32)


# --------------------------------------------------------------------------------------------- weights
def balance_weights(
    target_fg: np.ndarray,
    ignore: np.ndarray | None = None,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
    element_size: ElementSize = None,
    smooth: bool = True,
) -> np.ndarray:
    """Class-balancing weights ``w_bal`` / ``w'_bal`` (Falk 2019 M2.1).

    ``w_bal`` is 1 on foreground, ``v_bal`` on background and 0 on ignored pixels. ``w'_bal`` (``smooth``)
    replaces the background step by ``v_bal + (1 - v_bal) exp(-d1^2 / (2 sigma_bal^2))`` with ``d1`` the
    distance to the nearest foreground pixel.

    Args:
        target_fg: ``([Z,] Y, X)`` bool, True on foreground (any class > 0).
        ignore: optional bool mask of the same shape; True where the ground truth is unknown.
        v_bal: background weight in [0, 1] (default V_BAL).
        sigma_bal: std of the Gaussian fall-off in pixels of the finest axis (default SIGMA_BAL).
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        smooth: True for ``w'_bal`` (loss weights), False for the step ``w_bal`` (sampling pdf).

    Returns:
        float32 weights of ``target_fg.shape`` in [0, 1].

    Raises:
        ValueError: on non-boolean/mismatched masks or out-of-range parameters.
    """
    fg = np.asarray(target_fg)
    if fg.ndim not in (2, 3):
        raise ValueError(f"target_fg must be 2D or 3D, got shape {fg.shape}")
    fg = _check_mask(fg, fg.shape, "target_fg")
    ignore = _check_mask(ignore, fg.shape, "ignore")
    v_bal = _check_unit(v_bal, "v_bal")
    sigma_bal = _check_positive(sigma_bal, "sigma_bal")
    sampling = _sampling(element_size, fg.ndim)
    if smooth and v_bal < 1.0 and fg.any():
        # in place, float32: w = v_bal + (1 - v_bal) exp(-d1^2 / (2 sigma^2)); d1 = 0 on foreground -> 1 there
        w = ndi.distance_transform_edt(~fg, sampling=sampling).astype(np.float32)
        np.square(w, out=w)
        w *= np.float32(-0.5 / sigma_bal**2)
        np.exp(w, out=w)
        w *= np.float32(1.0 - v_bal)
        w += np.float32(v_bal)
    else:
        w = np.where(fg, np.float32(1.0), np.float32(v_bal))
    if ignore is not None:
        w[ignore] = 0.0
    return w


def separation_weights(
    labels: np.ndarray,
    sigma_sep: float = SIGMA_SEP,
    element_size: ElementSize = None,
    truncate: float = 1e-4,
) -> np.ndarray:
    """Instance-separation weights ``w_sep = exp(-(d1 + d2)^2 / (2 sigma_sep^2))`` (Falk 2019 M2.2).

    Applied on background pixels only, as in the original U-Net (Ronneberger 2015 eq. 2, Fig. 3d) where the
    separation border is the background gap between cells: after :func:`insert_ridges` the one-pixel ridges
    are background with ``d1 + d2 ~ 2`` and receive the highest weight. Foreground pixels get 0 (their class
    is already weighted by ``w'_bal``). Pass labels *with* ridges inserted; touching instances without a
    background gap get no separation weight. Weights below ``truncate`` are set to 0, which bounds the
    distances needed to ``sigma_sep * sqrt(2 ln(1 / truncate))`` and makes the computation local.

    Args:
        labels: ``([Z,] Y, X)`` integer instance labels, 0 = background.
        sigma_sep: Gaussian std in pixels of the finest axis (default SIGMA_SEP).
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        truncate: weights below this are zeroed, in [0, 1); 0 computes exact distances (slow).

    Returns:
        float32 weights of ``labels.shape`` in [0, 1].

    Raises:
        ValueError: on invalid labels or parameters.
    """
    labels = check_labels(labels)
    sigma_sep = _check_positive(sigma_sep, "sigma_sep")
    if not 0.0 <= truncate < 1.0:
        raise ValueError(f"truncate must lie in [0, 1), got {truncate}")
    # w_sep >= truncate <=> d1 + d2 <= cutoff; background has d1 >= 1, so only d2 <= cutoff - 1 matters
    cutoff = sigma_sep * math.sqrt(-2.0 * math.log(truncate)) if truncate > 0 else None
    d1, d2 = distance_maps(labels, element_size, max_distance=None if cutoff is None else max(cutoff - 1, 0))
    s = d1 + d2  # inf where the second instance is farther than the cutoff -> weight 0
    s *= s
    s *= np.float32(-0.5 / sigma_sep**2)
    w = np.exp(s, out=s)
    w[(labels > 0) | (w < truncate)] = 0.0
    return w


def sampling_pdf(target_fg: np.ndarray, ignore: np.ndarray | None = None, v_bal: float = V_BAL) -> np.ndarray:
    """Tile-sampling pdf: the step ``w_bal`` normalised to sum 1 (Falk 2019 M3).

    Args:
        target_fg: ``([Z,] Y, X)`` bool, True on foreground.
        ignore: optional bool mask; ignored pixels get probability 0.
        v_bal: background weight relative to foreground, in [0, 1].

    Returns:
        float64 array of ``target_fg.shape``, non-negative, summing to 1; foreground density is ``1 / v_bal``
        times the background density.

    Raises:
        ValueError: if the pdf would be zero everywhere (everything ignored, or no foreground and
            ``v_bal == 0``): such an image cannot be sampled.
    """
    w = balance_weights(target_fg, ignore, v_bal=v_bal, smooth=False).astype(np.float64)
    total = w.sum()
    if total <= 0:
        raise ValueError("sampling pdf is zero everywhere (all pixels ignored, or no foreground and v_bal=0)")
    w /= total
    return w


def _class_map(
    labels: np.ndarray, class_of_instance: Mapping[int, int] | Sequence[int] | np.ndarray
) -> np.ndarray:
    """Map instance ids to classes; 0 stays 0. Every present id must map to a class >= 1."""
    ids, inverse = np.unique(labels, return_inverse=True)
    if isinstance(class_of_instance, Mapping):
        missing = [int(i) for i in ids if i != 0 and int(i) not in class_of_instance]
        if missing:
            raise ValueError(f"class_of_instance has no class for instance ids {missing[:10]}")
        classes = np.array([0 if i == 0 else int(class_of_instance[int(i)]) for i in ids], dtype=np.int64)
    else:
        lut = np.asarray(class_of_instance)
        if not np.issubdtype(lut.dtype, np.integer) or lut.ndim != 1:
            raise ValueError("class_of_instance must be a mapping or a 1D integer lookup table indexed by id")
        if ids[-1] >= lut.size:
            raise ValueError(
                f"class_of_instance lookup table has {lut.size} entries, labels reach id {ids[-1]}"
            )
        classes = lut[ids].astype(np.int64)
        classes[ids == 0] = 0
    bad = ids[(ids != 0) & (classes < 1)]
    if bad.size:
        raise ValueError(
            f"class_of_instance must map instances to classes >= 1; ids {bad[:10].tolist()} do not"
        )
    return classes[inverse.reshape(labels.shape)]


def segmentation_targets(
    labels: np.ndarray,
    *,
    ignore: np.ndarray | None = None,
    element_size: ElementSize = None,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
    sigma_sep: float = SIGMA_SEP,
    lambda_sep: float = LAMBDA_SEP,
    ridges: bool = True,
    class_of_instance: Mapping[int, int] | Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance labels -> class target, loss weights and sampling pdf (Falk 2019 M2, M2.1, M2.2, M3).

    Steps: (a) insert one-pixel background ridges between touching instances (``ridges``); (b) class
    map, 1 for every instance or ``class_of_instance[id]``; (c) ``w = w'_bal + lambda_sep * w_sep`` (Falk
    2019 M2; Ronneberger 2015 eq. 2 with ``w_c = w'_bal``, ``w_0 = lambda_sep``), 0 where ignored; (d) the
    step ``w_bal`` normalised to a pdf.

    Args:
        labels: ``([Z,] Y, X)`` integer instance labels, 0 = background.
        ignore: optional bool mask, True where the ground truth is unknown (weight 0, probability 0).
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        v_bal: background weight (default V_BAL).
        sigma_bal: ``w'_bal`` fall-off in pixels of the finest axis (default SIGMA_BAL).
        sigma_sep: ``w_sep`` std in pixels of the finest axis (default SIGMA_SEP).
        lambda_sep: weight of ``w_sep`` (default LAMBDA_SEP).
        ridges: insert ridges first (turn off only for labels that already have gaps).
        class_of_instance: for multi-class segmentation, instance id -> class in ``1..K-1``, as a mapping or
            a 1D integer lookup table indexed by id. ``None``: every instance is class 1.

    Returns:
        ``(target, weights, pdf)``: int64 class map, float32 weights (>= 0) and float64 pdf summing to 1,
        all of ``labels.shape``.

    Raises:
        ValueError: on invalid labels, masks, parameters or class mapping, or an all-zero pdf.
    """
    labels = check_labels(labels)
    ignore = _check_mask(ignore, labels.shape, "ignore")
    if not lambda_sep >= 0:
        raise ValueError(f"lambda_sep must be >= 0, got {lambda_sep}")
    if ridges:
        labels = insert_ridges(labels)
    fg = labels > 0
    target = fg.astype(np.int64) if class_of_instance is None else _class_map(labels, class_of_instance)
    weights = balance_weights(fg, None, v_bal, sigma_bal, element_size, smooth=True)
    if lambda_sep > 0:
        weights += np.float32(lambda_sep) * separation_weights(labels, sigma_sep, element_size)
    if ignore is not None:
        weights[ignore] = 0.0
    return target, weights, sampling_pdf(fg, ignore, v_bal)


def semantic_targets(
    mask: np.ndarray,
    *,
    ignore: np.ndarray | None = None,
    element_size: ElementSize = None,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class mask -> target, weights ``w'_bal`` and pdf; no instances, hence no ``w_sep`` (Falk 2019 M2.1).

    Args:
        mask: ``([Z,] Y, X)`` integer class map, 0 = background, ``1..K-1`` foreground classes.
        ignore: optional bool mask, True where the ground truth is unknown.
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        v_bal: background weight (default V_BAL).
        sigma_bal: ``w'_bal`` fall-off in pixels of the finest axis (default SIGMA_BAL).

    Returns:
        ``(target, weights, pdf)``: int64, float32, float64 arrays of ``mask.shape``.

    Raises:
        ValueError: on invalid inputs or an all-zero pdf.
    """
    mask = check_labels(mask, "mask")
    ignore = _check_mask(ignore, mask.shape, "ignore")
    fg = mask > 0
    weights = balance_weights(fg, ignore, v_bal, sigma_bal, element_size, smooth=True)
    return mask.astype(np.int64), weights, sampling_pdf(fg, ignore, v_bal)


# --------------------------------------------------------------------------------------------- detection
def _nearest_point(
    points: np.ndarray, shape: tuple[int, ...], sampling: tuple[float, ...], reach: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For pixels within ``reach`` of any point: flat index, distance to and index of the nearest point."""
    half = np.array([math.ceil(reach / s) + 1 for s in sampling])
    grid = np.stack(np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij"), -1).reshape(
        -1, len(shape)
    )
    centre = np.floor(points + 0.5).astype(np.int64)
    scale = np.asarray(sampling)
    flats, dists, owners = [], [], []
    chunk = max(1, 2**20 // len(grid))  # bound the (points x box) temporaries
    for start in range(0, len(points), chunk):
        pix = centre[start : start + chunk, None, :] + grid[None]  # (n, M, ndim)
        dist = np.sqrt((((pix - points[start : start + chunk, None, :]) * scale) ** 2).sum(-1))
        keep = (dist <= reach) & np.all((pix >= 0) & (pix < np.asarray(shape)), axis=-1)
        n_idx = np.nonzero(keep)[0]
        flats.append(np.ravel_multi_index(tuple(pix[keep].T), shape))
        dists.append(dist[keep])
        owners.append(n_idx + start)
    flat, dist, owner = (np.concatenate(a) for a in (flats, dists, owners))
    order = np.lexsort((dist, flat))  # by pixel, nearest first
    flat, dist, owner = flat[order], dist[order], owner[order]
    first = np.ones(flat.size, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    return flat[first], dist[first], owner[first]


def detection_targets(
    points: np.ndarray,
    shape: Sequence[int],
    *,
    classes: np.ndarray | None = None,
    radius: float = DETECTION_RADIUS,
    r_ign: float | None = None,
    element_size: ElementSize = None,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point annotations -> class target, loss weights and sampling pdf for detection (Falk 2019 M2.1).

    Every pixel within ``radius`` of a point is foreground of that point's class; where disks (spheres)
    overlap the nearest point wins, and each point's own (rounded) pixel is always foreground so no
    annotation is lost to a small radius. Pixels farther than ``radius`` but within ``r_ign`` of the nearest
    point form the ignored ring (shell) that Falk 2019 M2.1 adds for detection: weight 0 and probability 0.
    Weights are ``w'_bal``; the pdf is the normalised step ``w_bal``.

    Args:
        points: ``(N, ndim)`` float coordinates in pixels, ``([z,] y, x)``, pixel centres at integers.
        shape: spatial image shape ``([Z,] Y, X)``.
        classes: ``(N,)`` integer classes in ``1..K-1``; ``None`` makes every point class 1.
        radius: disk radius in pixels of the finest axis (physical distance / smallest element size).
        r_ign: outer radius of the ignored ring, same units; ``None`` uses ``2 * radius`` (our choice: the
            paper gives no value); a value ``<= radius`` disables the ring.
        element_size: physical pixel extent per axis, or ``None`` for isotropic pixels.
        v_bal: background weight (default V_BAL).
        sigma_bal: ``w'_bal`` fall-off in pixels of the finest axis (default SIGMA_BAL).
        ignore: optional additional bool mask of ignored pixels.

    Returns:
        ``(target, weights, pdf)``: int64 class map, float32 weights, float64 pdf summing to 1.

    Raises:
        ValueError: on malformed points/classes, points outside the image (naming the first one), or invalid
            parameters.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be a 2D or 3D positive shape, got {shape}")
    ndim = len(shape)
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, ndim)
    if points.ndim != 2 or points.shape[1] != ndim:
        raise ValueError(f"points must have shape (N, {ndim}) for a {ndim}D image, got {points.shape}")
    if not np.all(np.isfinite(points)):
        bad = int(np.nonzero(~np.all(np.isfinite(points), axis=1))[0][0])
        raise ValueError(f"point {bad} has a non-finite coordinate {points[bad].tolist()}")
    outside = np.any((points < -0.5) | (points >= np.asarray(shape) - 0.5), axis=1)
    if outside.any():
        bad = np.nonzero(outside)[0]
        raise ValueError(
            f"{bad.size} point(s) outside the image of shape {shape}; first: index {bad[0]} at "
            f"{points[bad[0]].tolist()}"
        )
    if classes is None:
        classes = np.ones(len(points), dtype=np.int64)
    else:
        classes = np.asarray(classes)
        if classes.shape != (len(points),) or not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(
                f"classes must be an integer array of shape ({len(points)},), got {classes.shape}"
            )
        if classes.size and classes.min() < 1:
            raise ValueError(f"classes must be >= 1 (0 is background), found {classes.min()}")
    radius = _check_positive(radius, "radius")
    r_ign = 2.0 * radius if r_ign is None else float(r_ign)
    sampling = _sampling(element_size, ndim)
    ignore = _check_mask(ignore, shape, "ignore")

    target = np.zeros(shape, dtype=np.int64)
    ring = np.zeros(shape, dtype=bool)
    if len(points):
        # reach also covers each point's own pixel (at most half a pixel diagonal away)
        reach = max(radius, r_ign, 0.5 * math.sqrt(sum(s * s for s in sampling)))
        flat, dist, owner = _nearest_point(points, shape, sampling, reach)
        own = np.zeros(int(np.prod(shape)), dtype=bool)
        own[np.ravel_multi_index(tuple(np.floor(points + 0.5).astype(np.int64).T), shape)] = True
        inside = (dist <= radius) | own[flat]
        target.flat[flat[inside]] = classes[owner[inside]]
        ring.flat[flat[~inside & (dist <= r_ign)]] = True
    ign = ring if ignore is None else ring | ignore
    fg = target > 0
    weights = balance_weights(fg, ign, v_bal, sigma_bal, element_size, smooth=True)
    return target, weights, sampling_pdf(fg, ign, v_bal)
