"""Quick start, second act: fine-tune the whole MiniLM through a gradient cache.

``python -m examples.quick_start --finetune-encoder`` runs this after the head-only run:
the transformer itself is trained (no frozen cache) with batch-hard triplet loss on large
batches encoded ``--finetune-mini-batch`` texts at a time, and the held-out
R-precision is printed next to the head-only one.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict


def build_finetune_class():
    """The ``TrainableModel`` of the fine-tuning run (built lazily, like the quick start's)."""
    import torch

    from quaterion import TrainableModel
    from quaterion.loss import TripletLoss
    from quaterion.train import GradientCacheConfig
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import EmptyHead

    class FineTunedEncoder(TrainableModel):
        """Trainable MiniLM, no head, batch-hard triplet loss, gradient cache."""

        def __init__(self, encoder_path: str, lr: float, mini_batch_size: int):
            self._encoder_path, self._lr, self._mini = encoder_path, lr, mini_batch_size
            super().__init__()

        def configure_encoders(self):
            return TransformerEncoder(self._encoder_path, trainable=True)

        def configure_head(self, input_embedding_size: int):
            return EmptyHead(input_embedding_size)

        def configure_loss(self):
            return TripletLoss(mining="hard", margin=0.5)

        def configure_gradient_cache(self):
            return GradientCacheConfig(mini_batch_size=self._mini)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.model.parameters(), lr=self._lr)

    return FineTunedEncoder


def finetune_encoder(args: argparse.Namespace, encoder_path: str, train: list, test: list):
    """Fit the whole encoder for ``args.finetune_epochs``; returns R-precision and seconds."""
    import pytorch_lightning as pl

    from examples.quick_start import held_out_r_precision
    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader

    pl.seed_everything(args.seed, verbose=False)
    model = build_finetune_class()(encoder_path, args.finetune_lr, args.finetune_mini_batch)
    loader = GroupSimilarityDataLoader(train, batch_size=args.finetune_batch_size, shuffle=True)
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=args.finetune_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    started = time.perf_counter()
    Quaterion.fit(model, trainer, loader)
    seconds = time.perf_counter() - started
    return {"r_precision": held_out_r_precision(model.model, test), "train_s": seconds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--finetune-*`` options of the quick start."""
    parser.add_argument(
        "--finetune-encoder",
        action="store_true",
        help="also fine-tune the whole encoder through a gradient cache and compare",
    )
    parser.add_argument("--finetune-batch-size", type=int, default=192)
    parser.add_argument("--finetune-mini-batch", type=int, default=32)
    parser.add_argument("--finetune-lr", type=float, default=5e-5)
    parser.add_argument("--finetune-epochs", type=int, default=3)


def report(head_only: float, result: Dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nWhole encoder fine-tuned through a gradient cache (batch "
        f"{args.finetune_batch_size}, mini-batch {args.finetune_mini_batch}, "
        f"{args.finetune_epochs} epochs, {result['train_s']:.1f} s of training): held-out "
        f"RetrievalRPrecision {result['r_precision']:.4f} (head only: {head_only:.4f})"
    )
