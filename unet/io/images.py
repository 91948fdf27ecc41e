"""Images: reading TIFF / PNG / JPEG / BMP / ``.npy`` as channel-first arrays with their element size, and
writing ImageJ / OME TIFFs.

Images are channel-first, ``(C, Y, X)`` or ``(C, Z, Y, X)``, in the stored dtype; the layout comes from
:mod:`unet.io.layout`. ``element_size`` is the voxel size in micrometres per spatial axis, ``(y, x)`` or
``(z, y, x)``, or ``None`` when unknown.
"""

from __future__ import annotations

import contextlib
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile
from PIL import Image

from unet.io.common import DataFileError, PathLike, atomic_write, check_file, lower_suffix
from unet.io.layout import layout_from_axes, layout_from_shape, layout_with_channel_axis

logger = logging.getLogger(__name__)

#: File suffixes read by :func:`read_image` / :func:`read_labels` (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy")

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

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
    p = check_file(path)
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims!r}")
    suffix = lower_suffix(p)
    element_size: tuple[float, ...] | None = None
    imagej = False
    may_have_alpha = False  # RGBA samples axis whose constant alpha is dropped
    if suffix in TIFF_SUFFIXES:
        tiff = read_tiff(p)
        arr, axes, meta = tiff.array, tiff.axes, tiff.meta
        imagej = meta["imagej"] is not None
        may_have_alpha = True
    elif suffix in PIL_SUFFIXES:
        arr = read_pil(p, labels=False)
        axes = "YX" if arr.ndim == 2 else "YXS"
        meta = None
        may_have_alpha = True
    elif suffix == ".npy":
        arr = read_npy(p)
        axes = None
        meta = None
    else:
        raise DataFileError(
            p, f"unsupported image format {suffix!r} (supported: {', '.join(IMAGE_SUFFIXES)})"
        )

    if arr.size == 0:
        raise DataFileError(p, f"image has no pixels (shape {arr.shape})")

    if channel_axis is not None:
        out = layout_with_channel_axis(arr, channel_axis, spatial_dims, p)
    else:
        out = None
        if axes is not None:
            out = layout_from_axes(
                arr,
                axes,
                imagej=imagej,
                spatial_dims=spatial_dims,
                path=p,
                drop_constant_alpha=may_have_alpha,
            )
        if out is None:
            out = layout_from_shape(arr, spatial_dims, p)

    if meta is not None:
        element_size = tiff_element_size(meta, out.ndim - 1, p)
    return ImageData(array=out, element_size=element_size, path=p)


class Tiff(NamedTuple):
    """What :func:`read_tiff` found in a TIFF's first series."""

    array: np.ndarray | None  #: the pixels (None unless asked for)
    axes: str  #: tifffile's axes letters of the series
    shape: tuple[int, ...]
    mappable: bool  #: stored contiguously and uncompressed (``tifffile.memmap`` can map it)
    meta: dict[str, Any]  #: ``imagej`` / ``ome`` metadata and the ``xres`` / ``yres`` resolution tags


def read_tiff(path: Path, *, pixels: bool = True) -> Tiff:
    """The first series of a TIFF: its axes, shape and metadata, and its pixels if ``pixels``.

    Raises:
        DataFileError: Corrupt file or no image series (tifffile / imagecodecs raise many types).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise DataFileError(path, "TIFF contains no image series")
            series = tif.series[0]
            page = tif.pages[0]
            short = _missing_bytes(tif, series, path.stat().st_size)
            if short:
                raise DataFileError(path, short)
            return Tiff(
                array=series.asarray() if pixels else None,
                axes=str(series.axes),
                shape=tuple(int(s) for s in series.shape),
                mappable=series.dataoffset is not None,
                meta={
                    "imagej": tif.imagej_metadata if tif.is_imagej else None,
                    "ome": tif.ome_metadata if tif.is_ome else None,
                    "xres": _tag_value(page, "XResolution"),
                    "yres": _tag_value(page, "YResolution"),
                },
            )
    except DataFileError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many exception types
        raise DataFileError(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc


def _missing_bytes(tif: Any, series: Any, size: int) -> str | None:
    """Why a TIFF is truncated, from its header alone: the image data of the first series (contiguous: its
    offset + size; else the strips or tiles of its last page) must end within the file. None if it does
    (or if the header cannot tell)."""
    try:
        if series.dataoffset is not None:
            end = int(series.dataoffset) + int(series.nbytes)
        else:
            last = series.pages[-1] if len(series.pages) else None
            if last is None or not getattr(last, "dataoffsets", None):
                return None
            end = max(int(o) + int(c) for o, c in zip(last.dataoffsets, last.databytecounts))
    except Exception:  # a header tifffile cannot describe: reading the pixels will tell
        return None
    if end > size:
        return f"truncated: the file has {size} bytes, its image data needs {end} (an interrupted copy?)"
    return None


def _tag_value(page: Any, name: str) -> Any:
    tag = page.tags.get(name)
    return None if tag is None else tag.value


def read_pil(path: Path, *, labels: bool) -> np.ndarray:
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


def read_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` array (no pickles); ``mmap``: a read-only memory map instead of loading it."""
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise DataFileError(path, f"cannot read .npy ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DataFileError(path, "not a plain .npy array")
    return arr


def _unit_scale(unit: Any) -> float | None:
    """Micrometres per ``unit`` or None if the unit is missing/unknown/'pixel'."""
    if unit is None:
        return None
    text = str(unit).strip()
    if "\\u" in text:
        with contextlib.suppress(UnicodeDecodeError):
            text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
    return _UNIT_TO_UM.get(text.lower())


def tiff_element_size(meta: Mapping[str, Any], ndim: int, path: Path) -> tuple[float, ...] | None:
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
