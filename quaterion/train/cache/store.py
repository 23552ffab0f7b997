"""``CacheStore``: the contract between a storage kind and the batch path."""

import inspect
from typing import Dict, Hashable, List, Type

import torch
from torch import Tensor

from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion_models.encoders import Encoder


class CacheStore(CacheEncoder):
    """A cache encoder that keeps one row per key: what the fill, the batches and the
    persisted cache use.

    A storage kind subclasses this (or :class:`~quaterion.train.cache.InMemoryStore`) and
    is named in :data:`quaterion.train.cache.stores.STORES` under its ``CacheType`` (or a
    string of its own, then accepted by ``CacheConfig``).
    """

    #: Whether the kind keeps files under ``CacheConfig.save_dir`` (which it then requires).
    needs_save_dir: bool = False

    @classmethod
    def from_config(
        cls, encoder: Encoder, name: str, cache_type: str, cache_config: CacheConfig
    ) -> "CacheStore":
        """The store for ``encoder`` (named ``name`` in the model) under ``cache_config``."""
        return cls(encoder, cache_type, cache_config.dtype, name)

    @property
    def meta_cache(self) -> Dict[Hashable, dict]:
        """Key -> meta record (an absent key reads as ``{}``)."""
        raise NotImplementedError()

    def rows_for_keys(self, keys: List[Hashable]) -> Tensor:
        """``int64 (len(keys),)`` rows of ``keys`` (CPU); unknown keys raise ``KeyError``."""
        raise NotImplementedError()

    def host_rows(self, rows: Tensor) -> object:
        """How a batch carries ``rows`` of this store to :meth:`forward`."""
        return rows

    def place(self, device: torch.device) -> None:
        """Called when fitting starts on ``device``: move the rows where they are served."""

    def state(self) -> Dict[str, object]:
        """Everything :meth:`load_state` needs, as tensors and plain containers."""
        raise NotImplementedError()

    def load_state(self, state: Dict[str, object], source: str = "state") -> None:
        """Restore what :meth:`state` returned (``source`` names the file in errors)."""
        raise NotImplementedError()

    def rows_checksum(self, recompute: bool = False) -> object:
        """Checksum of rows kept outside the cache file (``None``: they are inside it)."""
        return None


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
    missing = [
        name
        for name in REQUIRED_METHODS
        if inspect.getattr_static(store_class, name) is inspect.getattr_static(CacheStore, name)
    ]
    builds = (
        inspect.getattr_static(store_class, "from_config")
        is not inspect.getattr_static(CacheStore, "from_config")
        or store_class.__init__ is not CacheEncoder.__init__
    )
    if not builds:
        missing.insert(0, "__init__(encoder, cache_type, dtype, name) or from_config")
    if missing:
        raise TypeError(
            f"The {where} does not implement {', '.join(missing)}: define them (see "
            "CacheStore), or subclass InMemoryStore, which implements every one"
        )
    return store_class
