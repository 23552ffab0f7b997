"""LightningModule that runs the cache fill through ``trainer.predict``."""

from typing import Any, Dict

import pytorch_lightning as pl
import torch
from typing_extensions import override

from quaterion.train.cache.cache_encoder import CacheEncoder


class CacheModel(pl.LightningModule):
    """Fills cache encoders: each predict batch encodes the objects not seen before.

    Args:
        encoders: name -> cache encoder (registered as sub-modules under their names).
    """

    def __init__(self, encoders: Dict[str, CacheEncoder]):
        super().__init__()
        self.encoders = encoders
        for name, encoder in encoders.items():
            self.add_module(name, encoder)

    @override
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Only the collated encoder inputs go to the device; keys and meta records stay on the
        # host (walking one entry per object would cost more than a small encoder's fill).
        features, labels = batch
        data = {
            name: (
                keys,
                super(CacheModel, self).transfer_batch_to_device(x, device, dataloader_idx),
            )
            for name, (keys, x) in features["data"].items()
        }
        return {"data": data, "meta": features["meta"]}, labels

    def predict_step(self, batch, batch_idx: int, dataloader_idx=None) -> torch.Tensor:
        """Hand ``(keys, collated objects)`` and meta of each cached encoder to its cache."""
        features, _ = batch
        for name, encoder in self.encoders.items():
            if name not in features["data"]:
                continue
            keys, encoder_features = features["data"][name]
            if len(keys) == 0:
                continue
            encoder.fill_cache(keys, encoder_features, features["meta"][name])
        return torch.Tensor([1])

    def on_predict_end(self) -> None:
        """Finish every encoder's fill once, after all fill loaders."""
        for encoder in self.encoders.values():
            encoder.finish_fill()
