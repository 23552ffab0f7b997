"""Cases for ``quaterion.distributed`` on 2 gloo ranks: each rank runs every case in order
and records what it got (a result or the exception it raised) in ``rank<r>.pt``.

A case that raises on every rank leaves the process group usable, so the cases after it
also check that no rank was left behind in a collective.
"""

import gc
import os
import time
import weakref
from datetime import timedelta
from typing import Callable, Dict, List, Tuple

import torch
import torch.distributed as dist

from quaterion import distributed

SIZES = (5, 3)  # rows per rank in the uneven case


def rank_tensors(rank: int, rows: int, seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """Rank ``rank``'s inputs: float32 ``(rows, 4)``, int64 ``(rows,)``, float16
    ``(rows, 2, 3)``, bool ``(rows, 1)``; different values on every rank."""
    generator = torch.Generator().manual_seed(100 * seed + rank)
    return (
        torch.randn(rows, 4, generator=generator),
        torch.randint(-(2**40), 2**40, (rows,), generator=generator),
        torch.randn(rows, 2, 3, generator=generator).half(),
        torch.rand(rows, 1, generator=generator) > 0.5,
    )


def _uneven(rank):
    return distributed.gather_rows(*rank_tensors(rank, SIZES[rank]))


def _equal(rank):
    return distributed.gather_rows(*rank_tensors(rank, 4, seed=1))


def _empty_rank(rank):
    return distributed.gather_rows(*rank_tensors(rank, (0, 2)[rank], seed=2))


def _gradient(rank):
    """Both ranks compute the same loss of the gathered rows; backward hands each rank
    ``world x`` the gradient of its own rows."""
    rows = rank_tensors(rank, SIZES[rank])[0].requires_grad_()
    (gathered,) = distributed.gather_rows(rows)
    weights = torch.arange(gathered.numel(), dtype=torch.float32).reshape(gathered.shape)
    (gathered * weights).sum().backward()
    return gathered.detach(), rows.grad


def _empty_rank_other_layout(rank):
    """Rank 0 holds no rows, in float64 of another width (and int32 labels): it takes rank
    1's layout, and backward still reaches both ranks."""
    if rank == 0:
        rows = torch.zeros(0, 7, dtype=torch.float64, requires_grad=True)
        labels = torch.zeros(0, dtype=torch.int32)
    else:
        rows = torch.arange(8.0).reshape(2, 4).requires_grad_()
        labels = torch.tensor([3, 4])
    gathered, gathered_labels = distributed.gather_rows(rows, labels)
    (gathered * 2).sum().backward()
    return gathered.detach(), gathered_labels, rows.grad


def _width(rank):
    return distributed.gather_rows(torch.zeros(3, (4, 5)[rank]))


def _dtype(rank):
    return distributed.gather_rows(torch.zeros(3, 4, dtype=(torch.float32, torch.float64)[rank]))


def _count(rank):
    tensors = (torch.zeros(3, 4), torch.zeros(3))
    return distributed.gather_rows(*tensors[: rank + 1])


def _rows_on_one_rank(rank):
    return distributed.gather_rows(torch.zeros(3, 4), torch.zeros(3 + rank))


def _no_tensors_on_one_rank(rank):
    return distributed.gather_rows(*[torch.zeros(3, 4)][: 1 - rank])


def _requires_grad(rank):
    return distributed.gather_rows(torch.zeros(3, 4, requires_grad=bool(rank)))


def _rank_zero_fails(rank):
    def failing():
        raise ValueError("boom on rank zero")

    return distributed.on_rank_zero_then_wait(failing)


def _rank_zero_writes(rank, out_dir):
    path = os.path.join(out_dir, "written_by_rank_zero")

    def write():
        time.sleep(0.5)  # rank 1 must not return before this
        with open(path, "w") as file:
            file.write("done")
        return "result"

    return distributed.on_rank_zero_then_wait(write), os.path.isfile(path)


def _fails_on_rank_one(rank):
    with distributed.fail_together("the block"):
        if rank == 1:
            raise KeyError("missing on rank one")
    return "finished"


def _stack(rank):
    return distributed.stack_across_ranks(torch.tensor([rank + 0.5, float("nan")]))


CASES: Dict[str, Callable] = {
    "uneven": _uneven,
    "width": _width,
    "empty_rank_other_layout": _empty_rank_other_layout,
    "equal": _equal,
    "dtype": _dtype,
    "empty_rank": _empty_rank,
    "count": _count,
    "gradient": _gradient,
    "rows_on_one_rank": _rows_on_one_rank,
    "requires_grad": _requires_grad,
    "no_tensors_on_one_rank": _no_tensors_on_one_rank,
    "rank_zero_fails": _rank_zero_fails,
    "rank_zero_writes": _rank_zero_writes,
    "fails_on_rank_one": _fails_on_rank_one,
    "stack": _stack,
}


def run_rank(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Spawned entry point. A short collective timeout turns a regression (a rank left
    waiting) into an error instead of a hang."""
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store_file}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    results: Dict[str, Dict] = {}
    for name, case in CASES.items():
        start = time.monotonic()
        args: List = [rank, out_dir] if name == "rank_zero_writes" else [rank]
        try:
            results[name] = {"value": case(*args)}
        except Exception as error:  # recorded for the test to check
            results[name] = {"error": type(error).__name__, "message": str(error)}
        results[name]["seconds"] = time.monotonic() - start
    world = weakref.ref(dist.group.WORLD)
    dist.destroy_process_group()
    gc.collect()
    # nothing of ours keeps the destroyed group (and its gloo threads) alive until exit
    results["group_released"] = world() is None
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
