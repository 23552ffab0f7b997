"""The trainable models of the three cifar100 scripts (MobileNetV3 encoder, ``EmptyHead``)."""

import torch

from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import OnlineContrastiveLoss, SimilarityLoss, TripletLoss
from quaterion.loss.extras import PytorchMetricLearningWrapper
from quaterion.train.xbm import XbmConfig

from .cifar100 import MobilenetV3Model

NUM_CLASSES = 100


class SimpleModel(MobilenetV3Model):
    """MobileNetV3 encoder, ``EmptyHead``, contrastive (``loss_fn="contrastive"``) or triplet loss
    with ``mining`` ``"all"`` or ``"hard"``; the other arguments are :class:`MobilenetV3Model`'s."""

    def __init__(self, embedding_size: int, lr: float, loss_fn: str, mining: str, **kwargs) -> None:
        self._loss_fn = loss_fn
        self._mining = mining
        super().__init__(embedding_size, lr, **kwargs)

    def configure_loss(self) -> SimilarityLoss:
        if self._loss_fn == "contrastive":
            return OnlineContrastiveLoss(mining=self._mining)
        return TripletLoss(mining=self._mining)


class PmlModel(MobilenetV3Model):
    """MobileNetV3 encoder, ``EmptyHead``, PML ``ArcFaceLoss`` with ``MultiSimilarityMiner``."""

    def configure_loss(self) -> SimilarityLoss:
        from pytorch_metric_learning import losses, miners

        return PytorchMetricLearningWrapper(
            losses.ArcFaceLoss(embedding_size=self._embedding_size, num_classes=NUM_CLASSES),
            miners.MultiSimilarityMiner(),
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # ArcFace owns trainable class weights: they need their own parameter group.
        return torch.optim.Adam(
            [
                {"params": self.model.parameters(), "lr": self._lr},
                {"params": self.loss.parameters(), "lr": self._lr},
            ]
        )


class XbmModel(MobilenetV3Model):
    """MobileNetV3 encoder, ``EmptyHead``, ``TripletLoss(mining="semi_hard")`` plus the memory
    term that ``xbm`` configures (buffer size, start iteration, weight); the other arguments
    are :class:`MobilenetV3Model`'s."""

    def __init__(self, embedding_size: int, lr: float, xbm: XbmConfig, **kwargs) -> None:
        self._xbm = xbm
        super().__init__(embedding_size, lr, **kwargs)

    def configure_loss(self) -> SimilarityLoss:
        return TripletLoss(mining="semi_hard")

    def configure_xbm(self) -> XbmConfig:
        return self._xbm

    def configure_metrics(self) -> AttachedMetric:
        return AttachedMetric(
            name="rrp", metric=RetrievalRPrecision(), prog_bar=True, on_epoch=True
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self._lr, weight_decay=0.0005)
