"""Base class of every evaluation metric."""

from collections.abc import Iterable
from typing import Tuple, Union

import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval._blocks import Block, check_embeddings


class BaseMetric:
    """A retrieval metric over a distance matrix and a relevance (label) matrix.

    Subclasses fill ``prepare_labels``, ``raw_compute``, ``compute`` and ``evaluate``.
    Built-in metrics also implement ``_reduce(blocks)``, which computes the same value from a
    stream of row blocks (memory O(block x N)); ``raw_compute`` and ``compute`` call it.

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

        The distance matrix is detached and its diagonal set to ``max + 1`` so an item
        ranks after every other item in its own row. Labels are cast to float.
        ``ValueError`` if ``embeddings`` hold NaN or inf.
        """
        check_embeddings(embeddings)
        labels = self.prepare_labels(**targets)
        distance_matrix = self.distance.distance_matrix(embeddings).detach()
        self_mask = torch.eye(
            distance_matrix.shape[0], dtype=torch.bool, device=distance_matrix.device
        )
        distance_matrix = distance_matrix.masked_fill(self_mask, distance_matrix.max() + 1)
        return labels.float(), distance_matrix

    @staticmethod
    def prepare_labels(**targets) -> Tensor:
        """Square relevance matrix from the loader's targets."""
        raise NotImplementedError()

    def _reduce(self, blocks: Iterable[Block]) -> Tensor:
        """The metric value from row blocks; built-in metrics override it."""
        raise NotImplementedError()

    @property
    def _blocked(self) -> bool:
        """Whether this metric computes from row blocks (``_reduce`` is implemented)."""
        return type(self)._reduce is not BaseMetric._reduce
