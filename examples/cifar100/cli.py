"""Options and the training run shared by the three cifar100 scripts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, List, Optional

from examples.cli_types import positive_float, positive_int, random_seed
from .config import DATASET_PATH, SYNTHETIC_EPOCHS, SYNTHETIC_TRAIN_SIZE
from examples.console import plain_text, say
from examples.training import add_scale_args, fit
from examples.weights import WEIGHTS_CHOICES

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    import pytorch_lightning as pl

    from quaterion import TrainableModel


def build_parser(prog: str, description: str, epochs_default: int) -> argparse.ArgumentParser:
    """``--embedding-size``, ``--lr``, ``--epochs``, the offline switches, ``--devices`` and
    ``--num-nodes``."""
    parser = argparse.ArgumentParser(prog=prog, description=plain_text(description))
    parser.add_argument("--embedding-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=positive_float, default=1e-4)
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"maximum epochs (default: {epochs_default}, or {SYNTHETIC_EPOCHS} with --synthetic)",
    )
    parser.set_defaults(real_epochs=epochs_default)
    parser.add_argument(
        "--data-dir",
        default=DATASET_PATH,
        help=f"directory containing cifar-100-python/ (default: {DATASET_PATH})",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download CIFAR-100 into --data-dir if it is missing (needs the network)",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use generated 32x32 images of 100 classes; implies --weights random; no network",
    )
    parser.add_argument(
        "--synthetic-size",
        type=positive_int,
        default=SYNTHETIC_TRAIN_SIZE,
        help=f"train items with --synthetic (validation: a quarter, at least 200; default {SYNTHETIC_TRAIN_SIZE})",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHTS_CHOICES,
        default=None,
        help="ImageNet weights for MobileNetV3 from the torch hub cache, or random "
        "(default: pretrained, or random with --synthetic)",
    )
    parser.add_argument("--seed", type=random_seed, default=42)
    add_scale_args(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse and fill the ``--synthetic``-dependent defaults of ``--weights`` and ``--epochs``."""
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = SYNTHETIC_EPOCHS if args.synthetic else args.real_epochs
    if args.weights is None:
        args.weights = "random" if args.synthetic else "pretrained"
    if args.synthetic_size < 2:
        parser.error(
            f"--synthetic-size must be at least 2 (a batch of one image cannot train), "
            f"got {args.synthetic_size}"
        )
    return args


def load_dataloaders(args: argparse.Namespace, batch_size: int):
    """Train/val loaders for ``args``; missing data exits with status 1 and a hint."""
    from .cifar100 import DataNotFoundError, get_dataloaders

    try:
        return get_dataloaders(
            batch_size,
            data_dir=args.data_dir,
            synthetic=args.synthetic,
            download=args.download,
            synthetic_size=args.synthetic_size,
            processes=args.devices * args.num_nodes,
        )
    except DataNotFoundError as exc:
        sys.exit(f"error: {exc}")


def run(
    parser: argparse.ArgumentParser,
    argv: Optional[List[str]],
    batch_size: int,
    make_model: Callable[[argparse.Namespace], TrainableModel],
) -> pl.Trainer:
    """Parse ``argv``, seed everything, build the loaders and ``make_model(args)``, train for
    ``--epochs`` on ``--devices`` x ``--num-nodes`` and return the trainer."""
    args = parse_args(parser, argv)
    say("Loading torch, Lightning and torchvision ...")
    import pytorch_lightning as pl

    pl.seed_everything(args.seed, verbose=False)
    train_dataloader, val_dataloader = load_dataloaders(args, batch_size)
    model = make_model(args)
    return fit(model, train_dataloader, val_dataloader, args.epochs, args.devices, args.num_nodes)
