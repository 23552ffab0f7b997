"""One rank of a cached 2-node fit whose ``save_dir`` is on a node-local disk.

``python -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank R ...
-m tests.quaterion.distributed.multinode_cache_script OUT`` caches into ``OUT/node<R>``
(each "machine" its own disk) and writes ``OUT/rank<global rank>.json``. With
``CACHE_DIR_MODE=shared`` in the environment both nodes use ``OUT/shared`` (a filesystem
every node sees). A fit that raises records its error type and message instead.
"""

import json
import os
import sys

import torch

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig, CacheType
from tests.quaterion.train.helpers import CountingEncoder, Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as quiet_trainer

TRAIN, VAL = 16, 8


def main(out: str) -> None:
    node_rank = int(os.environ["GROUP_RANK"])  # torchrun's node rank
    shared = os.environ.get("CACHE_DIR_MODE") == "shared"
    save_dir = os.path.join(out, "shared" if shared else f"node{node_rank}")
    encoder = CountingEncoder(seed=0)
    config = CacheConfig(cache_type=CacheType.CPU, batch_size=4, save_dir=save_dir)
    model = Model(encoders={"frozen": encoder}, cache_config=config)
    trainer = quiet_trainer(num_nodes=2, devices=1, strategy="ddp")
    train = group_loader(group_samples(n=TRAIN))
    val = group_loader(group_samples(n=VAL, seed=3))
    result = {"global_rank": trainer.global_rank, "node_rank": node_rank}
    try:
        Quaterion.fit(model, trainer, train, val)
    except Exception as error:
        result.update(error=type(error).__name__, message=str(error))
        raise
    finally:
        with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as file:
            json.dump({**result, "calls": encoder.calls}, file)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
