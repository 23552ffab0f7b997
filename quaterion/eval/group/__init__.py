"""Metrics for group-labelled data (``SimilarityGroupSample``)."""

from quaterion.eval.group.group_metric import GroupMetric
from quaterion.eval.group.retrieval_r_precision import RetrievalRPrecision

__all__ = ["GroupMetric", "RetrievalRPrecision"]
