"""Train a U-Net (not built yet: see the training issue). Run `python predict.py` for the demo."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.exit("train.py: training is not built yet; `python predict.py` runs the overlap-tile demo")
