"""Base class of every distance: row-wise, matrix and row-block forms."""

import numbers
from collections.abc import Iterator
from typing import ClassVar, Optional

import torch
from torch import Tensor


class BaseDistance:
    """Interface of a distance; every method is called on the class (never an instance).

    Row-wise forms take two row-aligned ``float (B, d)`` tensors and return ``float (B,)``.
    Matrix forms take ``x: float (B1, d)`` and ``y: float (B2, d)`` (``y=None`` means
    ``y = x``) and return ``float (B1, B2)``. Distances: lower means more similar;
    similarities: higher means more similar.
    """

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        """Row-wise distance between ``x[i]`` and ``y[i]``: ``(B, d), (B, d) -> (B,)``."""
        raise NotImplementedError

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        """Row-wise similarity between ``x[i]`` and ``y[i]``: ``(B, d), (B, d) -> (B,)``."""
        raise NotImplementedError

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """All-pairs distances: ``(B1, d), (B2, d) -> (B1, B2)``; ``y=None`` means ``x``."""
        raise NotImplementedError

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """All-pairs similarities: ``(B1, d), (B2, d) -> (B1, B2)``; ``y=None`` means ``x``."""
        raise NotImplementedError

    @classmethod
    def distance_matrix_blocks(cls, x: Tensor, y: Tensor, block_rows: int) -> Iterator[Tensor]:
        """Rows of ``distance_matrix(x, y)``, ``block_rows`` at a time; each block equals
        ``distance_matrix(x[block], y)`` up to rounding (BLAS may round a matmul over a row
        view of a larger tensor differently from one over a copy, in the last bits).

        Memory is O(``block_rows`` x ``len(y)``). Distances may prepare ``y`` once and write
        every block into one reused buffer: consume a block before asking for the next.
        """
        check_block_rows(block_rows)
        for start in range(0, x.shape[0], block_rows):
            yield cls.distance_matrix(x[start : start + block_rows], y)


def check_rowwise(where: str, x: Tensor, y: Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` and ``y`` are ``(B, d)`` of one width, row-aligned
    (a single row of either one is broadcast, as torch does)."""
    rows = (x.shape[0], y.shape[0]) if x.dim() == 2 and y.dim() == 2 else None
    if rows is None or x.shape[1] != y.shape[1] or (rows[0] != rows[1] and 1 not in rows):
        raise ValueError(
            f"{where}: x has shape {tuple(x.shape)} and y {tuple(y.shape)}; the row-wise form "
            "compares row i of x with row i of y: pass two (B, d) tensors of the same width d "
            "and the same number of rows (or a single row for one of them)"
        )


def check_matrix(where: str, x: Tensor, y: Optional[Tensor]) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B1, d)`` and ``y`` ``(B2, d)`` (or ``None``)."""
    if x.dim() != 2 or (y is not None and (y.dim() != 2 or y.shape[1] != x.shape[1])):
        shape_y = "None" if y is None else tuple(y.shape)
        raise ValueError(
            f"{where}: x has shape {tuple(x.shape)} and y {shape_y}; the matrix form "
            "compares every row of x with every row of y: pass x (B1, d) and y (B2, d) of the "
            "same width d (y=None compares x with itself)"
        )


def check_block_rows(block_rows: int) -> None:
    """Raise unless ``block_rows`` (of ``distance_matrix_blocks``) is a positive int."""
    if isinstance(block_rows, bool) or not isinstance(block_rows, numbers.Integral):
        raise TypeError(
            "distance_matrix_blocks: block_rows must be a positive int, got "
            f"{type(block_rows).__name__} {block_rows!r}"
        )
    if block_rows < 1:
        raise ValueError(
            f"distance_matrix_blocks: block_rows must be a positive int, got {block_rows}; "
            "pass the number of rows of x per block"
        )


def cdist(x: Tensor, y: Tensor, p: float) -> Tensor:
    """``torch.cdist(x, y, p)``, also for float16/bfloat16 CPU tensors (torch has no CPU
    kernel for them): those are computed in float32 and returned in their own dtype."""
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return torch.cdist(x.float(), y.float(), p=p).to(x.dtype)
    return torch.cdist(x, y, p=p)


class LpDistance(BaseDistance):
    """Shell of the ``L_p`` distances (``Euclidean``, ``Manhattan``).

    Row-wise distance ``torch.pairwise_distance(x, y, p)`` (torch adds ``1e-6`` to the
    difference); similarities are ``1 / (1 + distance)`` in ``(0, 1]``. Subclasses set ``p``
    and implement ``distance_matrix``.
    """

    p: ClassVar[float]

    @classmethod
    def distance(cls, x: Tensor, y: Tensor) -> Tensor:
        """``||x_i - y_i + 1e-6||_p``: ``(B, d), (B, d) -> (B,)``."""
        check_rowwise(f"{cls.__name__}.distance", x, y)
        return torch.pairwise_distance(x, y, p=cls.p)

    @classmethod
    def similarity(cls, x: Tensor, y: Tensor) -> Tensor:
        """``1 / (1 + distance)``: ``(B, d), (B, d) -> (B,)``."""
        check_rowwise(f"{cls.__name__}.similarity", x, y)
        return 1 / (1 + cls.distance(x, y))

    @classmethod
    def similarity_matrix(cls, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``1 / (1 + distance_matrix)``: ``(B1, B2)``."""
        check_matrix(f"{cls.__name__}.similarity_matrix", x, y)
        return 1 / (1 + cls.distance_matrix(x, y))
