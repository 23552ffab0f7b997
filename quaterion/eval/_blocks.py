"""Stream a retrieval problem as row blocks: memory O(block x M), never N x N.

A block is ``Block(dist, rows, cols, vals)``: ``dist: float (b, M)`` for ``b`` query rows
against every candidate, plus the block's nonzero labels in coordinate form (see
``_ranking``). Metrics reduce a stream of blocks to their value.
"""

from collections.abc import Iterator
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from quaterion.distances import BaseDistance
from quaterion.eval._prepared import prepare
from quaterion.eval._relevance import DenseRelevance

# Bytes of one float32 distance block; the row count follows from the number of candidates.
BLOCK_BYTES = 512 * 2**20


class Block(NamedTuple):
    """One row block: distances and the nonzero labels of those rows."""

    dist: Tensor
    rows: Tensor
    cols: Tensor
    vals: Tensor


def block_rows(num_cols: int, block_size: Optional[int] = None) -> int:
    """Rows per block: ``block_size`` if given, else as many as fit in ``BLOCK_BYTES``."""
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}.")
        return block_size
    return max(1, BLOCK_BYTES // (4 * max(num_cols, 1)))


def matrix_blocks(
    distance_matrix: Tensor, labels: Tensor, block_size: Optional[int] = None
) -> Iterator[Block]:
    """Blocks of ready-made matrices (views of ``distance_matrix``; never modified)."""
    check_matrices(distance_matrix, labels)
    relevance = DenseRelevance(labels)
    step = block_rows(distance_matrix.shape[1], block_size)
    for start in range(0, distance_matrix.shape[0], step):
        end = min(start + step, distance_matrix.shape[0])
        yield Block(distance_matrix[start:end], *relevance.block(start, end))


def embedding_blocks(
    queries: Tensor,
    candidates: Tensor,
    distance: type[BaseDistance],
    relevance,
    self_index: Optional[Tensor] = None,
    block_size: Optional[int] = None,
) -> Iterator[Block]:
    """Blocks of ``distance.distance_matrix(queries[block], candidates)``.

    Args:
        queries: float ``(n, d)``; candidates: float ``(M, d)``.
        distance: a distance class (``Distance.get_by_name(...)``).
        relevance: object with ``block(start, end) -> (rows, cols, vals)``.
        self_index: optional int64 ``(n,)``: column of each query's own item. That entry is set
            to ``+inf`` so the item ranks after every other candidate (the spec's ``max + 1``).
        block_size: rows per block (default from ``BLOCK_BYTES``).

    The distance buffer is reused: consume each block before asking for the next.
    """
    queries, candidates = queries.detach(), candidates.detach()
    step = block_rows(candidates.shape[0], block_size)
    block_fn = prepare(distance, queries, candidates)
    buffer = None
    for start in range(0, queries.shape[0], step):
        end = min(start + step, queries.shape[0])
        out = buffer if buffer is not None and buffer.shape[0] == end - start else None
        dist = block_fn(start, end, out)
        buffer = dist if buffer is None else buffer
        if self_index is not None:
            local = torch.arange(end - start, device=dist.device)
            dist[local, self_index[start:end].to(dist.device)] = float("inf")
        yield Block(dist, *relevance.block(start, end))


def check_matrices(distance_matrix: Tensor, labels: Tensor) -> None:
    """Both 2-D tensors of one shape, else ``ValueError``/``TypeError``."""
    for name, value in (("distance_matrix", distance_matrix), ("labels", labels)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
        if value.dim() != 2:
            raise ValueError(
                f"{name} must be 2-D (queries x candidates), got shape {tuple(value.shape)}."
            )
    if distance_matrix.shape != labels.shape:
        raise ValueError(
            f"distance_matrix and labels must have the same shape, got "
            f"{tuple(distance_matrix.shape)} and {tuple(labels.shape)}."
        )


def check_embeddings(embeddings: Tensor, name: str = "embeddings") -> None:
    """2-D, non-empty, all finite; the error says how many rows hold NaN/inf and the first."""
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}.")
    if embeddings.dim() != 2:
        raise ValueError(f"{name} must be 2-D (items x dim), got shape {tuple(embeddings.shape)}.")
    if embeddings.shape[0] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(embeddings.shape)}); evaluate at least one item."
        )
    bad_rows = ~torch.isfinite(embeddings).all(dim=1)
    bad = int(bad_rows.sum())
    if bad:
        first = int(bad_rows.nonzero()[0, 0])
        raise ValueError(
            f"{name} contain NaN or inf in {bad} of {embeddings.shape[0]} rows (first: row "
            f"{first}); a metric over them would be meaningless. Check the encoder output "
            "(e.g. a zero-norm input or a diverged model) before evaluating."
        )
