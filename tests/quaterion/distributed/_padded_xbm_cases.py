"""XBM steps on 2 gloo ranks whose batches differ in size, with the device path of the
gather forced on CPU tensors: per step, each rank records the memory term, its own rows'
gradient, the forward ``all_gather`` calls, the host syncs, and the memory afterwards (rows,
groups and which rows are real), in ``rank<r>.pt``."""

import os
from typing import Tuple

import torch

from quaterion import distributed
from quaterion.loss import TripletLoss
from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion.train.xbm.xbm_buffer import XbmBuffer
from quaterion.train.xbm.xbm_term import memory_term
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.distributed._gather_plan_cases import CollectiveCounter
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

DIM = 3
STEPS = ((4, 4), (4, 2), (1, 3), (0, 4))  # rows per rank; the first agrees the layout
MINING = ("hard", "semi_hard")
LEGACY_STEPS = ((4, 4), (4, 2), (1, 3), (0, 4))  # an xbm_loss override without masks


class FourArgumentXbm(TripletLoss):
    """An ``xbm_loss`` override written against the spec's four arguments (no masks)."""

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):
        return super().xbm_loss(embeddings, groups, memory_embeddings, memory_groups)


def rows_of(rank: int, step: int, rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s float64 embeddings (float32 values: the memory keeps float32) and
    groups (3 groups) at ``step``."""
    generator = torch.Generator().manual_seed(100 * step + rank)
    embeddings = torch.randn(rows, DIM, generator=generator).double()
    return embeddings, torch.randint(0, 3, (rows,), generator=generator)


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    gloo_init(rank, world, store_file, timeout_s=60)
    os.environ[distributed.FORCE_DEVICE_PATH_ENV] = "1"
    counter = CollectiveCounter()
    results = {}
    for mining in MINING:
        for gather in (True, False):
            distributed.reset_gathers()  # each run starts its own plan
            loss = TripletLoss(mining=mining, gather_across_ranks=gather)
            config = XbmConfig(buffer_size=64, device=XbmDevice.CPU)
            buffer = XbmBuffer(config, DIM)
            for step, sizes in enumerate(STEPS):
                embeddings, groups = rows_of(rank, step, sizes[rank])
                embeddings.requires_grad_()
                counter.take()
                with count_host_syncs() as syncs:
                    term = memory_term(loss, buffer, embeddings, groups)
                forward = counter.take()
                term.backward()
                memory, memory_groups = buffer.get()
                results[(mining, gather, step)] = {
                    "term": term.detach(),
                    "grad": embeddings.grad,
                    "forward": forward,
                    "syncs": syncs.total,
                    "memory": memory,
                    "memory_groups": memory_groups,
                    "memory_valid": buffer.valid_rows(),
                }
    for gather in (True, False):
        distributed.reset_gathers()
        loss = FourArgumentXbm(mining="hard", gather_across_ranks=gather)
        buffer = XbmBuffer(XbmConfig(buffer_size=64, device=XbmDevice.CPU), DIM)
        for step, sizes in enumerate(LEGACY_STEPS):
            embeddings, groups = rows_of(rank, step, sizes[rank])
            embeddings.requires_grad_()
            with count_host_syncs() as syncs:
                term = memory_term(loss, buffer, embeddings, groups)
            term.backward()
            memory, memory_groups = buffer.get()
            results[("legacy", gather, step)] = {
                "term": term.detach(),
                "grad": embeddings.grad,
                "syncs": syncs.total,
                "memory": memory,
                "memory_groups": memory_groups,
                "memory_valid": buffer.valid_rows(),
            }
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
