"""Command-line options shared by the cars scripts (offline switches and data options)."""

import argparse
import os
from typing import Optional

from examples.cli_types import positive_int, random_seed
from .config import (
    ARCH_CHOICES,
    CACHE_DIR,
    DATASET_PATH,
    DEFAULT_ARCH,
    DEFAULT_SEED,
    IMAGE_SIZE,
    SYNTHETIC_IMAGE_SIZE,
)
from examples.weights import WEIGHTS_CHOICES

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

CPU_WARNING = (
    "Real-data defaults (336 px images, ResNet152, 16,185 images) are meant for a GPU: on a "
    "CPU-only machine the cache fill pass alone takes hours. Use a smaller --input-size, a "
    "smaller --arch, or --synthetic for a quick offline run."
)
#: The serving script takes its backbone from the tuned model, so it has no ``--arch``.
CPU_WARNING_SERVING = (
    "Real-data defaults (336 px images, 16,185 images) are meant for a GPU: on a CPU-only "
    "machine encoding the test images with ResNet152 takes a long time. Use a smaller "
    "--input-size (the one the model was trained with), or --synthetic for a quick offline run."
)


def add_data_args(
    parser: argparse.ArgumentParser, input_size_default: Optional[int] = None
) -> None:
    """``--data-dir``, ``--synthetic``, ``--input-size``, ``--seed``."""
    parser.add_argument(
        "--data-dir",
        default=DATASET_PATH,
        help="directory containing stanford_cars/ in torchvision's StanfordCars layout "
        f"(default: {DATASET_PATH})",
    )
    parser.add_argument(
        "--synthetic",
        nargs="?",
        const="easy",
        choices=("easy", "hard"),
        help="use a small generated dataset (196 classes) instead of Stanford Cars; "
        "implies --weights random unless given; no network access. 'hard' (--synthetic hard): "
        "shared colours and every image a random crop and flip of its class's picture",
    )
    parser.add_argument(
        "--input-size",
        type=positive_int,
        default=input_size_default,
        help=f"image side in pixels (default: {IMAGE_SIZE}, or {SYNTHETIC_IMAGE_SIZE} with --synthetic)",
    )
    parser.add_argument(
        "--seed",
        type=random_seed,
        default=DEFAULT_SEED,
        help="seed of the class split and of training",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--arch`` and ``--weights``."""
    parser.add_argument(
        "--arch",
        choices=ARCH_CHOICES,
        default=DEFAULT_ARCH,
        help=f"torchvision ResNet backbone (default: {DEFAULT_ARCH})",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHTS_CHOICES,
        default=None,
        help="ImageNet IMAGENET1K_V1 weights from the torch hub cache, or a random backbone "
        "(default: pretrained, or random with --synthetic)",
    )


def resolve_common_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on ``--synthetic`` (weights, input size)."""
    if getattr(args, "weights", "unset") is None:
        args.weights = "random" if args.synthetic else "pretrained"
    if args.input_size is None:
        args.input_size = SYNTHETIC_IMAGE_SIZE if args.synthetic else IMAGE_SIZE
    if args.input_size < 1:
        raise SystemExit(f"error: --input-size must be a positive integer, got {args.input_size}")
    return args


def default_cache_dir(
    synthetic: bool, input_size: int, arch: str, weights_tag: str, seed: int
) -> str:
    """``./cache_dir`` for the upstream setup (real data, 336 px, pretrained ResNet152);
    ``./cache_dir/<source>_<size>_<arch>_<weights>[_seed<seed>]`` otherwise, so that
    vectors of another dataset, size or backbone are never reused."""
    if (
        not synthetic
        and input_size == IMAGE_SIZE
        and arch == DEFAULT_ARCH
        and weights_tag == "pretrained"
    ):
        return CACHE_DIR
    source = {None: "real", False: "real", "hard": "synthetic-hard"}.get(synthetic, "synthetic")
    name = f"{source}_{input_size}_{arch}_{weights_tag}"
    if weights_tag == "random":
        name += f"_seed{seed}"
    return os.path.join(CACHE_DIR, name)
