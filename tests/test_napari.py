"""The napari plugin (unet/napari): readers round-trip what unet.io writes, the dock widget applies a tiny
real checkpoint to a synthetic image and adds its layers at the image's scale.

Headless: Qt's ``offscreen`` platform; napari draws with OpenGL, which Qt gets through an X server, so a
private Xvfb is started when no ``DISPLAY`` is set (CI installs it). Skipped where napari (the ``[napari]``
extra) is not installed. ``UNET_UPDATE_SCREENSHOT=1`` writes the viewer with the widget docked to
``docs/napari_widget.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
npe2 = pytest.importorskip("npe2")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import save_network  # noqa: E402

from unet import io  # noqa: E402
from unet.data.synthetic import synthetic_cells  # noqa: E402
from unet.models.unet import UNet  # noqa: E402
from unet.napari import readers  # noqa: E402
from unet.napari.apply import ModelMismatch, layer_element_size, run_prediction  # noqa: E402
from unet.predict.image import ModelCard  # noqa: E402
from unet.tasks import DetectionTask, SegmentationTask  # noqa: E402

# asks pytest-xdist for one worker (one X server, one trained model); pytest 9.2 + xdist 3.8 may still split
# the module, which only costs time: each worker starts its own X server and trains its own model
pytestmark = pytest.mark.xdist_group("napari")

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "unet" / "napari" / "napari.yaml"
SCREENSHOT = ROOT / "docs" / "napari_widget.png"
PLUGIN = "freiburg-unet"


# ----------------------------------------------------------------------------------------------------
# fixtures: an X server for OpenGL, the plugin registered, a tiny trained checkpoint
# ----------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the X server gets SIGTERM when the test process ends (after Qt closed its connection)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session", autouse=True)
def _display():
    """An X server for napari's OpenGL canvas (session scope: before pytest-qt's QApplication exists).

    It outlives the session on purpose: Qt keeps its X connection until the process exits, and an X server
    gone before that makes Xlib end the process with exit status 1. It ends with the test process.
    """
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None  # the GUI tests skip themselves
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    _started_display.append(os.environ["DISPLAY"])
    return os.environ["DISPLAY"]


_started_display: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _display_for_this_module_only(_display):
    """``DISPLAY`` of :func:`_display` holds while this module's tests run and is unset after them (Qt stays
    connected), so the tests of other modules see the headless machine they expect. It is set again each
    time the module is entered: a scheduler (pytest-xdist) may run other modules between this module's
    tests, which tears module fixtures down and sets them up again."""
    if _started_display:
        os.environ["DISPLAY"] = _started_display[0]
    yield
    if _started_display and os.environ.get("DISPLAY") == _started_display[0]:
        del os.environ["DISPLAY"]


@pytest.fixture
def gui(_display, make_napari_viewer):
    if _display is None:
        pytest.skip("napari's canvas needs OpenGL through an X server: install xvfb (see .ci/run)")
    return make_napari_viewer


@pytest.fixture(scope="module")
def plugin():
    """The plugin as napari finds it: from the installed entry point, else registered from the manifest."""
    pm = npe2.PluginManager.instance()
    pm.discover()
    try:
        return pm.get_manifest(PLUGIN)
    except KeyError:
        # CI installs this checkout with the extra: the entry point must be there
        assert not os.environ.get("CI"), f"the napari.manifest entry point {PLUGIN!r} is not installed"
        # an editable install made before the entry point existed
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
        return pm.get_manifest(PLUGIN)


def _synthetic(shape=(96, 96), seed=0):
    image, labels = synthetic_cells(shape, np.random.default_rng(seed), n_cells=12, radius=(6.0, 9.0))
    return image, labels


def _trained_unet(seed: int = 0, steps: int = 40) -> UNet:
    """A tiny 2D U-Net (depth 2, 4 base features) trained for a few steps on synthetic cells, so that its
    probabilities show the cells (the screenshot shows a real result)."""
    torch.manual_seed(seed)
    net = UNet(in_channels=1, spatial_dims=2, depth=2, base_features=4)
    image, labels = _synthetic((140, 140), seed=seed + 1)
    x = (image - image.min()) / (image.max() - image.min())
    tile = net.valid_input_shape((120, 120))
    out = net.output_shape(tile)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    rng = np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        y0, x0 = (int(rng.integers(0, s - t + 1)) for s, t in zip(x.shape[1:], tile))
        inp = torch.from_numpy(x[None, :, y0 : y0 + tile[0], x0 : x0 + tile[1]].astype(np.float32))
        oy, ox = y0 + (tile[0] - out[0]) // 2, x0 + (tile[1] - out[1]) // 2
        target = torch.from_numpy((labels[oy : oy + out[0], ox : ox + out[1]] > 0).astype(np.int64))[None]
        loss = F.cross_entropy(net(inp), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def trained_net():
    return _trained_unet()


def _save(net: UNet, path: Path, task=None, element_size=None) -> Path:
    task = task or SegmentationTask()
    return save_network(path, net, ModelCard(net.config, task.config(), element_size, "minmax"))


# ----------------------------------------------------------------------------------------------------
# manifest and packaging
# ----------------------------------------------------------------------------------------------------


def test_manifest_valid_and_declared(plugin):
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == PLUGIN
    for command in manifest.contributions.commands:
        module, attr = command.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), command.python_name
    patterns = manifest.contributions.readers[0].filename_patterns
    assert {"*_probabilities.tif", "*_labels.tif", "*_points.csv", "*_rois.zip"} <= set(patterns)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"][PLUGIN] == "unet.napari:napari.yaml"
    assert "napari.yaml" in project["tool"]["setuptools"]["package-data"]["unet.napari"]
    assert any(r.startswith("napari") for r in project["project"]["optional-dependencies"]["napari"])
    assert plugin.name == PLUGIN


def test_get_reader_claims_only_prediction_outputs(tmp_path):
    io.write_tiff(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    io.write_tiff(tmp_path / "a_labels.tif", np.zeros((8, 8), np.uint16))
    assert readers.get_reader(str(tmp_path / "a.tif")) is None  # the input image: napari's own reader
    assert readers.get_reader(str(tmp_path / "missing_labels.tif")) is None
    assert readers.get_reader(str(tmp_path / "a_labels.tif")) is readers.read_outputs
    assert readers.get_reader([str(tmp_path / "a_labels.tif"), str(tmp_path / "a.tif")]) is None
    assert readers.output_kind("x_y_probabilities.TIF") == ("probabilities", "x_y")
    assert readers.output_kind("_points.csv") is None


# ----------------------------------------------------------------------------------------------------
# readers: round trips of files written by unet.io
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "es"), [((2, 20, 24), (0.5, 0.25)), ((3, 5, 16, 12), (2.0, 0.5, 0.25))], ids=["2d", "3d"]
)
def test_probabilities_round_trip(tmp_path, rng, shape, es):
    probs = rng.random(shape).astype(np.float32)
    path = tmp_path / "cells_probabilities.tif"
    io.write_tiff(path, probs, element_size=es, axes="CYX" if len(shape) == 3 else "CZYX")
    [(data, kwargs, kind)] = readers.read_outputs(str(path))
    assert kind == "image"
    np.testing.assert_array_equal(data, probs)
    assert kwargs["channel_axis"] == 0 and kwargs["scale"] == es
    assert kwargs["name"][0] == "cells probabilities background" and len(kwargs["name"]) == shape[0]
    assert kwargs["visible"][0] is False and all(kwargs["visible"][1:])
    assert kwargs["metadata"]["element_size"] == es


@pytest.mark.parametrize("dtype", [np.uint16, np.int32], ids=["imagej", "ome"])
def test_labels_round_trip(tmp_path, dtype):
    labels = np.zeros((4, 10, 12), dtype)
    labels[1, 2:5, 3:7] = 7
    labels[3, 6:9, 1:4] = 70000 if dtype == np.int32 else 2
    path = tmp_path / "c_labels.tif"
    io.write_tiff(path, labels, element_size=(1.5, 0.4, 0.3), axes="ZYX")
    [(data, kwargs, kind)] = readers.read_outputs(path)
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)
    assert kwargs["scale"] == (1.5, 0.4, 0.3) and kwargs["name"] == "c labels"


def test_labels_without_element_size(tmp_path):
    io.write_tiff(tmp_path / "c_labels.tif", np.eye(6, dtype=np.uint16))
    [(_, kwargs, _)] = readers.read_outputs(tmp_path / "c_labels.tif")
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["metadata"]["element_size"] is None


@pytest.mark.parametrize("sibling", [True, False], ids=["scale_from_labels_tif", "scale_from_um_columns"])
def test_points_round_trip(tmp_path, sibling):
    pts = np.array([[1.0, 2.5, 3.25], [3.0, 7.5, 0.0], [0.0, 0.0, 9.75]])
    classes = np.array([1, 2, 1])
    es = (2.0, 0.5, 0.25)
    io.write_points_csv(tmp_path / "s_points.csv", pts, classes, element_size=es, napari=True)
    if sibling:  # the labels predict.py writes beside the points hold the exact element size
        io.write_tiff(
            tmp_path / "s_labels.tif", np.zeros((4, 10, 12), np.uint16), element_size=(3.0, 1.0, 1.0)
        )
    [(data, kwargs, kind)] = readers.read_outputs(tmp_path / "s_points.csv")
    assert kind == "points" and kwargs["ndim"] == 3
    np.testing.assert_array_equal(data, pts)
    np.testing.assert_array_equal(kwargs["features"]["class"], classes)
    assert kwargs["scale"] == pytest.approx((3.0, 1.0, 1.0) if sibling else es)


def test_points_outside_the_sibling_image_fail(tmp_path):
    io.write_points_csv(tmp_path / "s_points.csv", np.array([[50.0, 1.0]]), napari=True)
    io.write_tiff(tmp_path / "s_labels.tif", np.zeros((10, 12), np.uint16))
    with pytest.raises(io.DataFileError, match="outside the image"):
        readers.read_outputs(tmp_path / "s_points.csv")


@pytest.mark.parametrize("sibling", [True, False], ids=["shape_from_labels_tif", "shape_from_roi_extent"])
def test_rois_round_trip(tmp_path, sibling):
    labels = np.zeros((30, 40), np.uint16)
    labels[3:12, 5:15] = 1
    labels[15:29, 20:39] = 2  # reaches the last row and column: roi_extent gives the whole image
    labels[20:25, 2:8] = 3
    io.write_rois(labels, tmp_path / "r_rois.zip")
    if sibling:
        io.write_tiff(tmp_path / "r_labels.tif", labels, element_size=(0.5, 0.5))
    layers = readers.read_outputs(tmp_path / "r_rois.zip")
    [(data, kwargs, kind)] = layers
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)
    assert kwargs["scale"] == ((0.5, 0.5) if sibling else (1.0, 1.0))


def test_point_rois_round_trip(tmp_path):
    pts = np.array([[2.0, 3.0, 4.0], [1.0, 8.0, 9.0], [3.0, 5.0, 1.0]])
    io.write_point_rois(pts, tmp_path / "d_rois.zip", [1, 2, 2])
    io.write_tiff(tmp_path / "d_labels.tif", np.zeros((4, 10, 12), np.uint16), element_size=(2.0, 0.5, 0.5))
    [(data, kwargs, kind)] = readers.read_outputs(tmp_path / "d_rois.zip")
    assert kind == "points" and kwargs["scale"] == (2.0, 0.5, 0.5)
    order = np.lexsort(data.T[::-1])
    np.testing.assert_allclose(data[order], pts[np.lexsort(pts.T[::-1])], atol=1e-4)
    assert sorted(kwargs["features"]["class"].tolist()) == [1, 2, 2]


def test_viewer_opens_outputs_through_the_plugin(gui, plugin, tmp_path, rng):
    viewer = gui()
    probs = rng.random((2, 16, 20)).astype(np.float32)
    io.write_tiff(tmp_path / "v_probabilities.tif", probs, element_size=(0.5, 0.5), axes="CYX")
    labels = (probs[1] > 0.5).astype(np.uint16)
    io.write_tiff(tmp_path / "v_labels.tif", labels, element_size=(0.5, 0.5))
    io.write_points_csv(tmp_path / "v_points.csv", np.array([[3.0, 4.0]]), [1], (0.5, 0.5), napari=True)
    for name in ("v_probabilities.tif", "v_labels.tif", "v_points.csv"):
        viewer.open(tmp_path / name, plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == [
        "v probabilities background",
        "v probabilities class 1",
        "v labels",
        "v points",
    ]
    for layer in viewer.layers:
        assert tuple(layer.scale) == (0.5, 0.5), layer.name
    np.testing.assert_array_equal(viewer.layers["v labels"].data, labels)
    np.testing.assert_array_equal(viewer.layers["v probabilities class 1"].data, probs[1])


# ----------------------------------------------------------------------------------------------------
# applying a model: the card check and the prediction path
# ----------------------------------------------------------------------------------------------------


def test_model_mismatch_refused_before_predicting(tmp_path):
    two_channels = _save(UNet(in_channels=2, spatial_dims=2, depth=1, base_features=2), tmp_path / "c2.ckpt")
    three_d = _save(UNet(in_channels=1, spatial_dims=3, depth=1, base_features=2), tmp_path / "m3.ckpt")
    one = _save(UNet(in_channels=1, spatial_dims=2, depth=1, base_features=2), tmp_path / "m1.ckpt")
    image = np.zeros((32, 32), np.float32)
    calls = []
    with pytest.raises(ModelMismatch, match=r"takes 2-channel 2D images.*layer 'img' has 1 channel"):
        run_prediction(two_channels, image, name="img", progress=lambda *a: calls.append(a))
    with pytest.raises(ModelMismatch, match=r"takes 1-channel 3D images.*layer 'img' has 2 dimensions"):
        run_prediction(three_d, image, name="img", progress=lambda *a: calls.append(a))
    with pytest.raises(ModelMismatch, match=r"takes 1-channel 2D images.*a 3D image or 5 channels"):
        run_prediction(one, np.zeros((5, 32, 32)), name="img", progress=lambda *a: calls.append(a))
    with pytest.raises(ModelMismatch, match=r"RGB image \(3 channels"):
        run_prediction(one, np.zeros((32, 32, 3), np.uint8), rgb=True, name="img")
    assert calls == []  # refused before a tile was planned
    with pytest.raises(FileNotFoundError, match="no such model file"):
        run_prediction(tmp_path / "nothing.ckpt", image)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a model file"):
        run_prediction(tmp_path / "notes.txt", image)


def test_layer_element_size():
    assert layer_element_size({}, (1.0, 1.0), 2) is None  # napari's default scale: uncalibrated
    assert layer_element_size({}, (3.0, 0.5, 0.25), 2) == (0.5, 0.25)
    assert layer_element_size({"element_size": (0.2, 0.2)}, (1.0, 1.0), 2) == (0.2, 0.2)


def test_run_prediction_matches_predict_image(tmp_path, trained_net):
    """The widget's path gives what predict.py's in-memory path gives: predict_image + the task."""
    from unet.predict.image import load_model, predict_image

    ckpt = _save(trained_net, tmp_path / "m.ckpt", element_size=(0.5, 0.5))
    image, _ = _synthetic((80, 72))
    seen = []
    result = run_prediction(
        ckpt, image[0], element_size=(0.4, 0.4), progress=lambda d, t: seen.append((d, t))
    )
    net, task, card = load_model(str(ckpt))
    expected = predict_image(net, image, element_size=(0.4, 0.4), card=card, precision="auto")
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    labels, _ = task.instance_labels(expected, element_size=(0.4, 0.4))
    np.testing.assert_array_equal(result.labels, labels)
    assert result.probabilities.shape == (2, 80, 72) and result.labels.shape == (80, 72)
    assert seen[0] == (0, result.tiles) and seen[-1] == (result.tiles, result.tiles)
    assert result.points is None and result.task == "segmentation"


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_run_prediction_with_an_exported_model(tmp_path, trained_net, kind, monkeypatch):
    """An exported .pt / .onnx (card inside) predicts as its checkpoint does. Exported graphs run float32;
    the checkpoint is pinned to float32 too (as on a CPU without native bf16), so that the comparison is
    exact on both kinds of CPU (bf16 against float32 is measured by benchmarks/bench_precision.py)."""
    monkeypatch.setenv("UNET_NATIVE_BF16", "0")
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    from unet.export import export_model

    ckpt = _save(trained_net, tmp_path / "m.ckpt", task=DetectionTask())
    exported = export_model(ckpt, tmp_path / ("m.pt" if kind == "torchscript" else "m.onnx"), format=kind)
    image, _ = _synthetic((64, 64), seed=5)
    ref = run_prediction(ckpt, image[0], device="cpu")
    got = run_prediction(exported, image[0], device="cpu")
    assert ref.precision == got.precision == "32-true"
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-4)
    assert got.task == "detection" and got.points is not None and got.points.shape[1] == 2
    with pytest.raises(ModelMismatch, match="takes 1-channel 2D images"):
        run_prediction(exported, np.zeros((2, 3, 32, 32)))


# ----------------------------------------------------------------------------------------------------
# the dock widget
# ----------------------------------------------------------------------------------------------------


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net prediction")
    return widget


def _run(qtbot, widget, timeout=120_000):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=timeout)
    return worker


def test_widget_segments_at_the_image_scale(gui, plugin, qtbot, tmp_path, trained_net):
    viewer = gui()
    viewer.window._qt_window.resize(1400, 900)
    ckpt = _save(trained_net, tmp_path / "cells.ckpt")
    image, truth = _synthetic((128, 160), seed=3)
    scale, translate = (0.65, 0.65), (10.0, -5.0)
    viewer.add_image(image[0], name="cells", scale=scale, translate=translate, colormap="gray")
    widget = _dock(viewer)
    assert widget.layer_box.currentText() == "cells"
    widget.model_edit.setText(str(ckpt))
    _run(qtbot, widget)
    assert "error" not in widget.status.text().lower() and widget.last is not None, widget.status.text()
    names = [layer.name for layer in viewer.layers]
    assert names == ["cells", "cells probabilities background", "cells probabilities class 1", "cells labels"]
    for name in names[1:]:
        layer = viewer.layers[name]
        assert tuple(layer.scale) == scale and tuple(layer.translate) == translate, name
        assert layer.data.shape == (128, 160), name
        assert layer.metadata["element_size"] == scale  # taken from the layer's scale
    labels = viewer.layers["cells labels"].data
    fg = viewer.layers["cells probabilities class 1"].data
    np.testing.assert_allclose(fg + viewer.layers["cells probabilities background"].data, 1.0, atol=1e-5)
    assert labels.max() >= 1
    # the briefly trained model finds the cells: most foreground pixels are cell pixels
    assert ((labels > 0) & (truth > 0)).sum() > 0.5 * (labels > 0).sum()
    assert widget.progress.value() == widget.progress.maximum() == widget.last.tiles
    assert "object(s) in 'cells'" in widget.status.text()

    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 300 and shot.shape[1] > 600
    assert shot[..., :3].std() > 10  # something was drawn
    if os.environ.get("UNET_UPDATE_SCREENSHOT") == "1":
        from PIL import Image

        SCREENSHOT.parent.mkdir(exist_ok=True)
        Image.fromarray(shot).save(SCREENSHOT)


def test_widget_detection_adds_points(gui, plugin, qtbot, tmp_path, trained_net):
    viewer = gui()
    ckpt = _save(trained_net, tmp_path / "det.ckpt", task=DetectionTask())
    image, truth = _synthetic((96, 96), seed=4)
    viewer.add_image(image[0], name="spots", scale=(0.5, 0.25))
    widget = _dock(viewer)
    widget.model_edit.setText(str(ckpt))
    _run(qtbot, widget)
    points = viewer.layers["spots points"]
    assert tuple(points.scale) == (0.5, 0.25) and points.data.shape[1] == 2
    assert len(points.data) == viewer.layers["spots labels"].data.max() >= 1
    np.testing.assert_array_equal(points.features["class"], np.ones(len(points.data)))
    inside = truth[tuple(np.round(points.data).astype(int).T)] > 0
    assert inside.mean() > 0.5  # the points sit on cells
    assert "point(s) in 'spots'" in widget.status.text()


def test_widget_3d_anisotropic(gui, plugin, qtbot, tmp_path):
    """A 3D model on an anisotropic 3D layer; the model's element size differs (rescaled and back)."""
    viewer = gui()
    net = UNet(in_channels=1, spatial_dims=3, depth=1, base_features=2)
    ckpt = _save(net, tmp_path / "vol.ckpt", element_size=(1.0, 0.5, 0.5))
    es = (2.0, 0.5, 0.5)
    image, _ = synthetic_cells((10, 40, 36), np.random.default_rng(6), n_cells=4, element_size=es)
    viewer.add_image(image[0], name="stack", scale=(2.0, 0.5, 0.5))
    widget = _dock(viewer)
    widget.model_edit.setText(str(ckpt))
    _run(qtbot, widget)
    assert widget.last is not None, widget.status.toolTip()
    for name in ("stack probabilities class 1", "stack labels"):
        layer = viewer.layers[name]
        assert layer.data.shape == (10, 40, 36) and tuple(layer.scale) == (2.0, 0.5, 0.5), name
    assert widget.last.element_size == (2.0, 0.5, 0.5)
    assert "element size 2 x 0.5 x 0.5 µm" in widget.status.text()


def test_widget_refuses_a_mismatched_model(gui, plugin, qtbot, tmp_path):
    viewer = gui()
    ckpt = _save(UNet(in_channels=1, spatial_dims=3, depth=1, base_features=2), tmp_path / "vol.ckpt")
    viewer.add_image(np.zeros((40, 40), np.float32), name="flat")
    widget = _dock(viewer)
    widget.model_edit.setText(str(ckpt))
    _run(qtbot, widget)
    text = widget.status.toolTip()
    assert "takes 1-channel 3D images" in text and "layer 'flat' has 2 dimensions" in text
    assert [layer.name for layer in viewer.layers] == ["flat"]
    assert widget.last is None


def test_widget_without_image_layer(gui, plugin):
    viewer = gui()
    widget = _dock(viewer)
    assert widget.run() is None
    assert "No image layer" in widget.status.toolTip()


# ----------------------------------------------------------------------------------------------------
# finetuning from the viewer (unet/napari/finetune.py, unet/napari/train_widget.py)
# ----------------------------------------------------------------------------------------------------

#: a few steps: the tests check the loop, not the quality
QUICK = ["data.tiles_per_epoch=4", "data.batch_size=2", "trainer.max_epochs=2", "logger=csv"]
FINETUNE_SHOT = ROOT / "docs" / "napari_finetune.png"


def _pair(shape=(96, 96), seed=0, **kw):
    from unet.napari import finetune as ft

    image, labels = _synthetic(shape, seed)
    return ft.Pair(image[0], labels, "labels", f"img{seed}", f"ann{seed}", **kw)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("empty", r"'ann0' is empty: paint the cells"),
        ("shape", r"'ann0' has shape \(90, 96\) but the image 'img0' has \(96, 96\)"),
        ("one-object", r"'ann0' has one object only"),
        ("point-outside", r"'pts': point 1 at \(120\.0, 5\.0\) is outside the image 'img0' \(96, 96\)"),
        ("too-small", r"'img0': \(20, 96\) pixels is too small for the network"),
        ("channels", r"the starting model takes 1 channel\(s\), the images have 2"),
        ("dims", r"the starting model is 2D but the annotations are 3D"),
        ("nan", r"'img0': numeric, finite pixels needed"),
    ],
)
def test_finetune_refuses_bad_input_before_training(tmp_path, defect, message):
    from unet.napari import finetune as ft

    p = _pair()
    if defect == "empty":
        p.annotation = np.zeros_like(p.annotation)
    elif defect == "shape":
        p.annotation = p.annotation[:90]
    elif defect == "one-object":
        p.annotation = (p.annotation == p.annotation.max()).astype(np.int32)
    elif defect == "point-outside":
        p = ft.Pair(p.image, np.array([[10.0, 10.0], [120.0, 5.0]]), "points", "img0", "pts")
    elif defect == "too-small":
        p.image, p.annotation = p.image[:20], p.annotation[:20]
    elif defect == "channels":
        p.image = np.stack([p.image, p.image])
    elif defect == "dims":
        p.image = np.stack([p.image] * 4)
        p.annotation = np.stack([p.annotation] * 4)
    elif defect == "nan":
        p.image = p.image.astype(np.float32)
        p.image[3, 3] = np.nan
    with pytest.raises(ft.FinetuneInputError, match=message):
        ft.check_pairs([p], ft.BASE, "detection" if defect == "point-outside" else "segmentation")


def test_finetune_command_composes_the_config_of_train_py(tmp_path):
    """The widget's run is ``python train.py experiment=finetune ...`` on the folder it wrote: the config it
    composes is the one ``train.py --cfg job`` prints for the same command line."""
    from omegaconf import OmegaConf

    from unet.napari import finetune as ft

    run = tmp_path / "run"
    over = ft.finetune_overrides(run / "data", ft.BASE, spatial_dims=2, channels=1, minutes=2.5, seed=3)
    assert over[:2] == ["experiment=finetune", "data=folder"] and "trainer.max_time=00:00:02:30" in over
    ours = OmegaConf.to_yaml(ft.compose(over, run), resolve=True)
    r = subprocess.run(
        [sys.executable, "train.py", *over, f"paths.output_dir={run}", "--cfg", "job", "--resolve"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert ours.strip() == r.stdout.strip()
    assert ft.command_line(over, run).startswith("python train.py experiment=finetune data=folder")


def test_finetune_3d_stack_from_scratch(tmp_path):
    """One painted 3D stack, from scratch (no 3D base model is shipped): the same loop writes a checkpoint
    that predict loads, and reports its validation score."""
    from unet.napari import finetune as ft
    from unet.predict.image import load_model

    image, labels = synthetic_cells((20, 64, 64), np.random.default_rng(1), n_cells=6, radius=(5.0, 7.0))
    pair = ft.Pair(image[0], labels, "labels", "stack", "stack labels", element_size=(2.0, 1.0, 1.0))
    nd, c, card = ft.check_pairs([pair], ft.SCRATCH)
    assert (nd, c, card) == (3, 1, None)
    run = tmp_path / "stack-run"
    ft.write_dataset([pair], run / "data")
    over = ft.finetune_overrides(run / "data", ft.SCRATCH, spatial_dims=3, channels=1, minutes=1)
    over += [*QUICK, "model.net.base_features=2", "model.net.depth=1"]
    seen = []
    result = ft.run_finetune(over, run, tmp_path / "stack.ckpt", minutes=1, on_validation=seen.append)
    assert result.checkpoint == tmp_path / "stack.ckpt" and result.best is not None
    assert seen and seen[-1].labels is not None and seen[-1].labels.shape == (20, 64, 64)
    net, _, card = load_model(str(result.checkpoint))
    assert net.spatial_dims == 3 and card.element_size == (2.0, 1.0, 1.0)
    with pytest.raises(ft.TargetExists, match=r"stack\.ckpt: a checkpoint is there already"):
        ft.run_finetune(over, run, tmp_path / "stack.ckpt", minutes=1)


def _dock_train(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net train / finetune")
    return widget


def test_train_widget_finetunes_and_hands_the_model_to_the_prediction_widget(
    gui, plugin, qtbot, tmp_path, trained_net
):
    """Paint -> finetune -> apply, in the viewer: the widget trains from a starting checkpoint on one image
    (validating on itself), shows the validation image's prediction while training, writes the checkpoint
    where asked (predict.py loads it), reports the score, and the prediction widget offers the model."""
    from unet.predict.image import load_model

    viewer = gui()
    viewer.window._qt_window.resize(1500, 950)
    start = _save(trained_net, tmp_path / "start.ckpt")
    image, labels = _synthetic((128, 128), seed=5)
    viewer.add_image(image[0], name="cells", colormap="gray")
    viewer.add_labels(labels, name="painted")
    predict_widget = _dock(viewer)
    widget = _dock_train(viewer)
    widget.add_pair("cells", "painted")
    widget.start_box.setCurrentIndex(1)  # a checkpoint file
    widget.start_edit.setText(str(start))
    widget.minutes.setValue(0.5)
    target = tmp_path / "models" / "mine.ckpt"
    widget.output_edit.setText(str(target))
    widget.extra_overrides = list(QUICK)
    with qtbot.waitSignal(widget._relay.validation, timeout=180_000):
        worker = widget.train()
        assert worker is not None, widget.status.text()
    qtbot.wait(200)  # the validation layer is drawn
    assert "cells (validation)" in viewer.layers
    assert "validation val/iou" in widget.score.text()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    if os.environ.get("UNET_UPDATE_SCREENSHOT") == "1":
        from PIL import Image

        Image.fromarray(shot).save(FINETUNE_SHOT)
    qtbot.waitUntil(lambda: widget.train_button.isEnabled(), timeout=300_000)
    assert widget.result is not None and widget.result.checkpoint == target, widget.status.text()
    assert f"Saved {target}" in widget.status.text() and "tensorboard --logdir" in widget.status.text()
    assert "same as: python train.py experiment=finetune" in widget.command.text()
    net, task, _card = load_model(str(target))
    assert task.name == "segmentation" and net.in_channels == 1
    assert predict_widget.model_edit.text() == str(target)
    _run(qtbot, predict_widget)  # ... and the prediction widget applies it in the viewer
    assert "cells labels" in viewer.layers and "object(s) in 'cells'" in predict_widget.status.text()


def test_train_widget_finetunes_the_shipped_base_model(gui, plugin, qtbot, tmp_path):
    """The papers' use case as shipped: the nuclei base model (2D, 16 features, depth 4) finetuned on one
    painted image from the viewer (a few steps), then applied by the prediction widget."""
    from unet.models.base import base_model
    from unet.predict.image import load_model

    viewer = gui()
    image, labels = _synthetic((160, 160), seed=8)
    viewer.add_image(image[0], name="nuclei")
    viewer.add_labels(labels, name="painted")
    predict_widget = _dock(viewer)
    widget = _dock_train(viewer)
    widget.add_pair("nuclei", "painted")
    assert widget.starting_model() == "base"  # the default choice
    widget.minutes.setValue(0.5)
    target = tmp_path / "nuclei-finetuned.ckpt"
    widget.output_edit.setText(str(target))
    widget.extra_overrides = [
        "data.tiles_per_epoch=2",
        "data.batch_size=1",
        "trainer.max_epochs=1",
        "logger=csv",
    ]
    assert widget.train() is not None, widget.status.text()
    qtbot.waitUntil(lambda: widget.train_button.isEnabled(), timeout=600_000)
    assert widget.result is not None and widget.result.checkpoint == target, widget.status.text()
    net, _, card = load_model(str(target))
    base, _, base_card = load_model(base_model("nuclei2d"))
    assert card.net == base_card.net  # finetuning keeps the base model's architecture
    assert not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), base.state_dict().values()))
    _run(qtbot, predict_widget)
    assert "nuclei labels" in viewer.layers


def test_train_widget_stop_keeps_a_checkpoint(gui, plugin, qtbot, tmp_path, trained_net):
    viewer = gui()
    image, labels = _synthetic((128, 128), seed=6)
    viewer.add_image(image[0], name="cells")
    viewer.add_labels(labels, name="painted")
    widget = _dock_train(viewer)
    widget.add_pair()
    widget.start_box.setCurrentIndex(1)
    widget.start_edit.setText(str(_save(trained_net, tmp_path / "start.ckpt")))
    widget.minutes.setValue(10)
    widget.output_edit.setText(str(tmp_path / "stopped.ckpt"))
    widget.extra_overrides = ["data.tiles_per_epoch=4", "data.batch_size=2", "logger=csv"]
    with qtbot.waitSignal(widget._relay.validation, timeout=180_000):
        widget.train()
    widget.stop()
    qtbot.waitUntil(lambda: widget.train_button.isEnabled(), timeout=120_000)
    assert widget.result is not None and widget.result.stopped
    assert widget.result.checkpoint == tmp_path / "stopped.ckpt" and widget.result.checkpoint.is_file()
    assert widget.progress.format() == "stopped"


@pytest.mark.parametrize("case", ["empty", "existing-target-kept", "no-pair"])
def test_train_widget_says_what_is_wrong_before_training(gui, plugin, tmp_path, case):
    viewer = gui()
    image, labels = _synthetic((96, 96), seed=7)
    viewer.add_image(image[0], name="cells")
    viewer.add_labels(np.zeros_like(labels) if case == "empty" else labels, name="painted")
    widget = _dock_train(viewer)
    if case != "no-pair":
        widget.add_pair("cells", "painted")
    target = tmp_path / "exists.ckpt"
    target.write_bytes(b"keep me")
    widget.output_edit.setText(str(target))
    widget.confirm_overwrite = lambda path: False
    assert widget.train() is None
    text = widget.status.text()
    expected = {
        "empty": "is empty: paint the cells",
        "existing-target-kept": "exists and was kept",
        "no-pair": "add at least one (image, annotation) pair",
    }[case]
    assert expected in text and "ff6060" in text
    assert target.read_bytes() == b"keep me"
