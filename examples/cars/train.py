"""Train the cars head: ``python -m examples.cars.train [--synthetic] [options]``.

Real data needs Stanford Cars under ``--data-dir`` and, ideally, a GPU; ``--synthetic``
runs offline in about a minute on a CPU.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import TYPE_CHECKING, List, Optional

from examples.cli_types import positive_float, positive_int
from .cli import (
    CPU_WARNING,
    PACKAGE_DIR,
    add_data_args,
    add_model_args,
    default_cache_dir,
    resolve_common_defaults,
)
from .config import (
    DATASET_PATH,
    DEFAULT_ARCH,
    DEFAULT_SEED,
    SPLIT_CACHE_PATH,
    SYNTHETIC_BATCH_SIZE,
    SYNTHETIC_EPOCHS,
    TRAIN_BATCH_SIZE,
)
from examples.console import plain_text, say
from examples.training import add_scale_args, fit
from examples.weights import resolve_weights

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    from .models import Model


def train(
    lr: float,
    mining: str,
    batch_size: int,
    epochs: int,
    input_size: int,
    shuffle: bool,
    save_dir: str,
    *,
    data_dir: str = DATASET_PATH,
    synthetic: bool = False,
    weights: str = "pretrained",
    arch: str = DEFAULT_ARCH,
    seed: int = DEFAULT_SEED,
    cache_dir: Optional[str] = None,
    devices: int = 1,
    num_nodes: int = 1,
    views: int = 1,
) -> Model:
    """Fit the head on the train classes, validate on the unseen test classes, save the servable.

    The trainer is ``Quaterion.trainer_defaults`` (early stopping on ``validation_loss``,
    patience 3) with ``max_epochs=epochs``, on ``devices`` per machine and ``num_nodes``
    machines (DDP when more than one process). ``cache_dir=None`` picks
    :func:`~examples.cars.cli.default_cache_dir`. ``views > 1`` trains on augmented
    images (random crops and flips), cached as ``views`` views of each image
    (``CacheConfig(views=...)``): the backbone still runs only during the fill. Returns the
    trained model.
    """
    from examples.save_target import check_output_dir, check_save_dir

    from .data import get_dataloaders
    from .models import Model

    check_save_dir(save_dir)
    check_output_dir(cache_dir, "--cache-dir")
    train_dataloader, val_dataloader = get_dataloaders(
        batch_size=batch_size,
        input_size=input_size,
        shuffle=shuffle,
        split_cache_path=SPLIT_CACHE_PATH,
        data_dir=data_dir,
        synthetic=synthetic,
        seed=seed,
        augment=views > 1,
    )
    resolved = resolve_weights(arch, weights)
    if cache_dir is None:
        weights_tag = "pretrained" if resolved is not None else "random"
        cache_dir = default_cache_dir(synthetic, input_size, arch, weights_tag, seed)
    model = Model(
        lr=lr, mining=mining, arch=arch, weights=resolved, cache_dir=cache_dir, views=views
    )

    trainer = fit(model, train_dataloader, val_dataloader, epochs, devices, num_nodes)
    # an earlier servable there is replaced atomically; files of your own are kept
    model.save_servable(save_dir)  # under DDP: written by global rank 0 only
    if trainer.is_global_zero:
        say(f"Saved the servable to {os.path.abspath(save_dir)}")
    return model


TRAIN_OPTIONS = tuple(inspect.signature(train).parameters)  # each one a command-line option


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.cars.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.cars.train", description=plain_text(__doc__), epilog=CPU_WARNING
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"training batch size (default: {TRAIN_BATCH_SIZE}, or {SYNTHETIC_BATCH_SIZE} with --synthetic)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"maximum epochs; early stopping may end sooner (default: 1000, or {SYNTHETIC_EPOCHS} with --synthetic)",
    )
    parser.add_argument("--lr", type=positive_float, default=3e-3)
    parser.add_argument("--mining", choices=("all", "hard", "semi_hard"), default="hard")
    parser.add_argument(
        "--save-dir",
        default=os.path.join(PACKAGE_DIR, "cars_encoders"),
        help="where the servable is written (an earlier servable there is replaced; other files are kept)",
    )
    parser.add_argument("--shuffle", action="store_true", help="shuffle the training data")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache directory (default: ./cache_dir, or ./cache_dir/<source>_<size>_<arch>_<weights>...)",
    )
    parser.add_argument(
        "--views",
        type=positive_int,
        default=1,
        help="train on random crops and flips, cached as this many views of each image "
        "(default 1: no augmentation)",
    )
    add_data_args(parser)
    add_model_args(parser)
    add_scale_args(parser)
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` and fill the defaults that depend on ``--synthetic``."""
    args = resolve_common_defaults(build_parser().parse_args(argv))
    if args.batch_size is None:
        args.batch_size = SYNTHETIC_BATCH_SIZE if args.synthetic else TRAIN_BATCH_SIZE
    if args.epochs is None:
        args.epochs = SYNTHETIC_EPOCHS if args.synthetic else 1000
    return args


def main(argv: Optional[List[str]] = None) -> Model:
    """Parse ``argv``, seed everything and run :func:`train`; missing data exits with status 1.

    Every parameter of :func:`train` is the option of the same name (``--batch-size`` is
    ``batch_size``).
    """
    args = parse_args(argv)
    say("Loading torch, Lightning and torchvision ...")
    import pytorch_lightning as pl

    from .data import DataNotFoundError

    pl.seed_everything(args.seed, verbose=False)
    options = {name: getattr(args, name) for name in TRAIN_OPTIONS}
    try:
        return train(**options)
    except DataNotFoundError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
