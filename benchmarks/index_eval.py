"""Peak memory and time of ``IndexEvaluator`` at large N (not a test).

``--n`` items (default 1,000,000) of dimension ``--dim`` in groups of about ``--group-size``
(clustered: each group around its own centre) are encoded by a stand-in servable (a record
is a row number; its vector, the group's centre plus Gaussian noise hashed from the row number,
is made when it is encoded, so the data costs only the centres and the group ids), written to
an embedded index, the HNSW graph is built (``--m``, ``--ef-construct``; the build dominates
the time), and R-precision is computed for ``--sample-size`` sampled queries through the
index, with the recall of the index against exact top-10 on ``--recall-queries`` of them.

The index is created with ``EmbeddedBackend(low_memory=True)`` (no write-ahead log, cold
mmaps); ``--keep-wal`` measures the default shard instead.

Printed: the process's peak resident memory during ``evaluate()`` (``VmHWM``: everything,
Python, torch, Qdrant Edge and its memory-mapped files included), its anonymous and
file-backed parts at the peak (sampled every 50 ms by a child process), the time, the recall,
how many vectors the graph holds, and the load average before and after. Run:
``.venv/bin/python -m benchmarks.index_eval --n 200000``.
"""

import argparse
import os
import random
import tempfile
import time

import numpy as np
import torch

from examples.cli_types import non_negative_int, positive_int, random_seed
from benchmarks._common import FrozenEncoder, current_mib, peak_mib, reset_peak
from benchmarks._memory import PeakWatcher
from quaterion.dataset.similarity_samples import SimilarityGroupSample
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.index_eval import IndexEvaluator
from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead
from quaterion_models.index import SimilarityIndex
from quaterion_models.index.embedded import EmbeddedBackend


#: splitmix64's multipliers as signed 64-bit ints (torch has no uint64 arithmetic).
_MIX = (0xBF58476D1CE4E5B9 - 2**64, 0x94D049BB133111EB - 2**64)


def _shift(bits: torch.Tensor, count: int) -> torch.Tensor:
    """Logical right shift of int64 ``bits``."""
    return (bits >> count) & ((1 << (64 - count)) - 1)


def row_noise(rows: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """float32 ``(len(rows), dim)`` standard normal noise, a pure function of (seed, row,
    column): splitmix64's finaliser hashes each counter, Box-Muller turns two hashes into a
    normal value. No table of N rows is ever held."""
    counters = rows[:, None] * (2 * dim) + torch.arange(2 * dim) + seed * 0x9E3779B97F4A7C15 % 2**61
    bits = (counters ^ _shift(counters, 30)) * _MIX[0]
    bits = (bits ^ _shift(bits, 27)) * _MIX[1]
    bits = bits ^ _shift(bits, 31)
    uniform = (_shift(bits, 40).double() + 0.5) / 2**24  # 24 bits in (0, 1)
    radius = torch.sqrt(-2.0 * torch.log(uniform[:, :dim]))
    return (radius * torch.cos(2 * torch.pi * uniform[:, dim:])).float()


class RowEncoder(FrozenEncoder):
    """A record is a row number; its encoding is its group's centre plus ``noise`` times
    :func:`row_noise`, made on demand (the data costs the centres and the group ids)."""

    def __init__(self, centres: torch.Tensor, groups: torch.Tensor, noise: float, seed: int):
        super().__init__(centres.shape[1], collate=torch.as_tensor)
        self.centres, self.groups, self.noise, self.seed = centres, groups, noise, seed

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        noise = row_noise(rows, self.centres.shape[1], self.seed)
        return self.centres[self.groups[rows]] + self.noise * noise


class GroupRows:
    """``SimilarityGroupSample(obj=i, group=groups[i])`` made on demand."""

    def __init__(self, groups: np.ndarray):
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> SimilarityGroupSample:
        if i >= len(self.groups):
            raise IndexError(i)
        return SimilarityGroupSample(obj=i, group=int(self.groups[i]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=1_000_000)
    parser.add_argument("--dim", type=positive_int, default=32)
    parser.add_argument("--group-size", type=positive_int, default=10)
    parser.add_argument("--sample-size", type=positive_int, default=2000)
    parser.add_argument("--recall-queries", type=positive_int, default=200)
    parser.add_argument("--m", type=non_negative_int, default=16)
    parser.add_argument("--ef-construct", type=positive_int, default=64)
    parser.add_argument("--hnsw-ef", type=positive_int, default=None)
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument(
        "--keep-wal", action="store_true", help="default shard (write-ahead log, cached mmaps)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    num_groups = max(1, args.n // args.group_size)
    groups = rng.integers(0, num_groups, args.n)
    centres = torch.from_numpy(rng.standard_normal((num_groups, args.dim), dtype=np.float32))
    encoder = RowEncoder(centres, torch.from_numpy(groups), 0.5, args.seed)
    model = SimilarityModel(encoders=encoder, head=EmptyHead(args.dim))
    data_mib = (centres.nbytes + groups.nbytes) / 2**20
    print(f"N={args.n} dim={args.dim} groups={num_groups} sample={args.sample_size} "
          f"m={args.m} ef_construct={args.ef_construct} low_memory={not args.keep_wal} "
          f"torch threads={torch.get_num_threads()} "
          f"cpus={os.cpu_count()}; data (centres, group ids) {data_mib:.0f} MiB; "
          f"RSS before {current_mib():.0f} MiB")  # fmt: skip
    random.seed(args.seed)
    evaluator = IndexEvaluator(
        RetrievalRPrecision("cosine"),
        sample_size=args.sample_size,
        hnsw_ef=args.hnsw_ef,
        recall_queries=args.recall_queries,
        encode_batch_size=4096,
        log_progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        index = SimilarityIndex(
            model,
            backend=EmbeddedBackend(path, low_memory=not args.keep_wal),
            distance="cosine",
            m=args.m,
            ef_construct=args.ef_construct,
            show_progress=False,
            batch_size=256,
        )
        load_before = os.getloadavg()[0]
        reset_peak()  # count evaluate() and what is held during it, not the data's making
        with index, PeakWatcher() as peaks:
            start = time.perf_counter()
            report = evaluator.evaluate(GroupRows(groups), index)
            took = time.perf_counter() - start
            indexed = index.backend.shard.info().indexed_vectors_count
    print(report.summary())
    print(f"graph: {indexed} of {args.n} vectors indexed; evaluate() {took:.1f} s")
    print(f"peak RSS (VmHWM) {peak_mib():.0f} MiB (target 1536 MiB); at the sampled peak "
          f"({peaks.total:.0f} MiB, every 50 ms) {peaks.anon:.0f} MiB anonymous (RssAnon: "
          f"heap, tensors, Qdrant's structures) and {peaks.file:.0f} MiB file-backed (RssFile: "
          f"libraries, the shard's memory-mapped files); load average {load_before:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after")  # fmt: skip


if __name__ == "__main__":
    # Re-import under the package name, so the servable records benchmarks.index_eval.RowEncoder.
    from benchmarks.index_eval import main as _main

    _main()
