"""Faults during prediction: ``kill -9`` of ``predict.py`` in the middle of a folder of images, in core and
out of core, then the same command again.

After the kill every output under its final name is complete (it equals the output of an uninterrupted run:
all outputs are written under hidden temporary names and renamed); the rerun removes the temporaries the
kill left, skips the images that were finished, exits 0 and gives exactly the outputs of the uninterrupted
run. The kill is timed to land while an output of the second image is being written (the ROI set in core,
the tile loop into the probabilities store out of core), so that writing to the final names directly would
leave a half-written file there and fail the test.

Each test starts ``predict.py`` twice (Python, torch and Lightning imports: ~15 s per start on two busy
cores), hence ``slow``: ``pytest -m slow tests/test_faults.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import save_network

from unet import io
from unet.data.synthetic import place_cells
from unet.models.unet import UNet
from unet.predict import predict_files
from unet.predict.image import ModelCard
from unet.tasks import SegmentationTask

ROOT = Path(__file__).resolve().parents[1]
ZARR_METADATA = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
# case: predict options (the same in the killed run, the rerun and the uninterrupted run), the images, and
# the output of the second image whose writing the kill interrupts
CASES = {
    "in-core": ({"memory_budget_mib": 256}, 3, "im1_rois.zip"),
    "out-of-core": ({"out_of_core_mib": 0, "tile_shape": [44, 44]}, 3, "im1_probabilities.zarr"),
}


def _inputs(root: Path, n: int) -> tuple[Path, Path]:
    """A random tiny 2D segmentation model (~250 objects per image) and n images of 256x256 cells."""
    torch.manual_seed(0)
    net = UNet(in_channels=1, spatial_dims=2, depth=1, base_features=2)
    card = ModelCard(net.config, SegmentationTask().config(), None, "minmax").to_dict()
    save_network(root / "m.ckpt", net, card)
    for i in range(n):
        cells, _, _ = place_cells((256, 256), np.random.default_rng([7, i]), n_cells=20)
        io.write_tiff(root / "in" / f"im{i}.tif", ((cells > 0) * 200).astype(np.uint8))
    return root / "m.ckpt", root / "in"


def _entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _started(folder: Path, marker: str) -> bool:
    """An entry named after ``marker`` (final or hidden temporary) holds data: for a zarr store, a chunk."""
    for name in _entries(folder):
        if marker not in name:
            continue
        path = folder / name
        if not path.is_dir():
            return True
        try:
            if any(p.name not in ZARR_METADATA and p.is_file() for p in path.rglob("*")):
                return True
        except FileNotFoundError:  # renamed meanwhile
            return True
    return False


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _same(a: Path, b: Path) -> bool:
    """The two outputs hold the same data (arrays equal, zip members equal, text identical)."""
    if a.name.endswith(".zarr"):
        za, zb = io.open_zarr(a), io.open_zarr(b)
        return dict(za.attrs) == dict(zb.attrs) and np.array_equal(za[...], zb[...])
    if a.suffix == ".tif":
        xa, xb = tifffile.imread(a), tifffile.imread(b)
        return xa.dtype == xb.dtype and np.array_equal(xa, xb)
    if a.suffix == ".zip":
        with zipfile.ZipFile(a) as fa, zipfile.ZipFile(b) as fb:
            names = fa.namelist()
            return names == fb.namelist() and all(fa.read(n) == fb.read(n) for n in names)
    if a.suffix == ".csv":
        io.read_csv(a)  # parses
    return a.read_bytes() == b.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_kill_during_prediction_then_rerun(tmp_path: Path, case: str) -> None:
    options, n_images, marker = CASES[case]
    ckpt, src = _inputs(tmp_path, n_images)
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): the same arithmetic
    reference = tmp_path / "reference"
    predict_files(ckpt, src, reference, progress=False, **options)
    expected = sorted(os.listdir(reference))
    assert len(expected) == 4 * n_images + 1  # probabilities, labels, ROIs, objects; summary.csv

    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={ckpt}", f"input={src}", f"output_dir={out}"]
    cmd += ["progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"]
    cmd += [f"{k}={v}".replace(" ", "") for k, v in options.items()]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    first = [n for n in expected if n.startswith("im0_")]  # the outputs of the image finished before the kill
    with (tmp_path / "killed.log").open("w") as log:
        killed = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    _kill_when(killed, lambda: set(first) <= set(_entries(out)) and _started(out, marker))
    log = (tmp_path / "killed.log").read_text()[-3000:]
    assert killed.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{log}"

    # every output under its final name is complete; what was being written is only a hidden temporary
    left = sorted(_entries(out))
    visible = [n for n in left if not n.startswith(".")]
    assert set(first) <= set(visible) and "summary.csv" not in visible
    for name in visible:
        assert name in expected, name
        try:
            same = _same(out / name, reference / name)
        except Exception as e:
            pytest.fail(f"{name} is unreadable after the kill: {type(e).__name__}: {e}")
        assert same, f"{name} differs from the uninterrupted run's"
    # in core the kill usually lands while .im1_rois.zip.<hex>.tmp.zip is written (~30 ms; not asserted)
    temporaries = [n for n in left if n.startswith(".")]
    if case == "out-of-core":  # killed in the tile loop (~1 s): the store is only under its temporary name
        assert marker not in visible
        assert any(n.startswith(f".{marker}.") and n.endswith(".tmp") for n in temporaries), left
    finished = {n: (out / n).stat().st_ino for n in first}

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(os.listdir(out)) == expected  # the temporaries are gone, nothing is missing
    for name in expected:
        assert _same(out / name, reference / name), name
    assert {n: (out / n).stat().st_ino for n in first} == finished  # the finished image was skipped
