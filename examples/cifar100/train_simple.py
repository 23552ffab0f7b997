"""Train MobileNetV3 on CIFAR-100 with an online contrastive or triplet loss.

``python -m examples.cifar100.train_simple [--loss-fn contrastive|triplet] [--synthetic]``

DDP over two CPU processes (or GPUs): add ``--devices 2``; over several machines, also
``--num-nodes N`` (see the Scaling out guide).
"""

from typing import List, Optional

import pytorch_lightning as pl

from quaterion.loss import OnlineContrastiveLoss, SimilarityLoss, TripletLoss

from .cifar100 import MobilenetV3Model
from .cli import build_parser, run

BATCH_SIZE = 128


class Model(MobilenetV3Model):
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


def main(argv: Optional[List[str]] = None) -> pl.Trainer:
    """Parse ``argv``, train for ``--epochs`` and return the trainer."""
    parser = build_parser("python -m examples.cifar100.train_simple", __doc__, epochs_default=30)
    parser.add_argument("--loss-fn", choices=("contrastive", "triplet"), default="contrastive")
    parser.add_argument("--mining", choices=("all", "hard"), default="hard")

    def make_model(args) -> Model:
        return Model(args.embedding_size, args.lr, args.loss_fn, args.mining, weights=args.weights)

    return run(parser, argv, BATCH_SIZE, make_model)


if __name__ == "__main__":
    main()
