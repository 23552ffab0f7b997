"""Gradient cache under DDP: ranks must run the same collectives inside the encoders.

``torch.nn.SyncBatchNorm`` in training mode takes a collective in every forward and every
backward pass. The gradient cache encodes a batch of ``B`` records in ``ceil(B / m)``
mini-batches of ``m`` (twice: the first pass and the re-encoding; a batch of at most ``m``
takes one plain pass), so ranks whose batches need different numbers of mini-batches would
call different numbers of those collectives, and the one with more would wait forever.

Before a step's first forward, when the model holds such a layer and more than one rank
runs, the ranks exchange their pass counts over the host (one small ``all_gather`` of CPU
integers, no device sync) and every rank raises the same
:class:`~quaterion.distributed.RankMismatchError` when they differ: the step stops before
any layer runs, instead of hanging. Equal counts (e.g. every rank reading batches of the
same size from a ``DistributedSampler``) train normally. Models without such a layer, and a
single process, exchange nothing.
"""

from torch import nn

from quaterion.distributed import RankMismatchError, ints_of_every_rank, world_size


def syncs_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` holds a ``torch.nn.SyncBatchNorm`` in training mode (one that
    takes collectives when it runs)."""
    return any(isinstance(m, nn.SyncBatchNorm) and m.training for m in model.modules())


def mini_batch_passes(size: int, mini_batch_size: int) -> int:
    """Forward passes of each encoding pass of a batch of ``size`` records: one plain pass
    for a batch within one mini-batch (an empty one included), else one per mini-batch."""
    return max(1, -(-size // mini_batch_size))


def check_equal_passes(model: nn.Module, size: int, mini_batch_size: int) -> None:
    """Raise on every rank when ``model`` synchronises batch norms across ranks and the
    ranks' batches (this rank: ``size`` records) need different numbers of mini-batch
    passes of ``mini_batch_size``; see the module doc. Every rank must call it at the same
    step (a collective, when it exchanges).

    Raises:
        RankMismatchError: the counts differ (every rank raises it together).
    """
    if world_size() == 1 or not syncs_batch_norm(model):
        return
    passes = ints_of_every_rank(mini_batch_passes(size, mini_batch_size))
    if len(set(passes)) == 1:
        return
    ranks = ", ".join(f"rank {rank}: {count}" for rank, count in enumerate(passes))
    raise RankMismatchError(
        "gradient cache: the model holds torch.nn.SyncBatchNorm layers in training mode, "
        "which take one collective per mini-batch pass, but the ranks' batches of this step "
        f"need different numbers of passes of mini_batch_size={mini_batch_size} ({ranks}); "
        "the ranks would wait for each other forever. Give every rank batches of the same "
        "size (e.g. a fixed batch_size with Lightning's DistributedSampler and "
        "drop_last=True), convert the SyncBatchNorm layers back to torch.nn.BatchNorm1d/2d/3d, "
        "or return None from configure_gradient_cache()"
    )
