"""Base class of every evaluation metric."""

import functools
import inspect
from typing import Callable, ClassVar, Optional, Tuple, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.accumulators.accumulator import Accumulator
from quaterion.eval.blocks import (
    BlockReducer,
    check_embedding_shape,
    check_embeddings,
    rank_own_items_last,
    ranking_inputs,
)

# A batch of up to this many (query, candidate) cells is computed by ``step_compute`` from
# dense matrices of fixed shapes (no host sync); a larger one goes through ``compute``.
STEP_CELLS = 2**24


class BaseMetric:
    """A retrieval metric over a distance matrix and a relevance (label) matrix.

    Subclasses fill ``prepare_labels``, ``raw_compute``, ``compute`` and ``evaluate``.
    Built-in metrics also return a :meth:`block_reducer`, which computes the same value from
    a stream of row blocks (memory O(block x N)); ``raw_compute``, ``compute`` and
    ``Evaluator`` use it. A metric without one is computed from dense matrices.

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    def __init__(self, distance_metric_name: Union[Distance, str] = Distance.COSINE):
        self._distance_metric_name = distance_metric_name
        self.distance = Distance.get_by_name(distance_metric_name)

    def compute(self, *args, **kwargs) -> Tensor:
        """The metric of one batch."""
        raise NotImplementedError()

    def evaluate(self) -> Tensor:
        """The metric over everything accumulated with ``update``."""
        raise NotImplementedError()

    def raw_compute(self, distance_matrix: Tensor, labels: Tensor) -> Tensor:
        """The metric on ready-made ``(queries, candidates)`` matrices of equal shape.

        Self-pairs must already be neutralised (ranked last).
        """
        raise NotImplementedError()

    def precompute(self, embeddings: Tensor, **targets) -> Tuple[Tensor, Tensor]:
        """Square ``(labels, distance_matrix)``, both ``(N, N)``: note labels come first.

        The distance matrix is detached and its diagonal set to ``+inf`` so an item ranks
        after every other item in its own row (the own-item rule of ``quaterion.eval``).
        Distances are computed from :func:`~quaterion.eval.blocks.ranking_inputs` (float32
        at least, scaled by a power of two where needed: the same ranking, no overflow).
        Labels are cast to float.
        ``ValueError`` if ``embeddings`` hold NaN or inf.
        """
        check_embeddings(embeddings)
        labels = self.prepare_labels(**targets)
        (embeddings,) = ranking_inputs(self.distance, embeddings.detach())
        distance_matrix = self.distance.distance_matrix(embeddings).detach()
        own = torch.arange(distance_matrix.shape[0], device=distance_matrix.device)
        return labels.float(), rank_own_items_last(distance_matrix, own)

    @staticmethod
    def prepare_labels(**targets) -> Tensor:
        """Square relevance matrix from the loader's targets."""
        raise NotImplementedError()

    def block_reducer(self) -> Optional[BlockReducer]:
        """A fresh reducer of row blocks into this metric's value; ``None`` (the default)
        means the metric is computed from dense matrices by ``raw_compute``."""
        return None

    def dense_compute(self, distance_matrix: Tensor, labels: Tensor) -> Optional[Tensor]:
        """``raw_compute`` with fixed-shape operations only (no host sync), or ``None`` (the
        default) when the metric has no such form; used by :meth:`step_compute`."""
        return None

    def step_labels(self, num_items: int, **targets) -> Tensor:
        """Square ``(num_items, num_items)`` relevance for :meth:`step_compute`, built without
        reading values on the host; default :meth:`prepare_labels`."""
        return self.prepare_labels(**targets)

    def step_compute(self, embeddings: Tensor, **targets) -> Tensor:
        """``compute(embeddings, **targets)`` of one training batch, without host syncs.

        The training loop logs attached metrics through it. A metric with a
        :meth:`dense_compute` form ranks the batch's dense matrices (equal values, fixed
        shapes, so the host never waits for the device); embeddings holding NaN/inf (or
        labels holding NaN) give NaN instead of ``compute``'s ``ValueError`` (raising would
        need the host). Other metrics, and batches over ``STEP_CELLS`` distance cells, use
        ``compute``.
        """
        check_embedding_shape(embeddings)
        num_items = embeddings.shape[0]
        if num_items * num_items > STEP_CELLS or type(self).dense_compute is (
            BaseMetric.dense_compute
        ):
            return self.compute(embeddings, **targets)
        labels = self.step_labels(num_items, **targets).to(embeddings.device)
        (ranked,) = ranking_inputs(self.distance, embeddings.detach(), exact=False)
        distance_matrix = self.distance.distance_matrix(ranked)
        own = torch.arange(num_items, device=embeddings.device)
        value = self.dense_compute(rank_own_items_last(distance_matrix, own), labels)
        if value is None:
            return self.compute(embeddings, **targets)
        valid = torch.isfinite(embeddings.detach()).all() & ~torch.isnan(labels).any()
        return torch.where(valid, value, torch.full_like(value, float("nan")))


class AccumulatingMetric(BaseMetric):
    """A metric that stores batches in ``self.accumulator`` and evaluates them together.

    Subclasses set ``accumulator_class`` and bind ``update`` with :func:`stores_batches`;
    ``reset`` empties the accumulator and ``evaluate`` is ``compute(**accumulator.state)``.

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its value.
    """

    accumulator_class: ClassVar[type[Accumulator]] = Accumulator

    def __init__(self, distance_metric_name: Union[Distance, str] = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)
        self.accumulator = self.accumulator_class()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.accumulator.reset()

    def evaluate(self) -> Tensor:
        """The metric over everything accumulated.

        Raises:
            ValueError: nothing was accumulated.
        """
        if self.accumulator.embeddings.numel() == 0:
            names = [
                name
                for name in inspect.signature(self.accumulator.update).parameters
                if name != "device"
            ]
            raise ValueError(
                f"Nothing accumulated: call update({', '.join(names)}) before evaluate()."
            )
        return self.compute(**self.accumulator.state)


def stores_batches(accumulator_update: Callable[..., None]) -> Callable[..., None]:
    """A metric's ``update`` that forwards to ``self.accumulator.update``.

    The method keeps ``accumulator_update``'s name, signature and docstring.
    """

    @functools.wraps(accumulator_update)
    def update(self: AccumulatingMetric, *args, **kwargs) -> None:
        self.accumulator.update(*args, **kwargs)

    return update
