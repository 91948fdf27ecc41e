"""napari plugin (``pip install freiburg-unet[napari]``): readers for what ``predict.py`` writes and a dock
widget that applies a model to an image layer.

* :mod:`unet.napari.layers` -- layer data (napari's ``(data, kwargs, layer_type)`` tuples) for probabilities,
  labels and points at the image's physical scale; no napari import.
* :mod:`unet.napari.readers` -- ``<stem>_probabilities.tif``, ``<stem>_labels.tif``, ``<stem>_points.csv`` and
  ``<stem>_rois.zip`` through the readers of :mod:`unet.io` (element size from the TIFF metadata).
* :mod:`unet.napari.apply` -- the prediction the widget runs off the GUI thread (:mod:`unet.predict`'s path:
  ``load_model``, ``predict_image``, the task's instance labels and detection points), and the check
  that a model's card fits the image (channels, dimensionality); no Qt import.
* :mod:`unet.napari.widget` -- the dock widget (Qt, napari's ``thread_worker``).

The manifest ``napari.yaml`` (npe2) beside this file is found through the ``napari.manifest`` entry point.
"""
