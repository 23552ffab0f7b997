"""Manhattan (L1) distance."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import BaseDistance


class Manhattan(BaseDistance):
    """L1 distance; similarity is ``1 / (1 + distance)`` in ``(0, 1]``.

    The matrix form uses ``torch.cdist(p=1)``: memory ``B1 x B2``, never ``B1 x B2 x d``.
    """

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """``sum_k |x_ik - y_ik + 1e-6|`` (torch's pairwise eps): ``(B, d), (B, d) -> (B,)``."""
        return torch.pairwise_distance(x, y, p=1)

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """``1 / (1 + distance)``: ``(B, d), (B, d) -> (B,)``."""
        return 1 / (1 + Manhattan.distance(x, y))

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``D_ij = sum_k |x_ik - y_jk|``: ``(B1, d), (B2, d) -> (B1, B2)``."""
        return torch.cdist(x, x if y is None else y, p=1)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``1 / (1 + distance_matrix)``: ``(B1, B2)``."""
        return 1 / (1 + Manhattan.distance_matrix(x, y))
