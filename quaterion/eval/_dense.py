"""Ranking kernels on dense ``(n, M)`` matrices with fixed output shapes (no host sync).

The training step computes attached metrics of one batch here: every tensor's size follows
from the input shapes, never from the data, so a GPU never waits for the host. The order
is the one of the blocked kernels in ``_ranking`` (ascending distance, ties by ascending
column index, i.e. ``torch.sort(dist, dim=1, stable=True)``), so values are equal.
Memory and time are ``O(n M log M)``: meant for batches, not whole datasets.
"""

import torch
from torch import Tensor


def stable_order(dist: Tensor) -> Tensor:
    """int64 ``(n, M)``: column indices of each row in ranking order."""
    return torch.sort(dist, dim=1, stable=True).indices


def first_k_label_sum(order: Tensor, labels: Tensor, k: Tensor) -> Tensor:
    """float64 ``(n,)``: sum of the labels of the first ``k[i]`` ranked columns of row ``i``.

    Args:
        order: from :func:`stable_order`.
        labels: ``(n, M)`` relevance values.
        k: int64 ``(n,)``, ``0 <= k[i] <= M``.
    """
    ranked = labels.gather(1, order).to(torch.float64)
    positions = torch.arange(order.shape[1], device=order.device)
    return (ranked * (positions[None, :] < k[:, None])).sum(1)


def column_ranks(order: Tensor) -> Tensor:
    """int64 ``(n, M)``: 0-based rank of every column within its row."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)
