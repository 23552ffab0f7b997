"""Calls of ``gather_rows(..., equal_rows=True)`` on 2 gloo ranks with the device path
forced on CPU tensors (``QUATERION_FORCE_DEVICE_GATHER=1``): per call, each rank records the
collectives it took, the host syncs of forward and backward, the gathered rows, its own rows'
gradient or the error it raised, in ``rank<r>.pt``."""

import os
from typing import Callable, Dict, List, Tuple

import torch

from quaterion import distributed
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.distributed._gather_plan_cases import CollectiveCounter, loss_of, rows_of
from tests.quaterion.distributed._launch import gloo_finish, gloo_init

WORLD = 2

# (name, rows per rank, layout, forward all_gather calls on every rank). Layouts: "grad" =
# float32 embeddings that require grad with int64 labels (a loss's gather), "queue" = the
# same detached, "bad_dtype" = rank 1 passes float64 embeddings, "loose" = "grad" with
# equal_rows=False, "reset" = "grad" after ``reset_gathers()`` on every rank.
CALLS: List[Tuple[str, Tuple[int, int], str, int]] = [
    ("first", (4, 4), "grad", 2),  # the full check: two integers, then the rows
    ("equal1", (4, 4), "grad", 1),  # from here on: one collective, nothing read
    ("equal2", (4, 4), "grad", 1),
    ("smaller", (3, 3), "grad", 1),  # an epoch's last, shorter batch on every rank
    ("unequal", (4, 2), "grad", 1),  # trusted, poisoned, raised two calls later
    ("after_unequal", (4, 4), "grad", 1),
    ("raises_unequal", (4, 4), "grad", 0),  # call 5's verdict, before any collective
    ("restart", (4, 4), "grad", 2),  # every plan started over
    ("equal3", (4, 4), "grad", 1),
    ("other_layout", (4, 4), "bad_dtype", 1),  # rank 1 cannot send: it reads the headers
    ("after_other", (4, 4), "grad", 1),
    ("raises_other", (4, 4), "grad", 0),
    ("restart2", (4, 4), "grad", 2),
    ("grown", (6, 6), "grad", 3),  # no rank can send 6 of 4 rows: all re-agree together
    ("grown_again", (6, 6), "grad", 1),
    ("too_many", (6, 7), "grad", 1),  # rank 1 alone holds more than agreed
    ("after_too_many", (6, 6), "grad", 1),
    ("raises_too_many", (6, 6), "grad", 0),
    ("restart3", (4, 4), "grad", 2),
    # a new layout: no rank can send the expected one, and the full check finds 4 and 2 rows
    ("queue_unequal", (4, 2), "queue", 2),
    ("loose_unequal", (4, 2), "loose", 2),  # equal_rows=False: checked, gathered as is
    ("loose_equal", (4, 4), "loose", 2),
    ("twice_a", (4, 2), "grad", 1),
    ("twice_b", (4, 2), "grad", 1),  # also bad, but moot once "twice_a" is raised
    ("raises_twice", (4, 4), "grad", 0),
    ("after_twice", (4, 4), "grad", 2),
    ("after_twice2", (4, 4), "grad", 1),
    ("after_twice3", (4, 4), "grad", 1),  # "twice_b" would be read here: it was dropped
    ("stale_unequal", (4, 2), "grad", 1),  # then a new loop starts with reset_gathers()
    ("after_reset", (4, 4), "reset", 2),  # the plan started over, the verdict dropped
    ("after_reset2", (4, 4), "grad", 1),  # "stale_unequal" would be read here
    ("last_unequal", (4, 2), "grad", 1),  # nothing after it reads it: the flush does
]
RAISING = {"raises_unequal", "raises_other", "raises_too_many", "queue_unequal", "raises_twice"}
POISONED = {
    "unequal",
    "other_layout",
    "too_many",
    "last_unequal",
    "twice_a",
    "twice_b",
    "stale_unequal",
}


def _inputs(rank: int, call: int, rows: int, kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    embeddings, labels = rows_of(rank, call, rows)
    if kind == "bad_dtype" and rank == 1:
        embeddings = embeddings.double()
    if kind in ("grad", "loose", "bad_dtype", "reset"):
        embeddings.requires_grad_()
    return embeddings, labels


def record_call(
    embeddings: torch.Tensor, gather: Callable, loss: Callable, counter: CollectiveCounter
) -> Dict:
    """``gather()`` (returning the gathered rows, labels and extra entries to record) and
    the backward of ``loss(rows, extra)``, with their collectives and host syncs counted;
    or the ``RankMismatchError`` it raised."""
    try:
        with count_host_syncs() as syncs:
            gathered, gathered_labels, extra = gather()
    except distributed.RankMismatchError as error:
        return {"error": str(error), "forward": counter.take()}
    record = {
        "rows": gathered.detach().clone(),
        "labels": gathered_labels,
        "forward": counter.take(),
        "syncs": syncs.total,
        **extra,
    }
    if gathered.requires_grad:
        with count_host_syncs() as syncs:
            loss(gathered.float(), extra).backward()
        record["grad"] = embeddings.grad
        record["syncs"] += syncs.total
    record["backward"] = counter.take()
    return record


def _one_call(rank: int, call: int, rows: int, kind: str, counter: CollectiveCounter) -> Dict:
    embeddings, labels = _inputs(rank, call, rows, kind)
    if kind == "reset":
        distributed.reset_gathers()

    def gather():
        equal_rows = kind != "loose"
        return (*distributed.gather_rows(embeddings, labels, equal_rows=equal_rows), {})

    return record_call(embeddings, gather, lambda rows, _: loss_of(rows), counter)


def records_with_counts(results: list, name: str, expected: int, raising: set) -> list:
    """Every rank's record of call ``name``, after asserting that it took ``expected``
    forward ``all_gather`` calls and nothing else, and raised exactly when ``name`` is in
    ``raising``; the records without an error."""
    found = []
    for rank, ranks_results in enumerate(results):
        record = ranks_results[name]
        assert record["forward"].get("all_gather", 0) == expected, (rank, record["forward"])
        assert set(record["forward"]) <= {"all_gather"}, record["forward"]
        assert ("error" in record) == (name in raising), (rank, record.get("error"))
        if "error" not in record:
            found.append(record)
    return found


def run_calls(rank: int, world: int, store_file: str, calls: list, one_call: Callable) -> Dict:
    """Joins the group (a short collective timeout turns a rank left waiting into an error
    instead of a hang), forces the device path and records ``one_call`` for every call of
    ``calls`` (``(name, rows per rank, layout, ...)``)."""
    gloo_init(rank, world, store_file, timeout_s=60)
    os.environ[distributed.FORCE_DEVICE_PATH_ENV] = "1"
    counter = CollectiveCounter()
    return {
        name: one_call(rank, call, sizes[rank], kind, counter)
        for call, (name, sizes, kind, _) in enumerate(calls)
    }


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point."""
    results = run_calls(rank, world, store_file, CALLS, _one_call)
    try:
        distributed.raise_pending_gather_errors()
        results["flush"] = {}
    except distributed.RankMismatchError as error:
        results["flush"] = {"error": str(error)}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    gloo_finish()
