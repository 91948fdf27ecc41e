"""Quick to answer, clear when refusing, safe to share (issue 27): start-up imports, file modes, and the
messages of a few bad inputs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_network

from unet import io
from unet.checkpoint import save_checkpoint
from unet.hardware import NATIVE_BF16_ENV, cpu_has_native_bf16, slow_precision_note
from unet.io.common import follow_umask

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "entry",
    [
        "import predict",
        "import unet.export.__main__",
        "import unet.cli.predict, unet.cli.export, unet.checkpoint, unet.loading",
    ],
)
def test_predict_and_export_start_without_lightning(entry: str) -> None:
    """``import lightning`` costs 4-8 s here: predict's and export's entry points (their ``--help`` and
    every refusal of a bad argument) must not import it."""
    code = f"import sys; {entry}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_missing_checkpoint_is_refused_without_lightning(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "predict.py",
            f"ckpt_path={tmp_path}/missing.ckpt",
            f"input={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "missing.ckpt: checkpoint not found" in r.stderr
    assert "| lightning" not in r.stderr  # -X importtime lists every module imported


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


def test_checkpoints_follow_the_umask(tmp_path: Path, umask_022) -> None:
    """A checkpoint (atomic write through a private temporary) gets the modes any new file gets: 0644 under
    umask 022, so a colleague or a cluster job under another account can read a shared model."""
    path = tmp_path / "best.ckpt"
    save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as export's package folder is made
    follow_umask(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_bf16_on_a_cpu_without_it_is_said_once_with_its_cost(monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    note = slow_precision_note("cpu", "bf16-mixed")
    assert note and "no native bf16" in note and "2.5x slower" in note and "bf16-mixed" in note
    assert slow_precision_note("cpu", "32-true") is None
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert slow_precision_note("cpu", "bf16-mixed") is None


def test_a_bad_native_bf16_override_is_refused(monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="UNET_NATIVE_BF16='maybe': use 0 or 1"):
        cpu_has_native_bf16()


def test_export_into_a_folder_it_cannot_write_names_the_folder(tmp_path: Path, monkeypatch) -> None:
    """Root ignores permission bits, so the refusal is simulated twice: by ``os.access`` (checked first) and
    by the file system (a PermissionError while the package is written)."""
    from unet.export import exporter
    from unet.export.common import ExportError
    from unet.models.card import ModelCard
    from unet.models.unet import UNet
    from unet.tasks import SegmentationTask

    net = UNet(spatial_dims=2, depth=1, base_features=4)
    card = ModelCard(net.config, SegmentationTask().config(), (0.5, 0.5), "minmax")
    ckpt = save_network(tmp_path / "m.ckpt", net, card)
    folder = tmp_path / "shared"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == folder else real_access(p, m))
    with pytest.raises(
        ExportError, match=r"m\.onnx: cannot write into the folder .*shared: permission denied"
    ):
        exporter.export_model(ckpt, folder / "m.onnx", format="onnx")
    monkeypatch.setattr(os, "access", real_access)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(folder / ".m.onnx.1234.tmp.onnx"))

    monkeypatch.setattr(exporter, "write_onnx", refuse)
    with pytest.raises(ExportError, match=r"cannot write into the folder .*shared: permission denied"):
        exporter.export_model(ckpt, folder / "m.onnx", format="onnx")


def test_evaluate_with_no_matching_names_says_none_match_and_shows_both_sides(tmp_path: Path) -> None:
    from unet.evaluation_files import match_files

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    lab = np.zeros((16, 16), np.uint16)
    lab[4:8, 4:8] = 1
    for i in range(5):
        io.write_tiff(pred / f"img{i}_labels.tif", lab)
        io.write_tiff(gt / f"mask{i}.tif", lab)
    with pytest.raises(ValueError) as info:
        match_files(pred, gt, "segmentation")
    msg = str(info.value)
    assert "none of its 5 prediction(s) matches any of the 5 ground-truth file(s)" in msg
    assert "img0_labels.tif" in msg and "mask0.tif" in msg and "(2 more)" in msg
