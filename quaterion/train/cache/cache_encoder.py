"""Base class of encoders that serve cached vectors instead of running a frozen encoder:
the one contract between a storage kind and the fill, the batches and the persisted cache."""

from enum import StrEnum
from functools import partial
from typing import Dict, Hashable, List, Tuple, Union

import torch
from torch import Tensor

from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_config import KeyExtractorType  # noqa: F401 (public path)
from quaterion_models.encoders import Encoder
from quaterion_models.types import CollateFnType, MetaExtractorFnType, TensorInterchange


CacheCollateReturnType = Union[List[Hashable], Tuple[List[Hashable], TensorInterchange], Tensor]


def _cache_collate(
    batch: CacheCollateReturnType, wrapped_collate: CollateFnType
) -> CacheCollateReturnType:
    if isinstance(batch, tuple):
        keys, objects = batch
        return keys, wrapped_collate(objects)
    return batch


class CacheMode(StrEnum):
    """Collator mode: ``FILL`` hands unseen objects to the encoder, ``TRAIN`` hands keys."""

    FILL = "fill"
    TRAIN = "train"


class CacheEncoder(Encoder):
    """Wraps a frozen encoder and answers ``forward`` from a cache of its outputs.

    In FILL mode a batch is ``(keys, objects)``: the wrapped encoder's collate prepares the
    objects and :meth:`fill_cache` stores their vectors. In TRAIN mode a batch is a list of
    keys (or an ``int64`` tensor of cache rows) and :meth:`forward` looks them up.

    It is also the store contract (:class:`~quaterion.train.cache.store.CacheStore` is this
    class): a storage kind keeps one row per key, subclasses this (or
    :class:`~quaterion.train.cache.InMemoryStore`) and is named in
    :data:`quaterion.train.cache.stores.STORES` under its ``CacheType`` (or a string of its
    own, then accepted by ``CacheConfig``).

    Args:
        encoder: a frozen encoder (``encoder.trainable`` is ``False``).
    """

    #: Whether the kind keeps files under ``CacheConfig.save_dir`` (which it then requires).
    needs_save_dir: bool = False

    def __init__(self, encoder: Encoder):
        if encoder.trainable:
            raise ValueError("Trainable encoder can't be cached")
        super().__init__()
        self._encoder = encoder

    @classmethod
    def from_config(
        cls, encoder: Encoder, name: str, cache_type: str, cache_config: CacheConfig
    ) -> "CacheEncoder":
        """The store for ``encoder`` (named ``name`` in the model) under ``cache_config``."""
        return cls(encoder, cache_type, cache_config.dtype, name)

    @property
    def wrapped_encoder(self) -> Encoder:
        """The wrapped frozen encoder."""
        return self._encoder

    @property
    def trainable(self) -> bool:
        """Always ``False``: cached vectors never change."""
        return False

    @property
    def embedding_size(self) -> int:
        """Width of the wrapped encoder's embeddings."""
        return self._encoder.embedding_size

    def cache_collate(self, batch: CacheCollateReturnType) -> CacheCollateReturnType:
        """``(keys, objects)`` -> ``(keys, collated objects)``; keys or rows pass unchanged."""
        return _cache_collate(batch, self._encoder.get_collate_fn())

    def get_collate_fn(self) -> CollateFnType:
        """:meth:`cache_collate` as a picklable function that does not capture the cache."""
        return partial(_cache_collate, wrapped_collate=self._encoder.get_collate_fn())

    def cache_extract_meta(self, batch: CacheCollateReturnType) -> List[dict]:
        """Meta records for a FILL tuple (from the objects) or a TRAIN key list (cached)."""
        raise NotImplementedError()

    def get_meta_extractor(self) -> MetaExtractorFnType:
        """Returns :meth:`cache_extract_meta`."""
        return self.cache_extract_meta

    def forward(self, batch: CacheCollateReturnType) -> Tensor:
        """Cached vectors ``(B, embedding_size)`` for a list of keys or a tensor of rows."""
        raise NotImplementedError()

    def save(self, output_path: str) -> None:
        """Saves the wrapped encoder (the cache itself is saved by :meth:`save_cache`)."""
        self._encoder.save(output_path)

    @classmethod
    def load(cls, input_path: str) -> Encoder:
        """Not supported: load the wrapped encoder class instead."""
        raise ValueError("Cached encoder does not support loading")

    def is_filled(self) -> bool:
        """Whether the cache holds vectors."""
        raise NotImplementedError()

    def fill_cache(self, keys: List[Hashable], data: TensorInterchange, meta: List[dict]) -> None:
        """Encode ``data`` with the wrapped encoder and store one row per new key."""
        raise NotImplementedError()

    def finish_fill(self) -> None:
        """Called once after all fill batches."""
        raise NotImplementedError()

    def gather_ranks(self) -> None:
        """Under DDP, after :meth:`finish_fill`: take in the entries of every rank."""
        raise NotImplementedError()

    def reset_cache(self) -> None:
        """Drop all cached state."""
        raise NotImplementedError()

    def save_cache(self, path: str) -> None:
        """Persist the cache to the file ``path``."""
        raise NotImplementedError()

    def load_cache(self, path: str) -> None:
        """Restore the cache from the file ``path``."""
        raise NotImplementedError()

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
