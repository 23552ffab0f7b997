"""ArcFace: additive angular margin on a learned cosine classifier."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.loss._checks import check_number
from quaterion.loss._classifier_loss import (
    ClassifierGroupLoss,
    class_kernel,
    cosine_margin_loss,
)

_COS_EPS = 1e-7


def arcface_loss(
    embeddings: Tensor,
    kernel: Tensor,
    groups: Tensor,
    scale: float = 64.0,
    margin: float = 0.5,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Additive angular margin loss.

    ``c = clamp(Ê Ŵ, -1 + 1e-7, 1 - 1e-7)``, ``θ = arccos(c)``,
    ``z_ij = s · cos(θ_ij + m·1[j = y_i])``, ``loss = CE(z, y)`` (mean). No easy-margin or
    threshold correction: unlike pytorch-metric-learning, ``cos(θ + m)`` is used even when
    ``θ + m > π``. Only the target column goes through ``arccos``.

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``; column ``j`` is the weight of class ``j``.
        groups: int64 ``(B,)`` class ids in ``[0, C)`` (not checked here).
        scale: ``s``.
        margin: ``m``, in radians.
        valid: bool ``(B,)`` real rows (``None``: all); the mean runs over them only
            (padded rows of :func:`~quaterion.distributed.gather_rows_padded`).

    Returns:
        0-dim float.
    """
    return cosine_margin_loss(
        embeddings,
        kernel,
        groups,
        scale,
        lambda cos: torch.cos(torch.arccos(cos) + margin),
        eps=_COS_EPS,
        valid=valid,
    )


class ArcFaceLoss(ClassifierGroupLoss):
    """ArcFace loss with a learned ``kernel (embedding_size, num_groups)``.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``. Give the loss's parameters to the optimiser
    (they are part of the model when returned from ``configure_loss``).

    Args:
        embedding_size: ``d``, output size of the encoder/head.
        num_groups: number of classes ``C``.
        scale: logit scale ``s`` (> 0).
        margin: additive angular margin ``m`` in radians (>= 0).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
        CVPR 2019. https://arxiv.org/abs/1801.07698

    Relations: :class:`~quaterion.loss.CosFaceLoss` puts the margin on the cosine instead of
    the angle; :class:`~quaterion.loss.SoftmaxLoss` has no margin and no normalisation.
    """

    hyperparameters = ("scale", "margin")

    def __init__(
        self,
        embedding_size: int,
        num_groups: int,
        scale: float = 64.0,
        margin: float = 0.5,
        gather_across_ranks: bool = False,
    ):
        super().__init__(embedding_size, num_groups, gather_across_ranks)
        name = type(self).__name__
        self.scale = check_number(name, "scale", scale, minimum=0.0, strict=True)
        self.margin = check_number(name, "margin", margin, minimum=0.0)
        self.kernel = class_kernel(embedding_size, num_groups)

    def _loss(self, embeddings: Tensor, groups: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return arcface_loss(embeddings, self.kernel, groups, self.scale, self.margin, valid=valid)
