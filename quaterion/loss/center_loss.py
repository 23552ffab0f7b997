"""Center loss: pull normalised embeddings towards a learned centre per group."""

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor, nn

from quaterion.loss._arg_checks import check_number, check_positive_int
from quaterion.loss._class_logits import check_group_ids
from quaterion.loss.group_loss import GroupLoss


def center_loss(
    embeddings: Tensor, centers: Tensor, groups: Tensor, lambda_c: float = 0.5
) -> Tensor:
    """``lambda_c · mean_{i,k} (Ê_ik − centers_{y_i,k})²`` over all ``B·d`` elements.

    Embeddings are L2-normalised, centres are not.

    Args:
        embeddings: float ``(B, d)``.
        centers: float ``(C, d)``.
        groups: int64 ``(B,)`` class ids in ``[0, C)``.
        lambda_c: weight of the term.

    Returns:
        0-dim float.
    """
    return lambda_c * F.mse_loss(F.normalize(embeddings, p=2, dim=1), centers[groups])


class CenterLoss(GroupLoss):
    """Center loss with learned ``centers (num_groups, embedding_size)`` (xavier-uniform init).

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``. Centres move only if the optimiser is given
    the loss parameters. Usually combined with a discriminative loss: alone, it can
    collapse every centre and embedding to one point.

    Args:
        embedding_size: ``d``.
        num_groups: number of classes ``C``.
        lambda_c: weight of the term (>= 0).

    References:
        Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
        ECCV 2016. https://doi.org/10.1007/978-3-319-46478-7_31
    """

    def __init__(self, embedding_size: int, num_groups: int, lambda_c: Optional[float] = 0.5):
        super().__init__()
        name = type(self).__name__
        self.embedding_size = check_positive_int(name, "embedding_size", embedding_size)
        self.num_groups = check_positive_int(name, "num_groups", num_groups)
        self.lambda_c = check_number(name, "lambda_c", lambda_c, minimum=0.0)
        self.centers = nn.Parameter(torch.empty(num_groups, embedding_size))
        nn.init.xavier_uniform_(self.centers)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``embedding_size``, ``num_groups``, ``lambda_c``."""
        return {
            **super().get_config_dict(),
            "embedding_size": self.embedding_size,
            "num_groups": self.num_groups,
            "lambda_c": self.lambda_c,
        }

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with class ids ``groups: int64 (B,)``; 0-dim.

        Raises:
            TypeError: ``groups`` is not an integer tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``.
            AssertionError: a group id is outside ``[0, num_groups)``.
        """
        check_group_ids(type(self).__name__, embeddings, groups, self.num_groups)
        return center_loss(embeddings, self.centers, groups, self.lambda_c)
