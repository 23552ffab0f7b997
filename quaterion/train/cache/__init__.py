"""Embedding cache for frozen encoders: configuration, stores and the store of each kind."""

from quaterion.train.cache._save_dir import CacheDirInUseError
from quaterion.train.cache.cache_config import CacheConfig, CacheType
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache.disk_cache_encoder import DiskCacheEncoder, DiskStore
from quaterion.train.cache.in_memory_cache_encoder import InMemoryCacheEncoder, InMemoryStore
from quaterion.train.cache.store import CacheStore
from quaterion.train.cache.stores import STORES

__all__ = [
    "CacheConfig",
    "CacheType",
    "CacheEncoder",
    "CacheStore",
    "InMemoryStore",
    "DiskStore",
    "STORES",
    "InMemoryCacheEncoder",
    "DiskCacheEncoder",
    "CacheDirInUseError",
]
