"""Applying a trained model, one room: ``python predict.py`` and validation share it.

* :mod:`unet.predict.image` -- one image array in memory: per-channel min-max normalisation (Falk M4),
  rescaling to the model's element size (M5), overlap-tile prediction, probabilities back on the image's
  own grid; :func:`load_model` (a checkpoint or an exported model, :func:`unet.loading.load_network`);
  :class:`ModelCard` (:mod:`unet.models.card`) re-exported. Validation runs through
  :func:`predict_model_grid`, so ``val/*`` is what users get.
* :mod:`unet.predict.jobs` -- one image file, in memory or out of core (tile by tile into zarr, objects
  block by block), with its outputs.
* :mod:`unet.predict.files` -- the library behind ``predict.py``: list and check the inputs, plan the tiles,
  predict every image, write the outputs atomically and the summary (:func:`predict_files`).
"""

from unet.models.card import ModelCard
from unet.predict.files import (
    INPUT_SUFFIXES,
    OUTPUT_SUFFIXES,
    SUMMARY_NAME,
    PredictionFailed,
    list_inputs,
    predict_files,
)
from unet.predict.image import load_model, predict_image, predict_model_grid

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "SUMMARY_NAME",
    "ModelCard",
    "PredictionFailed",
    "list_inputs",
    "load_model",
    "predict_files",
    "predict_image",
    "predict_model_grid",
]
