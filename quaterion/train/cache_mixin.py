"""``quaterion.train.cache_mixin.CacheMixin``: the spec'd import path of the cache mixin."""

from quaterion.train.cache.cache_mixin import CacheMixin

__all__ = ["CacheMixin"]
