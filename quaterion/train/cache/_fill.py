"""The fill pass: each frozen encoder runs once over the data through ``trainer.predict``.

The fill loaders read ``loader.dataset`` in order, batch by ``CacheConfig.batch_size`` and
hand every batch to :class:`~quaterion.train.cache.cache_model.CacheModel`: the collated
objects not seen before for each cached encoder, plus the position, id and labels of every
item (what training needs once the raw data is no longer read). Under
DDP Lightning gives each rank its share of the positions.
"""

import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, IterableDataset

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._batches import CachedSplit, batches_from_store, label_columns
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode
from quaterion.train.cache.cache_model import CacheModel
from quaterion.train.cache.cache_train_collator import CacheTrainCollator

FEW_WORKERS_WARNING = ".*does not have many workers.*"
_DROP_PARAMS = (
    "collate_fn",
    "batch_sampler",
    "sampler",
    "shuffle",
    "batch_size",
    "drop_last",
    "num_workers",
)


class _Positions(Dataset):
    """``(position, item)`` for every position of a map-style dataset."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> Tuple[int, Any]:
        return position, self.dataset[position]


class _IterablePositions(IterableDataset):
    """``(-1, item)`` for every item of an iterable dataset (positions are not kept)."""

    def __init__(self, dataset: IterableDataset):
        self.dataset = dataset

    def __iter__(self):
        for item in self.dataset:
            yield -1, item


class FillCollate:
    """Fill batch: ``{"positions", "ids", "columns", "features"}``.

    ``features`` comes from a FILL-mode :class:`CacheTrainCollator` (only keys not seen
    before in this process); ``ids`` (``uint64``) and the label ``columns`` of every
    position are kept when ``loader`` serves batches from the store (else ``None``).
    """

    def __init__(self, collator: CacheTrainCollator, loader: Optional[SimilarityDataLoader]):
        self.collator = collator
        self.loader = loader

    def __call__(self, batch: List[Tuple[int, Tuple[int, Any]]]) -> Dict[str, Any]:
        features, labels = self.collator([item for _, item in batch])
        if self.loader is None:
            return {"positions": None, "ids": None, "columns": None, "features": features}
        return {
            "positions": torch.tensor([position for position, _ in batch], dtype=torch.long),
            "ids": np.array([item[0] for _, item in batch], dtype=np.uint64),
            "columns": label_columns(self.loader, labels),
            "features": features,
        }


def fill_workers(loader: SimilarityDataLoader, cache_config: CacheConfig) -> int:
    """Worker count of the fill pass: ``cache_config.num_workers`` or the loader's."""
    if cache_config.num_workers is not None:
        return cache_config.num_workers
    return loader.num_workers


def fill_loader(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    collator: Optional[CacheTrainCollator] = None,
) -> DataLoader:
    """Plain, unshuffled ``DataLoader`` over ``loader.dataset`` with the fill settings.

    With ``collator`` (a FILL-mode copy of the training collator) batches are
    :class:`FillCollate` dicts; without, the loader's own ``collate_fn`` is used.
    """
    params = {k: v for k, v in loader.original_params.items() if k not in _DROP_PARAMS}
    workers = fill_workers(loader, cache_config)
    if workers == 0:
        params.pop("persistent_workers", None)
        params.pop("prefetch_factor", None)
    dataset, collate = loader.dataset, loader.collate_fn
    if collator is not None:
        iterable = isinstance(dataset, IterableDataset)
        dataset = _IterablePositions(dataset) if iterable else _Positions(dataset)
        collate = FillCollate(collator, loader if batches_from_store(loader) else None)
    return DataLoader(
        dataset,
        collate_fn=collate,
        batch_size=cache_config.batch_size or 32,
        shuffle=False,
        num_workers=workers,
        **params,
    )


def fill_collator(train_collator: CacheTrainCollator) -> CacheTrainCollator:
    """A FILL-mode collator with the same functions as the training one."""
    return CacheTrainCollator(
        pre_collate_fn=train_collator.pre_collate_fn,
        encoder_collates=train_collator.encoder_collates,
        meta_extractors=train_collator.meta_extractors,
        key_extractors=train_collator.key_extractors,
        cachable_encoders=train_collator.cachable_encoders,
        mode=CacheMode.FILL,
    )


def fill_cache(
    trainer: pl.Trainer,
    cache_encoders: Dict[str, CacheEncoder],
    loaders: List[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> List[Optional[CachedSplit]]:
    """Encode every distinct object of ``loaders`` once; one :class:`CachedSplit` per loader.

    A split is ``None`` for a loader whose batches cannot come from the store. The random state is
    the same afterwards as before, so a cached run draws the same shuffles as an uncached.
    """
    fill_loaders = [fill_loader(dl, cache_config, fill_collator(dl.collate_fn)) for dl in loaders]
    sizes = {i: len(dl.dataset) for i, dl in enumerate(loaders) if batches_from_store(dl)}
    model = CacheModel(cache_encoders, sizes)
    with isolate_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", FEW_WORKERS_WARNING, PossibleUserWarning)
        trainer.predict(model, fill_loaders, return_predictions=False)
    return [model.splits.get(i) for i in range(len(loaders))]
