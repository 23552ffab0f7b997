"""Boolean masks over groups and masked reductions used by the group losses."""

from typing import Optional

import torch
from torch import Tensor


def get_triplet_mask(labels: Tensor) -> Tensor:
    """Valid-triplet mask ``bool (B, B, B)`` on ``labels.device``.

    ``m[i, j, k] = i != j and i != k and j != k and labels[i] == labels[j]
    and labels[i] != labels[k]``. Memory is ``B^3``: losses use it on anchor chunks only.

    Args:
        labels: ``(B,)`` group ids.
    """
    n = labels.shape[0]
    not_eye = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    distinct = not_eye[:, :, None] & not_eye[:, None, :] & not_eye[None, :, :]
    same = labels[:, None] == labels[None, :]
    valid_labels = same[:, :, None] & ~same[:, None, :]
    return distinct & valid_labels


def get_anchor_positive_mask(labels_a: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Same-group mask ``bool (A, B)``: ``m[i, j] = labels_a[i] == labels_b[j]``.

    ``labels_b=None`` means ``labels_a``. If ``torch.equal(labels_a, labels_b)`` (same
    shape and values) the diagonal is set to ``False``: an object is not its own positive.
    """
    labels_b = labels_a if labels_b is None else labels_b
    mask = labels_a[:, None] == labels_b[None, :]
    if torch.equal(labels_a, labels_b):
        mask.fill_diagonal_(False)
    return mask


def get_anchor_negative_mask(labels_a: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Different-group mask ``bool (A, B)``: ``m[i, j] = labels_a[i] != labels_b[j]``."""
    labels_b = labels_a if labels_b is None else labels_b
    return labels_a[:, None] != labels_b[None, :]


def get_masked_maximum(dists: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Maximum of ``dists`` over ``dim`` restricted to ``mask`` (``dim`` kept as size 1).

    ``mn = min(dists, dim)``; returns ``max((dists - mn) * mask, dim) + mn``; rows with an
    empty mask give ``mn``.
    """
    mn = dists.min(dim=dim, keepdim=True).values
    return ((dists - mn) * mask).max(dim=dim, keepdim=True).values + mn


def get_masked_minimum(dists: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Minimum of ``dists`` over ``dim`` restricted to ``mask`` (``dim`` kept as size 1).

    ``mx = max(dists, dim)``; returns ``min((dists - mx) * mask, dim) + mx``; rows with an
    empty mask give ``mx``.
    """
    mx = dists.max(dim=dim, keepdim=True).values
    return ((dists - mx) * mask).min(dim=dim, keepdim=True).values + mx
