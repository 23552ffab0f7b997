"""The result of mining: :class:`MinedNegatives`, and its conversion to pair samples."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from torch import Tensor

from quaterion.dataset.similarity_samples import SimilarityPairSample


@dataclass
class MinedNegatives:
    """Hard negatives of every query.

    Attributes:
        indices: int64 ``(n, num_negatives)``: corpus index of each negative, best first;
            ``-1`` where a query has fewer survivors than ``num_negatives``. With an index as
            the corpus these are the point ids.
        scores: float ``(n, num_negatives)``: their scores (``-inf`` where ``-1``).
        positive_scores: float ``(n,)``: each query's lowest positive score (``+inf`` if it
            has none); ``None`` unless a margin was set.
        groups: int64 ``(n,)``: the queries' groups (group data), else ``None``.
        over_queries: whether the corpus was the queries themselves (``corpus=None``), so
            indices are positions of the queries.
    """

    indices: Tensor
    scores: Tensor
    positive_scores: Optional[Tensor] = None
    groups: Optional[Tensor] = None
    over_queries: bool = False

    @property
    def missing(self) -> int:
        """How many negative slots stayed empty (``-1``)."""
        return int((self.indices < 0).sum())

    def pair_samples(
        self,
        anchors: Sequence[Any],
        corpus: Sequence[Any],
        subgroups: Optional[Sequence[int]] = None,
    ) -> list[SimilarityPairSample]:
        """One ``SimilarityPairSample(anchor, negative, score=0.0)`` per mined negative.

        Args:
            anchors: the query objects, one per row of :attr:`indices`.
            corpus: the corpus objects :attr:`indices` point into.
            subgroups: the subgroup of each query's pair (default ``0``); the negative pair
                takes its anchor's subgroup.
        """
        if len(anchors) != self.indices.shape[0]:
            raise ValueError(
                f"{len(anchors)} anchors for {self.indices.shape[0]} mined queries: pass the "
                "query objects in the order they were mined."
            )
        if subgroups is not None and len(subgroups) != len(anchors):
            raise ValueError(f"{len(subgroups)} subgroups for {len(anchors)} anchors.")
        largest = int(self.indices.max()) if self.indices.numel() else -1
        if largest >= len(corpus):
            raise ValueError(
                f"the mined negatives hold corpus index {largest} but the corpus has "
                f"{len(corpus)} objects: pass the corpus the negatives were mined from."
            )
        samples = []
        for query, row in enumerate(self.indices.tolist()):
            subgroup = 0 if subgroups is None else subgroups[query]
            for item in row:
                if item >= 0:
                    samples.append(
                        SimilarityPairSample(anchors[query], corpus[item], 0.0, subgroup)
                    )
        return samples
