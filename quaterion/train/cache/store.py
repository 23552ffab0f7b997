"""``CacheStore``: the contract between a storage kind and the batch path."""

from typing import Dict, Hashable, List

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
