"""Manhattan (L1) distance."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import LpDistance, cdist, check_matrix

# Rows of ``x`` per cdist call are chosen so that rows x B2 x d stays below this: torch's
# CUDA backward of cdist (p != 2) allocates a (B2, rows, d) buffer.
_MAX_CHUNK_ELEMENTS = 2**24


def manhattan_distance_matrix(
    x: Tensor, y: Optional[Tensor] = None, chunk_size: Optional[int] = None
) -> Tensor:
    """``D_ij = sum_k |x_ik - y_jk|`` computed over row chunks of ``x``.

    Args:
        x: float ``(B1, d)``.
        y: float ``(B2, d)``; ``None`` means ``x``.
        chunk_size: rows of ``x`` per ``torch.cdist(p=1)`` call; ``None`` picks the largest
            with ``chunk_size * B2 * d <= 2**24`` (bounds the backward pass's buffer).

    Returns:
        float ``(B1, B2)``; no ``B1 x B2 x d`` tensor is built.
    """
    y = x if y is None else y
    if chunk_size is None:
        chunk_size = max(1, _MAX_CHUNK_ELEMENTS // max(1, y.shape[0] * x.shape[1]))
    if chunk_size >= x.shape[0]:
        return cdist(x, y, p=1)
    return torch.cat([cdist(chunk, y, p=1) for chunk in x.split(chunk_size)])


class Manhattan(LpDistance):
    """L1 distance; similarity is ``1 / (1 + distance)`` in ``(0, 1]``.

    The matrix form calls ``torch.cdist(p=1)`` on row chunks: memory ``B1 x B2`` plus a
    bounded chunk, never ``B1 x B2 x d`` (forward or backward).
    """

    p = 1

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``D_ij = sum_k |x_ik - y_jk|``: ``(B1, d), (B2, d) -> (B1, B2)``."""
        check_matrix("Manhattan.distance_matrix", x, y)
        return manhattan_distance_matrix(x, y)
