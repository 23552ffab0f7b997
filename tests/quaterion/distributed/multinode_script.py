"""One rank of a 2-node fit, launched per node by ``torchrun --nnodes 2 --node_rank R``.

``python -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank R
--master-addr 127.0.0.1 --master-port P -m tests.quaterion.distributed.multinode_script OUT``
writes ``OUT/rank<global rank>.pt``.
"""

import os
import sys

import torch

from quaterion import Quaterion
from tests.quaterion.distributed.ddp_fit_script import BATCH, group_loaders, group_model
from tests.quaterion.train.helpers import trainer as quiet_trainer


def main(out: str) -> None:
    model = group_model()
    trainer = quiet_trainer(num_nodes=2, devices=1, strategy="ddp")
    train, val = group_loaders(BATCH)
    Quaterion.fit(model, trainer, train, val)
    model.save_servable(os.path.join(out, "servable"))
    result = {
        "world_size": trainer.world_size,
        "global_rank": trainer.global_rank,
        "node_rank": trainer.node_rank,
        "global_step": trainer.global_step,
        "memories": model.loss.memories,
        "weights": {k: v.detach().clone() for k, v in model.model.state_dict().items()},
        "validation_loss": trainer.callback_metrics["validation_loss"].clone(),
    }
    torch.save(result, os.path.join(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
