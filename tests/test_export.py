"""Tests for unet.export: TorchScript, ONNX and bioimage.io export (tiny untrained models, files in tmp_path).

ONNX and bioimage.io tests need the export extra (pip install -e '.[export]') and are skipped without it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import save_network

from unet.checkpoint import CheckpointError
from unet.export import (
    ARCHITECTURE_SOURCE,
    CARD_FILE,
    CARD_KEY,
    ExportError,
    default_trace_shape,
    export_model,
    load_exported,
    reference_prediction,
)
from unet.models import shapes
from unet.models.unet import UNet
from unet.predict.image import ModelCard, load_model, predict_image
from unet.tasks import DetectionTask, SegmentationTask
from unet.tiling import predict_tiled

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
NETS = {
    "2d": {"spatial_dims": 2, "depth": 2, "base_features": 4},
    "3d-aniso": {"spatial_dims": 3, "depth": 2, "base_features": 4, "element_size": (2.0, 0.5, 0.5)},
    "2d-channel-norm": {"spatial_dims": 2, "depth": 2, "base_features": 4, "norm": "channel"},
    "2d-instance-norm": {"spatial_dims": 2, "depth": 2, "base_features": 4, "norm": "instance"},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _checkpoint(path: Path, net_kwargs: dict, task: str = "segmentation", hyper_parameters=None) -> Path:
    torch.manual_seed(0)
    net = UNet(**net_kwargs)
    t = SegmentationTask() if task == "segmentation" else DetectionTask()
    es = net_kwargs.get("element_size", (0.5,) * net_kwargs["spatial_dims"])
    card = ModelCard(net.config, t.config(), tuple(es), "minmax")
    extra = {"epoch": 3, "global_step": 42}
    if hyper_parameters is not None:
        extra["hyper_parameters"] = hyper_parameters
    return save_network(path, net, card, **extra)


def _other_valid_shapes(net: UNet) -> list[tuple[int, ...]]:
    """Two valid shapes different from the traced one: the smallest, and two pooling periods more."""
    lo = shapes.min_input_shape(net.levels)
    hi = tuple(m + 2 * p for m, p in zip(lo, net.pooling_period))
    assert default_trace_shape(net.levels) not in (lo, hi)
    return [lo, hi]


# ----------------------------------------------------------------------------------------------------
# TorchScript and ONNX: same logits as PyTorch on untraced shapes
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", list(NETS))
def test_exported_graph_equals_pytorch(tmp_path: Path, kind: str, name: str) -> None:
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS[name])
    out = tmp_path / ("m.pt" if kind == "torchscript" else "m.onnx")
    assert export_model(ckpt, out, format=kind) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.ckpt", out.name])  # no temporary files
    net, _, card = load_model(str(ckpt))
    if kind == "torchscript":
        extra = {CARD_FILE: ""}
        graph = torch.jit.load(str(out), _extra_files=extra)
        assert json.loads(extra[CARD_FILE]) == card.to_dict()
    else:
        import onnx
        import onnxruntime as ort

        meta = {m.key: m.value for m in onnx.load(str(out)).metadata_props}
        assert json.loads(meta[CARD_KEY]) == card.to_dict()
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

        def graph(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

    rng = np.random.default_rng(1)
    for shape in _other_valid_shapes(net):
        x = torch.from_numpy(rng.random((2, 1, *shape), dtype=np.float32))
        with torch.no_grad():
            expect, got = net(x), graph(x)
        assert got.shape == expect.shape == (2, 2, *net.output_shape(shape))
        diff = float((got - expect).abs().max())
        print(f"{kind} {name} {shape}: max abs diff {diff:.2e}")
        assert diff < 1e-4


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_load_exported_predicts_like_the_network(tmp_path: Path, kind: str) -> None:
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"], task="detection")
    out = export_model(ckpt, tmp_path / f"m.{kind}", format=kind)
    wrapper, card, task = load_exported(out)
    net, task0, card0 = load_model(str(ckpt))
    assert card == card0 and task == task0
    assert (wrapper.levels, wrapper.halo, wrapper.pooling_period) == (
        net.levels,
        net.halo,
        net.pooling_period,
    )
    assert (wrapper.spatial_dims, wrapper.in_channels, wrapper.num_classes) == (2, 1, 2)
    assert next(wrapper.parameters()).device.type == "cpu" and not wrapper.training
    assert wrapper.to("cpu") is wrapper and wrapper.eval() is wrapper
    image = np.random.default_rng(0).random((1, 70, 90), dtype=np.float32)
    tile = default_trace_shape(net.levels)  # 48 x 48 input, 8 x 8 output tiles: many tiles
    expect = predict_tiled(net, image, tile_shape=tile, batch_size=3)
    got = predict_tiled(wrapper, image, tile_shape=tile, batch_size=3)
    assert np.abs(got - expect).max() < 1e-4
    with pytest.raises(ValueError, match="not valid"):
        wrapper(torch.zeros(1, 1, 45, 48))


def test_a_graph_that_depends_on_the_tile_is_refused_before_tracing(tmp_path: Path, caplog) -> None:
    """Group norm takes its statistics from the tile (in predict.py too): refused at once, naming the cause
    and what to do; nothing is written. Instance norm: predict.py gives it whole-image statistics; as a
    bioimage.io package (consumers predict block by block) it is refused at once, as TorchScript or ONNX it
    is written with a warning to feed whole images."""
    import logging

    group = {"spatial_dims": 2, "depth": 1, "base_features": 8, "norm": "group"}
    ckpt = _checkpoint(tmp_path / "m.ckpt", group)
    with pytest.raises(ExportError, match=r"m\.ckpt: the network has group normalisation.*norm=null"):
        export_model(ckpt, tmp_path / "m.onnx", format="onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]
    inorm = _checkpoint(tmp_path / "i.ckpt", NETS["2d-instance-norm"])
    with pytest.raises(ExportError, match=r"i\.ckpt: the network has instance normalisation.*block by block"):
        export_model(inorm, tmp_path / "i.zip", format="bioimageio")
    with caplog.at_level(logging.WARNING, logger="unet.export"):
        export_model(inorm, tmp_path / "i.pt", format="torchscript")
    assert "i.ckpt: the network has instance normalisation" in caplog.text


def test_load_exported_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"nothing\.pt: no such exported model file"):
        load_exported(tmp_path / "nothing.pt")
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(other))
    with pytest.raises(ExportError, match=r"other\.pt: TorchScript file without a model card"):
        load_exported(other)


# ----------------------------------------------------------------------------------------------------
# the self-contained architecture of the pytorch_state_dict weights
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "spatial_dims": 2,
            "depth": 2,
            "base_features": 4,
            "norm": "batch",
            "dropout": 0.5,
            "max_features": 8,
        },
        {"spatial_dims": 2, "depth": 1, "base_features": 4, "norm": "group", "negative_slope": 0.0},
        {"spatial_dims": 3, "depth": 2, "base_features": 4, "element_size": (2.0, 0.5, 0.5)},
        {"spatial_dims": 3, "depth": 1, "base_features": 4, "norm": "instance", "last_up_features": 3},
        {"spatial_dims": 3, "depth": 1, "base_features": 4, "norm": "channel", "element_size": (2.0, 1, 1)},
    ],
)
def test_architecture_copy_is_the_unet(tmp_path: Path, kwargs: dict) -> None:
    src = tmp_path / "unet_arch.py"
    src.write_text(ARCHITECTURE_SOURCE)
    spec = importlib.util.spec_from_file_location("unet_arch_copy", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = UNet(in_channels=2, num_classes=3, **kwargs).eval()
    copy = module.UNet(in_channels=2, num_classes=3, **kwargs).eval()
    copy.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(2, 2, *default_trace_shape(net.levels))
    with torch.no_grad():
        assert torch.equal(copy(x), net(x))
    assert "import unet" not in ARCHITECTURE_SOURCE and "from unet" not in ARCHITECTURE_SOURCE


# ----------------------------------------------------------------------------------------------------
# bioimage.io packages
# ----------------------------------------------------------------------------------------------------


def _rdf(package: Path) -> dict:
    if package.is_dir():
        return yaml.safe_load((package / "rdf.yaml").read_text())
    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _read(package: Path, name: str) -> bytes:
    if package.is_dir():
        return (package / name).read_bytes()
    with zipfile.ZipFile(package) as z:
        return z.read(name)


def test_bioimageio_zip_passes_bioimageio_core(tmp_path: Path) -> None:
    """The written 2D zip package passes bioimageio.core's test for all three weight formats, offline."""
    core = pytest.importorskip("bioimageio.core")
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    out = tmp_path / "unet.zip"
    export_model(ckpt, out, validate=False, authors=[{"name": "Jane Doe", "affiliation": "Freiburg"}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "unet.zip"]
    summary = core.test_model(str(out), devices=["cpu"])
    names = [d.name for d in summary.details]
    assert summary.status == "passed", summary.format()
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in names

    rdf = _rdf(out)
    net, _, card = load_model(str(ckpt))
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "MIT"
    assert rdf["authors"] == [{"name": "Jane Doe", "affiliation": "Freiburg"}]
    assert {c["doi"] for c in rdf["cite"]} == {"10.1007/978-3-319-24574-4_28", "10.1038/s41592-018-0261-2"}
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    (inp,) = rdf["inputs"]
    (outp,) = rdf["outputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    # the same-size graph: sizes min + n * period (20 px halo, period 4 -> min 44), output = input size with
    # the 20 px halo declared, reflect padding
    assert (net.halo, net.pooling_period) == ((20, 20), (4, 4))
    for axis in inp["axes"][2:]:
        assert axis["size"] == {"min": 44, "step": 4}
        assert axis["unit"] == "micrometer" and axis["scale"] == 0.5
    assert inp["pad"] == {"mode": "reflect"}
    for axis in outp["axes"][2:]:
        assert axis["size"] == {"tensor_id": "input", "axis_id": axis["id"], "offset": 0}
        assert axis["halo"] == 20
    scale_range = [p for p in inp["preprocessing"] if p["id"] == "scale_range"]
    assert scale_range[0]["kwargs"]["axes"] == ["y", "x"]
    assert (scale_range[0]["kwargs"]["min_percentile"], scale_range[0]["kwargs"]["max_percentile"]) == (
        0,
        100,
    )
    assert outp["postprocessing"][0] == {"id": "softmax", "kwargs": {"axis": "channel"}}

    # test tensors: our prediction path on the raw test image
    import io

    x = np.load(io.BytesIO(_read(out, inp["test_tensor"]["source"])))
    y = np.load(io.BytesIO(_read(out, outp["test_tensor"]["source"])))
    assert x.shape[:2] == (1, 1) and y.shape == (1, 2, *x.shape[2:])
    np.testing.assert_allclose(y, reference_prediction(net, x[0], card), atol=1e-6)
    expect = predict_image(net, x[0], element_size=(0.5, 0.5), card=card, precision="32-true")
    np.testing.assert_allclose(y[0], expect, atol=1e-6)  # predict.py's probabilities
    assert x.max() > 1.5  # raw intensities: the package normalises them itself
    readme = _read(out, "README.md").decode()
    assert "Ronneberger" in readme and "Falk" in readme and "Validation" in readme
    assert _read(out, rdf["covers"][0]["source"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_bioimageio_folder_3d_anisotropic_finetuned(tmp_path: Path) -> None:
    """3D anisotropic net, package folder, validated inside export_model; finetuning is recorded."""
    pytest.importorskip("bioimageio.core")
    from bioimageio.spec import load_description

    ckpt = _checkpoint(
        tmp_path / "m.ckpt", NETS["3d-aniso"], hyper_parameters={"init_from": "/x/pretrained.ckpt"}
    )
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(ExportError, match="pkg: output exists"):
        export_model(ckpt, out, weight_formats=["torchscript", "onnx"])
    export_model(ckpt, out, weight_formats=["torchscript", "onnx"], overwrite=True)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "pkg"]
    descr = load_description(out)
    assert descr.validation_summary.status in ("valid-format", "passed")
    rdf = _rdf(out)
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    assert (
        rdf["weights"]["onnx"]["parent"] == "torchscript"
        and rdf["weights"]["torchscript"].get("parent") is None
    )
    (inp,) = rdf["inputs"]
    (outp,) = rdf["outputs"]
    assert [a["id"] for a in inp["axes"][2:]] == ["z", "y", "x"]
    assert [a["scale"] for a in inp["axes"][2:]] == [2.0, 0.5, 0.5]
    assert [a["size"] for a in inp["axes"][2:]] == [
        {"min": 5, "step": 1},
        {"min": 44, "step": 4},
        {"min": 44, "step": 4},
    ]
    assert [a["size"]["offset"] for a in outp["axes"][2:]] == [0, 0, 0]
    assert [a["halo"] for a in outp["axes"][2:]] == [2, 20, 20]
    assert rdf["config"]["unet"]["declared_halo"] == [2, 20, 20]
    assert rdf["config"]["unet"]["init_from"] == "pretrained.ckpt"
    assert "Finetuned" in (out / "README.md").read_text()


def test_bioimageio_percentile_multichannel_without_element_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Percentile normalisation maps to scale_range + clip; 2 channels, 3 classes, no element size. Export's
    parity check holds blockwise prediction to 1e-4 and reports (warns about) the whole-image difference:
    bioimageio.core measures the percentiles on the image mirrored by the halo there."""
    pytest.importorskip("bioimageio.core")
    torch.manual_seed(0)
    net = UNet(in_channels=2, num_classes=3, spatial_dims=2, depth=1, base_features=4)
    card = ModelCard(net.config, SegmentationTask(num_classes=3).config(), None, "percentile")
    ckpt = tmp_path / "m.ckpt"
    save_network(ckpt, net, card)
    with caplog.at_level("WARNING", logger="unet.export.package"):
        out = export_model(ckpt, tmp_path / "pkg", weight_formats=["onnx"], authors=[{"name": "A B"}])
    (warning,) = [r.getMessage() for r in caplog.records if "percentiles" in r.getMessage()]
    assert "onnx blocksize 3" in warning and "onnx whole" in warning
    rdf = _rdf(out)
    (inp,) = rdf["inputs"]
    (outp,) = rdf["outputs"]
    assert [p["id"] for p in inp["preprocessing"]] == ["ensure_dtype", "scale_range", "clip", "ensure_dtype"]
    assert inp["preprocessing"][1]["kwargs"]["min_percentile"] == 1.0
    assert inp["axes"][1]["channel_names"] == ["channel0", "channel1"]
    assert outp["axes"][1]["channel_names"] == ["background", "class1", "class2"]
    assert all(a.get("unit") is None and a["scale"] == 1.0 for a in inp["axes"][2:])
    assert set(rdf["weights"]) == {"onnx"} and rdf["weights"]["onnx"].get("parent") is None


# ----------------------------------------------------------------------------------------------------
# errors and atomic writes
# ----------------------------------------------------------------------------------------------------


def test_errors_name_the_paths(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    with pytest.raises(CheckpointError, match=r"missing\.ckpt: no such checkpoint"):
        export_model(tmp_path / "missing.ckpt", tmp_path / "a.pt", format="torchscript")
    with pytest.raises(ExportError, match=r"a\.pt: unknown export format 'keras'"):
        export_model(ckpt, tmp_path / "a.pt", format="keras")
    with pytest.raises(ExportError, match=r"a\.pt: trace_shape: input shape \(45, 48\) is not valid"):
        export_model(ckpt, tmp_path / "a.pt", format="torchscript", trace_shape=(45, 48))
    out = tmp_path / "a.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match=r"a\.pt: output exists; pass overwrite=true"):
        export_model(ckpt, out, format="torchscript")
    assert out.read_bytes() == b"keep me"
    export_model(ckpt, out, format="torchscript", overwrite=True)
    assert load_exported(out)[0].kind == "torchscript"
    folder = tmp_path / "b.pt"
    (folder / "inner").mkdir(parents=True)
    export_model(ckpt, folder, format="torchscript", overwrite=True)  # a folder there is replaced too
    assert load_exported(folder)[0].kind == "torchscript"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt", "m.ckpt"]
    with pytest.raises(ExportError, match=r"m\.onnx: cannot write: its folder .*nowhere does not exist"):
        export_model(ckpt, tmp_path / "nowhere" / "m.onnx", format="onnx")
    with pytest.raises(ExportError, match=r"m\.onnx: cannot write: its folder .*a\.pt is a file"):
        export_model(ckpt, tmp_path / "a.pt" / "m.onnx", format="onnx")
    assert not (tmp_path / "nowhere").exists()


def test_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    out = tmp_path / "a.pt"
    out.write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch.jit, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        export_model(ckpt, out, format="torchscript", overwrite=True)
    assert out.read_bytes() == b"previous"
    with pytest.raises(OSError, match="disk full"):
        export_model(ckpt, tmp_path / "new.pt", format="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "m.ckpt"]


def test_failed_bioimageio_test_leaves_no_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bioimageio.core")
    from unet.export import package

    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])

    def failing(descr, out):
        raise ExportError(f"{out}: the bioimage.io package failed its test")

    monkeypatch.setattr(package, "run_package_test", failing)
    with pytest.raises(ExportError, match=r"unet\.zip: the bioimage.io package failed"):
        export_model(ckpt, tmp_path / "unet.zip", weight_formats=["torchscript"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------


def test_command_config_is_the_library_arguments() -> None:
    """python -m unet.export's keys are the arguments of export_model, defaults included, each named in
    --help; a key that is none (the former bioimageio.* group) is refused, a missing ckpt_path named."""
    from hydra import compose, initialize
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import MissingMandatoryValue

    from unet.cli import arguments
    from unet.cli.export import USAGE

    params = inspect.signature(export_model).parameters
    with initialize(version_base="1.3", config_path=None):
        cfg = compose("export", overrides=["ckpt_path=m.ckpt", "output=m.zip", "license=CC-BY-4.0"])
        assert list(cfg) == list(params)
        kwargs = arguments(cfg)
        assert kwargs["license"] == "CC-BY-4.0"
        for name, p in params.items():
            if name not in ("ckpt_path", "output", "license"):
                default = list(p.default) if isinstance(p.default, tuple) else p.default
                assert kwargs[name] == default, name
            assert re.search(rf"\b{name}\b", USAGE), f"{name} is not explained in --help"
        with pytest.raises(ConfigCompositionException, match="bioimageio"):
            compose("export", overrides=["ckpt_path=m.ckpt", "output=m.zip", "bioimageio.name=x"])
        with pytest.raises(MissingMandatoryValue, match="ckpt_path"):
            arguments(compose("export", overrides=["output=m.zip"]))


def test_command_line(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = tmp_path / "m.pt"

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "unet.export", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    r = run(f"ckpt_path={tmp_path / 'missing.ckpt'}", f"output={out}")
    assert r.returncode == 1, r.stderr
    assert "export failed: " in r.stdout and "missing.ckpt: no such checkpoint" in r.stdout
    r = run(f"ckpt_path={ckpt}", "format=torchscript", f"output={out}")
    assert r.returncode == 0, r.stderr
    assert f"exported (torchscript): {out}" in r.stdout
    assert load_exported(out)[1] == load_model(str(ckpt))[2]
    assert len(list((tmp_path / "logs" / "export").glob("*/export.log"))) == 2
    assert not (ROOT / "outputs").exists()


@pytest.mark.parametrize(("kind", "name"), [("torchscript", "unet.pt"), ("onnx", "unet.onnx")])
def test_predict_runs_an_exported_model_like_the_checkpoint(tmp_path: Path, kind: str, name: str) -> None:
    """predict_files with the exported file writes the probabilities the checkpoint gives (1e-4)."""
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    from unet import io
    from unet.predict import predict_files

    ckpt = _checkpoint(tmp_path / "m.ckpt", NETS["2d"])
    exported = export_model(ckpt, tmp_path / name, format=kind)
    image = tmp_path / "in" / "cells.tif"
    io.write_tiff(
        image, np.random.default_rng(0).random((70, 90)).astype(np.float32), element_size=(0.5, 0.5)
    )
    # exported graphs run float32 (precision=auto picks it for them); the checkpoint is applied the same way
    predict_files(ckpt, image, tmp_path / "a", progress=False, tile_shape=(44, 44), precision="32-true")
    predict_files(exported, image, tmp_path / "b", progress=False, tile_shape=(44, 44))
    predict_files(exported, image, tmp_path / "c", progress=False)  # tile from the default memory budget
    a = io.read_image(tmp_path / "a" / "cells_probabilities.tif").array
    b = io.read_image(tmp_path / "b" / "cells_probabilities.tif").array
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert (tmp_path / "b" / "cells_labels.tif").exists()
