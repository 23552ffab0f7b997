"""Offline-first resolution of torchvision ImageNet weights, shared by the image examples.

``--weights pretrained`` uses the checkpoint already in the torch hub cache
(``<torch.hub.get_dir()>/checkpoints/<basename of weights.url>``); if it is not there the
download is tried once, and if that fails the backbone stays randomly initialised. Every
random outcome prints :data:`RANDOM_NOTICE` so nobody mistakes its metrics for real ones.
"""

import os
import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    import torchvision

WEIGHTS_CHOICES = ("pretrained", "random")

RANDOM_NOTICE = (
    "NOTICE: the {arch} backbone is randomly initialised ({reason}). "
    "Its embeddings and metrics say nothing about the quality of the real pretrained model."
)


def cached_weights_path(weights: "torchvision.models.WeightsEnum") -> str:
    """Path where ``torch.hub`` keeps (or would keep) the checkpoint of ``weights``."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def print_random_notice(arch: str, reason: str) -> None:
    """Print the randomly-initialised-backbone notice to stderr."""
    print(RANDOM_NOTICE.format(arch=arch, reason=reason), file=sys.stderr, flush=True)


def resolve_weights(arch: str, choice: str) -> Optional["torchvision.models.WeightsEnum"]:
    """Map ``--weights`` to a torchvision weights enum member, or ``None`` for random weights.

    Args:
        arch: torchvision model builder name, e.g. ``"resnet152"``.
        choice: ``"pretrained"`` (``IMAGENET1K_V1``, what ``pretrained=True`` meant) or ``"random"``.

    Returns:
        The weights member when its checkpoint is available locally (possibly after a
        successful download), else ``None``; ``None`` always comes with a printed notice.
    """
    if choice not in WEIGHTS_CHOICES:
        raise ValueError(
            f"weights must be one of {WEIGHTS_CHOICES}, got {choice!r}; "
            "pass --weights pretrained or --weights random"
        )
    if choice == "random":
        print_random_notice(arch, "--weights random")
        return None
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    if os.path.isfile(cached_weights_path(weights)):
        return weights
    try:
        torch.hub.load_state_dict_from_url(
            weights.url, progress=True, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError, ValueError) as exc:
        print_random_notice(
            arch,
            f"pretrained weights not found at {cached_weights_path(weights)} and the download "
            f"failed: {exc}",
        )
        return None
    return weights
