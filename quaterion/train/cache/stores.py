"""Which store class keeps the rows of each ``CacheType``: a new storage kind is one entry."""

from typing import Dict, Type

from quaterion.train.cache.cache_config import CacheType
from quaterion.train.cache.disk_cache_encoder import DiskStore
from quaterion.train.cache.in_memory_cache_encoder import InMemoryStore
from quaterion.train.cache.store import CacheStore

#: ``CacheType`` (or the name of a storage kind of your own) -> the store class keeping its rows.
STORES: Dict[str, Type[CacheStore]] = {
    CacheType.AUTO: InMemoryStore,
    CacheType.CPU: InMemoryStore,
    CacheType.GPU: InMemoryStore,
    CacheType.DISK: DiskStore,
}
