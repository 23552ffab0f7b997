"""One cached fit under Lightning's DDP on CPU; every rank writes what it saw as JSON.

Run as ``python -m tests.quaterion.train.cache.ddp_fit OUT_DIR SAVE_DIR DEVICES``: Lightning
starts the other ranks by running this module again. Two frozen encoders: ``memory``
(``CacheType.CPU``) and ``disk`` (``CacheType.DISK``).
"""

import json
import os
import sys

import torch

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig, CacheType
from tests.quaterion.train.helpers import CountingEncoder, LossRecorder, Model, StoreRecorder
from tests.quaterion.train.helpers import fit_data
from tests.quaterion.train.helpers import trainer as fit_trainer

TRAIN, VAL = 24, 8


def main(out_dir: str, save_dir: str, devices: int) -> None:
    encoders = {"memory": CountingEncoder(seed=0), "disk": CountingEncoder(seed=1)}
    config = CacheConfig(
        cache_type=CacheType.CPU, mapping={"disk": CacheType.DISK}, batch_size=4, save_dir=save_dir
    )
    model = Model(encoders=encoders, cache_config=config)
    (train, val), loaders = fit_data(shuffle=False)  # TRAIN and VAL samples
    recorder, store = LossRecorder(), StoreRecorder()
    trainer = fit_trainer(
        strategy="ddp" if devices > 1 else "auto", devices=devices, callbacks=[recorder, store]
    )
    Quaterion.fit(model, trainer, *loaders)
    stores = {
        name: {str(k): rows[r].tolist() for k, r in offsets.items()}
        for name, (_, offsets, rows) in store.stores.items()
    }
    rank = trainer.global_rank
    result = {
        "rank": rank,
        "world_size": trainer.world_size,
        "calls": {name: encoder.calls for name, encoder in encoders.items()},
        "reads": [train.reads, val.reads],
        "losses": [float(loss) for loss in recorder.losses],
        "rows": stores,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
