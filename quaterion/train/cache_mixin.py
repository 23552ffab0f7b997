"""``CacheMixin``: the spec'd class-method facade over the small ``train/cache`` modules."""

import os
from typing import Dict, Optional, Union

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import _store
from quaterion.train.cache._batches import (
    CachedRows,
    batches_from_store,
    cached_split,
    register,
)
from quaterion.train.cache._fill import fill_loader
from quaterion.train.cache._fingerprint import fingerprint, read_fingerprints, split_sha256
from quaterion.train.cache._setup import setup_encoder_cache
from quaterion.train.cache._wrapping import (
    apply_cache_config,
    unwrap_cache_encoders,
)
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion_models.encoders import Encoder


class CacheMixin:
    """Cache plumbing mixed into ``TrainableModel``; every member is a class method.

    Each method delegates to a function of ``quaterion.train.cache`` (wrapping, fill,
    persistence) so the pieces can be tested alone.
    """

    @classmethod
    def _apply_cache_config(
        cls, encoders: Union[Encoder, Dict[str, Encoder]], cache_config: CacheConfig
    ) -> Union[Encoder, Dict[str, Encoder]]:
        return apply_cache_config(encoders, cache_config)

    @classmethod
    def _cache(
        cls,
        trainer: pl.Trainer,
        encoders: Dict[str, Encoder],
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
        cache_config: CacheConfig,
    ) -> bool:
        return setup_encoder_cache(
            trainer, encoders, train_dataloader, val_dataloader, cache_config
        )

    @classmethod
    def _unwrap_cache_encoders(cls, encoders: Dict[str, Encoder]) -> Dict[str, Encoder]:
        return unwrap_cache_encoders(encoders)

    @classmethod
    def _wrap_cache_dataloader(
        cls, dataloader: SimilarityDataLoader, cache_config: CacheConfig
    ) -> DataLoader:
        return fill_loader(dataloader, cache_config)

    @classmethod
    def _encoders_cache_path(cls, dir_path: Optional[str]) -> Optional[str]:
        return _store.encoders_cache_path(dir_path)

    @classmethod
    def check_encoders_persisted(
        cls, dir_path: Optional[str], encoders: Dict[str, Encoder]
    ) -> bool:
        """``True`` iff ``<dir>/encoders/<name>`` exists for every cached encoder."""
        if not dir_path:
            return False
        root = _store.encoders_cache_path(dir_path)
        return all(
            os.path.isfile(os.path.join(root, name))
            for name, enc in encoders.items()
            if isinstance(enc, CacheEncoder)
        )

    @classmethod
    def save_cache(
        cls,
        dir_path: Optional[str],
        encoders: Dict[str, Encoder],
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
    ) -> None:
        """Persist cached encoders, the labels of each loader's cached split and a manifest."""
        if not dir_path:
            return
        cache_encoders = {n: e for n, e in encoders.items() if isinstance(e, CacheEncoder)}
        expected = _store.expected_manifest(cache_encoders, train_dataloader, val_dataloader, {})
        loaders = {"train": train_dataloader, "val": val_dataloader}
        splits = {split: cached_split(dl) for split, dl in loaders.items() if dl is not None}
        config = CacheConfig()

        def fingerprints(split: str) -> dict:
            cached = splits[split]
            if cached is None:
                return read_fingerprints(loaders[split], config)
            return fingerprint(split_sha256(cached))

        _store.save(dir_path, cache_encoders, splits, expected, fingerprints)

    @classmethod
    def load_cache(
        cls,
        dir_path: str,
        encoders: Dict[str, Encoder],
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
    ) -> None:
        """Load the files of :meth:`save_cache` without re-checking the manifest."""
        root = _store.encoders_cache_path(dir_path)
        cache_encoders = {n: e for n, e in encoders.items() if isinstance(e, CacheEncoder)}
        for name, enc in cache_encoders.items():
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                raise RuntimeError(
                    "Encoder cache was configured, but not found. Expected to find cache at "
                    f"{path}, but file does not exists!"
                )
            enc.load_cache(path)
        loaders = {"train": train_dataloader, "val": val_dataloader}
        loaders = {split: dl for split, dl in loaders.items() if dl is not None}
        splits = _store.read_splits(dir_path, list(loaders))
        full = len(cache_encoders) == len(encoders)
        for split, loader in loaders.items():
            cached = splits[split]
            usable = full and batches_from_store(loader) and len(cached) == len(loader.dataset)
            register(loader, CachedRows(loader, cached, cache_encoders) if usable else None)
