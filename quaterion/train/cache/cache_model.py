"""The cache fill: each frozen encoder runs once over the data through ``trainer.predict``.

The fill loaders read ``loader.dataset`` in order, batch by ``CacheConfig.batch_size`` and
hand every batch to :class:`CacheModel`: the collated objects not seen before for each
cached encoder, plus the position, id and labels of every item (what training needs once
the raw data is no longer read). Under DDP Lightning gives each rank its share of the
positions, and :class:`CacheModel` gathers the stores and labels of all ranks at the end.
"""

import warnings
from functools import partial
from typing import Any, Dict, List, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import IterableDataset, StackDataset
from typing_extensions import override

from quaterion import distributed
from quaterion.train.cache._batches import CachedSplit, CacheTrainCollator
from quaterion.train.cache._fingerprint import fill_loader
from quaterion.train.cache._run import CacheRun
from quaterion.train.cache._views import ViewDataset, view_keys
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode

FEW_WORKERS_WARNING = ".*does not have many workers.*"


def fill_batch(
    collator: CacheTrainCollator, layout: Optional[type], view: int, batch: List[Any]
) -> Dict[str, Any]:
    """Fill batch: ``{"positions", "ids", "columns", "features"}``.

    ``features`` comes from a FILL-mode :class:`CacheTrainCollator` (only keys not seen
    before in this process; the store keys of view ``v > 0`` are ``(v, key)``). With
    ``layout`` (the class of a loader served from the store), items are
    ``(position, (id, sample))`` and the position, id (``uint64``) and label ``columns`` of
    each are kept too; without, items are ``(id, sample)`` and those entries are ``None``.
    """
    features, labels = collator(batch if layout is None else [item for _, item in batch])
    if view:
        data = {n: (view_keys(keys, view), x) for n, (keys, x) in features["data"].items()}
        features = {**features, "data": data}
    if layout is None:
        return {"positions": None, "ids": None, "columns": None, "features": features}
    return {
        "positions": torch.tensor([position for position, _ in batch], dtype=torch.long),
        "ids": np.array([item[0] for _, item in batch], dtype=np.uint64),
        "columns": layout.label_columns(labels),
        "features": features,
    }


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
        positions, columns = batch["positions"], batch["columns"]
        if positions is not None:
            # arrays of the loader's length, allocated once: a fill over millions of samples
            # keeps no per-batch objects alive (they would fragment the heap of a DISK fill)
            if dataloader_idx not in self.records:
                self.records[dataloader_idx] = _new_record(self.sizes[dataloader_idx], columns)
            _put(self.records[dataloader_idx], positions, batch["ids"], columns)
        return torch.Tensor([1])

    def on_predict_end(self) -> None:
        """Finish every encoder's fill once, gather all ranks' results under DDP."""
        for encoder in self.encoders.values():
            encoder.finish_fill()
            if distributed.world_size() > 1:
                encoder.gather_ranks()
        gathered = distributed.gather_objects(self.records)
        self.records = {}
        for loader_idx, size in self.sizes.items():
            parts = [records[loader_idx] for records in gathered if loader_idx in records]
            self.splits[loader_idx] = _join(parts, size)


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
    """One split from every rank's arrays (a position held by several ranks has the same
    id and labels on each); ``None`` unless together they cover every position."""
    if not parts:
        return CachedSplit(np.zeros(0, dtype=np.uint64), {}) if size == 0 else None
    joined = parts[0]
    for part in parts[1:]:
        where = part["filled"]
        columns = {key: column[where] for key, column in part["columns"].items()}
        _put(joined, where, part["ids"][where.numpy()], columns)
    return CachedSplit(joined["ids"], joined["columns"]) if bool(joined["filled"].all()) else None


def fill_cache(run: CacheRun) -> Dict[str, Optional[CachedSplit]]:
    """Encode every distinct object of ``run``'s loaders once per view (:meth:`CacheRun.views`),
    keyed by the sample ids or the run's key extractors, into emptied stores; split -> its
    :class:`CachedSplit`.

    A split is ``None`` for a loader whose batches cannot come from the store (no layout).
    The random state is the same afterwards as before, so a cached run draws the same
    shuffles as an uncached.
    """
    world_size = run.trainer.world_size
    for dl in run.loaders.values():
        size = 0 if isinstance(dl.dataset, IterableDataset) else len(dl.dataset)
        if 0 < size < world_size:  # Lightning's predict gives no rank an empty share
            raise ValueError(
                f"The cache fill shares each dataset out among the ranks, but it has a dataset "
                f"of {size} item(s) for {world_size} ranks: use at most {size} devices, "
                "more data, or no cache (configure_caches() -> None)"
            )
    fill_loaders, first, sizes = [], {}, {}  # first: split -> the fill loader of its view 0
    for split, dl in run.loaders.items():
        layout, count = run.layouts[split], run.views(split)
        first[split] = len(fill_loaders)
        if layout is not None:  # positions, ids and labels are kept: from view 0
            sizes[first[split]] = len(dl.dataset)
        for view in range(count):
            kept = layout is not None and view == 0
            fill = CacheTrainCollator.for_loader(
                dl, run.stores, list(run.stores), run.key_extractors, CacheMode.FILL
            )
            collate = partial(fill_batch, fill, layout if kept else None, view)
            dataset = ViewDataset(dl.dataset, view) if count > 1 else dl.dataset
            dataset = StackDataset(range(len(dl.dataset)), dataset) if kept else dataset
            fill_loaders.append(fill_loader(dl, run.config, collate, dataset))
    for store in run.stores.values():
        store.reset_cache()
    model = CacheModel(run.stores, sizes)
    with isolate_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", FEW_WORKERS_WARNING, PossibleUserWarning)
        run.trainer.predict(model, fill_loaders, return_predictions=False)
    if not all(store.is_filled() for store in run.stores.values()):
        raise RuntimeError(
            "The cache fill ran in processes whose results this one cannot see (e.g. "
            "strategy='ddp_spawn' or a notebook launcher): use strategy='ddp' (Lightning "
            "starts the ranks as scripts) or torchrun, or configure_caches() -> None"
        )
    return {split: model.splits.get(index) for split, index in first.items()}
