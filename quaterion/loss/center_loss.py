"""Center loss: pull normalised embeddings towards a learned centre per group."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quaterion.utils.utils import l2_norm
from quaterion.loss._checks import check_number
from quaterion.loss._classifier_loss import ClassifierGroupLoss, promoted
from quaterion.loss._valid_rows import real_mean


def center_loss(
    embeddings: Tensor,
    centers: Tensor,
    groups: Tensor,
    lambda_c: float = 0.5,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """``lambda_c · mean_{i,k} (Ê_ik − centers_{y_i,k})²`` over all ``B·d`` elements.

    Embeddings are L2-normalised, centres are not.

    Args:
        embeddings: float ``(B, d)``.
        centers: float ``(C, d)``.
        groups: int64 ``(B,)`` class ids in ``[0, C)``.
        lambda_c: weight of the term.
        valid: bool ``(B,)`` real rows (``None``: all); the mean runs over their
            elements only (padded rows of :func:`~quaterion.distributed.gather_rows_padded`).

    Returns:
        0-dim float.
    """
    embeddings, centers = promoted(embeddings, centers)
    normalized = l2_norm(embeddings, dim=1)
    if valid is None and embeddings.shape[0] > 0:
        return lambda_c * F.mse_loss(normalized, centers[groups])
    # every row has d elements: the mean of the real rows' means is the elements' mean
    per_row = F.mse_loss(normalized, centers[groups], reduction="none").mean(dim=1)
    return lambda_c * real_mean(per_row, valid)


class CenterLoss(ClassifierGroupLoss):
    """Center loss with learned ``centers (num_groups, embedding_size)`` (xavier-uniform init).

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``. Centres move only if the optimiser is given
    the loss parameters. Usually combined with a discriminative loss: alone, it can
    collapse every centre and embedding to one point.

    Args:
        embedding_size: ``d``.
        num_groups: number of classes ``C``.
        lambda_c: weight of the term (>= 0).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
        ECCV 2016. https://doi.org/10.1007/978-3-319-46478-7_31
    """

    hyperparameters = ("lambda_c",)

    def __init__(
        self,
        embedding_size: int,
        num_groups: int,
        lambda_c: Optional[float] = 0.5,
        gather_across_ranks: bool = False,
    ):
        super().__init__(embedding_size, num_groups, gather_across_ranks)
        name = type(self).__name__
        self.lambda_c = check_number(name, "lambda_c", lambda_c, minimum=0.0)
        self.centers = nn.Parameter(torch.empty(num_groups, embedding_size))
        nn.init.xavier_uniform_(self.centers)

    def _loss(self, embeddings: Tensor, groups: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return center_loss(embeddings, self.centers, groups, self.lambda_c, valid=valid)
