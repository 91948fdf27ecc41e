"""Checkpoint files: the one place they are written and read (training, resume, finetuning, prediction).

* **Safe to open.** Every checkpoint is read with ``torch.load(..., weights_only=True)``: tensors and plain
  Python values only, so a shared model file cannot run code when it is loaded (a pickle that needs
  anything else is refused with :class:`CheckpointError`). Our checkpoints hold nothing else: the model card
  is plain data, RNG states are tensors and tuples of ints.
* **Never half-written.** :func:`save_checkpoint` (behind Lightning's checkpoint plugin
  :class:`unet.lit_module.AtomicCheckpointIO`, set in ``conf/trainer/default.yaml``) writes to a
  temporary file in the checkpoint's own directory, flushes and fsyncs it, and renames it over the final
  name, so a crash or a full disk leaves the previous
  ``last.ckpt``/``best.ckpt`` intact (Lightning's own writer streams into the final name); the file gets
  the modes of the user's umask (a colleague's job can read a shared model). Only torch is imported here:
  predicting and exporting never load Lightning.
* **Clear errors.** A missing, empty, truncated or foreign file raises :class:`CheckpointError` (a
  ``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import errno
import io as _io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from unet.io.common import follow_umask
from unet.models.card import CARD_KEY


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, not a checkpoint, unsafe)."""


def _why(e: BaseException) -> str:
    """torch's reason in one line, without its advice to retry with ``weights_only=False`` (the one thing
    not to do with a file of unknown origin)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if "weights_only" not in ln and "trusted source" not in ln.lower()]
    for ln in keep:  # torch's own diagnosis, where it gives one
        if ln.startswith("WeightsUnpickler error:"):
            return ln[len("WeightsUnpickler error:") :].strip()[:200]
    text = keep[0].split(". ")[0].rstrip(".")[:200] if keep else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); every failure is a :class:`CheckpointError` that
    names the file and says what is wrong (missing, unreadable, empty, truncated, foreign, unsafe)."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p}: a directory, not a checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        if p.stat().st_size == 0:
            raise CheckpointError(f"{p}: empty file (truncated or not a checkpoint)")
        with open(p, "rb") as f:
            head = f.read(4)
    except PermissionError:
        raise CheckpointError(f"{p}: permission denied: this user cannot read the checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except PermissionError:
        raise CheckpointError(f"{p}: permission denied: this user cannot read the checkpoint") from None
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e).upper().replace("UNSUPPORTED GLOBAL", "GLOBAL"):
            raise CheckpointError(
                f"{p}: refused: the file contains Python objects that would run code when loaded "
                "(checkpoints of this project hold only tensors and plain values); not loading it"
            ) from None
        raise CheckpointError(f"{p}: truncated or not a checkpoint ({_why(e)})") from None
    except Exception as e:  # anything torch raises on foreign bytes (KeyError, RuntimeError, EOFError, ...)
        kind = (
            "truncated or not a checkpoint" if head[:2] == b"PK" else "not a checkpoint (not a PyTorch file)"
        )
        raise CheckpointError(f"{p}: {kind} ({_why(e)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: not a checkpoint (a {type(ckpt).__name__}, not a dict)")
    return ckpt


def load_project_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """:func:`load_checkpoint` for a checkpoint of this project (with a model card under
    :data:`unet.models.card.CARD_KEY` and a state dict)."""
    ckpt = load_checkpoint(path, map_location)
    if CARD_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no '{CARD_KEY}' entry)")
    return ckpt


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename: all or nothing.

    Raises:
        OSError: with the file named and "disk full" said when the device has no space left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            buffer = _io.BytesIO()
            torch.save(checkpoint, buffer)
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        follow_umask(Path(tmp))  # mkstemp's file is 0600: a colleague's job must read a shared model
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise OSError(
                e.errno,
                f"{path}: disk full while writing the checkpoint (the previous file, if any, is intact)",
            ) from e
        raise


def slim_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = torch.float16
) -> dict[str, Any]:
    """A model file to ship: the card, the hyper-parameters and the network weights of a training
    checkpoint (no optimizer, scheduler or loop state), floating-point weights cast to ``dtype`` (float16
    halves the file; loading casts them back to the network's float32). Predicting and finetuning read it
    like any checkpoint; resuming a run needs the full one. Written atomically; returns what was written."""
    ckpt = load_project_checkpoint(src)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        for k, v in ckpt["state_dict"].items()
        if k.startswith("net.")
    }
    slim = {
        "state_dict": state,
        CARD_KEY: ckpt[CARD_KEY],
        "hyper_parameters": dict(ckpt.get("hyper_parameters") or {}),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
    }
    save_checkpoint(slim, dst)
    return slim
