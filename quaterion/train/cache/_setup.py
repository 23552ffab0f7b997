"""Cache orchestration: collators, salts, load-or-fill, save, full-cache switch."""

import logging
from typing import Dict, Optional

import pytorch_lightning as pl

from quaterion.dataset.label_cache_dataset import LabelCacheMode
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import _store
from quaterion.train.cache._fill import fill_cache, fill_workers
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode
from quaterion.train.cache.cache_train_collator import CacheTrainCollator
from quaterion_models.encoders import Encoder

logger = logging.getLogger(__name__)


def _loaders(train_dataloader, val_dataloader):
    return [dl for dl in (train_dataloader, val_dataloader) if dl is not None]


def is_full_cache(
    encoders: Dict[str, Encoder],
    cache_encoders: Dict[str, CacheEncoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> bool:
    """All encoders cached, default keys, no worker processes (training or fill), and each
    loader's own pre-collate function: a custom ``collate_fn`` may read the objects, which a
    full cache replaces with ``None``."""
    return (
        len(cache_encoders) == len(encoders)
        and not cache_config.key_extractors
        and all(
            dl.num_workers == 0 and fill_workers(dl, cache_config) == 0 and _default_pre_collate(dl)
            for dl in _loaders(train_dataloader, val_dataloader)
        )
    )


def _default_pre_collate(loader: SimilarityDataLoader) -> bool:
    pre_collate = loader.original_params["collate_fn"]
    return getattr(pre_collate, "__func__", None) is type(loader).pre_collate_fn.__func__


def normalise_key_extractors(cache_config: CacheConfig, names) -> Dict[str, object]:
    """A single callable becomes ``{name: fn}`` for every cached encoder."""
    extractors = cache_config.key_extractors
    if callable(extractors):
        return {name: extractors for name in names}
    return dict(extractors)


def build_collator(loader, encoders, key_extractors, cache_encoders) -> CacheTrainCollator:
    """Cache collator over ``loader``'s own pre-collate function (TRAIN mode)."""
    return CacheTrainCollator(
        pre_collate_fn=loader.original_params["collate_fn"],
        encoder_collates={name: enc.get_collate_fn() for name, enc in encoders.items()},
        meta_extractors={name: enc.get_meta_extractor() for name, enc in encoders.items()},
        key_extractors=key_extractors,
        cachable_encoders=list(cache_encoders),
        mode=CacheMode.TRAIN,
    )


def setup_encoder_cache(
    trainer: pl.Trainer,
    encoders: Dict[str, Encoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> bool:
    """Fill (or load) every cache encoder in ``encoders``; ``False`` if none is cached."""
    cache_encoders = {n: e for n, e in encoders.items() if isinstance(e, CacheEncoder)}
    if not cache_encoders:
        return False
    if getattr(trainer, "world_size", 1) > 1:
        raise ValueError(
            f"The encoder cache is filled by one process, but the trainer runs on "
            f"world_size={trainer.world_size}; use one device, or configure_caches() -> None"
        )
    full_cache = is_full_cache(
        encoders, cache_encoders, train_dataloader, val_dataloader, cache_config
    )
    key_extractors = normalise_key_extractors(cache_config, cache_encoders)
    collators = []
    for loader, salt in ((train_dataloader, "train"), (val_dataloader, "val")):
        if loader is None:
            continue
        collator = build_collator(loader, encoders, key_extractors, cache_encoders)
        loader.collate_fn = collator
        loader.set_salt(salt)
        collators.append(collator)

    save_dir = cache_config.save_dir
    expected = (
        _store.expected_manifest(
            cache_encoders, train_dataloader, val_dataloader, key_extractors, full_cache
        )
        if save_dir
        else None
    )
    loaded = bool(save_dir) and _store.try_load(
        save_dir, cache_encoders, train_dataloader, val_dataloader, expected
    )
    if not loaded:
        for enc in cache_encoders.values():
            enc.reset_cache()
        mode = LabelCacheMode.learn if full_cache else LabelCacheMode.transparent
        for loader in _loaders(train_dataloader, val_dataloader):
            loader.set_label_cache_mode(mode)
        for collator in collators:
            collator.mode = CacheMode.FILL
        try:
            fill_cache(trainer, cache_encoders, train_dataloader, val_dataloader, cache_config)
        finally:
            for collator in collators:
                collator.mode = CacheMode.TRAIN
                collator.seen_keys.clear()
        if save_dir:
            _store.save(save_dir, cache_encoders, train_dataloader, val_dataloader, expected)
    if full_cache:
        for loader in _loaders(train_dataloader, val_dataloader):
            loader.set_skip_read(True)
            loader.set_label_cache_mode(LabelCacheMode.read)
    return True
