"""File input/output: images, label images, ImageJ ROIs, point annotations, tables.

This is the only module of the package that opens files. Everything else works on in-memory arrays.

Conventions (shared with the rest of the package):

* Images are channel-first: ``(C, Y, X)`` in 2D or ``(C, Z, Y, X)`` in 3D, always with a channel axis
  after reading, in the dtype stored in the file (no normalisation).
* Label images are ``(Y, X)`` or ``(Z, Y, X)`` non-negative integer arrays (0 = background).
* ``element_size`` is the physical voxel size per spatial axis in micrometres, ``(y, x)`` or
  ``(z, y, x)``, or ``None`` when unknown.
* Points are float arrays ``(N, ndim)`` in array index order (``(y, x)`` or ``(z, y, x)``) and pixel
  units, where integer values are pixel centres (pixel ``i`` covers ``[i - 0.5, i + 0.5)``).

Errors: a missing file raises :class:`FileNotFoundError`; every other problem with a file's content
(empty, corrupt, unsupported layout, invalid labels, points outside the image, ...) raises
:class:`DataFileError` (a :class:`ValueError`) whose message starts with the file path.

All writers are atomic (see :func:`atomic_write`): output is written to a hidden temporary file in the
target directory and moved into place with :func:`os.replace`, so a crash or kill never leaves a
half-written file under the final name.

ImageJ ROI rasterisation (see :func:`read_rois`) is ImageJ 1.53t's, pixel for pixel, for every area ROI
type (sub-pixel, rounded, spline-fitted and composite ROIs included): polygons with ImageJ's
``PolygonFiller`` (pixel ``(x, y)`` belongs to a polygon iff its centre ``(x + 0.5, y + 0.5)`` is inside,
even-odd rule; a centre exactly on an edge is inside for a right boundary and outside for a left
boundary). Rectangles and ovals use their integer bounds (``OvalRoi.getMask``: pixel centre inside the
inscribed ellipse). :func:`write_rois` writes outlines traced along pixel edges, so that
``read_rois(write_rois(labels))`` reproduces ``labels`` exactly.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import logging
import math
import os
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import roifile
import tifffile
from PIL import Image
from scipy import ndimage

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

__all__ = [
    "ANNOTATION_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ZARR_SUFFIX",
    "ChannelFirstView",
    "DataFileError",
    "ImageData",
    "RoiAnnotation",
    "atomic_write",
    "atomic_zarr",
    "check_same_shape",
    "find_pairs",
    "mask_to_instances",
    "open_image",
    "open_zarr",
    "read_csv",
    "read_image",
    "read_labels",
    "read_points_csv",
    "read_rois",
    "write_csv",
    "write_point_rois",
    "write_points_csv",
    "write_rois",
    "write_tiff",
]

#: File suffixes read by :func:`read_image` / :func:`read_labels` (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy")
#: File suffixes accepted as annotations by :func:`find_pairs` (label images, ImageJ ROIs, point CSVs).
ANNOTATION_SUFFIXES: tuple[str, ...] = (*IMAGE_SUFFIXES, ".zip", ".roi", ".csv")

_TIFF_SUFFIXES = (".tif", ".tiff")
_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff")

# physical length units -> micrometres
_UNIT_TO_UM: dict[str, float] = {
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # greek mu
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micrometers": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nanometers": 1e-3,
    "pm": 1e-6,
    "\u00e5": 1e-4,  # angstrom (lower-cased)
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
}

_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class DataFileError(ValueError):
    """A data file is empty, corrupt, unreadable or has invalid content.

    The message always starts with the file path. ``path`` holds the offending file.
    """

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image read from disk.

    Attributes:
        array: Channel-first pixel data, ``(C, Y, X)`` or ``(C, Z, Y, X)``, dtype as stored.
        element_size: Physical voxel size in micrometres per spatial axis, ``(y, x)`` or ``(z, y, x)``,
            or ``None`` when the file does not say.
        path: The file the image was read from (``None`` for in-memory images).
    """

    array: np.ndarray
    element_size: tuple[float, ...] | None
    path: Path | None = None

    @property
    def spatial_dims(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.array.ndim - 1

    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis, ``(Y, X)`` or ``(Z, Y, X)``."""
        return tuple(int(s) for s in self.array.shape[1:])


@dataclass(frozen=True, eq=False)
class RoiAnnotation:
    """Annotations read from an ImageJ ROI file (see :func:`read_rois`).

    Attributes:
        labels: Instance label image ``(Y, X)`` or ``(Z, Y, X)``, int32, 0 = background.
        ignore: Boolean mask of the same shape, True inside ROIs named ``ignore...``.
        points: Point coordinates ``(N, ndim)`` float64 in array order ``(y, x)`` / ``(z, y, x)``,
            pixel units (integer = pixel centre).
        classes: Class index per point ``(N,)`` int64 (>= 1).
        path: The ROI file.
    """

    labels: np.ndarray
    ignore: np.ndarray
    points: np.ndarray
    classes: np.ndarray
    path: Path | None = None


# ----------------------------------------------------------------------------------------------------
# generic helpers
# ----------------------------------------------------------------------------------------------------


def _check_file(path: PathLike) -> Path:
    """Return ``path`` as a Path after checking that it is a non-empty regular file.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: The path is a directory or the file is empty.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found")
    if p.is_dir():
        raise DataFileError(p, "is a directory, expected a file")
    if p.stat().st_size == 0:
        raise DataFileError(p, "file is empty")
    return p


def _suffix(path: Path) -> str:
    """Lower-case file suffix, ``.ome.tif`` counted as ``.tif``."""
    return path.suffix.lower()


def _stem(path: Path, suffixes: Iterable[str]) -> str:
    """File name without its (longest matching, case-insensitive) known suffix."""
    name = path.name
    low = name.lower()
    for suf in sorted({*suffixes, *_MULTI_SUFFIXES}, key=len, reverse=True):
        if low.endswith(suf.lower()):
            return name[: len(name) - len(suf)]
    return path.stem


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[Path]:
    """Context manager for writing a file atomically.

    Yields a temporary path in the same directory as ``path`` (hidden name, same suffix, so that
    libraries choosing the format from the suffix behave). Write the whole output to it; on normal exit
    the temporary file is flushed to disk and moved onto ``path`` with :func:`os.replace` (atomic on
    POSIX), on an exception it is deleted and ``path`` is left untouched (an existing file keeps its old
    content). After a hard kill only a hidden ``.<name>.<random>.tmp<suffix>`` file can remain.
    Parent directories are created.

    Args:
        path: Final destination.

    Yields:
        The temporary path to write to.

    Example:
        >>> with atomic_write("out/table.csv") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("a,b\\n1,2\\n")
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp{final.suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the writer did not create the temporary file {tmp}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if _disk_full(e):
            raise OSError(
                errno.ENOSPC, f"{final}: disk full (no space left on the device); nothing written"
            ) from e
        raise


def _disk_full(e: BaseException) -> bool:
    """An exception caused (directly or in its chain) by a full disk (ENOSPC), whatever library raised it."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def clean_stale_temporaries(directory: PathLike, names: Sequence[str]) -> list[Path]:
    """Remove the hidden temporaries a killed run left for these output ``names`` (files or .zarr dirs).

    :func:`atomic_write` and :func:`atomic_zarr` write under ``.<name>.<token>.tmp*``; a hard kill can leave
    one behind. Returns what was removed.
    """
    import shutil

    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for name in names:
        for stale in d.glob(f".{glob_escape(name)}.*.tmp*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    import glob as _glob

    return _glob.escape(name)


# ----------------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------------


def read_image(
    path: PathLike, *, spatial_dims: int | None = None, channel_axis: int | None = None
) -> ImageData:
    """Read an image as a channel-first array with its physical element size.

    Supported formats: TIFF (tifffile; compressed TIFFs such as the LZW-compressed Cell Tracking
    Challenge files via imagecodecs; ImageJ hyperstacks and OME-TIFF), PNG / JPEG / BMP (Pillow; 16-bit
    RGB PNG via imagecodecs), and ``.npy``.

    Layout resolution, in this order:

    1. ``channel_axis`` given: that axis of the stored array is the channel axis, all other axes are
       spatial in stored order (Z, Y, X).
    2. The file declares its axes (ImageJ/OME/tifffile metadata, or a PNG/JPEG): ``C`` and RGB samples
       become channels, ``Z`` is depth; singleton axes (e.g. ``T=1``) are dropped. ImageJ stacks
       without ``slices``/``channels`` (axes ``I``) are z-stacks. If ``spatial_dims`` contradicts the
       metadata in a simple way it wins: ``spatial_dims=2`` turns a ``Z`` axis into channels (e.g. a
       colour stack saved as slices) and ``spatial_dims=3`` turns a ``C`` axis into depth (e.g.
       ``tifffile.imwrite(..., imagej=True)`` of a plain 3D array).
    3. Otherwise (``.npy``, TIFF without axes metadata) the shape decides: ``(Y, X)`` is 2D;
       ``(Y, X, 3|4)`` is 2D RGB(A) (needs ``shape[0] > 4``); other 3D arrays need ``spatial_dims``
       (2 -> ``(C, Y, X)``, 3 -> ``(Z, Y, X)``); 4D arrays are ``(C, Z, Y, X)`` or ``(Z, Y, X, 3|4)``.
       Ambiguous shapes raise :class:`DataFileError` asking for ``spatial_dims`` / ``channel_axis``.

    RGBA images (PNG, TIFF) whose alpha channel is constant lose the alpha channel (3 channels); a
    constant-alpha grey+alpha PNG becomes 1 channel.

    Element size: ImageJ TIFFs from the XResolution/YResolution tags (pixels per unit) and the ImageJ
    ``unit`` (``micron``, ``µm``, ``um``, ``nm``, ``mm``, ...; also ``yunit``/``zunit``) and ``spacing``
    (z) entries; OME-TIFF from ``PhysicalSizeX/Y/Z`` (+ unit attributes). Converted to micrometres.
    Plain TIFF resolution tags (DPI), PNG, JPEG and ``.npy`` give ``None``; so does a 3D ImageJ image
    without ``spacing`` (a warning is logged) or an uncalibrated image (unit ``pixel``).

    Args:
        path: Image file.
        spatial_dims: 2 or 3 to force/declare the number of spatial dimensions, or None.
        channel_axis: Index (may be negative) of the channel axis in the stored array, or None.

    Returns:
        :class:`ImageData` with ``array`` of shape ``(C, Y, X)`` or ``(C, Z, Y, X)`` in the stored dtype.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Empty, corrupt or unsupported file, or ambiguous/unsupported layout.
    """
    p = _check_file(path)
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims!r}")
    suffix = _suffix(p)
    element_size: tuple[float, ...] | None = None
    imagej = False
    may_have_alpha = False  # RGBA samples axis whose constant alpha is dropped
    if suffix in _TIFF_SUFFIXES:
        arr, axes, meta = _read_tiff(p)
        imagej = meta["imagej"] is not None
        may_have_alpha = True
    elif suffix in _PIL_SUFFIXES:
        arr = _read_pil(p, labels=False)
        axes = "YX" if arr.ndim == 2 else "YXS"
        meta = None
        may_have_alpha = True
    elif suffix == ".npy":
        arr = _read_npy(p)
        axes = None
        meta = None
    else:
        raise DataFileError(
            p, f"unsupported image format {suffix!r} (supported: {', '.join(IMAGE_SUFFIXES)})"
        )

    if arr.size == 0:
        raise DataFileError(p, f"image has no pixels (shape {arr.shape})")

    if channel_axis is not None:
        out = _layout_with_channel_axis(arr, channel_axis, spatial_dims, p)
    else:
        out = None
        if axes is not None:
            out = _layout_from_axes(
                arr,
                axes,
                imagej=imagej,
                spatial_dims=spatial_dims,
                path=p,
                drop_constant_alpha=may_have_alpha,
            )
        if out is None:
            out = _layout_from_shape(arr, spatial_dims, p)

    if meta is not None:
        element_size = _tiff_element_size(meta, out.ndim - 1, p)
    return ImageData(array=out, element_size=element_size, path=p)


def _read_tiff(path: Path) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Read the first series of a TIFF. Returns (array, axes, metadata dict)."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise DataFileError(path, "TIFF contains no image series")
            series = tif.series[0]
            arr = series.asarray()
            axes = str(series.axes)
            page = tif.pages[0]
            meta: dict[str, Any] = {
                "imagej": tif.imagej_metadata if tif.is_imagej else None,
                "ome": tif.ome_metadata if tif.is_ome else None,
                "xres": _tag_value(page, "XResolution"),
                "yres": _tag_value(page, "YResolution"),
            }
    except DataFileError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many exception types
        raise DataFileError(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return arr, axes, meta


def _tag_value(page: Any, name: str) -> Any:
    tag = page.tags.get(name)
    return None if tag is None else tag.value


def _read_pil(path: Path, *, labels: bool) -> np.ndarray:
    """Read a PNG/JPEG/BMP with Pillow. Returns (Y, X) or (Y, X, S) as stored (palette kept for labels)."""
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                logger.warning("%s: has %d frames, reading only the first", path, img.n_frames)
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA") and path.suffix.lower() == ".png" and _png_bit_depth(path) == 16:
                # Pillow reduces 16-bit colour PNGs to 8 bit; imagecodecs keeps the full depth.
                import imagecodecs

                return np.asarray(imagecodecs.png_decode(path.read_bytes()))
            if mode == "P" and not labels:
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode in ("CMYK", "YCbCr"):
                img = img.convert("RGB")
            elif mode == "PA":
                img = img.convert("RGBA") if not labels else img.getchannel(0)
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataFileError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    return arr


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as fh:
        head = fh.read(25)
    return head[24] if len(head) >= 25 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataFileError(path, f"cannot read .npy ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DataFileError(path, "not a plain .npy array")
    return arr


def _drop_constant_alpha(arr: np.ndarray, axis: int, path: Path) -> np.ndarray:
    """Drop the last entry along ``axis`` (alpha) if it is constant."""
    n = arr.shape[axis]
    alpha = np.take(arr, n - 1, axis=axis)
    if alpha.size and np.all(alpha == alpha.flat[0]):
        logger.debug("%s: dropping constant alpha channel", path)
        return np.take(arr, np.arange(n - 1), axis=axis)
    return arr


def _layout_with_channel_axis(
    arr: np.ndarray, channel_axis: int, spatial_dims: int | None, path: Path
) -> np.ndarray:
    if not -arr.ndim <= channel_axis < arr.ndim:
        raise DataFileError(path, f"channel_axis={channel_axis} out of range for array of shape {arr.shape}")
    out = np.moveaxis(arr, channel_axis, 0)
    nsp = out.ndim - 1
    if nsp not in (2, 3):
        raise DataFileError(
            path,
            f"array of shape {arr.shape} with channel_axis={channel_axis} "
            f"has {nsp} spatial axes, expected 2 or 3",
        )
    if spatial_dims is not None and nsp != spatial_dims:
        raise DataFileError(
            path,
            f"array of shape {arr.shape} with channel_axis={channel_axis} has {nsp} "
            f"spatial axes but spatial_dims={spatial_dims}",
        )
    return out


def _layout_from_axes(
    arr: np.ndarray,
    axes: str,
    *,
    imagej: bool,
    spatial_dims: int | None,
    path: Path,
    drop_constant_alpha: bool,
) -> np.ndarray | None:
    """Channel-first array from declared axes, or None if the axes do not say enough."""
    axes = axes.upper()
    if len(axes) != arr.ndim:
        return None
    if imagej and axes.count("I") == 1 and "Z" not in axes:
        axes = axes.replace("I", "Z")  # an ImageJ stack without hyperstack info is a z-stack
    if "Q" in axes or "I" in axes or len(set(axes)) != len(axes):
        return None
    if "Y" not in axes or "X" not in axes:
        return None
    # drop singleton axes other than Y and X
    keep = [i for i, a in enumerate(axes) if a in "YX" or arr.shape[i] != 1]
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    unsupported = [a for a in axes if a not in "CSZYX"]
    if unsupported:
        dims = ", ".join(f"{a}={arr.shape[axes.index(a)]}" for a in unsupported)
        raise DataFileError(
            path,
            f"unsupported axes {dims} in image with axes {axes!r} and shape {arr.shape} "
            "(only channels C/S, Z, Y, X are supported; split time series first)",
        )
    if drop_constant_alpha and "S" in axes and arr.shape[axes.index("S")] in (2, 4):
        arr = _drop_constant_alpha(arr, axes.index("S"), path)
    has_z = "Z" in axes
    if spatial_dims == 2 and has_z:
        if "C" in axes or "S" in axes:
            raise DataFileError(
                path,
                f"image has axes {axes!r} (shape {arr.shape}) with a Z axis and channels, but spatial_dims=2",
            )
        logger.info("%s: treating axis Z of axes %r as channels because spatial_dims=2", path, axes)
        axes = axes.replace("Z", "C")
    elif spatial_dims == 3 and not has_z:
        if "C" in axes and "S" not in axes:
            logger.info("%s: treating axis C of axes %r as Z because spatial_dims=3", path, axes)
            axes = axes.replace("C", "Z")
        else:
            raise DataFileError(
                path, f"image with axes {axes!r} and shape {arr.shape} is 2D, but spatial_dims=3"
            )
    # merge C and S into one channel axis
    chan = [a for a in "CS" if a in axes]
    order = [axes.index(a) for a in (*chan, *[a for a in "ZYX" if a in axes])]
    arr = np.transpose(arr, order)
    nchan = int(np.prod([arr.shape[i] for i in range(len(chan))])) if chan else 1
    spatial = arr.shape[len(chan) :]
    return arr.reshape((nchan, *spatial))


def _layout_from_shape(arr: np.ndarray, spatial_dims: int | None, path: Path) -> np.ndarray:
    """Channel-first array inferred from the shape alone (no axes metadata)."""
    shape = arr.shape
    hint = "; pass spatial_dims=2 or 3 and/or channel_axis to read_image"
    if arr.ndim > 4:  # drop leading singleton axes, e.g. (1, 1, Z, Y, X)
        lead = 0
        while arr.ndim - lead > 4 and arr.shape[lead] == 1:
            lead += 1
        arr = arr.reshape(arr.shape[lead:])
    ndim = arr.ndim
    rgb_last = arr.shape[-1] in (3, 4)
    if ndim == 2:
        if spatial_dims == 3:
            raise DataFileError(path, f"image of shape {shape} is 2D but spatial_dims=3")
        return arr[np.newaxis]
    if ndim == 3:
        if spatial_dims == 3:
            return arr[np.newaxis]
        if rgb_last and arr.shape[0] > 4:
            return np.moveaxis(arr, -1, 0)
        if spatial_dims == 2:
            if rgb_last:
                raise DataFileError(
                    path, f"cannot tell whether the channel axis of shape {shape} is first or last{hint}"
                )
            return arr
        raise DataFileError(path, f"ambiguous 3D array of shape {shape}: (C, Y, X) or (Z, Y, X)?{hint}")
    if ndim == 4:
        if spatial_dims == 2:
            raise DataFileError(path, f"image of shape {shape} has 4 axes but spatial_dims=2{hint}")
        if rgb_last and arr.shape[0] > 4:
            return np.moveaxis(arr, -1, 0)
        if rgb_last:
            raise DataFileError(
                path, f"ambiguous 4D array of shape {shape}: (C, Z, Y, X) or (Z, Y, X, C)?{hint}"
            )
        return arr
    raise DataFileError(path, f"unsupported image shape {shape}: expected 2 to 4 axes{hint}")


def _unit_scale(unit: Any) -> float | None:
    """Micrometres per ``unit`` or None if the unit is missing/unknown/'pixel'."""
    if unit is None:
        return None
    text = str(unit).strip()
    if "\\u" in text:
        with contextlib.suppress(UnicodeDecodeError):
            text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
    return _UNIT_TO_UM.get(text.lower())


def _tiff_element_size(meta: Mapping[str, Any], ndim: int, path: Path) -> tuple[float, ...] | None:
    """Element size in µm from ImageJ or OME metadata of a TIFF, or None."""
    if meta.get("ome"):
        size = _ome_element_size(meta["ome"], ndim, path)
        if size is not None:
            return size
    ij = meta.get("imagej")
    if not ij:
        return None
    unit = ij.get("unit")
    sx = _unit_scale(unit)
    sy = _unit_scale(ij.get("yunit", unit))
    if sx is None or sy is None:
        return None
    px = _resolution_to_size(meta.get("xres"))
    py = _resolution_to_size(meta.get("yres"))
    if px is None or py is None:
        return None
    size = [py * sy, px * sx]
    if ndim == 3:
        sz = _unit_scale(ij.get("zunit", unit))
        spacing = ij.get("spacing")
        try:
            spacing = float(spacing) if spacing is not None else None
        except (TypeError, ValueError):
            spacing = None
        if sz is None or spacing is None or not math.isfinite(spacing) or spacing <= 0:
            logger.warning("%s: ImageJ TIFF has a pixel size but no z spacing; element size unknown", path)
            return None
        size.insert(0, spacing * sz)
    return tuple(float(s) for s in size)


def _resolution_to_size(res: Any) -> float | None:
    """TIFF resolution (pixels per unit, rational tuple or number) -> unit per pixel."""
    if res is None:
        return None
    try:
        if isinstance(res, tuple | list):
            num, den = float(res[0]), float(res[1])
            value = num / den if den else 0.0
        else:
            value = float(res)
    except (TypeError, ValueError, IndexError):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return 1.0 / value


def _ome_element_size(xml: str, ndim: int, path: Path) -> tuple[float, ...] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        logger.warning("%s: cannot parse OME-XML metadata", path)
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for ax in ("Z", "Y", "X")[3 - ndim :]:
        value = pixels.get(f"PhysicalSize{ax}")
        scale = _unit_scale(pixels.get(f"PhysicalSize{ax}Unit", "\u00b5m"))
        if value is None or scale is None:
            return None
        try:
            v = float(value) * scale
        except ValueError:
            return None
        if not math.isfinite(v) or v <= 0:
            return None
        sizes.append(v)
    return tuple(sizes)


def write_tiff(
    path: PathLike,
    array: np.ndarray,
    *,
    element_size: Sequence[float] | None = None,
    axes: str | None = None,
    compression: str | None = None,
) -> None:
    """Write an array as TIFF readable by ImageJ/Fiji, with physical element size metadata.

    uint8, uint16, float32 and bool (stored as uint8 0/1) are written as ImageJ hyperstack TIFFs with
    XResolution/YResolution (pixels per µm), ``unit=um`` and ``spacing`` (z); other dtypes (int32,
    uint32, int64, float64, ...), which the ImageJ TIFF format cannot hold, are written as OME-TIFF with
    ``PhysicalSizeX/Y/Z`` in µm (Fiji opens them with Bio-Formats). :func:`read_image` /
    :func:`read_labels` read both back with the same array and element size. The write is atomic.

    Args:
        path: Output ``.tif``/``.tiff`` file.
        array: ``(Y, X)``, ``(Z, Y, X)``, ``(C, Y, X)`` or ``(C, Z, Y, X)`` data (channel-first).
        element_size: Voxel size in µm per spatial axis (``(y, x)`` or ``(z, y, x)``), or None.
        axes: One of ``"YX"``, ``"ZYX"``, ``"CYX"``, ``"CZYX"``. Default: ``"YX"`` for 2D and ``"CZYX"``
            for 4D arrays; 3D arrays need ``axes`` unless ``element_size`` tells (3 values -> ``ZYX``,
            2 values -> ``CYX``).
        compression: Optional tifffile compression, e.g. ``"zlib"`` or ``"lzw"``; None = uncompressed.

    Raises:
        ValueError: Invalid axes / element size for the array.
    """
    p = Path(path)
    arr = np.asarray(array)
    if axes is None:
        if arr.ndim == 2:
            axes = "YX"
        elif arr.ndim == 4:
            axes = "CZYX"
        elif arr.ndim == 3 and element_size is not None and len(element_size) in (2, 3):
            axes = "ZYX" if len(element_size) == 3 else "CYX"
        else:
            raise ValueError(f"{p}: cannot infer the axes of an array of shape {arr.shape}; pass axes=")
    axes = axes.upper()
    if axes not in ("YX", "ZYX", "CYX", "CZYX") or len(axes) != arr.ndim:
        raise ValueError(
            f"{p}: axes {axes!r} invalid for array of shape {arr.shape} "
            "(expected YX, ZYX, CYX or CZYX matching the number of dimensions)"
        )
    nsp = 3 if "Z" in axes else 2
    if element_size is not None:
        element_size = tuple(float(s) for s in element_size)
        if len(element_size) != nsp or not all(math.isfinite(s) and s > 0 for s in element_size):
            raise ValueError(
                f"{p}: element_size {element_size} invalid for axes {axes!r} "
                f"(need {nsp} positive values in µm)"
            )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    kwargs: dict[str, Any] = {"compression": compression} if compression else {}
    with atomic_write(p) as tmp:
        if arr.dtype in _IMAGEJ_DTYPES:
            data, ij_axes = arr, axes
            if axes == "CZYX":  # ImageJ order is TZCYXS
                data, ij_axes = np.transpose(arr, (1, 0, 2, 3)), "ZCYX"
            metadata: dict[str, Any] = {"axes": ij_axes}
            resolution = None
            if element_size is not None:
                resolution = (1.0 / element_size[-1], 1.0 / element_size[-2])
                metadata["unit"] = "um"
                if nsp == 3:
                    metadata["spacing"] = element_size[0]
            if "C" in ij_axes:
                metadata["mode"] = "composite"
            tifffile.imwrite(
                tmp,
                np.ascontiguousarray(data),
                imagej=True,
                resolution=resolution,
                metadata=metadata,
                **kwargs,
            )
        else:
            metadata = {"axes": axes}
            if element_size is not None:
                for ax, s in zip(axes[-nsp:], element_size, strict=True):
                    metadata[f"PhysicalSize{ax}"] = s
                    metadata[f"PhysicalSize{ax}Unit"] = "\u00b5m"
            tifffile.imwrite(
                tmp,
                np.ascontiguousarray(arr),
                ome=True,
                metadata=metadata,
                photometric="minisblack",
                **kwargs,
            )


# ----------------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------------


def read_labels(path: PathLike) -> np.ndarray:
    """Read an instance label image or a class/binary mask.

    Accepts TIFF (single channel, ``(Y, X)`` or ``(Z, Y, X)``; multi-page TIFFs are z-stacks),
    PNG/BMP (grey or palette: palette indices are returned), and ``.npy``. Singleton axes are dropped.
    Values are returned as stored: a binary mask stays 0/255 (use :func:`mask_to_instances` for
    instances); bool becomes uint8 0/1; float arrays holding only integer values are converted to
    int32 (int64 if needed). Colour images whose channels are all identical (grey saved as RGB) are
    accepted as grey.

    Args:
        path: Label file.

    Returns:
        Non-negative integer array ``(Y, X)`` or ``(Z, Y, X)``.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Empty/corrupt file, colour or multi-channel data, non-integer or non-finite
            float values, negative values, or more than 3 axes.
    """
    p = _check_file(path)
    suffix = _suffix(p)
    if suffix in _TIFF_SUFFIXES:
        arr, axes, _ = _read_tiff(p)
        axes = axes.upper()
        for ch in "SC":
            if ch in axes and arr.shape[axes.index(ch)] > 1:
                arr = _collapse_identical_channels(arr, axes.index(ch), p)
                axes = axes.replace(ch, "")
    elif suffix in _PIL_SUFFIXES:
        arr = _read_pil(p, labels=True)
        if arr.ndim == 3:
            arr = _collapse_identical_channels(arr, 2, p)
    elif suffix == ".npy":
        arr = _read_npy(p)
    else:
        raise DataFileError(
            p, f"unsupported label format {suffix!r} (supported: {', '.join(IMAGE_SUFFIXES)})"
        )
    if arr.ndim > 2:
        arr = np.squeeze(arr, axis=tuple(i for i in range(arr.ndim - 2) if arr.shape[i] == 1))
    if arr.ndim not in (2, 3):
        raise DataFileError(
            p,
            f"label image must be (Y, X) or (Z, Y, X), got shape {arr.shape} "
            "(multi-channel label images are not supported)",
        )
    return _validate_labels(arr, p)


def _collapse_identical_channels(arr: np.ndarray, axis: int, path: Path) -> np.ndarray:
    """Colour/multi-channel labels: accept only if all channels (ignoring constant alpha) are equal."""
    n = arr.shape[axis]
    if n in (2, 4):
        arr = _drop_constant_alpha(arr, axis, path)
        n = arr.shape[axis]
    first = np.take(arr, 0, axis=axis)
    if n == 1 or all(np.array_equal(first, np.take(arr, i, axis=axis)) for i in range(1, n)):
        return first
    raise DataFileError(
        path,
        f"label image has {n} different channels (colour/RGB, shape {arr.shape}); "
        "labels must be a single-channel integer image",
    )


def _validate_labels(arr: np.ndarray, path: Path | None) -> np.ndarray:
    """Check label values; returns the array (bool -> uint8, integral floats -> int32/int64)."""

    def fail(message: str) -> None:
        if path is None:
            raise ValueError(message)
        raise DataFileError(path, message)

    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8)
    if kind not in "fiu":
        fail(f"unsupported label dtype {arr.dtype}; expected integer labels")
    if kind == "f":
        if not np.all(np.isfinite(arr)):
            fail("label image contains NaN or infinite values")
        if not np.array_equal(arr, np.round(arr)):
            fail(f"label image has non-integer values (dtype {arr.dtype}); expected integer labels")
    if kind in "fi" and arr.size and arr.min() < 0:
        fail(f"label image has negative values (min {arr.min()}); labels must be >= 0")
    if kind == "f":
        return arr.astype(np.int64 if arr.size and arr.max() >= 2**31 else np.int32)
    return arr


def mask_to_instances(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """Connected components of a binary mask as instance labels.

    Args:
        mask: ``(Y, X)`` or ``(Z, Y, X)`` array; nonzero = foreground (e.g. 0/255 masks).
        connectivity: Neighbourhood as in :func:`scipy.ndimage.generate_binary_structure`: 1 = faces
            only (4/6-neighbourhood) ... ``ndim`` = full (8/26-neighbourhood, the default).

    Returns:
        int32 labels, 0 = background, objects numbered 1..N in raster order.
    """
    mask = np.asarray(mask)
    conn = mask.ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= mask.ndim:
        raise ValueError(f"connectivity must be in 1..{mask.ndim}, got {connectivity}")
    structure = ndimage.generate_binary_structure(mask.ndim, conn)
    labels, _ = ndimage.label(mask != 0, structure=structure, output=np.int32)
    return labels


def check_same_shape(
    image: np.ndarray, labels: np.ndarray, image_path: PathLike | None, label_path: PathLike | None
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
        raise DataFileError(
            label_path if label_path is not None else Path("<labels>"),
            f"labels of shape {lab_shape} do not match image {image_path} of shape {img_shape} "
            f"(spatial shape {img_shape[1:]}, channel axis first)",
        )


# ----------------------------------------------------------------------------------------------------
# ImageJ ROIs: rasterisation
# ----------------------------------------------------------------------------------------------------


# The functions below port the rasterisation of ImageJ 1.53t (``ij.jar`` of the Debian package ``imagej``
# 1.53t-1) for ROIs read from a file, i.e. ``ij.io.RoiDecoder.getRoi`` followed by ``Roi.getMask`` (what
# Edit > Selection > Create Mask, Analyze > Measure and the ROI Manager use). Java float (32-bit)
# arithmetic is reproduced with numpy float32 wherever ImageJ stores or computes coordinates as ``float``.

_JAVA_FLOAT_MIN = np.float32(1.4e-45)  # java.lang.Float.MIN_VALUE (smallest positive float)
_SPLINE_EXTEND = 7  # ij.measure.SplineFitter.EXTEND_BY
_FLATNESS = 0.01  # ij.gui.ShapeRoi.getMask: getFloatPolygon(0.01, ...)
_FLATTEN_LIMIT = 10  # java.awt.geom.FlatteningPathIterator default recursion limit
# java.awt.geom.RoundRectIterator: Bezier control-point offset of a quarter ellipse (per unit arc size)
_RR_A = 1.0 - math.cos(math.pi / 4.0)
_RR_B = math.tan(math.pi / 4.0)
_RR_CV = 4.0 / 3.0 * _RR_A * _RR_B / (math.sqrt(1.0 + _RR_B * _RR_B) - 1 + _RR_A)
_RR_ACV = (1.0 - _RR_CV) / 2.0  # 0x1.ca75ddd596bbep-3 in Java 17 as in CPython
# (type, [(v0, v1, v2, v3) per point]): point = (x + v0 * w + v1 * aw, y + v2 * h + v3 * ah)
_RR_SEGMENTS: tuple[tuple[int, tuple[tuple[float, float, float, float], ...]], ...] = (
    (0, ((0.0, 0.0, 0.0, 0.5),)),
    (1, ((0.0, 0.0, 1.0, -0.5),)),
    (3, ((0.0, 0.0, 1.0, -_RR_ACV), (0.0, _RR_ACV, 1.0, 0.0), (0.0, 0.5, 1.0, 0.0))),
    (1, ((1.0, -0.5, 1.0, 0.0),)),
    (3, ((1.0, -_RR_ACV, 1.0, 0.0), (1.0, 0.0, 1.0, -_RR_ACV), (1.0, 0.0, 1.0, -0.5))),
    (1, ((1.0, 0.0, 0.0, 0.5),)),
    (3, ((1.0, 0.0, 0.0, _RR_ACV), (1.0, -_RR_ACV, 0.0, 0.0), (1.0, -0.5, 0.0, 0.0))),
    (1, ((0.0, 0.5, 0.0, 0.0),)),
    (3, ((0.0, _RR_ACV, 0.0, 0.0), (0.0, 0.0, 0.0, _RR_ACV), (0.0, 0.0, 0.0, 0.5))),
    (4, ()),
)
_PATH_NCOORDS = {0: 2, 1: 2, 2: 4, 3: 6, 4: 0}  # ShapeRoi.nCoords: moveTo, lineTo, quadTo, cubicTo, close

# a ROI mask in ImageJ's convention: (x, y, mask) with the (height, width) boolean mask of the ROI's
# integer bounds whose top-left pixel is image pixel (x, y)
_RoiMask = tuple[int, int, np.ndarray]


def _java_round(v: np.ndarray) -> np.ndarray:
    """``Math.round(double)``: nearest integer, halves rounded up (towards +inf), as int64."""
    f = np.floor(v)
    return (f + (v - f >= 0.5)).astype(np.int64)


def _ij_fill(
    xs: np.ndarray, ys: np.ndarray, width: int, height: int, x_offset: float = 0.0, y_offset: float = 0.0
) -> np.ndarray:
    """``ij.process.PolygonFiller.getMask(width, height)`` (ImageJ 1.53t), vectorised.

    Integer mode (``setPolygon(int[], int[], n)``) for integer arrays; float mode
    (``setPolygon(float[], float[], n, xOffset, yOffset)``) for floating arrays, where NaN separates closed
    sub-paths and vertices are ``float + offset`` in double. Each edge from ``(x1, y1)`` to ``(x2, y2)``
    (``y1 < y2`` after swapping; horizontal edges skipped) covers the rows ``round(y1) <= row < round(y2)``
    (``Math.round``; integer mode: ``y1 <= row < y2``) at ``x = x1 + (row - y1 + 0.5) * slope + 1e-8``;
    per row the crossings are sorted and paired (even-odd rule) and a pair ``(xl, xr)`` fills the pixels
    ``(int)(xl + 0.5) <= x < (int)(xr + 0.5)``, clipped to ``[0, width)``. ImageJ advances x row by row by
    adding the slope; here it is evaluated directly (differences below 1e-12 px, far below the 1e-8 tie
    offset).

    Args:
        xs, ys: Vertex coordinates relative to the mask origin (before adding the offsets).
        width, height: Mask size.
        x_offset, y_offset: Offsets added in double (float mode only).

    Returns:
        ``(height, width)`` boolean mask.
    """
    out = np.zeros((max(height, 0), max(width, 0)), dtype=bool)
    n = len(xs)
    if n == 0 or width <= 0 or height <= 0:
        return out
    idx = np.arange(n)
    if np.issubdtype(np.asarray(xs).dtype, np.integer):
        x1 = np.asarray(xs, dtype=np.int64)
        y1 = np.asarray(ys, dtype=np.int64)
        nxt = (idx + 1) % n
        x2, y2 = x1[nxt], y1[nxt]
        keep = y1 != y2
        x1, y1, x2, y2 = x1[keep], y1[keep], x2[keep], y2[keep]
        swap = y1 > y2
        x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
        y1, y2 = np.where(swap, y2, y1), np.where(swap, y1, y2)
        slope = (x2 - x1) / (y2 - y1).astype(np.float64)
        ex = x1 + 0.5 * slope + 1e-8
        ey1, ey2 = y1, y2
    else:
        xf = np.asarray(xs, dtype=np.float32)
        yf = np.asarray(ys, dtype=np.float32)
        nan = np.isnan(xf)
        poly_start = np.maximum.accumulate(np.where(nan, idx + 1, 0))
        nxt = idx + 1
        nxt[-1] = poly_start[-1]
        nxt[:-1] = np.where(nan[1:], poly_start[:-1], nxt[:-1])
        valid = ~nan
        i, j = idx[valid], nxt[valid]
        y1f = yf[i].astype(np.float64) + y_offset
        y2f = yf[j].astype(np.float64) + y_offset
        x1f = xf[i].astype(np.float64) + x_offset
        x2f = xf[j].astype(np.float64) + x_offset
        y3, y4 = _java_round(y1f), _java_round(y2f)
        keep = (y3 != y4) & ~((y3 <= 0) & (y4 <= 0))
        y1f, y2f, x1f, x2f, y3, y4 = y1f[keep], y2f[keep], x1f[keep], x2f[keep], y3[keep], y4[keep]
        swap = y3 > y4
        y3, y4 = np.where(swap, y4, y3), np.where(swap, y3, y4)
        y1f, y2f = np.where(swap, y2f, y1f), np.where(swap, y1f, y2f)
        x1f, x2f = np.where(swap, x2f, x1f), np.where(swap, x1f, x2f)
        slope = (x2f - x1f) / (y2f - y1f)
        ex = x1f + (y3 - y1f + 0.5) * slope + 1e-8
        ey1, ey2 = y3, y4
    if not len(ex):
        return out
    r0 = np.maximum(ey1, 0)
    counts = np.maximum(np.minimum(ey2, height) - r0, 0)
    total = int(counts.sum())
    if total == 0:
        return out
    edge = np.repeat(np.arange(len(ex)), counts)
    starts = np.cumsum(counts) - counts
    rows = r0[edge] + (np.arange(total) - starts[edge])
    xs_row = ex[edge] + (rows - ey1[edge]) * slope[edge]
    order = np.lexsort((xs_row, rows))
    rows, xs_row = rows[order], xs_row[order]
    # pair the sorted crossings of each row: (0, 1), (2, 3), ... (an odd leftover is never filled)
    first = np.r_[True, rows[1:] != rows[:-1]]
    rank = np.arange(total) - np.maximum.accumulate(np.where(first, np.arange(total), 0))
    left = np.flatnonzero((rank % 2 == 0)[:-1] & (rows[1:] == rows[:-1]))
    rr = rows[left]
    c0 = np.clip(np.floor(xs_row[left] + 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.floor(xs_row[left + 1] + 0.5), 0, width).astype(np.int64)
    ok = c1 > c0
    rr, c0, c1 = rr[ok], c0[ok], c1[ok]
    if len(rr):
        diff = np.zeros((height, width + 1), dtype=np.int32)
        np.add.at(diff, (rr, c0), 1)
        np.add.at(diff, (rr, c1), -1)
        out = np.cumsum(diff, axis=1)[:, :width] > 0
    return out


def _float_bounds(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    """``FloatPolygon.getFloatBounds()`` (float min/max, ``maxX`` starts at ``Float.MIN_VALUE``)."""
    min_x, min_y = np.float32(np.min(xs)), np.float32(np.min(ys))
    max_x = max(np.float32(np.max(xs)), _JAVA_FLOAT_MIN)
    max_y = max(np.float32(np.max(ys)), _JAVA_FLOAT_MIN)
    return float(min_x), float(min_y), float(np.float32(max_x - min_x)), float(np.float32(max_y - min_y))


def _int_bounds(bx: float, by: float, bw: float, bh: float) -> tuple[int, int, int, int]:
    """``Roi.setIntBounds`` for area ROIs: floor of the origin, ceil of the far corner."""
    x, y = math.floor(bx), math.floor(by)
    return x, y, math.ceil(bx + bw) - x, math.ceil(by + bh) - y


# --- java.awt.geom: path flattening (FlatteningPathIterator, CubicCurve2D, QuadCurve2D, Line2D) ------


def _pt_seg_dist_sq(x1: float, y1: float, x2: float, y2: float, px: float, py: float) -> float:
    """``Line2D.ptSegDistSq`` (same operation order)."""
    x2 -= x1
    y2 -= y1
    px -= x1
    py -= y1
    dot = px * x2 + py * y2
    if dot <= 0.0:
        proj = 0.0
    else:
        px = x2 - px
        py = y2 - py
        dot = px * x2 + py * y2
        proj = 0.0 if dot <= 0.0 else dot * dot / (x2 * x2 + y2 * y2)
    return max(px * px + py * py - proj, 0.0)


def _flatten_curve(c: tuple[float, ...], level: int, emit: list[tuple[float, float]]) -> None:
    """Recursive subdivision of ``FlatteningPathIterator`` (flatness 0.01, limit 10) of a quadratic (6
    values) or cubic (8 values) curve; appends the end points of the flat pieces."""
    if len(c) == 8:
        x1, y1, cx1, cy1, cx2, cy2, x2, y2 = c
        flat = max(_pt_seg_dist_sq(x1, y1, x2, y2, cx1, cy1), _pt_seg_dist_sq(x1, y1, x2, y2, cx2, cy2))
        if level < _FLATTEN_LIMIT and not flat < _FLATNESS * _FLATNESS:
            ax, ay = (x1 + cx1) / 2.0, (y1 + cy1) / 2.0  # CubicCurve2D.subdivide
            bx, by = (x2 + cx2) / 2.0, (y2 + cy2) / 2.0
            mx, my = (cx1 + cx2) / 2.0, (cy1 + cy2) / 2.0
            lx, ly = (ax + mx) / 2.0, (ay + my) / 2.0
            rx, ry = (bx + mx) / 2.0, (by + my) / 2.0
            cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0
            _flatten_curve((x1, y1, ax, ay, lx, ly, cx, cy), level + 1, emit)
            _flatten_curve((cx, cy, rx, ry, bx, by, x2, y2), level + 1, emit)
            return
    else:
        x1, y1, qx, qy, x2, y2 = c
        if level < _FLATTEN_LIMIT and not _pt_seg_dist_sq(x1, y1, x2, y2, qx, qy) < _FLATNESS * _FLATNESS:
            ax, ay = (x1 + qx) / 2.0, (y1 + qy) / 2.0  # QuadCurve2D.subdivide
            bx, by = (x2 + qx) / 2.0, (y2 + qy) / 2.0
            cx, cy = (ax + bx) / 2.0, (ay + by) / 2.0
            _flatten_curve((x1, y1, ax, ay, cx, cy), level + 1, emit)
            _flatten_curve((cx, cy, bx, by, x2, y2), level + 1, emit)
            return
    emit.append((c[-2], c[-1]))


def _shape_polygon(segments: Sequence[tuple[int, Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """``ShapeRoi.getFloatPolygon(0.01, separateSubpaths=true, addPointForClose=false, relative)``.

    Args:
        segments: The path (``java.awt.geom.PathIterator`` segment types 0 moveTo, 1 lineTo, 2 quadTo,
            3 cubicTo, 4 close, with float32 coordinates), as stored in a ``GeneralPath``.

    Returns:
        float32 ``(xs, ys)`` of the flattened path with NaN between sub-paths.
    """
    xp: list[float] = []
    yp: list[float] = []
    start = 0
    cur = mov = (0.0, 0.0)

    def add_nan() -> None:
        if xp and not math.isnan(xp[-1]):
            xp.append(math.nan)
            yp.append(math.nan)

    for kind, coords in segments:
        c = [float(v) for v in coords]
        if kind == 0:
            add_nan()
            start = len(xp)
            cur = mov = (c[0], c[1])
            pts = [cur]
        elif kind == 1:
            cur = (c[0], c[1])
            pts = [cur]
        elif kind in (2, 3):
            pts = []
            _flatten_curve((*cur, *c), 0, pts)
            cur = (c[-2], c[-1])
        else:
            cur = mov
            if xp and start < len(xp) and xp[-1] == xp[start] and yp[-1] == yp[start]:
                xp.pop()
                yp.pop()
            add_nan()
            continue
        for px, py in pts:  # FlatteningPathIterator.currentSegment(float[]) casts to float
            xp.append(float(np.float32(px)))
            yp.append(float(np.float32(py)))
    if xp and math.isnan(xp[-1]):
        xp.pop()
        yp.pop()
    return np.array(xp, dtype=np.float32), np.array(yp, dtype=np.float32)


def _general_path(array: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``ShapeRoi.makeShapeFromArray``: segments of a composite ROI's path array as in a ``GeneralPath``
    (float32; a moveTo right after a moveTo replaces it, repeated closes collapse)."""
    arr = np.asarray(array, dtype=np.float32).ravel()
    segs: list[tuple[int, np.ndarray]] = []
    i = 0
    while i < len(arr):
        kind = int(arr[i])
        nc = _PATH_NCOORDS.get(kind, 0)
        if i + 1 + nc > len(arr):
            break
        coords = arr[i + 1 : i + 1 + nc]
        i += 1 + nc
        if kind not in _PATH_NCOORDS:
            continue
        if kind == 0 and segs and segs[-1][0] == 0:
            segs[-1] = (0, coords)
        elif not segs and kind != 0:  # Path2D.needRoom: IllegalPathStateException
            raise ValueError("missing initial moveto in path definition")
        elif not (kind == 4 and segs[-1][0] == 4):
            segs.append((kind, coords))
    return segs


def _shape_mask(segments: list[tuple[int, np.ndarray]]) -> _RoiMask | None:
    """``new ShapeRoi(shape).getMask()`` of a ``GeneralPath`` with absolute float32 coordinates."""
    allc = np.concatenate([c for _, c in segments if len(c)]) if segments else np.zeros(0, np.float32)
    if not len(allc):
        return None
    xs, ys = allc[0::2], allc[1::2]
    x1, y1 = np.float32(xs.min()), np.float32(ys.min())  # Path2D.Float.getBounds2D (Java 17)
    w, h = float(np.float32(xs.max() - x1)), float(np.float32(ys.max() - y1))
    x, y = math.floor(float(x1)), math.floor(float(y1))  # Rectangle2D.getBounds
    width, height = math.ceil(float(x1) + w) - x, math.ceil(float(y1) + h) - y
    rel = [
        (k, (c.astype(np.float64) - np.tile([float(x), float(y)], len(c) // 2)).astype(np.float32))
        for k, c in segments
    ]
    px, py = _shape_polygon(rel)
    return x, y, _ij_fill(px, py, width, height)


def _round_rect_mask(x: int, y: int, w: int, h: int, arc: int) -> _RoiMask | None:
    """``Roi.getMask`` of a rounded rectangle: ``new ShapeRoi(new RoundRectangle2D.Float(x, y, w, h,
    arc, arc)).getMask()`` (path from ``RoundRectIterator``, translated in double, stored as float)."""
    aw, ah = min(float(w), abs(float(arc))), min(float(h), abs(float(arc)))
    segments = []
    for kind, pts in _RR_SEGMENTS:
        coords = []
        for v0, v1, v2, v3 in pts:
            coords += [(x + v0 * w + v1 * aw) + -x, (y + v2 * h + v3 * ah) + -y]
        segments.append((kind, np.array(coords, dtype=np.float32)))
    px, py = _shape_polygon(segments)
    return x, y, _ij_fill(px, py, w, h)


def _oval_mask(w: int, h: int) -> np.ndarray:
    """``OvalRoi.getMask`` (ImageJ 1.53t) of the integer bounds ``w x h``."""
    a, b = w / 2.0, h / 2.0
    a2, b2 = a * a, b * b
    xx = (np.arange(w) - (a - 0.5))[None, :]
    yy = (np.arange(h) - (b - 0.5))[:, None]
    return xx * xx / a2 + yy * yy / b2 <= 1.0


# --- ij.gui.PolygonRoi: lengths, spline fit -------------------------------------------------------


def _traced_perimeter(xp: np.ndarray, yp: np.ndarray, pw: float = 1.0, ph: float = 1.0) -> float:
    """``PolygonRoi.getTracedPerimeter`` (ImageJ 1.53t) of an integer polygon along pixel edges.

    ``sumdx * pw + sumdy * ph - nCorners * (pw + ph - sqrt(pw^2 + ph^2))`` where a vertex counts as a
    corner if the side ending there is longer than 1 or the previous vertex was not counted.
    """
    n = len(xp)
    if n < 4:
        return 0.0
    xp = np.asarray(xp, dtype=np.int64)
    yp = np.asarray(yp, dtype=np.int64)
    dx = xp - np.roll(xp, 1)
    dy = yp - np.roll(yp, 1)
    sides = (np.abs(dx) + np.abs(dy)).tolist()
    corner, n_corners = False, 0
    for side in sides:
        if side > 1 or not corner:
            corner = True
            n_corners += 1
        else:
            corner = False
    sumdx, sumdy = int(np.abs(dx).sum()), int(np.abs(dy).sum())
    return sumdx * pw + sumdy * ph - n_corners * (pw + ph - math.sqrt(pw * pw + ph * ph))


def _polygon_length(xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getLength(int[] or float[], ..., closeShape=true, null)`` (sequential double sum)."""
    if len(xp) < 2:
        return 0.0
    dx = (np.roll(xp, -1) - xp).astype(np.float64)  # int or float subtraction, then double
    dy = (np.roll(yp, -1) - yp).astype(np.float64)
    seg = np.sqrt(dx * dx + dy * dy)
    length = 0.0
    for v in seg.tolist():
        length += v
    return length


def _smoothed_perimeter(xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getSmoothedPerimeter`` / ``getFloatSmoothedPerimeter`` (freehand ROIs)."""
    n = len(xp)
    f = np.issubdtype(xp.dtype, np.floating)

    def d3(a: np.ndarray, i: int, j: int, k: int) -> float:
        if f:  # (xpf[i] + xpf[j] + xpf[k]) in float, / 3.0 in double
            return float(np.float32(np.float32(a[i] + a[j]) + a[k])) / 3.0
        return float(int(a[i]) + int(a[j]) + int(a[k])) / 3.0

    length = 0.0
    dx = d3(xp, 0, 1, 2) - float(xp[0])
    dy = d3(yp, 0, 1, 2) - float(yp[0])
    length += math.sqrt(dx * dx + dy * dy)
    for i in range(1, n - 2):
        if f:
            dx = float(np.float32(xp[i + 2] - xp[i - 1])) / 3.0
            dy = float(np.float32(yp[i + 2] - yp[i - 1])) / 3.0
        else:
            dx = float(int(xp[i + 2]) - int(xp[i - 1])) / 3.0
            dy = float(int(yp[i + 2]) - int(yp[i - 1])) / 3.0
        length += math.sqrt(dx * dx + dy * dy)
    dx = float(xp[n - 1]) - d3(xp, n - 3, n - 2, n - 1)
    dy = float(yp[n - 1]) - d3(yp, n - 3, n - 2, n - 1)
    length += math.sqrt(dx * dx + dy * dy)
    if f:
        dx = float(np.float32(xp[n - 1] - xp[0]))
        dy = float(np.float32(yp[n - 1] - yp[0]))
    else:
        dx = float(int(xp[n - 1]) - int(xp[0]))
        dy = float(int(yp[n - 1]) - int(yp[0]))
    return length + math.sqrt(dx * dx + dy * dy)


def _uncalibrated_length(kind: int, xp: np.ndarray, yp: np.ndarray) -> float:
    """``PolygonRoi.getUncalibratedLength`` of an area polygon (kind 2 polygon, 3 freehand, 4 traced)
    with integer (``xp``) or float (``xpf``) relative coordinates, before spline fitting."""
    n = len(xp)
    floating = np.issubdtype(xp.dtype, np.floating)
    if kind == 4:  # isTraced(); a float traced ROI has no int coordinates: getTracedPerimeter is NaN
        return math.nan if floating else _traced_perimeter(xp, yp)
    if kind == 2:
        axis = np.all(((np.roll(xp, -1) - xp) == 0) | ((np.roll(yp, -1) - yp) == 0))
        if axis and (not floating or (np.all(xp == np.trunc(xp)) and np.all(yp == np.trunc(yp)))):
            return _traced_perimeter(xp.astype(np.int64), yp.astype(np.int64))
    if n > 2 and kind == 3:
        return _smoothed_perimeter(xp, yp)
    return _polygon_length(xp, yp)


def _spline_second_derivatives(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SplineFitter.initSpline(float[] x, float[] y, n, closed=true)``: extended knots ``xx``, values
    ``yy`` (float32) and second derivatives ``y2`` (double)."""
    n = len(x)
    e = min(_SPLINE_EXTEND, n - 1)
    head = [np.float32(x[n - (e - i + 1)] - x[n - 1]) for i in range(e)]
    tail = [np.float32(np.float32(x[i + 1 - (e + n)] - x[0]) + x[n - 1]) for i in range(e + n, n + 2 * e)]
    xx = np.array([*head, *x, *tail], dtype=np.float32)
    yy = np.concatenate(
        [y[[n - (e - i + 1) for i in range(e)]], y, y[[i + 1 - (e + n) for i in range(e + n, n + 2 * e)]]]
    ).astype(np.float32)
    m = len(xx)
    xd = xx.astype(np.float64)
    yd = yy.astype(np.float64)
    dxf = np.diff(xx).astype(np.float64)  # x[j+1] - x[j] in float
    dx2f = (xx[2:] - xx[:-2]).astype(np.float64)  # x[j+1] - x[j-1] in float
    y2 = [0.0] * m
    u = [0.0] * m
    for j in range(1, m - 1):
        sig = (xd[j] - xd[j - 1]) / (xd[j + 1] - xd[j - 1])
        p = sig * y2[j - 1] + 2.0
        y2[j] = (sig - 1.0) / p
        uj = (yd[j + 1] - yd[j]) / dxf[j] - (yd[j] - yd[j - 1]) / dxf[j - 1]
        u[j] = (6.0 * uj / dx2f[j - 1] - sig * u[j - 1]) / p
    y2[m - 1] = 0.0
    for k in range(m - 2, -1, -1):
        y2[k] = y2[k] * y2[k + 1] + u[k]
    return xx, yy, np.array(y2)


def _eval_spline(xx: np.ndarray, yy: np.ndarray, y2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``SplineFitter.evalSpline(float[] x, float[] y, n, xp)`` for all ``t`` (bisection = searchsorted
    on the strictly increasing knots)."""
    n = len(xx)
    klo = np.clip(np.searchsorted(xx.astype(np.float64), t, side="right") - 1, 0, n - 2)
    khi = klo + 1
    h = (xx[khi] - xx[klo]).astype(np.float64)
    a = (xx[khi].astype(np.float64) - t) / h
    b = (t - xx[klo].astype(np.float64)) / h
    ylo, yhi = yy[klo].astype(np.float64), yy[khi].astype(np.float64)
    val = a * ylo + b * yhi + ((a * a * a - a) * y2[klo] + (b * b * b - b) * y2[khi]) * (h * h) / 6.0
    return np.where(h == 0.0, 0.0, val)


def _fit_spline(xpf: np.ndarray, ypf: np.ndarray, n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """``PolygonRoi.getSpline(n_eval)`` of a closed polygon (float32 relative coordinates): cubic splines
    of x and y over the node positions ``sum sqrt(segment length)`` (float), evaluated at ``n_eval``
    equidistant positions; returns float32 ``(xSpline, ySpline)``."""
    n = len(xpf)
    nodes = np.zeros(n + 1, dtype=np.float32)
    last = np.float32(0.0)
    for i in range(1, n + 1):  # the last node closes the polygon (xpf[n - 1] - xpf[0])
        dx = np.float32(xpf[i] - xpf[i - 1]) if i < n else np.float32(xpf[n - 1] - xpf[0])
        dy = np.float32(ypf[i] - ypf[i - 1]) if i < n else np.float32(ypf[n - 1] - ypf[0])
        d = np.float32(math.sqrt(math.sqrt(float(np.float32(np.float32(dx * dx) + np.float32(dy * dy))))))
        d = max(d, np.float32(0.001))
        last = np.float32(last + d)
        nodes[i] = last
    xs = np.append(xpf[:n], xpf[0]).astype(np.float32)
    ys = np.append(ypf[:n], ypf[0]).astype(np.float32)
    scale = float(last) / float(n_eval - 1)
    t = np.arange(n_eval) * scale
    out = []
    for v in (xs, ys):
        kx, kv, y2 = _spline_second_derivatives(nodes, v)
        out.append(_eval_spline(kx, kv, y2, t).astype(np.float32))
    return out[0], out[1]


def _polygon_roi_mask(
    kind: int,
    xp: np.ndarray,
    yp: np.ndarray,
    base: tuple[float, float],
    bounds: tuple[int, int, int, int],
    spline: bool,
) -> _RoiMask | None:
    """``PolygonRoi.getMask()`` (kind 2 polygon, 3 freehand, 4 traced) from ImageJ's state after
    construction: coordinates relative to ``base`` = ``(getXBase(), getYBase())`` (int ``xp`` or float32
    ``xpf``) and integer ``bounds`` ``(x, y, width, height)``. With ``spline``: ``fitSpline()`` (with
    ``resetSplineFitBoundingRect()``) first, then the spline polygon is filled."""
    if len(xp) == 0:
        return None
    x, y, w, h = bounds
    if not spline:
        if np.issubdtype(xp.dtype, np.floating):
            return x, y, _ij_fill(xp, yp, w, h, base[0] - x, base[1] - y)
        return x, y, _ij_fill(xp, yp, w, h)
    length = _uncalibrated_length(kind, xp, yp)
    n_eval = max(int(length / 2.0) if math.isfinite(length) else 0, 100)
    xs, ys = _fit_spline(xp.astype(np.float32), yp.astype(np.float32), n_eval)
    # resetSplineFitBoundingRect: absolute (float), new bounds, coordinates relative to them (float)
    xs = xs + np.float32(base[0])
    ys = ys + np.float32(base[1])
    bx, by, bw, bh = _float_bounds(xs, ys)
    x, y, w, h = _int_bounds(bx, by, bw, bh)
    xs = xs - np.float32(bx)
    ys = ys - np.float32(by)
    return x, y, _ij_fill(xs, ys, w, h, bx - x, by - y)


def _param_float(roi: Any) -> float:
    """The float stored at header offset 52 (ellipse aspect ratio, rotated-rectangle width)."""
    raw = np.array(
        [int(roi.arrow_style_or_aspect_ratio) & 0xFF, int(roi.arrow_head_size) & 0xFF], dtype=np.uint8
    ).tobytes() + int(roi.rounded_rect_arc_size & 0xFFFF).to_bytes(2, "big")
    return float(np.frombuffer(raw, dtype=">f4")[0])


def _make_relative(xpf: np.ndarray, ypf: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``EllipseRoi/RotatedRectRoi.makePolygonRelative``: integer origin ``FloatPolygon.getBounds()``."""
    x = math.floor(float(np.min(xpf)))
    y = math.floor(float(np.min(ypf)))
    return (xpf - np.float32(x)).astype(np.float32), (ypf - np.float32(y)).astype(np.float32), x, y


def _ellipse_polygon(roi: Any) -> tuple[np.ndarray, np.ndarray]:
    """``EllipseRoi.makeEllipse`` (72 vertices, float32) from the stored end points and aspect ratio."""
    x1, y1, x2, y2 = (float(np.float32(v)) for v in (roi.x1, roi.y1, roi.x2, roi.y2))
    ratio = min(max(_param_float(roi), 0.0), 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    dx, dy = x2 - x1, y2 - y1
    major = math.sqrt(dx * dx + dy * dy)
    minor = major * ratio
    alpha = math.atan2(dy, dx) * 180.0 / math.pi
    xs, ys = [], []
    for i in range(72):
        beta1 = (i * 360.0 / 72.0) / 180.0 * math.pi
        dx = math.cos(beta1) * major / 2.0
        dy = math.sin(beta1) * minor / 2.0
        beta2 = math.atan2(dy, dx)
        rad = math.sqrt(dx * dx + dy * dy)
        beta3 = beta2 + alpha / 180.0 * math.pi
        xs.append(cx + math.cos(beta3) * rad)
        ys.append(cy + math.sin(beta3) * rad)
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def _rotated_rect_polygon(roi: Any) -> tuple[np.ndarray, np.ndarray]:
    """``RotatedRectRoi.makeRectangle`` (5 vertices, float32) from the stored end points and width."""
    x1, y1, x2, y2 = (float(np.float32(v)) for v in (roi.x1, roi.y1, roi.x2, roi.y2))
    width = _param_float(roi)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = float(np.arctan(np.float64(x2 - x1) / np.float64(y2 - y1)))
    wsa = width / 2.0 * math.sin(1.5707963267948966 + angle)
    wca = width / 2.0 * math.cos(1.5707963267948966 + angle)
    xs = [x1 + wsa, x2 + wsa, x2 - wsa, x1 - wsa, x1 + wsa]
    ys = [y1 + wca, y2 + wca, y2 - wca, y1 - wca, y1 + wca]
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def _imagej_roi_mask(roi: Any) -> _RoiMask | None:
    """``RoiDecoder`` + ``Roi.getMask()`` of ImageJ 1.53t for an area ROI read by :mod:`roifile`.

    Returns ``(x, y, mask)``: the boolean mask of the ROI's integer bounds with top-left image pixel
    ``(x, y)`` (may lie partly outside the image), or None for an empty ROI.
    """
    rtype = roi.roitype
    if roi.composite:  # RoiDecoder.getShapeRoi -> new ShapeRoi(float[]) -> getMask
        return _shape_mask(_general_path(roi.multi_coordinates))
    if rtype in (roifile.ROI_TYPE.RECT, roifile.ROI_TYPE.OVAL):
        if roi.subpixelrect:  # new Roi(double x, y, w, h): (int) x, (int) y, (int) ceil(w), (int) ceil(h)
            x, y = int(float(roi.xd)), int(float(roi.yd))
            w, h = math.ceil(float(roi.widthd)), math.ceil(float(roi.heightd))
        else:
            x, y, w, h = int(roi.left), int(roi.top), int(roi.right - roi.left), int(roi.bottom - roi.top)
        w, h = max(w, 1), max(h, 1)  # Roi(int, int, int, int): width < 1 -> 1
        if rtype == roifile.ROI_TYPE.OVAL:
            return x, y, _oval_mask(w, h)
        if roi.rounded_rect_arc_size > 0:
            return _round_rect_mask(x, y, w, h, int(roi.rounded_rect_arc_size))
        return x, y, np.ones((h, w), dtype=bool)
    spline = roi.version >= 218 and bool(roi.options & roifile.ROI_OPTIONS.SPLINE_FIT)
    if rtype == roifile.ROI_TYPE.FREEHAND and roi.subtype in (
        roifile.ROI_SUBTYPE.ELLIPSE,
        roifile.ROI_SUBTYPE.ROTATED_RECT,
    ):
        if roi.subtype == roifile.ROI_SUBTYPE.ELLIPSE:
            xpf, ypf = _ellipse_polygon(roi)
        else:
            xpf, ypf = _rotated_rect_polygon(roi)
        if not (np.all(np.isfinite(xpf)) and np.all(np.isfinite(ypf))):
            return None  # degenerate parameters (e.g. a rotated rectangle of length 0)
        xr, yr, x, y = _make_relative(xpf, ypf)
        # FloatPolygon.getBounds(): (int) (maxX - iMinX + 0.5), maxX - iMinX in float
        w = int(float(np.float32(max(np.float32(np.max(xpf)), _JAVA_FLOAT_MIN) - np.float32(x))) + 0.5)
        h = int(float(np.float32(max(np.float32(np.max(ypf)), _JAVA_FLOAT_MIN) - np.float32(y))) + 0.5)
        return _polygon_roi_mask(3, xr, yr, (float(x), float(y)), (x, y, w, h), spline)
    kind = {roifile.ROI_TYPE.POLYGON: 2, roifile.ROI_TYPE.FREEHAND: 3, roifile.ROI_TYPE.TRACED: 4}[rtype]
    if roi.subpixel_coordinates is not None:  # PolygonRoi(float[], float[], n, type)
        xy = np.asarray(roi.subpixel_coordinates, dtype=np.float32).reshape(-1, 2)
        if len(xy) == 0:
            return None
        bx, by, bw, bh = _float_bounds(xy[:, 0], xy[:, 1])  # finishPolygon
        xr = (xy[:, 0] - np.float32(bx)).astype(np.float32)
        yr = (xy[:, 1] - np.float32(by)).astype(np.float32)
        return _polygon_roi_mask(kind, xr, yr, (bx, by), _int_bounds(bx, by, bw, bh), spline)
    if roi.integer_coordinates is None or len(roi.integer_coordinates) == 0:
        return None
    xy = np.asarray(roi.integer_coordinates, dtype=np.int64).reshape(-1, 2) + np.array([roi.left, roi.top])
    x, y = int(xy[:, 0].min()), int(xy[:, 1].min())  # java.awt.Polygon.getBounds()
    w, h = int(xy[:, 0].max()) - x, int(xy[:, 1].max()) - y
    return _polygon_roi_mask(kind, xy[:, 0] - x, xy[:, 1] - y, (float(x), float(y)), (x, y, w, h), spline)


def _clip_mask(m: _RoiMask | None, shape: tuple[int, int]) -> tuple[int, int, np.ndarray] | None:
    """Part of a ROI mask inside the image: ``(row0, col0, mask)`` or None if it covers no pixel."""
    if m is None:
        return None
    x, y, mask = m
    height, width = shape
    r0, c0 = max(y, 0), max(x, 0)
    r1, c1 = min(y + mask.shape[0], height), min(x + mask.shape[1], width)
    if r1 <= r0 or c1 <= c0:
        return None
    sub = mask[r0 - y : r1 - y, c0 - x : c1 - x]
    if not sub.any():
        return None
    return r0, c0, sub


_REGION_TYPES = {
    roifile.ROI_TYPE.POLYGON,
    roifile.ROI_TYPE.FREEHAND,
    roifile.ROI_TYPE.TRACED,
    roifile.ROI_TYPE.RECT,
    roifile.ROI_TYPE.OVAL,
}
_LABEL_NAME_RE = re.compile(r"^label[\s_-]*(\d+)(?:[\s_-].*)?$", re.IGNORECASE)
_CLASS_NAME_RE = re.compile(r"^(?:[a-z][a-z\s_-]*?)?[\s_-]*(\d+)$", re.IGNORECASE)


def _roi_desc(index: int, roi: Any) -> str:
    return f"ROI #{index + 1} {roi.name!r}" if roi.name else f"ROI #{index + 1}"


def _rasterise_roi(roi: Any, shape: tuple[int, int], path: Path, index: int):
    """Pixel mask of an area ROI in image coordinates (ImageJ 1.53t exactly): (row0, col0, mask) or None."""
    try:
        m = _imagej_roi_mask(roi)
    except (ValueError, IndexError, KeyError) as exc:
        raise DataFileError(path, f"{_roi_desc(index, roi)}: unsupported or corrupt ROI ({exc})") from exc
    return _clip_mask(m, shape)


def _roi_z(roi: Any) -> int | None:
    """0-based z slice of a ROI (hyperstack z position, else stack position), or None."""
    if roi.z_position > 0:
        return int(roi.z_position) - 1
    if roi.position > 0:
        return int(roi.position) - 1
    return None


def read_rois(path: PathLike, shape: Sequence[int]) -> RoiAnnotation:
    """Read ImageJ/Fiji ROIs (``.zip`` ROI set, single ``.roi``, or ImageJ TIFF overlay).

    * Area ROIs (polygon, freehand, traced, rectangle, oval, composite) become instance labels. Label
      ids: if every area ROI is named ``label<id>...`` (as written by :func:`write_rois`) the ids come
      from the names, so ROIs sharing an id form one object (several components, several z slices);
      otherwise each ROI is one object with ids ``1..N`` in ROI order. Overlapping ROIs: later ROIs
      overwrite earlier ones (a warning is logged).
    * ROIs whose name starts with ``ignore`` (case-insensitive) go into the ``ignore`` mask instead
      (area ROIs: their pixels; point ROIs: the pixels under the points). In 3D an ignore ROI without z
      position applies to all slices.
    * Multi-point ROIs become points, one ROI per class: the class is the trailing integer of the ROI
      name if every point ROI's name is like ``class2`` / ``type 3`` / ``2``, else the order of
      appearance (1, 2, ...). ImageJ integer point coordinates are pixel indices; sub-pixel
      coordinates (pixel ``i`` spans ``[i, i+1)``) are shifted by -0.5 to pixel-centre coordinates
      (unless the ROI has ImageJ's draw-offset flag).
    * Line-type ROIs (line, polyline, freeline, angle) and text/image overlays are skipped (warning).

    Rasterisation is ImageJ 1.53t's, pixel for pixel (a port of ``RoiDecoder`` + ``Roi.getMask``; checked
    against masks made by ImageJ 1.53t itself, see ``tests/test_imagej_parity.py``): polygon, freehand,
    traced and composite ROIs with ``PolygonFiller`` (pixel ``(x, y)`` is inside iff its centre ``(x +
    0.5, y + 0.5)`` is inside, even-odd rule; an edge from ``y1`` to ``y2`` covers the rows with ``y1 <
    row + 0.5 <= y2`` and a centre exactly on an edge is inside for a right and outside for a left
    boundary; sub-pixel coordinates in ImageJ's float precision); rectangles and ovals by their integer
    bounds (sub-pixel ones too: ``(int) x``, ``(int) y``, ``ceil(width)``, ``ceil(height)``, at least 1
    pixel), ovals with ``OvalRoi.getMask`` (pixel centre inside the ellipse inscribed in the integer
    bounds); rounded rectangles as the flattened ``java.awt`` round rectangle; spline-fitted ROIs by
    their fitted spline (``PolygonRoi.fitSpline``: ``max(100, length / 2)`` points); ellipse and rotated
    rectangle ROIs from their parameters; curve segments of composite ROIs flattened as by Java
    (``FlatteningPathIterator``, flatness 0.01).
    Everything is clipped to the image.

    3D (``len(shape) == 3``): the slice of each ROI is its hyperstack z position (``roi.z_position``)
    or else its stack position (``roi.position``), 1-based in the file; multi-point ROIs use per-point
    positions when present. An area or point ROI without position raises an error.

    Args:
        path: ROI file.
        shape: Spatial image shape ``(Y, X)`` or ``(Z, Y, X)``.

    Returns:
        :class:`RoiAnnotation` (labels int32, ignore bool, points float64 ``(N, ndim)``, classes int64).

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unreadable file, 3D ROI without / with out-of-range z position, unsupported ROI.
    """
    p = _check_file(path)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) <= 0:
        raise ValueError(f"{p}: shape must be (Y, X) or (Z, Y, X) with positive sizes, got {shape}")
    ndim = len(shape)
    try:
        rois = roifile.roiread(p)
    except Exception as exc:
        raise DataFileError(p, f"cannot read ImageJ ROIs ({type(exc).__name__}: {exc})") from exc
    if isinstance(rois, roifile.ImagejRoi):
        rois = [rois]

    labels = np.zeros(shape, dtype=np.int32)
    ignore = np.zeros(shape, dtype=bool)
    plane_shape = shape[-2:]

    area: list[tuple[int, Any]] = []
    point_rois: list[tuple[int, Any]] = []
    for i, roi in enumerate(rois):
        is_ignore = roi.name.strip().lower().startswith("ignore")
        if roi.subtype in (roifile.ROI_SUBTYPE.TEXT, roifile.ROI_SUBTYPE.IMAGE):
            logger.warning("%s: skipping %s (text/image overlay)", p, _roi_desc(i, roi))
        elif roi.roitype == roifile.ROI_TYPE.POINT:
            if is_ignore:
                for z, pts in _roi_points(roi, ndim, shape, p, i, allow_missing_z=True):
                    idx = np.floor(pts + 0.5).astype(np.int64)
                    inside = np.all((idx >= 0) & (idx < np.array(plane_shape)), axis=1)
                    idx = idx[inside]
                    if z is None:
                        ignore[..., idx[:, 0], idx[:, 1]] = True
                    else:
                        ignore[z, idx[:, 0], idx[:, 1]] = True
            else:
                point_rois.append((i, roi))
        elif roi.composite or roi.roitype in _REGION_TYPES:
            if is_ignore:
                _paint(ignore, roi, True, p, i, plane_shape, allow_missing_z=True)
            else:
                area.append((i, roi))
        else:
            logger.warning(
                "%s: skipping %s of type %s (not an area or point ROI)",
                p,
                _roi_desc(i, roi),
                roi.roitype.name,
            )

    named = [(_LABEL_NAME_RE.match(roi.name.strip()), i, roi) for i, roi in area]
    use_names = bool(named) and all(m is not None for m, _, _ in named)
    overlap = False
    for n, (m, i, roi) in enumerate(named):
        lid = int(m.group(1)) if use_names and m is not None else n + 1
        if lid <= 0 or lid >= 2**31:
            raise DataFileError(p, f"{_roi_desc(i, roi)}: label id {lid} out of range")
        overlap |= _paint(labels, roi, lid, p, i, plane_shape, allow_missing_z=False)
    if overlap:
        logger.warning("%s: area ROIs overlap; later ROIs overwrite earlier ones", p)

    class_matches = [_CLASS_NAME_RE.match(roi.name.strip()) for _, roi in point_rois]
    use_class_names = bool(point_rois) and all(m is not None for m in class_matches)
    all_pts: list[np.ndarray] = []
    all_cls: list[np.ndarray] = []
    for k, (i, roi) in enumerate(point_rois):
        m = class_matches[k]
        cls = int(m.group(1)) if use_class_names and m is not None else k + 1
        for z, pts in _roi_points(roi, ndim, shape, p, i, allow_missing_z=False):
            if ndim == 3:
                pts = np.column_stack([np.full(len(pts), float(z)), pts])
            all_pts.append(pts)
            all_cls.append(np.full(len(pts), cls, dtype=np.int64))
    points = np.concatenate(all_pts) if all_pts else np.zeros((0, ndim), dtype=np.float64)
    classes = np.concatenate(all_cls) if all_cls else np.zeros((0,), dtype=np.int64)
    return RoiAnnotation(labels=labels, ignore=ignore, points=points, classes=classes, path=p)


def _paint(
    target: np.ndarray,
    roi: Any,
    value: Any,
    path: Path,
    index: int,
    plane_shape: tuple[int, int],
    *,
    allow_missing_z: bool,
) -> bool:
    """Paint an area ROI into ``target`` (2D or 3D). Returns True if it overwrote other nonzero values."""
    filled = _rasterise_roi(roi, plane_shape, path, index)
    if filled is None:
        logger.warning("%s: %s covers no pixel of the image", path, _roi_desc(index, roi))
        return False
    r0, c0, mask = filled
    sl = (slice(r0, r0 + mask.shape[0]), slice(c0, c0 + mask.shape[1]))
    if target.ndim == 3:
        z = _roi_z(roi)
        if z is None:
            if not allow_missing_z:
                raise DataFileError(
                    path,
                    f"{_roi_desc(index, roi)} has no z position, needed for a 3D "
                    f"image of shape {target.shape}",
                )
            view = target[(slice(None), *sl)]
            view[:, mask] = value
            return False
        if not 0 <= z < target.shape[0]:
            raise DataFileError(
                path,
                f"{_roi_desc(index, roi)} is on slice {z + 1}, outside the image "
                f"with {target.shape[0]} slices",
            )
        view = target[(z, *sl)]
    else:
        view = target[sl]
    overlap = bool(np.any((view[mask] != 0) & (view[mask] != value))) if target.dtype != np.bool_ else False
    view[mask] = value
    return overlap


def _roi_points(
    roi: Any, ndim: int, shape: tuple[int, ...], path: Path, index: int, *, allow_missing_z: bool
) -> list[tuple[int | None, np.ndarray]]:
    """Points of a multi-point ROI grouped by 0-based z: list of (z or None, (n, 2) float (y, x))."""
    if roi.subpixel_coordinates is not None:
        xy = np.asarray(roi.subpixel_coordinates, dtype=np.float64)
        if not roi.drawoffset:
            xy = xy - 0.5
    else:
        xy = np.asarray(roi.coordinates(), dtype=np.float64)
    yx = xy[:, ::-1].reshape(-1, 2)
    if ndim == 2:
        return [(None, yx)]
    per_point = None
    if roi.counter_positions is not None and len(roi.counter_positions) == len(yx):
        cp = np.asarray(roi.counter_positions, dtype=np.int64)
        if np.all(cp > 0):
            per_point = cp - 1
    if per_point is None:
        z = _roi_z(roi)
        if z is None:
            if allow_missing_z:
                return [(None, yx)]
            raise DataFileError(
                path, f"{_roi_desc(index, roi)} has no z position, needed for a 3D image of shape {shape}"
            )
        per_point = np.full(len(yx), z, dtype=np.int64)
    bad = (per_point < 0) | (per_point >= shape[0])
    if np.any(bad):
        raise DataFileError(
            path,
            f"{_roi_desc(index, roi)} has points on slice {int(per_point[bad][0]) + 1}, "
            f"outside the image with {shape[0]} slices",
        )
    return [(int(z), yx[per_point == z]) for z in np.unique(per_point)]


# ----------------------------------------------------------------------------------------------------
# ImageJ ROIs: writing (traced outlines)
# ----------------------------------------------------------------------------------------------------

# directions in image coordinates (x right, y down), clockwise on screen: E, S, W, N
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)


def _trace_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Outline a 2D pixel set by closed loops along pixel edges.

    Every boundary edge between a pixel of the set and a pixel outside is used exactly once, oriented
    with the set on the right-hand side (clockwise on screen for outer outlines, anticlockwise for
    holes), so the loops fill exactly the set under both the even-odd and the non-zero winding rule with
    ImageJ's pixel-centre rule. At vertices where two pixels touch only diagonally the outline turns so
    that the diagonal pixels stay connected (8-connectivity, like ImageJ's traced ROIs); an 8-connected
    set without holes therefore gives exactly one loop. Only corner vertices are kept.

    Args:
        mask: 2D boolean array.

    Returns:
        Loops as ``(n, 2)`` int64 arrays of ``(x, y)`` corner coordinates in the mask's pixel-corner frame.
    """
    m = np.pad(mask.astype(bool), 1)
    stride = m.shape[1] + 1  # vertex grid width (padded X + 1)
    inner = m[1:-1, 1:-1]
    rr, cc = np.nonzero(inner)
    rr, cc = rr + 1, cc + 1  # padded pixel coordinates
    starts: list[np.ndarray] = []
    dirs: list[np.ndarray] = []
    # top edges (pixel above is outside): (c, r) -> E
    sel = ~m[rr - 1, cc]
    starts.append(rr[sel] * stride + cc[sel])
    dirs.append(np.full(int(sel.sum()), 0))
    # right edges: (c+1, r) -> S
    sel = ~m[rr, cc + 1]
    starts.append(rr[sel] * stride + cc[sel] + 1)
    dirs.append(np.full(int(sel.sum()), 1))
    # bottom edges: (c+1, r+1) -> W
    sel = ~m[rr + 1, cc]
    starts.append((rr[sel] + 1) * stride + cc[sel] + 1)
    dirs.append(np.full(int(sel.sum()), 2))
    # left edges: (c, r+1) -> N
    sel = ~m[rr, cc - 1]
    starts.append((rr[sel] + 1) * stride + cc[sel])
    dirs.append(np.full(int(sel.sum()), 3))
    keys = np.concatenate(starts).tolist()
    dlist = np.concatenate(dirs).tolist()
    out: dict[int, list[int]] = {}
    for k, d in zip(keys, dlist, strict=True):
        out.setdefault(k, []).append(d)
    step = tuple(_DX[d] + _DY[d] * stride for d in range(4))

    loops: list[np.ndarray] = []
    candidates = sorted(out)  # row-major vertex order: each loop starts at its top-left corner
    next_candidate = 0
    while out:
        while candidates[next_candidate] not in out:
            next_candidate += 1
        start = candidates[next_candidate]
        sdirs = out[start]
        sdir = sdirs.pop(0)
        if not sdirs:
            del out[start]
        corners = [start]
        cur, d = start + step[sdir], sdir
        while True:
            if cur == start and sdir in ((d + 3) % 4, d, (d + 1) % 4):
                # closing: prefer the start edge in the same order as any other choice
                cand = next(c for c in ((d + 3) % 4, d, (d + 1) % 4) if c == sdir or c in out.get(cur, ()))
                if cand == sdir:
                    if sdir == d:
                        corners.pop(0)  # start vertex is not a corner
                    break
            options = out.get(cur)
            nd = next(c for c in ((d + 3) % 4, d, (d + 1) % 4) if options is not None and c in options)
            options.remove(nd)
            if not options:
                del out[cur]
            if nd != d:
                corners.append(cur)
            cur, d = cur + step[nd], nd
        arr = np.array(corners, dtype=np.int64)
        loops.append(np.stack([arr % stride - 1, arr // stride - 1], axis=1))
    return loops


def _loops_to_roi(loops: list[np.ndarray], name: str, z: int | None) -> Any:
    """ImageJ ROI from traced loops: TRACED polygon for one loop, composite (shape) ROI otherwise."""
    allpts = np.concatenate(loops)
    left, top = (int(v) for v in allpts.min(axis=0))
    right, bottom = (int(v) for v in allpts.max(axis=0))
    roi = roifile.ImagejRoi()
    roi.name = name
    roi.left, roi.top, roi.right, roi.bottom = left, top, right, bottom
    if z is not None:
        roi.position = z + 1
    if len(loops) == 1:
        roi.roitype = roifile.ROI_TYPE.TRACED
        roi.integer_coordinates = (loops[0] - [left, top]).astype(np.int32)
        roi.n_coordinates = len(loops[0])
    else:
        path: list[float] = []
        for loop in loops:
            path += [0.0, float(loop[0, 0]), float(loop[0, 1])]  # MOVETO
            for x, y in loop[1:].tolist():
                path += [1.0, float(x), float(y)]  # LINETO
            path.append(4.0)  # CLOSE
        roi.roitype = roifile.ROI_TYPE.RECT
        roi.multi_coordinates = np.asarray(path, dtype=np.float32)
        roi.shape_roi_size = len(path)
    return roi


def write_rois(labels: np.ndarray, path: PathLike) -> int:
    """Write instance labels as an ImageJ/Fiji ROI set (``.zip``) that rasterises back exactly.

    One ROI per object (2D) or per object and z slice (3D), in increasing label order, named
    ``label<id>`` (2D) / ``label<id>-z<slice>`` (3D, slice 1-based); 3D ROIs also carry the stack
    position (``roi.position = z + 1``). Outlines follow pixel edges (like ImageJ's Wand "traced"
    selections): an object that is one 8-connected component without holes becomes a TRACED polygon
    ROI; an object with holes or several components becomes one composite (shape) ROI whose sub-paths
    are the outer outlines and the hole outlines, filled by ImageJ with the even-odd rule (the outline
    orientation also makes the non-zero rule give the same result). Filling every ROI with ImageJ's
    pixel-centre rule gives back exactly the object's pixels (no "1 pixel smaller" outlines), so
    ``read_rois(path, labels.shape).labels`` equals ``labels`` (as int32), including touching objects,
    objects at the image border, single pixels, diagonal-only connections and holes. The write is atomic.

    Args:
        labels: ``(Y, X)`` or ``(Z, Y, X)`` non-negative integer labels (< 2**31).
        path: Output ``.zip`` file.

    Returns:
        The number of ROIs written.

    Raises:
        ValueError: Bad label array or a path not ending in ``.zip``.
    """
    p = Path(path)
    if p.suffix.lower() != ".zip":
        raise ValueError(f"{p}: ROI sets must be written as .zip")
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"{p}: labels must be (Y, X) or (Z, Y, X), got shape {lab.shape}")
    lab = _validate_labels(lab, None)
    if lab.size and lab.max() >= 2**31:
        raise ValueError(f"{p}: label ids must be < 2**31")
    if max(lab.shape[-2:]) > 60000:
        raise ValueError(f"{p}: images wider/taller than 60000 pixels cannot be stored as ImageJ ROIs")
    ids, inverse = np.unique(lab, return_inverse=True)
    compact = inverse.reshape(lab.shape)  # values 0..len(ids)-1
    has_background = bool(ids.size) and ids[0] == 0
    shift = 0 if has_background else 1  # find_objects ignores value 0
    objects = ndimage.find_objects(compact + shift) if ids.size else []
    width = max(5, len(str(int(ids[-1])))) if ids.size else 5
    rois = []
    for k in range(1 - shift, len(ids)):
        sl = objects[k + shift - 1]
        lid = int(ids[k])
        obj = compact[sl] == k
        if lab.ndim == 2:
            loops = _trace_loops(obj)
            offset = np.array([sl[1].start, sl[0].start])
            rois.append(_loops_to_roi([lp + offset for lp in loops], f"label{lid:0{width}d}", None))
        else:
            offset = np.array([sl[2].start, sl[1].start])
            for dz in range(obj.shape[0]):
                plane = obj[dz]
                if not plane.any():
                    continue
                z = sl[0].start + dz
                loops = _trace_loops(plane)
                rois.append(
                    _loops_to_roi([lp + offset for lp in loops], f"label{lid:0{width}d}-z{z + 1:04d}", z)
                )
    with atomic_write(p) as tmp:
        roifile.roiwrite(tmp, rois, mode="w")
    return len(rois)


# ----------------------------------------------------------------------------------------------------
# points and tables
# ----------------------------------------------------------------------------------------------------

_AXIS_NAMES = {"z": "z", "y": "y", "x": "x"}
_CLASS_COLUMNS = ("class", "label")


def read_points_csv(
    path: PathLike, spatial_dims: int, *, shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read point annotations from a CSV file.

    With a header (recommended; names case-insensitive, surrounding spaces ignored): columns ``y``,
    ``x`` (and ``z`` in 3D) hold pixel coordinates, an optional ``class`` (or ``label``) column the class
    (default 1); napari's ``axis-0``, ``axis-1``[, ``axis-2``] columns (napari's points CSV, also
    written by :func:`write_points_csv` with ``napari=True``) are accepted as array-order coordinates
    where ``y`` / ``x`` / ``z`` are missing. Other columns (e.g. ``index``, ``y_um``) are ignored.
    Without a header (first row all numeric) the columns are, in order, ``y, x[, class]`` in 2D and
    ``z, y, x[, class]`` in 3D.
    Empty lines and lines starting with ``#`` are skipped.

    Coordinates are in pixels, array order, integer values at pixel centres (a point at ``y = 10``
    lies in row 10; pixel ``i`` spans ``[i - 0.5, i + 0.5)``).

    Args:
        path: CSV file.
        spatial_dims: 2 or 3.
        shape: Optional spatial image shape; points outside ``[-0.5, size - 0.5)`` raise an error.

    Returns:
        ``(points, classes)``: float64 ``(N, spatial_dims)`` array in ``(y, x)`` / ``(z, y, x)`` order and
        int64 ``(N,)`` class indices (non-negative).

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Empty file, missing columns, non-numeric or non-finite values, non-integer or
            negative classes, or a point outside the image (message names file, line and point).
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    p = _check_file(path)
    axes = ("z", "y", "x")[3 - spatial_dims :]
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [(i + 1, row) for i, row in enumerate(csv.reader(fh))]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(p, f"cannot read CSV ({type(exc).__name__}: {exc})") from exc
    rows = [(n, [c.strip() for c in r]) for n, r in rows if r and any(c.strip() for c in r)]
    rows = [(n, r) for n, r in rows if not r[0].startswith("#")]
    if not rows:
        raise DataFileError(p, "CSV file has no header and no rows")

    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    header_line, first = rows[0]
    if all(is_number(c) for c in first if c != ""):
        ncol = len(first)
        if ncol not in (spatial_dims, spatial_dims + 1):
            raise DataFileError(
                p,
                f"headerless CSV must have {spatial_dims} or {spatial_dims + 1} columns "
                f"({', '.join(axes)}[, class]), found {ncol} on line {header_line}",
            )
        coord_cols = list(range(spatial_dims))
        class_col = spatial_dims if ncol == spatial_dims + 1 else None
        data = rows
    else:
        names = [c.lower() for c in first]
        coord_cols = []
        for k, ax in enumerate(axes):
            if ax in names:
                coord_cols.append(names.index(ax))
            elif f"axis-{k}" in names:
                coord_cols.append(names.index(f"axis-{k}"))
            else:
                raise DataFileError(p, f"CSV header {first} has no column {ax!r} (need {', '.join(axes)})")
        class_col = next((names.index(c) for c in _CLASS_COLUMNS if c in names), None)
        data = rows[1:]

    points = np.zeros((len(data), spatial_dims), dtype=np.float64)
    classes = np.ones(len(data), dtype=np.int64)
    for k, (line, row) in enumerate(data):
        try:
            vals = [float(row[c]) for c in coord_cols]
            cls = float(row[class_col]) if class_col is not None and row[class_col] != "" else 1.0
        except (ValueError, IndexError) as exc:
            raise DataFileError(p, f"line {line}: invalid or missing value in row {row} ({exc})") from exc
        if not all(math.isfinite(v) for v in vals):
            raise DataFileError(p, f"line {line}: non-finite coordinate in row {row}")
        if not math.isfinite(cls) or cls != int(cls) or cls < 0:
            raise DataFileError(
                p, f"line {line}: class must be a non-negative integer, got {row[class_col]!r}"
            )
        points[k] = vals
        classes[k] = int(cls)
        if shape is not None:
            _check_point_inside(points[k], shape, p, f"line {line}")
    return points, classes


def _check_point_inside(point: np.ndarray, shape: Sequence[int], path: Path, where: str) -> None:
    shp = tuple(int(s) for s in shape)
    if len(shp) != len(point):
        raise ValueError(f"{path}: shape {shp} does not match {len(point)}-dimensional points")
    for v, s in zip(point.tolist(), shp, strict=True):
        if not -0.5 <= v < s - 0.5:
            raise DataFileError(
                path, f"{where}: point {tuple(point.tolist())} is outside the image of shape {shp}"
            )


def write_points_csv(
    path: PathLike,
    points: np.ndarray,
    classes: np.ndarray | Sequence[int] | None = None,
    element_size: Sequence[float] | None = None,
    *,
    napari: bool = False,
) -> None:
    """Write points as CSV readable by :func:`read_points_csv` (atomic).

    Columns: ``z`` (3D), ``y``, ``x`` (pixels, array order), ``class``, and with ``element_size`` also
    ``z_um`` (3D), ``y_um``, ``x_um`` (micrometres, ``pixel * element_size``). Values are written with
    full float precision.

    With ``napari=True`` the table starts with the columns of napari's points CSV format, ``index``
    (0, 1, ...), ``axis-0``, ``axis-1`` (and ``axis-2`` in 3D), the same coordinates in array order, so
    that napari's built-in reader (``napari_builtins`` ``csv_to_layer_data``: a header containing
    ``axis-0`` and ``axis-1``, ``index`` first) opens the file as a Points layer as it is; the other
    columns (``y``, ``x``, ``class``, ...) become point features. :func:`read_points_csv` reads both
    layouts (and files written by napari).

    Args:
        path: Output ``.csv`` file.
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` coordinates in pixels.
        classes: ``(N,)`` integer classes, default all 1.
        element_size: Voxel size in µm per spatial axis, or None.
        napari: Also write napari's ``index, axis-0, axis-1[, axis-2]`` columns (first).
    """
    p = Path(path)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        if pts.size == 0:
            pts = pts.reshape(0, 2 if element_size is None else len(element_size))
        else:
            raise ValueError(f"{p}: points must be (N, 2) or (N, 3), got shape {pts.shape}")
    ndim = pts.shape[1]
    cls = np.ones(len(pts), dtype=np.int64) if classes is None else np.asarray(classes).astype(np.int64)
    if cls.shape != (len(pts),):
        raise ValueError(f"{p}: classes must have shape ({len(pts)},), got {cls.shape}")
    axes = ("z", "y", "x")[3 - ndim :]
    napari_axes = [f"axis-{k}" for k in range(ndim)] if napari else []
    fields = (["index", *napari_axes] if napari else []) + [*axes, "class"]
    if element_size is not None:
        es = tuple(float(s) for s in element_size)
        if len(es) != ndim:
            raise ValueError(f"{p}: element_size {es} does not match {ndim}-dimensional points")
        fields += [f"{a}_um" for a in axes]
    rows = []
    for k in range(len(pts)):
        row: dict[str, Any] = {}
        if napari:
            row["index"] = k
            row.update({a: repr(float(v)) for a, v in zip(napari_axes, pts[k], strict=True)})
        row.update({a: repr(float(v)) for a, v in zip(axes, pts[k], strict=True)})
        row["class"] = int(cls[k])
        if element_size is not None:
            row.update({f"{a}_um": repr(float(v) * s) for a, v, s in zip(axes, pts[k], es, strict=True)})
        rows.append(row)
    write_csv(p, rows, fieldnames=fields)


def write_csv(
    path: PathLike, rows: Sequence[Mapping[str, Any]], *, fieldnames: Sequence[str] | None = None
) -> None:
    """Write a list of dicts as CSV with a header row (atomic).

    Args:
        path: Output file.
        rows: One mapping per row. Missing keys are written as empty cells.
        fieldnames: Column order; default: keys in order of first appearance over all rows. With no rows
            and no field names an empty file is written.
    """
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(str(key), None)
        fieldnames = list(seen)
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        if fieldnames:
            writer = csv.DictWriter(fh, fieldnames=list(fieldnames), restval="", extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow({str(k): v for k, v in row.items()})


# ----------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------


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
        stem = _stem(f, sufs)
        if stem in found:
            raise DataFileError(f, f"has the same stem {stem!r} as {found[stem]}; cannot pair unambiguously")
        found[stem] = f
    return found


# ----------------------------------------------------------------------------------------------------
# lazy images and zarr arrays (out-of-core prediction), point ROIs, reading tables
# ----------------------------------------------------------------------------------------------------

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


def _tiff_meta(tif: Any) -> dict[str, Any]:
    page = tif.pages[0]
    return {
        "imagej": tif.imagej_metadata if tif.is_imagej else None,
        "ome": tif.ome_metadata if tif.is_ome else None,
        "xres": _tag_value(page, "XResolution"),
        "yres": _tag_value(page, "YResolution"),
    }


def _lazy_order(
    axes: str, shape: Sequence[int], *, imagej: bool, spatial_dims: int | None
) -> tuple[list[int], bool] | None:
    """(stored axis per view axis, add channel) for a channel-first view, or None if not simple."""
    axes = axes.upper()
    if len(axes) != len(shape) or len(set(axes)) != len(axes):
        return None
    if imagej and axes.count("I") == 1 and "Z" not in axes:
        axes = axes.replace("I", "Z")
    keep = [i for i, a in enumerate(axes) if a in "YX" or shape[i] != 1]
    kept = "".join(axes[i] for i in keep)
    if "Y" not in kept or "X" not in kept or any(a not in "CSZYX" for a in kept):
        return None
    if "C" in kept and "S" in kept:
        return None
    kept = kept.replace("S", "C")
    if spatial_dims == 2 and "Z" in kept:
        if "C" in kept:
            return None
        kept = kept.replace("Z", "C")
    elif spatial_dims == 3 and "Z" not in kept:
        if "C" not in kept:
            return None
        kept = kept.replace("C", "Z")
    order = [keep[kept.index(a)] for a in "CZYX" if a in kept]
    return order, "C" not in kept


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
        lazy = _lazy_order(axes, shape, imagej=False, spatial_dims=spatial_dims)
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
    p = _check_file(p)
    suffix = _suffix(p)
    if suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise DataFileError(p, f"cannot read .npy ({type(exc).__name__}: {exc})") from exc
        if arr.size == 0:
            raise DataFileError(p, f"image has no pixels (shape {arr.shape})")
        return ImageData(array=_layout_from_shape(arr, spatial_dims, p), element_size=None, path=p)
    if suffix not in _TIFF_SUFFIXES:
        return read_image(p, spatial_dims=spatial_dims)
    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series:
                raise DataFileError(p, "TIFF contains no image series")
            series = tif.series[0]
            axes, shape = str(series.axes), tuple(int(s) for s in series.shape)
            mappable = series.dataoffset is not None
            meta = _tiff_meta(tif)
    except DataFileError:
        raise
    except Exception as exc:
        raise DataFileError(p, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    if math.prod(shape) == 0:
        raise DataFileError(p, f"image has no pixels (shape {shape})")
    imagej = meta["imagej"] is not None
    out: Any = None
    if mappable:
        try:
            arr = tifffile.memmap(p, mode="r")
        except Exception:  # not memory-mappable after all: fall back to zarr
            arr = None
        if arr is not None:
            out = _layout_from_axes(
                arr, axes, imagej=imagej, spatial_dims=spatial_dims, path=p, drop_constant_alpha=True
            )
            if out is None:
                out = _layout_from_shape(arr, spatial_dims, p)
    if out is None:
        lazy = _lazy_order(axes, shape, imagej=imagej, spatial_dims=spatial_dims)
        if lazy is None:
            logger.info("%s: axes %r cannot be read lazily; reading the whole image", p, axes)
            return read_image(p, spatial_dims=spatial_dims)
        import zarr

        try:
            store = tifffile.imread(p, aszarr=True, series=0, level=0)
            out = ChannelFirstView(zarr.open(store, mode="r"), *lazy)
        except Exception as exc:
            raise DataFileError(p, f"cannot open TIFF as zarr ({type(exc).__name__}: {exc})") from exc
    return ImageData(array=out, element_size=_tiff_element_size(meta, out.ndim - 1, p), path=p)


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
    import shutil

    import zarr

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = final.parent / f".{final.name}.{token}.tmp"
    try:
        arr = zarr.open_array(
            str(tmp),
            mode="w",
            shape=tuple(int(s) for s in shape),
            chunks=tuple(int(c) for c in chunks),
            dtype=dtype,
            fill_value=0,
        )
        if attrs:
            arr.attrs.update(dict(attrs))
        yield arr
        if final.exists():
            old = final.parent / f".{final.name}.{token}.old"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            raise OSError(
                errno.ENOSPC, f"{final}: disk full (no space left on the device); nothing written"
            ) from e
        raise


def write_point_rois(
    points: np.ndarray, path: PathLike, classes: np.ndarray | Sequence[int] | None = None
) -> int:
    """Write points as an ImageJ/Fiji ROI set (``.zip``) of multi-point ROIs, one per class (atomic).

    ROIs are named ``class<c>`` (so :func:`read_rois` gives the classes back) and use sub-pixel
    coordinates (ImageJ pixel ``i`` spans ``[i, i + 1)``, so a pixel-centre point ``y`` is stored as
    ``y + 0.5``). 3D points carry their slice (``z`` rounded to the nearest slice) as per-point stack
    positions. ``read_rois(path, shape).points`` gives the points back (``z`` rounded, float32 precision).
    No points: an empty ROI set.

    Args:
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` coordinates in pixels.
        path: Output ``.zip`` file.
        classes: ``(N,)`` integer classes (>= 1), default all 1.

    Returns:
        The number of ROIs written.
    """
    p = Path(path)
    if p.suffix.lower() != ".zip":
        raise ValueError(f"{p}: ROI sets must be written as .zip")
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"{p}: points must be (N, 2) or (N, 3), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{p}: points must be finite")
    cls = np.ones(len(pts), dtype=np.int64) if classes is None else np.asarray(classes).astype(np.int64)
    if cls.shape != (len(pts),):
        raise ValueError(f"{p}: classes must have shape ({len(pts)},), got {cls.shape}")
    rois = []
    for c in np.unique(cls):
        sel = pts[cls == c]
        xy = sel[:, [-1, -2]] + 0.5
        roi = roifile.ImagejRoi.frompoints(xy, name=f"class{int(c)}")
        roi.roitype = roifile.ROI_TYPE.POINT
        roi.options = roifile.ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        if pts.shape[1] == 3:
            z = np.maximum(np.floor(sel[:, 0] + 0.5), 0).astype(np.uint32)
            roi.counters = np.zeros(len(sel), dtype=np.uint8)
            roi.counter_positions = z + 1
        rois.append(roi)
    with atomic_write(p) as tmp:
        roifile.roiwrite(tmp, rois, mode="w")
    return len(rois)


def read_csv(path: PathLike) -> list[dict[str, str]]:
    """Read a CSV file with a header row (as written by :func:`write_csv`) as a list of dicts of strings.

    An empty file gives an empty list.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: Unreadable file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(p, f"cannot read CSV ({type(exc).__name__}: {exc})") from exc
