"""Precision@k: the mean label of the k nearest candidates."""

import warnings
from numbers import Integral
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.blocks import Block, BlockReducer, matrix_blocks, reduce_blocks
from quaterion.eval import _dense
from quaterion.eval._ranking import first_k_label_sum
from quaterion.eval.pair.pair_metric import PairMetric, check_reduce_func


def retrieval_precision(
    distance_matrix: Tensor, labels: Tensor, k: int, *, block_size: Optional[int] = None
) -> Tensor:
    """Per-query precision@k: ``P_i = (1/k) * sum_{j in TopK_i} L[i, j]``.

    ``TopK_i`` are the ``k`` smallest distances of row ``i``; ties at the cut are taken in
    column order (as a stable sort would), so the result does not depend on ``block_size``.

    Args:
        distance_matrix: float ``(n, M)``, self-pairs already ranked last.
        labels: ``(n, M)`` relevance values (pair scores).
        k: ``1 <= k <= M``.
        block_size: query rows per block (memory O(block x M)); default from a byte budget.

    Returns:
        float32 ``(n,)``.

    Example:
        >>> d = torch.tensor([[9., 1., 2.], [1., 9., 3.]])
        >>> retrieval_precision(d, torch.tensor([[0., 1., 0.], [0., 0., 1.]]), k=2)
        tensor([0.5000, 0.5000])
    """
    return reduce_blocks(PrecisionReducer(k), matrix_blocks(distance_matrix, labels, block_size))


class PrecisionReducer(BlockReducer):
    """Per-row precision@k of row blocks, concatenated (float32 ``(n,)``), then
    ``reduce_func`` (if given)."""

    def __init__(self, k: int, reduce_func: Optional[Callable[[Tensor], Tensor]] = None):
        _check_k(k)
        self.k, self.reduce_func, self.parts = k, reduce_func, []

    def update(self, block: Block) -> None:
        b, m = block.dist.shape
        _check_k_fits(self.k, m)
        top = torch.full((b,), self.k, dtype=torch.int64, device=block.dist.device)
        found = first_k_label_sum(block.dist, block.rows, block.cols, block.vals, top)
        self.parts.append((found / self.k).float())

    def compute(self) -> Tensor:
        values = torch.cat(self.parts) if self.parts else torch.zeros(0)
        return values if self.reduce_func is None else self.reduce_func(values)


def _check_k_fits(k: int, num_candidates: int) -> None:
    if k > num_candidates:
        raise ValueError(
            f"k={k} is larger than the number of candidates per query ({num_candidates}); use "
            f"k <= {num_candidates} or evaluate more items."
        )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise TypeError(f"k must be an int, got {type(k).__name__} ({k!r}).")
    if k < 1:
        raise ValueError(f"k must be greater than 0, got k={k}; pass k >= 1.")


class RetrievalPrecision(PairMetric):
    """Precision@k over pairs (see :func:`retrieval_precision`).

    Args:
        k: number of nearest candidates read per query, ``>= 1``.
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
        reduce_func: applied to the per-query vector (``torch.mean`` -> 0-dim); ``None``
            returns the vector.
    """

    def __init__(
        self,
        k: int = 1,
        distance_metric_name: Union[Distance, str] = Distance.COSINE,
        reduce_func: Optional[Callable[[Tensor], Tensor]] = torch.mean,
    ):
        super().__init__(distance_metric_name=distance_metric_name)
        _check_k(k)
        self.k = int(k)
        check_reduce_func(reduce_func)
        self.reduce_func = reduce_func

    def raw_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """Precision@k of ``(n, M)`` matrices, reduced by ``reduce_func``."""
        return reduce_blocks(
            PrecisionReducer(self.k, self.reduce_func), matrix_blocks(distance_matrix, labels)
        )

    def block_reducer(self) -> PrecisionReducer:
        """A fresh reducer of row blocks into this metric's value."""
        return PrecisionReducer(self.k, self.reduce_func)

    def dense_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """:meth:`raw_compute` with fixed shapes (no host sync), for one batch.

        A batch with fewer than ``k`` candidates (the short last batch of an epoch) gives NaN
        with a warning instead of ``raw_compute``'s ``ValueError``: the training loop logs it
        as an undefined batch, left out of the epoch value, rather than stopping the fit.
        """
        n, m = distance_matrix.shape
        if self.k > m:
            warnings.warn(
                f"RetrievalPrecision(k={self.k}) is undefined on a batch of fewer than "
                f"{self.k} objects; such batches are left out of the logged epoch value. Use "
                "batches of at least k objects (or drop_last=True) to log every batch.",
                stacklevel=2,
            )
            values = torch.full((n,), float("nan"), device=distance_matrix.device)
            return values if self.reduce_func is None else self.reduce_func(values)
        k = torch.full((n,), self.k, dtype=torch.int64, device=distance_matrix.device)
        found = _dense.first_k_label_sum(_dense.stable_order(distance_matrix), labels, k)
        values = (found / self.k).float()
        return values if self.reduce_func is None else self.reduce_func(values)
