"""One rank of a 2-node fit whose validation data holds a NaN record on rank 1 only.

Launched per node by ``torchrun`` (see ``test_guard_ranks``); writes
``OUT/rank<global rank>.json`` with the type and message of the error the fit raised.
"""

import json
import math
import os
import sys

import torch

from quaterion import Quaterion
from quaterion.dataset import SimilarityGroupSample
from tests.quaterion.train.helpers import IN_DIM, Model, group_loader, group_samples
from tests.quaterion.train.helpers import trainer as quiet_trainer

# Validation under DDP is not shuffled: rank r reads items r, r + 2, ...; with batches of 4,
# item 5 is in rank 1's batch 0.
NAN_ITEM = 5


def main(out: str) -> None:
    val = group_samples(16, seed=3)
    val[NAN_ITEM] = SimilarityGroupSample(obj=torch.full((IN_DIM,), math.nan), group=1)
    trainer = quiet_trainer(num_nodes=2, devices=1, strategy="ddp")
    try:
        Quaterion.fit(
            Model(), trainer, group_loader(group_samples(16)), group_loader(val, batch_size=4)
        )
        result = {"type": None, "message": ""}
    except Exception as error:  # the test reads what each rank raised
        result = {"type": type(error).__name__, "message": str(error)}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1])
