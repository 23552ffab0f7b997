"""Train MobileNetV3 on CIFAR-100 with pytorch-metric-learning's ArcFace loss and miner.

``python -m examples.cifar100.train_with_pytorch_metric_learning [--epochs 10] [--synthetic]``

Two devices (two CPU processes without a GPU), DDP:
``python -m examples.cifar100.train_with_pytorch_metric_learning --synthetic --devices 2``; add ``--num-nodes N`` on
several machines (see the Scaling out guide).
"""

import sys

try:
    from pytorch_metric_learning import losses, miners
except ImportError:
    print(
        "This example needs pytorch-metric-learning: pip install pytorch-metric-learning",
        file=sys.stderr,
    )
    sys.exit(1)

from typing import TYPE_CHECKING, List, Optional, Union

import pytorch_lightning as pl
import torch

from quaterion import TrainableModel
from quaterion.loss import SimilarityLoss
from quaterion.loss.extras import PytorchMetricLearningWrapper
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EmptyHead, EncoderHead

from .cifar100 import MobilenetV3Encoder

if TYPE_CHECKING:
    import torchvision
from .cli import build_parser, fit, load_dataloaders, parse_args

BATCH_SIZE = 128
NUM_CLASSES = 100


class Model(TrainableModel):
    """MobileNetV3 encoder, ``EmptyHead``, PML ``ArcFaceLoss`` with ``MultiSimilarityMiner``."""

    def __init__(
        self,
        embedding_size: int,
        lr: float,
        weights: Union[str, "torchvision.models.WeightsEnum", None] = "pretrained",
    ) -> None:
        self._embedding_size = embedding_size
        self._lr = lr
        self._weights = weights
        super().__init__()

    def configure_encoders(self) -> Encoder:
        return MobilenetV3Encoder(self._embedding_size, weights=self._weights)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return EmptyHead(input_embedding_size)

    def configure_loss(self) -> SimilarityLoss:
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


def main(argv: Optional[List[str]] = None) -> pl.Trainer:
    """Parse ``argv``, train for ``--epochs`` (default 10) and return the trainer."""
    parser = build_parser(
        "python -m examples.cifar100.train_with_pytorch_metric_learning", __doc__, epochs_default=10
    )
    args = parse_args(parser, argv)
    pl.seed_everything(args.seed)
    train_dataloader, val_dataloader = load_dataloaders(args, BATCH_SIZE)
    model = Model(args.embedding_size, args.lr, weights=args.weights)
    return fit(model, train_dataloader, val_dataloader, args.epochs, args.devices, args.num_nodes)


if __name__ == "__main__":
    main()
