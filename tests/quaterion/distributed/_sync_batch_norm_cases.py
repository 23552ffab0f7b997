"""Gradient cache with ``SyncBatchNorm`` on 2 gloo ranks: for each case every rank records
whether the pass-count check raised (and its message), the collectives it took, and how
many forward passes the model ran, in ``rank<r>.pt``."""

import os

import torch
from torch import nn

from quaterion.distributed import RankMismatchError
from quaterion.train import GradientCacheConfig
from quaterion.train.gradient_cache import cached_gradient_step
from quaterion.train.gradient_cache_ranks import check_equal_passes
from tests.quaterion.distributed._gather_plan_cases import CollectiveCounter
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

MINI = 4
# name -> (rows of rank 0, rows of rank 1, SyncBatchNorm present, in training mode)
CASES = {
    "equal": (10, 10, True, True),
    "equal_passes": (10, 9, True, True),  # 3 mini-batches each
    "unequal": (10, 7, True, True),  # 3 against 2
    "one_pass_against_three": (4, 9, True, True),
    "empty_against_one": (0, 3, True, True),  # one plain pass each
    "eval_mode": (10, 7, True, False),  # takes no collective: nothing exchanged
    "no_sync_norm": (10, 7, False, True),
}


def model_of(sync: bool, training: bool) -> nn.Module:
    norm = nn.SyncBatchNorm(4) if sync else nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), norm))
    return model.train(training)


class OnFeatures(nn.Module):
    """Runs ``inner`` on a model input ``{"data": {"default": rows}, "meta": ...}``."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, features):
        return self.inner(features["data"]["default"])


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    gloo_init(rank, world, store_file, timeout_s=60)
    counter = CollectiveCounter()
    results = {}
    for name, (*sizes, sync, training) in CASES.items():
        counter.take()
        try:
            check_equal_passes(model_of(sync, training), sizes[rank], MINI)
            outcome = None
        except RankMismatchError as error:
            outcome = str(error)
        results[name] = {"error": outcome, "collectives": counter.take()}
    # a whole cached step: stops before the model runs (SyncBatchNorm would need a GPU)
    model, calls = OnFeatures(model_of(True, True)), []
    model.register_forward_hook(lambda *args: calls.append(1))
    size = (10, 7)[rank]
    features = {"data": {"default": torch.randn(size, 3)}, "meta": [None] * size}
    try:
        cached_gradient_step(
            model,
            features,
            lambda e: e.sum(),
            list(model.parameters()),
            GradientCacheConfig(mini_batch_size=MINI),
            torch.device("cpu"),
        )
        outcome = None
    except RankMismatchError as error:
        outcome = str(error)
    results["step"] = {"error": outcome, "forwards": len(calls)}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
