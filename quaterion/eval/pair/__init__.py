"""Metrics for pair-labelled data (``SimilarityPairSample``).

The package attributes ``retrieval_precision`` and ``retrieval_reciprocal_rank`` are the
functions; their submodules stay importable by full path.
"""

from quaterion.eval.pair.pair_metric import PairMetric
from quaterion.eval.pair.retrieval_precision import RetrievalPrecision, retrieval_precision
from quaterion.eval.pair.retrieval_reciprocal_rank import (
    RetrievalReciprocalRank,
    retrieval_reciprocal_rank,
)

__all__ = [
    "PairMetric",
    "RetrievalPrecision",
    "retrieval_precision",
    "RetrievalReciprocalRank",
    "retrieval_reciprocal_rank",
]
