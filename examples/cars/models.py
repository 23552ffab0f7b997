"""``Model``: frozen ResNet + ``SkipConnectionHead`` trained with hard triplet mining on cached vectors."""

import sys

try:
    import torchvision  # noqa: F401
except ImportError:
    print(
        "The cars example needs torchvision (and scipy for real Stanford Cars data): "
        "pip install 'quaterion[examples]' or pip install torchvision scipy",
        file=sys.stderr,
    )
    sys.exit(1)

from typing import Optional, Union

import torch

from quaterion import TrainableModel
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import TripletLoss
from quaterion.train.cache import CacheConfig, CacheType
from quaterion_models.encoders.extras.torchvision_encoder import TorchvisionEncoder
from quaterion_models.heads import EmptyHead, EncoderHead, SkipConnectionHead

from .config import CACHE_DIR, DEFAULT_ARCH, HEAD_DROPOUT
from examples.weights import resolve_weights


class Model(TrainableModel):
    """Trainable model of the cars example.

    Args:
        lr: Adam learning rate of the head.
        mining: ``TripletLoss`` mining, ``"all"``, ``"hard"`` or ``"semi_hard"``.
        arch: torchvision ResNet builder name.
        weights: ``"pretrained"`` / ``"random"`` (resolved with
            :func:`~examples.weights.resolve_weights`), or an already resolved weights
            enum member, or ``None`` for random weights.
        cache_dir: where the embedding cache is persisted (``None``: in memory only).
        dropout: the head's dropout; ``None`` picks ``HEAD_DROPOUT`` over pretrained weights
            and none over random ones (see ``examples/cars/config.py``).
        views: augmented views of each training image kept in the cache (``CacheConfig.views``).
    """

    def __init__(
        self,
        lr: float,
        mining: str,
        arch: str = DEFAULT_ARCH,
        weights: Union[str, "torchvision.models.WeightsEnum", None] = "pretrained",
        cache_dir: Optional[str] = CACHE_DIR,
        dropout: Optional[float] = None,
        views: int = 1,
    ) -> None:
        self._lr, self.mining = lr, mining
        self._arch = arch
        self._weights = resolve_weights(arch, weights) if isinstance(weights, str) else weights
        self._cache_dir = cache_dir
        self._views = views
        if dropout is None:
            dropout = HEAD_DROPOUT if self._weights is not None else 0.0
        self._dropout = dropout
        super().__init__()

    def configure_encoders(self) -> TorchvisionEncoder:
        # a library encoder: the servable loads anywhere with only quaterion_models installed
        return TorchvisionEncoder(self._arch, weights=self._weights)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return SkipConnectionHead(input_embedding_size, dropout=self._dropout)

    def configure_loss(self) -> TripletLoss:
        return TripletLoss(mining=self.mining, margin=0.5)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), self._lr)

    def configure_caches(self) -> CacheConfig:
        return CacheConfig(
            cache_type=CacheType.AUTO, save_dir=self._cache_dir, batch_size=32, views=self._views
        )

    def configure_metrics(self) -> AttachedMetric:
        return AttachedMetric(
            "rrp", metric=RetrievalRPrecision(), prog_bar=True, on_epoch=True, on_step=False
        )


class EvalModel(Model):
    """``Model`` with an ``EmptyHead``: the backbone's own embeddings (the baseline)."""

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return EmptyHead(input_embedding_size)
