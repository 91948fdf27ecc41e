"""The README is executed: every command in its ```bash blocks runs, in its fast form, as a user types it.

Each block becomes one bash script (``set -e``) run in a fresh folder that links the repository's scripts and
``conf/``. Placeholders become real things made here from small synthetic data: ``my/train``, ``my/val``,
``my/all`` and ``my/two_images`` are 2D folders (images/ + labels/), ``/data/stacks`` a 3D root with train/
and val/ (``my/stacks`` too), ``<run>`` the newest run and ``<ckpt>`` its best checkpoint. Training
commands get the fast form
(``FAST``: one epoch of two tiles on a 4-feature net; Optuna two trials) unless they already say
``debug=``. A line is only left out when :data:`NOT_RUN` names why (a GPU, a cluster, hours of training, the
installer or this very test suite); a README line that matches nothing there and fails, fails CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unet import io
from unet.data.synthetic import synthetic_brightfield, synthetic_cells

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: appended to training commands (the fast form): one tiny epoch, every path still taken
FAST = [
    "trainer.max_epochs=1",
    "data.tiles_per_epoch=2",
    "model.net.base_features=4",
    "model.net.depth=2",
]
SWEEP_FAST = ["hydra.sweeper.n_trials=2"]

#: (pattern, why): README commands not executed here
NOT_RUN = [
    (r"^pip install", "the installer: .ci/run installs the project the same way"),
    (r"^python -m pytest", "the test suite itself"),
    (r"^ruff ", ".ci/run runs ruff"),
    (r"^tensorboard ", "a web server"),
    (r"^torchrun ", "a multi-node rendezvous (DDP itself runs in tests/test_train.py with 2 CPU processes)"),
    (r"\+cluster=slurm", "submits jobs to SLURM"),
    (
        r"^python -m benchmarks\.quality",
        "hours of training (its smoke form runs in tests/test_experiments.py)",
    ),
]
NEEDS_GPU = [r"trainer=gpu", r"trainer=ddp trainer\.devices=4"]


def bash_blocks(text: str) -> list[list[str]]:
    """The command lines of every ```bash block (comments and blank lines dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        lines = [ln.strip() for ln in block.splitlines()]
        out.append([ln for ln in lines if ln and not ln.startswith("#")])
    return out


def _not_run(cmd: str) -> str | None:
    for pattern, why in NOT_RUN:
        if re.search(pattern, cmd):
            return why
    if not torch.cuda.is_available() and any(re.search(p, cmd) for p in NEEDS_GPU):
        return "needs GPUs"
    return None


def fast_form(cmd: str) -> str:
    """The command as the test runs it: placeholders filled, training made short."""
    cmd = cmd.split(" #", 1)[0].strip()
    cmd = cmd.replace("<run>", "$(ls -t logs/runs | head -1)")
    cmd = cmd.replace("<ckpt>", "$(ls -t logs/runs/*/checkpoints/best.ckpt | head -1)")
    cmd = cmd.replace("/data/stacks", "my/stacks")
    if re.match(r"^python train\.py\b", cmd) and "--help" not in cmd and "--cfg" not in cmd:
        extra = [] if "debug=" in cmd else list(FAST)
        if "ckpt_path=" in cmd:  # resume the one-epoch run for one more epoch
            extra = [e if e != "trainer.max_epochs=1" else "trainer.max_epochs=2" for e in extra]
        if "hparams_search=optuna" in cmd:
            extra += SWEEP_FAST
        cmd = " ".join([cmd, *extra])
    return cmd


def script_for(lines: list[str]) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(bash script, commands run, (command, why) not run) for one README block."""
    body, ran, skipped = ["set -euo pipefail"], [], []
    for line in lines:
        for part in (p.strip() for p in line.split(" && ")):
            why = _not_run(part)
            if why:
                skipped.append((part, why))
                continue
            cmd = fast_form(part)
            ran.append(cmd)
            body.append(f"echo '+ {cmd}' >&2")
            body.append(cmd)
    return "\n".join(body) + "\n", ran, skipped


def _write_2d(folder: Path, n: int, seed: int) -> None:
    for i in range(n):
        image, labels = synthetic_cells((96, 96), np.random.default_rng([seed, i]), n_cells=10)
        io.write_tiff(folder / "images" / f"img{i}.tif", image[0])
        io.write_tiff(folder / "labels" / f"img{i}.tif", labels.astype(np.uint16))


def _write_3d(folder: Path, n: int, seed: int) -> None:
    es = (1.5, 0.5, 0.5)
    for i in range(n):
        image, labels = synthetic_brightfield((12, 48, 48), np.random.default_rng([seed, i]), element_size=es)
        io.write_tiff(folder / "images" / f"stack{i}.tif", image[0], element_size=es)
        io.write_tiff(folder / "labels" / f"stack{i}.tif", labels.astype(np.uint16), element_size=es)


def make_workdir(work: Path) -> Path:
    """A user's folder: the scripts and conf/ of the repository, and small data where the README's
    placeholders point."""
    for name in ("train.py", "predict.py", "evaluate.py", "conf"):
        (work / name).symlink_to(ROOT / name)
    _write_2d(work / "my" / "train", 2, 0)
    _write_2d(work / "my" / "val", 1, 1)
    _write_2d(work / "my" / "all", 5, 2)
    _write_2d(work / "my" / "two_images", 2, 3)
    _write_3d(work / "my" / "stacks" / "train", 2, 4)
    _write_3d(work / "my" / "stacks" / "val", 1, 5)
    return work


def test_readme_blocks_are_found() -> None:
    blocks = bash_blocks(README.read_text())
    commands = [c for b in blocks for c in b]
    assert len(blocks) >= 4 and any(c.startswith("python train.py") for c in commands)
    # the fast form really changes training commands and fills every placeholder
    assert fast_form("python train.py model=unet3d data=brightfield").endswith(" ".join(FAST))
    assert "<" not in fast_form("python train.py ckpt_path=logs/runs/<run>/checkpoints/last.ckpt")
    assert fast_form("python train.py debug=default") == "python train.py debug=default"


def readme_sections(text: str) -> list[tuple[str, list[list[str]]]]:
    """(title, command blocks) of every ``## `` section of the README, in order. A section is a reader's
    session: its blocks build on each other (the quickstart checkpoint, the demo images), sections do not."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return [(part.splitlines()[0].strip(), bash_blocks(part)) for part in parts]


SECTIONS = [title for title, blocks in readme_sections(README.read_text()) if blocks]


def test_every_block_is_in_a_section() -> None:
    text = README.read_text()
    assert sum(len(b) for _, b in readme_sections(text)) == len(bash_blocks(text))
    assert any(t.startswith("Prediction") for t in SECTIONS) and "Training" in SECTIONS


@pytest.mark.parametrize("section", SECTIONS, ids=[t.split()[0].lower() for t in SECTIONS])
def test_readme_section_runs_in_order(tmp_path, section) -> None:
    """Every block of one README section, in order, in one folder, as a reader types them: later blocks use
    what earlier ones made, so the order is part of the test and no correctness depends on how a test
    scheduler distributes tests (pytest-xdist 3.8 with pytest 9.2 no longer keeps ``xdist_group`` tests on
    one worker); sections are independent, so they may run side by side."""
    work = make_workdir(tmp_path)
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    blocks = dict(readme_sections(README.read_text()))[section]
    ran_any: list[str] = []
    for index, lines in enumerate(blocks):
        script, ran, skipped = script_for(lines)
        for cmd, why in skipped:
            assert why, cmd
        if not ran:
            continue
        proc = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, (
            f"README section {section!r}, block {index} failed:\n{script}\n--- stderr (tail) ---\n"
            f"{proc.stderr[-4000:]}\n--- stdout (tail) ---\n{proc.stdout[-2000:]}"
        )
        ran_any += ran
    if section.startswith("Prediction"):
        assert any(c.startswith("python predict.py") for c in ran_any)
        assert any(c.startswith("python -m unet.export") for c in ran_any)
    if not ran_any:
        pytest.skip(f"section {section!r}: every command is one this test does not run (see NOT_RUN)")
