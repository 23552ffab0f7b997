"""Train MobileNetV3 on CIFAR-100 with pytorch-metric-learning's ArcFace loss and miner.

``python -m examples.cifar100.train_with_pytorch_metric_learning [--epochs 10] [--synthetic]``

Any pytorch-metric-learning loss (and miner) plugs in through ``PytorchMetricLearningWrapper``.
``--devices 2`` trains with DDP over two processes, ``--num-nodes N`` over N machines.
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

from typing import List, Optional

import pytorch_lightning as pl
import torch

from quaterion.loss import SimilarityLoss
from quaterion.loss.extras import PytorchMetricLearningWrapper

from .cifar100 import MobilenetV3Model
from .cli import build_parser, run

BATCH_SIZE = 128
NUM_CLASSES = 100


class Model(MobilenetV3Model):
    """MobileNetV3 encoder, ``EmptyHead``, PML ``ArcFaceLoss`` with ``MultiSimilarityMiner``."""

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
    return run(
        parser, argv, BATCH_SIZE, lambda args: Model(args.embedding_size, args.lr, args.weights)
    )


if __name__ == "__main__":
    main()
