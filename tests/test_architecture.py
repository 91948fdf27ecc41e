"""Dependencies point one way (ARCHITECTURE.md): the core imports neither the shells nor the I/O rooms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the pure core: numpy/scipy/torch functions with explicit generators
CORE = (
    "unet.tasks",
    "unet.data.items",
    "unet.data.weights",
    "unet.data.sampling",
    "unet.data.augment",
    "unet.tiling",
    "unet.metrics",
    "unet.postprocess",
    "unet.models",
)
#: what the core must not pull in: the framework shells and the file formats
SHELLS_AND_IO = ("lightning", "hydra", "omegaconf", "unet.io", "tifffile", "zarr", "roifile", "PIL")

CHILD = """
import importlib, json, sys
core, banned = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in core:
    importlib.import_module(name)
print(json.dumps(sorted(b for b in banned if any(m == b or m.startswith(b + ".") for m in sys.modules))))
"""


def test_the_core_imports_no_shell_and_no_io() -> None:
    """One fresh interpreter imports every core module; none of the shells' or I/O packages may load."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(CORE), json.dumps(SHELLS_AND_IO)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the core loaded {loaded}"
