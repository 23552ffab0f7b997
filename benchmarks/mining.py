"""Hard-negative mining against sentence-transformers' ``mine_hard_negatives`` (not a test).

Both mine the same precomputed embeddings (``--n`` queries, each with one positive, against
the ``--n`` positives as the corpus, dimension ``--dim``) in exact mode, ``--negatives``
negatives per query, ``"top"`` sampling, each pinned to ``--threads`` torch threads. Printed:
whether the negatives are identical, wall and CPU time and the ratio (quaterion / s-t), and
each run's peak resident memory above the memory before it.

sentence-transformers gets a stand-in model that returns the embeddings (normalised, as its
``normalize_embeddings=True`` does), so only mining is timed; its query chunk is
``--st-chunk`` rows (its ``faiss_batch_size``; its default of 16,384 rows would need a
16,384 x N float32 block, 6.5 GB at N = 100,000).

Run: ``.venv/bin/python -m benchmarks.mining`` (``--n 20000`` for a quick run).
"""

import argparse

import numpy as np
import torch

from examples.cli_types import positive_int, random_seed
from benchmarks._common import Clock
from benchmarks._memory import current_mib, peak_mib, reset_peak
from quaterion.mining import mine_hard_negatives


class PrecomputedModel:
    """What ``sentence_transformers.util.mine_hard_negatives`` reads from a model, answering
    with embeddings looked up by text."""

    device = torch.device("cpu")

    class model_card_data:  # noqa: N801 - attribute name read by sentence-transformers
        base_model = "precomputed"

    def __init__(self, texts: list[str], vectors: torch.Tensor):
        self.row = {text: i for i, text in enumerate(texts)}
        self.vectors = torch.nn.functional.normalize(vectors, dim=1).numpy()

    def _encode(self, texts, **kwargs):
        return self.vectors[[self.row[t] for t in texts]]

    encode_query = encode_document = _encode

    @staticmethod
    def similarity(a, b):
        from sentence_transformers.util import cos_sim

        return cos_sim(a, b)

    @staticmethod
    def similarity_pairwise(a, b):
        return torch.nn.functional.cosine_similarity(torch.as_tensor(a), torch.as_tensor(b))

    def get_embedding_dimension(self) -> int:
        return self.vectors.shape[1]


def embeddings(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and their positives (a noisy copy) in a low-dimensional latent structure."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(16, dim, generator=generator)
    queries = torch.randn(n, 16, generator=generator) @ mix + 0.5 * torch.randn(
        n, dim, generator=generator
    )
    positives = queries + 0.7 * torch.randn(n, dim, generator=generator)
    return queries, positives


def run_quaterion(queries, positives, negatives, block_size):
    mined = mine_hard_negatives(
        queries,
        positives,
        positives=list(range(len(queries))),
        num_negatives=negatives,
        block_size=block_size,
        show_progress=False,
    )
    return mined.indices


def run_sentence_transformers(queries, positives, negatives, chunk):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    n = len(queries)
    query_texts = [f"q{i}" for i in range(n)]
    answer_texts = [f"a{i}" for i in range(n)]
    model = PrecomputedModel(query_texts + answer_texts, torch.cat([queries, positives]))
    dataset = Dataset.from_dict({"query": query_texts, "answer": answer_texts})
    with Clock() as clock:
        mined = st_mine(
            dataset,
            model,
            num_negatives=negatives,
            output_format="n-tuple",
            faiss_batch_size=chunk,
            verbose=False,
        )
    columns = [mined[f"negative_{c}"] for c in range(1, negatives + 1)]
    rows = [[int(column[r][1:]) for column in columns] for r in range(len(mined))]
    return np.asarray(rows), clock


def tie_gap(queries, corpus, ours, theirs) -> float:
    """Largest float64 cosine difference between the negatives the two picked, over the rows
    where they differ (what float32 rounding can reorder)."""
    rows = np.nonzero((ours != theirs).any(1))[0]
    q = torch.nn.functional.normalize(queries[rows].double(), dim=1)
    c = torch.nn.functional.normalize(corpus.double(), dim=1)
    ours_scores = (q[:, None, :] * c[torch.as_tensor(ours[rows])]).sum(-1)
    theirs_scores = (q[:, None, :] * c[torch.as_tensor(theirs[rows])]).sum(-1)
    return float((ours_scores - theirs_scores).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options = {"n": 100_000, "dim": 128, "negatives": 5, "threads": 1, "st-chunk": 2048}
    for name, default in {**options, "seed": 0}.items():
        parser.add_argument(
            f"--{name}", type=random_seed if name == "seed" else positive_int, default=default
        )
    parser.add_argument(
        "--block-size", type=positive_int, default=None, help="query rows per block"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    queries, positives = embeddings(args.n, args.dim, args.seed)
    print(f"n={args.n} dim={args.dim} negatives={args.negatives} threads={args.threads}")

    reset_peak()
    before = current_mib()
    with Clock() as ours_clock:
        ours = run_quaterion(queries, positives, args.negatives, args.block_size).numpy()
    ours_peak = peak_mib() - before

    reset_peak()
    before = current_mib()
    theirs, st_clock = run_sentence_transformers(queries, positives, args.negatives, args.st_chunk)
    st_peak = peak_mib() - before

    complete = (ours >= 0).all(1)
    identical = theirs.shape == ours[complete].shape and bool((theirs == ours[complete]).all())
    differing = (
        int((theirs != ours[complete]).any(1).sum()) if theirs.shape == ours[complete].shape else -1
    )
    print(f"identical negatives: {identical} (rows differing: {differing} of {len(theirs)})")
    if differing > 0:
        print(
            f"  largest float64 score gap between the two choices in those rows: "
            f"{tie_gap(queries, positives, ours[complete], theirs):.2e} (a near-tie)"
        )
    print(f"{'':24}{'wall s':>10}{'cpu s':>10}{'peak +MiB':>12}")
    print(f"{'quaterion':24}{ours_clock.wall:10.2f}{ours_clock.cpu:10.2f}{ours_peak:12.0f}")
    print(f"{'sentence-transformers':24}{st_clock.wall:10.2f}{st_clock.cpu:10.2f}{st_peak:12.0f}")
    print(
        f"time ratio quaterion / sentence-transformers: wall {ours_clock.wall / st_clock.wall:.2f}x, "
        f"cpu {ours_clock.cpu / st_clock.cpu:.2f}x"
    )


if __name__ == "__main__":
    main()
