"""The Freiburg U-Net (Ronneberger et al. 2015; Falk et al. 2019) on PyTorch Lightning + Hydra."""

from __future__ import annotations

__version__ = "0.1.0"
