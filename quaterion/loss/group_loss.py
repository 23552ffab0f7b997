"""Base class of losses trained on groups (``GroupSimilarityDataLoader``)."""

from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.loss.similarity_loss import SimilarityLoss


class GroupLoss(SimilarityLoss):
    """Loss over embeddings labelled with group ids.

    Inputs: batches of ``SimilarityGroupSample`` from a ``GroupSimilarityDataLoader``; the
    trainer calls ``loss(embeddings=..., groups=...)``.

    Args:
        distance_metric_name: distance used by the loss.
    """

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Compute the loss.

        Args:
            embeddings: float ``(B, d)``.
            groups: int64 ``(B,)`` group id of every row.

        Returns:
            0-dim float tensor.
        """
        raise NotImplementedError

    def xbm_loss(
        self,
        embeddings: Tensor,
        groups: LongTensor,
        memory_embeddings: Tensor,
        memory_groups: LongTensor,
    ) -> Tensor:
        """Cross-batch-memory term: the batch as anchors, the memory as candidates.

        Args:
            embeddings: float ``(B, d)``.
            groups: int64 ``(B,)``.
            memory_embeddings: float ``(M, d)``.
            memory_groups: int64 ``(M,)``.

        Raises:
            NotImplementedError: the loss has no cross-batch-memory support.
        """
        raise NotImplementedError(f"XBM is not implemented for {self.__class__.__name__}")
