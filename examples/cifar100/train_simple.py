"""Train MobileNetV3 on CIFAR-100 with an online contrastive or triplet loss.

``python -m examples.cifar100.train_simple [--loss-fn contrastive|triplet] [--synthetic]``

Two devices (two CPU processes without a GPU), DDP:
``python -m examples.cifar100.train_simple --synthetic --devices 2``; add ``--num-nodes N`` on
several machines (see the Scaling out guide).
"""

from typing import TYPE_CHECKING, List, Optional, Union

import pytorch_lightning as pl
import torch

from quaterion import TrainableModel
from quaterion.loss import OnlineContrastiveLoss, SimilarityLoss, TripletLoss
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EmptyHead, EncoderHead

from .cifar100 import MobilenetV3Encoder

if TYPE_CHECKING:
    import torchvision
from .cli import build_parser, fit, load_dataloaders, parse_args

BATCH_SIZE = 128


class Model(TrainableModel):
    """MobileNetV3 encoder, ``EmptyHead``, contrastive (``loss_fn="contrastive"``) or triplet loss."""

    def __init__(
        self,
        embedding_size: int,
        lr: float,
        loss_fn: str,
        mining: str,
        weights: Union[str, "torchvision.models.WeightsEnum", None] = "pretrained",
    ) -> None:
        self._embedding_size = embedding_size
        self._lr = lr
        self._loss_fn = loss_fn
        self._mining = mining
        self._weights = weights
        super().__init__()

    def configure_encoders(self) -> Encoder:
        return MobilenetV3Encoder(self._embedding_size, weights=self._weights)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return EmptyHead(input_embedding_size)

    def configure_loss(self) -> SimilarityLoss:
        if self._loss_fn == "contrastive":
            return OnlineContrastiveLoss(mining=self._mining)
        return TripletLoss(mining=self._mining)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self._lr)


def main(argv: Optional[List[str]] = None) -> pl.Trainer:
    """Parse ``argv``, train for ``--epochs`` and return the trainer."""
    parser = build_parser("python -m examples.cifar100.train_simple", __doc__, epochs_default=30)
    parser.add_argument("--loss-fn", choices=("contrastive", "triplet"), default="contrastive")
    parser.add_argument("--mining", choices=("all", "hard"), default="hard")
    args = parse_args(parser, argv)
    pl.seed_everything(args.seed)
    train_dataloader, val_dataloader = load_dataloaders(args, BATCH_SIZE)
    model = Model(args.embedding_size, args.lr, args.loss_fn, args.mining, weights=args.weights)
    return fit(model, train_dataloader, val_dataloader, args.epochs, args.devices, args.num_nodes)


if __name__ == "__main__":
    main()
