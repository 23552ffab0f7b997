"""Dot-product similarity; its "distance" is the negated similarity."""

from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import (
    BaseDistance,
    check_block_rows,
    check_matrix,
    check_rowwise,
)


class DotProduct(BaseDistance):
    """Dot product ``<x, y>``; distance is ``-<x, y>`` (negative values are intended)."""

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """``sum_k x_ik y_ik``: ``(B, d), (B, d) -> (B,)``."""
        check_rowwise("DotProduct.similarity", x, y)
        return torch.sum(x * y, dim=1)

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """``-sum_k x_ik y_ik``: ``(B, d), (B, d) -> (B,)``."""
        check_rowwise("DotProduct.distance", x, y)
        return -DotProduct.similarity(x, y)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``x yᵀ``: ``(B1, d), (B2, d) -> (B1, B2)``."""
        check_matrix("DotProduct.similarity_matrix", x, y)
        return x @ (x if y is None else y).T

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``-x yᵀ``, computed as ``(-x) yᵀ`` (the same values exactly)."""
        check_matrix("DotProduct.distance_matrix", x, y)
        return -x @ (x if y is None else y).T

    @classmethod
    def distance_matrix_blocks(cls, x: Tensor, y: Tensor, block_rows: int) -> Iterator[Tensor]:
        """Row blocks of :meth:`distance_matrix` (no autograd), in one reused buffer."""
        check_matrix("DotProduct.distance_matrix_blocks", x, y)
        check_block_rows(block_rows)
        negated, buffer, y = -x.detach(), None, y.detach()
        for start in range(0, x.shape[0], block_rows):
            part = negated[start : start + block_rows]
            # the last, shorter block is written into the buffer's first rows: one allocation
            out = None if buffer is None else buffer[: part.shape[0]]
            block = torch.matmul(part, y.T, out=out)
            buffer = block if buffer is None else buffer
            yield block
