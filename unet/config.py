"""Hydra's view of the code: resolvers, and the config nodes generated from the classes they configure.

One fact, one home: a default lives in the signature (or dataclass) of the class that takes it, where its
docstring says what it means and which paper it comes from. The Hydra options below are generated from
those signatures, so ``python train.py --cfg job`` still shows every key with its value, known keys are
overridden without ``+`` and unknown keys are refused (Hydra's struct mode), while the YAML files in
``conf/`` hold only the recipe: values that differ from the code's, and the wiring (interpolations).

=========================================  =============================================================
option (group/name)                        generated from
=========================================  =============================================================
``task/segmentation``, ``task/detection``  :class:`unet.tasks.SegmentationTask`, ``DetectionTask``
``data/augment/none``                      :class:`unet.data.augment.AugmentParams` (the identity)
``data/augment/falk2019``                  :meth:`unet.data.augment.AugmentParams.falk2019`
``data/base``                              :class:`unet.data.datamodule.UNetDataModule` (``conf/data/*``
                                           add a ``source``)
``data/source/dataset``, ``synthetic``     :class:`unet.data.datasets.DatasetSource`, ``SyntheticSource``
                                           (``conf/data/*`` select one ``@source`` and set what differs)
``data/source/folders``                    :meth:`unet.data.datamodule.UNetDataModule.from_folders`
                                           (``conf/data/folder.yaml`` selects it ``@_here_``)
``model/base``                             :class:`unet.lit_module.LitUNet` with ``net``:
                                           :class:`unet.models.unet.UNet` (``conf/model/unet2d.yaml``
                                           adds the recipe: features, optimizer, scheduler)
``predict``, ``evaluate`` (primary)        :func:`unet.predict.predict_files`, ``evaluation.evaluate_dirs``
                                           (:func:`unet.cli.store_command`, which adds the command line's
                                           keys and help)
=========================================  =============================================================

Which options are selected by default is the recipe's choice: ``conf/train.yaml``'s defaults list.
:func:`register` must run before Hydra composes (``unet.cli.train`` calls it on import, so ``train.py``
and tests that import it need nothing else). It stores train's options only: in a process that has them,
``task`` is a config group, so ``evaluate.py`` (``task=detection``, a value) never imports them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


def target(cls: type) -> str:
    """The ``_target_`` of a class: its import path."""
    return f"{cls.__module__}.{cls.__qualname__}"


def arguments_of(fn: Callable[..., Any], exclude: Collection[str] = ()) -> dict[str, Any]:
    """``{name: default}`` for every parameter of ``fn`` but those in ``exclude``; ``???`` (required) for a
    parameter without a default."""
    return {
        name: "???" if p.default is inspect.Parameter.empty else plain(p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if name not in exclude
    }


def defaults_of(cls: Callable[..., Any], exclude: Collection[str] = ()) -> dict[str, Any]:
    """``{"_target_": ..., name: default}`` for every parameter of ``cls`` that has a default.

    Parameters without a default (the objects the pipeline builds: ``net``, ``task``, ``source``...) and
    those in ``exclude`` are left out.
    """
    params = inspect.signature(cls).parameters.items()
    required = [name for name, p in params if p.default is inspect.Parameter.empty]
    return {"_target_": target(cls), **arguments_of(cls, exclude={*exclude, *required})}


def values_of(obj: Any) -> dict[str, Any]:
    """The fields of a dataclass instance as a plain config node (tuples become lists)."""
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def plain(value: Any) -> Any:
    """A default as OmegaConf stores it: tuples become lists."""
    return [plain(v) for v in value] if isinstance(value, tuple | list) else value


def nodes() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(group, name): node}`` of every generated option."""
    from unet.data.augment import AugmentParams
    from unet.data.datamodule import UNetDataModule
    from unet.data.datasets import DatasetSource
    from unet.data.sources import SyntheticSource
    from unet.lit_module import LitUNet
    from unet.models.unet import UNet
    from unet.tasks import TASKS

    # task: the dataclass fields but ``selected`` (set by validation) and ``object_diameter`` (measured by
    # train.py), both stored in the checkpoint
    out = {
        ("task", name): defaults_of(cls, exclude=("selected", "object_diameter"))
        for name, cls in TASKS.items()
    }
    out["data/augment", "none"] = values_of(AugmentParams())
    out["data/augment", "falk2019"] = values_of(AugmentParams.falk2019())
    # the objects the pipeline builds (source, augmentation, network, task, optimiser) are not defaults here
    # (and the model's facts, passed by the pipeline: ``unet.cli.train.build``; ``items``: read by it)
    out["data", "base"] = {
        **defaults_of(UNetDataModule, exclude=("source", "augment", "items")),
        "seed": "${seed}",
    }
    # the sources ``conf/data/*`` configure, with their defaults (the YAML sets what differs)
    out["data/source", "dataset"] = defaults_of(DatasetSource)
    out["data/source", "synthetic"] = defaults_of(SyntheticSource)
    out["data/source", "folders"] = defaults_of(UNetDataModule.from_folders)  # at data (``@_here_``)
    model = defaults_of(LitUNet, exclude=("net", "task", "optimizer", "scheduler"))
    out["model", "base"] = {**model, "net": defaults_of(UNet, exclude=("element_size",))}
    return out


def register() -> None:
    """Register the resolvers and the generated options (idempotent; before ``hydra.compose``)."""
    from unet.hardware import auto_precision
    from unet.models.base import base_model

    for name, resolver in (("unet.precision", auto_precision), ("unet.base_model", base_model)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    store = ConfigStore.instance()
    for (group, name), node in nodes().items():
        store.store(group=group, name=name, node=node)
