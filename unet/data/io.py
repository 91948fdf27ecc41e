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

ImageJ ROI rasterisation (see :func:`read_rois`) reproduces ImageJ's ``PolygonFiller``: pixel
``(x, y)`` belongs to a polygon iff its centre ``(x + 0.5, y + 0.5)`` is inside (even-odd rule; a
centre exactly on an edge is inside for a right boundary and outside for a left boundary). Rectangles
are the integer rectangle, ovals use ImageJ's ``OvalRoi.getMask`` (pixel centre inside the inscribed
ellipse). :func:`write_rois` writes outlines traced along pixel edges, so that
``read_rois(write_rois(labels))`` reproduces ``labels`` exactly.
"""

from __future__ import annotations

import contextlib
import csv
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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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


def _fill_polygons(loops: Sequence[np.ndarray], shape: tuple[int, int]) -> tuple[int, int, np.ndarray] | None:
    """Rasterise closed polygons like ImageJ's PolygonFiller (pixel centres, even-odd rule).

    Args:
        loops: Polygons as ``(n, 2)`` arrays of ``(x, y)`` vertex coordinates (pixel-corner
            coordinates, pixel ``(x, y)`` spans ``[x, x+1) x [y, y+1)``); each is closed implicitly.
        shape: ``(Y, X)`` size of the image; the result is clipped to it.

    Returns:
        ``(row0, col0, mask)`` with the boolean mask of the bounding box whose top-left pixel is
        ``(row0, col0)``, or None if no pixel is covered.
    """
    height, width = shape
    segs = []
    for pts in loops:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        segs.append(np.concatenate([pts, np.roll(pts, -1, axis=0)], axis=1))
    if not segs:
        return None
    e = np.concatenate(segs)
    e = e[e[:, 1] != e[:, 3]]  # horizontal edges never cross a row centre
    if not len(e):
        return None
    swap = e[:, 1] > e[:, 3]
    e[swap] = e[swap][:, [2, 3, 0, 1]]
    xa, ya, xb, yb = e.T
    slope = (xb - xa) / (yb - ya)
    # row r is crossed iff ya <= r + 0.5 < yb  (ImageJ: y1 = ceil(ya - 0.5), active while r < ceil(yb - 0.5))
    r0 = np.clip(np.ceil(ya - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(yb - 0.5), 0, height).astype(np.int64)
    counts = np.maximum(r1 - r0, 0)
    total = int(counts.sum())
    if total == 0:
        return None
    idx = np.repeat(np.arange(len(e)), counts)
    starts = np.cumsum(counts) - counts
    rows = r0[idx] + (np.arange(total) - starts[idx])
    # ImageJ adds 1e-8: a centre exactly on an edge is outside at left and inside at right boundaries
    xs = xa[idx] + (rows + 0.5 - ya[idx]) * slope[idx] + 1e-8
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    if len(rows) % 2 or np.any(rows[0::2] != rows[1::2]):
        raise ValueError("polygon is not closed")  # cannot happen for closed loops
    rr = rows[0::2]
    # pixel x is filled iff x_left < x + 0.5 <= x_right  <=>  floor(x_left + .5) <= x < floor(x_right + .5)
    c0 = np.clip(np.floor(xs[0::2] + 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.floor(xs[1::2] + 0.5), 0, width).astype(np.int64)
    ok = c1 > c0
    rr, c0, c1 = rr[ok], c0[ok], c1[ok]
    if not len(rr):
        return None
    row0, col0 = int(rr.min()), int(c0.min())
    h, w = int(rr.max()) - row0 + 1, int(c1.max()) - col0
    diff = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(diff, (rr - row0, c0 - col0), 1)
    np.add.at(diff, (rr - row0, c1 - col0), -1)
    return row0, col0, np.cumsum(diff, axis=1)[:, :w] > 0


def _fill_rect(left: float, top: float, right: float, bottom: float, shape: tuple[int, int]):
    height, width = shape
    r0, r1 = int(np.clip(top, 0, height)), int(np.clip(bottom, 0, height))
    c0, c1 = int(np.clip(left, 0, width)), int(np.clip(right, 0, width))
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, np.ones((r1 - r0, c1 - c0), dtype=bool)


def _fill_oval(left: float, top: float, right: float, bottom: float, shape: tuple[int, int]):
    """ImageJ OvalRoi.getMask: pixel centre inside the ellipse inscribed in the bounds (<= 1)."""
    height, width = shape
    a, b = (right - left) / 2.0, (bottom - top) / 2.0
    if a <= 0 or b <= 0:
        return None
    r0, r1 = int(max(math.floor(top), 0)), int(min(math.ceil(bottom), height))
    c0, c1 = int(max(math.floor(left), 0)), int(min(math.ceil(right), width))
    if r1 <= r0 or c1 <= c0:
        return None
    yy = (np.arange(r0, r1) + 0.5 - (top + b))[:, None]
    xx = (np.arange(c0, c1) + 0.5 - (left + a))[None, :]
    mask = xx * xx / (a * a) + yy * yy / (b * b) <= 1.0
    if not mask.any():
        return None
    return r0, c0, mask


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
    """Pixel mask of an area ROI in image coordinates: (row0, col0, mask) or None."""
    rtype = roi.roitype
    if roi.composite:
        try:
            loops = roi.coordinates(multi=True)
        except (NotImplementedError, RuntimeError) as exc:
            raise DataFileError(path, f"{_roi_desc(index, roi)}: unsupported composite ROI ({exc})") from exc
        return _fill_polygons(loops, shape)
    if rtype == roifile.ROI_TYPE.RECT:
        if roi.rounded_rect_arc_size:
            logger.warning(
                "%s: %s is a rounded rectangle; rasterised as a plain rectangle", path, _roi_desc(index, roi)
            )
        if roi.subpixelrect:
            x, y, w, h = roi.xd, roi.yd, roi.widthd, roi.heightd
            corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
            return _fill_polygons([corners], shape)
        return _fill_rect(roi.left, roi.top, roi.right, roi.bottom, shape)
    if rtype == roifile.ROI_TYPE.OVAL:
        if roi.subpixelrect:
            return _fill_oval(roi.xd, roi.yd, roi.xd + roi.widthd, roi.yd + roi.heightd, shape)
        return _fill_oval(roi.left, roi.top, roi.right, roi.bottom, shape)
    if roi.options & roifile.ROI_OPTIONS.SPLINE_FIT:
        logger.warning(
            "%s: %s is spline-fitted; rasterised from its control polygon", path, _roi_desc(index, roi)
        )
    return _fill_polygons([roi.coordinates()], shape)


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

    Rasterisation follows ImageJ exactly for polygon-type and composite ROIs (``PolygonFiller``: pixel
    ``(x, y)`` is inside iff its centre ``(x + 0.5, y + 0.5)`` is inside the polygon, even-odd rule,
    centres exactly on an edge count as inside for right and outside for left boundaries; this holds for
    integer and sub-pixel coordinates). Rectangles: the integer rectangle ``left <= x < right``,
    ``top <= y < bottom`` (sub-pixel rectangles as polygons). Ovals: ImageJ's ``OvalRoi.getMask``,
    pixel centre inside the ellipse inscribed in the bounding rectangle (boundary included).
    Deviations from ImageJ: spline-fitted ROIs are filled from their control polygon (ImageJ fills the
    spline), rounded rectangles as plain rectangles, composite ROIs with curve segments are rejected.
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
    (default 1); napari's ``axis-0``, ``axis-1``[, ``axis-2``] columns are accepted as array-order
    coordinates. Other columns (e.g. ``index``, ``y_um``) are ignored. Without a header (first row all
    numeric) the columns are, in order, ``y, x[, class]`` in 2D and ``z, y, x[, class]`` in 3D.
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
) -> None:
    """Write points as CSV readable by :func:`read_points_csv` (atomic).

    Columns: ``z`` (3D), ``y``, ``x`` (pixels, array order), ``class``, and with ``element_size`` also
    ``z_um`` (3D), ``y_um``, ``x_um`` (micrometres, ``pixel * element_size``). Values are written with
    full float precision.

    Args:
        path: Output ``.csv`` file.
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` coordinates in pixels.
        classes: ``(N,)`` integer classes, default all 1.
        element_size: Voxel size in µm per spatial axis, or None.
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
    fields = [*axes, "class"]
    if element_size is not None:
        es = tuple(float(s) for s in element_size)
        if len(es) != ndim:
            raise ValueError(f"{p}: element_size {es} does not match {ndim}-dimensional points")
        fields += [f"{a}_um" for a in axes]
    rows = []
    for k in range(len(pts)):
        row: dict[str, Any] = {a: repr(float(v)) for a, v in zip(axes, pts[k], strict=True)}
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
