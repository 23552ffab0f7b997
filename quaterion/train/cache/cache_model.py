"""LightningModule that runs the cache fill through ``trainer.predict``."""

from typing import Any, Dict, List, Optional

import numpy as np

import pytorch_lightning as pl
import torch
from typing_extensions import override

from quaterion.train.cache import _distributed
from quaterion.train.cache._batches import CachedSplit
from quaterion.train.cache.cache_encoder import CacheEncoder


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
        for name, encoder in self.encoders.items():
            if name not in features["data"]:
                continue
            keys, encoder_features = features["data"][name]
            if len(keys) == 0:
                continue
            encoder.fill_cache(keys, encoder_features, features["meta"][name])
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
        size = self.sizes[loader_idx]
        if loader_idx not in self.records:
            self.records[loader_idx] = {
                "filled": torch.zeros(size, dtype=torch.bool),
                "ids": np.zeros(size, dtype=np.uint64),
                "columns": {k: torch.empty(size, dtype=v.dtype) for k, v in columns.items()},
            }
        record = self.records[loader_idx]
        record["filled"][positions] = True
        record["ids"][positions.numpy()] = ids
        for key, value in columns.items():
            record["columns"][key][positions] = value


def _join(parts: List[dict], size: int) -> Optional[CachedSplit]:
    """One split from every rank's arrays (the first rank to hold a position wins);
    ``None`` unless together they cover every position."""
    if size == 0:
        return CachedSplit(np.zeros(0, dtype=np.uint64), {})
    if not parts:
        return None
    filled = torch.zeros(size, dtype=torch.bool)
    ids = np.zeros(size, dtype=np.uint64)
    columns = {k: torch.empty(size, dtype=v.dtype) for k, v in parts[0]["columns"].items()}
    for part in parts:
        take = part["filled"] & ~filled
        ids[take.numpy()] = part["ids"][take.numpy()]
        for key, column in columns.items():
            column[take] = part["columns"][key][take]
        filled |= take
    return CachedSplit(ids, columns) if bool(filled.all()) else None
