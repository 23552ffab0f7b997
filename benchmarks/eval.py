"""Exact evaluation at scale vs a bare PyTorch baseline (not a test).

Times exact ``RetrievalRPrecision`` (groups) and ``RetrievalReciprocalRank`` (pairs) over
``--n`` random embeddings (every item queries all items) against a bare PyTorch blocked
cosine matmul + ``torch.topk`` over the same data, in the same process, and prints the time
ratios and the peak resident memory (VmHWM, reset between phases) of each phase, the memory
the phase adds to what the process held before it ("added") and that figure minus the
smallest baseline's ("extra": what exact evaluation costs beyond the working set of the
blocked matmul + top-k).
The process re-executes itself with glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` so that every
freed tensor is returned to the system and each phase's figure is its own.

Phase ``evaluator-groups`` is ``Evaluator(RetrievalRPrecision(), GroupSampler)`` over the
whole dataset (encode, draw, one blocked pass).

Phases ``evaluator-3`` and ``separate-3`` compare one ``Evaluator`` holding three pair metrics
(precision@1, precision@10, reciprocal rank: one draw, one blocked distance pass) with three
single-metric ``Evaluator`` runs over the same pairs (each encodes and scans on its own).

Run: ``.venv/bin/python -m benchmarks.eval`` (``--n 20000`` for a quick run).
"""

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F

from examples.cli_types import positive_int, random_seed
from quaterion.eval import blocks
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import GroupSampler, PairSampler

from benchmarks._common import current_mib, peak_mib, reset_peak


def _timed(fn: Callable[[], object]) -> tuple[object, float, float, float, float]:
    """``(value, wall seconds, process CPU seconds, peak RSS MiB, MiB added to the RSS
    before the phase)``."""
    gc.collect()
    reset_peak()
    before = current_mib()
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = peak_mib()
    return value, wall, cpu, peak, peak - before


def baseline(embeddings: torch.Tensor, k: int, rows: int, reuse: bool = False) -> torch.Tensor:
    """Bare PyTorch: normalise, then per row block one matmul and one top-k.

    ``reuse=True`` writes every block's scores into one buffer (``out=``; the last, shorter
    block into its first rows).
    """
    normed = F.normalize(embeddings, dim=1)
    last, buffer = torch.empty(0), None
    for start in range(0, normed.shape[0], rows):
        block = normed[start : start + rows]
        out = buffer[: block.shape[0]] if reuse and buffer is not None else None
        scores = torch.matmul(block, normed.T, out=out)
        buffer = scores if reuse and buffer is None else buffer
        last = torch.topk(scores, k, dim=1).indices
    return last


class RowModel:
    """Stands in for a ``SimilarityModel``: objects are embedding rows, encode stacks them."""

    def encode(self, objs, batch_size: int, to_numpy: bool) -> torch.Tensor:
        return torch.stack(objs)


def three_metrics() -> dict:
    return {
        "precision@1": RetrievalPrecision(k=1),
        "precision@10": RetrievalPrecision(k=10),
        "reciprocal_rank": RetrievalReciprocalRank(),
    }


def evaluate_together(dataset: list) -> dict:
    sampler = PairSampler(encode_batch_size=8192, log_progress=False)
    return Evaluator(three_metrics(), sampler).evaluate(dataset, RowModel())


def evaluate_separately(dataset: list) -> dict:
    result = {}
    for name, metric in three_metrics().items():
        sampler = PairSampler(encode_batch_size=8192, log_progress=False)
        result.update(Evaluator({name: metric}, sampler).evaluate(dataset, RowModel()))
    return result


def make_data(n: int, dim: int, group_size: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    groups = torch.arange(n) // group_size
    centers = torch.randn(int(groups.max()) + 1, dim, generator=generator)
    embeddings = centers[groups] + 1.5 * torch.randn(n, dim, generator=generator)
    half = n // 2
    pairs = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1)
    partners = embeddings.clone()
    partners[half : 2 * half] = embeddings[:half] + 2.5 * torch.randn(
        half, dim, generator=generator
    )
    return embeddings, groups, partners[: 2 * half], pairs


def evaluate_groups(dataset: list) -> dict:
    sampler = GroupSampler(sample_size=len(dataset), encode_batch_size=8192, log_progress=False)
    return Evaluator({"r_precision": RetrievalRPrecision()}, sampler).evaluate(dataset, RowModel())


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=200_000, help="number of embeddings")
    parser.add_argument("--dim", type=positive_int, default=128)
    parser.add_argument("--group-size", type=positive_int, default=10)
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (1 by default: on shared cores, thread barriers dominate timings)",
    )
    parser.add_argument(
        "--phases",
        default=(
            "baseline,baseline-reused,rprecision,reciprocal-rank,evaluator-groups,"
            "evaluator-3,separate-3"
        ),
        help="comma-separated subset of the phases to run (ratios are to the first one run)",
    )
    args = parser.parse_args(argv)
    if argv is None and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.eval", *sys.argv[1:]], env)

    torch.set_num_threads(args.threads)
    embeddings, groups, pair_embeddings, pairs = make_data(
        args.n, args.dim, args.group_size, args.seed
    )
    rows = blocks.block_rows(args.n)
    print(
        f"n={args.n} dim={args.dim} group_size={args.group_size} threads={torch.get_num_threads()} "
        f"block_rows={rows} RSS before phases={current_mib():.0f} MiB"
    )
    print(
        f"{'phase':<31}{'wall s':>8}{'ratio':>7}{'cpu s':>8}{'ratio':>7}{'peak MiB':>9}"
        f"{'added':>7}{'extra':>7}  value"
    )
    scores, subgroups = torch.ones(pairs.shape[0]), torch.zeros(pair_embeddings.shape[0])
    phases = {
        "baseline": ("baseline matmul+topk", lambda: baseline(embeddings, args.group_size, rows)),
        "baseline-reused": (
            "baseline matmul(out=)+topk",
            lambda: baseline(embeddings, args.group_size, rows, reuse=True),
        ),
        "rprecision": (
            "RetrievalRPrecision exact",
            lambda: RetrievalRPrecision().compute(embeddings, groups),
        ),
        "reciprocal-rank": (
            "RetrievalReciprocalRank exact",
            lambda: RetrievalReciprocalRank().compute(pair_embeddings, scores, pairs, subgroups),
        ),
    }
    dataset = [
        SimilarityPairSample(pair_embeddings[a], pair_embeddings[b], 1.0, 0)
        for a, b in pairs.tolist()
    ]
    group_dataset = [
        SimilarityGroupSample(row, group) for row, group in zip(embeddings, groups.tolist())
    ]
    phases["evaluator-groups"] = (
        "Evaluator, r-precision, groups",
        lambda: evaluate_groups(group_dataset),
    )
    phases["evaluator-3"] = ("Evaluator, 3 metrics at once", lambda: evaluate_together(dataset))
    phases["separate-3"] = ("3 single-metric Evaluators", lambda: evaluate_separately(dataset))
    chosen = [key.strip() for key in args.phases.split(",") if key.strip()]
    unknown = sorted(set(chosen) - set(phases))
    if unknown:
        parser.error(f"unknown --phases {unknown}; choose from {sorted(phases)}")
    base_wall = base_cpu = 0.0
    base_added = None
    peak = 0.0
    for key in chosen:
        name, fn = phases[key]
        value, wall, cpu, mem, added = _timed(fn)
        peak = max(peak, mem)
        if not base_wall:
            base_wall, base_cpu = wall, cpu
        if key.startswith("baseline"):  # the floor: the smallest baseline working set
            base_added = added if base_added is None else min(base_added, added)
        extra = "" if base_added is None else f"{added - base_added:.0f}"
        if key.startswith("baseline"):
            shown = ""
        elif isinstance(value, dict):
            shown = " ".join(f"{float(v):.4f}" for v in value.values())
        else:
            shown = f"{float(value):.4f}"
        print(
            f"{name:<31}{wall:>8.1f}{wall / base_wall:>7.2f}{cpu:>8.1f}"
            f"{cpu / base_cpu:>7.2f}{mem:>9.0f}{added:>7.0f}{extra:>7}  {shown}"
        )
    print(f"peak RSS over the phases: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
