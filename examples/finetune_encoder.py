"""Quick start, second act: fine-tune the whole MiniLM through a gradient cache.

``python -m examples.quick_start --finetune-encoder`` runs this after the head-only run:
the transformer itself is trained (no frozen cache) with batch-hard triplet loss on large
batches encoded ``--finetune-mini-batch`` texts at a time, and the held-out
R-precision is printed next to the head-only one.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any, Dict


def triplet_cosine():
    """Batch-hard triplet loss, cosine distance, margin 0.5 (the quick start's head loss)."""
    from quaterion.loss import TripletLoss

    return TripletLoss(mining="hard", margin=0.5)


def triplet_soft_euclidean():
    """Batch-hard triplet loss with a soft margin (``softplus``) over euclidean distance,
    like sentence-transformers' ``BatchHardSoftMarginTripletLoss``."""
    from quaterion.distances import Distance
    from quaterion.loss import TripletLoss

    return TripletLoss(mining="hard", soft=True, distance_metric_name=Distance.EUCLIDEAN)


LOSSES = {"triplet": triplet_cosine, "soft-euclidean": triplet_soft_euclidean}

# weight of the fine-tuned end point in the final weights (see --finetune-interpolate): 0.75
# scored best on the validation split but not on the held-out one (large-batch guide)
DEFAULT_INTERPOLATION = 1.0


def build_finetune_class():
    """The ``TrainableModel`` of the fine-tuning run (built lazily, like the quick start's)."""
    import torch

    from quaterion import TrainableModel
    from quaterion.train import GradientCacheConfig
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import EmptyHead

    class FineTunedEncoder(TrainableModel):
        """Trainable MiniLM, no head, batch-hard triplet loss, gradient cache; ``dropout``:
        train with the transformer's dropout on (the library's default training mode)."""

        def __init__(
            self,
            encoder_path: str,
            lr: float,
            mini_batch_size: int,
            warmup: float = 0.0,
            loss: str = "triplet",
            dropout: bool = True,
        ):
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
            self._encoder_path, self._lr, self._mini = encoder_path, lr, mini_batch_size
            self._warmup, self._loss_name, self._dropout = warmup, loss, dropout
            super().__init__()

        def configure_encoders(self):
            return TransformerEncoder(self._encoder_path, trainable=True)

        def configure_head(self, input_embedding_size: int):
            return EmptyHead(input_embedding_size)

        def configure_loss(self):
            return LOSSES[self._loss_name]()

        def configure_gradient_cache(self):
            return GradientCacheConfig(mini_batch_size=self._mini)

        def set_training_modes(self):
            # TrainableModel trains trainable encoders in train mode (dropout on, as
            # sentence-transformers' loop and Lightning 1 do); --finetune-no-dropout keeps
            # the transformer in eval mode instead
            super().set_training_modes()
            if not self._dropout:
                for encoder in self.model.encoders.values():
                    encoder.eval()

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.model.parameters(), lr=self._lr)
            if self._warmup <= 0:
                return optimizer
            total = max(1, int(self.trainer.estimated_stepping_batches))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                partial(warmup_linear, warmup=max(1, round(self._warmup * total)), total=total),
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"},
            }

    return FineTunedEncoder


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear rise over ``warmup`` steps, then linear decay to 0 at
    ``total`` (the schedule sentence-transformers calls ``WarmupLinear``)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def finetune_encoder(args: argparse.Namespace, encoder_path: str, train: list, test: list):
    """Fit the whole encoder for ``args.finetune_epochs``; returns the R-precision over
    ``test``, the training seconds and the trained ``TrainableModel``."""
    import pytorch_lightning as pl

    from examples.quick_start import held_out_r_precision
    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader

    pl.seed_everything(args.seed, verbose=False)
    model = build_finetune_class()(
        encoder_path,
        args.finetune_lr,
        args.finetune_mini_batch,
        args.finetune_warmup,
        args.finetune_loss,
        args.finetune_dropout,
    )
    loader = GroupSimilarityDataLoader(train, batch_size=args.finetune_batch_size, shuffle=True)
    callbacks = []
    if args.finetune_interpolate < 1.0:
        from quaterion.train.callbacks import WeightInterpolation

        callbacks.append(WeightInterpolation(args.finetune_interpolate))
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=args.finetune_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )
    started = time.perf_counter()
    Quaterion.fit(model, trainer, loader)
    seconds = time.perf_counter() - started
    score = held_out_r_precision(model.model, test)
    return {"r_precision": score, "train_s": seconds, "model": model}


def fraction(text: str, include_one: bool) -> float:
    """A number in ``[0, 1]`` (``include_one``) or ``[0, 1)``, for an ``argparse`` option."""
    interval = "[0, 1]" if include_one else "[0, 1)"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
    if not (0.0 <= value <= 1.0 if include_one else 0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {value}")
    return value


def warmup_fraction(text: str) -> float:
    """``--finetune-warmup`` value: a float in ``[0, 1)``."""
    return fraction(text, include_one=False)


def interpolation_weight(text: str) -> float:
    """``--finetune-interpolate`` value: a float in ``[0, 1]``."""
    return fraction(text, include_one=True)


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
    parser.add_argument(
        "--finetune-loss",
        choices=sorted(LOSSES),
        default="triplet",
        help="batch-hard triplet loss over cosine distance with margin 0.5 (triplet) or "
        "with a soft margin over euclidean distance (soft-euclidean)",
    )
    parser.add_argument(
        "--finetune-warmup",
        type=warmup_fraction,
        default=0.0,
        help="fraction of the steps with a linear learning-rate warm-up, then linear decay "
        "to 0 (0: constant learning rate)",
    )
    parser.add_argument(
        "--finetune-no-dropout",
        dest="finetune_dropout",
        action="store_false",
        help="train with the transformer's dropout off (eval mode); by default the "
        "trainable encoder trains in train mode, dropout on",
    )
    parser.add_argument(
        "--finetune-interpolate",
        type=interpolation_weight,
        default=DEFAULT_INTERPOLATION,
        metavar="ALPHA",
        help="after training, set the weights to (1 - ALPHA) * pre-trained + ALPHA * "
        "fine-tuned (WiSE-FT, quaterion.train.callbacks.WeightInterpolation; 1: keep the "
        "fine-tuned weights, the default)",
    )


def report(head_only: float, result: Dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nWhole encoder fine-tuned through a gradient cache (batch "
        f"{args.finetune_batch_size}, mini-batch {args.finetune_mini_batch}, loss "
        f"{args.finetune_loss}, {args.finetune_epochs} epochs, dropout "
        f"{'on' if args.finetune_dropout else 'off'}, interpolation "
        f"{args.finetune_interpolate}, {result['train_s']:.1f} s of "
        f"training): held-out RetrievalRPrecision {result['r_precision']:.4f} (head only: {head_only:.4f})"
    )
