"""Base sampler."""

import random
from collections.abc import Iterator, Sized
from typing import Any, ClassVar, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from quaterion.eval._blocks import Block, check_embeddings, embedding_blocks
from quaterion.eval.base_metric import BaseMetric


class BaseSampler:
    """Encodes a dataset with a model and returns ``(labels, distance_matrix)`` for a random
    subset of query rows against all items.

    Args:
        sample_size: number of query rows; ``-1`` (or any value ``<= 0``) means all.
        device: where embeddings are kept (default: the model's output device).
        log_progress: show a progress bar while encoding.
    """

    #: Metric base class this sampler can feed; checked by :meth:`check_metric`.
    metric_type: ClassVar[type] = BaseMetric

    def __init__(
        self,
        sample_size: int = -1,
        device: Union[torch.device, str, None] = None,
        log_progress: bool = True,
    ):
        if isinstance(sample_size, bool) or not isinstance(sample_size, int):
            raise TypeError(f"sample_size must be an int (-1 for all rows), got {sample_size!r}.")
        self.sample_size = sample_size
        self.device = device
        self.log_progress = log_progress

    def sample(self, dataset: Any, metric: BaseMetric, model: Any) -> Tuple[Tensor, Tensor]:
        """``(labels, distance_matrix)`` of equal shape; ``None`` in the base class."""
        return None

    def reset(self) -> None:
        """Forget accumulated embeddings (no-op in the base class)."""

    def check_metric(self, metric: BaseMetric) -> None:
        """``TypeError`` naming both classes when ``metric`` does not fit this sampler."""
        if not isinstance(metric, self.metric_type):
            raise TypeError(
                f"{type(self).__name__} cannot evaluate {type(metric).__name__}: it needs a "
                f"{self.metric_type.__name__} subclass. Use GroupSampler for group metrics "
                f"(RetrievalRPrecision) and PairSampler for pair metrics (RetrievalPrecision, "
                f"RetrievalReciprocalRank)."
            )

    def _problem(self, dataset: Any, metric: BaseMetric, model: Any) -> Optional["Problem"]:
        """Queries, candidates and relevance of one draw; ``None`` if unsupported."""
        return None

    def _blocks(self, dataset: Any, metric: BaseMetric, model: Any) -> Optional[Iterator[Block]]:
        """Row blocks equal to ``sample``'s matrices (memory O(block x N)).

        ``None`` if the sampler has no blocked form.
        """
        problem = self._problem(dataset, metric, model)
        if problem is None:
            return None
        return embedding_blocks(
            problem.queries,
            problem.candidates,
            metric.distance,
            problem.relevance,
            problem.self_index,
        )


class Problem(NamedTuple):
    """One sampled retrieval problem: ``queries (n, d)`` against ``candidates (M, d)``.

    ``relevance.block(0, n)`` gives the nonzero labels; ``self_index (n,)`` (optional) is each
    query's own column, ranked last.
    """

    queries: Tensor
    candidates: Tensor
    relevance: Any
    self_index: Optional[Tensor]


def dense_sample(problem: Problem, distance: Any) -> Tuple[Tensor, Tensor]:
    """``(labels, distance_matrix)`` of a problem as ``(n, M)`` matrices (the public contract)."""
    n, m = problem.queries.shape[0], problem.candidates.shape[0]
    rows, cols, vals = problem.relevance.block(0, n)
    labels = torch.zeros(n, m, device=problem.queries.device)
    labels[rows, cols] = vals.to(labels.dtype)
    distance_matrix = distance.distance_matrix(problem.queries, problem.candidates)
    if problem.self_index is not None:
        local = torch.arange(n, device=distance_matrix.device)
        distance_matrix[local, problem.self_index] = distance_matrix.max() + 1
    return labels, distance_matrix


def draw_rows(total: int, sample_size: int) -> Tensor:
    """Random query rows: ``random.sample(range(total), k=n)`` with ``n = min(sample_size, total)``,
    or ``total`` when ``sample_size <= 0`` (still a random permutation). Reads Python's
    global ``random``; never reseeds."""
    n = min(sample_size, total) if sample_size > 0 else total
    return torch.LongTensor(random.sample(range(total), k=n))


def check_encoded(embeddings: Tensor, dataset: Any) -> None:
    """A non-empty dataset was encoded into finite rows."""
    if embeddings.numel() == 0:
        size = len(dataset) if isinstance(dataset, Sized) else "no"
        raise ValueError(
            f"dataset is empty ({size} samples were encoded); pass a dataset with at least "
            f"one sample to evaluate."
        )
    check_embeddings(embeddings, "encoded embeddings")
