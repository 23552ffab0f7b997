"""Online contrastive loss: contrastive loss over pairs mined from groups."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from quaterion.distances import Distance
from quaterion.loss._valid_rows import ValidRows, pair_masks
from quaterion.loss.group_loss import MinedMarginLoss
from quaterion.utils.utils import max_value_of_dtype


def online_contrastive_loss_all(
    dist: Tensor, q_groups: Tensor, r_groups: Tensor, margin: float, valid: ValidRows = None
) -> Tensor:
    """``1/2 (mean_{P} D + mean_{N} [m - D]_+)`` over all positive / negative pairs.

    ``P``: same group (``i != j`` for one batch), ``N``: different groups. Empty sets
    contribute 0.

    Args:
        dist: float ``(A, M)`` distance matrix.
        q_groups: ``(A,)``; r_groups: ``(M,)``.
        margin: margin ``m``.
        valid: real (anchors, candidates) of padded rows, or ``None``: all real.

    Returns:
        0-dim float tensor.
    """
    positive, negative = pair_masks(q_groups, r_groups, valid)
    pos = torch.where(positive, dist, 0).sum() / positive.sum().clamp_min(1e-16)
    neg = torch.where(negative, F.relu(margin - dist), 0).sum() / negative.sum().clamp_min(1e-16)
    return (pos + neg) / 2


def online_contrastive_loss_hard(
    dist: Tensor, q_groups: Tensor, r_groups: Tensor, margin: float, valid: ValidRows = None
) -> Tensor:
    """``1/2 (mean_i p_i + mean_i [m - n_i]_+)`` with the hardest pair per anchor.

    ``p_i = max_j P_ij D_ij`` averaged over anchors with ``p_i != 0``; ``n_i`` the smallest
    negative distance, averaged over anchors that have a negative. Arguments and result as in
    :func:`online_contrastive_loss_all`.
    """
    if dist.numel() == 0:  # no anchor or no candidate: nothing to mine
        return dist.sum()
    positive, negative = pair_masks(q_groups, r_groups, valid)
    hardest_positive = torch.where(positive, dist, 0).max(dim=1).values
    pos = hardest_positive.sum() / (hardest_positive != 0).sum().clamp_min(1e-16)
    no_negative = max_value_of_dtype(dist.dtype)
    hardest_negative = dist.masked_fill(~negative, no_negative).min(dim=1).values
    has_negative = hardest_negative < no_negative
    neg = F.relu(margin - hardest_negative).sum() / has_negative.sum().clamp_min(1e-16)
    return (pos + neg) / 2


class OnlineContrastiveLoss(MinedMarginLoss):
    """Contrastive loss on positive / negative pairs mined inside a batch of groups.

    Inputs: ``SimilarityGroupSample`` batches from ``GroupSimilarityDataLoader``. Cost: one
    ``B x B`` distance matrix. Negatives are pairs of *different* groups (upstream counted
    every object as its own negative; fixed). Relations: ``ContrastiveLoss`` for scored
    pairs, ``TripletLoss`` for a relative margin.

    Args:
        margin: negatives closer than this are penalised.
        distance_metric_name: distance whose ``distance_matrix`` is used.
        mining: ``"all"`` (every pair) or ``"hard"`` (hardest pair per anchor, default).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Hadsell, Chopra, LeCun. "Dimensionality Reduction by Learning an Invariant
        Mapping", CVPR 2006.
    """

    strategies = {"all": online_contrastive_loss_all, "hard": online_contrastive_loss_hard}

    def __init__(
        self,
        margin: Optional[float] = 0.5,
        distance_metric_name: Distance = Distance.COSINE,
        mining: Optional[str] = "hard",
        gather_across_ranks: bool = False,
    ):
        super().__init__(margin, distance_metric_name, mining, gather_across_ranks)
