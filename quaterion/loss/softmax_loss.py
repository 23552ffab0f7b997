"""Softmax cross-entropy over a learned linear classifier."""

from typing import Optional

from torch import Tensor

from quaterion.loss._checks import check_number
from quaterion.loss._classifier_loss import (
    ClassifierGroupLoss,
    class_kernel,
    promoted,
    real_cross_entropy,
)


def softmax_loss(
    embeddings: Tensor,
    kernel: Tensor,
    groups: Tensor,
    temperature: float = 0.05,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Cross-entropy over ``z = E · W / temperature`` (no normalisation); ``CE(z, y)`` mean.

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``.
        groups: int64 ``(B,)`` class ids in ``[0, C)``.
        temperature: divides the logits.
        valid: bool ``(B,)`` real rows (``None``: all); the mean runs over them only
            (padded rows of :func:`~quaterion.distributed.gather_rows_padded`).

    Returns:
        0-dim float.
    """
    embeddings, kernel = promoted(embeddings, kernel)
    return real_cross_entropy(embeddings @ kernel / temperature, groups, valid)


class SoftmaxLoss(ClassifierGroupLoss):
    """Plain classification loss with a learned ``kernel (embedding_size, num_groups)``.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``.

    Args:
        embedding_size: ``d``.
        num_groups: number of classes ``C``.
        temperature: logits are divided by it (> 0).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Softmax cross-entropy baseline as discussed in Wang et al., "NormFace: L2 Hypersphere
        Embedding for Face Verification", ACM MM 2017. https://arxiv.org/abs/1704.06369

    Relations: :class:`~quaterion.loss.ArcFaceLoss` / :class:`~quaterion.loss.CosFaceLoss`
    normalise and add a margin, which usually gives better-separated embeddings.
    """

    hyperparameters = ("temperature",)

    def __init__(
        self,
        embedding_size: int,
        num_groups: int,
        temperature: float = 0.05,
        gather_across_ranks: bool = False,
    ):
        super().__init__(embedding_size, num_groups, gather_across_ranks)
        name = type(self).__name__
        self.temperature = check_number(name, "temperature", temperature, minimum=0.0, strict=True)
        self.kernel = class_kernel(embedding_size, num_groups)

    def _loss(self, embeddings: Tensor, groups: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return softmax_loss(embeddings, self.kernel, groups, self.temperature, valid=valid)
