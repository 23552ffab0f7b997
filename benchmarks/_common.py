"""What several benchmarks share: a frozen stand-in encoder, a quiet CPU trainer, clocks and
the process's memory figures from ``/proc/self/status``."""

import gc
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from quaterion_models.encoders import Encoder

from benchmarks._memory import current_mib, peak_mib, reset_peak, status_kib

__all__ = [
    "Clock",
    "FrozenEncoder",
    "QUIET_TRAINER",
    "current_mib",
    "peak_mib",
    "quiet_trainer",
    "reset_peak",
    "status_kib",
]

if TYPE_CHECKING:
    import pytorch_lightning as pl

QUIET_TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}


def quiet_trainer(**options) -> "pl.Trainer":
    """A ``pl.Trainer`` of :data:`QUIET_TRAINER` (one CPU, no logger, bar, summary or
    checkpoints) updated with ``options``."""
    import pytorch_lightning as pl  # here: benchmarks measuring memory import this module

    return pl.Trainer(**{**QUIET_TRAINER, **options})


class FrozenEncoder(Encoder):
    """A frozen encoder of width ``size`` whose records are collated by ``collate`` (default
    ``torch.stack``); subclasses define ``forward``."""

    def __init__(self, size: int, collate: Callable = torch.stack):
        super().__init__()
        self.size, self.collate = size, collate

    @property
    def embedding_size(self) -> int:
        return self.size

    def get_collate_fn(self) -> Callable:
        return self.collate

    @property
    def trainable(self) -> bool:
        return False


class Clock:
    """Wall and CPU (process) time of a ``with`` block; CPU time is robust to other processes
    on a shared host.

    Entering runs a full garbage collection first, so a measured run does not pay for
    collecting what an earlier run left behind.
    """

    def __enter__(self) -> "Clock":
        gc.collect()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
