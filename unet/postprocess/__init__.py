"""Post-processing of U-Net outputs: class maps, instances, detection points and morphometry (Falk 2019, M6).

The U-Net predicts per-pixel class probabilities ``(K, Y, X)`` or ``(K, Z, Y, X)`` (class ``0`` =
background, ``1..K-1`` = foreground classes). This package turns them into

* a class map (:func:`class_map`, arg-max over classes; ties go to the lower class, i.e. background);
* instances (:func:`instance_labels`): connected components of each foreground class with the full
  neighbourhood by default (8-neighbourhood in 2D as in Falk 2019 M6.1, 26-neighbourhood in 3D), or split
  by a seeded watershed (:func:`watershed_instances`); both with the class map in
  :mod:`unet.postprocess.instances`;
* detections (:func:`detection_points`): one point per connected component (Falk 2019: "detection = one
  point per cell"), the centroid of the component, weighted by the foreground probability when
  probabilities are given, and :func:`label_centroids` of annotations (:mod:`unet.postprocess.points`);
* per-object measurements (:func:`measure_objects`) and per-image summaries (:func:`summarize`), as rows
  (``dict``) ready for :func:`unet.io.write_csv` (:mod:`unet.postprocess.measure`, the 2D perimeter
  estimators in :mod:`unet.postprocess.perimeters`).

The options shared by all (element size, neighbourhood, size threshold) are checked in
:mod:`unet.postprocess.checks`.

Conventions (shared with :mod:`unet.io`): spatial arrays are ``(Y, X)`` or ``(Z, Y, X)``; images are
channel-first ``(C, *S)``; ``element_size`` is the physical pixel/voxel extent in micrometres per spatial
axis in array order (``(y, x)`` or ``(z, y, x)``); points are float ``(N, ndim)`` in array index order and
pixel units, integer values being pixel centres.

Inputs to :func:`instance_labels` / :func:`detection_points` (``classes_or_probs``) are interpreted by
dtype: a *floating* array is a probability map ``(K, *S)`` with ``K >= 2``; an *integer* array is a
class map ``(*S)`` (``0`` = background); a *boolean* array is a binary foreground mask (class 1).

Everything is vectorised with ``numpy.bincount`` / ``scipy.ndimage`` over the foreground pixels (no Python
loop over objects), so thousands of objects in a 2048 x 2048 image are measured in a fraction of a second.
"""

from unet.postprocess.checks import ElementSize
from unet.postprocess.instances import class_map, instance_labels, mask_to_instances, watershed_instances
from unet.postprocess.measure import measure_objects, object_rows, summarize
from unet.postprocess.points import detection_points, label_centroids

__all__ = [
    "ElementSize",
    "class_map",
    "detection_points",
    "instance_labels",
    "label_centroids",
    "mask_to_instances",
    "measure_objects",
    "object_rows",
    "summarize",
    "watershed_instances",
]
