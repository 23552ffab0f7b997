"""FastAP: differentiable average precision from soft distance histograms."""

from typing import Any, Optional

import torch
from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.utils.utils import l2_norm
from quaterion.loss._checks import check_embeddings, check_positive_int
from quaterion.loss._valid_rows import check_square_mask, real_pairs
from quaterion.loss.group_loss import GroupLoss
from quaterion.utils import get_anchor_negative_mask, get_anchor_positive_mask

_MAX_SQUARED_DISTANCE = 4.0  # between unit vectors


def _soft_histogram(position: Tensor, weights: Tensor, num_bins: int) -> Tensor:
    """``h_il = Σ_j weights_ij · [1 − |position_ij − l|]₊`` for ``l = 0..num_bins``.

    Each entry only touches bins ``floor(position)`` and ``floor(position) + 1``, so this
    is two scatter-adds into ``(B, num_bins + 2)`` instead of a ``(num_bins + 1, B, M)``
    pulse tensor; values equal the triangular-kernel formula.
    """
    # NaN (from NaN embeddings) would cast to an out-of-range index; its weights stay NaN
    low = torch.nan_to_num(position.detach(), nan=0.0).floor().clamp(0, num_bins).long()
    w_low = torch.relu(1 - (position - low).abs()) * weights
    w_high = torch.relu(1 - (position - low - 1).abs()) * weights
    hist = position.new_zeros(position.shape[0], num_bins + 2)
    hist = hist.scatter_add(1, low, w_low).scatter_add(1, low + 1, w_high)
    return hist[:, : num_bins + 1]


def fast_ap_loss(
    squared_distance: Tensor,
    groups: Tensor,
    ref_groups: Optional[Tensor] = None,
    num_bins: int = 10,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """``1 − mean_i AP_i`` over anchors with at least one positive (0 if there is none).

    With ``Δ = 4 / num_bins``, bin centres ``z_l = l·Δ`` (``l = 0..num_bins``),
    ``π_lij = [1 − |D²_ij − z_l| / Δ]₊``, ``h⁺_il = Σ_j π_lij P_ij``,
    ``h⁻_il = Σ_j π_lij N_ij``, ``H⁺ = cumsum_l h⁺``, ``H = cumsum_l (h⁺ + h⁻)``:
    ``AP_i = Σ_l h⁺_il H⁺_il / H_il / n⁺_i`` (terms with ``H_il = 0`` count 0).
    ``P`` / ``N`` come from ``get_anchor_positive_mask`` / ``get_anchor_negative_mask``.
    Memory is ``O(B·M)``; no per-bin ``B×M`` tensors.

    Args:
        squared_distance: float ``(B, M)`` squared Euclidean distances between
            L2-normalised embeddings, in ``[0, 4]``.
        groups: ``(B,)`` group ids of the anchors (int or float).
        ref_groups: ``(M,)`` group ids of the candidates; ``None`` means ``groups``.
        num_bins: number of histogram bins.
        valid: bool ``(B,)`` real rows (``ref_groups=None`` only), ``None`` for all: a
            padded row of :func:`~quaterion.distributed.gather_rows_padded` is neither an
            anchor nor a candidate.

    Returns:
        0-dim float.
    """
    check_square_mask("fast_ap_loss", valid, ref_groups)
    positive = real_pairs(get_anchor_positive_mask(groups, ref_groups), valid, valid)
    negative = real_pairs(get_anchor_negative_mask(groups, ref_groups), valid, valid)
    # entries of no pair (padding, the diagonal) are selected away, never multiplied
    position = torch.where(positive | negative, squared_distance, 0) * (
        num_bins / _MAX_SQUARED_DISTANCE
    )
    positive, negative = positive.to(squared_distance.dtype), negative.to(squared_distance.dtype)
    h_pos = _soft_histogram(position, positive, num_bins)
    h_neg = _soft_histogram(position, negative, num_bins)
    cum_pos = h_pos.cumsum(dim=1)
    cum_all = (h_pos + h_neg).cumsum(dim=1)
    # H = 0 (0/0) counts 0; a NaN H (NaN embeddings) stays NaN, never a finite loss
    has_mass = cum_all != 0
    ratio = torch.where(has_mass, h_pos * cum_pos / torch.where(has_mass, cum_all, 1.0), 0.0)
    n_pos = positive.sum(dim=1)
    valid = n_pos > 0
    average_precision = torch.where(valid, ratio.sum(dim=1) / n_pos.clamp(min=1), 0.0)
    n_valid = valid.sum().to(squared_distance.dtype)
    return (n_valid - average_precision.sum()) / n_valid.clamp(min=1)


class FastAPLoss(GroupLoss):
    """FastAP loss; always uses Euclidean distances between L2-normalised embeddings.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader``; anchors
    need a positive in the batch (batches of all-distinct groups give 0). Groups may be
    float. Matches the official FastAP code (``D² = 2 − 2ÊÊᵀ``) and
    pytorch-metric-learning's ``FastAPLoss``.

    Args:
        num_bins: number of histogram bins (int >= 1).
        distance_metric_name: accepted so ``FastAPLoss(**loss.get_config_dict())`` works;
            only ``Distance.EUCLIDEAN`` is allowed.
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Cakir et al., "Deep Metric Learning to Rank", CVPR 2019.
        https://arxiv.org/abs/1903.07740
    """

    def __init__(
        self,
        num_bins: Optional[int] = 10,
        distance_metric_name: Distance = Distance.EUCLIDEAN,
        gather_across_ranks: bool = False,
    ):
        if distance_metric_name not in (Distance.EUCLIDEAN, "euclidean"):
            raise ValueError(
                f"FastAPLoss: distance_metric_name must be Distance.EUCLIDEAN (FastAP is "
                f"defined on Euclidean distances), got {distance_metric_name!r}. "
                "Drop the argument."
            )
        super().__init__(
            distance_metric_name=Distance.EUCLIDEAN, gather_across_ranks=gather_across_ranks
        )
        self.num_bins = check_positive_int(type(self).__name__, "num_bins", num_bins)

    def get_config_dict(self) -> dict[str, Any]:
        """``{"distance_metric_name": Distance.EUCLIDEAN, "num_bins": num_bins}``."""
        return {**super().get_config_dict(), "num_bins": self.num_bins}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with ``groups: (B,)``; 0-dim float.

        Raises:
            TypeError: ``embeddings`` is not a floating tensor or ``groups`` not a tensor.
            ValueError: ``embeddings`` is not ``(B, d)`` or ``groups`` is not ``(B,)``.
        """
        check_embeddings(embeddings)
        if not isinstance(groups, Tensor) or groups.is_complex():
            raise TypeError(
                "FastAPLoss: groups must be a real torch.Tensor of shape (B,) (int or float "
                f"group ids), got {type(groups).__name__}; convert it with torch.as_tensor."
            )
        if groups.shape != embeddings.shape[:1]:
            raise ValueError(
                f"FastAPLoss: groups must have shape ({embeddings.shape[0]},), one id per "
                f"embedding row, got {tuple(groups.shape)}."
            )
        embeddings, groups, valid = self.gather_padded(embeddings, groups)
        normalized = l2_norm(embeddings, dim=1)
        squared = self.distance_metric.distance_matrix(normalized) ** 2
        return fast_ap_loss(squared, groups, num_bins=self.num_bins, valid=valid)
