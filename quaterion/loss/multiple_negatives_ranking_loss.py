"""Multiple negatives ranking loss: in-batch negatives for positive pairs."""

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor

from quaterion.distances import BaseDistance, Distance
from quaterion.distributed import gather_rows_padded, world_size
from quaterion.loss._checks import (
    check_number,
    check_pair_rows,
    check_pairs,
    host_check_needed,
    mark_checked,
    score_check,
    score_message,
)
from quaterion.loss._device_checks import DeviceChecked, device_check_needed, scores_on_device
from quaterion.loss._valid_rows import real_mean
from quaterion.loss.pairwise_loss import PairwiseLoss


class NonPositivePairsError(AssertionError, ValueError):
    """Pair scores other than 1 were given to a loss that needs positive pairs only."""


_POSITIVE_ONLY = "Drop the non-positive pairs or use ContrastiveLoss for scored pairs."


def _require_positive(labels: Tensor) -> None:
    """Raise :class:`NonPositivePairsError` naming the first score of CPU ``labels`` that
    is not 1 (NaN included)."""
    bad = (labels != 1).flatten()
    if bool(bad.any()):
        position = int(bad.nonzero()[0, 0])
        score = labels.flatten()[position].item()
        name = "MultipleNegativesRankingLoss"
        raise NonPositivePairsError(
            score_message(name, 1.0, 1.0, position, score, fix=_POSITIVE_ONLY)
        )


def multiple_negatives_ranking_loss(
    anchors: Tensor,
    positives: Tensor,
    distance: type[BaseDistance],
    scale: float = 20.0,
    symmetric: bool = False,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Cross-entropy of each anchor against every positive of the batch.

    ``Z = scale * distance.similarity_matrix(A, P)`` (``n x n``; for cosine this is
    ``scale * (cos + 1) / 2``), ``loss = CE(Z, arange(n))``; symmetric:
    ``(CE(Z, t) + CE(Z^T, t)) / 2``.

    Args:
        anchors: float ``(n, d)``.
        positives: float ``(n, d)``; row ``i`` is the positive of anchor ``i``.
        distance: distance class.
        scale: logit scale.
        symmetric: also rank anchors for each positive.
        valid: bool ``(n,)`` real pairs (``None``: all): a padded pair of
            :func:`~quaterion.distributed.gather_rows_padded` is neither ranked nor a
            negative of the others.

    Returns:
        0-dim float tensor.
    """
    logits = scale * distance.similarity_matrix(anchors, positives)
    if logits.shape[0] == 0:  # no pair: nothing to rank (the mean would be NaN)
        return logits.sum()
    targets = torch.arange(logits.shape[0], device=logits.device)
    if valid is None:
        loss = F.cross_entropy(logits, targets)
        if symmetric:
            loss = (loss + F.cross_entropy(logits.T, targets)) / 2
        return loss
    # a real row never sees a padded column (its own target column is real: never all -inf)
    padded_column = valid[:, None] & ~valid[None, :]
    rows = F.cross_entropy(
        logits.masked_fill(padded_column, float("-inf")), targets, reduction="none"
    )
    loss = real_mean(rows, valid)
    if symmetric:
        columns = logits.T.masked_fill(padded_column, float("-inf"))
        loss = (loss + real_mean(F.cross_entropy(columns, targets, reduction="none"), valid)) / 2
    return loss


class MultipleNegativesRankingLoss(DeviceChecked, PairwiseLoss):
    """Ranks each pair's second object above the other pairs' second objects.

    Inputs: ``SimilarityPairSample`` batches from ``PairsSimilarityDataLoader`` holding
    positive pairs only (score 1); scores and subgroups are otherwise ignored. Cost: an
    ``n x n`` similarity matrix. Use ``scale=1`` with ``Distance.DOT_PRODUCT``.

    Args:
        scale: logit scale (for cosine the effective temperature is ``scale / 2``).
        distance_metric_name: distance whose ``similarity_matrix`` gives the logits.
        symmetric: average with the loss of ranking anchors for each positive.
        gather_across_ranks: under DDP, rank each anchor against the positives of every
            rank (more negatives per step); gradients flow back to each rank's own rows.
            No effect in a single process.

    References:
        Henderson et al. "Efficient Natural Language Response Suggestion for Smart
        Reply", 2017.
    """

    score_range = (1.0, 1.0)

    def __init__(
        self,
        scale: float = 20.0,
        distance_metric_name: Distance = Distance.COSINE,
        symmetric: bool = False,
        gather_across_ranks: bool = False,
    ):
        check_number("MultipleNegativesRankingLoss", "scale", scale, minimum=0, strict=True)
        super().__init__(distance_metric_name=distance_metric_name)
        self._scale = scale
        self._symmetric = symmetric
        self.gather_across_ranks = bool(gather_across_ranks)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``scale``, ``symmetric`` (and ``gather_across_ranks`` when on)."""
        config = {**super().get_config_dict(), "scale": self._scale, "symmetric": self._symmetric}
        if self.gather_across_ranks:
            config["gather_across_ranks"] = True
        return config

    def check_batch_targets(self, targets: dict) -> None:
        """Check that every pair score (``targets["labels"]``, CPU) is 1;
        :class:`NonPositivePairsError` (an ``AssertionError``, upstream's type) names the
        first other one; pair indices outside the batch's rows raise ``ValueError``."""
        labels = targets.get("labels")
        check = score_check(*self.score_range)
        if host_check_needed(labels, check):
            _require_positive(labels)
            mark_checked(labels, check)
        check_pair_rows(type(self).__name__, targets.get("pairs"), targets.get("subgroups"))

    def forward(
        self,
        embeddings: Tensor,
        pairs: LongTensor,
        labels: Optional[Tensor] = None,
        subgroups: Optional[Tensor] = None,
        **kwargs: Any,
    ) -> Tensor:
        """Loss of a batch of positive pairs; returns a 0-dim tensor.

        Raises:
            NonPositivePairsError: (an ``AssertionError`` and ``ValueError``) if any
                score in ``labels`` is not 1; ``None`` or an empty tensor passes. At once
                for CPU ``labels`` (read once: ``Quaterion.fit`` checks each batch before
                the transfer); for ``labels`` on a device (checked there, no host sync), at
                the start of the call two calls later or at the next ``train()``/``eval()``,
                and the bad call's loss is multiplied by 0.
        """
        check_pairs(embeddings, pairs)
        if labels is not None and not isinstance(labels, Tensor):  # never read: say so
            raise TypeError(
                f"`labels` must be a torch.Tensor of pair scores (all 1) or None, got "
                f"{type(labels).__name__}."
            )
        valid = None
        if device_check_needed(labels):
            _, valid = scores_on_device(
                type(self).__name__,
                labels,
                self.score_range,
                self.device_checks(),
                NonPositivePairsError,
                _POSITIVE_ONLY,
            )
        elif host_check_needed(labels, score_check(*self.score_range)):
            _require_positive(labels)
        anchors, positives = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
        real = None
        if self.gather_across_ranks and world_size() > 1:
            # ranks may hold different numbers of pairs: padded, the real ones marked
            (anchors, positives), real = gather_rows_padded(anchors, positives)
        loss = multiple_negatives_ranking_loss(
            anchors,
            positives,
            self.distance_metric,
            self._scale,
            self._symmetric,
            valid=real,
        )
        return loss if valid is None else loss * valid.to(loss.dtype)
