"""File input/output: images, label images, ImageJ ROIs, point annotations, tables, zarr arrays.

The package opens the project's data files; everything else works on in-memory arrays. One module per
format or concern:

* :mod:`~unet.io.common`: :class:`DataFileError`, file checks, atomic writes, stale temporaries.
* :mod:`~unet.io.images`: TIFF / PNG / JPEG / BMP / ``.npy`` images and their element size; TIFF writing.
* :mod:`~unet.io.layout`: the axis layout (channel-first) of a stored array.
* :mod:`~unet.io.lazy`: images read window by window (memory maps, zarr views); zarr outputs.
* :mod:`~unet.io.labels`: label images.
* :mod:`~unet.io.rois`, :mod:`~unet.io.roi_masks`, :mod:`~unet.io.roi_geometry`: reading ImageJ ROIs,
  rasterised as ImageJ 1.53t does; :mod:`~unet.io.roi_write`: writing them.
* :mod:`~unet.io.tables`: point CSVs and plain CSV tables.
* :mod:`~unet.io.pairing`: pairing image files with annotation files.

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
type (sub-pixel, rounded, spline-fitted and composite ROIs included). :func:`write_rois` writes outlines
traced along pixel edges, so that ``read_rois(write_rois(labels))`` reproduces ``labels`` exactly.
"""

from __future__ import annotations

from unet.io.common import (
    DataFileError,
    PathLike,
    atomic_write,
    clean_stale_temporaries,
    glob_escape,
    read_text,
    write_text,
)
from unet.io.images import IMAGE_SUFFIXES, ImageData, read_image, write_tiff
from unet.io.labels import read_labels
from unet.io.lazy import ZARR_SUFFIX, ChannelFirstView, atomic_zarr, create_zarr, open_image, open_zarr
from unet.io.pairing import ANNOTATION_SUFFIXES, file_stem, find_pairs
from unet.io.roi_write import (
    check_roi_plane,
    label_digits,
    outline_roi,
    roi_set_path,
    write_point_rois,
    write_roi_set,
    write_rois,
)
from unet.io.rois import RoiAnnotation, read_rois, roi_extent
from unet.io.tables import csv_spatial_dims, read_csv, read_points_csv, write_csv, write_points_csv

__all__ = [
    "ANNOTATION_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ZARR_SUFFIX",
    "ChannelFirstView",
    "DataFileError",
    "ImageData",
    "PathLike",
    "RoiAnnotation",
    "atomic_write",
    "atomic_zarr",
    "check_roi_plane",
    "clean_stale_temporaries",
    "create_zarr",
    "csv_spatial_dims",
    "file_stem",
    "find_pairs",
    "glob_escape",
    "label_digits",
    "open_image",
    "open_zarr",
    "outline_roi",
    "read_csv",
    "read_image",
    "read_labels",
    "read_points_csv",
    "read_rois",
    "read_text",
    "roi_extent",
    "roi_set_path",
    "write_csv",
    "write_point_rois",
    "write_points_csv",
    "write_roi_set",
    "write_rois",
    "write_text",
    "write_tiff",
]
