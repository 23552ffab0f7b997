"""Euclidean (L2) distance."""

from typing import Optional

from torch import Tensor

from quaterion.distances.base_distance import LpDistance, cdist, check_matrix


class Euclidean(LpDistance):
    """L2 distance; similarity is ``1 / (1 + distance)`` in ``(0, 1]``."""

    p = 2

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``D_ij = ||x_i - y_j||_2`` via ``torch.cdist``: ``(B1, B2)``."""
        check_matrix("Euclidean.distance_matrix", x, y)
        return cdist(x, x if y is None else y, p=2)
