"""The model card's one home (:mod:`unet.models.card`) and the one model loader
(:func:`unet.loading.load_network`): checkpoints and exported graphs alike, the card key spelled once, the
geometry from the card."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import save_network

from unet.checkpoint import CheckpointError
from unet.export import ExportedUNet, export_model
from unet.loading import load_network
from unet.models.card import CARD_KEY, ModelCard, geometry_of, network_from_checkpoint
from unet.models.unet import UNet
from unet.predict import ModelCard as PredictModelCard
from unet.predict import load_model
from unet.tasks import SegmentationTask

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(path: Path) -> tuple[Path, UNet, ModelCard]:
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=1, base_features=2).eval()
    card = ModelCard(net.config, SegmentationTask().config(), (0.5, 0.5), "minmax")
    save_network(path, net, card)
    return path, net, card


def test_checkpoint_loads_as_network_and_card(tmp_path: Path) -> None:
    path, net, card = _checkpoint(tmp_path / "m.ckpt")
    loaded, loaded_card = load_network(path)
    assert isinstance(loaded, UNet) and not loaded.training
    assert loaded_card == card and PredictModelCard is ModelCard
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    _, task, card2 = load_model(str(path))  # the predict room's name for it, with the card's task
    assert card2 == card and task.name == "segmentation"
    assert geometry_of(loaded, loaded_card) is loaded  # a UNet is its own geometry


def test_weights_that_do_not_fit_the_card_are_refused_with_the_file_named(tmp_path: Path) -> None:
    path, _, _ = _checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt[CARD_KEY]["net"]["base_features"] = 4
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"m\.ckpt: weights do not fit the network of its model card"):
        load_network(path)
    with pytest.raises(ValueError, match=r"here: weights do not fit"):
        network_from_checkpoint(ckpt, "here")


def test_exported_graph_loads_alike_and_its_geometry_comes_from_the_card(tmp_path: Path) -> None:
    path, net, card = _checkpoint(tmp_path / "m.ckpt")
    out = export_model(path, tmp_path / "m.pt", format="torchscript")
    graph, graph_card = load_network(out)
    assert isinstance(graph, ExportedUNet) and graph_card == card
    geometry = geometry_of(graph, graph_card)
    assert isinstance(geometry, UNet) and geometry.config == net.config and geometry.levels == graph.levels
    assert "geometry" not in vars(graph)  # nothing patched onto the module
    x = torch.rand(1, 1, *net.valid_input_shape((40, 40)))
    with torch.no_grad():
        torch.testing.assert_close(graph(x), net(x))


def test_the_card_key_is_spelled_once() -> None:
    """Every module of ``unet/`` names the checkpoint's card entry through ``CARD_KEY``."""
    spelled = []
    for file in sorted((ROOT / "unet").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Constant) and node.value == CARD_KEY:
                spelled.append(str(file.relative_to(ROOT)))
    assert spelled == ["unet/models/card.py"]
