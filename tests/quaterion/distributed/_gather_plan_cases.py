"""Calls of ``gather_rows`` on 2 gloo ranks with every ``torch.distributed`` collective
counted: each rank records, per call, the collectives it took (forward and backward
separately), the gathered rows, its own rows' gradient or the error it raised, in
``rank<r>.pt``."""

import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from quaterion import distributed
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

WORLD = 2
WIDTH = 3
COUNTED = ("all_gather", "all_reduce", "all_gather_object", "broadcast", "gather", "barrier")

# (name, rows per rank, layout, forward all_gather calls on every rank): "grad" = embeddings
# that require grad with int64 labels (a loss's gather), "queue" = the same detached (an XBM
# queue's gather). Rank 1 passes "bad" on the mismatch calls: float64 embeddings, or a list
# instead of tensors (their collectives are checked with the error).
CALLS: List[Tuple[str, Tuple[int, int], str, int]] = [
    ("equal0", (4, 4), "grad", 2),  # first call: the full check (2 integers), then the rows
    *[(f"equal{i}", (4, 4), "grad", 1) for i in (1, 2, 3)],
    # "queue" is new: reported (1), checked (2); then "grad" was expected to repeat
    # "queue", so the next "grad" is reported and checked too; after that both are learned
    ("queue0", (4, 4), "queue", 3),
    ("grad1", (4, 4), "grad", 3),
    ("queue1", (4, 4), "queue", 1),
    ("grad2", (4, 4), "grad", 1),
    ("queue2", (4, 4), "queue", 1),
    # fewer rows than agreed: padded, still one collective
    ("uneven", (4, 2), "grad", 1),
    ("queue_after_uneven", (4, 4), "queue", 1),
    ("empty", (0, 4), "grad", 1),
    ("queue_after_empty", (4, 4), "queue", 1),
    # more rows than agreed: the one collective reports it, every rank re-checks
    ("grown", (6, 4), "grad", 3),
    ("queue_after_grown", (4, 4), "queue", 1),
    ("grown_again", (6, 5), "grad", 1),  # the agreed rows grew to 6 at the re-check
    ("queue_after_grown_again", (4, 4), "queue", 1),
    ("dtype_mismatch", (4, 4), "bad_dtype", 2),
    # after an error every rank starts over
    ("after_mismatch", (4, 4), "grad", 2),
    ("after_mismatch_again", (4, 4), "grad", 1),
    ("queue_again", (4, 4), "queue", 3),
    ("not_tensors", (4, 4), "bad_type", 2),
    ("after_not_tensors", (4, 4), "grad", 2),
    # "big" (float64 embeddings, detached) is over BIG_BYTES per rank: never predicted, so
    # never sent as a guess; the first one is still a wrong guess itself ("grad" expected)
    ("big0", (100, 90), "big", 3),
    ("grad_after_big0", (4, 4), "grad", 2),
    ("big1", (100, 90), "big", 2),  # full check straight away
    ("grad_after_big1", (4, 4), "grad", 1),  # learned: "grad" follows an unpredicted call
]
# the limit of predicted gathers in these processes (the library's is 16 MiB)
BIG_BYTES = 1024


def rows_of(rank: int, call: int, rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s embeddings and labels at call number ``call``."""
    generator = torch.Generator().manual_seed(1000 * call + rank)
    embeddings = torch.randn(rows, WIDTH, generator=generator, dtype=torch.float64).float()
    labels = torch.randint(0, 2**40, (rows,), generator=generator)
    return embeddings, labels


def loss_of(embeddings: torch.Tensor) -> torch.Tensor:
    """A loss mixing every gathered row with every other one."""
    return torch.logsumexp(embeddings @ embeddings.T, dim=1).sum()


class CollectiveCounter:
    """Wraps the ``torch.distributed`` collectives to count calls by name."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}
        for name in COUNTED:
            original = getattr(dist, name)
            setattr(dist, name, self._counting(name, original))

    def _counting(self, name, original):
        def counted(*args, **kwargs):
            self.counts[name] = self.counts.get(name, 0) + 1
            return original(*args, **kwargs)

        return counted

    def take(self) -> Dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


def _one_call(rank: int, call: int, rows: int, kind: str, counter: CollectiveCounter) -> Dict:
    embeddings, labels = rows_of(rank, call, rows)
    inputs: Optional[Tuple] = None
    if kind == "grad" or (kind.startswith("bad") and rank == 0):
        embeddings.requires_grad_()
        inputs = (embeddings, labels)
    elif kind == "queue":
        inputs = (embeddings, labels)
    elif kind == "big":
        inputs = (embeddings.double(), labels)
    elif kind == "bad_dtype":
        inputs = (embeddings.double().requires_grad_(), labels)
    else:  # bad_type on rank 1
        inputs = (embeddings.tolist(), labels)
    try:
        gathered, gathered_labels = distributed.gather_rows(*inputs)
    except ValueError as error:
        return {"error": str(error), "forward": counter.take()}
    forward = counter.take()
    record = {"rows": gathered.detach(), "labels": gathered_labels, "forward": forward}
    if embeddings.requires_grad:
        loss_of(gathered).backward()
        record["grad"] = embeddings.grad
    record["backward"] = counter.take()
    return record


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point; a short collective timeout turns a rank left waiting into an
    error instead of a hang."""
    gloo_init(rank, world, store_file, timeout_s=60)
    distributed._EXPECTED_MAX_BYTES = BIG_BYTES  # this test's own limit
    counter = CollectiveCounter()
    results = {}
    for call, (name, sizes, kind, _) in enumerate(CALLS):
        results[name] = _one_call(rank, call, sizes[rank], kind, counter)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
