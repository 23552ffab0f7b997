"""Similarity samples, data loaders and dataset layers."""

from quaterion.dataset.group_cycle_sampler import GroupCycleBatchSampler
from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityDataLoader,
)
from quaterion.dataset.similarity_dataset import SimilarityGroupDataset
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample

__all__ = [
    "GroupCycleBatchSampler",
    "GroupSimilarityDataLoader",
    "PairsSimilarityDataLoader",
    "SimilarityDataLoader",
    "SimilarityGroupDataset",
    "SimilarityGroupSample",
    "SimilarityPairSample",
]
