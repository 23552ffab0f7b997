"""Loss cases for the gathered-negatives equality test: data, a tiny net, one rank's run."""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from quaterion.distances import Distance
from quaterion.loss import (
    ArcFaceLoss,
    CenterLoss,
    CircleLoss,
    CosFaceLoss,
    FastAPLoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    SoftmaxLoss,
    TripletLoss,
)
from quaterion.loss.extras import PytorchMetricLearningWrapper
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

IN_DIM, EMB_DIM, NUM_GROUPS = 5, 4, 3
GROUP_SIZES = (5, 3)  # uneven on purpose: rows are padded for the gather
PAIR_SIZES = (3, 2)  # pairs per rank

GROUP_LOSSES: Dict[str, Callable[[], nn.Module]] = {
    "triplet_hard": lambda: TripletLoss(mining="hard", gather_across_ranks=True),
    "triplet_all": lambda: TripletLoss(mining="all", gather_across_ranks=True),
    "triplet_semi_hard": lambda: TripletLoss(mining="semi_hard", gather_across_ranks=True),
    "triplet_soft_euclid": lambda: TripletLoss(
        soft=True, distance_metric_name=Distance.EUCLIDEAN, gather_across_ranks=True
    ),
    "online_contrastive_hard": lambda: OnlineContrastiveLoss(gather_across_ranks=True),
    "online_contrastive_all": lambda: OnlineContrastiveLoss(mining="all", gather_across_ranks=True),
    "circle": lambda: CircleLoss(scale_factor=8.0, gather_across_ranks=True),
    "fast_ap": lambda: FastAPLoss(gather_across_ranks=True),
    "softmax": lambda: SoftmaxLoss(EMB_DIM, NUM_GROUPS, gather_across_ranks=True),
    "arcface": lambda: ArcFaceLoss(EMB_DIM, NUM_GROUPS, scale=8.0, gather_across_ranks=True),
    "cosface": lambda: CosFaceLoss(EMB_DIM, NUM_GROUPS, scale=8.0, gather_across_ranks=True),
    "center": lambda: CenterLoss(EMB_DIM, NUM_GROUPS, gather_across_ranks=True),
    "pml_contrastive_ms_miner": lambda: PytorchMetricLearningWrapper(
        pml_losses.ContrastiveLoss(), pml_miners.MultiSimilarityMiner(), gather_across_ranks=True
    ),
}
PAIR_LOSSES: Dict[str, Callable[[], nn.Module]] = {
    "mnrl": lambda: MultipleNegativesRankingLoss(scale=5.0, gather_across_ranks=True),
    "mnrl_symmetric": lambda: MultipleNegativesRankingLoss(
        scale=5.0, symmetric=True, gather_across_ranks=True
    ),
}
CASES = [*GROUP_LOSSES, *PAIR_LOSSES]


class Net(nn.Module):
    """A linear encoder (float64, fixed init) feeding the loss; returns the loss."""

    def __init__(self, case: str):
        super().__init__()
        torch.manual_seed(7)
        self.encoder = nn.Linear(IN_DIM, EMB_DIM, dtype=torch.float64)
        factory = GROUP_LOSSES.get(case) or PAIR_LOSSES[case]
        self.loss = factory().to(torch.float64)

    def forward(self, features: torch.Tensor, targets: dict) -> torch.Tensor:
        return self.loss(embeddings=self.encoder(features), **targets)


def rank_batches(
    case: str, sizes: Optional[Sequence[int]] = None
) -> List[Tuple[torch.Tensor, dict]]:
    """The batch of every rank, as the collator would build it on that rank: ``sizes``
    rows (group losses) or pairs (pair losses) per rank, by default ``GROUP_SIZES`` /
    ``PAIR_SIZES``."""
    generator = torch.Generator().manual_seed(CASES.index(case) + 100 * sum(sizes or ()))
    batches = []
    if case in GROUP_LOSSES:
        sizes = GROUP_SIZES if sizes is None else sizes
        groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])[: sum(sizes)]
        features = torch.randn(len(groups), IN_DIM, generator=generator, dtype=torch.float64)
        start = 0
        for size in sizes:
            part = slice(start, start + size)
            batches.append((features[part], {"groups": groups[part]}))
            start += size
        return batches
    for n in PAIR_SIZES if sizes is None else sizes:
        features = torch.randn(2 * n, IN_DIM, generator=generator, dtype=torch.float64)
        pairs = torch.stack([torch.arange(n), torch.arange(n) + n], dim=1)
        targets = {"pairs": pairs, "labels": torch.ones(n), "subgroups": torch.zeros(2 * n)}
        batches.append((features, targets))
    return batches


def concatenated_batch(
    case: str, sizes: Optional[Sequence[int]] = None
) -> Tuple[torch.Tensor, dict]:
    """The one-process batch holding every rank's rows, in rank order."""
    batches = rank_batches(case, sizes)
    features = torch.cat([features for features, _ in batches])
    if case in GROUP_LOSSES:
        return features, {"groups": torch.cat([t["groups"] for _, t in batches])}
    offsets = torch.cumsum(torch.tensor([0] + [len(f) for f, _ in batches[:-1]]), 0)
    pairs = torch.cat([t["pairs"] + offset for (_, t), offset in zip(batches, offsets)])
    n = len(pairs)
    return features, {"pairs": pairs, "labels": torch.ones(n), "subgroups": torch.zeros(2 * n)}


def loss_and_grads(net: nn.Module, module: nn.Module, batch) -> dict:
    """Run one forward/backward through ``module`` (the net or its DDP wrapper)."""
    features, targets = batch
    loss = module(features, targets)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
    return {"loss": loss.detach().clone(), "grads": grads}


def single_process(case: str, sizes: Optional[Sequence[int]] = None) -> dict:
    """The reference: one process over the concatenated batch."""
    net = Net(case)
    return loss_and_grads(net, net, concatenated_batch(case, sizes))


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point: every case under DDP, results saved to ``rank<r>.pt``."""
    gloo_init(rank, world, store_file)
    results = {case: _ddp_run(case, rank) for case in CASES}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()


def _ddp_run(case: str, rank: int) -> dict:
    """One case through DDP (the wrapper is dropped on return, before the group is)."""
    net = Net(case)
    return loss_and_grads(net, DistributedDataParallel(net), rank_batches(case)[rank])
