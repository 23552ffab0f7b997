"""Per-step cost of ``gather_across_ranks`` on 2 CPU (gloo) processes, as ratios.

Each rank runs DDP training steps of a small MLP encoder (``in -> 512 -> d``) with
``TripletLoss(mining="hard")`` and ``MultipleNegativesRankingLoss``, alternating, in the
same processes, steps without and with gathering, so both see the same machine load. A
step is forward, loss, backward (with DDP's gradient all-reduce) and an SGD update. The
median step time of rank 0 is reported with the ratio gathered / local, the forward
collectives of a gathered step after warm-up (``all_gather`` calls: ``gather_rows`` sends
one per call once the layout is agreed, see :func:`quaterion.distributed.gather_rows`), plus
what the
gather moves and holds: ``world x B x d`` floats per gathered tensor instead of ``B x d``,
and a ``world*B x world*B`` distance matrix instead of ``B x B``.

Then, per ``gather_rows`` call (forward and backward of ``B x d`` float32 rows with int64
labels, after the first call), the forward collectives, the host syncs counted by
:func:`quaterion.utils.testing.count_host_syncs` and the median time, for three paths:
``host`` (CPU tensors: one collective, the row counts read on the host for free),
``device, checked`` (the device path with ``equal_rows=False``: the full check on every
call, what CUDA tensors took before ``equal_rows`` existed) and ``device, equal_rows``
(one collective, nothing read on the host); then ranks with different row counts (rank 1
sends half the rows) through :func:`quaterion.distributed.gather_rows_padded`, what the
losses use: ``host, unequal`` (compact rows) and ``device, unequal`` (one collective of
rows padded to the agreed capacity, the mask built on the device, nothing read). There is
no GPU here: the device path is forced on CPU tensors over gloo
(``QUATERION_FORCE_DEVICE_GATHER=1``), which runs the same code except the NCCL transport.

Run: ``PYTHONPATH=. python -m benchmarks.gather [--steps N] [--calls N] [--quick]``.
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from examples.cli_types import positive_int
from quaterion import distributed
from quaterion.loss import MultipleNegativesRankingLoss, TripletLoss
from quaterion.utils.testing import count_host_syncs

WORLD = 2
IN_DIM = 256


def _loss(name: str, gather: bool) -> nn.Module:
    if name == "triplet_hard":
        return TripletLoss(mining="hard", gather_across_ranks=gather)
    return MultipleNegativesRankingLoss(gather_across_ranks=gather)


def _step(ddp, optimizer, loss_fn, features, targets) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(embeddings=ddp(features), **targets)
    loss.backward()
    optimizer.step()
    dist.barrier()  # the step ends when both ranks are done
    return time.perf_counter() - start


def _targets(name: str, batch: int) -> dict:
    if name == "triplet_hard":
        return {"groups": torch.arange(batch) % max(2, batch // 4)}
    n = batch // 2
    return {"pairs": torch.stack([torch.arange(n), torch.arange(n) + n], dim=1)}


class _Counter:
    """Counts calls of ``dist.all_gather`` and ``dist.all_gather_object`` (the forward
    collectives of ``gather_rows``; DDP's own all-reduce runs in C++ and is not counted)."""

    def __init__(self) -> None:
        self.calls = 0
        for name in ("all_gather", "all_gather_object"):
            setattr(dist, name, self._wrap(getattr(dist, name)))

    def _wrap(self, original):
        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        return counted


def _worker(rank: int, store: str, configs, steps: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    counter = _Counter()
    torch.manual_seed(0)
    rows = []
    for name, batch, dim in configs:
        encoder = nn.Sequential(nn.Linear(IN_DIM, 512), nn.ReLU(), nn.Linear(512, dim))
        ddp = DistributedDataParallel(encoder)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=1e-3)
        features = torch.randn(batch, IN_DIM)
        targets = _targets(name, batch)
        losses = {False: _loss(name, False), True: _loss(name, True)}
        times = {False: [], True: []}
        collectives = []
        for i in range(steps + 3):  # 3 warm-up steps each
            for gather in (False, True) if i % 2 == 0 else (True, False):
                before = counter.calls
                elapsed = _step(ddp, optimizer, losses[gather], features, targets)
                if i >= 3:
                    times[gather].append(elapsed)
                    if gather:
                        collectives.append(counter.calls - before)
        local, gathered = statistics.median(times[False]), statistics.median(times[True])
        rows.append((name, batch, dim, local, gathered, max(collectives)))
    if rank == 0:
        torch.save(rows, out)
    dist.destroy_process_group()


# (name, device path forced, how it gathers, rank 1 sends half the rows after the first call)
PATHS = [
    ("host", False, "checked", False),
    ("device, checked", True, "checked", False),
    ("device, equal_rows", True, "equal_rows", False),
    ("host, unequal", False, "padded", True),
    ("device, unequal", True, "padded", True),
]


def _gather_once(embeddings, labels, how: str):
    """One gather the way ``how`` names; returns the gathered embeddings."""
    if how == "padded":
        (gathered, _), valid = distributed.gather_rows_padded(embeddings, labels)
        return torch.where(valid[:, None], gathered, 0)
    return distributed.gather_rows(embeddings, labels, equal_rows=how == "equal_rows")[0]


def _gather_calls(rank: int, store: str, batch: int, dim: int, calls: int, out: str) -> None:
    """Per path: forward collectives, host syncs and median time of ``calls`` calls."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    counter = _Counter()
    rows = []
    for name, forced, how, unequal in PATHS:
        os.environ[distributed.FORCE_DEVICE_PATH_ENV] = "1" if forced else "0"
        distributed.reset_gathers()  # each path agrees its own layout at its first call
        collectives, syncs, times = [], [], []
        for call in range(calls + 1):
            n = batch // 2 if unequal and call > 0 and rank == 1 else batch
            embeddings = torch.randn(n, dim).requires_grad_()
            labels = torch.arange(n)
            before = counter.calls
            dist.barrier()
            start = time.perf_counter()
            with count_host_syncs() as counted:
                gathered = _gather_once(embeddings, labels, how)
            forward = counter.calls - before
            gathered.sum().backward()
            elapsed = time.perf_counter() - start
            if call > 0:  # the first call agrees on the layout
                collectives.append(forward)
                syncs.append(counted.total)
                times.append(elapsed)
        distributed.raise_pending_gather_errors()
        rows.append((name, max(collectives), max(syncs), statistics.median(times)))
    if rank == 0:
        torch.save(rows, out)
    dist.destroy_process_group()


def _spawn(worker, args) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.pt")
        mp.start_processes(
            worker,
            args=(os.path.join(tmp, "store"), *args, out),
            nprocs=WORLD,
            start_method="spawn",
        )
        return torch.load(out, weights_only=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=40, help="measured steps per setting")
    parser.add_argument(
        "--calls", type=positive_int, default=200, help="gather_rows calls per path"
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps and settings")
    args = parser.parse_args(argv)
    configs = [
        (name, batch, dim)
        for name in ("triplet_hard", "mnrl")
        for batch in ((64,) if args.quick else (32, 128, 512))
        for dim in (128,)
    ]
    steps = 10 if args.quick else args.steps
    rows = _spawn(_worker, (configs, steps))
    print(f"{WORLD} CPU processes (gloo), 1 thread each; median step time of rank 0")
    print(
        f"{'loss':<14}{'B/rank':>7}{'d':>5}{'local ms':>10}{'gather ms':>11}{'ratio':>7}"
        f"{'gathered KiB':>14}{'collectives':>13}"
    )
    for name, batch, dim, local, gathered, collectives in rows:
        moved_kib = WORLD * batch * dim * 4 / 1024
        print(
            f"{name:<14}{batch:>7}{dim:>5}{local * 1e3:>10.2f}{gathered * 1e3:>11.2f}"
            f"{gathered / local:>7.2f}{moved_kib:>14.0f}{collectives:>13}"
        )
    print("collectives: forward all_gather calls of a gathered step after warm-up (max)")
    batch, dim, calls = 128, 128, 20 if args.quick else args.calls
    print(f"\ngather per call, {batch} x {dim} float32 rows + int64 labels per rank:")
    print(f"{'path':<20}{'collectives':>13}{'host syncs':>12}{'median ms':>11}")
    for name, collectives, syncs, median in _spawn(_gather_calls, (batch, dim, calls)):
        print(f"{name:<20}{collectives:>13}{syncs:>12}{median * 1e3:>11.3f}")
    print(
        "collectives: forward all_gather calls per call after the first (max); host syncs: "
        "count_host_syncs in forward (max)"
    )


if __name__ == "__main__":
    main()
