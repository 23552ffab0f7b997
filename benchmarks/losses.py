"""Group losses and MultipleNegativesRankingLoss vs pytorch-metric-learning (not a test).

For every group loss (each mining mode of ``TripletLoss`` and ``OnlineContrastiveLoss``) and
``MultipleNegativesRankingLoss`` this times one forward + backward pass on random ``d=256``
embeddings at batch 256, 1024 and 4096 (groups of 4), next to pytorch-metric-learning doing
the same job (its loss plus the equivalent miner), and records the peak resident memory each
pass adds. It prints the ratios quaterion / PML (below 1: quaterion is faster or smaller),
and the host synchronisations of one pass on each side (``quaterion.utils.testing``: the
operations that would make a GPU host wait; counted on CPU, untimed).

Where PML has no such loss the baseline is the plain PyTorch formula: ``SoftmaxLoss``,
``CenterLoss`` and ``MultipleNegativesRankingLoss`` (sentence-transformers' formula,
cross-entropy over ``scale * cos(a_i, b_j)``; PML's nearest job, NT-Xent, needs 17 GiB at
B=1024). A PML run that would build every triplet of a batch (``B^3`` index
triples: 64 GiB of indices at B=1024) is skipped and shown as ``-``.

Memory: the process re-executes itself with glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` so
every tensor above 128 KiB is its own mapping, returned to the system when freed; the peak
resident memory (VmHWM, reset before each pass) then measures what a pass allocates.
Timings run under the same setting for both sides.

Run: ``python -m benchmarks.losses`` (``--batches 256,1024`` for a quicker run,
``--csv PATH`` to save the table for ``docs/scripts/plot_loss_benchmark.py``).
"""

import argparse
import csv
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners

from examples.cli_types import positive_int
from benchmarks._common import current_mib, peak_mib, reset_peak
import quaterion.loss as q
from quaterion.train.fit_checks import check_batch_labels
from quaterion.utils.testing import count_host_syncs

DIM = 256
GROUP_SIZE = 4
# PML runs that enumerate more triplets than this are skipped (index memory, hours of time).
MAX_PML_TRIPLETS = 2 * 10**8


class Job:
    """One loss on one batch: ``ours(emb, groups)`` and ``theirs(emb, groups)`` closures.

    ``triplets``: whether the PML side enumerates all ``B^3`` triplets.
    """

    def __init__(self, name: str, ours: Callable, theirs: Optional[Callable], triplets=False):
        self.name, self.ours, self.theirs, self.triplets = name, ours, theirs, triplets


def _classifier(cls, pml_cls, batch: int, **pml_kwargs):
    """Ours and PML's classifier loss with the same weights (``kernel`` is ``(d, classes)``)."""
    classes = batch // GROUP_SIZE
    ours = cls(DIM, classes)
    theirs = pml_cls(num_classes=classes, embedding_size=DIM, **pml_kwargs)
    with torch.no_grad():
        theirs.W.copy_(ours.kernel)
    return ours, theirs


def _plain_softmax(batch: int):
    ours = q.SoftmaxLoss(DIM, batch // GROUP_SIZE)
    kernel = ours.kernel.detach().clone().requires_grad_()
    return ours, lambda emb, groups: F.cross_entropy(emb @ kernel / 0.05, groups)


def _plain_center(batch: int):
    ours = q.CenterLoss(DIM, batch // GROUP_SIZE)
    centers = ours.centers.detach().clone().requires_grad_()
    return ours, lambda emb, groups: 0.5 * ((emb - centers[groups]) ** 2).sum(1).mean()


def _with_miner(loss, miner):
    return lambda emb, groups: loss(emb, groups, miner(emb, groups))


def jobs(batch: int) -> list[Job]:
    arcface, pml_arcface = _classifier(
        q.ArcFaceLoss, losses.ArcFaceLoss, batch, margin=math.degrees(0.5), scale=64
    )
    cosface, pml_cosface = _classifier(
        q.CosFaceLoss, losses.CosFaceLoss, batch, margin=0.35, scale=64
    )
    softmax, plain_softmax = _plain_softmax(batch)
    center, plain_center = _plain_center(batch)
    triplet = losses.TripletMarginLoss(margin=0.5)
    contrastive = losses.ContrastiveLoss(pos_margin=0, neg_margin=0.5)
    return [
        Job("ArcFaceLoss", arcface, pml_arcface),
        Job("CosFaceLoss", cosface, pml_cosface),
        Job("SoftmaxLoss (vs plain torch)", softmax, plain_softmax),
        Job("CenterLoss (vs plain torch)", center, plain_center),
        Job("CircleLoss", q.CircleLoss(), losses.CircleLoss(m=0.25, gamma=256)),
        Job("FastAPLoss", q.FastAPLoss(), losses.FastAPLoss(num_bins=10)),
        Job(
            "TripletLoss hard",
            q.TripletLoss(mining="hard"),
            _with_miner(triplet, miners.BatchHardMiner()),
        ),
        Job(
            "TripletLoss semi_hard",
            q.TripletLoss(mining="semi_hard"),
            _with_miner(triplet, miners.TripletMarginMiner(0.5, type_of_triplets="semihard")),
            triplets=True,
        ),
        Job("TripletLoss all", q.TripletLoss(mining="all"), triplet, triplets=True),
        Job(
            "OnlineContrastiveLoss hard",
            q.OnlineContrastiveLoss(mining="hard"),
            _with_miner(contrastive, miners.BatchHardMiner()),
        ),
        Job("OnlineContrastiveLoss all", q.OnlineContrastiveLoss(mining="all"), contrastive),
    ]


def mnrl_job() -> Job:
    """MNRL on ``B/2`` pairs against the plain formula (sentence-transformers' definition)."""
    ours = q.MultipleNegativesRankingLoss(scale=20.0)

    def run_ours(emb: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        half = emb.shape[0] // 2
        pairs = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1)
        # positive pairs: Quaterion.fit checks the scores on the CPU batch before the step
        return ours(emb, pairs, None, torch.zeros(emb.shape[0]))

    def run_plain(emb: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        half = emb.shape[0] // 2
        a, b = F.normalize(emb[:half], dim=1), F.normalize(emb[half:], dim=1)
        return F.cross_entropy(20.0 * a @ b.T, torch.arange(half))

    return Job("MNRL (vs plain torch)", run_ours, run_plain)


def measure(fn: Callable, emb: torch.Tensor, groups: torch.Tensor, repeats: int):
    """``(best seconds of forward + backward, peak RSS MiB added)`` over ``repeats`` runs."""
    best, added = float("inf"), 0.0
    for _ in range(repeats):
        x = emb.detach().clone().requires_grad_()
        gc.collect()
        reset_peak()
        before = current_mib()
        start = time.perf_counter()
        fn(x, groups).backward()
        best = min(best, time.perf_counter() - start)
        added = max(added, peak_mib() - before)
        del x
    return best, added


def syncs(fn: Callable, emb: torch.Tensor, groups: torch.Tensor) -> int:
    """Host synchronisations of one forward + backward pass (an untimed extra run)."""
    x = emb.detach().clone().requires_grad_()
    with count_host_syncs() as count:
        fn(x, groups).backward()
    return count.total


def run(batches: list[int], repeats: int) -> list[dict]:
    rows = []
    for batch in batches:
        generator = torch.Generator().manual_seed(batch)
        groups = torch.arange(batch) // GROUP_SIZE
        centers = torch.randn(batch // GROUP_SIZE, DIM, generator=generator)
        emb = centers[groups] + torch.randn(batch, DIM, generator=generator)
        for job in jobs(batch) + [mnrl_job()]:
            # what Quaterion.fit does before the transfer: class ids checked on the CPU batch
            check_batch_labels(job.ours, (None, {"groups": groups}))
            ours_s, ours_mib = measure(job.ours, emb, groups, repeats)
            skip = job.triplets and batch**3 > MAX_PML_TRIPLETS
            theirs_s, theirs_mib = (
                (float("nan"), float("nan")) if skip else measure(job.theirs, emb, groups, repeats)
            )
            row = {
                "loss": job.name,
                "batch": batch,
                "ours_s": ours_s,
                "pml_s": theirs_s,
                "time_ratio": ours_s / theirs_s,
                "ours_mib": ours_mib,
                "pml_mib": theirs_mib,
                "memory_ratio": ours_mib / max(theirs_mib, 1.0),
                "ours_syncs": syncs(job.ours, emb, groups),
                "pml_syncs": float("nan") if skip else syncs(job.theirs, emb, groups),
            }
            rows.append(row)
            print(_format(row), flush=True)
    return rows


def _number(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


HEADER = (
    f"{'loss':<31}{'batch':>6}{'ours s':>9}{'PML s':>9}{'ratio':>7}"
    f"{'ours MiB':>10}{'PML MiB':>9}{'ratio':>7}{'syncs':>7}{'PML':>5}"
)


def _format(row: dict) -> str:
    return (
        f"{row['loss']:<31}{row['batch']:>6}{row['ours_s']:>9.3f}"
        f"{_number(row['pml_s'], '>9.3f'):>9}{_number(row['time_ratio'], '>7.2f'):>7}"
        f"{row['ours_mib']:>10.0f}{_number(row['pml_mib'], '>9.0f'):>9}"
        f"{_number(row['memory_ratio'], '>7.2f'):>7}"
        f"{row['ours_syncs']:>7}{_number(row['pml_syncs'], '>5.0f'):>5}"
    )


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256,1024,4096")
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="timed runs per entry (best)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (1 by default: on shared cores, thread barriers dominate timings)",
    )
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.csv and (
        os.path.isdir(args.csv) or not os.path.isdir(os.path.dirname(os.path.abspath(args.csv)))
    ):
        parser.error(f"--csv {args.csv}: pass a file name in an existing directory")
    if argv is None and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.losses", *sys.argv[1:]], env)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    print(f"d={DIM} group size={GROUP_SIZE} threads={torch.get_num_threads()}")
    print("ratio = quaterion / pytorch-metric-learning (time: best of repeats; memory: peak")
    print("resident memory the pass adds). '-': PML would enumerate all B^3 triplets.")
    print("syncs: host synchronisations of one forward + backward pass (quaterion, PML).")
    print(HEADER)
    rows = run(batches, args.repeats)
    if args.csv:
        from quaterion_models.utils import atomic_write

        with atomic_write(args.csv, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
