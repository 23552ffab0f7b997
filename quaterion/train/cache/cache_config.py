"""Configuration of the frozen-encoder embedding cache."""

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Dict, Hashable, Optional, Union

import torch

from quaterion_models.utils.checks import check_bool, check_positive_int

KeyExtractorType = Callable[[Any], Hashable]


class CacheType(StrEnum):
    """Where cached vectors are kept; formats, prints and compares as its value.

    * ``NONE``: cache disabled.
    * ``AUTO``: on the trainer's device (CUDA if the trainer uses it, else CPU).
    * ``CPU``: in host memory; rows move to the model's device per batch.
    * ``GPU``: on CUDA (requires CUDA when the encoder is wrapped).
    * ``DISK``: in a memory-mapped file under ``CacheConfig.save_dir`` (required), for
      caches larger than memory; rows move to the model's device per batch.
    """

    NONE = "none"
    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"
    DISK = "disk"


@dataclass
class CacheConfig:
    """Which frozen encoders to cache and how to fill the cache.

    Args:
        cache_type: type for every frozen encoder not named in ``mapping``; ``None`` caches
            only the encoders in ``mapping``; ``CacheType.NONE`` disables the cache.
        mapping: per-encoder type, keyed by encoder name (``"default"`` for one encoder).
        key_extractors: custom cache key per raw object; one callable applies to every cached
            encoder. Keys must be hashable and deterministic across processes.
        batch_size: batch size of the fill pass.
        num_workers: workers of the fill pass; ``None`` takes the loader's ``num_workers``
            (so does an iterable dataset: its ids depend on the worker that reads an item).
        save_dir: persist the cache here and reuse it on later runs (see the cache guide);
            required by ``CacheType.DISK``.
        verify_content: before reusing a persisted cache, read and collate every object
            and compare a hash of the encoder inputs with the one saved (costs one pass of
            reading and collating the data, no encoding); off: only ids and labels are
            compared.
        dtype: store rows in this floating dtype (``torch.float16`` or ``torch.bfloat16``
            halve the memory); ``None`` keeps the encoder's dtype.
        verify_checksums: before reusing a persisted cache, compare the SHA-256 of every
            file with the one saved (one streaming read of the files, chunk by chunk, never
            on the training path); off: only sizes, dtypes and structure are checked, and a
            damaged file can go unnoticed.
        views: cached augmented views: the fill reads the training data ``views`` times,
            each item under a random state seeded by its view and position, and stores one
            row per view; each epoch serves one view per object, chosen by a seeded rule
            (the same on every rank and in every run). Needs a fit served from the store
            (every encoder cached, default keys). Validation data is read once (view 0).
    """

    cache_type: Optional[CacheType] = CacheType.AUTO
    mapping: Dict[str, CacheType] = field(default_factory=dict)
    key_extractors: Union[KeyExtractorType, Dict[str, KeyExtractorType]] = field(
        default_factory=dict
    )
    batch_size: Optional[int] = 32
    num_workers: Optional[int] = None
    save_dir: Optional[str] = None
    verify_content: bool = False
    dtype: Optional[torch.dtype] = None
    verify_checksums: bool = True
    views: int = 1

    def __post_init__(self):
        if self.cache_type is not None:
            self.cache_type = _to_cache_type(self.cache_type, "cache_type")
        if not isinstance(self.mapping, dict):
            raise TypeError(
                f"CacheConfig.mapping must be a dict of encoder name -> CacheType, "
                f"got {type(self.mapping).__name__}"
            )
        self.mapping = {
            name: _to_cache_type(value, f"mapping[{name!r}]")
            for name, value in self.mapping.items()
        }
        if not self.cache_type and not self.mapping:
            raise ValueError("If cache is configured, cache_type or mapping have to be set")
        for kind in dict.fromkeys([self.cache_type, *self.mapping.values()]):
            check_save_dir(kind, self.save_dir)
        if self.dtype is not None and not (
            isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point
        ):
            raise ValueError(
                f"CacheConfig.dtype must be None or a floating torch.dtype such as "
                f"torch.float16, got {self.dtype!r}"
            )
        if not (callable(self.key_extractors) or isinstance(self.key_extractors, dict)):
            raise TypeError(
                "CacheConfig.key_extractors must be a callable or a dict of encoder name -> "
                f"callable, got {type(self.key_extractors).__name__}"
            )
        if self.save_dir is not None and not isinstance(self.save_dir, (str, os.PathLike)):
            raise TypeError(
                f"CacheConfig.save_dir must be None or a directory path (str or os.PathLike), "
                f"got {type(self.save_dir).__name__}"
            )
        self.verify_content = check_bool("CacheConfig", "verify_content", self.verify_content)
        self.verify_checksums = check_bool("CacheConfig", "verify_checksums", self.verify_checksums)
        check_positive_int("CacheConfig", "views", self.views)
        if self.batch_size is not None:
            check_positive_int("CacheConfig", "batch_size", self.batch_size)
        if self.num_workers is not None and (
            not isinstance(self.num_workers, int) or self.num_workers < 0
        ):
            raise ValueError(
                f"CacheConfig.num_workers must be None or an int >= 0, got {self.num_workers!r}"
            )


def check_save_dir(kind: Optional[str], save_dir: Optional[str]) -> None:
    """``ValueError`` when the store class of ``kind`` in ``STORES`` keeps files under
    ``save_dir`` (its ``needs_save_dir``, e.g. ``CacheType.DISK``) and none is given."""
    from quaterion.train.cache.stores import STORES  # the stores import this module

    store = STORES.get(kind)
    if not save_dir and getattr(store, "needs_save_dir", False):
        what = f"CacheType.{CacheType(kind).name}" if kind in set(CacheType) else repr(kind)
        raise ValueError(
            f"The storage kind {what} ({store.__name__}) keeps its rows in files under "
            "save_dir: pass CacheConfig(save_dir=...), a directory with room for the cache"
        )


def _to_cache_type(value: Any, name: str) -> str:
    """``value`` as a ``CacheType``, or as the name of a storage kind added to ``STORES``."""
    from quaterion.train.cache.stores import STORES  # the stores import this module

    try:
        return CacheType(value)
    except ValueError:
        if isinstance(value, str) and value in STORES:
            return value
        allowed = ", ".join(repr(str(kind)) for kind in dict.fromkeys([*CacheType, *STORES]))
        raise ValueError(
            f"CacheConfig.{name} must be a CacheType or a storage kind named in "
            f"quaterion.train.cache.STORES ({allowed}), got {value!r}"
        ) from None
