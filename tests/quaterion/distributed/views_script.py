"""A cached fit with ``CacheConfig(views=3)`` under Lightning's DDP on CPU; every rank writes,
per epoch, the vector it would serve for each training position, as JSON.

Run as ``python -m tests.quaterion.distributed.views_script OUT_DIR DEVICES``: Lightning
starts the other ranks by running this module again.
"""

import json
import os
import sys

import pytorch_lightning as pl
import torch

from quaterion import Quaterion
from quaterion.dataset import GroupSimilarityDataLoader
from quaterion.train.cache import CacheConfig
from tests.quaterion.train.cache.test_views import Jittered
from tests.quaterion.train.helpers import CountingEncoder, Model
from tests.quaterion.train.helpers import trainer as fit_trainer

VIEWS, EPOCHS = 3, 3


class ServedRecorder(pl.Callback):
    """At each training epoch's end: the vector served for every position this epoch."""

    def __init__(self):
        self.epochs = []

    def on_train_epoch_end(self, trainer, pl_module):
        rows = trainer.train_dataloader.dataset  # the store-served split
        features, _ = rows.__getitems__(list(range(len(rows))))
        store = pl_module.model.encoders["default"]
        self.epochs.append(store(features["data"]["default"]).tolist())


def main(out_dir: str, devices: int) -> None:
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(views=VIEWS))
    loader = GroupSimilarityDataLoader(Jittered(), batch_size=4)
    recorder = ServedRecorder()
    trainer = fit_trainer(
        strategy="ddp" if devices > 1 else "auto",
        devices=devices,
        max_epochs=EPOCHS,
        callbacks=[recorder],
    )
    Quaterion.fit(model, trainer, loader)
    result = {"calls": encoder.calls, "served": recorder.epochs}
    with open(os.path.join(out_dir, f"rank{trainer.global_rank}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]))
