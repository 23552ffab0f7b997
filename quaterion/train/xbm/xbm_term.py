"""One training step's cross-batch-memory term, and the step's rows queued into the memory.

Under DDP every rank queues the rows of every rank, so all ranks hold the same memory. Ranks
may hold batches of different sizes (an epoch's last batch): the rows are gathered padded
(:func:`quaterion.distributed.gather_rows_padded`, one collective, no host sync) and queued
with their mask, so padded rows take memory slots but never count as memory entries.

An ``xbm_loss`` overridden with the spec's four arguments cannot take masks: it gets compact
rows from :func:`quaterion.distributed.gather_rows` without the equal-rows promise, whose
row counts are exchanged over the host (a small CPU collective before the rows, no device
sync), so ranks of any sizes work there too, at the cost of that extra exchange.
"""

from torch import Tensor

from quaterion.distributed import gather_rows
from quaterion.loss.group_loss import GroupLoss, rows_of_every_rank
from quaterion.train.xbm.xbm_buffer import XbmBuffer


def memory_term(loss: GroupLoss, buffer: XbmBuffer, embeddings: Tensor, groups: Tensor) -> Tensor:
    """``loss.xbm_loss`` of this step against the memory read **before** the step's rows are
    queued; with ``loss.gather_across_ranks`` every rank's rows are anchors (as in the loss).

    An ``xbm_loss`` overridden with the spec's four arguments only (no ``valid`` /
    ``memory_valid``) gets compact rows of every rank, whatever their sizes (see the module
    doc), and the memory holds compact rows.
    """
    buffer.to(embeddings.device)
    memory_embeddings, memory_groups = buffer.get()
    # the buffer keeps float32; a half/double-precision head gets memory in its own dtype
    memory_embeddings = memory_embeddings.to(embeddings.dtype)
    if not loss.xbm_takes_masks():
        anchors, anchor_groups = embeddings, groups
        if loss.gather_across_ranks:  # compact rows of ranks of any sizes (see module doc)
            anchors, anchor_groups = gather_rows(embeddings, groups)
        term = loss.xbm_loss(anchors, anchor_groups, memory_embeddings, memory_groups)
        if loss.gather_across_ranks:
            buffer.queue(anchors.detach(), anchor_groups.detach())
        else:
            buffer.queue(*gather_rows(embeddings.detach(), groups.detach()))
        return term
    anchors, anchor_groups, valid = loss.gather_padded(embeddings, groups)
    masks = {"valid": valid, "memory_valid": buffer.valid_rows()}
    term = loss.xbm_loss(
        anchors,
        anchor_groups,
        memory_embeddings,
        memory_groups,
        **{name: mask for name, mask in masks.items() if mask is not None},
    )
    if loss.gather_across_ranks:
        buffer.queue(anchors.detach(), anchor_groups.detach(), valid)
    else:
        buffer.queue(*rows_of_every_rank(embeddings.detach(), groups.detach()))
    return term
