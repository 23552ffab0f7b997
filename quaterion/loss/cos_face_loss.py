"""CosFace (Large Margin Cosine Loss) on a learned cosine classifier."""

from typing import Optional

from torch import Tensor

from quaterion.loss._checks import check_number
from quaterion.loss._classifier_loss import (
    ClassifierGroupLoss,
    class_kernel,
    cosine_margin_loss,
)


def cos_face_loss(
    embeddings: Tensor,
    kernel: Tensor,
    groups: Tensor,
    margin: float = 0.35,
    scale: float = 64.0,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Large Margin Cosine Loss.

    ``c = Ê Ŵ`` (clamped to ``[-1, 1]``), ``z_ij = s · (c_ij − m·1[j = y_i])``,
    ``loss = CE(z, y)`` (mean). Upstream applied an extra ``cos`` to ``c − m``; this is the
    paper's formula (same as pytorch-metric-learning's ``CosFaceLoss``).

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``.
        groups: int64 ``(B,)`` class ids in ``[0, C)`` (not checked here).
        margin: ``m``, subtracted from the target cosine.
        scale: ``s``.
        valid: bool ``(B,)`` real rows (``None``: all); the mean runs over them only
            (padded rows of :func:`~quaterion.distributed.gather_rows_padded`).

    Returns:
        0-dim float.
    """
    return cosine_margin_loss(
        embeddings, kernel, groups, scale, lambda cos: cos - margin, valid=valid
    )


class CosFaceLoss(ClassifierGroupLoss):
    """CosFace loss with a learned ``kernel (embedding_size, num_groups)``.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader`` whose group
    ids are class ids in ``[0, num_groups)``. Note the argument order: margin before scale.

    Args:
        embedding_size: ``d``.
        num_groups: number of classes ``C``.
        margin: cosine margin ``m`` (>= 0).
        scale: logit scale ``s`` (> 0).
        gather_across_ranks: under DDP, compute the loss over every rank's batch (see
            :class:`~quaterion.loss.GroupLoss`).

    References:
        Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition",
        CVPR 2018. https://arxiv.org/abs/1801.09414

    Relations: :class:`~quaterion.loss.ArcFaceLoss` uses an angular margin.
    """

    hyperparameters = ("margin", "scale")

    def __init__(
        self,
        embedding_size: int,
        num_groups: int,
        margin: Optional[float] = 0.35,
        scale: Optional[float] = 64.0,
        gather_across_ranks: bool = False,
    ):
        super().__init__(embedding_size, num_groups, gather_across_ranks)
        name = type(self).__name__
        self.margin = check_number(name, "margin", margin, minimum=0.0)
        self.scale = check_number(name, "scale", scale, minimum=0.0, strict=True)
        self.kernel = class_kernel(embedding_size, num_groups)

    def _loss(self, embeddings: Tensor, groups: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return cos_face_loss(embeddings, self.kernel, groups, self.margin, self.scale, valid=valid)
