"""The commands behind the scripts, one module each: a composed Hydra config in, a result out.

=========================  ==============================================================================
script                     command
=========================  ==============================================================================
``train.py``               :func:`unet.cli.train.train`: ``conf/train.yaml`` and the options
                           :mod:`unet.config` generates -> objects -> checks -> Lightning fit
``predict.py``             :func:`unet.cli.predict.predict`: :func:`unet.predict.predict_files`
``evaluate.py``            :func:`unet.cli.evaluate.evaluate`: :func:`unet.evaluation.evaluate_dirs`
``python -m unet.export``  :func:`unet.cli.export.export`: :func:`unet.export.export_model`
=========================  ==============================================================================

The scripts are of one shape: ``@hydra.main`` calls the command and prints its result (nothing here
prints; ``unet/export/__main__.py``, inside the package, logs it). The config keys of predict, evaluate
and export are the arguments of their library function, passed as they are: :func:`store_command` makes
the config from the function's signature (:func:`unet.config.arguments_of`), so each default has one
home, the signature, and a key that is no argument is refused (Hydra's struct mode). The command's module
adds only what the command line changes (the output directory's default, predict's processes) and the
``--help`` text.

Importing a command's module stores that command's configs in Hydra's ConfigStore and no other's: a
process runs one command. This keeps evaluate's ``task=detection`` a value: where train's options are
stored, ``task`` is a config group, which Hydra would select instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from unet.config import arguments_of, target


def store_command(
    app: str,
    fn: Callable[..., Any],
    *,
    header: str,
    usage: str,
    exclude: Collection[str] = (),
    keys: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> None:
    """Store ``<app>.py``'s primary config (``config_name=app``): the arguments of ``fn`` but ``exclude``
    with their defaults, then ``keys`` (what the command line adds or sets otherwise), and Hydra's run
    directories, job name (the log file ``<app>.log``, whichever file is run) and ``--help`` (``header``,
    ``usage``, then the options and their defaults). ``command``: how it is run, ``python <app>.py``
    unless given."""
    command = command or f"python {app}.py"
    hydra = {
        "run": {"dir": f"logs/{app}/${{now:%Y-%m-%d_%H-%M-%S}}"},
        "sweep": {"dir": f"logs/{app}-multirun/${{now:%Y-%m-%d_%H-%M-%S}}", "subdir": "${hydra.job.num}"},
        "job": {"name": app, "chdir": False},
        "help": {
            "app_name": command.split()[-1],
            "header": header,
            "footer": f"Python library: {target(fn)}. Hydra options: {command} --hydra-help",
            "template": "${hydra.help.header}\n\n"
            + usage.strip("\n")
            + "\n\nOptions (key=value; defaults below):\n\n$CONFIG\n${hydra.help.footer}",
        },
    }
    node = {**arguments_of(fn, exclude), **(keys or {}), "hydra": hydra}
    ConfigStore.instance().store(name=app, node=node)


def arguments(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as keyword arguments; a required key that was not given is named."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
