"""Gradient cache under Lightning's DDP, run as
``python -m tests.quaterion.distributed.gradient_cache_script OUT``.

Lightning's ``strategy="ddp"`` re-launches this module for rank 1. For every case, each rank
fits one step (SGD with lr 0, so the gradients stay readable) of a float64 model whose loss
gathers negatives across ranks, with a gradient cache of mini-batch 4, and saves its
parameter gradients to ``OUT/rank<r>.pt``. The loaders are not shuffled, so rank ``r``
reads records ``r, r + 2, ...`` (Lightning's distributed sampler). Under ``"leaves"``, each
rank saves the gradients (parameters and tensors outside them) of a ``LeafEncoder`` model
fitted once plainly and once with the cache.
"""

import os
import sys

import torch

from quaterion import Quaterion
from tests.quaterion.train import gradient_cache_helpers as h
from tests.quaterion.train.helpers import trainer as quiet_trainer

WORLD = 2
MINI = 4
CASES = ["triplet_hard", "triplet_semi_hard", "arcface", "pml_contrastive_ms_miner", "mnrl"]


def model_for(case: str, mini) -> h.CachedModel:
    loss = h.loss_for(case, torch.float64)  # gathers under DDP, a no-op in one process
    return h.CachedModel({"default": h.DropoutEncoder("float64")}, loss, mini)


def loader_for(case: str, reference: bool = False):
    """Per rank: half of the records. The reference reads rank 0's then rank 1's in one batch."""
    if case in h.PAIR_LOSSES:
        samples, make = h.pair_samples(10, dtype=torch.float64), h.PairsSimilarityDataLoader
    else:
        samples, make = h.group_samples(22, dtype=torch.float64), h.GroupSimilarityDataLoader
    if reference:
        return make(samples[0::2] + samples[1::2], batch_size=len(samples))
    return make(samples, batch_size=len(samples) // WORLD)


def main(out: str) -> None:
    results, rank = {}, None
    for case in CASES:
        model = model_for(case, MINI)
        trainer = quiet_trainer(devices=WORLD, strategy="ddp", max_steps=1)
        Quaterion.fit(model, trainer, loader_for(case))
        rank = trainer.global_rank
        results[case] = h.grads_of(model)
    results["leaves"] = {}
    for mini in (None, MINI):  # outside leaves are not reduced by DDP: plain DDP is the reference
        h.fresh_shift(torch.float64)
        loss = h.loss_for("triplet_hard", torch.float64)
        model = h.CachedModel({"default": h.LeafEncoder("float64")}, loss, mini)
        Quaterion.fit(
            model,
            quiet_trainer(devices=WORLD, strategy="ddp", max_steps=1),
            loader_for("triplet_hard"),
        )
        grads = {f"outside.{name}": grad for name, grad in h.leaf_grads(model).items()}
        results["leaves"]["cached" if mini else "plain"] = {**h.grads_of(model), **grads}
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
