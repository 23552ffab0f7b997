"""A cached fit under Lightning's DDP on CPU whose training data has fewer items than ranks.

Run as ``python -m tests.quaterion.train.cache.tiny_ddp_fit OUT_DIR ITEMS DEVICES``: the
process writes ``rank0.json`` with the error the fit raised (``null`` if none).
"""

import json
import os
import sys

import torch

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig
from tests.quaterion.train.helpers import CountingEncoder, Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as fit_trainer


def main(out_dir: str, items: int, devices: int) -> None:
    model = Model(encoders={"default": CountingEncoder()}, cache_config=CacheConfig())
    trainer = fit_trainer(strategy="ddp", devices=devices)
    error = None
    try:
        Quaterion.fit(model, trainer, group_loader(group_samples(items)))
    except ValueError as err:
        error = str(err)
    with open(os.path.join(out_dir, f"rank{trainer.global_rank}.json"), "w") as file:
        json.dump({"error": error}, file)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
