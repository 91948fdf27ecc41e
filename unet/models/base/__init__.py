"""Pretrained base models shipped with the package (Falk 2019, M5: finetune from one or two images).

``nuclei2d.ckpt``: a 2D nuclei model (one grayscale channel, foreground / background with 1-px ridges,
16 base features, depth 4, float16 weights), trained by ``python train.py experiment=nuclei-base`` on the
train splits of Fluo-N2DL-HeLa and DSB 2018 (subset); its card (``nuclei2d.md``) lists the data, the command
and its scores. ``experiment=finetune`` starts from it when no ``model.init_from`` is given; configs name it
``${unet.base_model:nuclei2d}``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_MODELS = {"nuclei2d": "nuclei2d.ckpt"}


def base_model(name: str = "nuclei2d") -> str:
    """Path of a shipped base model; a clear error for an unknown name or a file missing from the install."""
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; shipped: {sorted(BASE_MODELS)}")
    path = HERE / BASE_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the base model {name!r} is missing from this installation")
    return str(path)
