"""Helpers of the losses with a learned classifier (``kernel`` / ``centers``)."""

import torch.nn.functional as F
from torch import Tensor

from quaterion.loss._checks import check_groups


def check_group_ids(owner: str, embeddings: Tensor, groups: Tensor, num_groups: int) -> None:
    """Check that ``groups`` are integer class ids in ``[0, num_groups)``, one per row.

    Raises:
        TypeError: ``embeddings`` is not floating or ``groups`` is not an integer tensor.
        ValueError: shapes do not match ``(B, d)`` / ``(B,)``.
        AssertionError: an id is outside ``[0, num_groups)`` (upstream's error type; needs
            one host sync to read the result).
    """
    check_groups(embeddings, groups)
    if not bool(((groups >= 0) & (groups < num_groups)).all()):
        raise AssertionError(
            f"Invalid group ids for {owner}: every id must be in [0, num_groups={num_groups}), "
            f"got min {int(groups.min())}, max {int(groups.max())}. Remap the group ids or "
            "raise num_groups."
        )


def cosine_logits(embeddings: Tensor, kernel: Tensor) -> Tensor:
    """Cosines between rows of ``embeddings`` and columns of ``kernel``.

    ``c_ij = <Ê_i, Ŵ_j>`` with ``Ê = normalize(E, dim=1)``, ``Ŵ = normalize(W, dim=0)``,
    clamped to ``[-1, 1]``.

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``.

    Returns:
        float ``(B, C)``.
    """
    cos = F.normalize(embeddings, p=2, dim=1) @ F.normalize(kernel, p=2, dim=0)
    return cos.clamp(-1.0, 1.0)


def replace_target_column(logits: Tensor, groups: Tensor, target: Tensor) -> Tensor:
    """Out-of-place copy of ``logits (B, C)`` with ``logits[i, groups[i]] = target[i]``."""
    return logits.scatter(1, groups.unsqueeze(1), target.unsqueeze(1))
