"""Reciprocal rank of every relevant (query, item) incidence."""

from collections.abc import Iterable
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval._blocks import Block, matrix_blocks
from quaterion.eval._counting import Workspace
from quaterion.eval._ranking import incidence_ranks
from quaterion.eval.pair.pair_metric import PairMetric


def retrieval_reciprocal_rank(
    distance_matrix: Tensor, labels: Tensor, *, block_size: Optional[int] = None
) -> Tensor:
    """``1 / rank`` for every nonzero label, row by row in rank order.

    One value per relevant ``(query, item)`` incidence: a row with one relevant item (the
    pair case) gives its reciprocal rank, a row with several gives several values, a row
    with none gives nothing. Ranks are 1-based, ascending distance, ties by column index.

    Args:
        distance_matrix: float ``(n, M)``, self-pairs already ranked last.
        labels: ``(n, M)``, nonzero = relevant.
        block_size: query rows per block (memory O(block x M)); default from a byte budget.

    Returns:
        float32 ``(num_incidences,)``.

    Example:
        >>> d = torch.tensor([[9., 1., 2.], [1., 9., 3.]])
        >>> retrieval_reciprocal_rank(d, torch.tensor([[0., 1., 0.], [0., 0., 1.]]))
        tensor([1.0000, 0.5000])
    """
    return reciprocal_rank_from_blocks(matrix_blocks(distance_matrix, labels, block_size))


def reciprocal_rank_from_blocks(blocks: Iterable[Block]) -> Tensor:
    """Concatenated reciprocal ranks of a stream of row blocks (float32)."""
    parts, workspace = [], Workspace()
    for block in blocks:
        ranks = incidence_ranks(block.dist, block.rows, block.cols, workspace)
        order = torch.argsort(block.rows * block.dist.shape[1] + ranks)
        parts.append(1.0 / (ranks[order] + 1).to(torch.float32))
    return torch.cat(parts) if parts else torch.zeros(0)


class RetrievalReciprocalRank(PairMetric):
    """Reciprocal rank over pairs (see :func:`retrieval_reciprocal_rank`).

    Equals classic MRR when every query has exactly one relevant item.

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
        reduce_func: applied to the incidence vector (``torch.mean`` -> 0-dim); ``None``
            returns the vector.
    """

    def __init__(
        self,
        distance_metric_name: Union[Distance, str] = Distance.COSINE,
        reduce_func: Optional[Callable[[Tensor], Tensor]] = torch.mean,
    ):
        super().__init__(distance_metric_name=distance_metric_name)
        self.reduce_func = reduce_func

    def raw_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """Reciprocal ranks of ``(n, M)`` matrices, reduced by ``reduce_func``."""
        return self._reduce(matrix_blocks(distance_matrix, labels))

    def _reduce(self, blocks: Iterable[Block]) -> Tensor:
        values = reciprocal_rank_from_blocks(blocks)
        return values if self.reduce_func is None else self.reduce_func(values)
