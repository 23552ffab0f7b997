"""Dot-product similarity; its "distance" is the negated similarity."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import BaseDistance


class DotProduct(BaseDistance):
    """Dot product ``<x, y>``; distance is ``-<x, y>`` (negative values are intended)."""

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """``sum_k x_ik y_ik``: ``(B, d), (B, d) -> (B,)``."""
        return torch.sum(x * y, dim=1)

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """``-sum_k x_ik y_ik``: ``(B, d), (B, d) -> (B,)``."""
        return -DotProduct.similarity(x, y)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``x yᵀ``: ``(B1, d), (B2, d) -> (B1, B2)``."""
        return x @ (x if y is None else y).T

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``-x yᵀ``: ``(B1, d), (B2, d) -> (B1, B2)``."""
        return -DotProduct.similarity_matrix(x, y)
