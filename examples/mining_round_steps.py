"""The pieces of :mod:`examples.mining_round` that need torch: a frozen vector encoder, the
trainable model, a quiet fit and held-out R-precision (kept apart so ``--help`` stays light)."""

from __future__ import annotations

import os
from typing import Callable, List

import torch
from torch import Tensor

from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead, SkipConnectionHead


class VectorEncoder(Encoder):
    """Frozen identity encoder: records are precomputed vectors, stacked into a batch."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return self.size

    def get_collate_fn(self) -> Callable:
        return torch.stack

    def forward(self, batch: Tensor) -> Tensor:
        return batch

    def save(self, output_path: str) -> None:
        with open(os.path.join(output_path, "size.txt"), "w") as handle:
            handle.write(str(self.size))

    @classmethod
    def load(cls, input_path: str) -> "VectorEncoder":
        with open(os.path.join(input_path, "size.txt")) as handle:
            return cls(int(handle.read()))


def build_model(size: int, lr: float):
    """The trainable model: frozen vectors + skip-connection head, hard triplet loss."""
    from quaterion import TrainableModel
    from quaterion.loss import TripletLoss

    class RoundModel(TrainableModel):
        def configure_encoders(self) -> Encoder:
            return VectorEncoder(size)

        def configure_head(self, input_embedding_size: int) -> EncoderHead:
            return SkipConnectionHead(input_embedding_size, dropout=0.1)

        def configure_loss(self):
            return TripletLoss(mining="hard", margin=0.5)

        def configure_optimizers(self):
            return torch.optim.Adam(self.model.parameters(), lr=lr)

    return RoundModel()


def fit(model, loader, epochs: int) -> None:
    """``Quaterion.fit`` for ``epochs`` epochs on one CPU, quietly."""
    import pytorch_lightning as pl

    from quaterion import Quaterion

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    Quaterion.fit(trainable_model=model, trainer=trainer, train_dataloader=loader)


def r_precision(model: SimilarityModel, vectors: Tensor, groups: List[int]) -> float:
    """Held-out ``RetrievalRPrecision``, every item a query."""
    from quaterion import Quaterion
    from quaterion.dataset import SimilarityGroupSample
    from quaterion.eval.evaluator import Evaluator
    from quaterion.eval.group import RetrievalRPrecision
    from quaterion.eval.samplers.group_sampler import GroupSampler

    samples = [SimilarityGroupSample(obj=v, group=g) for v, g in zip(vectors, groups)]
    evaluator = Evaluator(RetrievalRPrecision(), GroupSampler(sample_size=-1, log_progress=False))
    return float(
        Quaterion.evaluate(evaluator=evaluator, dataset=samples, model=model)["RetrievalRPrecision"]
    )
