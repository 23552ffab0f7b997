"""Calls of ``gather_rows_padded`` on 2 gloo ranks with the device path forced on CPU
tensors (``QUATERION_FORCE_DEVICE_GATHER=1``): per call, each rank records the collectives
it took, the host syncs of forward and backward, the gathered rows and mask, its own rows'
gradient of a loss over the real rows, or the error it raised, in ``rank<r>.pt``."""

import os
from typing import Dict, List, Tuple

import torch

from quaterion import distributed
from tests.quaterion.distributed._device_gather_cases import record_call, run_calls
from tests.quaterion.distributed._gather_plan_cases import CollectiveCounter, rows_of
from tests.quaterion.distributed._launch import gloo_finish

WORLD = 2

# (name, rows per rank, layout, forward all_gather calls on every rank). "grad": float32
# embeddings that require grad with int64 labels; "bad_dtype": rank 1 sends float64.
CALLS: List[Tuple[str, Tuple[int, int], str, int]] = [
    ("first", (5, 3), "grad", 2),  # the full check: compact rows, capacity 5 agreed
    ("equal", (5, 5), "grad", 1),  # from here on: one collective, nothing read
    ("unequal", (5, 3), "grad", 1),  # padded: rank 1's last two slots are padding
    ("rank0_empty", (0, 4), "grad", 1),
    ("rank1_empty", (2, 0), "grad", 1),
    ("both_small", (1, 2), "grad", 1),
    ("too_many", (5, 6), "grad", 1),  # rank 1 cannot send: NaN, raised two calls later
    ("after_too_many", (5, 5), "grad", 1),
    ("raises_too_many", (5, 5), "grad", 0),
    ("restart", (4, 2), "grad", 2),  # every plan started over: capacity 4
    ("padded_again", (1, 4), "grad", 1),
    ("other_layout", (4, 4), "bad_dtype", 1),
    ("after_other", (4, 4), "grad", 1),
    ("raises_other", (4, 4), "grad", 0),
    ("restart2", (4, 4), "grad", 2),
    ("grown_together", (6, 7), "grad", 3),  # no rank can send: all re-agree, capacity 7
    ("after_grown", (7, 1), "grad", 1),
]
RAISING = {"raises_too_many", "raises_other"}
POISONED = {"too_many", "other_layout"}
COMPACT = {"first", "restart", "restart2", "grown_together"}  # full checks: compact rows


def loss_of_real(rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """A loss mixing every real row with every other real one; padded rows take no part
    (selected away with ``torch.where``)."""
    rows = torch.where(valid[:, None], rows, torch.zeros_like(rows))
    scores = (rows @ rows.T).masked_fill(~valid[None, :], float("-inf"))
    per_row = torch.logsumexp(scores, dim=1)
    return torch.where(valid, per_row, torch.zeros_like(per_row)).sum()


def _one_call(rank: int, call: int, rows: int, kind: str, counter: CollectiveCounter) -> Dict:
    embeddings, labels = rows_of(rank, call, rows)
    if kind == "bad_dtype" and rank == 1:
        embeddings = embeddings.double()
    embeddings.requires_grad_()

    def gather():
        (gathered, gathered_labels), valid = distributed.gather_rows_padded(embeddings, labels)
        return gathered, gathered_labels, {"valid": valid}

    def loss(gathered, extra):
        return loss_of_real(gathered, extra["valid"])

    return record_call(embeddings, gather, loss, counter)


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point."""
    results = run_calls(rank, world, store_file, CALLS, _one_call)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
