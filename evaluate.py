"""Evaluate predictions against ground truth (not built yet: see the predict/evaluate issue)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.exit("evaluate.py: not built yet; the metrics live in unet.metrics")
