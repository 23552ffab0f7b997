"""Base class of metrics over group labels."""

import torch
from torch import Tensor

from quaterion.eval.blocks import Problem, check_embeddings, reduce_blocks
from quaterion.eval._relevance import group_relevance
from quaterion.eval.accumulators import GroupAccumulator
from quaterion.eval.base_metric import AccumulatingMetric, stores_batches


class GroupMetric(AccumulatingMetric):
    """Metric over ``groups: int64 (N,)``: items of one group are relevant to each other.

    Needs ``SimilarityGroupSample`` data (``GroupSimilarityDataLoader``, ``GroupSampler``).

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    accumulator_class = GroupAccumulator
    update = stores_batches(GroupAccumulator.update)

    @staticmethod
    def prepare_labels(groups: Tensor) -> Tensor:
        """bool ``(N, N)``: ``L[i, j] = groups[i] == groups[j]`` for ``i != j``, diagonal False."""
        labels = groups[:, None] == groups[None, :]
        return labels.fill_diagonal_(False)

    def step_labels(self, num_items: int, groups: Tensor) -> Tensor:
        """:meth:`prepare_labels` after a shape check of ``groups`` (no value read)."""
        return self.prepare_labels(_check_groups(groups, num_items))

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


def _check_groups(groups: Tensor, size: int) -> Tensor:
    if not isinstance(groups, Tensor):
        raise TypeError(f"groups must be a torch.Tensor of ints, got {type(groups).__name__}.")
    if groups.is_floating_point() or groups.is_complex():
        raise TypeError(
            f"groups must be an integer tensor of group ids, got {groups.dtype}: float ids "
            "are compared exactly and a NaN id matches nothing. Pass groups.long() of whole "
            "numbers."
        )
    groups = groups.reshape(-1)
    if groups.numel() != size:
        raise ValueError(f"groups must hold one id per embedding ({size}), got {groups.numel()}.")
    return groups
