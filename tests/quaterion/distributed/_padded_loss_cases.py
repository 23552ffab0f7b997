"""Every gathering loss on 2 gloo ranks with the device path of the gather forced on CPU
tensors (``QUATERION_FORCE_DEVICE_GATHER=1``) and ranks holding batches of different sizes
(one of them empty): per case and size, each rank records the loss, the parameter gradients
after DDP's reduction, the forward ``all_gather`` calls and the host syncs of the loss call,
in ``rank<r>.pt``."""

import os
from typing import Dict, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from quaterion import distributed
from quaterion.loss._checks import mark_checked, score_check
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.distributed import _gather_cases as cases
from tests.quaterion.distributed._gather_plan_cases import CollectiveCounter
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

# rows (group losses) or pairs (pair losses) per rank; the first call of each case agrees
# the layout (the full check, capacity = its largest rank), the others are measured
WARM_UP = {"group": (5, 5), "pair": (3, 3)}
SIZES: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "group": ((5, 3), (0, 5), (2, 5)),
    "pair": ((3, 2), (0, 3), (1, 3)),
}
# every rank empty: every gathered row is padding (the loss is 0, nothing is trained)
EMPTY = (0, 0)
# the PML wrapper gathers compact rows through the full check (two collectives)
FULL_CHECK = {"pml_contrastive_ms_miner"}


def kind(case: str) -> str:
    return "group" if case in cases.GROUP_LOSSES else "pair"


class CountedNet(cases.Net):
    """``cases.Net`` that counts the host syncs of its loss call."""

    def forward(self, features: torch.Tensor, targets: dict) -> torch.Tensor:
        embeddings = self.encoder(features)
        with count_host_syncs() as syncs:
            loss = self.loss(embeddings=embeddings, **targets)
        self.syncs = syncs.total
        return loss


def _checked_on_the_host(targets: dict, loss: torch.nn.Module) -> dict:
    """Marks the batch's labels checked, as ``Quaterion.fit`` does on the CPU before the
    step (the loss then reads nothing)."""
    if "labels" in targets:
        mark_checked(targets["labels"], score_check(1.0, 1.0))
    num_groups = getattr(loss, "num_groups", None)
    if num_groups is not None and "groups" in targets:
        mark_checked(targets["groups"], f"group ids below {num_groups}")
    return targets


def _run(case: str, rank: int, sizes, counter: CollectiveCounter) -> dict:
    net = CountedNet(case)
    ddp = DistributedDataParallel(net)
    features, targets = cases.rank_batches(case, sizes)[rank]
    targets = _checked_on_the_host(targets, net.loss)
    counter.take()
    loss = ddp(features, targets)
    forward = counter.take()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
    return {"loss": loss.detach().clone(), "grads": grads, "forward": forward, "syncs": net.syncs}


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point: every case, warmed up, then each unequal size."""
    gloo_init(rank, world, store_file, timeout_s=90)
    os.environ[distributed.FORCE_DEVICE_PATH_ENV] = "1"
    counter = CollectiveCounter()
    results = {}
    for case in cases.CASES:
        _run(case, rank, WARM_UP[kind(case)], counter)
        for sizes in SIZES[kind(case)]:
            results[(case, sizes)] = _run(case, rank, sizes, counter)
        results[(case, EMPTY)] = _run(case, rank, EMPTY, counter)
    distributed.raise_pending_gather_errors()  # nothing failed: raises nothing
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
