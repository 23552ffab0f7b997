"""Reciprocal rank of every relevant (query, item) incidence."""

from typing import Callable, Optional, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.blocks import Block, BlockReducer, matrix_blocks, reduce_blocks
from quaterion.eval import _dense
from quaterion.eval._ranking import Workspace
from quaterion.eval._ranking import incidence_ranks
from quaterion.eval.pair.pair_metric import PairMetric, check_reduce_func


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
    return reduce_blocks(
        ReciprocalRankReducer(), matrix_blocks(distance_matrix, labels, block_size)
    )


class ReciprocalRankReducer(BlockReducer):
    """Reciprocal ranks of row blocks, concatenated (float32), then ``reduce_func``."""

    def __init__(self, reduce_func: Optional[Callable[[Tensor], Tensor]] = None):
        self.reduce_func, self.parts, self.workspace = reduce_func, [], Workspace()

    def update(self, block: Block) -> None:
        ranks = incidence_ranks(block.dist, block.rows, block.cols, self.workspace)
        order = torch.argsort(block.rows * block.dist.shape[1] + ranks)
        self.parts.append(1.0 / (ranks[order] + 1).to(torch.float32))

    def compute(self) -> Tensor:
        values = torch.cat(self.parts) if self.parts else torch.zeros(0)
        return values if self.reduce_func is None else self.reduce_func(values)


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
        check_reduce_func(reduce_func)
        self.reduce_func = reduce_func

    def raw_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """Reciprocal ranks of ``(n, M)`` matrices, reduced by ``reduce_func``."""
        return reduce_blocks(
            ReciprocalRankReducer(self.reduce_func), matrix_blocks(distance_matrix, labels)
        )

    def block_reducer(self) -> ReciprocalRankReducer:
        """A fresh reducer of row blocks into this metric's value."""
        return ReciprocalRankReducer(self.reduce_func)

    def dense_compute(self, distance_matrix: Tensor, labels: Tensor) -> Optional[Tensor]:
        """The mean reciprocal rank with fixed shapes (no host sync), for one batch.

        ``None`` unless ``reduce_func`` is ``torch.mean``: any other reduction needs the
        vector of incidences, whose length depends on the labels.
        """
        if self.reduce_func is not torch.mean:
            return None
        ranks = _dense.column_ranks(_dense.stable_order(distance_matrix))
        relevant = labels != 0
        reciprocal = torch.where(relevant, 1.0 / (ranks + 1).to(torch.float32), 0.0)
        return (reciprocal.to(torch.float64).sum() / relevant.sum()).to(torch.float32)
