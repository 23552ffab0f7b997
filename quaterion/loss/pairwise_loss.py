"""Base class of losses trained on scored pairs (``PairsSimilarityDataLoader``)."""

import math
from typing import ClassVar, Tuple

from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.loss._checks import check_pair_rows, check_scores
from quaterion.loss.similarity_loss import SimilarityLoss


class PairwiseLoss(SimilarityLoss):
    """Loss over pairs of embeddings with a score per pair.

    Inputs: batches of ``SimilarityPairSample`` from a ``PairsSimilarityDataLoader``; the
    trainer calls ``loss(embeddings=..., pairs=..., labels=..., subgroups=...)``.

    Args:
        distance_metric_name: distance used by the loss.

    Attributes:
        score_range: ``(low, high)`` pair scores the loss accepts; ``Quaterion.fit`` checks
            every batch against it (subclasses narrow it, e.g. ``(0, 1)``).
    """

    score_range: ClassVar[Tuple[float, float]] = (-math.inf, math.inf)

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)

    def check_batch_targets(self, targets: dict) -> None:
        """Check the batch's pair scores (``targets["labels"]``, CPU) against
        :attr:`score_range` and its pair indices (``targets["pairs"]``) against its rows;
        ``ValueError`` names the bad pair."""
        labels = targets.get("labels")
        if isinstance(labels, Tensor):
            check_scores(type(self).__name__, labels, *self.score_range, mark=True)
        check_pair_rows(type(self).__name__, targets.get("pairs"), targets.get("subgroups"))

    def forward(
        self, embeddings: Tensor, pairs: LongTensor, labels: Tensor, subgroups: Tensor
    ) -> Tensor:
        """Compute the loss.

        Args:
            embeddings: float ``(2n, d)``, both objects of every pair.
            pairs: int64 ``(n, 2)`` row indices of the two objects of each pair.
            labels: float ``(n,)`` score of each pair.
            subgroups: float ``(2n,)`` subgroup of every embedding row.

        Returns:
            0-dim float tensor.
        """
        raise NotImplementedError
