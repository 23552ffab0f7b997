"""Lightning DDP fits on 2 spawned gloo ranks (launched outside Lightning, as torchrun
would): ``save_servable`` on every rank or on rank 0 only, and a NaN loss on rank 1 only.

Every rank runs the scenarios in order and appends what happened (finished, or the
exception it raised) to ``rank<r>.json`` after each one, so a rank left waiting shows which
scenario it hung in.
"""

import json
import math
import os
import time
from datetime import timedelta
from typing import Callable, Dict

import torch
import torch.distributed as dist

from quaterion import Quaterion
from quaterion.train.callbacks import GuardCallback
from tests.quaterion.train.helpers import CountingEncoder, Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as quiet_trainer

WORLD = 2
NAN_BATCH = 1  # rank 1's loss is NaN in this batch of epoch 0


class NanOnRankOne(Model):
    """Rank 1's training loss becomes NaN at batch ``NAN_BATCH``; rank 0's stays finite."""

    def training_step(self, batch, batch_idx, **kwargs):
        loss = super().training_step(batch, batch_idx, **kwargs)
        if self.global_rank == 1 and batch_idx == NAN_BATCH:
            loss = loss * math.nan
        return loss


def _model(cls=Model) -> Model:
    return cls(encoders={"default": CountingEncoder(trainable=True)}, lr=0.1)


def _fit(model: Model, **trainer_kwargs) -> None:
    trainer = quiet_trainer(devices=WORLD, strategy="ddp", **trainer_kwargs)
    Quaterion.fit(model, trainer, group_loader(group_samples(32), batch_size=4))


def _weights(model: Model) -> list:
    return [p.detach().flatten().tolist() for p in model.parameters()]


def _record_saves(model: Model) -> list:
    """Wrap ``model.model.save`` to record on which rank it really wrote."""
    calls = []
    save = model.model.save

    def recording(path, *args, **kwargs):
        calls.append(path)
        return save(path, *args, **kwargs)

    model.model.save = recording
    return calls


def save_on_rank_zero_then_fit_again(rank: int, out: str) -> dict:
    model = _model()
    _fit(model)
    if rank == 0:
        model.save_servable(os.path.join(out, "rank_zero_only"))
    _fit(_model())  # rank 1 goes straight on into a second fit
    return {}


def save_on_every_rank(rank: int, out: str) -> dict:
    model = _model()
    _fit(model)
    calls = _record_saves(model)
    model.save_servable(os.path.join(out, "every_rank"))
    return {"wrote": bool(calls)}


def _nan_on_rank_one(asynchronous: bool) -> Callable[[int, str], dict]:
    def scenario(rank: int, out: str) -> dict:
        model = _model(NanOnRankOne)
        try:
            _fit(model, callbacks=[GuardCallback(asynchronous=asynchronous)])
        finally:
            state = {"weights": _weights(model)}
            print(json.dumps(state), file=open(os.path.join(out, f"weights{rank}.json"), "a"))
        return {}

    return scenario


def save_on_rank_zero_after_rank_one_exited(rank: int, out: str) -> dict:
    model = _model()
    _fit(model)
    if rank == 1:
        return {}  # the process ends after this scenario is recorded
    deadline = time.monotonic() + 60
    while not _finished(out, 1, "save_on_rank_zero_after_rank_one_exited"):
        if time.monotonic() > deadline:
            raise TimeoutError("rank 1 did not finish")
        time.sleep(0.1)
    time.sleep(2)  # rank 1 has exited by now
    model.save_servable(os.path.join(out, "after_exit"))
    return {}


class RankStream(torch.utils.data.IterableDataset):
    """An iterable dataset its user shards: ``sizes[rank]`` samples on each rank."""

    def __init__(self, sizes):
        self.sizes = sizes

    def __iter__(self):
        rank = dist.get_rank()
        return iter(group_samples(self.sizes[rank], groups=4, seed=rank))


def _batch_counts(sizes, iterable: bool, validation: bool = False) -> Callable[[int, str], dict]:
    """A fit on 4-record batches of ``sizes[rank]`` records per rank, sharded by the user:
    an iterable dataset, or sized ones Lightning is told not to shard. ``validation``: the
    training data is even, the validation data so sharded, and the loss gathers."""

    def scenario(rank: int, out: str) -> dict:
        data = RankStream(sizes) if iterable else group_samples(sizes[rank], groups=4, seed=rank)
        options = {} if iterable else {"use_distributed_sampler": False}
        trainer = quiet_trainer(devices=WORLD, strategy="ddp", max_epochs=2, **options)
        model = _model()
        if validation:
            model.loss.gather_across_ranks = True
            even = RankStream([16, 16]) if iterable else group_samples(16, groups=4, seed=rank)
            loaders = group_loader(even, batch_size=4), group_loader(data, batch_size=4)
        else:
            loaders = (group_loader(data, batch_size=4),)
        Quaterion.fit(model, trainer, *loaders)
        return {"global_step": trainer.global_step}

    return scenario


SCENARIOS: Dict[str, Callable[[int, str], dict]] = {
    "save_on_rank_zero_then_fit_again": save_on_rank_zero_then_fit_again,
    "save_on_every_rank": save_on_every_rank,
    "nan_on_rank_one": _nan_on_rank_one(asynchronous=False),
    "nan_on_rank_one_deferred": _nan_on_rank_one(asynchronous=True),
    "save_on_rank_zero_after_rank_one_exited": save_on_rank_zero_after_rank_one_exited,
    "iterable_of_unequal_lengths": _batch_counts([20, 16], iterable=True),
    "sized_of_unequal_lengths": _batch_counts([20, 16], iterable=False),
    "iterable_of_equal_lengths": _batch_counts([16, 16], iterable=True),
    "iterable_validation_of_unequal_lengths": _batch_counts([20, 16], True, validation=True),
    "sized_validation_of_unequal_lengths": _batch_counts([20, 16], False, validation=True),
}


def _path(out: str, rank: int) -> str:
    return os.path.join(out, f"rank{rank}.json")


def _finished(out: str, rank: int, scenario: str) -> bool:
    if not os.path.exists(_path(out, rank)):
        return False
    with open(_path(out, rank)) as file:
        return any(json.loads(line)["scenario"] == scenario for line in file)


def run_rank(rank: int, world: int, port: int, out: str) -> None:
    """Spawned entry point: Lightning finds ``LOCAL_RANK`` and joins these processes
    instead of launching its own."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
        GLOO_SOCKET_IFNAME="lo",
    )
    # a short collective timeout turns a rank left waiting into an error, not a hang
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    for name, scenario in SCENARIOS.items():
        start = time.monotonic()
        try:
            outcome = {"finished": True, **scenario(rank, out)}
        except Exception as error:  # recorded for the test to check
            outcome = {"finished": False, "error": type(error).__name__, "message": str(error)}
        outcome.update(scenario=name, seconds=time.monotonic() - start, at=time.time())
        with open(_path(out, rank), "a") as file:
            file.write(json.dumps(outcome) + "\n")
