"""Embedding cache for frozen encoders: configuration and cache encoders."""

from quaterion.train.cache._save_dir import CacheDirInUseError
from quaterion.train.cache.cache_config import CacheConfig, CacheType
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache.disk_cache_encoder import DiskCacheEncoder
from quaterion.train.cache.in_memory_cache_encoder import InMemoryCacheEncoder

__all__ = [
    "CacheConfig",
    "CacheType",
    "CacheEncoder",
    "InMemoryCacheEncoder",
    "DiskCacheEncoder",
    "CacheDirInUseError",
]
