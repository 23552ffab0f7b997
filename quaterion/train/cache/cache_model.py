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
    """

    progress_description = "Caching"  # read by QuaterionProgressBar

    def __init__(self, encoders: Dict[str, CacheEncoder]):
        super().__init__()
        self.encoders = encoders
        for name, encoder in encoders.items():
            self.add_module(name, encoder)
        self.records: Dict[int, List[tuple]] = {}
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
            record = (batch["positions"], batch["ids"], batch["columns"])
            self.records.setdefault(dataloader_idx, []).append(record)
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
        for loader_idx in sorted({i for records in gathered for i in records}):
            batches = [b for records in gathered for b in records.get(loader_idx, [])]
            self.splits[loader_idx] = _join(batches)


def _join(batches: List[tuple]) -> Optional[CachedSplit]:
    """One split from ``(positions, ids, columns)`` fill batches in any order (the first
    batch to hold a position wins); ``None`` unless they cover ``0..n-1``."""
    if not batches:
        return CachedSplit(np.zeros(0, dtype=np.uint64), {})
    positions = torch.cat([b[0] for b in batches])
    ids = np.concatenate([b[1] for b in batches])
    columns = {k: torch.cat([b[2][k] for b in batches]) for k in batches[0][2]}
    order = torch.argsort(positions, stable=True)
    positions = positions[order]
    first = torch.ones_like(positions, dtype=torch.bool)
    first[1:] = positions[1:] != positions[:-1]
    order = order[first]
    if not torch.equal(positions[first], torch.arange(len(order))):
        return None
    return CachedSplit(ids[order.numpy()], {k: v[order] for k, v in columns.items()})
