"""Cosine distance."""

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
from quaterion.utils.utils import l2_norm


class Cosine(BaseDistance):
    """Cosine similarity and distance.

    The row-wise and matrix forms use different scales (kept from upstream):
    ``similarity = cos`` in ``[-1, 1]``, ``distance = 1 - cos`` in ``[0, 2]``, while
    ``similarity_matrix = (cos + 1) / 2`` in ``[0, 1]`` and
    ``distance_matrix = (1 - cos) / 2`` in ``[0, 1]``.
    """

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """``cos(x_i, y_i)`` (eps ``1e-8``): ``(B, d), (B, d) -> (B,)`` in ``[-1, 1]``.

        float16 is computed in float32 (returned in float16): ``1e-8`` rounds to 0 in float16,
        where a zero row would give ``0 / 0``."""
        check_rowwise("Cosine.similarity", x, y)
        if x.dtype == torch.float16 and y.dtype == torch.float16:
            return torch.cosine_similarity(x.float(), y.float(), dim=1, eps=1e-8).half()
        return torch.cosine_similarity(x, y, dim=1, eps=1e-8)

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """``1 - cos(x_i, y_i)``: ``(B, d), (B, d) -> (B,)`` in ``[0, 2]``."""
        check_rowwise("Cosine.distance", x, y)
        return 1 - Cosine.similarity(x, y)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``(x̂ ŷᵀ + 1) / 2`` with rows L2-normalised: ``(B1, B2)`` in ``[0, 1]``."""
        check_matrix("Cosine.similarity_matrix", x, y)
        x_norm = l2_norm(x, dim=1)
        y_norm = x_norm if y is None else l2_norm(y, dim=1)
        return (x_norm @ y_norm.T + 1) / 2

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``1 - similarity_matrix = (1 - cos) / 2``: ``(B1, B2)`` in ``[0, 1]``."""
        check_matrix("Cosine.distance_matrix", x, y)
        x_norm = l2_norm(x, dim=1)
        y_norm = x_norm if y is None else l2_norm(y, dim=1)
        return _normalized_distance(x_norm, y_norm)

    @classmethod
    def distance_matrix_blocks(cls, x: Tensor, y: Tensor, block_rows: int) -> Iterator[Tensor]:
        """Row blocks of :meth:`distance_matrix` (no autograd): ``y`` normalised once, one
        reused buffer."""
        check_matrix("Cosine.distance_matrix_blocks", x, y)
        check_block_rows(block_rows)
        x_norm = l2_norm(x.detach(), dim=1)
        y_norm = l2_norm(y.detach(), dim=1)
        buffer = None
        for start in range(0, x.shape[0], block_rows):
            part = x_norm[start : start + block_rows]
            # the last, shorter block is written into the buffer's first rows: one allocation
            out = None if buffer is None else buffer[: part.shape[0]]
            block = _distance_in_place(torch.matmul(part, y_norm.T, out=out))
            buffer = block if buffer is None else buffer
            yield block


# Bytes of the row chunks the blocked transform works on: small enough that its second pass
# reads the first's output from the CPU's cache rather than from memory.
_TRANSFORM_BYTES = 4 * 2**20


def _distance_in_place(product: Tensor) -> Tensor:
    """``1 - (product + 1) / 2`` in place (no autograd), bit for bit as
    :func:`_normalized_distance`, in two passes per cache-sized chunk of rows.

    ``1 + (-0.5) * t`` rounds once, like ``1 - t / 2``: the halving is exact.
    """
    one = torch.ones((), dtype=product.dtype, device=product.device)
    row_bytes = max(1, product.shape[1] * product.element_size())
    for chunk in product.split(max(1, _TRANSFORM_BYTES // row_bytes)):
        torch.add(one, chunk.add_(1), alpha=-0.5, out=chunk)
    return product


def _normalized_distance(x_norm: Tensor, y_norm: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``1 - (x̂ ŷᵀ + 1) / 2`` in place on the product (written into ``out`` if given).

    ``-0.5 * v + 1`` equals ``1 - v / 2`` bit for bit (halving is exact).
    """
    return torch.matmul(x_norm, y_norm.T, out=out).add_(1).mul_(-0.5).add_(1)
