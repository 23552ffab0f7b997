"""Under DDP every rank must train on as many batches per epoch as the others: a rank whose
epoch ends first leaves its peers' next step waiting for it in the gradient all-reduce,
while its own epoch-end collectives pair with theirs (a hang, or collectives that match the
wrong partner and a fit that "finishes" on one rank). Lightning's ``DistributedSampler``
gives every rank the same count; a loader it does not shard (an ``IterableDataset`` the
user splits, or ``use_distributed_sampler=False``) may not.
"""

import math

import pytorch_lightning as pl

from quaterion import distributed


class BatchCountMismatchError(distributed.RankMismatchError):
    """The ranks' training loaders yield different numbers of batches in an epoch (every
    rank raises it, at the same step)."""


def check_lengths_agree(trainer: pl.Trainer) -> None:
    """When a multi-process fit starts: raise :class:`BatchCountMismatchError` on every
    rank when the ranks' training loaders have different known lengths (one host
    ``all_gather`` of the batch counts; a loader of unknown length is checked at every
    step by :func:`check_batches_agree`)."""
    batches = trainer.num_training_batches
    if distributed.world_size() == 1 or not math.isfinite(batches):
        return
    counts = distributed.ints_of_every_rank(int(batches))
    if len(set(counts)) > 1:
        raise BatchCountMismatchError(
            f"The ranks' training loaders have different lengths: {counts} batches per "
            f"epoch on ranks 0..{len(counts) - 1}. {_RULE} Let Lightning shard the data (a "
            "sized dataset and use_distributed_sampler=True, the default), or give every "
            "rank the same number of batches."
        )


def check_batches_agree(trainer: pl.Trainer, batch_idx: int) -> None:
    """At the start of training step ``batch_idx`` of a multi-process fit on a loader of
    unknown length (an ``IterableDataset``): raise :class:`BatchCountMismatchError` on
    every rank, at this step, when some ranks take their epoch's last batch and others do
    not. One host ``all_gather`` of that flag per step (Lightning knows it one batch
    ahead): a small CPU collective, no device sync."""
    if distributed.world_size() == 1 or math.isfinite(trainer.num_training_batches):
        return
    last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
    flags = distributed.ints_of_every_rank(int(last))
    if len(set(flags)) > 1:
        ending = [rank for rank, flag in enumerate(flags) if flag]
        raise BatchCountMismatchError(
            f"The training loader of rank(s) {ending} ends epoch {trainer.current_epoch} "
            f"with batch {batch_idx}, while the other ranks have more batches. {_RULE} Shard "
            "the IterableDataset into equal parts per rank (e.g. cut every rank's stream to "
            "the same number of batches), or use a sized dataset, which Lightning shards "
            "evenly."
        )


_RULE = (
    "Under DDP every rank must train on as many batches per epoch as the others: a rank "
    "that ends its epoch first leaves the others waiting in a collective."
)
