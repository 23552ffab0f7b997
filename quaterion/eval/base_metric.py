"""Base class of every evaluation metric."""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.blocks import BlockReducer, check_embeddings, rank_own_items_last


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
        Labels are cast to float.
        ``ValueError`` if ``embeddings`` hold NaN or inf.
        """
        check_embeddings(embeddings)
        labels = self.prepare_labels(**targets)
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
