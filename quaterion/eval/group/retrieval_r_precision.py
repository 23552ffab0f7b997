"""R-precision: of the R items relevant to a query, how many rank in its first R."""

from typing import Optional

import torch
from torch import Tensor

from quaterion.eval.blocks import Block, BlockReducer, matrix_blocks, reduce_blocks
from quaterion.eval import _dense
from quaterion.eval._ranking import first_k_label_sum
from quaterion.eval.group.group_metric import GroupMetric


def retrieval_r_precision(
    distance_matrix: Tensor, labels: Tensor, *, block_size: Optional[int] = None
) -> Tensor:
    """Micro-averaged R-precision over ready-made matrices.

    ``R_i = sum_j L[i, j]`` (``K_i = min(ceil(R_i), M)`` positions are read),
    ``r_i = sum_{rank < K_i} L[i, pi_i(rank)]``, value ``= sum_i r_i / sum_i K_i``: queries
    weigh by their number of relevant items; rows with none add nothing; NaN if no row has any.
    Ranks follow ascending distance, ties by column index (a stable sort).

    Args:
        distance_matrix: float ``(n, M)``, self-pairs already ranked last.
        labels: ``(n, M)``, nonzero = relevant.
        block_size: query rows per block (memory O(block x M)); default from a byte budget.

    Returns:
        0-dim float32.

    Example:
        >>> d = torch.tensor([[9., 1., 2.], [1., 9., 3.]])
        >>> retrieval_r_precision(d, torch.tensor([[0., 1., 0.], [0., 0., 1.]]))
        tensor(0.5000)
    """
    return reduce_blocks(RPrecisionReducer(), matrix_blocks(distance_matrix, labels, block_size))


class RPrecisionReducer(BlockReducer):
    """``sum r_i / sum K_i`` accumulated over row blocks (float64 sums, float32 result)."""

    def __init__(self):
        self.hits = torch.zeros((), dtype=torch.float64)
        self.positions = torch.zeros((), dtype=torch.float64)

    def update(self, block: Block) -> None:
        b, m = block.dist.shape
        relevant = torch.zeros(b, dtype=torch.float64, device=block.dist.device)
        relevant.index_add_(0, block.rows, block.vals.to(torch.float64))
        k = torch.ceil(relevant).clamp(0, m).to(torch.int64)
        found = first_k_label_sum(block.dist, block.rows, block.cols, block.vals, k)
        self.hits = self.hits.to(found.device) + found.sum()
        self.positions = self.positions.to(found.device) + k.sum()

    def compute(self) -> Tensor:
        return (self.hits / self.positions).to(torch.float32)


class RetrievalRPrecision(GroupMetric):
    """R-precision (micro-average, see :func:`retrieval_r_precision`) over groups.

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    def raw_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """0-dim float32 R-precision of ``(n, M)`` matrices."""
        return retrieval_r_precision(distance_matrix, labels)

    def block_reducer(self) -> RPrecisionReducer:
        """A fresh reducer of row blocks into this metric's value."""
        return RPrecisionReducer()

    def dense_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """:meth:`raw_compute` with fixed shapes (no host sync), for one batch."""
        relevant = labels.to(torch.float64).sum(1)
        k = torch.ceil(relevant).clamp(0, distance_matrix.shape[1]).to(torch.int64)
        order = _dense.stable_order(distance_matrix)
        found = _dense.first_k_label_sum(order, labels, k)
        return (found.sum() / k.sum()).to(torch.float32)
