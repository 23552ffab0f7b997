"""``CacheRun``: what one cache set-up works on, decided once and handed to the fill, the
fingerprints and the served batches."""

import dataclasses
from typing import Any, Dict, Optional

import pytorch_lightning as pl

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion_models.encoders import Encoder


@dataclasses.dataclass
class CacheRun:
    """One cache set-up.

    Attributes:
        trainer: the trainer that fills the cache and fits.
        encoders: every encoder of the model (the cached ones wrapped).
        stores: the cached encoders among them.
        loaders: split (``"train"``, ``"val"``) -> its loader.
        layouts: split -> the loader class that lays out its batches when they can come
            from the store, else ``None`` (``setup.store_layouts``).
        key_extractors: encoder name -> key function (without one the sample ids are the keys).
        config: the cache configuration.
    """

    trainer: pl.Trainer
    encoders: Dict[str, Encoder]
    stores: Dict[str, CacheEncoder]
    loaders: Dict[str, SimilarityDataLoader]
    layouts: Dict[str, Optional[type]]
    key_extractors: Dict[str, Any]
    config: CacheConfig

    @property
    def full(self) -> bool:
        """Whether every encoder is cached, with default keys: then the batches of a loader
        with a layout can come from the store alone."""
        return len(self.stores) == len(self.encoders) and not self.key_extractors

    def views(self, split: str) -> int:
        """Stored views per object of ``split``: ``CacheConfig.views`` for training, else 1."""
        return self.config.views if split == "train" else 1
