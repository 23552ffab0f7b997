"""The embedded index against a brute-force floor on the same threads (not a test).

At ``--n`` vectors of dimension ``--dim`` (default 100,000 x 128), in one process:

* indexing: ``SimilarityIndex.add_vectors`` (batched upserts, each flushed) plus
  ``optimize()`` (the HNSW build), against the floor of keeping a normalised matrix;
* query latency, p50 and p95, for single queries and for batches of ``--batch`` queries:
  ``SimilarityIndex.search`` (HNSW ``--m``/``--ef-construct``, Qdrant's defaults 16/100)
  against NumPy brute force (one matmul and ``argpartition``) at the same N;
* recall@k of the index against exact top-k on ``--queries`` queries.

Like for like: both sides run on ``--threads`` threads (default 1): NumPy's BLAS through
``threadpoolctl`` (and torch through ``torch.set_num_threads``), the index through its search pool
(``EmbeddedBackend(search_threads=...)``, passed as ``backend=``). The script prints how many
vectors the HNSW graph holds, so a figure from a full scan is never mistaken for HNSW.

``--data`` picks the vectors: ``latent`` (default; a ``--latent``-dimensional Gaussian mapped
linearly to ``--dim`` plus a little noise: low intrinsic dimension, like trained embeddings),
``clusters`` (``--clusters`` well separated Gaussian blobs, an easy case) or ``gaussian``
(isotropic in all ``--dim`` dimensions: the worst case for HNSW, no structure to exploit).
Recall is also printed for larger HNSW beams (``hnsw_ef``).

Run: ``.venv/bin/python -m benchmarks.search`` (``--n 20000`` for a quick run; below 10 MB
of vectors Qdrant scans a segment exhaustively even with a graph, so pass
``--full-scan-threshold 1`` to time HNSW on small N).
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from threadpoolctl import threadpool_info, threadpool_limits

from examples.cli_types import non_negative_int, positive_int, random_seed
from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead
from quaterion_models.index import SimilarityIndex
from quaterion_models.index.embedded import EmbeddedBackend

from benchmarks._common import FrozenEncoder


def _float_rows(batch) -> torch.Tensor:
    return torch.as_tensor(np.stack(batch), dtype=torch.float32)


class VectorEncoder(FrozenEncoder):
    """Its inputs are already vectors: the identity servable the index is bound to."""

    def __init__(self, dim: int):
        super().__init__(dim, collate=_float_rows)

    def forward(self, batch):
        return batch


def make_data(kind: str, n: int, dim: int, queries: int, clusters: int, latent: int, seed: int):
    rng = np.random.default_rng(seed)
    total = n + queries
    if kind == "clusters":
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        points = centres[rng.integers(0, clusters, total)]
        points += 0.35 * rng.standard_normal(points.shape).astype(np.float32)
    elif kind == "latent":
        mixing = rng.standard_normal((latent, dim)).astype(np.float32)
        points = rng.standard_normal((total, latent)).astype(np.float32) @ mixing
        points += 0.1 * np.sqrt(latent) * rng.standard_normal(points.shape).astype(np.float32)
    else:
        points = rng.standard_normal((total, dim)).astype(np.float32)
    return points[:n], points[n:]


def brute_force(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Top-k cosine neighbours: ``matrix`` rows are unit vectors."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ matrix.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def percentiles(samples: list) -> str:
    p50, p95 = np.percentile(np.array(samples) * 1e3, [50, 95])
    return f"p50 {p50:8.3f} ms  p95 {p95:8.3f} ms"


def timed_calls(fn, inputs) -> list:
    times = []
    for item in inputs:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=100_000)
    parser.add_argument("--dim", type=positive_int, default=128)
    parser.add_argument("--queries", type=positive_int, default=1000, help="queries for recall")
    parser.add_argument(
        "--single", type=positive_int, default=300, help="single-query latency samples"
    )
    parser.add_argument("--batch", type=positive_int, default=64, help="queries per batch call")
    parser.add_argument("--k", type=positive_int, default=10)
    parser.add_argument("--data", choices=["latent", "clusters", "gaussian"], default="latent")
    parser.add_argument("--clusters", type=positive_int, default=1000)
    parser.add_argument("--latent", type=positive_int, default=16)
    parser.add_argument("--upsert-batch", type=positive_int, default=1024)
    parser.add_argument("--threads", type=positive_int, default=1, help="threads of both sides")
    parser.add_argument("--m", type=non_negative_int, default=16)
    parser.add_argument("--ef-construct", type=positive_int, default=100)
    parser.add_argument("--full-scan-threshold", type=positive_int, default=10000, help="KB")
    parser.add_argument("--seed", type=random_seed, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):  # NumPy's BLAS
        run(args)


def run(args: argparse.Namespace) -> None:
    pools = ", ".join(f"{pool['internal_api']} {pool['num_threads']}" for pool in threadpool_info())
    points, queries = make_data(
        args.data, args.n, args.dim, args.queries, args.clusters, args.latent, args.seed
    )
    model = SimilarityModel(encoders=VectorEncoder(args.dim), head=EmptyHead(args.dim))
    print(f"N={args.n} dim={args.dim} k={args.k} data={args.data} threads={args.threads} "
          f"({pools}, index search pool {args.threads}) "
          f"cpus={os.cpu_count()} m={args.m} ef_construct={args.ef_construct}")  # fmt: skip

    start = time.perf_counter()
    matrix = points / np.linalg.norm(points, axis=1, keepdims=True)
    floor_index_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        backend = EmbeddedBackend(os.path.join(tmp, "index"), search_threads=args.threads)
        index = SimilarityIndex(model, backend=backend, distance="cosine", m=args.m,
                                ef_construct=args.ef_construct, batch_size=args.upsert_batch,
                                full_scan_threshold=args.full_scan_threshold,
                                show_progress=False)  # fmt: skip
        start = time.perf_counter()
        index.add_vectors(points, ids=list(range(args.n)))
        upsert_s = time.perf_counter() - start
        start = time.perf_counter()
        index.optimize()
        optimize_s = time.perf_counter() - start
        total = upsert_s + optimize_s
        print("\nIndexing")
        print(f"  index: upserts {upsert_s:7.2f} s + HNSW build {optimize_s:7.2f} s = "
              f"{total:7.2f} s  ({args.n / total:9.0f} vectors/s; upserts alone "
              f"{args.n / upsert_s:9.0f}/s)")  # fmt: skip
        print(f"  brute-force floor (normalise in memory): {floor_index_s:7.3f} s "
              f"({args.n / max(floor_index_s, 1e-9):9.0f} vectors/s)")  # fmt: skip
        indexed = backend.shard.info().indexed_vectors_count
        print(f"  HNSW graph holds {indexed} of {args.n} vectors")

        index.batch_size = args.batch
        singles = [queries[i : i + 1] for i in range(min(args.single, len(queries)))]
        batches = [queries[i : i + args.batch] for i in range(0, len(queries), args.batch)]
        for warm in singles[:10]:  # warm caches on both sides
            index.search(vectors=warm, limit=args.k)
            brute_force(matrix, warm, args.k)

        def search(q):
            return index.search(vectors=q, limit=args.k, with_payload=False)

        rows = [
            ("single", timed_calls(search, singles), timed_calls(
                lambda q: brute_force(matrix, q, args.k), singles)),
            (f"batch of {args.batch}", timed_calls(search, batches), timed_calls(
                lambda q: brute_force(matrix, q, args.k), batches)),
        ]  # fmt: skip
        print("\nQuery latency (per call)")
        for name, index_times, floor_times in rows:
            ratio = np.median(floor_times) / np.median(index_times)
            print(f"  {name:>12}  index: {percentiles(index_times)}   brute force: "
                  f"{percentiles(floor_times)}   index {ratio:.1f}x faster at p50")  # fmt: skip

        found = search(queries)
        exact = np.concatenate(  # in chunks: one (1000, N) score matrix is 4 GB at 1M
            [brute_force(matrix, q, args.k) for q in batches]
        )
        hits = sum(len({h.id for h in f} & set(e.tolist())) for f, e in zip(found, exact))
        recall = hits / (args.k * len(queries))
        checked = min(100, len(queries))
        exact_found = index.search(vectors=queries[:checked], limit=args.k, exact=True)
        exact_hits = sum(
            len({h.id for h in f} & set(e.tolist())) for f, e in zip(exact_found, exact[:checked])
        )
        print(f"\nrecall@{args.k} of the index (default beam) against exact search over "
              f"{len(queries)} queries: {recall:.4f} (target >= 0.98); with exact=True: "
              f"{exact_hits / (args.k * checked):.4f}")  # fmt: skip
        for ef in (128, 256, 512):
            times = timed_calls(
                lambda q, ef=ef: index.search(vectors=q, limit=args.k, hnsw_ef=ef), singles
            )
            found = index.search(vectors=queries, limit=args.k, hnsw_ef=ef)
            hits = sum(len({h.id for h in f} & set(e.tolist())) for f, e in zip(found, exact))
            print(f"  hnsw_ef={ef:4d}: recall@{args.k} {hits / (args.k * len(queries)):.4f}, "
                  f"single query {percentiles(times)}")  # fmt: skip
        index.close()


if __name__ == "__main__":
    # Re-import under the package name, so the fingerprint records benchmarks.search.VectorEncoder.
    from benchmarks.search import main as _main

    _main()
