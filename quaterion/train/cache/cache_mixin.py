"""``CacheMixin``: the spec's cache methods of ``TrainableModel``, as thin wrappers over the
plain functions of :mod:`quaterion.train.cache.setup`."""

from typing import Dict, Optional

import pytorch_lightning as pl

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import setup
from quaterion.train.cache.cache_config import CacheConfig
from quaterion_models.encoders import Encoder


class CacheMixin:
    """Cache methods mixed into ``TrainableModel`` (each one a plain function of
    :mod:`quaterion.train.cache.setup`)."""

    _wrap_encoder = staticmethod(setup.wrap_encoder)
    _apply_cache_config = staticmethod(setup.apply_cache_config)
    _unwrap_cache_encoders = staticmethod(setup.unwrap_encoders)
    check_encoders_persisted = staticmethod(setup.encoders_persisted)
    save_cache = staticmethod(setup.save_cache)
    load_cache = staticmethod(setup.load_cache)

    @staticmethod
    def _cache(
        trainer: pl.Trainer,
        encoders: Dict[str, Encoder],
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
        cache_config: CacheConfig,
    ) -> bool:
        """Fill (or load) every cache encoder in ``encoders``; ``False`` if none is cached
        (:func:`~quaterion.train.cache.setup.cache_loaders` also returns the loaders, and keeps
        a hold on ``save_dir``, released here)."""
        loaders = setup.cache_loaders(
            trainer, encoders, train_dataloader, val_dataloader, cache_config
        )
        if loaders.hold is not None:
            loaders.hold.release()
        return loaders.cached
