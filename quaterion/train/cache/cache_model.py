"""LightningModule that runs the cache fill through ``trainer.predict``."""

from typing import Any, Dict, List

import pytorch_lightning as pl
import torch
from typing_extensions import override

from quaterion.train.cache import _distributed
from quaterion.train.cache._batches import CachedSplit
from quaterion.train.cache.cache_encoder import CacheEncoder


class CacheModel(pl.LightningModule):
    """Fills cache encoders: each predict batch encodes the objects not seen before.

    It also keeps, per fill loader, the id and label-only sample of every position, and
    under DDP gathers stores and labels of all ranks when the fill ends.

    Args:
        encoders: name -> cache encoder (registered as sub-modules under their names).
    """

    progress_description = "Caching"  # read by QuaterionProgressBar

    def __init__(self, encoders: Dict[str, CacheEncoder]):
        super().__init__()
        self.encoders = encoders
        for name, encoder in encoders.items():
            self.add_module(name, encoder)
        self.records: Dict[int, Dict[int, tuple]] = {}
        self.splits: Dict[int, CachedSplit] = {}

    @override
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Only the collated encoder inputs go to the device; keys, labels and meta records
        # stay on the host.
        if not isinstance(batch, dict) or "features" not in batch:
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        features = batch["features"]
        move = super().transfer_batch_to_device
        data = {
            name: (keys, move(x, device, dataloader_idx))
            for name, (keys, x) in features["data"].items()
        }
        return {**batch, "features": {"data": data, "meta": features["meta"]}}

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Hand ``(keys, collated objects)`` and meta of each cached encoder to its cache."""
        features = batch["features"] if isinstance(batch, dict) else batch[0]
        for name, encoder in self.encoders.items():
            if name not in features["data"]:
                continue
            keys, encoder_features = features["data"][name]
            if len(keys) == 0:
                continue
            encoder.fill_cache(keys, encoder_features, features["meta"][name])
        if isinstance(batch, dict):
            records = self.records.setdefault(dataloader_idx, {})
            for position, item_id, sample in zip(
                batch["positions"], batch["ids"], batch["samples"]
            ):
                records.setdefault(position, (item_id, sample))
        return torch.Tensor([1])

    def on_predict_end(self) -> None:
        """Finish every encoder's fill once, gather all ranks' results under DDP."""
        for encoder in self.encoders.values():
            encoder.finish_fill()
        if _distributed.world_size() > 1:
            for encoder in self.encoders.values():
                encoder.gather_ranks()
        gathered: List[Dict[int, Dict[int, tuple]]] = _distributed.gather_objects(self.records)
        merged: Dict[int, Dict[int, tuple]] = {}
        for records in gathered:  # rank order: the first rank to see a position wins
            for loader_idx, positions in records.items():
                target = merged.setdefault(loader_idx, {})
                for position, record in positions.items():
                    target.setdefault(position, record)
        self.records = {}
        for loader_idx, positions in merged.items():
            ordered = [positions[p] for p in sorted(positions)]
            if sorted(positions) == list(range(len(ordered))):
                self.splits[loader_idx] = CachedSplit(
                    [r[0] for r in ordered], [r[1] for r in ordered]
                )

    def split(self, loader_idx: int) -> CachedSplit:
        """Ids and label-only samples of every position of fill loader ``loader_idx``."""
        return self.splits.get(loader_idx, CachedSplit([], []))
