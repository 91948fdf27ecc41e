"""One fact, one home: the Hydra options generated from the classes (unet/config.py) and the YAML recipe."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
from conftest import train_config
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from unet import config
from unet.data.augment import AugmentParams
from unet.tasks import DetectionTask, SegmentationTask

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _yaml(path: Path) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(path))


def test_the_task_and_augment_options_are_the_classes_defaults() -> None:
    """task=... instantiates the dataclass with its own defaults; data/augment=... is AugmentParams'."""
    assert instantiate(train_config("unused", []).task) == SegmentationTask()
    assert instantiate(train_config("unused", ["task=detection"]).task) == DetectionTask()
    for option, params in (("falk2019", AugmentParams.falk2019()), ("none", AugmentParams())):
        augment = OmegaConf.to_container(train_config("unused", [f"data/augment={option}"]).data.augment)
        assert config.values_of(params) == augment
    assert (
        train_config("unused", []).data.augment
        == train_config("unused", ["data/augment=falk2019"]).data.augment
    )  # the recipe's default


def test_known_keys_override_and_unknown_keys_are_refused() -> None:
    cfg = train_config("unused", ["task.lambda_sep=0", "data.tiles_per_epoch=3", "model.val_memory_mib=512"])
    assert (cfg.task.lambda_sep, cfg.data.tiles_per_epoch, cfg.model.val_memory_mib) == (0, 3, 512)
    for key in ("task.lambda_sepp", "task.selected", "data.augment.flip", "model.net.depthh"):
        with pytest.raises(ConfigCompositionException, match="Could not override"):
            train_config("unused", [f"{key}=1"])


def test_no_yaml_file_shadows_a_generated_option() -> None:
    for group, name in config.nodes():
        path = CONF / group / f"{name}.yaml"
        assert not path.exists(), f"{path.relative_to(ROOT)} repeats an option of unet/config.py"


def test_no_yaml_restates_a_default() -> None:
    """Model, data and experiment files set only values that differ from the generated defaults."""
    nodes = config.nodes()
    restated = []

    def check(path: Path, body: dict[str, Any], prefix: str, defaults: dict[str, Any]) -> None:
        known = _leaves(defaults)
        for key, value in _leaves(body).items():
            if key in known and known[key] == value:
                restated.append(f"{path.relative_to(ROOT)}: {prefix}{key}: {value!r}")

    for path in sorted((CONF / "model").glob("*.yaml")):
        body = {k: v for k, v in _yaml(path).items() if k != "defaults"}
        check(path, body, "", nodes["model", "base"])
    for path in sorted((CONF / "data").glob("*.yaml")):
        body = {k: v for k, v in _yaml(path).items() if k != "defaults"}
        check(path, {k: v for k, v in body.items() if k in nodes["data", "base"]}, "", nodes["data", "base"])
        composed = OmegaConf.to_container(train_config("unused", [f"data={path.stem}"]).data)
        restated += _restated_arguments(path, body, composed)
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        body = _yaml(path)
        task = "detection" if {"override /task": "detection"} in body.get("defaults", []) else "segmentation"
        check(path, body.get("task", {}), "task.", nodes["task", task])
        data = body.get("data", {})
        check(path, {k: v for k, v in data.items() if k != "augment"}, "data.", nodes["data", "base"])
        check(path, data.get("augment", {}), "data.augment.", nodes["data/augment", "falk2019"])
        model = {k: v for k, v in body.get("model", {}).items() if k != "net"}  # net: dataset facts, papers'
        check(path, model, "model.", nodes["model", "base"])
    assert not restated, "defaults written again:\n" + "\n".join(restated)


def _restated_arguments(path: Path, body: dict[str, Any], composed: dict[str, Any], prefix: str = "") -> list:
    """``key: value`` lines of ``body`` (a ``conf/data`` file) that restate the default of the callable they
    configure: the ``_target_`` of the composed node they sit in (a ``source``, the data module...), or the
    ``_target_`` a generated option selected in the file's defaults list already gives."""
    found = []
    target = composed.get("_target_")
    params = inspect.signature(get_object(target)).parameters if target else {}
    for key, value in body.items():
        name = f"{prefix}{key}"
        if key == "_target_" and _selects_generated(path, prefix.rstrip(".") or "_here_", value):
            found.append(f"{path.relative_to(ROOT)}: {name}: {value!r} (the generated option's)")
        elif key in params and config.plain(params[key].default) == value:
            found.append(f"{path.relative_to(ROOT)}: {name}: {value!r} (default of {target})")
        elif isinstance(value, dict) and isinstance(composed.get(key), dict):
            found += _restated_arguments(path, value, composed[key], f"{name}.")
    return found


def _selects_generated(path: Path, package: str, target: str) -> bool:
    """The file's defaults list selects a generated option at ``package`` whose ``_target_`` is ``target``."""
    for entry in _yaml(path).get("defaults", []):
        option, _, at = str(entry).partition("@")
        group, _, name = option.rpartition("/")
        node = config.nodes().get((f"data/{group}", name), {})
        if at == package and node.get("_target_") == target:
            return True
    return False


def test_the_generated_defaults_are_the_signatures() -> None:
    """A new constructor argument appears in the config by itself; ``selected`` (validation state) and
    ``object_diameter`` (measured by train.py) not."""
    from unet.data.datamodule import UNetDataModule

    data = config.nodes()["data", "base"]
    assert data["tiles_per_epoch"] == 50 and data["seed"] == "${seed}" and "source" not in data
    seg = config.nodes()["task", "segmentation"]
    fields = {f.name for f in dataclasses.fields(SegmentationTask)}
    assert set(seg) == {"_target_"} | fields - {"selected", "object_diameter"}
    assert config.target(UNetDataModule) == data["_target_"]
