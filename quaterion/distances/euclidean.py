"""Euclidean (L2) distance."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import BaseDistance


class Euclidean(BaseDistance):
    """L2 distance; similarity is ``1 / (1 + distance)`` in ``(0, 1]``."""

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """``||x_i - y_i + 1e-6||_2`` (torch's pairwise eps): ``(B, d), (B, d) -> (B,)``."""
        return torch.pairwise_distance(x, y, p=2)

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """``1 / (1 + distance)``: ``(B, d), (B, d) -> (B,)``."""
        return 1 / (1 + Euclidean.distance(x, y))

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``D_ij = ||x_i - y_j||_2`` via ``torch.cdist``: ``(B1, B2)``."""
        return torch.cdist(x, x if y is None else y, p=2)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``1 / (1 + distance_matrix)``: ``(B1, B2)``."""
        return 1 / (1 + Euclidean.distance_matrix(x, y))
