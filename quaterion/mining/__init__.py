"""Hard-negative mining with a trained model: :func:`mine_hard_negatives` and friends."""

from quaterion.mining.batch_sampler import HardNegativeBatchSampler
from quaterion.mining.cache_source import (
    CachedEmbeddings,
    CacheMismatchError,
    read_cached_embeddings,
)
from quaterion.mining.hard_negatives import mine_hard_negatives, mine_pair_negatives
from quaterion.mining.mined import MinedNegatives
from quaterion.mining.options import MiningOptions

__all__ = [
    "CachedEmbeddings",
    "CacheMismatchError",
    "HardNegativeBatchSampler",
    "MinedNegatives",
    "MiningOptions",
    "mine_hard_negatives",
    "mine_pair_negatives",
    "read_cached_embeddings",
]
