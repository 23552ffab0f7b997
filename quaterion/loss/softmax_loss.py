"""Softmax cross-entropy over a learned linear classifier."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor, nn

from quaterion.loss._arg_checks import check_number, check_positive_int
from quaterion.loss._class_logits import check_group_ids
from quaterion.loss.group_loss import GroupLoss


def softmax_loss(
    embeddings: Tensor, kernel: Tensor, groups: Tensor, temperature: float = 0.05
) -> Tensor:
    """Cross-entropy over ``z = E · W / temperature`` (no normalisation); ``CE(z, y)`` mean.

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``.
        groups: int64 ``(B,)`` class ids in ``[0, C)``.
        temperature: divides the logits.

    Returns:
        0-dim float.
    """
    return F.cross_entropy(embeddings @ kernel / temperature, groups)


class SoftmaxLoss(GroupLoss):
    """Plain classification loss with a learned ``kernel (embedding_size, num_groups)``.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``.

    Args:
        embedding_size: ``d``.
        num_groups: number of classes ``C``.
        temperature: logits are divided by it (> 0).

    References:
        Softmax cross-entropy baseline as discussed in Wang et al., "NormFace: L2 Hypersphere
        Embedding for Face Verification", ACM MM 2017. https://arxiv.org/abs/1704.06369

    Relations: :class:`~quaterion.loss.ArcFaceLoss` / :class:`~quaterion.loss.CosFaceLoss`
    normalise and add a margin, which usually gives better-separated embeddings.
    """

    def __init__(self, embedding_size: int, num_groups: int, temperature: float = 0.05):
        super().__init__()
        name = type(self).__name__
        self.embedding_size = check_positive_int(name, "embedding_size", embedding_size)
        self.num_groups = check_positive_int(name, "num_groups", num_groups)
        self.temperature = check_number(name, "temperature", temperature, minimum=0.0, strict=True)
        self.kernel = nn.Parameter(torch.empty(embedding_size, num_groups))
        nn.init.normal_(self.kernel, mean=0.0, std=0.01)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``embedding_size``, ``num_groups``, ``temperature``."""
        return {
            **super().get_config_dict(),
            "embedding_size": self.embedding_size,
            "num_groups": self.num_groups,
            "temperature": self.temperature,
        }

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with class ids ``groups: int64 (B,)``; 0-dim.

        Raises:
            TypeError: ``groups`` is not an integer tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``.
            AssertionError: a group id is outside ``[0, num_groups)``.
        """
        check_group_ids(type(self).__name__, embeddings, groups, self.num_groups)
        return softmax_loss(embeddings, self.kernel, groups, self.temperature)
