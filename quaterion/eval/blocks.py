"""The functional core of evaluation: a retrieval problem streamed as row blocks.

A :class:`Problem` is ``queries (n, d)`` against ``candidates (M, d)`` plus a sparse relevance
(see ``_relevance``). :meth:`Problem.blocks` yields ``Block(dist, rows, cols, vals)``:
``dist: float (b, M)`` for ``b`` query rows and the block's nonzero labels in coordinate form
(see ``_ranking``). Memory is O(block x M), never N x N.

A metric turns blocks into its value through a :class:`BlockReducer` (``update(block)`` per
block, then ``compute()``); several reducers can share one pass over the blocks, which is how
``Evaluator`` computes every requested metric from one distance pass.

Own items: when a query is itself one of the candidates (``self_index``), that candidate is
never relevant to it and its distance is set to ``+inf`` (:func:`rank_own_items_last`), so it
ranks after every other candidate. This one rule is used by the blocked path, the dense
matrices of ``sample``/``precompute`` and therefore by every metric.
"""

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor

from quaterion.distances import BaseDistance, Cosine
from quaterion.eval._relevance import DenseRelevance

# Bytes of one float32 distance block; the row count follows from the number of candidates.
# Large enough for full-speed matmul and top-k per block, small enough that an exact
# evaluation adds a few hundred MiB to the embeddings it ranks.
BLOCK_BYTES = 256 * 2**20


class Block(NamedTuple):
    """One row block: distances and the nonzero labels of those rows."""

    dist: Tensor
    rows: Tensor
    cols: Tensor
    vals: Tensor


class BlockReducer:
    """Folds a stream of row blocks into a metric value: ``update`` each block, ``compute``."""

    def update(self, block: Block) -> None:
        """Consume one block (its tensors may be reused for the next block)."""
        raise NotImplementedError

    def compute(self) -> Tensor:
        """The value over every block seen."""
        raise NotImplementedError


def reduce_blocks(reducer: BlockReducer, blocks: Iterable[Block]) -> Tensor:
    """Feed every block to ``reducer`` and return its value."""
    for block in blocks:
        reducer.update(block)
    return reducer.compute()


def rank_own_items_last(dist: Tensor, self_index: Optional[Tensor], start: int = 0) -> Tensor:
    """Set ``dist[i, self_index[start + i]]`` to ``+inf`` in place (the own-item rule)."""
    if self_index is not None:
        local = torch.arange(dist.shape[0], device=dist.device)
        dist[local, self_index[start : start + dist.shape[0]].to(dist.device)] = float("inf")
    return dist


class Problem(NamedTuple):
    """One retrieval problem: ``queries (n, d)`` against ``candidates (M, d)``.

    ``relevance.block(start, end)`` gives the nonzero labels of query rows ``start..end-1``;
    ``self_index (n,)`` (optional) is each query's own column, ranked last.
    """

    queries: Tensor
    candidates: Tensor
    relevance: Any
    self_index: Optional[Tensor] = None

    def blocks(
        self, distance: type[BaseDistance], block_size: Optional[int] = None
    ) -> Iterator[Block]:
        """Row blocks of the problem under ``distance`` (one reused distance buffer)."""
        step = block_rows(self.candidates.shape[0], block_size)
        queries, candidates = ranking_inputs(
            distance, self.queries.detach(), self.candidates.detach()
        )
        dists = distance.distance_matrix_blocks(queries, candidates, step)
        for start, dist in zip(range(0, self.queries.shape[0], step), dists):
            rank_own_items_last(dist, self.self_index, start)
            yield Block(dist, *self.relevance.block(start, start + dist.shape[0]))

    def dense(self, distance: type[BaseDistance]) -> tuple[Tensor, Tensor]:
        """``(labels, distance_matrix)`` as ``(n, M)`` matrices (``sample``'s contract)."""
        n, m = self.queries.shape[0], self.candidates.shape[0]
        rows, cols, vals = self.relevance.block(0, n)
        labels = torch.zeros(n, m, device=self.queries.device)
        labels[rows, cols] = vals.to(labels.dtype)
        queries, candidates = ranking_inputs(distance, self.queries, self.candidates)
        distance_matrix = distance.distance_matrix(queries, candidates).detach()
        return labels, rank_own_items_last(distance_matrix, self.self_index)


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


def check_matrices(distance_matrix: Tensor, labels: Tensor) -> None:
    """Both 2-D tensors of one shape without NaN, labels finite and ``>= 0``, else
    ``ValueError``/``TypeError`` (``+inf`` distances are valid: self-pairs ranked last).
    Reads the values on the host."""
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
    for name, value in (("distance_matrix", distance_matrix), ("labels", labels)):
        if value.is_floating_point() and value.numel():
            bad_rows = torch.isnan(value).any(dim=1)
            if bool(bad_rows.any()):
                raise ValueError(
                    f"{name} contains NaN in {int(bad_rows.sum())} of {value.shape[0]} rows "
                    f"(first: row {int(bad_rows.nonzero()[0, 0])}): a NaN distance ranks last "
                    "and a NaN label counts as relevant, so the metric would mean nothing. "
                    "Check the embeddings or scores they came from."
                )
    if labels.is_floating_point() and labels.numel():
        bad_rows = (torch.isinf(labels) | (labels < 0)).any(dim=1)
        if bool(bad_rows.any()):
            raise ValueError(
                f"labels hold infinite or negative values in {int(bad_rows.sum())} of "
                f"{labels.shape[0]} rows (first: row {int(bad_rows.nonzero()[0, 0])}): labels "
                "are relevance values >= 0 (0 = not relevant), and such a value makes the metric "
                "meaningless. Map negative pair scores to 0."
            )


def check_embeddings(embeddings: Tensor, name: str = "embeddings") -> None:
    """2-D, non-empty, all finite; the error says how many rows hold NaN/inf and the first.

    Reading the values waits for the device once: evaluation calls it, the training step
    does not (see ``BaseMetric.step_compute``).
    """
    check_embedding_shape(embeddings, name)
    bad_rows = ~torch.isfinite(embeddings).all(dim=1)
    if bool(bad_rows.any()):
        bad = int(bad_rows.sum())
        first = int(bad_rows.nonzero()[0, 0])
        raise ValueError(
            f"{name} contain NaN or inf in {bad} of {embeddings.shape[0]} rows (first: row "
            f"{first}); a metric over them would be meaningless. Check the encoder output "
            "(e.g. a zero-norm input or a diverged model) before evaluating."
        )


def check_embedding_shape(embeddings: Tensor, name: str = "embeddings") -> None:
    """A 2-D, non-empty, real floating-point tensor, else ``TypeError``/``ValueError``
    (metadata only: no sync)."""
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}.")
    if not embeddings.is_floating_point():
        raise TypeError(
            f"{name} must be a real floating-point tensor, got {embeddings.dtype}; distances "
            "are not defined on it. Convert integer codes with .float(); complex values have "
            "no ranking."
        )
    if embeddings.dim() != 2:
        raise ValueError(f"{name} must be 2-D (items x dim), got shape {tuple(embeddings.shape)}.")
    if embeddings.shape[0] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(embeddings.shape)}); evaluate at least one item."
        )


# Largest |value| left unscaled by ``ranking_inputs`` in the exact (host-read) mode: any
# distance of such rows stays far from float32's overflow and underflow.
_SAFE_EXPONENT = 30


def ranking_inputs(
    distance: type[BaseDistance], *embeddings: Tensor, exact: bool = True
) -> tuple[Tensor, ...]:
    """``embeddings`` in the form their distances are ranked from: same ranking, no overflow.

    * float16/bfloat16 become float32: their own arithmetic overflows (a float16 dot
      product past 65504 is ``-inf`` for every pair) and rounds distinct distances into ties.
    * Values are multiplied by a power of two (exact: it only shifts exponents), so the
      largest ``|value|`` is in ``[0.5, 1)``: one factor for all tensors, since Euclidean,
      Manhattan and dot-product rankings are invariant to a common positive scale, and one per
      row under ``Cosine``, which is invariant to each row's scale. Embeddings near 1e20
      (dot products past float32's range) or near 1e-25 (squares below it; rows below
      cosine's ``eps``) otherwise rank as ties.

    Args:
        distance: the distance the rows will be ranked by.
        embeddings: float ``(n_i, d)`` tensors, all finite.
        exact: ``True`` reads the value range on the host and returns the inputs unchanged
            (no copy) when they need no scaling; ``False`` always scales, without a sync (the
            training step).
    """
    dtype = torch.promote_types(embeddings[0].dtype, torch.float32)
    per_row = issubclass(distance, Cosine)
    bounds = [_largest_abs(value, per_row) for value in embeddings]
    if not per_row:
        bounds = [torch.stack([bound.max() for bound in bounds]).max()] * len(bounds)
    if exact and all(value.dtype == dtype for value in embeddings):
        exponents = torch.cat([torch.frexp(bound).exponent.reshape(-1) for bound in bounds])
        nonzero = exponents[torch.cat([bound.reshape(-1) for bound in bounds]) != 0]
        if nonzero.numel() == 0 or int(nonzero.abs().max()) <= _SAFE_EXPONENT:
            return embeddings
    return tuple(
        _times_power_of_two(value.to(dtype), -torch.frexp(bound).exponent.reshape(-1, 1))
        for value, bound in zip(embeddings, bounds)
    )


def _times_power_of_two(value: Tensor, shift: Tensor) -> Tensor:
    """``value * 2**shift``, exact, in two halves: ``2**shift`` alone can leave the dtype's
    range where the product does not (``shift = 132`` lifting a float32 subnormal), and
    ``torch.ldexp`` computes it alone on some devices."""
    first = torch.div(shift, 2, rounding_mode="floor")
    two = torch.tensor(2.0, dtype=value.dtype, device=value.device)
    return value * torch.pow(two, first) * torch.pow(two, shift - first)


def _largest_abs(value: Tensor, per_row: bool) -> Tensor:
    """``|value|.max()`` per row ``(n,)`` or overall (0-dim), without an ``|value|`` copy."""
    if value.numel() == 0:
        return torch.zeros(
            value.shape[0] if per_row else (), dtype=value.dtype, device=value.device
        )
    if per_row:
        return torch.maximum(value.amax(dim=1), -value.amin(dim=1))
    low, high = torch.aminmax(value)
    return torch.maximum(high, -low)
