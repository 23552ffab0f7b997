"""Under DDP every rank must take as many batches per epoch as the others: a rank whose
epoch ends first leaves its peers' next step waiting for it in a collective (the gradient
all-reduce, a loss that gathers across ranks), while its own epoch-end collectives pair
with theirs (a hang, or collectives that match the wrong partner and a fit that "finishes"
on one rank). Lightning's ``DistributedSampler`` gives every rank the same count; a loader
it does not shard (an ``IterableDataset`` the user splits, or
``use_distributed_sampler=False``) may not.
"""

import math
from typing import Any, List, Optional, Sequence, Union

import pytorch_lightning as pl

from quaterion import distributed


class BatchCountMismatchError(distributed.RankMismatchError):
    """The ranks' loaders yield different numbers of batches in an epoch (every rank raises
    it, at the same point)."""


_RULE = (
    "Under DDP every rank must take as many batches per epoch as the others: a rank that "
    "ends its epoch first leaves the others waiting in a collective."
)
_FIX = (
    "Let Lightning shard the data (a sized dataset and use_distributed_sampler=True, the "
    "default), or give every rank the same number of batches (shard an IterableDataset "
    "into equal parts, e.g. cut every rank's stream to the same number of batches)."
)


def batch_count(loader: Any) -> Optional[int]:
    """``len(loader)``; ``None`` without a loader or for one without a length."""
    try:
        return None if loader is None else len(loader)
    except (TypeError, NotImplementedError):
        return None


def check_lengths_agree(trainer: pl.Trainer, stage: str) -> None:
    """When a multi-process loop starts (``stage``: ``"train"`` or ``"validation"``): raise
    :class:`BatchCountMismatchError` on every rank when the ranks' loaders of known length
    have different lengths (one host ``all_gather`` of the batch counts). Loaders of
    unknown length are checked at every step by :func:`check_batches_agree`."""
    if distributed.world_size() == 1:
        return
    limits = _limits(trainer, stage)
    counts = [
        int(limit) if batch_count(loader) is not None and math.isfinite(limit) else -1
        for loader, limit in zip(_loaders(trainer, stage), limits)
    ]
    every = [distributed.ints_of_every_rank(count) for count in counts]
    for index, counts_of_ranks in enumerate(every):
        if len(set(counts_of_ranks)) > 1:
            which = f"{stage} loader" + (f" {index}" if len(every) > 1 else "")
            raise BatchCountMismatchError(
                f"The ranks' {which}s have different lengths: {counts_of_ranks} batches on "
                f"ranks 0..{len(counts_of_ranks) - 1}. {_RULE} {_FIX}"
            )


def check_batches_agree(
    trainer: pl.Trainer, stage: str, batch_idx: int, dataloader_idx: int = 0
) -> None:
    """At the start of step ``batch_idx`` of a multi-process loop (``stage``: ``"train"``
    or ``"validation"``) on a loader of unknown length (an ``IterableDataset``): raise
    :class:`BatchCountMismatchError` on every rank, at this step, when some ranks take
    their epoch's last batch and others do not. One host ``all_gather`` of that flag per
    step (Lightning knows it one batch ahead): a small CPU collective, no device sync."""
    if distributed.world_size() == 1:
        return
    loaders = _loaders(trainer, stage)
    if dataloader_idx >= len(loaders) or batch_count(loaders[dataloader_idx]) is not None:
        return
    loop = trainer.fit_loop.epoch_loop
    if stage != "train":
        loop = loop.val_loop if trainer.state.fn == "fit" else trainer.validate_loop
    limit = _limits(trainer, stage)[dataloader_idx]
    ends = loop.batch_progress.is_last_batch or batch_idx + 1 >= limit
    flags = distributed.ints_of_every_rank(int(ends))
    if len(set(flags)) > 1:
        ending = [rank for rank, flag in enumerate(flags) if flag]
        raise BatchCountMismatchError(
            f"The {stage} loader of rank(s) {ending} ends its epoch {trainer.current_epoch} "
            f"with batch {batch_idx}, while the other ranks have more batches. {_RULE} {_FIX}"
        )


def _loaders(trainer: pl.Trainer, stage: str) -> List[Any]:
    loaders: Union[None, Any, Sequence[Any]] = (
        trainer.train_dataloader if stage == "train" else trainer.val_dataloaders
    )
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _limits(trainer: pl.Trainer, stage: str) -> List[float]:
    """Batches each loader of ``stage`` takes per epoch (``inf`` without a length or a
    limit), as the trainer counts them (``limit_*_batches``, the sanity check)."""
    if stage == "train":
        return [trainer.num_training_batches]
    if trainer.sanity_checking:
        return list(trainer.num_sanity_val_batches)
    return list(trainer.num_val_batches)
