"""Train MobileNetV3 on CIFAR-100 with semi-hard triplets and cross-batch memory (XBM).

``python -m examples.cifar100.train_with_xbm [--xbm-start-iteration 1000] [--synthetic]``

Batch size and buffer size are chosen so that training fits on a 4 GB GPU; ``--devices 2``
and ``--num-nodes N`` train with DDP (see the Scaling out guide).
"""

from typing import List, Optional

import pytorch_lightning as pl
import torch

from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import SimilarityLoss, TripletLoss
from quaterion.train.xbm import XbmConfig

from .cifar100 import MobilenetV3Model
from .cli import build_parser, run

BATCH_SIZE = 64


class Model(MobilenetV3Model):
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


def main(argv: Optional[List[str]] = None) -> pl.Trainer:
    """Parse ``argv``, train for ``--epochs`` and return the trainer."""
    parser = build_parser("python -m examples.cifar100.train_with_xbm", __doc__, epochs_default=30)
    parser.add_argument(
        "--xbm-start-iteration",
        type=int,
        default=1000,
        help="XBM adds its memory loss once the global step exceeds this (default 1000)",
    )
    parser.add_argument(
        "--xbm-buffer-size", type=int, default=2048, help="rows kept in the XBM memory"
    )

    def make_model(args) -> Model:
        xbm = XbmConfig(buffer_size=args.xbm_buffer_size, start_iteration=args.xbm_start_iteration)
        return Model(args.embedding_size, args.lr, xbm, weights=args.weights)

    return run(parser, argv, BATCH_SIZE, make_model)


if __name__ == "__main__":
    main()
