"""Class count and embedding width of pytorch-metric-learning losses with per-class weights."""

from typing import Optional, Tuple

from pytorch_metric_learning import losses
from torch import nn


def class_layout(loss: nn.Module) -> Optional[Tuple[int, int]]:
    """``(number of classes, embedding size)`` of a PML loss that learns one weight (or
    several) per class, read from its public parameters; ``None`` for any other loss.

    Group ids of such a loss index its class weights, so ids outside ``[0, classes)`` are
    an error (PML raises deep inside, or for ``ProxyNCALoss`` returns a wrong value).
    """
    if isinstance(loss, losses.LargeMarginSoftmaxLoss):  # ArcFace, CosFace, SphereFace, ...
        return loss.num_classes, loss.W.shape[0]
    if isinstance(loss, losses.NormalizedSoftmaxLoss):
        return loss.W.shape[1], loss.W.shape[0]
    if isinstance(loss, (losses.ProxyAnchorLoss, losses.ProxyNCALoss)):
        return loss.proxies.shape[0], loss.proxies.shape[1]
    if isinstance(loss, losses.SoftTripleLoss):
        return loss.num_classes, loss.fc.shape[0]
    return None
