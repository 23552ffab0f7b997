"""Base class of metrics over pair labels."""

from typing import Callable, Optional

import torch
from torch import Tensor

from quaterion.eval.blocks import Problem, check_embeddings, reduce_blocks
from quaterion.eval._relevance import CsrRelevance, pair_entries
from quaterion.eval.accumulators import PairAccumulator
from quaterion.eval.base_metric import AccumulatingMetric, stores_batches


class PairMetric(AccumulatingMetric):
    """Metric over pairs: an object is relevant only to its partner, with the pair's score.

    Needs ``SimilarityPairSample`` data (``PairsSimilarityDataLoader``, ``PairSampler``).
    Targets: ``labels: float (P,)`` scores, ``pairs: int64 (P, 2)`` indices into the
    embeddings, ``subgroups: (2P,)`` (accepted, unused).

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    accumulator_class = PairAccumulator
    update = stores_batches(PairAccumulator.update)

    @staticmethod
    def prepare_labels(labels: Tensor, pairs: Tensor, subgroups: Tensor) -> Tensor:
        """float ``(2P, 2P)``: ``L[a, b] = L[b, a] = score`` per pair, 0 elsewhere."""
        num_items = 2 * pairs.shape[0]
        matrix = torch.zeros(num_items, num_items, device=labels.device)
        matrix[pairs[:, 0], pairs[:, 1]] = labels.to(matrix.dtype)
        matrix[pairs[:, 1], pairs[:, 0]] = labels.to(matrix.dtype)
        return matrix

    def step_labels(
        self, num_items: int, labels: Tensor, pairs: Tensor, subgroups: Tensor
    ) -> Tensor:
        """float ``(num_items, num_items)`` pair scores after shape checks, without reading
        values on the host: an index past the batch fails in the indexing itself, and a
        negative one turns the whole matrix (so the metric) into NaN."""
        pairs = check_pair_shapes(pairs, labels).to(labels.device)
        matrix = torch.zeros(num_items, num_items, device=labels.device)
        matrix[pairs[:, 0], pairs[:, 1]] = labels.to(matrix.dtype)
        matrix[pairs[:, 1], pairs[:, 0]] = labels.to(matrix.dtype)
        valid = (pairs >= 0).all()
        return torch.where(valid, matrix, torch.full_like(matrix, float("nan")))

    def compute(
        self, embeddings: Tensor, labels: Tensor, pairs: Tensor, subgroups: Tensor
    ) -> Tensor:
        """The metric of one batch: every object queries all the others.

        Args:
            embeddings: float ``(2P, d)``; labels: ``(P,)``; pairs: int64 ``(P, 2)``;
            subgroups: ``(2P,)`` (unused).
        """
        reducer = self.block_reducer()
        if reducer is None:
            return self.raw_compute(
                *reversed(
                    self.precompute(embeddings, labels=labels, pairs=pairs, subgroups=subgroups)
                )
            )
        check_embeddings(embeddings)
        num_items = embeddings.shape[0]
        pairs = check_pairs(pairs, labels, num_items).to(embeddings.device)
        rows, cols, vals = pair_entries(labels.to(embeddings.device), pairs, num_items)
        own = torch.arange(num_items, device=embeddings.device)
        problem = Problem(
            embeddings, embeddings, CsrRelevance(rows, cols, vals, num_items, own), own
        )
        return reduce_blocks(reducer, problem.blocks(self.distance))


def check_reduce_func(reduce_func: Optional[Callable[[Tensor], Tensor]]) -> None:
    """``reduce_func`` is ``None`` or callable, else ``TypeError`` naming what to pass."""
    if reduce_func is not None and not callable(reduce_func):
        raise TypeError(
            f"reduce_func must be a function of the per-query tensor (e.g. torch.mean) or "
            f"None for the tensor itself, got {type(reduce_func).__name__} {reduce_func!r}."
        )


def check_pairs(pairs: Tensor, labels: Tensor, num_items: int) -> Tensor:
    """``pairs`` as int64 ``(P, 2)`` indexing ``num_items`` rows, one score per pair."""
    pairs = check_pair_shapes(pairs, labels)
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num_items):
        raise ValueError(
            f"pairs must index the {num_items} embeddings (0..{num_items - 1}), got values in "
            f"[{int(pairs.min())}, {int(pairs.max())}]."
        )
    return pairs


def check_pair_shapes(pairs: Tensor, labels: Tensor) -> Tensor:
    """``pairs`` as int64 ``(P, 2)`` with one score per pair (metadata only: no sync)."""
    if not isinstance(pairs, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"pairs and labels must be torch.Tensors, got {type(pairs).__name__} and "
            f"{type(labels).__name__}."
        )
    if pairs.is_floating_point() or pairs.is_complex() or pairs.dtype == torch.bool:
        raise TypeError(
            f"pairs must be an integer tensor of indices, got {pairs.dtype}: a float index "
            "would be truncated to another item. Pass pairs.long() of whole numbers."
        )
    pairs = pairs.reshape(-1, 2).to(torch.int64)
    if labels.numel() != pairs.shape[0]:
        raise ValueError(
            f"labels must hold one score per pair ({pairs.shape[0]}), got {labels.numel()}."
        )
    return pairs
