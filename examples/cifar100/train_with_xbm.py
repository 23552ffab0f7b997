"""Train MobileNetV3 on CIFAR-100 with semi-hard triplets and cross-batch memory (XBM).

``python -m examples.cifar100.train_with_xbm [--xbm-start-iteration 1000] [--synthetic]``

Batch size and buffer size are chosen so that training fits on a 4 GB GPU.

Two devices (two CPU processes without a GPU), DDP:
``python -m examples.cifar100.train_with_xbm --synthetic --devices 2``; add ``--num-nodes N`` on
several machines (see the Scaling out guide).
"""

from typing import TYPE_CHECKING, List, Optional, Union

import pytorch_lightning as pl
import torch

from quaterion import TrainableModel
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import SimilarityLoss, TripletLoss
from quaterion.train.xbm import XbmConfig
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EmptyHead, EncoderHead

from .cifar100 import MobilenetV3Encoder

if TYPE_CHECKING:
    import torchvision
from .cli import build_parser, fit, load_dataloaders, parse_args

BATCH_SIZE = 64


class Model(TrainableModel):
    """MobileNetV3 encoder, ``EmptyHead``, ``TripletLoss(mining="semi_hard")`` plus an XBM term."""

    def __init__(
        self,
        embedding_size: int,
        lr: float,
        weights: Union[str, "torchvision.models.WeightsEnum", None] = "pretrained",
        xbm_buffer_size: int = 2048,
        xbm_start_iteration: int = 1000,
    ) -> None:
        self._embedding_size = embedding_size
        self._lr = lr
        self._weights = weights
        self._xbm_buffer_size = xbm_buffer_size
        self._xbm_start_iteration = xbm_start_iteration
        super().__init__()

    def configure_encoders(self) -> Encoder:
        return MobilenetV3Encoder(self._embedding_size, weights=self._weights)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return EmptyHead(input_embedding_size)

    def configure_loss(self) -> SimilarityLoss:
        return TripletLoss(mining="semi_hard")

    def configure_xbm(self) -> XbmConfig:
        return XbmConfig(
            buffer_size=self._xbm_buffer_size, start_iteration=self._xbm_start_iteration
        )

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
    args = parse_args(parser, argv)
    pl.seed_everything(args.seed)
    train_dataloader, val_dataloader = load_dataloaders(args, BATCH_SIZE)
    model = Model(
        args.embedding_size,
        args.lr,
        weights=args.weights,
        xbm_buffer_size=args.xbm_buffer_size,
        xbm_start_iteration=args.xbm_start_iteration,
    )
    return fit(model, train_dataloader, val_dataloader, args.epochs, args.devices, args.num_nodes)


if __name__ == "__main__":
    main()
