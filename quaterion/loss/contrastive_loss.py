"""Contrastive loss over scored pairs, with an optional subgroup "imposter" term."""

from typing import Any, Optional

import torch.nn.functional as F
from torch import LongTensor, Tensor

from quaterion.distances import BaseDistance, Distance
from quaterion.loss._checks import attached_zero, check_number, check_pairs, check_scores
from quaterion.loss._device_checks import DeviceChecked, device_check_needed, scores_on_device
from quaterion.loss.pairwise_loss import PairwiseLoss
from quaterion.utils.utils import max_value_of_dtype


def contrastive_loss(
    embeddings: Tensor,
    pairs: Tensor,
    labels: Tensor,
    subgroups: Optional[Tensor],
    distance: type[BaseDistance],
    margin: float = 0.5,
    size_average: bool = True,
) -> Tensor:
    """Contrastive loss of scored pairs.

    ``d_k = distance.distance(E[pairs[k, 0]], E[pairs[k, 1]])`` (row-wise form),
    ``l_k = 1/2 (y_k d_k^2 + (1 - y_k) [m - d_k]_+^2) + imp_k``, where
    ``imp_k = [m - nu_a]_+^2 + [m - nu_b]_+^2`` and ``nu_i`` is the distance-matrix distance
    from row ``i`` to the closest row of another subgroup (no such row: ``imp = 0``, which
    covers a batch with a single subgroup).

    Args:
        embeddings: float ``(2n, d)``.
        pairs: int64 ``(n, 2)`` row indices.
        labels: ``(n,)`` scores; soft scores act as weights.
        subgroups: ``(2n,)`` subgroup per row, or ``None`` for no imposter term.
        distance: distance class.
        margin: margin ``m``.
        size_average: mean over pairs if True, else sum.

    Returns:
        0-dim float tensor.
    """
    if pairs.shape[0] == 0:  # no pair: nothing to average (the mean would be NaN)
        return attached_zero(embeddings)
    rows_a, rows_b = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
    dist = distance.distance(rows_a, rows_b)
    y = labels.to(dist.dtype)
    losses = 0.5 * (y * dist.pow(2) + (1 - y) * F.relu(margin - dist).pow(2))
    if subgroups is not None:
        losses = losses + _imposter_term(embeddings, pairs, subgroups, distance, margin)
    return losses.mean() if size_average else losses.sum()


def _imposter_term(
    embeddings: Tensor, pairs: Tensor, subgroups: Tensor, distance: type[BaseDistance], margin
) -> Tensor:
    matrix = distance.distance_matrix(embeddings)
    same_subgroup = subgroups[:, None] == subgroups[None, :]
    matrix = matrix.masked_fill(same_subgroup, max_value_of_dtype(matrix.dtype))
    nearest_other = matrix.min(dim=1).values
    per_row = F.relu(margin - nearest_other).pow(2)
    return per_row[pairs[:, 0]] + per_row[pairs[:, 1]]


class ContrastiveLoss(DeviceChecked, PairwiseLoss):
    """Contrastive loss: pull positive pairs together, push negatives beyond ``margin``.

    Inputs: ``SimilarityPairSample`` batches from ``PairsSimilarityDataLoader``; scores in
    ``[0, 1]`` (1 = similar). Rows with different subgroups are additionally pushed apart
    ("imposters"). Cost: ``O(n)`` for the pairs plus a ``2n x 2n`` distance matrix.

    Args:
        distance_metric_name: distance; its row-wise ``distance`` form is used for pairs.
        margin: negatives closer than this are penalised.
        size_average: mean over pairs if True, else sum.

    References:
        Hadsell, Chopra, LeCun. "Dimensionality Reduction by Learning an Invariant
        Mapping", CVPR 2006.
    """

    score_range = (0.0, 1.0)

    def __init__(
        self,
        distance_metric_name: Distance = Distance.COSINE,
        margin: float = 0.5,
        size_average: bool = True,
    ):
        check_number("ContrastiveLoss", "margin", margin, minimum=0)
        super().__init__(distance_metric_name=distance_metric_name)
        self.margin = margin
        self.size_average = size_average

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``margin`` and ``size_average``."""
        return {
            **super().get_config_dict(),
            "margin": self.margin,
            "size_average": self.size_average,
        }

    def forward(
        self,
        embeddings: Tensor,
        pairs: LongTensor,
        labels: Tensor,
        subgroups: Tensor,
        **kwargs: Any,
    ) -> Tensor:
        """Loss of a batch; see :func:`contrastive_loss` for shapes. Returns a 0-dim tensor.

        Raises:
            ValueError: a score is NaN or outside ``[0, 1]``: at once for CPU ``labels``; for
                ``labels`` on a device (checked there, no host sync), at the start of the
                call two calls later or at the next ``train()``/``eval()``, whichever comes
                first, and the bad call's loss is multiplied by 0 (its scores replaced by 0,
                so its gradient is 0, not NaN).
        """
        if labels is None:
            raise TypeError(f"{type(self).__name__} needs `labels`, the (n,) pair scores.")
        check_pairs(embeddings, pairs, labels)
        valid = None
        if device_check_needed(labels):
            labels, valid = scores_on_device(
                type(self).__name__, labels, self.score_range, self.device_checks()
            )
        else:
            check_scores(type(self).__name__, labels, *self.score_range)
        loss = contrastive_loss(
            embeddings,
            pairs,
            labels,
            subgroups,
            self.distance_metric,
            self.margin,
            self.size_average,
        )
        return loss if valid is None else loss * valid.to(loss.dtype)
