"""Similarity scores of query blocks against the corpus, on the scale mining reports.

Scores are similarities (higher is closer) on the scale of the distance's row-wise
``similarity``: cosine ``cos`` in ``[-1, 1]`` (what Qdrant and sentence-transformers report),
dot product ``x . y``, Euclidean and Manhattan ``1 / (1 + distance)``. Margins are applied on
this scale.
"""

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from quaterion.distances import Distance

# Bytes of one float32 score block (its row count follows from the corpus size): large enough
# for full-speed matrix products (about 500 rows at 100,000 items), small against the corpus.
BLOCK_BYTES = 192 * 2**20


def score_blocks(
    distance: Distance, queries: Tensor, corpus: Tensor, block_rows: int
) -> Iterator[Tensor]:
    """``(b, M)`` score blocks of ``queries`` rows against every corpus row, in order.

    One buffer is reused (the last, shorter block is a view of it): consume (or copy) a
    block before asking for the next.
    """
    distance = Distance(distance)
    if distance in (Distance.COSINE, Distance.DOT_PRODUCT):
        if distance == Distance.COSINE:
            queries, corpus = F.normalize(queries, p=2, dim=1), F.normalize(corpus, p=2, dim=1)
        corpus_t = corpus.T
        buffer = queries.new_empty(min(block_rows, queries.shape[0]), corpus.shape[0])
        for start in range(0, queries.shape[0], block_rows):
            part = queries[start : start + block_rows]
            yield torch.matmul(part, corpus_t, out=buffer[: part.shape[0]])
        return
    blocks = Distance.get_by_name(distance).distance_matrix_blocks(queries, corpus, block_rows)
    for block in blocks:
        yield block.add_(1).reciprocal_()


def pair_scores(distance: Distance, x: Tensor, y: Tensor) -> Tensor:
    """Row-wise score of ``x[i]`` and ``y[i]`` on the mining scale: ``(B,)``."""
    distance = Distance(distance)
    if distance == Distance.COSINE:
        return (F.normalize(x, p=2, dim=1) * F.normalize(y, p=2, dim=1)).sum(1)
    if distance == Distance.DOT_PRODUCT:
        return (x * y).sum(1)
    order = 1 if distance == Distance.MANHATTAN else 2
    return 1 / (1 + torch.linalg.vector_norm(x - y, ord=order, dim=1))


def rows_per_block(corpus_size: int, block_size: "int | None") -> int:
    """``block_size`` if given (checked), else as many rows as fit in ``BLOCK_BYTES``."""
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
        return block_size
    return max(1, BLOCK_BYTES // (4 * max(corpus_size, 1)))
