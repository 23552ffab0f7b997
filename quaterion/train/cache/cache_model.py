"""The cache fill: each frozen encoder runs once over the data through ``trainer.predict``.

The fill loaders read ``loader.dataset`` in order, batch by ``CacheConfig.batch_size`` and
hand every batch to :class:`CacheModel`: the collated objects not seen before for each
cached encoder, plus the position, id and labels of every item (what training needs once
the raw data is no longer read). Under DDP Lightning gives each rank its share of the
positions, and :class:`CacheModel` gathers the stores and labels of all ranks at the end.
"""

import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, IterableDataset
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import _distributed
from quaterion.train.cache._batches import CachedSplit, batches_from_store, label_columns
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode
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


class CacheModel(pl.LightningModule):
    """Fills cache encoders: each predict batch encodes the objects not seen before.

    It also keeps, per fill loader, the id and labels of every position, and under DDP
    gathers stores and labels of all ranks when the fill ends.

    Args:
        encoders: name -> cache encoder (registered as sub-modules under their names).
        sizes: fill loader index -> dataset length, for the loaders whose ids and labels
            are kept.
    """

    progress_description = "Caching"  # read by QuaterionProgressBar

    def __init__(self, encoders: Dict[str, CacheEncoder], sizes: Optional[Dict[int, int]] = None):
        super().__init__()
        self.sizes = dict(sizes or {})
        self.encoders = encoders
        for name, encoder in encoders.items():
            self.add_module(name, encoder)
        self.records: Dict[int, dict] = {}
        self.splits: Dict[int, Optional[CachedSplit]] = {}

    @override
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Only the collated encoder inputs go to the device; keys, labels and meta records
        # stay on the host.
        features = batch["features"]
        move = super().transfer_batch_to_device
        data = {
            name: (keys, move(x, device, dataloader_idx))
            for name, (keys, x) in features["data"].items()
        }
        return {**batch, "features": {"data": data, "meta": features["meta"]}}

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Hand ``(keys, collated objects)`` and meta of each cached encoder to its cache."""
        features = batch["features"]
        for name, (keys, encoder_features) in features["data"].items():
            if len(keys):
                self.encoders[name].fill_cache(keys, encoder_features, features["meta"][name])
        if batch["positions"] is not None:
            self._record(dataloader_idx, batch["positions"], batch["ids"], batch["columns"])
        return torch.Tensor([1])

    def on_predict_end(self) -> None:
        """Finish every encoder's fill once, gather all ranks' results under DDP."""
        for encoder in self.encoders.values():
            encoder.finish_fill()
        if _distributed.world_size() > 1:
            for encoder in self.encoders.values():
                encoder.gather_ranks()
        gathered = _distributed.gather_objects(self.records)
        self.records = {}
        for loader_idx, size in self.sizes.items():
            parts = [records[loader_idx] for records in gathered if loader_idx in records]
            self.splits[loader_idx] = _join(parts, size)

    def _record(self, loader_idx: int, positions: torch.Tensor, ids, columns) -> None:
        # Arrays of the loader's length, allocated once: a fill over millions of samples
        # keeps no per-batch objects alive (they would fragment the heap of a DISK fill).
        if loader_idx not in self.records:
            self.records[loader_idx] = _new_record(self.sizes[loader_idx], columns)
        _put(self.records[loader_idx], positions, ids, columns)


def _new_record(size: int, columns: Dict[str, torch.Tensor]) -> dict:
    """Which positions are filled, and the id and label columns of each."""
    return {
        "filled": torch.zeros(size, dtype=torch.bool),
        "ids": np.zeros(size, dtype=np.uint64),
        "columns": {k: torch.empty(size, dtype=v.dtype) for k, v in columns.items()},
    }


def _put(record: dict, where: torch.Tensor, ids: np.ndarray, columns: Dict[str, torch.Tensor]):
    record["filled"][where] = True
    record["ids"][where.numpy()] = ids
    for key, value in columns.items():
        record["columns"][key][where] = value


def _join(parts: List[dict], size: int) -> Optional[CachedSplit]:
    """One split from every rank's arrays (the first rank to hold a position wins);
    ``None`` unless together they cover every position."""
    if size == 0:
        return CachedSplit(np.zeros(0, dtype=np.uint64), {})
    if not parts:
        return None
    joined = _new_record(size, parts[0]["columns"])
    for part in parts:
        take = part["filled"] & ~joined["filled"]
        columns = {key: column[take] for key, column in part["columns"].items()}
        _put(joined, take, part["ids"][take.numpy()], columns)
    return CachedSplit(joined["ids"], joined["columns"]) if bool(joined["filled"].all()) else None


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
    fill_loaders = [
        fill_loader(dl, cache_config, dl.collate_fn.with_mode(CacheMode.FILL)) for dl in loaders
    ]
    sizes = {i: len(dl.dataset) for i, dl in enumerate(loaders) if batches_from_store(dl)}
    model = CacheModel(cache_encoders, sizes)
    with isolate_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", FEW_WORKERS_WARNING, PossibleUserWarning)
        trainer.predict(model, fill_loaders, return_predictions=False)
    return [model.splits.get(i) for i in range(len(loaders))]
