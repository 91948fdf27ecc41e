"""The bioimage.io package as a consumer runs it (issue #22): bioimageio.core's whole-image and blockwise
predictions equal predict.py's probabilities for every weight format, and exported models refuse what does
not fit them. Tiny untrained nets (4 base features); needs the export extra, skipped without it."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import save_network

from unet import io
from unet.export import ExportError, export_model, load_exported, synthetic_image
from unet.export import package as package_module
from unet.export.graphs import CARD_KEY, same_size_geometry
from unet.models.unet import UNet
from unet.predict.image import ModelCard, load_model, predict_image
from unet.tasks import SegmentationTask

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

WEIGHTS = ("pytorch_state_dict", "torchscript", "onnx")
NETS = {
    "2d": {"spatial_dims": 2, "depth": 2, "base_features": 4},
    # halo 44 is not a multiple of the pooling period 8 and the smallest output (4) is not either: the
    # declared halo is rounded up to 48 and the graph pads 44 before, 48 after, and crops 4
    "2d-depth3": {"spatial_dims": 2, "depth": 3, "base_features": 4},
    "3d-aniso": {"spatial_dims": 3, "depth": 2, "base_features": 4, "element_size": (2.0, 0.5, 0.5)},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _checkpoint(path: Path, net_kwargs: dict) -> Path:
    torch.manual_seed(0)
    net = UNet(**net_kwargs)
    es = net_kwargs.get("element_size", (0.5,) * net_kwargs["spatial_dims"])
    card = ModelCard(net.config, SegmentationTask().config(), tuple(es), "minmax")
    save_network(path, net, card)
    return path


def _package(tmp_path: Path, name: str, **kwargs) -> tuple[Path, Path]:
    ckpt = _checkpoint(tmp_path / f"{name}.ckpt", NETS[name])
    out = export_model(ckpt, tmp_path / f"{name}_pkg", authors=[{"name": "A B"}], **kwargs)
    return ckpt, out


@pytest.mark.parametrize(
    ("name", "shape", "blocksizes"),
    [("2d", (96, 120), (3, 6)), ("3d-aniso", (14, 80, 84), (6, 8))],
)
def test_consumer_predictions_equal_predict_py(
    tmp_path: Path, name: str, shape: tuple, blocksizes: tuple
) -> None:
    """bioimageio.core.predict (whole image; blockwise with several blocksize_parameter values, blocks smaller
    than the image) of every weight format == predict.py's probabilities (predict_image, 32-true) to 1e-4."""
    from bioimageio.core import predict
    from bioimageio.spec import load_description

    ckpt, pkg = _package(tmp_path, name, validate=False)
    descr = load_description(pkg)
    net, _, card = load_model(str(ckpt))
    image = synthetic_image(shape, 1, seed=3)
    expect = predict_image(net, image, element_size=card.element_size, card=card, precision="32-true")
    assert expect.shape == (2, *shape)
    g = same_size_geometry(net.levels)
    for n in blocksizes:  # blocks smaller than the image: several per axis
        assert all(m + n * p < s for m, p, s in zip(g.min_size, g.period, shape))
    diffs = {}
    for fmt in WEIGHTS:
        for n in (None, *blocksizes):
            t = time.perf_counter()
            got = package_module.consumer_predictions(descr, image, fmt, n)
            what = "whole" if n is None else f"blocksize {n}"
            diffs[fmt, what] = float(np.abs(got - expect).max())
            seconds = time.perf_counter() - t
            print(f"{name} {shape} {fmt} {what}: max abs diff {diffs[fmt, what]:.1e} ({seconds:.1f} s)")
            assert got.shape == expect.shape
    assert max(diffs.values()) < 1e-4, diffs
    if name == "2d":  # the consumer's entry point as in the issue (ValueError before; 0 means its default 10)
        sample = predict(model=descr, inputs=image[None], blocksize_parameter=0)
        (tensor,) = sample.members.values()
        assert np.abs(np.asarray(tensor.data)[0] - expect).max() < 1e-4


def test_export_checks_parity_halo_not_a_multiple_of_the_period(tmp_path: Path) -> None:
    """Depth 3 (halo 44, pooling period 8, smallest output 4): export's own check (whole image and two
    blocksizes) passes for the architecture file and the ONNX graph, both of which crop the 4 extra output
    pixels; the package declares the halo rounded up to the period."""
    _, pkg = _package(tmp_path, "2d-depth3", weight_formats=["pytorch_state_dict", "onnx"])
    rdf = yaml.safe_load((pkg / "rdf.yaml").read_text())
    (inp,) = rdf["inputs"]
    (outp,) = rdf["outputs"]
    assert [a["size"] for a in inp["axes"][2:]] == [{"min": 104, "step": 8}] * 2
    assert [a["halo"] for a in outp["axes"][2:]] == [48, 48]
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["crop"] == [4, 4]


def test_export_refuses_a_package_that_consumers_run_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declaring the network's own halo (44, not a multiple of the period 8) passes bioimageio.core's test,
    but a consumer that pads by it runs the pooling grid 4 px off predict.py's: export refuses to write it."""
    real = same_size_geometry

    def unrounded(levels):
        g = real(levels)
        return dataclasses.replace(
            g, declared_halo=g.halo, min_size=tuple(2 * h + p for h, p in zip(g.halo, g.period))
        )

    monkeypatch.setattr(package_module, "same_size_geometry", unrounded)
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d-depth3"])
    with pytest.raises(
        ExportError, match=r"pkg: bioimageio.core's predictions .* differ from predict.py's"
    ) as e:
        export_model(ckpt, tmp_path / "pkg", weight_formats=["torchscript"], authors=[{"name": "A B"}])
    assert "the package is not written" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_loader_refuses_the_package_graphs(tmp_path: Path) -> None:
    """The package's same-size graphs mirror inside: predict.py (load_exported) refuses them by name."""
    _, pkg = _package(tmp_path, "2d", validate=False)
    for name in ("weights_torchscript.pt", "weights.onnx"):
        with pytest.raises(ExportError, match=rf"{name}: the same-size graph of a bioimage.io package"):
            load_exported(pkg / name)


def test_onnx_card_must_match_its_graph(tmp_path: Path) -> None:
    import onnx

    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    path = export_model(ckpt, tmp_path / "m.onnx", format="onnx")
    model = onnx.load(str(path))
    (entry,) = [m for m in model.metadata_props if m.key == CARD_KEY]
    card = json.loads(entry.value)
    card["net"]["in_channels"] = 2
    entry.value = json.dumps(card)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(
        ExportError, match=r"edited\.onnx: the ONNX graph's input .* does not match its model card"
    ):
        load_exported(tmp_path / "edited.onnx")


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_predict_refuses_images_that_do_not_fit_an_exported_model(tmp_path: Path, kind: str) -> None:
    """predict.py with an exported file refuses images whose channels or dimensionality do not fit its card,
    naming the image, with the same reasons as with the checkpoint; the module itself names the model file."""
    from unet.predict import PredictionFailed, predict_files

    suffix = ".pt" if kind == "torchscript" else ".onnx"
    folder = tmp_path / "in"
    io.write_tiff(folder / "two.tif", np.zeros((2, 64, 64), np.float32), axes="CYX")
    io.write_tiff(folder / "plane.tif", np.zeros((64, 64), np.float32), element_size=(0.5, 0.5))
    expected = {
        "2d": {"two.tif": "the model expects 1 channel(s), the image has 2"},
        "3d-aniso": {"plane.tif": "is 2D, but spatial_dims=3"},
    }
    for name, reasons in expected.items():
        ckpt = _checkpoint(tmp_path / f"{name}.ckpt", NETS[name])
        exported = export_model(ckpt, tmp_path / f"{name}{suffix}", format=kind)
        got = {}
        for model in (ckpt, exported):
            with pytest.raises(PredictionFailed) as info:
                predict_files(model, folder, tmp_path / f"out_{name}_{model.suffix[1:]}", progress=False)
            got[model.suffix] = {p.name: why for p, why in info.value.failures}
        assert got[suffix] == got[".ckpt"], got
        for image, reason in reasons.items():
            assert reason in got[suffix][image], got
        assert set(got[suffix]) == set(reasons), got
    module = load_exported(tmp_path / f"2d{suffix}")[0]
    with pytest.raises(ValueError, match=r"2d\.(pt|onnx): the model card expects input \(N, C=1 channels"):
        module(torch.zeros(1, 2, 44, 44))
