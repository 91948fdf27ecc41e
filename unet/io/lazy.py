"""Lazy images for out-of-core work: memory maps and zarr views read window by window, and zarr outputs
written atomically."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unet.io.common import (
    DataFileError,
    PathLike,
    check_file,
    lower_suffix,
    move_into_place,
    raise_if_disk_full,
)
from unet.io.images import TIFF_SUFFIXES, ImageData, read_image, read_npy, read_tiff, tiff_element_size
from unet.io.layout import layout_from_axes, layout_from_shape, lazy_order

logger = logging.getLogger(__name__)

#: Suffix of zarr array directories read by :func:`open_image` and written by :func:`atomic_zarr`.
ZARR_SUFFIX = ".zarr"


class ChannelFirstView:
    """Read-only channel-first ``(C, *S)`` view of a stored array read by basic slicing (e.g. zarr).

    Only the requested window is read from ``stored``; nothing is loaded on construction. Supports
    ``shape``, ``dtype``, ``ndim``, indexing with a tuple of slices (steps of 1) and ``np.asarray``
    (which reads everything).

    Args:
        stored: Array-like with ``shape``, ``dtype`` and basic slicing (zarr array, numpy array, ...).
        order: For each view axis after the channel axis (or for each view axis if ``add_channel`` is
            False), the stored axis it comes from. Stored axes not listed must have length 1.
        add_channel: Insert a channel axis of length 1 in front.
    """

    def __init__(self, stored: Any, order: Sequence[int], add_channel: bool) -> None:
        sshape = tuple(int(s) for s in stored.shape)
        order = tuple(int(a) for a in order)
        if sorted(order) != sorted(set(order)) or any(not 0 <= a < len(sshape) for a in order):
            raise ValueError(f"invalid axis order {order} for a stored array of shape {sshape}")
        dropped = [a for a in range(len(sshape)) if a not in order]
        if any(sshape[a] != 1 for a in dropped):
            raise ValueError(f"axes {dropped} of the stored shape {sshape} are not singleton")
        self.stored = stored
        self.order = order
        self.add_channel = bool(add_channel)
        self._stored_shape = sshape
        self.shape: tuple[int, ...] = (1,) * self.add_channel + tuple(sshape[a] for a in order)
        self.dtype = np.dtype(stored.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        kind = type(self.stored).__name__
        return f"ChannelFirstView(shape={self.shape}, dtype={self.dtype}, stored={kind})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > self.ndim or not all(isinstance(k, slice) for k in key):
            raise TypeError(f"ChannelFirstView supports a tuple of at most {self.ndim} slices, got {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        if any(k.step not in (None, 1) for k in key):
            raise TypeError("ChannelFirstView supports slices with step 1 only")
        spatial_key = key[1:] if self.add_channel else key
        stored_key: list[Any] = [0] * len(self._stored_shape)
        for k, a in zip(spatial_key, self.order):
            stored_key[a] = k
        block = np.asarray(self.stored[tuple(stored_key)])
        kept = sorted(self.order)
        block = np.transpose(block, [kept.index(a) for a in self.order])
        if self.add_channel:
            block = block[np.newaxis][key[0]]
        return block

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype, copy=False)


def open_zarr(path: PathLike) -> Any:
    """Open a zarr array directory read-only (nothing is loaded).

    Raises:
        FileNotFoundError: The directory does not exist.
        DataFileError: Not a zarr array (e.g. a group or an unrelated directory).
    """
    import zarr

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found")
    try:
        arr = zarr.open(str(p), mode="r")
    except Exception as exc:
        raise DataFileError(p, f"cannot open as zarr ({type(exc).__name__}: {exc})") from exc
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise DataFileError(p, "is a zarr group, expected a zarr array")
    return arr


def _zarr_image(p: Path, spatial_dims: int | None) -> ImageData:
    arr = open_zarr(p)
    shape = tuple(int(s) for s in arr.shape)
    attrs = dict(arr.attrs) if hasattr(arr, "attrs") else {}
    axes = attrs.get("axes")
    lazy = None
    if isinstance(axes, str):
        lazy = lazy_order(axes, shape, imagej=False, spatial_dims=spatial_dims, path=p)
    elif len(shape) == 2 and spatial_dims in (None, 2):
        lazy = ([0, 1], True)
    elif len(shape) == 4 and spatial_dims in (None, 3):
        lazy = ([0, 1, 2, 3], False)
    elif len(shape) == 3 and spatial_dims is not None:
        lazy = ([0, 1, 2], True) if spatial_dims == 3 else ([0, 1, 2], False)
    if lazy is None:
        raise DataFileError(
            p,
            f"cannot tell the axes of a zarr array of shape {shape} (attrs axes={axes!r}); store it as "
            "(C, Y, X) / (C, Z, Y, X) or set the attribute 'axes' (e.g. 'CZYX')",
        )
    if not np.issubdtype(np.dtype(arr.dtype), np.number) or np.dtype(arr.dtype) == np.bool_:
        raise DataFileError(p, f"numeric pixels needed, got dtype {arr.dtype}")
    view = ChannelFirstView(arr, *lazy)
    es = attrs.get("element_size")
    element_size = None
    if es is not None:
        try:
            element_size = tuple(float(s) for s in es)
        except (TypeError, ValueError):
            element_size = None
        if element_size is not None and (
            len(element_size) != view.ndim - 1 or not all(math.isfinite(s) and s > 0 for s in element_size)
        ):
            logger.warning("%s: ignoring invalid element_size attribute %r", p, es)
            element_size = None
    return ImageData(array=view, element_size=element_size, path=p)  # type: ignore[arg-type]


def open_image(path: PathLike, *, spatial_dims: int | None = None) -> ImageData:
    """Open an image for reading window by window, without loading its pixels where the format allows.

    * Uncompressed, contiguous TIFF: a read-only ``np.memmap`` (``tifffile.memmap``) with the layout of
      :func:`read_image` applied as views.
    * Other (compressed, tiled) TIFF: a :class:`ChannelFirstView` of ``tifffile``'s zarr store (series 0,
      level 0) when the axes are simple (C/S, Z, Y, X after dropping singleton axes); otherwise the file is
      read completely with :func:`read_image`.
    * ``.npy``: a read-only ``np.memmap`` (``np.load(mmap_mode="r")``), layout as :func:`read_image`.
    * A ``.zarr`` directory holding one array: a :class:`ChannelFirstView`; axes from the attribute
      ``axes`` (e.g. ``"CZYX"``) or else the shape (``(Y, X)``, ``(C, Z, Y, X)``, and 3D arrays with
      ``spatial_dims``); element size from the attribute ``element_size`` (µm) if present.
    * PNG / JPEG / BMP: read completely with :func:`read_image`.

    The element size comes from the same metadata as in :func:`read_image`.

    Args:
        path: Image file or ``.zarr`` directory.
        spatial_dims: 2 or 3 to declare the number of spatial dimensions, or None.

    Returns:
        :class:`ImageData` whose ``array`` is a ``(C, *S)`` numpy array, memmap or :class:`ChannelFirstView`
        (all sliceable; ``np.asarray`` loads them).

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unreadable file or unsupported layout.
    """
    p = Path(path)
    if p.is_dir() and p.name.lower().endswith(ZARR_SUFFIX):
        return _zarr_image(p, spatial_dims)
    p = check_file(p)
    suffix = lower_suffix(p)
    if suffix == ".npy":
        arr = read_npy(p, mmap=True)
        if arr.size == 0:
            raise DataFileError(p, f"image has no pixels (shape {arr.shape})")
        return ImageData(array=layout_from_shape(arr, spatial_dims, p), element_size=None, path=p)
    if suffix not in TIFF_SUFFIXES:
        return read_image(p, spatial_dims=spatial_dims)
    tiff = read_tiff(p, pixels=False)
    axes, shape, meta = tiff.axes, tiff.shape, tiff.meta
    if math.prod(shape) == 0:
        raise DataFileError(p, f"image has no pixels (shape {shape})")
    imagej = meta["imagej"] is not None
    out: Any = None
    if tiff.mappable:
        try:
            arr = tifffile.memmap(p, mode="r")
        except Exception:  # not memory-mappable after all: fall back to zarr
            arr = None
        if arr is not None:
            out = layout_from_axes(
                arr, axes, imagej=imagej, spatial_dims=spatial_dims, path=p, drop_constant_alpha=True
            )
            if out is None:
                out = layout_from_shape(arr, spatial_dims, p)
    if out is None:
        lazy = lazy_order(axes, shape, imagej=imagej, spatial_dims=spatial_dims, path=p)
        if lazy is None:
            logger.info("%s: axes %r cannot be read lazily; reading the whole image", p, axes)
            return read_image(p, spatial_dims=spatial_dims)
        import zarr

        try:
            store = tifffile.imread(p, aszarr=True, series=0, level=0)
            out = ChannelFirstView(zarr.open(store, mode="r"), *lazy)
        except Exception as exc:
            raise DataFileError(p, f"cannot open TIFF as zarr ({type(exc).__name__}: {exc})") from exc
    return ImageData(array=out, element_size=tiff_element_size(meta, out.ndim - 1, p), path=p)


@contextlib.contextmanager
def atomic_zarr(
    path: PathLike,
    shape: Sequence[int],
    *,
    chunks: Sequence[int],
    dtype: Any = np.float32,
    attrs: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Create a zarr array directory atomically: yields the array, written under a hidden temporary name.

    On normal exit the directory is renamed to ``path`` (an existing ``path`` is replaced); on an
    exception it is deleted and ``path`` is left untouched, so a ``path`` that exists is complete.
    Unwritten chunks read as 0.

    Args:
        path: Final ``.zarr`` directory.
        shape: Array shape.
        chunks: Chunk shape (e.g. the prediction tile, so that each tile writes whole chunks).
        dtype: Array dtype.
        attrs: JSON-serialisable attributes (e.g. ``axes``, ``element_size``).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        arr = create_zarr(tmp, shape, chunks=chunks, dtype=dtype)
        if attrs:
            arr.attrs.update(dict(attrs))
        yield arr
        move_into_place(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_full(e, final)
        raise


def create_zarr(path: PathLike, shape: Sequence[int], *, chunks: Sequence[int], dtype: Any) -> Any:
    """Create (or overwrite) a zarr array directory filled with 0, not atomically: for scratch arrays (and
    for :func:`atomic_zarr`, which renames it into place)."""
    import zarr

    return zarr.open_array(
        str(path),
        mode="w",
        shape=tuple(int(s) for s in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=dtype,
        fill_value=0,
    )
