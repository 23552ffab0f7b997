"""One rank of a 2-rank DDP fit (gloo, Lightning joins the process) in which one rank raises
its own ``ValueError``; launched as a plain process per rank by ``test_own_errors``.

Usage: ``python -m tests.quaterion.distributed.own_error_script CASE OUT``. The rank writes
``OUT/rank<r>.json`` (the type and message of what its fit raised, and when), then lets the
error end the process.
"""

import json
import os
import sys
import time
from datetime import timedelta

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig, CacheType
from quaterion.train.callbacks import RankFailureCallback
from tests.quaterion.train.helpers import CountingEncoder, Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as quiet_trainer

FAIL_BATCH = 1
MESSAGE = "boom in {where} on rank {rank}"


def _boom(where: str, rank: int) -> ValueError:
    return ValueError(MESSAGE.format(where=where, rank=rank))


class FailingModel(Model):
    """Raises in ``training_step`` or ``validation_step`` on ``failing_rank`` only; for
    ``where="cache fill"`` its encoder is frozen and cached."""

    def __init__(self, failing_rank: int, where: str):
        self.failing_rank, self.where = failing_rank, where
        cached = where == "cache fill"
        super().__init__(
            encoders={"default": CountingEncoder(trainable=not cached)},
            cache_config=CacheConfig(CacheType.CPU) if cached else None,
            lr=0.1,
        )

    def training_step(self, batch, batch_idx, **kwargs):
        if self.where == "training_step" and self._fails(batch_idx):
            raise _boom(self.where, self.global_rank)
        return super().training_step(batch, batch_idx, **kwargs)

    def validation_step(self, batch, batch_idx, **kwargs):
        if self.where == "validation_step" and self._fails(batch_idx):
            raise _boom(self.where, self.global_rank)
        return super().validation_step(batch, batch_idx, **kwargs)

    def _fails(self, batch_idx: int) -> bool:
        return self.global_rank == self.failing_rank and batch_idx == FAIL_BATCH


class FailingCallback(pl.Callback):
    """Raises after a training batch on ``failing_rank`` only (in its ``setup`` for
    ``in_setup``)."""

    def __init__(self, failing_rank: int, in_setup: bool = False):
        self.failing_rank, self.in_setup = failing_rank, in_setup

    def setup(self, trainer, pl_module, stage):
        if self.in_setup and trainer.global_rank == self.failing_rank:
            raise _boom("a callback", trainer.global_rank)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        failing = trainer.global_rank == self.failing_rank and not self.in_setup
        if failing and batch_idx == FAIL_BATCH:
            raise _boom("a callback", trainer.global_rank)


class FailingRecords(torch.utils.data.Dataset):
    """``samples`` whose record ``FAIL_BATCH`` raises when read on ``failing_rank``."""

    def __init__(self, samples, failing_rank: int):
        self.samples, self.failing_rank = samples, failing_rank

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        rank = int(os.environ["LOCAL_RANK"])
        if rank == self.failing_rank and index == FAIL_BATCH:
            raise _boom("cache fill", rank)
        return self.samples[index]


# case: (failing rank, where, how the fit is called)
CASES = {
    "training_step_rank1": (1, "training_step", "quaterion"),
    "training_step_rank0": (0, "training_step", "quaterion"),
    "validation_step_rank1": (1, "validation_step", "quaterion"),
    "callback_rank1": (1, "callback", "quaterion"),
    "callback_setup_rank1": (1, "callback setup", "quaterion"),
    "cache_fill_rank1": (1, "cache fill", "quaterion"),
    "trainer_fit_rank1": (1, "training_step", "trainer"),
    "hung_rank1": (1, "training_step", "hung"),
}
GRACE_S = 3.0  # grace period of the "hung" case


def main(case: str, out: str) -> None:
    failing_rank, where, how = CASES[case]
    callbacks = []
    if where.startswith("callback"):
        callbacks.append(FailingCallback(failing_rank, in_setup=where == "callback setup"))
    if how == "hung":
        callbacks.append(RankFailureCallback(grace_period=GRACE_S))
    trainer = quiet_trainer(
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=90)),
        callbacks=callbacks,
        max_epochs=2,
    )
    model = FailingModel(failing_rank, where)
    samples = group_samples(32)
    if where == "cache fill":
        samples = FailingRecords(samples, failing_rank)
    train, val = group_loader(samples, batch_size=4), group_loader(batch_size=4)
    try:
        if how == "trainer":
            model.setup_dataloader(train)
            model.setup_dataloader(val)
            trainer.fit(model, train, val)
        else:
            Quaterion.fit(model, trainer, train, val)
    except Exception as error:  # recorded for the test, then raised again
        result = {"type": type(error).__name__, "message": str(error), "at": time.time()}
        with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as file:
            json.dump(result, file)
        if how == "hung" and trainer.global_rank == failing_rank:
            time.sleep(30)  # keeps its sockets open: the other rank's collective never ends
        raise


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
