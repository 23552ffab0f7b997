"""Triplet loss with online mining: all, batch-hard and (batch-wide) semi-hard."""

from functools import partial
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from quaterion.distances import Distance
from quaterion.loss._checks import attached_zero
from quaterion.loss._valid_rows import ValidRows, pair_masks, real_max, real_mean, real_pairs
from quaterion.loss.group_loss import MinedMarginLoss


def _accumulation_dtype(t: Tensor) -> torch.dtype:
    # Prefix sums over many terms lose precision in float32; MPS has no float64.
    return t.dtype if t.device.type == "mps" else torch.float64


def sorted_with_prefix(values: Tensor) -> tuple[Tensor, Tensor]:
    """Sort the last dim and return ``(sorted, prefix)``; ``prefix[..., k] = sum(sorted[..., :k])``.

    ``+inf`` entries (padding) sort last and count as 0 in ``prefix``. ``prefix`` has one more
    column than ``sorted`` and is in float64 (except on MPS) for exact differences.
    """
    ordered = torch.sort(values, dim=-1).values
    finite = torch.where(torch.isinf(ordered), torch.zeros_like(ordered), ordered)
    cumsum = torch.cumsum(finite.to(_accumulation_dtype(values)), dim=-1)
    prefix = torch.cat([torch.zeros_like(cumsum[..., :1]), cumsum], dim=-1)
    return ordered, prefix


def count_and_sum_below(
    ordered: Tensor, prefix: Tensor, bounds: Tensor, right: bool = False
) -> tuple[Tensor, Tensor]:
    """For each bound ``u``: ``(#{v < u}, sum{v < u})`` over the sorted last dim.

    With ``right=True`` the comparison is ``v <= u``. ``ordered``/``prefix`` come from
    :func:`sorted_with_prefix`; ``bounds`` shares their leading dims (or is 1-D when they are).
    Gradients flow to both ``bounds`` (through the caller) and ``ordered`` (through ``prefix``).
    """
    counts = torch.searchsorted(
        ordered.detach().contiguous(), bounds.detach().contiguous(), right=right
    )
    sums = torch.gather(prefix, -1, counts)
    return counts, sums


def triplet_loss_all(
    dist: Tensor, q_groups: Tensor, r_groups: Tensor, margin: float, valid: ValidRows = None
) -> Tensor:
    """Mean of ``[D_ap - D_an + m]_+`` over the valid triplets with a positive loss.

    Valid: ``p`` shares the anchor's group (``p != a`` when query and reference are the same
    batch), ``n`` does not. ``loss = sum L / (#{L > 0} + 1e-16)``, 0 without such triplets.
    Computed in ``O(A M log M)`` time and ``O(A M)`` memory (sorted negatives + prefix sums
    per anchor) instead of the ``A x M x M`` triplet tensor; same value and gradient.

    Args:
        dist: float ``(A, M)`` distance matrix, anchors (query) x candidates (reference).
        q_groups: ``(A,)`` group ids of the anchors.
        r_groups: ``(M,)`` group ids of the candidates.
        margin: margin ``m``.
        valid: real (anchors, candidates) of padded rows, or ``None``: all real.

    Returns:
        0-dim float tensor.
    """
    positive, negative = pair_masks(q_groups, r_groups, valid)
    ordered, prefix = sorted_with_prefix(dist.masked_fill(~negative, float("inf")))
    bounds = dist + margin  # L > 0  <=>  D_an < D_ap + m
    counts, below = count_and_sum_below(ordered, prefix, bounds)
    per_pair = counts * bounds.to(prefix.dtype) - below  # sum_n [D_ap + m - D_an]_+
    total = torch.where(positive, per_pair, 0).sum()
    num_positive_triplets = torch.where(positive, counts, 0).sum()
    return (total / (num_positive_triplets + 1e-16)).to(dist.dtype)


def triplet_loss_batch_hard(
    dist: Tensor,
    q_groups: Tensor,
    r_groups: Tensor,
    margin: float,
    soft: bool = False,
    valid: ValidRows = None,
) -> Tensor:
    """Batch-hard triplet loss: hardest positive and hardest negative per anchor.

    ``p_i = max_j P_ij D_ij`` (0 without positives), ``n_i = min_j (D_ij + max_j D_ij
    (1 - N_ij))``; ``l_i = [(p_i - n_i) / mean(n) + m]_+`` (the division is upstream's
    anti-collapse trick; a mean with ``|mean| < 1e-12`` is replaced by ``1e-12``), or
    ``softplus(p_i - n_i)`` when ``soft``. ``loss = mean_i l_i``.

    Args:
        dist: float ``(A, M)``, anchors x candidates.
        q_groups: ``(A,)``; r_groups: ``(M,)``.
        margin: margin ``m`` (unused when ``soft``).
        soft: use the soft-margin (softplus) variant.
        valid: real (anchors, candidates) of padded rows, or ``None``: all real.

    Returns:
        0-dim float tensor.
    """
    if dist.numel() == 0:  # no anchor or no candidate: nothing to mine
        return dist.sum()
    positive, negative = pair_masks(q_groups, r_groups, valid)
    hardest_positive = torch.where(positive, dist, 0).max(dim=1).values
    q_valid, r_valid = (None, None) if valid is None else valid
    if r_valid is not None:  # no real candidate at all: no anchor counts (an empty memory)
        has_candidate = r_valid.any().expand(dist.shape[0])
        q_valid = has_candidate if q_valid is None else q_valid & has_candidate
    row_max = real_max(dist, r_valid)
    shifted = dist + row_max * (~negative)
    if r_valid is not None:  # a padded column is never the minimum of a real anchor
        shifted = shifted.masked_fill(~r_valid[None, :], float("inf"))
    hardest_negative = shifted.min(dim=1).values
    gap = hardest_positive - hardest_negative
    if q_valid is not None:  # a padded anchor's gap may be anything: never in a product
        gap = torch.where(q_valid, gap, torch.zeros_like(gap))
    if soft:
        return real_mean(F.softplus(gap), q_valid)
    scale = real_mean(hardest_negative, q_valid)
    scale = torch.where(scale.abs() < 1e-12, torch.full_like(scale, 1e-12), scale)
    return real_mean(F.relu(gap / scale + margin), q_valid)


def triplet_loss_semi_hard(
    dist: Tensor, q_groups: Tensor, r_groups: Tensor, margin: float, valid: ValidRows = None
) -> Tensor:
    """Batch-wide semi-hard loss: mean of ``clamp(u - v + m, 0, m)`` over all pairs.

    ``u`` runs over every same-group distance ``D_ij`` (diagonal included), ``v`` over
    every different-group distance of the whole matrix (upstream's cheap approximation,
    not per anchor). Computed with sorted negatives and prefix sums: ``O((P + N) log N)``
    instead of a ``P x N`` matrix; 0 (attached to the graph) without positives/negatives.

    Args:
        dist: float ``(A, M)``, anchors x candidates.
        q_groups: ``(A,)``; r_groups: ``(M,)``.
        margin: margin ``m``.
        valid: real (anchors, candidates) of padded rows, or ``None``: all real.

    Returns:
        0-dim float tensor.
    """
    pairs_of_real = torch.ones_like(dist, dtype=torch.bool)
    if valid is not None:
        pairs_of_real = real_pairs(pairs_of_real, *valid)
    same = pairs_of_real & (q_groups[:, None] == r_groups[None, :])
    # Fixed shapes only (no boolean indexing): negatives are the matrix with every
    # same-group cell (and every padded row's) set to +inf (sorted last, 0 in the prefix
    # sums), and every cell acts as a bound u, weighted by whether it is a positive.
    negative = pairs_of_real & ~same
    ordered, prefix = sorted_with_prefix(dist.masked_fill(~negative, float("inf")).flatten())
    bounds = dist.flatten()
    n_clamped, sum_clamped = count_and_sum_below(ordered, prefix, bounds, right=True)
    n_below, sum_below = count_and_sum_below(ordered, prefix, bounds + margin)
    upper = (bounds + margin).to(prefix.dtype)
    # v <= u contributes m; u < v < u + m contributes u + m - v; the rest contributes 0.
    per_cell = margin * n_clamped + (n_below - n_clamped) * upper - (sum_below - sum_clamped)
    total = torch.where(same.flatten(), per_cell, 0).sum()
    num_positive = same.sum()
    pairs = num_positive * (pairs_of_real.sum() - num_positive)
    # no positive or no negative: total is an exact 0 still attached to the graph
    return (total / pairs.clamp(min=1)).to(dist.dtype)


_XBM_MINING = ("hard", "semi_hard")


class TripletLoss(MinedMarginLoss):
    """Triplet loss ``[D(a, p) - D(a, n) + m]_+`` with online mining over the batch.

    Inputs: ``SimilarityGroupSample`` batches from ``GroupSimilarityDataLoader``; every
    group should appear at least twice per batch. Cost: one ``B x B`` distance matrix
    (``B x M`` against an XBM memory of ``M`` rows); no ``B^3`` tensor for any mining.
    ``xbm_loss`` is the same loss with the batch as anchors and the memory as candidates
    (``"hard"`` and ``"semi_hard"``); zero for ``mining="all"`` or an empty memory.
    Relations: try ``OnlineContrastiveLoss`` for a margin on pairs, ``CircleLoss`` for
    weighted pairs.

    Args:
        margin: margin ``m``.
        distance_metric_name: distance whose ``distance_matrix`` is used.
        mining: ``"all"`` (every valid triplet), ``"hard"`` (batch-hard, default) or
            ``"semi_hard"`` (batch-wide semi-hard approximation).
        soft: softplus instead of the margin hinge (``"hard"`` mining only).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person
        Re-Identification", 2017.
    """

    supports_xbm = True
    strategies = {
        "all": triplet_loss_all,
        "hard": triplet_loss_batch_hard,
        "semi_hard": triplet_loss_semi_hard,
    }

    def __init__(
        self,
        margin: Optional[float] = 0.5,
        distance_metric_name: Optional[Distance] = Distance.COSINE,
        mining: Optional[str] = "hard",
        soft: Optional[bool] = False,
        gather_across_ranks: bool = False,
    ):
        super().__init__(margin, distance_metric_name, mining, gather_across_ranks)
        self._soft = soft
        if mining == "hard":
            self._strategy = partial(triplet_loss_batch_hard, soft=soft)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``margin``, ``mining`` and ``soft``."""
        return {**super().get_config_dict(), "soft": self._soft}

    def _memory_loss(
        self, embeddings, groups, memory_embeddings, memory_groups, valid=None, memory_valid=None
    ) -> Tensor:
        # the batch as anchors, the memory as candidates; mining="all" has no memory term
        if self._mining not in _XBM_MINING:
            return attached_zero(embeddings)
        masks = None if valid is None and memory_valid is None else (valid, memory_valid)
        return self._loss(embeddings, groups, memory_embeddings, memory_groups, valid=masks)

    def _semi_hard_triplet_loss(
        self, embeddings_a: Tensor, groups_a: Tensor, embeddings_b: Tensor, groups_b: Tensor
    ) -> Tensor:
        """Semi-hard loss of anchors ``(A, d)`` against candidates ``(M, d)``."""
        dist = self.distance_metric.distance_matrix(embeddings_a, embeddings_b)
        return triplet_loss_semi_hard(dist, groups_a, groups_b, self._margin)
