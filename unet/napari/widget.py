"""The dock widget: apply a checkpoint or an exported model to the selected image layer.

The prediction (:func:`unet.napari.apply.run_prediction`) runs in a worker thread (napari's
``create_worker``, superqt underneath), so the viewer stays responsive; the tiles done reach the progress bar
through a Qt signal (queued to the GUI thread). When it returns, the probabilities, the instance labels and,
for a detection model, the points are added as layers at the image layer's scale and translation. A model
whose card does not fit the image (channels, 2D / 3D) is refused before anything is predicted, with the
reason in the widget's status line (and in napari's notifications).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet.napari.apply import MODEL_SUFFIXES, Prediction, run_prediction
from unet.napari.layers import LayerData, labels_layer, points_layer, probability_layer


class ModelRegistry(QObject):
    """Models made in this session (the finetune widget adds each checkpoint it writes); the prediction
    widget offers the newest at once."""

    added = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def add(self, path: str) -> None:
        self.paths.append(str(path))
        self.added.emit(str(path))


#: the session's registry (one per process, like the viewer's plugin manager)
MODELS = ModelRegistry()


class _Relay(QObject):
    """Carries the tile count from the worker thread to the GUI thread (a queued signal)."""

    progress = Signal(int, int)


class PredictWidget(QWidget):
    """Model file + image layer -> probabilities, labels (and points) layers."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: Any = None
        self.last: Prediction | None = None

        self.layer_box = QComboBox()
        self.layer_box.setToolTip("the image layer to predict (channel axis first, or RGB)")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("checkpoint (.ckpt) or exported model (.onnx, .pt)")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        self.run_button = QPushButton("Predict")
        self.run_button.clicked.connect(self.run)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m tiles")
        self.status = QLabel("Choose a model file and an image layer.")
        self.status.setWordWrap(True)

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit)
        model_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Image layer", self.layer_box)
        form.addRow("Model", model_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        MODELS.added.connect(self.offer_model)
        if MODELS.paths:
            self.model_edit.setText(MODELS.paths[-1])
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- layers ---------------------------------------------------------------------------------------

    def _image_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer_box.currentText()
        self.layer_box.clear()
        names = [layer.name for layer in self._image_layers()]
        self.layer_box.addItems(names)
        if current in names:
            self.layer_box.setCurrentText(current)
        elif names:
            active = self.viewer.layers.selection.active
            self.layer_box.setCurrentText(active.name if isinstance(active, Image) else names[-1])

    def selected_layer(self) -> Image | None:
        name = self.layer_box.currentText()
        return next((layer for layer in self._image_layers() if layer.name == name), None)

    def offer_model(self, path: str) -> None:
        """A model just made in this session (finetuning): it becomes the model to apply."""
        self.model_edit.setText(path)
        self._say(f"New model from finetuning: {Path(path).name}. Choose an image layer and press Predict.")

    # ---- running --------------------------------------------------------------------------------------

    def _browse(self) -> None:
        pattern = " ".join(f"*{s}" for s in MODEL_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "U-Net model", "", f"U-Net models ({pattern})")
        if path:
            self.model_edit.setText(path)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(f"<span style='color:#ff6060'>{html.escape(text)}</span>" if error else text)
        self.status.setToolTip(text)

    def run(self) -> Any:
        """Start the prediction in a worker thread; returns the worker (None when refused at once)."""
        layer = self.selected_layer()
        if layer is None:
            self._say("No image layer to predict: open or add an image first.", error=True)
            return None
        model = self.model_edit.text().strip()
        data = layer.data[0] if layer.multiscale else layer.data
        self.run_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy until the tile count is known
        self._say(f"Loading {Path(model).name or 'model'} …")
        self.worker = create_worker(
            run_prediction,
            model,
            data,
            rgb=bool(layer.rgb),
            scale=tuple(layer.scale),
            metadata=dict(layer.metadata),
            name=layer.name,
            progress=self._relay.progress.emit,
            _connect={
                "returned": lambda result: self._add_layers(layer, result),
                "errored": self._on_error,
                "finished": self._on_finished,
            },
            _start_thread=False,
        )
        self.worker.start()
        return self.worker

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if done == 0:
            self._say(f"Predicting {total} tile(s) …")

    def _on_error(self, exc: BaseException) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._say(str(exc), error=True)

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)

    def _add_layers(self, image: Image, result: Prediction) -> None:
        self.last = result
        nd = result.probabilities.ndim - 1
        scale, translate = tuple(image.scale)[-nd:], tuple(image.translate)[-nd:]
        meta = {"model": self.model_edit.text().strip(), "source": image.name}
        es, stem = result.element_size, image.name
        layers: list[LayerData] = [
            probability_layer(result.probabilities, es, f"{stem} probabilities", metadata=meta),
            labels_layer(result.labels, es, f"{stem} labels", metadata=meta),
        ]
        if result.points is not None:
            layers.append(
                points_layer(result.points, result.classes, es, f"{stem} points", ndim=nd, metadata=meta)
            )
        for data, kwargs, kind in layers:
            kwargs.update(scale=scale, translate=translate)
            names = kwargs["name"] if isinstance(kwargs["name"], list) else [kwargs["name"]]
            for name in names:  # a new prediction replaces the layers of the previous one
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self.viewer.layers.selection.active = self.viewer.layers[f"{stem} labels"]
        n = int(result.labels.max(initial=0)) if result.task != "detection" else len(result.points)
        what = "point(s)" if result.task == "detection" else "object(s)"
        self.progress.setValue(self.progress.maximum())
        self._say(
            f"{n} {what} in '{stem}' ({result.tiles} tile(s), {result.device}, {result.precision}"
            f"{'' if es is None else ', element size ' + ' x '.join(f'{s:g}' for s in es) + ' µm'})."
        )
