"""Quick start, second act: fine-tune the whole MiniLM through a gradient cache.

``python -m examples.quick_start --finetune-encoder`` runs this after the head-only run:
the transformer itself is trained (no frozen cache) with batch-hard triplet loss on large
batches encoded ``--finetune-mini-batch`` texts at a time, and the held-out
R-precision is printed next to the head-only one.

The options also run sentence-transformers' own recipe batch for batch (large-batch guide)::

    --finetune-batch-size 32 --finetune-mini-batch 16 --finetune-lr 2e-5 --finetune-warmup 0.1
    --finetune-loss hard-euclidean --finetune-sampler group-cycle --finetune-clip 1
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Dict

from examples.cli_types import positive_float, positive_int

if TYPE_CHECKING:
    import torch


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


def triplet_hard_euclidean():
    """sentence-transformers' ``BatchHardTripletLoss``: batch-hard triplet loss over
    euclidean distance with margin 5, the mean over the anchors of
    ``hardest positive distance - hardest negative distance + 5`` (pytorch-metric-learning's
    ``TripletMarginLoss`` with its ``BatchHardMiner``, through
    ``PytorchMetricLearningWrapper``; the margin exceeds every distance between unit
    vectors, so no anchor drops out). Anchors without a positive in the batch are skipped,
    where sentence-transformers counts them with a hardest positive distance of 0: the two
    agree when every group of a batch has two records or more (``--finetune-sampler
    group-cycle``)."""
    from pytorch_metric_learning import losses, miners

    from quaterion.loss.extras import PytorchMetricLearningWrapper

    return PytorchMetricLearningWrapper(
        losses.TripletMarginLoss(margin=5.0), miners.BatchHardMiner()
    )


LOSSES = {
    "triplet": triplet_cosine,
    "soft-euclidean": triplet_soft_euclidean,
    "hard-euclidean": triplet_hard_euclidean,
}
SAMPLERS = ("random", "group-cycle")
# parameters whose names hold one of these train without weight decay (as in
# sentence-transformers' and BERT's recipes)
NO_DECAY = ("bias", "LayerNorm.weight")
WEIGHT_DECAY = 0.01

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
            optimizer = torch.optim.AdamW(decay_groups(self.model), lr=self._lr)
            if self._warmup <= 0:
                return optimizer
            total = max(1, int(self.trainer.estimated_stepping_batches))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                partial(warmup_linear, warmup=math.ceil(self._warmup * total), total=total),
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"},
            }

    return FineTunedEncoder


def decay_groups(model: "torch.nn.Module", weight_decay: float = WEIGHT_DECAY) -> list:
    """``model``'s trainable parameters as two optimizer groups: ``weight_decay`` for the
    weights, none for biases and LayerNorm weights (names holding one of ``NO_DECAY``)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    exempt = [p for name, p in named if any(part in name for part in NO_DECAY)]
    ids = {id(p) for p in exempt}
    decayed = [p for _, p in named if id(p) not in ids]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor of optimizer step ``step`` (from 0): ``step / warmup`` over the
    ``warmup`` first steps, then linear decay to 0 at ``total`` (sentence-transformers'
    ``WarmupLinear``, transformers' ``get_linear_schedule_with_warmup``)."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def training_loader(args: argparse.Namespace, train: list):
    """The loader of ``args.finetune_sampler``: shuffled batches (``random``) or
    :class:`~quaterion.dataset.GroupCycleBatchSampler` batches (``group-cycle``:
    ``--finetune-samples-per-group`` texts of one topic after another, the order of
    sentence-transformers' ``SentenceLabelDataset``, seeded with ``--seed``)."""
    from quaterion.dataset import GroupCycleBatchSampler, GroupSimilarityDataLoader

    if args.finetune_sampler == "random":
        return GroupSimilarityDataLoader(train, batch_size=args.finetune_batch_size, shuffle=True)
    sampler = GroupCycleBatchSampler(
        [sample.group for sample in train],
        args.finetune_batch_size,
        samples_per_group=args.finetune_samples_per_group,
        seed=args.seed,
    )
    return GroupSimilarityDataLoader(train, batch_sampler=sampler)


def finetune_encoder(
    args: argparse.Namespace, encoder_path: str, train: list, test: list, callbacks: tuple = ()
):
    """Fit the whole encoder for ``args.finetune_epochs`` (with the extra Lightning
    ``callbacks``); returns the R-precision over ``test``, the training seconds and the
    trained ``TrainableModel``."""
    import pytorch_lightning as pl

    from examples.quick_start import held_out_r_precision
    from quaterion import Quaterion

    pl.seed_everything(args.seed, verbose=False)
    model = build_finetune_class()(
        encoder_path,
        args.finetune_lr,
        args.finetune_mini_batch,
        args.finetune_warmup,
        args.finetune_loss,
        args.finetune_dropout,
    )
    loader = training_loader(args, train)
    callbacks = list(callbacks)
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
        gradient_clip_val=args.finetune_clip or None,
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


def clip_norm(text: str) -> float:
    """``--finetune-clip`` value: a finite float ``>= 0`` (0: no clipping)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (0.0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


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
    parser.add_argument("--finetune-batch-size", type=positive_int, default=192)
    parser.add_argument("--finetune-mini-batch", type=positive_int, default=32)
    parser.add_argument("--finetune-lr", type=positive_float, default=5e-5)
    parser.add_argument("--finetune-epochs", type=positive_int, default=3)
    parser.add_argument(
        "--finetune-loss",
        choices=sorted(LOSSES),
        default="triplet",
        help="batch-hard triplet loss over cosine distance with margin 0.5 (triplet), "
        "with a soft margin over euclidean distance (soft-euclidean), or over euclidean "
        "distance with margin 5 (hard-euclidean: sentence-transformers' BatchHardTripletLoss)",
    )
    parser.add_argument(
        "--finetune-sampler",
        choices=SAMPLERS,
        default="random",
        help="shuffled batches (random), or batches that take --finetune-samples-per-group "
        "texts of one topic after another in a shuffled cycle of the topics (group-cycle: "
        "sentence-transformers' SentenceLabelDataset order, "
        "quaterion.dataset.GroupCycleBatchSampler seeded with --seed)",
    )
    parser.add_argument(
        "--finetune-samples-per-group",
        type=positive_int,
        default=2,
        help="texts of a topic taken at each visit by --finetune-sampler group-cycle",
    )
    parser.add_argument(
        "--finetune-clip",
        type=clip_norm,
        default=0.0,
        metavar="NORM",
        help="clip the gradient to this norm each step (0: no clipping)",
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


def describe(args: argparse.Namespace) -> str:
    """The fine-tuning settings of ``args``, in one line."""
    sampler = args.finetune_sampler
    if sampler == "group-cycle":
        sampler += f" ({args.finetune_samples_per_group} per topic)"
    return (
        f"batch {args.finetune_batch_size}, mini-batch {args.finetune_mini_batch}, "
        f"{sampler} batches, loss {args.finetune_loss}, lr {args.finetune_lr}, warm-up "
        f"{args.finetune_warmup}, clip {args.finetune_clip}, {args.finetune_epochs} epochs, "
        f"dropout {'on' if args.finetune_dropout else 'off'}, interpolation "
        f"{args.finetune_interpolate}"
    )


def report(head_only: float, result: Dict[str, Any], args: argparse.Namespace) -> None:
    """Print the fine-tuned run's held-out score next to the head-only one."""
    print(
        f"\nWhole encoder fine-tuned through a gradient cache ({describe(args)}, "
        f"{result['train_s']:.1f} s of training): held-out RetrievalRPrecision "
        f"{result['r_precision']:.4f} (head only: {head_only:.4f})"
    )
