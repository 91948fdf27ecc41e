"""A training budget in CPU time, so that runs sharing a machine get the same compute whatever the load.

On a GPU machine the budget is wall-clock time (``budget_clock``): the host's CPU time does not measure
device work.

Wall-clock budgets (``trainer.max_time``) give a run less compute when other work shares the cores; the
recipe table runs several arms side by side, so its budget is the CPU time of the training process (all its
threads: ``time.process_time``), with data loading in the same process (``num_workers=0``) for every arm.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


def budget_clock() -> str:
    """The clock of a training budget on this machine: ``cpu`` (process CPU time) without a GPU; ``wall``
    with one, where the work runs on the device and the host's CPU time does not measure it."""
    import torch

    return "wall" if torch.cuda.is_available() else "cpu"


def clock_now(clock: str) -> float:
    """Seconds on ``clock`` (``cpu``: this process's CPU time, all threads; ``wall``: a monotonic clock)."""
    return time.process_time() if clock == "cpu" else time.perf_counter()


class CpuBudget(Callback):
    """Stop training once the process has used ``minutes`` of CPU time (checked after every batch, as
    Lightning's wall-clock ``Timer`` does; validation inside the budget counts too)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = float(minutes) * 60.0
        self.start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.start is None:
            self.start = time.process_time()

    def used(self) -> float:
        return 0.0 if self.start is None else time.process_time() - self.start

    def _check(self, trainer) -> None:
        if self.used() >= self.seconds:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, *args) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer)
