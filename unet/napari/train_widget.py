"""The "Train / finetune" dock widget: from a few painted cells to a working model inside the viewer.

Pairs of (image layer, annotation layer) -- a Labels layer (segmentation), a Points layer (detection) or a
Shapes layer (rasterised to labels) -- are checked (:func:`unet.napari.finetune.check_pairs`), written as the
``data=folder`` layout into the run's folder and trained by ``unet.cli.train.train`` with the project's
finetune recipe (``experiment=finetune``: the one training loop; the widget shows the equivalent
``python train.py ...`` command). The training runs in a napari worker thread of this process, not a child
process: each validation's probabilities reach the viewer as arrays (no files to poll), Stop is a flag the
training loop reads after every batch (Lightning then ends the fit and keeps the best checkpoint so far), and
the headless tests drive it with napari's own fixtures; torch works outside the GIL, so the viewer stays
responsive. While it trains: a progress bar (time against the budget), the current and best validation
score, and the validation image's prediction as a layer refreshed after each validation. At the end the
checkpoint is copied where the user chose and offered to the prediction widget at once
(:data:`unet.napari.widget.MODELS`); the TensorBoard folder of the run is named in the widget.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet.napari import finetune as ft
from unet.napari.apply import layer_element_size
from unet.napari.layers import labels_layer
from unet.napari.widget import MODELS

START_CHOICES = (
    ("nuclei base model (2D)", ft.BASE),
    ("checkpoint file…", "file"),
    ("from scratch", ft.SCRATCH),
)


class _Relay(QObject):
    """Carries progress and validations from the training thread to the GUI thread (queued signals)."""

    progress = Signal(object)
    validation = Signal(object)


class TrainWidget(QWidget):
    """(image, annotation) pairs + starting model + budget -> a finetuned checkpoint, live in the viewer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: Any = None
        self.result: ft.Result | None = None
        self.stop_event = threading.Event()
        #: overrides added after the widget's own (tests: a tiny network or a few steps)
        self.extra_overrides: list[str] = []
        self.confirm_overwrite = self._ask_overwrite

        self.image_box = QComboBox()
        self.annotation_box = QComboBox()
        self.annotation_box.setToolTip("Labels (segmentation), Points (detection) or Shapes (outlines)")
        self.add_button = QPushButton("Add pair")
        self.add_button.clicked.connect(self.add_pair)
        self.pairs_list = QListWidget()
        self.pairs_list.setToolTip("checked pairs validate (not trained on); one pair validates on itself")
        self.pairs_list.setMaximumHeight(90)
        self.start_box = QComboBox()
        for text, _ in START_CHOICES:
            self.start_box.addItem(text)
        self.start_edit = QLineEdit()
        self.start_edit.setPlaceholderText("starting checkpoint (.ckpt)")
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.05, 600.0)
        self.minutes.setDecimals(2)
        self.minutes.setValue(5.0)
        self.minutes.setSuffix(" min")
        self.output_edit = QLineEdit(str(Path.home() / "unet-models" / "finetuned.ckpt"))
        self.browse_button = QPushButton("…")
        self.browse_button.clicked.connect(self._browse_output)
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.score = QLabel("validation: –")
        self.status = QLabel("Add an image layer and its annotation layer as a pair.")
        self.status.setWordWrap(True)
        self.command = QLabel("")
        self.command.setWordWrap(True)
        self.command.setTextInteractionFlags(Qt.TextSelectableByMouse)

        pair_row = QHBoxLayout()
        pair_row.addWidget(self.image_box)
        pair_row.addWidget(self.annotation_box)
        pair_row.addWidget(self.add_button)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit)
        out_row.addWidget(self.browse_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        form = QFormLayout()
        form.addRow("Image, annotation", pair_row)
        form.addRow("Pairs", self.pairs_list)
        form.addRow("Start from", self.start_box)
        form.addRow("", self.start_edit)
        form.addRow("Time budget", self.minutes)
        form.addRow("Save as", out_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.score)
        layout.addWidget(self.status)
        layout.addWidget(self.command)
        layout.addStretch(1)

        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.validation.connect(self._on_validation)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- layers and pairs -------------------------------------------------------------------------------

    def _refresh_layers(self, event: Any = None) -> None:
        for box, kinds in ((self.image_box, (Image,)), (self.annotation_box, (Labels, Points, Shapes))):
            current = box.currentText()
            box.clear()
            names = [layer.name for layer in self.viewer.layers if isinstance(layer, kinds)]
            names = [n for n in names if not n.endswith(" (validation)")]
            box.addItems(names)
            if current in names:
                box.setCurrentText(current)

    def add_pair(
        self, image: str | None = None, annotation: str | None = None, validate: bool = False
    ) -> None:
        """Add (image layer, annotation layer) by name (default: the two boxes)."""
        image = image or self.image_box.currentText()
        annotation = annotation or self.annotation_box.currentText()
        if not image or not annotation:
            self._say("Choose an image layer and an annotation layer first.", error=True)
            return
        item = QListWidgetItem(f"{image}  ←  {annotation}")
        item.setData(Qt.UserRole, (image, annotation))
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if validate else Qt.Unchecked)
        self.pairs_list.addItem(item)
        self._say(f"{self.pairs_list.count()} pair(s); checked pairs validate.")

    def pairs(self) -> tuple[list[ft.Pair], list[int]]:
        """The pairs as layer data (points in the image's pixels, shapes rasterised), and which validate."""
        out, val = [], []
        for row in range(self.pairs_list.count()):
            item = self.pairs_list.item(row)
            image_name, ann_name = item.data(Qt.UserRole)
            if image_name not in self.viewer.layers or ann_name not in self.viewer.layers:
                raise ft.FinetuneInputError(f"the layer of pair '{item.text()}' is gone from the viewer")
            image, ann = self.viewer.layers[image_name], self.viewer.layers[ann_name]
            data = image.data[0] if image.multiscale else image.data
            nd = ann.ndim if not isinstance(ann, Points) else ann.data.shape[1]
            if isinstance(ann, Points):
                kind = "points"
                values = ft.points_in_image(ann.data, ann.scale, ann.translate, image.scale, image.translate)
            elif isinstance(ann, Shapes):
                kind = "labels"
                shape = tuple(np.asarray(data).shape[-nd:] if not image.rgb else np.asarray(data).shape[:-1])
                values = ann.to_labels(labels_shape=shape)
            else:
                kind, values = "labels", np.asarray(ann.data)
            es = layer_element_size(image.metadata, image.scale, nd)
            out.append(ft.Pair(np.asarray(data), values, kind, image_name, ann_name, bool(image.rgb), es))
            if item.checkState() == Qt.Checked:
                val.append(row)
        return out, val

    # ---- running ----------------------------------------------------------------------------------------

    def starting_model(self) -> str:
        choice = START_CHOICES[self.start_box.currentIndex()][1]
        return self.start_edit.text().strip() if choice == "file" else choice

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the finetuned model", self.output_edit.text(), "*.ckpt"
        )
        if path:
            self.output_edit.setText(path)

    def _ask_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(self, "Replace the checkpoint?", f"{path} exists. Replace it?")
        return answer == QMessageBox.Yes

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(f"<span style='color:#ff6060'>{html.escape(text)}</span>" if error else text)
        self.status.setToolTip(text)

    def train(self) -> Any:
        """Check everything, then train in a worker thread; returns the worker (None when refused)."""
        try:
            pairs, validate = self.pairs()
            model = self.starting_model()
            task = "detection" if pairs and pairs[0].kind == "points" else "segmentation"
            nd, channels, _card = ft.check_pairs(pairs, model, task)
            target = Path(self.output_edit.text().strip()).expanduser()
            if target.suffix != ".ckpt":
                raise ft.FinetuneInputError(f"{target}: the checkpoint's name must end in .ckpt")
            overwrite = False
            if target.exists():
                if not self.confirm_overwrite(target):
                    self._say(f"{target} exists and was kept: choose another name.", error=True)
                    return None
                overwrite = True
        except ValueError as e:
            self._say(str(e), error=True)
            return None
        run_dir = target.parent / f"{target.stem}-run"
        minutes = float(self.minutes.value())
        overrides = [
            *ft.finetune_overrides(
                run_dir / "data", model, spatial_dims=nd, channels=channels, task=task, minutes=minutes
            ),
            *self.extra_overrides,
        ]
        try:
            ft.write_dataset(pairs, run_dir / "data", validate)
        except (ValueError, OSError) as e:
            self._say(str(e), error=True)
            return None
        self.command.setText(f"same as: {ft.command_line(overrides, run_dir)}")
        self.stop_event.clear()
        self.result = None
        self.train_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat("starting …")
        self._say(f"Training on {len(pairs)} pair(s) for up to {minutes:g} min …")
        self.worker = create_worker(
            ft.run_finetune,
            overrides,
            run_dir,
            target,
            minutes=minutes,
            overwrite=overwrite,
            stop=self.stop_event,
            on_progress=self._relay.progress.emit,
            on_validation=self._relay.validation.emit,
            _connect={"returned": self._on_done, "errored": self._on_error, "finished": self._on_finished},
            _start_thread=False,
        )
        self.worker.start()
        return self.worker

    def stop(self) -> None:
        """End training after the current step; the best checkpoint so far is kept and saved."""
        self.stop_event.set()
        self.stop_button.setEnabled(False)
        self._say("Stopping after this step …")

    def _on_progress(self, p: ft.Progress) -> None:
        fraction = min(1.0, p.seconds / max(p.budget, 1e-9))
        self.progress.setValue(int(1000 * fraction))
        self.progress.setFormat(
            f"epoch {p.epoch}, step {p.step}: {p.seconds / 60:.1f} / {p.budget / 60:g} min"
        )

    def _on_validation(self, v: ft.Validation) -> None:
        self.score.setText(f"validation {v.metric}: {v.score:.3f} (best {v.best:.3f}), epoch {v.epoch}")
        if v.labels is None:
            return
        name = f"{v.image} (validation)"
        source = next((layer for layer in self.viewer.layers if layer.name == v.image), None)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = v.labels
            return
        data, kwargs, _ = labels_layer(v.labels, None, name)
        if source is not None:
            nd = v.labels.ndim
            kwargs.update(scale=tuple(source.scale)[-nd:], translate=tuple(source.translate)[-nd:])
        self.viewer.add_labels(data, **kwargs)

    def _on_done(self, result: ft.Result) -> None:
        self.result = result
        self.progress.setValue(1000)
        self.progress.setFormat("stopped" if result.stopped else "done")
        if result.checkpoint is None:
            self._say("Training ended before any checkpoint was written.", error=True)
            return
        MODELS.add(str(result.checkpoint))
        best = "–" if result.best is None else f"{result.best:.3f}"
        self._say(
            f"Saved {result.checkpoint} (best {result.metric} {best}); the prediction widget offers it. "
            f"TensorBoard: tensorboard --logdir {result.tensorboard}"
        )

    def _on_error(self, exc: BaseException) -> None:
        self.progress.setFormat("failed")
        self._say(str(exc), error=True)

    def _on_finished(self) -> None:
        self.train_button.setEnabled(True)
        self.stop_button.setEnabled(False)
