"""Circle loss over all positive and negative pairs of a batch."""

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.loss._checks import check_groups, check_number
from quaterion.loss._valid_rows import check_square_mask, real_pairs
from quaterion.loss.group_loss import GroupLoss
from quaterion.utils import get_anchor_negative_mask, get_anchor_positive_mask


def _masked_logsumexp(values: Tensor, mask: Tensor) -> Tensor:
    """``log Σ exp(values)`` over the ``True`` entries of ``mask``; ``-inf`` if none."""
    return torch.logsumexp(values.masked_fill(~mask, float("-inf")).flatten(), dim=0)


def circle_loss(
    similarity: Tensor,
    groups: Tensor,
    ref_groups: Optional[Tensor] = None,
    margin: float = 0.25,
    scale_factor: float = 256.0,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Circle loss of one batch, pooled over all pairs (not per anchor).

    Pairs: with ``ref_groups=None`` the strict upper triangle ``i < j`` of the square
    ``similarity`` (each unordered pair once); otherwise every (query ``i``, reference
    ``j``) pair. ``s_p`` are same-group similarities, ``s_n`` different-group ones.
    With ``α_p = [1 + m − s_p]₊``, ``α_n = [s_n + m]₊`` (on detached similarities),
    ``Δ_p = 1 − m``, ``Δ_n = m``, ``γ = scale_factor``::

        loss = softplus(logsumexp(γ α_n (s_n − Δ_n)) + logsumexp(−γ α_p (s_p − Δ_p)))

    An empty set of positives or negatives gives ``logsumexp = −inf`` and loss 0.

    Args:
        similarity: float ``(B, M)`` similarities, expected in ``[0, 1]``
            (``Cosine.similarity_matrix`` is ``(cos + 1) / 2``); ``M = B`` if
            ``ref_groups`` is ``None``.
        groups: ``(B,)`` group ids of the rows.
        ref_groups: ``(M,)`` group ids of the columns, or ``None`` (columns are the rows).
        margin: relaxation ``m``.
        scale_factor: ``γ``.
        valid: bool ``(B,)`` real rows (``ref_groups=None`` only), ``None`` for all: pairs
            with a padded row of :func:`~quaterion.distributed.gather_rows_padded` take
            no part.

    Returns:
        0-dim float.
    """
    check_square_mask("circle_loss", valid, ref_groups)
    if ref_groups is None:
        upper = torch.ones_like(similarity, dtype=torch.bool).triu(diagonal=1)
        upper = real_pairs(upper, valid, valid)
        positive = get_anchor_positive_mask(groups) & upper
        negative = get_anchor_negative_mask(groups) & upper
    else:
        positive = groups[:, None] == ref_groups[None, :]
        negative = ~positive
    detached = similarity.detach()
    alpha_p = torch.relu(1.0 + margin - detached)
    alpha_n = torch.relu(detached + margin)
    logit_p = -scale_factor * alpha_p * (similarity - (1.0 - margin))
    logit_n = scale_factor * alpha_n * (similarity - margin)
    return F.softplus(_masked_logsumexp(logit_n, negative) + _masked_logsumexp(logit_p, positive))


class CircleLoss(GroupLoss):
    """Circle loss (pair-based form) on the batch similarity matrix.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader``; a batch
    needs at least one positive and one negative pair, else the loss is 0.

    Weights follow the paper (``α_p = [1 + m − s_p]₊``, ``α_n = [s_n + m]₊``); upstream
    quaterion had the signs flipped. Unlike pytorch-metric-learning's ``CircleLoss``
    (per-anchor terms averaged over anchors, cosine in ``[-1, 1]``), this one pools every
    pair of the batch into a single softplus and uses ``similarity_matrix``
    (``(cos + 1) / 2`` for cosine) — upstream quaterion's definition, kept.

    Args:
        margin: relaxation factor ``m`` (>= 0).
        scale_factor: scale ``γ`` (> 0).
        distance_metric_name: distance whose ``similarity_matrix`` is used.
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
        CVPR 2020. https://arxiv.org/abs/2002.10857
    """

    def __init__(
        self,
        margin: Optional[float] = 0.25,
        scale_factor: Optional[float] = 256,
        distance_metric_name: Optional[Distance] = Distance.COSINE,
        gather_across_ranks: bool = False,
    ):
        super().__init__(
            distance_metric_name=distance_metric_name, gather_across_ranks=gather_across_ranks
        )
        name = type(self).__name__
        self.margin = check_number(name, "margin", margin, minimum=0.0)
        self.scale_factor = check_number(
            name, "scale_factor", scale_factor, minimum=0.0, strict=True
        )

    # Upstream's attributes (the spec names them); ``circle_loss`` derives them from
    # ``margin`` itself, so they are read-only views that cannot drift from it.
    op = property(lambda self: 1 + self.margin, doc="Positive optimum ``1 + margin``.")
    on = property(lambda self: -self.margin, doc="Negative optimum ``-margin``.")
    delta_positive = property(lambda self: 1 - self.margin, doc="Positive margin ``1 - m``.")
    delta_negative = property(lambda self: self.margin, doc="Negative margin ``m``.")

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``margin`` and ``scale_factor``."""
        return {
            **super().get_config_dict(),
            "margin": self.margin,
            "scale_factor": self.scale_factor,
        }

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with ``groups: int64 (B,)``; 0-dim float.

        Raises:
            TypeError: ``groups`` is not an integer tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``.
        """
        check_groups(embeddings, groups)
        embeddings, groups, valid = self.gather_padded(embeddings, groups)
        similarity = self.distance_metric.similarity_matrix(embeddings)
        return circle_loss(
            similarity, groups, margin=self.margin, scale_factor=self.scale_factor, valid=valid
        )
