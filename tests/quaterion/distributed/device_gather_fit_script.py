"""One rank of a 2-node fit whose ranks disagree on one batch's size, with ``gather_rows``'
device path forced on CPU tensors (``QUATERION_FORCE_DEVICE_GATHER=1``) and the guard's
deferred mode, as on a GPU.

Launched per node by ``torchrun`` (see ``test_device_gather_fit``) as
``python -m ... OUT SCENARIO``. Each rank reads its own batches (no distributed sampler): 4
rows per batch, except rank 1's batch 1: 2 rows (``fewer``: padded to the agreed 4 rows and
masked, it trains like any batch), or 6 (``more``: more than agreed, so it cannot send the
layout: an error; ``more_unchecked``: the same with ``check_finite_loss = False``).
``last_smaller``: every rank's last batch is smaller, rank 1's smallest
(an epoch's tail). Writes ``OUT/rank<global rank>.pt``: the error the fit raised, at which
batch, the weights when batches 0 and 1 started and at the end.
"""

import os
import sys

import pytorch_lightning as pl
import torch

from quaterion import Quaterion, distributed
from quaterion.loss import TripletLoss
from quaterion.train.callbacks.guard_callback import GuardCallback
from tests.quaterion.train.helpers import Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as quiet_trainer

BAD_BATCH = 1
BATCHES = {"fewer": {0: [4, 4, 4, 4, 4], 1: [4, 2, 4, 4, 4]}}
BATCHES["more"] = {0: BATCHES["fewer"][0], 1: [4, 6, 4, 4, 4]}
BATCHES["last_smaller"] = {0: [4, 4, 4, 4, 3], 1: [4, 4, 4, 4, 1]}
BATCHES["more_unchecked"] = BATCHES["more"]  # the same, with check_finite_loss = False
LR = 0.5


def samples_of(rank: int, scenario: str):
    """Rank ``rank``'s samples, in the order its batches read them."""
    return group_samples(sum(BATCHES[scenario][rank]), groups=2, seed=10 + rank)


class Watch(pl.Callback):
    """Keeps the weights at the start of the first and of the bad batch, and the last
    batch started."""

    def __init__(self) -> None:
        self.weights = {}
        self.last_batch = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.last_batch = batch_idx
        if batch_idx in (0, BAD_BATCH):
            state = pl_module.state_dict()
            self.weights[batch_idx] = {k: v.detach().clone() for k, v in state.items()}


def batches(sizes):
    start, out = 0, []
    for size in sizes:
        out.append(list(range(start, start + size)))
        start += size
    return out


def main(out: str, scenario: str) -> None:
    os.environ[distributed.FORCE_DEVICE_PATH_ENV] = "1"
    rank = int(os.environ["RANK"])
    sizes = BATCHES[scenario][rank]
    samples = samples_of(rank, scenario)
    loader = group_loader(samples, batch_size=1, batch_sampler=batches(sizes))
    watch = Watch()
    trainer = quiet_trainer(
        num_nodes=2,
        devices=1,
        strategy="ddp",
        use_distributed_sampler=False,
        callbacks=[GuardCallback(asynchronous=True), watch],
    )
    model = Model(loss=TripletLoss(mining="hard", gather_across_ranks=True), lr=LR)
    model.check_finite_loss = scenario != "more_unchecked"
    error = None
    try:
        Quaterion.fit(model, trainer, loader)
    except Exception as raised:  # the test reads what each rank raised
        error = raised
    torch.save(
        {
            "type": type(error).__name__ if error else None,
            "message": str(error) if error else "",
            "last_batch": watch.last_batch,
            "rows": sizes[BAD_BATCH],
            "initial": watch.weights.get(0),
            "before_bad": watch.weights.get(BAD_BATCH),
            "after": {k: v.detach().clone() for k, v in model.state_dict().items()},
        },
        os.path.join(out, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
