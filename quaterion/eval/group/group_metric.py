"""Base class of metrics over group labels."""

from typing import Optional, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.blocks import Problem, check_embeddings, reduce_blocks
from quaterion.eval._relevance import group_relevance
from quaterion.eval.accumulators import GroupAccumulator
from quaterion.eval.base_metric import BaseMetric


class GroupMetric(BaseMetric):
    """Metric over ``groups: int64 (N,)``: items of one group are relevant to each other.

    Needs ``SimilarityGroupSample`` data (``GroupSimilarityDataLoader``, ``GroupSampler``).

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    def __init__(self, distance_metric_name: Union[Distance, str] = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)
        self.accumulator = GroupAccumulator()

    def update(
        self, embeddings: Tensor, groups: Tensor, device: Optional[torch.device] = None
    ) -> None:
        """Store a batch (detached, moved to ``device``) for :meth:`evaluate`."""
        self.accumulator.update(embeddings, groups, device)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.accumulator.reset()

    @staticmethod
    def prepare_labels(groups: Tensor) -> Tensor:
        """bool ``(N, N)``: ``L[i, j] = groups[i] == groups[j]`` for ``i != j``, diagonal False."""
        labels = groups[:, None] == groups[None, :]
        return labels.fill_diagonal_(False)

    def compute(self, embeddings: Tensor, groups: Tensor) -> Tensor:
        """The metric of one batch: every item queries all the others.

        Args:
            embeddings: float ``(N, d)``; groups: int ``(N,)``.
        """
        reducer = self.block_reducer()
        if reducer is None:
            return self.raw_compute(*reversed(self.precompute(embeddings, groups=groups)))
        check_embeddings(embeddings)
        groups = _check_groups(groups, embeddings.shape[0]).to(embeddings.device)
        own = torch.arange(embeddings.shape[0], device=embeddings.device)
        problem = Problem(embeddings, embeddings, group_relevance(groups, groups, own), own)
        return reduce_blocks(reducer, problem.blocks(self.distance))

    def evaluate(self) -> Tensor:
        """The metric over everything accumulated."""
        if self.accumulator.embeddings.numel() == 0:
            raise ValueError(
                "Nothing accumulated: call update(embeddings, groups) before evaluate()."
            )
        return self.compute(**self.accumulator.state)


def _check_groups(groups: Tensor, size: int) -> Tensor:
    if not isinstance(groups, Tensor):
        raise TypeError(f"groups must be a torch.Tensor of ints, got {type(groups).__name__}.")
    groups = groups.reshape(-1)
    if groups.numel() != size:
        raise ValueError(f"groups must hold one id per embedding ({size}), got {groups.numel()}.")
    return groups
