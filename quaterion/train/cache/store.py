"""``CacheStore``: the contract between a storage kind and the batch path, and the check
that a storage kind named in ``STORES`` keeps it."""

import inspect
from typing import Type

from quaterion.train.cache.cache_encoder import CacheEncoder


#: The store contract: one base class for every storage kind (see :class:`CacheEncoder`).
CacheStore = CacheEncoder

#: What a storage kind must define itself (the base classes only raise ``NotImplementedError``).
REQUIRED_METHODS = (
    "forward",
    "cache_extract_meta",
    "is_filled",
    "fill_cache",
    "finish_fill",
    "gather_ranks",
    "reset_cache",
    "save_cache",
    "load_cache",
    "meta_cache",
    "rows_for_keys",
    "state",
    "load_state",
)


def check_store_class(store_class: Type[CacheStore], kind: str) -> Type[CacheStore]:
    """``store_class`` if it is a :class:`CacheStore` that defines every method of
    :data:`REQUIRED_METHODS` and can be built by :meth:`CacheStore.from_config`.

    Raises:
        TypeError: naming the storage kind, its class and what it lacks.
    """
    where = f"storage kind {kind!r} ({getattr(store_class, '__qualname__', repr(store_class))})"
    if not (isinstance(store_class, type) and issubclass(store_class, CacheStore)):
        raise TypeError(
            f"The {where} in quaterion.train.cache.STORES is not a CacheStore subclass; "
            "subclass CacheStore or InMemoryStore"
        )

    def inherited(name: str) -> bool:  # the base's stub: not defined by the kind itself
        return inspect.getattr_static(store_class, name) is inspect.getattr_static(CacheStore, name)

    missing = [name for name in REQUIRED_METHODS if inherited(name)]
    if inherited("from_config") and inherited("__init__"):
        missing.insert(0, "__init__(encoder, cache_type, dtype, name) or from_config")
    if missing:
        raise TypeError(
            f"The {where} does not implement {', '.join(missing)}: define them (see "
            "CacheStore), or subclass InMemoryStore, which implements every one"
        )
    return store_class
